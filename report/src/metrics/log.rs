//! `MetricsLog`: a run directory's metric files, written together.

use super::csv::Columns;
use super::jsonl::{self, MetricsRow, STEP_KEY, WALL_TIME_KEY};
use crate::error::{IoContext, ReportError, Result};
use crate::fs_util::replace_file;
use crate::tensorboard::{truncate_event_files, EventWriter};
use std::borrow::Borrow;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const METRICS_CSV: &str = "metrics.csv";
/// The TensorBoard log directory inside the run directory (`tensorboard --logdir <run>/tb`).
pub const TENSORBOARD_DIR: &str = "tb";

/// The metric files of one run directory:
/// - `metrics.jsonl`: one JSON object per logged row (the source of truth);
/// - `metrics.csv`: the same rows as a table, header = every metric name seen so far;
/// - `tb/events.out.tfevents.<unix-time>.<hostname>.pt`: TensorBoard scalars, a new file per
///   process (TensorBoard merges the files of a directory).
///
/// Opening continues existing files (a resumed run appends to them). Every `log` call is flushed
/// to disk, so a killed run loses at most the row being written. Only one process (rank 0) may
/// write a run directory.
pub struct MetricsLog {
    dir: PathBuf,
    jsonl_path: PathBuf,
    csv_path: PathBuf,
    jsonl: BufWriter<File>,
    csv: BufWriter<File>,
    columns: Columns,
    tb: EventWriter,
}

impl MetricsLog {
    /// Opens (creating as needed) the metric files of `run_dir`, keeping all existing rows.
    pub fn open(run_dir: &Path) -> Result<Self> {
        Self::open_with(run_dir, None)
    }

    /// Opens the metric files of a run resuming from a checkpoint taken at `step`: rows and
    /// TensorBoard events with a greater step (logged after that checkpoint by the interrupted
    /// process) are dropped first, so the resumed run does not log those steps twice.
    pub fn resume(run_dir: &Path, step: u64) -> Result<Self> {
        Self::open_with(run_dir, Some(step))
    }

    fn open_with(run_dir: &Path, keep_up_to: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(run_dir).at(run_dir, "create run directory")?;
        let jsonl_path = run_dir.join(METRICS_JSONL);
        let csv_path = run_dir.join(METRICS_CSV);
        let tb_dir = run_dir.join(TENSORBOARD_DIR);

        let mut loaded = jsonl::load_rows(&jsonl_path)?;
        let before = loaded.rows.len();
        loaded.keep_up_to(&jsonl_path, keep_up_to)?;
        if let Some(step) = keep_up_to {
            truncate_event_files(&tb_dir, step)?;
        }
        let rows = loaded.rows;
        // The CSV is always regenerated on open: it may be stale if the last run was killed.
        let columns = Columns::from_rows(&rows);
        replace_file(&csv_path, columns.render(&rows).as_bytes())?;
        if rows.len() != before {
            tracing::info!(
                "{}: dropped {} rows after step {}",
                jsonl_path.display(),
                before - rows.len(),
                keep_up_to.unwrap_or_default()
            );
        }

        let tb = EventWriter::create(&tb_dir, now())?;
        Ok(MetricsLog {
            dir: run_dir.to_path_buf(),
            jsonl: append(&jsonl_path)?,
            csv: append(&csv_path)?,
            jsonl_path,
            csv_path,
            columns,
            tb,
        })
    }

    /// Records `values` at `step` in all three files and flushes them. Names must be non-empty,
    /// distinct, and not `step` or `wall_time`. Non-finite values are stored as `null` in the JSONL,
    /// `NaN` in the CSV, and as they are in TensorBoard.
    pub fn log<K, V>(&mut self, step: u64, values: impl IntoIterator<Item = (K, V)>) -> Result<()>
    where
        K: AsRef<str>,
        V: Borrow<f64>,
    {
        let row = MetricsRow {
            step,
            wall_time: now(),
            values: values.into_iter().map(|(k, v)| (k.as_ref().to_string(), *v.borrow())).collect(),
        };
        validate_row(&row)?;

        self.jsonl.write_all(row.to_json_line().as_bytes()).at(&self.jsonl_path, "append to metrics file")?;
        if self.columns.contains_all(&row) {
            self.csv.write_all(self.columns.line(&row).as_bytes()).at(&self.csv_path, "append to metrics file")?;
        } else {
            self.columns.add_missing(&row);
            self.rewrite_csv()?;
        }
        for (name, value) in &row.values {
            self.tb.write_scalar(row.wall_time, step, name, *value)?;
        }
        self.flush()
    }

