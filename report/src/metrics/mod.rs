//! Metric files of a run directory: JSONL, CSV and TensorBoard, written by one `MetricsLog`.

mod csv;
mod jsonl;
mod log;

pub use jsonl::{read_metrics, MetricsRow};
pub use log::{MetricsLog, METRICS_CSV, METRICS_JSONL, TENSORBOARD_DIR};
