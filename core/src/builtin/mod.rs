//! Components built into the host, available to every plugin's architectures: generic transfer
//! evaluators over the `features` output and a labelled dataset (a `label` field).
//! They register through the same SDK path as plugins, as the plugin `pt`.

mod features;
mod finetune;
mod knn;
mod linear_probe;

pub use finetune::Finetune;
pub use knn::Knn;
pub use linear_probe::LinearProbe;

pt_sdk::plugin_spec! {
    name: "pt",
    evaluators: [LinearProbe, Finetune, Knn],
}

/// The built-in components as a plugin of the registry.
pub fn plugin() -> crate::Result<crate::plugin::LoadedPlugin> {
    crate::plugin::LoadedPlugin::in_process(pt_plugin_root(), "(built into pt)")
}
