//! Finding plugins and resolving component names.
//!
//! Search order (first match of a plugin name wins, later copies are listed as shadowed):
//! 1. `$PT_PLUGIN_PATH` (colon-separated directories or `.so` files),
//! 2. the user plugin directory `$PT_HOME/plugins` (default `~/.local/share/pt/plugins`),
//! 3. the directory of the `pt` binary itself, so a fresh `cargo build` works with no install.

use super::loader::{load_plugin_expecting, LoadedPlugin};
use crate::{Error, Result};
use pt_sdk::ComponentKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchDirKind {
    EnvPath,
    UserDir,
    NextToBinary,
    /// Compiled into pt itself.
    Builtin,
}

impl SearchDirKind {
    pub fn label(self) -> &'static str {
        match self {
            SearchDirKind::EnvPath => "$PT_PLUGIN_PATH",
            SearchDirKind::UserDir => "installed",
            SearchDirKind::NextToBinary => "next to pt",
            SearchDirKind::Builtin => "built into pt",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SearchDir {
    pub path: PathBuf,
    pub kind: SearchDirKind,
}

/// `$PT_HOME`, default `<user data dir>/pt`.
pub fn pt_home() -> PathBuf {
    std::env::var_os("PT_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("pt"))
}

pub fn user_plugin_dir() -> PathBuf {
    pt_home().join("plugins")
}

/// Where plugins are looked for, in precedence order.
pub fn search_dirs() -> Vec<SearchDir> {
    let mut dirs = Vec::new();
    if let Some(var) = std::env::var_os("PT_PLUGIN_PATH") {
        for p in std::env::split_paths(&var).filter(|p| !p.as_os_str().is_empty()) {
            dirs.push(SearchDir { path: p, kind: SearchDirKind::EnvPath });
        }
    }
    dirs.push(SearchDir { path: user_plugin_dir(), kind: SearchDirKind::UserDir });
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(SearchDir { path: dir, kind: SearchDirKind::NextToBinary });
    }
    dirs
}

/// One plugin as found on the search path.
#[derive(Debug, Clone)]
pub struct Found {
    pub plugin: Arc<LoadedPlugin>,
    pub from: SearchDirKind,
}

/// A file that looked like a plugin but did not load.
#[derive(Debug)]
pub struct Failed {
    pub path: PathBuf,
    pub error: Error,
    pub from: SearchDirKind,
}

/// The plugins this process can use.
#[derive(Debug, Default)]
pub struct Registry {
    pub plugins: Vec<Found>,
    pub shadowed: Vec<Found>,
    pub failed: Vec<Failed>,
    pub searched: Vec<SearchDir>,
}

fn candidate_files(dir: &SearchDir) -> Vec<PathBuf> {
    if dir.path.is_file() {
        return vec![dir.path.clone()];
    }
    let Ok(rd) = std::fs::read_dir(&dir.path) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "so") && p.is_file())
        .collect();
    files.sort();
    files
}

/// File name → sha256 recorded by `pt plugin install`, for the user plugin directory.
fn installed_hashes(dir: &SearchDir) -> std::collections::HashMap<String, String> {
    if dir.kind != SearchDirKind::UserDir {
        return Default::default();
    }
    match (super::store::PluginStore { dir: dir.path.clone() }).read_manifest() {
        Ok(m) => m.plugins.into_iter().map(|p| (p.file, p.sha256)).collect(),
        Err(e) => {
            tracing::warn!("{e}");
            Default::default()
        }
    }
}

impl Registry {
    /// Scans the search path and loads every plugin found there. Files that fail to load are
    /// kept in `failed` (with the reason) rather than stopping discovery; next to the binary only
    /// real pt plugins count, so unrelated shared libraries there are ignored quietly.
    pub fn discover() -> Registry {
        let mut reg = Self::discover_in(search_dirs());
        reg.add_builtin();
        reg
    }

    /// Adds pt's own components (generic transfer evaluators) as the plugin `pt`.
    pub fn add_builtin(&mut self) {
        match crate::builtin::plugin() {
            Ok(p) => self.add(Found { plugin: Arc::new(p), from: SearchDirKind::Builtin }),
            Err(e) => tracing::error!("built-in components unavailable: {e}"),
        }
    }

