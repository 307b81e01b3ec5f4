//! `pt plugin new NAME --kind KIND`: a plugin crate that builds, installs and trains as written.
//!
//! One source file (the component, its `#[derive(PluginConfig)]` config and the
//! `export_plugin!` line), a test that runs it through a tiny `pt train`, and the build set-up
//! that makes a plugin match this pt: pt's dependency versions (its `Cargo.lock`), pt's release
//! profile, the libtorch pt runs on, and one build cache shared by every plugin made this way
//! (tch and torch-sys compile once; later plugins compile only themselves).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Objective,
    Architecture,
    Dataset,
    Evaluator,
}

#[derive(clap::Args)]
pub struct Args {
    /// The plugin's name (also its component's, its crate's and its folder's): lower case,
    /// letters, digits and `_`.
    pub name: String,
    /// Which component the plugin starts with.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where to write the crate (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// pt's source checkout (the folder with sdk/ and kit/); default: the one this pt was built from.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// The cargo target directory the plugin builds in (default: $PT_HOME/plugin-build, shared
    /// by every plugin made with `pt plugin new`).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
}

/// The example the objective template is (`examples/rotnet`), and the other kinds' templates.
const OBJECTIVE_LIB: &str = include_str!("../../examples/rotnet/src/lib.rs");
const OBJECTIVE_TEST: &str = include_str!("../../examples/rotnet/tests/train.rs");
/// Every kind's test helpers (pt on PATH, the built plugin, a small image set).
const TEST_COMMON: &str = include_str!("../../examples/rotnet/tests/common/mod.rs");
/// The rpath to libtorch that lets the unit tests run the component in-process.
const BUILD_RS: &str = include_str!("../../examples/rotnet/build.rs");
const ARCHITECTURE_LIB: &str = include_str!("../templates/architecture.rs");
const ARCHITECTURE_TEST: &str = include_str!("../templates/architecture_test.rs");
const DATASET_LIB: &str = include_str!("../templates/dataset.rs");
const DATASET_TEST: &str = include_str!("../templates/dataset_test.rs");
const EVALUATOR_LIB: &str = include_str!("../templates/evaluator.rs");
const EVALUATOR_TEST: &str = include_str!("../templates/evaluator_test.rs");
const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.in");
/// pt's own lock file: the plugin resolves to the versions pt was built with, so it links the
/// same tch and reuses compiled dependencies instead of resolving newer ones.
const PT_LOCK: &str = include_str!("../../Cargo.lock");

