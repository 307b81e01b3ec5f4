//! LARS (You et al. 2017) as used for SimCLR / BYOL / Barlow Twins, over the flat buffer.
//! Per-parameter norms come from one `segment_reduce` per group, and the trust ratios go back
//! to elements with one `repeat_interleave`, so a step costs a constant number of kernels.

use crate::flat::FlatParams;
use crate::fused::{self, SgdStep};
use crate::optimizer::{check_range, Common, Optimizer, StepGuard};
use pt_sdk::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Per parameter of a group that is not `lars_exclude`:
/// `d = g + wd * p`; `q = eta * ‖p‖ / ‖d‖` (1 where either norm is 0); `buf = momentum * buf + q * d`;
/// `p -= lr * buf` (the Barlow Twins / VICReg / solo-learn formulation).
/// Excluded groups (biases, norm weights with [`crate::default_groups`]) get the same update
/// with `q = 1`: plain momentum SGD. Weight decay comes from each group (0 for excluded groups
/// with the default grouping).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LarsConfig {
    /// Default 0.9.
    pub momentum: f64,
    /// Trust coefficient. Default 0.001.
    pub eta: f64,
    /// Weight decay for groups that decay. Default 1e-6 (SimCLR).
    pub weight_decay: f64,
}

impl Default for LarsConfig {
    fn default() -> Self {
        LarsConfig { momentum: 0.9, eta: 0.001, weight_decay: 1e-6 }
    }
}

impl LarsConfig {
    pub fn validate(&self) -> Result<()> {
        check_range("momentum", self.momentum, 0.0, 1.0, true)?;
        check_range("weight_decay", self.weight_decay, 0.0, f64::MAX, true)?;
        check_range("eta", self.eta, f64::MIN_POSITIVE, f64::MAX, true)
    }
}

pub struct Lars {
    config: LarsConfig,
    common: Common,
    momentum_buffer: Tensor,
    /// Per group: segment spans (int64, on the device) for adapted groups, `None` for excluded ones.
    spans: Vec<Option<Tensor>>,
}

impl Lars {
    pub fn new(config: LarsConfig, params: &FlatParams) -> Result<Self> {
        let device = params.device();
        let mut spans = Vec::with_capacity(params.groups().len());
        for slice in params.groups() {
            spans.push(if slice.group.lars_exclude {
                None
            } else {
                let lengths: Vec<i64> = params.segments()[slice.segments.clone()].iter().map(|s| s.span).collect();
                Some(Tensor::f_from_slice(&lengths)?.f_to_device(device)?)
            });
        }
        Ok(Lars {
            config,
            common: Common::new(params)?,
            momentum_buffer: Tensor::f_zeros([params.len()], (Kind::Float, device))?,
            spans,
        })
    }
}

/// Per-segment L2 norms of `x` (segments given by `spans`, which cover `x` exactly).
fn segment_norms(x: &Tensor, spans: &Tensor) -> Result<Tensor> {
    // `unsafe_ = true` skips the length validation, which would read the lengths back on the
    // host (a device sync); the spans come from our own layout.
    let mut sums = Tensor::f_segment_reduce(&x.f_square()?, "sum", Some(spans), None, None, 0, true, 0.0)?;
    Ok(sums.f_sqrt_()?)
}

/// `g / scale + wd * p`: the unscaled gradient with coupled weight decay, as a new tensor.
fn decayed_grad(g: &Tensor, p: &Tensor, weight_decay: f64, grad_scale: Option<&Tensor>) -> Result<Tensor> {
    let mut d = match grad_scale {
        Some(scale) => g.f_div(scale)?,
        None => g.f_detach_copy()?,
    };
    if weight_decay != 0.0 {
        let _ = d.f_add_(&p.f_mul_scalar(weight_decay)?)?;
    }
    Ok(d)
}

impl Optimizer for Lars {
    fn step(&mut self, params: &FlatParams, grad: &Tensor, lr: f64, guard: &StepGuard) -> Result<()> {
        self.common.begin_step("lars", params, grad, lr, guard)?;
        let _no_grad = tch::no_grad_guard();
        let LarsConfig { momentum, eta, .. } = self.config;
        for (slice, spans) in params.groups().iter().zip(&self.spans) {
            let (off, len) = (slice.offset, slice.len);
            let p = params.buffer().f_narrow(0, off, len)?;
            let g = grad.f_narrow(0, off, len)?;
            let mut d = decayed_grad(&g, &p, slice.group.weight_decay, guard.grad_scale.as_ref())?;
            if let Some(spans) = spans {
                let p_norm = segment_norms(&p, spans)?;
                let d_norm = segment_norms(&d, spans)?;
                let both_positive = p_norm.f_gt(0.0)?.f_logical_and(&d_norm.f_gt(0.0)?)?;
                let trust = p_norm.f_mul_scalar(eta)?.f_div(&d_norm)?.f_where_scalarother(&both_positive, 1.0)?;
                let per_element = trust.f_repeat_interleave_self_tensor(spans, 0, len)?;
                let _ = d.f_mul_(&per_element)?;
            }
            // The momentum update itself is SGD's (decay and scale already in `d`).
            let buffer = self.momentum_buffer.f_narrow(0, off, len)?;
            let hyper = SgdStep { lr: lr * slice.group.lr_mult, momentum, nesterov: false, weight_decay: 0.0 };
            fused::sgd(&p, &d, Some(&buffer), &hyper, None, guard.found_inf.as_ref())?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.common.state();
        state.push(("momentum_buffer".into(), self.momentum_buffer.shallow_clone()));
        state
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.common.load_state("lars", state, &mut [("momentum_buffer", &mut self.momentum_buffer)])
    }

    fn steps(&self) -> u64 {
        self.common.steps()
    }

    fn name(&self) -> &'static str {
        "lars"
    }
}
