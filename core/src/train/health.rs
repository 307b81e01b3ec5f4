//! Skipped steps, counted on the device. A step whose loss or gradient is not finite is skipped
//! by the optimizer itself (its `found_inf` flag); the count and the current streak follow on
//! the device too, and the host learns of them when it reads anyway: with the log line, before
//! a save and at the end of the run.

use crate::Result;
use tch::{Device, Kind, Tensor};

pub(super) struct DeviceHealth {
    /// Steps skipped since the run began (resumed runs start from the checkpoint's count).
    skipped: Tensor,
    /// Skipped steps in a row up to the last one.
    streak: Tensor,
    /// The longest streak since the host last read these (a streak may end between two reads).
    longest: Tensor,
}

impl DeviceHealth {
    pub(super) fn new(skipped: u64, device: Device) -> Result<Self> {
        Ok(DeviceHealth {
            skipped: Tensor::f_full([], skipped as f64, (Kind::Double, device))?,
            streak: Tensor::f_zeros([], (Kind::Double, device))?,
            longest: Tensor::f_zeros([], (Kind::Double, device))?,
        })
    }

    /// Adds one step: `found_inf` is its 0-dim flag (1 = skipped).
    pub(super) fn record(&mut self, found_inf: &Tensor) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        let found = found_inf.f_to_kind(Kind::Double)?;
        let _ = self.skipped.f_add_(&found)?;
        let _ = self.streak.f_add_scalar_(1.0)?.f_mul_(&found)?;
        self.longest = self.longest.f_maximum(&self.streak)?;
        Ok(())
    }

    /// `[skipped, streak, longest]`, to read with other values in one transfer.
    pub(super) fn tensors(&self) -> [&Tensor; 3] {
        [&self.skipped, &self.streak, &self.longest]
    }

    /// After a read: the longest streak since then starts from the current one.
    pub(super) fn restart_longest(&mut self) -> Result<()> {
        self.longest = self.streak.f_detach_copy()?;
        Ok(())
    }
}
