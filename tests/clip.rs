//! Issue 23 through the real `pt` binary: CLIP over two architectures under roles (resnet18 as
//! `image`, bert as `text`) on real emoji pairs. Checkpoints hold each tower under its role and
//! resume bit-identically; each tower exports on its own and loads in its reference library;
//! `--init-from ROLE=…` starts one tower from other weights; two ranks with gathered negatives
//! train what one process trains with the same global batch.

use pt_tests::*;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `n` pairs spread over the fetched emoji set's `style` (every group), with absolute image paths.
fn pairs_subset(dir: &Path, style: &str, n: usize) -> PathBuf {
    let root = data_dir("pairs").join("pairs/emoji");
    let text = std::fs::read_to_string(root.join(format!("{style}.jsonl"))).unwrap();
    let stride = text.lines().count() / n;
    let lines: Vec<String> = text
        .lines()
        .step_by(stride)
        .take(n)
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["image"] = root.join(v["image"].as_str().unwrap()).display().to_string().into();
            v.to_string()
        })
        .collect();
    write_file(dir, &format!("{style}.jsonl"), &(lines.join("\n") + "\n"))
}

/// 32 Noto pairs, batches of 8, a torchvision-shaped resnet18 and bert tiny; zero-shot and
/// retrieval on 32 Twemoji pairs.
fn recipe(dir: &Path, steps: u64, batch: u64, extra_image: &str) -> PathBuf {
    let (train, test) = (pairs_subset(dir, "google", 32), pairs_subset(dir, "twitter", 32));
    let openmoji = pairs_subset(dir, "openmoji", 32);
    let text = format!(
        r#"[run]
seed = 0
device = "cpu"
num_threads = 1
batch_size = {batch}
max_steps = {steps}
log_every = 1
dist_timeout_s = 30

[checkpoint]
every = 2

[data]
name = "image_text"
path = "{train}"
image_size = 16
vocab_size = 300

[arch.image]
name = "resnet18"
num_classes = 0
{extra_image}

[arch.text]
name = "bert"
preset = "tiny"
max_position_embeddings = 32
hidden_dropout_prob = 0.0
attention_probs_dropout_prob = 0.0
feature_pooling = "mean"
add_pooling_layer = false

[objective]
name = "clip"
embed_dim = 16

[optim]
name = "adamw"
lr = 1e-3

[[eval]]
name = "zero_shot"
prompt = "an emoji of {{}}"
splits.test = {{ name = "image_text", path = "{test}", image_size = 16, label_field = "group" }}

[[eval]]
name = "retrieval"
splits.test = {{ name = "image_text", path = "{test}", image_size = 16 }}

# A third style, drawn from SVG.
[[eval]]
name = "retrieval"
label = "openmoji"
splits.test = {{ name = "image_text", path = "{openmoji}", image_size = 16 }}
"#,
        train = train.display(),
        test = test.display(),
        openmoji = openmoji.display()
    );
    write_file(dir, "clip.toml", &text)
}

fn tensors(run: &Path, step: u64, file: &str) -> Vec<(String, Vec<f32>)> {
    read_safetensors(&checkpoint_dir(run, step).join(file))
        .into_iter()
        .filter(|(_, t)| t.dtype == "F32")
        .map(|(n, t)| (n, t.f32s()))
        .collect()
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.iter().map(|(n, _)| n).collect::<Vec<_>>(), b.iter().map(|(n, _)| n).collect::<Vec<_>>());
    a.iter().zip(b).flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

const LOAD_TOWERS: &str = r#"
import sys, torch, torchvision, transformers
from safetensors.torch import load_file
image = torchvision.models.resnet18(weights=None)
image.fc = torch.nn.Identity()
image.load_state_dict(load_file(sys.argv[1] + "/model.safetensors"), strict=True)
text, info = transformers.BertForMaskedLM.from_pretrained(sys.argv[2], output_loading_info=True)
print(len(info["missing_keys"]), len(info["unexpected_keys"]), text.config.hidden_size)
"#;

