//! SGD with momentum (`torch.optim.SGD` semantics, dampening 0) over the flat buffer.

use crate::flat::FlatParams;
use crate::optimizer::{check_range, Common, Optimizer};
use pt_sdk::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `torch.optim.SGD(momentum, dampening=0, nesterov, weight_decay)`: weight decay is added to
/// the gradient (coupled, L2), `buf = momentum * buf + d_p`, and the update is `buf`
/// (or `d_p + momentum * buf` with Nesterov).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Default 0.9 (PyTorch's default is 0; 0 disables the momentum buffer).
    pub momentum: f64,
    /// Nesterov momentum; needs `momentum > 0`. Default false.
    pub nesterov: bool,
    /// L2 penalty for groups that decay. Default 0.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 0.0 }
    }
}

impl SgdConfig {
    pub fn validate(&self) -> Result<()> {
        check_range("momentum", self.momentum, 0.0, 1.0, true)?;
        check_range("weight_decay", self.weight_decay, 0.0, f64::MAX, true)?;
        if self.nesterov && self.momentum == 0.0 {
            bail!(Config, "nesterov = true needs momentum > 0");
        }
        Ok(())
    }
}

pub struct Sgd {
    config: SgdConfig,
    common: Common,
    /// `None` without momentum.
    momentum_buffer: Option<Tensor>,
}

impl Sgd {
    pub fn new(config: SgdConfig, params: &FlatParams) -> Result<Self> {
        let momentum_buffer = if config.momentum > 0.0 {
            Some(Tensor::f_zeros([params.len()], (Kind::Float, params.device()))?)
        } else {
            None
        };
        Ok(Sgd { config, common: Common::new(params), momentum_buffer })
    }
}

/// `g + wd * p` as a new tensor, or `g` itself (shared) without decay.
pub(crate) fn decayed_grad(g: &Tensor, p: &Tensor, weight_decay: f64) -> Result<Tensor> {
    Ok(if weight_decay != 0.0 {
        let mut d = p.f_mul_scalar(weight_decay)?;
        let _ = d.f_add_(g)?;
        d
    } else {
        g.shallow_clone()
    })
}

/// The momentum update shared with LARS: `buf = momentum * buf + d`, then
/// `p -= lr * (nesterov ? d + momentum * buf : buf)` (just `p -= lr * d` without a buffer).
pub(crate) fn momentum_update(
    p: &mut Tensor,
    d: &Tensor,
    buf: Option<&mut Tensor>,
    momentum: f64,
    nesterov: bool,
    lr: f64,
) -> Result<()> {
    let update = match buf {
        None => d.shallow_clone(),
        Some(buf) => {
            let _ = buf.f_mul_scalar_(momentum)?;
            let _ = buf.f_add_(d)?;
            if nesterov {
                let mut u = buf.f_mul_scalar(momentum)?;
                let _ = u.f_add_(d)?;
                u
            } else {
                buf.shallow_clone()
            }
        }
    };
    if lr != 0.0 {
        // tch's add_ has no `alpha`, so scale first.
        let _ = p.f_sub_(&update.f_mul_scalar(lr)?)?;
    }
    Ok(())
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &FlatParams, grad: &Tensor, lr: f64) -> Result<()> {
        self.common.begin_step("sgd", params, grad, lr)?;
        let _guard = tch::no_grad_guard();
        for slice in params.groups() {
            let (off, len) = (slice.offset, slice.len);
            let mut p = params.buffer().f_narrow(0, off, len)?;
            let g = grad.f_narrow(0, off, len)?;
            let d = decayed_grad(&g, &p, slice.group.weight_decay)?;
            let mut buf = match &self.momentum_buffer {
                Some(b) => Some(b.f_narrow(0, off, len)?),
                None => None,
            };
            momentum_update(
                &mut p,
                &d,
                buf.as_mut(),
                self.config.momentum,
                self.config.nesterov,
                lr * slice.group.lr_mult,
            )?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.common.state();
        if let Some(b) = &self.momentum_buffer {
            state.push(("momentum_buffer".into(), b.shallow_clone()));
        }
        state
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let mut buffers: Vec<(&str, &mut Tensor)> = Vec::new();
        if let Some(b) = self.momentum_buffer.as_mut() {
            buffers.push(("momentum_buffer", b));
        }
        self.common.load_state("sgd", state, &mut buffers)
    }

    fn steps(&self) -> u64 {
        self.common.steps
    }

    fn name(&self) -> &'static str {
        "sgd"
    }
}
