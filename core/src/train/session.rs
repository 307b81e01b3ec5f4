//! Turning a recipe into live components: dataset, architecture, objective on one device, with
//! the composition check and the settings the dataset can fill in (e.g. `vocab_size`).

use crate::components::{check_composition, ArchHandle, DatasetHandle, ObjectiveHandle, Resolved};
use crate::config::{ComponentSpec, Recipe};
use crate::plugin::Registry;
use crate::{runtime, Error, Result};
use pt_sdk::{ArchitectureInfo, ComponentKind, CreateCtx, DatasetInfo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `$PT_DATA`, default `~/.cache/pt/data`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("PT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("pt")
                .join("data")
        })
}

#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub run_dir: PathBuf,
}

pub struct Session {
    pub recipe: Recipe,
    pub run_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: tch::Device,
    pub ctx: CreateCtx,
    pub data: Arc<DatasetHandle>,
    pub arch: ArchHandle,
    /// The architecture config actually used (after filling from the dataset).
    pub arch_config: Value,
    pub objective: ObjectiveHandle,
    pub objective_config: Value,
}

/// Values a dataset knows that a component may leave unset (`null` default): `vocab_size`
/// from a tokenizer, `num_classes` from labels.
fn fill_from_dataset(resolved: &Resolved, mut config: Value, info: &DatasetInfo) -> Value {
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    for key in &resolved.manifest.config {
        if !key.default.is_null() || obj.contains_key(&key.key) {
            continue;
        }
        let from_data = match key.key.as_str() {
            "num_classes" if !info.classes.is_empty() => Some(Value::from(info.classes.len())),
            k => info.notes.get(k).cloned(),
        };
        if let Some(v) = from_data {
            tracing::info!(component = %resolved.origin(), key = %key.key, value = %v, "set from the dataset");
            obj.insert(key.key.clone(), v);
        }
    }
    config
}

/// Writes keys the dataset filled in back into the recipe, so the saved config rebuilds the
/// same model without the dataset (export, evaluation).
fn record_filled(spec: &mut ComponentSpec, config: &Value) {
    let Some(obj) = config.as_object() else {
        return;
    };
    for (k, v) in obj {
        if !spec.config.contains_key(k) {
            if let Ok(t) = toml::Value::try_from(v) {
                spec.config.insert(k.clone(), t);
            }
        }
    }
}

/// What the architecture knows that an objective may leave unset (`null` default):
/// `feature_dim`, the width of its `features` output, for heads sized to it.
fn fill_from_arch(resolved: &Resolved, mut config: Value, info: &ArchitectureInfo) -> Value {
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    let wants = resolved
        .manifest
        .config
        .iter()
        .any(|k| k.key == "feature_dim" && k.default.is_null());
    if let (true, false, Some(dim)) = (wants, obj.contains_key("feature_dim"), info.feature_dim) {
        tracing::info!(component = %resolved.origin(), value = dim, "feature_dim set from the architecture");
        obj.insert("feature_dim".into(), Value::from(dim));
    }
    config
}

impl Session {
    pub fn build(reg: &Registry, recipe: Recipe, run_dir: &Path) -> Result<Session> {
        let device = runtime::resolve_device(&recipe.run.device)?;
        if recipe.run.num_threads > 0 {
            tch::set_num_threads(recipe.run.num_threads);
        }
        let data_dir = data_dir();
        std::fs::create_dir_all(run_dir)
            .map_err(|e| Error::io(format!("creating run directory {}", run_dir.display()), e))?;
        let ctx = CreateCtx {
            device: pt_sdk::device_code(device),
            seed: recipe.run.seed,
            rank: 0,
            world_size: 1,
            run_dir: run_dir.display().to_string(),
            data_dir: data_dir.display().to_string(),
        };
        for (section, spec) in [
            ("data", &recipe.data),
            ("arch", &recipe.arch),
            ("objective", &recipe.objective),
        ] {
            if spec.name.is_empty() {
                return Err(Error::Config(format!(
                    "no {section} chosen: set [{section}] name in the recipe or pass --{section} NAME"
                )));
            }
        }
        let mut recipe = recipe;
        let data = DatasetHandle::create(
            reg,
            &recipe.data.name,
            "data",
            &recipe.data.config_json(&data_dir, run_dir),
            &ctx,
        )?;
        let arch_r = Resolved::new(reg, ComponentKind::Architecture, &recipe.arch.name)?;
        let arch_config = fill_from_dataset(
            &arch_r,
            recipe.arch.config_json(&data_dir, run_dir),
            &data.info,
        );
        record_filled(&mut recipe.arch, &arch_config);
        let arch = ArchHandle::create(reg, &recipe.arch.name, "arch", &arch_config, &ctx)?;
        let obj_r = Resolved::new(reg, ComponentKind::Objective, &recipe.objective.name)?;
        let objective_config = fill_from_dataset(
            &obj_r,
            recipe.objective.config_json(&data_dir, run_dir),
            &data.info,
        );
        let objective_config = fill_from_arch(&obj_r, objective_config, &arch.info);
        record_filled(&mut recipe.objective, &objective_config);
        let objective = ObjectiveHandle::create(
            reg,
            &recipe.objective.name,
            "objective",
            &objective_config,
            &ctx,
        )?;
        check_composition(&data, &arch, &objective)?;
        Ok(Session {
            recipe,
            run_dir: run_dir.to_path_buf(),
            data_dir,
            device,
            ctx,
            data: Arc::new(data),
            arch,
            arch_config,
            objective,
            objective_config,
        })
    }

    /// A new instance of the run's architecture, freshly initialised.
    pub fn new_arch(&self, reg: &Registry) -> Result<ArchHandle> {
        ArchHandle::create(
            reg,
            &self.recipe.arch.name,
            "arch",
            &self.arch_config,
            &self.ctx,
        )
    }

    /// A dataset for an evaluator split.
    pub fn dataset(
        &self,
        reg: &Registry,
        spec: &ComponentSpec,
        section: &str,
    ) -> Result<DatasetHandle> {
        DatasetHandle::create(
            reg,
            &spec.name,
            section,
            &spec.config_json(&self.data_dir, &self.run_dir),
            &self.ctx,
        )
    }
}
