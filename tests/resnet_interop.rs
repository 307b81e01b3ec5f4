//! Issue 6 end to end through the `pt` binary: supervised ResNet-18 training on real digits, its
//! checkpoint loading into torchvision with strict loading (BatchNorm buffers included) and
//! predicting what pt predicted, torchvision weights importing with `--init-from`, and the
//! confusion-matrix PNG.

use pt_tests::*;
use std::path::Path;
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("running python");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

const MEAN: f64 = 0.305;
const STD: f64 = 0.376;

fn digits_recipe(steps: u64) -> String {
    let digits =
        format!(r#"name = "pixel_csv", path = "{{data}}/images/digits/digits.csv", mean = [{MEAN}], std = [{STD}]"#);
    format!(
        r#"
[run]
seed = 1
device = "cpu"
batch_size = 64
max_steps = {steps}
log_every = 10
grad_clip = 0.0
num_threads = 2

[checkpoint]
every = 0
[data]
{data}
split = "train"

[arch]
name = "resnet18"

[objective]
name = "supervised"

[optim]
name = "sgd"
lr = 0.05
weight_decay = 5e-4

[schedule]
decay = "cosine"
warmup_steps = 5

[[eval]]
name = "classification"
splits.test = {{ {digits}, split = "all" }}
"#,
        data = digits.replace(", ", "\n")
    )
}

/// Accuracy of torchvision's resnet18 with pt's checkpoint on all 1,797 digits, and whether the
/// BatchNorm statistics moved from their initial values.
const TORCHVISION_EVAL: &str = r#"
import sys, numpy as np, torch, torchvision
from safetensors.torch import load_file
torch.set_num_threads(1)
state = load_file(sys.argv[1])
model = torchvision.models.resnet18(weights=None, num_classes=10)
model.load_state_dict(state, strict=True)
model.eval()
rows = np.loadtxt(sys.argv[2], delimiter=",")
x = torch.tensor((rows[:, :64] / 16.0 - float(sys.argv[3])) / float(sys.argv[4]), dtype=torch.float32)
x = x.view(-1, 1, 8, 8).expand(-1, 3, -1, -1)
with torch.no_grad():
    pred = model(x).argmax(1).numpy()
acc = (pred == rows[:, 64]).mean()
moved = bool((state["bn1.running_mean"] != 0).any()) and int(state["bn1.num_batches_tracked"]) > 0
print(f"{acc:.6f} {moved}")
"#;

/// Max |difference| between `pt embed`'s taps and torchvision's resnet18 with the same weights:
/// each stage's output (the stem after max-pool) averaged over space, for the samples embedded.
const TORCHVISION_TAPS: &str = r#"
import sys, numpy as np, torch, torchvision
from safetensors.torch import load_file
torch.set_num_threads(1)
model = torchvision.models.resnet18(weights=None, num_classes=10)
model.load_state_dict(load_file(sys.argv[1]), strict=True)
model.eval()
emb = load_file(sys.argv[2])
rows = np.loadtxt(sys.argv[3], delimiter=",")[emb["sample_index"].numpy()]
x = torch.tensor((rows[:, :64] / 16.0 - float(sys.argv[4])) / float(sys.argv[5]), dtype=torch.float32)
x = x.view(-1, 1, 8, 8).expand(-1, 3, -1, -1)
seen = {}
hook = lambda name: (lambda m, i, o: seen.__setitem__(name, o.mean(dim=(2, 3))))
model.maxpool.register_forward_hook(hook("stem"))
for k in (1, 2, 3, 4):
    getattr(model, f"layer{k}").register_forward_hook(hook(f"layer{k}"))
with torch.no_grad():
    model(x)
diff = max((emb[f"features.{n}"] - seen[n]).abs().max().item() for n in ("stem", "layer2", "layer4"))
labels = bool((emb["label"] == torch.tensor(rows[:, 64], dtype=torch.int64)).all())
print(f"{diff:.3e} {labels}")
"#;

#[test]
fn resnet18_learns_digits_and_its_checkpoint_loads_strictly_in_torchvision() {
    let data = data_dir("images");
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_file(dir.path(), "r.toml", &digits_recipe(60));
    let run = dir.path().join("run");
    let pt = Pt::new();
    pt.ok(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    let report = &summary(&run)["evals"]["classification"];
    let accuracy = report["metrics"]["accuracy"].as_f64().expect("classification accuracy");
    assert!(accuracy > 0.85, "60 SGD steps of resnet18 on digits reach {accuracy}");
    let top5 = report["metrics"]["top5_accuracy"].as_f64().unwrap();
    let counts = report["confusion"]["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 10);
    let diagonal: u64 = (0..10).map(|i| counts[i][i].as_u64().unwrap()).sum();
    assert_eq!(diagonal as f64 / 1797.0, accuracy, "the confusion matrix's diagonal is the top-1 hits");
    assert!(top5 >= accuracy);

    let png = run.join("eval/classification-step60-confusion.png");
    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(img.width() >= 400 && img.height() >= 400, "confusion matrix {}×{}", img.width(), img.height());

    let weights = checkpoint_dir(&run, 60).join("model.safetensors");
    let csv = data.join("images/digits/digits.csv");
    let out =
        py(TORCHVISION_EVAL, &[weights.to_str().unwrap(), csv.to_str().unwrap(), &MEAN.to_string(), &STD.to_string()]);
    let mut parts = out.split_whitespace();
    let tv_accuracy: f64 = parts.next().unwrap().parse().unwrap();
    assert_eq!(parts.next(), Some("True"), "BatchNorm running statistics are saved and were updated in training");
    assert!(
        (tv_accuracy - accuracy).abs() <= 2.0 / 1797.0,
        "torchvision with pt's weights gets {tv_accuracy}, pt got {accuracy} on the same 1797 images"
    );

    // Issue 24: `pt embed` at feature taps, against torchvision's forward with these weights.
    let emb = dir.path().join("emb/digits.safetensors");
    let mut args = vec!["embed", s(&run), "-o", s(&emb), "--data", "pixel_csv", "--limit", "70", "--batch-size", "32"];
    let (path, mean, std) = (format!("path={}", s(&csv)), format!("mean=[{MEAN}]"), format!("std=[{STD}]"));
    args.extend(["--set", &path, "--set", "split=all", "--set", &mean, "--set", &std]);
    args.extend(["--layer", "stem", "--layer", "layer2", "--layer", "layer4", "--layer", "features"]);
    let out = pt.ok(&args);
    assert!(out.contains("features.layer2") && out.contains("[70, 128]") && out.contains("(10 classes)"), "{out}");
    let arrays = read_safetensors(&emb);
    assert_eq!(arrays["features.layer4"].f32s(), arrays["features"].f32s(), "layer4 pooled is `features`");
    assert_eq!(arrays["sample_index"].shape, [70]);
    let out = py(TORCHVISION_TAPS, &[s(&weights), s(&emb), s(&csv), &MEAN.to_string(), &STD.to_string()]);
    let mut parts = out.split_whitespace();
    let diff: f64 = parts.next().unwrap().parse().unwrap();
    assert!(diff < 1e-4, "pt's taps differ from torchvision's by {diff}");
    assert_eq!(parts.next(), Some("True"), "labels follow sample_index");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("emb/digits.safetensors.json")).unwrap())
            .unwrap();
    assert_eq!(summary["step"], 60);
    assert_eq!(summary["arrays"][1]["dim"], 128);
    let err = pt.fails(&["embed", s(&run), "-o", s(&emb), "--layer", "layer5"]);
    assert!(err.contains("--layer layer5") && err.contains("taps: stem, layer1, layer2, layer3, layer4"), "{err}");
    let err = pt.fails(&["embed", s(&run), "-o", "feats.pt"]);
    assert!(err.contains(".safetensors or .npz"), "{err}");

    // Issue 24: exports that say what they are. torchvision's state dict (the default) and
    // transformers' ResNetForImageClassification, each loaded by its library without a
    // missing or unused key, computing the same logits.
    let (tv, hf) = (dir.path().join("tv"), dir.path().join("hf"));
    let out = pt.ok(&["export", s(&run), s(&tv)]);
    assert!(out.contains("as torchvision") && out.contains("torchvision.models.resnet18(num_classes=10)"), "{out}");
    assert!(!tv.join("config.json").exists(), "a torchvision state dict has no config");
    let out = pt.ok(&["export", s(&run), s(&hf), "--format", "hf"]);
    assert!(out.contains("ResNetForImageClassification.from_pretrained"), "{out}");
    let same = py(HF_RESNET, &[s(&tv), s(&hf), s(&csv), &MEAN.to_string(), &STD.to_string()]);
    let mut parts = same.split_whitespace();
    assert_eq!(parts.next(), Some("0"), "transformers reports no missing, unused or mismatched key: {same}");
    let diff: f64 = parts.next().unwrap().parse().unwrap();
    assert!(diff < 1e-4, "transformers' logits differ from torchvision's by {diff}");
    let timm = dir.path().join("timm");
    let out = pt.ok(&["export", s(&run), s(&timm), "--format", "timm"]);
    assert!(out.contains("as timm") && out.contains("timm.create_model(\"local-dir:"), "{out}");
    let same = py(TIMM_RESNET, &[s(&tv), s(&timm), s(&csv), &MEAN.to_string(), &STD.to_string()]);
    let diff: f64 = same.trim().parse().unwrap_or_else(|_| panic!("{same}"));
    assert!(diff < 1e-4, "timm's logits differ from torchvision's by {diff}");
    let err = pt.fails(&["export", s(&run), s(&dir.path().join("x")), "--format", "onnx"]);
    assert!(err.contains("--format onnx") && err.contains("exports as torchvision, hf, timm"), "{err}");

    // Reference weights straight in: torchvision's state dict, with no pt run around it, gives
    // the run's own features (the BatchNorm statistics included) and exports again.
    let state_dict = tv.join("model.safetensors");
    let again = dir.path().join("emb/from-torchvision.safetensors");
    let mut args = vec!["embed", s(&state_dict), "-o", s(&again), "--data", "pixel_csv", "--limit", "70"];
    args.extend(["--set", &path, "--set", "split=all", "--set", &mean, "--set", &std, "--layer", "layer2"]);
    let out = pt.ok(&args);
    assert!(out.contains("[70, 128]"), "{out}");
    assert_eq!(read_safetensors(&again)["features.layer2"].f32s(), arrays["features.layer2"].f32s());
    let hf_again = dir.path().join("hf-again");
    let out = pt.ok(&["export", s(&state_dict), s(&hf_again), "--format", "hf"]);
    assert!(out.contains("ResNetForImageClassification"), "{out}");
    // … and so do transformers' and timm's directories, read through their own names.
    for (from, name) in [(&hf, "from-transformers"), (&timm, "from-timm")] {
        let out_file = dir.path().join(format!("emb/{name}.safetensors"));
        let mut args = vec!["embed", s(from), "-o", s(&out_file), "--data", "pixel_csv", "--limit", "70"];
        args.extend(["--set", &path, "--set", "split=all", "--set", &mean, "--set", &std, "--layer", "layer2"]);
        pt.ok(&args);
        let got = read_safetensors(&out_file)["features.layer2"].f32s();
        assert_eq!(got, arrays["features.layer2"].f32s(), "{name}");
    }
    let err = pt.fails(&["embed", s(&csv), "-o", s(&again)]);
    assert!(err.contains("no checkpoint here") || err.contains("no such"), "{err}");
}

/// Loads the timm export as timm loads a model directory; prints the largest logit difference
/// from torchvision's on 64 digits.
const TIMM_RESNET: &str = r#"
import sys, numpy as np, torch, torchvision, timm
from safetensors.torch import load_file
torch.set_num_threads(1)
tv = torchvision.models.resnet18(weights=None, num_classes=10)
tv.load_state_dict(load_file(sys.argv[1] + "/model.safetensors"), strict=True)
tm = timm.create_model("local-dir:" + sys.argv[2], pretrained=True)
rows = np.loadtxt(sys.argv[3], delimiter=",")[:64]
x = torch.tensor((rows[:, :64] / 16.0 - float(sys.argv[4])) / float(sys.argv[5]), dtype=torch.float32)
x = x.view(-1, 1, 8, 8).expand(-1, 3, -1, -1).contiguous()
with torch.no_grad():
    print(f"{(tv.eval()(x) - tm.eval()(x)).abs().max().item():.3e}")
"#;

/// Loads the torchvision export strictly and the transformers export with from_pretrained;
/// prints the number of loading complaints and the largest logit difference on 64 digits.
const HF_RESNET: &str = r#"
import sys, numpy as np, torch, torchvision
from safetensors.torch import load_file
from transformers import ResNetForImageClassification
torch.set_num_threads(1)
tv = torchvision.models.resnet18(weights=None, num_classes=10)
tv.load_state_dict(load_file(sys.argv[1] + "/model.safetensors"), strict=True)
hf, info = ResNetForImageClassification.from_pretrained(sys.argv[2], output_loading_info=True)
rows = np.loadtxt(sys.argv[3], delimiter=",")[:64]
x = torch.tensor((rows[:, :64] / 16.0 - float(sys.argv[4])) / float(sys.argv[5]), dtype=torch.float32)
x = x.view(-1, 1, 8, 8).expand(-1, 3, -1, -1).contiguous()
with torch.no_grad():
    diff = (tv.eval()(x) - hf.eval()(pixel_values=x).logits).abs().max().item()
print(sum(len(v) for v in info.values()), f"{diff:.3e}")
"#;

#[test]
fn torchvision_weights_import_with_init_from() {
    let _data = data_dir("images");
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("tv.safetensors");
    py(
        "import sys, torch, torchvision\nfrom safetensors.torch import save_file\ntorch.manual_seed(0)\n\
         m = torchvision.models.resnet18(weights=None, num_classes=10)\n\
         save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[1])",
        &[weights.to_str().unwrap()],
    );
    let recipe = write_file(dir.path(), "r.toml", &digits_recipe(1));
    let run = dir.path().join("run");
    let out = Pt::new().run(&[
        "train",
        "--recipe",
        recipe.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
        "--init-from",
        weights.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("init-from:")).expect("an init-from report");
    assert!(line.contains("loaded 122 tensors; missing 0 [];"), "every parameter and buffer imports: {line}");
    assert!(line.contains("unexpected 0 []"), "{line}");
    // The run's config records where its weights came from, as an absolute path...
    let saved: toml::Table = std::fs::read_to_string(run.join("config.toml")).unwrap().parse().unwrap();
    let recorded = saved["run"]["init_from"].as_array().expect("[run] init_from in the saved config");
    assert_eq!(recorded, &[toml::Value::String(weights.display().to_string())]);
    // ...other weights into a run that goes on from its own checkpoint are refused, not ignored...
    let train = |extra: &[&str]| {
        Pt::new().run(
            &[&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap()], extra].concat(),
        )
    };
    let other = dir.path().join("other.safetensors");
    let out = train(&["--init-from", other.to_str().unwrap(), "--accept-changes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("init_from applies only to a run's first start"), "{err}");
    // ...while resuming without it is no change to what is trained (and is recorded).
    let out = train(&["--max-steps", "2", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let changes = std::fs::read_to_string(run.join("config-changes.jsonl")).unwrap();
    assert!(changes.contains("run.init_from"), "{changes}");
}

/// Parameters and BatchNorm statistics of a checkpoint's model.
fn weights(run: &Path, step: u64) -> Vec<(String, Vec<f32>)> {
    read_safetensors(&checkpoint_dir(run, step).join("model.safetensors"))
        .into_iter()
        .filter(|(_, t)| t.dtype == "F32")
        .map(|(n, t)| (n, t.f32s()))
        .collect()
}

fn largest_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

/// Issue 22: a ResNet's weights are channels_last by default (`memory_format = "auto"`); it
/// trains what contiguous weights train, and a checkpoint resumes across memory formats (the
/// optimizer's momentum is saved in row-major order, not in the live layout).
#[test]
fn channels_last_trains_like_contiguous_and_resumes_across_memory_formats() {
    let _data = data_dir("images");
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_file(
        tmp.path(),
        "recipe.toml",
        &digits_resnet_recipe(
            "seed = 3\nbatch_size = 16\nmax_steps = 3\nlog_every = 1\nnum_threads = 1",
            "width = 8",
            "lr = 0.05\nmomentum = 0.9",
        ),
    );
    let train = |run: &Path, format: &str, extra: &[&str]| {
        let set = format!("run.memory_format=\"{format}\"");
        let args = [&["train", "--recipe", s(&recipe), "--run-dir", s(run), "--set", &set, "-v"][..], extra].concat();
        let out = pt.run(&args);
        assert!(out.status.success(), "pt train failed:\n{}", stderr(&out));
        stderr(&out)
    };
    let cl = tmp.path().join("channels-last");
    assert!(train(&cl, "auto", &[]).contains("channels_last memory format"), "auto lays out a ResNet channels_last");
    let plain = tmp.path().join("contiguous");
    assert!(!train(&plain, "contiguous", &[]).contains("channels_last memory format"));
    // Float rounding only (convolutions sum in another order): 2e-5 after 3 steps (a fourth
    // step of this recipe amplifies any difference 100-fold).
    let same = largest_difference(&weights(&cl, 3), &weights(&plain, 3));
    assert!(same < 1e-4, "channels_last vs contiguous after 3 steps: weights differ by {same}");

    // Two steps channels_last, the third contiguous from its checkpoint: momentum restored in
    // the wrong layout would move the weights by ~1e-3.
    let switched = tmp.path().join("switched");
    train(&switched, "auto", &["--max-steps", "2"]);
    assert!(train(&switched, "contiguous", &[]).contains("resuming at step 2"));
    let resumed = largest_difference(&weights(&cl, 3), &weights(&switched, 3));
    assert!(resumed < 1e-4, "resumed across memory formats: weights differ by {resumed} from the straight run");
}
