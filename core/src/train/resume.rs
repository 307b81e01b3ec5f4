//! Where a run starts: from the run directory's latest valid checkpoint (weights, optimizer
//! state, step and data cursor), from other weights (`--init-from`), or from scratch.

use super::session::Session;
use super::weights::{load_named, read_weights, LoadReport};
use crate::checkpoint::manager::latest_valid;
use crate::checkpoint::{Checkpoint, CursorState};
use crate::{Error, Result};
use pt_optim::Optimizer;
use std::path::Path;
use tch::Tensor;

/// The architecture's parameters and buffers, by name (what `model.safetensors` holds).
pub fn named_model(session: &Session) -> Result<Vec<(String, Tensor)>> {
    let mut v = session.arch.parameters()?;
    v.extend(session.arch.buffers()?);
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
/// `resume` finds one, else `init_from`'s weights, else nothing (random initialisation).
pub fn load_start(session: &Session, resume: bool, init_from: Option<&Path>) -> Result<Start> {
    let checkpoint = if resume { latest_valid(&session.run_dir().join("checkpoints"))? } else { None };
    if let Some(c) = &checkpoint {
        load_named(&named_model(session)?, &c.tensors("model")?, "resume")?;
        load_named(&named_objective(session)?, &c.tensors("objective")?, "resume")?;
        return Ok(Start { checkpoint, init_report: None });
    }
    let Some(path) = init_from else { return Ok(Start { checkpoint, init_report: None }) };
    let src = read_weights(path)?;
    let report = load_named(&named_model(session)?, &src, &format!("--init-from {}", path.display()))?;
    if report.loaded == 0 {
        return Err(Error::Checkpoint(format!(
            "--init-from {}: none of its {} tensors match the model's parameter names (e.g. model has '{}', file has '{}')",
            path.display(),
            src.len(),
            report.missing.first().map(String::as_str).unwrap_or("-"),
            report.unexpected.first().map(String::as_str).unwrap_or("-")
        )));
    }
    Ok(Start { checkpoint, init_report: Some(report) })
}

/// The training position a checkpoint holds.
pub struct Position {
    pub step: u64,
    pub cursor: CursorState,
    pub skipped: u64,
}

/// Restores the optimizer state of `checkpoint` and returns its position, the cursor
/// rescaled to this run's `world_size`.
pub fn restore_position(checkpoint: &Checkpoint, optimizer: &mut dyn Optimizer, world_size: u64) -> Result<Position> {
    let state = checkpoint.tensors("optimizer")?;
    if !state.is_empty() {
        optimizer.load_state(state).map_err(|e| {
            Error::Checkpoint(format!(
                "{}: optimizer state does not fit this run: {}",
                checkpoint.dir.display(),
                e.message
            ))
        })?;
    }
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
    tracing::info!(saved_world, world, from = cursor.micro_batch, to = micro_batch, "cursor rescaled for the new world size");
    CursorState { micro_batch, ..cursor }
}
