//! AdamW (`torch.optim.AdamW(fused=True)`) over the flat buffer: PyTorch's fused kernel, one
//! pass per parameter group per step.

use crate::flat::FlatParams;
use crate::fused::{self, AdamWStep};
use crate::optimizer::{check_range, Common, Optimizer, StepGuard};
use pt_sdk::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Adam with decoupled weight decay (Loshchilov & Hutter), bias-corrected, as
/// `torch.optim.AdamW(betas=(beta1, beta2), eps, weight_decay, amsgrad=False)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Decay of the first moment. Default 0.9.
    pub beta1: f64,
    /// Decay of the second moment. Default 0.999.
    pub beta2: f64,
    /// Added to the denominator. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay for groups that decay (`p *= 1 - lr * wd`). Default 0.01
    /// (PyTorch's default).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

impl AdamWConfig {
    pub fn validate(&self) -> Result<()> {
        check_range("beta1", self.beta1, 0.0, 1.0, false)?;
        check_range("beta2", self.beta2, 0.0, 1.0, false)?;
        check_range("eps", self.eps, 0.0, f64::MAX, true)?;
        check_range("weight_decay", self.weight_decay, 0.0, f64::MAX, true)
    }
}

pub struct AdamW {
    config: AdamWConfig,
    common: Common,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &FlatParams) -> Result<Self> {
        let options = (Kind::Float, params.device());
        Ok(AdamW {
            config,
            common: Common::new(params)?,
            exp_avg: Tensor::f_zeros([params.len()], options)?,
            exp_avg_sq: Tensor::f_zeros([params.len()], options)?,
        })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &FlatParams, grad: &Tensor, lr: f64, guard: &StepGuard) -> Result<()> {
        self.common.begin_step("adamw", params, grad, lr, guard)?;
        let _no_grad = tch::no_grad_guard();
        let AdamWConfig { beta1, beta2, eps, .. } = self.config;
        for slice in params.groups() {
            let (off, len) = (slice.offset, slice.len);
            let lr = lr * slice.group.lr_mult;
            let hyper = AdamWStep { lr, beta1, beta2, weight_decay: slice.group.weight_decay, eps };
            fused::adamw(
                &params.buffer().f_narrow(0, off, len)?,
                &grad.f_narrow(0, off, len)?,
                &self.exp_avg.f_narrow(0, off, len)?,
                &self.exp_avg_sq.f_narrow(0, off, len)?,
                &self.common.step,
                &hyper,
                guard,
            )?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.common.state();
        state.push(("exp_avg".into(), self.exp_avg.shallow_clone()));
        state.push(("exp_avg_sq".into(), self.exp_avg_sq.shallow_clone()));
        state
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.common.load_state(
            "adamw",
            state,
            &mut [("exp_avg", &mut self.exp_avg), ("exp_avg_sq", &mut self.exp_avg_sq)],
        )
    }

    fn steps(&self) -> u64 {
        self.common.steps()
    }

    fn name(&self) -> &'static str {
        "adamw"
    }
}
