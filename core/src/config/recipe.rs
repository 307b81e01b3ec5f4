//! A recipe as typed values: every section parsed and range-checked, nothing left as an untyped
//! table but the components' own keys (which the run plan checks against each component).

use super::checkpoint::CheckpointConfig;
use super::keys::check_keys;
use super::optim::OptimSettings;
use super::overrides::apply_override;
use super::run::RunConfig;
use super::section::{parse_section, to_table};
use crate::{Error, Result};
use pt_optim::ScheduleConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use toml::{Table, Value};

/// `name` plus the component's own config keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ComponentSpec {
    pub name: String,
    pub config: Table,
}

impl ComponentSpec {
    fn from_table(section: &str, mut t: Table) -> Result<Self> {
        let name = match t.remove("name") {
            Some(Value::String(s)) => s,
            Some(other) => return Err(Error::Config(format!("[{section}] name must be a string, got {other}"))),
            None => String::new(),
        };
        Ok(ComponentSpec { name, config: t })
    }
    pub fn to_table(&self) -> Table {
        let mut t = Table::new();
        t.insert("name".into(), Value::String(self.name.clone()));
        t.extend(self.config.clone());
        t
    }
}

/// The run's architectures: one (`[arch]` with a `name`), or several under role names
/// (`[arch.image]`, `[arch.text]`, each with its own `name`), for objectives that train
/// several architectures together.
#[derive(Clone, Debug, PartialEq)]
pub enum Archs {
    One(ComponentSpec),
    Roles(BTreeMap<String, ComponentSpec>),
}

impl Default for Archs {
    fn default() -> Self {
        Archs::One(ComponentSpec::default())
    }
}

impl Archs {
    pub(super) fn parse(t: Table) -> Result<Archs> {
        let all_tables = !t.is_empty() && t.values().all(Value::is_table);
        if t.contains_key("name") || !all_tables {
            return Ok(Archs::One(ComponentSpec::from_table("arch", t)?));
        }
        let mut roles = BTreeMap::new();
        for (role, v) in t {
            let Value::Table(spec) = v else { continue };
            if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(Error::Config(format!(
                    "[arch.{role}]: a role name is letters, digits, '_' and '-' (it prefixes the role's inputs as 'role/…' and tensors as 'role.…')"
                )));
            }
            let spec = ComponentSpec::from_table(&format!("arch.{role}"), spec)?;
            if spec.name.is_empty() {
                return Err(Error::Config(format!("[arch.{role}] has no name: set name = \"...\" (e.g. resnet18)")));
            }
            roles.insert(role, spec);
        }
        Ok(Archs::Roles(roles))
    }

    /// `(role, spec)` pairs; the single architecture has no role.
    pub fn iter(&self) -> Vec<(Option<&str>, &ComponentSpec)> {
        match self {
            Archs::One(s) => vec![(None, s)],
            Archs::Roles(m) => m.iter().map(|(r, s)| (Some(r.as_str()), s)).collect(),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Archs::One(s) => Value::Table(s.to_table()),
            Archs::Roles(m) => Value::Table(m.iter().map(|(r, s)| (r.clone(), Value::Table(s.to_table()))).collect()),
        }
    }
}

/// An evaluator entry (`[[eval]]`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EvalSpec {
    pub component: ComponentSpec,
    /// Overrides `[run] eval_every` for this evaluator (0: only at the end).
    pub every: Option<u64>,
    /// Also evaluate a randomly initialised copy of the architecture, side by side.
    pub compare_random_init: bool,
    /// The name its metrics are logged under (default: the evaluator's name); tells apart two
    /// entries of one evaluator, e.g. probes on two datasets.
    pub label: Option<String>,
    /// split name -> dataset.
    pub splits: BTreeMap<String, ComponentSpec>,
}

impl EvalSpec {
    /// What its metrics are logged under: the label, else the evaluator's name.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.component.name)
    }
}

const EVAL_HOST_KEYS: [&str; 5] = ["name", "label", "every", "compare_random_init", "splits"];
const SECTIONS: [&str; 8] = ["run", "checkpoint", "data", "arch", "objective", "optim", "schedule", "eval"];

/// Keys that moved from `[run]` to `[checkpoint]`, for a one-line hint.
const MOVED_TO_CHECKPOINT: [(&str, &str); 4] =
    [("save_every", "every"), ("keep_last", "keep_last"), ("best_metric", "best_metric"), ("best_mode", "best_mode")];

