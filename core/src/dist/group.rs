//! A c10d process group (TCPStore rendezvous + ProcessGroupGloo or ProcessGroupNCCL) through the
//! C++ shims `csrc/dist.cpp` and `csrc/nccl.cpp`. Gloo reduces CPU and CUDA tensors alike, NCCL
//! CUDA tensors only. Gloo's collectives and every store read fail after the group's timeout;
//! NCCL's watchdog aborts a rank whose collective runs past it. A dead or hung peer is an error,
//! never a hang.

use super::DistEnv;
use crate::config::DistBackendSetting;
use crate::{Error, Result};
use std::ffi::{c_char, c_int, CString};
use std::time::Duration;
use tch::{Device, Tensor};
use torch_sys::C_tensor;

#[repr(C)]
pub(super) struct PtGroup {
    _opaque: [u8; 0],
}

extern "C" {
    fn pt_dist_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        cuda_device: c_int,
        out: *mut *mut PtGroup,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn pt_dist_free(g: *mut PtGroup);
    fn pt_dist_shutdown(g: *mut PtGroup);
    fn pt_dist_has_nccl() -> c_int;
    fn pt_dist_allreduce_sum(
        g: *mut PtGroup,
        ts: *const *mut C_tensor,
        n: usize,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn pt_dist_allgather(
        g: *mut PtGroup,
        src: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn pt_dist_allreduce_autograd(
        g: *mut PtGroup,
        src: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn pt_dist_broadcast(g: *mut PtGroup, t: *mut C_tensor, root: c_int, err: *mut c_char, len: usize) -> c_int;
    fn pt_dist_barrier(g: *mut PtGroup, err: *mut c_char, len: usize) -> c_int;
    fn pt_dist_store_set(
        g: *mut PtGroup,
        key: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn pt_dist_store_get(
        g: *mut PtGroup,
        key: *const c_char,
        data: *mut *mut u8,
        len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn pt_dist_store_get_within(
        g: *mut PtGroup,
        key: *const c_char,
        timeout_ms: i64,
        data: *mut *mut u8,
        len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn pt_dist_free_bytes(data: *mut u8);
}

/// Runs one shim call with an error buffer; a non-zero return becomes an error saying what was
/// being done and by which rank.
pub(super) fn call(what: impl FnOnce() -> String, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    crate::shim::call(f).map_err(|msg| {
        // c10d's messages carry a C++ backtrace after the first line: keep the sentence.
        let first = msg.lines().next().unwrap_or("").trim().to_string();
        Error::Distributed(format!("{}: {first}", what()))
    })
}

/// The c10d backend a group's collectives run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    /// NCCL on this CUDA device.
    Nccl {
        cuda_device: usize,
    },
}

impl Backend {
    /// Whether this pt was built with NCCL (a CUDA libtorch and NCCL's headers at build time).
    pub fn nccl_built() -> bool {
        // SAFETY: no arguments, no state.
        unsafe { pt_dist_has_nccl() != 0 }
    }

    /// `[run] dist_backend` for a run on `device`: `auto` is NCCL on CUDA when built with it,
    /// else Gloo.
    pub fn choose(setting: DistBackendSetting, device: Device) -> Result<Backend> {
        use DistBackendSetting as S;
        match (setting, device) {
            (S::Gloo, _) => Ok(Backend::Gloo),
            (S::Nccl, Device::Cuda(i)) => Ok(Backend::Nccl { cuda_device: i }),
            (S::Auto, Device::Cuda(i)) if Self::nccl_built() => Ok(Backend::Nccl { cuda_device: i }),
            (S::Auto, _) => Ok(Backend::Gloo),
            (S::Nccl, _) => Err(Error::Config(format!(
                "[run] dist_backend = \"nccl\" needs a CUDA device, and this run is on {device:?}: \
                 use dist_backend = \"gloo\" (or \"auto\") on CPU"
            ))),
        }
    }

    /// Where tensors of this backend's collectives must live.
    fn device(self) -> Device {
        match self {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl { cuda_device } => Device::Cuda(cuda_device),
        }
    }
}

/// This process's membership of a group of `world_size` ranks.
pub struct Group {
    ptr: *mut PtGroup,
    pub rank: u64,
    pub world_size: u64,
    pub timeout: Duration,
    pub backend: Backend,
    /// This rank's progress as last published (see `heartbeat.rs`).
    pub(super) progress: super::heartbeat::Progress,
}

// SAFETY: the c10d objects are thread-safe for the calls made here, and the trainer uses a group
// from one thread at a time.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// Rendezvous with the other ranks at MASTER_ADDR:MASTER_PORT (rank 0 serves the store).
    pub fn connect(env: &DistEnv, timeout: Duration, backend: Backend) -> Result<Group> {
        let host = CString::new(env.master_addr.clone())
            .map_err(|_| Error::Config(format!("MASTER_ADDR {:?} contains a NUL byte", env.master_addr)))?;
        let mut ptr = std::ptr::null_mut();
        tracing::info!(rank = env.rank, world_size = env.world_size, addr = %env.master_addr, port = env.master_port, ?backend, "joining the process group");
        let cuda_device = match backend {
            Backend::Gloo => -1,
            Backend::Nccl { cuda_device } => cuda_device as c_int,
        };
        call(
            || {
                format!(
                    "rank {} could not join the group of {} at {}:{} within {} s (are all ranks started, with the same MASTER_ADDR/MASTER_PORT?)",
                    env.rank,
                    env.world_size,
                    env.master_addr,
                    env.master_port,
                    timeout.as_secs()
                )
            },
            // SAFETY: valid C string and out-pointer; the shim writes a new group or nothing.
            |err, len| unsafe {
                pt_dist_new(
                    host.as_ptr(),
                    env.master_port as c_int,
                    env.rank as c_int,
                    env.world_size as c_int,
                    timeout.as_millis() as i64,
                    cuda_device,
                    &mut ptr,
                    err,
                    len,
                )
            },
        )?;
        Ok(Group { ptr, rank: env.rank, world_size: env.world_size, timeout, backend, progress: Default::default() })
    }

    pub(super) fn raw(&self) -> *mut PtGroup {
        self.ptr
    }

    /// What failed, and which peer stopped making progress when the heartbeats tell.
    pub(super) fn what(&self, op: &str) -> String {
        format!(
            "rank {} of {}: {op} failed (a peer died, hung past {} s, or left){}",
            self.rank,
            self.world_size,
            self.timeout.as_secs(),
            self.diagnose_stall()
        )
    }

    /// Sums the tensors in place across ranks (started together, awaited together).
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        let ptrs: Vec<*mut C_tensor> = tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
        // SAFETY: live tensors for the duration of the call; reduced in place.
        call(
            || self.what("all-reduce"),
            |err, len| unsafe { pt_dist_allreduce_sum(self.ptr, ptrs.as_ptr(), ptrs.len(), err, len) },
        )
    }

    /// Every rank's `t`, concatenated along dim 0 in rank order.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        // SAFETY: live input; the shim writes one new owning handle.
        self.new_tensor("all-gather", |out, err, len| unsafe { pt_dist_allgather(self.ptr, t.as_ptr(), out, err, len) })
    }

    /// The sum of `t` over ranks, differentiable: its backward sums the gradient over ranks
    /// (what synchronised BatchNorm's statistics need).
    pub fn all_reduce_sum_differentiable(&self, t: &Tensor) -> Result<Tensor> {
        // SAFETY: live input; the shim writes one new owning handle.
        self.new_tensor("all-reduce", |out, err, len| unsafe {
            pt_dist_allreduce_autograd(self.ptr, t.as_ptr(), out, err, len)
        })
    }

    /// A shim call that writes one new tensor handle into its out-pointer.
    fn new_tensor(&self, op: &str, f: impl FnOnce(*mut *mut C_tensor, *mut c_char, usize) -> c_int) -> Result<Tensor> {
        let mut out = std::ptr::null_mut();
        call(|| self.what(op), |err, len| f(&mut out, err, len))?;
        // SAFETY: a fresh handle this Tensor now owns.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Overwrites `t` with rank `root`'s values.
    pub fn broadcast(&self, t: &Tensor, root: u64) -> Result<()> {
        // SAFETY: live tensor, written in place.
        call(
            || self.what("broadcast"),
            |err, len| unsafe { pt_dist_broadcast(self.ptr, t.as_ptr() as *mut C_tensor, root as c_int, err, len) },
        )
    }

    /// Ends the backend's communicators (NCCL's must end before the process exits; the group
    /// also lives on in plugins' [`super::set_current`], so dropping it is not enough). Later
    /// collectives fail.
    pub fn shutdown(&self) {
        self.stop_heartbeat();
        // SAFETY: the group's own pointer; the shim makes a second call a no-op.
        unsafe { pt_dist_shutdown(self.ptr) };
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: no pointers but the group's.
        call(|| self.what("barrier"), |err, len| unsafe { pt_dist_barrier(self.ptr, err, len) })
    }

    /// The sums over ranks of a few host values (one small all-reduce, on the backend's device).
    pub fn all_reduce_host(&self, values: &[f64]) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values).to_device(self.backend.device());
        self.all_reduce_sum(std::slice::from_ref(&t))?;
        Vec::<f64>::try_from(&t.to_device(Device::Cpu)).map_err(Error::from)
    }

    pub fn store_set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.store_set_with(key, value, || self.what(&format!("store write of '{key}'")))
    }

    /// A store write whose error does not diagnose (the heartbeat's own writes).
    pub(super) fn store_set_plain(&self, key: &str, value: &[u8]) -> Result<()> {
        self.store_set_with(key, value, || format!("rank {}: store write of '{key}' failed", self.rank))
    }

    fn store_set_with(&self, key: &str, value: &[u8], what: impl FnOnce() -> String) -> Result<()> {
        let key_c = CString::new(key).map_err(|_| Error::Distributed(format!("store key {key:?} has a NUL byte")))?;
        // SAFETY: valid C string and byte slice for the call.
        call(what, |err, len| unsafe {
            pt_dist_store_set(self.ptr, key_c.as_ptr(), value.as_ptr(), value.len(), err, len)
        })
    }

    /// Waits (up to the timeout) until some rank has set `key`.
    pub fn store_get(&self, key: &str) -> Result<Vec<u8>> {
        self.store_get_within(key, None)
    }

    /// As [`Group::store_get`], waiting at most `limit` (None: the group's timeout). Its error
    /// names the read only: a diagnosis calls it.
    pub(super) fn store_get_within(&self, key: &str, limit: Option<Duration>) -> Result<Vec<u8>> {
        let key_c = CString::new(key).map_err(|_| Error::Distributed(format!("store key {key:?} has a NUL byte")))?;
        let (mut data, mut n) = (std::ptr::null_mut(), 0usize);
        let what = || format!("rank {} of {}: store read of '{key}' failed", self.rank, self.world_size);
        // SAFETY: valid C string and out-pointers; the shim mallocs `n` bytes into `data`.
        call(what, |err, len| unsafe {
            match limit {
                None => pt_dist_store_get(self.ptr, key_c.as_ptr(), &mut data, &mut n, err, len),
                Some(l) => pt_dist_store_get_within(
                    self.ptr,
                    key_c.as_ptr(),
                    l.as_millis() as i64,
                    &mut data,
                    &mut n,
                    err,
                    len,
                ),
            }
        })?;
        // SAFETY: `data` holds `n` bytes from malloc; copied, then freed by the shim's free.
        let bytes = unsafe { std::slice::from_raw_parts(data, n) }.to_vec();
        unsafe { pt_dist_free_bytes(data) };
        Ok(bytes)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by pt_dist_new, freed once.
        unsafe { pt_dist_free(self.ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_device_and_what_was_built() {
        assert_eq!(Backend::choose(DistBackendSetting::Gloo, Device::Cuda(0)).unwrap(), Backend::Gloo);
        assert_eq!(Backend::choose(DistBackendSetting::Auto, Device::Cpu).unwrap(), Backend::Gloo);
        assert_eq!(
            Backend::choose(DistBackendSetting::Nccl, Device::Cuda(1)).unwrap(),
            Backend::Nccl { cuda_device: 1 }
        );
        let auto_cuda = Backend::choose(DistBackendSetting::Auto, Device::Cuda(1)).unwrap();
        let expected = if Backend::nccl_built() { Backend::Nccl { cuda_device: 1 } } else { Backend::Gloo };
        assert_eq!(auto_cuda, expected);
        let err = Backend::choose(DistBackendSetting::Nccl, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("needs a CUDA device") && err.contains("gloo"), "{err}");
    }
}
