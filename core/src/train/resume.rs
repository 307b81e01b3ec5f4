//! Where a run starts: from the run directory's latest valid checkpoint (weights, optimizer
//! state, step and data cursor), from other weights (`--init-from`), or from scratch.

use super::session::Session;
use super::weights::{load_exact, load_named, read_weights, LoadReport};
use crate::checkpoint::manager::{latest_valid, list_steps};
use crate::checkpoint::{Checkpoint, CursorState};
use crate::config::{changes, Change, InitFrom, Recipe};
use crate::plan::{RunPlan, World};
use crate::plugin::Registry;
use crate::{Error, Result};
use pt_optim::Optimizer;
use std::path::Path;
use tch::Tensor;

/// The architecture's parameters and buffers, by name (what `model.safetensors` holds).
pub fn named_model(session: &Session) -> Result<Vec<(String, Tensor)>> {
    let mut v = session.model.parameters()?;
    v.extend(session.model.buffers()?);
    Ok(v)
}

/// The objectives' parameters and buffers (what `objective.safetensors` holds).
pub fn named_objective(session: &Session) -> Result<Vec<(String, Tensor)>> {
    session.objective_tensors(true)
}

/// What the run continues from.
pub struct Start {
    pub checkpoint: Option<Checkpoint>,
    /// What `--init-from` loaded (None without it, or when resuming).
    pub init_report: Option<LoadReport>,
}

/// Loads the weights the run starts from into the session: the latest valid checkpoint when
/// `resume` finds one, else `[run] init_from`'s weights, else nothing (random initialisation).
pub fn load_start(session: &Session, resume: bool) -> Result<Start> {
    let init_from = session.plan.recipe.run.init_sources();
    let root = session.run_dir().join("checkpoints");
    let checkpoint = if resume { latest_valid(&root)? } else { None };
    let saved = list_steps(&root);
    if let (true, None, Some((last, _))) = (resume, &checkpoint, saved.last()) {
        return Err(Error::Checkpoint(format!(
            "no valid checkpoint in {}: its {} checkpoint(s), up to step {last}, all fail verification (`pt checkpoint list {}` says why); nothing was changed. Pass --restart to start over from step 0 (the checkpoints and metrics so far are kept aside)",
            session.run_dir().display(),
            saved.len(),
            session.run_dir().display()
        )));
    }
    if let Some(c) = &checkpoint {
        let what = |file: &str| format!("resuming from {}", c.dir.join(file).display());
        load_exact(&named_model(session)?, &c.tensors("model")?, &what("model.safetensors"))?;
        load_exact(&named_objective(session)?, &c.tensors("objective")?, &what("objective.safetensors"))?;
        return Ok(Start { checkpoint, init_report: None });
    }
    if init_from.is_empty() {
        return Ok(Start { checkpoint, init_report: None });
    }
    let mut total = LoadReport::default();
    for init in &init_from {
        let report = load_init(session, init)?;
        let named = |names: Vec<String>| -> Vec<String> {
            match &init.role {
                Some(role) => names.into_iter().map(|n| format!("{role}.{n}")).collect(),
                None => names,
            }
        };
        total.loaded += report.loaded;
        total.missing.extend(named(report.missing));
        total.unexpected.extend(named(report.unexpected));
    }
    Ok(Start { checkpoint, init_report: Some(total) })
}

