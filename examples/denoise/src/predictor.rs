//! The objective's own parameters: a two-layer predictor head (Linear → GELU → Linear), named
//! like PyTorch's `nn.Sequential` (`predictor.0.weight` ...) so a checkpoint's
//! `objective.safetensors` loads into the same module in Python.

use pt_kit::params::{Created, Linear, Params};
use pt_sdk::prelude::*;

pub struct Predictor {
    first: Linear,
    second: Linear,
    /// Every tensor the layers hold (the same tensors: the trainer optimises these in place).
    created: Created,
}

impl Predictor {
    pub fn new(dim: i64, hidden: i64, seed: u64, device: Device) -> Result<Self> {
        let created = Created::default();
        let p = Params::new(seed, 0.02, device, &created).sub("predictor");
        // nn.Linear's default initialisation, from counter streams keyed by each name.
        let (first, second) = (Linear::new(&p.sub(0), dim, hidden)?, Linear::new(&p.sub(2), hidden, dim)?);
        Ok(Predictor { first, second, created })
    }

    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.created.parameters.borrow().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// [N, dim] → [N, dim].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.second.forward(&self.first.forward(x)?.f_gelu("none")?)
    }
}
