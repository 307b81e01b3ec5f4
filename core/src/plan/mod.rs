//! The run plan: a parsed [`Recipe`] resolved against the plugin registry once, before any
//! component is built. Every component is found once, its keys checked (names by pt, types
//! and ranges by the plugin, without building), its defaults filled in, and each input it
//! declares wired to the one component of the run that declares it provides it. Building
//! ([`crate::train::Session::build`]) then only instantiates what the plan says; the plan,
//! rendered as TOML, is what `pt train --print-config` prints and what the run saves.

mod render;
mod wiring;

pub use render::Bindings;
pub use wiring::{arch_facts, dataset_facts, Facts, Provider, Wire};

use crate::components::validate_config;
use crate::config::{toml_to_json, Archs, ComponentSpec, Recipe};
use crate::plugin::{LoadedPlugin, Registry};
use crate::{Error, Result};
use pt_sdk::{ComponentKind, ComponentManifest, CreateCtx};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wiring::{choose, Candidate};

/// This process's place in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct World {
    pub rank: u64,
    pub world_size: u64,
}

impl Default for World {
    fn default() -> Self {
        World { rank: 0, world_size: 1 }
    }
}

/// One component of the plan: which plugin builds it, from which section, with which inputs
/// filled from which other component. Its config is the plan recipe's section.
#[derive(Clone, Debug)]
pub struct ComponentPlan {
    pub kind: ComponentKind,
    /// Where it is in the recipe: `data`, `arch`, `arch.image`, `objective.mix.1`, `eval.0`,
    /// `eval.0.splits.train`.
    pub section: String,
    pub plugin: Arc<LoadedPlugin>,
    pub manifest: ComponentManifest,
    pub wires: Vec<Wire>,
}

impl ComponentPlan {
    /// `plugin:component`.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.plugin.name(), self.manifest.name)
    }
}

/// A whole run, resolved.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// The recipe with every component's defaults filled in (keys wired from another
    /// component stay unset until the build gives them values).
    pub recipe: Recipe,
    pub world: World,
    pub device: tch::Device,
    pub run_dir: PathBuf,
    pub data_dir: PathBuf,
    pub data: ComponentPlan,
    /// In the order of `recipe.arch.iter()`; the single architecture has no role.
    pub archs: Vec<(Option<String>, ComponentPlan)>,
    /// One per entry of `recipe.objectives()`.
    pub objectives: Vec<ComponentPlan>,
    /// One per `[[eval]]`: the evaluator and its splits.
    pub evals: Vec<(ComponentPlan, Vec<(String, ComponentPlan)>)>,
}

impl RunPlan {
    /// `(role, plan, built config)` of each architecture, for [`crate::model::Model::create`].
    pub fn model_parts<'a>(&'a self, configs: &'a [Value]) -> Vec<(Option<String>, &'a ComponentPlan, &'a Value)> {
        self.archs.iter().zip(configs).map(|((role, plan), config)| (role.clone(), plan, config)).collect()
    }
}

/// What resolving a component needs besides its spec.
struct Resolver<'a> {
    reg: &'a Registry,
    problems: Vec<String>,
}

