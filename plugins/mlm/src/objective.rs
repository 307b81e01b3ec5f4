//! `mlm`: BERT's masked-language-model objective. `prepare` corrupts the batch (masks drawn per
//! sample on the CPU); `loss` is the cross-entropy at the chosen positions.

use crate::bert::{ids_outside_vocab, IDS_CHECKED};
use crate::masking::{Masked, Masking, MaskingConfig, STREAM_MLM};
use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;
use tch::Reduction;

pub struct Mlm {
    masking: Masking,
}

impl Component for Mlm {
    const NAME: &'static str = "mlm";
    const ABOUT: &'static str = "masked-language modelling (BERT's 80/10/10 masking, loss on masked tokens only)";
    type Config = MaskingConfig;

    fn new(config: MaskingConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(Mlm { masking: Masking::new(config, "mlm")? })
    }
}

/// A [B, L] (or [B]) integer tensor as a CPU `Vec<i64>`, row-major.
pub(crate) fn to_cpu_vec(t: &Tensor) -> Result<Vec<i64>> {
    let flat = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?;
    Ok(Vec::<i64>::try_from(&flat)?)
}

/// Masks `batch` (on any device) with row r's stream from `rng_for_row`: replaces `input_ids`,
/// adds `mlm_positions` and `mlm_labels`, and drops an `attention_mask` without padding so
/// attention can take its fastest (mask-free) kernel.
pub(crate) fn mask_batch(
    masking: &Masking,
    mut batch: Tensors,
    rng_for_row: impl Fn(usize) -> CounterRng,
) -> Result<Tensors> {
    let ids = batch.require("input_ids")?;
    let (rows, len) = ids
        .size2()
        .map_err(|_| PtError::shape(format!("mlm: input_ids must be [batch, seq], got {:?}", ids.size())))?;
    let device = ids.device();
    let mut cpu_ids = to_cpu_vec(ids)?;
    let real = match batch.get("attention_mask") {
        Some(m) => Some(to_cpu_vec(m)?),
        None => None,
    };
    if real.as_ref().is_some_and(|r| r.len() != cpu_ids.len()) {
        return Err(PtError::shape("mlm: attention_mask and input_ids differ in shape"));
    }
    // Checked here, where the ids are host values, so the architecture need not read them back.
    if let Some(vocab) = masking.config().vocab_size {
        if let Some((min, max)) = pt_kit::text::ids_outside(&cpu_ids, vocab) {
            return Err(ids_outside_vocab(min, max, vocab));
        }
        batch.insert(IDS_CHECKED, Tensor::f_from_slice(&[1i64])?);
    }
    let Masked { positions, labels } = masking.apply(&mut cpu_ids, len as usize, real.as_deref(), rng_for_row)?;
    let on_device = |v: &[i64]| Tensor::from_slice(v).f_to_device(device);
    batch.insert("input_ids", on_device(&cpu_ids)?.f_view([rows, len])?);
    batch.insert("mlm_positions", on_device(&positions)?);
    batch.insert("mlm_labels", on_device(&labels)?);
    if real.is_some_and(|r| r.iter().all(|&x| x != 0)) {
        batch.remove("attention_mask");
    }
    Ok(batch)
}

/// [`mask_batch`] with sample i's mask from the stream (seed, `stream`, epoch, `sample_index[i]`):
/// re-drawn every epoch and independent of batching. Needs `sample_index` [B] (the host's).
pub(crate) fn mask_by_sample(
    masking: &Masking,
    batch: Tensors,
    ctx: &StepCtx,
    stream: u64,
    who: &str,
) -> Result<Tensors> {
    let index = to_cpu_vec(batch.require("sample_index")?)?;
    let rows = batch.require("input_ids")?.size().first().copied().unwrap_or(0);
    if index.len() as i64 != rows {
        return Err(PtError::shape(format!("{who}: sample_index has {} entries for {rows} samples", index.len())));
    }
    mask_batch(masking, batch, |row| CounterRng::new(ctx.seed, &[stream, ctx.epoch, index[row] as u64]))
}

impl Objective for Mlm {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec!["input_ids".into()],
            needs_outputs: vec!["mlm_logits".into()],
            adds_fields: vec!["mlm_positions".into(), "mlm_labels".into()],
            metrics: vec!["mlm_accuracy".into(), "masked_tokens".into()],
            // Masks come from each sample's counter stream: drawn on the loader thread.
            prepare_on_host: true,
            ..Default::default()
        }
    }

    /// Needs `sample_index` [B] (added by the host): sample i's mask comes from the stream
    /// (seed, STREAM_MLM, epoch, i), so it is re-drawn every epoch and independent of batching.
    fn prepare(&self, batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        mask_by_sample(&self.masking, batch, ctx, STREAM_MLM, "mlm")
    }

    fn loss(&self, batch: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<LossOutput> {
        let logits = outputs.require("mlm_logits")?; // [M, vocab]
        let labels = batch.require("mlm_labels")?; // [M]
        if logits.dim() != 2 || logits.size()[0] != labels.size()[0] {
            return Err(PtError::shape(format!(
                "mlm: mlm_logits {:?} do not match mlm_labels {:?}",
                logits.size(),
                labels.size()
            )));
        }
        // In fp32 even under autocast: log-softmax over the vocabulary needs the range.
        let loss =
            logits.f_to_kind(Kind::Float)?.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)?;
        let accuracy =
            logits.detach().f_argmax(-1, false)?.f_eq_tensor(labels)?.f_to_kind(Kind::Float)?.f_mean(None)?;
        let masked = Tensor::from(labels.size()[0] as f32);
        Ok(LossOutput { loss, metrics: vec![("mlm_accuracy".into(), accuracy), ("masked_tokens".into(), masked)] })
    }
}
