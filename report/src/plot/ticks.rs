//! Compact tick labels: `0`, `2500`, `0.35`, `3e-4`, `1.2e6`.

pub(crate) fn format_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !v.is_finite() {
        return if v.is_finite() { "0".into() } else { v.to_string() };
    }
    if !(1e-3..1e6).contains(&a) {
        return scientific(v);
    }
    if (v - v.round()).abs() <= 1e-9 * a.max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn scientific(v: f64) -> String {
    let text = format!("{v:.2e}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{mantissa}e{exp}")
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::format_tick;

    #[test]
    fn ticks_are_compact() {
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(2500.0), "2500");
        assert_eq!(format_tick(0.35), "0.35");
        assert_eq!(format_tick(-1.25), "-1.25");
        assert_eq!(format_tick(3e-4), "3e-4");
        assert_eq!(format_tick(1.25e-5), "1.25e-5");
        assert_eq!(format_tick(1.2e6), "1.2e6");
    }
}
