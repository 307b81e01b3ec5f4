//! kNN evaluation of frozen features, as in the instance-discrimination literature (Wu et al.
//! 2018) and SimCLR/solo-learn: L2-normalised features of the train split as a memory bank,
//! each test sample's k most cosine-similar train samples vote for their class with weight
//! exp(similarity / temperature).

use super::features::{extract_train_test, per_layer_report, transfer_info};
use pt_sdk::prelude::*;
use pt_sdk::taps::Layers;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = KnnConfig::check)]
pub struct KnnConfig {
    /// the feature tap(s) used: "features" (the last), a tap such as "layer3", or a list
    /// (reported as accuracy@layer); `pt embed RUN --list-layers` lists taps
    pub layer: Layers,
    /// neighbours that vote
    #[config(default = 200, min = 1)]
    pub k: i64,
    /// vote weight exp(cosine similarity / temperature)
    #[config(default = 0.1, above = 0.0)]
    pub temperature: f64,
    /// samples per forward pass and per similarity block
    #[config(default = 256, min = 1)]
    pub batch_size: u64,
    /// cap on memory-bank (train) samples (0: all)
    pub max_train_samples: u64,
    /// cap on test samples (0: all)
    pub max_test_samples: u64,
}

impl KnnConfig {
    fn check(&self) -> Result<()> {
        self.layer.validate("layer")
    }
}

pub struct Knn {
    cfg: KnnConfig,
}

impl Component for Knn {
    const NAME: &'static str = "knn";
    const ABOUT: &'static str =
        "weighted kNN (cosine, k = 200) on frozen `features` (train split as memory bank -> test accuracy)";
    type Config = KnnConfig;
    fn new(cfg: KnnConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(Knn { cfg })
    }
}

/// Predicted class of each `test` row: the temperature-weighted vote of its `k` nearest `bank`
/// rows by cosine similarity. `bank` [N, D], `bank_labels` [N], `test` [M, D] → [M].
pub fn knn_predict(
    bank: &Tensor,
    bank_labels: &Tensor,
    test: &Tensor,
    classes: i64,
    k: i64,
    temperature: f64,
    block: i64,
) -> Result<Tensor> {
    let unit = |x: &Tensor| -> Result<Tensor> {
        let norm = x.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
        Ok(x.f_div(&norm)?)
    };
    let bank = unit(bank)?;
    let k = k.min(bank.size()[0]);
    let mut predictions = Vec::new();
    for start in (0..test.size()[0]).step_by(block.max(1) as usize) {
        let rows = unit(&test.f_narrow(0, start, block.min(test.size()[0] - start))?)?;
        let sim = rows.f_matmul(&bank.f_transpose(0, 1)?)?; // [m, N]
        let (top, idx) = sim.f_topk(k, 1, true, true)?; // [m, k]
        let votes_for = bank_labels.f_index_select(0, &idx.f_flatten(0, -1)?)?.f_view_as(&idx)?; // [m, k]
        let weights = top.f_div_scalar(temperature)?.f_exp()?;
        let scores = Tensor::f_zeros([idx.size()[0], classes], (Kind::Float, bank.device()))?
            .f_scatter_add(1, &votes_for, &weights)?;
        predictions.push(scores.f_argmax(1, false)?);
    }
    Ok(Tensor::f_cat(&predictions, 0)?)
}

impl Evaluator for Knn {
    fn info(&self) -> EvaluatorInfo {
        transfer_info(&self.cfg.layer)
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let started = std::time::Instant::now();
        let limits = (self.cfg.max_train_samples, self.cfg.max_test_samples);
        let outputs = self.cfg.layer.outputs();
        let data = extract_train_test(model, splits, &outputs, limits, self.cfg.batch_size, ctx)?;
        let (bank_labels, yte) = (&data.train.1, &data.test.1);
        let (c, block) = (&self.cfg, self.cfg.batch_size as i64);
        let mut reports = Vec::new();
        for (bank, xte) in data.train.0.iter().zip(&data.test.0) {
            let pred = knn_predict(bank, bank_labels, xte, data.classes, c.k, c.temperature, block)?;
            let accuracy = pred.f_eq_tensor(yte)?.f_to_kind(Kind::Float)?.f_mean(None)?.f_double_value(&[])?;
            reports.push(EvalReport::default().metric("accuracy", accuracy));
        }
        Ok(per_layer_report(&self.cfg.layer, reports)
            .metric("k", c.k.min(bank_labels.size()[0]) as f64)
            .metric("seconds", started.elapsed().as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_weighted_by_similarity() {
        // Bank: two class-0 points near +x, one class-1 point at +y.
        let bank = Tensor::from_slice(&[1.0f32, 0.1, 1.0, -0.1, 0.0, 1.0]).view([3, 2]);
        let labels = Tensor::from_slice(&[0i64, 0, 1]);
        let test = Tensor::from_slice(&[2.0f32, 0.0, 0.1, 3.0]).view([2, 2]);
        let pred = knn_predict(&bank, &labels, &test, 2, 3, 0.1, 1).unwrap();
        assert_eq!(Vec::<i64>::try_from(&pred).unwrap(), [0, 1], "with k = all, the closer class wins by weight");
        // k = 1 with a very low temperature is plain nearest neighbour.
        let pred = knn_predict(&bank, &labels, &test, 2, 1, 0.01, 8).unwrap();
        assert_eq!(Vec::<i64>::try_from(&pred).unwrap(), [0, 1]);
    }
}
