//! Scatter plots coloured by class: 2-D projections (PCA, t-SNE) of learned features.

use super::font::FAMILY;
use super::palette::color;
use super::range::axis_range;
use super::ticks::format_tick;
use super::{check_class_names, prepare, short_label, DEFAULT_SIZE};
use crate::error::{IoContext, ReportError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Legend rows beyond this would not fit the default height; the legend then lists the first
/// ones and says how many more there are.
const MAX_LEGEND_ROWS: usize = 24;

/// Draws `(x, y, class)` points, one colour per class, with a legend of `class_names` beside the
/// plot. Points with non-finite coordinates are left out; a class index without a name is an
/// error.
pub fn plot_scatter<S: AsRef<str>>(
    path: &Path,
    points: &[(f64, f64, usize)],
    class_names: &[S],
    title: &str,
) -> Result<()> {
    prepare(path, DEFAULT_SIZE)?;
    let classes = points.iter().map(|p| p.2 + 1).max().unwrap_or(0);
    check_class_names(path, class_names.len(), classes, "the scatter plot")?;
    let labels: Vec<String> = class_names.iter().map(|s| short_label(s.as_ref())).collect();
    let names: Vec<&str> = labels.iter().map(String::as_str).collect();

    let root = BitMapBackend::new(path, DEFAULT_SIZE).into_drawing_area();
    draw(&root, points, &names, title)
        .and_then(|()| root.present().map_err(|e| e.to_string()))
        .map_err(|e| ReportError::plot(path, e))?;
    let svg = path.with_extension("svg");
    let root = SVGBackend::new(&svg, DEFAULT_SIZE).into_drawing_area();
    draw(&root, points, &names, title)
        .and_then(|()| root.present().map_err(|e| e.to_string()))
        .map_err(|e| ReportError::plot(&svg, e))?;
    // The points as data: x, y, class index and name.
    let mut csv = String::from("x,y,class,name\n");
    for (x, y, c) in points {
        let name = class_names[*c].as_ref();
        let name =
            if name.contains([',', '"']) { format!("\"{}\"", name.replace('"', "\"\"")) } else { name.to_string() };
        csv.push_str(&format!("{x},{y},{c},{name}\n"));
    }
    let csv_path = path.with_extension("csv");
    std::fs::write(&csv_path, csv).at(&csv_path, "write plot data")
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[(f64, f64, usize)],
    names: &[&str],
    title: &str,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let area = if title.is_empty() { root.clone() } else { root.titled(title, (FAMILY, 22)).map_err(err)? };

    let label_font = (FAMILY, 14).into_font();
    let widest = names
        .iter()
        .take(MAX_LEGEND_ROWS)
        .filter_map(|n| label_font.box_size(n).ok())
        .map(|(w, _)| w)
        .max()
        .unwrap_or(0);
    let legend_width = (widest + 44).clamp(80, 260);
    let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - legend_width);

    let finite: Vec<_> = points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    let (x0, x1) = axis_range(finite.iter().map(|p| p.0), false);
    let (y0, y1) = axis_range(finite.iter().map(|p| p.1), false);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .label_style((FAMILY, 13))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(243, 243, 243))
        .x_label_formatter(&|v| format_tick(*v))
        .y_label_formatter(&|v| format_tick(*v))
        .draw()
        .map_err(err)?;
    let n = names.len();
    // Translucent markers so dense clusters show their density and overlaps stay visible.
    chart
        .draw_series(finite.iter().map(|&&(x, y, class)| Circle::new((x, y), 3, color(class, n).mix(0.75).filled())))
        .map_err(err)?;

    let row_height = 20;
    let top = 24;
    for (i, name) in names.iter().take(MAX_LEGEND_ROWS).enumerate() {
        let y = top + i as i32 * row_height;
        legend_area.draw(&Circle::new((12, y), 5, color(i, n).filled())).map_err(err)?;
        let style = label_font.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        legend_area.draw(&Text::new(*name, (24, y), style)).map_err(err)?;
    }
    if n > MAX_LEGEND_ROWS {
        let y = top + MAX_LEGEND_ROWS as i32 * row_height;
        let more = format!("(+{} more)", n - MAX_LEGEND_ROWS);
        let style = label_font.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        legend_area.draw(&Text::new(more, (8, y), style)).map_err(err)?;
    }
    Ok(())
}
