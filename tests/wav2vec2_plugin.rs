//! Issue 8 end to end through the `pt` binary on the fetched speech: wav2vec2 pretraining logs
//! what shows a collapsing codebook (code and prob perplexity, the annealed Gumbel temperature),
//! resumes bit-identically (masks, negatives, Gumbel noise and LayerDrop all replay), a linear
//! probe on spoken digits runs on the encoder's features, the checkpoint loads strictly into
//! transformers' `Wav2Vec2ForPreTraining` and `pt export` gives a directory `Wav2Vec2Model.from_pretrained`
//! loads; bad audio input gets an error naming the file and line.

use pt_tests::*;
use std::path::Path;
use std::process::Command;

fn recipe(steps: u64, extra: &str) -> String {
    format!(
        r#"
[run]
seed = 2
device = "cpu"
batch_size = 4
max_steps = {steps}
log_every = 1
grad_clip = 10.0
# One intra-op thread: with two, libtorch's CPU kernels now and then split a reduction
# differently (about 1 run in 5 ended a step 1e-7 apart), and this test asserts bit identity.
num_threads = 1

[checkpoint]
every = 6
keep_last = 3
[data]
name = "audio"
path = "{{data}}/audio/pretrain.tsv"
max_samples = 64
max_seconds = 2.0

[arch]
name = "wav2vec2"
preset = "tiny"
conv_dim = [64, 64, 64, 64, 64, 64, 64]
layerdrop = 0.2

[objective]
name = "wav2vec2"
num_codevectors_per_group = 32
codevector_dim = 64
proj_codevector_dim = 64
num_negatives = 20
gumbel_temperature_decay = 0.99

[optim]
name = "adamw"
lr = 5e-4

[schedule]
decay = "constant"
warmup_steps = 2
{extra}
"#
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn pretrains_resumes_exactly_probes_and_loads_in_transformers() {
    let data = data_dir("audio");
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let probe = r#"
[[eval]]
name = "linear_probe"
splits.train = { name = "audio", path = "{data}/audio/digits/train.tsv" }
splits.test = { name = "audio", path = "{data}/audio/digits/test.tsv" }
"#;
    let full = write_file(tmp.path(), "full.toml", &recipe(12, probe));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    pt.ok(&["train", "--recipe", s(&full), "--run-dir", s(&a)]);

    // Codebook health is logged every step; the temperature follows max(2 · 0.99^step, 0.5).
    for step in 1..=12u64 {
        for metric in ["contrastive_loss", "diversity_loss", "code_perplexity", "prob_perplexity", "masked_fraction"] {
            let v = metric_at(&a, step, metric);
            assert!(v.is_some_and(f64::is_finite), "{metric} at step {step}: {v:?}");
        }
        let t = metric_at(&a, step, "gumbel_temperature");
        let want = (2.0 * 0.99f64.powi(step as i32 - 1)).max(0.5);
        assert!(t.is_some_and(|t| (t - want).abs() < 1e-3), "temperature at step {step}: {t:?}, want {want}");
    }
    let ppl = metric_at(&a, 12, "prob_perplexity").unwrap();
    assert!(ppl > 1.0 && ppl <= 64.0 + 1e-3, "prob perplexity {ppl} outside [1, G·V = 64]");
    // Codebook usage over the run's last steps: drawn, and its counts add up to the masked frames.
    let png = image::open(a.join("code_usage.png")).expect("code_usage.png decodes");
    assert_eq!((png.width(), png.height()), (800, 500));
    let usage: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("code_usage.json")).unwrap()).unwrap();
    let counts = usage["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 2, "one row per codebook group");
    assert_eq!(counts[0].as_array().unwrap().len(), 32);
    assert!(usage["first_step"].as_u64().unwrap() >= 10, "the last tenth of a 12-step run: {usage}");
    let acc = summary(&a)["evals"]["linear_probe"]["metrics"]["accuracy"].as_f64();
    assert!(acc.is_some_and(|x| (0.0..=1.0).contains(&x)), "linear probe accuracy: {}", summary(&a));

    // Stopped at 6 and resumed: the same losses bit for bit, the same final weights.
    let short = write_file(tmp.path(), "short.toml", &recipe(12, ""));
    pt.ok(&["train", "--recipe", s(&short), "--run-dir", s(&b), "--max-steps", "6"]);
    pt.ok(&["train", "--resume", s(&b), "--max-steps", "12"]);
    for step in 1..=12u64 {
        let (x, y) = (metric_at(&a, step, "loss"), metric_at(&b, step, "loss"));
        assert!(x.is_some());
        assert_eq!(x.map(f64::to_bits), y.map(f64::to_bits), "loss at step {step}: {x:?} vs resumed {y:?}");
    }
    for file in ["model.safetensors", "objective.safetensors"] {
        let (wa, wb) = (
            read_safetensors(&checkpoint_dir(&a, 12).join(file)),
            read_safetensors(&checkpoint_dir(&b, 12).join(file)),
        );
        assert_eq!(wa.len(), wb.len());
        for (name, t) in &wa {
            assert!(wb[name] == *t, "{file}: {name} differs after resume");
        }
    }

    // transformers loads the exported directory with from_pretrained (Wav2Vec2Model), and the
    // `hf-pretraining` export (model, quantiser and projections) as Wav2Vec2ForPreTraining.
    let ckpt = checkpoint_dir(&a, 12);
    let exported = tmp.path().join("hf");
    pt.ok(&["export", s(&ckpt), s(&exported)]);
    let script = r#"
import json, sys, torch
from safetensors.torch import load_file
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model
ckpt, exported = sys.argv[1], sys.argv[2]
model, info = Wav2Vec2Model.from_pretrained(exported, output_loading_info=True)
assert not any(info.values()), info
from transformers import AutoFeatureExtractor
fe = AutoFeatureExtractor.from_pretrained(exported)
assert fe.sampling_rate == 16000 and fe.do_normalize, fe
pre, info = Wav2Vec2ForPreTraining.from_pretrained(sys.argv[3], output_loading_info=True)
assert not any(info.values()), info
assert pre.config.num_codevectors_per_group == 32 and pre.config.proj_codevector_dim == 64, pre.config
q = load_file(f"{ckpt}/objective.safetensors")["quantizer.codevectors"]
assert torch.equal(pre.quantizer.codevectors.detach(), q), "the trained codebook, not a fresh one"
with torch.no_grad():
    out = model.eval()(torch.randn(1, 16000)).last_hidden_state
assert out.shape == (1, 49, 128) and torch.isfinite(out).all(), out.shape
print("ok")
"#;
    // With the quantiser and its settings: transformers' pre-training model, no hand configuration.
    let pretraining = tmp.path().join("hf-pretraining");
    let said = pt.ok(&["export", s(&ckpt), s(&pretraining), "--format", "hf-pretraining"]);
    assert!(said.contains("Wav2Vec2ForPreTraining.from_pretrained"), "{said}");
    let out =
        Command::new(python()).arg("-c").arg(script).arg(&ckpt).arg(&exported).arg(&pretraining).output().unwrap();
    assert!(out.status.success(), "transformers failed:\n{}", String::from_utf8_lossy(&out.stderr));

    // Issue 24: feature taps of wav2vec2 through `pt embed`: the last layer's mean over real
    // frames is `features`; the conv tap has the feature encoder's width.
    let listed = pt.ok(&["embed", s(&a), "--list-layers"]);
    let last = listed.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("layer")).last();
    let last = last.unwrap_or_else(|| panic!("no layer taps listed: {listed}")).to_string();
    assert!(listed.contains("conv "), "{listed}");
    let emb = tmp.path().join("emb.npz");
    pt.ok(&[
        "embed",
        s(&a),
        "-o",
        s(&emb),
        "--limit",
        "6",
        "--batch-size",
        "4",
        "--layer",
        "conv",
        "--layer",
        &last,
        "--layer",
        "features",
    ]);
    let check = format!(
        "import numpy as np; e = np.load('{}'); print(e['features.conv'].shape, np.abs(e['features.{last}'] - e['features']).max())",
        emb.display()
    );
    let out = Command::new(python()).arg("-c").arg(&check).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let diff: f64 = printed.split_whitespace().last().unwrap().parse().unwrap();
    assert!(printed.starts_with("(6, ") && diff < 1e-6, "{printed}");

    // Reference weights straight in: the transformers directory (Wav2Vec2ForPreTraining's names,
    // `wav2vec2.` first) gives the checkpoint's own features on the same clips.
    let digits = format!("path={}", data.join("audio/digits/test.tsv").display());
    let features_of = |from: &Path, out: &str| {
        let file = tmp.path().join(out);
        let args = ["embed", s(from), "-o", s(&file), "--data", "audio", "--set", &digits, "--limit", "5"];
        pt.ok(&args);
        read_safetensors(&file)["features"].f32s()
    };
    let ours = features_of(&ckpt, "ours.safetensors");
    assert_eq!(features_of(&pretraining, "imported.safetensors"), ours, "imported weights, same features");
}

