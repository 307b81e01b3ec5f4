//! FlatParams on a real tch model: re-pointing keeps autograd working, gradients land in the
//! flat buffer, optimizer steps reach the model; grouping, freezing, tied weights, bad input.

mod common;

use common::*;
use pt_optim::{build, default_groups, Assignment, FlatParams, OptimizerConfig, ParamGroup, SgdConfig, SEGMENT_ALIGN};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

struct Model {
    conv: nn::Conv2D,
    enc: nn::Linear,
    norm: nn::LayerNorm,
    head: nn::Linear,
}

impl Model {
    fn new(vs: &nn::VarStore) -> Model {
        let root = vs.root();
        Model {
            conv: nn::conv2d(&root / "conv", 3, 4, 3, Default::default()),
            enc: nn::linear(&root / "enc", 4, 8, Default::default()),
            norm: nn::layer_norm(&root / "norm", vec![8], Default::default()),
            head: nn::linear(&root / "head", 8, 3, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.conv.forward(x).relu().mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        self.head.forward(&self.norm.forward(&self.enc.forward(&h)).relu())
    }
}

fn sorted_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn shallow(vars: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    vars.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
}

fn input() -> Tensor {
    pseudo_random(&[2, 3, 6, 6], 7)
}

/// Equal up to float32 rounding (the channels_last convolution sums in another order).
fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let diff = max_abs_diff(a, b);
    let scale = b.abs().max().double_value(&[]).max(1e-3);
    assert!(diff <= 1e-5 * scale, "{what}: max difference {diff:e} at scale {scale:e}");
}

/// Model A (to be flattened, conv kernel in channels_last) and an identical reference R.
fn two_models() -> (nn::VarStore, Model, nn::VarStore, Model) {
    let vs_a = nn::VarStore::new(Device::Cpu);
    let a = Model::new(&vs_a);
    // Fixed weights: libtorch's global RNG is shared with the tests running in parallel.
    tch::no_grad(|| {
        for (i, (_, mut t)) in sorted_variables(&vs_a).into_iter().enumerate() {
            t.copy_(&(pseudo_random(&t.size(), 50 + i as u64) * 0.5));
        }
    });
    let mut vs_r = nn::VarStore::new(Device::Cpu);
    let r = Model::new(&vs_r);
    vs_r.copy(&vs_a).unwrap();
    // channels_last [O, I, kH, kW] strides: I*kH*kW, 1, kW*I, I
    let mut w = a.conv.ws.shallow_clone();
    let cl = Tensor::empty_strided([4, 3, 3, 3], [27, 1, 9, 3], (Kind::Float, Device::Cpu));
    tch::no_grad(|| {
        let mut cl = cl.shallow_clone();
        cl.copy_(&w);
        w.set_data(&cl);
    });
    assert_eq!(a.conv.ws.stride(), [27, 1, 9, 3]);
    (vs_a, a, vs_r, r)
}

fn grads_of(vars: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    vars.iter().map(|(n, t)| (n.clone(), t.grad().copy())).collect()
}

#[test]
fn repointed_parameters_keep_autograd_and_reach_the_model() {
    let (vs_a, a, vs_r, r) = two_models();
    let x = input();
    let before = a.forward(&x);

    let vars = sorted_variables(&vs_a);
    let flat = FlatParams::new(shallow(&vars), &default_groups(0.0)).unwrap();
    assert_eq!(flat.num_params(), vars.iter().map(|(_, t)| t.numel() as i64).sum::<i64>());

    // The model's tensors now live in the buffer, memory format kept.
    let base = flat.buffer().data_ptr() as usize;
    for seg in flat.segments() {
        assert_eq!(seg.offset % SEGMENT_ALIGN, 0);
        let (_, t) = vars.iter().find(|(n, _)| *n == seg.name).unwrap();
        assert_eq!(t.data_ptr() as usize, base + 4 * seg.offset as usize, "`{}` not in the buffer", seg.name);
        assert!(t.requires_grad() && t.is_leaf());
    }
    assert_eq!(a.conv.ws.stride(), [27, 1, 9, 3]);
    assert!(bit_equal(&a.forward(&x), &before), "flattening changed the forward pass");

    // Backward through the model fills the flat gradient exactly as the reference's grads.
    a.forward(&x).square().sum(Kind::Float).backward();
    r.forward(&x).square().sum(Kind::Float).backward();
    let flat_grad = flat.flat_grad().unwrap();
    let expected = flat.flatten(&grads_of(&sorted_variables(&vs_r))).unwrap();
    assert!(expected.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert_close(&flat_grad, &expected, "flat gradient vs the reference model's gradients");
    let grad_base = flat_grad.data_ptr() as usize;
    for seg in flat.segments() {
        let (_, t) = vars.iter().find(|(n, _)| *n == seg.name).unwrap();
        assert_eq!(t.grad().data_ptr() as usize, grad_base + 4 * seg.offset as usize, "`{}`.grad not a view", seg.name);
    }

    // A second backward accumulates in place.
    a.forward(&x).square().sum(Kind::Float).backward();
    let accumulated = flat.flat_grad().unwrap();
    assert_close(&accumulated, &(&expected * 2.0), "accumulated gradient");

    // zero_grad clears every parameter's gradient with one kernel.
    flat.zero_grad().unwrap();
    for (name, t) in &vars {
        assert_eq!(t.grad().abs().sum(Kind::Float).double_value(&[]), 0.0, "`{name}` grad not zeroed");
    }

    // One SGD step (first momentum step = plain SGD) changes the model exactly like p -= lr * g.
    a.forward(&x).square().sum(Kind::Float).backward();
    let grad = flat.flat_grad().unwrap();
    let config = OptimizerConfig::Sgd(SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 0.0 });
    let mut optimizer = build(&config, &flat).unwrap();
    let lr = 0.1;
    optimizer.step(&flat, &grad, lr, &Default::default()).unwrap();
    let after = a.forward(&x);
    assert!(max_abs_diff(&after, &before) > 1e-4, "the step did not change the model's output");
    tch::no_grad(|| {
        for (name, t) in sorted_variables(&vs_r) {
            let mut t = t;
            let g = t.grad();
            t -= g * lr;
            let (_, flat_t) = vars.iter().find(|(n, _)| *n == name).unwrap();
            assert_close(flat_t, &t, &name);
        }
    });
    assert_close(&after, &r.forward(&x), "outputs after the step");
}

#[test]
fn parameters_moved_after_flattening_are_reported() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Model::new(&vs);
    let vars = sorted_variables(&vs);
    let flat = FlatParams::new(shallow(&vars), &default_groups(0.0)).unwrap();
    let (name, t) = &vars[0];
    let mut t = t.shallow_clone();
    tch::no_grad(|| t.set_data(&t.copy()));
    let err = flat.flat_grad().unwrap_err();
    assert!(err.message.contains(name.as_str()) && err.message.contains("no longer views"), "{err}");
}