/// A whole run configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recipe {
    pub run: RunConfig,
    pub checkpoint: CheckpointConfig,
    pub data: ComponentSpec,
    pub arch: Archs,
    pub objective: ComponentSpec,
    /// A weighted sum of objectives over one architecture (`[[objective.mix]]`); when set,
    /// `objective` is empty.
    pub mix: Vec<ObjectiveSpec>,
    pub optim: OptimSettings,
    pub schedule: ScheduleConfig,
    pub evals: Vec<EvalSpec>,
}

/// One term of an objective mix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectiveSpec {
    pub component: ComponentSpec,
    pub weight: f64,
    /// The prefix of its metrics and parameters (default: the objective's name).
    pub label: Option<String>,
    /// Whether its forward may change the architecture's buffers (BatchNorm running
    /// statistics). False keeps statistics from views that evaluation never sees (e.g.
    /// SimCLR's strong augmentations) out of the ones the model is evaluated with.
    pub update_buffers: bool,
}

impl ObjectiveSpec {
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or_else(|| self.component.name.rsplit(':').next().unwrap_or(&self.component.name))
    }
}

impl Recipe {
    /// Parses TOML text (`origin` names it in errors), then applies `--set` overrides.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Recipe> {
        let recipe = Self::from_table(tree(text, origin, false, overrides)?).map_err(|e| in_origin(origin, e))?;
        recipe.check_schedule_length().map_err(|e| in_origin(origin, e))?;
        Ok(recipe)
    }

    /// A schedule that needs the run's length is refused for a run that stops only at
    /// max_minutes: it would sit at its end (the minimum rate) from step 1. Checked on recipes
    /// about to train, not on saved configs, which load as they were run.
    fn check_schedule_length(&self) -> Result<()> {
        let run = &self.run;
        match (run.max_steps, run.max_epochs, self.schedule.length_dependent_key()) {
            (0, 0, Some(key)) => Err(Error::Config(format!(
                "[schedule] {key} needs the run's length, but [run] stops only at max_minutes: set run.max_steps or run.max_epochs as well, or use decay = \"constant\" with warmup_steps"
            ))),
            _ => Ok(()),
        }
    }

    /// A run's saved `config.toml` (or a checkpoint's config). Configs saved before
    /// `[checkpoint]` existed keep their `[run]` checkpoint keys: they are moved, not refused.
    pub fn parse_saved(text: &str, origin: &str, overrides: &[String]) -> Result<Recipe> {
        Self::from_table(tree(text, origin, true, overrides)?).map_err(|e| in_origin(origin, e))
    }

    pub fn load_saved(path: &Path, overrides: &[String]) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::parse_saved(&text, &path.display().to_string(), overrides)
    }

    /// Parses a file of `[[eval]]` entries only (a `pt transfer` task), then applies overrides
    /// (`eval.0.lr=1e-3`); evaluator names stay unique as in a recipe.
    pub fn parse_evals(text: &str, origin: &str, overrides: &[String]) -> Result<Vec<EvalSpec>> {
        let mut root = tree(text, origin, false, overrides)?;
        let in_origin = |e: Error| in_origin(origin, e);
        check_keys("top level", &root, &["eval"]).map_err(in_origin)?;
        let evals = parse_eval_array(root.remove("eval")).map_err(in_origin)?;
        if evals.is_empty() {
            return Err(Error::Config(format!("{origin}: no [[eval]] entries")));
        }
        let probe = Recipe { evals, ..Recipe::default() };
        probe.check_eval_labels().map_err(in_origin)?;
        Ok(probe.evals)
    }

    fn from_table(mut root: Table) -> Result<Recipe> {
        check_keys("top level", &root, &SECTIONS)?;
        let take = |root: &mut Table, key: &str| -> Result<Table> {
            match root.remove(key) {
                None => Ok(Table::new()),
                Some(Value::Table(t)) => Ok(t),
                Some(other) => Err(Error::Config(format!("[{key}] must be a table, got {}", other.type_str()))),
            }
        };
        let run_table = take(&mut root, "run")?;
        if let Some((old, new)) = MOVED_TO_CHECKPOINT.iter().find(|(old, _)| run_table.contains_key(*old)) {
            return Err(Error::Config(format!("[run] {old} is now [checkpoint] {new}: move it there")));
        }
        let run: RunConfig = parse_section("run", run_table)?;
        run.validate()?;
        let checkpoint: CheckpointConfig = parse_section("checkpoint", take(&mut root, "checkpoint")?)?;
        checkpoint.validate()?;
        let optim = OptimSettings::parse(take(&mut root, "optim")?)?;
        let schedule: ScheduleConfig = parse_section("schedule", take(&mut root, "schedule")?)?;
        schedule.validate().map_err(|e| Error::Config(format!("[schedule] {}", e.message)))?;
        let data = ComponentSpec::from_table("data", take(&mut root, "data")?)?;
        let arch = Archs::parse(take(&mut root, "arch")?)?;
        super::init_from::check_init_roles(&run, &arch)?;
        let mut objective_table = take(&mut root, "objective")?;
        let mix = parse_mix(objective_table.remove("mix"))?;
        if !mix.is_empty() && !objective_table.is_empty() {
            let keys: Vec<&str> = objective_table.keys().map(String::as_str).collect();
            return Err(Error::Config(format!(
                "[objective] holds either one objective (name = ...) or a mix ([[objective.mix]] entries), not both: move {} into a mix entry",
                keys.join(", ")
            )));
        }
        let objective = ComponentSpec::from_table("objective", objective_table)?;
        let evals = parse_eval_array(root.remove("eval"))?;
        let r = Recipe { run, checkpoint, data, arch, objective, mix, optim, schedule, evals };
        r.check_eval_labels()?;
        Ok(r)
    }

    /// The objectives the run optimises: the mix, or the one `[objective]` with weight 1.
    pub fn objectives(&self) -> Vec<ObjectiveSpec> {
        if self.mix.is_empty() {
            vec![ObjectiveSpec { component: self.objective.clone(), weight: 1.0, label: None, update_buffers: true }]
        } else {
            self.mix.clone()
        }
    }

    fn check_eval_labels(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for e in &self.evals {
            if !seen.insert(e.label()) {
                return Err(Error::Config(format!(
                    "two [[eval]] entries are named '{}': give one a label (label = \"...\") so their metrics stay apart",
                    e.label()
                )));
            }
        }
        Ok(())
    }

    /// The recipe as TOML (what `config.toml` in the run directory holds).
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        root.insert("run".into(), Value::Table(to_table(&self.run)));
        root.insert("checkpoint".into(), Value::Table(to_table(&self.checkpoint)));
        root.insert("data".into(), Value::Table(self.data.to_table()));
        root.insert("arch".into(), self.arch.to_value());
        if self.mix.is_empty() {
            root.insert("objective".into(), Value::Table(self.objective.to_table()));
        } else {
            let entries = self
                .mix
                .iter()
                .map(|m| {
                    let mut t = m.component.to_table();
                    t.insert("weight".into(), Value::Float(m.weight));
                    if let Some(label) = &m.label {
                        t.insert("label".into(), Value::String(label.clone()));
                    }
                    if !m.update_buffers {
                        t.insert("update_buffers".into(), Value::Boolean(false));
                    }
                    Value::Table(t)
                })
                .collect();
            let mut t = Table::new();
            t.insert("mix".into(), Value::Array(entries));
            root.insert("objective".into(), Value::Table(t));
        }
        root.insert("optim".into(), Value::Table(self.optim.to_table()));
        root.insert("schedule".into(), Value::Table(to_table(&self.schedule)));
        let evals: Vec<Value> = self
            .evals
            .iter()
            .map(|e| {
                let mut t = e.component.to_table();
                if let Some(every) = e.every {
                    t.insert("every".into(), Value::Integer(every as i64));
                }
                if let Some(label) = &e.label {
                    t.insert("label".into(), Value::String(label.clone()));
                }
                if e.compare_random_init {
                    t.insert("compare_random_init".into(), Value::Boolean(true));
                }
                let splits: Table = e.splits.iter().map(|(k, v)| (k.clone(), Value::Table(v.to_table()))).collect();
                t.insert("splits".into(), Value::Table(splits));
                Value::Table(t)
            })
            .collect();
        if !evals.is_empty() {
            root.insert("eval".into(), Value::Array(evals));
        }
        toml::to_string_pretty(&root).unwrap_or_default()
    }
}

