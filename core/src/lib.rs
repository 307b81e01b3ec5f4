//! pt-core: the host side of pt. It discovers and loads plugins ([`plugin`]), composes their
//! components ([`components`]), and runs them through one trainer and checkpoint manager.

pub mod autocast;
pub mod builtin;
pub mod checkpoint;
pub mod components;
pub mod config;
pub mod dist;
pub mod embed;
pub mod error;
pub mod model;
pub mod pinned;
pub mod plan;
pub mod plugin;
pub mod profiler;
pub mod runtime;
mod shim;
pub mod train;
pub mod transfer;
pub mod visualize;
pub mod visualize_joint;

pub use error::{Error, Result};
