//! `pt plugin new | install | list | info | remove`.

use pt_core::plugin::store::PluginStore;
use pt_core::plugin::Registry;
use pt_sdk::ComponentKind;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin crate (one source file, a test, the build set-up) that builds and
    /// installs as is: `pt plugin new rotnet --kind objective`.
    New(crate::plugin_new::Args),
    /// Validate a plugin (load + handshake) and copy it into the plugin directory.
    Install { path: PathBuf },
    /// A table of the plugins pt can see.
    List,
    /// A plugin's components with their config keys, defaults and descriptions.
    Info { name: String },
    /// Remove an installed plugin.
    Remove { name: String },
}

fn components_by_kind(m: &pt_sdk::PluginManifest, kind: ComponentKind) -> String {
    let v: Vec<&str> = m.components.iter().filter(|c| c.kind == kind).map(|c| c.name.as_str()).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::New(args) => crate::plugin_new::run(args)?,
        PluginCommand::Install { path } => {
            let store = PluginStore::default();
            let out = store.install(&path)?;
            let p = &out.installed;
            match &out.replaced {
                Some(old) => println!("replaced {} {} with {} from {}", old.name, old.version, p.version, p.source),
                None => println!("installed {} {} from {}", p.name, p.version, p.source),
            }
            println!("  into {}", store.dir.join(&p.file).display());
            println!("  sha256 {}", p.sha256);
            println!("  components: {}", p.components.join(", "));
            let reg = Registry::discover();
            for c in &p.components {
                let (kind, name) = c.split_once(':').unwrap_or(("", c));
                let others: Vec<String> = reg
                    .plugins
                    .iter()
                    .filter(|f| f.plugin.name() != p.name)
                    .filter(|f| f.plugin.manifest.components.iter().any(|x| x.kind.as_str() == kind && x.name == name))
                    .map(|f| f.plugin.name().to_string())
                    .collect();
                if !others.is_empty() {
                    println!(
                        "  note: {kind} '{name}' is also provided by {}: select with {}:{name}",
                        others.join(", "),
                        p.name
                    );
                }
            }
        }
        PluginCommand::List => {
            let reg = Registry::discover();
            let installed = PluginStore::default().read_manifest().unwrap_or_default();
            println!(
                "{:<12} {:<8} {:<22} {:<18} {:<12} {:<22} {}",
                "PLUGIN", "VERSION", "DATASETS", "ARCHITECTURES", "OBJECTIVES", "EVALUATORS", "FROM"
            );
            for f in &reg.plugins {
                let m = &f.plugin.manifest;
                let source = installed
                    .plugins
                    .iter()
                    .find(|p| p.name == m.name)
                    .filter(|_| f.from == pt_core::plugin::SearchDirKind::UserDir)
                    .map(|p| format!(" (installed from {})", p.source))
                    .unwrap_or_default();
                println!(
                    "{:<12} {:<8} {:<22} {:<18} {:<12} {:<22} {} {}{}",
                    m.name,
                    m.version,
                    components_by_kind(m, ComponentKind::Dataset),
                    components_by_kind(m, ComponentKind::Architecture),
                    components_by_kind(m, ComponentKind::Objective),
                    components_by_kind(m, ComponentKind::Evaluator),
                    f.from.label(),
                    f.plugin.path.display(),
                    source
                );
            }
            for f in &reg.shadowed {
                println!(
                    "shadowed: {} {} at {} (an earlier copy on the search path wins)",
                    f.plugin.name(),
                    f.plugin.manifest.version,
                    f.plugin.path.display()
                );
            }
            for f in &reg.failed {
                println!("failed: {}: {}", f.path.display(), f.error);
            }
            if reg.plugins.is_empty() {
                println!(
                    "(no plugins found; searched {})",
                    reg.searched.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        PluginCommand::Info { name } => {
            let reg = Registry::discover();
            let f = reg.plugin(&name).ok_or_else(|| {
                anyhow::anyhow!(
                    "no plugin called '{name}' (found: {})",
                    reg.plugins.iter().map(|f| f.plugin.name().to_string()).collect::<Vec<_>>().join(", ")
                )
            })?;
            let m = &f.plugin.manifest;
            println!(
                "{} {}  (pt-sdk {}, tch {}, libtorch {})",
                m.name, m.version, m.sdk_version, m.tch_version, m.libtorch_version
            );
            println!("file: {}", f.plugin.path.display());
            println!("sha256: {}", f.plugin.sha256);
            for c in &m.components {
                println!();
                println!("{} {} — {}", c.kind, c.name, c.about);
                if c.config.is_empty() {
                    println!("  (no config keys)");
                }
                let kw = c.config.iter().map(|k| k.key.len()).max().unwrap_or(0);
                let dw = c.config.iter().map(|k| k.default.to_string().len()).max().unwrap_or(0).min(28);
                for k in &c.config {
                    println!("  {:<kw$} = {:<dw$}  {}", k.key, k.default.to_string(), k.description);
                }
            }
        }
        PluginCommand::Remove { name } => {
            let p = PluginStore::default().remove(&name)?;
            println!("removed {} {}", p.name, p.version);
        }
    }
    Ok(())
}
