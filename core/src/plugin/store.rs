//! The user plugin directory: `pt plugin install / remove`, with a manifest recording what was
//! installed from where.

use super::loader::{load_plugin, sha256_file};
use super::registry::user_plugin_dir;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InstalledPlugin {
    pub name: String,
    pub version: String,
    pub sdk_version: String,
    pub sha256: String,
    /// Where it was installed from.
    pub source: String,
    /// File name inside the plugin directory.
    pub file: String,
    pub installed_at_unix: u64,
    /// `kind:name` of each component.
    pub components: Vec<String>,
}

#[derive(Serialize, Deserialize, Default, Debug)]
pub struct StoreManifest {
    pub format_version: u32,
    pub plugins: Vec<InstalledPlugin>,
}

pub struct PluginStore {
    pub dir: PathBuf,
}

impl Default for PluginStore {
    fn default() -> Self {
        PluginStore { dir: user_plugin_dir() }
    }
}

/// What an install did.
pub struct InstallOutcome {
    pub installed: InstalledPlugin,
    pub replaced: Option<InstalledPlugin>,
}

impl PluginStore {
    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    pub fn read_manifest(&self) -> Result<StoreManifest> {
        let path = self.manifest_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::Registry(format!(
                    "{} is not a valid plugin manifest ({e}); move it aside and reinstall your plugins",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(StoreManifest { format_version: 1, plugins: vec![] })
            }
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn write_manifest(&self, m: &StoreManifest) -> Result<()> {
        let text = serde_json::to_string_pretty(m).map_err(|e| Error::Registry(e.to_string()))?;
        write_atomic(&self.manifest_path(), text.as_bytes())
    }

    /// Validates `src` (loads it, runs the handshake) and copies it into the plugin directory.
    pub fn install(&self, src: &Path) -> Result<InstallOutcome> {
        let plugin = load_plugin(src)?;
        if plugin.manifest.components.is_empty() {
            return Err(Error::Registry(format!(
                "{}: plugin '{}' provides no components; nothing to install",
                src.display(),
                plugin.manifest.name
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let name = &plugin.manifest.name;
        let file = format!("lib{}.so", name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_"));
        let bytes = std::fs::read(&plugin.path).map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
        write_atomic(&self.dir.join(&file), &bytes)?;
        let sha = sha256_file(&self.dir.join(&file))?;
        if sha != plugin.sha256 {
            return Err(Error::Registry(format!(
                "copy of {} in {} is corrupt (checksum differs)",
                src.display(),
                self.dir.display()
            )));
        }
        let installed = InstalledPlugin {
            name: name.clone(),
            version: plugin.manifest.version.clone(),
            sdk_version: plugin.manifest.sdk_version.clone(),
            sha256: sha,
            source: plugin.path.display().to_string(),
            file,
            installed_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            components: plugin.manifest.components.iter().map(|c| format!("{}:{}", c.kind, c.name)).collect(),
        };
        let mut m = self.read_manifest()?;
        let replaced = m.plugins.iter().position(|p| p.name == *name).map(|i| m.plugins.remove(i));
        m.format_version = 1;
        m.plugins.push(installed.clone());
        m.plugins.sort_by(|a, b| a.name.cmp(&b.name));
        self.write_manifest(&m)?;
        tracing::info!(plugin = %name, dir = %self.dir.display(), "installed plugin");
        Ok(InstallOutcome { installed, replaced })
    }

    pub fn remove(&self, name: &str) -> Result<InstalledPlugin> {
        let mut m = self.read_manifest()?;
        let Some(i) = m.plugins.iter().position(|p| p.name == name) else {
            let names: Vec<&str> = m.plugins.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::Registry(format!(
                "no installed plugin called '{name}' in {} (installed: {})",
                self.dir.display(),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        };
        let p = m.plugins.remove(i);
        // Only ever a file of this directory: the manifest is a plain JSON file anyone can edit.
        let own = Path::new(&p.file).file_name().is_some_and(|n| n == p.file.as_str()) && p.file != "..";
        if !own {
            return Err(Error::Registry(format!(
                "{}: the entry for '{name}' names file '{}', which is not in {}; pt deletes only inside its plugin directory. Fix or remove that entry by hand",
                self.manifest_path().display(),
                p.file,
                self.dir.display()
            )));
        }
        let path = self.dir.join(&p.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
        self.write_manifest(&m)?;
        Ok(p)
    }
}

/// Writes via a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing {}", path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_never_deletes_outside_the_plugin_directory() {
        let home = tempfile::tempdir().unwrap();
        let store = PluginStore { dir: home.path().join("plugins") };
        std::fs::create_dir_all(&store.dir).unwrap();
        let victim = home.path().join("precious.txt");
        std::fs::write(&victim, b"keep me").unwrap();
        for file in ["../precious.txt", victim.to_str().unwrap(), ".."] {
            let entry = InstalledPlugin {
                name: "evil".into(),
                version: "1".into(),
                sdk_version: "0".into(),
                sha256: String::new(),
                source: String::new(),
                file: file.into(),
                installed_at_unix: 0,
                components: vec![],
            };
            store.write_manifest(&StoreManifest { format_version: 1, plugins: vec![entry] }).unwrap();
            let err = store.remove("evil").unwrap_err().to_string();
            assert!(err.contains("deletes only inside its plugin directory"), "{err}");
            assert!(victim.exists(), "{file}: the file outside was kept");
            assert_eq!(store.read_manifest().unwrap().plugins.len(), 1, "nothing changed");
        }
    }
}
