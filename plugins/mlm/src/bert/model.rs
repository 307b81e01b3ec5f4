//! BERT for masked-LM, block by block as in Hugging Face's `modeling_bert.py` (and candle's
//! `bert.rs`); parameter paths are `BertForMaskedLM`'s state-dict keys.

use super::config::{Activation, BertConfig};
use super::layers::{dropout, Embedding, LayerNorm, Linear, Params};
use pt_sdk::{PtError, Result};
use std::cell::RefCell;
use tch::{Kind, Tensor};

/// The padding mask in the form scaled-dot-product attention takes: an additive [B, 1, 1, L]
/// tensor (0 for real keys, the dtype's most negative finite value for padding) in the dtype of
/// the attention scores. Finite, as in Hugging Face: a query row whose keys are all padding gets
/// uniform weights, not NaN.
pub struct AttentionMask {
    /// Boolean [B, 1, 1, L], true for real tokens; None: no padding.
    keep: Option<Tensor>,
    additive: RefCell<Option<Tensor>>,
}

impl AttentionMask {
    /// `attention_mask` [B, L] (1 = real token; any integer, bool or float dtype).
    pub fn new(attention_mask: Option<&Tensor>) -> Result<Self> {
        let keep = match attention_mask {
            None => None,
            Some(m) => {
                let (b, l) = m.size2()?;
                Some(m.f_ne(0)?.f_view([b, 1, 1, l])?)
            }
        };
        Ok(AttentionMask { keep, additive: RefCell::new(None) })
    }

    fn for_kind(&self, kind: Kind) -> Result<Option<Tensor>> {
        let Some(keep) = &self.keep else {
            return Ok(None);
        };
        let mut cached = self.additive.borrow_mut();
        if let Some(t) = cached.as_ref().filter(|t| t.kind() == kind) {
            return Ok(Some(t.shallow_clone()));
        }
        let most_negative = match kind {
            Kind::Half => -65504.0,
            Kind::BFloat16 => -3.3895313892515355e38,
            Kind::Double => f64::MIN,
            _ => f32::MIN as f64,
        };
        let t = Tensor::f_zeros(keep.size(), (kind, keep.device()))?
            .f_masked_fill(&keep.f_logical_not()?, most_negative)?;
        *cached = Some(t.shallow_clone());
        Ok(Some(t))
    }
}

pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertEmbeddings {
            word_embeddings: Embedding::new(
                &p.sub("word_embeddings"),
                c.vocab_size,
                c.hidden_size,
                Some(c.pad_token_id),
            )?,
            position_embeddings: Embedding::new(
                &p.sub("position_embeddings"),
                c.max_position_embeddings,
                c.hidden_size,
                None,
            )?,
            token_type_embeddings: Embedding::new(
                &p.sub("token_type_embeddings"),
                c.type_vocab_size,
                c.hidden_size,
                None,
            )?,
            layer_norm: LayerNorm::new(&p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// input_ids, token_type_ids: [batch, seq] → [batch, seq, hidden]
    pub fn forward(&self, input_ids: &Tensor, token_type_ids: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let seq = input_ids.size2()?.1;
        let positions = Tensor::f_arange(seq, (Kind::Int64, input_ids.device()))?; // [seq]
        let words = self.word_embeddings.forward(input_ids)?; // [batch, seq, hidden]
                                                              // Summed in Hugging Face's order (words + types + positions) for bit-level parity.
        let xs = match token_type_ids {
            Some(tt) => words.f_add(&self.token_type_embeddings.forward(tt)?)?,
            // All segment 0: one row, broadcast.
            None => words.f_add(&self.token_type_embeddings.weight.f_get(0)?)?,
        };
        let xs = xs.f_add(&self.position_embeddings.forward(&positions)?)?;
        dropout(self.layer_norm.forward(&xs)?, self.dropout, train)
    }
}

pub struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    num_heads: i64,
    head_dim: i64,
    dropout: f64,
}

