//! pt-optim against PyTorch: the same parameters, gradients and schedule through
//! torch.optim.AdamW / SGD, a torch LARS, clip_grad_norm_ and Hugging Face's LambdaLR schedules.

mod common;

use common::*;
use pt_optim::{
    build, step_guard, AdamWConfig, Decay, FlatParams, LarsConfig, OptimizerConfig, ScheduleConfig, SgdConfig,
};
use serde_json::json;
use tch::Tensor;

const STEPS: usize = 10;

struct Case {
    optimizer: OptimizerConfig,
    schedule: ScheduleConfig,
    base_lr: f64,
    clip: Option<f64>,
}

fn spec_groups(flat: &FlatParams) -> serde_json::Value {
    let groups: Vec<_> = flat
        .groups()
        .iter()
        .map(|g| {
            let names: Vec<&str> = flat.segments()[g.segments.clone()].iter().map(|s| s.name.as_str()).collect();
            json!({
                "name": g.group.name,
                "params": names,
                "lr_mult": g.group.lr_mult,
                "weight_decay": g.group.weight_decay,
                "lars_exclude": g.group.lars_exclude,
            })
        })
        .collect();
    json!(groups)
}

fn schedule_json(s: &ScheduleConfig, total: u64) -> serde_json::Value {
    json!({
        "decay": serde_json::to_value(s.decay).unwrap(),
        "warmup_steps": s.warmup_steps(total),
        "min_lr_ratio": s.min_lr_ratio,
        "power": s.power,
        "decay_ratio": s.decay_ratio,
    })
}

/// Runs the case in Rust and in PyTorch and compares parameters after every step.
fn compare_with_torch(case: Case) {
    let (flat, handles) = flatten_problem(case.optimizer.weight_decay());
    assert_eq!(flat.groups().len(), 4, "{:?}", flat.groups());
    let spec = json!({
        "mode": "optimizer",
        "names": SHAPES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "groups": spec_groups(&flat),
        "optimizer": serde_json::to_value(&case.optimizer).unwrap(),
        "schedule": schedule_json(&case.schedule, STEPS as u64),
        "base_lr": case.base_lr,
        "steps": STEPS,
        "clip": case.clip,
    });
    let mut problem: Vec<(String, Tensor)> =
        initial_params().into_iter().map(|(n, t)| (format!("init.{n}"), t)).collect();
    for t in 0..STEPS {
        problem.extend(gradients(t).into_iter().map(|(n, g)| (format!("grad.{t}.{n}"), g)));
    }
    let reference = run_reference(&spec, &problem);

    let mut optimizer = build(&case.optimizer, &flat).unwrap();
    let mut worst = 0f64;
    for t in 0..STEPS {
        flat.zero_grad().unwrap();
        backward_with(&handles, &gradients(t));
        let grad = flat.flat_grad().unwrap();
        // Clipping folded into the update (the guard's gradient scale), as the trainer runs it.
        let (norm, guard) = step_guard(&grad, case.clip, None).unwrap();
        let torch_norm = get(&reference, &format!("norm.{t}")).double_value(&[0]);
        let norm = norm.double_value(&[]);
        assert!((norm - torch_norm).abs() <= 1e-6 * torch_norm, "step {t}: grad norm {norm} vs torch {torch_norm}");

        let lr = case.schedule.lr_at(t as u64, STEPS as u64, case.base_lr);
        optimizer.step(&flat, &grad, lr, &guard).unwrap();
        // The model's own tensors (views of the buffer) must hold what torch computed.
        for (name, p) in &handles {
            let expected = get(&reference, &format!("step{t}.{name}"));
            let diff = max_abs_diff(p, expected);
            let scale = expected.abs().max().double_value(&[]).max(1.0);
            worst = worst.max(diff / scale);
            assert!(diff <= 1e-6 * scale, "{} step {t} `{name}`: max |rust - torch| = {diff:e}", optimizer.name());
        }
    }
    assert_eq!(optimizer.steps(), STEPS as u64);
    // The parameters moved: the comparison is not between two unchanged copies.
    for ((name, p), (_, init)) in handles.iter().zip(initial_params()) {
        assert!(max_abs_diff(p, &init) > 1e-4, "`{name}` did not move");
    }
    eprintln!("{}: worst relative difference to torch {worst:e}", optimizer.name());
}

