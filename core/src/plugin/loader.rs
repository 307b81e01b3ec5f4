//! Loading one plugin file: ELF check, abi_stable's version and layout check, then pt's own
//! handshake (plugin name/version, SDK, tch and libtorch versions). Libraries are never unloaded.

use super::elf::ElfCheck;
use crate::{Error, Result};
use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use pt_sdk::ffi::PluginModRef;
use pt_sdk::PluginManifest;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A plugin in this process: where it came from and what it provides.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub sha256: String,
    pub manifest: PluginManifest,
    pub module: PluginModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("path", &self.path).field("name", &self.manifest.name).finish()
    }
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }
    /// An in-process plugin (built-in components, tests): no file behind it.
    pub fn in_process(module: PluginModRef, label: &str) -> Result<Self> {
        let manifest = parse_manifest(Path::new(label), module)?;
        // Its statics are the host's own: its events already reach the host's subscriber.
        install_host_services(module, false);
        Ok(LoadedPlugin { path: PathBuf::from(label), sha256: String::new(), manifest, module })
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn not_a_plugin(path: &Path, detail: impl Into<String>) -> Error {
    load_error(
        path,
        "is a shared library but not a pt plugin (it exports no pt root module; plugins call pt_sdk::export_plugin!)",
        detail,
    )
}

fn load_error(path: &Path, message: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::PluginLoad { path: path.to_path_buf(), message: message.into(), detail: detail.into() }
}

/// Loads and validates a plugin file.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin> {
    load_plugin_expecting(path, None)
}

/// Loads a plugin whose file must have the sha256 `expected` (an installed plugin: the hash
/// recorded at install). The file is checked before it is opened: a changed file, or a library
/// that exports no pt root module, never gets its constructors run.
pub fn load_plugin_expecting(path: &Path, expected: Option<&str>) -> Result<LoadedPlugin> {
    let path = path.canonicalize().map_err(|e| load_error(path, format!("cannot open: {e}"), ""))?;
    let bytes = std::fs::read(&path).map_err(|e| load_error(&path, format!("cannot read: {e}"), ""))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = expected.filter(|e| **e != sha256) {
        return Err(load_error(
            &path,
            format!(
                "changed since it was installed (sha256 {}…, recorded {}…): reinstall it with `pt plugin install SOURCE.so` if the change is yours",
                &sha256[..12],
                &expected[..expected.len().min(12)]
            ),
            "",
        ));
    }
    match super::elf::check(&bytes, abi_stable::library::ROOT_MODULE_LOADER_NAME) {
        ElfCheck::NotElf => {
            return Err(load_error(
                &path,
                "not a shared library (no ELF header): a pt plugin is a Rust cdylib built against pt-sdk",
                "",
            ))
        }
        ElfCheck::Elf64 { defines_symbol: false } => return Err(not_a_plugin(&path, "")),
        ElfCheck::OtherClass | ElfCheck::Elf64 { defines_symbol: true } => {}
    }
    drop(bytes);
    let header = lib_header_from_path(&path).map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => not_a_plugin(&path, e.to_string()),
        LibraryError::OpenError { ref err, .. } => {
            load_error(&path, format!("cannot be loaded: {}", first_line(&err.to_string())), e.to_string())
        }
        other => load_error(&path, "cannot be loaded", other.to_string()),
    })?;
    // abi_stable itself accepts a newer 0.x minor and then reports only a layout difference;
    // pt refuses any other minor (0.x) or major SDK, and says so.
    let (ours, theirs) = (PluginModRef::VERSION_STRINGS.version, header.version_strings().version);
    if !same_sdk_series(ours.as_str(), theirs.as_str()) {
        let detail = match header.ensure_layout::<PluginModRef>() {
            Err(e) => e.to_string(),
            Ok(()) => {
                format!("root module layouts agree; the versions differ ({theirs} vs {ours})")
            }
        };
        return Err(load_error(
            &path,
            format!("was built against pt-sdk {theirs}, but this pt uses pt-sdk {ours}: rebuild the plugin against pt-sdk {ours}"),
            detail,
        ));
    }
    let module: PluginModRef = header.init_root_module::<PluginModRef>().map_err(|e| {
        let ours = PluginModRef::VERSION_STRINGS.version;
        match &e {
            LibraryError::IncompatibleVersionNumber { actual_version, .. } => load_error(
                &path,
                format!(
                    "was built against pt-sdk {actual_version}, but this pt uses pt-sdk {ours}: rebuild the plugin against pt-sdk {ours}"
                ),
                e.to_string(),
            ),
            LibraryError::AbiInstability(_) => load_error(
                &path,
                format!(
                    "its pt-sdk types do not match this pt's (pt-sdk {ours}): rebuild the plugin against pt-sdk {ours} (run with -v for the layout difference)"
                ),
                e.to_string(),
            ),
            _ => load_error(&path, "failed the pt handshake", e.to_string()),
        }
    })?;
    let manifest = parse_manifest(&path, module)?;
    if manifest.libtorch_version != pt_sdk::LIBTORCH_VERSION || manifest.tch_version != pt_sdk::TCH_VERSION {
        return Err(load_error(
            &path,
            format!(
                "plugin '{}' was built for tch {} / libtorch {}, this pt uses tch {} / libtorch {}: rebuild it against pt-sdk {}",
                manifest.name,
                manifest.tch_version,
                manifest.libtorch_version,
                pt_sdk::TCH_VERSION,
                pt_sdk::LIBTORCH_VERSION,
                pt_sdk::SDK_VERSION
            ),
            "",
        ));
    }
    tracing::debug!(plugin = %manifest.name, version = %manifest.version, path = %path.display(), "loaded plugin");
    install_host_services(module, true);
    Ok(LoadedPlugin { path, sha256, manifest, module })
}

