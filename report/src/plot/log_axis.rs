//! A logarithmic axis with readable ticks at any span. plotters' own log axis labels only powers
//! of ten, so a curve within one decade (a loss going from 8 to 2) gets no labels at all.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

pub(crate) struct LogAxis {
    lo: f64,
    hi: f64,
}

impl LogAxis {
    /// `0 < lo < hi` (callers pass `range::axis_range(.., log = true)`).
    pub fn new(lo: f64, hi: f64) -> Self {
        LogAxis { lo, hi }
    }

    /// Labelled ticks: 1-2-5 multiples when they fit, else powers of ten (thinned to `max`);
    /// evenly spaced round numbers within a decade.
    fn major_ticks(&self, max: usize) -> Vec<f64> {
        let max = max.clamp(2, 8);
        if (self.hi / self.lo).log10() < 1.0 {
            return linear_ticks(self.lo, self.hi, max.min(6));
        }
        let one_two_five = self.multiples_in_range(&[1.0, 2.0, 5.0]);
        if one_two_five.len() <= max {
            return one_two_five;
        }
        let powers = self.multiples_in_range(&[1.0]);
        let stride = powers.len().div_ceil(max);
        powers.into_iter().step_by(stride.max(1)).collect()
    }

    /// Every `m·10^k` in range for the given multipliers.
    fn multiples_in_range(&self, multiples: &[f64]) -> Vec<f64> {
        let first = self.lo.log10().floor() as i32;
        let last = self.hi.log10().ceil() as i32;
        (first..=last)
            .flat_map(|k| multiples.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= self.lo && *v <= self.hi)
            .collect()
    }
}

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, (lo, hi): (i32, i32)) -> i32 {
        let span = (self.hi / self.lo).ln();
        let fraction = (value / self.lo).ln() / span;
        lo + (fraction * f64::from(hi - lo)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let major = self.major_ticks(hint.bold_points());
        if !hint.weight().allow_light_points() {
            return major;
        }
        // Light grid lines at every integer multiple of each decade, when that stays sparse.
        let minor = self.multiples_in_range(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        if minor.len() <= hint.max_num_points() && minor.len() > major.len() {
            minor
        } else {
            major
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Up to `max` round numbers (steps of 1, 2 or 5 × 10^k) within `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let max = max.max(2);
    let raw = (hi - lo) / max as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| (hi - lo) / s <= max as f64)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_exist_at_every_span() {
        let narrow = LogAxis::new(1.9, 8.4).major_ticks(8);
        assert!(narrow.len() >= 2, "{narrow:?}");
        assert!(narrow.iter().all(|t| (1.9..=8.4).contains(t)));
        let mid = LogAxis::new(0.05, 30.0).major_ticks(8);
        assert!(mid.contains(&0.1) && mid.contains(&1.0) && mid.contains(&10.0), "{mid:?}");
        let wide = LogAxis::new(1e-9, 1e3).major_ticks(8);
        assert!(wide.len() >= 2 && wide.len() <= 8, "{wide:?}");
    }
}
