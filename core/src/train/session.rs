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
        .unwrap_or_else(|| dirs::cache_dir().unwrap_or_else(|| PathBuf::from(".cache")).join("pt").join("data"))
}

/// One objective of the run.
pub struct SessionObjective {
    /// Prefix of its metrics and parameters in a mix (`simclr/loss`, `supervised.fc...`).
    pub label: String,
    pub weight: f64,
    /// Whether its forward may change the architecture's buffers (`update_buffers`).
    pub update_buffers: bool,
    pub handle: ObjectiveHandle,
    /// Its config as used (after filling from the dataset and architecture).
    pub config: Value,
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
    /// The objectives (one, or the terms of a mix) with their weights.
    pub objectives: Vec<SessionObjective>,
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

/// What the architecture knows that an objective may leave unset (`null` default): `feature_dim`,
/// the width of its `features` output, for heads sized to it; and any key of the architecture's
/// own config of the same name (e.g. wav2vec2's `conv_kernel`/`conv_stride`, which its objective
/// needs to know how many frames a clip gives).
fn fill_from_arch(resolved: &Resolved, mut config: Value, info: &ArchitectureInfo) -> Value {
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    for key in resolved.manifest.config.iter().filter(|k| k.default.is_null()) {
        if obj.get(&key.key).is_some_and(|v| !v.is_null()) {
            continue; // set by the user
        }
        let value = match key.key.as_str() {
            "feature_dim" => info.feature_dim.map(Value::from),
            name => info.config.get(name).filter(|v| !v.is_null()).cloned(),
        };
        if let Some(value) = value {
            tracing::info!(component = %resolved.origin(), key = %key.key, %value, "set from the architecture");
            obj.insert(key.key.clone(), value);
        }
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
        let no_objective = recipe.mix.is_empty() && recipe.objective.name.is_empty();
        for (section, spec) in [("data", &recipe.data), ("arch", &recipe.arch)] {
            if spec.name.is_empty() {
                return Err(Error::Config(format!(
                    "no {section} chosen: set [{section}] name in the recipe or pass --{section} NAME"
                )));
            }
        }
        if no_objective {
            return Err(Error::Config(
                "no objective chosen: set [objective] name (or [[objective.mix]] entries) in the recipe or pass --objective NAME"
                    .into(),
            ));
        }
        let mut recipe = recipe;
        let data =
            DatasetHandle::create(reg, &recipe.data.name, "data", &recipe.data.config_json(&data_dir, run_dir), &ctx)?;
        let arch_r = Resolved::new(reg, ComponentKind::Architecture, &recipe.arch.name)?;
        let arch_config = fill_from_dataset(&arch_r, recipe.arch.config_json(&data_dir, run_dir), &data.info);
        record_filled(&mut recipe.arch, &arch_config);
        let arch = ArchHandle::create(reg, &recipe.arch.name, "arch", &arch_config, &ctx)?;
        let mut objectives = Vec::new();
        for (i, term) in recipe.objectives().into_iter().enumerate() {
            let section = if recipe.mix.is_empty() { "objective".to_string() } else { format!("objective.mix.{i}") };
            let spec = &term.component;
            let obj_r = Resolved::new(reg, ComponentKind::Objective, &spec.name)?;
            let config = fill_from_dataset(&obj_r, spec.config_json(&data_dir, run_dir), &data.info);
            let config = fill_from_arch(&obj_r, config, &arch.info);
            match recipe.mix.get_mut(i) {
                Some(m) => record_filled(&mut m.component, &config),
                None => record_filled(&mut recipe.objective, &config),
            }
            let handle = ObjectiveHandle::create(reg, &spec.name, &section, &config, &ctx)?;
            check_composition(&data, &arch, &handle)?;
            objectives.push(SessionObjective {
                label: term.label().to_string(),
                weight: term.weight,
                update_buffers: term.update_buffers,
                handle,
                config,
            });
        }
        Ok(Session {
            recipe,
            run_dir: run_dir.to_path_buf(),
            data_dir,
            device,
            ctx,
            data: Arc::new(data),
            arch,
            arch_config,
            objectives,
        })
    }

    /// Whether the run optimises a mix (its objectives' names are then prefixed by their labels).
    pub fn is_mix(&self) -> bool {
        !self.recipe.mix.is_empty()
    }

    /// The objectives' parameters (with `buffers`, also their buffers), prefixed `label.` in a mix.
    pub fn objective_tensors(&self, buffers: bool) -> Result<Vec<(String, tch::Tensor)>> {
        let mut all = Vec::new();
        for o in &self.objectives {
            let mut v = o.handle.parameters()?;
            if buffers {
                v.extend(o.handle.buffers()?);
            }
            all.extend(
                v.into_iter().map(|(n, t)| if self.is_mix() { (format!("{}.{n}", o.label), t) } else { (n, t) }),
            );
        }
        Ok(all)
    }

    /// `plugin:objective`, or the terms of a mix joined with ` + `.
    pub fn objective_origin(&self) -> String {
        self.objectives.iter().map(|o| o.handle.origin.clone()).collect::<Vec<_>>().join(" + ")
    }

    pub fn set_train(&mut self, train: bool) -> Result<()> {
        self.arch.set_train(train)?;
        for o in &mut self.objectives {
            o.handle.set_train(train)?;
        }
        Ok(())
    }

    /// A new instance of the run's architecture, freshly initialised.
    pub fn new_arch(&self, reg: &Registry) -> Result<ArchHandle> {
        ArchHandle::create(reg, &self.recipe.arch.name, "arch", &self.arch_config, &self.ctx)
    }

    /// A dataset for an evaluator split.
    pub fn dataset(&self, reg: &Registry, spec: &ComponentSpec, section: &str) -> Result<DatasetHandle> {
        DatasetHandle::create(reg, &spec.name, section, &spec.config_json(&self.data_dir, &self.run_dir), &self.ctx)
    }
}
