//! The building blocks (Linear, LayerNorm, Embedding) over tch tensors with fallible ops, and
//! their parameters: created in a `VarStore` under Hugging Face names, initialised like
//! Hugging Face's BERT (normal(0, std) weights, zero biases, LayerNorm 1/0) from counter-based
//! random numbers, so the same seed gives the same weights on every device and run.

use pt_sdk::rng::{derive_seed, CounterRng};
use pt_sdk::Result;
use std::cell::RefCell;
use tch::{nn, Device, Tensor};

/// Random stream of weight initialisation (see `pt_sdk::rng`).
const STREAM_INIT: u64 = 0x1417;

/// Creates parameters under a `VarStore` path and records them in creation order.
pub struct Params<'a> {
    path: nn::Path<'a>,
    seed: u64,
    std: f64,
    device: Device,
    created: &'a RefCell<Vec<(String, Tensor)>>,
}

impl<'a> Params<'a> {
    pub fn new(
        root: nn::Path<'a>,
        seed: u64,
        std: f64,
        device: Device,
        created: &'a RefCell<Vec<(String, Tensor)>>,
    ) -> Self {
        Params { path: root, seed, std, device, created }
    }

    pub fn sub(&self, name: impl ToString) -> Params<'a> {
        Params { path: self.path.sub(name), seed: self.seed, std: self.std, device: self.device, created: self.created }
    }

    fn add(&self, name: &str, dims: &[i64], values: Vec<f32>) -> Result<Tensor> {
        let full = self.path.path(name);
        let t = Tensor::from_slice(&values).f_view(dims)?.f_to_device(self.device)?;
        let t = self.path.add(name, t, true);
        self.created.borrow_mut().push((full, t.shallow_clone()));
        Ok(t)
    }

    /// Normal(0, std) from a stream keyed by the parameter's full name, so adding a parameter
    /// elsewhere never changes this one. `zero_row` is left at zero (an embedding's padding row).
    pub fn normal(&self, name: &str, dims: &[i64], zero_row: Option<i64>) -> Result<Tensor> {
        let n: i64 = dims.iter().product();
        let mut rng = CounterRng::new(self.seed, &[STREAM_INIT, name_hash(&self.path.path(name))]);
        let mut values = Vec::with_capacity(n as usize);
        while values.len() < n as usize {
            // Box-Muller: two independent normals from two uniforms.
            let u1 = 1.0 - rng.next_f64(); // (0, 1]: ln is finite
            let u2 = rng.next_f64();
            let r = (-2.0 * u1.ln()).sqrt() * self.std;
            let theta = std::f64::consts::TAU * u2;
            values.push((r * theta.cos()) as f32);
            values.push((r * theta.sin()) as f32);
        }
        values.truncate(n as usize);
        if let Some(row) = zero_row {
            let width = (n / dims[0]) as usize;
            values[row as usize * width..(row as usize + 1) * width].fill(0.0);
        }
        self.add(name, dims, values)
    }

    pub fn constant(&self, name: &str, dims: &[i64], value: f32) -> Result<Tensor> {
        self.add(name, dims, vec![value; dims.iter().product::<i64>() as usize])
    }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(derive_seed(0, &[name.len() as u64]), |h, b| derive_seed(h, &[b as u64]))
}

/// `nn.Linear`: `weight` [out, in], `bias` [out].
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(p: &Params, in_dim: i64, out_dim: i64) -> Result<Self> {
        Ok(Linear { weight: p.normal("weight", &[out_dim, in_dim], None)?, bias: p.constant("bias", &[out_dim], 0.0)? })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_linear(&self.weight, Some(&self.bias))?)
    }
}

/// `nn.LayerNorm` over the last dimension.
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

/// `nn.Embedding`; the `padding_idx` row starts at zero and gets no gradient, as in PyTorch.
pub struct Embedding {
    pub weight: Tensor,
    padding_idx: Option<i64>,
}

impl Embedding {
    pub fn new(p: &Params, num: i64, dim: i64, padding_idx: Option<i64>) -> Result<Self> {
        Ok(Embedding { weight: p.normal("weight", &[num, dim], padding_idx)?, padding_idx })
    }

    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(&self.weight, ids, self.padding_idx.unwrap_or(-1), false, false)?)
    }
}

pub fn dropout(xs: Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !train || p == 0.0 {
        return Ok(xs);
    }
    Ok(xs.f_dropout(p, true)?)
}
