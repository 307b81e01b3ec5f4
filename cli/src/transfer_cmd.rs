//! `pt transfer FROM --task TASK`: the checkpoint against random initialisation on a downstream
//! task (fine-tune, linear probe, kNN), with learning curves and the speed-up.

use anyhow::Context;
use pt_core::config::Recipe;
use pt_core::plugin::Registry;
use std::path::PathBuf;

/// Tasks built into the binary (`recipes/tasks/`), by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("fashion-mnist", include_str!("../../recipes/tasks/fashion-mnist.toml")),
    ("mnist", include_str!("../../recipes/tasks/mnist.toml")),
    ("mnist-layers", include_str!("../../recipes/tasks/mnist-layers.toml")),
    ("fortunes", include_str!("../../recipes/tasks/fortunes.toml")),
    ("debian-sections", include_str!("../../recipes/tasks/debian-sections.toml")),
    ("wordnet-pos", include_str!("../../recipes/tasks/wordnet-pos.toml")),
    ("spoken-digits", include_str!("../../recipes/tasks/spoken-digits.toml")),
    ("emoji-zero-shot", include_str!("../../recipes/tasks/emoji-zero-shot.toml")),
    ("emoji-languages", include_str!("../../recipes/tasks/emoji-languages.toml")),
];

#[derive(clap::Args)]
pub struct Args {
    /// A pt run directory (its latest valid checkpoint), a checkpoint directory, a transformers
    /// BERT, ResNet or wav2vec2 directory, a timm ResNet directory or a torchvision ResNet state
    /// dict (.safetensors).
    from: PathBuf,
    /// A task file of [[eval]] entries, or a built-in task: fashion-mnist, mnist, mnist-layers, fortunes,
    /// debian-sections, wordnet-pos, spoken-digits, emoji-zero-shot, emoji-languages.
    #[arg(long)]
    task: String,
    /// Override a task setting, e.g. --set eval.0.steps=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where the report goes (default: FROM's run directory, transfer-TASK/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Evaluate the checkpoint only: skip the same evaluators from random initialisation
    /// (half the time; no speed-up is reported).
    #[arg(long)]
    no_baseline: bool,
    /// Run each arm with N seeds (the run's seed and the N − 1 after it: the evaluator's head,
    /// data order, dropout and the random initialisation) and report mean ± spread, and whether
    /// the difference exceeds the spread.
    #[arg(long, default_value_t = 1, value_name = "N")]
    seeds: u64,
    /// In a run that trained several architectures, the one to evaluate (its role, e.g.
    /// `discriminator` for ELECTRA).
    #[arg(long)]
    role: Option<String>,
    /// Build the random-init arm with this architecture setting instead of the run's, e.g.
    /// --baseline-set arch.initializer_range=0.02 when pretraining used another initialisation
    /// scale than the one that trains best from scratch (repeatable; arch. keys only).
    #[arg(long = "baseline-set", value_name = "arch.KEY=VALUE", conflicts_with = "no_baseline")]
    baseline_set: Vec<String>,
}

/// A task's text and name: a built-in task or a task file.
pub fn task_text(task: &str) -> anyhow::Result<(String, String)> {
    if let Some((n, t)) = BUILT_IN.iter().find(|(n, _)| *n == task) {
        return Ok((t.to_string(), n.to_string()));
    }
    let path = PathBuf::from(task);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading task {} (built-in tasks: {})",
            path.display(),
            BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok((text, path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (text, name) = task_text(&args.task)?;
    let task = Recipe::parse_evals(&text, &args.task, &args.set)?;
    let reg = Registry::discover();
    let (run_dir, ckpt) = pt_core::transfer::locate_or_import(&reg, &args.from)?;
    let out = args.out.unwrap_or_else(|| run_dir.join(format!("transfer-{name}")));
    std::fs::create_dir_all(&out)?;
    crate::logging::log_to_file(&out.join("transfer.log"))?;
    let mut progress = |line: &str| errln!("{line}");
    let opts = pt_core::transfer::TransferOptions {
        baseline: !args.no_baseline,
        seeds: args.seeds,
        role: args.role.clone(),
        baseline_overrides: args.baseline_set.clone(),
    };
    let report = pt_core::transfer::run(&reg, &run_dir, ckpt, task, &name, &out, &opts, &mut progress)?;
    outln!("transfer {} from {} (step {})", name, report.checkpoint.display(), report.checkpoint_step);
    if !report.baseline_overrides.is_empty() {
        outln!("random init with {}", report.baseline_overrides.join(", "));
    }
    print_table(&report, opts.baseline);
    for c in &report.comparisons {
        if let Some(s) = &c.speedup {
            match (s.step_speedup, s.time_speedup) {
                (Some(x), Some(y)) => outln!(
                    "{}: reaches the from-scratch best ({:.1} %) {x:.1}× sooner in steps, {y:.1}× in time",
                    c.evaluator,
                    s.random_best_accuracy * 100.0
                ),
                _ => outln!(
                    "{}: does not reach the from-scratch best ({:.1} %)",
                    c.evaluator,
                    s.random_best_accuracy * 100.0
                ),
            }
        }
    }
    outln!("report: {}", out.join("transfer.md").display());
    Ok(())
}

/// One row per evaluator (or metric); with several seeds, mean ± sd and the verdict.
fn print_table(report: &pt_core::transfer::TransferReport, baseline: bool) {
    let rows = pt_core::transfer::metric_rows(report);
    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max(20);
    if report.seeds.len() > 1 {
        outln!(
            "{} seeds: {}",
            report.seeds.len(),
            report.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
        match baseline {
            false => outln!("{:<width$} {:>16}", "evaluator", "pretrained"),
            true => outln!("{:<width$} {:>16} {:>16}  verdict", "evaluator", "pretrained", "random init"),
        }
        for r in &rows {
            let p = r.show_spread(&r.pretrained_seeds);
            match baseline {
                false => outln!("{:<width$} {p:>16}", r.label),
                true => outln!(
                    "{:<width$} {p:>16} {:>16}  {}",
                    r.label,
                    r.show_spread(&r.random_seeds),
                    r.verdict().unwrap_or("-")
                ),
            }
        }
        return;
    }
    match baseline {
        true => outln!("{:<width$} {:>12} {:>12}", "evaluator", "pretrained", "random init"),
        false => outln!("{:<width$} {:>12}", "evaluator", "pretrained"),
    }
    for r in &rows {
        match baseline {
            true => outln!("{:<width$} {:>12} {:>12}", r.label, r.show(r.pretrained), r.show(r.random)),
            false => outln!("{:<width$} {:>12}", r.label, r.show(r.pretrained)),
        }
    }
}
