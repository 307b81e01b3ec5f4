//! The trainer's only way to read device values: one copy for a whole list of scalars, counted.
//! On a GPU each read waits for every kernel queued before it, so a step that reads nothing
//! lets the host run ahead; the count (`host_reads_per_step` in the metrics) shows that it does.

use crate::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

static READS: AtomicU64 = AtomicU64::new(0);

/// The values of `scalars` (one element each, any float kind, on any device), in one transfer.
pub(super) fn read_host(scalars: &[&Tensor]) -> Result<Vec<f64>> {
    if scalars.is_empty() {
        return Ok(Vec::new());
    }
    let flat: Vec<Tensor> =
        scalars.iter().map(|t| t.f_detach()?.f_reshape([1])?.f_to_kind(Kind::Double)).collect::<Result<_, _>>()?;
    let on_host = Tensor::f_cat(&flat, 0)?.f_to_device(Device::Cpu)?;
    READS.fetch_add(1, Ordering::Relaxed);
    Ok(Vec::<f64>::try_from(&on_host)?)
}

/// Reads made by this process so far.
pub(super) fn reads_so_far() -> u64 {
    READS.load(Ordering::Relaxed)
}
