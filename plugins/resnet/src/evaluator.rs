//! `classification`: top-1 / top-k accuracy, cross-entropy and a confusion matrix of the model's
//! own `logits` on a held-out split (the host draws the matrix as a PNG in the run directory).

use pt_sdk::prelude::*;
use pt_sdk::ConfusionMatrix;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ClassificationConfig {
    /// samples per forward pass
    #[config(default = 256, min = 1)]
    pub batch_size: u64,
    /// evaluate at most N samples of the split (0: all)
    pub max_samples: u64,
    /// k of the top-k accuracy (top-1 is always reported)
    #[config(default = 5, min = 1)]
    pub top_k: i64,
}

pub struct Classification {
    cfg: ClassificationConfig,
}

impl Component for Classification {
    const NAME: &'static str = "classification";
    const ABOUT: &'static str = "top-1/top-k accuracy, loss and confusion matrix of `logits` on the test split";
    type Config = ClassificationConfig;
    fn new(cfg: ClassificationConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(Classification { cfg })
    }
}

impl Evaluator for Classification {
    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            splits: vec!["test".into()],
            needs_fields: vec!["label".into()],
            needs_outputs: vec!["logits".into()],
            primary_metric: Some("accuracy".into()),
            higher_is_better: true,
        }
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let test = splits.get("test")?;
        let info = test.info()?;
        let classes = info.classes.len() as i64;
        if classes == 0 {
            bail!(Config, "the 'test' split does not name its classes: classification needs a labelled dataset");
        }
        let n = if self.cfg.max_samples == 0 { info.num_samples } else { info.num_samples.min(self.cfg.max_samples) };
        let _no_grad = tch::no_grad_guard();
        model.set_train(false)?;
        let k = self.cfg.top_k.min(classes);
        let (mut top1, mut topk, mut loss_sum) = (0i64, 0i64, 0f64);
        let mut confusion = Tensor::f_zeros([classes * classes], (Kind::Int64, Device::Cpu))?;
        for start in (0..n).step_by(self.cfg.batch_size as usize) {
            let idx: Vec<u64> = (start..(start + self.cfg.batch_size).min(n)).collect();
            let (logits, labels) = forward_batch(model, test, &idx, ctx)?;
            if logits.size().last() != Some(&classes) {
                bail!(Shape, "logits have {:?} columns but the split has {classes} classes", logits.size());
            }
            let pred = logits.f_topk(k, -1, true, true)?.1; // [B, k]
            let hit = pred.f_eq_tensor(&labels.f_unsqueeze(1)?)?; // [B, k]
            top1 += hit.f_select(1, 0)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
            topk += hit.f_any_dim(1, false)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
            loss_sum += logits
                .f_cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Sum, -100, 0.0)?
                .f_double_value(&[])?;
            let cell = labels.f_mul_scalar(classes)?.f_add(&pred.f_select(1, 0)?)?.f_to_device(Device::Cpu)?;
            confusion = confusion.f_index_add(0, &cell, &Tensor::f_ones_like(&cell)?)?;
        }
        let total = n.max(1) as f64;
        let counts: Vec<i64> = Vec::<i64>::try_from(&confusion)?;
        let matrix = counts.chunks(classes as usize).map(|row| row.iter().map(|&c| c as u64).collect()).collect();
        let mut report = EvalReport::default()
            .metric("accuracy", top1 as f64 / total)
            .metric(&format!("top{k}_accuracy"), topk as f64 / total)
            .metric("loss", loss_sum / total)
            .metric("samples", n as f64);
        report.confusion = Some(ConfusionMatrix { classes: info.classes.clone(), counts: matrix });
        Ok(report)
    }
}

/// One batch of a split through the model: (`logits` in fp32, `label` as int64) on the model's device.
fn forward_batch(model: &HostModel<'_>, data: &HostData<'_>, idx: &[u64], ctx: &StepCtx) -> Result<(Tensor, Tensor)> {
    let batch = data.get_batch(idx, ctx)?;
    let out = model.forward(&batch, ctx)?;
    let logits = out.require("logits")?.f_to_kind(Kind::Float)?;
    let labels = batch.require("label")?.f_to_kind(Kind::Int64)?.f_to_device(logits.device())?;
    Ok((logits, labels))
}
