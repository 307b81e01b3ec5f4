//! Fine-tuning on a labelled task: a linear head on `features`, trained together with the
//! encoder (optionally with its first layers frozen and a lower encoder learning rate), the head
//! starting random or fitted first on frozen features (LP-FT). Records test accuracy against
//! step and wall time, so pretrained and random starts can be compared.

use super::features::{accuracy, extract, index_batches, num_classes, transfer_info};
use super::linear_probe::{column_stats, fit_linear, LinearHead, LinearProbeConfig};
use pt_optim::{AdamWConfig, Decay, FlatParams, GroupRules, LrMultRule, OptimizerConfig, ScheduleConfig};
use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;
use pt_sdk::taps::{request_taps, Layers};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = FinetuneConfig::check)]
pub struct FinetuneConfig {
    /// the feature tap the head reads: "features" (the last) or a tap such as "layer3" (the
    /// layers after it still run but do not change the result); `pt embed RUN --list-layers`
    /// lists taps
    pub layer: Layers,
    /// optimizer steps of fine-tuning
    #[config(default = 300, min = 1)]
    pub steps: u64,
    /// training samples per step
    #[config(default = 32, min = 1)]
    pub batch_size: u64,
    /// peak learning rate of the classification head
    #[config(default = 1e-3)]
    pub lr: f64,
    /// encoder learning rate as a multiple of lr (lower LR for pretrained layers)
    // The encoder trains at `lr * encoder_lr_mult` (the head at `lr`).
    #[config(default = 0.3)]
    pub encoder_lr_mult: f64,
    /// freeze the first N layer groups of the architecture (0: train all)
    // The first N entries of the architecture's `layer_prefixes` (embeddings first).
    pub freeze_layers: usize,
    /// AdamW weight decay (not on biases and norms)
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// linear warmup as a fraction of steps, then linear decay
    #[config(default = 0.1)]
    pub warmup_ratio: f64,
    /// global gradient-norm clipping (0: off)
    #[config(default = 1.0)]
    pub grad_clip: f64,
    /// measure test accuracy every N steps
    // (and at the end of training)
    #[config(default = 50)]
    pub eval_every: u64,
    /// cap on test samples (0: all)
    pub max_test_samples: u64,
    /// dropout on features before the head
    #[config(default = 0.1)]
    pub head_dropout: f64,
    /// standardise features before the head with their mean and std over (up to 2,048)
    /// training samples at the start, fixed after, as the linear probe does
    // A fresh head on raw pretrained features (one large shared direction, little spread
    // between samples) learns slowly and drags the encoder while it does.
    pub standardize_features: bool,
    /// how the head starts: "random" (small random weights) or "linear_probe" (fitted first on
    /// the frozen encoder's standardised features of the whole training split with
    /// `linear_probe`'s defaults, then fine-tuned from there, standardisation kept: LP-FT)
    // LP-FT (Kumar et al. 2022, https://arxiv.org/abs/2202.10054): a random head's gradients
    // distort pretrained features before the head has learnt anything.
    pub head_init: HeadInit,
    /// with head_init = "linear_probe": passes of the probe over the training features
    #[config(default = 100, min = 1)]
    pub probe_epochs: u64,
}

/// How the fine-tuning head starts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// Weights drawn with std 0.02, bias 0.
    #[default]
    Random,
    /// A linear probe fitted on the frozen features (LP-FT).
    LinearProbe,
}

impl FinetuneConfig {
    fn check(&self) -> Result<()> {
        self.layer.validate("layer")?;
        if self.layer.several() {
            bail!(Config, "layer: finetune reads one tap; write one [[eval]] per layer to fine-tune from several");
        }
        Ok(())
    }

    /// The output the head reads (`features` or `features.<tap>`).
    fn output(&self) -> String {
        self.layer.outputs().remove(0)
    }
}

/// `model`'s outputs on `batch` with the tap `output` asked for.
fn forward_to(model: &HostModel<'_>, mut batch: Tensors, output: &str, ctx: &StepCtx) -> Result<Tensor> {
    request_taps(&mut batch, &[output.to_string()]);
    let mut out = model.forward(&batch, ctx)?;
    out.remove(output).ok_or_else(|| PtError::config(format!("the model returned no '{output}'")))
}

