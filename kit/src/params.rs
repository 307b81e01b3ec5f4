//! Building a model's parameters under reference-checkpoint names, initialised from
//! counter-based random numbers: the same seed gives the same weights on every device and run,
//! and adding a parameter elsewhere never changes another one (each draws from a stream keyed by
//! its full name).

use crate::rng::{derive_seed, CounterRng};
use crate::Result;
use std::cell::RefCell;
use tch::{Device, Kind, Tensor};

/// Random stream of weight initialisation (see [`crate::rng`]).
const STREAM_INIT: u64 = 0x1417;

/// What a model built: trainable parameters and buffers (e.g. BatchNorm statistics), in creation order.
#[derive(Default)]
pub struct Created {
    pub parameters: RefCell<Vec<(String, Tensor)>>,
    pub buffers: RefCell<Vec<(String, Tensor)>>,
    /// Parameter values created so far (what the memory check adds to).
    values: std::cell::Cell<u64>,
}

impl Created {
    pub fn into_parts(self) -> (Vec<(String, Tensor)>, Vec<(String, Tensor)>) {
        (self.parameters.into_inner(), self.buffers.into_inner())
    }
}

/// Creates tensors under a dotted name prefix (`layer1.0.conv1`) and records them in [`Created`].
pub struct Params<'a> {
    prefix: String,
    seed: u64,
    /// Default standard deviation of [`Params::normal`].
    std: f64,
    device: Device,
    created: &'a Created,
}

impl<'a> Params<'a> {
    pub fn new(seed: u64, std: f64, device: Device, created: &'a Created) -> Self {
        Params { prefix: String::new(), seed, std, device, created }
    }

    pub fn sub(&self, name: impl ToString) -> Params<'a> {
        Params {
            prefix: self.path(&name.to_string()),
            seed: self.seed,
            std: self.std,
            device: self.device,
            created: self.created,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The full dotted name of `name` under this prefix.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn stream(&self, name: &str) -> CounterRng {
        CounterRng::new(self.seed, &[STREAM_INIT, name_hash(&self.path(name))])
    }

    /// The number of values of a `dims` parameter, checked before anything is allocated: dims
    /// are non-negative and the parameters so far plus this one fit in the machine's memory.
    fn reserve(&self, name: &str, dims: &[i64]) -> Result<usize> {
        let path = self.path(name);
        let n = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
        let Some(n) = n.and_then(|n| usize::try_from(n).ok()) else {
            return Err(crate::PtError::config(format!("{path}: shape {dims:?} is negative or too large")));
        };
        let total = self.created.values.get().saturating_add(n as u64);
        crate::memory::check_parameters(
            &format!("{path} {dims:?}"),
            total as f64,
            "the architecture's sizes (width, hidden size, layers, classes)",
        )?;
        self.created.values.set(total);
        Ok(n)
    }

    fn add(&self, name: &str, dims: &[i64], values: Vec<f32>) -> Result<Tensor> {
        let t = Tensor::f_from_slice(&values)?.f_view(dims)?.f_to_device(self.device)?.set_requires_grad(true);
        self.created.parameters.borrow_mut().push((self.path(name), t.shallow_clone()));
        Ok(t)
    }

    /// Normal(0, default std). `zero_row` is left at zero (an embedding's padding row).
    pub fn normal(&self, name: &str, dims: &[i64], zero_row: Option<i64>) -> Result<Tensor> {
        self.normal_std(name, dims, self.std, zero_row)
    }

    /// Normal(0, `std`) by Box-Muller over the parameter's own stream.
    pub fn normal_std(&self, name: &str, dims: &[i64], std: f64, zero_row: Option<i64>) -> Result<Tensor> {
        let n = self.reserve(name, dims)?;
        let mut rng = self.stream(name);
        let mut values = Vec::with_capacity(n + 1);
        while values.len() < n {
            let u1 = 1.0 - rng.next_f64(); // (0, 1]: ln is finite
            let u2 = rng.next_f64();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let theta = std::f64::consts::TAU * u2;
            values.push((r * theta.cos()) as f32);
            values.push((r * theta.sin()) as f32);
        }
        values.truncate(n);
        if let Some(row) = zero_row.filter(|_| n > 0) {
            let width = n / dims[0] as usize;
            values[row as usize * width..(row as usize + 1) * width].fill(0.0);
        }
        self.add(name, dims, values)
    }

    /// Uniform(-bound, bound) (PyTorch's default `nn.Linear` init uses bound = 1/sqrt(fan_in)).
    pub fn uniform(&self, name: &str, dims: &[i64], bound: f64) -> Result<Tensor> {
        let n = self.reserve(name, dims)?;
        let mut rng = self.stream(name);
        let values = (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
        self.add(name, dims, values)
    }

    pub fn constant(&self, name: &str, dims: &[i64], value: f32) -> Result<Tensor> {
        self.add(name, dims, vec![value; self.reserve(name, dims)?])
    }

    /// A non-trainable tensor saved with the model (running statistics, counters).
    pub fn buffer(&self, name: &str, dims: &[i64], value: f64, kind: Kind) -> Result<Tensor> {
        let t = Tensor::f_full(dims, value, (kind, self.device))?;
        self.created.buffers.borrow_mut().push((self.path(name), t.shallow_clone()));
        Ok(t)
    }
}

/// `nn.Linear(in, out)` with PyTorch's default initialisation (weight and bias uniform in
/// ±1/sqrt(in)): heads and projectors that follow PyTorch references.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(p: &Params, cin: i64, cout: i64) -> Result<Self> {
        let bound = 1.0 / (cin as f64).sqrt();
        Ok(Linear { weight: p.uniform("weight", &[cout, cin], bound)?, bias: p.uniform("bias", &[cout], bound)? })
    }

