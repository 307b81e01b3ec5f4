//! The training loop: prefetched batch → objective.prepare → architecture.forward →
//! objective.loss → backward (× grad_accum) → global-norm clipping → optimizer step on the flat
//! buffer → schedule; with logging, evaluation, checkpoints and exact resume. The trainer reads
//! the plan's typed settings; the step ([`super::step`]), the start ([`super::resume`]), the
//! metrics ([`super::run_log`]) and saving ([`super::checkpointing`]) have their own files.

use super::checkpointing::plugin_records;
use super::eval::EvalRunner;
use super::observer::Observer;
use super::prefetch::{LoaderStart, Prefetcher};
use super::resume::{check_resumed_config, load_start, restore_position, set_aside_for_restart, Position};
use super::run_log::{curves_so_far, Histogram, Window};
use super::sampler::Sampler;
use super::session::Session;
use super::step::StepOutcome;
use super::weights::LoadReport;
use crate::autocast::Precision;
use crate::checkpoint::{CheckpointManager, CursorState};
use crate::config::{BestMode, RunConfig};
use crate::dist::{check_agreement, Fingerprint, GradReducer, Group};
use crate::plugin::Registry;
use crate::profiler::{Profile, Range};
use crate::{Error, Result};
use pt_optim::{FlatParams, Optimizer};
use pt_report::MetricsLog;
use pt_sdk::{EvalReport, StepCtx};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::Tensor;

pub(super) const STREAM_TORCH: u64 = 0x544F_5243; // "TORC": libtorch's generator (dropout...) per micro-step
pub(super) const OBJECTIVE_PREFIX: &str = "objective.";

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

pub struct TrainOptions {
    /// Continue from the run directory's latest valid checkpoint when there is one.
    pub resume: bool,
    /// Set by a signal handler: finish the step, save, stop.
    pub stop: Arc<AtomicBool>,
    /// This process's place in a multi-process run (`None`: training alone).
    pub dist: Option<Arc<Group>>,
    /// Resume even when the config changed in keys that change what is trained.
    pub accept_changes: bool,
    /// Start over from step 0, moving the run's checkpoints and metrics aside.
    pub restart: bool,
}

/// The most steps several ranks go between two votes on whether to stop.
const STOP_VOTE_EVERY: u64 = 50;

pub struct Trainer<'r> {
    pub(super) reg: &'r Registry,
    pub session: Session,
    pub(super) flat: FlatParams,
    pub(super) optimizer: Box<dyn Optimizer>,
    pub(super) sampler: Sampler,
    pub step: u64,
    pub(super) cursor: CursorState,
    /// Skipped steps and the streak of them, as last read from [`Trainer::health`].
    pub(super) skipped: u64,
    pub(super) bad_in_a_row: u64,
    /// The skip count and streak on the device, and the step at which the host last read them.
    pub(super) health: super::health::DeviceHealth,
    pub(super) health_read_at: Option<u64>,
    /// Names parameters that get no gradient in the first steps (see `grad_watch`).
    pub(super) grad_watch: super::grad_watch::GradWatch,
    pub(super) ckpt: CheckpointManager,
    pub(super) dist: Option<Arc<Group>>,
    /// Multi-process runs: the flat gradient's bucketed all-reduce.
    pub(super) reducer: Option<GradReducer>,
    /// When a mix term has `update_buffers = false`: the architecture's buffers and a copy of
    /// each, kept across steps.
    pub(super) kept_buffers: Vec<(Tensor, Tensor)>,
    /// The step whose state is already in a checkpoint (saved by this process or resumed from).
    pub(super) saved_step: Option<u64>,
    /// Rank 0's metrics files (other ranks log nothing: their metrics are reduced into rank 0's).
    pub(super) metrics: Option<MetricsLog>,
    pub(super) evals: Vec<EvalRunner>,
    stop: Arc<AtomicBool>,
    pub(super) latest_metrics: BTreeMap<String, f64>,
    pub(super) loss_curve: Vec<(f64, f64)>,
    pub(super) eval_curves: BTreeMap<String, Vec<(f64, f64)>>,
    pub(super) eval_reports: BTreeMap<String, EvalReport>,
    pub(super) last_good_checkpoint: Option<PathBuf>,
    pub init_report: Option<LoadReport>,
    /// fp32, or bf16 autocast over fp32 master weights (`[run] precision`).
    pub precision: Precision,
    /// Objective metrics that are not scalars (e.g. wav2vec2's `code_usage` counts), summed
    /// over the last tenth of the run (the whole run when its length is unknown) and drawn at
    /// the end: which entries of a codebook are used.
    pub(super) histograms: BTreeMap<String, Histogram>,
}

