//! Per-clip processing after decoding — crop, normalise — and collation into a padded batch.

use crate::rng::CounterRng;

/// The random stream for crop offsets (any fixed constant; it keeps them independent of other
/// per-sample draws that use the same seed, epoch and index).
pub const CROP_STREAM: u64 = 0xA0D1_0C60;

/// Where a clip of `len` samples starts when cropped to `max` (0: no limit). Training draws a
/// uniform offset from a stream keyed by (seed, [`CROP_STREAM`], epoch, index), so a resumed run
/// makes the same crops; evaluation keeps the start.
pub fn crop_offset(len: u64, max: u64, train: bool, seed: u64, epoch: u64, index: u64) -> u64 {
    if max == 0 || len <= max || !train {
        return 0;
    }
    CounterRng::new(seed, &[CROP_STREAM, epoch, index]).below(len - max + 1)
}

/// The length a clip of `len` samples has after cropping to `max` (0: no limit).
pub fn cropped_len(len: u64, max: u64) -> u64 {
    if max == 0 {
        len
    } else {
        len.min(max)
    }
}

/// Zero mean, unit variance in place, as Hugging Face's `Wav2Vec2FeatureExtractor`
/// (`do_normalize`): (x − mean) / sqrt(var + 1e-7), population variance.
pub fn normalize(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = samples.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / (var + 1e-7).sqrt();
    for x in samples.iter_mut() {
        *x = ((*x as f64 - mean) * scale) as f32;
    }
}

/// Right-pads clips with zeros to the longest: row-major `[clips, longest]` values, the matching
/// attention mask (1 real, 0 padding) and `longest`.
pub fn collate(clips: &[Vec<f32>]) -> (Vec<f32>, Vec<i64>, usize) {
    let longest = clips.iter().map(Vec::len).max().unwrap_or(0);
    let mut values = vec![0f32; clips.len() * longest];
    let mut mask = vec![0i64; clips.len() * longest];
    for (row, clip) in clips.iter().enumerate() {
        let start = row * longest;
        values[start..start + clip.len()].copy_from_slice(clip);
        mask[start..start + clip.len()].fill(1);
    }
    (values, mask, longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offsets_are_deterministic_in_range_and_zero_in_eval() {
        let a = crop_offset(10_000, 1_000, true, 7, 3, 42);
        assert_eq!(a, crop_offset(10_000, 1_000, true, 7, 3, 42));
        assert!(a <= 9_000);
        let epochs: std::collections::HashSet<u64> =
            (0..8).map(|e| crop_offset(10_000, 1_000, true, 7, e, 42)).collect();
        assert!(epochs.len() > 1);
        assert_eq!(crop_offset(10_000, 1_000, false, 7, 3, 42), 0);
        assert_eq!(crop_offset(900, 1_000, true, 7, 3, 42), 0);
        assert_eq!(crop_offset(10_000, 0, true, 7, 3, 42), 0);
    }

    #[test]
    fn cropped_len_caps() {
        assert_eq!(cropped_len(5, 3), 3);
        assert_eq!(cropped_len(2, 3), 2);
        assert_eq!(cropped_len(5, 0), 5);
    }

    #[test]
    fn normalize_gives_zero_mean_unit_variance() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        normalize(&mut x);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{mean} {var}");
        // A constant clip stays finite (the epsilon), at zero.
        let mut c = vec![0.5; 8];
        normalize(&mut c);
        assert!(c.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn collate_pads_right_and_masks() {
        let (values, mask, t) = collate(&[vec![1.0, 2.0, 3.0], vec![4.0]]);
        assert_eq!(t, 3);
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
        assert_eq!(mask, vec![1, 1, 1, 1, 0, 0]);
    }
}
