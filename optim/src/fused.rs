//! Safe calls into the fused-kernel shim (`csrc/fused.cpp`): PyTorch's own fused AdamW and SGD
//! kernels, one pass over a slice of the flat buffer per call.

use crate::optimizer::StepGuard;
use pt_sdk::{PtError, Result};
use std::ffi::{c_char, c_int, CStr};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn pt_fused_adamw(
        param: *const C_tensor,
        grad: *const C_tensor,
        exp_avg: *const C_tensor,
        exp_avg_sq: *const C_tensor,
        step: *const C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        grad_scale: *const C_tensor,
        found_inf: *const C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn pt_fused_sgd(
        param: *const C_tensor,
        grad: *const C_tensor,
        momentum_buffer: *const C_tensor,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        nesterov: c_int,
        grad_scale: *const C_tensor,
        found_inf: *const C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// AdamW's hyperparameters for one call (one parameter group).
pub(crate) struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// SGD's hyperparameters for one call (one parameter group).
pub(crate) struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

fn ptr(t: Option<&Tensor>) -> *const C_tensor {
    t.map_or(std::ptr::null(), |t| t.as_ptr() as *const C_tensor)
}

/// Runs one shim call with an error buffer; a libtorch error becomes a [`PtError`].
fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut err = [0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates what it writes into the buffer.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
    Err(PtError::new(pt_sdk::ErrorKind::Torch, format!("{what} (libtorch): {msg}")))
}

/// `torch._fused_adamw_` on one slice: `step` (0-dim float32, already advanced) drives the bias
/// correction; the guard's scale divides the gradient first and its flag skips the update.
pub(crate) fn adamw(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: &Tensor,
    h: &AdamWStep,
    guard: &StepGuard,
) -> Result<()> {
    call("fused AdamW step", |err, len| {
        // SAFETY: every pointer is a live at::Tensor (or null where the shim allows it) for the
        // duration of the call; the shim writes at most `len` NUL-terminated bytes to `err`.
        unsafe {
            pt_fused_adamw(
                param.as_ptr(),
                grad.as_ptr(),
                exp_avg.as_ptr(),
                exp_avg_sq.as_ptr(),
                step.as_ptr(),
                h.lr,
                h.beta1,
                h.beta2,
                h.weight_decay,
                h.eps,
                ptr(guard.grad_scale.as_ref()),
                ptr(guard.found_inf.as_ref()),
                err,
                len,
            )
        }
    })
}

/// `torch._fused_sgd_` on one slice (dampening 0; `momentum_buffer` None without momentum).
pub(crate) fn sgd(
    param: &Tensor,
    grad: &Tensor,
    momentum_buffer: Option<&Tensor>,
    h: &SgdStep,
    grad_scale: Option<&Tensor>,
    found_inf: Option<&Tensor>,
) -> Result<()> {
    call("fused SGD step", |err, len| {
        // SAFETY: as in `adamw`.
        unsafe {
            pt_fused_sgd(
                param.as_ptr(),
                grad.as_ptr(),
                ptr(momentum_buffer),
                h.weight_decay,
                h.momentum,
                h.lr,
                h.nesterov as c_int,
                ptr(grad_scale),
                ptr(found_inf),
                err,
                len,
            )
        }
    })
}