#[test]
fn bad_audio_input_names_the_file_and_line() {
    let _data = data_dir("audio");
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("noise.wav"), b"this is not a wav file").unwrap();
    write_file(tmp.path(), "bad.tsv", ".\nnoise.wav\t16000\n");
    let bad = write_file(
        tmp.path(),
        "bad.toml",
        &recipe(2, "").replace("{data}/audio/pretrain.tsv", &format!("{}/bad.tsv", tmp.path().display())),
    );
    let err = pt.fails(&["train", "--recipe", s(&bad), "--run-dir", s(&tmp.path().join("run"))]);
    assert!(err.contains("noise.wav") && err.contains("bad.tsv"), "{err}");
    assert!(!err.contains("backtrace") && err.lines().count() < 12, "{err}");
    write_file(tmp.path(), "short.tsv", ".\nclip.wav\tnot-a-number\n");
    let bad = write_file(
        tmp.path(),
        "short.toml",
        &recipe(2, "").replace("{data}/audio/pretrain.tsv", &format!("{}/short.tsv", tmp.path().display())),
    );
    let err = pt.fails(&["train", "--recipe", s(&bad), "--run-dir", s(&tmp.path().join("run2"))]);
    assert!(err.contains("short.tsv") && err.contains("line 2"), "{err}");
}

