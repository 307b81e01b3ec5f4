//! The training loop: prefetched batch → objective.prepare → architecture.forward →
//! objective.loss → backward (× grad_accum) → global-norm clipping → optimizer step on the flat
//! buffer → schedule; with logging, evaluation, checkpoints and exact resume.

use super::eval::EvalRunner;
use super::observer::Observer;
use super::prefetch::Prefetcher;
use super::sampler::Sampler;
use super::session::Session;
use super::weights::{load_named, read_weights, LoadReport};
use crate::autocast::Precision;
use crate::checkpoint::manager::{latest_valid, snapshot};
use crate::checkpoint::{Checkpoint, CheckpointManager, CursorState, PluginRecord, SaveRequest};
use crate::config::{check_keys, keys_of};
use crate::dist::{check_agreement, Fingerprint, GradReducer, Group};
use crate::plugin::Registry;
use crate::{Error, Result};
use pt_optim::{FlatParams, GroupRules, LrMultRule, Optimizer, OptimizerConfig, ScheduleConfig};
use pt_report::{LinePlot, MetricsLog, Series};
use pt_sdk::rng::derive_seed;
use pt_sdk::{EvalReport, StepCtx};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::Tensor;

const STREAM_TORCH: u64 = 0x544F_5243; // "TORC": libtorch's generator (dropout...) per micro-step
const OBJECTIVE_PREFIX: &str = "objective.";

/// Why training stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxSteps,
    MaxEpochs,
    MaxTime,
    Interrupted,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub step: u64,
    pub stop: StopReason,
    pub last_loss: Option<f64>,
    pub skipped_steps: u64,
    pub evals: BTreeMap<String, EvalReport>,
    pub checkpoint: Option<PathBuf>,
    pub seconds: f64,
    /// Tensor handles alive across host and plugins at the end (should be 0).
    pub leaked_tensor_handles: i64,
}

/// `[optim]`: `lr`, `freeze`, `lr_mult`, and the optimizer (`name` + its fields).
pub struct OptimSettings {
    pub lr: f64,
    pub rules: GroupRules,
    pub optimizer: OptimizerConfig,
}