impl<'r> Trainer<'r> {
    pub fn new(reg: &'r Registry, mut session: Session, opts: TrainOptions) -> Result<Self> {
        let (rank, world_size) = opts.dist.as_ref().map_or((0, 1), |g| (g.rank, g.world_size));
        if let Some(group) = &opts.dist {
            let fingerprint =
                Fingerprint { world_size, plugins: plugin_records(reg), config: session.plan.to_toml(None) };
            check_agreement(group, &fingerprint)?;
        }
        if opts.restart && rank == 0 {
            set_aside_for_restart(session.run_dir())?;
        }
        let start = load_start(&session, opts.resume && !opts.restart)?;
        if let Some(c) = &start.checkpoint {
            check_resumed_config(reg, &session, c, opts.accept_changes, rank == 0)?;
        }
        session.set_train(true)?;
        let mut trainable = session.model.parameters()?;
        for (n, t) in session.objective_tensors(false)? {
            trainable.push((format!("{OBJECTIVE_PREFIX}{n}"), t));
        }
        let optim = &session.plan.recipe.optim;
        let flat = FlatParams::new(trainable, &optim.rules()).map_err(Error::Plugin)?;
        let mut optimizer = pt_optim::build(&optim.optimizer, &flat).map_err(Error::Plugin)?;
        let position = match &start.checkpoint {
            Some(c) => restore_position(c, optimizer.as_mut(), &flat, world_size)?,
            None => Position { step: 0, cursor: CursorState::default(), skipped: 0 },
        };
        let sampler = sampler_for(&session, rank, world_size)?;
        let c = &session.plan.recipe.checkpoint;
        let ckpt = CheckpointManager::new(
            session.run_dir(),
            c.keep_last as usize,
            &c.best_metric,
            c.best_mode == BestMode::Max,
        )?;
        // Rank 0 alone logs and evaluates (the weights are the same on every rank). When that
        // set-up fails (an unknown probe layer, an unreadable metrics file), every rank stops
        // with its error, rather than the others meeting a dead peer in their first collective.
        let (mut metrics, evals) = match (rank, &opts.dist) {
            (0, dist) => {
                let setup = rank0_setup(&session, position.step);
                if let Some(group) = dist {
                    crate::dist::publish_outcome(group, "setup", setup.as_ref().err());
                }
                let (metrics, evals) = setup?;
                (Some(metrics), evals)
            }
            (_, Some(group)) => {
                crate::dist::await_outcome(group, "setup", "set up its logs and evaluations")?;
                (None, Vec::new())
            }
            (_, None) => (None, Vec::new()),
        };
        if let (Some(m), 0) = (&mut metrics, position.step) {
            // TensorBoard's HPARAMS tab: every value of the plan, once per run.
            let hparams = super::run_log::hparams(&session.resolved_toml());
            if let Err(e) = m.log_hparams(&hparams) {
                tracing::warn!("TensorBoard hyperparameters not written: {e}");
            }
        }
        let (loss_curve, eval_curves) = curves_so_far(session.run_dir());
        if let Some(c) = &start.checkpoint {
            tracing::info!(step = position.step, dir = %c.dir.display(), "resuming");
        }
        let precision = Precision::resolve(session.plan.recipe.run.precision, session.device);
        tracing::info!(precision = precision.name(), "forward precision");
        // The resolved plan, with the values its wired inputs got, goes to the run directory
        // before any training: every value the run uses.
        if rank == 0 {
            crate::plugin::store::write_atomic(
                &session.run_dir().join("config.toml"),
                session.resolved_toml().as_bytes(),
            )?;
        }
        let reducer = match &opts.dist {
            Some(group) => {
                let bucket_bytes = (session.plan.recipe.run.bucket_mb * 1024.0 * 1024.0) as u64;
                Some(GradReducer::new(group.clone(), &flat, bucket_bytes)?)
            }
            None => None,
        };
        let kept_buffers = if session.objectives.iter().all(|o| o.update_buffers) {
            Vec::new()
        } else {
            let _guard = tch::no_grad_guard();
            session.model.buffers()?.into_iter().map(|(_, b)| (b.copy(), b)).collect()
        };
        let device = session.device;
        super::interrupt::watch(opts.stop.clone());
        Ok(Trainer {
            reg,
            session,
            flat,
            optimizer,
            sampler,
            step: position.step,
            cursor: position.cursor,
            skipped: position.skipped,
            bad_in_a_row: 0,
            health: super::health::DeviceHealth::new(position.skipped, device)?,
            health_read_at: Some(position.step),
            grad_watch: super::grad_watch::GradWatch::new(),
            ckpt,
            dist: opts.dist,
            reducer,
            kept_buffers,
            saved_step: start.checkpoint.as_ref().map(|c| c.manifest.step),
            metrics,
            evals,
            stop: opts.stop,
            latest_metrics: BTreeMap::new(),
            loss_curve,
            eval_curves,
            eval_reports: BTreeMap::new(),
            last_good_checkpoint: start.checkpoint.map(|c| c.dir),
            init_report: start.init_report,
            precision,
            histograms: BTreeMap::new(),
        })
    }

