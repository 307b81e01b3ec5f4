//! Making the corrupted view of a batch field: token masking for integer ids, Gaussian noise
//! for float inputs.

use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;

/// Stream id of the masking decisions ("DNOS"), so they never coincide with another component's.
const STREAM_DENOISE: u64 = 0x444E_4F53;

/// How integer token ids are corrupted.
pub struct TokenMasking<'a> {
    pub prob: f64,
    pub mask_id: i64,
    pub special: &'a [i64],
}

/// Replaces about `prob` of the ordinary tokens of each row of `ids` [B, L] with `mask_id`.
/// Row r decides from the counter stream (seed, epoch, sample_index[r]), so a sample's
/// corruption is the same however the data is batched, sharded or resumed. Returns the masked
/// ids (same dtype and device) and how many tokens were replaced.
pub fn mask_tokens(ids: &Tensor, sample_index: &[i64], m: &TokenMasking, ctx: &StepCtx) -> Result<(Tensor, i64)> {
    let (rows, len) =
        ids.size2().map_err(|_| PtError::shape(format!("token ids must be [batch, seq], got {:?}", ids.size())))?;
    if sample_index.len() as i64 != rows {
        bail!(Shape, "sample_index has {} entries for {rows} rows", sample_index.len());
    }
    let flat = ids.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?;
    let mut values = Vec::<i64>::try_from(&flat)?;
    let mut replaced = 0;
    for (r, row) in values.chunks_mut(len.max(1) as usize).enumerate() {
        let mut rng = CounterRng::new(ctx.seed, &[STREAM_DENOISE, ctx.epoch, sample_index[r] as u64]);
        for id in row.iter_mut() {
            // Draw for every position so a row's decisions do not depend on its contents.
            let chosen = rng.next_f64() < m.prob;
            if chosen && !m.special.contains(id) {
                *id = m.mask_id;
                replaced += 1;
            }
        }
    }
    let masked = Tensor::from_slice(&values).f_view([rows, len])?.f_to_kind(ids.kind())?.f_to_device(ids.device())?;
    Ok((masked, replaced))
}

/// `x + std · ε`, ε ~ N(0, 1) from libtorch's generator (which pt seeds per step).
pub fn add_noise(x: &Tensor, std: f64) -> Result<Tensor> {
    let noise = Tensor::f_randn(x.size(), (x.kind(), x.device()))?;
    Ok(x.f_add(&noise.f_mul_scalar(std)?)?)
}
