//! Building a run: the plan's dataset, architecture and objectives on one device, in the flow's
//! order, each wired input given the value its provider published, then the composition check.
//! Nothing is resolved here: the plan ([`crate::plan::RunPlan`]) did that.

use crate::components::{check_composition, ArchHandle, DatasetHandle, ObjectiveHandle};
use crate::config::ComponentSpec;
use crate::model::{Model, Tower};
use crate::plan::{arch_facts, dataset_facts, Bindings, ComponentPlan, Facts, Provider, RunPlan};
use crate::{Error, Result};
use pt_sdk::CreateCtx;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One objective of the run.
pub struct SessionObjective {
    /// Prefix of its metrics and parameters in a mix (`simclr/loss`, `supervised.fc...`).
    pub label: String,
    pub weight: f64,
    /// Whether its forward may change the architecture's buffers (`update_buffers`).
    pub update_buffers: bool,
    pub handle: ObjectiveHandle,
    /// Its config as built (for a fresh copy: evaluating `embed` outputs at random init).
    pub config: Value,
}

pub struct Session {
    pub plan: RunPlan,
    pub device: tch::Device,
    pub ctx: CreateCtx,
    pub data: Arc<DatasetHandle>,
    pub model: Model,
    /// Each architecture's config as built, in the model's order (for fresh copies:
    /// evaluations, random init).
    pub arch_configs: Vec<Value>,
    /// The objectives (one, or the terms of a mix) with their weights.
    pub objectives: Vec<SessionObjective>,
    /// Values the build gave wired inputs (what `config.toml` records).
    pub bound: Bindings,
    /// Facts the built components published, by provider (for evaluators built later).
    facts: BTreeMap<Provider, Facts>,
    /// Parameters one tower shares with another (`ObjectiveInfo::ties`).
    pub tied_parameters: usize,
    /// The role whose architecture alone evaluators get (see [`Session::lend_role`]).
    lent_role: Option<String>,
}

/// The values of `plan`'s wired inputs from the facts published so far.
pub fn bind(plan: &ComponentPlan, facts: &BTreeMap<Provider, Facts>) -> Result<serde_json::Map<String, Value>> {
    let mut bound = serde_json::Map::new();
    for w in &plan.wires {
        match facts.get(&w.provider).and_then(|f| f.get(&w.fact)).filter(|v| !v.is_null()) {
            Some(v) => {
                tracing::info!(component = %plan.origin(), key = %w.key, value = %v, from = %w.provider_origin, "input filled");
                bound.insert(w.key.clone(), v.clone());
            }
            None if w.optional => {}
            None => {
                return Err(Error::Composition(format!(
                    "{} ([{}]) needs '{}' from {} ([{}]), which declares it provides '{}' but published no value: set [{}] {} = ...",
                    plan.origin(),
                    plan.section,
                    w.key,
                    w.provider_origin,
                    w.provider.section(),
                    w.fact,
                    plan.section,
                    w.key
                )))
            }
        }
    }
    Ok(bound)
}

