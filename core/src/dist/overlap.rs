//! The flat gradient's all-reduce, bucket by bucket, overlapped with backward (the C++ side,
//! `csrc/overlap.cpp`, hooks each parameter's gradient accumulation as DDP's Reducer does).
//!
//! Buckets are runs of whole parameters of about `bucket_bytes`, in buffer order, covering the
//! whole flat gradient (alignment padding included, which is zero on every rank). Once
//! [`GradReducer::arm`]ed for a step's last backward, a bucket starts reducing as soon as all its
//! parameters' gradients are final; [`GradReducer::finish`] starts the rest and waits.

use super::group::{call, PtGroup};
use super::Group;
use crate::{Error, Result};
use pt_optim::FlatParams;
use std::ffi::{c_char, c_int};
use std::sync::Arc;
use torch_sys::C_tensor;

#[repr(C)]
struct PtOverlap {
    _opaque: [u8; 0],
}

extern "C" {
    fn pt_overlap_new(
        g: *mut PtGroup,
        flat: *const C_tensor,
        params: *const *mut C_tensor,
        views: *const *mut C_tensor,
        param_bucket: *const c_int,
        n_params: usize,
        bucket_start: *const i64,
        bucket_len: *const i64,
        n_buckets: usize,
        out: *mut *mut PtOverlap,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn pt_overlap_arm(o: *mut PtOverlap);
    fn pt_overlap_finish(o: *mut PtOverlap, err: *mut c_char, err_len: usize) -> c_int;
    fn pt_overlap_free(o: *mut PtOverlap);
}

/// Bucket boundaries: `(start, len)` ranges of the flat buffer and each parameter's bucket.
/// A bucket closes once it holds at least `cap` elements; the first starts at 0 and the last
/// ends at `total`, so every element is in exactly one.
pub fn plan_buckets(offsets: &[i64], total: i64, cap: i64) -> (Vec<(i64, i64)>, Vec<i32>) {
    let mut starts: Vec<i64> = Vec::new();
    let mut param_bucket = Vec::with_capacity(offsets.len());
    for (i, &offset) in offsets.iter().enumerate() {
        let open = starts.last().copied();
        match open {
            Some(start) if offset - start < cap => {}
            _ => starts.push(if i == 0 { 0 } else { offset }),
        }
        param_bucket.push(starts.len() as i32 - 1);
    }
    if starts.is_empty() {
        starts.push(0);
    }
    let ends: Vec<i64> = starts.iter().skip(1).copied().chain(std::iter::once(total)).collect();
    (starts.iter().zip(ends).map(|(&s, e)| (s, e - s)).collect(), param_bucket)
}

/// The all-reduce of one trainer's flat gradient (sum; the trainer divides by the world size).
pub struct GradReducer {
    ptr: *mut PtOverlap,
    group: Arc<Group>,
    pub buckets: usize,
}

// SAFETY: the C++ side guards its state with a mutex; the trainer drives it from one thread
// (autograd calls the hooks, possibly from its device threads, during backward).
unsafe impl Send for GradReducer {}

impl GradReducer {
    /// Hooks every trainable parameter of `flat`; buckets of about `bucket_bytes`.
    pub fn new(group: Arc<Group>, flat: &FlatParams, bucket_bytes: u64) -> Result<GradReducer> {
        let grad = flat.flat_grad().map_err(Error::Plugin)?;
        let (params, views) = flat.params_and_grad_views();
        let offsets: Vec<i64> = flat.segments().iter().map(|s| s.offset).collect();
        let cap = (bucket_bytes as i64 / 4).max(1);
        let (buckets, param_bucket) = plan_buckets(&offsets, flat.len(), cap);
        let param_ptrs: Vec<*mut C_tensor> = params.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
        let view_ptrs: Vec<*mut C_tensor> = views.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
        let starts: Vec<i64> = buckets.iter().map(|b| b.0).collect();
        let lens: Vec<i64> = buckets.iter().map(|b| b.1).collect();
        let mut ptr = std::ptr::null_mut();
        // SAFETY: live tensors and arrays of the stated lengths for the call; the shim keeps
        // its own references to the tensors.
        call(
            || format!("rank {}: hooking the gradients for the overlapped all-reduce", group.rank),
            |err, len| unsafe {
                pt_overlap_new(
                    group.raw(),
                    grad.as_ptr(),
                    param_ptrs.as_ptr(),
                    view_ptrs.as_ptr(),
                    param_bucket.as_ptr(),
                    param_ptrs.len(),
                    starts.as_ptr(),
                    lens.as_ptr(),
                    starts.len(),
                    &mut ptr,
                    err,
                    len,
                )
            },
        )?;
        tracing::info!(buckets = buckets.len(), bucket_bytes, "gradient all-reduce overlapped with backward");
        Ok(GradReducer { ptr, group, buckets: buckets.len() })
    }

    /// Gradients accumulated from now on are the step's final ones: call right before the
    /// step's last backward.
    pub fn arm(&self) {
        // SAFETY: a live reducer.
        unsafe { pt_overlap_arm(self.ptr) }
    }

    /// Reduces what backward did not start and waits for every bucket.
    pub fn finish(&self) -> Result<()> {
        // SAFETY: a live reducer.
        call(|| self.group.what("gradient all-reduce"), |err, len| unsafe { pt_overlap_finish(self.ptr, err, len) })
    }
}

impl Drop for GradReducer {
    fn drop(&mut self) {
        // SAFETY: created by pt_overlap_new, freed once (it removes its hooks).
        unsafe { pt_overlap_free(self.ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::plan_buckets;

    #[test]
    fn buckets_cover_the_buffer_with_whole_parameters() {
        // Parameters at 0, 64, 128, 512, 576 in a buffer of 640 elements; a bucket closes at >= 100.
        let (buckets, owner) = plan_buckets(&[0, 64, 128, 512, 576], 640, 100);
        assert_eq!(buckets, vec![(0, 128), (128, 384), (512, 128)]);
        assert_eq!(owner, vec![0, 0, 1, 2, 2]);
        // One bucket when the cap exceeds the buffer; one per parameter when it is tiny.
        assert_eq!(plan_buckets(&[0, 64], 128, 1 << 20).0, vec![(0, 128)]);
        assert_eq!(plan_buckets(&[0, 64], 128, 1), (vec![(0, 64), (64, 64)], vec![0, 1]));
        assert_eq!(plan_buckets(&[], 0, 10).0, vec![(0, 0)]);
    }
}
