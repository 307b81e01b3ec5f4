//! Optimizer state: save → safetensors → load continues bit-identically; bad state is refused
//! with a clear error before anything changes.

mod common;

use common::*;
use pt_optim::{
    build, default_groups, step_guard, AdamWConfig, FlatParams, LarsConfig, Optimizer, OptimizerConfig, SgdConfig,
};
use tch::{Device, Kind, Tensor};

fn configs() -> Vec<OptimizerConfig> {
    vec![
        OptimizerConfig::AdamW(AdamWConfig { weight_decay: 0.05, ..Default::default() }),
        OptimizerConfig::Sgd(SgdConfig { momentum: 0.9, nesterov: true, weight_decay: 0.01 }),
        OptimizerConfig::Sgd(SgdConfig { momentum: 0.0, nesterov: false, weight_decay: 0.0 }),
        OptimizerConfig::Lars(LarsConfig::default()),
    ]
}

fn train(
    flat: &FlatParams,
    handles: &[(String, Tensor)],
    optimizer: &mut dyn Optimizer,
    steps: std::ops::Range<usize>,
) {
    for t in steps {
        flat.zero_grad().unwrap();
        backward_with(handles, &gradients(t));
        let grad = flat.flat_grad().unwrap();
        optimizer.step(flat, &grad, 0.01 * (1.0 + t as f64), &Default::default()).unwrap();
    }
}

#[test]
fn save_and_load_continue_bit_identically() {
    for config in configs() {
        let dir = tempfile::tempdir().unwrap();
        let (flat, handles) = flatten_problem(config.weight_decay());
        let mut optimizer = build(&config, &flat).unwrap();
        train(&flat, &handles, optimizer.as_mut(), 0..3);

        // Checkpoint: parameters and optimizer state through safetensors files.
        let state = optimizer.state();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..2], ["step", "layout"]);
        Tensor::write_safetensors(&state, dir.path().join("optim.safetensors")).unwrap();
        Tensor::write_safetensors(&[("params", flat.buffer())], dir.path().join("params.safetensors")).unwrap();

        train(&flat, &handles, optimizer.as_mut(), 3..6);
        let continued = flat.buffer().copy();
        let continued_state = optimizer.state();

        // Resume into a fresh model and optimizer.
        let (flat2, handles2) = flatten_problem(config.weight_decay());
        let params = Tensor::read_safetensors(dir.path().join("params.safetensors")).unwrap();
        flat2.load_flat(get(&params, "params")).unwrap();
        let mut optimizer2 = build(&config, &flat2).unwrap();
        optimizer2.load_state(Tensor::read_safetensors(dir.path().join("optim.safetensors")).unwrap()).unwrap();
        assert_eq!(optimizer2.steps(), 3);
        train(&flat2, &handles2, optimizer2.as_mut(), 3..6);

        assert!(bit_equal(flat2.buffer(), &continued), "{}: resumed parameters differ", config.name());
        for ((name, a), (_, b)) in optimizer2.state().iter().zip(&continued_state) {
            let same = if a.kind() == Kind::Float { bit_equal(a, b) } else { a.equal(b) };
            assert!(same, "{}: resumed state `{name}` differs", config.name());
        }
        assert_eq!(optimizer2.steps(), 6);
        assert!(max_abs_diff(&continued, &flat.flatten(&initial_params()).unwrap()) > 1e-3);
    }
}

fn load_error(optimizer: &mut dyn Optimizer, state: Vec<(String, Tensor)>) -> String {
    optimizer.load_state(state).expect_err("load_state should fail").to_string()
}