impl BertSelfAttention {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        Ok(BertSelfAttention {
            query: Linear::normal(&p.sub("query"), h, h)?,
            key: Linear::normal(&p.sub("key"), h, h)?,
            value: Linear::normal(&p.sub("value"), h, h)?,
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            dropout: c.attention_probs_dropout_prob,
        })
    }

    /// A projection of `hidden` [batch, seq, hidden] split into heads: [batch, heads, seq, head_dim].
    fn heads(&self, projection: &Linear, hidden: &Tensor) -> Result<Tensor> {
        let (b, l, _) = hidden.size3()?;
        Ok(projection.forward(hidden)?.f_view([b, l, self.num_heads, self.head_dim])?.f_transpose(1, 2)?)
    }

    /// [batch, seq, hidden] → [batch, seq, hidden]
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let (b, l, h) = hidden.size3()?;
        let q = self.heads(&self.query, hidden)?;
        let k = self.heads(&self.key, hidden)?;
        let v = self.heads(&self.value, hidden)?;
        let mask = mask.for_kind(q.kind())?; // [batch, 1, 1, seq]
        let p = if train { self.dropout } else { 0.0 };
        let ctx = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), p, false, None::<f64>, false)?;
        Ok(ctx.f_transpose(1, 2)?.f_reshape([b, l, h])?) // [batch, seq, hidden]
    }

    /// The attention weights `forward` applies (evaluation): softmax(q·kᵀ/√d + mask),
    /// [batch, heads, seq, seq], computed explicitly (SDPA does not return them).
    pub fn probabilities(&self, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        let q = self.heads(&self.query, hidden)?;
        let k = self.heads(&self.key, hidden)?;
        let scores = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_div_scalar((self.head_dim as f64).sqrt())?;
        let scores = match mask.for_kind(scores.kind())? {
            Some(m) => scores.f_add(&m)?,
            None => scores,
        };
        Ok(scores.f_softmax(-1, scores.kind())?)
    }
}

/// Dense + dropout + residual + LayerNorm after self-attention.
pub struct BertSelfOutput {
    dense: Linear,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl BertSelfOutput {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertSelfOutput {
            dense: Linear::normal(&p.sub("dense"), c.hidden_size, c.hidden_size)?,
            layer_norm: LayerNorm::new(&p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// [batch, seq, hidden] x2 → [batch, seq, hidden]
    pub fn forward(&self, hidden: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        let xs = dropout(self.dense.forward(hidden)?, self.dropout, train)?;
        self.layer_norm.forward(&xs.f_add(residual)?)
    }
}

pub struct BertAttention {
    self_attention: BertSelfAttention,
    output: BertSelfOutput,
}

impl BertAttention {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertAttention {
            self_attention: BertSelfAttention::new(&p.sub("self"), c)?,
            output: BertSelfOutput::new(&p.sub("output"), c)?,
        })
    }

    /// [batch, seq, hidden] → [batch, seq, hidden]
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let attended = self.self_attention.forward(hidden, mask, train)?;
        self.output.forward(&attended, hidden, train)
    }
}

pub struct BertIntermediate {
    dense: Linear,
    act: Activation,
}

impl BertIntermediate {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertIntermediate {
            dense: Linear::normal(&p.sub("dense"), c.hidden_size, c.intermediate_size)?,
            act: c.hidden_act,
        })
    }

    /// [batch, seq, hidden] → [batch, seq, intermediate]
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        self.act.forward(&self.dense.forward(hidden)?)
    }
}

pub struct BertOutput {
    dense: Linear,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl BertOutput {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertOutput {
            dense: Linear::normal(&p.sub("dense"), c.intermediate_size, c.hidden_size)?,
            layer_norm: LayerNorm::new(&p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// [batch, seq, intermediate], residual [batch, seq, hidden] → [batch, seq, hidden]
    pub fn forward(&self, hidden: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        let xs = dropout(self.dense.forward(hidden)?, self.dropout, train)?;
        self.layer_norm.forward(&xs.f_add(residual)?)
    }
}

pub struct BertLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl BertLayer {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertLayer {
            attention: BertAttention::new(&p.sub("attention"), c)?,
            intermediate: BertIntermediate::new(&p.sub("intermediate"), c)?,
            output: BertOutput::new(&p.sub("output"), c)?,
        })
    }

    /// [batch, seq, hidden] → [batch, seq, hidden]
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let attended = self.attention.forward(hidden, mask, train)?;
        let inner = self.intermediate.forward(&attended)?;
        self.output.forward(&inner, &attended, train)
    }
}

pub struct BertEncoder {
    layers: Vec<BertLayer>,
}

impl BertEncoder {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        let layer = p.sub("layer");
        let layers = (0..c.num_hidden_layers).map(|i| BertLayer::new(&layer.sub(i), c)).collect::<Result<_>>()?;
        Ok(BertEncoder { layers })
    }

    /// [batch, seq, hidden] → [batch, seq, hidden]
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let mut xs = hidden.shallow_clone();
        for layer in &self.layers {
            xs = layer.forward(&xs, mask, train)?;
        }
        Ok(xs)
    }

    /// The input and every layer's output, [batch, seq, hidden] each (`layers + 1` states).
    pub fn forward_states(&self, hidden: &Tensor, mask: &AttentionMask, train: bool) -> Result<Vec<Tensor>> {
        let mut states = vec![hidden.shallow_clone()];
        for layer in &self.layers {
            let next = layer.forward(states.last().expect("one state at least"), mask, train)?;
            states.push(next);
        }
        Ok(states)
    }

    /// Every layer's attention weights in evaluation: [layers, batch, heads, seq, seq].
    pub fn attention_maps(&self, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        let mut xs = hidden.shallow_clone();
        let mut maps = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            maps.push(layer.attention.self_attention.probabilities(&xs, mask)?);
            xs = layer.forward(&xs, mask, false)?;
        }
        Ok(Tensor::f_stack(&maps, 0)?)
    }
}

