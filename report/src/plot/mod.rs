//! PNG plots drawn with plotters' bitmap backend and the embedded DejaVu Sans font: no display,
//! no system fonts.

mod confusion;
mod font;
mod image_grid;
mod lines;
mod log_axis;
mod palette;
mod range;
mod scatter;
mod smooth;
mod ticks;

pub use confusion::{plot_confusion, plot_heatmap};
pub use image_grid::{plot_image_grid, RgbImage};
pub use lines::{plot_lines, LinePlot, Series};
pub use scatter::plot_scatter;
pub use smooth::smooth;

use crate::error::{IoContext, ReportError, Result};
use std::path::Path;

/// The default plot size in pixels (width, height).
pub const DEFAULT_SIZE: (u32, u32) = (800, 500);

/// Largest side accepted: beyond it a plot is almost surely a caller's mistake (and a ~800 MB
/// buffer).
const MAX_SIDE: u32 = 16_384;

/// Shared checks before drawing: a `.png` path (plotters picks the encoder by extension), a sane
/// size, the font registered and the parent directory present.
fn prepare(path: &Path, (width, height): (u32, u32)) -> Result<()> {
    let is_png = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(ReportError::InvalidInput(format!(
            "{}: plots are written as PNG; give the file a .png extension",
            path.display()
        )));
    }
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ReportError::InvalidInput(format!(
            "{}: plot size {width}x{height} is out of range (1..={MAX_SIDE} pixels a side)",
            path.display()
        )));
    }
    font::ensure_registered()?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).at(parent, "create plot directory")?;
    }
    Ok(())
}

/// Class names longer than this are cut (with an ellipsis) so labels keep to their area.
const MAX_LABEL_CHARS: usize = 24;

fn short_label(name: &str) -> String {
    if name.chars().count() <= MAX_LABEL_CHARS {
        name.to_string()
    } else {
        let mut cut: String = name.chars().take(MAX_LABEL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// Checks that `class_names` has one name per class.
fn check_class_names(path: &Path, names: usize, classes: usize, what: &str) -> Result<()> {
    if names < classes {
        return Err(ReportError::InvalidInput(format!(
            "{}: {what} has {classes} classes but {names} class names were given",
            path.display()
        )));
    }
    Ok(())
}
