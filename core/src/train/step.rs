//! One optimizer step: `grad_accum` micro-batches, each prepared, forwarded and scored by every
//! objective of the run (under autocast) and back-propagated; then the gradient all-reduce of a
//! multi-process run and the fused update on the flat buffer, with global-norm clipping folded
//! into it. Nothing is read back to the host: a non-finite loss or gradient makes the update
//! skip itself on the device (`pt_optim::step_guard`), and the loss, metrics and skip count stay
//! on the device until the log line reads them (`run_log`, `health`).

use super::grad_watch::shortlist;
use super::prefetch::{FromLoader, Prefetcher};
use super::trainer::{Trainer, STREAM_TORCH};
use crate::{Error, Result};
use pt_sdk::rng::derive_seed;
use pt_sdk::{StepCtx, Tensors};
use std::time::Instant;
use tch::{Kind, Tensor};

pub(super) struct StepOutcome {
    /// The weighted loss, mean over the micro-batches (0-dim, on the device; may be non-finite).
    pub loss: Tensor,
    /// 0-dim bool on the device: whether the update was applied (false: skipped for a
    /// non-finite loss or gradient).
    pub applied: Tensor,
    /// The global gradient norm before clipping (0-dim, on the device).
    pub grad_norm: Tensor,
    pub lr: f64,
    pub tokens: u64,
    /// Rows the architecture computed (samples × the copies an objective makes of each, summed
    /// over objectives): what throughput in FLOPs counts.
    pub rows: u64,
    /// Scalar objective metrics, means over the micro-batches (on the device).
    pub metrics: Vec<(String, Tensor)>,
    /// Seconds spent in the gradient all-reduce (multi-process runs).
    pub allreduce_s: f64,
    /// Seconds the step waited for the loader's batches.
    pub loader_wait_s: f64,
    /// Seconds the loader thread spent making this step's batches.
    pub load_s: f64,
}

/// What the micro-batches of a step add up to.
#[derive(Default)]
struct Accumulated {
    /// Weighted losses summed over objectives and micro-batches (on the device).
    loss_sum: Option<Tensor>,
    tokens: u64,
    rows: u64,
    loader_wait_s: f64,
    load_s: f64,
    /// Objective metrics summed over the micro-batches (on the device: no sync).
    metric_sums: Vec<(String, Tensor)>,
}

/// `sum + t`, or `t` for the first term (detached).
pub(super) fn add_to(sum: &mut Option<Tensor>, t: &Tensor) -> Result<()> {
    let t = t.f_detach()?;
    *sum = Some(match sum.take() {
        Some(s) => s.f_add(&t)?,
        None => t,
    });
    Ok(())
}

impl Accumulated {
    fn add_metrics(&mut self, metrics: Vec<(String, Tensor)>) -> Result<()> {
        for (name, t) in metrics {
            let t = t.detach();
            match self.metric_sums.iter_mut().find(|(n, _)| *n == name) {
                Some((_, sum)) => *sum = sum.f_add(&t)?,
                None => self.metric_sums.push((name, t)),
            }
        }
        Ok(())
    }
}

