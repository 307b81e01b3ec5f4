//! NT-Xent against a direct PyTorch implementation of the paper's formula (Chen et al. 2020,
//! eq. 1) on fixed embeddings, and the views `prepare` makes.

use pt_sdk::prelude::*;
use pt_simclr::config::SimclrConfig;
use pt_simclr::loss::nt_xent;
use pt_simclr::SimClr;
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = std::env::var_os("PT_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".pt/venv/bin/python"));
    assert!(p.exists(), "no Python with torch at {} (set PT_PYTHON): run scripts/setup.sh", p.display());
    p
}

/// ℓ(i, j) = −log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) ), averaged over all 2N
/// ordered positive pairs, written loop by loop as in the paper.
const PAPER_FORMULA: &str = r#"
import sys, torch
from safetensors.torch import load_file
z = load_file(sys.argv[1])["z"].double()
tau = float(sys.argv[2])
n2 = z.shape[0]; n = n2 // 2
sim = lambda a, b: torch.dot(a, b) / (a.norm() * b.norm())
total = 0.0
for i in range(n2):
    j = (i + n) % n2
    denom = sum(torch.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
    total += -torch.log(torch.exp(sim(z[i], z[j]) / tau) / denom)
print(f"{(total / n2).item():.10f}")
"#;

#[test]
fn nt_xent_matches_the_papers_formula() {
    tch::manual_seed(4);
    let z = Tensor::randn([12, 16], (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.safetensors");
    Tensor::write_safetensors(&[("z", z.shallow_clone())], &path).unwrap();
    for tau in [0.1, 0.5] {
        let out = Command::new(python()).arg("-c").arg(PAPER_FORMULA).arg(&path).arg(tau.to_string()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let reference: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let (loss, _) = nt_xent(&z, tau).unwrap();
        let ours = loss.double_value(&[]);
        assert!((ours - reference).abs() < 1e-5, "tau {tau}: {ours} vs the formula's {reference}");
    }
    // Identical views of well-separated embeddings: every positive is found.
    let base = Tensor::eye(6, (Kind::Float, Device::Cpu));
    let (loss, acc) = nt_xent(&Tensor::cat(&[&base, &base], 0), 0.1).unwrap();
    assert_eq!(acc.double_value(&[]), 1.0);
    assert!(loss.double_value(&[]) < 0.01);
    assert!(nt_xent(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)), 0.5).is_err(), "odd row count");
}

fn objective(size: i64) -> SimClr {
    let cfg = SimclrConfig {
        image_size: Some(vec![size, size]),
        mean: Some(vec![0.5]),
        std: Some(vec![0.25]),
        feature_dim: 32,
        num_classes: Some(10),
        ..Default::default()
    };
    SimClr::new(cfg, &CreateCtx { seed: 9, ..Default::default() }).unwrap()
}

#[test]
fn prepare_makes_two_reproducible_views_per_image() {
    let sim = objective(16);
    tch::manual_seed(0);
    let images = (Tensor::rand([4, 1, 16, 16], (Kind::Float, Device::Cpu)) - 0.5) / 0.25;
    let batch = || {
        Tensors::new()
            .with("image", images.shallow_clone())
            .with("label", Tensor::from_slice(&[1i64, 2, 3, 4]))
            .with("sample_index", Tensor::from_slice(&[10i64, 11, 12, 13]))
    };
    let ctx = StepCtx { seed: 3, epoch: 1, train: true, ..Default::default() };
    let a = sim.prepare(batch(), &ctx).unwrap();
    let views = a.get("image").unwrap();
    assert_eq!(views.size(), [8, 1, 16, 16]);
    // Pixel range after undoing the normalisation stays in [0, 1].
    let pixels = views * 0.25 + 0.5;
    assert!(pixels.min().double_value(&[]) >= -1e-5 && pixels.max().double_value(&[]) <= 1.0 + 1e-5);
    assert!(!views.narrow(0, 0, 4).equal(&views.narrow(0, 4, 4)), "the two views differ");
    let b = sim.prepare(batch(), &ctx).unwrap();
    assert!(views.equal(b.get("image").unwrap()), "same seed, epoch and indices: same views");
    let next_epoch = sim.prepare(batch(), &StepCtx { epoch: 2, ..ctx }).unwrap();
    assert!(!views.equal(next_epoch.get("image").unwrap()), "a new epoch draws new views");

    // The loss trains the projector and the probe; the probe sees detached features.
    let features = Tensor::randn([8, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let out = Tensors::new().with("features", features.shallow_clone());
    let loss = sim.loss(&a, &out, &ctx).unwrap();
    loss.loss.backward();
    let names: Vec<String> = sim.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "projector.0.weight",
            "projector.0.bias",
            "projector.2.weight",
            "projector.2.bias",
            "online_probe.weight",
            "online_probe.bias"
        ]
    );
    for (name, p) in sim.parameters() {
        assert!(
            p.grad().defined() && p.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{name} gets a gradient"
        );
    }
    let metrics: Vec<&str> = loss.metrics.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(metrics, ["nt_xent", "contrastive_accuracy", "nt_xent_views", "probe_accuracy", "probe_loss"]);
}

#[test]
fn missing_statistics_or_sizes_are_config_errors_that_say_what_to_set() {
    let batch = || {
        Tensors::new()
            .with("image", Tensor::zeros([2, 1, 8, 8], (Kind::Float, Device::Cpu)))
            .with("sample_index", Tensor::from_slice(&[0i64, 1]))
    };
    let make = |cfg: SimclrConfig| SimClr::new(SimclrConfig { feature_dim: 8, ..cfg }, &CreateCtx::default());
    // Without an image dataset's description the objective still builds (so the host can say
    // the dataset has no images); a batch then gets the error that says what to set.
    let no_size = make(SimclrConfig { mean: Some(vec![0.5]), std: Some(vec![0.2]), ..Default::default() }).unwrap();
    let err = no_size.prepare(batch(), &StepCtx::default()).err().unwrap().to_string();
    assert!(err.contains("objective.image_size"), "{err}");
    let no_stats = make(SimclrConfig { image_size: Some(vec![8, 8]), ..Default::default() }).unwrap();
    let err = no_stats.prepare(batch(), &StepCtx::default()).err().unwrap().to_string();
    assert!(err.contains("objective.mean"), "{err}");
    // Given but wrong is an error at once.
    let cfg = SimclrConfig {
        image_size: Some(vec![8, 6]),
        mean: Some(vec![0.5]),
        std: Some(vec![0.2]),
        ..Default::default()
    };
    let err = make(cfg).err().unwrap().to_string();
    assert!(err.contains("not square"), "{err}");
    let cfg = SimclrConfig {
        image_size: Some(vec![8, 8]),
        mean: Some(vec![0.5]),
        std: Some(vec![0.0]),
        ..Default::default()
    };
    assert!(make(cfg).is_err(), "std 0");
}

/// Two ranks, each with its own rows live and the others' gathered, compute the one-process
/// NT-Xent of the global batch, and their gradients (scaled by the world size, then averaged as
/// the all-reduce does) are the one-process gradient.
#[test]
fn global_negatives_across_ranks_give_the_one_process_loss_and_gradient() {
    use pt_simclr::loss::{global_embeddings, scale_gradient};
    let (b, d, world, tau) = (3i64, 5i64, 2i64, 0.5);
    tch::manual_seed(7);
    let first = Tensor::randn([b * world, d], (Kind::Float, Device::Cpu)); // global batch, view 1
    let second = Tensor::randn([b * world, d], (Kind::Float, Device::Cpu)); // view 2
    let global = Tensor::cat(&[&first, &second], 0).set_requires_grad(true);
    let (one_process, _) = nt_xent(&global, tau).unwrap();
    one_process.backward();
    let full_grad = global.grad();
    // Rank r holds [its first views; its second views], as `prepare` makes them.
    let local = |r: i64| Tensor::cat(&[first.narrow(0, r * b, b), second.narrow(0, r * b, b)], 0);
    let gathered = Tensor::cat(&[local(0), local(1)], 0);
    for r in 0..world {
        let z = local(r).set_requires_grad(true);
        let z_global = global_embeddings(&z, &gathered, r, world).unwrap();
        let (loss, _) = nt_xent(&z_global, tau).unwrap();
        assert!((loss.double_value(&[]) - one_process.double_value(&[])).abs() < 1e-6, "rank {r}: the global loss");
        scale_gradient(&loss, world as f64).unwrap().backward();
        // Averaged over ranks (÷ world), rank r's rows get the one-process gradient of those rows.
        let mine = Tensor::cat(&[full_grad.narrow(0, r * b, b), full_grad.narrow(0, world * b + r * b, b)], 0);
        let diff = (z.grad() / world as f64 - mine).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "rank {r}: gradient differs by {diff}");
    }
    assert!(global_embeddings(&local(0), &local(1), 0, world).is_err(), "a short gather is a shape error");
}
