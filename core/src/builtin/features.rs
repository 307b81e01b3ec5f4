//! Shared pieces of the transfer evaluators: walking a split in batches, frozen features at
//! the taps asked for, accuracy, and reports over several layers.

use pt_sdk::prelude::*;
use pt_sdk::taps::{request_taps, Layers};

/// What every transfer evaluator asks for: labelled `train` and `test` splits and the model's
/// `features` at `layers`; ranked by test accuracy.
pub fn transfer_info(layers: &Layers) -> EvaluatorInfo {
    EvaluatorInfo {
        splits: vec!["train".into(), "test".into()],
        needs_fields: vec!["label".into()],
        needs_outputs: layers.outputs(),
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

/// Features of the frozen model (eval mode, no grad) at each of `outputs` (one pass) and
/// labels, for up to `limit` samples.
pub fn extract(
    model: &HostModel<'_>,
    data: &HostData<'_>,
    outputs: &[String],
    limit: u64,
    batch_size: u64,
    ctx: &StepCtx,
) -> Result<(Vec<Tensor>, Tensor)> {
    let n = data.info()?.num_samples.min(if limit == 0 { u64::MAX } else { limit });
    let _guard = tch::no_grad_guard();
    model.set_train(false)?;
    let mut feats: Vec<Vec<Tensor>> = outputs.iter().map(|_| Vec::new()).collect();
    let mut labels = Vec::new();
    for idx in index_batches(n, batch_size) {
        crate::train::interrupt::check("feature extraction")?;
        let mut batch = data.get_batch(&idx, ctx)?;
        request_taps(&mut batch, outputs);
        let out = model.forward(&batch, ctx)?;
        for (name, rows) in outputs.iter().zip(&mut feats) {
            rows.push(out.require(name)?.detach().to_kind(Kind::Float));
        }
        labels.push(batch.require("label")?.to_kind(Kind::Int64));
    }
    let feats = feats.iter().map(|rows| Tensor::f_cat(rows, 0)).collect::<std::result::Result<_, _>>()?;
    Ok((feats, Tensor::f_cat(&labels, 0)?))
}

/// Frozen features at `outputs` and labels of the `train` and `test` splits.
pub struct TrainTest {
    pub train: (Vec<Tensor>, Tensor),
    pub test: (Vec<Tensor>, Tensor),
    pub classes: i64,
}

/// Frozen features and labels of the `train` and `test` splits (capped at `max_train` /
/// `max_test` samples, 0: all) and the number of classes: what linear probes and kNN start from.
pub fn extract_train_test(
    model: &HostModel<'_>,
    splits: &Splits<'_>,
    outputs: &[String],
    (max_train, max_test): (u64, u64),
    batch_size: u64,
    ctx: &StepCtx,
) -> Result<TrainTest> {
    let (train, test) = (splits.get("train")?, splits.get("test")?);
    let classes = num_classes(train, "train")?;
    let train = extract(model, train, outputs, max_train, batch_size, ctx)?;
    let test = extract(model, test, outputs, max_test, batch_size, ctx)?;
    Ok(TrainTest { train, test, classes })
}

/// One report from each layer's metrics: a single layer's as they are; several as
/// `<metric>@<layer>` with `layers` in order, and `accuracy` / `best_layer` (1-based) from
/// the layer with the highest accuracy.
pub fn per_layer_report(layers: &Layers, reports: Vec<EvalReport>) -> EvalReport {
    if !layers.several() {
        return reports.into_iter().next().unwrap_or_default();
    }
    let mut out = EvalReport { layers: layers.names().to_vec(), ..Default::default() };
    let mut best: Option<(usize, f64)> = None;
    for (i, (layer, report)) in layers.names().iter().zip(reports).enumerate() {
        let acc = report.metrics.get("accuracy").copied().unwrap_or(f64::NAN);
        if best.is_none_or(|(_, b)| acc > b || b.is_nan()) {
            best = Some((i, acc));
        }
        for (k, v) in report.metrics {
            out.metrics.insert(format!("{k}@{layer}"), v);
        }
    }
    if let Some((i, acc)) = best {
        out.metrics.insert("accuracy".into(), acc);
        out.metrics.insert("best_layer".into(), (i + 1) as f64);
    }
    out
}

/// Fraction of rows of `logits` whose argmax equals `labels`.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let correct = logits.f_argmax(-1, false)?.f_eq_tensor(labels)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?;
    Ok(correct.f_double_value(&[])?)
}
