//! With identical weights, pt's ResNets compute what torchvision's compute (fp32, CPU): eval-mode
//! logits and features, train-mode logits, and the BatchNorm statistics one train step leaves.
//! The weights go through torchvision's strict `load_state_dict`, so the names and buffers must
//! match exactly.

use pt_resnet::arch::ResNet;
use pt_resnet::config::{Depth, ResNetConfig};
use pt_sdk::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = std::env::var_os("PT_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".pt/venv/bin/python"));
    assert!(p.exists(), "no Python with torch + torchvision at {} (set PT_PYTHON): run scripts/setup.sh", p.display());
    p
}

const CLASSES: i64 = 7;

fn check(depth: Depth) {
    let config = ResNetConfig { num_classes: Some(CLASSES), ..Default::default() };
    let mut model = ResNet::new(depth, config, 5, Device::Cpu).unwrap();
    // Fresh BatchNorms are 1/0 with statistics 0/1, which would hide a miswired one: perturb all.
    tch::manual_seed(1);
    tch::no_grad(|| {
        for (name, mut t) in model.parameters().into_iter().chain(model.buffers()) {
            if name.ends_with("num_batches_tracked") {
                let _ = t.fill_(3);
            } else if name.ends_with("running_var") {
                t.copy_(&(t.rand_like() + 0.5));
            } else if name.contains("bn") || name.contains("downsample.1") {
                // Scales below 1 keep activations (and so float32 rounding) of deep stacks moderate.
                let centre = if name.ends_with("weight") { 0.5 } else { 0.0 };
                t.copy_(&((t.rand_like() - 0.5) * 0.5 + centre));
            } else if !name.contains("conv") {
                t.copy_(&(t.randn_like() * 0.1));
            }
        }
    });
    tch::manual_seed(2);
    let image = Tensor::randn([4, 3, 96, 96], (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    let mut state = model.parameters();
    state.extend(model.buffers());
    Tensor::write_safetensors(&state, dir.path().join("weights.safetensors")).unwrap();
    Tensor::write_safetensors(&[("image", image.shallow_clone())], dir.path().join("inputs.safetensors")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tv_resnet_reference.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .arg(depth.name())
        .arg(CLASSES.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "torchvision reference failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let tv: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("tv_outputs.safetensors")).unwrap().into_iter().collect();

    let inputs = Tensors::new().with("image", image);
    let ctx = StepCtx::default();
    let close = |a: &Tensor, b: &Tensor, what: &str| {
        let d = (a - b).abs().max().double_value(&[]);
        let scale = b.abs().max().double_value(&[]);
        assert!(d < 1e-4, "{}: {what} differs from torchvision's by {d} (largest value {scale})", depth.name());
    };
    model.set_train(false);
    let eval = tch::no_grad(|| model.forward(&inputs, &ctx)).unwrap();
    close(eval.get("logits").unwrap(), &tv["eval_logits"], "eval logits");
    close(eval.get("features").unwrap(), &tv["eval_features"], "eval features");
    model.set_train(true);
    let train = tch::no_grad(|| model.forward(&inputs, &ctx)).unwrap();
    close(train.get("logits").unwrap(), &tv["train_logits"], "train logits");
    let buffers = model.buffers();
    assert_eq!(buffers.len(), tv.keys().filter(|k| k.starts_with("after_train.")).count());
    for (name, t) in buffers {
        let reference = &tv[&format!("after_train.{name}")];
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t.int64_value(&[]), 4, "{name} counts train batches");
            assert_eq!(reference.int64_value(&[]), 4);
        } else {
            close(&t, reference, &format!("{name} after a train step"));
        }
    }
}

#[test]
fn resnet18_matches_torchvision() {
    check(Depth::R18);
}

#[test]
fn resnet50_matches_torchvision() {
    check(Depth::R50);
}