impl Trainer<'_> {
    /// One optimizer step over `grad_accum` micro-batches.
    pub(super) fn train_step(&mut self, loader: &mut Prefetcher) -> Result<StepOutcome> {
        // The step's waits for the GPU are counted (on CUDA): ideally none.
        let _counting = super::device_syncs::SyncCount::begin(self.session.device);
        let grad_accum = self.settings().grad_accum;
        let mut acc = Accumulated::default();
        for micro in 0..grad_accum {
            let waiting = std::time::Instant::now();
            let mut loaded = loader.next()?;
            acc.loader_wait_s += waiting.elapsed().as_secs_f64();
            acc.load_s += loaded.load_s;
            self.cursor = self.sampler.next(loaded.cursor);
            acc.tokens += loaded.tokens.unwrap_or(0);
            let ctx = self.step_ctx(loaded.cursor.epoch, true);
            // Numbered across ranks as the global batch is, so N ranks draw what one process
            // with N-fold accumulation would.
            let stream = micro * self.world_size() + self.rank();
            tch::manual_seed(derive_seed(self.settings().seed, &[STREAM_TORCH, self.step, stream]) as i64);
            self.micro_batch(&loaded.batch, &mut loaded.prepared, &ctx, micro + 1 == grad_accum, &mut acc)?;
        }
        self.finish_step(acc)
    }

    /// Every objective's forward, loss and backward on one micro-batch; their weighted losses'
    /// gradients accumulate (one backward each keeps memory flat). A non-finite loss is not
    /// looked at here: its step is skipped by the update.
    /// `prepared` holds what the loader thread made for each objective: its inputs, or fields
    /// for its `prepare`.
    fn micro_batch(
        &self,
        batch: &Tensors,
        prepared: &mut [Option<FromLoader>],
        ctx: &StepCtx,
        last_micro: bool,
        acc: &mut Accumulated,
    ) -> Result<()> {
        // A tied parameter's gradient is final only after both towers' backward: reduce after.
        let overlap = self.settings().overlap_allreduce && self.session.tied_parameters == 0;
        let grad_accum = self.settings().grad_accum;
        let device = self.session.device;
        let n_objectives = self.session.objectives.len();
        for (i, o) in self.session.objectives.iter().enumerate() {
            // Data preparation (augmentation, masking) outside autocast; forward and loss in it.
            let inputs = match prepared.get_mut(i).and_then(Option::take) {
                Some(FromLoader::Prepared(inputs)) => inputs,
                Some(FromLoader::Drawn(drawn)) => {
                    o.handle.prepare(batch.share().into_iter().chain(drawn).collect(), ctx)?
                }
                None => o.handle.prepare(batch.share(), ctx)?,
            };
            acc.rows += self.rows_of(&inputs);
            // Buffers this term may not change are put back after its backward (autograd saved
            // them as they were: restoring earlier would fail its version check).
            let keep = !o.update_buffers;
            if keep {
                self.keep_buffers(true)?;
            }
            let autocast = self.precision.scope(device)?;
            let (inputs, outputs) = o.handle.forward(&self.session.model, inputs, ctx)?;
            let lv = o.handle.loss(&inputs, &outputs, ctx)?;
            drop(autocast);
            let weighted = if o.weight == 1.0 { lv.loss.shallow_clone() } else { lv.loss.f_mul_scalar(o.weight)? };
            add_to(&mut acc.loss_sum, &weighted.f_to_kind(Kind::Float)?)?;
            if let (Some(reducer), true) = (&self.reducer, overlap) {
                // The step's last backward: buckets start reducing as their gradients finish.
                if last_micro && i + 1 == n_objectives {
                    reducer.arm();
                }
            }
            (weighted / grad_accum as f64).f_backward()?;
            if keep {
                self.keep_buffers(false)?;
            }
            let mut metrics = lv.metrics;
            if self.session.is_mix() {
                metrics = metrics.into_iter().map(|(n, t)| (format!("{}/{n}", o.label), t)).collect();
                metrics.push((format!("{}/loss", o.label), lv.loss.detach()));
            }
            acc.add_metrics(metrics)?;
        }
        Ok(())
    }

    /// All-reduce (several ranks), the guarded update with clipping folded in, the skip count;
    /// the step's device-side metrics.
    fn finish_step(&mut self, acc: Accumulated) -> Result<StepOutcome> {
        let lr = self.lr_at(self.step);
        let grad_accum = self.settings().grad_accum as f64;
        let grad = self.flat.flat_grad().map_err(Error::Plugin)?;
        let loss = acc.loss_sum.ok_or_else(|| Error::Training("the run has no objective".into()))?;
        let loss = loss.f_div_scalar(grad_accum)?;
        let mut allreduce_s = 0.0;
        // What, besides the gradient norm, must be finite for the update to apply.
        let mut watched = loss.shallow_clone();
        if let (Some(group), Some(reducer)) = (&self.dist, &self.reducer) {
            // Every rank skips the same steps: the ranks' non-finite losses are counted over
            // all of them (a poisoned gradient alone would miss a loss with a finite gradient).
            // The time is what the all-reduce adds after backward (not what it overlapped).
            let t0 = Instant::now();
            // After the gradient buckets: collectives must be issued in the same order on every
            // rank, and how many buckets backward started differs between ranks.
            reducer.finish()?;
            let bad = loss.f_isfinite()?.f_logical_not()?.f_to_kind(Kind::Float)?.f_reshape([1])?;
            group.all_reduce_sum(&[bad.shallow_clone()])?;
            let _ = grad.shallow_clone().f_div_scalar_(group.world_size as f64)?;
            allreduce_s = t0.elapsed().as_secs_f64();
            watched = Tensor::f_where_scalar(&bad.f_gt(0.0)?.f_reshape([])?, f64::NAN, 0.0)?;
        }
        let clip = Some(self.settings().grad_clip).filter(|c| *c > 0.0);
        let (grad_norm, guard) = pt_optim::step_guard(&grad, clip, Some(&watched)).map_err(Error::Plugin)?;
        // Before the update (weight decay may add to the gradients in place), and only in steps
        // that move the weights: a zero-initialised layer unblocks the ones before it only once
        // it has moved. The first few steps only.
        if lr > 0.0 {
            match self.grad_watch.observe(&self.flat) {
                Ok(Some(idle)) => self.report_idle_parameters(&idle),
                Ok(None) => {}
                // A diagnostic: never a reason to stop training.
                Err(e) => {
                    tracing::debug!("no-gradient check off: {e}");
                    self.grad_watch.stop();
                }
            }
        }
        self.optimizer.step(&self.flat, &grad, lr, &guard).map_err(Error::Plugin)?;
        self.flat.zero_grad().map_err(Error::Plugin)?;
        self.step += 1;
        let found_inf = guard.found_inf.expect("step_guard always sets found_inf");
        self.health.record(&found_inf)?;
        // The step's metrics are means over its micro-batches, like its loss; vector metrics are
        // counts, summed into their histograms (a skipped step's left out).
        // Metrics an objective made on the host (e.g. a count) join the device's, copied without
        // waiting for the device, so the log line reads them all in one transfer.
        let device = found_inf.device();
        let applied = found_inf.f_lt(0.5)?;
        let (vectors, scalars): (Vec<_>, Vec<_>) = acc.metric_sums.into_iter().partition(|(_, t)| t.numel() > 1);
        let vectors = vectors
            .into_iter()
            .map(|(n, t)| Ok((n, t.f_to_device_(device, t.kind(), true, false)?.f_where_scalarother(&applied, 0.0)?)))
            .collect::<Result<Vec<_>>>()?;
        self.add_histograms(vectors)?;
        let metrics = scalars
            .into_iter()
            .map(|(n, t)| Ok((n, t.f_to_device_(device, Kind::Float, true, false)?.f_div_scalar(grad_accum)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(StepOutcome {
            loss,
            applied,
            grad_norm,
            lr,
            tokens: acc.tokens,
            rows: acc.rows,
            metrics,
            allreduce_s,
            loader_wait_s: acc.loader_wait_s,
            load_s: acc.load_s,
        })
    }

    /// The rows the architecture computes from `inputs`: the first dimension of its first input.
    fn rows_of(&self, inputs: &Tensors) -> u64 {
        let first = self.session.model.info.inputs.first().and_then(|name| inputs.get(name));
        first.and_then(|t| t.size().first().copied()).map_or(0, |n| n.max(0) as u64)
    }

    /// Warns (rank 0) about parameters that got no gradient in the first steps, by owner.
    fn report_idle_parameters(&self, idle: &[String]) {
        if idle.is_empty() || self.rank() != 0 {
            return;
        }
        let (objective, arch): (Vec<String>, Vec<String>) =
            idle.iter().cloned().partition(|n| n.starts_with(super::trainer::OBJECTIVE_PREFIX));
        if !objective.is_empty() {
            tracing::warn!(
                "objective {}: {} got no gradient in the first steps and will not train: its loss does not \
                 compute with the tensors parameters() returns (return the tensors themselves, e.g. \
                 shallow_clone(), never copies or detached tensors)",
                self.session.objective_origin(),
                shortlist(&objective)
            );
        }
        if !arch.is_empty() {
            let read: Vec<&String> =
                self.session.objectives.iter().flat_map(|o| &o.handle.info.needs_outputs).collect();
            let unread: Vec<&str> =
                self.session.model.info.outputs.iter().filter(|o| !read.contains(o)).map(String::as_str).collect();
            let why = if unread.is_empty() {
                "forward does not use them".to_string()
            } else {
                format!("outputs no objective of this run reads: {}", unread.join(", "))
            };
            tracing::warn!(
                "architecture {}: {} got no gradient in the first steps and will stay as initialised ({why})",
                self.session.model.origin,
                shortlist(&arch)
            );
        }
    }

    /// Takes in the device's skip count, current streak and longest streak since the last read
    /// (`DeviceHealth::tensors`, just read): reports the steps skipped since that read;
    /// `max_bad_steps` in a row stop the run with an error naming the last good checkpoint.
    pub(super) fn note_health(&mut self, health: &[f64]) -> Result<()> {
        let [skipped, streak, longest] = [0, 1, 2].map(|i| health[i].round() as u64);
        let new = skipped.saturating_sub(self.skipped);
        let since = self.health_read_at.unwrap_or(0);
        match new {
            0 => {}
            1 if streak > 0 => tracing::warn!(step = self.step, "non-finite loss or gradient: step skipped"),
            n => {
                tracing::warn!(
                    step = self.step,
                    "non-finite loss or gradient: {n} of steps {} to {} skipped",
                    since + 1,
                    self.step
                )
            }
        }
        self.skipped = skipped;
        self.bad_in_a_row = streak;
        self.health_read_at = Some(self.step);
        if longest < self.settings().max_bad_steps {
            return Ok(());
        }
        // A save still being written predates the streak (none are made during one).
        if let Ok(Some(d)) = self.ckpt.wait() {
            self.last_good_checkpoint = Some(d);
        }
        // The streak that reached the limit: the current one, or one that ended since the last read.
        let steps = match streak == longest {
            true => format!("steps {} to {}", self.step + 1 - streak, self.step),
            false => format!("between steps {} and {}", since + 1, self.step),
        };
        Err(Error::Training(format!(
            "{longest} non-finite steps in a row ({steps}): the loss or gradients are NaN/Inf. {} Lower the learning rate, check the data, or raise [run] max_bad_steps.",
            match &self.last_good_checkpoint {
                Some(d) => format!("The last good checkpoint is {}.", d.display()),
                None => "No checkpoint was saved yet.".to_string(),
            }
        )))
    }

    /// Reads the device's skip count and streak unless this step's are known already (before a
    /// save: a checkpoint records the count, and none is made during a streak).
    pub(super) fn refresh_health(&mut self) -> Result<()> {
        if self.health_read_at == Some(self.step) {
            return Ok(());
        }
        let values = super::host_read::read_host(&self.health.tensors())?;
        self.health.restart_longest()?;
        self.note_health(&values)
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
}
