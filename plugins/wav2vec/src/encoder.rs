//! The transformer context network: a convolutional relative positional embedding, then post-LN
//! (base) or pre-LN ("stable", large) transformer layers, with transformers' `Wav2Vec2Encoder`
//! names (`encoder.pos_conv_embed.conv`, `encoder.layer_norm`, `encoder.layers.N.…`).

use crate::config::Wav2Vec2Config;
use pt_kit::params::{dropout, LayerNorm, Linear, Params};
use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;

/// Random stream of LayerDrop (see `pt_sdk::rng`).
const STREAM_LAYERDROP: u64 = 0x4C44;

/// Grouped conv over time with weight normalisation (`weight = g · v / ‖v‖`, the norm taken per
/// kernel position, `dim=2`), an even kernel's extra output frame dropped, then GELU. Stored as
/// `torch.nn.utils.parametrizations.weight_norm` stores it: `parametrizations.weight.original0`
/// (g, [1, 1, kernel]) and `original1` (v).
pub struct PositionalConvEmbedding {
    g: Tensor,
    v: Tensor,
    bias: Tensor,
    kernel: i64,
    groups: i64,
}

impl PositionalConvEmbedding {
    fn new(p: &Params, c: &Wav2Vec2Config) -> Result<Self> {
        let (h, k, groups) = (c.hidden_size, c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups);
        let conv = p.sub("conv");
        // transformers: normal(0, 2 / sqrt(kernel · in_channels)), then g = ‖v‖ so weight = v.
        let std = 2.0 * (1.0 / (k * h) as f64).sqrt();
        let v = conv.normal_std("parametrizations.weight.original1", &[h, h / groups, k], std, None)?;
        let norm = tch::no_grad(|| v.f_norm_scalaropt_dim(2.0, [0i64, 1].as_slice(), true))?; // [1, 1, k]
        let mut g = conv.constant("parametrizations.weight.original0", &[1, 1, k], 0.0)?;
        tch::no_grad(|| g.f_copy_(&norm))?;
        let bias = conv.constant("bias", &[h], 0.0)?;
        Ok(PositionalConvEmbedding { g, v, bias, kernel: k, groups })
    }

    /// [batch, frames, hidden] → [batch, frames, hidden]
    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let norm = self.v.f_norm_scalaropt_dim(2.0, [0i64, 1].as_slice(), true)?;
        let weight = self.v.f_mul(&self.g.f_div(&norm)?)?;
        let xs = hidden.f_transpose(1, 2)?; // [batch, hidden, frames]
        let xs = xs.f_conv1d(&weight, Some(&self.bias), [1], [self.kernel / 2], [1], self.groups)?;
        let frames = hidden.size()[1];
        let xs = if self.kernel % 2 == 0 { xs.f_narrow(2, 0, frames)? } else { xs };
        Ok(xs.f_gelu("none")?.f_transpose(1, 2)?)
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: i64,
    dropout: f64,
}

impl Attention {
    fn new(p: &Params, c: &Wav2Vec2Config) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Attention {
            q_proj: Linear::normal(&p.sub("q_proj"), h, h)?,
            k_proj: Linear::normal(&p.sub("k_proj"), h, h)?,
            v_proj: Linear::normal(&p.sub("v_proj"), h, h)?,
            out_proj: Linear::normal(&p.sub("out_proj"), h, h)?,
            heads: c.num_attention_heads,
            dropout: c.attention_dropout,
        })
    }

    /// [batch, frames, hidden] → same; `keep` [batch, 1, 1, frames] (true = a real frame).
    fn forward(&self, xs: &Tensor, keep: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let (b, t, h) = xs.size3()?;
        let split = |x: Tensor| -> Result<Tensor> {
            Ok(x.f_view([b, t, self.heads, h / self.heads])?.f_transpose(1, 2)?)
            // [batch, heads, frames, head_dim]
        };
        let q = split(self.q_proj.forward(xs)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let p = if train { self.dropout } else { 0.0 };
        let ctx = Tensor::f_scaled_dot_product_attention(&q, &k, &v, keep, p, false, None::<f64>, false)?;
        self.out_proj.forward(&ctx.f_transpose(1, 2)?.f_reshape([b, t, h])?)
    }
}

struct FeedForward {
    intermediate_dense: Linear,
    output_dense: Linear,
    activation_dropout: f64,
    hidden_dropout: f64,
}

