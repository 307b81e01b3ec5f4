//! Gradient clipping by the global norm, on the flat gradient.

use crate::optimizer::StepGuard;
use pt_sdk::{bail, Result};
use tch::Tensor;

/// The global L2 norm of a flat gradient, as a 0-dim tensor on its device (no host sync).
pub fn grad_norm(flat_grad: &Tensor) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    Ok(flat_grad.f_norm()?)
}

/// `torch.nn.utils.clip_grad_norm_` on a flat gradient, in place: scales it by
/// `min(1, max_norm / (norm + 1e-6))` where `norm` is the global L2 norm over all parameters.
/// Returns the norm before clipping as a 0-dim tensor, so nothing waits for the device until
/// the caller reads it (e.g. only on logging steps). Like PyTorch's default
/// (`error_if_nonfinite=False`), a non-finite norm is returned, not raised.
pub fn clip_grad_norm(flat_grad: &Tensor, max_norm: f64) -> Result<Tensor> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        bail!(Config, "max_grad_norm must be a finite number > 0, got {max_norm}");
    }
    let _guard = tch::no_grad_guard();
    let norm = flat_grad.f_norm()?;
    let coef = norm.f_add_scalar(1e-6)?.f_reciprocal_()?.f_mul_scalar_(max_norm)?.f_clamp_max_(1.0)?;
    let _ = flat_grad.shallow_clone().f_mul_(&coef)?;
    Ok(norm)
}

/// What a training step decides from its flat gradient without the host reading anything: the
/// global L2 norm (before clipping, 0-dim), and a [`StepGuard`] whose `grad_scale` clips to
/// `max_norm` inside the update (`torch.nn.utils.clip_grad_norm_`'s `min(1, max_norm / (norm +
/// 1e-6))`, applied as a division by its inverse) and whose `found_inf` is set when the norm, or
/// `loss` when given, is not finite.
pub fn step_guard(flat_grad: &Tensor, max_norm: Option<f64>, loss: Option<&Tensor>) -> Result<(Tensor, StepGuard)> {
    if let Some(m) = max_norm.filter(|m| !(m.is_finite() && *m > 0.0)) {
        bail!(Config, "grad_clip (the max gradient norm) must be a finite number > 0, got {m}");
    }
    let _guard = tch::no_grad_guard();
    let norm = flat_grad.f_norm()?;
    let watched = match loss {
        Some(loss) => norm.f_add(&loss.f_detach()?.f_to_kind(tch::Kind::Float)?)?,
        None => norm.shallow_clone(),
    };
    let found_inf = watched.f_isfinite()?.f_logical_not()?.f_to_kind(tch::Kind::Float)?;
    let grad_scale = match max_norm {
        Some(m) => Some(norm.f_add_scalar(1e-6)?.f_div_scalar_(m)?.f_clamp_min_(1.0)?),
        None => None,
    };
    Ok((norm, StepGuard { grad_scale, found_inf: Some(found_inf) }))
}
