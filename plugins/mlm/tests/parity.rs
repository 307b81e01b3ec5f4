//! With identical weights, pt's `bert` computes what Hugging Face's `BertForMaskedLM` (and
//! `BertModel` with its pooler) compute: fp32, CPU, eval mode, a padded batch with segment ids.

mod common;

use common::*;
use pt_mlm::Bert;
use pt_sdk::prelude::*;
use std::process::Command;

const B: i64 = 3;
const L: i64 = 12;
const VOCAB: i64 = 97;

fn random_bert() -> Bert {
    let config = serde_json::json!({
        "preset": "tiny", "vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 48, "max_position_embeddings": 24,
    });
    let mut bert: Bert = make(config, &CreateCtx { seed: 11, ..Default::default() }).unwrap();
    // Initialisation leaves biases at 0 and LayerNorms at 1/0, which would hide miswired ones.
    tch::manual_seed(3);
    tch::no_grad(|| {
        for (name, mut p) in bert.parameters() {
            let noise = p.randn_like() * 0.5;
            let value = if name.contains("LayerNorm.weight") { noise + 1.0 } else { noise };
            p.copy_(&value);
        }
    });
    bert.set_train(false);
    bert
}

fn inputs() -> Tensors {
    tch::manual_seed(5);
    let ids = Tensor::randint_low(5, VOCAB, [B, L], (Kind::Int64, Device::Cpu));
    // Row 0 full, row 1 padded after 7 tokens, row 2 entirely padding (must not produce NaN).
    let lengths = [L, 7, 0];
    let mask = Tensor::from_slice(&(0..B * L).map(|i| (i % L < lengths[(i / L) as usize]) as i64).collect::<Vec<_>>())
        .view([B, L]);
    let ids = &ids * &mask; // padding positions hold [PAD] = 0
    let types = Tensor::randint(2, [B, L], (Kind::Int64, Device::Cpu)) * &mask;
    Tensors::new().with("input_ids", ids).with("attention_mask", mask).with("token_type_ids", types)
}

fn max_abs_diff_where(a: &Tensor, b: &Tensor, keep: &Tensor) -> f64 {
    let diff = (a - b).abs() * keep.to_kind(Kind::Float);
    diff.max().double_value(&[])
}

fn check_against_hf(attn: &str) {
    let bert = random_bert();
    let batch = inputs();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), bert.info().config.to_string()).unwrap();
    Tensor::write_safetensors(&bert.parameters(), dir.path().join("weights.safetensors")).unwrap();
    let named: Vec<(&str, Tensor)> = batch.iter().map(|(n, t)| (n, t.shallow_clone())).collect();
    Tensor::write_safetensors(&named, dir.path().join("inputs.safetensors")).unwrap();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_bert_reference.py");
    let out = Command::new(python()).arg(&script).arg(dir.path()).arg(attn).output().unwrap();
    assert!(out.status.success(), "reference script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let hf: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("hf_outputs.safetensors")).unwrap().into_iter().collect();

    let mut all = batch.share();
    all.insert("mlm_positions", Tensor::arange(B * L, (Kind::Int64, Device::Cpu)));
    let ours = tch::no_grad(|| bert.forward(&all, &step(false))).unwrap();
    for (name, t) in ours.iter() {
        assert!(bool::try_from(t.isfinite().all()).unwrap(), "{name} has non-finite values ({attn})");
    }
    let mask = batch.get("attention_mask").unwrap();
    let logits = ours.get("mlm_logits").unwrap().view([B, L, VOCAB]);
    let d = max_abs_diff_where(&logits, &hf["logits"], &mask.unsqueeze(-1));
    assert!(d < 1e-4, "{attn}: MLM logits differ from transformers' by {d}");
    let d = max_abs_diff_where(ours.get("hidden_states").unwrap(), &hf["hidden"], &mask.unsqueeze(-1));
    assert!(d < 1e-4, "{attn}: hidden states differ by {d}");
    let has_tokens = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64).gt(0).unsqueeze(-1);
    let d = max_abs_diff_where(ours.get("pooled_output").unwrap(), &hf["pooled"], &has_tokens);
    assert!(d < 1e-4, "{attn}: pooled output differs by {d}");
    let cls = hf["hidden"].select(1, 0);
    let d = max_abs_diff_where(ours.get("features").unwrap(), &cls, &has_tokens);
    assert!(d < 1e-4, "{attn}: features ([CLS] state) differ by {d}");
}

#[test]
fn logits_match_transformers_eager_attention() {
    check_against_hf("eager");
}

#[test]
fn logits_match_transformers_sdpa_attention() {
    check_against_hf("sdpa");
}

#[test]
fn logits_at_chosen_positions_equal_the_full_computation() {
    let bert = random_bert();
    let batch = inputs();
    let mut all = batch.share();
    all.insert("mlm_positions", Tensor::arange(B * L, (Kind::Int64, Device::Cpu)));
    let full = tch::no_grad(|| bert.forward(&all, &step(false))).unwrap();
    let chosen = [0i64, 5, 13, 14, 20];
    let mut some = batch.share();
    some.insert("mlm_positions", Tensor::from_slice(&chosen));
    let part = tch::no_grad(|| bert.forward(&some, &step(false))).unwrap();
    let expected = full.get("mlm_logits").unwrap().index_select(0, &Tensor::from_slice(&chosen));
    let got = part.get("mlm_logits").unwrap();
    assert_eq!(got.size(), vec![chosen.len() as i64, VOCAB]);
    let d = (got - expected).abs().max().double_value(&[]);
    assert!(d < 1e-5, "{d}");
    // Without mlm_positions there are no logits at all.
    let none = tch::no_grad(|| bert.forward(&batch, &step(false))).unwrap();
    assert!(none.get("mlm_logits").is_none());
    assert_eq!(none.get("features").unwrap().size(), vec![B, 32]);
}

#[test]
fn parameter_names_are_hugging_face_state_dict_keys() {
    let bert = random_bert();
    let names: Vec<String> = bert.parameters().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.attention.output.LayerNorm.bias",
        "bert.encoder.layer.1.intermediate.dense.weight",
        "bert.encoder.layer.1.output.dense.bias",
        "bert.pooler.dense.weight",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.bias",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("decoder")), "the decoder must be tied, not a parameter");
    // 5 embedding tensors, 16 per layer, 2 pooler, 5 head.
    assert_eq!(names.len(), 5 + 2 * 16 + 2 + 5);
    assert!(bert.buffers().is_empty(), "transformers 4.57 saves no BERT buffers (position_ids is non-persistent)");
}