#[test]
fn clip_trains_two_towers_resumes_exactly_exports_each_and_starts_a_tower_from_other_weights() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 4, 8, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"]);
    let sum = summary(&run);
    assert!(sum["last_loss"].as_f64().is_some_and(f64::is_finite), "{sum}");
    for (eval, metric) in [("zero_shot", "accuracy"), ("retrieval", "image_to_text_r5")] {
        let v = sum["evals"][eval]["metrics"][metric].as_f64();
        assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{eval} {metric}: {sum}");
    }
    assert_eq!(sum["evals"]["zero_shot"]["metrics"]["chance"], 1.0 / 9.0, "the 9 emoji groups among 32 Twemoji");
    let svg = sum["evals"].as_object().unwrap().iter().find(|(k, _)| k.contains("openmoji")).map(|(_, v)| v);
    let svg = svg.unwrap_or_else(|| panic!("no OpenMoji retrieval: {sum}"));
    assert_eq!(svg["metrics"]["pairs"], 32.0, "32 OpenMoji SVGs drawn and scored: {svg}");
    // Each tower under its role; the objective's projections and temperature on their own.
    let model = tensors(&run, 4, "model.safetensors");
    assert!(
        model.iter().any(|(n, _)| n == "image.conv1.weight") && model.iter().any(|(n, _)| n.starts_with("text.bert."))
    );
    assert!(model.iter().all(|(n, _)| n.starts_with("image.") || n.starts_with("text.")));
    let objective: Vec<String> = tensors(&run, 4, "objective.safetensors").into_iter().map(|(n, _)| n).collect();
    assert_eq!(objective, ["logit_scale", "text_projection.weight", "visual_projection.weight"]);

    // Pictures of the joint space: images and captions in one map, a batch's similarities.
    let out = pt.ok(&["visualize", s(&run), "--samples", "32"]);
    for picture in ["joint-pca-pretrained.png", "joint-tsne-random_init.png", "similarity-pretrained.png"] {
        let path = run.join("visualize").join(picture);
        assert!(image::open(&path).is_ok_and(|i| i.width() > 300), "{}: {out}", path.display());
    }

    // Resumed from step 2, step 4 is bit-identical.
    let resumed = tmp.path().join("resumed");
    copy_dir(&run, &resumed);
    std::fs::remove_dir_all(checkpoint_dir(&resumed, 4)).unwrap();
    pt.ok(&["train", "--resume", s(&resumed), "--quiet"]);
    for file in ["model.safetensors", "objective.safetensors"] {
        assert_eq!(tensors(&run, 4, file), tensors(&resumed, 4, file), "{file} after resuming");
    }

    // Each tower exported alone loads in torchvision / transformers.
    let err = pt.fails(&["export", s(&run), s(&tmp.path().join("both"))]);
    assert!(err.contains("pass --role ROLE") && err.contains("image, text"), "{err}");
    let (image_out, text_out) = (tmp.path().join("image"), tmp.path().join("text"));
    pt.ok(&["export", s(&run), s(&image_out), "--role", "image"]);
    pt.ok(&["export", s(&run), s(&text_out), "--role", "text"]);
    assert!(text_out.join("tokenizer.json").is_file() && !image_out.join("tokenizer.json").exists());
    let out =
        std::process::Command::new(python()).args(["-c", LOAD_TOWERS, s(&image_out), s(&text_out)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0 0 128", "missing, unexpected keys, BERT width");
    let err = pt.fails(&["export", s(&run), s(&tmp.path().join("x")), "--role", "audio"]);
    assert!(err.contains("--role audio") && err.contains("roles image, text"), "{err}");

    // --init-from per role: the image tower from the exported file (its own names), the text
    // tower from the run (its latest checkpoint, names under `text.`); at lr 0 they stay as loaded.
    let started = tmp.path().join("started");
    let image_init = format!("image={}", image_out.join("model.safetensors").display());
    let text_init = format!("text={}", run.display());
    let out = pt.run(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&started),
        "--set",
        "run.max_steps=2",
        "--set",
        "optim.lr=0",
        "--set",
        "arch.image.bn_momentum=0",
        "--init-from",
        &image_init,
        "--init-from",
        &text_init,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let loaded = tensors(&started, 2, "model.safetensors");
    assert_eq!(max_difference(&loaded, &model), 0.0, "both towers start from the weights given");
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&tmp.path().join("bad")),
        "--init-from",
        "audio=/x",
    ]);
    assert!(err.contains("no architecture has the role 'audio'") && err.contains("image, text"), "{err}");
}

#[test]
fn two_ranks_with_gathered_negatives_train_what_one_process_trains() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    // BatchNorm over the global batch, so 2 × 4 images normalise as 8 do in one process (with
    // the small stem, over 2×2 maps at the last stage: statistics over 8 values alone would turn
    // rounding into visible differences); SGD, whose update is linear in the gradient (Adam's
    // first step is its sign, which rounding flips where a gradient is near zero).
    let text = std::fs::read_to_string(recipe(tmp.path(), 2, 4, "sync_batchnorm = true\nsmall_stem = true"))
        .unwrap()
        .replace("name = \"adamw\"\nlr = 1e-3", "name = \"sgd\"\nlr = 0.1");
    let per_rank = write_file(tmp.path(), "sgd.toml", &text);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    pt.ok(&["train", "--recipe", s(&per_rank), "--run-dir", s(&one), "--set", "run.batch_size=8", "--quiet"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let out = pt
        .cmd()
        .args(["launch", "--nproc-per-node", "2", "--master-port", &port, "--", "train", "--recipe", s(&per_rank)])
        .args(["--run-dir", s(&two), "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pt launch failed:\n{}", String::from_utf8_lossy(&out.stderr));
    for step in 1..=2 {
        let (a, b) = (metric_at(&one, step, "loss").unwrap(), metric_at(&two, step, "loss").unwrap());
        assert!((a - b).abs() < 1e-5, "step {step}: loss {a} (1 process, 8 pairs) vs {b} (2 ranks × 4, gathered)");
    }
    // Float rounding: the convolutions sum in an order that depends on the batch (8 rows vs 4
    // per rank); ~2e-5 after two steps at lr 0.1 with the fused kernels and channels_last.
    for file in ["model.safetensors", "objective.safetensors"] {
        let diff = max_difference(&tensors(&one, 2, file), &tensors(&two, 2, file));
        assert!(diff < 1e-4, "{file}: 2 ranks vs 1 process differ by {diff}");
    }
}
