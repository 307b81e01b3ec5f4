//! Which samples each micro-batch holds: a permutation per epoch derived from (seed, epoch),
//! cut into global micro-batches, each split across ranks. Position is an O(1) cursor
//! `(epoch, micro_batch)`: resuming recomputes the permutation and starts there, replaying
//! nothing. The global order does not depend on the world size, and an epoch holds whole
//! optimizer steps (`batch × ranks × accumulation` samples each), so ranks and accumulation can
//! be traded (2 ranks, or 1 process accumulating 2) without changing what any step trains on.
//!
//! With sample lengths (variable-length data such as audio), batches are bucketed: the shuffled
//! order is cut into windows of [`BUCKET_WINDOW`] steps, each window sorted by length and cut
//! into steps whose order is shuffled again, so a batch pads little yet every epoch
//! still sees a fresh random mix (as fairseq's and the HF Trainer's `group_by_length` do).
//!
//! With a labelled subset (semi-supervised data), each micro-batch holds `labelled_per_batch`
//! samples from a second stream over the labelled indices only — its own permutation per pass,
//! positioned by the global micro-batch count, so still O(1) to resume — and the rest from the
//! main order; an epoch is a pass of the main order.

use crate::checkpoint::CursorState;
use pt_sdk::rng::CounterRng;

const STREAM_SHUFFLE: u64 = 0x5348_5546; // "SHUF"
const STREAM_BUCKETS: u64 = 0x4255_434B; // "BUCK"
const STREAM_LABELLED: u64 = 0x4C41_424C; // "LABL"
/// Steps per length-sorted window when bucketing.
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
    /// Indices of the labelled samples and how many of them each micro-batch takes.
    labelled: std::sync::Arc<[u64]>,
    labelled_per_batch: u64,
    /// Micro-batches per optimizer step on each rank.
    grad_accum: u64,
    labelled_cache: Option<(u64, Vec<u64>)>,
    cached: Option<(u64, Vec<u64>)>,
}

impl Sampler {
    pub fn new(num_samples: u64, batch_size: u64, rank: u64, world_size: u64, seed: u64, shuffle: bool) -> Self {
        Sampler {
            num_samples,
            batch_size,
            rank,
            world_size,
            seed,
            shuffle,
            lengths: Vec::new().into(),
            labelled: Vec::new().into(),
            labelled_per_batch: 0,
            grad_accum: 1,
            labelled_cache: None,
            cached: None,
        }
    }

    /// Buckets batches by these per-sample lengths (one per sample; otherwise ignored).
    pub fn bucketed_by(mut self, lengths: &[u64]) -> Self {
        if lengths.len() as u64 == self.num_samples {
            self.lengths = lengths.into();
        }
        self
    }

    /// Puts `per_batch` of the `labelled` samples in every micro-batch (ignored when either is
    /// empty or zero; the caller checks `per_batch < batch_size`).
    pub fn with_labelled(mut self, labelled: &[u64], per_batch: u64) -> Self {
        if !labelled.is_empty() && per_batch > 0 && per_batch < self.batch_size {
            self.labelled = labelled.into();
            self.labelled_per_batch = per_batch;
        }
        self
    }

    /// Steps accumulate `micro_batches` micro-batches on each rank.
    pub fn with_accumulation(mut self, micro_batches: u64) -> Self {
        self.grad_accum = micro_batches.max(1);
        self
    }

    /// Samples of the main order per optimizer step, over all ranks.
    fn step_samples(&self) -> u64 {
        self.main_per_batch() * self.world_size * self.grad_accum
    }

    /// Samples per micro-batch from the main order.
    fn main_per_batch(&self) -> u64 {
        self.batch_size - self.labelled_per_batch
    }