impl OptimSettings {
    pub fn from_table(t: &toml::Table) -> Result<Self> {
        let mut t = t.clone();
        let lr = match t.remove("lr") {
            None => 1e-3,
            Some(v) => v
                .as_float()
                .or(v.as_integer().map(|i| i as f64))
                .ok_or_else(|| Error::Config(format!("[optim] lr must be a number, got {v}")))?,
        };
        let freeze: Vec<String> = match t.remove("freeze") {
            None => Vec::new(),
            Some(v) => v
                .try_into()
                .map_err(|_| Error::Config("[optim] freeze must be a list of parameter-name prefixes".into()))?,
        };
        let lr_mult: Vec<LrMultRule> = match t.remove("lr_mult") {
            None => Vec::new(),
            Some(toml::Value::Table(m)) => m
                .into_iter()
                .map(|(prefix, v)| {
                    v.as_float()
                        .or(v.as_integer().map(|i| i as f64))
                        .map(|lr_mult| LrMultRule { prefix: prefix.clone(), lr_mult })
                        .ok_or_else(|| Error::Config(format!("[optim] lr_mult.\"{prefix}\" must be a number")))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(Error::Config("[optim] lr_mult must be a table of prefix = multiplier".into())),
        };
        if !t.contains_key("name") {
            t.insert("name".into(), toml::Value::String("adamw".into()));
        }
        // Unknown keys get a did-you-mean against the chosen optimizer's fields (an unknown
        // optimizer name is left to serde, whose message lists the names).
        let chosen: toml::Table = t.iter().filter(|(k, _)| *k == "name").map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Ok(defaults) = toml::Value::Table(chosen).try_into::<OptimizerConfig>() {
            let mut known: Vec<String> = ["lr", "freeze", "lr_mult"].iter().map(|k| k.to_string()).collect();
            known.extend(keys_of(&defaults));
            check_keys("optim", &t, &known.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        let optimizer: OptimizerConfig = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(format!("[optim]: {}", e.message())))?;
        optimizer.validate().map_err(|e| Error::Config(format!("[optim]: {}", e.message)))?;
        let rules = GroupRules { weight_decay: optimizer.weight_decay(), lr_mult, freeze };
        rules.validate().map_err(|e| Error::Config(format!("[optim]: {}", e.message)))?;
        Ok(OptimSettings { lr, rules, optimizer })
    }
}

pub struct TrainOptions {
    /// Continue from the run directory's latest valid checkpoint when there is one.
    pub resume: bool,
    /// Load weights only from here before training (fine-tuning, HF imports).
    pub init_from: Option<PathBuf>,
    /// Set by a signal handler: finish the step, save, stop.
    pub stop: Arc<AtomicBool>,
    /// This process's place in a multi-process run (`None`: training alone).
    pub dist: Option<Arc<Group>>,
}

pub struct Trainer<'r> {
    reg: &'r Registry,
    pub session: Session,
    flat: FlatParams,
    optimizer: Box<dyn Optimizer>,
    schedule: ScheduleConfig,
    base_lr: f64,
    sampler: Sampler,
    pub step: u64,
    cursor: CursorState,
    skipped: u64,
    bad_in_a_row: u64,
    ckpt: CheckpointManager,
    dist: Option<Arc<Group>>,
    /// Multi-process runs: the flat gradient's bucketed all-reduce.
    reducer: Option<GradReducer>,
    /// When a mix term has `update_buffers = false`: the architecture's buffers and a copy of
    /// each, kept across steps (see [`Trainer::keep_buffers`]).
    kept_buffers: Vec<(Tensor, Tensor)>,
    /// The step whose state is already in a checkpoint (saved by this process or resumed from).
    saved_step: Option<u64>,
    /// Rank 0's metrics files (other ranks log nothing: their metrics are reduced into rank 0's).
    metrics: Option<MetricsLog>,
    evals: Vec<EvalRunner>,
    stop: Arc<AtomicBool>,
    latest_metrics: BTreeMap<String, f64>,
    loss_curve: Vec<(f64, f64)>,
    eval_curves: BTreeMap<String, Vec<(f64, f64)>>,
    eval_reports: BTreeMap<String, EvalReport>,
    last_good_checkpoint: Option<PathBuf>,
    pub init_report: Option<LoadReport>,
    /// fp32, or bf16 autocast over fp32 master weights (`[run] precision`).
    pub precision: Precision,
    /// Objective metrics that are not scalars (e.g. wav2vec2's `code_usage` counts), summed
    /// over the last tenth of the run (the whole run when its length is unknown) and drawn at
    /// the end: which entries of a codebook are used.
    histograms: BTreeMap<String, Histogram>,
}

/// A vector metric summed over steps `first..=last`.
struct Histogram {
    counts: Tensor,
    first: u64,
    last: u64,
}

fn named_model(session: &Session) -> Result<Vec<(String, Tensor)>> {
    let mut v = session.arch.parameters()?;
    v.extend(session.arch.buffers()?);
    Ok(v)
}

fn named_objective(session: &Session) -> Result<Vec<(String, Tensor)>> {
    session.objective_tensors(true)
}

impl<'r> Trainer<'r> {
    pub fn new(reg: &'r Registry, mut session: Session, opts: TrainOptions) -> Result<Self> {
        let run = session.recipe.run.clone();
        let settings = OptimSettings::from_table(&session.recipe.optim)?;
        let schedule_keys = keys_of(&ScheduleConfig::default());
        check_keys(
            "schedule",
            &session.recipe.schedule,
            &schedule_keys.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        let schedule: ScheduleConfig = toml::Value::Table(session.recipe.schedule.clone())
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(format!("[schedule]: {}", e.message())))?;
        schedule.validate().map_err(|e| Error::Config(format!("[schedule]: {}", e.message)))?;

        let (rank, world_size) = opts.dist.as_ref().map_or((0, 1), |g| (g.rank, g.world_size));
        if let Some(group) = &opts.dist {
            let fingerprint =
                Fingerprint { world_size, plugins: plugin_records(reg), config: session.recipe.to_toml() };
            check_agreement(group, &fingerprint)?;
        }
        let resume_from: Option<Checkpoint> =
            if opts.resume { latest_valid(&session.run_dir.join("checkpoints"))? } else { None };
        let mut init_report = None;
        if let Some(c) = &resume_from {
            load_named(&named_model(&session)?, &c.tensors("model")?, "resume")?;
            load_named(&named_objective(&session)?, &c.tensors("objective")?, "resume")?;
        } else if let Some(path) = &opts.init_from {
            let src = read_weights(path)?;
            let report = load_named(&named_model(&session)?, &src, &format!("--init-from {}", path.display()))?;
            if report.loaded == 0 {
                return Err(Error::Checkpoint(format!(
                    "--init-from {}: none of its {} tensors match the model's parameter names (e.g. model has '{}', file has '{}')",
                    path.display(),
                    src.len(),
                    report.missing.first().map(String::as_str).unwrap_or("-"),
                    report.unexpected.first().map(String::as_str).unwrap_or("-")
                )));
            }
            init_report = Some(report);
        }

        session.set_train(true)?;
        let mut trainable = session.arch.parameters()?;
        for (n, t) in session.objective_tensors(false)? {
            trainable.push((format!("{OBJECTIVE_PREFIX}{n}"), t));
        }
        let flat = FlatParams::new(trainable, &settings.rules).map_err(Error::Plugin)?;
        let mut optimizer = pt_optim::build(&settings.optimizer, &flat).map_err(Error::Plugin)?;
        let (mut step, mut cursor, mut skipped) = (0, CursorState::default(), 0);
        if let Some(c) = &resume_from {
            let state = c.tensors("optimizer")?;
            if !state.is_empty() {
                optimizer.load_state(state).map_err(|e| {
                    Error::Checkpoint(format!(
                        "{}: optimizer state does not fit this run: {}",
                        c.dir.display(),
                        e.message
                    ))
                })?;
            }
            step = c.manifest.step;
            cursor = rescale_cursor(c.manifest.cursor, c.manifest.world_size, world_size);
            skipped = c.manifest.skipped_steps;
        }
        let sampler = Sampler::new(session.data.info.num_samples, run.batch_size, rank, world_size, run.seed, true)
            .bucketed_by(&session.data.info.lengths)
            .with_labelled(&session.data.info.labelled, run.labelled_per_batch);
        if run.labelled_per_batch > 0 {
            if session.data.info.labelled.is_empty() {
                return Err(Error::Config(format!(
                    "[run] labelled_per_batch = {} but dataset {} marks no labelled subset (all or none of its samples are labelled): set its label_fraction, or set labelled_per_batch = 0",
                    run.labelled_per_batch, session.data.origin
                )));
            }
            if run.labelled_per_batch >= run.batch_size {
                return Err(Error::Config(format!(
                    "[run] labelled_per_batch ({}) must be smaller than batch_size ({})",
                    run.labelled_per_batch, run.batch_size
                )));
            }
        }
        if sampler.micro_batches_per_epoch() == 0 {
            return Err(Error::Config(format!(
                "dataset {} has {} samples, fewer than one batch of {}: lower [run] batch_size",
                session.data.origin, session.data.info.num_samples, run.batch_size
            )));
        }
        let ckpt = CheckpointManager::new(&session.run_dir, run.keep_last, &run.best_metric, &run.best_mode)?;
        // Rows after the starting step were logged by a process that died before its next
        // checkpoint (or, on a fresh start, before its first): drop them so no step is logged twice.
        let metrics = if rank == 0 {
            Some(
                MetricsLog::resume(&session.run_dir, step)
                    .map_err(|e| Error::Training(format!("metrics files: {e}")))?,
            )
        } else {
            None
        };
        let (loss_curve, eval_curves) = curves_so_far(&session.run_dir);
        // Rank 0 evaluates (the weights are the same on every rank); the others wait for it.
        let mut evals = Vec::new();
        for (i, spec) in session.recipe.evals.iter().enumerate().filter(|_| rank == 0) {
            evals.push(EvalRunner::create(reg, &session, spec, i)?);
        }
        if let Some(c) = &resume_from {
            tracing::info!(step, dir = %c.dir.display(), "resuming");
        }
        let precision = Precision::resolve(&session.recipe.run.precision, session.device)?;
        tracing::info!(precision = precision.name(), "forward precision");
        // The resolved config goes to the run directory before any training.
        if rank == 0 {
            crate::plugin::store::write_atomic(
                &session.run_dir.join("config.toml"),
                session.recipe.to_toml().as_bytes(),
            )?;
        }
        let reducer = match &opts.dist {
            Some(group) => {
                let mb = session.recipe.run.bucket_mb;
                if !(mb.is_finite() && mb > 0.0) {
                    return Err(Error::Config(format!(
                        "[run] bucket_mb = {mb}: the gradient all-reduce bucket size must be a positive number of MB (default 25)"
                    )));
                }
                let bucket_bytes = (mb * 1024.0 * 1024.0) as u64;
                Some(GradReducer::new(group.clone(), &flat, bucket_bytes)?)
            }
            None => None,
        };
        let kept_buffers = if session.objectives.iter().all(|o| o.update_buffers) {
            Vec::new()
        } else {
            let _guard = tch::no_grad_guard();
            session.arch.buffers()?.into_iter().map(|(_, b)| (b.copy(), b)).collect()
        };
        Ok(Trainer {
            reg,
            base_lr: settings.lr,
            session,
            flat,
            optimizer,
            schedule,
            sampler,
            step,
            cursor,
            skipped,
            bad_in_a_row: 0,
            ckpt,
            dist: opts.dist,
            reducer,
            kept_buffers,
            saved_step: resume_from.as_ref().map(|c| c.manifest.step),
            metrics,
            evals,
            stop: opts.stop,
            latest_metrics: BTreeMap::new(),
            loss_curve,
            eval_curves,
            eval_reports: BTreeMap::new(),
            last_good_checkpoint: resume_from.map(|c| c.dir),
            init_report,
            precision,
            histograms: BTreeMap::new(),
        })
    }

    fn steps_per_epoch(&self) -> u64 {
        (self.sampler.micro_batches_per_epoch() / self.session.recipe.run.grad_accum).max(1)
    }

    /// The step training stops at, when it is known in advance.
    pub fn total_steps(&self) -> Option<u64> {
        let run = &self.session.recipe.run;
        let by_epochs = (run.max_epochs > 0).then(|| run.max_epochs * self.steps_per_epoch());
        match (run.max_steps > 0, by_epochs) {
            (true, Some(e)) => Some(run.max_steps.min(e)),
            (true, None) => Some(run.max_steps),
            (false, e) => e,
        }
    }

    fn lr_at(&self, step: u64) -> f64 {
        self.schedule.lr_at(step, self.total_steps().unwrap_or(0), self.base_lr)
    }

    fn step_ctx(&self, epoch: u64, train: bool) -> StepCtx {
        StepCtx {
            seed: self.session.recipe.run.seed,
            epoch,
            step: self.step,
            rank: self.rank() as u32,
            world_size: self.world_size() as u32,
            device: self.session.ctx.device,
            train,
        }
    }

    pub fn rank(&self) -> u64 {
        self.dist.as_ref().map_or(0, |g| g.rank)
    }

    fn world_size(&self) -> u64 {
        self.dist.as_ref().map_or(1, |g| g.world_size)
    }

    /// Stop requests (a signal, the time limit) on any rank stop every rank at the same step.
    fn agree_to_stop(&self, timed_out: bool, interrupted: bool) -> Result<(bool, bool)> {
        let Some(group) = &self.dist else {
            return Ok((timed_out, interrupted));
        };
        let votes = group.all_reduce_host(&[timed_out as u8 as f64, interrupted as u8 as f64])?;
        Ok((votes[0] > 0.0, votes[1] > 0.0))
    }

    /// Trains until a stopping condition; evaluates and saves at the end.
    pub fn run(&mut self, obs: &mut dyn Observer) -> Result<RunSummary> {
        let started = Instant::now();
        let run = self.session.recipe.run.clone();
        let total = self.total_steps();
        obs.on_start(
            self.step,
            total,
            &format!(
                "{} + {} on {} ({} samples, {} params)",
                self.session.objective_origin(),
                self.session.arch.origin,
                self.session.data.origin,
                self.session.data.info.num_samples,
                self.flat.num_params()
            ),
        );
        let pin = self.session.device.is_cuda();
        let mut loader = Prefetcher::start(
            self.session.data.clone(),
            self.sampler.clone(),
            self.cursor,
            run.prefetch,
            self.step_ctx(self.cursor.epoch, true),
            pin,
        );
        let mut window = Window::default();
        let stop = loop {
            if total.is_some_and(|t| self.step >= t) {
                break if run.max_steps > 0 && self.step >= run.max_steps {
                    StopReason::MaxSteps
                } else {
                    StopReason::MaxEpochs
                };
            }
            let (timed_out, interrupted) = self.agree_to_stop(
                run.max_minutes > 0.0 && started.elapsed().as_secs_f64() >= run.max_minutes * 60.0,
                self.stop.load(Ordering::SeqCst),
            )?;
            if timed_out {
                break StopReason::MaxTime;
            }
            if interrupted {
                break StopReason::Interrupted;
            }
            let t0 = Instant::now();
            let outcome = self.train_step(&mut loader)?;
            window.add(&outcome, t0.elapsed().as_secs_f64(), run.batch_size * run.grad_accum);
            let mut row = BTreeMap::new();
            if self.step.is_multiple_of(run.log_every.max(1)) || total.is_some_and(|t| self.step >= t) {
                row = window.drain(&outcome);
                if let (Some(flops), Some(sps)) =
                    (self.session.arch.info.train_flops_per_sample, row.get("samples_per_s").copied())
                {
                    let achieved = flops * sps;
                    row.insert("tflops".into(), achieved / 1e12);
                    if let Some(peak) = peak_flops(self.session.device) {
                        row.insert("mfu".into(), achieved / peak);
                    }
                }
                row.insert("lr".into(), outcome.lr);
                row.insert(
                    "epoch".into(),
                    self.cursor.epoch as f64
                        + self.cursor.micro_batch as f64 / self.sampler.micro_batches_per_epoch() as f64,
                );
                row.insert("skipped_steps".into(), self.skipped as f64);
                if let Some(l) = row.get("loss") {
                    self.loss_curve.push((self.step as f64, *l));
                }
                self.log_row(row.clone())?;
                self.latest_metrics.extend(row.clone());
                tracing::info!(step = self.step, metrics = ?row, "step");
            }
            obs.on_step(self.step, &row);
            let done = total.is_some_and(|t| self.step >= t);
            if run.eval_every > 0 && self.step.is_multiple_of(run.eval_every) && !done {
                self.evaluate(obs, false)?;
            }
            // During a run of non-finite steps the weights do not move: saving them again would
            // only push the checkpoints from before the trouble out of retention.
            if run.save_every > 0 && self.step.is_multiple_of(run.save_every) && !done && self.bad_in_a_row == 0 {
                self.save(obs)?;
            }
        };
        drop(loader);
        if stop != StopReason::Interrupted {
            self.evaluate(obs, true)?;
        }
        // Not again when this step was just saved (an interrupt right after a periodic save, or a
        // resume of a finished run): rewriting it would only open a window without it.
        if self.saved_step != Some(self.step) {
            self.save(obs)?;
        }
        let checkpoint = self.ckpt.wait()?.or(self.last_good_checkpoint.clone());
        if let Some(m) = &mut self.metrics {
            m.flush().map_err(|e| Error::Training(format!("metrics: {e}")))?;
            self.plot_curves();
            self.plot_histograms();
        }
        if stop == StopReason::Interrupted {
            obs.on_message(&format!(
                "interrupted at step {}; checkpoint saved. Resume with: pt train --resume {}",
                self.step,
                self.session.run_dir.display()
            ));
        }
        Ok(RunSummary {
            run_dir: self.session.run_dir.clone(),
            step: self.step,
            stop,
            last_loss: self.latest_metrics.get("loss").copied(),
            skipped_steps: self.skipped,
            evals: self.eval_reports.clone(),
            checkpoint,
            seconds: started.elapsed().as_secs_f64(),
            leaked_tensor_handles: 0,
        })
    }

    /// One optimizer step over `grad_accum` micro-batches. A non-finite loss or gradient
    /// skips the update (counted); `max_bad_steps` in a row stop the run.
    fn train_step(&mut self, loader: &mut Prefetcher) -> Result<StepOutcome> {
        // Copies of the few settings the step needs (no per-step clone of the whole config).
        let (grad_accum, seed, grad_clip, max_bad_steps, overlap) = {
            let r = &self.session.recipe.run;
            (r.grad_accum, r.seed, r.grad_clip, r.max_bad_steps, r.overlap_allreduce)
        };
        let device = self.session.device;
        let mut loss_sum = 0.0;
        let mut tokens = 0u64;
        let mut finite = true;
        // Objective metrics summed over the step's micro-batches (on the device: no sync).
        let mut metric_sums: Vec<(String, Tensor)> = Vec::new();
        let mut counted = 0u32;
        for micro in 0..grad_accum {
            let loaded = loader.next()?;
            self.cursor = self.sampler.next(loaded.cursor);
            tokens += loaded.tokens.unwrap_or(0);
            let ctx = self.step_ctx(loaded.cursor.epoch, true);
            // Numbered across ranks as the global batch is, so N ranks draw what one process
            // with N-fold accumulation would.
            let stream = micro * self.world_size() + self.rank();
            tch::manual_seed(derive_seed(seed, &[STREAM_TORCH, self.step, stream]) as i64);
            let batch = loaded.batch.to_device(device)?;
            // Each objective prepares its own inputs from the batch and gets its own forward;
            // their weighted losses' gradients accumulate (one backward each keeps memory flat).
            let mix = self.session.is_mix();
            let mut micro_loss = 0.0;
            let n_objectives = self.session.objectives.len();
            for (i, o) in self.session.objectives.iter().enumerate() {
                // Forward and loss under autocast (bf16); data preparation (augmentation, masking)
                // and backward outside it.
                let inputs = o.handle.prepare(batch.share(), &ctx)?;
                // Buffers this term may not change are put back after its backward (autograd
                // saved them as they were: restoring earlier would fail its version check).
                let keep = !o.update_buffers;
                if keep {
                    self.keep_buffers(true)?;
                }
                let autocast = self.precision.scope(device)?;
                let outputs = self.session.arch.forward(&inputs, &ctx)?;
                let lv = o.handle.loss(&inputs, &outputs, &ctx)?;
                drop(autocast);
                let value = lv.loss.f_double_value(&[])?;
                if !value.is_finite() {
                    if keep {
                        self.keep_buffers(false)?;
                    }
                    finite = false;
                    break;
                }
                micro_loss += o.weight * value;
                let scaled = if o.weight == 1.0 { lv.loss.shallow_clone() } else { lv.loss.f_mul_scalar(o.weight)? };
                if let (Some(reducer), true) = (&self.reducer, overlap) {
                    // The step's last backward: buckets start reducing as their gradients finish.
                    if micro + 1 == grad_accum && i + 1 == n_objectives {
                        reducer.arm();
                    }
                }
                (scaled / grad_accum as f64).f_backward()?;
                if keep {
                    self.keep_buffers(false)?;
                }
                let mut metrics = lv.metrics;
                if mix {
                    metrics = metrics.into_iter().map(|(n, t)| (format!("{}/{n}", o.label), t)).collect();
                    metrics.push((format!("{}/loss", o.label), lv.loss.detach()));
                }
                for (name, t) in metrics {
                    let t = t.detach();
                    match metric_sums.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, sum)) => *sum = sum.f_add(&t)?,
                        None => metric_sums.push((name, t)),
                    }
                }
            }
            if !finite {
                break;
            }
            loss_sum += micro_loss;
            counted += 1;
        }
        let lr = self.lr_at(self.step);
        let mut grad_norm = f64::NAN;
        let grad = self.flat.flat_grad().map_err(Error::Plugin)?;
        let mut allreduce_s = 0.0;
        if let (Some(group), Some(reducer)) = (&self.dist, &self.reducer) {
            // Every rank takes part whatever its own loss was: a non-finite one poisons the sum,
            // so all ranks see the same non-finite norm and skip the same step. The time is what
            // the all-reduce adds after backward (not what it overlapped).
            let t0 = Instant::now();
            reducer.finish(!finite)?;
            let _ = grad.shallow_clone().f_div_scalar_(group.world_size as f64)?;
            allreduce_s = t0.elapsed().as_secs_f64();
            finite = true;
        }
        if finite {
            let norm =
                if grad_clip > 0.0 { pt_optim::clip_grad_norm(&grad, grad_clip) } else { pt_optim::grad_norm(&grad) }
                    .map_err(Error::Plugin)?;
            grad_norm = norm.f_double_value(&[])?;
            if grad_norm.is_finite() {
                self.optimizer.step(&self.flat, &grad, lr).map_err(Error::Plugin)?;
            } else {
                finite = false;
            }
        }
        self.flat.zero_grad().map_err(Error::Plugin)?;
        self.step += 1;
        if finite {
            self.bad_in_a_row = 0;
        } else {
            self.skipped += 1;
            self.bad_in_a_row += 1;
            tracing::warn!(step = self.step, "non-finite loss or gradient: step skipped");
            if self.bad_in_a_row >= max_bad_steps.max(1) {
                // A save still being written predates the streak (none are made during one).
                if let Ok(Some(d)) = self.ckpt.wait() {
                    self.last_good_checkpoint = Some(d);
                }
                return Err(Error::Training(format!(
                    "{} non-finite steps in a row (steps {} to {}): the loss or gradients are NaN/Inf. {} Lower the learning rate, check the data, or raise [run] max_bad_steps.",
                    self.bad_in_a_row,
                    self.step + 1 - self.bad_in_a_row,
                    self.step,
                    match &self.last_good_checkpoint {
                        Some(d) => format!("The last good checkpoint is {}.", d.display()),
                        None => "No checkpoint was saved yet.".to_string(),
                    }
                )));
            }
        }
        // The step's metrics are means over its micro-batches, like its loss; vector metrics are
        // counts, summed into their histograms.
        let (vectors, scalars): (Vec<_>, Vec<_>) = metric_sums.into_iter().partition(|(_, t)| t.numel() > 1);
        if finite {
            self.add_histograms(vectors)?;
        }
        let mut metrics: Vec<(String, f64)> = scalars
            .into_iter()
            .filter_map(|(n, t)| t.f_double_value(&[]).ok().map(|v| (n, v / counted.max(1) as f64)))
            .collect();
        let mut loss = loss_sum / grad_accum as f64;
        if let (Some(group), true) = (&self.dist, finite) {
            // The logged loss and metrics are means over ranks (same names on every rank).
            let mut values = vec![loss];
            values.extend(metrics.iter().map(|(_, v)| *v));
            let mean: Vec<f64> = group.all_reduce_host(&values)?.iter().map(|v| v / group.world_size as f64).collect();
            loss = mean[0];
            for ((_, v), m) in metrics.iter_mut().zip(&mean[1..]) {
                *v = *m;
            }
        }
        Ok(StepOutcome { loss: if finite { Some(loss) } else { None }, grad_norm, lr, tokens, metrics, allreduce_s })
    }

    /// Saves the architecture's buffers into their copies (`save`), or puts the copies back
    /// (in place: the model keeps its tensors).
    fn keep_buffers(&self, save: bool) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (copy, live) in &self.kept_buffers {
            let (mut to, from) = if save { (copy.shallow_clone(), live) } else { (live.shallow_clone(), copy) };
            to.f_copy_(from)?;
        }
        Ok(())
    }

    /// Multi-process runs: each rank's BatchNorm running statistics come from its own part of
    /// the batch; their mean (over ranks) is what gets evaluated and saved.
    fn average_buffers(&self) -> Result<()> {
        let Some(group) = &self.dist else { return Ok(()) };
        let buffers: Vec<Tensor> =
            self.session.arch.buffers()?.into_iter().map(|(_, t)| t).filter(|t| t.is_floating_point()).collect();
        if !buffers.is_empty() {
            let _guard = tch::no_grad_guard();
            group.all_reduce_sum(&buffers)?;
            for b in &buffers {
                let _ = b.shallow_clone().f_div_scalar_(group.world_size as f64)?;
            }
        }
        Ok(())
    }

    /// Runs every evaluator due now (all of them when `at_end`).
    pub fn evaluate(&mut self, obs: &mut dyn Observer, at_end: bool) -> Result<()> {
        self.average_buffers()?;
        let run_every = self.session.recipe.run.eval_every;
        let mut row = BTreeMap::new();
        for i in 0..self.evals.len() {
            let every = self.evals[i].spec.every.unwrap_or(run_every);
            if !at_end && (every == 0 || !self.step.is_multiple_of(every)) {
                continue;
            }
            let name = self.evals[i].name().to_string();
            let mut variants = vec![(name.clone(), false)];
            if at_end && self.evals[i].spec.compare_random_init {
                variants.push((format!("{name}/random_init"), true));
            }
            for (label, random) in variants {
                let report = self.evals[i].run(self.reg, &self.session, &self.session.arch, self.step, random)?;
                for (k, v) in &report.metrics {
                    row.insert(format!("{label}/{k}"), *v);
                    self.eval_curves.entry(format!("{label}/{k}")).or_default().push((self.step as f64, *v));
                }
                if let Some(confusion) = &report.confusion {
                    self.plot_confusion(&label, confusion);
                }
                obs.on_eval(self.step, &label, &report);
                self.eval_reports.insert(label, report);
            }
        }
        if !row.is_empty() {
            self.log_row(row.clone())?;
            self.latest_metrics.extend(row);
        }
        if let Some(group) = &self.dist {
            group.barrier()?;
        }
        Ok(())
    }

    fn log_row(&mut self, row: BTreeMap<String, f64>) -> Result<()> {
        match &mut self.metrics {
            Some(m) => m.log(self.step, row).map_err(|e| Error::Training(format!("metrics: {e}"))),
            None => Ok(()),
        }
    }

    /// Snapshots the state and hands it to the checkpoint writer (rank 0; the weights are the
    /// same on every rank).
    pub fn save(&mut self, obs: &mut dyn Observer) -> Result<()> {
        self.average_buffers()?;
        if self.rank() != 0 {
            self.saved_step = Some(self.step);
            return Ok(());
        }
        let s = &self.session;
        let mut components = BTreeMap::new();
        components.insert("data".to_string(), s.data.origin.clone());
        components.insert("arch".to_string(), s.arch.origin.clone());
        components.insert("objective".to_string(), s.objective_origin());
        let assets = s.run_dir.join("assets");
        let req = SaveRequest {
            step: self.step,
            cursor: self.cursor,
            world_size: self.world_size(),
            lr: self.lr_at(self.step),
            seed: s.recipe.run.seed,
            optimizer: self.optimizer.name().to_string(),
            optimizer_steps: self.optimizer.steps(),
            metrics: self.latest_metrics.clone(),
            skipped_steps: self.skipped,
            config: s.recipe.to_toml(),
            components,
            plugins: plugin_records(self.reg),
            libtorch_version: crate::runtime::libtorch_lib_dir()
                .and_then(|d| crate::runtime::libtorch_version(&d))
                .unwrap_or_default(),
            model: snapshot(&named_model(s)?),
            objective: snapshot(&named_objective(s)?),
            optimizer_state: snapshot(&self.optimizer.state()),
            assets_dir: assets.is_dir().then_some(assets),
        };
        if let Some(prev) = self.ckpt.wait()? {
            self.last_good_checkpoint = Some(prev);
        }
        self.ckpt.save(req)?;
        self.saved_step = Some(self.step);
        // Surface the write's outcome at the next save or the end of the run; the observer
        // hears of it now with the directory it will have.
        obs.on_checkpoint(self.step, &self.ckpt.root.join(crate::checkpoint::manager::step_dir_name(self.step)));
        Ok(())
    }

    /// `eval/<label>-step<N>-confusion.png` (label `classification/random_init` → `classification-random_init`).
    fn plot_confusion(&self, label: &str, confusion: &pt_sdk::ConfusionMatrix) {
        let path = self.session.run_dir.join("eval").join(format!(
            "{}-step{}-confusion.png",
            label.replace('/', "-"),
            self.step
        ));
        let title = format!("{label}, step {}", self.step);
        match pt_report::plot_confusion(&path, &confusion.counts, &confusion.classes, &title) {
            Ok(()) => tracing::info!(path = %path.display(), "confusion matrix written"),
            Err(e) => tracing::warn!("could not draw {}: {e}", path.display()),
        }
    }

    /// Adds this step's vector metrics; from 90 % of a known run length on, the sums restart
    /// once so the picture shows how the run ends, not how it began.
    fn add_histograms(&mut self, vectors: Vec<(String, Tensor)>) -> Result<()> {
        let step = self.step; // already counted
        let tail_start = self.total_steps().map(|t| (t * 9 / 10).max(1));
        for (name, t) in vectors {
            // Summed where they are (no host sync per step); copied to the CPU when drawn.
            let t = t.f_detach()?.f_to_kind(tch::Kind::Double)?;
            let restart = tail_start == Some(step);
            match self.histograms.get_mut(&name) {
                Some(h) if !restart && h.counts.size() == t.size() => {
                    h.counts = h.counts.f_add(&t)?;
                    h.last = step;
                }
                _ => {
                    self.histograms.insert(name, Histogram { counts: t, first: step, last: step });
                }
            }
        }
        Ok(())
    }

    /// `<name>.png` per vector metric: each row's entries by share of the counts, largest first
    /// (flat: every entry used; a cliff: a collapsed codebook), and `<name>.json` with the counts.
    fn plot_histograms(&self) {
        for (name, h) in &self.histograms {
            let counts = h.counts.to_device(tch::Device::Cpu);
            let rows = match counts.size().len() {
                1 => counts.unsqueeze(0),
                _ => counts.flatten(1, -1),
            };
            let counts: Vec<Vec<f64>> =
                (0..rows.size()[0]).filter_map(|r| Vec::<f64>::try_from(&rows.get(r)).ok()).collect();
            let series = counts
                .iter()
                .enumerate()
                .map(|(r, row)| {
                    let total: f64 = row.iter().sum::<f64>().max(1e-12);
                    let mut shares: Vec<f64> = row.iter().map(|c| c / total).collect();
                    shares.sort_by(|a, b| b.total_cmp(a));
                    let used = row.iter().filter(|&&c| c > 0.0).count();
                    Series {
                        name: format!("row {r}: {used} of {} used", row.len()),
                        points: shares.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v)).collect(),
                    }
                })
                .collect();
            let plot = LinePlot {
                title: format!("{name}, steps {}-{}", h.first, h.last),
                x_label: "entry, by use (most used first)".into(),
                y_label: "share of uses".into(),
                series,
                ..Default::default()
            };
            let base = self.session.run_dir.join(name.replace('/', "-"));
            if let Err(e) = pt_report::plot_lines(&base.with_extension("png"), &plot) {
                tracing::warn!("could not draw {name}.png: {e}");
            }
            let json =
                serde_json::json!({ "name": name, "first_step": h.first, "last_step": h.last, "counts": counts });
            if let Err(e) = std::fs::write(base.with_extension("json"), json.to_string()) {
                tracing::warn!("could not write {name}.json: {e}");
            }
        }
    }

    fn plot_curves(&self) {
        let mut series = vec![Series { name: "train loss".into(), points: self.loss_curve.clone() }];
        for (name, points) in &self.eval_curves {
            if name.ends_with("loss") {
                series.push(Series { name: format!("held-out {name}"), points: points.clone() });
            }
        }
        let plot = LinePlot {
            title: format!("{} + {}", self.session.objective_origin(), self.session.arch.origin),
            x_label: "step".into(),
            y_label: "loss".into(),
            series,
            ..Default::default()
        };
        if let Err(e) = pt_report::plot_lines(&self.session.run_dir.join("loss.png"), &plot) {
            tracing::warn!("could not draw loss.png: {e}");
        }
    }

    pub fn run_dir(&self) -> &Path {
        &self.session.run_dir
    }
}

