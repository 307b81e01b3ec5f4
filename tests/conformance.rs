//! Plugin conformance: every component of every plugin next to `pt` (plus the example plugin and
//! the `faulty` fixture, installed) goes through a tiny real training run.
//!
//! - every architecture × objective pair that composes trains 2 steps on some dataset, with a
//!   finite loss, a checkpoint and no leaked tensor handle; pairs whose objective needs an output
//!   the architecture lacks are reported as not composing;
//! - every dataset trains at least once;
//! - every evaluator runs once, at the end of a tiny MLM run;
//! - every config key of every component has a description.
//!
//! Components run with their smallest config from [`TINY`]; unknown components with their
//! defaults. A component that cannot train with either fails the test with what it printed: give
//! it a tiny config in [`TINY`] (or [`EVAL_SPLITS`] for an evaluator).

#[path = "support/plugin_builds.rs"]
#[allow(dead_code)] // the variants built for plugin_host.rs are not used here
mod plugin_builds;

use plugin_builds::plugins;
use pt_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The smallest config of the components pt knows (TOML lines of the component's section).
/// `{tokenizer}` is the tokenizer of the first tiny text run.
const TINY: &[(&str, &str)] = &[
    ("mlm:text", "files = [\"{data}/text/tiny/train.txt\"]\nvocab_size = 500\nblock_size = 32"),
    ("mlm:jsonl", "files = [\"{data}/text/tiny/cls-train.jsonl\"]\ntokenizer = \"{tokenizer}\"\nblock_size = 32"),
    // Sized to the tiny tokenizer, so bert and mlm also build with data that has no tokenizer
    // (the composition check then explains the mismatch).
    ("mlm:bert", "preset = \"tiny\"\nmax_position_embeddings = 32\nvocab_size = 500"),
    ("mlm:mlm", "vocab_size = 500"),
    ("resnet:idx_images", "max_samples = 64"),
    ("resnet:image_folder", "path = \"{png_folder}\""),
    // The same images packed into shards by `pt data pack` (see the test's set-up).
    ("resnet:image_shards", "shards = [\"{png_folder}-shards\"]\nimage_size = 12"),
    ("resnet:pixel_csv", "split = \"train\""),
    ("resnet:resnet18", "width = 8"),
    ("resnet:resnet34", "width = 8"),
    ("resnet:resnet50", "width = 8"),
    ("clip:image_text", "path = \"{pairs}\"\nimage_size = 12\nvocab_size = 40\nlabel_field = \"class\""),
    ("wav2vec:audio", "path = \"{data}/audio/pretrain.tsv\"\nmax_samples = 16\nmax_seconds = 1.0"),
    ("wav2vec:wav2vec2", "preset = \"tiny\"\nconv_dim = [32, 32, 32, 32, 32, 32, 32]\nhidden_size = 32"),
];

/// Objectives whose name an architecture also has (they need their own tiny config).
const TINY_OBJECTIVES: &[(&str, &str)] = &[(
    "wav2vec:wav2vec2",
    "num_codevectors_per_group = 16\ncodevector_dim = 32\nproj_codevector_dim = 32\nnum_negatives = 10",
)];

/// Objective keys for one (dataset, objective) pairing.
const PAIRING: &[(&str, &str, &str)] = &[("faulty:toy", "denoise:denoise", "field = \"x\"")];

/// `[[eval]]` entries (host keys, component keys and splits) of the evaluators pt knows. They run
/// at the end of the tiny MLM run, except those listed in [`EVAL_RUNS`].
const EVAL_SPLITS: &[(&str, &str)] = &[
    (
        "resnet:classification",
        "max_samples = 32\nsplits.test = { name = \"resnet:pixel_csv\", split = \"test\" }",
    ),
    ("pt:knn", "k = 5\nmax_train_samples = 64\nmax_test_samples = 32\n{cls_splits}"),
    (
        "clip:zero_shot",
        "prompt = \"{} picture\"\nsplits.test = { name = \"clip:image_text\", path = \"{pairs}\", image_size = 12, label_field = \"class\" }",
    ),
    ("clip:retrieval", "splits.test = { name = \"clip:image_text\", path = \"{pairs}\", image_size = 12 }"),
    (
        "mlm:mlm_eval",
        "max_batches = 2\nsplits.validation = { name = \"mlm:text\", files = [\"{data}/text/tiny/valid.txt\"], tokenizer = \"{run}/assets/tokenizer.json\", block_size = 32 }",
    ),
    ("pt:linear_probe", "epochs = 5\nmax_train_samples = 64\nmax_test_samples = 32\n{cls_splits}"),
    ("pt:finetune", "steps = 2\nbatch_size = 8\neval_every = 1\nmax_test_samples = 32\n{cls_splits}"),
];

/// Evaluators that need another model than the MLM run's (e.g. a classifier's `logits`), with
/// the dataset × architecture × objective run they are evaluated at the end of.
const EVAL_RUNS: &[(&str, (&str, &str, &str))] =
    &[("resnet:classification", ("resnet:pixel_csv", "resnet:resnet18", "resnet:supervised"))];

/// Objectives that train several architectures under roles, each with the dataset and the
/// architectures per role it trains with, and the evaluators judged at the end of that run.
const ROLE_RUNS: &[(&str, &str, &[(&str, &str)], &[&str])] = &[
    (
        "clip:clip",
        "clip:image_text",
        &[("image", "resnet:resnet18"), ("text", "mlm:bert")],
        &["clip:zero_shot", "clip:retrieval"],
    ),
    ("clip:clip", "clip:image_text", &[("image", "resnet:resnet34"), ("text", "mlm:bert")], &[]),
    ("clip:clip", "clip:image_text", &[("image", "resnet:resnet50"), ("text", "mlm:bert")], &[]),
    ("mlm:electra", "mlm:text", &[("generator", "mlm:bert"), ("discriminator", "mlm:bert")], &[]),
];

const CLS_SPLITS: &str = "splits.train = { name = \"mlm:jsonl\", files = [\"{data}/text/tiny/cls-train.jsonl\"], tokenizer = \"{run}/assets/tokenizer.json\", block_size = 32 }\n\
splits.test = { name = \"mlm:jsonl\", files = [\"{data}/text/tiny/cls-test.jsonl\"], tokenizer = \"{run}/assets/tokenizer.json\", block_size = 32 }";

/// The components of the plugins `pt doctor --json` reports, by kind.
fn discover(pt: &Pt) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let doctor: serde_json::Value = serde_json::from_str(&pt.ok(&["doctor", "--json"])).expect("doctor --json is JSON");
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut plugin_names = Vec::new();
    for p in doctor["plugins"].as_array().expect("plugins") {
        let name = p["name"].as_str().expect("plugin name");
        plugin_names.push(name.to_string());
        for c in p["components"].as_array().expect("components") {
            let (kind, comp) = c.as_str().and_then(|c| c.split_once(':')).expect("kind:name");
            by_kind.entry(kind.to_string()).or_default().push(format!("{name}:{comp}"));
        }
    }
    (by_kind, plugin_names)
}

