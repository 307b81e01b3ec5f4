//! # pt-optim: flat-buffer optimizers, gradient clipping and learning-rate schedules
//!
//! ## Design
//! A model has hundreds of parameter tensors; updating them one by one costs several small
//! kernels each per step. [`FlatParams`] instead copies every trainable parameter into one
//! contiguous float32 buffer, ordered so each [`ParamGroup`] is one slice, and re-points the
//! caller's tensors at views of it with `set_data`. The model (possibly in a plugin `.so`; host
//! and plugins share the `TensorImpl`) keeps computing with the same tensor objects, which stay
//! autograd leaves. Their `.grad` tensors are re-pointed the same way at views of one flat
//! gradient buffer: backward accumulates into it in place, [`FlatParams::zero_grad`] is one
//! kernel and [`FlatParams::flat_grad`] hands out the buffer without copying.
//!
//! Optimizers ([`AdamW`], [`Sgd`], [`Lars`]) then run PyTorch's fused kernels
//! (`torch.optim.AdamW(fused=True)`, `SGD(fused=True)`, through a small C++ shim): one pass per
//! group per step over the group's slice (LARS adds one `segment_reduce` for the per-parameter
//! norms and scales the gradient first). Their state is a few flat tensors plus `step` and a `layout` fingerprint, saved and
//! restored as named tensors; restoring checks names, shapes, dtypes and the layout first.
//! Learning rates come from [`ScheduleConfig::lr_at`], a pure function of the step.
//! Nothing in a training step reads a value back to the host: [`step_guard`] computes the
//! global norm, folds clipping into the update as a gradient scale and flags a non-finite
//! gradient (or loss) so the update skips itself, all on the device.
//!
//! ## Differences from PyTorch to know about
//! - Gradients are zeroed, never set to `None` (PyTorch's `zero_grad(set_to_none=False)`): a
//!   parameter that got no gradient in a step still has its moments decayed and weight decay
//!   applied, where `torch.optim` would skip it.
//! - Every optimizer keeps one step counter, not one per parameter; a step its guard skips is
//!   not counted.
//! - Schedules hold at `min_lr_ratio` after `total_steps`; Hugging Face's cosine keeps
//!   oscillating there.
//! - Flatten after the model reached its final device and dtype; re-pointing its parameters
//!   afterwards (e.g. `VarStore::set_kind`) detaches them, which `flat_grad` reports.
//!
//! ```no_run
//! use pt_optim::{build, default_groups, step_guard, FlatParams, OptimizerConfig, ScheduleConfig};
//! # fn demo(named: Vec<(String, tch::Tensor)>, loss: impl Fn() -> tch::Tensor) -> pt_sdk::Result<()> {
//! let config = OptimizerConfig::default();
//! let params = FlatParams::new(named, &default_groups(config.weight_decay()).with_lr_mult("encoder.", 0.1))?;
//! let mut optimizer = build(&config, &params)?;
//! let schedule = ScheduleConfig::default();
//! for step in 0..1000 {
//!     params.zero_grad()?;
//!     loss().backward();
//!     let grad = params.flat_grad()?;
//!     let (_norm, guard) = step_guard(&grad, Some(1.0), None)?;
//!     optimizer.step(&params, &grad, schedule.lr_at(step, 1000, 1e-3), &guard)?;
//! }
//! # Ok(()) }
//! ```

mod adamw;
mod clip;
mod flat;
mod fused;
mod groups;
mod lars;
mod optimizer;
mod schedule;
mod sgd;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::step_guard;
pub use flat::{FlatParams, GroupSlice, Segment, SEGMENT_ALIGN};
pub use groups::{default_groups, Assignment, GroupRules, Grouping, LrMultRule, ParamGroup};
pub use lars::{Lars, LarsConfig};
pub use optimizer::{build, load_saved_state, saved_state, Optimizer, OptimizerConfig, StepGuard};
pub use schedule::{Decay, ScheduleConfig};
pub use sgd::{Sgd, SgdConfig};
