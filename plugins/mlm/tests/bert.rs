//! `bert` beyond parity: seeded Hugging Face-style initialisation, dropout only in training,
//! the description the host reads, and gradients through the tied decoder.

mod common;

use common::*;
use pt_mlm::Bert;
use pt_sdk::prelude::*;
use serde_json::json;
use std::collections::HashMap;

fn tiny(seed: u64) -> Bert {
    make(json!({"preset": "tiny", "vocab_size": 300}), &CreateCtx { seed, ..Default::default() }).unwrap()
}

fn params(b: &Bert) -> HashMap<String, Tensor> {
    b.parameters().into_iter().collect()
}

#[test]
fn initialisation_is_seeded_and_follows_hugging_face() {
    let (a, b, c) = (params(&tiny(1)), params(&tiny(1)), params(&tiny(2)));
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs for the same seed");
    }
    let word = &a["bert.embeddings.word_embeddings.weight"];
    assert!(!word.equal(&c["bert.embeddings.word_embeddings.weight"]), "another seed, other weights");
    assert_eq!(word.size(), vec![300, 128]);
    assert_eq!(word.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "the [PAD] row starts at zero");
    let std = word.narrow(0, 1, 299).std(true).double_value(&[]);
    assert!((std - 0.02).abs() < 0.001, "std {std}");
    let mean = word.mean(Kind::Float).double_value(&[]);
    assert!(mean.abs() < 0.001, "mean {mean}");
    let q = &a["bert.encoder.layer.0.attention.self.query.weight"];
    assert!((q.std(true).double_value(&[]) - 0.02).abs() < 0.002);
    let ones = |n: &str| a[n].eq(1.0).all().int64_value(&[]) == 1;
    let zeros = |n: &str| a[n].eq(0.0).all().int64_value(&[]) == 1;
    assert!(ones("bert.embeddings.LayerNorm.weight") && zeros("bert.embeddings.LayerNorm.bias"));
    assert!(zeros("bert.encoder.layer.1.output.dense.bias") && zeros("cls.predictions.bias"));
    assert!(a.values().all(|t| t.requires_grad() && t.kind() == Kind::Float));
}

#[test]
fn dropout_only_in_training_mode() {
    let mut bert = tiny(3);
    let ids = Tensor::randint_low(5, 300, [2, 16], (Kind::Int64, Device::Cpu));
    let batch = Tensors::new().with("input_ids", ids);
    let features = |b: &Bert| b.forward(&batch, &step(true)).unwrap().get("features").unwrap().shallow_clone();
    bert.set_train(false);
    assert!(features(&bert).equal(&features(&bert)), "eval is deterministic");
    bert.set_train(true);
    tch::manual_seed(9);
    let first = features(&bert);
    tch::manual_seed(9);
    let same_seed = features(&bert);
    let unseeded = features(&bert);
    assert!(first.equal(&same_seed), "dropout follows libtorch's generator, which the host seeds per step");
    assert!(!first.equal(&unseeded), "training applies dropout");
}

#[test]
fn info_describes_inputs_outputs_layers_and_flops() {
    let bert = tiny(0);
    let info = bert.info();
    assert_eq!(info.inputs, vec!["input_ids"]);
    assert_eq!(info.optional_inputs, vec!["attention_mask", "token_type_ids", "mlm_positions", "output_attentions"]);
    for out in ["hidden_states", "features", "mlm_logits", "pooled_output"] {
        assert!(info.outputs.iter().any(|o| o == out), "{out}");
    }
    assert_eq!(info.feature_dim, Some(128));
    assert_eq!(
        info.layer_prefixes,
        vec!["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler", "cls.predictions"]
    );
    // Every parameter sits under exactly one prefix, so freezing the first N is well defined.
    for (name, _) in bert.parameters() {
        let n = info.layer_prefixes.iter().filter(|p| name.starts_with(&format!("{p}."))).count();
        assert_eq!(n, 1, "{name}");
    }
    // 6·N·L + 12·layers·H·L² + head on 15 %: N = 2 · (4·128² + 2·128·512).
    let (l, h) = (128.0f64, 128.0f64);
    let n = 2.0 * (4.0 * h * h + 2.0 * h * 512.0);
    let expected = 6.0 * n * l + 12.0 * 2.0 * h * l * l + 6.0 * (h * h + h * 300.0) * (0.15f64 * l).ceil();
    assert_eq!(info.train_flops_per_sample, Some(expected));
    assert_eq!(info.config["num_hidden_layers"], 2);
    assert_eq!(info.config["vocab_size"], 300);

    let no_pooler: Bert =
        make(json!({"preset": "tiny", "vocab_size": 300, "add_pooling_layer": false}), &CreateCtx::default()).unwrap();
    assert!(!no_pooler.parameters().iter().any(|(n, _)| n.starts_with("bert.pooler")));
    assert!(!no_pooler.info().outputs.contains(&"pooled_output".to_string()));
}

#[test]
fn the_tied_decoder_trains_the_word_embeddings_and_inputs_are_checked() {
    let bert = tiny(4);
    let ids = Tensor::randint_low(5, 300, [2, 16], (Kind::Int64, Device::Cpu));
    let batch = Tensors::new()
        .with("input_ids", ids.shallow_clone())
        .with("mlm_positions", Tensor::from_slice(&[3i64, 17]))
        .with("attention_mask", Tensor::ones([2, 16], (Kind::Int64, Device::Cpu)));
    let logits = bert.forward(&batch, &step(true)).unwrap().get("mlm_logits").unwrap().shallow_clone();
    logits.select(1, 250).sum(Kind::Float).backward();
    let p = params(&bert);
    let word_grad = p["bert.embeddings.word_embeddings.weight"].grad();
    // Row 250 gets gradient through the tied decoder, whether or not it occurs in the input.
    assert!(word_grad.get(250).abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(p["cls.predictions.bias"].grad().get(250).double_value(&[]) > 0.0);
    assert!(!p["bert.pooler.dense.weight"].grad().defined(), "the pooler is not on the MLM path");

    let long = Tensors::new().with("input_ids", Tensor::zeros([1, 600], (Kind::Int64, Device::Cpu)));
    let err = bert.forward(&long, &step(true)).unwrap_err();
    assert!(err.message.contains("max_position_embeddings"), "{err}");
    let flat = Tensors::new().with("input_ids", Tensor::zeros([16], (Kind::Int64, Device::Cpu)));
    assert!(bert.forward(&flat, &step(true)).unwrap_err().message.contains("[batch, seq]"));
    let negative = Tensors::new().with("input_ids", Tensor::from_slice(&[2i64, -1, 3]).view([1, 3]));
    assert!(bert.forward(&negative, &step(true)).unwrap_err().message.contains("vocab_size"));
}