fn tiny(spec: &str) -> &'static str {
    TINY.iter().find(|(c, _)| *c == spec).map(|(_, t)| *t).unwrap_or("")
}

fn tiny_objective(spec: &str) -> &'static str {
    TINY_OBJECTIVES.iter().find(|(c, _)| *c == spec).map(|(_, t)| *t).unwrap_or_else(|| tiny(spec))
}

fn pairing(dataset: &str, objective: &str) -> &'static str {
    PAIRING.iter().find(|(d, o, _)| *d == dataset && *o == objective).map(|(_, _, t)| *t).unwrap_or("")
}

/// `arch` is one architecture, or `role=arch` pairs joined by `,` (one `[arch.ROLE]` each).
fn recipe(dataset: &str, arch: &str, objective: &str, paths: &Paths, evals: &str) -> String {
    let archs: String = if arch.contains('=') {
        arch.split(',')
            .map(|ra| {
                let (role, a) = ra.split_once('=').unwrap();
                format!("[arch.{role}]\nname = \"{a}\"\n{}\n\n", tiny(a))
            })
            .collect()
    } else {
        format!("[arch]\nname = \"{arch}\"\n{}\n\n", tiny(arch))
    };
    let text = format!(
        "[run]\nseed = 0\ndevice = \"cpu\"\nbatch_size = 8\nmax_steps = 2\nlog_every = 1\nnum_threads = 1\n\n\
         [data]\nname = \"{dataset}\"\n{}\n\n{archs}[objective]\nname = \"{objective}\"\n{}\n{}\n\n\
         [optim]\nname = \"adamw\"\nlr = 1e-3\n\n{evals}",
        tiny(dataset),
        tiny_objective(objective),
        pairing(dataset, objective),
    );
    paths.fill(&text)
}