/// tanh(dense(hidden of [CLS])).
pub struct BertPooler {
    dense: Linear,
}

impl BertPooler {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertPooler { dense: Linear::normal(&p.sub("dense"), c.hidden_size, c.hidden_size)? })
    }

    /// [batch, seq, hidden] → [batch, hidden]
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.dense.forward(&hidden.f_select(1, 0)?)?.f_tanh()?)
    }
}

pub struct BertModel {
    pub embeddings: BertEmbeddings,
    encoder: BertEncoder,
    pub pooler: Option<BertPooler>,
}

impl BertModel {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertModel {
            embeddings: BertEmbeddings::new(&p.sub("embeddings"), c)?,
            encoder: BertEncoder::new(&p.sub("encoder"), c)?,
            pooler: if c.add_pooling_layer { Some(BertPooler::new(&p.sub("pooler"), c)?) } else { None },
        })
    }

    /// input_ids [batch, seq] → last hidden states [batch, seq, hidden]
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let mask = AttentionMask::new(attention_mask)?;
        let xs = self.embeddings.forward(input_ids, token_type_ids, train)?;
        self.encoder.forward(&xs, &mask, train)
    }

    /// The embeddings' output and every layer's, as transformers' `hidden_states`:
    /// `num_hidden_layers + 1` tensors [batch, seq, hidden], the last = [`Self::forward`].
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Vec<Tensor>> {
        let mask = AttentionMask::new(attention_mask)?;
        let xs = self.embeddings.forward(input_ids, token_type_ids, train)?;
        self.encoder.forward_states(&xs, &mask, train)
    }

    /// [layers, batch, heads, seq, seq] attention weights (evaluation mode).
    pub fn attention_maps(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mask = AttentionMask::new(attention_mask)?;
        let xs = self.embeddings.forward(input_ids, token_type_ids, false)?;
        self.encoder.attention_maps(&xs, &mask)
    }
}

/// Dense + activation + LayerNorm before the vocabulary projection.
pub struct BertPredictionHeadTransform {
    dense: Linear,
    act: Activation,
    layer_norm: LayerNorm,
}

impl BertPredictionHeadTransform {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertPredictionHeadTransform {
            dense: Linear::normal(&p.sub("dense"), c.hidden_size, c.hidden_size)?,
            act: c.hidden_act,
            layer_norm: LayerNorm::new(&p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
        })
    }

    /// [rows, hidden] → [rows, hidden]
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        self.layer_norm.forward(&self.act.forward(&self.dense.forward(hidden)?)?)
    }
}

/// `cls.predictions`: the transform, then the decoder, whose weight is the word-embedding matrix
/// (tied, not a parameter of its own) plus `cls.predictions.bias`.
pub struct BertLMPredictionHead {
    transform: BertPredictionHeadTransform,
    bias: Tensor,
}

impl BertLMPredictionHead {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertLMPredictionHead {
            transform: BertPredictionHeadTransform::new(&p.sub("transform"), c)?,
            bias: p.constant("bias", &[c.vocab_size], 0.0)?,
        })
    }

    /// hidden [rows, hidden], decoder weight [vocab, hidden] → logits [rows, vocab]
    pub fn forward(&self, hidden: &Tensor, decoder_weight: &Tensor) -> Result<Tensor> {
        Ok(self.transform.forward(hidden)?.f_linear(decoder_weight, Some(&self.bias))?)
    }
}

pub struct BertForMaskedLM {
    pub bert: BertModel,
    /// None with `mlm_head = false`.
    pub cls: Option<BertLMPredictionHead>,
}

impl BertForMaskedLM {
    pub fn new(p: &Params, c: &BertConfig) -> Result<Self> {
        Ok(BertForMaskedLM {
            bert: BertModel::new(&p.sub("bert"), c)?,
            cls: match c.mlm_head {
                true => Some(BertLMPredictionHead::new(&p.sub("cls").sub("predictions"), c)?),
                false => None,
            },
        })
    }

    /// MLM logits only for the rows of `hidden` [batch, seq, hidden] at `positions` [M] (flat
    /// indices into batch * seq): the vocabulary projection, the largest matmul, runs on M rows
    /// instead of batch * seq. → [M, vocab]
    pub fn mlm_logits(&self, hidden: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let h = hidden.size().last().copied().ok_or_else(|| PtError::shape("hidden states without dimensions"))?;
        let rows = hidden.f_reshape([-1, h])?.f_index_select(0, positions)?; // [M, hidden]
        let cls = self.cls.as_ref().ok_or_else(|| {
            PtError::config("bert: mlm_positions given, but this bert has no MLM head (mlm_head = false)")
        })?;
        cls.forward(&rows, &self.bert.embeddings.word_embeddings.weight)
    }
}
