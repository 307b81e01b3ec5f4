//! `pt transfer`: is the pretrained encoder worth it? Runs a downstream task's evaluators
//! (fine-tuning, linear probe, kNN: the `[[eval]]` entries of a task file) on a pretraining run's
//! checkpoint and on the same architecture at random initialisation, and reports final accuracy,
//! learning curves by step and by wall time, and how much sooner the pretrained model reaches
//! the from-scratch model's best accuracy.

use crate::checkpoint::manager::latest_valid;
use crate::checkpoint::Checkpoint;
use crate::config::{EvalSpec, Recipe};
use crate::plan::{RunPlan, World};
use crate::plugin::Registry;
use crate::train::eval::EvalRunner;
use crate::train::weights::load_named;
use crate::train::Session;
use crate::{Error, Result};
use pt_report::{plot_lines, LinePlot, Series};
use pt_sdk::EvalReport;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub mod import;
mod table;
pub use table::{markdown, metric_rows, MetricRow, Spread};

/// The run and checkpoint a transfer starts from: a run directory (its latest valid checkpoint),
/// a checkpoint directory inside one, or reference weights made into a run ([`import::import`]).
pub fn locate_or_import(reg: &Registry, from: &Path) -> Result<(PathBuf, Checkpoint)> {
    match import::import(reg, from)? {
        Some(run_dir) => locate(&run_dir),
        None => locate(from),
    }
}

/// The run and checkpoint a transfer starts from: a run directory (its latest valid checkpoint)
/// or a checkpoint directory inside one.
pub fn locate(from: &Path) -> Result<(PathBuf, Checkpoint)> {
    if !from.exists() {
        return Err(Error::Config(format!(
            "{}: no such file or directory (give a pt run or checkpoint directory, a transformers directory or a torchvision .safetensors)",
            from.display()
        )));
    }
    if from.join(crate::checkpoint::format::MANIFEST).is_file() {
        let ckpt = Checkpoint::open_verified(from)?;
        let run_dir = from.parent().and_then(Path::parent).map(Path::to_path_buf).ok_or_else(|| {
            Error::Config(format!("{}: a checkpoint must sit in RUN_DIR/checkpoints/", from.display()))
        })?;
        return Ok((run_dir, ckpt));
    }
    match latest_valid(&from.join("checkpoints"))? {
        Some(ckpt) => Ok((from.to_path_buf(), ckpt)),
        None => Err(Error::Config(format!(
            "{}: no checkpoint here; give a pt run directory (with checkpoints/), a checkpoint directory, a transformers (bert, resnet, wav2vec2) or timm directory or a torchvision ResNet .safetensors",
            from.display()
        ))),
    }
}

/// The pretraining run's session (its recipe, with `evals` instead of its own) with the
/// checkpoint's weights loaded into the model (and into objectives that derive evaluation
/// outputs).
/// With `role`, evaluators get that architecture of a multi-architecture run alone (ELECTRA's
/// discriminator), under its own names.
pub fn open(
    reg: &Registry,
    run_dir: &Path,
    ckpt: Checkpoint,
    evals: Vec<EvalSpec>,
    role: Option<&str>,
) -> Result<(Session, Checkpoint)> {
    let mut session = build_session(reg, run_dir, evals, &[])?;
    let mut target = session.model.parameters()?;
    target.extend(session.model.buffers()?);
    load_named(&target, &ckpt.tensors("model")?, &format!("checkpoint {}", ckpt.dir.display()))?;
    if let Some(role) = role {
        session.lend_role(role)?;
    }
    // Objectives' heads (e.g. CLIP's projections) give evaluators their `embed` outputs.
    if !session.heads().is_empty() {
        let what = format!("checkpoint {} (objective)", ckpt.dir.display());
        crate::train::weights::load_exact(&session.objective_tensors(true)?, &ckpt.tensors("objective")?, &what)?;
    }
    Ok((session, ckpt))
}

/// The run's session from its saved recipe with `evals` and `overrides` (`KEY=VALUE`).
fn build_session(reg: &Registry, run_dir: &Path, evals: Vec<EvalSpec>, overrides: &[String]) -> Result<Session> {
    let mut recipe = Recipe::load_saved(&run_dir.join("config.toml"), overrides)?;
    recipe.evals = evals;
    Session::build(RunPlan::resolve(reg, recipe, run_dir, World::default())?)
}