/// Training samples the standardisation statistics are taken over.
const STATS_SAMPLES: u64 = 2048;

pub struct Finetune {
    cfg: FinetuneConfig,
}

impl Component for Finetune {
    const NAME: &'static str = "finetune";
    const ABOUT: &'static str = "fine-tune encoder + linear head on a labelled task; accuracy by step and time";
    type Config = FinetuneConfig;
    fn new(cfg: FinetuneConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(Finetune { cfg })
    }
}

fn test_accuracy(
    model: &HostModel<'_>,
    (head, output): (&LinearHead, &str),
    test: &HostData<'_>,
    limit: u64,
    ctx: &StepCtx,
) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    model.set_train(false)?;
    let n = test.info()?.num_samples.min(if limit == 0 { u64::MAX } else { limit });
    let (mut correct, mut seen) = (0.0, 0.0);
    for idx in index_batches(n, 128) {
        let batch = test.get_batch(&idx, ctx)?;
        let labels = batch.require("label")?.shallow_clone();
        let logits = head.logits(&forward_to(model, batch, output, ctx)?)?;
        correct += accuracy(&logits, &labels)? * idx.len() as f64;
        seen += idx.len() as f64;
    }
    model.set_train(true)?;
    Ok(correct / seen.max(1.0))
}

/// The head before fine-tuning: random, or a linear probe fitted on the frozen encoder's
/// `output` features of the whole training split (LP-FT). Trainable either way.
fn initial_head(
    cfg: &FinetuneConfig,
    model: &HostModel<'_>,
    train: &HostData<'_>,
    (output, dim, classes): (&str, i64, i64),
    ctx: &StepCtx,
) -> Result<LinearHead> {
    if cfg.head_init == HeadInit::LinearProbe {
        let (features, labels) = extract(model, train, &[output.to_string()], 0, 128, ctx)?;
        let probe = LinearProbeConfig { epochs: cfg.probe_epochs, ..Default::default() };
        let fit = fit_linear((&features[0], &labels), classes, &probe, ctx.seed)?;
        return Ok(LinearHead {
            weight: fit.weight.set_requires_grad(true),
            bias: fit.bias.set_requires_grad(true),
            ..fit
        });
    }
    let device = ctx.device();
    tch::manual_seed(ctx.seed as i64);
    let weight = (Tensor::f_randn([dim, classes], (Kind::Float, device))? * 0.02).set_requires_grad(true);
    let bias = Tensor::f_zeros([classes], (Kind::Float, device))?.set_requires_grad(true);
    let (mean, std) = match cfg.standardize_features {
        // The frozen encoder's statistics over the first training samples.
        true => column_stats(&extract(model, train, &[output.to_string()], STATS_SAMPLES, 128, ctx)?.0[0])?,
        // The identity: (x - 0) / 1 is x exactly.
        false => (Tensor::f_zeros([1, dim], (Kind::Float, device))?, Tensor::f_ones([1, dim], (Kind::Float, device))?),
    };
    Ok(LinearHead { weight, bias, mean, std })
}

/// AdamW over the encoder (at `lr * encoder_lr_mult`, its first `freeze_layers` groups frozen)
/// and the head (at `lr`).
fn optimizer(
    cfg: &FinetuneConfig,
    model: &HostModel<'_>,
    head: &LinearHead,
    layer_prefixes: &[String],
) -> Result<(FlatParams, Box<dyn pt_optim::Optimizer>)> {
    let mut params = model.parameters()?;
    params.push(("head.weight".into(), head.weight.shallow_clone()));
    params.push(("head.bias".into(), head.bias.shallow_clone()));
    let rules = GroupRules {
        weight_decay: cfg.weight_decay,
        lr_mult: vec![
            LrMultRule { prefix: "head.".into(), lr_mult: 1.0 },
            LrMultRule { prefix: String::new(), lr_mult: cfg.encoder_lr_mult },
        ],
        freeze: layer_prefixes.iter().take(cfg.freeze_layers).cloned().collect(),
    };
    let flat = FlatParams::new(params, &rules)?;
    let adamw = AdamWConfig { weight_decay: cfg.weight_decay, ..Default::default() };
    let opt = pt_optim::build(&OptimizerConfig::AdamW(adamw), &flat)?;
    Ok((flat, opt))
}

