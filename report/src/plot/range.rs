//! Axis ranges from data that may hold NaN, infinities or a single value.

/// The padded `[min, max]` of the finite values (positive ones only for a log axis), or a
/// default range when there are none.
pub(crate) fn axis_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return if log { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        // Pad by a fraction of a decade on each side; a flat series gets a full decade.
        let (llo, lhi) = (lo.log10(), hi.log10());
        let pad = if lhi > llo { (lhi - llo) * 0.05 } else { 0.5 };
        (10f64.powf(llo - pad), 10f64.powf(lhi + pad))
    } else {
        let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.5 };
        (lo - pad, hi + pad)
    }
}

/// The unpadded `[min, max]` of the finite values, for axes that should end at the data.
pub(crate) fn tight_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_non_finite_and_pads() {
        let (lo, hi) = axis_range([1.0, f64::NAN, 3.0, f64::INFINITY].into_iter(), false);
        assert!((lo - 0.9).abs() < 1e-12 && (hi - 3.1).abs() < 1e-12);
        assert_eq!(axis_range([f64::NAN].into_iter(), false), (0.0, 1.0));
        let (lo, hi) = axis_range([2.0, 2.0].into_iter(), false);
        assert!(lo < 2.0 && hi > 2.0);
        let (lo, hi) = axis_range([-1.0, 0.0, 0.01, 100.0].into_iter(), true);
        assert!(lo > 0.0 && lo < 0.01 && hi > 100.0);
    }
}
