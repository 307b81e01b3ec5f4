//! Tensors crossing the boundary: an owning handle over libtorch's `at::Tensor*`.
//!
//! Host and plugins link the same `libtorch`, so a handle made on one side is a valid tensor on
//! the other: autograd graphs, grad mode, autocast state and CUDA streams are shared.

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};
use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, Ordering};
use tch::Tensor;

/// Handles made minus handles dropped in *this* binary (host or one plugin). A handle made in a
/// plugin and dropped in the host counts +1 there and -1 here; the sum over all loaded binaries
/// is the number of live handles (`pt` checks it is zero at the end of a run).
static LIVE_HANDLES: AtomicI64 = AtomicI64::new(0);

/// Net handle count of this binary. See [`LIVE_HANDLES`].
pub fn live_handles() -> i64 {
    LIVE_HANDLES.load(Ordering::Relaxed)
}

/// An owning handle to a libtorch tensor (a `tch::Tensor` moved across the boundary).
#[repr(C)]
#[derive(StableAbi)]
pub struct PtTensor {
    ptr: *mut c_void,
}

// SAFETY: at::Tensor is reference-counted with atomic counts; tch::Tensor is Send as well.
unsafe impl Send for PtTensor {}
unsafe impl Sync for PtTensor {}

impl PtTensor {
    pub fn from_tch(mut t: Tensor) -> Self {
        let ptr = t.as_mut_ptr() as *mut c_void;
        std::mem::forget(t);
        LIVE_HANDLES.fetch_add(1, Ordering::Relaxed);
        PtTensor { ptr }
    }

    pub fn into_tch(self) -> Tensor {
        let ptr = self.ptr;
        std::mem::forget(self);
        LIVE_HANDLES.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: ptr came from Tensor::as_mut_ptr of a tensor whose ownership we took.
        unsafe { Tensor::from_ptr(ptr as *mut torch_sys::C_tensor) }
    }

    /// A new handle sharing storage and autograd identity (`shallow_clone`).
    pub fn share(&self) -> Tensor {
        // SAFETY: borrow the tensor without taking ownership.
        let t = std::mem::ManuallyDrop::new(unsafe { Tensor::from_ptr(self.ptr as *mut torch_sys::C_tensor) });
        t.shallow_clone()
    }
}

impl Drop for PtTensor {
    fn drop(&mut self) {
        LIVE_HANDLES.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: we own the tensor.
        drop(unsafe { Tensor::from_ptr(self.ptr as *mut torch_sys::C_tensor) });
    }
}

#[repr(C)]
#[derive(StableAbi)]
pub struct TensorEntry {
    pub name: RString,
    pub tensor: PtTensor,
}

/// Named tensors in a stable order: batches, model outputs, parameter lists, metrics.
#[repr(C)]
#[derive(StableAbi, Default)]
pub struct TensorMap {
    pub entries: RVec<TensorEntry>,
}

/// The author-side form of [`TensorMap`]: named `tch::Tensor`s, in insertion order.
#[derive(Debug, Default)]
pub struct Tensors {
    entries: Vec<(String, Tensor)>,
}

impl Tensors {
    pub fn new() -> Self {
        Self::default()
    }
    /// Inserts or replaces `name`.
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        let name = name.into();
        if let Some(slot) = self.entries.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = t;
        } else {
            self.entries.push((name, t));
        }
    }
    pub fn with(mut self, name: impl Into<String>, t: Tensor) -> Self {
        self.insert(name, t);
        self
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    /// The tensor called `name`, or an error listing the names there are (a data error, not a
    /// shape error: the batch or the outputs lack a field the component reads).
    pub fn require(&self, name: &str) -> crate::Result<&Tensor> {
        self.get(name).ok_or_else(|| {
            crate::PtError::data(format!(
                "missing tensor '{name}' (present: {})",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })
    }
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let i = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.remove(i).1)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Shallow copies (same storage) of every tensor.
    pub fn share(&self) -> Tensors {
        Tensors { entries: self.entries.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect() }
    }
    /// Moves every tensor to `device` (non-blocking where the source is pinned).
    pub fn to_device(self, device: tch::Device) -> crate::Result<Tensors> {
        let mut out = Tensors::new();
        for (n, t) in self.entries {
            let t = if t.device() == device { t } else { t.f_to_device_(device, t.kind(), true, false)? };
            out.entries.push((n, t));
        }
        Ok(out)
    }
    pub fn into_ffi(self) -> TensorMap {
        TensorMap {
            entries: self
                .entries
                .into_iter()
                .map(|(name, t)| TensorEntry { name: name.into(), tensor: PtTensor::from_tch(t) })
                .collect(),
        }
    }
    pub fn from_ffi(map: TensorMap) -> Self {
        Tensors { entries: map.entries.into_iter().map(|e| (e.name.into_string(), e.tensor.into_tch())).collect() }
    }
    /// Shallow copies out of a borrowed map (the map keeps its handles).
    pub fn share_ffi(map: &TensorMap) -> Self {
        Tensors { entries: map.entries.iter().map(|e| (e.name.to_string(), e.tensor.share())).collect() }
    }
}

impl IntoIterator for Tensors {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(String, Tensor)> for Tensors {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        let mut t = Tensors::new();
        for (n, v) in iter {
            t.insert(n, v);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tensor_is_a_data_error_naming_those_present() {
        let batch = Tensors::new().with("x", Tensor::from_slice(&[1f32])).with("label", Tensor::from_slice(&[0i64]));
        let e = batch.require("image").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Data);
        assert_eq!(e.message.as_str(), "missing tensor 'image' (present: x, label)");
    }
}
