//! Line plots: training curves, learning-rate schedules, eval metrics over steps.

use super::font::FAMILY;
use super::log_axis::LogAxis;
use super::palette::color;
use super::range::{axis_range, tight_range};
use super::ticks::format_tick;
use super::{prepare, DEFAULT_SIZE};
use crate::error::{ReportError, Result};
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

/// Draws `plot` to the PNG file `path`, with a legend when any series is named.
pub fn plot_lines(path: &Path, plot: &LinePlot) -> Result<()> {
    prepare(path, (plot.width, plot.height))?;
    let drawable = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!plot.log_y || y > 0.0);
    let series: Vec<(&str, Vec<(f64, f64)>)> =
        plot.series.iter().map(|s| (s.name.as_str(), s.points.iter().copied().filter(drawable).collect())).collect();
    let all = || series.iter().flat_map(|(_, pts)| pts.iter());
    let (x0, x1) = tight_range(all().map(|p| p.0));
    let (y0, y1) = axis_range(all().map(|p| p.1), plot.log_y);

    let root = BitMapBackend::new(path, (plot.width, plot.height)).into_drawing_area();
    let drawn = if plot.log_y {
        draw(&root, plot, &series, x0..x1, LogAxis::new(y0, y1))
    } else {
        draw(&root, plot, &series, x0..x1, y0..y1)
    };
    drawn.and_then(|()| root.present().map_err(|e| e.to_string())).map_err(|e| ReportError::plot(path, e))?;
    tracing::debug!("plot written: {}", path.display());
    Ok(())
}

type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn draw<Y>(
    root: &Root,
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
    root.fill(&WHITE).map_err(err)?;
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
    for (i, (name, points)) in series.iter().enumerate() {
        let c = color(i, n);
        let line = chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2))).map_err(err)?;
        if !name.is_empty() {
            line.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
        }
        // A single point draws no line: mark it.
        if points.len() == 1 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(err)?;
        }
    }
    if series.iter().any(|(name, _)| !name.is_empty()) {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