/// Files the tiny configs point at.
struct Paths {
    tokenizer: String,
    png_folder: String,
    pairs: String,
}

impl Paths {
    fn fill(&self, text: &str) -> String {
        text.replace("{tokenizer}", &self.tokenizer)
            .replace("{png_folder}", &self.png_folder)
            .replace("{pairs}", &self.pairs)
    }
}

enum Outcome {
    Trained,
    /// The objective needs an output the architecture lacks: no dataset helps.
    PairDoesNotCompose(String),
    /// The dataset lacks what the architecture or objective needs.
    DataDoesNotFit(String),
    /// The objective trains several architectures under roles (see [`ROLE_RUNS`]).
    NeedsRoles,
    Failed(String),
}

struct Runner<'a> {
    pt: &'a Pt,
    runs: PathBuf,
    count: usize,
    paths: Paths,
    /// The run directory of the latest run.
    last_dir: PathBuf,
    log: Vec<String>,
}

/// A JSONL of captioned images (for `image_text`): the PNGs of [`write_png_folder`], two
/// captions each, their class as `class`.
fn write_pairs(png_folder: &Path, out: &Path) {
    let mut lines = String::new();
    for class in ["stripes", "blocks"] {
        for i in 0..4 {
            let image = png_folder.join(class).join(format!("{i}.png"));
            let captions = [format!("{class} number {i}"), format!("a picture of {class}")];
            let line = serde_json::json!({ "image": image, "captions": captions, "class": class });
            lines.push_str(&format!("{line}\n"));
        }
    }
    std::fs::write(out, lines).unwrap();
}

