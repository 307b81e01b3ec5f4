//! Objectives that make several rows per sample (RotNet's four rotations, two augmented views,
//! a clean and a corrupted copy) stack them sample-block by sample-block: row `k·B + i` is copy
//! `k` of sample `i`. [`tile_rows`] gives every other per-sample field of the batch the same
//! layout, so `label`, `attention_mask` and `sample_index` stay aligned with the rows.
//!
//! The rule for `sample_index`: every copy keeps its sample's index. Per-sample randomness is
//! keyed by it (so a resumed run makes the same copies) and evaluators read it as "which
//! sample"; the copy number is the block, `row / B`.

use pt_sdk::{PtError, Result, Tensors};
use tch::Tensor;

/// `batch` with every field whose first dimension is `batch_size` repeated `copies` times in
/// blocks ([B, ...] → [copies·B, ...], row `k·B + i` = sample `i`); other fields unchanged.
/// Take the field you build the copies from out of `batch` first (it is not copied twice).
/// With B = 1 a field of shape [1, ...] counts as per-sample.
pub fn tile_rows(batch: &Tensors, batch_size: i64, copies: i64) -> Result<Tensors> {
    if copies < 1 {
        return Err(PtError::config(format!("tile_rows: copies must be >= 1, got {copies}")));
    }
    let mut out = Tensors::new();
    for (name, t) in batch.iter() {
        let size = t.size();
        let tiled = if size.first() == Some(&batch_size) {
            let mut reps = vec![1i64; size.len()];
            reps[0] = copies;
            t.f_repeat(&reps)?
        } else {
            t.shallow_clone()
        };
        out.insert(name, tiled);
    }
    Ok(out)
}

/// The copy number of each of `copies·B` rows: `[0]*B ++ [1]*B ++ ...`, int64 on `t`'s device
/// (the target of a "which copy is this" pretext task such as RotNet's).
pub fn copy_index(batch_size: i64, copies: i64, like: &Tensor) -> Result<Tensor> {
    let k = Tensor::f_arange(copies, (tch::Kind::Int64, like.device()))?;
    Ok(k.f_repeat_interleave_self_int(batch_size, 0, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_tile_in_sample_blocks_and_copies_are_numbered() {
        let batch = Tensors::new()
            .with("image", Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.]).view([3, 2]))
            .with("sample_index", Tensor::from_slice(&[7i64, 8, 9]))
            .with("scale", Tensor::from_slice(&[0.5f32]));
        let out = tile_rows(&batch, 3, 2).unwrap();
        assert_eq!(out.require("image").unwrap().size(), [6, 2]);
        let idx: Vec<i64> = Vec::try_from(out.require("sample_index").unwrap()).unwrap();
        assert_eq!(idx, [7, 8, 9, 7, 8, 9]);
        assert_eq!(out.require("scale").unwrap().size(), [1], "not per-sample: unchanged");
        let k: Vec<i64> = Vec::try_from(copy_index(3, 2, out.require("image").unwrap()).unwrap()).unwrap();
        assert_eq!(k, [0, 0, 0, 1, 1, 1]);
        assert!(tile_rows(&batch, 3, 0).is_err());
    }
}