fn plugin_records(reg: &Registry) -> Vec<PluginRecord> {
    let mut v: Vec<PluginRecord> = reg
        .plugins
        .iter()
        .map(|f| PluginRecord {
            name: f.plugin.manifest.name.clone(),
            version: f.plugin.manifest.version.clone(),
            sha256: f.plugin.sha256.clone(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// A checkpoint's cursor for a different number of processes. The cursor counts global
/// micro-batches of batch_size × world_size samples; the samples consumed stay the same, rounded
/// down to a whole global batch of the new world (those few samples are seen again).
fn rescale_cursor(cursor: CursorState, saved_world: u64, world: u64) -> CursorState {
    if saved_world == world || world == 0 {
        return cursor;
    }
    let micro_batch = cursor.micro_batch * saved_world.max(1) / world;
    if micro_batch * world != cursor.micro_batch * saved_world.max(1) {
        tracing::warn!(
            saved_world,
            world,
            "resuming with another world size: the epoch's position is rounded down to a whole global batch"
        );
    }
    tracing::info!(
        saved_world,
        world,
        from = cursor.micro_batch,
        to = micro_batch,
        "cursor rescaled for the new world size"
    );
    CursorState { micro_batch, ..cursor }
}

/// The loss and evaluation curves logged before this process started (a resumed run's plot
/// covers the whole run, not only its last part).
fn curves_so_far(run_dir: &Path) -> (Vec<(f64, f64)>, BTreeMap<String, Vec<(f64, f64)>>) {
    let rows = pt_report::read_metrics(&run_dir.join(pt_report::METRICS_JSONL)).unwrap_or_default();
    let (mut loss, mut evals) = (Vec::new(), BTreeMap::<String, Vec<(f64, f64)>>::new());
    for row in rows {
        for (name, value) in &row.values {
            if name == "loss" {
                loss.push((row.step as f64, *value));
            } else if name.contains('/') {
                evals.entry(name.clone()).or_default().push((row.step as f64, *value));
            }
        }
    }
    (loss, evals)
}

struct StepOutcome {
    loss: Option<f64>,
    grad_norm: f64,
    lr: f64,
    tokens: u64,
    metrics: Vec<(String, f64)>,
    /// Seconds spent in the gradient all-reduce (multi-process runs).
    allreduce_s: f64,
}

/// Dense bf16 peak of the training device, for MFU: `$PT_PEAK_TFLOPS` if set, else known
/// data-centre GPUs by name. None on CPUs (no meaningful peak).
fn peak_flops(device: tch::Device) -> Option<f64> {
    if let Some(t) = std::env::var("PT_PEAK_TFLOPS").ok().and_then(|v| v.parse::<f64>().ok()) {
        return Some(t * 1e12);
    }
    if !device.is_cuda() {
        return None;
    }
    static PEAK: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *PEAK.get_or_init(|| {
        let name = crate::runtime::cuda_device_names().first()?.to_ascii_uppercase();
        [("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0)]
            .iter()
            .find(|(k, _)| name.contains(k))
            .map(|(_, t)| t * 1e12)
    })
}

/// Averages over the steps between two log lines.
#[derive(Default)]
struct Window {
    losses: Vec<f64>,
    seconds: f64,
    samples: u64,
    tokens: u64,
    steps: u64,
    allreduce_s: f64,
}

impl Window {
    fn add(&mut self, o: &StepOutcome, seconds: f64, samples: u64) {
        if let Some(l) = o.loss {
            self.losses.push(l);
        }
        self.seconds += seconds;
        self.samples += samples;
        self.tokens += o.tokens;
        self.steps += 1;
        self.allreduce_s += o.allreduce_s;
    }

    fn drain(&mut self, last: &StepOutcome) -> BTreeMap<String, f64> {
        let mut row = BTreeMap::new();
        if !self.losses.is_empty() {
            row.insert("loss".into(), self.losses.iter().sum::<f64>() / self.losses.len() as f64);
        }
        row.insert("grad_norm".into(), last.grad_norm);
        if self.seconds > 0.0 {
            row.insert("samples_per_s".into(), self.samples as f64 / self.seconds);
            if self.tokens > 0 {
                row.insert("tokens_per_s".into(), self.tokens as f64 / self.seconds);
            }
            row.insert("step_time_s".into(), self.seconds / self.steps.max(1) as f64);
            if self.allreduce_s > 0.0 {
                // Share of step time spent all-reducing gradients (not overlapped with backward).
                row.insert("allreduce_share".into(), self.allreduce_s / self.seconds);
            }
        }
        for (n, v) in &last.metrics {
            row.insert(n.clone(), *v);
        }
        *self = Window::default();
        row
    }
}
