//! SGD with momentum (`torch.optim.SGD(fused=True)`, dampening 0) over the flat buffer:
//! PyTorch's fused kernel, one pass per parameter group per step.

use crate::flat::FlatParams;
use crate::fused::{self, SgdStep};
use crate::optimizer::{check_range, Common, Optimizer, StepGuard};
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
        Ok(Sgd { config, common: Common::new(params)?, momentum_buffer })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &FlatParams, grad: &Tensor, lr: f64, guard: &StepGuard) -> Result<()> {
        self.common.begin_step("sgd", params, grad, lr, guard)?;
        let _no_grad = tch::no_grad_guard();
        let SgdConfig { momentum, nesterov, .. } = self.config;
        for slice in params.groups() {
            let (off, len) = (slice.offset, slice.len);
            let buffer = match &self.momentum_buffer {
                Some(b) => Some(b.f_narrow(0, off, len)?),
                None => None,
            };
            let hyper =
                SgdStep { lr: lr * slice.group.lr_mult, momentum, nesterov, weight_decay: slice.group.weight_decay };
            fused::sgd(
                &params.buffer().f_narrow(0, off, len)?,
                &grad.f_narrow(0, off, len)?,
                buffer.as_ref(),
                &hyper,
                guard.grad_scale.as_ref(),
                guard.found_inf.as_ref(),
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
        self.common.steps()
    }

    fn name(&self) -> &'static str {
        "sgd"
    }
}
