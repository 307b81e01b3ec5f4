//! Which samples each micro-batch holds: a permutation per epoch derived from (seed, epoch),
//! cut into global micro-batches, each split across ranks. Position is an O(1) cursor
//! `(epoch, micro_batch)`: resuming recomputes the permutation and starts there, replaying
//! nothing. The global order does not depend on the world size.
//!
//! With sample lengths (variable-length data such as audio), batches are bucketed: the shuffled
//! order is cut into windows of [`BUCKET_WINDOW`] global batches, each window sorted by length
//! and cut into batches whose order is shuffled again, so a batch pads little yet every epoch
//! still sees a fresh random mix (as fairseq's and the HF Trainer's `group_by_length` do).

use crate::checkpoint::CursorState;
use pt_sdk::rng::CounterRng;

const STREAM_SHUFFLE: u64 = 0x5348_5546; // "SHUF"
const STREAM_BUCKETS: u64 = 0x4255_434B; // "BUCK"
/// Global batches per length-sorted window when bucketing.
pub const BUCKET_WINDOW: usize = 32;

#[derive(Clone, Debug)]
pub struct Sampler {
    pub num_samples: u64,
    /// Samples per micro-batch on this rank.
    pub batch_size: u64,
    pub rank: u64,
    pub world_size: u64,
    pub seed: u64,
    pub shuffle: bool,
    /// Per-sample lengths for bucketing (empty: no bucketing).
    lengths: std::sync::Arc<[u64]>,
    cached: Option<(u64, Vec<u64>)>,
}

impl Sampler {
    pub fn new(num_samples: u64, batch_size: u64, rank: u64, world_size: u64, seed: u64, shuffle: bool) -> Self {
        Sampler { num_samples, batch_size, rank, world_size, seed, shuffle, lengths: Vec::new().into(), cached: None }
    }

    /// Buckets batches by these per-sample lengths (one per sample; otherwise ignored).
    pub fn bucketed_by(mut self, lengths: &[u64]) -> Self {
        if lengths.len() as u64 == self.num_samples {
            self.lengths = lengths.into();
        }
        self
    }

    /// Global micro-batches per epoch (the incomplete last one is dropped).
    pub fn micro_batches_per_epoch(&self) -> u64 {
        self.num_samples / (self.batch_size * self.world_size)
    }

    fn permutation(&mut self, epoch: u64) -> &[u64] {
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<u64> = (0..self.num_samples).collect();
            if self.shuffle {
                CounterRng::new(self.seed, &[STREAM_SHUFFLE, epoch]).shuffle(&mut order);
                if !self.lengths.is_empty() {
                    self.bucket(&mut order, epoch);
                }
            }
            self.cached = Some((epoch, order));
        }
        &self.cached.as_ref().expect("just set").1
    }

    /// Sorts windows of the shuffled `order` by length and shuffles the batches within each.
    fn bucket(&self, order: &mut [u64], epoch: u64) {
        let global = (self.batch_size * self.world_size).max(1) as usize;
        let usable = order.len() / global * global; // the incomplete last batch is dropped anyway
        for (w, window) in order[..usable].chunks_mut(global * BUCKET_WINDOW).enumerate() {
            window.sort_by_key(|&i| std::cmp::Reverse(self.lengths[i as usize]));
            let mut batches: Vec<Vec<u64>> = window.chunks(global).map(<[u64]>::to_vec).collect();
            CounterRng::new(self.seed, &[STREAM_BUCKETS, epoch, w as u64]).shuffle(&mut batches);
            for (slot, i) in window.iter_mut().zip(batches.into_iter().flatten()) {
                *slot = i;
            }
        }
    }

    /// This rank's sample indices for the micro-batch at `cursor`.
    pub fn indices(&mut self, cursor: CursorState) -> Vec<u64> {
        let global = self.batch_size * self.world_size;
        let start = (cursor.micro_batch * global + self.rank * self.batch_size) as usize;
        let bs = self.batch_size as usize;
        self.permutation(cursor.epoch)[start..start + bs].to_vec()
    }

    /// The cursor after `cursor`.
    pub fn next(&self, cursor: CursorState) -> CursorState {
        if cursor.micro_batch + 1 >= self.micro_batches_per_epoch() {
            CursorState { epoch: cursor.epoch + 1, micro_batch: 0 }
        } else {
            CursorState { epoch: cursor.epoch, micro_batch: cursor.micro_batch + 1 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_differ() {
        let mut s = Sampler::new(10, 2, 0, 1, 3, true);
        let mut c = CursorState::default();
        let mut e0 = Vec::new();
        for _ in 0..5 {
            e0.extend(s.indices(c));
            c = s.next(c);
        }
        assert_eq!(c, CursorState { epoch: 1, micro_batch: 0 });
        let mut sorted = e0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let e1: Vec<u64> = s.indices(c);
        assert_ne!(&e0[..2], &e1[..]);
    }

    #[test]
    fn ranks_split_the_global_batch_of_one_process() {
        let mut one = Sampler::new(12, 4, 0, 1, 9, true);
        let mut r0 = Sampler::new(12, 2, 0, 2, 9, true);
        let mut r1 = Sampler::new(12, 2, 1, 2, 9, true);
        let c = CursorState { epoch: 2, micro_batch: 1 };
        let mut both = r0.indices(c);
        both.extend(r1.indices(c));
        assert_eq!(both, one.indices(c));
    }

    #[test]
    fn bucketing_groups_similar_lengths_and_keeps_a_permutation() {
        let lengths: Vec<u64> = (0..400).map(|i| (i * 7919 % 400) as u64).collect();
        let mut plain = Sampler::new(400, 4, 0, 1, 5, true);
        let mut bucketed = Sampler::new(400, 4, 0, 1, 5, true).bucketed_by(&lengths);
        let spread = |s: &mut Sampler| {
            let mut c = CursorState::default();
            let (mut all, mut total) = (Vec::new(), 0);
            for _ in 0..s.micro_batches_per_epoch() {
                let b = s.indices(c);
                let l: Vec<u64> = b.iter().map(|&i| lengths[i as usize]).collect();
                total += l.iter().max().unwrap() - l.iter().min().unwrap();
                all.extend(b);
                c = s.next(c);
            }
            all.sort();
            assert_eq!(all, (0..400).collect::<Vec<_>>());
            total
        };
        let (p, b) = (spread(&mut plain), spread(&mut bucketed));
        assert!(b * 10 < p, "bucketed batches spread {b} vs {p} unbucketed");
        // Deterministic, and the global batches do not depend on the world size.
        let mut r0 = Sampler::new(400, 2, 0, 2, 5, true).bucketed_by(&lengths);
        let mut r1 = Sampler::new(400, 2, 1, 2, 5, true).bucketed_by(&lengths);
        let c = CursorState { epoch: 1, micro_batch: 7 };
        let mut both = r0.indices(c);
        both.extend(r1.indices(c));
        assert_eq!(both, bucketed.indices(c));
    }
}
