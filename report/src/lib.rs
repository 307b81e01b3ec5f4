//! Run reporting for pt: what a run directory records and how it is shown.
//!
//! - [`MetricsLog`] writes a run's metrics as `metrics.jsonl`, `metrics.csv` and a native
//!   TensorBoard event file under `tb/`, continuing them when a run resumes.
//! - [`tensorboard::read_scalars`] reads event files back, checking every CRC.
//! - [`plot`] draws PNG line plots, confusion matrices, class-coloured scatter plots and image
//!   grids with an embedded font (no display, no system fonts).
//!
//! Pure Rust, no libtorch: callers convert tensors to plain numbers first.

mod error;
mod fs_util;
mod metrics;
pub mod plot;
pub mod tensorboard;

pub use error::{ReportError, Result};
pub use metrics::{read_metrics, MetricsLog, MetricsRow, METRICS_CSV, METRICS_JSONL, TENSORBOARD_DIR};
pub use plot::{
    plot_confusion, plot_heatmap, plot_image_grid, plot_lines, plot_scatter, smooth, LinePlot, RgbImage, Series,
};
