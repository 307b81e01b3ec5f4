//! Image grids: first-layer conv filters, input samples, reconstructions.

use super::prepare;
use crate::error::{ReportError, Result};
use plotters::prelude::*;
use std::path::Path;

/// An RGB image: `(width, height, pixels)`, pixels row-major, 3 bytes per pixel.
pub type RgbImage = (usize, usize, Vec<u8>);

const GAP: usize = 2;
const BACKGROUND: [u8; 3] = [200, 200, 200];

/// Tiles `images` row by row, `cols` per row, each pixel drawn as a `scale`×`scale` square, with a
/// 2-pixel grey gap between tiles. Images of different sizes sit top-left in tiles sized to the
/// largest. Callers map float data (filters) to 0..=255 first.
pub fn plot_image_grid(path: &Path, images: &[RgbImage], cols: usize, scale: u32) -> Result<()> {
    let invalid = |msg: String| ReportError::InvalidInput(format!("{}: {msg}", path.display()));
    if images.is_empty() {
        return Err(invalid("no images to tile".into()));
    }
    if cols == 0 || scale == 0 {
        return Err(invalid(format!("cols ({cols}) and scale ({scale}) must be at least 1")));
    }
    for (i, (w, h, pixels)) in images.iter().enumerate() {
        let expected = w.checked_mul(*h).and_then(|p| p.checked_mul(3));
        if *w == 0 || *h == 0 || expected != Some(pixels.len()) {
            return Err(invalid(format!(
                "image {i} is {w}x{h} but has {} bytes; an RGB image needs width*height*3",
                pixels.len()
            )));
        }
    }
    let scale = scale as usize;
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let tile_w = images.iter().map(|i| i.0).max().unwrap_or(1).saturating_mul(scale);
    let tile_h = images.iter().map(|i| i.1).max().unwrap_or(1).saturating_mul(scale);
    let width = cols.saturating_mul(tile_w + GAP).saturating_add(GAP);
    let height = rows.saturating_mul(tile_h + GAP).saturating_add(GAP);
    let size = (u32::try_from(width).unwrap_or(u32::MAX), u32::try_from(height).unwrap_or(u32::MAX));
    prepare(path, size)?;

    // Compose the picture in memory and hand it to plotters as one bitmap.
    let mut canvas: Vec<u8> = BACKGROUND.repeat(width * height);
    for (index, (w, h, pixels)) in images.iter().enumerate() {
        let (left, top) = (GAP + (index % cols) * (tile_w + GAP), GAP + (index / cols) * (tile_h + GAP));
        for y in 0..h * scale {
            let src_row = &pixels[(y / scale) * w * 3..(y / scale + 1) * w * 3];
            let dst_start = ((top + y) * width + left) * 3;
            let dst_row = &mut canvas[dst_start..dst_start + w * scale * 3];
            for (x, dst) in dst_row.chunks_exact_mut(3).enumerate() {
                let src = (x / scale) * 3;
                dst.copy_from_slice(&src_row[src..src + 3]);
            }
        }
    }

    let root = BitMapBackend::new(path, size).into_drawing_area();
    let picture = BitMapElement::<(i32, i32)>::with_owned_buffer((0, 0), size, canvas)
        .ok_or_else(|| ReportError::plot(path, "image buffer does not match the plot size"))?;
    root.draw(&picture).and_then(|()| root.present()).map_err(|e| ReportError::plot(path, e))
}