    /// Weight normal(0, the builder's std), bias zero: transformers' `_init_weights` for `nn.Linear`.
    pub fn normal(p: &Params, cin: i64, cout: i64) -> Result<Self> {
        Ok(Linear { weight: p.normal("weight", &[cout, cin], None)?, bias: p.constant("bias", &[cout], 0.0)? })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_linear(&self.weight, Some(&self.bias))?)
    }
}

/// `nn.LayerNorm(dim, eps)` over the last dimension, weight 1 and bias 0.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(p: &Params, dim: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm { weight: p.constant("weight", &[dim], 1.0)?, bias: p.constant("bias", &[dim], 0.0)?, eps })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_layer_norm([self.weight.size()[0]], Some(&self.weight), Some(&self.bias), self.eps, true)?)
    }
}

/// Dropout in training with `p > 0`; the identity otherwise (no kernel launched).
pub fn dropout(xs: Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !train || p == 0.0 {
        return Ok(xs);
    }
    Ok(xs.f_dropout(p, true)?)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(derive_seed(0, &[name.len() as u64]), |h, b| derive_seed(h, &[b as u64]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_nest_and_draws_depend_only_on_the_name() {
        let (a, b) = (Created::default(), Created::default());
        let pa = Params::new(3, 0.02, Device::Cpu, &a);
        let x = pa.sub("encoder").sub(0).normal("weight", &[4, 4], None).unwrap();
        let pb = Params::new(3, 0.02, Device::Cpu, &b);
        let _ = pb.constant("other", &[2], 1.0).unwrap();
        let y = pb.sub("encoder.0").normal("weight", &[4, 4], None).unwrap();
        assert_eq!(a.parameters.borrow()[0].0, "encoder.0.weight");
        assert!(x.equal(&y));
        assert!(x.requires_grad());
        let u = pa.uniform("u", &[1000], 0.5).unwrap();
        assert!(u.abs().max().double_value(&[]) <= 0.5);
        let buf = pa.buffer("running_mean", &[3], 0.0, Kind::Float).unwrap();
        assert!(!buf.requires_grad());
        assert_eq!(a.buffers.borrow()[0].0, "running_mean");
    }
}
