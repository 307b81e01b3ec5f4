//! The `mlm` objective's masking on real text: rates, special tokens, determinism per
//! (seed, epoch, sample), and the loss it feeds.

mod common;

use common::*;
use pt_mlm::{Bert, Mlm, TextDataset};
use pt_sdk::prelude::*;
use serde_json::json;

struct Setup {
    _scratch: Scratch,
    data: TextDataset,
    mlm: Mlm,
    vocab: i64,
    specials: Vec<i64>,
}

/// tiny/train.txt, packed in blocks of 128, and the objective configured from the dataset's
/// notes as the host does it.
fn setup(mode: &str) -> Setup {
    let text = text_data();
    let scratch = Scratch::new();
    let data: TextDataset = make(
        json!({"files": [text.join("tiny/train.txt")], "vocab_size": 2000, "block_size": 128, "mode": mode}),
        &scratch.ctx(),
    )
    .unwrap();
    let notes = data.info().notes;
    let vocab = notes["vocab_size"].as_i64().unwrap();
    let specials: Vec<i64> = serde_json::from_value(notes["special_token_ids"].clone()).unwrap();
    let mlm: Mlm = make(
        json!({"vocab_size": vocab, "mask_token_id": notes["mask_token_id"], "special_token_ids": specials}),
        &scratch.ctx(),
    )
    .unwrap();
    Setup { _scratch: scratch, data, mlm, vocab, specials }
}

fn prepared(s: &Setup, indices: &[u64], epoch: u64) -> (Tensors, Tensors) {
    let mut batch = s.data.get_batch(indices, &step(true)).unwrap();
    let index: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    batch.insert("sample_index", Tensor::from_slice(&index));
    let original = batch.share();
    let ctx = StepCtx { epoch, ..step(true) };
    (original, s.mlm.prepare(batch, &ctx).unwrap())
}

#[test]
fn masking_rates_follow_bert_and_skip_special_tokens() {
    let s = setup("packed");
    let indices: Vec<u64> = (0..96).collect();
    let (original, batch) = prepared(&s, &indices, 0);
    let before = ivec(original.get("input_ids").unwrap());
    let after = ivec(batch.get("input_ids").unwrap());
    let positions = ivec(batch.get("mlm_positions").unwrap());
    let labels = ivec(batch.get("mlm_labels").unwrap());
    assert_eq!(positions.len(), labels.len());
    assert!(batch.get("attention_mask").is_none(), "an all-real mask is dropped (mask-free attention)");

    let candidates = before.iter().filter(|t| !s.specials.contains(t)).count();
    let rate = positions.len() as f64 / candidates as f64;
    assert!((rate - 0.15).abs() < 0.01, "chosen {rate} of {candidates} candidates");

    let chosen: std::collections::HashSet<i64> = positions.iter().copied().collect();
    let (mut masked, mut random, mut kept) = (0, 0, 0);
    for (&p, &label) in positions.iter().zip(&labels) {
        assert_eq!(before[p as usize], label, "labels are the original ids");
        assert!(!s.specials.contains(&label), "special token chosen");
        match after[p as usize] {
            4 => masked += 1,
            t if t == label => kept += 1,
            t => {
                assert!(!s.specials.contains(&t) && (0..s.vocab).contains(&t), "bad random token {t}");
                random += 1;
            }
        }
    }
    let n = positions.len() as f64;
    let (masked, random, kept) = (masked as f64 / n, random as f64 / n, kept as f64 / n);
    assert!((masked - 0.8).abs() < 0.04, "[MASK] share {masked}");
    assert!((random - 0.1).abs() < 0.03, "random share {random}");
    assert!((kept - 0.1).abs() < 0.03, "kept share {kept}");
    for (i, (&b, &a)) in before.iter().zip(&after).enumerate() {
        if !chosen.contains(&(i as i64)) {
            assert_eq!(a, b, "an unchosen token changed");
        }
    }
}

#[test]
fn masks_depend_on_seed_epoch_and_sample_only() {
    let s = setup("packed");
    let row = |batch: &Tensors, r: usize| ivec(batch.get("input_ids").unwrap())[r * 128..(r + 1) * 128].to_vec();
    let (_, a) = prepared(&s, &[3, 10], 0);
    let (_, again) = prepared(&s, &[3, 10], 0);
    assert_eq!(ivec(a.get("input_ids").unwrap()), ivec(again.get("input_ids").unwrap()));
    assert_eq!(ivec(a.get("mlm_positions").unwrap()), ivec(again.get("mlm_positions").unwrap()));
    // Sample 10 is masked the same in another batch, at another row.
    let (_, other) = prepared(&s, &[20, 10, 7], 0);
    assert_eq!(row(&a, 1), row(&other, 1));
    // A new epoch draws new masks.
    let (_, next_epoch) = prepared(&s, &[3, 10], 1);
    assert_ne!(row(&a, 1), row(&next_epoch, 1));
    assert_ne!(row(&a, 0), row(&next_epoch, 0));
    // As does another run seed.
    let mut batch = s.data.get_batch(&[3, 10], &step(true)).unwrap();
    batch.insert("sample_index", Tensor::from_slice(&[3i64, 10]));
    let reseeded = s.mlm.prepare(batch, &StepCtx { seed: 8, ..step(true) }).unwrap();
    assert_ne!(row(&a, 1), row(&reseeded, 1));
}

#[test]
fn padding_is_never_chosen_and_the_loss_is_cross_entropy_at_the_chosen_tokens() {
    let s = setup("lines");
    let indices: Vec<u64> = (0..32).collect();
    let (original, batch) = prepared(&s, &indices, 0);
    let mask = ivec(original.get("attention_mask").unwrap());
    assert!(mask.contains(&0), "lines are padded");
    assert!(batch.get("attention_mask").is_some(), "a mask with padding is kept");
    for p in ivec(batch.get("mlm_positions").unwrap()) {
        assert_eq!(mask[p as usize], 1, "padding chosen at {p}");
    }

    let bert: Bert = make(json!({"preset": "tiny", "vocab_size": s.vocab}), &CreateCtx::default()).unwrap();
    let out = bert.forward(&batch, &step(true)).unwrap();
    let logits = out.get("mlm_logits").unwrap();
    let labels = batch.get("mlm_labels").unwrap();
    assert_eq!(logits.size(), vec![labels.size()[0], s.vocab]);
    let loss = s.mlm.loss(&batch, &out, &step(true)).unwrap();
    let expected = -logits.log_softmax(-1, Kind::Float).gather(1, &labels.unsqueeze(1), false).mean(Kind::Float);
    assert!((loss.loss.double_value(&[]) - expected.double_value(&[])).abs() < 1e-5);
    assert!((loss.loss.double_value(&[]) - (s.vocab as f64).ln()).abs() < 1.0, "untrained loss near ln(vocab)");
    assert!(loss.loss.requires_grad());
    let metrics: std::collections::HashMap<_, _> = loss.metrics.into_iter().collect();
    assert_eq!(metrics["masked_tokens"].double_value(&[]), labels.size()[0] as f64);
    let acc = metrics["mlm_accuracy"].double_value(&[]);
    assert!((0.0..=1.0).contains(&acc) && !metrics["mlm_accuracy"].requires_grad());

    let mut no_index = s.data.get_batch(&[0], &step(true)).unwrap();
    let err = s.mlm.prepare(no_index.share(), &step(true)).unwrap_err();
    assert!(err.message.contains("sample_index"), "{err}");
    no_index.insert("sample_index", Tensor::from_slice(&[0i64, 1]));
    assert!(s.mlm.prepare(no_index, &step(true)).is_err());
}
