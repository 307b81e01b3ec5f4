//! Which samples each micro-batch holds: a permutation per epoch derived from (seed, epoch),
//! cut into global micro-batches, each split across ranks. Position is an O(1) cursor
//! `(epoch, micro_batch)`: resuming recomputes the permutation and starts there, replaying
//! nothing. The global order does not depend on the world size.

use crate::checkpoint::CursorState;
use pt_sdk::rng::CounterRng;

const STREAM_SHUFFLE: u64 = 0x5348_5546; // "SHUF"

#[derive(Clone, Debug)]
pub struct Sampler {
    pub num_samples: u64,
    /// Samples per micro-batch on this rank.
    pub batch_size: u64,
    pub rank: u64,
    pub world_size: u64,
    pub seed: u64,
    pub shuffle: bool,
    cached: Option<(u64, Vec<u64>)>,
}

impl Sampler {
    pub fn new(num_samples: u64, batch_size: u64, rank: u64, world_size: u64, seed: u64, shuffle: bool) -> Self {
        Sampler { num_samples, batch_size, rank, world_size, seed, shuffle, cached: None }
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
            }
            self.cached = Some((epoch, order));
        }
        &self.cached.as_ref().expect("just set").1
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
}