/// One `--init-from`: the file's tensors copied by name into the model (or one role's
/// architecture, whose names the file may carry with or without the `role.` prefix).
fn load_init(session: &Session, init: &InitFrom) -> Result<LoadReport> {
    let what = match &init.role {
        Some(role) => format!("init_from '{role}={}'", init.path.display()),
        None => format!("init_from '{}'", init.path.display()),
    };
    let target = match &init.role {
        None => named_model(session)?,
        Some(role) => {
            let tower = session.model.tower(role).map_err(|e| Error::Config(format!("{what}: {e}")))?;
            let mut own = tower.arch.parameters()?;
            own.extend(tower.arch.buffers()?);
            own
        }
    };
    if !init.path.exists() {
        return Err(Error::Config(format!(
            "{what}: no such file or directory (give a pt run or checkpoint directory, a Hugging Face model directory or a .safetensors file)"
        )));
    }
    // A run directory: its latest valid checkpoint.
    let path = match init.path.join("config.toml").is_file() {
        false => init.path.clone(),
        true => match latest_valid(&init.path.join("checkpoints"))? {
            Some(c) => c.dir,
            None => return Err(Error::Checkpoint(format!("{what}: the run has no valid checkpoint"))),
        },
    };
    let mut src = read_weights(&path)?;
    if let Some(role) = &init.role {
        let prefix = format!("{role}.");
        if src.iter().any(|(n, _)| n.starts_with(&prefix)) {
            src = src.into_iter().filter_map(|(n, t)| n.strip_prefix(&prefix).map(|n| (n.to_string(), t))).collect();
        }
    }
    let report = load_named(&target, &src, &what)?;
    if report.loaded == 0 {
        return Err(Error::Checkpoint(format!(
            "{what}: none of its {} tensors match the model's parameter names (e.g. model has '{}', file has '{}')",
            src.len(),
            report.missing.first().map(String::as_str).unwrap_or("-"),
            report.unexpected.first().map(String::as_str).unwrap_or("-")
        )));
    }
    Ok(report)
}

/// The training position a checkpoint holds.
pub struct Position {
    pub step: u64,
    pub cursor: CursorState,
    pub skipped: u64,
}

/// Restores the optimizer state of `checkpoint` and returns its position, the cursor
/// rescaled to this run's `world_size`.
pub fn restore_position(
    checkpoint: &Checkpoint,
    optimizer: &mut dyn Optimizer,
    params: &pt_optim::FlatParams,
    world_size: u64,
) -> Result<Position> {
    // Verification required optimizer.safetensors; load_state requires each of its entries.
    let state = checkpoint.tensors("optimizer")?;
    pt_optim::load_saved_state(optimizer, params, state).map_err(|e| {
        Error::Checkpoint(format!("{}: optimizer state does not fit this run: {}", checkpoint.dir.display(), e.message))
    })?;
    let m = &checkpoint.manifest;
    Ok(Position { step: m.step, cursor: rescale_cursor(m.cursor, m.world_size, world_size), skipped: m.skipped_steps })
}

/// A checkpoint's cursor for a different number of processes. The cursor counts global
/// micro-batches of batch_size × world_size samples; the samples consumed stay the same, rounded
/// down to a whole global batch of the new world (those few samples are seen again).
pub fn rescale_cursor(cursor: CursorState, saved_world: u64, world: u64) -> CursorState {
    if saved_world == world || world == 0 {
        return cursor;
    }
    let micro_batch = cursor.micro_batch * saved_world.max(1) / world;
    if micro_batch * world != cursor.micro_batch * saved_world.max(1) {
        tracing::warn!(
            saved_world,
            world,
            "resuming with another world size: the epoch's position is rounded down to a whole global batch"
        );
    }
    tracing::info!(
        saved_world,
        world,
        from = cursor.micro_batch,
        to = micro_batch,
        "cursor rescaled for the new world size"
    );
    CursorState { micro_batch, ..cursor }
}

/// Keys a resumed run may change freely: how long it runs, how it logs, saves and evaluates,
/// where and on how many threads. Any other change alters what is trained.
const FREE_ON_RESUME: [&str; 15] = [
    "run.max_steps",
    "run.max_epochs",
    "run.max_minutes",
    "run.log_every",
    "run.eval_every",
    "run.num_threads",
    "run.prefetch",
    "run.dist_timeout_s",
    "run.device",
    "run.max_bad_steps",
    "run.memory_format",
    "run.profile_steps",
    "run.cudnn_benchmark",
    "checkpoint.",
    "eval.",
];

const INIT_FROM: &str = "run.init_from";

/// `[run] init_from` matters only for a run's first start: a resume may drop it (the change is
/// recorded), but other weights cannot apply to a run that continues from its own checkpoint.
fn check_init_from_on_resume(all: &[Change], session: &Session, step: u64) -> Result<()> {
    let Some(change) = all.iter().find(|c| c.key == INIT_FROM) else { return Ok(()) };
    if session.plan.recipe.run.init_from.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{}: the run resumes from its own checkpoint at step {step}, so the new init_from ({}) would not be loaded; init_from applies only to a run's first start: pass --restart to start over from it, or train into another --run-dir",
        session.run_dir().display(),
        change.new.clone().unwrap_or_default()
    )))
}