impl FeedForward {
    fn new(p: &Params, c: &Wav2Vec2Config) -> Result<Self> {
        Ok(FeedForward {
            intermediate_dense: Linear::normal(&p.sub("intermediate_dense"), c.hidden_size, c.intermediate_size)?,
            output_dense: Linear::normal(&p.sub("output_dense"), c.intermediate_size, c.hidden_size)?,
            activation_dropout: c.activation_dropout,
            hidden_dropout: c.hidden_dropout,
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.intermediate_dense.forward(xs)?.f_gelu("none")?; // [batch, frames, ffn]
        let xs = dropout(xs, self.activation_dropout, train)?;
        dropout(self.output_dense.forward(&xs)?, self.hidden_dropout, train)
    }
}

struct EncoderLayer {
    attention: Attention,
    layer_norm: LayerNorm,
    feed_forward: FeedForward,
    final_layer_norm: LayerNorm,
    hidden_dropout: f64,
    pre_ln: bool,
}

impl EncoderLayer {
    fn new(p: &Params, c: &Wav2Vec2Config) -> Result<Self> {
        Ok(EncoderLayer {
            attention: Attention::new(&p.sub("attention"), c)?,
            layer_norm: LayerNorm::new(&p.sub("layer_norm"), c.hidden_size, c.layer_norm_eps)?,
            feed_forward: FeedForward::new(&p.sub("feed_forward"), c)?,
            final_layer_norm: LayerNorm::new(&p.sub("final_layer_norm"), c.hidden_size, c.layer_norm_eps)?,
            hidden_dropout: c.hidden_dropout,
            pre_ln: c.do_stable_layer_norm,
        })
    }

    fn forward(&self, xs: &Tensor, keep: Option<&Tensor>, train: bool) -> Result<Tensor> {
        if self.pre_ln {
            let attn = self.attention.forward(&self.layer_norm.forward(xs)?, keep, train)?;
            let xs = xs.f_add(&dropout(attn, self.hidden_dropout, train)?)?;
            return Ok(xs.f_add(&self.feed_forward.forward(&self.final_layer_norm.forward(&xs)?, train)?)?);
        }
        let attn = self.attention.forward(xs, keep, train)?;
        let xs = self.layer_norm.forward(&xs.f_add(&dropout(attn, self.hidden_dropout, train)?)?)?;
        let ff = self.feed_forward.forward(&xs, train)?;
        self.final_layer_norm.forward(&xs.f_add(&ff)?)
    }
}

pub struct Encoder {
    pos_conv_embed: PositionalConvEmbedding,
    layer_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    hidden_dropout: f64,
    layerdrop: f64,
    pre_ln: bool,
}

impl Encoder {
    pub fn new(p: &Params, c: &Wav2Vec2Config) -> Result<Self> {
        let layers =
            (0..c.num_hidden_layers).map(|i| EncoderLayer::new(&p.sub("layers").sub(i), c)).collect::<Result<_>>()?;
        Ok(Encoder {
            pos_conv_embed: PositionalConvEmbedding::new(&p.sub("pos_conv_embed"), c)?,
            layer_norm: LayerNorm::new(&p.sub("layer_norm"), c.hidden_size, c.layer_norm_eps)?,
            layers,
            hidden_dropout: c.hidden_dropout,
            layerdrop: c.layerdrop,
            pre_ln: c.do_stable_layer_norm,
        })
    }

    /// [batch, frames, hidden] → same. `frame_mask` [batch, frames] (true = real frame): padded
    /// frames are zeroed before the positional convolution and never attended to. LayerDrop's
    /// draws come from (seed, step, layer), so a resumed run skips the same layers.
    pub fn forward(&self, hidden: &Tensor, frame_mask: Option<&Tensor>, ctx: &StepCtx, train: bool) -> Result<Tensor> {
        self.run(hidden, frame_mask, ctx, train, None)
    }

    /// As [`Self::forward`], with transformers' `hidden_states`: the input to the first layer
    /// and each layer's output (`layers + 1` states; with the stable layer norm the last is
    /// normalised, as in transformers).
    pub fn forward_states(
        &self,
        hidden: &Tensor,
        frame_mask: Option<&Tensor>,
        ctx: &StepCtx,
        train: bool,
    ) -> Result<Vec<Tensor>> {
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        let last = self.run(hidden, frame_mask, ctx, train, Some(&mut states))?;
        states.push(last);
        Ok(states)
    }

    fn run(
        &self,
        hidden: &Tensor,
        frame_mask: Option<&Tensor>,
        ctx: &StepCtx,
        train: bool,
        mut states: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let (mut xs, keep) = match frame_mask {
            Some(m) => {
                let xs = hidden.f_mul(&m.f_unsqueeze(-1)?.f_to_kind(hidden.kind())?)?;
                let (b, t) = m.size2()?;
                (xs, Some(m.f_view([b, 1, 1, t])?))
            }
            None => (hidden.shallow_clone(), None),
        };
        xs = xs.f_add(&self.pos_conv_embed.forward(&xs)?)?;
        if !self.pre_ln {
            xs = self.layer_norm.forward(&xs)?;
        }
        xs = dropout(xs, self.hidden_dropout, train)?;
        let mut rng = CounterRng::new(ctx.seed, &[STREAM_LAYERDROP, ctx.step, ctx.epoch]);
        for layer in &self.layers {
            if let Some(states) = states.as_deref_mut() {
                states.push(xs.shallow_clone());
            }
            let skip = train && self.layerdrop > 0.0 && rng.next_f64() < self.layerdrop;
            if !skip {
                xs = layer.forward(&xs, keep.as_ref(), train)?;
            }
        }
        if self.pre_ln {
            xs = self.layer_norm.forward(&xs)?;
        }
        Ok(xs)
    }
}
