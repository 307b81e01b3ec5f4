//! Linear probe: the frozen encoder's `features` computed once per split, then a linear
//! classifier trained on them (standardised, AdamW, minibatches). Reports test accuracy.

use super::features::{accuracy, extract_train_test, per_layer_report, transfer_info};
use pt_optim::{default_groups, AdamWConfig, FlatParams, OptimizerConfig};
use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;
use pt_sdk::taps::Layers;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = LinearProbeConfig::check)]
pub struct LinearProbeConfig {
    /// the feature tap(s) probed: "features" (the last), a tap such as "layer3", or a list
    /// (one probe per layer, reported as accuracy@layer); `pt embed RUN --list-layers` lists taps
    pub layer: Layers,
    /// passes over the training features
    #[config(default = 100, min = 1)]
    pub epochs: u64,
    /// samples per step, for feature extraction and for the classifier
    #[config(default = 256, min = 1)]
    pub batch_size: u64,
    /// AdamW learning rate of the linear classifier
    #[config(default = 1e-2)]
    pub lr: f64,
    /// AdamW weight decay of the classifier weights
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// cap on training samples (0: all)
    pub max_train_samples: u64,
    /// cap on test samples (0: all)
    pub max_test_samples: u64,
}

impl LinearProbeConfig {
    fn check(&self) -> Result<()> {
        self.layer.validate("layer")
    }
}

pub struct LinearProbe {
    cfg: LinearProbeConfig,
}

impl Component for LinearProbe {
    const NAME: &'static str = "linear_probe";
    const ABOUT: &'static str = "linear classifier on frozen `features` (train split -> test accuracy)";
    type Config = LinearProbeConfig;
    fn new(cfg: LinearProbeConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(LinearProbe { cfg })
    }
}

/// A linear classifier on features standardised with fixed statistics.
pub struct LinearHead {
    pub weight: Tensor, // [D, C]
    pub bias: Tensor,   // [C]
    pub mean: Tensor,   // [1, D]
    pub std: Tensor,    // [1, D]
}

impl LinearHead {
    /// features [N, D] (any float kind) → logits [N, C], with dropout on the standardised
    /// features while training.
    pub fn forward(&self, features: &Tensor, dropout: f64, train: bool) -> Result<Tensor> {
        let x = features.to_kind(Kind::Float).f_sub(&self.mean)?.f_div(&self.std)?;
        Ok(x.f_dropout(dropout, train)?.f_matmul(&self.weight)?.f_add(&self.bias)?)
    }

    /// features [N, D] → logits [N, C]
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        self.forward(features, 0.0, false)
    }
}

/// Mean and standard deviation (at least 1e-6) of each column of `x` [N, D], each [1, D].
pub fn column_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let mean = x.f_mean_dim(Some(&[0i64][..]), true, Kind::Float)?;
    let std = x.f_std_dim(Some(&[0i64][..]), false, true)?.f_clamp_min(1e-6)?;
    Ok((mean, std))
}

/// Trains `[D] -> [C]` logistic regression on `train` (features, labels), standardising the
/// features with their own statistics, which the returned head keeps.
pub fn fit_linear(train: (&Tensor, &Tensor), classes: i64, cfg: &LinearProbeConfig, seed: u64) -> Result<LinearHead> {
    let (x, y) = train;
    let (mean, std) = column_stats(x)?;
    let xtr = x.f_sub(&mean)?.f_div(&std)?;
    let d = xtr.size()[1];
    let device = xtr.device();
    tch::manual_seed(seed as i64);
    let w = (Tensor::f_randn([d, classes], (Kind::Float, device))? * (1.0 / (d as f64).sqrt())).set_requires_grad(true);
    let b = Tensor::f_zeros([classes], (Kind::Float, device))?.set_requires_grad(true);
    let flat = FlatParams::new(
        vec![("weight".into(), w.shallow_clone()), ("bias".into(), b.shallow_clone())],
        &default_groups(cfg.weight_decay),
    )?;
    let mut opt = pt_optim::build(
        &OptimizerConfig::AdamW(AdamWConfig { weight_decay: cfg.weight_decay, ..Default::default() }),
        &flat,
    )?;
    let mut order: Vec<i64> = (0..xtr.size()[0]).collect();
    for epoch in 0..cfg.epochs {
        crate::train::interrupt::check("linear_probe")?;
        CounterRng::new(seed, &[0x50524F42, epoch]).shuffle(&mut order);
        for chunk in order.chunks(cfg.batch_size as usize) {
            let idx = Tensor::from_slice(chunk).to_device(device);
            let logits = xtr.f_index_select(0, &idx)?.f_matmul(&w)?.f_add(&b)?;
            let labels = y.f_index_select(0, &idx)?;
            let loss = logits.f_cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Mean, -100, 0.0)?;
            loss.f_backward()?;
            let g = flat.flat_grad()?;
            opt.step(&flat, &g, cfg.lr, &Default::default())?;
            flat.zero_grad()?;
        }
    }
    Ok(LinearHead { weight: w.detach(), bias: b.detach(), mean, std })
}

impl Evaluator for LinearProbe {
    fn info(&self) -> EvaluatorInfo {
        transfer_info(&self.cfg.layer)
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let started = std::time::Instant::now();
        let limits = (self.cfg.max_train_samples, self.cfg.max_test_samples);
        let outputs = self.cfg.layer.outputs();
        let data = extract_train_test(model, splits, &outputs, limits, self.cfg.batch_size, ctx)?;
        let (ytr, yte) = (&data.train.1, &data.test.1);
        let mut reports = Vec::new();
        for (xtr, xte) in data.train.0.iter().zip(&data.test.0) {
            let head = fit_linear((xtr, ytr), data.classes, &self.cfg, ctx.seed)?;
            let _guard = tch::no_grad_guard();
            let test_acc = accuracy(&head.logits(xte)?, yte)?;
            let train_acc = accuracy(&head.logits(xtr)?, ytr)?;
            reports.push(
                EvalReport::default()
                    .metric("accuracy", test_acc)
                    .metric("train_accuracy", train_acc)
                    .metric("feature_dim", xtr.size()[1] as f64),
            );
        }
        Ok(per_layer_report(&self.cfg.layer, reports).metric("seconds", started.elapsed().as_secs_f64()))
    }
}
