//! The optimizer interface, its configuration, and [`build`].

use crate::adamw::{AdamW, AdamWConfig};
use crate::flat::FlatParams;
use crate::lars::{Lars, LarsConfig};
use crate::sgd::{Sgd, SgdConfig};
use pt_sdk::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What a training step decided about its gradient on the device, for the update to act on
/// without the host reading anything (see [`crate::step_guard`]). The default guards nothing.
#[derive(Default)]
pub struct StepGuard {
    /// The gradient is divided by this first (0-dim float32 on the device): global-norm
    /// clipping folded into the update's own pass.
    pub grad_scale: Option<Tensor>,
    /// 0-dim float32 on the device: 1 skips the update entirely (weights, optimizer state and
    /// step count stay as they were), 0 applies it.
    pub found_inf: Option<Tensor>,
}

/// An optimizer over a [`FlatParams`] buffer.
pub trait Optimizer: Send {
    /// One update of `params` with the flat gradient `grad` (shape `[params.len()]`) at the
    /// scheduled learning rate `lr`; each group uses `lr * lr_mult`. `guard` may scale the
    /// gradient and skip the update; the gradient is modified in place. Nothing waits for the
    /// device.
    fn step(&mut self, params: &FlatParams, grad: &Tensor, lr: f64, guard: &StepGuard) -> Result<()>;
    /// The complete state as named tensors (`step`, `layout`, then the optimizer's flat
    /// buffers), ready for safetensors. The tensors share memory with the live state: copy
    /// them before the next `step` if they are written in the background.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores what [`Optimizer::state`] returned, bit-exactly. Validates every name, shape,
    /// dtype and the parameter layout before changing anything.
    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()>;
    /// Steps applied so far (skipped ones not counted). Reads the device's counter: a sync.
    fn steps(&self) -> u64;
    /// `adamw`, `sgd` or `lars`.
    fn name(&self) -> &'static str;
}

/// An optimizer's state as a checkpoint keeps it: flat tensors in row-major order per parameter
/// ([`FlatParams::to_canonical`]), so it restores whatever memory format the parameters have then.
pub fn saved_state(optimizer: &dyn Optimizer, params: &FlatParams) -> Result<Vec<(String, Tensor)>> {
    let len = params.len();
    optimizer
        .state()
        .into_iter()
        .map(|(n, t)| Ok((n, if t.size() == [len] { params.to_canonical(&t)? } else { t })))
        .collect()
}

/// Restores what [`saved_state`] returned (validated by [`Optimizer::load_state`]).
pub fn load_saved_state(
    optimizer: &mut dyn Optimizer,
    params: &FlatParams,
    state: Vec<(String, Tensor)>,
) -> Result<()> {
    let len = params.len();
    let live = state
        .into_iter()
        .map(|(n, t)| {
            let flat_like = t.size() == [len] && t.kind() == Kind::Float;
            Ok((n, if flat_like { params.from_canonical(&t)? } else { t }))
        })
        .collect::<Result<Vec<_>>>()?;
    optimizer.load_state(live)
}

/// Which optimizer and its hyper-parameters (the learning rate comes from the schedule).
/// In TOML: `[optimizer]` with `name = "adamw" | "sgd" | "lars"` and that optimizer's fields;
/// omitted fields take the defaults shown on each config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
    Sgd(SgdConfig),
    Lars(LarsConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::AdamW(AdamWConfig::default())
    }
}

impl OptimizerConfig {
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::AdamW(_) => "adamw",
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::Lars(_) => "lars",
        }
    }

    /// The configured weight decay, for [`crate::default_groups`]: the optimizers themselves
    /// use each group's own `weight_decay`.
    pub fn weight_decay(&self) -> f64 {
        match self {
            OptimizerConfig::AdamW(c) => c.weight_decay,
            OptimizerConfig::Sgd(c) => c.weight_decay,
            OptimizerConfig::Lars(c) => c.weight_decay,
        }
    }

    /// Rejects out-of-range hyper-parameters, naming the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::AdamW(c) => c.validate(),
            OptimizerConfig::Sgd(c) => c.validate(),
            OptimizerConfig::Lars(c) => c.validate(),
        }
    }
}