/// The TOML tree of `text`, with a saved config's moved keys put where they are now
/// (`migrate`), then the `--set` overrides applied.
fn tree(text: &str, origin: &str, migrate: bool, overrides: &[String]) -> Result<Table> {
    let mut root: Table =
        toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().trim())))?;
    if let (true, Some(Value::Table(run))) = (migrate, root.get_mut("run")) {
        let moved: Table = MOVED_TO_CHECKPOINT
            .iter()
            .filter_map(|(old, new)| run.remove(*old).map(|v| (new.to_string(), v)))
            .collect();
        if !moved.is_empty() {
            root.insert("checkpoint".into(), Value::Table(moved));
        }
    }
    for o in overrides {
        apply_override(&mut root, o)?;
    }
    Ok(root)
}

/// A config error prefixed with where the recipe came from.
fn in_origin(origin: &str, e: Error) -> Error {
    match e {
        Error::Config(m) => Error::Config(format!("{origin}: {m}")),
        other => other,
    }
}

fn parse_mix(value: Option<Value>) -> Result<Vec<ObjectiveSpec>> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::Config("objective.mix must be an array of tables: write [[objective.mix]]".into()))
        }
    };
    let mut mix = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Table(mut t) = item else {
            return Err(Error::Config(format!("[[objective.mix]] #{i} must be a table")));
        };
        let weight = match t.remove("weight") {
            None => 1.0,
            Some(Value::Float(w)) if w.is_finite() && w > 0.0 => w,
            Some(Value::Integer(w)) if w > 0 => w as f64,
            Some(v) => {
                return Err(Error::Config(format!("[[objective.mix]] #{i}: weight must be a positive number, got {v}")))
            }
        };
        let label = match t.remove("label") {
            None => None,
            Some(Value::String(l)) if !l.is_empty() && !l.contains(['/', '.']) => Some(l),
            Some(v) => {
                return Err(Error::Config(format!(
                    "[[objective.mix]] #{i}: label must be a non-empty string without '/' or '.', got {v}"
                )))
            }
        };
        let update_buffers = match t.remove("update_buffers") {
            None => true,
            Some(Value::Boolean(b)) => b,
            Some(v) => {
                return Err(Error::Config(format!(
                    "[[objective.mix]] #{i}: update_buffers must be true or false, got {v}"
                )))
            }
        };
        let component = ComponentSpec::from_table(&format!("objective.mix.{i}"), t)?;
        if component.name.is_empty() {
            return Err(Error::Config(format!("[[objective.mix]] #{i} has no name")));
        }
        mix.push(ObjectiveSpec { component, weight, label, update_buffers });
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in &mix {
        if !seen.insert(m.label().to_string()) {
            return Err(Error::Config(format!(
                "two [[objective.mix]] entries are named '{}': give one a label (label = \"...\")",
                m.label()
            )));
        }
    }
    Ok(mix)
}

