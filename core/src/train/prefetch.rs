//! The loader thread: reads micro-batches ahead of the training loop, so the device never waits
//! for the dataset. Batches arrive in order with the cursor they were read at. Objectives whose
//! `prepare` works on the host (masking from per-sample counters) prepare their inputs here too,
//! on a copy of the objective, so the step neither waits for it nor reads the batch back; those
//! that draw on the host (SimCLR's view parameters) draw here what their `prepare` reads.

use crate::checkpoint::CursorState;
use crate::components::{DatasetHandle, ObjectiveHandle};
use crate::train::sampler::Sampler;
use crate::{Error, Result};
use pt_sdk::{StepCtx, Tensors};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Loaded {
    pub cursor: CursorState,
    /// On the training device, as components read it (empty when every objective's inputs were
    /// prepared here).
    pub batch: Tensors,
    /// Per objective of the run: what the loader thread made for it, if anything.
    pub prepared: Vec<Option<FromLoader>>,
    /// Real tokens in the batch (sum of `attention_mask`, else numel of `input_ids`), if text.
    pub tokens: Option<u64>,
    /// Seconds the loader thread took to make it (read, decode, collate, pin).
    pub load_s: f64,
}

/// What the loader thread made for one objective, on the training device.
pub enum FromLoader {
    /// Its inputs (`prepare_on_host`): the step feeds them to the model as they are.
    Prepared(Tensors),
    /// Fields for its `prepare` on the device (`draws_on_host`), beside the batch's own.
    Drawn(Tensors),
}

impl FromLoader {
    fn map(self, f: impl FnOnce(Tensors) -> Result<Tensors>) -> Result<FromLoader> {
        Ok(match self {
            FromLoader::Prepared(t) => FromLoader::Prepared(f(t)?),
            FromLoader::Drawn(t) => FromLoader::Drawn(f(t)?),
        })
    }
}

pub struct Prefetcher {
    rx: Option<Receiver<Result<Loaded>>>,
    handle: Option<JoinHandle<()>>,
    dataset: Arc<DatasetHandle>,
    device: tch::Device,
}

fn count_tokens(b: &Tensors) -> Option<u64> {
    let ids = b.get("input_ids")?; // only text has tokens (audio's attention_mask counts samples)
    if let Some(m) = b.get("attention_mask") {
        return m.f_sum(tch::Kind::Int64).ok().and_then(|s| s.f_int64_value(&[]).ok()).map(|v| v as u64);
    }
    Some(ids.numel() as u64)
}

/// Where the loader starts, and how its batches map to optimizer steps.
pub struct LoaderStart {
    pub cursor: CursorState,
    /// The optimizer step of the first batch, and micro-batches per step: the `step` the host
    /// preparers see.
    pub step: u64,
    pub grad_accum: u64,
}

impl Prefetcher {
    /// Starts reading at `start.cursor` for `device`. For CUDA the loader pins the batches and
    /// [`Self::next`] copies them (non-blocking) and converts compact fields there; for the CPU
    /// the loader thread does the conversion, off the training thread. `preparers` has one
    /// entry per objective: a copy of it that prepares its inputs or draws for its `prepare`
    /// here ([`FromLoader`]), or None.
    pub fn start(
        dataset: Arc<DatasetHandle>,
        mut sampler: Sampler,
        start: LoaderStart,
        depth: usize,
        ctx: StepCtx,
        device: tch::Device,
        preparers: Vec<Option<ObjectiveHandle>>,
    ) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let pin = device.is_cuda();
        let reader = dataset.clone();
        let raw_needed = preparers.iter().any(|p| p.as_ref().is_none_or(|p| !p.info.prepare_on_host));
        let LoaderStart { mut cursor, step, grad_accum } = start;
        let handle = std::thread::Builder::new()
            .name("pt-loader".into())
            .spawn(move || {
                for read in 0u64.. {
                    let indices = sampler.indices(cursor);
                    let ctx = StepCtx { epoch: cursor.epoch, step: step + read / grad_accum.max(1), ..ctx };
                    let started = std::time::Instant::now();
                    let item = reader.get_batch(&indices, &ctx).and_then(|batch| {
                        let tokens = count_tokens(&batch);
                        let prepared = preparers
                            .iter()
                            .map(|p| p.as_ref().map(|p| from_loader(p, &batch, &ctx)).transpose())
                            .collect::<Result<Vec<_>>>()?;
                        let batch = if raw_needed { batch } else { Tensors::default() };
                        // Pinned for the copy to the GPU, or converted here for the CPU.
                        let ready = |b: Tensors| -> Result<Tensors> {
                            match pin {
                                true => b.into_iter().map(|(n, t)| Ok((n, crate::pinned::pinned(&t)?))).collect(),
                                false => reader.to_device(b, tch::Device::Cpu),
                            }
                        };
                        let prepared =
                            prepared.into_iter().map(|p| p.map(|p| p.map(ready)).transpose()).collect::<Result<_>>()?;
                        let batch = ready(batch)?;
                        Ok(Loaded { cursor, batch, prepared, tokens, load_s: started.elapsed().as_secs_f64() })
                    });
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        return;
                    }
                    cursor = sampler.next(cursor);
                }
            })
            .expect("spawning the loader thread");
        Prefetcher { rx: Some(rx), handle: Some(handle), dataset, device }
    }

    /// The next batch, on the training device.
    pub fn next(&mut self) -> Result<Loaded> {
        let mut loaded = self
            .rx
            .as_ref()
            .and_then(|rx| rx.recv().ok())
            .unwrap_or_else(|| Err(Error::Training("the data loader thread stopped unexpectedly".into())))?;
        if self.device.is_cuda() {
            loaded.batch = self.dataset.to_device(std::mem::take(&mut loaded.batch), self.device)?;
            for p in loaded.prepared.iter_mut().filter(|p| p.is_some()) {
                *p = p.take().map(|p| p.map(|b| self.dataset.to_device(b, self.device))).transpose()?;
            }
        }
        Ok(loaded)
    }
}

/// What `objective`'s loader-thread copy makes of `batch` (on the CPU).
fn from_loader(objective: &ObjectiveHandle, batch: &Tensors, ctx: &StepCtx) -> Result<FromLoader> {
    Ok(match objective.info.prepare_on_host {
        true => FromLoader::Prepared(objective.prepare(batch.share(), ctx)?),
        false => FromLoader::Drawn(objective.draw_on_host(batch, ctx)?),
    })
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Dropping the receiver makes the loader's next send fail, which ends it.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