impl Session {
    pub fn build(plan: RunPlan) -> Result<Session> {
        if plan.recipe.run.num_threads > 0 {
            tch::set_num_threads(plan.recipe.run.num_threads as i32);
        }
        if matches!(plan.device, tch::Device::Cuda(_)) {
            tch::Cuda::cudnn_set_benchmark(plan.recipe.run.cudnn_benchmark);
        }
        std::fs::create_dir_all(&plan.run_dir)
            .map_err(|e| Error::io(format!("creating run directory {}", plan.run_dir.display()), e))?;
        let ctx = plan.create_ctx();
        let mut bound = Bindings::new();
        let mut facts = BTreeMap::new();
        let mut config_of =
            |c: &ComponentPlan, spec: &ComponentSpec, facts: &BTreeMap<Provider, Facts>| -> Result<Value> {
                let values = bind(c, facts)?;
                let config = plan.build_config(spec, &values);
                if !values.is_empty() {
                    bound.insert(c.section.clone(), values);
                }
                Ok(config)
            };
        let data = DatasetHandle::create(&plan.data, &config_of(&plan.data, &plan.recipe.data, &facts)?, &ctx)?;
        facts.insert(Provider::Data, dataset_facts(&data.info));
        let (mut towers, mut arch_configs) = (Vec::new(), Vec::new());
        for ((role, arch_plan), (_, arch_spec)) in plan.archs.iter().zip(plan.recipe.arch.iter()) {
            let config = config_of(arch_plan, arch_spec, &facts)?;
            let arch = ArchHandle::create(arch_plan, &config, &ctx)?;
            facts.insert(Provider::Arch(role.clone()), arch_facts(&arch.info));
            towers.push(Tower { role: role.clone(), arch });
            arch_configs.push(config);
        }
        let model = Model::from_towers(towers);
        model.apply_memory_format(plan.recipe.run.memory_format)?;
        let mut objectives = Vec::new();
        let mut tied_parameters = 0;
        for (term, o_plan) in plan.recipe.objectives().into_iter().zip(&plan.objectives) {
            let config = config_of(o_plan, &term.component, &facts)?;
            let handle = ObjectiveHandle::create(o_plan, &config, &ctx)?;
            check_composition(&data, &model, &handle)?;
            tied_parameters += model.tie(&handle.info.ties, &format!("objective {}", handle.origin))?;
            objectives.push(SessionObjective {
                label: term.label().to_string(),
                weight: term.weight,
                update_buffers: term.update_buffers,
                handle,
                config,
            });
        }
        Ok(Session {
            device: plan.device,
            plan,
            ctx,
            data: Arc::new(data),
            model,
            arch_configs,
            objectives,
            bound,
            facts,
            tied_parameters,
            lent_role: None,
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.plan.run_dir
    }

    /// Whether the run optimises a mix (its objectives' names are then prefixed by their labels).
    pub fn is_mix(&self) -> bool {
        self.plan.is_mix()
    }

    /// The plan with every wired value the build gave (what `config.toml` holds).
    pub fn resolved_toml(&self) -> String {
        self.plan.to_toml(Some(&self.bound))
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
        self.model.set_train(train)?;
        for o in &mut self.objectives {
            o.handle.set_train(train)?;
        }
        Ok(())
    }

    /// A new instance of the run's model, freshly initialised from the run's seed.
    pub fn new_model(&self) -> Result<Model> {
        self.new_model_seeded(self.ctx.seed)
    }

    /// A new instance of the run's model, initialised from `seed` (a random-init baseline per
    /// seed of `pt transfer --seeds`).
    pub fn new_model_seeded(&self, seed: u64) -> Result<Model> {
        let ctx = CreateCtx { seed, ..self.ctx.clone() };
        let mut parts = self.plan.model_parts(&self.arch_configs);
        // Only the lent role's architecture is built: the others would be dropped unused.
        parts.retain(|(role, ..)| self.lent_role.is_none() || *role == self.lent_role);
        let model = Model::create(&parts, &ctx)?;
        model.apply_memory_format(self.plan.recipe.run.memory_format)?;
        match &self.lent_role {
            Some(role) => model.into_role(role),
            None => Ok(model),
        }
    }

    /// From now on the model (and every fresh copy) is the architecture under `role` alone,
    /// with its own names; objectives' heads, which read several roles, are no longer lent.
    pub fn lend_role(&mut self, role: &str) -> Result<()> {
        if !self.model.has_roles() {
            return Err(Error::Config(format!("--role {role}: the run trained a single architecture: drop --role")));
        }
        let model = std::mem::replace(&mut self.model, Model::from_towers(Vec::new()));
        self.model = model.into_role(role).map_err(|e| Error::Config(format!("--role {role}: {e}")))?;
        self.lent_role = Some(role.to_string());
        Ok(())
    }

    /// The objectives that derive evaluation outputs from the model's (`embed`).
    pub fn heads(&self) -> Vec<&ObjectiveHandle> {
        if self.lent_role.is_some() {
            return Vec::new();
        }
        self.objectives.iter().filter(|o| !o.handle.info.embeds.is_empty()).map(|o| &o.handle).collect()
    }

    /// What evaluators may read: the model's outputs and the heads' `embed` outputs.
    pub fn eval_outputs(&self) -> Vec<String> {
        let mut outputs = self.model.info.outputs.clone();
        outputs.extend(self.model.info.taps.iter().map(|t| pt_sdk::taps::tap_output(&t.name)));
        outputs.extend(self.heads().into_iter().flat_map(|h| h.info.embeds.iter().cloned()));
        outputs
    }

    /// Copies of [`Self::heads`] freshly initialised from `seed` (evaluation at random
    /// initialisation).
    pub fn fresh_heads(&self, seed: u64) -> Result<Vec<ObjectiveHandle>> {
        let mut fresh = Vec::new();
        if self.lent_role.is_some() {
            return Ok(fresh); // as `heads`: a lent role's arms read no objective's head
        }
        let ctx = CreateCtx { seed, ..self.ctx.clone() };
        for (o, plan) in self.objectives.iter().zip(&self.plan.objectives) {
            if !o.handle.info.embeds.is_empty() {
                let mut handle = ObjectiveHandle::create(plan, &o.config, &ctx)?;
                handle.set_train(false)?;
                fresh.push(handle);
            }
        }
        Ok(fresh)
    }

    /// Per objective, a copy for the loader thread when its `prepare` works on the host
    /// (`ObjectiveInfo::prepare_on_host`) or it draws `prepare`'s randomness there
    /// (`draws_on_host`), else None.
    pub fn host_preparers(&self) -> Result<Vec<Option<ObjectiveHandle>>> {
        // On the CPU: the copy only prepares, its own parameters (if any) are never used.
        let ctx = CreateCtx { device: pt_sdk::device_code(tch::Device::Cpu), ..self.ctx.clone() };
        let mut preparers = Vec::new();
        for (o, plan) in self.objectives.iter().zip(&self.plan.objectives) {
            let info = &o.handle.info;
            preparers.push(match info.prepare_on_host || info.draws_on_host {
                true => {
                    let mut handle = ObjectiveHandle::create(plan, &o.config, &ctx)?;
                    handle.set_train(true)?;
                    let what = if info.prepare_on_host { "prepares its inputs" } else { "draws its randomness" };
                    tracing::info!(objective = %handle.origin, "{what} on the loader thread");
                    Some(handle)
                }
                false => None,
            });
        }
        Ok(preparers)
    }

    /// The built config of `[[eval]]` #`index`'s component `plan` (`spec` in the plan's recipe),
    /// its wired inputs given values from its splits (`split_facts`) and the run's components.
    pub fn eval_config(
        &self,
        plan: &ComponentPlan,
        spec: &ComponentSpec,
        split_facts: BTreeMap<Provider, Facts>,
    ) -> Result<Value> {
        let mut facts = self.facts.clone();
        facts.extend(split_facts);
        Ok(self.plan.build_config(spec, &bind(plan, &facts)?))
    }
}
