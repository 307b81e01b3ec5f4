//! Series and class colours.

use plotters::style::{HSLColor, RGBColor};

/// Matplotlib's "tab10": distinct, colour-blind-friendlier than primaries, familiar to readers.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of item `i` of `n`: tab10 up to ten items, evenly spaced hues beyond.
pub(crate) fn color(i: usize, n: usize) -> RGBColor {
    if n <= TAB10.len() {
        return TAB10[i % TAB10.len()];
    }
    let hue = (i % n) as f64 / n as f64;
    // Alternate lightness so neighbouring hues stay distinguishable.
    let lightness = if i % 2 == 1 { 0.6 } else { 0.45 };
    hsl_to_rgb(HSLColor(hue, 0.75, lightness))
}

fn hsl_to_rgb(c: HSLColor) -> RGBColor {
    use plotters::style::Color;
    let (r, g, b) = c.rgb();
    RGBColor(r, g, b)
}

/// Sequential white → dark blue ramp for heat maps; `t` in [0, 1].
pub(crate) fn heat(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}
