//! Line plots: training curves, learning-rate schedules, eval metrics over steps.

use super::font::FAMILY;
use super::log_axis::LogAxis;
use super::palette::color;
use super::range::{axis_range, tight_range};
use super::ticks::format_tick;
use super::{prepare, DEFAULT_SIZE};
use crate::error::{IoContext, ReportError, Result};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One named curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    /// `(x, y)` points in drawing order; non-finite ones (and non-positive y on a log axis) are
    /// left out.
    pub points: Vec<(f64, f64)>,
}

/// A line chart. `LinePlot { title: .., series: .., ..Default::default() }` gives 800x500, linear y.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
    pub width: u32,
    pub height: u32,
}

impl Default for LinePlot {
    fn default() -> Self {
        LinePlot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            log_y: false,
            width: DEFAULT_SIZE.0,
            height: DEFAULT_SIZE.1,
        }
    }
}

/// Width of the legend column right of the plotting area, from the longest series name.
fn legend_width(series: &[(&str, Vec<(f64, f64)>)]) -> u32 {
    let longest = series.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0) as u32;
    match longest {
        0 => 0,
        n => (44 + 8 * n).min(320),
    }
}

/// Draws `plot` to the PNG file `path`, with the same picture as SVG (`path.svg`) and its data
/// as CSV (`path.csv`: series, x, y) beside it. Named series get a legend in a column right of
/// the data, so it never hides a curve's end.
pub fn plot_lines(path: &Path, plot: &LinePlot) -> Result<()> {
    prepare(path, (plot.width, plot.height))?;
    let drawable = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!plot.log_y || y > 0.0);
    let series: Vec<(&str, Vec<(f64, f64)>)> =
        plot.series.iter().map(|s| (s.name.as_str(), s.points.iter().copied().filter(drawable).collect())).collect();
    let size = (plot.width, plot.height);
    render(BitMapBackend::new(path, size).into_drawing_area(), plot, &series)
        .map_err(|e| ReportError::plot(path, e))?;
    let svg = path.with_extension("svg");
    render(SVGBackend::new(&svg, size).into_drawing_area(), plot, &series).map_err(|e| ReportError::plot(&svg, e))?;
    write_csv(&path.with_extension("csv"), &plot.series)?;
    tracing::debug!("plot written: {} (+ .svg, .csv)", path.display());
    Ok(())
}

/// The points of every series as `series,x,y` rows (names quoted when they hold a comma).
fn write_csv(path: &Path, series: &[Series]) -> Result<()> {
    let mut text = String::from("series,x,y\n");
    for s in series {
        let name =
            if s.name.contains([',', '"']) { format!("\"{}\"", s.name.replace('"', "\"\"")) } else { s.name.clone() };
        for (x, y) in &s.points {
            text.push_str(&format!("{name},{x},{y}\n"));
        }
    }
    std::fs::write(path, text).at(path, "write plot data")
}

fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    plot: &LinePlot,
    series: &[(&str, Vec<(f64, f64)>)],
) -> std::result::Result<(), String> {
    let all = || series.iter().flat_map(|(_, pts)| pts.iter());
    let (x0, x1) = tight_range(all().map(|p| p.0));
    let (y0, y1) = axis_range(all().map(|p| p.1), plot.log_y);
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let legend = legend_width(series).min(plot.width / 3);
    let (chart_area, legend_area) = root.split_horizontally(plot.width - legend);
    if plot.log_y {
        draw(&chart_area, plot, series, x0..x1, LogAxis::new(y0, y1))?;
    } else {
        draw(&chart_area, plot, series, x0..x1, y0..y1)?;
    }
    if legend > 0 {
        draw_legend(&legend_area, series)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn draw<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, Shift>,
    plot: &LinePlot,
    series: &[(&str, Vec<(f64, f64)>)],
    x: std::ops::Range<f64>,
    y: Y,
) -> std::result::Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(if plot.x_label.is_empty() { 28 } else { 48 })
        .y_label_area_size(if plot.y_label.is_empty() { 56 } else { 76 })
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(243, 243, 243))
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| format_tick(*v))
        .y_label_formatter(&|v| format_tick(*v))
        .draw()
        .map_err(err)?;

    let n = series.len();
    for (i, (_, points)) in series.iter().enumerate() {
        let c = color(i, n);
        chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2))).map_err(err)?;
        // A single point draws no line: mark it.
        if points.len() == 1 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(err)?;
        }
    }
    Ok(())
}

/// One row per named series, a line of its colour and its name, level with the plot's top.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[(&str, Vec<(f64, f64)>)],
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let n = series.len();
    let style = TextStyle::from((FAMILY, 14).into_font()).color(&BLACK);
    let mut y = 52;
    for (i, (name, _)) in series.iter().enumerate().filter(|(_, (name, _))| !name.is_empty()) {
        let c = color(i, n);
        area.draw(&PathElement::new(vec![(4, y), (26, y)], c.stroke_width(3))).map_err(err)?;
        area.draw(&Text::new(name.to_string(), (32, y - 8), style.clone())).map_err(err)?;
        y += 22;
    }
    Ok(())
}
