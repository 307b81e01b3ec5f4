//! An out-of-tree pt plugin, built against `pt-sdk` alone: the `denoise` objective.
//!
//! It works with any architecture that outputs `features` (BERT's [CLS] vector, a ResNet's
//! pooled features, ...) and any dataset with the field it corrupts. See `objective.rs` for the
//! idea and `docs/plugin-authoring.md` in the pt repository for a walk-through.

pub mod config;
pub mod corrupt;
pub mod objective;
pub mod predictor;

pub use config::DenoiseConfig;
pub use objective::Denoise;

pt_sdk::export_plugin! {
    name: "denoise",
    objectives: [Denoise],
}