/// The session the random-init arm builds its models from when `--baseline-set` changes the
/// architecture (e.g. a pretraining-only initialisation scale): the run's recipe with those
/// `arch.` keys changed.
fn baseline_session(reg: &Registry, run_dir: &Path, evals: Vec<EvalSpec>, opts: &TransferOptions) -> Result<Session> {
    let mut session = build_session(reg, run_dir, evals, &opts.baseline_overrides).map_err(baseline_error)?;
    if let Some(role) = &opts.role {
        session.lend_role(role)?;
    }
    Ok(session)
}

/// Says which flag a configuration problem of the changed baseline comes from.
fn baseline_error(e: Error) -> Error {
    match e {
        Error::Config(m) => Error::Config(format!("--baseline-set: {m}")),
        Error::Composition(m) => Error::Composition(format!("--baseline-set: {m}")),
        other => other,
    }
}

/// `arch.KEY=VALUE` or `~arch.KEY`: keys outside the architecture (data, optimizer, ...) would
/// change what is compared.
fn check_baseline_override(kv: &str) -> Result<()> {
    let ok = match kv.strip_prefix('~') {
        Some(key) => key.starts_with("arch.") && !key.contains('='),
        None => kv.starts_with("arch.") && kv.contains('='),
    };
    match ok {
        true => Ok(()),
        false => Err(Error::Config(format!(
            "--baseline-set {kv}: expected arch.KEY=VALUE or ~arch.KEY (arch.ROLE.KEY with roles): only the architecture's keys change the random-init baseline"
        ))),
    }
}

/// One evaluator's result for both starting points.
#[derive(Serialize, Debug, Clone)]
pub struct Comparison {
    pub evaluator: String,
    /// With the run's seed (the first of several).
    pub pretrained: EvalReport,
    /// None with `--no-baseline` (only the checkpoint evaluated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_init: Option<EvalReport>,
    /// For evaluators with an `accuracy_by_step` curve (fine-tuning), with the run's seed.
    pub speedup: Option<Speedup>,
    /// With `--seeds N` (N > 1): every seed's report, the run's seed first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pretrained_by_seed: Vec<EvalReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub random_init_by_seed: Vec<EvalReport>,
}

/// When the pretrained run first reaches the from-scratch run's best accuracy.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Speedup {
    pub random_best_accuracy: f64,
    pub random_best_step: f64,
    pub random_best_seconds: f64,
    /// None: the pretrained run never got there.
    pub pretrained_step: Option<f64>,
    pub pretrained_seconds: Option<f64>,
    pub step_speedup: Option<f64>,
    pub time_speedup: Option<f64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct TransferReport {
    pub run_dir: PathBuf,
    pub checkpoint: PathBuf,
    pub checkpoint_step: u64,
    pub task: String,
    /// The evaluation seeds, the run's seed first.
    pub seeds: Vec<u64>,
    /// The architecture evaluated, in a run with several (`--role`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The random-init arm's architecture settings that differ from the run's (`--baseline-set`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline_overrides: Vec<String>,
    pub comparisons: Vec<Comparison>,
    pub files: Vec<PathBuf>,
}

/// How `pt transfer` runs a task.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// Also evaluate the architecture at random initialisation (false: `--no-baseline`).
    pub baseline: bool,
    /// Seeds per arm (`--seeds N`): the run's seed and the N − 1 after it.
    pub seeds: u64,
    /// The architecture to evaluate in a run with several (`--role`).
    pub role: Option<String>,
    /// `arch.KEY=VALUE` settings the random-init arm uses instead of the run's
    /// (`--baseline-set`), e.g. the default initialisation scale when pretraining used another.
    pub baseline_overrides: Vec<String>,
}

/// The first point of `curve` at or above `target`.
fn first_reaching(curve: &[(f64, f64)], target: f64) -> Option<f64> {
    curve.iter().find(|(_, acc)| *acc >= target - 1e-12).map(|(x, _)| *x)
}

/// The points of `report`'s `name` curve after training started: an LP-FT head's step-0 point
/// (its probe) is where fine-tuning starts, not a step it took.
fn trained_points(report: &EvalReport, name: &str) -> Option<Vec<(f64, f64)>> {
    let by_step = report.curves.get("accuracy_by_step")?;
    let curve = report.curves.get(name)?;
    Some(curve.iter().zip(by_step).filter(|(_, (step, _))| *step > 0.0).map(|(p, _)| *p).collect())
}