#[test]
fn adamw_matches_torch_with_cosine_warmup_and_clipping() {
    compare_with_torch(Case {
        optimizer: OptimizerConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.05 }),
        schedule: ScheduleConfig { decay: Decay::Cosine, warmup_steps: 2, min_lr_ratio: 0.1, ..Default::default() },
        base_lr: 0.01,
        clip: Some(1.0),
    });
}

#[test]
fn adamw_defaults_match_torch_with_constant_lr_and_inactive_clipping() {
    compare_with_torch(Case {
        optimizer: OptimizerConfig::default(),
        schedule: ScheduleConfig::default(),
        base_lr: 0.003,
        clip: Some(1e3),
    });
}

#[test]
fn sgd_momentum_matches_torch_with_linear_decay() {
    compare_with_torch(Case {
        optimizer: OptimizerConfig::Sgd(SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 0.01 }),
        schedule: ScheduleConfig { decay: Decay::Linear, warmup_steps: 3, ..Default::default() },
        base_lr: 0.05,
        clip: Some(5.0),
    });
}

#[test]
fn sgd_nesterov_matches_torch_with_polynomial_decay() {
    compare_with_torch(Case {
        optimizer: OptimizerConfig::Sgd(SgdConfig { momentum: 0.8, nesterov: true, weight_decay: 0.1 }),
        schedule: ScheduleConfig {
            decay: Decay::Polynomial,
            warmup_steps: 1,
            min_lr_ratio: 0.05,
            power: 2.0,
            ..Default::default()
        },
        base_lr: 0.05,
        clip: None,
    });
}

#[test]
fn sgd_without_momentum_matches_torch() {
    compare_with_torch(Case {
        optimizer: OptimizerConfig::Sgd(SgdConfig { momentum: 0.0, nesterov: false, weight_decay: 0.02 }),
        schedule: ScheduleConfig::default(),
        base_lr: 0.02,
        clip: None,
    });
}

#[test]
fn lars_matches_torch_reference() {
    compare_with_torch(Case {
        optimizer: OptimizerConfig::Lars(LarsConfig { momentum: 0.9, eta: 0.02, weight_decay: 0.1 }),
        schedule: ScheduleConfig { decay: Decay::Cosine, warmup_steps: 2, ..Default::default() },
        base_lr: 0.5,
        clip: None,
    });
}

#[test]
fn schedules_match_hugging_face_lambda_lr() {
    let total = 40u64;
    let configs = [
        ScheduleConfig { warmup_steps: 5, ..Default::default() },
        ScheduleConfig { decay: Decay::Linear, warmup_steps: 4, ..Default::default() },
        ScheduleConfig { decay: Decay::Linear, ..Default::default() },
        ScheduleConfig { decay: Decay::Cosine, warmup_ratio: 0.1, ..Default::default() },
        ScheduleConfig { decay: Decay::Cosine, warmup_steps: 3, min_lr_ratio: 0.1, ..Default::default() },
        ScheduleConfig {
            decay: Decay::Polynomial,
            warmup_steps: 6,
            power: 2.0,
            min_lr_ratio: 0.05,
            ..Default::default()
        },
        ScheduleConfig { decay: Decay::Polynomial, power: 0.5, ..Default::default() },
        ScheduleConfig { decay: Decay::Linear, warmup_steps: 4, decay_ratio: 0.25, ..Default::default() },
        ScheduleConfig { decay: Decay::Cosine, decay_ratio: 0.5, min_lr_ratio: 0.1, ..Default::default() },
    ];
    let base_lr = 3e-4;
    let spec = json!({
        "mode": "schedule",
        "configs": configs.iter().map(|c| {
            let mut v = schedule_json(c, total);
            v["total"] = json!(total);
            v["base_lr"] = json!(base_lr);
            v
        }).collect::<Vec<_>>(),
    });
    let reference = run_reference(&spec, &[]);
    for (i, c) in configs.iter().enumerate() {
        c.validate().unwrap();
        let lrs = get(&reference, &format!("lrs.{i}"));
        assert_eq!(lrs.size(), [total as i64 + 1]);
        for step in 0..=total {
            let expected = lrs.double_value(&[step as i64]);
            let got = c.lr_at(step, total, base_lr);
            assert!((got - expected).abs() <= 1e-12 * base_lr, "config {c:?} step {step}: {got} vs HF {expected}");
        }
    }
}
