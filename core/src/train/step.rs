//! One optimizer step: `grad_accum` micro-batches, each prepared, forwarded and scored by every
//! objective of the run (under autocast) and back-propagated; then the gradient all-reduce of a
//! multi-process run, global-norm clipping and the update on the flat buffer. A non-finite loss
//! or gradient skips the update; `max_bad_steps` in a row stop the run.

use super::grad_watch::shortlist;
use super::prefetch::Prefetcher;
use super::trainer::{Trainer, STREAM_TORCH};
use crate::{Error, Result};
use pt_sdk::rng::derive_seed;
use pt_sdk::{StepCtx, Tensors};
use std::time::Instant;
use tch::Tensor;

pub(super) struct StepOutcome {
    pub loss: Option<f64>,
    pub grad_norm: f64,
    pub lr: f64,
    pub tokens: u64,
    /// Rows the architecture computed (samples × the copies an objective makes of each, summed
    /// over objectives): what throughput in FLOPs counts.
    pub rows: u64,
    pub metrics: Vec<(String, f64)>,
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
    loss_sum: f64,
    tokens: u64,
    rows: u64,
    loader_wait_s: f64,
    load_s: f64,
    /// Objective metrics summed over the micro-batches (on the device: no sync).
    metric_sums: Vec<(String, Tensor)>,
    /// Micro-batches that ran to the end.
    counted: u32,
    finite: bool,
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
        let grad_accum = self.settings().grad_accum;
        let mut acc = Accumulated { finite: true, ..Default::default() };
        for micro in 0..grad_accum {
            let waiting = std::time::Instant::now();
            let loaded = loader.next()?;
            acc.loader_wait_s += waiting.elapsed().as_secs_f64();
            acc.load_s += loaded.load_s;
            self.cursor = self.sampler.next(loaded.cursor);
            acc.tokens += loaded.tokens.unwrap_or(0);
            let ctx = self.step_ctx(loaded.cursor.epoch, true);
            // Numbered across ranks as the global batch is, so N ranks draw what one process
            // with N-fold accumulation would.
            let stream = micro * self.world_size() + self.rank();
            tch::manual_seed(derive_seed(self.settings().seed, &[STREAM_TORCH, self.step, stream]) as i64);
            match self.micro_batch(&loaded.batch, &ctx, micro + 1 == grad_accum, &mut acc)? {
                Some(loss) => {
                    acc.loss_sum += loss;
                    acc.counted += 1;
                }
                None => {
                    acc.finite = false;
                    break;
                }
            }
        }
        self.finish_step(acc)
    }

    /// Every objective's forward, loss and backward on one micro-batch; their weighted losses'
    /// gradients accumulate (one backward each keeps memory flat). Returns the weighted loss,
    /// or None when one was not finite.
    fn micro_batch(
        &self,
        batch: &Tensors,
        ctx: &StepCtx,
        last_micro: bool,
        acc: &mut Accumulated,
    ) -> Result<Option<f64>> {
        let (grad_accum, overlap) = (self.settings().grad_accum, self.settings().overlap_allreduce);
        let device = self.session.device;
        let n_objectives = self.session.objectives.len();
        let mut micro_loss = 0.0;
        for (i, o) in self.session.objectives.iter().enumerate() {
            // Data preparation (augmentation, masking) outside autocast; forward and loss in it.
            let inputs = o.handle.prepare(batch.share(), ctx)?;
            acc.rows += self.rows_of(&inputs);
            // Buffers this term may not change are put back after its backward (autograd saved
            // them as they were: restoring earlier would fail its version check).
            let keep = !o.update_buffers;
            if keep {
                self.keep_buffers(true)?;
            }
            let autocast = self.precision.scope(device)?;
            let outputs = self.session.model.forward(&inputs, ctx)?;
            let lv = o.handle.loss(&inputs, &outputs, ctx)?;
            drop(autocast);
            let value = lv.loss.f_double_value(&[])?;
            if !value.is_finite() {
                if keep {
                    self.keep_buffers(false)?;
                }
                return Ok(None);
            }
            micro_loss += o.weight * value;
            let scaled = if o.weight == 1.0 { lv.loss.shallow_clone() } else { lv.loss.f_mul_scalar(o.weight)? };
            if let (Some(reducer), true) = (&self.reducer, overlap) {
                // The step's last backward: buckets start reducing as their gradients finish.
                if last_micro && i + 1 == n_objectives {
                    reducer.arm();
                }
            }
            (scaled / grad_accum as f64).f_backward()?;
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
        Ok(Some(micro_loss))
    }

    /// All-reduce (several ranks), clip, update, count a skipped step; the step's metrics.
    fn finish_step(&mut self, acc: Accumulated) -> Result<StepOutcome> {
        let lr = self.lr_at(self.step);
        let mut finite = acc.finite;
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
        let mut grad_norm = f64::NAN;
        if finite {
            let clip = self.settings().grad_clip;
            let norm = if clip > 0.0 { pt_optim::clip_grad_norm(&grad, clip) } else { pt_optim::grad_norm(&grad) }
                .map_err(Error::Plugin)?;
            grad_norm = norm.f_double_value(&[])?;
            finite = grad_norm.is_finite();
            if finite {
                // Before the update (weight decay may add to the gradients in place), and only
                // in steps that move the weights: a zero-initialised layer unblocks the ones
                // before it only once it has moved.
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
                self.optimizer.step(&self.flat, &grad, lr).map_err(Error::Plugin)?;
            }
        }
        self.flat.zero_grad().map_err(Error::Plugin)?;
        self.step += 1;
        self.count_bad_step(finite)?;
        // The step's metrics are means over its micro-batches, like its loss; vector metrics are
        // counts, summed into their histograms.
        let (vectors, scalars): (Vec<_>, Vec<_>) = acc.metric_sums.into_iter().partition(|(_, t)| t.numel() > 1);
        if finite {
            self.add_histograms(vectors)?;
        }
        let mut metrics: Vec<(String, f64)> = scalars
            .into_iter()
            .filter_map(|(n, t)| t.f_double_value(&[]).ok().map(|v| (n, v / acc.counted.max(1) as f64)))
            .collect();
        let mut loss = acc.loss_sum / self.settings().grad_accum as f64;
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
        let loss = finite.then_some(loss);
        Ok(StepOutcome {
            loss,
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

    /// Counts a skipped step; `max_bad_steps` in a row stop the run with an error naming the
    /// last good checkpoint.
    fn count_bad_step(&mut self, finite: bool) -> Result<()> {
        if finite {
            self.bad_in_a_row = 0;
            return Ok(());
        }
        self.skipped += 1;
        self.bad_in_a_row += 1;
        tracing::warn!(step = self.step, "non-finite loss or gradient: step skipped");
        if self.bad_in_a_row < self.settings().max_bad_steps {
            return Ok(());
        }
        // A save still being written predates the streak (none are made during one).
        if let Ok(Some(d)) = self.ckpt.wait() {
            self.last_good_checkpoint = Some(d);
        }
        Err(Error::Training(format!(
            "{} non-finite steps in a row (steps {} to {}): the loss or gradients are NaN/Inf. {} Lower the learning rate, check the data, or raise [run] max_bad_steps.",
            self.bad_in_a_row,
            self.step + 1 - self.bad_in_a_row,
            self.step,
            match &self.last_good_checkpoint {
                Some(d) => format!("The last good checkpoint is {}.", d.display()),
                None => "No checkpoint was saved yet.".to_string(),
            }
        )))
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
