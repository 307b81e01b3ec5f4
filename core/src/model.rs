//! The run's model: one architecture, or several under role names (`[arch.image]`,
//! `[arch.text]`) trained together by an objective that names the roles. With roles, every
//! name that crosses this boundary carries its role: inputs and outputs as `role/name`
//! (`image/image`, `text/features`), tensors as `role.name` (`image.conv1.weight`), which is
//! how checkpoints hold them; a single architecture keeps its own names.

use crate::components::ArchHandle;
use crate::config::MemoryFormatSetting;
use crate::plan::ComponentPlan;
use crate::{Error, Result};
use pt_sdk::{ArchitectureInfo, CreateCtx, StepCtx, Tensors};
use serde_json::Value;
use tch::Tensor;

/// One architecture of the model and its role (None: the run's only architecture).
pub struct Tower {
    pub role: Option<String>,
    pub arch: ArchHandle,
}

impl Tower {
    fn tensor_name(&self, name: &str) -> String {
        match &self.role {
            Some(role) => format!("{role}.{name}"),
            None => name.to_string(),
        }
    }
    fn field_name(&self, name: &str) -> String {
        match &self.role {
            Some(role) => format!("{role}/{name}"),
            None => name.to_string(),
        }
    }
}

pub struct Model {
    pub towers: Vec<Tower>,
    /// `plugin:arch`, or `role=plugin:arch` joined with ` + `.
    pub origin: String,
    /// The architecture's info; with roles, the towers' merged under their role names.
    pub info: ArchitectureInfo,
}

impl Model {
    /// Builds each `(role, plan, built config)` in order.
    pub fn create(parts: &[(Option<String>, &ComponentPlan, &Value)], ctx: &CreateCtx) -> Result<Self> {
        let towers = parts
            .iter()
            .map(|(role, plan, config)| Ok(Tower { role: role.clone(), arch: ArchHandle::create(plan, config, ctx)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Model::from_towers(towers))
    }

    /// Lays out the 4-D parameters of each tower that asks for it (or of all, or none, as the
    /// setting says) in channels_last memory, in place: the architecture keeps its tensors.
    /// Call before the parameters are flattened.
    pub fn apply_memory_format(&self, setting: MemoryFormatSetting) -> Result<()> {
        for tower in &self.towers {
            let wanted = match setting {
                MemoryFormatSetting::Auto => tower.arch.info.channels_last,
                MemoryFormatSetting::ChannelsLast => true,
                MemoryFormatSetting::Contiguous => false,
            };
            if !wanted {
                continue;
            }
            let _guard = tch::no_grad_guard();
            let mut converted = 0;
            for (_, mut t) in tower.arch.parameters()? {
                if t.dim() == 4 {
                    // NCHW-shaped, NHWC in memory: the layout `to(memory_format=channels_last)` gives.
                    let nhwc = t.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?;
                    t.set_data(&nhwc);
                    converted += 1;
                }
            }
            tracing::info!(origin = %tower.arch.origin, weights = converted, "channels_last memory format");
        }
        Ok(())
    }

    pub fn from_towers(towers: Vec<Tower>) -> Self {
        let (origin, info) = match towers.as_slice() {
            [single] if single.role.is_none() => (single.arch.origin.clone(), single.arch.info.clone()),
            _ => merged(&towers),
        };
        Model { towers, origin, info }
    }

    pub fn has_roles(&self) -> bool {
        self.towers.iter().any(|t| t.role.is_some())
    }

    /// The tower under `role`, with an error naming the roles there are.
    pub fn tower(&self, role: &str) -> Result<&Tower> {
        self.towers.iter().find(|t| t.role.as_deref() == Some(role)).ok_or_else(|| match self.has_roles() {
            true => Error::Config(format!("the model has no role '{role}' (its roles: {})", self.roles().join(", "))),
            false => Error::Config(format!("the run has a single architecture, no role '{role}': drop '{role}='")),
        })
    }

    pub fn roles(&self) -> Vec<String> {
        self.towers.iter().filter_map(|t| t.role.clone()).collect()
    }

    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        self.named(|a| a.parameters())
    }

    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        self.named(|a| a.buffers())
    }

    fn named(&self, get: impl Fn(&ArchHandle) -> Result<Vec<(String, Tensor)>>) -> Result<Vec<(String, Tensor)>> {
        let mut all = Vec::new();
        for t in &self.towers {
            all.extend(get(&t.arch)?.into_iter().map(|(n, v)| (t.tensor_name(&n), v)));
        }
        Ok(all)
    }

    pub fn set_train(&mut self, train: bool) -> Result<()> {
        self.towers.iter_mut().try_for_each(|t| t.arch.set_train(train))
    }

