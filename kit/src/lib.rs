//! # pt-kit: the toolkit beside the plugin contract
//!
//! `pt-sdk` is the contract a plugin and the host agree on (tensors, traits, configs, errors,
//! the export macro); this crate is what first-party plugins are built from and what any plugin
//! may reuse. Nothing here crosses the plugin boundary, so it changes without breaking plugins.
//!
//! - [`params`]: parameters under reference-checkpoint names with counter-based init, `Linear`.
//! - [`losses`]: cross-entropy over labelled rows.
//! - [`rows`]: several rows per sample (views, rotations) with the batch's fields kept aligned.
//! - [`files`], [`shards`]: a dataset's file lists and WebDataset-style tar shards.
//! - [`vision`] (feature `vision`), [`audio`] (feature `audio`), [`text`] (feature `text`):
//!   datasets and their readers.
//! - [`memory`]: refusing model sizes that cannot fit before anything is allocated.
//! - [`upload`]: host values onto the training device without waiting for it.

#[cfg(feature = "audio")]
pub mod audio;
pub mod files;
pub mod losses;
pub mod memory;
#[cfg(all(feature = "vision", feature = "text"))]
pub mod pairs;
pub mod params;
pub mod rows;
pub mod shards;
#[cfg(feature = "text")]
pub mod text;
#[cfg(feature = "text")]
mod text_parquet;
pub mod upload;
#[cfg(feature = "vision")]
pub mod vision;

// The contract items the toolkit builds on, under the paths its modules use.
#[allow(unused_imports)]
pub(crate) use pt_sdk::{
    rng, Component, Config, CreateCtx, Dataset, DatasetInfo, ErrorKind, FieldInfo, OnDevice, PtError, Result, StepCtx,
    Tensors,
};
