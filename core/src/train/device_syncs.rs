//! The host's waits for the GPU inside training steps, counted (`device_syncs_per_step` in the
//! metrics of a CUDA run). [`super::host_read`] counts the trainer's own reads; this counts
//! every synchronising CUDA call libtorch makes on the training thread during a step, a
//! plugin's included: a blocking copy to or from the device, `.item()`, `nonzero`, a boolean
//! mask index. Through c10's sync debug mode (`csrc/syncs.cpp`); unavailable without CUDA.

use std::sync::atomic::{AtomicU64, Ordering};
use tch::Device;

extern "C" {
    fn pt_syncs_begin() -> std::ffi::c_int;
    fn pt_syncs_end();
    fn pt_syncs_count() -> u64;
}

/// Steps counted so far in this process.
static COUNTED_STEPS: AtomicU64 = AtomicU64::new(0);

/// While it lives, this thread's synchronising CUDA calls are counted (one step's).
pub(super) struct SyncCount(());

impl SyncCount {
    /// Counting for a step on `device`: None off CUDA or where libtorch cannot count.
    pub(super) fn begin(device: Device) -> Option<SyncCount> {
        // SAFETY: no arguments; the shim catches every C++ exception.
        // `then`, not `then_some`: a SyncCount made and dropped here would count a step.
        (device.is_cuda() && unsafe { pt_syncs_begin() } == 1).then(|| SyncCount(()))
    }
}

impl Drop for SyncCount {
    fn drop(&mut self) {
        // SAFETY: no arguments; the shim catches every C++ exception.
        unsafe { pt_syncs_end() }
        COUNTED_STEPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// (steps counted, synchronising calls counted in them) so far in this process.
pub(super) fn counted_so_far() -> (u64, u64) {
    // SAFETY: reads an atomic counter.
    (COUNTED_STEPS.load(Ordering::Relaxed), unsafe { pt_syncs_count() })
}

/// What counting sees of one read of a value on `device` (`pt doctor`'s check that it works):
/// Some(count), at least 1 where it works; None off CUDA or where it is unavailable.
pub fn count_one_read(device: Device) -> Option<u64> {
    let probe = tch::Tensor::f_ones([1], (tch::Kind::Float, device)).ok()?;
    // The shim directly, not a SyncCount: this is not a training step.
    // SAFETY: no arguments; the shim catches every C++ exception.
    if !device.is_cuda() || unsafe { pt_syncs_begin() } != 1 {
        return None;
    }
    let before = counted_so_far().1;
    let _ = probe.f_double_value(&[]);
    let after = counted_so_far().1;
    // SAFETY: as above.
    unsafe { pt_syncs_end() };
    Some(after - before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_counted_off_cuda() {
        let before = counted_so_far();
        assert!(SyncCount::begin(Device::Cpu).is_none());
        assert!(count_one_read(Device::Cpu).is_none());
        assert_eq!(counted_so_far(), before, "no step counted off CUDA");
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0]).sum(tch::Kind::Float);
        assert_eq!(f64::try_from(&t).unwrap(), 3.0);
        assert_eq!(counted_so_far(), before);
        // With a CUDA libtorch the shim switches the debug mode on and off again without a GPU;
        // CPU work inside counts nothing.
        // SAFETY: no arguments; the shim catches every C++ exception.
        if unsafe { pt_syncs_begin() } == 1 {
            let _ = tch::Tensor::from_slice(&[1.0f32]).f_to_device(Device::Cpu).unwrap();
            unsafe { pt_syncs_end() };
            assert_eq!(counted_so_far().1, before.1);
        }
    }
}
