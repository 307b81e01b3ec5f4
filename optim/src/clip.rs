//! Gradient clipping by the global norm, on the flat gradient, folded into the update.

use crate::optimizer::StepGuard;
use pt_sdk::{bail, Result};
use tch::Tensor;

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