    pub fn discover_in(searched: Vec<SearchDir>) -> Registry {
        let mut reg = Registry { searched: searched.clone(), ..Default::default() };
        for dir in &searched {
            let installed = installed_hashes(dir);
            for file in candidate_files(dir) {
                if reg.plugins.iter().chain(&reg.shadowed).any(|f| same_file(&f.plugin.path, &file)) {
                    continue;
                }
                let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                match load_plugin_expecting(&file, installed.get(&name).map(String::as_str)) {
                    Ok(p) => reg.add(Found { plugin: Arc::new(p), from: dir.kind }),
                    Err(error) => {
                        let not_a_plugin =
                            matches!(&error, Error::PluginLoad { message, .. } if message.contains("not a pt plugin"));
                        if dir.kind == SearchDirKind::NextToBinary && not_a_plugin {
                            tracing::debug!(path = %file.display(), "skipping non-plugin shared library");
                        } else {
                            tracing::warn!(path = %file.display(), "{error}");
                            reg.failed.push(Failed { path: file, error, from: dir.kind });
                        }
                    }
                }
            }
        }
        reg
    }

    /// Adds a plugin, shadowing a later one of the same name.
    pub fn add(&mut self, found: Found) {
        if self.plugins.iter().any(|f| f.plugin.name() == found.plugin.name()) {
            self.shadowed.push(found);
        } else {
            self.plugins.push(found);
        }
    }

    pub fn plugin(&self, name: &str) -> Option<&Found> {
        self.plugins.iter().find(|f| f.plugin.name() == name)
    }

    /// Every `(plugin, component name)` of a kind.
    pub fn components(&self, kind: ComponentKind) -> Vec<(Arc<LoadedPlugin>, String)> {
        let mut out = Vec::new();
        for f in &self.plugins {
            for c in f.plugin.manifest.components.iter().filter(|c| c.kind == kind) {
                out.push((f.plugin.clone(), c.name.clone()));
            }
        }
        out
    }

    /// Resolves `name` or `plugin:name` to the plugin providing it.
    pub fn resolve(&self, kind: ComponentKind, spec: &str) -> Result<(Arc<LoadedPlugin>, String)> {
        let (plugin_name, name) = match spec.split_once(':') {
            Some((p, n)) => (Some(p), n),
            None => (None, spec),
        };
        let all = self.components(kind);
        let matches: Vec<_> =
            all.iter().filter(|(p, n)| n == name && plugin_name.is_none_or(|pn| p.name() == pn)).cloned().collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(Error::Registry(self.not_found_message(kind, spec, &all))),
            _ => Err(Error::Registry(format!(
                "{kind} '{name}' is provided by more than one plugin: {}. Choose one with --{} PLUGIN:{name}",
                matches
                    .iter()
                    .map(|(p, _)| format!("'{}' ({})", p.name(), p.path.display()))
                    .collect::<Vec<_>>()
                    .join(" and "),
                flag_for(kind)
            ))),
        }
    }

    fn not_found_message(&self, kind: ComponentKind, spec: &str, all: &[(Arc<LoadedPlugin>, String)]) -> String {
        let mut msg = format!("no {kind} called '{spec}'.");
        if all.is_empty() {
            msg.push_str(&format!(" No loaded plugin provides any {kind}."));
        } else {
            let names: Vec<String> = all.iter().map(|(p, n)| format!("{n} ({})", p.name())).collect();
            msg.push_str(&format!(" Available {kind}s: {}.", names.join(", ")));
            let close = crate::config::suggest(spec, all.iter().map(|(_, n)| n.as_str()));
            if let Some(c) = close {
                msg.push_str(&format!(" Did you mean '{c}'?"));
            }
        }
        msg.push_str(&format!(
            " Searched: {}.",
            self.searched
                .iter()
                .map(|d| format!("{} [{}]", d.path.display(), d.kind.label()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if !self.failed.is_empty() {
            msg.push_str(&format!(" {} plugin file(s) failed to load (see `pt plugin list`).", self.failed.len()));
        }
        msg.push_str(" Install a plugin with `pt plugin install PATH.so` or add its directory to $PT_PLUGIN_PATH.");
        msg
    }
}

fn flag_for(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Dataset => "data",
        ComponentKind::Architecture => "arch",
        ComponentKind::Objective => "objective",
        ComponentKind::Evaluator => "eval",
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
