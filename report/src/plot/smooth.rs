//! Smoothing for noisy curves (per-step training loss).

/// Trailing moving average over the last `window` points (fewer at the start), keeping x.
/// Non-finite y values are left out of the averages; a point whose window holds no finite value
/// gets NaN (plots skip it). `window` 0 or 1 returns the points unchanged.
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    if window <= 1 {
        return points.to_vec();
    }
    // Summed afresh per point (O(n·window)) rather than with running sums, whose cancellation
    // would corrupt every later average after one huge spike of a diverging run.
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let start = (i + 1).saturating_sub(window);
            let (sum, n) =
                points[start..=i].iter().filter(|p| p.1.is_finite()).fold((0.0, 0usize), |(s, n), p| (s + p.1, n + 1));
            (x, if n == 0 { f64::NAN } else { sum / n as f64 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_average_skips_non_finite() {
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN), (3.0, 5.0), (4.0, 7.0)];
        let s = smooth(&pts, 2);
        let ys: Vec<f64> = s.iter().map(|p| p.1).collect();
        assert_eq!(ys[0], 1.0);
        assert_eq!(ys[1], 2.0);
        assert_eq!(ys[2], 3.0);
        assert_eq!(ys[3], 5.0);
        assert_eq!(ys[4], 6.0);
        assert_eq!(s.iter().map(|p| p.0).collect::<Vec<_>>(), [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert!(smooth(&[(0.0, f64::NAN)], 3)[0].1.is_nan());
        assert_eq!(smooth(&pts[..2], 1), pts[..2].to_vec());
    }
}
