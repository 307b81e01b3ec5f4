//! What a run writes about itself: the metrics rows (averaged over the steps between two log
//! lines, with throughput and MFU), the loss curves and the pictures of vector metrics.

use super::step::StepOutcome;
use super::trainer::Trainer;
use crate::{Error, Result};
use pt_report::{LinePlot, Series};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// A vector metric summed over steps `first..=last`.
pub(super) struct Histogram {
    counts: Tensor,
    first: u64,
    last: u64,
}

/// The loss and evaluation curves logged before this process started (a resumed run's plot
/// covers the whole run, not only its last part).
pub(super) fn curves_so_far(run_dir: &Path) -> (Vec<(f64, f64)>, BTreeMap<String, Vec<(f64, f64)>>) {
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

impl Trainer<'_> {
    /// The metrics row of a log step: the window's means plus throughput, MFU, lr, epoch. The
    /// window's device values and the skip count come to the host here, in one read.
    pub(super) fn log_step(&mut self, window: &mut Window, outcome: &StepOutcome) -> Result<BTreeMap<String, f64>> {
        let mut row = window.drain(outcome, self)?;
        // FLOPs per row the architecture computed: an objective that makes several rows of each
        // sample (views, rotations) does that many times the work per sample.
        let rate = row.get("rows_per_s").or_else(|| row.get("samples_per_s")).copied();
        if let (Some(flops), Some(sps)) = (self.session.model.info.train_flops_per_sample, rate) {
            let achieved = flops * sps;
            row.insert("tflops".into(), achieved / 1e12);
            if let Some(peak) = peak_flops(self.session.device) {
                row.insert("mfu".into(), achieved / peak);
            }
        }
        row.insert("lr".into(), outcome.lr);
        row.insert(
            "epoch".into(),
            self.cursor.epoch as f64 + self.cursor.micro_batch as f64 / self.sampler.micro_batches_per_epoch() as f64,
        );
        row.insert("skipped_steps".into(), self.skipped as f64);
        if let Some(l) = row.get("loss") {
            self.loss_curve.push((self.step as f64, *l));
        }
        self.log_row(row.clone())?;
        self.latest_metrics.extend(row.clone());
        tracing::info!(step = self.step, metrics = ?row, "step");
        Ok(row)
    }

    pub(super) fn log_row(&mut self, row: BTreeMap<String, f64>) -> Result<()> {
        match &mut self.metrics {
            Some(m) => m.log(self.step, row).map_err(|e| Error::Training(format!("metrics: {e}"))),
            None => Ok(()),
        }
    }

    /// Adds this step's vector metrics; from 90 % of a known run length on, the sums restart
    /// once so the picture shows how the run ends, not how it began.
    pub(super) fn add_histograms(&mut self, vectors: Vec<(String, Tensor)>) -> Result<()> {
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
    pub(super) fn plot_histograms(&mut self) {
        let mut drawn = Vec::new();
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
            let base = self.session.run_dir().join(name.replace('/', "-"));
            match pt_report::plot_lines(&base.with_extension("png"), &plot) {
                Ok(()) => drawn.push((format!("usage/{name}"), base.with_extension("png"))),
                Err(e) => tracing::warn!("could not draw {name}.png: {e}"),
            }
            let json =
                serde_json::json!({ "name": name, "first_step": h.first, "last_step": h.last, "counts": counts });
            if let Err(e) = std::fs::write(base.with_extension("json"), json.to_string()) {
                tracing::warn!("could not write {name}.json: {e}");
            }
        }
        for (tag, path) in drawn {
            self.send_picture(&tag, &path);
        }
    }

    /// Sends a picture pt drew to TensorBoard (IMAGES tab), at this step.
    pub(super) fn send_picture(&mut self, tag: &str, path: &Path) {
        let step = self.step;
        if let Some(m) = &mut self.metrics {
            if let Err(e) = m.log_picture(step, tag, path) {
                tracing::warn!("could not send {} to TensorBoard: {e}", path.display());
            }
        }
    }

    pub(super) fn plot_curves(&mut self) {
        let mut series = vec![Series { name: "train loss".into(), points: self.loss_curve.clone() }];
        for (name, points) in &self.eval_curves {
            if name.ends_with("loss") {
                series.push(Series { name: format!("held-out {name}"), points: points.clone() });
            }
        }
        let plot = LinePlot {
            title: format!("{} + {}", self.session.objective_origin(), self.session.model.origin),
            x_label: "step".into(),
            y_label: "loss".into(),
            series,
            ..Default::default()
        };
        let path = self.session.run_dir().join("loss.png");
        match pt_report::plot_lines(&path, &plot) {
            Ok(()) => self.send_picture("curves/loss", &path),
            Err(e) => tracing::warn!("could not draw loss.png: {e}"),
        }
        self.plot_monitors();
    }

    /// `monitor.png`: the accuracy of every evaluator that ran during training (a kNN monitor
    /// every N steps), per layer for evaluators of several taps, in % by step — beside
    /// `loss.png`, so a user sees representations improve (or collapse) while the run goes.
    pub(super) fn plot_monitors(&mut self) {
        let layered = |label: &str| self.eval_curves.keys().any(|k| k.starts_with(&format!("{label}/accuracy@")));
        let series: Vec<Series> = self
            .eval_curves
            .iter()
            .filter(|(_, points)| points.len() >= 2)
            .filter_map(|(name, points)| {
                let (label, metric) = name.rsplit_once('/')?;
                let shown = match metric.strip_prefix("accuracy") {
                    Some("") if !layered(label) => label.to_string(),
                    Some(layer) if layer.starts_with('@') => format!("{label} {layer}"),
                    _ => return None,
                };
                Some(Series { name: shown, points: points.iter().map(|(x, y)| (*x, y * 100.0)).collect() })
            })
            .collect();
        if series.is_empty() {
            return;
        }
        let plot = LinePlot {
            title: format!("held-out accuracy while pretraining ({})", self.session.model.origin),
            x_label: "step".into(),
            y_label: "accuracy (%)".into(),
            series,
            ..Default::default()
        };
        let path = self.session.run_dir().join("monitor.png");
        match pt_report::plot_lines(&path, &plot) {
            Ok(()) => self.send_picture("curves/monitor", &path),
            Err(e) => tracing::warn!("could not draw monitor.png: {e}"),
        }
    }
}

