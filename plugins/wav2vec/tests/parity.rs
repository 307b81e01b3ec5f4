//! With identical weights, pt's `wav2vec2` computes what transformers' `Wav2Vec2Model` computes
//! (fp32, CPU, within 1e-4): hidden states and conv features of a padded batch, with and without
//! time masking, for the base layout (GroupNorm, post-LN) and the large one (LayerNorm convs,
//! pre-LN). The objective's parameters load strictly into `Wav2Vec2ForPreTraining`, whose
//! evaluation-mode contrastive loss and code perplexity over pt's masks and negatives match pt's.

use pt_sdk::prelude::*;
use pt_wav2vec::config::{FeatExtractNorm, FeaturePooling, Preset, Wav2Vec2Args};
use pt_wav2vec::objective::Wav2Vec2ObjectiveConfig;
use pt_wav2vec::{Wav2Vec2, Wav2Vec2Objective};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = std::env::var_os("PT_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".pt/venv/bin/python"));
    assert!(p.exists(), "no Python with torch + transformers at {} (set PT_PYTHON): run scripts/setup.sh", p.display());
    p
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn check(args: Wav2Vec2Args) {
    let config = args.resolve().unwrap();
    let mut model = Wav2Vec2::new(config.clone(), FeaturePooling::Mean, 11, Device::Cpu).unwrap();
    // LayerNorms start at 1/0, which would hide a swapped weight and bias: perturb them.
    tch::manual_seed(1);
    tch::no_grad(|| {
        for (name, mut t) in model.params_named() {
            if name.contains("norm") {
                t.copy_(&(t.rand_like() * 0.5 + 0.75));
            }
        }
    });
    let objective_cfg = Wav2Vec2ObjectiveConfig {
        conv_kernel: Some(config.conv_kernel.clone()),
        conv_stride: Some(config.conv_stride.clone()),
        conv_dim: Some(config.conv_dim.clone()),
        hidden_size: Some(config.hidden_size),
        num_codevectors_per_group: 16,
        codevector_dim: 32,
        proj_codevector_dim: 24,
        num_negatives: 7,
        ..Default::default()
    };
    let mut objective = Wav2Vec2Objective::new(objective_cfg, &CreateCtx { seed: 4, ..Default::default() }).unwrap();
    model.set_train(false);
    objective.set_train(false);

    // Three clips of 1.0, 0.7 and 0.45 s, right-padded.
    tch::manual_seed(2);
    let lengths = [16000i64, 11200, 7200];
    let audio = Tensor::randn([3, 16000], (Kind::Float, Device::Cpu));
    let positions = Tensor::arange(16000, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let attention_mask = positions.lt_tensor(&Tensor::from_slice(&lengths).unsqueeze(1)).to_kind(Kind::Int64);
    let audio = audio * attention_mask.to_kind(Kind::Float);
    let batch = Tensors::new()
        .with("input_values", audio.shallow_clone())
        .with("attention_mask", attention_mask.shallow_clone())
        .with("sample_index", Tensor::from_slice(&[5i64, 6, 7]));
    let ctx = StepCtx { seed: 3, train: false, ..Default::default() };
    let prepared = objective.prepare(batch.share(), &ctx).unwrap();
    let mask = prepared.require("mask_time_indices").unwrap().shallow_clone();
    let plain = model.forward(&batch, &ctx).unwrap();
    let masked = model.forward(&prepared, &ctx).unwrap();
    let loss = objective.loss(&prepared, &masked, &ctx).unwrap();
    let metric = |n: &str| loss.metrics.iter().find(|(k, _)| k == n).unwrap().1.double_value(&[]);

    // transformers takes negatives as [batch, frames, K] flat positions in [batch × frames].
    let (b, f) = mask.size2().unwrap();
    let masked_frames = prepared.require("masked_frames").unwrap();
    let negatives = prepared.require("negative_indices").unwrap();
    let k = negatives.size()[1];
    let flat_negatives = masked_frames.index_select(0, &negatives.reshape([-1])).reshape([-1, k]);
    let hf_negatives = Tensor::zeros([b * f, k], (Kind::Int64, Device::Cpu))
        .index_copy(0, masked_frames, &flat_negatives)
        .reshape([b, f, k]);

    let dir = tempfile::tempdir().unwrap();
    let mut weights: Vec<(String, Tensor)> =
        model.params_named().into_iter().map(|(n, t)| (format!("wav2vec2.{n}"), t)).collect();
    weights.extend(objective.parameters());
    Tensor::write_safetensors(&weights, dir.path().join("weights.safetensors")).unwrap();
    let mut hf_config = config.hf_json();
    for (key, value) in [
        ("num_codevector_groups", 2),
        ("num_codevectors_per_group", 16),
        ("codevector_dim", 32),
        ("proj_codevector_dim", 24),
        ("num_negatives", 7),
    ] {
        hf_config[key] = value.into();
    }
    hf_config["contrastive_logits_temperature"] = 0.1.into();
    std::fs::write(dir.path().join("config.json"), hf_config.to_string()).unwrap();
    Tensor::write_safetensors(
        &[
            ("input_values", audio),
            ("attention_mask", attention_mask),
            ("mask_time_indices", mask.to_kind(Kind::Int64)),
            ("sampled_negative_indices", hf_negatives),
        ],
        dir.path().join("inputs.safetensors"),
    )
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hf_wav2vec2_reference.py");
    let out = Command::new(python()).arg(&script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "transformers reference failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let hf: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("hf_outputs.safetensors")).unwrap().into_iter().collect();

    for (ours, theirs, name) in [
        (&plain, "last_hidden_state", "last_hidden_state"),
        (&plain, "extract_features", "extract_features"),
        (&masked, "masked_last_hidden_state", "last_hidden_state"),
    ] {
        let d = max_diff(ours.require(name).unwrap(), &hf[theirs]);
        assert!(d < 1e-4, "{theirs}: max |pt - transformers| = {d:e}");
    }
    let m = masked_frames.size()[0] as f64;
    let ours = metric("contrastive_loss") * m;
    let theirs = hf["contrastive_loss_sum"].double_value(&[0]);
    assert!(
        (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1.0),
        "contrastive loss sum: pt {ours} vs transformers {theirs}"
    );
    let (ours, theirs) = (metric("code_perplexity"), hf["codevector_perplexity"].double_value(&[0]));
    assert!((ours - theirs).abs() < 1e-4, "code perplexity: pt {ours} vs transformers {theirs}");
    assert!(mask.sum(Kind::Int64).int64_value(&[]) > 0, "nothing was masked");
}

fn small(preset_changes: impl FnOnce(&mut Wav2Vec2Args)) -> Wav2Vec2Args {
    let mut args = Wav2Vec2Args {
        preset: Preset::Tiny,
        conv_dim: Some(vec![32; 7]),
        hidden_size: Some(48),
        num_attention_heads: Some(4),
        intermediate_size: Some(96),
        num_conv_pos_embeddings: Some(16),
        num_conv_pos_embedding_groups: Some(4),
        ..Default::default()
    };
    preset_changes(&mut args);
    args
}

#[test]
fn base_layout_matches_transformers() {
    check(small(|_| {}));
}

#[test]
fn large_layout_matches_transformers() {
    check(small(|a| {
        a.feat_extract_norm = Some(FeatExtractNorm::Layer);
        a.do_stable_layer_norm = Some(true);
        a.conv_bias = Some(true);
        a.num_conv_pos_embeddings = Some(15); // odd kernel: no frame dropped
    }));
}
