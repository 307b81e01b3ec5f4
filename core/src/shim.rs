//! Calling pt's C++ shims (`csrc/`): each entry point takes an error buffer and returns 0, or
//! non-zero with the exception's message in the buffer (`shim_error.h`).

use std::ffi::{c_char, c_int, CStr};

/// Runs `f` with an error buffer; a non-zero return gives the shim's message.
pub(crate) fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut err = [0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates what it writes into the buffer.
    Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
}
