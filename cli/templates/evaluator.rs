//! `__name__`: nearest-class-mean accuracy of frozen features. Each class's mean direction is
//! taken from the `train` split's L2-normalised `features`, and each `test` sample goes to the
//! class whose mean is closest in cosine similarity: a cheap, tuning-free view of how well the
//! representation separates classes. `pt plugin new NAME --kind evaluator` wrote this file.

use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The `[[eval]]` keys (`pt plugin info __name__`).
#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct __Name__Config {
    /// Samples per forward pass.
    #[config(default = 256, min = 1)]
    pub batch_size: u64,
}

pub struct __Name__ {
    config: __Name__Config,
}

impl Component for __Name__ {
    const NAME: &'static str = "__name__";
    const ABOUT: &'static str = "nearest-class-mean accuracy of frozen features";
    type Config = __Name__Config;

    fn new(config: __Name__Config, _ctx: &CreateCtx) -> Result<Self> {
        Ok(__Name__ { config })
    }
}

impl Evaluator for __Name__ {
    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            splits: vec!["train".into(), "test".into()],
            needs_fields: vec!["label".into()],
            needs_outputs: vec!["features".into()],
            primary_metric: Some("accuracy".into()),
            higher_is_better: true,
        }
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let _no_grad = tch::no_grad_guard();
        model.set_train(false)?;
        let (train, test) = (splits.get("train")?, splits.get("test")?);
        let classes = train.info()?.classes.len() as i64;
        if classes < 2 {
            bail!(Data, "__name__ needs a labelled train split with at least 2 classes");
        }
        let (train_x, train_y) = features(model, train, self.config.batch_size, ctx)?; // [N, D], [N]
        let (test_x, test_y) = features(model, test, self.config.batch_size, ctx)?;
        let sums = Tensor::f_zeros([classes, train_x.size()[1]], (Kind::Float, train_x.device()))?
            .f_index_add(0, &train_y, &train_x)?; // [classes, D]
        let means = unit_rows(&sums)?;
        let predicted = unit_rows(&test_x)?.f_matmul(&means.f_transpose(0, 1)?)?.f_argmax(-1, false)?; // [M]
        let accuracy = predicted.f_eq_tensor(&test_y)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?;
        Ok(EvalReport::default().metric("accuracy", accuracy.f_double_value(&[])?))
    }
}

/// Every sample's `features` (float32) and `label`, in order.
fn features(model: &HostModel<'_>, data: &HostData<'_>, batch_size: u64, ctx: &StepCtx) -> Result<(Tensor, Tensor)> {
    let n = data.info()?.num_samples;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(batch_size as usize) {
        let indices: Vec<u64> = (start..(start + batch_size).min(n)).collect();
        let batch = data.get_batch(&indices, ctx)?;
        let outputs = model.forward(&batch, ctx)?;
        xs.push(outputs.require("features")?.f_to_kind(Kind::Float)?);
        ys.push(batch.require("label")?.shallow_clone());
    }
    Ok((Tensor::f_cat(&xs, 0)?, Tensor::f_cat(&ys, 0)?))
}

/// Rows scaled to unit length (zero rows stay zero).
fn unit_rows(x: &Tensor) -> Result<Tensor> {
    let norms = x.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
    Ok(x.f_div(&norms)?)
}

pt_sdk::export_plugin! {
    name: "__name__",
    evaluators: [__Name__],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_scaled_to_unit_length() {
        let x = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).view([2, 2]);
        let unit: Vec<f32> = Vec::try_from(unit_rows(&x).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(unit, [0.6, 0.8, 0.0, 0.0]);
    }
}