impl Resolver<'_> {
    /// Finds the component, checks its keys and fills its defaults into `spec` (in place: the
    /// plan's recipe holds the resolved config). None when it cannot (the problem is kept).
    fn component(&mut self, kind: ComponentKind, section: &str, spec: &mut ComponentSpec) -> Option<ComponentPlan> {
        if spec.name.is_empty() {
            let flag = if kind == ComponentKind::Dataset { "data" } else { section };
            let available: Vec<String> = self.reg.components(kind).into_iter().map(|(_, n)| n).collect();
            self.problems.push(format!(
                "no {kind} chosen: set [{section}] name in the recipe or pass --{flag} NAME (available: {})",
                available.join(", ")
            ));
            return None;
        }
        let (plugin, name) = match self.reg.resolve(kind, &spec.name) {
            Ok(found) => found,
            Err(e) => {
                self.problems.push(format!("[{section}] {e}"));
                return None;
            }
        };
        let Some(manifest) = plugin.manifest.components.iter().find(|c| c.kind == kind && c.name == name).cloned()
        else {
            self.problems.push(format!("[{section}] {kind} '{name}' vanished from plugin '{}'", plugin.name()));
            return None;
        };
        if let Some((key, v)) = non_finite(&spec.config) {
            // JSON (how configs cross to plugins) has no NaN or infinity: refuse them here.
            self.problems.push(format!("[{section}] {key} = {v}: expected a finite number"));
            return None;
        }
        if let Some(warning) = undescribed_keys(&format!("{}:{name}", plugin.name()), &manifest) {
            tracing::warn!("{warning}");
        }
        let config = toml_to_json(&toml::Value::Table(spec.config.clone()));
        if let Err(e) = validate_config(&manifest, section, &config) {
            self.problems.push(e.to_string());
            return None;
        }
        if let Some(check) = plugin.module.check_config() {
            if let Err(e) = check(kind.to_u8(), name.as_str().into(), config.to_string().as_str().into()).into_result()
            {
                self.problems.push(format!("[{section}] {e}"));
                return None;
            }
        }
        // The component's keys in its own order: the recipe's value, else the default (a null
        // default stays unset: the component decides, or a wired input fills it).
        let mut resolved = toml::Table::new();
        for key in &manifest.config {
            match spec.config.remove(&key.key) {
                Some(v) => {
                    resolved.insert(key.key.clone(), v);
                }
                None => {
                    if let Ok(v) = toml::Value::try_from(&key.default) {
                        resolved.insert(key.key.clone(), v);
                    }
                }
            }
        }
        spec.config = resolved;
        Some(ComponentPlan { kind, section: section.to_string(), plugin, manifest, wires: Vec::new() })
    }

    /// Wires every input `plan` declares that `spec` leaves unset to the first candidate that
    /// declares it provides the fact.
    fn wire(&mut self, plan: &mut ComponentPlan, spec: &ComponentSpec, candidates: &[Candidate<'_>]) {
        for input in &plan.manifest.inputs {
            if spec.config.contains_key(&input.key) {
                continue; // set in the recipe: nothing to fill
            }
            match choose(input.fact(), candidates) {
                Some((c, fact)) => plan.wires.push(Wire {
                    key: input.key.clone(),
                    fact,
                    provider: c.provider.clone(),
                    provider_origin: c.origin.to_string(),
                    optional: input.optional,
                }),
                None if input.optional => {}
                None => {
                    let offered: Vec<String> = candidates
                        .iter()
                        .map(|c| format!("[{}] {} provides {}", c.provider.section(), c.origin, c.offered().join(", ")))
                        .collect();
                    self.problems.push(format!(
                        "{} {} ([{}]) needs '{}', which no component of this run provides ({}): set [{}] {} = ...",
                        plan.kind,
                        plan.origin(),
                        plan.section,
                        input.key,
                        offered.join("; "),
                        plan.section,
                        input.key
                    ));
                }
            }
        }
    }
}

/// The warning for a component whose config keys lack a description (`origin`: plugin:name).
fn undescribed_keys(origin: &str, manifest: &pt_sdk::ComponentManifest) -> Option<String> {
    let keys: Vec<&str> =
        manifest.config.iter().filter(|k| k.description.trim().is_empty()).map(|k| k.key.as_str()).collect();
    (!keys.is_empty()).then(|| {
        format!(
            "{} {origin}: config keys without a description: {} (`pt plugin info` shows them blank; describe \
             every key, e.g. with a doc comment under #[derive(PluginConfig)])",
            manifest.kind,
            keys.join(", ")
        )
    })
}

