//! `pt export CKPT OUT`: a directory the reference implementation loads with `from_pretrained`:
//! `config.json` (the architecture's reference config), `model.safetensors` (the checkpoint's
//! model weights, already under reference names) and the run's assets (tokenizer files).

use anyhow::Context;
use pt_core::checkpoint::Checkpoint;
use pt_core::components::{ArchHandle, ObjectiveHandle};
use pt_core::config::{DeviceSetting, Recipe};
use pt_core::plan::{RunPlan, World};
use pt_core::plugin::Registry;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint directory (runs/NAME/checkpoints/step-…), a run directory (its latest), a
    /// transformers BERT, ResNet or wav2vec2 directory or a torchvision ResNet state dict
    /// (.safetensors).
    checkpoint: PathBuf,
    /// Output directory: created, or replaced with --force (never a checkpoint's).
    output: PathBuf,
    /// Replace OUTPUT when it exists and is not empty.
    #[arg(long)]
    force: bool,
    /// In a run with several architectures, the one to export (its role: `image`, `text`).
    #[arg(long)]
    role: Option<String>,
    /// The format, as the architecture offers them: `hf` (transformers' from_pretrained),
    /// `torchvision` (ResNets' state dict), `timm` (a timm model directory); default: the
    /// architecture's first (an unknown one is refused with the list, and the output says what
    /// loads it).
    #[arg(long)]
    format: Option<String>,
}

/// Refuses an output that would overwrite a checkpoint, or another directory without --force.
fn check_output(out: &Path, force: bool) -> anyhow::Result<()> {
    let absolute = std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?;
    for dir in absolute.ancestors() {
        let in_checkpoints = dir.file_name().is_some_and(|n| n == "checkpoints")
            && dir.parent().is_some_and(|r| r.join("config.toml").exists());
        if dir.join("manifest.json").exists() || in_checkpoints {
            anyhow::bail!(
                "{}: will not export into a run's checkpoints ({}): choose a directory outside it",
                out.display(),
                dir.display()
            );
        }
    }
    if out.is_file() {
        anyhow::bail!("{} is a file: give a directory to export into", out.display());
    }
    let non_empty = std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !force {
        anyhow::bail!(
            "{} exists and is not empty: pass --force to replace it, or choose another directory",
            out.display()
        );
    }
    Ok(())
}

/// The export is written into a sibling directory and renamed into place at the end, so a
/// failure (a full disk) leaves no half-written export and the old OUTPUT as it was; dropped
/// unfinished, it removes itself.
struct Staging {
    dir: PathBuf,
    done: bool,
}

