//! Page-locked (pinned) host copies of batches, so host-to-GPU copies run at full bandwidth.
//! Through the C++ shim `csrc/pinned.cpp`: tch 0.24 only offers `pin_memory(device)`, whose
//! device argument libtorch 2.11 deprecates with a warning on every call.

use crate::{Error, Result};
use std::ffi::{c_char, c_int};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn pt_pin_memory(src: *const C_tensor, out: *mut *mut C_tensor, err: *mut c_char, err_len: usize) -> c_int;
}

/// A pinned copy of a host tensor (the tensor itself when it is pinned already). Needs an
/// accelerator: on a CPU-only libtorch this is an error.
pub fn pinned(t: &Tensor) -> Result<Tensor> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let failed =
        |msg: String| Error::Training(format!("pinning a batch tensor in host memory failed in libtorch: {msg}"));
    // SAFETY: `t.as_ptr()` is a live at::Tensor; the shim writes one new owning handle to `out`
    // (or nothing on error) and at most `len` NUL-terminated bytes.
    crate::shim::call(|err, len| unsafe { pt_pin_memory(t.as_ptr(), &mut out, err, len) }).map_err(failed)?;
    if out.is_null() {
        return Err(failed("no tensor returned".into()));
    }
    // SAFETY: `out` is a fresh handle this Tensor now owns (freed by its Drop).
    Ok(unsafe { Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn pins_with_an_accelerator_and_errs_cleanly_without() {
        let t = Tensor::arange(6, (Kind::Float, Device::Cpu));
        match pinned(&t) {
            Ok(p) => {
                assert!(tch::Cuda::is_available(), "pinning worked without CUDA");
                assert!(p.is_pinned(Device::Cuda(0)));
                assert_eq!(Vec::<f32>::try_from(&p).unwrap(), Vec::<f32>::try_from(&t).unwrap());
            }
            // A CPU-only libtorch has no pinned allocator: an error, not an abort.
            Err(e) => assert!(e.to_string().contains("pinning"), "{e}"),
        }
    }
}