/// Creates the configured optimizer for `params`, with zeroed state.
pub fn build(config: &OptimizerConfig, params: &FlatParams) -> Result<Box<dyn Optimizer>> {
    config.validate().map_err(|e| e.context(format!("optimizer `{}`", config.name())))?;
    Ok(match config {
        OptimizerConfig::AdamW(c) => Box::new(AdamW::new(c.clone(), params)?),
        OptimizerConfig::Sgd(c) => Box::new(Sgd::new(c.clone(), params)?),
        OptimizerConfig::Lars(c) => Box::new(Lars::new(c.clone(), params)?),
    })
}

pub(crate) fn check_range(field: &str, value: f64, lo: f64, hi: f64, hi_inclusive: bool) -> Result<()> {
    let ok = value.is_finite() && value >= lo && if hi_inclusive { value <= hi } else { value < hi };
    if !ok {
        let close = if hi_inclusive { "]" } else { ")" };
        bail!(Config, "{field} must be in [{lo}, {hi}{close}, got {value}");
    }
    Ok(())
}

/// What every optimizer shares: the step counter, the layout it was built for, and checks.
pub(crate) struct Common {
    /// Steps applied, as a 0-dim float32 on the device (what the fused kernels read), so a
    /// step skipped on the device is not counted without the host knowing of it. Exact up to
    /// 2^24 steps.
    pub step: Tensor,
    pub fingerprint: i64,
    /// What state saved before channels_last support carries for the same layout.
    pub legacy_fingerprint: i64,
    pub len: i64,
}

impl Common {
    pub fn new(params: &FlatParams) -> Result<Self> {
        let step = Tensor::f_zeros([], (Kind::Float, params.device()))?;
        let legacy_fingerprint = params.legacy_fingerprint();
        Ok(Common { step, fingerprint: params.fingerprint(), legacy_fingerprint, len: params.len() })
    }

    /// Steps applied so far (a device sync).
    pub fn steps(&self) -> u64 {
        self.step.double_value(&[]) as u64
    }

    /// Validates the call and counts the step on the device (unless the guard skips it).
    pub fn begin_step(
        &mut self,
        name: &str,
        params: &FlatParams,
        grad: &Tensor,
        lr: f64,
        guard: &StepGuard,
    ) -> Result<()> {
        if params.fingerprint() != self.fingerprint {
            bail!(Shape, "{name}: step called with parameters other than those it was built for");
        }
        if grad.size() != [self.len] || grad.kind() != Kind::Float || grad.device() != params.device() {
            bail!(
                Shape,
                "{name}: the gradient must be float32 of shape [{}] on {:?} (FlatParams::flat_grad), got {:?} {:?} on {:?}",
                self.len,
                params.device(),
                grad.kind(),
                grad.size(),
                grad.device()
            );
        }
        if !(lr.is_finite() && lr >= 0.0) {
            bail!(Config, "{name}: learning rate must be a finite number >= 0, got {lr}");
        }
        let _no_grad = tch::no_grad_guard();
        let _ = self.step.f_add_scalar_(1.0)?;
        if let Some(found_inf) = &guard.found_inf {
            let _ = self.step.f_sub_(found_inf)?;
        }
        Ok(())
    }

