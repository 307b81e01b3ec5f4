//! Shared by the integration tests: a fixed small problem and the PyTorch reference runner.
#![allow(dead_code)]

use pt_optim::{default_groups, FlatParams, GroupRules};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Kind, Tensor};

/// The interpreter with torch: `$PT_PYTHON`, else `<repo>/.pt/venv/bin/python`. Panics (the
/// test fails) when neither exists: these comparisons must not be skipped silently.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PT_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "PT_PYTHON={} does not exist; run scripts/setup.sh or fix PT_PYTHON", p.display());
        return p;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pt/venv/bin/python");
    assert!(
        p.exists(),
        "no Python with torch at {} and PT_PYTHON is unset: run scripts/setup.sh (these tests \
         compare against PyTorch and cannot be skipped)",
        p.display()
    );
    p
}

/// Runs tests/torch_reference.py on `spec` (+ `problem` tensors) and returns its output tensors.
pub fn run_reference(spec: &serde_json::Value, problem: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    let problem_path = dir.path().join("problem.safetensors");
    let out_path = dir.path().join("out.safetensors");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    let problem: Vec<(String, Tensor)> = problem.iter().map(|(n, t)| (n.clone(), t.contiguous())).collect();
    let placeholder = [("none".to_string(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)))];
    let to_write: &[(String, Tensor)] = if problem.is_empty() { &placeholder } else { &problem };
    Tensor::write_safetensors(to_write, &problem_path).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torch_reference.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(&spec_path)
        .arg(&problem_path)
        .arg(&out_path)
        .output()
        .expect("could not start the Python interpreter");
    assert!(
        output.status.success(),
        "torch_reference.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Tensor::read_safetensors(&out_path).unwrap()
}

pub fn get<'a>(tensors: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no tensor `{name}`")).1
}

/// Deterministic values in [-1, 1) without touching libtorch's global RNG (tests run in parallel).
pub fn pseudo_random(shape: &[i64], seed: u64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

/// Parameters of different shapes: matrices, a conv kernel, biases, a norm weight, a scalar.
pub const SHAPES: &[(&str, &[i64])] = &[
    ("encoder.weight", &[8, 5]),
    ("encoder.bias", &[8]),
    ("conv.weight", &[4, 3, 3, 3]),
    ("conv.bias", &[4]),
    ("norm.weight", &[8]),
    ("head.weight", &[3, 8]),
    ("head.bias", &[3]),
    ("temperature", &[]),
];

pub fn initial_params() -> Vec<(String, Tensor)> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let mut t = pseudo_random(shape, 100 + i as u64);
            if name.starts_with("norm.") {
                t = t * 0.1 + 1.0;
            }
            (name.to_string(), t)
        })
        .collect()
}

/// Gradient for step `t`; magnitudes differ per parameter so trust ratios and clipping matter.
pub fn gradients(t: usize) -> Vec<(String, Tensor)> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let scale = 0.5 + i as f64 * 0.4;
            (name.to_string(), pseudo_random(shape, 1000 + 31 * t as u64 + i as u64) * scale)
        })
        .collect()
}

pub fn grouping(weight_decay: f64) -> GroupRules {
    default_groups(weight_decay).with_lr_mult("encoder.", 0.5)
}

/// Fresh copies of the initial parameters, flattened. Returns the tensors the "model" holds too.
pub fn flatten_problem(weight_decay: f64) -> (FlatParams, Vec<(String, Tensor)>) {
    let params: Vec<(String, Tensor)> =
        initial_params().into_iter().map(|(n, t)| (n, t.set_requires_grad(true))).collect();
    let handles: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let flat = FlatParams::new(params, &grouping(weight_decay)).unwrap();
    (flat, handles)
}

/// Puts exactly `grads` into the parameters' gradients through a real backward pass:
/// d/dp sum(p * g) = g.
pub fn backward_with(handles: &[(String, Tensor)], grads: &[(String, Tensor)]) {
    let mut loss = Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
    for ((n, p), (gn, g)) in handles.iter().zip(grads) {
        assert_eq!(n, gn);
        loss += (p * g).sum(Kind::Float);
    }
    loss.backward();
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Bitwise equality of two float tensors.
pub fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.view_dtype(Kind::Int).equal(&b.view_dtype(Kind::Int))
}