#[test]
fn groups_are_contiguous_slices_with_their_settings() {
    let (flat, _) = flatten_problem(0.05);
    let names: Vec<(&str, &str)> =
        flat.segments().iter().map(|s| (flat.groups()[s.group].group.name.as_str(), s.name.as_str())).collect();
    assert_eq!(
        names,
        [
            ("decay@encoder.", "encoder.weight"),
            ("no_decay@encoder.", "encoder.bias"),
            ("decay", "conv.weight"),
            ("decay", "head.weight"),
            ("no_decay", "conv.bias"),
            ("no_decay", "norm.weight"),
            ("no_decay", "head.bias"),
            ("no_decay", "temperature"),
        ]
    );
    let mut end = 0;
    for g in flat.groups() {
        assert_eq!(g.offset, end);
        let segs = &flat.segments()[g.segments.clone()];
        assert_eq!(segs[0].offset, g.offset);
        assert_eq!(g.len, segs.iter().map(|s| s.span).sum::<i64>());
        end = g.offset + g.len;
    }
    assert_eq!(end, flat.len());
    let decay = &flat.groups()[0].group;
    assert_eq!((decay.lr_mult, decay.weight_decay, decay.lars_exclude), (0.5, 0.05, false));
    let no_decay = &flat.groups()[3].group;
    assert_eq!((no_decay.lr_mult, no_decay.weight_decay, no_decay.lars_exclude), (1.0, 0.0, true));

    // unflatten / flatten / load_flat round trip, padding stays zero.
    let views = flat.unflatten(flat.buffer()).unwrap();
    let initial = initial_params();
    for (name, view) in &views {
        let (_, init) = initial.iter().find(|(n, _)| n == name).unwrap();
        assert!(bit_equal(view, init), "`{name}` copied wrongly");
    }
    let doubled = flat.buffer() * 2.0;
    flat.load_flat(&doubled).unwrap();
    assert!(bit_equal(flat.buffer(), &doubled));
    assert!(bit_equal(&flat.flatten(&flat.unflatten(&doubled).unwrap()).unwrap(), &doubled));
    let err = flat.load_flat(&Tensor::zeros([3], (Kind::Float, Device::Cpu))).unwrap_err();
    assert!(err.message.contains(&format!("[{}]", flat.len())), "{err}");
}

