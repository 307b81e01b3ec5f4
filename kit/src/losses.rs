//! Losses shared by plugins.

use crate::{PtError, Result};
use tch::{Kind, Tensor};

/// The label of a sample whose label is hidden (PyTorch's `ignore_index`).
pub const IGNORE_LABEL: i64 = -100;

/// Cross-entropy of `logits` [B, C] against `labels` [B] over the labelled rows only (label
/// -100 marks an unlabelled one), with label smoothing. Returns (mean loss, accuracy); both are
/// 0 for a batch without labelled rows instead of PyTorch's NaN, so semi-supervised batches
/// never poison a step.
pub fn labelled_cross_entropy(logits: &Tensor, labels: &Tensor, label_smoothing: f64) -> Result<(Tensor, Tensor)> {
    if logits.dim() != 2 || logits.size()[0] != labels.size().first().copied().unwrap_or(-1) {
        return Err(PtError::shape(format!("logits {:?} do not match labels {:?}", logits.size(), labels.size())));
    }
    let labels = labels.f_to_kind(Kind::Int64)?;
    let labelled = labels.f_ne(IGNORE_LABEL)?;
    let count = labelled.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
    // In fp32 even under autocast: log-softmax needs the range.
    let total = logits.f_to_kind(Kind::Float)?.f_cross_entropy_loss::<Tensor>(
        &labels,
        None,
        tch::Reduction::Sum,
        IGNORE_LABEL,
        label_smoothing,
    )?;
    let hits =
        logits.detach().f_argmax(-1, false)?.f_eq_tensor(&labels)?.f_logical_and(&labelled)?.f_sum(Kind::Float)?;
    Ok((total.f_div(&count)?, hits.f_div(&count)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_rows_are_ignored_and_an_unlabelled_batch_is_zero() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 3.0, 1.0, 1.0]).view([3, 2]);
        let labels = Tensor::from_slice(&[0i64, -100, 1]);
        let (loss, acc) = labelled_cross_entropy(&logits, &labels, 0.0).unwrap();
        let expected = logits
            .index_select(0, &Tensor::from_slice(&[0i64, 2]))
            .cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 1]));
        assert!((loss.double_value(&[]) - expected.double_value(&[])).abs() < 1e-6);
        assert_eq!(acc.double_value(&[]), 0.5, "row 0 right, row 2 a tie resolved to class 0");
        let none = Tensor::from_slice(&[-100i64, -100, -100]);
        let (loss, acc) = labelled_cross_entropy(&logits, &none, 0.1).unwrap();
        assert_eq!((loss.double_value(&[]), acc.double_value(&[])), (0.0, 0.0));
    }
}
