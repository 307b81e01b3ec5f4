//! pt's SimCLR plugin (Chen et al. 2020, <https://arxiv.org/abs/2002.05709>): the `simclr`
//! objective — two augmented views of every image made on the device, a projection head owned by
//! the objective, the NT-Xent loss, and an optional online linear probe on detached features.
//! It trains any architecture with a `features` output (e.g. the ResNet plugin's `resnet18`).

pub mod config;
pub mod loss;
pub mod objective;

pub use objective::SimClr;

pt_sdk::export_plugin! {
    name: "simclr",
    objectives: [SimClr],
}