fn parse_eval_array(value: Option<Value>) -> Result<Vec<EvalSpec>> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Table(t) => parse_eval(i, t),
                _ => Err(Error::Config(format!("[[eval]] #{i} must be a table"))),
            })
            .collect(),
        Some(_) => Err(Error::Config("eval must be an array of tables: write [[eval]]".into())),
    }
}

fn parse_eval(i: usize, mut t: Table) -> Result<EvalSpec> {
    let every = match t.remove("every") {
        None => None,
        Some(Value::Integer(n)) if n >= 0 => Some(n as u64),
        Some(v) => return Err(Error::Config(format!("[[eval]] #{i}: every must be a non-negative integer, got {v}"))),
    };
    let compare_random_init = match t.remove("compare_random_init") {
        None => false,
        Some(Value::Boolean(b)) => b,
        Some(v) => {
            return Err(Error::Config(format!("[[eval]] #{i}: compare_random_init must be true/false, got {v}")))
        }
    };
    let label = match t.remove("label") {
        None => None,
        Some(Value::String(l)) if !l.is_empty() && !l.contains('/') => Some(l),
        Some(v) => {
            return Err(Error::Config(format!("[[eval]] #{i}: label must be a non-empty string without '/', got {v}")))
        }
    };
    let mut splits = BTreeMap::new();
    match t.remove("splits") {
        None => {}
        Some(Value::Table(s)) => {
            for (split, v) in s {
                let Value::Table(dt) = v else {
                    return Err(Error::Config(format!(
                        "[[eval]] #{i}: splits.{split} must be a dataset table with a name"
                    )));
                };
                splits.insert(split.clone(), ComponentSpec::from_table(&format!("eval.splits.{split}"), dt)?);
            }
        }
        Some(_) => return Err(Error::Config(format!("[[eval]] #{i}: splits must be a table"))),
    }
    let component = ComponentSpec::from_table("eval", t)?;
    if component.name.is_empty() {
        return Err(Error::Config(format!("[[eval]] #{i} has no name (host keys: {})", EVAL_HOST_KEYS.join(", "))));
    }
    Ok(EvalSpec { component, every, compare_random_init, label, splits })
}