impl Staging {
    fn new(out: &Path) -> anyhow::Result<Staging> {
        let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "export".into());
        let dir = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging { dir, done: false })
    }

    /// Moves the finished export to `out` (the old `out`, if any, is removed only after).
    fn commit(mut self, out: &Path) -> anyhow::Result<()> {
        let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "export".into());
        let old = out.with_file_name(format!(".{name}.old-{}", std::process::id()));
        let replaced = out.exists();
        if replaced {
            std::fs::rename(out, &old).with_context(|| format!("moving the old {} aside", out.display()))?;
        }
        std::fs::rename(&self.dir, out).with_context(|| format!("moving the export to {}", out.display()))?;
        self.done = true;
        if replaced {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing the old {}", old.display()))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What each objective of the run says about exports (built from the saved config).
fn objective_infos(plan: &RunPlan) -> anyhow::Result<Vec<pt_sdk::ObjectiveInfo>> {
    let mut infos = Vec::new();
    for (objective, term) in plan.objectives.iter().zip(plan.recipe.objectives()) {
        let config = plan.build_config(&term.component, &Default::default());
        infos.push(ObjectiveHandle::create(objective, &config, &plan.create_ctx())?.info);
    }
    Ok(infos)
}

fn resolve(path: &Path) -> anyhow::Result<Checkpoint> {
    if path.join("manifest.json").exists() {
        return Ok(Checkpoint::open_verified(path)?);
    }
    pt_core::checkpoint::manager::latest_valid(&path.join("checkpoints"))?.with_context(|| {
        format!("{} is neither a checkpoint nor a run directory with a valid checkpoint", path.display())
    })
}

/// For a tokenizer.json without its Hugging Face companion file, the minimal one
/// `AutoTokenizer` needs, with the special tokens the tokenizer defines.
fn tokenizer_config(tokenizer_json: &Path, max_len: Option<i64>) -> anyhow::Result<serde_json::Value> {
    let tok: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tokenizer_json)?)?;
    let added: Vec<String> = tok["added_tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["content"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    let mut cfg = serde_json::json!({ "tokenizer_class": "PreTrainedTokenizerFast" });
    for (key, token) in [
        ("pad_token", "[PAD]"),
        ("unk_token", "[UNK]"),
        ("cls_token", "[CLS]"),
        ("sep_token", "[SEP]"),
        ("mask_token", "[MASK]"),
    ] {
        if added.iter().any(|a| a == token) {
            cfg[key] = token.into();
        }
    }
    if let Some(n) = max_len {
        cfg["model_max_length"] = n.into();
    }
    Ok(cfg)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    check_output(&args.output, args.force)?;
    let reg = Registry::discover();
    let imported = pt_core::transfer::import::import(&reg, &args.checkpoint)?;
    let ckpt = resolve(imported.as_deref().unwrap_or(&args.checkpoint))?;
    let mut recipe =
        Recipe::parse_saved(&ckpt.manifest.config, &format!("{} (saved config)", ckpt.dir.display()), &[])?;
    recipe.run.device = DeviceSetting::Cpu;
    // The saved config holds every value the run used, so the plan wires nothing.
    let plan = RunPlan::resolve(&reg, recipe, &ckpt.dir, World::default())?;
    let specs = plan.recipe.arch.iter();
    let roles: Vec<&str> = specs.iter().filter_map(|(role, _)| *role).collect();
    let index = match (&args.role, roles.is_empty()) {
        (None, true) => 0,
        (None, false) => anyhow::bail!(
            "{}: the run trained several architectures ({}): pass --role ROLE to export one",
            ckpt.dir.display(),
            roles.join(", ")
        ),
        (Some(r), _) => specs.iter().position(|(role, _)| *role == Some(r.as_str())).ok_or_else(|| {
            anyhow::anyhow!(
                "--role {r}: {} has {}",
                ckpt.dir.display(),
                if roles.is_empty() {
                    "a single architecture: drop --role".to_string()
                } else {
                    format!("roles {}", roles.join(", "))
                }
            )
        })?,
    };
    let (role, spec) = specs[index];
    let arch_plan = &plan.archs[index].1;
    let arch = ArchHandle::create(arch_plan, &plan.build_config(spec, &Default::default()), &plan.create_ctx())?;
    let recipe = &plan.recipe;
    if arch.info.config.is_null() {
        anyhow::bail!("architecture {} does not describe a reference config, so it cannot be exported", arch.origin);
    }
    let objectives = objective_infos(&plan)?;
    let formats = crate::export_format::available(&arch, &objectives)?;
    let chosen = crate::export_format::pick(formats, args.format.as_deref(), &arch.origin)?;
    if let (Some(_), Some(_)) = (&imported, &chosen.objective_names) {
        anyhow::bail!(
            "{}: --format {} writes an objective's weights too, and imported reference weights hold the model only: export a pt run trained with that objective",
            args.checkpoint.display(),
            chosen.spec.name
        );
    }
    let format = &chosen.spec;
    let staging = Staging::new(&args.output)?;
    let out = staging.dir.clone();
    let mut files = vec!["model.safetensors".to_string()];
    if !format.config.is_null() {
        std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&format.config)?)?;
        files.insert(0, "config.json".into());
    }
    let started = std::time::Instant::now();
    let bytes = std::fs::metadata(ckpt.dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    if bytes > 100 << 20 {
        tracing::info!(target: "progress", "exporting from a checkpoint of {} MB …", bytes >> 20);
    }
    let tensors = crate::export_format::tensors(&ckpt.dir, role, &chosen)?;
    pt_core::checkpoint::format::write_tensors(&out.join("model.safetensors"), &tensors)?;
    let assets = ckpt.dir.join("assets");
    // A tokenizer goes with the architectures that read tokens.
    if assets.is_dir() && (role.is_none() || arch.info.inputs.iter().any(|i| i == "input_ids")) {
        for e in std::fs::read_dir(&assets)?.flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), out.join(e.file_name()))?;
                files.push(e.file_name().to_string_lossy().to_string());
            }
        }
        let tok = out.join("tokenizer.json");
        if tok.exists() && !out.join("tokenizer_config.json").exists() {
            let max_len = arch.info.config["max_position_embeddings"].as_i64();
            std::fs::write(
                out.join("tokenizer_config.json"),
                serde_json::to_string_pretty(&tokenizer_config(&tok, max_len)?)?,
            )?;
            files.push("tokenizer_config.json".into());
        }
    }
    if format.name.starts_with("hf") && arch.info.config["model_type"] == "wav2vec2" {
        // What `AutoFeatureExtractor` needs to turn raw audio into the model's input as pt's
        // `audio` dataset does (16 kHz, per-clip normalisation, zero padding).
        let normalize = recipe.data.config.get("normalize").and_then(|v| v.as_bool()).unwrap_or(true);
        let rate = recipe.data.config.get("sample_rate").and_then(|v| v.as_integer()).unwrap_or(16000);
        let preprocessor = serde_json::json!({
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": 1,
            "sampling_rate": rate,
            "padding_value": 0.0,
            "padding_side": "right",
            "do_normalize": normalize,
            "return_attention_mask": true,
        });
        std::fs::write(out.join("preprocessor_config.json"), serde_json::to_string_pretty(&preprocessor)?)?;
        files.push("preprocessor_config.json".into());
    }
    staging.commit(&args.output)?;
    println!(
        "exported step {} of {} as {} to {} in {:.1} s: {}",
        ckpt.manifest.step,
        arch.origin,
        format.name,
        args.output.display(),
        started.elapsed().as_secs_f64(),
        files.join(", ")
    );
    println!("load with: {}", format.loads_with.replace("DIR", &args.output.display().to_string()));
    Ok(())
}
