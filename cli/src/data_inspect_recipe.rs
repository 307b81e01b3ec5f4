//! `pt data inspect RECIPE`: the recipe's `[data]` built exactly as `pt train` builds it (the
//! same plan and config, in a scratch run directory), described; `--read-all` reads every
//! sample once and names those that fail.

use anyhow::Context;
use pt_core::components::DatasetHandle;
use pt_core::config::Recipe;
use pt_core::plan::{RunPlan, World};
use pt_core::plugin::Registry;
use pt_sdk::{DatasetInfo, StepCtx};
use std::path::Path;

pub fn inspect_recipe(recipe: &str, set: &[String], read_all: bool) -> anyhow::Result<()> {
    let (text, origin) = if Path::new(recipe).is_file() {
        (std::fs::read_to_string(recipe).with_context(|| format!("reading recipe {recipe}"))?, recipe.to_string())
    } else if let Some(text) = crate::recipes::find(recipe) {
        (text.to_string(), format!("built-in recipe {recipe}"))
    } else {
        anyhow::bail!(
            "{recipe}: no such file or folder, and no built-in recipe of that name (built-in: {})",
            crate::recipes::names().join(", ")
        );
    };
    let recipe = Recipe::parse(&text, &origin, set)?;
    let scratch = tempfile::tempdir().context("creating a scratch run directory")?;
    let plan = RunPlan::resolve(&Registry::discover(), recipe, scratch.path(), World::default())?;
    let config = plan.build_config(&plan.recipe.data, &Default::default());
    let started = std::time::Instant::now();
    let data = DatasetHandle::create(&plan.data, &config, &plan.create_ctx())?;
    outln!("{} ([data] of {origin}), opened in {:.1}s", data.origin, started.elapsed().as_secs_f64());
    describe(&data.info);
    if read_all {
        let ctx =
            StepCtx { seed: plan.recipe.run.seed, epoch: 0, step: 0, rank: 0, world_size: 1, device: -1, train: false };
        read_every_sample(&data, &ctx)?;
    }
    Ok(())
}

fn describe(info: &DatasetInfo) {
    outln!("  samples: {}", info.num_samples);
    for f in &info.fields {
        let served = if f.on_device.is_some() { " (served as uint8, normalised on the device)" } else { "" };
        outln!("  field {}: {} {:?}{served} {}", f.name, f.dtype, f.shape, f.description);
    }
    if !info.classes.is_empty() {
        let counts: Vec<String> = info
            .classes
            .iter()
            .enumerate()
            .take(20)
            .map(|(i, c)| format!("{c} {}", info.class_counts.get(i).map_or("?".into(), |n| n.to_string())))
            .collect();
        let more = if info.classes.len() > 20 { ", …" } else { "" };
        outln!("  classes ({}): {}{more}", info.classes.len(), counts.join(", "));
    }
    if !info.lengths.is_empty() {
        let mut sorted = info.lengths.clone();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        outln!(
            "  lengths: min {}, median {}, p90 {}, max {} (the dataset's unit: tokens or audio samples)",
            at(0.0),
            at(0.5),
            at(0.9),
            at(1.0)
        );
    }
    for (k, v) in &info.notes {
        outln!("  {k}: {v}");
    }
}

/// Reads every sample in batches of 64 (a failing batch sample by sample); names the failures.
fn read_every_sample(data: &DatasetHandle, ctx: &StepCtx) -> anyhow::Result<()> {
    let n = data.info.num_samples;
    let mut failed: Vec<(u64, String)> = Vec::new();
    let started = std::time::Instant::now();
    for start in (0..n).step_by(64) {
        let idx: Vec<u64> = (start..(start + 64).min(n)).collect();
        if data.get_batch(&idx, ctx).is_ok() {
            continue;
        }
        for &i in &idx {
            if let Err(e) = data.get_batch(&[i], ctx) {
                failed.push((i, e.to_string()));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    outln!("  read all {n} samples in {secs:.1}s ({:.0}/s): {} failed", n as f64 / secs.max(1e-9), failed.len());
    for (i, why) in failed.iter().take(10) {
        outln!("    sample {i}: {why}");
    }
    if failed.len() > 10 {
        outln!("    … and {} more", failed.len() - 10);
    }
    match failed.first() {
        None => Ok(()),
        Some((i, why)) => {
            anyhow::bail!("{} of {n} samples could not be read (the first, sample {i}: {why})", failed.len())
        }
    }
}
