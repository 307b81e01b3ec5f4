//! The objective called directly, the way pt calls it: `prepare` on a batch, then `loss` on
//! what an architecture would output. No `pt` needed; libtorch runs in-process.

use denoise::{Denoise, DenoiseConfig};
use pt_sdk::prelude::*;

const MASK: i64 = 4;

fn objective(corrupt_prob: f64, feature_dim: i64) -> Denoise {
    let config = DenoiseConfig {
        corrupt_prob,
        mask_token_id: Some(MASK),
        special_token_ids: Some(vec![0, 1, 2, 3, 4]),
        feature_dim,
        predictor_hidden: 16,
        ..Default::default()
    };
    Denoise::new(config, &CreateCtx { seed: 7, ..Default::default() }).expect("valid config")
}

/// Four rows of `[CLS] t t ... t [SEP]` (ids 2, 5.., 3), as a text dataset collates them, plus
/// the host's `sample_index`.
fn token_batch() -> Tensors {
    let rows: Vec<i64> = (0..4)
        .flat_map(|r| {
            let mut row = vec![2];
            row.extend((0..14).map(|i| 5 + (r * 14 + i) % 50));
            row.push(3);
            row
        })
        .collect();
    Tensors::new()
        .with("input_ids", Tensor::from_slice(&rows).view([4, 16]))
        .with("attention_mask", Tensor::ones([4, 16], (Kind::Int64, Device::Cpu)))
        .with("sample_index", Tensor::from_slice(&[10i64, 11, 12, 13]))
}

fn ctx(epoch: u64) -> StepCtx {
    StepCtx { seed: 3, epoch, train: true, device: -1, world_size: 1, ..Default::default() }
}

fn ids(t: &Tensors) -> Vec<i64> {
    Vec::<i64>::try_from(&t.get("input_ids").unwrap().flatten(0, -1)).unwrap()
}

#[test]
fn prepare_stacks_the_clean_rows_and_their_masked_copies() {
    let obj = objective(0.3, 8);
    let original = ids(&token_batch());
    let prepared = obj.prepare(token_batch(), &ctx(0)).unwrap();
    assert_eq!(prepared.get("input_ids").unwrap().size(), [8, 16]);
    assert_eq!(prepared.get("attention_mask").unwrap().size(), [8, 16]);
    assert_eq!(prepared.get("sample_index").unwrap().size(), [8]);
    let all = ids(&prepared);
    let (clean, corrupted) = all.split_at(64);
    assert_eq!(clean, &original[..], "rows 0..B are the input");
    let mut masked = 0;
    for (c, o) in corrupted.iter().zip(&original) {
        if c != o {
            assert_eq!(*c, MASK, "only [MASK] replaces tokens");
            assert!(*o >= 5, "special tokens are never corrupted");
            masked += 1;
        }
    }
    // 56 ordinary tokens at 0.3: about 17.
    assert!((5..=35).contains(&masked), "{masked} tokens masked");
    // Per-sample counter streams: the same epoch gives the same masks, the next one others.
    assert_eq!(ids(&obj.prepare(token_batch(), &ctx(0)).unwrap()), all);
    assert_ne!(ids(&obj.prepare(token_batch(), &ctx(1)).unwrap()), all);
}

#[test]
fn float_inputs_get_gaussian_noise() {
    let config = DenoiseConfig { field: "x".into(), noise_std: 0.5, feature_dim: 4, ..Default::default() };
    let obj = Denoise::new(config, &CreateCtx::default()).unwrap();
    let x = Tensor::rand([4, 3], (Kind::Float, Device::Cpu));
    let batch = Tensors::new().with("x", x.shallow_clone()).with("sample_index", Tensor::from_slice(&[0i64, 1, 2, 3]));
    let prepared = obj.prepare(batch, &ctx(0)).unwrap();
    let both = prepared.get("x").unwrap();
    assert_eq!(both.size(), [8, 3]);
    assert!(both.narrow(0, 0, 4).equal(&x));
    let noise_std = (both.narrow(0, 4, 4) - &x).std(true).double_value(&[]);
    assert!((0.2..1.0).contains(&noise_std), "{noise_std}");
}

#[test]
fn the_loss_trains_the_predictor_head() {
    let obj = objective(0.15, 8);
    let params = obj.parameters();
    assert_eq!(
        params.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["predictor.0.weight", "predictor.0.bias", "predictor.2.weight", "predictor.2.bias"]
    );
    // What an architecture would output for 2·B = 16 rows: the corrupted half near the clean one.
    tch::manual_seed(0);
    let clean = Tensor::randn([8, 8], (Kind::Float, Device::Cpu)) * 2.0;
    let corrupted = &clean + Tensor::randn([8, 8], (Kind::Float, Device::Cpu)) * 0.3;
    let outputs = Tensors::new().with("features", Tensor::cat(&[&clean, &corrupted], 0));
    let loss_of = || obj.loss(&Tensors::new(), &outputs, &ctx(0)).unwrap();
    let first = loss_of();
    let start = first.loss.double_value(&[]);
    assert!(start.is_finite() && first.loss.numel() == 1);
    assert!(first.metrics.iter().any(|(n, _)| n == "cosine"));
    for _ in 0..50 {
        let out = loss_of();
        out.loss.backward();
        tch::no_grad(|| {
            for (_, p) in &params {
                let mut p = p.shallow_clone();
                let update = p.grad() * 0.05;
                let _ = p.f_sub_(&update).unwrap();
                let _ = p.grad().zero_();
            }
        });
    }
    let end = loss_of().loss.double_value(&[]);
    assert!(end < start * 0.8, "the head learns: {start} -> {end}");
}

#[test]
fn features_of_the_wrong_width_are_a_shape_error() {
    let obj = objective(0.15, 8);
    let outputs = Tensors::new().with("features", Tensor::zeros([16, 9], (Kind::Float, Device::Cpu)));
    let err = obj.loss(&Tensors::new(), &outputs, &ctx(0)).err().expect("an error");
    assert_eq!(err.kind, ErrorKind::Shape);
    assert!(err.message.contains("[2·batch, 8]") && err.message.contains("[16, 9]"), "{err}");
}

/// What `#[derive(PluginConfig)]` gives: the recipe's keys checked, and `feature_dim` left to pt.
#[test]
fn config_keys_are_checked_and_feature_dim_is_filled_by_pt() {
    let err = |text: &str| DenoiseConfig::check_json(text).unwrap_err().to_string();
    assert!(err(r#"{"corrupt_prob": 2}"#).contains("corrupt_prob must be <= 1, got 2"));
    assert!(err(r#"{"field": ""}"#).contains("field must not be empty"));
    assert!(err(r#"{"corrupt_rate": 0.2}"#).contains("accepted keys: field, corrupt_prob"));
    // At plan time pt has not filled feature_dim yet; at construction it must be set.
    DenoiseConfig::check_json("{}").unwrap();
    assert!(DenoiseConfig::from_json("{}").unwrap_err().to_string().contains("feature_dim is unset"));
    assert_eq!(DenoiseConfig::from_json(r#"{"feature_dim": 128}"#).unwrap().feature_dim, 128);
    let inputs: Vec<String> = DenoiseConfig::inputs().into_iter().map(|i| i.key).collect();
    assert_eq!(inputs, ["mask_token_id", "special_token_ids", "feature_dim"]);
}