    /// The run's `[run]` settings.
    pub(super) fn settings(&self) -> &RunConfig {
        &self.session.plan.recipe.run
    }

    fn steps_per_epoch(&self) -> u64 {
        (self.sampler.micro_batches_per_epoch() / self.settings().grad_accum).max(1)
    }

    /// The step training stops at, when it is known in advance.
    pub fn total_steps(&self) -> Option<u64> {
        let run = self.settings();
        let by_epochs = (run.max_epochs > 0).then(|| run.max_epochs * self.steps_per_epoch());
        match (run.max_steps > 0, by_epochs) {
            (true, Some(e)) => Some(run.max_steps.min(e)),
            (true, None) => Some(run.max_steps),
            (false, e) => e,
        }
    }

    pub(super) fn lr_at(&self, step: u64) -> f64 {
        let recipe = &self.session.plan.recipe;
        recipe.schedule.lr_at(step, self.total_steps().unwrap_or(0), recipe.optim.lr)
    }

    pub(super) fn step_ctx(&self, epoch: u64, train: bool) -> StepCtx {
        StepCtx {
            seed: self.settings().seed,
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

    pub(super) fn world_size(&self) -> u64 {
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

    /// Why the loop stops before the next step, if it does.
    fn stop_reason(&self, started: Instant) -> Result<Option<StopReason>> {
        let run = self.settings();
        if self.total_steps().is_some_and(|t| self.step >= t) {
            let by_steps = run.max_steps > 0 && self.step >= run.max_steps;
            return Ok(Some(if by_steps { StopReason::MaxSteps } else { StopReason::MaxEpochs }));
        }
        // Several ranks agree at log lines: the vote is an all-reduce whose result the host
        // reads, a wait for the device on NCCL, while at a log line the host has just read the
        // window's sums anyway. With log lines far apart, every STOP_VOTE_EVERY steps, so a
        // signal (a scheduler's SIGTERM before its SIGKILL) still stops the run in time.
        if self.dist.is_some() && !self.step.is_multiple_of(run.log_every.min(STOP_VOTE_EVERY)) {
            return Ok(None);
        }
        let (timed_out, interrupted) = self.agree_to_stop(
            run.max_minutes > 0.0 && started.elapsed().as_secs_f64() >= run.max_minutes * 60.0,
            self.stop.load(Ordering::SeqCst),
        )?;
        Ok(if timed_out {
            Some(StopReason::MaxTime)
        } else if interrupted {
            Some(StopReason::Interrupted)
        } else {
            None
        })
    }

    /// Trains until a stopping condition; evaluates and saves at the end.
    pub fn run(&mut self, obs: &mut dyn Observer) -> Result<RunSummary> {
        let started = Instant::now();
        let total = self.total_steps();
        obs.on_start(
            self.step,
            total,
            &format!(
                "{} + {} on {} ({} samples, {} params)",
                self.session.objective_origin(),
                self.session.model.origin,
                self.session.data.origin,
                self.session.data.info.num_samples,
                self.flat.num_params()
            ),
        );
        let start = LoaderStart { cursor: self.cursor, step: self.step, grad_accum: self.settings().grad_accum };
        let mut loader = Prefetcher::start(
            self.session.data.clone(),
            self.sampler.clone(),
            start,
            self.settings().prefetch as usize,
            self.step_ctx(self.cursor.epoch, true),
            self.session.device,
            self.session.host_preparers()?,
        );
        let mut window = Window::start();
        let run = self.settings().clone();
        let save_every = self.session.plan.recipe.checkpoint.every;
        let mut profile = None;
        let stop = loop {
            if let Some(reason) = self.stop_reason(started)? {
                break reason;
            }
            let t0 = Instant::now();
            let outcome = self.profiled_step(&mut loader, &mut profile, obs)?;
            if let Some(group) = &self.dist {
                group.heartbeat(self.step);
            }
            window.add(&outcome, t0.elapsed().as_secs_f64(), run.batch_size * run.grad_accum)?;
            let done = total.is_some_and(|t| self.step >= t);
            let row = match self.step.is_multiple_of(run.log_every) || done {
                true => self.log_step(&mut window, &outcome)?,
                false => BTreeMap::new(),
            };
            obs.on_step(self.step, &row);
            if !done && self.any_eval_due() {
                self.evaluate(obs, false)?; // an interrupt cuts it short; the loop stops next
            }
            let written = self.ckpt.poll()?;
            self.report_written(obs, written.as_deref());
            // During a run of non-finite steps the weights do not move: saving them again would
            // only push the checkpoints from before the trouble out of retention.
            if save_every > 0 && self.step.is_multiple_of(save_every) && !done {
                self.refresh_health()?;
                if self.bad_in_a_row == 0 {
                    self.save(obs)?;
                }
            }
        };
        drop(loader);
        if let Some(p) = profile.take() {
            self.report_profile(p, obs)?; // the run stopped inside the profiled steps
        }
        self.finish(obs, stop, started)
    }

    /// One step, inside a profile while `[run] profile_steps` covers it.
    fn profiled_step(
        &mut self,
        loader: &mut Prefetcher,
        profile: &mut Option<Profile>,
        obs: &mut dyn Observer,
    ) -> Result<StepOutcome> {
        let n = self.step + 1;
        let (first, last) = match self.settings().profile_steps[..] {
            [first, last] if (first..=last).contains(&n) => (first, last),
            _ => return self.train_step(loader),
        };
        if profile.is_none() {
            let rank = if self.world_size() > 1 { format!(".rank{}", self.rank()) } else { String::new() };
            let path = self.run_dir().join(format!("profile/steps-{first}-{last}{rank}.trace.json"));
            *profile = Some(Profile::start(self.session.device, &path)?);
        }
        let range = Range::begin(&format!("pt::step {n}"))?;
        let outcome = self.train_step(loader)?;
        drop(range);
        if n == last {
            if let Some(p) = profile.take() {
                self.report_profile(p, obs)?;
            }
        }
        Ok(outcome)
    }

    fn report_profile(&self, profile: Profile, obs: &mut dyn Observer) -> Result<()> {
        let path = profile.finish()?;
        obs.on_message(&format!("profile written: {} (open in https://ui.perfetto.dev)", path.display()));
        Ok(())
    }

    /// The end of a run: final evaluations (unless interrupted), the last save, plots.
    fn finish(&mut self, obs: &mut dyn Observer, mut stop: StopReason, started: Instant) -> Result<RunSummary> {
        self.refresh_health()?;
        let mut cut = Vec::new();
        if stop != StopReason::Interrupted {
            cut = self.evaluate(obs, true)?;
            if !cut.is_empty() {
                stop = StopReason::Interrupted;
            }
        }
        // Not again when this step was just saved (an interrupt right after a periodic save, or a
        // resume of a finished run): rewriting it would only open a window without it.
        if self.saved_step != Some(self.step) {
            self.save(obs)?;
        }
        let written = self.ckpt.wait()?;
        self.report_written(obs, written.as_deref());
        let checkpoint = self.last_good_checkpoint.clone();
        if let Some(m) = &mut self.metrics {
            m.flush().map_err(|e| Error::Training(format!("metrics: {e}")))?;
            self.plot_curves();
            self.plot_histograms();
        }
        let resume = format!("pt train --resume {}", self.session.run_dir().display());
        if !cut.is_empty() {
            obs.on_message(&format!(
                "interrupted during the end-of-run evaluations ({} not run); checkpoint saved. `{resume}` runs them",
                cut.join(", ")
            ));
        } else if stop == StopReason::Interrupted {
            obs.on_message(&format!("interrupted at step {}; checkpoint saved. Resume with: {resume}", self.step));
        }
        Ok(RunSummary {
            run_dir: self.session.run_dir().to_path_buf(),
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

    pub fn run_dir(&self) -> &Path {
        self.session.run_dir()
    }
}

/// Rank 0's own set-up: the metrics log (rows after the starting step were logged by a
/// process that died before its next checkpoint, or before its first: dropped, so no step is
/// logged twice) and the evaluations.
fn rank0_setup(session: &Session, step: u64) -> Result<(MetricsLog, Vec<EvalRunner>)> {
    let metrics =
        MetricsLog::resume(session.run_dir(), step).map_err(|e| Error::Training(format!("metrics files: {e}")))?;
    let evals = (0..session.plan.recipe.evals.len()).map(|i| EvalRunner::create(session, i)).collect::<Result<_>>()?;
    Ok((metrics, evals))
}

/// The run's sampler over the training set, checked against the data it samples.
fn sampler_for(session: &Session, rank: u64, world_size: u64) -> Result<Sampler> {
    let run = &session.plan.recipe.run;
    let info = &session.data.info;
    let sampler = Sampler::new(info.num_samples, run.batch_size, rank, world_size, run.seed, true)
        .with_accumulation(run.grad_accum)
        .bucketed_by(&info.lengths)
        .with_labelled(&info.labelled, run.labelled_per_batch);
    if run.labelled_per_batch > 0 && info.labelled.is_empty() {
        return Err(Error::Config(format!(
            "[run] labelled_per_batch = {} but dataset {} marks no labelled subset (all or none of its samples are labelled): set its label_fraction, or set labelled_per_batch = 0",
            run.labelled_per_batch, session.data.origin
        )));
    }
    if sampler.micro_batches_per_epoch() == 0 {
        return Err(Error::Config(format!(
            "dataset {} has {} samples, fewer than one step of {} (batch_size {} × {world_size} rank(s) × grad_accum {}): lower [run] batch_size or grad_accum",
            session.data.origin,
            info.num_samples,
            run.batch_size * world_size * run.grad_accum,
            run.batch_size,
            run.grad_accum
        )));
    }
    Ok(sampler)
}
