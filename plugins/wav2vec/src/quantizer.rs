//! The Gumbel-softmax product quantiser (`quantizer.weight_proj`, `quantizer.codevectors`, as
//! transformers' `Wav2Vec2GumbelVectorQuantizer`): G groups of V codewords; each frame picks one
//! codeword per group (hard one-hot forward, straight-through soft gradient in training, argmax
//! in evaluation) and the picks are concatenated.

use pt_kit::params::Params;
use pt_sdk::prelude::*;

pub struct GumbelQuantizer {
    pub weight_proj: pt_kit::params::Linear,
    /// [1, groups × vars, dim / groups]
    pub codevectors: Tensor,
    pub groups: i64,
    pub vars: i64,
}

/// What one quantisation gives.
pub struct Quantized {
    /// [frames, dim]
    pub vectors: Tensor,
    /// Σ_g exp(H(mean softmax over frames)) — what the diversity loss pushes up to G·V.
    pub prob_perplexity: Tensor,
    /// The same over the hard (argmax) choices: how many codewords are really used.
    pub code_perplexity: Tensor,
    /// [G, V] how often each codeword was the argmax choice.
    pub code_counts: Tensor,
}

/// exp of the entropy of the per-group marginal of `probs` [frames, G, V], summed over groups.
pub fn perplexity(probs: &Tensor) -> Result<Tensor> {
    let marginal = probs.f_mean_dim(Some(&[0i64][..]), false, Kind::Float)?; // [G, V]
    let entropy = marginal.f_mul(&marginal.f_add_scalar(1e-7)?.f_log()?)?.f_sum_dim_intlist(-1, false, Kind::Float)?;
    Ok(entropy.f_neg()?.f_exp()?.f_sum(Kind::Float)?)
}

impl GumbelQuantizer {
    pub fn new(p: &Params, input_dim: i64, groups: i64, vars: i64, dim: i64) -> Result<Self> {
        if groups < 1 || vars < 2 || dim % groups != 0 {
            bail!(
                Config,
                "wav2vec2: num_codevector_groups ({groups}) must be >= 1, num_codevectors_per_group ({vars}) >= 2, and codevector_dim ({dim}) a multiple of the groups"
            );
        }
        // transformers' init: weight_proj normal(0, 1) with zero bias, codevectors uniform(0, 1).
        let wp = p.sub("weight_proj");
        let weight_proj = pt_kit::params::Linear {
            weight: wp.normal_std("weight", &[groups * vars, input_dim], 1.0, None)?,
            bias: wp.constant("bias", &[groups * vars], 0.0)?,
        };
        let mut codevectors = p.uniform("codevectors", &[1, groups * vars, dim / groups], 1.0)?;
        let _ = tch::no_grad(|| codevectors.f_abs_())?;
        Ok(GumbelQuantizer { weight_proj, codevectors, groups, vars })
    }

    /// `features` [frames, input_dim] → codewords [frames, dim].
    pub fn forward(&self, features: &Tensor, temperature: f64, train: bool) -> Result<Quantized> {
        let frames = features.size()[0];
        let (g, v) = (self.groups, self.vars);
        let logits = self.weight_proj.forward(features)?.f_to_kind(Kind::Float)?.f_view([frames, g, v])?;
        let soft = logits.f_softmax(-1, Kind::Float)?; // [frames, G, V]
        let index = logits.f_argmax(-1, true)?; // [frames, G, 1]
        let hard = logits.f_zeros_like()?.f_scatter_value(-1, &index, 1.0)?;
        let choice = if train {
            // Gumbel-softmax, hard forward / soft backward (torch.nn.functional.gumbel_softmax).
            let gumbel = logits.f_empty_like()?.f_exponential_(1.0)?.f_log()?.f_neg()?;
            let y_soft = logits.f_add(&gumbel)?.f_div_scalar(temperature)?.f_softmax(-1, Kind::Float)?;
            let index = y_soft.f_argmax(-1, true)?;
            let y_hard = y_soft.f_zeros_like()?.f_scatter_value(-1, &index, 1.0)?;
            y_hard.f_sub(&y_soft.f_detach()?)?.f_add(&y_soft)?
        } else {
            hard.shallow_clone()
        };
        // Σ_v choice[f, g, v] · codebook[g, v, :] per group, as one batched matmul over groups.
        let codebook = self.codevectors.f_view([g, v, -1])?; // [G, V, dim / G]
        let picked = choice.f_to_kind(codebook.kind())?.f_transpose(0, 1)?.f_bmm(&codebook)?; // [G, frames, dim / G]
        let vectors = picked.f_transpose(0, 1)?.f_reshape([frames, -1])?; // [frames, dim]
        Ok(Quantized {
            vectors,
            prob_perplexity: perplexity(&soft)?,
            code_perplexity: tch::no_grad(|| perplexity(&hard))?,
            code_counts: hard.f_sum_dim_intlist(0, false, Kind::Float)?.f_detach()?,
        })
    }
}