#[test]
fn bad_state_is_refused_without_changing_anything() {
    let config = OptimizerConfig::AdamW(AdamWConfig::default());
    let (flat, handles) = flatten_problem(0.01);
    let mut optimizer = build(&config, &flat).unwrap();
    train(&flat, &handles, optimizer.as_mut(), 0..2);
    let good = optimizer.state().into_iter().map(|(n, t)| (n, t.copy())).collect::<Vec<_>>();
    let with = |name: &str, replacement: Tensor| -> Vec<(String, Tensor)> {
        good.iter().map(|(n, t)| (n.clone(), if n == name { replacement.shallow_clone() } else { t.copy() })).collect()
    };

    let short = Tensor::zeros([flat.len() - 1], (Kind::Float, Device::Cpu));
    let e = load_error(optimizer.as_mut(), with("exp_avg", short));
    assert!(
        e.contains("`exp_avg`")
            && e.contains(&format!("[{}]", flat.len() - 1))
            && e.contains(&format!("[{}]", flat.len())),
        "{e}"
    );

    let double = Tensor::zeros([flat.len()], (Kind::Double, Device::Cpu));
    let e = load_error(optimizer.as_mut(), with("exp_avg_sq", double));
    assert!(e.contains("`exp_avg_sq`") && e.contains("Double"), "{e}");

    let e = load_error(
        optimizer.as_mut(),
        good.iter().filter(|(n, _)| n != "exp_avg").map(|(n, t)| (n.clone(), t.copy())).collect(),
    );
    assert!(e.contains("missing entry `exp_avg`"), "{e}");

    let mut extra: Vec<(String, Tensor)> = good.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    extra.push(("momentum_buffer".into(), Tensor::zeros([flat.len()], (Kind::Float, Device::Cpu))));
    let e = load_error(optimizer.as_mut(), extra);
    assert!(e.contains("unexpected entry `momentum_buffer`"), "{e}");

    let e = load_error(optimizer.as_mut(), with("step", Tensor::from(2.5f64)));
    assert!(e.contains("`step`") && e.contains("int64"), "{e}");

    // State from SGD offered to AdamW.
    let sgd = build(&OptimizerConfig::Sgd(SgdConfig::default()), &flat).unwrap();
    let e = load_error(optimizer.as_mut(), sgd.state());
    assert!(e.contains("unexpected entry `momentum_buffer`"), "{e}");

    // State for another layout (different grouping, same sizes).
    let (other, _) = {
        let params: Vec<(String, Tensor)> =
            initial_params().into_iter().map(|(n, t)| (n, t.set_requires_grad(true))).collect();
        (FlatParams::new(params, &default_groups(0.01)).unwrap(), ())
    };
    let foreign = build(&config, &other).unwrap();
    let e = load_error(optimizer.as_mut(), foreign.state());
    assert!(e.contains("different parameter layout"), "{e}");

    // Nothing was changed by the failed loads.
    assert_eq!(optimizer.steps(), 2);
    for ((name, a), (_, b)) in optimizer.state().iter().zip(&good) {
        assert!(a.equal(b), "`{name}` changed by a refused load");
    }
    // And step refuses a foreign FlatParams or a wrong gradient.
    let g = other.flat_grad().unwrap();
    let e = optimizer.step(&other, &g, 0.1, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("other than those it was built for"), "{e}");
    let e = optimizer
        .step(&flat, &Tensor::zeros([3], (Kind::Float, Device::Cpu)), 0.1, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("gradient must be float32"), "{e}");
}

/// A step whose guard flags a non-finite gradient (decided on the device, never read by the
/// host) changes nothing: weights, moments and step count are as if it never happened.
#[test]
fn a_guarded_non_finite_step_changes_nothing() {
    for config in configs() {
        let (flat, handles) = flatten_problem(config.weight_decay());
        let mut optimizer = build(&config, &flat).unwrap();
        train(&flat, &handles, optimizer.as_mut(), 0..2);
        let (params, state) = (flat.buffer().copy(), optimizer.state());

        flat.zero_grad().unwrap();
        backward_with(&handles, &gradients(2));
        let grad = flat.flat_grad().unwrap();
        let _ = grad.narrow(0, 0, 1).fill_(f64::NAN);
        let (norm, guard) = step_guard(&grad, Some(1.0), None).unwrap();
        assert!(norm.double_value(&[]).is_nan());
        optimizer.step(&flat, &grad, 0.1, &guard).unwrap();
        assert!(bit_equal(flat.buffer(), &params), "{}: a skipped step moved the weights", config.name());
        for ((name, a), (_, b)) in optimizer.state().iter().zip(&state) {
            assert!(a.equal(b), "{}: a skipped step changed `{name}`", config.name());
        }
        assert_eq!(optimizer.steps(), 2, "{}: a skipped step was counted", config.name());

        // A finite gradient under the same guard function applies as usual; so does a NaN loss
        // flag it alone.
        flat.zero_grad().unwrap();
        backward_with(&handles, &gradients(2));
        let grad = flat.flat_grad().unwrap();
        let (_, skip) = step_guard(&grad, Some(1.0), Some(&Tensor::from(f32::INFINITY))).unwrap();
        optimizer.step(&flat, &grad, 0.1, &skip).unwrap();
        assert!(bit_equal(flat.buffer(), &params), "{}: an infinite loss did not skip", config.name());
        let (_, apply) = step_guard(&grad, Some(1.0), Some(&Tensor::from(2.5f32))).unwrap();
        optimizer.step(&flat, &grad, 0.1, &apply).unwrap();
        assert!(!bit_equal(flat.buffer(), &params), "{}: a finite step did not apply", config.name());
        assert_eq!(optimizer.steps(), 3);
    }
}