    /// Sends the picture `png` (a PNG pt drew: loss curves, a confusion matrix) to TensorBoard
    /// under `tag` at `step`.
    pub fn log_picture(&mut self, step: u64, tag: &str, png: &Path) -> Result<()> {
        self.tb.write_png(now(), step, tag, png)?;
        self.tb.flush()
    }

    /// Sends distributions (e.g. each weight tensor's values) to TensorBoard at `step`.
    pub fn log_histograms(&mut self, step: u64, histograms: &[(String, crate::tensorboard::Histogram)]) -> Result<()> {
        for (tag, h) in histograms {
            self.tb.write_histogram(now(), step, tag, h)?;
        }
        self.tb.flush()
    }

    /// Records the run's hyperparameters for TensorBoard's HPARAMS tab.
    pub fn log_hparams(&mut self, hparams: &[(String, crate::tensorboard::HParam)]) -> Result<()> {
        self.tb.write_hparams(now(), hparams)?;
        self.tb.flush()
    }

    /// Rewrites the files without the rows and TensorBoard events whose step is greater than
    /// `step` (for a run that goes back to an earlier checkpoint while this log is open).
    pub fn truncate_after(&mut self, step: u64) -> Result<()> {
        self.flush()?;
        let mut loaded = jsonl::load_rows(&self.jsonl_path)?;
        loaded.keep_up_to(&self.jsonl_path, Some(step))?;
        let rows = loaded.rows;
        self.jsonl = append(&self.jsonl_path)?;
        self.columns = Columns::from_rows(&rows);
        replace_file(&self.csv_path, self.columns.render(&rows).as_bytes())?;
        self.csv = append(&self.csv_path)?;
        truncate_event_files(&self.dir.join(TENSORBOARD_DIR), step)?;
        // The rewrite replaced our event file on disk: continue the new one.
        self.tb = EventWriter::append_to(self.tb.path())?;
        Ok(())
    }

    /// Writes buffered data of all three files to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.jsonl.flush().at(&self.jsonl_path, "write metrics file")?;
        self.csv.flush().at(&self.csv_path, "write metrics file")?;
        self.tb.flush()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn jsonl_path(&self) -> &Path {
        &self.jsonl_path
    }

    pub fn csv_path(&self) -> &Path {
        &self.csv_path
    }

    /// The event file this process writes.
    pub fn tensorboard_path(&self) -> &Path {
        self.tb.path()
    }

    /// Regenerates the CSV from the JSONL with the current (wider) header.
    fn rewrite_csv(&mut self) -> Result<()> {
        self.jsonl.flush().at(&self.jsonl_path, "write metrics file")?;
        let rows = jsonl::read_metrics(&self.jsonl_path)?;
        replace_file(&self.csv_path, self.columns.render(&rows).as_bytes())?;
        self.csv = append(&self.csv_path)?;
        Ok(())
    }
}

impl Drop for MetricsLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("metrics log not fully written: {e}");
        }
    }
}

fn validate_row(row: &MetricsRow) -> Result<()> {
    if i64::try_from(row.step).is_err() {
        return Err(ReportError::InvalidInput(format!(
            "step {} exceeds the int64 range that TensorBoard stores",
            row.step
        )));
    }
    let mut seen = HashSet::with_capacity(row.values.len());
    for (name, _) in &row.values {
        if name.is_empty() || name == STEP_KEY || name == WALL_TIME_KEY {
            return Err(ReportError::InvalidInput(format!(
                "metric name {name:?} at step {}: names must be non-empty and not \"{STEP_KEY}\" or \"{WALL_TIME_KEY}\" (those columns are written by the log itself)",
                row.step
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(ReportError::InvalidInput(format!("metric {name:?} given twice at step {}", row.step)));
        }
    }
    Ok(())
}

fn append(path: &Path) -> Result<BufWriter<File>> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
        .at(path, "open metrics file for appending")
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