impl Evaluator for Finetune {
    fn info(&self) -> EvaluatorInfo {
        transfer_info(&self.cfg.layer)
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let cfg = &self.cfg;
        let (train, test) = (splits.get("train")?, splits.get("test")?);
        let classes = num_classes(train, "train")?;
        let info = model.info()?;
        let output = cfg.output();
        let dim = match output.strip_prefix(pt_sdk::taps::TAP_PREFIX) {
            Some(tap) => info.taps.iter().find(|t| t.name == tap).map(|t| t.dim),
            None => info.feature_dim,
        };
        let dim =
            dim.ok_or_else(|| PtError::config(format!("the architecture does not report the width of '{output}'")))?;
        let started = Instant::now();
        let head = initial_head(cfg, model, train, (&output, dim, classes), ctx)?;
        let (flat, mut opt) = optimizer(cfg, model, &head, &info.layer_prefixes)?;
        let schedule = ScheduleConfig { decay: Decay::Linear, warmup_ratio: cfg.warmup_ratio, ..Default::default() };
        let n = train.info()?.num_samples;
        let mut order: Vec<u64> = (0..n).collect();
        let (mut epoch, mut pos) = (0u64, usize::MAX);
        let mut by_step = Vec::new();
        let mut by_time = Vec::new();
        let mut train_seconds = 0.0;
        let mut best: f64 = 0.0;
        let mut report = EvalReport::default();
        if cfg.head_init == HeadInit::LinearProbe {
            // Where fine-tuning starts: the probe's own accuracy, after the time it took.
            train_seconds = started.elapsed().as_secs_f64();
            let acc = test_accuracy(model, (&head, &output), test, cfg.max_test_samples, ctx)?;
            report = report.metric("probe_accuracy", acc);
            by_step.push((0.0, acc));
            by_time.push((train_seconds, acc));
            best = acc;
        }
        model.set_train(true)?;
        for step in 0..cfg.steps {
            crate::train::interrupt::check("finetune")?;
            let t0 = Instant::now();
            if pos.saturating_add(cfg.batch_size as usize) > order.len() {
                CounterRng::new(ctx.seed, &[0x46494E45, epoch]).shuffle(&mut order);
                epoch += 1;
                pos = 0;
            }
            let idx = &order[pos..pos + (cfg.batch_size as usize).min(order.len())];
            pos += idx.len();
            let step_ctx = StepCtx { step, epoch, train: true, ..*ctx };
            tch::manual_seed(pt_sdk::rng::derive_seed(ctx.seed, &[0x46494E45, step]) as i64);
            let batch = train.get_batch(idx, &step_ctx)?;
            let labels = batch.require("label")?.shallow_clone();
            let features = forward_to(model, batch, &output, &step_ctx)?;
            let logits = head.forward(&features, cfg.head_dropout, true)?;
            let loss = logits.f_cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Mean, -100, 0.0)?;
            loss.f_backward()?;
            let g = flat.flat_grad()?;
            let clip = Some(cfg.grad_clip).filter(|c| *c > 0.0);
            let (_norm, guard) = pt_optim::step_guard(&g, clip, None)?;
            opt.step(&flat, &g, schedule.lr_at(step, cfg.steps, cfg.lr), &guard)?;
            flat.zero_grad()?;
            train_seconds += t0.elapsed().as_secs_f64();
            let last = step + 1 == cfg.steps;
            if (step + 1) % cfg.eval_every.max(1) == 0 || last {
                let acc = test_accuracy(model, (&head, &output), test, cfg.max_test_samples, &step_ctx)?;
                by_step.push(((step + 1) as f64, acc));
                by_time.push((train_seconds, acc));
                best = best.max(acc);
            }
        }
        let final_acc = by_step.last().map(|p| p.1).unwrap_or(0.0);
        report = report
            .metric("accuracy", final_acc)
            .metric("best_accuracy", best)
            .metric("feature_dim", dim as f64)
            .metric("train_seconds", train_seconds)
            .metric("seconds", started.elapsed().as_secs_f64());
        report.curves.insert("accuracy_by_step".into(), by_step);
        report.curves.insert("accuracy_by_seconds".into(), by_time);
        Ok(report)
    }
}