/// Issue 21: a FLAC tree (made with sox from the speech set) packed into tar shards by
/// `pt data pack` trains exactly as the folder does; shards Python's `tarfile` writes (labels in
/// `.cls`) are read with their labels; a damaged member is named with its shard.
#[test]
fn audio_shards_train_as_their_folder_does_and_bad_members_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (flac, ours, theirs) = (tmp.path().join("flac"), tmp.path().join("ours"), tmp.path().join("theirs"));
    let mut wavs: Vec<_> = std::fs::read_dir(data_dir("audio").join("audio/pretrain/espeak"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    wavs.sort();
    for (i, wav) in wavs.iter().take(12).enumerate() {
        let out = flac.join(format!("speaker{}/clip{i:02}.flac", i % 2));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let st = Command::new("sox").arg(wav).arg(&out).status().expect("sox (scripts/setup.sh installs it)");
        assert!(st.success(), "sox {}", wav.display());
    }
    let pt = Pt::new();
    let out = pt.ok(&["data", "pack", s(&flac), s(&ours), "--shard-size", "5"]);
    assert!(out.contains("packed 12 audio clips into 3 shard(s)"), "{out}");
    let train = |data: &str, run: &str| {
        let text = recipe(3, "").replace("path = \"{data}/audio/pretrain.tsv\"", data);
        let path = write_file(tmp.path(), &format!("{run}.toml"), &text);
        pt.ok(&["train", "--recipe", s(&path), "--run-dir", s(&tmp.path().join(run)), "--quiet"]);
        read_safetensors(&checkpoint_dir(&tmp.path().join(run), 3).join("model.safetensors"))
    };
    let from_folder = train(&format!("path = \"{}\"", flac.display()), "folder");
    let from_shards = train(&format!("shards = [\"{}\"]", ours.display()), "shards");
    assert_eq!(from_folder, from_shards, "the same clips in the same order: the same weights");

    // Python's tarfile: nested keys, labels in .cls, read back as classes.
    let script = r#"
import sys, tarfile, pathlib, io
flac, theirs = map(pathlib.Path, sys.argv[1:3])
theirs.mkdir()
with tarfile.open(theirs / "speech-0.tar", "w", format=tarfile.PAX_FORMAT) as t:
    for i, f in enumerate(sorted(flac.rglob("*.flac"))):
        t.add(f, arcname=f"utts/{f.parent.name}/{f.stem}.flac")
        label = str(i % 3).encode()
        info = tarfile.TarInfo(f"utts/{f.parent.name}/{f.stem}.cls")
        info.size = len(label)
        t.addfile(info, io.BytesIO(label))
"#;
    let py = Command::new(python()).args(["-c", script]).arg(&flac).arg(&theirs).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let labelled =
        recipe(1, "").replace("path = \"{data}/audio/pretrain.tsv\"", &format!("shards = [\"{}\"]", theirs.display()));
    let labelled = write_file(tmp.path(), "labelled.toml", &labelled);
    let seen = pt.ok(&["data", "inspect", s(&labelled), "--read-all"]);
    assert!(seen.contains("samples: 12") && seen.contains("classes (3): 0 4, 1 4, 2 4"), "{seen}");

    // A damaged member is named with its shard when read (the first step may not reach it;
    // `pt data inspect --read-all` reads every clip).
    let shard = ours.join("shard-000001.tar");
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.windows(4).position(|w| w == b"fLaC").unwrap() + 2000;
    bytes[at..at + 4000].fill(0);
    std::fs::write(&shard, &bytes).unwrap();
    let text =
        recipe(1, "").replace("path = \"{data}/audio/pretrain.tsv\"", &format!("shards = [\"{}\"]", ours.display()));
    let err = pt.fails(&["data", "inspect", s(&write_file(tmp.path(), "bad.toml", &text)), "--read-all"]);
    let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(line.contains("1 of 12 samples") && line.contains("shard-000001.tar/00000005.flac"), "{err}");
}
