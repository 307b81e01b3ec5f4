//! What the host lends plugins outside the component calls: today the collectives of a
//! multi-process run (docs/distributed.md), so an objective can, e.g., contrast against the
//! whole global batch. Each binary (host, every plugin) has its own copy of these statics; the
//! host installs its services into each plugin after loading it.

use crate::ffi::HostServices;
use crate::{PtError, PtTensor, Result};
use std::sync::OnceLock;
use tch::Tensor;

static SERVICES: OnceLock<HostServices> = OnceLock::new();

/// Called by the host (through the plugin's root module) once after loading.
pub extern "C" fn install(services: HostServices) {
    let _ = SERVICES.set(services);
}

/// Every rank's `t`, concatenated along dim 0 in rank order; `t` itself (shared) when training
/// alone or when the host installed no services. The result is detached: keep this rank's own
/// rows live by putting `t` back in its slice (`StepCtx::rank`).
pub fn all_gather(t: &Tensor) -> Result<Tensor> {
    call(t, |s| s.all_gather)
}

/// `t` summed over every rank; `t` itself (shared) when training alone or when the host
/// installed no services. Differentiable: the backward sums the gradient over ranks, so each
/// rank's gradient is that of the sum of every rank's loss (e.g. synchronised BatchNorm).
/// Every rank must call it at the same point, as with any collective.
pub fn all_reduce_sum(t: &Tensor) -> Result<Tensor> {
    call(t, |s| s.all_reduce_sum)
}

type Collective = extern "C" fn(&PtTensor) -> abi_stable::std_types::RResult<PtTensor, PtError>;

fn call(t: &Tensor, pick: impl Fn(&HostServices) -> Collective) -> Result<Tensor> {
    match SERVICES.get() {
        None => Ok(t.shallow_clone()),
        Some(s) => {
            let handle = PtTensor::from_tch(t.shallow_clone());
            let out: std::result::Result<PtTensor, PtError> = pick(s)(&handle).into_result();
            Ok(out?.into_tch())
        }
    }
}
