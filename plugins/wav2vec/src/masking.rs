//! wav2vec 2.0's time masking and negative sampling, drawn on the CPU from counter streams keyed
//! by (seed, epoch, sample index), so a resumed run masks exactly as the original did.
//!
//! Span masking follows fairseq's / transformers' `compute_mask_indices`: an utterance of `n` real
//! frames gets `int(p · n / L + u)` (u ~ U[0, 1), at least `min_masks`) spans of length `L` whose
//! starts are drawn without replacement from `0..=n-L`; spans may overlap; padding is never masked.
//! Negatives for a masked frame are drawn uniformly, with replacement, from the *other* masked
//! frames of the same utterance (never padding, never itself).

use pt_sdk::rng::CounterRng;

/// Random streams (see `pt_sdk::rng`).
const STREAM_MASK: u64 = 0x5350_414E; // "SPAN"
const STREAM_NEGATIVES: u64 = 0x4E45_4753; // "NEGS"

#[derive(Clone, Copy, Debug)]
pub struct SpanMasking {
    pub prob: f64,
    pub length: usize,
    pub min_masks: usize,
}

impl SpanMasking {
    /// Masked frames of one utterance with `frames` real frames.
    pub fn draw(&self, frames: usize, rng: &mut CounterRng) -> Vec<bool> {
        let mut mask = vec![false; frames];
        let len = self.length.max(1);
        if frames < len {
            return mask;
        }
        let candidates = frames - len + 1;
        let mut spans = ((self.prob * frames as f64 / len as f64) + rng.next_f64()) as usize;
        spans = spans.max(self.min_masks).min(frames / len).min(candidates);
        // Partial Fisher-Yates: `spans` distinct starts.
        let mut starts: Vec<usize> = (0..candidates).collect();
        for i in 0..spans {
            let j = i + rng.below((candidates - i) as u64) as usize;
            starts.swap(i, j);
            mask[starts[i]..starts[i] + len].fill(true);
        }
        mask
    }
}

/// The masks of a batch and the negatives of its masked frames.
pub struct BatchMasks {
    /// [batch × frames] row-major: true where a frame is masked.
    pub mask: Vec<bool>,
    /// [masked frames × num_negatives]: indices into the batch's masked frames in row-major order.
    pub negatives: Vec<i64>,
    pub masked: usize,
}

/// Masks and negatives for utterances with `lengths` real frames each, padded to `frames`;
/// `sample_index` keys each utterance's random streams. Utterances with fewer than two masked
/// frames get none (a lone masked frame has no negatives).
pub fn draw_batch(
    spans: &SpanMasking,
    num_negatives: usize,
    lengths: &[usize],
    frames: usize,
    sample_index: &[i64],
    seed: u64,
    epoch: u64,
) -> BatchMasks {
    let mut mask = vec![false; lengths.len() * frames];
    let mut negatives = Vec::new();
    let mut offset = 0usize; // masked frames of earlier utterances
    for (row, (&n, &index)) in lengths.iter().zip(sample_index).enumerate() {
        let n = n.min(frames);
        let mut rng = CounterRng::new(seed, &[STREAM_MASK, epoch, index as u64]);
        let utterance = spans.draw(n, &mut rng);
        let count = utterance.iter().filter(|&&m| m).count();
        if count < 2 {
            continue;
        }
        mask[row * frames..row * frames + n].copy_from_slice(&utterance);
        let mut rng = CounterRng::new(seed, &[STREAM_NEGATIVES, epoch, index as u64]);
        for own in 0..count {
            for _ in 0..num_negatives {
                let mut other = rng.below(count as u64 - 1) as usize;
                if other >= own {
                    other += 1; // skip the positive itself, keeping the draw uniform
                }
                negatives.push((offset + other) as i64);
            }
        }
        offset += count;
    }
    BatchMasks { mask, negatives, masked: offset }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPANS: SpanMasking = SpanMasking { prob: 0.65, length: 10, min_masks: 2 };

    #[test]
    fn spans_cover_about_half_and_stay_inside() {
        let mut covered = 0.0;
        for i in 0..200 {
            let mut rng = CounterRng::new(1, &[i]);
            let m = SPANS.draw(250, &mut rng);
            assert_eq!(m.len(), 250);
            covered += m.iter().filter(|&&x| x).count() as f64 / 250.0;
        }
        // p = 0.65 with overlapping spans of 10 masks about 1 - e^-0.65 ≈ 48 % of frames.
        let mean = covered / 200.0;
        assert!((0.40..0.56).contains(&mean), "mean masked fraction {mean}");
        let mut rng = CounterRng::new(1, &[0]);
        assert!(SPANS.draw(9, &mut rng).iter().all(|&x| !x), "shorter than one span");
        let mut rng = CounterRng::new(1, &[0]);
        let n = SPANS.draw(20, &mut rng).iter().filter(|&&x| x).count();
        assert!((11..=20).contains(&n), "two distinct spans of 10 mask 11..=20 frames, got {n}");
    }

    #[test]
    fn negatives_come_from_other_masked_frames_of_the_same_utterance() {
        let lengths = [120, 60, 5];
        let b = draw_batch(&SPANS, 20, &lengths, 130, &[7, 8, 9], 3, 0);
        let masked: Vec<usize> = (0..b.mask.len()).filter(|&i| b.mask[i]).collect();
        assert_eq!(masked.len(), b.masked);
        assert_eq!(b.negatives.len(), b.masked * 20);
        for (j, &pos) in masked.iter().enumerate() {
            let (row, t) = (pos / 130, pos % 130);
            assert!(t < lengths[row], "padding masked");
            for &n in &b.negatives[j * 20..(j + 1) * 20] {
                assert_ne!(n as usize, j, "a negative is the positive");
                assert_eq!(masked[n as usize] / 130, row, "a negative from another utterance");
            }
        }
        assert!(b.mask[260..390].iter().all(|&x| !x), "a 5-frame utterance has no span");
        // Same keys, same draw; another epoch, another draw.
        let again = draw_batch(&SPANS, 20, &lengths, 130, &[7, 8, 9], 3, 0);
        assert_eq!((again.mask, again.negatives), (b.mask.clone(), b.negatives.clone()));
        assert_ne!(draw_batch(&SPANS, 20, &lengths, 130, &[7, 8, 9], 3, 1).mask, b.mask);
    }
}