/// The run plan's values for TensorBoard's hparams plugin: `section.key` (and deeper tables
/// dotted alike) → number, text or bool; lists as their TOML text.
pub(super) fn hparams(plan_toml: &str) -> Vec<(String, pt_report::tensorboard::HParam)> {
    use pt_report::tensorboard::HParam;
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, HParam)>) {
        for (key, value) in table {
            let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                toml::Value::Table(t) => walk(&name, t, out),
                toml::Value::Integer(i) => out.push((name, HParam::Number(*i as f64))),
                toml::Value::Float(f) => out.push((name, HParam::Number(*f))),
                toml::Value::Boolean(b) => out.push((name, HParam::Bool(*b))),
                toml::Value::String(s) => out.push((name, HParam::Text(s.clone()))),
                other => out.push((name, HParam::Text(other.to_string()))),
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(table) = plan_toml.parse::<toml::Table>() {
        walk("", &table, &mut out);
    }
    out
}

/// Dense bf16 peak of the training device, for MFU: `$PT_PEAK_TFLOPS` if set, else known
/// data-centre GPUs by name. None on CPUs (no meaningful peak).
pub(super) fn peak_flops(device: tch::Device) -> Option<f64> {
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

/// Averages over the steps between two log lines: times and counts on the host, losses and
/// metrics summed on the device over the steps that were applied.
#[derive(Default)]
pub(super) struct Window {
    loss_sum: Option<Tensor>,
    /// Steps applied (not skipped), as a device count.
    applied: Option<Tensor>,
    metric_sums: Vec<(String, Tensor)>,
    seconds: f64,
    samples: u64,
    rows: u64,
    tokens: u64,
    steps: u64,
    allreduce_s: f64,
    loader_wait_s: f64,
    load_s: f64,
    /// Host reads made by this process when the window began.
    reads_at_start: Option<u64>,
    /// (steps counted, synchronising CUDA calls in them) in this process when the window began.
    syncs_at_start: (u64, u64),
}

/// `where(applied, t, 0)` in float64: a skipped step adds nothing.
fn masked(t: &Tensor, applied: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?.f_to_kind(tch::Kind::Double)?.f_where_scalarother(applied, 0.0)?)
}

impl Window {
    /// A window starting now: the syncs counted from here on are its steps' (counting is on
    /// only inside steps, so its first step's are among them).
    pub(super) fn start() -> Window {
        Window { syncs_at_start: super::device_syncs::counted_so_far(), ..Window::default() }
    }

    pub(super) fn add(&mut self, o: &StepOutcome, seconds: f64, samples: u64) -> Result<()> {
        // Reads between windows (an evaluation, a save's health check) are not the steps'.
        self.reads_at_start.get_or_insert_with(super::host_read::reads_so_far);
        let _no_grad = tch::no_grad_guard();
        super::step::add_to(&mut self.loss_sum, &masked(&o.loss, &o.applied)?)?;
        super::step::add_to(&mut self.applied, &masked(&o.applied, &o.applied)?)?;
        for (name, t) in &o.metrics {
            let t = masked(t, &o.applied)?;
            match self.metric_sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) => *sum = sum.f_add(&t)?,
                None => self.metric_sums.push((name.clone(), t)),
            }
        }
        self.seconds += seconds;
        self.samples += samples;
        self.rows += o.rows;
        self.tokens += o.tokens;
        self.steps += 1;
        self.allreduce_s += o.allreduce_s;
        self.loader_wait_s += o.loader_wait_s;
        self.load_s += o.load_s;
        Ok(())
    }

    /// The row of means, after one read of the window's device values (with the trainer's skip
    /// count, which the trainer takes in). A multi-process run averages losses and metrics over
    /// the ranks (every rank logs at the same steps).
    pub(super) fn drain(&mut self, last: &StepOutcome, trainer: &mut Trainer) -> Result<BTreeMap<String, f64>> {
        let (Some(loss_sum), Some(applied)) = (&self.loss_sum, &self.applied) else {
            return Err(Error::Training("a log line with no step in its window".into()));
        };
        let [skipped, streak, longest] = trainer.health.tensors();
        let mut scalars = vec![skipped, streak, longest, &last.grad_norm, applied, loss_sum];
        scalars.extend(self.metric_sums.iter().map(|(_, t)| t));
        // On a GPU the read waits for the steps queued before it: that time is theirs.
        let reading = std::time::Instant::now();
        let mut values = super::host_read::read_host(&scalars)?;
        self.seconds += reading.elapsed().as_secs_f64();
        let reads = super::host_read::reads_so_far() - self.reads_at_start.unwrap_or(0);
        trainer.health.restart_longest()?;
        trainer.note_health(&values[..3])?;
        let grad_norm = values[3];
        if let Some(group) = &trainer.dist {
            // Sums over ranks of the applied steps' sums (the same steps are applied on every rank).
            let summed = group.all_reduce_host(&values[4..])?;
            let world = group.world_size as f64;
            values.splice(4.., summed.into_iter().map(|v| v / world));
        }
        let applied = values[4];
        let mut row = BTreeMap::new();
        if applied > 0.0 {
            row.insert("loss".into(), values[5] / applied);
            for ((name, _), v) in self.metric_sums.iter().zip(&values[6..]) {
                row.insert(name.clone(), v / applied);
            }
        }
        row.insert("grad_norm".into(), grad_norm);
        if self.seconds > 0.0 {
            row.insert("samples_per_s".into(), self.samples as f64 / self.seconds);
            if self.rows > 0 && self.rows != self.samples {
                row.insert("rows_per_s".into(), self.rows as f64 / self.seconds);
            }
            if self.tokens > 0 {
                row.insert("tokens_per_s".into(), self.tokens as f64 / self.seconds);
            }
            row.insert("step_time_s".into(), self.seconds / self.steps.max(1) as f64);
            // A starved device shows here: the share of step time spent waiting for batches.
            row.insert("loader_wait_share".into(), self.loader_wait_s / self.seconds);
            row.insert("data_wait_s".into(), self.loader_wait_s / self.steps.max(1) as f64);
            if self.allreduce_s > 0.0 {
                // Share of step time spent all-reducing gradients (not overlapped with backward).
                row.insert("allreduce_share".into(), self.allreduce_s / self.seconds);
            }
        }
        if self.load_s > 0.0 {
            // What the loader thread alone could deliver (samples per second of its work).
            row.insert("loader_samples_per_s".into(), self.samples as f64 / self.load_s);
        }
        // Device values the trainer read back per step (this log line's read included): each
        // one a wait for the GPU, so a sync-free step shows about 1 / log_every.
        row.insert("host_reads_per_step".into(), reads as f64 / self.steps.max(1) as f64);
        let (steps, syncs) = super::device_syncs::counted_so_far();
        let counted = steps - self.syncs_at_start.0;
        if counted > 0 {
            // Every wait for the GPU inside the counted steps, a plugin's included (0 for a step
            // that reads nothing; the log line's own read comes after the step). Absent where
            // nothing was counted (off CUDA, or a libtorch that cannot count).
            let syncs = syncs - self.syncs_at_start.1;
            row.insert("device_syncs_per_step".into(), syncs as f64 / counted as f64);
        }
        *self = Window::start();
        Ok(row)
    }
}
