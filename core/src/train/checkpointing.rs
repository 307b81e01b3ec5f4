//! Saving the run's state: the architecture's buffers averaged over ranks, then a snapshot of
//! weights, objective and optimizer state handed to the checkpoint manager's writer.

use super::observer::Observer;
use super::resume::{named_model, named_objective};
use super::trainer::Trainer;
use crate::checkpoint::manager::snapshot;
use crate::checkpoint::{PluginRecord, SaveRequest};
use crate::plugin::Registry;
use crate::{Error, Result};
use std::collections::BTreeMap;
use tch::Tensor;

impl Trainer<'_> {
    /// Multi-process runs: each rank's BatchNorm running statistics come from its own part of
    /// the batch; their mean (over ranks) is what gets evaluated and saved.
    pub(super) fn average_buffers(&self) -> Result<()> {
        let Some(group) = &self.dist else { return Ok(()) };
        let buffers: Vec<Tensor> =
            self.session.model.buffers()?.into_iter().map(|(_, t)| t).filter(|t| t.is_floating_point()).collect();
        if !buffers.is_empty() {
            let _guard = tch::no_grad_guard();
            group.all_reduce_sum(&buffers)?;
            for b in &buffers {
                let _ = b.shallow_clone().f_div_scalar_(group.world_size as f64)?;
            }
        }
        Ok(())
    }

    /// Snapshots the state and hands it to the checkpoint writer (rank 0; the weights are the
    /// same on every rank).
    pub fn save(&mut self, obs: &mut dyn Observer) -> Result<()> {
        self.refresh_health()?; // the checkpoint records the skip count
        self.average_buffers()?;
        if self.rank() != 0 {
            self.saved_step = Some(self.step);
            return Ok(());
        }
        let s = &self.session;
        let run = &s.plan.recipe.run;
        let mut components = BTreeMap::new();
        components.insert("data".to_string(), s.data.origin.clone());
        components.insert("arch".to_string(), s.model.origin.clone());
        components.insert("objective".to_string(), s.objective_origin());
        let assets = s.run_dir().join("assets");
        let req = SaveRequest {
            step: self.step,
            cursor: self.cursor,
            world_size: self.world_size(),
            lr: self.lr_at(self.step),
            seed: run.seed,
            optimizer: self.optimizer.name().to_string(),
            optimizer_steps: self.optimizer.steps(),
            metrics: self.latest_metrics.clone(),
            skipped_steps: self.skipped,
            config: s.resolved_toml(),
            components,
            plugins: plugin_records(self.reg),
            libtorch_version: crate::runtime::libtorch_lib_dir()
                .and_then(|d| crate::runtime::libtorch_version(&d))
                .unwrap_or_default(),
            model: snapshot(&named_model(s)?),
            objective: snapshot(&named_objective(s)?),
            optimizer_state: snapshot(
                &pt_optim::saved_state(self.optimizer.as_ref(), &self.flat).map_err(Error::Plugin)?,
            ),
            assets_dir: assets.is_dir().then_some(assets),
        };
        self.send_weight_histograms(&req.model);
        let written = self.ckpt.wait()?;
        self.report_written(obs, written.as_deref());
        self.ckpt.save(req)?;
        self.saved_step = Some(self.step);
        Ok(())
    }

    /// Each floating-point weight's distribution to TensorBoard (HISTOGRAMS, `weights/NAME`),
    /// from the CPU copies a save makes anyway.
    fn send_weight_histograms(&mut self, model: &[(String, tch::Tensor)]) {
        let Some(m) = &mut self.metrics else { return };
        let histograms: Vec<_> =
            model.iter().filter_map(|(name, t)| Some((format!("weights/{name}"), histogram(t)?))).collect();
        if let Err(e) = m.log_histograms(self.step, &histograms) {
            tracing::warn!("TensorBoard histograms not written: {e}");
        }
    }

    /// A checkpoint the writer has finished: the one to fall back to, and the observer hears of
    /// it (only then: a path is never announced before it exists).
    pub(super) fn report_written(&mut self, obs: &mut dyn Observer, written: Option<&std::path::Path>) {
        let Some(dir) = written else { return };
        let step = crate::checkpoint::format::step_of_dir_name(dir).unwrap_or(self.step);
        obs.on_checkpoint(step, dir);
        self.last_good_checkpoint = Some(dir.to_path_buf());
    }
}

pub(crate) fn plugin_records(reg: &Registry) -> Vec<PluginRecord> {
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

/// Buckets of a floating-point tensor's values, 30 between its min and max (None: not floating
/// point, empty, or not finite).
fn histogram(t: &tch::Tensor) -> Option<pt_report::tensorboard::Histogram> {
    if !t.is_floating_point() || t.numel() == 0 {
        return None;
    }
    // On the save's own CPU copy, without another copy in float64: this runs on the training thread.
    let v = t.flatten(0, -1);
    let (min, max) = (v.min().double_value(&[]), v.max().double_value(&[]));
    if !min.is_finite() || !max.is_finite() {
        return None;
    }
    const BUCKETS: i64 = 30;
    let num = v.numel() as f64;
    // histc spans the values' own range; a constant tensor (a fresh LayerNorm) is one bucket.
    let (limits, counts) = match max > min {
        true => {
            let width = (max - min) / BUCKETS as f64;
            ((1..=BUCKETS).map(|i| min + width * i as f64).collect(), Vec::<f64>::try_from(v.histc(BUCKETS)).ok()?)
        }
        false => (vec![max], vec![num]),
    };
    Some(pt_report::tensorboard::Histogram {
        min,
        max,
        num,
        sum: v.sum(tch::Kind::Double).double_value(&[]),
        sum_squares: v.norm().double_value(&[]).powi(2),
        limits,
        counts,
    })
}
