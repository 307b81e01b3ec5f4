//! bf16 mixed precision: libtorch's autocast with bf16 as its dtype, through a small C++ shim
//! (`csrc/autocast.cpp`), because tch 0.24 can neither choose the autocast dtype (it would use
//! fp16 on CUDA) nor enable autocast without deprecated calls that warn on every step.
//!
//! Inside an [`Autocast`] scope, ops on autocast's lists (matmul, linear, conv, attention) run in
//! bf16 while parameters stay fp32 (the master weights the optimizer updates) and precision-
//! sensitive ops (softmax, layer norm, losses) stay fp32. Backward runs outside the scope, as
//! PyTorch recommends. The state is per thread: enter it on the thread that runs the forward.

use crate::config::PrecisionSetting;
use crate::{Error, Result};
use std::ffi::{c_char, c_int};
use tch::Device;

extern "C" {
    fn pt_autocast_enter(device: c_int, previous: *mut c_int, err: *mut c_char, err_len: usize) -> c_int;
    fn pt_autocast_exit(device: c_int, previous: c_int, err: *mut c_char, err_len: usize) -> c_int;
    fn pt_autocast_is_enabled(device: c_int) -> c_int;
}

/// How the forward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    /// bf16 autocast over fp32 master weights.
    Bf16,
}

impl Precision {
    /// `[run] precision`: `auto` is bf16 on CUDA and fp32 on the CPU; `fp32`; `bf16` (also on the
    /// CPU, where libtorch's CPU autocast supports it).
    pub fn resolve(setting: PrecisionSetting, device: Device) -> Precision {
        match (setting, device) {
            (PrecisionSetting::Fp32, _) | (PrecisionSetting::Auto, Device::Cpu) => Precision::Fp32,
            (PrecisionSetting::Bf16, _) | (PrecisionSetting::Auto, _) => Precision::Bf16,
        }
    }

    /// Enters autocast for `device` when this precision asks for it.
    pub fn scope(self, device: Device) -> Result<Option<Autocast>> {
        match self {
            Precision::Fp32 => Ok(None),
            Precision::Bf16 => Autocast::enter(device).map(Some),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

fn device_code(device: Device) -> c_int {
    if device.is_cuda() {
        1
    } else {
        0
    }
}

/// bf16 autocast on one device for the current thread until dropped (scopes nest).
pub struct Autocast {
    device: c_int,
    previous: c_int,
}

impl Autocast {
    pub fn enter(device: Device) -> Result<Autocast> {
        let device = device_code(device);
        let mut previous = 0;
        // SAFETY: the shim writes at most `len` bytes (NUL-terminated) and one int.
        crate::shim::call(|err, len| unsafe { pt_autocast_enter(device, &mut previous, err, len) })
            .map_err(|msg| Error::Config(format!("enabling bf16 autocast failed in libtorch: {msg}")))?;
        Ok(Autocast { device, previous })
    }

    /// Whether autocast is on for `device` in this thread.
    pub fn is_enabled(device: Device) -> bool {
        // SAFETY: no pointers cross.
        unsafe { pt_autocast_is_enabled(device_code(device)) != 0 }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let (device, previous) = (self.device, self.previous);
        // SAFETY: as in `enter`.
        if let Err(msg) = crate::shim::call(|err, len| unsafe { pt_autocast_exit(device, previous, err, len) }) {
            tracing::warn!("leaving bf16 autocast failed in libtorch: {msg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_scope_turns_matmul_to_bf16_and_keeps_fp32_ops_and_restores() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let exact = a.matmul(&b);
        assert!(!Autocast::is_enabled(Device::Cpu));
        {
            let _outer = Precision::Bf16.scope(Device::Cpu).unwrap();
            assert!(Autocast::is_enabled(Device::Cpu));
            {
                let _inner = Autocast::enter(Device::Cpu).unwrap();
            }
            assert!(Autocast::is_enabled(Device::Cpu), "an inner scope restores the outer one's state");
            let c = a.matmul(&b);
            assert_eq!(c.kind(), Kind::BFloat16);
            // The fp32 tensors themselves (master weights) are untouched: autocast casts copies.
            assert_eq!((a.kind(), b.kind()), (Kind::Float, Kind::Float));
            let error = (c.to_kind(Kind::Float) - &exact).abs().max().double_value(&[]);
            assert!(error > 0.0 && error < 0.1, "bf16 result near the fp32 one, not equal: {error}");
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        assert_eq!(Precision::resolve(PrecisionSetting::Auto, Device::Cpu), Precision::Fp32);
        assert_eq!(Precision::resolve(PrecisionSetting::Auto, Device::Cuda(0)), Precision::Bf16);
        assert_eq!(Precision::resolve(PrecisionSetting::Bf16, Device::Cpu), Precision::Bf16);
    }
}
