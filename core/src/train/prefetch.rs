//! The loader thread: reads micro-batches ahead of the training loop, so the device never waits
//! for the dataset. Batches arrive in order with the cursor they were read at.

use crate::checkpoint::CursorState;
use crate::components::DatasetHandle;
use crate::train::sampler::Sampler;
use crate::{Error, Result};
use pt_sdk::{StepCtx, Tensors};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Loaded {
    pub cursor: CursorState,
    /// On the training device, as components read it.
    pub batch: Tensors,
    /// Real tokens in the batch (sum of `attention_mask`, else numel of `input_ids`), if text.
    pub tokens: Option<u64>,
    /// Seconds the loader thread took to make it (read, decode, collate, pin).
    pub load_s: f64,
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

impl Prefetcher {
    /// Starts reading at `cursor` for `device`. For CUDA the loader pins the batches and
    /// [`Self::next`] copies them (non-blocking) and converts compact fields there; for the CPU
    /// the loader thread does the conversion, off the training thread.
    pub fn start(
        dataset: Arc<DatasetHandle>,
        mut sampler: Sampler,
        mut cursor: CursorState,
        depth: usize,
        ctx: StepCtx,
        device: tch::Device,
    ) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let pin = device.is_cuda();
        let reader = dataset.clone();
        let handle = std::thread::Builder::new()
            .name("pt-loader".into())
            .spawn(move || loop {
                let indices = sampler.indices(cursor);
                let ctx = StepCtx { epoch: cursor.epoch, ..ctx };
                let started = std::time::Instant::now();
                let item = reader.get_batch(&indices, &ctx).and_then(|batch| {
                    let tokens = count_tokens(&batch);
                    let batch = if pin {
                        batch.into_iter().map(|(n, t)| Ok((n, crate::pinned::pinned(&t)?))).collect::<Result<_>>()?
                    } else {
                        reader.to_device(batch, tch::Device::Cpu)?
                    };
                    Ok(Loaded { cursor, batch, tokens, load_s: started.elapsed().as_secs_f64() })
                });
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
                cursor = sampler.next(cursor);
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
            loaded.batch = self.dataset.to_device(loaded.batch, self.device)?;
        }
        Ok(loaded)
    }
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