pub fn run(args: Args) -> anyhow::Result<()> {
    let name = &args.name;
    check_name(name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty: choose another --dir or remove it", dir.display());
    }
    let source = match &args.source {
        Some(s) => s.clone(),
        None => built_from()
            .context("this pt does not know its source checkout: pass --source PATH (the folder with sdk/ and kit/)")?,
    };
    for crate_dir in ["sdk", "kit"] {
        if !source.join(crate_dir).join("Cargo.toml").is_file() {
            bail!(
                "--source {}: no {crate_dir}/Cargo.toml there (give pt's checkout, the folder with sdk/ and kit/)",
                source.display()
            );
        }
    }
    let source = source.canonicalize().with_context(|| format!("resolving {}", source.display()))?;
    let target_dir =
        args.target_dir.clone().unwrap_or_else(|| pt_core::plugin::registry::pt_home().join("plugin-build"));
    // Cargo reads the config from the crate's folder: a relative path would point elsewhere.
    let target_dir = std::path::absolute(&target_dir).with_context(|| format!("resolving {}", target_dir.display()))?;
    let libtorch = pt_core::runtime::libtorch_lib_dir().and_then(|lib| lib.parent().map(Path::to_path_buf));

    let camel = camel_case(name);
    let (lib, test) = match args.kind {
        // The example itself, renamed.
        Kind::Objective => (
            OBJECTIVE_LIB.replace("RotNet", "__Name__").replace("rotnet", "__name__"),
            OBJECTIVE_TEST.replace("rotnet", "__name__"),
        ),
        Kind::Architecture => (ARCHITECTURE_LIB.to_string(), ARCHITECTURE_TEST.to_string()),
        Kind::Dataset => (DATASET_LIB.to_string(), DATASET_TEST.to_string()),
        Kind::Evaluator => (EVALUATOR_LIB.to_string(), EVALUATOR_TEST.to_string()),
    };
    let fill = |text: &str| text.replace("__Name__", &camel).replace("__name__", name);
    let toml_path = |p: &Path| p.display().to_string().replace('\\', "/");
    let cargo_toml = CARGO_TOML
        .replace("__name__", name)
        .replace("__sdk__", &toml_path(&source.join("sdk")))
        .replace("__kit__", &toml_path(&source.join("kit")));
    let mut config = format!(
        "# Every plugin made with `pt plugin new` builds here: tch and torch-sys compile once.\n\
         [build]\ntarget-dir = \"{}\"\n",
        toml_path(&target_dir)
    );
    match &libtorch {
        // The libtorch folder (the parent of the `lib` folder `pt doctor` prints); an exported
        // LIBTORCH still wins, [env] never overrides the environment.
        Some(root) => config.push_str(&format!("\n[env]\nLIBTORCH = \"{}\"\n", toml_path(root))),
        None => config.push_str(
            "\n# Set LIBTORCH to the libtorch 2.11 folder (the parent of the `lib` folder `pt doctor` prints).\n",
        ),
    }
    let files: [(&str, String); 8] = [
        ("Cargo.toml", cargo_toml),
        ("Cargo.lock", PT_LOCK.to_string()),
        (".cargo/config.toml", config),
        ("src/lib.rs", fill(&lib)),
        ("tests/train.rs", fill(&test)),
        ("tests/common/mod.rs", TEST_COMMON.to_string()),
        ("build.rs", BUILD_RS.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let so = target_dir.join("release").join(format!("lib{name}.so"));
    let registry = pt_core::plugin::Registry::discover();
    if let Some(found) = registry.plugins.iter().find(|f| f.plugin.name() == name.as_str()) {
        println!(
            "note: a plugin named '{name}' is already on pt's search path ({}); installing this one replaces or shadows it",
            found.plugin.path.display()
        );
    }
    println!("wrote {}: plugin '{name}' with {} '{name}'", dir.display(), kind_name(args.kind));
    println!("  src/lib.rs        the {} and its config; pt_sdk::export_plugin! at the end", kind_name(args.kind));
    println!("  tests/train.rs    runs it through a tiny `pt train` (needs pt on PATH)");
    println!("next:");
    println!("  cd {} && cargo build --release", dir.display());
    println!("  pt plugin install {}", so.display());
    if libtorch.is_none() {
        println!("note: pt could not tell where its libtorch is; set LIBTORCH in {}/.cargo/config.toml", dir.display());
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Objective => "objective",
        Kind::Architecture => "architecture",
        Kind::Dataset => "dataset",
        Kind::Evaluator => "evaluator",
    }
}

/// Rust keywords and the crates a plugin depends on: not a crate name.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "serde",
    "serde_json",
    "tch",
    "torch_sys",
    "pt_sdk",
    "pt_kit",
    "build",
];

/// Type names the templates already use, which the component's type (the name in CamelCase)
/// and its config's must not shadow.
const TEMPLATE_TYPES: &[&str] = &[
    "Architecture",
    "ArchitectureInfo",
    "Component",
    "Config",
    "Created",
    "CreateCtx",
    "Dataset",
    "DatasetInfo",
    "Deserialize",
    "Device",
    "ErrorKind",
    "EvalReport",
    "Evaluator",
    "EvaluatorInfo",
    "FieldInfo",
    "HostData",
    "HostModel",
    "InputDecl",
    "Kind",
    "Linear",
    "LossOutput",
    "NoConfig",
    "Objective",
    "ObjectiveInfo",
    "Params",
    "PluginConfig",
    "PtError",
    "Result",
    "Serialize",
    "Splits",
    "StepCtx",
    "Tensor",
    "Tensors",
    "BTreeMap",
];

/// A name that makes a crate, a library and types that compile.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("plugin name '{name}': use lower case letters, digits and '_', starting with a letter (e.g. rotnet)");
    }
    let camel = camel_case(name);
    let config = format!("{camel}Config");
    if RESERVED.contains(&name) || TEMPLATE_TYPES.contains(&camel.as_str()) || TEMPLATE_TYPES.contains(&config.as_str())
    {
        bail!(
            "plugin name '{name}' clashes with a Rust keyword, a dependency or a type the generated code uses: \
             choose another (e.g. my_{name})"
        );
    }
    Ok(())
}

/// The checkout this pt was built from, if it is still there.
fn built_from() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    root.join("sdk/Cargo.toml").is_file().then_some(root)
}

/// `my_objective` → `MyObjective`.
fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_clashes_are_refused() {
        assert_eq!(camel_case("rotnet"), "Rotnet");
        assert_eq!(camel_case("my_objective2"), "MyObjective2");
        for ok in ["rotnet", "my_dataset", "csv_rows"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["dataset", "linear", "params", "tensor", "match", "test", "serde", "Bad", "9lives", "a-b", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
