//! Confusion-matrix heat maps: rows are true classes (top to bottom), columns predicted ones.

use super::font::FAMILY;
use super::palette::heat;
use super::ticks::format_tick;
use super::{check_class_names, prepare, short_label, MAX_SIDE};
use crate::error::{IoContext, ReportError, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use std::path::Path;

const LABEL_SIZE: f64 = 13.0;
const MARGIN: u32 = 14;
const COLORBAR_WIDTH: u32 = 90;
const TITLE_HEIGHT: u32 = 40;
const AXIS_DESC: u32 = 26;

/// Draws `matrix[true][predicted]` as a heat map with the count in each cell (when it fits) and
/// a colour bar. The image is sized to the class count: square cells of 14 to 60 pixels.
pub fn plot_confusion<S: AsRef<str>>(path: &Path, matrix: &[Vec<u64>], class_names: &[S], title: &str) -> Result<()> {
    plot_heatmap(path, matrix, class_names, title, ("predicted", "true"), None)
}

/// A square heat map of `matrix[row][column]` with the same `names` on both axes (e.g. attention
/// weights between tokens, scaled to integers), rows top to bottom; `axes` = (x, y) descriptions.
/// `top` fixes the colour scale's top (None: the matrix's largest value): maps shown side by
/// side share one scale, so a flat map does not look saturated next to a peaked one.
pub fn plot_heatmap<S: AsRef<str>>(
    path: &Path,
    matrix: &[Vec<u64>],
    class_names: &[S],
    title: &str,
    axes: (&str, &str),
    top: Option<u64>,
) -> Result<()> {
    let n = matrix.len();
    if n == 0 {
        return Err(ReportError::InvalidInput(format!("{}: the confusion matrix is empty", path.display())));
    }
    if let Some((row, r)) = matrix.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(ReportError::InvalidInput(format!(
            "{}: confusion matrix row {row} has {} entries; a matrix of {n} classes needs {n}",
            path.display(),
            r.len()
        )));
    }
    check_class_names(path, class_names.len(), n, "the confusion matrix")?;
    let labels: Vec<String> = class_names.iter().take(n).map(|s| short_label(s.as_ref())).collect();
    let names: Vec<&str> = labels.iter().map(String::as_str).collect();
    let layout = Layout::new(&names, matrix);
    prepare(path, layout.size)?;

    let root = BitMapBackend::new(path, layout.size).into_drawing_area();
    let max = top.unwrap_or_else(|| matrix.iter().flatten().copied().max().unwrap_or(0));
    draw(&root, (matrix, max), &names, title, axes, &layout)
        .and_then(|()| root.present().map_err(|e| e.to_string()))
        .map_err(|e| ReportError::plot(path, e))?;
    let svg = path.with_extension("svg");
    let root = SVGBackend::new(&svg, layout.size).into_drawing_area();
    draw(&root, (matrix, max), &names, title, axes, &layout)
        .and_then(|()| root.present().map_err(|e| e.to_string()))
        .map_err(|e| ReportError::plot(&svg, e))?;
    // The matrix as data: the names, rows top to bottom, and the colour scale's top.
    let names: Vec<&str> = class_names.iter().take(n).map(|s| s.as_ref()).collect();
    let json = serde_json::json!({ "title": title, "rows": axes.1, "columns": axes.0, "names": names, "matrix": matrix, "scale_top": max });
    let json_path = path.with_extension("json");
    std::fs::write(&json_path, json.to_string()).at(&json_path, "write plot data")
}

/// Pixel sizes worked out from the class count and the label and count widths.
struct Layout {
    size: (u32, u32),
    grid: u32,
    rotate_x_labels: bool,
    x_label_area: u32,
    y_label_area: u32,
    /// Font size for the counts, or None when they cannot fit in a cell.
    count_font: Option<f64>,
}

