//! Shared pieces of the transfer evaluators: walking a split in batches, frozen features,
//! accuracy.

use pt_sdk::prelude::*;

/// What every transfer evaluator asks for: labelled `train` and `test` splits and the model's
/// `features`; ranked by test accuracy.
pub fn transfer_info() -> EvaluatorInfo {
    EvaluatorInfo {
        splits: vec!["train".into(), "test".into()],
        needs_fields: vec!["label".into()],
        needs_outputs: vec!["features".into()],
        primary_metric: Some("accuracy".into()),
        higher_is_better: true,
    }
}

/// Batches of sample indices covering `0..n` in order.
pub fn index_batches(n: u64, batch_size: u64) -> impl Iterator<Item = Vec<u64>> {
    let bs = batch_size.max(1);
    (0..n.div_ceil(bs)).map(move |b| (b * bs..((b + 1) * bs).min(n)).collect())
}

pub fn num_classes(data: &HostData<'_>, split: &str) -> Result<i64> {
    let info = data.info()?;
    if !info.fields.iter().any(|f| f.name == "label") {
        bail!(Config, "the '{split}' split has no 'label' field: transfer evaluators need a labelled dataset");
    }
    if info.classes.is_empty() {
        bail!(Config, "the '{split}' split does not name its classes (DatasetInfo.classes)");
    }
    Ok(info.classes.len() as i64)
}

/// Features of the frozen model (eval mode, no grad) and labels for up to `limit` samples.
pub fn extract(
    model: &HostModel<'_>,
    data: &HostData<'_>,
    limit: u64,
    batch_size: u64,
    ctx: &StepCtx,
) -> Result<(Tensor, Tensor)> {
    let n = data.info()?.num_samples.min(if limit == 0 { u64::MAX } else { limit });
    let _guard = tch::no_grad_guard();
    model.set_train(false)?;
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for idx in index_batches(n, batch_size) {
        crate::train::interrupt::check("feature extraction")?;
        let batch = data.get_batch(&idx, ctx)?;
        let out = model.forward(&batch, ctx)?;
        feats.push(out.require("features")?.detach().to_kind(Kind::Float));
        labels.push(batch.require("label")?.to_kind(Kind::Int64));
    }
    Ok((Tensor::f_cat(&feats, 0)?, Tensor::f_cat(&labels, 0)?))
}

/// Frozen features and labels of the `train` and `test` splits (capped at `max_train` /
/// `max_test` samples, 0: all) and the number of classes: what linear probes and kNN start from.
pub fn extract_train_test(
    model: &HostModel<'_>,
    splits: &Splits<'_>,
    (max_train, max_test): (u64, u64),
    batch_size: u64,
    ctx: &StepCtx,
) -> Result<((Tensor, Tensor), (Tensor, Tensor), i64)> {
    let (train, test) = (splits.get("train")?, splits.get("test")?);
    let classes = num_classes(train, "train")?;
    let train = extract(model, train, max_train, batch_size, ctx)?;
    let test = extract(model, test, max_test, batch_size, ctx)?;
    Ok((train, test, classes))
}

/// Fraction of rows of `logits` whose argmax equals `labels`.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let correct = logits.f_argmax(-1, false)?.f_eq_tensor(labels)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?;
    Ok(correct.f_double_value(&[])?)
}
