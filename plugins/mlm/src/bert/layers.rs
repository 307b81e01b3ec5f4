//! The building blocks (Embedding here; Linear and LayerNorm from the SDK) over tch tensors with fallible ops, their
//! parameters created through `pt_kit::params` under Hugging Face names and initialised like
//! Hugging Face's BERT (normal(0, std) weights, zero biases, LayerNorm 1/0).

/// `Linear::normal` is BERT's init (normal(0, initializer_range), zero bias); LayerNorm 1/0.
pub use pt_kit::params::{dropout, LayerNorm, Linear, Params};
use pt_sdk::Result;
use tch::Tensor;

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