/// The run's history of config changes, one JSON line per resume that changed something.
pub const CONFIG_CHANGES: &str = "config-changes.jsonl";

/// Compares the session's plan with the config `checkpoint` was trained with. Keys that change
/// what is trained stop the run with the list of changes unless `accept`; every change is
/// recorded (step, old, new) in `RUN_DIR/config-changes.jsonl` by the process that `records`.
pub fn check_resumed_config(
    reg: &Registry,
    session: &Session,
    checkpoint: &Checkpoint,
    accept: bool,
    records: bool,
) -> Result<()> {
    let origin = format!("{} (the checkpoint's config)", checkpoint.dir.display());
    let saved = Recipe::parse_saved(&checkpoint.manifest.config, &origin, &[])?;
    // Planned like the new one, so defaults a config of an older pt left out compare equal.
    let saved = match RunPlan::resolve(reg, saved.clone(), session.run_dir(), World::default()) {
        Ok(plan) => plan.to_toml(None),
        Err(_) => saved.to_toml(),
    };
    let parse = |text: &str| toml::from_str::<toml::Table>(text).map_err(|e| Error::Config(format!("{origin}: {e}")));
    let saved = parse(&saved)?;
    let all = changes(&saved, &parse(&session.resolved_toml())?);
    if all.is_empty() {
        return Ok(());
    }
    // The global batch (batch_size × grad_accum × world size) is what training sees: a run
    // resumed with another world size keeps it by changing grad_accum.
    let run = &session.plan.recipe.run;
    let same_global_batch = saved.get("run").and_then(|r| r.get("grad_accum")?.as_integer()).is_some_and(|accum| {
        accum as u64 * checkpoint.manifest.world_size.max(1) == run.grad_accum * session.plan.world.world_size
    });
    let free = |key: &str| {
        (key == "run.grad_accum" && same_global_batch)
            || FREE_ON_RESUME.iter().any(|f| key == *f || (f.ends_with('.') && key.starts_with(f)))
    };
    let step = checkpoint.manifest.step;
    check_init_from_on_resume(&all, session, step)?;
    let guarded: Vec<&Change> = all.iter().filter(|c| !free(&c.key) && c.key != INIT_FROM).collect();
    if !guarded.is_empty() && !accept {
        return Err(Error::Config(format!(
            "{}: resuming at step {step} with a changed config ({}), but steps 1 to {step} ran with the saved values: pass --accept-changes to go on with the new ones (recorded in {CONFIG_CHANGES}), or train into another --run-dir",
            session.run_dir().display(),
            guarded.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; ")
        )));
    }
    for c in &all {
        tracing::warn!(step, change = %c, "config changed on resume");
    }
    if records {
        let path = session.run_dir().join(CONFIG_CHANGES);
        let line = serde_json::json!({ "step": step, "changes": all }).to_string();
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// `--restart`: the run directory's checkpoints and metrics are moved aside (`…-before-restart-T`,
/// T the Unix time), not deleted, so a run that starts over from step 0 loses nothing.
pub fn set_aside_for_restart(run_dir: &Path) -> Result<()> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (name, aside) in [
        ("checkpoints", format!("checkpoints-before-restart-{stamp}")),
        (pt_report::METRICS_JSONL, format!("metrics-before-restart-{stamp}.jsonl")),
        (pt_report::METRICS_CSV, format!("metrics-before-restart-{stamp}.csv")),
        (pt_report::TENSORBOARD_DIR, format!("tb-before-restart-{stamp}")),
    ] {
        let from = run_dir.join(name);
        if from.exists() {
            let to = run_dir.join(aside);
            std::fs::rename(&from, &to).map_err(|e| Error::io(format!("moving {} aside", from.display()), e))?;
            tracing::info!(from = %from.display(), to = %to.display(), "kept aside for the restart");
        }
    }
    Ok(())
}