/// Hands the plugin the host's services and (a plugin in its own binary) the log sink; a
/// plugin built before they existed has no slot.
fn install_host_services(module: PluginModRef, forward_logs: bool) {
    if let Some(install) = module.install_host() {
        install(crate::dist::host_services());
    }
    if let Some(install) = module.install_logger().filter(|_| forward_logs) {
        install(pt_sdk::ffi::LogSink { log: plugin_log });
    }
}

/// A plugin's log event, re-emitted as the host's (target `plugin`; progress lines keep the
/// target `progress`, which `pt` shows on stderr).
extern "C" fn plugin_log(level: u8, target: abi_stable::std_types::RStr<'_>, text: abi_stable::std_types::RStr<'_>) {
    let (source, text) = (target.as_str(), text.as_str());
    match level {
        1 => tracing::error!(target: "plugin", source, "{text}"),
        2 => tracing::warn!(target: "plugin", source, "{text}"),
        _ if source == "progress" => tracing::info!(target: "progress", "{text}"),
        _ => tracing::info!(target: "plugin", source, "{text}"),
    }
}

fn parse_manifest(path: &Path, module: PluginModRef) -> Result<PluginManifest> {
    let text = (module.manifest())();
    serde_json::from_str(text.as_str())
        .map_err(|e| load_error(path, format!("sent an unreadable manifest ({e})"), text.to_string()))
}

/// Same major version, and for 0.x the same minor: the versions whose ABI pt promises to keep.
fn same_sdk_series(a: &str, b: &str) -> bool {
    let series = |v: &str| {
        let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
        let (major, minor) = (parts.next().flatten(), parts.next().flatten());
        if major == Some(0) {
            (major, minor)
        } else {
            (major, None)
        }
    };
    series(a) == series(b)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::same_sdk_series;

    #[test]
    fn sdk_series_is_the_minor_below_1_and_the_major_from_1() {
        assert!(same_sdk_series("0.1.0", "0.1.7"));
        assert!(!same_sdk_series("0.1.0", "0.2.0"));
        assert!(!same_sdk_series("0.2.0", "0.1.0"));
        assert!(same_sdk_series("1.2.0", "1.5.1"));
        assert!(!same_sdk_series("1.0.0", "2.0.0"));
    }
}
