//! # pt-sdk: write pt plugins
//!
//! A pt plugin is a `cdylib` that provides components of four kinds — **datasets**,
//! **architectures**, **objectives** and **evaluators** — to the `pt` host, which loads it at run
//! time. You implement plain Rust traits over `tch` tensors and write one macro line; the SDK
//! makes them a stable ABI (built on `abi_stable`), catches every panic and libtorch error at the
//! boundary, and describes your configs to `pt plugin info`.
//!
//! ## Quick start: a new objective
//!
//! ```no_run
//! use pt_sdk::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! /// Reconstruct the input from noisy features (a toy denoising objective).
//! pub struct Denoise {
//!     noise: f64,
//! }
//!
//! #[derive(Serialize, Deserialize, PluginConfig)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct DenoiseConfig {
//!     /// Standard deviation of the Gaussian noise added to `features`.
//!     #[config(default = 0.1, min = 0.0)]
//!     pub noise: f64,
//! }
//!
//! impl Component for Denoise {
//!     const NAME: &'static str = "denoise";
//!     const ABOUT: &'static str = "feature denoising";
//!     type Config = DenoiseConfig;
//!     fn new(config: DenoiseConfig, _ctx: &CreateCtx) -> Result<Self> {
//!         Ok(Denoise { noise: config.noise })
//!     }
//! }
//!
//! impl Objective for Denoise {
//!     fn info(&self) -> ObjectiveInfo {
//!         ObjectiveInfo { needs_outputs: vec!["features".into()], ..Default::default() }
//!     }
//!     fn loss(&self, _batch: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<LossOutput> {
//!         let f = outputs.require("features")?;
//!         let noisy = f + f.randn_like() * self.noise;
//!         let loss = (noisy - f.detach()).square().mean(None);
//!         Ok(LossOutput { loss, metrics: vec![] })
//!     }
//! }
//!
//! pt_sdk::export_plugin! {
//!     name: "denoise",
//!     objectives: [Denoise],
//! }
//! # fn main() {}
//! ```
//!
//! `pt plugin new NAME --kind objective` writes such a crate, ready to build. Build it as a
//! `cdylib` (`crate-type = ["cdylib", "rlib"]`), then
//! `pt plugin install target/release/libdenoise.so` and
//! `pt train --objective denoise --arch bert`. `docs/plugin-authoring.md` walks through a full
//! example.
//!
//! ## What crosses the boundary
//! Tensors cross as an owning handle ([`PtTensor`]) over libtorch's tensor: host and plugins link
//! the same libtorch, so autograd, grad mode, autocast and CUDA state are shared. Batches and
//! outputs are named tensor maps ([`Tensors`] on your side). Configs and descriptions cross as
//! JSON. Every call returns `RResult<_, PtError>`.
//!
//! ## What is not here
//! Datasets, readers, augmentation, parameter builders (`Linear`) and losses live in `pt-kit`,
//! beside this crate: the contract stays small and a toolkit change never changes it.

pub mod component;
pub mod config;
pub mod error;
pub mod export;
pub mod ffi;
pub mod host;
pub mod host_view;
pub mod info;
pub mod log;
mod on_device;
pub mod rng;
pub mod taps;
pub mod tensor;

// The derive's generated code names `::pt_sdk`, which inside this crate is this crate.
extern crate self as pt_sdk;

pub use abi_stable;
pub use serde;
pub use serde_json;
pub use tch;

pub use component::{Architecture, Component, Dataset, Evaluator, LossOutput, Objective};
pub use config::{Config, NoConfig};
pub use error::{ErrorKind, PtError, Result};
pub use ffi::StepCtx;
pub use host_view::{ConfusionMatrix, EvalReport, HostData, HostModel, Splits};
pub use info::*;
/// `#[derive(PluginConfig)]`: each config key written once (see [`config`]).
pub use pt_sdk_derive::PluginConfig;
pub use tensor::{live_handles, PtTensor, TensorEntry, TensorMap, Tensors};

/// This SDK's version; a plugin built against another minor version (0.x) is refused at load.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The tch version this SDK binds.
pub const TCH_VERSION: &str = "0.24.0";
/// The libtorch version tch binds (a plugin and the host must link the same one).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// `-1` → CPU, `n` → `cuda:n`.
pub fn device_from_code(code: i64) -> tch::Device {
    if code < 0 {
        tch::Device::Cpu
    } else {
        tch::Device::Cuda(code as usize)
    }
}

pub fn device_code(device: tch::Device) -> i64 {
    match device {
        tch::Device::Cuda(i) => i as i64,
        _ => -1,
    }
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::{
        bail, Architecture, ArchitectureInfo, Component, Config, CreateCtx, Dataset, DatasetInfo, ErrorKind,
        EvalReport, Evaluator, EvaluatorInfo, ExportFormat, FeatureTap, FieldInfo, HostData, HostModel, InputDecl,
        LossOutput, NoConfig, Objective, ObjectiveExport, ObjectiveInfo, PluginConfig, PtError, Result, Splits,
        StepCtx, Tensors,
    };
    pub use tch::{self, Device, Kind, Tensor};
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_symbol_matches_abi_stable() {
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }
}
