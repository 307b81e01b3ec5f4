//! The building blocks (Linear, LayerNorm, Embedding) over tch tensors with fallible ops, their
//! parameters created through `pt_sdk::params` under Hugging Face names and initialised like
//! Hugging Face's BERT (normal(0, std) weights, zero biases, LayerNorm 1/0).

pub use pt_sdk::params::Params;
use pt_sdk::Result;
use tch::Tensor;

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