/// The first NaN or infinite number in a component's keys (arrays and tables included).
fn non_finite(table: &toml::Table) -> Option<(String, f64)> {
    fn walk(path: String, v: &toml::Value) -> Option<(String, f64)> {
        match v {
            toml::Value::Float(f) if !f.is_finite() => Some((path, *f)),
            toml::Value::Array(a) => a.iter().find_map(|x| walk(path.clone(), x)),
            toml::Value::Table(t) => t.iter().find_map(|(k, x)| walk(format!("{path}.{k}"), x)),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| walk(k.clone(), v))
}

/// One problem on one line; several as a list under `head`.
fn problems_error(head: &str, problems: &[String]) -> Error {
    match problems {
        [one] => Error::Composition(format!("{head}: {one}")),
        many => Error::Composition(format!("{head}:\n  - {}", many.join("\n  - "))),
    }
}

fn candidate<'a>(provider: Provider, plan: &'a ComponentPlan, origin: &'a str) -> Candidate<'a> {
    Candidate { provider, origin, provides: &plan.manifest.provides }
}

impl RunPlan {
    /// Resolves `recipe` for this process (`world`) in `run_dir`. Every problem found is
    /// reported together, unknown components first.
    pub fn resolve(reg: &Registry, mut recipe: Recipe, run_dir: &Path, world: World) -> Result<RunPlan> {
        let device = crate::runtime::resolve_device(&recipe.run.device.to_string())?;
        recipe.run.absolute_init_from()?;
        let mut r = Resolver { reg, problems: Vec::new() };
        let mix = !recipe.mix.is_empty();
        let mut objectives = Vec::new();
        if mix {
            for (i, m) in recipe.mix.iter_mut().enumerate() {
                objectives.push(r.component(ComponentKind::Objective, &format!("objective.mix.{i}"), &mut m.component));
            }
        } else {
            objectives.push(r.component(ComponentKind::Objective, "objective", &mut recipe.objective));
        }
        let mut archs = Vec::new();
        match &mut recipe.arch {
            Archs::One(spec) => archs.push((None, r.component(ComponentKind::Architecture, "arch", spec))),
            Archs::Roles(roles) => {
                for (role, spec) in roles.iter_mut() {
                    let section = format!("arch.{role}");
                    archs.push((Some(role.clone()), r.component(ComponentKind::Architecture, &section, spec)));
                }
            }
        }
        let data = r.component(ComponentKind::Dataset, "data", &mut recipe.data);
        let mut evals = Vec::new();
        for (i, e) in recipe.evals.iter_mut().enumerate() {
            let evaluator = r.component(ComponentKind::Evaluator, &format!("eval.{i}"), &mut e.component);
            let splits: Vec<(String, Option<ComponentPlan>)> = e
                .splits
                .iter_mut()
                .map(|(name, spec)| {
                    (name.clone(), r.component(ComponentKind::Dataset, &format!("eval.{i}.splits.{name}"), spec))
                })
                .collect();
            evals.push((evaluator, splits));
        }
        let unresolved = |p: &Vec<String>| problems_error("the run cannot be planned", p);
        let (Some(mut data), true) = (data, r.problems.is_empty()) else { return Err(unresolved(&r.problems)) };
        let mut archs: Vec<(Option<String>, ComponentPlan)> =
            archs.into_iter().map(|(role, a)| (role, a.expect("no problems"))).collect();
        let mut objectives: Vec<ComponentPlan> = objectives.into_iter().map(|o| o.expect("no problems")).collect();
        let mut evals: Vec<(ComponentPlan, Vec<(String, ComponentPlan)>)> = evals
            .into_iter()
            .map(|(e, s)| (e.expect("no problems"), s.into_iter().map(|(n, d)| (n, d.expect("no problems"))).collect()))
            .collect();
        check_roles(&archs, &objectives, &mut r.problems);
        r.wire(&mut data, &recipe.data, &[]);
        let data_origin = data.origin();
        for ((_, arch), (_, spec)) in archs.iter_mut().zip(recipe.arch.iter()) {
            r.wire(arch, spec, &[candidate(Provider::Data, &data, &data_origin)]);
        }
        let arch_origins: Vec<String> = archs.iter().map(|(_, a)| a.origin()).collect();
        let mut model_candidates: Vec<Candidate> = archs
            .iter()
            .zip(&arch_origins)
            .map(|((role, a), o)| candidate(Provider::Arch(role.clone()), a, o))
            .collect();
        model_candidates.push(candidate(Provider::Data, &data, &data_origin));
        for (plan, term) in objectives.iter_mut().zip(recipe.objectives()) {
            r.wire(plan, &term.component, &model_candidates);
        }
        for (i, ((evaluator, splits), spec)) in evals.iter_mut().zip(&recipe.evals).enumerate() {
            let split_origins: Vec<String> = splits.iter().map(|(_, d)| d.origin()).collect();
            let mut candidates: Vec<Candidate> = splits
                .iter()
                .zip(&split_origins)
                .map(|((n, d), o)| candidate(Provider::Split(i, n.clone()), d, o))
                .collect();
            candidates.extend(model_candidates.iter().map(|c| Candidate { provider: c.provider.clone(), ..*c }));
            r.wire(evaluator, &spec.component, &candidates);
        }
        if !r.problems.is_empty() {
            // The same words as the build's composition check: the components exist and their
            // configs are fine, but they do not fit together.
            return Err(problems_error("these components do not fit together", &r.problems));
        }
        let data_dir = pt_sdk::default_data_dir();
        Ok(RunPlan { recipe, world, device, run_dir: run_dir.to_path_buf(), data_dir, data, archs, objectives, evals })
    }

    /// What every component of this process is created with.
    pub fn create_ctx(&self) -> CreateCtx {
        CreateCtx {
            device: pt_sdk::device_code(self.device),
            seed: self.recipe.run.seed,
            rank: self.world.rank as u32,
            world_size: self.world.world_size as u32,
            run_dir: self.run_dir.display().to_string(),
            data_dir: self.data_dir.display().to_string(),
        }
    }

    /// A component's config as it is built: the plan's section with `{data}`/`{run}` expanded
    /// and the values of its wired inputs laid over it.
    pub fn build_config(&self, spec: &ComponentSpec, bound: &serde_json::Map<String, Value>) -> Value {
        let (data, run) = (self.data_dir.display().to_string(), self.run_dir.display().to_string());
        let mut config = expand(toml_to_json(&toml::Value::Table(spec.config.clone())), &data, &run);
        if let Value::Object(m) = &mut config {
            m.extend(bound.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        config
    }

    /// Whether the run optimises a mix of objectives.
    pub fn is_mix(&self) -> bool {
        !self.recipe.mix.is_empty()
    }
}

/// An objective over several architectures names their roles; the recipe must give exactly
/// those (and a one-architecture objective gets one architecture).
fn check_roles(archs: &[(Option<String>, ComponentPlan)], objectives: &[ComponentPlan], problems: &mut Vec<String>) {
    let given: Vec<String> = archs.iter().filter_map(|(r, _)| r.clone()).collect();
    for o in objectives {
        let wanted = &o.manifest.roles;
        if wanted.is_empty() && !given.is_empty() {
            problems.push(format!(
                "objective {} ([{}]) trains one architecture, but the recipe gives {} under roles ({}): use a single [arch] section, or an objective that names these roles",
                o.origin(),
                o.section,
                given.len(),
                given.iter().map(|r| format!("[arch.{r}]")).collect::<Vec<_>>().join(", ")
            ));
        } else if !wanted.is_empty() {
            let missing: Vec<&String> = wanted.iter().filter(|r| !given.contains(r)).collect();
            let extra: Vec<&String> = given.iter().filter(|r| !wanted.contains(r)).collect();
            if !missing.is_empty() || !extra.is_empty() {
                problems.push(format!(
                    "objective {} trains the roles {}: the recipe {}{}",
                    o.origin(),
                    wanted.join(", "),
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "lacks {}",
                            missing.iter().map(|r| format!("[arch.{r}]")).collect::<Vec<_>>().join(", ")
                        )
                    },
                    if extra.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " has no use for {}",
                            extra.iter().map(|r| format!("[arch.{r}]")).collect::<Vec<_>>().join(", ")
                        )
                    },
                ));
            }
        }
    }
}