#[test]
fn frozen_and_tied_parameters() {
    let emb = pseudo_random(&[5, 4], 1).set_requires_grad(true);
    let frozen = pseudo_random(&[4, 4], 2).set_requires_grad(true);
    let bias = pseudo_random(&[4], 3).set_requires_grad(true);
    let params = vec![
        ("emb.weight".to_string(), emb.shallow_clone()),
        ("frozen.weight".to_string(), frozen.shallow_clone()),
        ("decoder.weight".to_string(), emb.shallow_clone()),
        ("bias".to_string(), bias.shallow_clone()),
    ];
    let flat = FlatParams::new(params, &default_groups(0.1).with_frozen("frozen.")).unwrap();
    let names: Vec<&str> = flat.segments().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["emb.weight", "bias"]);
    assert_eq!(flat.frozen(), ["frozen.weight"]);
    assert_eq!(flat.aliases(), [("decoder.weight".to_string(), "emb.weight".to_string())]);
    assert!(!frozen.requires_grad());
    assert_eq!(emb.data_ptr(), flat.buffer().data_ptr());

    // The tied weight collects the gradient of both uses.
    let x = pseudo_random(&[2, 4], 4);
    let tied = emb.shallow_clone();
    (x.matmul(&emb.tr()).sum(Kind::Float)
        + x.matmul(&tied.tr()).sum(Kind::Float)
        + bias.sum(Kind::Float)
        + x.matmul(&frozen).sum(Kind::Float))
    .backward();
    let grads = flat.unflatten(&flat.flat_grad().unwrap()).unwrap();
    let expected = x.sum_dim_intlist([0i64].as_slice(), false, Kind::Float).unsqueeze(0).expand([5, 4], false) * 2.0;
    assert!(max_abs_diff(&grads[0].1, &expected) < 1e-6);
    assert!(!frozen.grad().defined());
}

/// Two architectures' own tensors made to share storage (`set_data`, as the host ties ELECTRA's
/// embeddings): one slice, and a gradient that is the sum of both tensors' gradients.
#[test]
fn distinct_tensors_sharing_storage_are_tied() {
    let owner = pseudo_random(&[5, 4], 1).set_requires_grad(true);
    let alias = pseudo_random(&[5, 4], 2).set_requires_grad(true);
    tch::no_grad(|| alias.shallow_clone().set_data(&owner));
    let params = vec![("a.emb".to_string(), owner.shallow_clone()), ("b.emb".to_string(), alias.shallow_clone())];
    let flat = FlatParams::new(params, &default_groups(0.0)).unwrap();
    assert_eq!(flat.segments().len(), 1);
    assert_eq!(flat.aliases(), [("b.emb".to_string(), "a.emb".to_string())]);
    assert_eq!(alias.data_ptr(), flat.buffer().data_ptr(), "the alias computes with the flat slice");
    let (x, y) = (pseudo_random(&[3, 4], 3), pseudo_random(&[2, 4], 4));
    (x.matmul(&owner.tr()).sum(Kind::Float) + y.matmul(&alias.tr()).sum(Kind::Float) * 3.0).backward();
    let col_sum =
        |t: &Tensor| t.sum_dim_intlist([0i64].as_slice(), false, Kind::Float).unsqueeze(0).expand([5, 4], false);
    let expected = col_sum(&x) + col_sum(&y) * 3.0;
    let grads = flat.unflatten(&flat.flat_grad().unwrap()).unwrap();
    assert!(max_abs_diff(&grads[0].1, &expected) < 1e-5, "the tied gradient is the sum of both uses");
    flat.zero_grad().unwrap();
    y.matmul(&alias.tr()).sum(Kind::Float).backward();
    let grads = flat.unflatten(&flat.flat_grad().unwrap()).unwrap();
    assert!(max_abs_diff(&grads[0].1, &col_sum(&y)) < 1e-5, "zeroed, then only the alias");
}

#[test]
fn bad_parameters_are_rejected_clearly() {
    let ok = || pseudo_random(&[2, 2], 1).set_requires_grad(true);
    let err = |params: Vec<(&str, Tensor)>| {
        let params = params.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        FlatParams::new(params, &default_groups(0.0).with_frozen("frozen")).err().expect("should fail").to_string()
    };
    let e = err(vec![("w", ok()), ("d", ok().to_kind(Kind::Double).detach())]);
    assert!(e.contains("`d`") && e.contains("float32"), "{e}");
    let e = err(vec![("w", ok()), ("nonleaf", ok() * 2.0)]);
    assert!(e.contains("`nonleaf`") && e.contains("leaf"), "{e}");
    let e = err(vec![("frozen.a", ok())]);
    assert!(e.contains("no trainable parameters"), "{e}");
    let shared = pseudo_random(&[2, 3], 5);
    let e = err(vec![("a", shared.shallow_clone()), ("b", shared.view([3, 2]))]);
    assert!(e.contains("`a`") && e.contains("`b`") && e.contains("share memory"), "{e}");

    // A custom grouping that gives one group name two settings.
    let conflicting = |name: &str, _shape: &[i64]| {
        Assignment::Train(ParamGroup {
            name: "all".into(),
            lr_mult: if name == "a" { 1.0 } else { 2.0 },
            weight_decay: 0.0,
            lars_exclude: false,
        })
    };
    let params = vec![("a".to_string(), ok()), ("b".to_string(), ok())];
    let e = FlatParams::new(params, &conflicting).err().unwrap().to_string();
    assert!(e.contains("group `all`") && e.contains("`b`"), "{e}");
}