    /// `step` and `layout` entries; the optimizer appends its buffers.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("step".to_string(), Tensor::from(self.steps() as i64)),
            ("layout".to_string(), Tensor::from(self.fingerprint)),
        ]
    }

    /// Validates `state` against `buffers` (name → current tensor), then copies it in.
    pub fn load_state(
        &mut self,
        optimizer: &str,
        state: Vec<(String, Tensor)>,
        buffers: &mut [(&str, &mut Tensor)],
    ) -> Result<()> {
        let mut expected: Vec<&str> = vec!["step", "layout"];
        expected.extend(buffers.iter().map(|(n, _)| *n));
        let mut by_name: std::collections::HashMap<String, Tensor> = std::collections::HashMap::new();
        for (name, tensor) in state {
            if !expected.contains(&name.as_str()) {
                bail!(
                    Shape,
                    "{optimizer} state: unexpected entry `{name}` (expected {expected:?}); was it saved by another optimizer?"
                );
            }
            if by_name.insert(name.clone(), tensor).is_some() {
                bail!(Shape, "{optimizer} state: entry `{name}` given twice");
            }
        }
        if let Some(missing) = expected.iter().find(|n| !by_name.contains_key(**n)) {
            bail!(Shape, "{optimizer} state: missing entry `{missing}` (expected {expected:?})");
        }
        let scalar = |name: &str| -> Result<i64> {
            let t = &by_name[name];
            if t.kind() != Kind::Int64 || t.numel() != 1 {
                bail!(Shape, "{optimizer} state: `{name}` must be one int64, got {:?} {:?}", t.kind(), t.size());
            }
            Ok(t.f_reshape([1])?.f_int64_value(&[0])?)
        };
        let steps = scalar("step")?;
        if steps < 0 {
            bail!(Shape, "{optimizer} state: `step` is negative ({steps})");
        }
        if ![self.fingerprint, self.legacy_fingerprint].contains(&scalar("layout")?) {
            bail!(
                Shape,
                "{optimizer} state was saved for a different parameter layout (parameter names, \
                 shapes, grouping or freezing changed since); it cannot be restored onto this model"
            );
        }
        for (name, current) in buffers.iter() {
            let given = &by_name[*name];
            if given.size() != current.size() || given.kind() != current.kind() {
                bail!(
                    Shape,
                    "{optimizer} state: `{name}` has {:?} {:?}, expected {:?} {:?}",
                    given.kind(),
                    given.size(),
                    current.kind(),
                    current.size()
                );
            }
        }
        let _guard = tch::no_grad_guard();
        for (name, current) in buffers.iter_mut() {
            current.f_copy_(&by_name[*name])?;
        }
        let _ = self.step.f_fill_(steps as f64)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_by_name_with_defaults() {
        let c: OptimizerConfig = toml::from_str("name = \"adamw\"\nweight_decay = 0.05").unwrap();
        let OptimizerConfig::AdamW(a) = &c else { panic!("{c:?}") };
        assert_eq!((a.beta1, a.beta2, a.eps, a.weight_decay), (0.9, 0.999, 1e-8, 0.05));
        let c: OptimizerConfig = toml::from_str("name = \"sgd\"\nnesterov = true").unwrap();
        assert_eq!(c, OptimizerConfig::Sgd(SgdConfig { nesterov: true, ..Default::default() }));
        let c: OptimizerConfig = toml::from_str("name = \"lars\"").unwrap();
        assert_eq!(c.weight_decay(), 1e-6);
        assert_eq!(OptimizerConfig::default().name(), "adamw");
        // Round trip through JSON keeps the tag.
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"name\":\"lars\""), "{json}");
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&json).unwrap(), c);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field_named() {
        assert!(toml::from_str::<OptimizerConfig>("name = \"adam\"").is_err());
        assert!(toml::from_str::<OptimizerConfig>("name = \"adamw\"\nbeta = 0.9").is_err());
        let c: OptimizerConfig = toml::from_str("name = \"adamw\"\nbeta2 = 1.0").unwrap();
        assert!(c.validate().unwrap_err().message.contains("beta2"));
        let c: OptimizerConfig = toml::from_str("name = \"sgd\"\nmomentum = 0.0\nnesterov = true").unwrap();
        assert!(c.validate().unwrap_err().message.contains("nesterov"));
        let c: OptimizerConfig = toml::from_str("name = \"lars\"\neta = -1.0").unwrap();
        assert!(c.validate().unwrap_err().message.contains("eta"));
    }
}