pub fn speedup(pretrained: &EvalReport, random: &EvalReport) -> Option<Speedup> {
    let (p_step, r_step) =
        (trained_points(pretrained, "accuracy_by_step")?, trained_points(random, "accuracy_by_step")?);
    let (p_time, r_time) =
        (trained_points(pretrained, "accuracy_by_seconds")?, trained_points(random, "accuracy_by_seconds")?);
    let best = r_step.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() {
        return None;
    }
    let random_best_step = first_reaching(&r_step, best)?;
    let random_best_seconds = first_reaching(&r_time, best)?;
    let pretrained_step = first_reaching(&p_step, best);
    let pretrained_seconds = first_reaching(&p_time, best);
    Some(Speedup {
        random_best_accuracy: best,
        random_best_step,
        random_best_seconds,
        pretrained_step,
        pretrained_seconds,
        step_speedup: pretrained_step.map(|s| random_best_step / s.max(1e-9)),
        time_speedup: pretrained_seconds.map(|s| random_best_seconds / s.max(1e-9)),
    })
}

/// Runs `task` (`[[eval]]` entries) on the checkpoint and, with a baseline, at random
/// initialisation, each with every seed; writes `transfer.json`, `transfer.md` and the
/// learning-curve PNGs into `out`. `run_dir` and `ckpt` come from [`locate`]. `progress` hears
/// one line as each evaluation starts and one as it ends (they take minutes on a CPU).
#[allow(clippy::too_many_arguments)]
pub fn run(
    reg: &Registry,
    run_dir: &Path,
    ckpt: Checkpoint,
    task: Vec<EvalSpec>,
    task_name: &str,
    out: &Path,
    opts: &TransferOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<TransferReport> {
    if !(1..=100).contains(&opts.seeds) {
        return Err(Error::Config(format!("--seeds {} must be 1 to 100", opts.seeds)));
    }
    if !opts.baseline && !opts.baseline_overrides.is_empty() {
        return Err(Error::Config("--baseline-set changes the random-init baseline: drop --no-baseline".into()));
    }
    opts.baseline_overrides.iter().try_for_each(|kv| check_baseline_override(kv))?;
    let (session, ckpt) = open(reg, run_dir, ckpt, task.clone(), opts.role.as_deref())?;
    let changed_baseline = match opts.baseline_overrides.is_empty() {
        true => None,
        false => Some(baseline_session(reg, run_dir, task.clone(), opts)?),
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let first = session.plan.recipe.run.seed;
    let seeds: Vec<u64> = (0..opts.seeds).map(|i| first.wrapping_add(i)).collect();
    let arms = if opts.baseline { 2 } else { 1 } * task.len() * seeds.len();
    let mut done = 0;
    let mut comparisons = Vec::new();
    for (i, spec) in task.iter().enumerate() {
        let mut runner = EvalRunner::create(&session, i)?;
        // A changed baseline gets its own evaluator, bound to its own architecture (taps, feature
        // width): a change the evaluator cannot read fails here, before any arm runs.
        let mut changed = match &changed_baseline {
            Some(b) => Some((b, EvalRunner::create(b, i).map_err(baseline_error)?)),
            None => None,
        };
        let mut arm = |random: bool, seed: u64| -> Result<EvalReport> {
            let what = if random { "from random initialisation" } else { "from the checkpoint" };
            let with = if seeds.len() > 1 { format!(", seed {seed}") } else { String::new() };
            progress(&format!("[{}/{arms}] {} {what}{with} …", done + 1, spec.label()));
            let started = std::time::Instant::now();
            let report = match (random, changed.as_mut()) {
                (true, Some((baseline, changed_runner))) => {
                    changed_runner.run_seeded(baseline, &baseline.model, ckpt.manifest.step, true, seed)?
                }
                _ => runner.run_seeded(&session, &session.model, ckpt.manifest.step, random, seed)?,
            };
            done += 1;
            progress(&format!(
                "[{done}/{arms}] {} {what}{with}: done in {:.1} s",
                spec.label(),
                started.elapsed().as_secs_f64()
            ));
            Ok(report)
        };
        let (mut pretrained, mut random_init) = (Vec::new(), Vec::new());
        for &seed in &seeds {
            pretrained.push(arm(false, seed)?);
            if opts.baseline {
                random_init.push(arm(true, seed)?);
            }
        }
        let speedup = random_init.first().and_then(|r| speedup(&pretrained[0], r));
        let several = seeds.len() > 1;
        comparisons.push(Comparison {
            evaluator: spec.label().to_string(),
            pretrained: pretrained[0].clone(),
            random_init: random_init.first().cloned(),
            speedup,
            pretrained_by_seed: if several { pretrained } else { Vec::new() },
            random_init_by_seed: if several { random_init } else { Vec::new() },
        });
    }
    let mut report = TransferReport {
        run_dir: session.run_dir().to_path_buf(),
        checkpoint: ckpt.dir.clone(),
        checkpoint_step: ckpt.manifest.step,
        task: task_name.to_string(),
        seeds,
        role: opts.role.clone(),
        baseline_overrides: opts.baseline_overrides.clone(),
        comparisons,
        files: Vec::new(),
    };
    report.files = write_report(&report, out)?;
    Ok(report)
}

fn write_report(report: &TransferReport, out: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for c in &report.comparisons {
        for (curve, x_label, suffix) in [
            ("accuracy_by_step", "fine-tuning step", "steps"),
            ("accuracy_by_seconds", "seconds of fine-tuning", "time"),
        ] {
            let Some(p) = c.pretrained.curves.get(curve) else {
                continue;
            };
            let random = c.random_init.as_ref().and_then(|r| r.curves.get(curve));
            let percent = |points: &Vec<(f64, f64)>| points.iter().map(|(x, y)| (*x, y * 100.0)).collect();
            let mut series = vec![Series { name: "pretrained".into(), points: percent(p) }];
            series.extend(random.map(|r| Series { name: "random init".into(), points: percent(r) }));
            let versus = if random.is_some() { " vs random init" } else { "" };
            let plot = LinePlot {
                title: format!("{}: {} from step {}{versus}", report.task, c.evaluator, report.checkpoint_step),
                x_label: x_label.into(),
                y_label: "test accuracy (%)".into(),
                series,
                ..Default::default()
            };
            let path = out.join(format!("{}-{suffix}.png", c.evaluator));
            plot_lines(&path, &plot).map_err(|e| Error::Training(format!("drawing {}: {e}", path.display())))?;
            files.extend([path.with_extension("svg"), path.with_extension("csv"), path]);
        }
    }
    let json = out.join("transfer.json");
    let text = serde_json::to_string_pretty(report).map_err(|e| Error::Training(e.to_string()))?;
    std::fs::write(&json, text).map_err(|e| Error::io(format!("writing {}", json.display()), e))?;
    files.push(json);
    let md = out.join("transfer.md");
    std::fs::write(&md, markdown(report, &files)).map_err(|e| Error::io(format!("writing {}", md.display()), e))?;
    files.push(md);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(by_step: &[(f64, f64)], by_time: &[(f64, f64)]) -> EvalReport {
        let mut r = EvalReport::default();
        r.curves.insert("accuracy_by_step".into(), by_step.to_vec());
        r.curves.insert("accuracy_by_seconds".into(), by_time.to_vec());
        r
    }

    #[test]
    fn speedup_is_measured_at_the_from_scratch_best() {
        let random = report(&[(50.0, 0.4), (100.0, 0.6), (150.0, 0.6)], &[(5.0, 0.4), (10.0, 0.6), (15.0, 0.6)]);
        let pretrained = report(&[(50.0, 0.62), (100.0, 0.7)], &[(4.0, 0.62), (8.0, 0.7)]);
        let s = speedup(&pretrained, &random).unwrap();
        assert_eq!((s.random_best_step, s.random_best_seconds, s.pretrained_step), (100.0, 10.0, Some(50.0)));
        assert_eq!(s.step_speedup, Some(2.0));
        assert_eq!(s.time_speedup, Some(2.5));
        let worse = report(&[(50.0, 0.3), (100.0, 0.5)], &[(4.0, 0.3), (8.0, 0.5)]);
        let s = speedup(&worse, &random).unwrap();
        assert_eq!((s.pretrained_step, s.step_speedup), (None, None));
        assert!(speedup(&EvalReport::default(), &random).is_none(), "no curves, no speed-up");
    }

    #[test]
    fn an_lp_ft_heads_starting_point_is_not_a_step() {
        // Step 0 is the probe the head starts from: the pretrained probe alone reaching random
        // init's best must not read as an infinite speed-up, nor random init's probe as its best.
        let random = report(&[(0.0, 0.7), (50.0, 0.5), (100.0, 0.6)], &[(1.0, 0.7), (5.0, 0.5), (10.0, 0.6)]);
        let pretrained = report(&[(0.0, 0.65), (50.0, 0.6), (100.0, 0.7)], &[(1.0, 0.65), (4.0, 0.6), (8.0, 0.7)]);
        let s = speedup(&pretrained, &random).unwrap();
        assert_eq!((s.random_best_accuracy, s.random_best_step, s.pretrained_step), (0.6, 100.0, Some(50.0)));
        assert_eq!((s.step_speedup, s.time_speedup), (Some(2.0), Some(2.5)));
    }
}
