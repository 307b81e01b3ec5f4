//! Token rows → the batch tensors every text dataset yields.

use crate::text_tokenizer::SpecialIds;
use pt_sdk::{FieldInfo, Result, Tensors};
use tch::Tensor;

/// `[CLS] ids [SEP]`, the ids cut so the row fits `block_size`. Returns the row and whether the
/// text was cut.
pub fn single_sequence(ids: &[u32], block_size: usize, special: &SpecialIds) -> (Vec<i64>, bool) {
    let room = block_size.saturating_sub(2);
    let cut = ids.len() > room;
    let mut row = Vec::with_capacity(block_size.min(ids.len() + 2));
    row.push(special.cls as i64);
    row.extend(ids[..ids.len().min(room)].iter().map(|&t| t as i64));
    row.push(special.sep as i64);
    (row, cut)
}

/// Pads `rows` with `[PAD]` to `len` (at least the longest row) and builds `input_ids`,
/// `attention_mask` (1 = real token) and `token_type_ids` (zeros), all int64 [B, len].
pub fn collate(rows: &[Vec<i64>], len: usize, pad: u32) -> Result<Tensors> {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0).max(len);
    let b = rows.len();
    let mut ids = vec![pad as i64; b * len];
    let mut mask = vec![0i64; b * len];
    for (i, row) in rows.iter().enumerate() {
        ids[i * len..i * len + row.len()].copy_from_slice(row);
        mask[i * len..i * len + row.len()].fill(1);
    }
    let shape = [b as i64, len as i64];
    Ok(Tensors::new()
        .with("input_ids", Tensor::from_slice(&ids).f_view(shape)?)
        .with("attention_mask", Tensor::from_slice(&mask).f_view(shape)?)
        .with("token_type_ids", Tensor::f_zeros(shape, (tch::Kind::Int64, tch::Device::Cpu))?))
}

/// The fields of a text batch; `len` -1 when rows are padded per batch.
pub fn text_fields(len: i64) -> Vec<FieldInfo> {
    vec![
        FieldInfo::new("input_ids", "int64", &[len], "token ids, [CLS] first, [PAD]-padded"),
        FieldInfo::new("attention_mask", "int64", &[len], "1 for real tokens, 0 for padding"),
        FieldInfo::new("token_type_ids", "int64", &[len], "segment ids (all 0: one segment)"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialIds = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };

    #[test]
    fn single_sequence_cuts_to_block_size() {
        assert_eq!(single_sequence(&[7, 8, 9], 8, &SPECIAL), (vec![2, 7, 8, 9, 3], false));
        assert_eq!(single_sequence(&[7, 8, 9, 10], 5, &SPECIAL), (vec![2, 7, 8, 9, 3], true));
    }

    #[test]
    fn collate_pads_and_masks() {
        let t = collate(&[vec![2, 7, 3], vec![2, 3]], 0, 0).unwrap();
        let ids = t.get("input_ids").unwrap();
        assert_eq!(ids.size(), vec![2, 3]);
        assert_eq!(Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap(), vec![2, 7, 3, 2, 3, 0]);
        let mask = t.get("attention_mask").unwrap().flatten(0, -1);
        assert_eq!(Vec::<i64>::try_from(mask).unwrap(), vec![1, 1, 1, 1, 1, 0]);
    }
}