    /// Global micro-batches per epoch: whole steps (the incomplete last step is dropped).
    pub fn micro_batches_per_epoch(&self) -> u64 {
        self.num_samples / self.step_samples() * self.grad_accum
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

    /// Sorts windows of the shuffled `order` by length and shuffles the steps' batches within
    /// each (a step's micro-batches and ranks take consecutive slices of its sorted samples).
    fn bucket(&self, order: &mut [u64], epoch: u64) {
        let global = (self.batch_size * self.world_size * self.grad_accum).max(1) as usize;
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

    /// This rank's sample indices for the micro-batch at `cursor`: its labelled ones first.
    pub fn indices(&mut self, cursor: CursorState) -> Vec<u64> {
        let main = self.main_per_batch();
        let global = main * self.world_size;
        let start = (cursor.micro_batch * global + self.rank * main) as usize;
        let mut out = self.labelled_part(cursor);
        out.extend_from_slice(&self.permutation(cursor.epoch)[start..start + main as usize]);
        out
    }

    /// The labelled samples of the micro-batch at `cursor`: positions in an endless sequence of
    /// shuffled passes over the labelled indices, counted from the run's first micro-batch.
    fn labelled_part(&mut self, cursor: CursorState) -> Vec<u64> {
        let k = self.labelled_per_batch;
        if k == 0 {
            return Vec::new();
        }
        let n = self.labelled.len() as u64;
        let global_batch = cursor.epoch * self.micro_batches_per_epoch() + cursor.micro_batch;
        let first = global_batch * k * self.world_size + self.rank * k;
        (first..first + k)
            .map(|q| {
                let pass = q / n;
                if self.labelled_cache.as_ref().is_none_or(|(p, _)| *p != pass) {
                    let mut order = self.labelled.to_vec();
                    CounterRng::new(self.seed, &[STREAM_LABELLED, pass]).shuffle(&mut order);
                    self.labelled_cache = Some((pass, order));
                }
                self.labelled_cache.as_ref().expect("just set").1[(q % n) as usize]
            })
            .collect()
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

    /// Two ranks, or one process accumulating two micro-batches: the same samples in every step,
    /// across epoch ends too (10 samples, steps of 4: the epoch drops 2, never splits a step).
    #[test]
    fn ranks_and_accumulation_trade_without_changing_steps() {
        let mut one = Sampler::new(10, 2, 0, 1, 9, true).with_accumulation(2);
        let mut ranks = [Sampler::new(10, 2, 0, 2, 9, true), Sampler::new(10, 2, 1, 2, 9, true)];
        assert_eq!((one.micro_batches_per_epoch(), ranks[0].micro_batches_per_epoch()), (4, 2));
        let (mut c1, mut c2) = (CursorState::default(), CursorState::default());
        for _ in 0..5 {
            let mut step = one.indices(c1);
            c1 = one.next(c1);
            step.extend(one.indices(c1));
            c1 = one.next(c1);
            let both: Vec<u64> = ranks.iter_mut().flat_map(|r| r.indices(c2)).collect();
            c2 = ranks[0].next(c2);
            assert_eq!(step, both);
            assert_eq!(c1.epoch, c2.epoch);
        }
    }

    #[test]
    fn labelled_stream_fills_part_of_every_batch_and_splits_across_ranks() {
        let labelled: Vec<u64> = (0..100).filter(|i| i % 10 == 0).collect(); // 10 labelled
        let mut s = Sampler::new(100, 8, 0, 1, 4, true).with_labelled(&labelled, 3);
        assert_eq!(s.micro_batches_per_epoch(), 20, "100 samples, 5 from the main order per batch");
        let mut c = CursorState::default();
        let mut seen = Vec::new();
        for _ in 0..10 {
            let b = s.indices(c);
            assert_eq!(b.len(), 8);
            assert!(b[..3].iter().all(|i| i % 10 == 0), "first 3 labelled: {b:?}");
            seen.extend_from_slice(&b[..3]);
            c = s.next(c);
        }
        // 30 labelled draws = 3 full passes, each a permutation of the 10.
        for pass in seen.chunks(10) {
            let mut p = pass.to_vec();
            p.sort();
            assert_eq!(p, labelled);
        }
        let mut r0 = Sampler::new(100, 4, 0, 2, 4, true).with_labelled(&labelled, 1);
        let mut r1 = Sampler::new(100, 4, 1, 2, 4, true).with_labelled(&labelled, 1);
        let mut one = Sampler::new(100, 8, 0, 1, 4, true).with_labelled(&labelled, 2);
        let c = CursorState { epoch: 1, micro_batch: 3 };
        let (a, b, both) = (r0.indices(c), r1.indices(c), one.indices(c));
        let mut ranks: Vec<u64> = [&a[..1], &b[..1], &a[1..], &b[1..]].concat();
        let mut single = both.clone();
        ranks.sort();
        single.sort();
        assert_eq!(ranks, single, "two ranks hold the one-process batch");
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
