//! `pt embed FROM -o OUT`: a checkpoint's feature vectors for a dataset — the run's own, a
//! task's split or any dataset pt reads — at the layers asked, as safetensors or `.npz`.

use crate::progress::Counter;
use pt_core::config::{EvalSpec, Recipe};
use pt_core::embed::{embed, write_summary, EmbedOptions};
use pt_core::plugin::Registry;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A pt run directory (its latest valid checkpoint), a checkpoint directory, a transformers
    /// BERT, ResNet or wav2vec2 directory, a timm ResNet directory or a torchvision ResNet state
    /// dict (.safetensors).
    from: PathBuf,
    /// The output file: .safetensors or .npz (NumPy), described by OUT.json beside it
    /// (feats.safetensors → feats.safetensors.json).
    #[arg(short, long, required_unless_present = "list_layers")]
    out: Option<PathBuf>,
    /// Print the model's feature taps and per-sample outputs (what --layer takes) and stop.
    #[arg(long)]
    list_layers: bool,
    /// A feature tap (`layer3`), `features` (the default) or a per-sample model output
    /// (`image/embedding`); repeat for several. `--list-layers` lists them.
    #[arg(long = "layer", value_name = "LAYER")]
    layers: Vec<String>,
    /// A dataset component (`image_folder`, `jsonl`, `audio_folder`, ...) configured with --set;
    /// without --data or --task: the run's own training data.
    #[arg(long, conflicts_with = "task")]
    data: Option<String>,
    /// A task file or built-in task whose split to embed (see --split).
    #[arg(long)]
    task: Option<String>,
    /// The task's split.
    #[arg(long, default_value = "test", requires = "task")]
    split: String,
    /// A setting of the dataset given by --data or of the task's split, e.g. --set path=~/photos
    /// (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// In a run that trained several architectures, the one to embed with (its role).
    #[arg(long)]
    role: Option<String>,
    /// At most N samples, from the first (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    limit: u64,
    #[arg(long, default_value_t = 256)]
    batch_size: u64,
}

/// The `[[eval]]` entry whose split holds the data (`data` for --data), with --set applied.
fn data_spec(args: &Args) -> anyhow::Result<Option<EvalSpec>> {
    let sets = |at: usize, split: &str| -> Vec<String> {
        args.set.iter().map(|s| format!("eval.{at}.splits.{split}.{s}")).collect()
    };
    if let Some(name) = &args.data {
        // One evaluation entry holding the dataset as its split `data`: the plan then builds it
        // as it builds a task's splits (run-relative paths, the run's tokenizer filled in).
        let text = format!("[[eval]]\nname = \"knn\"\nsplits.data = {{ name = {} }}\n", toml_string(name));
        return Ok(Recipe::parse_evals(&text, "--data", &sets(0, "data"))?.into_iter().next());
    }
    let Some(task) = &args.task else {
        if !args.set.is_empty() {
            anyhow::bail!("--set needs --data or --task: without them pt embed reads the run's own data as trained");
        }
        return Ok(None);
    };
    let (text, _) = crate::transfer_cmd::task_text(task)?;
    let specs = Recipe::parse_evals(&text, task, &[])?;
    let Some(at) = specs.iter().position(|s| s.splits.contains_key(&args.split)) else {
        let mut names: Vec<&str> = specs.iter().flat_map(|s| s.splits.keys().map(String::as_str)).collect();
        names.sort();
        names.dedup();
        anyhow::bail!("task {task} has no '{}' split (its splits: {})", args.split, names.join(", "));
    };
    Ok(Recipe::parse_evals(&text, task, &sets(at, &args.split))?.into_iter().nth(at))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        pt_core::embed::output_format(out)?; // before minutes of loading, not after
    }
    let spec = data_spec(&args)?;
    let reg = Registry::discover();
    let (run_dir, ckpt) = pt_core::transfer::locate_or_import(&reg, &args.from)?;
    if let (Some(source), None) = (pt_core::transfer::import::imported_from(&run_dir), &spec) {
        if !args.list_layers {
            anyhow::bail!(
                "{source}: reference weights have no data of their own: give --data NAME --set … or --task TASK"
            );
        }
    }
    if args.list_layers {
        let (session, _) = pt_core::transfer::open(&reg, &run_dir, ckpt, Vec::new(), args.role.as_deref())?;
        return list_layers(&session);
    }
    let out = args.out.clone().expect("clap requires -o without --list-layers");
    let evals: Vec<EvalSpec> = spec.into_iter().collect();
    let split = if args.data.is_some() { "data".to_string() } else { args.split.clone() };
    let (mut session, ckpt) = pt_core::transfer::open(&reg, &run_dir, ckpt, evals.clone(), args.role.as_deref())?;
    let data = match evals.is_empty() {
        true => None,
        false => Some(pt_core::train::eval::eval_splits(&session, 0)?.into_iter().find(|(n, _)| *n == split)),
    };
    let data = match data {
        None => session.data.clone(),
        Some(Some((_, d))) => std::sync::Arc::new(d),
        Some(None) => anyhow::bail!("no '{split}' split was built"),
    };
    let opts = EmbedOptions { layers: args.layers.clone(), batch_size: args.batch_size, limit: args.limit };
    let mut counter = Counter::new("embedding");
    let embedding = embed((&mut session, &ckpt), &data, &opts, &out, &mut |done, all| counter.set(done, all))?;
    counter.finish();
    let summary = write_summary(&embedding, &out)?;
    println!(
        "{} samples of {} through {} (step {}):",
        embedding.samples,
        data.origin,
        ckpt.dir.display(),
        ckpt.manifest.step
    );
    for a in &embedding.arrays {
        println!("  {:<24} [{}, {}]", a.key, embedding.samples, a.dim);
    }
    println!("  {:<24} [{}]", "sample_index", embedding.samples);
    if !embedding.classes.is_empty() {
        println!("  {:<24} [{}] ({} classes)", "label", embedding.samples, embedding.classes.len());
    }
    println!("wrote {} and {}", out.display(), summary.display());
    Ok(())
}

/// The taps (input to output) and the other outputs --layer may name.
fn list_layers(session: &pt_core::train::Session) -> anyhow::Result<()> {
    let info = &session.model.info;
    println!("feature taps of {} (--layer NAME; `layer` in linear_probe, knn, finetune):", session.model.origin);
    if info.taps.is_empty() {
        println!("  (none declared)");
    }
    for t in &info.taps {
        println!("  {:<14} [{:>5}]  {}", t.name, t.dim, t.description);
    }
    let dim = info.feature_dim.map(|d| d.to_string()).unwrap_or_else(|| "?".into());
    println!("  {:<14} [{dim:>5}]  the architecture's features (the default)", "features");
    let others: Vec<String> =
        session.eval_outputs().into_iter().filter(|o| o != "features" && !o.starts_with("features.")).collect();
    if !others.is_empty() {
        println!("other outputs (usable when one vector per sample): {}", others.join(", "));
    }
    Ok(())
}
