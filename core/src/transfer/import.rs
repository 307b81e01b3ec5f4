//! Reference weights as a pt run: a transformers BERT, ResNet or wav2vec2 directory, a timm
//! ResNet directory or a torchvision ResNet state dict becomes a run directory (its recipe and a step-0 checkpoint
//! holding those weights) that `pt transfer`, `pt embed` and `pt export` read like any other. It
//! is made once per source, in the data cache (`{data}/cache/imports/`). Its `[data]` and
//! `[objective]` are placeholders (nothing trains there): evaluate it on a task or on data given
//! with `--data`.

use crate::checkpoint::format::CursorState;
use crate::checkpoint::manager::{latest_valid, snapshot, CheckpointManager, SaveRequest};
use crate::config::Recipe;
use crate::plan::{RunPlan, World};
use crate::plugin::Registry;
use crate::train::resume::{named_model, named_objective};
use crate::train::weights::load_named;
use crate::train::Session;
use crate::{Error, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What a source holds, and the recipe of a run that holds it.
struct Reference {
    what: String,
    recipe: String,
    /// Files the run needs: (name in the run directory, contents or a file to copy).
    files: Vec<(String, FileSource)>,
    /// The export format of the built architecture whose names the weights are under (their
    /// names are mapped back to the architecture's own), or None: already under its names.
    names_of: Option<&'static str>,
}

enum FileSource {
    Text(String),
    Bytes(Vec<u8>),
    Copy(PathBuf),
}

/// The run directory holding `src`'s weights (made on first use), or None when `src` is not a
/// reference model pt knows (then it is taken for a pt run or checkpoint).
pub fn import(reg: &Registry, src: &Path) -> Result<Option<PathBuf>> {
    let Some(kind) = kind_of(src)? else {
        return Ok(None);
    };
    let dir = cache_dir(src)?;
    if dir.join(IMPORTED).is_file() && latest_valid(&dir.join("checkpoints"))?.is_some() {
        return Ok(Some(dir));
    }
    let read = |file: &Path| crate::checkpoint::format::read_tensors(file);
    let (weights, reference) = match kind {
        Kind::Transformers(model, config) => {
            let weights = read(&src.join("model.safetensors"))?;
            match model {
                TransformersModel::Bert => {
                    let weights = bert_names(weights);
                    let reference = bert(src, &config, &weights)?;
                    (weights, reference)
                }
                TransformersModel::Resnet => {
                    let reference = hf_resnet(src, &config, &weights)?;
                    (weights, reference)
                }
                TransformersModel::Wav2vec2 => {
                    let weights = wav2vec2_names(weights);
                    (weights, wav2vec2(src, &config)?)
                }
            }
        }
        Kind::TorchvisionResnet(file, library) => {
            let weights = read(&file)?;
            let reference = resnet(src, library, &weights)?;
            (weights, reference)
        }
    };
    tracing::info!(target: "progress", "importing {} ({}) into {} …", src.display(), reference.what, dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("assets")).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    for (name, source) in &reference.files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let written = match source {
            FileSource::Text(t) => std::fs::write(&path, t),
            FileSource::Bytes(b) => std::fs::write(&path, b),
            FileSource::Copy(from) => std::fs::copy(from, &path).map(|_| ()),
        };
        written.map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    let origin = format!("{} (imported)", src.display());
    let recipe = Recipe::parse(&reference.recipe, &origin, &[])?;
    let session = Session::build(RunPlan::resolve(reg, recipe, &dir, World::default())?)?;
    let weights = match reference.names_of {
        Some(format) => own_names(&session, format, weights)?,
        None => weights,
    };
    let what = format!("importing {}", src.display());
    let report = load_named(&named_model(&session)?, &weights, &what)?;
    if report.loaded == 0 {
        return Err(Error::Checkpoint(format!(
            "{what}: none of its tensors match {} (e.g. the model has '{}', the file '{}')",
            session.model.origin,
            report.missing.first().map(String::as_str).unwrap_or("-"),
            report.unexpected.first().map(String::as_str).unwrap_or("-")
        )));
    }
    if !report.missing.is_empty() {
        tracing::warn!(
            "{what}: {} of the model's tensors are not in it and stay at random initialisation ({}…)",
            report.missing.len(),
            report.missing[0]
        );
    }
    save_step_zero(reg, &session)?;
    let note = serde_json::json!({ "source": src.display().to_string(), "what": reference.what });
    std::fs::write(dir.join(IMPORTED), note.to_string()).map_err(|e| Error::io("writing imported.json", e))?;
    Ok(Some(dir))
}

/// `weights` under the architecture's own names, read back through the names it writes in
/// `format` (so the mapping lives once, in the plugin); tensors the format does not name keep
/// theirs.
fn own_names(
    session: &Session,
    format: &str,
    weights: Vec<(String, tch::Tensor)>,
) -> Result<Vec<(String, tch::Tensor)>> {
    let spec = session.model.info.exports.iter().find(|f| f.name == format).ok_or_else(|| {
        Error::Config(format!("{} has no '{format}' format to read these weights through", session.model.origin))
    })?;
    let ours: std::collections::HashMap<&str, &str> =
        spec.names.iter().map(|(ours, theirs)| (theirs.as_str(), ours.as_str())).collect();
    Ok(weights.into_iter().map(|(n, t)| (ours.get(n.as_str()).map(|o| o.to_string()).unwrap_or(n), t)).collect())
}

/// Marks a run directory made by [`import`] (its source and kind).
pub const IMPORTED: &str = "imported.json";

/// For a run made by [`import`], where its weights came from.
pub fn imported_from(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join(IMPORTED)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["source"].as_str().map(String::from)
}

/// Bumped when an import reads a source differently, so imports made before are made again.
const IMPORT_VERSION: u32 = 2;

/// `{data}/cache/imports/<hash of the source's path, its files' sizes and times, and the
/// import's version>`.
fn cache_dir(src: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(src).map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
    let files = match abs.is_dir() {
        true => ["model.safetensors", "config.json", "tokenizer.json"].iter().map(|f| abs.join(f)).collect(),
        false => vec![abs.clone()],
    };
    let mut key = format!("v{IMPORT_VERSION}|{}", abs.display());
    for file in files.iter().filter(|f| f.exists()) {
        let meta = std::fs::metadata(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        key.push_str(&format!("|{}|{:?}", meta.len(), modified));
    }
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
    Ok(pt_sdk::default_data_dir().join("cache/imports").join(hash))
}

fn save_step_zero(reg: &Registry, session: &Session) -> Result<()> {
    let run_dir = session.run_dir();
    let toml = session.resolved_toml();
    std::fs::write(run_dir.join("config.toml"), &toml).map_err(|e| Error::io("writing config.toml", e))?;
    let mut components = std::collections::BTreeMap::new();
    components.insert("data".to_string(), session.data.origin.clone());
    components.insert("arch".to_string(), session.model.origin.clone());
    components.insert("objective".to_string(), session.objective_origin());
    let mut manager = CheckpointManager::new(run_dir, 1, "", false)?;
    manager.save(SaveRequest {
        step: 0,
        cursor: CursorState::default(),
        world_size: 1,
        lr: 0.0,
        seed: session.plan.recipe.run.seed,
        optimizer: "none (imported weights)".into(),
        optimizer_steps: 0,
        metrics: Default::default(),
        skipped_steps: 0,
        config: toml,
        components,
        plugins: crate::train::checkpointing::plugin_records(reg),
        libtorch_version: String::new(),
        model: snapshot(&named_model(session)?),
        objective: snapshot(&named_objective(session)?),
        // Every checkpoint holds an optimizer file; here it records that none ran.
        optimizer_state: vec![("imported".into(), tch::Tensor::from(0i64))],
        assets_dir: Some(run_dir.join("assets")),
    })?;
    manager.wait()?;
    Ok(())
}

/// What a reference source is.
enum Kind {
    /// A transformers directory, with its `config.json`.
    Transformers(TransformersModel, Value),
    /// A state dict under torchvision's names: a `.safetensors` file (torchvision's), or a timm
    /// ResNet directory's weights; with the library that wrote it.
    TorchvisionResnet(PathBuf, &'static str),
}

enum TransformersModel {
    Bert,
    Resnet,
    Wav2vec2,
}

/// A transformers directory (`config.json` with a known `model_type`), a timm ResNet directory
/// (`config.json` naming the architecture) or a `.safetensors` file (a torchvision state dict,
/// checked when read); None for anything else.
fn kind_of(src: &Path) -> Result<Option<Kind>> {
    let config = src.join("config.json");
    let weights = src.join("model.safetensors");
    if src.is_dir() && config.is_file() && weights.is_file() && !src.join("manifest.json").exists() {
        let text =
            std::fs::read_to_string(&config).map_err(|e| Error::io(format!("reading {}", config.display()), e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not valid JSON ({e})", config.display())))?;
        let model = match (json["model_type"].as_str(), json["architecture"].as_str()) {
            (Some("bert"), _) => TransformersModel::Bert,
            (Some("resnet"), _) => TransformersModel::Resnet,
            (Some("wav2vec2"), _) => TransformersModel::Wav2vec2,
            (None, Some("resnet18" | "resnet34" | "resnet50")) => {
                return Ok(Some(Kind::TorchvisionResnet(weights, "timm")))
            }
            (Some(other), _) | (None, Some(other)) => {
                return Err(Error::Config(format!(
                    "{}: a '{other}' model; pt imports transformers bert, resnet and wav2vec2 directories, timm resnet18/34/50 directories and torchvision ResNet state dicts (.safetensors)",
                    src.display()
                )))
            }
            (None, None) => return Ok(None),
        };
        return Ok(Some(Kind::Transformers(model, json)));
    }
    if src.is_file() && src.extension().is_some_and(|e| e == "safetensors") {
        return Ok(Some(Kind::TorchvisionResnet(src.to_path_buf(), "torchvision")));
    }
    Ok(None)
}

/// BERT weights under `BertForMaskedLM`'s names: `bert.` before a bare `BertModel`'s names, and
/// the `gamma`/`beta` of older checkpoints as `weight`/`bias` (as transformers renames them).
fn bert_names(tensors: Vec<(String, tch::Tensor)>) -> Vec<(String, tch::Tensor)> {
    let bare = !tensors.iter().any(|(n, _)| n.starts_with("bert."));
    tensors
        .into_iter()
        .map(|(name, t)| {
            let name = match bare && ["embeddings.", "encoder.", "pooler."].iter().any(|p| name.starts_with(p)) {
                true => format!("bert.{name}"),
                false => name,
            };
            (rename_last(name, &[("gamma", "weight"), ("beta", "bias")]), t)
        })
        .collect()
}

/// `name` with its last component renamed by the first of `renames` (old, new) that matches it.
fn rename_last(name: String, renames: &[(&str, &str)]) -> String {
    let renamed = name
        .rsplit_once('.')
        .and_then(|(head, last)| renames.iter().find(|(old, _)| *old == last).map(|(_, new)| format!("{head}.{new}")));
    renamed.unwrap_or(name)
}

/// The recipe of a run holding `what` (from `src`): its `[data]` and `[objective]` are
/// placeholders that satisfy the plan; nothing trains there.
fn placeholder_recipe(what: &str, src: &Path, data: &str, arch: &str, objective: &str) -> String {
    format!(
        "# {what} ({}) as a pt run (pt transfer / embed / export).\n\
         # [data] and [objective] are placeholders: nothing trains here.\n\
         [run]\nbatch_size = 1\nmax_steps = 1\n\n[checkpoint]\nevery = 0\n\n\
         [data]\n{data}\n[arch]\n{arch}\n[objective]\nname = \"{objective}\"\n",
        src.display()
    )
}

/// A one-line text file for the placeholder `[data]`.
const PLACEHOLDER_TEXT: &str = "an imported model: give pt transfer a task or pt embed --data to evaluate it\n";

fn bert(src: &Path, c: &Value, weights: &[(String, tch::Tensor)]) -> Result<Reference> {
    let tokenizer = src.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(Error::Config(format!(
            "{}: no tokenizer.json (a fast tokenizer) beside the weights; save it with tokenizer.save_pretrained",
            src.display()
        )));
    }
    let has = |prefix: &str| weights.iter().any(|(n, _)| n.starts_with(prefix));
    let mut arch = String::new();
    for key in [
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "pad_token_id",
    ] {
        if let Some(v) = c.get(key).filter(|v| v.is_number()) {
            arch.push_str(&format!("{key} = {v}\n"));
        }
    }
    if let Some(act) = c["hidden_act"].as_str() {
        arch.push_str(&format!("hidden_act = \"{act}\"\n"));
    }
    arch.push_str(&format!("add_pooling_layer = {}\n", has("bert.pooler.")));
    let block = c["max_position_embeddings"].as_i64().unwrap_or(512).min(128);
    let data = format!(
        "name = \"text\"\nfiles = [\"{{run}}/placeholder.txt\"]\ntokenizer = \"{{run}}/assets/tokenizer.json\"\nblock_size = {block}\n"
    );
    let recipe = placeholder_recipe("a transformers BERT", src, &data, &format!("name = \"bert\"\n{arch}"), "mlm");
    Ok(Reference {
        what: "a transformers BERT".into(),
        recipe,
        files: vec![
            ("placeholder.txt".into(), FileSource::Text(PLACEHOLDER_TEXT.repeat(4))),
            ("assets/tokenizer.json".into(), FileSource::Copy(tokenizer)),
        ],
        names_of: None,
    })
}

/// A ResNet state dict under torchvision's names (torchvision's own, or a timm directory's).
fn resnet(src: &Path, library: &str, tensors: &[(String, tch::Tensor)]) -> Result<Reference> {
    let shape = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.size());
    let (Some(stem), true) = (shape("conv1.weight"), shape("layer1.0.conv1.weight").is_some()) else {
        return Err(Error::Config(format!(
            "{}: not a torchvision ResNet state dict (no conv1.weight / layer1.0.conv1.weight); give a pt run, a checkpoint or a transformers directory",
            src.display()
        )));
    };
    let blocks =
        |stage: usize| (0..).take_while(|b| shape(&format!("layer{stage}.{b}.conv1.weight")).is_some()).count();
    let bottleneck = shape("layer1.0.conv3.weight").is_some();
    let depth = match (blocks(3), bottleneck) {
        (2, false) => "resnet18",
        (6, false) => "resnet34",
        (6, true) => "resnet50",
        (n, b) => {
            return Err(Error::Config(format!(
                "{}: a ResNet with {n} blocks in layer3{} is not one of resnet18/34/50",
                src.display(),
                if b { " (bottleneck)" } else { "" }
            )))
        }
    };
    let classes = shape("fc.weight").map(|s| s[0]).unwrap_or(0);
    let arch = ResnetArch { depth, classes, in_channels: stem[1], width: stem[0], small_stem: stem[2] == 3 };
    Ok(resnet_reference(src, &format!("a {library} {depth}"), &arch, None))
}

/// A ResNet as pt's `resnet` plugin builds it.
struct ResnetArch {
    depth: &'static str,
    classes: i64,
    in_channels: i64,
    width: i64,
    small_stem: bool,
}

fn resnet_reference(src: &Path, what: &str, a: &ResnetArch, names_of: Option<&'static str>) -> Reference {
    let data = "name = \"pixel_csv\"\npath = \"{run}/placeholder.csv\"\nmean = [0.5]\nstd = [0.25]\n";
    let arch = format!(
        "name = \"{}\"\nnum_classes = {}\nin_channels = {}\nwidth = {}\nsmall_stem = {}\n",
        a.depth, a.classes, a.in_channels, a.width, a.small_stem
    );
    let objective = if a.classes > 0 { "supervised" } else { "simclr" };
    let recipe = placeholder_recipe(what, src, data, &arch, objective);
    let row = format!("{}0\n", "0,".repeat(64));
    Reference {
        what: what.to_string(),
        recipe,
        files: vec![("placeholder.csv".into(), FileSource::Text(row.repeat(2)))],
        names_of,
    }
}

/// A transformers `ResNetModel` / `ResNetForImageClassification` directory: the ResNet pt
/// builds from its config, its weights read through that ResNet's `hf` export names. pt's
/// ResNets are torchvision's (v1.5), so other layouts are refused.
fn hf_resnet(src: &Path, c: &Value, weights: &[(String, tch::Tensor)]) -> Result<Reference> {
    let refuse = |why: String| {
        Error::Config(format!(
            "{}: {why}; pt's resnet18/34/50 are torchvision's layout",
            src.join("config.json").display()
        ))
    };
    let ints = |key: &str| -> Vec<i64> {
        c[key].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default()
    };
    let bottleneck = match c["layer_type"].as_str().unwrap_or("bottleneck") {
        "basic" => false,
        "bottleneck" => true,
        other => return Err(refuse(format!("layer_type '{other}'"))),
    };
    let depths = ints("depths");
    let depth = match (depths.as_slice(), bottleneck) {
        ([2, 2, 2, 2], false) => "resnet18",
        ([3, 4, 6, 3], false) => "resnet34",
        ([3, 4, 6, 3], true) => "resnet50",
        (d, b) => {
            return Err(refuse(format!("depths {d:?} with layer_type {}", if b { "bottleneck" } else { "basic" })))
        }
    };
    let width = c["embedding_size"].as_i64().unwrap_or(64);
    let expansion = if bottleneck { 4 } else { 1 };
    let expected: Vec<i64> = (0..4).map(|s| (width << s) * expansion).collect();
    if ints("hidden_sizes") != expected {
        return Err(refuse(format!(
            "hidden_sizes {:?} (from embedding_size {width}: {expected:?})",
            ints("hidden_sizes")
        )));
    }
    for key in ["downsample_in_first_stage", "downsample_in_bottleneck"] {
        if c[key].as_bool() == Some(true) {
            return Err(refuse(format!("{key} = true")));
        }
    }
    if c["hidden_act"].as_str().is_some_and(|a| a != "relu") {
        return Err(refuse(format!("hidden_act {}", c["hidden_act"])));
    }
    let classes = weights.iter().find(|(n, _)| n == "classifier.1.weight").map(|(_, t)| t.size()[0]).unwrap_or(0);
    let in_channels = c["num_channels"].as_i64().unwrap_or(3);
    let arch = ResnetArch { depth, classes, in_channels, width, small_stem: false };
    Ok(resnet_reference(src, &format!("a transformers {depth}"), &arch, Some("hf")))
}

/// wav2vec2 weights under `Wav2Vec2Model`'s names: without the `wav2vec2.` of a model with a
/// head (`Wav2Vec2ForPreTraining`, `…ForCTC`; the head's own tensors stay and go unused), and
/// the positional convolution's weight norm under torch's parametrization names, as
/// transformers renames the `weight_g` / `weight_v` of older checkpoints when it loads them.
fn wav2vec2_names(tensors: Vec<(String, tch::Tensor)>) -> Vec<(String, tch::Tensor)> {
    tensors
        .into_iter()
        .map(|(n, t)| {
            let n = n.strip_prefix("wav2vec2.").map(String::from).unwrap_or(n);
            let weight_norm =
                [("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1")];
            (rename_last(n, &weight_norm), t)
        })
        .collect()
}

/// The `wav2vec2` config keys pt reads, as transformers' `Wav2Vec2Config` names them.
const WAV2VEC2_KEYS: [&str; 19] = [
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_dropout",
    "activation_dropout",
    "attention_dropout",
    "feat_proj_dropout",
    "layerdrop",
    "layer_norm_eps",
    "initializer_range",
    "feat_extract_norm",
    "conv_dim",
    "conv_kernel",
    "conv_stride",
    "conv_bias",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
    "do_stable_layer_norm",
];

/// A transformers wav2vec2 directory: pt's `wav2vec2` with the directory's config. pt's encoder
/// is GELU throughout, as every released wav2vec 2.0 is.
fn wav2vec2(src: &Path, c: &Value) -> Result<Reference> {
    for key in ["feat_extract_activation", "hidden_act"] {
        if let Some(act) = c[key].as_str().filter(|a| *a != "gelu") {
            return Err(Error::Config(format!(
                "{}: {key} '{act}'; pt's wav2vec2 uses gelu",
                src.join("config.json").display()
            )));
        }
    }
    let mut arch = String::new();
    for key in WAV2VEC2_KEYS {
        if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
            arch.push_str(&format!("{key} = {v}\n"));
        }
    }
    let data = "name = \"audio\"\npath = \"{run}/placeholder\"\n";
    let recipe =
        placeholder_recipe("a transformers wav2vec2", src, data, &format!("name = \"wav2vec2\"\n{arch}"), "wav2vec2");
    Ok(Reference {
        what: "a transformers wav2vec2".into(),
        recipe,
        files: vec![
            ("placeholder/a.wav".into(), FileSource::Bytes(silent_wav(16000))),
            ("placeholder/b.wav".into(), FileSource::Bytes(silent_wav(16000))),
        ],
        names_of: None,
    })
}

/// A 16 kHz mono 16-bit WAV of `samples` zeros.
fn silent_wav(samples: u32) -> Vec<u8> {
    let data = samples * 2;
    let mut w = Vec::with_capacity(44 + data as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&32000u32.to_le_bytes()); // bytes per second
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    w.resize(44 + data as usize, 0);
    w
}

#[cfg(test)]
mod tests {
    use super::{bert_names, wav2vec2_names};

    #[test]
    fn wav2vec2_names_lose_the_head_prefix_and_old_weight_norm_names() {
        let t = || tch::Tensor::from(0f32);
        let names = [
            "wav2vec2.encoder.pos_conv_embed.conv.weight_g",
            "encoder.pos_conv_embed.conv.weight_v",
            "quantizer.codevectors",
        ];
        let renamed: Vec<String> =
            wav2vec2_names(names.iter().map(|n| (n.to_string(), t())).collect()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            renamed,
            [
                "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
                "quantizer.codevectors"
            ]
        );
    }

    #[test]
    fn bare_and_old_bert_names_become_bert_for_masked_lm_names() {
        let t = || tch::Tensor::from(0f32);
        let names = |v: Vec<(String, tch::Tensor)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let bare = vec![("embeddings.LayerNorm.gamma".to_string(), t()), ("pooler.dense.weight".to_string(), t())];
        assert_eq!(names(bert_names(bare)), ["bert.embeddings.LayerNorm.weight", "bert.pooler.dense.weight"]);
        let full = vec![
            ("bert.encoder.layer.0.output.LayerNorm.beta".to_string(), t()),
            ("cls.predictions.bias".to_string(), t()),
        ];
        assert_eq!(names(bert_names(full)), ["bert.encoder.layer.0.output.LayerNorm.bias", "cls.predictions.bias"]);
    }
}