    /// Each tower's forward on its own inputs (`role/x` given to it as `x`, plus
    /// `sample_index`); its outputs come back under `role/`. Outside training a tower none of
    /// whose inputs is there does not run (an evaluator embedding only captions runs only the
    /// text tower); in training that is an error naming what `prepare` gave.
    pub fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        if !self.has_roles() {
            return self.towers[0].arch.forward(inputs, ctx);
        }
        self.forward_roles(inputs, None, ctx)
    }

    /// [`Model::forward`] of the towers under `roles` only (None: every tower): one stage of
    /// an objective that runs its roles in stages.
    pub fn forward_roles(&self, inputs: &Tensors, roles: Option<&[String]>, ctx: &StepCtx) -> Result<Tensors> {
        let mut out = Tensors::new();
        for t in &self.towers {
            let role = t.role.as_deref().unwrap_or_default();
            if roles.is_some_and(|r| !r.iter().any(|x| x == role)) {
                continue;
            }
            let mut own = Tensors::new();
            for (name, v) in inputs.iter() {
                if let Some(field) = name.strip_prefix(role).and_then(|n| n.strip_prefix('/')) {
                    own.insert(field, v.shallow_clone());
                } else if name == crate::components::SAMPLE_INDEX {
                    own.insert(name, v.shallow_clone());
                }
            }
            if !t.arch.info.inputs.iter().any(|i| own.contains(i)) {
                if ctx.train {
                    let given: Vec<&str> = inputs.names().collect();
                    return Err(Error::Config(format!(
                        "architecture {} (role {role}) got none of its inputs ({}): the objective's prepare gave {}",
                        t.arch.origin,
                        t.arch.info.inputs.iter().map(|i| format!("{role}/{i}")).collect::<Vec<_>>().join(", "),
                        given.join(", ")
                    )));
                }
                continue;
            }
            for (name, v) in t.arch.forward(&own, ctx)?.into_iter() {
                out.insert(t.field_name(&name), v);
            }
        }
        Ok(out)
    }

    /// Makes the towers share parameters ([`pt_sdk::Tie`]): each parameter named
    /// `alias` + rest takes the storage of `owner` + rest, so both compute with one tensor (the
    /// optimizer's flattening then gives them one slice and one gradient). Call before
    /// flattening. Returns how many parameters were tied.
    pub fn tie(&self, ties: &[pt_sdk::Tie], who: &str) -> Result<usize> {
        let params = self.parameters()?;
        let mut tied = 0;
        for tie in ties {
            let mut matched = 0;
            for (name, alias) in params.iter().filter(|(n, _)| n.starts_with(&tie.alias)) {
                let owner_name = format!("{}{}", tie.owner, &name[tie.alias.len()..]);
                let owner = params.iter().find(|(n, _)| *n == owner_name).map(|(_, t)| t).ok_or_else(|| {
                    Error::Composition(format!(
                        "{who} ties `{name}` to `{owner_name}`, but the model has no parameter `{owner_name}`: \
                         the architectures under these roles must have the same parameters there"
                    ))
                })?;
                if alias.size() != owner.size() || alias.kind() != owner.kind() {
                    return Err(Error::Composition(format!(
                        "{who} ties `{name}` {:?} {:?} to `{owner_name}` {:?} {:?}: tied parameters need one shape and \
                         dtype (give both architectures the same embedding sizes)",
                        alias.size(),
                        alias.kind(),
                        owner.size(),
                        owner.kind()
                    )));
                }
                let _guard = tch::no_grad_guard();
                alias.shallow_clone().f_set_data(owner).map_err(|e| Error::Torch(format!("tying `{name}`: {e}")))?;
                matched += 1;
            }
            if matched == 0 {
                return Err(Error::Composition(format!(
                    "{who} ties parameters starting `{}` to `{}`, but no parameter starts `{}` (roles: {})",
                    tie.alias,
                    tie.owner,
                    tie.alias,
                    self.roles().join(", ")
                )));
            }
            tied += matched;
        }
        Ok(tied)
    }

    /// The tower under `role` alone, as a model of one architecture with its own names (what
    /// `pt transfer --role` evaluates).
    pub fn into_role(mut self, role: &str) -> Result<Model> {
        self.tower(role)?;
        let i = self.towers.iter().position(|t| t.role.as_deref() == Some(role)).unwrap_or_default();
        let mut tower = self.towers.swap_remove(i);
        tower.role = None;
        Ok(Model::from_towers(vec![tower]))
    }
}

/// The towers' infos under their role names: inputs and outputs `role/x`, layer prefixes
/// `role.x`, FLOPs summed (known only when every tower's is), configs by role.
fn merged(towers: &[Tower]) -> (String, ArchitectureInfo) {
    let mut info = ArchitectureInfo::default();
    let mut flops = Some(0.0);
    let mut configs = serde_json::Map::new();
    for t in towers {
        let i = &t.arch.info;
        info.inputs.extend(i.inputs.iter().map(|n| t.field_name(n)));
        info.optional_inputs.extend(i.optional_inputs.iter().map(|n| t.field_name(n)));
        info.outputs.extend(i.outputs.iter().map(|n| t.field_name(n)));
        info.layer_prefixes.extend(i.layer_prefixes.iter().map(|n| t.tensor_name(n)));
        flops = flops.zip(i.train_flops_per_sample).map(|(a, b)| a + b);
        configs.insert(t.role.clone().unwrap_or_default(), i.config.clone());
    }
    info.train_flops_per_sample = flops;
    info.config = Value::Object(configs);
    let origin = towers
        .iter()
        .map(|t| format!("{}={}", t.role.as_deref().unwrap_or_default(), t.arch.origin))
        .collect::<Vec<_>>()
        .join(" + ");
    (origin, info)
}