/// Writes 2 classes × 4 images of 12×12 RGB PNGs (stripes of varying brightness) under `root`.
fn write_png_folder(root: &Path) {
    for (c, class) in ["stripes", "blocks"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4u32 {
            let img = image::RgbImage::from_fn(12, 12, |x, y| {
                let on = if c == 0 { x % 3 == 0 } else { (x / 4 + y / 4) % 2 == 0 };
                let v = if on { 200 - 20 * i as u8 } else { 30 + 10 * i as u8 };
                image::Rgb([v, v / 2, 255 - v])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

impl Runner<'_> {
    fn train(&mut self, dataset: &str, arch: &str, objective: &str, evals: &str) -> Outcome {
        self.count += 1;
        let dir = self.runs.join(format!("{:02}-{}-{}-{}", self.count, dataset, arch, objective).replace(':', "_"));
        let path = dir.with_extension("toml");
        self.last_dir = dir.clone();
        std::fs::write(&path, recipe(dataset, arch, objective, &self.paths, evals)).expect("writing a recipe");
        let started = std::time::Instant::now();
        let out =
            self.pt.run(&["train", "--recipe", path.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"]);
        let seconds = started.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let what = format!("{dataset} × {arch} × {objective}");
        let outcome = if out.status.success() {
            match check_run(&dir) {
                Ok(()) => Outcome::Trained,
                Err(e) => Outcome::Failed(format!("{what}: {e}")),
            }
        } else if err.contains("trains the roles") {
            Outcome::NeedsRoles
        } else if err.contains("do not fit together") {
            if err.contains("needs model output") {
                Outcome::PairDoesNotCompose(err.trim().to_string())
            } else {
                Outcome::DataDoesNotFit(err.trim().to_string())
            }
        } else {
            Outcome::Failed(format!("{what} failed:\n{err}"))
        };
        self.log.push(format!(
            "{what} ({seconds:.1} s): {}",
            match &outcome {
                Outcome::Trained => "trained".to_string(),
                Outcome::PairDoesNotCompose(_) => "pair does not compose".to_string(),
                Outcome::DataDoesNotFit(_) => "dataset does not fit".to_string(),
                Outcome::NeedsRoles => "needs architectures under roles".to_string(),
                Outcome::Failed(_) => "FAILED".to_string(),
            }
        ));
        if matches!(outcome, Outcome::Trained)
            && self.paths.tokenizer.is_empty()
            && dir.join("assets/tokenizer.json").is_file()
        {
            self.paths.tokenizer = dir.join("assets/tokenizer.json").display().to_string();
        }
        outcome
    }
}

/// Two steps, a finite loss, a verified checkpoint on disk, no leaked tensor handle.
fn check_run(dir: &Path) -> Result<(), String> {
    let sum = summary(dir);
    if sum["step"] != 2 {
        return Err(format!("stopped at step {} (summary {sum})", sum["step"]));
    }
    if !sum["last_loss"].as_f64().is_some_and(f64::is_finite) {
        return Err(format!("loss is not finite: {sum}"));
    }
    if sum["leaked_tensor_handles"] != 0 {
        return Err(format!("tensor handles outlived the run: {sum}"));
    }
    let ckpt = PathBuf::from(sum["checkpoint"].as_str().ok_or_else(|| format!("no checkpoint: {sum}"))?);
    let ckpt = if ckpt.is_absolute() { ckpt } else { std::env::current_dir().unwrap().join(ckpt) };
    for f in ["manifest.json", "model.safetensors"] {
        if !ckpt.join(f).is_file() {
            return Err(format!("checkpoint {} lacks {f}", ckpt.display()));
        }
    }
    Ok(())
}

/// Every key line of `pt plugin info NAME` carries a description.
fn undocumented_keys(pt: &Pt, plugin: &str) -> Vec<String> {
    let info = pt.ok(&["plugin", "info", plugin]);
    let mut component = String::new();
    let mut missing = Vec::new();
    for line in info.lines() {
        if !line.starts_with(' ') && line.contains(" — ") {
            component = line.split(" — ").next().unwrap_or("").to_string();
        } else if let Some((key, rest)) = line.strip_prefix("  ").and_then(|l| l.split_once(" = ")) {
            let description = rest.trim_start().split_once(char::is_whitespace).map(|(_, d)| d.trim()).unwrap_or("");
            if description.is_empty() {
                missing.push(format!("{plugin} {component}: {}", key.trim()));
            }
        }
    }
    missing
}

#[test]
fn every_component_of_every_plugin_trains_in_a_tiny_run() {
    let built = plugins();
    data_dir("text");
    data_dir("images");
    data_dir("audio");
    let pt = Pt::new();
    for so in [&built.denoise, &built.rotnet, &built.faulty] {
        pt.ok(&["plugin", "install", so.to_str().unwrap()]);
    }
    let (by_kind, plugin_names) = discover(&pt);
    for expected in ["mlm", "resnet", "simclr", "wav2vec", "clip", "denoise", "rotnet", "faulty", "pt"] {
        assert!(plugin_names.iter().any(|n| n == expected), "plugin {expected} found: {plugin_names:?}");
    }
    let undocumented: Vec<String> = plugin_names.iter().flat_map(|p| undocumented_keys(&pt, p)).collect();
    assert!(undocumented.is_empty(), "config keys without a description:\n{}", undocumented.join("\n"));

    let list = |kind: &str| by_kind.get(kind).cloned().unwrap_or_default();
    let (datasets, archs, objectives, evaluators) =
        (list("dataset"), list("architecture"), list("objective"), list("evaluator"));
    let runs = pt.home.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let png_folder = pt.home.path().join("png-folder");
    write_png_folder(&png_folder);
    let shards = pt.home.path().join("png-folder-shards");
    pt.ok(&["data", "pack", png_folder.to_str().unwrap(), shards.to_str().unwrap(), "--shard-size", "3"]);
    let pairs = pt.home.path().join("pairs.jsonl");
    write_pairs(&png_folder, &pairs);
    let paths = Paths {
        tokenizer: String::new(),
        png_folder: png_folder.display().to_string(),
        pairs: pairs.display().to_string(),
    };
    let mut r = Runner { pt: &pt, runs, count: 0, paths, last_dir: PathBuf::new(), log: Vec::new() };
    let mut failures = Vec::new();

    // Every evaluator, at the end of a tiny MLM run (which also makes the tokenizer the other
    // text datasets use).
    let mut evals = String::new();
    let eval_entry =
        |e: &str, body: &str| format!("[[eval]]\nname = \"{e}\"\n{}\n\n", body.replace("{cls_splits}", CLS_SPLITS));
    let role_run = |e: &str| ROLE_RUNS.iter().any(|(_, _, _, evals)| evals.contains(&e));
    let own_run = |e: &str| EVAL_RUNS.iter().find(|(c, _)| *c == e).map(|(_, run)| *run);
    for e in &evaluators {
        match EVAL_SPLITS.iter().find(|(c, _)| c == e) {
            Some(_) if own_run(e).is_some() || role_run(e) => {}
            Some((_, body)) => evals.push_str(&eval_entry(e, body)),
            None => failures
                .push(format!("evaluator {e}: no tiny config; add its splits to EVAL_SPLITS in tests/conformance.rs")),
        }
    }
    match r.train("mlm:text", "mlm:bert", "mlm:mlm", &evals) {
        Outcome::Trained => {
            let sum = summary(&r.runs.join("01-mlm_text-mlm_bert-mlm_mlm"));
            for e in evaluators
                .iter()
                .filter(|e| EVAL_SPLITS.iter().any(|(c, _)| c == *e) && own_run(e).is_none() && !role_run(e))
            {
                let metrics = &sum["evals"][e.as_str()]["metrics"];
                let finite = metrics
                    .as_object()
                    .is_some_and(|m| !m.is_empty() && m.values().all(|v| v.as_f64().is_some_and(f64::is_finite)));
                if !finite {
                    failures.push(format!("evaluator {e}: no finite metrics in {}", sum["evals"]));
                }
            }
        }
        Outcome::Failed(e) | Outcome::PairDoesNotCompose(e) | Outcome::DataDoesNotFit(e) => {
            failures.push(format!("the MLM run with every evaluator failed: {e}"))
        }
        Outcome::NeedsRoles => failures.push("the MLM run asked for roles".into()),
    }

    let mut trained: BTreeSet<(String, String, String)> = BTreeSet::new();
    trained.insert(("mlm:text".into(), "mlm:bert".into(), "mlm:mlm".into()));
    // Evaluators that need their own model, each at the end of its run.
    for (e, (d, a, o)) in EVAL_RUNS.iter().filter(|(e, _)| evaluators.iter().any(|x| x == e)) {
        let body = EVAL_SPLITS.iter().find(|(c, _)| c == e).map(|(_, b)| *b).unwrap_or("");
        match r.train(d, a, o, &eval_entry(e, body)) {
            Outcome::Trained => {
                trained.insert((d.to_string(), a.to_string(), o.to_string()));
                let metrics = summary(&r.last_dir)["evals"][*e]["metrics"].clone();
                if !metrics
                    .as_object()
                    .is_some_and(|m| !m.is_empty() && m.values().all(|v| v.as_f64().is_some_and(f64::is_finite)))
                {
                    failures.push(format!("evaluator {e}: no finite metrics ({metrics})"));
                }
            }
            Outcome::Failed(err) | Outcome::PairDoesNotCompose(err) | Outcome::DataDoesNotFit(err) => {
                failures.push(format!("evaluator {e} in its {d} × {a} × {o} run: {err}"))
            }
            Outcome::NeedsRoles => failures.push(format!("evaluator {e}: its run {d} × {a} × {o} asked for roles")),
        }
    }

    // Objectives over several architectures, with their evaluators, in the runs ROLE_RUNS names.
    for (o, d, roles, evals) in ROLE_RUNS.iter().filter(|(o, ..)| objectives.iter().any(|x| x == o)) {
        let arch: Vec<String> = roles.iter().map(|(role, a)| format!("{role}={a}")).collect();
        let body: String = evals
            .iter()
            .map(|e| eval_entry(e, EVAL_SPLITS.iter().find(|(c, _)| c == e).map(|(_, b)| *b).unwrap_or("")))
            .collect();
        match r.train(d, &arch.join(","), o, &body) {
            Outcome::Trained => {
                trained.insert((d.to_string(), arch.join(","), o.to_string()));
                let sum = summary(&r.last_dir);
                for e in evals.iter() {
                    let metrics = &sum["evals"][*e]["metrics"];
                    if !metrics
                        .as_object()
                        .is_some_and(|m| !m.is_empty() && m.values().all(|v| v.as_f64().is_some_and(f64::is_finite)))
                    {
                        failures.push(format!("evaluator {e}: no finite metrics ({metrics})"));
                    }
                }
            }
            Outcome::Failed(err) | Outcome::PairDoesNotCompose(err) | Outcome::DataDoesNotFit(err) => {
                failures.push(format!("{o} with roles {} on {d}: {err}", arch.join(", ")))
            }
            Outcome::NeedsRoles => failures.push(format!("{o}: the roles {} were refused", arch.join(", "))),
        }
    }

    // Every architecture × objective pair, on the first dataset it fits (trying first the ones
    // the architecture already trained on).
    let mut pairs_without_data = Vec::new();
    for arch in &archs {
        for objective in &objectives {
            if trained.iter().any(|(_, a, o)| a == arch && o == objective)
                || ROLE_RUNS.iter().any(|(o, ..)| o == objective)
            {
                continue;
            }
            let fits_arch = |d: &String| trained.iter().any(|(td, a, _)| td == d && a == arch);
            let order: Vec<&String> =
                datasets.iter().filter(|d| fits_arch(d)).chain(datasets.iter().filter(|d| !fits_arch(d))).collect();
            let mut found = false;
            for dataset in order {
                match r.train(dataset, arch, objective, "") {
                    Outcome::Trained => {
                        trained.insert((dataset.clone(), arch.clone(), objective.clone()));
                        found = true;
                        break;
                    }
                    // Whether an output exists can depend on the data (a ResNet has `logits`
                    // only when the dataset names classes): try the other datasets too.
                    Outcome::PairDoesNotCompose(_) | Outcome::DataDoesNotFit(_) => {}
                    Outcome::NeedsRoles => {
                        failures.push(format!("objective {objective} trains roles: give it a run in ROLE_RUNS"));
                        break;
                    }
                    Outcome::Failed(e) => failures.push(e),
                }
            }
            if !found {
                pairs_without_data.push(format!("{arch} × {objective}"));
            }
        }
    }
    // Every dataset, with the first pair it fits.
    for dataset in &datasets {
        if trained.iter().any(|(d, _, _)| d == dataset) {
            continue;
        }
        let pairs: BTreeSet<(String, String)> =
            trained.iter().filter(|(_, a, _)| !a.is_empty()).map(|(_, a, o)| (a.clone(), o.clone())).collect();
        let ok = pairs.iter().any(|(a, o)| match r.train(dataset, a, o, "") {
            Outcome::Trained => true,
            Outcome::Failed(e) => {
                failures.push(e);
                false
            }
            _ => false,
        });
        if ok {
            trained.insert((dataset.clone(), String::new(), String::new()));
        } else {
            failures.push(format!("dataset {dataset} trained with no architecture × objective pair"));
        }
    }
    for (kind, all) in [("architecture", &archs), ("objective", &objectives)] {
        for c in all.iter() {
            let used = trained.iter().any(|(_, a, o)| a == c || o == c);
            if !used {
                failures.push(format!("{kind} {c} trained in no combination"));
            }
        }
    }
    let report = r.log.join("\n");
    eprintln!(
        "conformance runs ({}):\n{report}\npairs that do not compose: {}",
        r.count,
        pairs_without_data.join(", ")
    );
    assert!(failures.is_empty(), "{}\n\nruns:\n{report}", failures.join("\n\n"));
    // The pairs pt's own components are made for all trained.
    for (d, a, o) in [
        ("mlm:text", "mlm:bert", "denoise:denoise"),
        ("faulty:toy", "faulty:faulty", "faulty:regression"),
        ("faulty:toy", "faulty:faulty", "denoise:denoise"),
        ("faulty:toy", "faulty:faulty", "faulty:stale_head"),
    ] {
        assert!(trained.contains(&(d.to_string(), a.to_string(), o.to_string())), "{d} × {a} × {o} trained:\n{report}");
    }
    for (a, o) in [
        ("resnet:resnet50", "resnet:supervised"),
        ("resnet:resnet18", "resnet:fixmatch"),
        ("resnet:resnet18", "simclr:simclr"),
        ("resnet:resnet50", "simclr:simclr"),
        ("resnet:resnet18", "rotnet:rotnet"),
    ] {
        assert!(trained.iter().any(|(_, ta, to)| ta == a && to == o), "{a} × {o} trained on some dataset:\n{report}");
    }
    assert!(trained.iter().any(|(d, _, _)| d == "mlm:jsonl"), "the jsonl dataset trained:\n{report}");
}