impl Layout {
    fn new(names: &[&str], matrix: &[Vec<u64>]) -> Self {
        let n = names.len() as u32;
        let cell = (440 / n).clamp(14, 60);
        let grid = (cell * n).min(MAX_SIDE - 400);
        let cell = grid / n;
        let font = (FAMILY, LABEL_SIZE).into_font();
        let widest_name =
            names.iter().filter_map(|s| font.box_size(s).ok()).map(|(w, _)| w).max().unwrap_or(0).min(220);
        let rotate_x_labels = widest_name + 4 > cell;
        let x_label_area = if rotate_x_labels { widest_name } else { 16 } + 12 + AXIS_DESC;
        let y_label_area = widest_name + 12 + AXIS_DESC;
        let max_count = matrix.iter().flatten().copied().max().unwrap_or(0).to_string();
        let count_font = [13.0, 11.0, 9.0].into_iter().find(|&size| {
            (FAMILY, size).into_font().box_size(&max_count).is_ok_and(|(w, h)| w + 4 <= cell && h + 2 <= cell)
        });
        let width = 2 * MARGIN + y_label_area + grid + COLORBAR_WIDTH + MARGIN;
        let height = TITLE_HEIGHT + 2 * MARGIN + grid + x_label_area;
        Layout {
            size: (width.max(320), height.max(200)),
            grid,
            rotate_x_labels,
            x_label_area,
            y_label_area,
            count_font,
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (matrix, max): (&[Vec<u64>], u64),
    names: &[&str],
    title: &str,
    axes: (&str, &str),
    layout: &Layout,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let area = root.titled(title, (FAMILY, 20)).map_err(err)?;
    let main_width = 2 * MARGIN + layout.y_label_area + layout.grid;
    let (main, bar) = area.split_horizontally(main_width);

    let n = names.len();
    let nf = n as f64;
    let mut chart = ChartBuilder::on(&main)
        .margin(MARGIN)
        .x_label_area_size(layout.x_label_area)
        .y_label_area_size(layout.y_label_area)
        .build_cartesian_2d(ClassAxis { classes: n }, ClassAxis { classes: n })
        .map_err(err)?;
    // Row t (true class) is drawn at the top when t = 0: y runs bottom-up.
    let column_name = |v: &f64| names.get(v.floor() as usize).copied().unwrap_or("").to_string();
    let row_name = |v: &f64| {
        let t = n as i64 - 1 - v.floor() as i64;
        usize::try_from(t).ok().and_then(|t| names.get(t)).copied().unwrap_or("").to_string()
    };
    // Rotated labels are drawn below by hand: plotters anchors them at their middle, which
    // pushes half of each label up into the grid.
    let rotate = layout.rotate_x_labels;
    let x_label = |v: &f64| {
        if rotate {
            String::new()
        } else {
            column_name(v)
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(axes.0)
        .y_desc(axes.1)
        .axis_desc_style((FAMILY, 15))
        .x_label_style((FAMILY, LABEL_SIZE))
        .y_label_style((FAMILY, LABEL_SIZE))
        .x_label_formatter(&x_label)
        .y_label_formatter(&row_name)
        .draw()
        .map_err(err)?;
    if rotate {
        // Read bottom-up, ending just below the tick, as matplotlib draws them.
        let style = (FAMILY, LABEL_SIZE)
            .into_font()
            .transform(FontTransform::Rotate270)
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (p, name) in names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(p as f64 + 0.5, 0.0));
            root.draw(&Text::new(*name, (x, y + 10), style.clone())).map_err(err)?;
        }
    }

    let fraction = |count: u64| {
        if max == 0 {
            0.0
        } else {
            (count as f64 / max as f64).min(1.0)
        }
    };
    let cells =
        matrix.iter().enumerate().flat_map(|(t, row)| row.iter().enumerate().map(move |(p, &count)| (t, p, count)));
    let bottom = |t: usize| nf - 1.0 - t as f64;
    chart
        .draw_series(cells.clone().map(|(t, p, count)| {
            let (x, y) = (p as f64, bottom(t));
            Rectangle::new([(x, y), (x + 1.0, y + 1.0)], heat(fraction(count)).filled())
        }))
        .map_err(err)?;
    if let Some(size) = layout.count_font {
        chart
            .draw_series(cells.map(|(t, p, count)| {
                let ink = if fraction(count) > 0.5 { WHITE } else { BLACK };
                let style = (FAMILY, size).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                Text::new(count.to_string(), (p as f64 + 0.5, bottom(t) + 0.5), style)
            }))
            .map_err(err)?;
    }
    draw_colorbar(&bar, max, layout).map_err(|e| e.to_string())?;
    Ok(())
}

/// An axis of `classes` unit-wide cells over `[0, classes]`, with a tick at each cell's centre
/// (plotters' numeric axes place ticks at round numbers, i.e. on cell edges).
struct ClassAxis {
    classes: usize,
}

impl Ranged for ClassAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, (lo, hi): (i32, i32)) -> i32 {
        let fraction = value / self.classes as f64;
        lo + (fraction * f64::from(hi - lo)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.classes).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.classes as f64
    }
}

/// A vertical white → blue bar labelled with counts, aligned with the grid.
fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    max: u64,
    layout: &Layout,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let top = max.max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .margin_top(MARGIN)
        .margin_bottom(MARGIN + layout.x_label_area)
        .margin_left(8)
        .right_y_label_area_size(COLORBAR_WIDTH - 8 - 22)
        .build_cartesian_2d(0.0..1.0, 0.0..top)
        .map_err(err)?;
    let steps = 100;
    chart
        .draw_series((0..steps).map(|i| {
            let (lo, hi) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
            Rectangle::new([(0.0, lo * top), (1.0, hi * top)], heat(lo).filled())
        }))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels((max as usize + 1).min(6))
        .y_label_style((FAMILY, 12))
        .y_label_formatter(&|v| format_tick(v.round()))
        .draw()
        .map_err(err)?;
    chart.plotting_area().draw(&Rectangle::new([(0.0, 0.0), (1.0, top)], BLACK.mix(0.4))).map_err(err)?;
    Ok(())
}