pub fn toml_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        Value::Table(t) => serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[run]
max_steps = 10
[data]
name = "text"
block_size = 64
[arch]
name = "bert"
[objective]
name = "mlm"
[[eval]]
name = "mlm_eval"
every = 5
splits.validation = { name = "text", files = ["{data}/v.txt"] }
"#;

    #[test]
    fn objective_mixes_parse_with_weights_and_labels() {
        let base = BASE.replace("[objective]\nname = \"mlm\"\n", "");
        let mixed = format!(
            "{base}[[objective.mix]]\nname = \"simclr\"\ntemperature = 0.2\n[[objective.mix]]\nname = \"resnet:supervised\"\nweight = 0.5\n"
        );
        let r = Recipe::parse(&mixed, "t", &[]).unwrap();
        let o = r.objectives();
        assert_eq!(o.len(), 2);
        assert_eq!((o[0].label(), o[0].weight), ("simclr", 1.0));
        assert_eq!((o[1].label(), o[1].weight), ("supervised", 0.5));
        assert_eq!(o[0].component.config["temperature"].as_float(), Some(0.2));
        assert_eq!(Recipe::parse(&r.to_toml(), "again", &[]).unwrap(), r);
        let both = format!("{BASE}[[objective.mix]]\nname = \"simclr\"\n");
        let e = Recipe::parse(&both, "t", &[]).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        let twice = format!("{base}[[objective.mix]]\nname = \"simclr\"\n[[objective.mix]]\nname = \"simclr\"\n");
        assert!(Recipe::parse(&twice, "t", &[]).unwrap_err().to_string().contains("label"));
        assert_eq!(Recipe::parse(BASE, "t", &[]).unwrap().objectives()[0].weight, 1.0);
    }

    #[test]
    fn eval_labels_keep_two_entries_of_one_evaluator_apart() {
        let twice = format!("{BASE}[[eval]]\nname = \"mlm_eval\"\n");
        let e = Recipe::parse(&twice, "t", &[]).unwrap_err().to_string();
        assert!(e.contains("named 'mlm_eval'") && e.contains("label"), "{e}");
        let labelled = format!("{BASE}[[eval]]\nname = \"mlm_eval\"\nlabel = \"mlm_eval_kjv\"\n");
        let r = Recipe::parse(&labelled, "t", &[]).unwrap();
        assert_eq!(r.evals[1].label(), "mlm_eval_kjv");
        assert_eq!(r.evals[0].label(), "mlm_eval");
        assert_eq!(Recipe::parse(&r.to_toml(), "again", &[]).unwrap(), r);
    }

    #[test]
    fn parses_sections_and_overrides() {
        let r = Recipe::parse(
            BASE,
            "test",
            &["run.batch_size=8".into(), "data.block_size=32".into(), "arch.preset=tiny".into()],
        )
        .unwrap();
        assert_eq!(r.run.batch_size, 8);
        assert_eq!(r.data.config["block_size"].as_integer(), Some(32));
        assert_eq!(r.arch.iter()[0].1.config["preset"].as_str(), Some("tiny"));
        assert_eq!(r.evals[0].every, Some(5));
        assert_eq!(r.evals[0].splits["validation"].config["files"][0].as_str(), Some("{data}/v.txt"));
        // Round trip through the resolved TOML.
        let again = Recipe::parse(&r.to_toml(), "again", &[]).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn unknown_run_key_suggests_the_right_one() {
        let e = Recipe::parse(BASE, "test", &["run.batch_szie=8".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown key 'batch_szie' in [run]") && e.contains("Did you mean 'batch_size'?"), "{e}");
        let e = Recipe::parse("[optimiser]\nlr=1", "r.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("'optimiser'"), "{e}");
    }

    #[test]
    fn values_out_of_range_name_the_key_the_value_and_the_range() {
        for (set, expect) in [
            ("optim.lr=-1", "[optim] lr = -1: expected a finite number ≥ 0"),
            ("run.grad_clip=nan", "[run] grad_clip = NaN: expected a finite number ≥ 0"),
            ("run.max_minutes=-1", "[run] max_minutes = -1: expected a finite number ≥ 0"),
            ("run.batch_size=-1", "[run] batch_size = -1: invalid value: integer `-1`, expected a whole number ≥ 0"),
            ("run.batch_size=0", "[run] batch_size = 0: expected a whole number ≥ 1"),
            ("run.num_threads=100000", "[run] num_threads = 100000: expected 0 (libtorch's default) to"),
            (
                "run.precision=\"fp16\"",
                "[run] precision = \"fp16\": unknown variant `fp16`, expected one of `auto`, `fp32`, `bf16`",
            ),
            ("run.device=\"gpu\"", "[run] device = \"gpu\": 'gpu' is not a device"),
            ("checkpoint.best_mode=\"up\"", "[checkpoint] best_mode = \"up\": unknown variant `up`"),
            ("optim.name=\"adam\"", "[optim] name = \"adam\": unknown optimizer `adam`"),
            ("optim.momentun=0.9", "unknown key 'momentun' in [optim]"),
            ("schedule.warmup_ratio=2", "[schedule] warmup_ratio must be in [0, 1], got 2"),
            ("checkpoint.evry=3", "unknown key 'evry' in [checkpoint]. Did you mean 'every'?"),
        ] {
            let e = Recipe::parse(BASE, "r.toml", &[set.into()]).unwrap_err().to_string();
            assert!(e.starts_with("r.toml: ") && e.contains(expect), "{set}: {e}");
        }
        let timed_only = ["run.max_steps=0".into(), "run.max_minutes=5".into(), "schedule.decay=\"cosine\"".into()];
        let e = Recipe::parse(BASE, "r.toml", &timed_only).unwrap_err().to_string();
        assert!(e.contains("[schedule] decay needs the run's length") && e.contains("run.max_steps"), "{e}");
        let timed_ratio = ["run.max_steps=0".into(), "run.max_minutes=5".into(), "schedule.warmup_ratio=0.1".into()];
        let e = Recipe::parse(BASE, "r.toml", &timed_ratio).unwrap_err().to_string();
        assert!(e.contains("[schedule] warmup_ratio needs the run's length"), "{e}");
        let timed_steps = ["run.max_steps=0".into(), "run.max_minutes=5".into(), "schedule.warmup_steps=100".into()];
        assert!(
            Recipe::parse(BASE, "r.toml", &timed_steps).is_ok(),
            "a constant rate with warmup steps needs no length"
        );
        assert!(Recipe::parse_saved(BASE, "config.toml", &timed_only).is_ok(), "a saved config loads as it was run");
        let e = Recipe::parse(&BASE.replace("max_steps = 10", "max_steps = 10\nsave_every = 5"), "r", &[]).unwrap_err();
        assert!(e.to_string().contains("[run] save_every is now [checkpoint] every"), "{e}");
        let saved =
            Recipe::parse_saved(&BASE.replace("max_steps = 10", "max_steps = 10\nsave_every = 5"), "r", &[]).unwrap();
        assert_eq!(saved.checkpoint.every, 5, "a saved config of an older pt still loads");
    }

    #[test]
    fn architectures_under_roles_parse_and_round_trip() {
        let two = BASE.replace(
            "[arch]\nname = \"bert\"\n",
            "[arch.image]\nname = \"resnet18\"\nwidth = 16\n[arch.text]\nname = \"bert\"\n",
        );
        let r = Recipe::parse(&two, "t", &[]).unwrap();
        let roles: Vec<(Option<&str>, &str)> =
            r.arch.iter().into_iter().map(|(role, s)| (role, s.name.as_str())).collect();
        assert_eq!(roles, [(Some("image"), "resnet18"), (Some("text"), "bert")]);
        assert_eq!(Recipe::parse(&r.to_toml(), "again", &[]).unwrap(), r);
        let nameless = BASE.replace("[arch]\nname = \"bert\"\n", "[arch.image]\nwidth = 16\n");
        assert!(Recipe::parse(&nameless, "t", &[]).unwrap_err().to_string().contains("[arch.image] has no name"));
        let dotted = BASE.replace("[arch]\nname = \"bert\"\n", "[arch.\"img.enc\"]\nname = \"resnet18\"\n");
        let e = Recipe::parse(&dotted, "t", &[]).unwrap_err().to_string();
        assert!(e.contains("[arch.img.enc]: a role name is letters, digits"), "{e}");
    }

    #[test]
    fn bad_override_syntax_is_explained() {
        let e = Recipe::parse(BASE, "t", &["run.max_steps".into()]).unwrap_err().to_string();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
    }
}
