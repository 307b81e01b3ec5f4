//! Plugins: loading a `.so` with its handshake ([`loader`]), finding plugins on the search path
//! and resolving component names ([`registry`]), installing and removing them ([`store`]).

mod elf;
pub mod loader;
pub mod registry;
pub mod store;

pub use loader::{load_plugin, LoadedPlugin};
pub use registry::{Registry, SearchDir, SearchDirKind};