/// Expands `{data}`, `{run}`, `$PT_DATA` and `~` in every string (pt-sdk's one rule).
fn expand(v: Value, data_dir: &str, run_dir: &str) -> Value {
    match v {
        Value::String(s) => Value::String(pt_sdk::expand_setting(&s, data_dir, run_dir)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| expand(x, data_dir, run_dir)).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, expand(x, data_dir, run_dir))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod undescribed_tests {
    use super::undescribed_keys;
    use pt_sdk::{ComponentKind, ComponentManifest, ConfigKey};

    #[test]
    fn keys_without_a_description_are_named_with_the_component() {
        let key =
            |k: &str, d: &str| ConfigKey { key: k.into(), default: serde_json::Value::Null, description: d.into() };
        let mut m = ComponentManifest {
            kind: ComponentKind::Objective,
            name: "rot".into(),
            about: String::new(),
            config: vec![key("rate", "a rate"), key("width", " "), key("depth", "")],
            inputs: vec![],
            provides: vec![],
            roles: vec![],
        };
        let w = undescribed_keys("myplug:rot", &m).unwrap();
        assert!(w.starts_with("objective myplug:rot: config keys without a description: width, depth"), "{w}");
        m.config.truncate(1);
        assert_eq!(undescribed_keys("myplug:rot", &m), None);
    }
}
