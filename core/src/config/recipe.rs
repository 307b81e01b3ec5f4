use super::keys::check_keys;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use toml::{Table, Value};

/// Host settings of a run (`[run]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random stream (shuffle, masking, augmentation, dropout, init).
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// Samples per micro-batch (per process).
    pub batch_size: u64,
    /// Micro-batches accumulated per optimizer step. The step's loss (and so its gradient) is
    /// the mean of the micro-batches' losses, as in Lightning (and HF Trainer before 4.46):
    /// it equals one batch of `batch_size × grad_accum` when the objective's loss is a mean over
    /// the same number of items in every micro-batch (samples, or tokens of full blocks), and
    /// weights micro-batches equally when an objective averages over a varying count (e.g.
    /// MLM's masked tokens).
    pub grad_accum: u64,
    /// Stop after this many optimizer steps (0: no limit).
    pub max_steps: u64,
    /// Stop after this many epochs (0: no limit).
    pub max_epochs: u64,
    /// Stop after this much wall time (0: no limit).
    pub max_minutes: f64,
    pub log_every: u64,
    /// Run evaluators every N steps (0: only at the end).
    pub eval_every: u64,
    /// Save a checkpoint every N steps (0: only at the end).
    pub save_every: u64,
    /// Checkpoints kept besides the best one.
    pub keep_last: usize,
    /// Metric that picks the best checkpoint (e.g. `mlm_eval/mlm_loss`); empty: none.
    pub best_metric: String,
    /// `min` or `max`.
    pub best_mode: String,
    /// Global gradient-norm clipping (0: off).
    pub grad_clip: f64,
    /// `auto` (bf16 autocast on CUDA, fp32 on CPU), `fp32`, `bf16`.
    pub precision: String,
    /// Non-finite losses in a row that stop the run.
    pub max_bad_steps: u64,
    /// libtorch intra-op threads (0: libtorch's default).
    pub num_threads: i32,
    /// Batches prepared ahead on the loader thread.
    pub prefetch: usize,
    /// With partly labelled data (e.g. `label_fraction`): samples of every micro-batch drawn
    /// from the labelled ones (their own shuffled stream), the rest from all samples (0: none).
    pub labelled_per_batch: u64,
    /// Multi-process runs: seconds a collective, the rendezvous or rank 0's evaluation may take
    /// before the other ranks give up with an error (a dead or hung rank).
    pub dist_timeout_s: u64,
    /// Multi-process runs: start each gradient bucket's all-reduce during backward, as soon as
    /// its gradients are final (false: all buckets after backward).
    pub overlap_allreduce: bool,
    /// Multi-process runs: size of a gradient all-reduce bucket (whole parameters, MB).
    pub bucket_mb: f64,
    /// Multi-process runs: the c10d backend — `auto` (NCCL on CUDA when pt was built with it,
    /// else Gloo), `nccl` or `gloo`.
    pub dist_backend: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            device: "auto".into(),
            batch_size: 32,
            grad_accum: 1,
            max_steps: 1000,
            max_epochs: 0,
            max_minutes: 0.0,
            log_every: 10,
            eval_every: 0,
            save_every: 0,
            keep_last: 2,
            best_metric: String::new(),
            best_mode: "min".into(),
            grad_clip: 1.0,
            precision: "auto".into(),
            max_bad_steps: 5,
            num_threads: 0,
            prefetch: 4,
            labelled_per_batch: 0,
            dist_timeout_s: 1800,
            overlap_allreduce: true,
            bucket_mb: 25.0,
            dist_backend: "auto".into(),
        }
    }
}

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
    fn to_table(&self) -> Table {
        let mut t = Table::new();
        t.insert("name".into(), Value::String(self.name.clone()));
        t.extend(self.config.clone());
        t
    }
    /// The config as JSON, with `{data}` and `{run}` expanded in strings.
    pub fn config_json(&self, data_dir: &Path, run_dir: &Path) -> serde_json::Value {
        expand(toml_to_json(&Value::Table(self.config.clone())), data_dir, run_dir)
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
const SECTIONS: [&str; 8] = ["run", "data", "arch", "objective", "optim", "schedule", "eval", "checkpoint"];

/// A whole run configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recipe {
    pub run: RunConfig,
    pub data: ComponentSpec,
    pub arch: ComponentSpec,
    pub objective: ComponentSpec,
    /// A weighted sum of objectives over one architecture (`[[objective.mix]]`); when set,
    /// `objective` is empty.
    pub mix: Vec<ObjectiveSpec>,
    pub optim: Table,
    pub schedule: Table,
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
        let mut root: Table =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().trim())))?;
        for o in overrides {
            apply_override(&mut root, o)?;
        }
        Self::from_table(root).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{origin}: {m}")),
            other => other,
        })
    }

    /// Parses a file of `[[eval]]` entries only (a `pt transfer` task), then applies overrides
    /// (`eval.0.lr=1e-3`); evaluator names stay unique as in a recipe.
    pub fn parse_evals(text: &str, origin: &str, overrides: &[String]) -> Result<Vec<EvalSpec>> {
        let mut root: Table =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().trim())))?;
        for o in overrides {
            apply_override(&mut root, o)?;
        }
        let in_origin = |e: Error| match e {
            Error::Config(m) => Error::Config(format!("{origin}: {m}")),
            other => other,
        };
        check_keys("top level", &root, &["eval"]).map_err(in_origin)?;
        let evals = parse_eval_array(root.remove("eval")).map_err(in_origin)?;
        if evals.is_empty() {
            return Err(Error::Config(format!("{origin}: no [[eval]] entries")));
        }
        let probe = Recipe { evals, ..Recipe::default() };
        probe.check_eval_labels().map_err(in_origin)?;
        Ok(probe.evals)
    }

    pub fn load(path: &Path, overrides: &[String]) -> Result<Recipe> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading recipe {}", path.display()), e))?;
        Self::parse(&text, &path.display().to_string(), overrides)
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
        let known: Vec<String> = keys_of(&RunConfig::default());
        check_keys("run", &run_table, &known.iter().map(String::as_str).collect::<Vec<_>>())?;
        let run: RunConfig = Value::Table(run_table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(format!("[run]: {}", e.message())))?;
        let data = ComponentSpec::from_table("data", take(&mut root, "data")?)?;
        let arch = ComponentSpec::from_table("arch", take(&mut root, "arch")?)?;
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
        let optim = take(&mut root, "optim")?;
        let schedule = take(&mut root, "schedule")?;
        let evals = parse_eval_array(root.remove("eval"))?;
        let r = Recipe { run, data, arch, objective, mix, optim, schedule, evals };
        r.validate()?;
        Ok(r)
    }

    fn validate(&self) -> Result<()> {
        self.check_eval_labels()?;
        self.check_run()
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

    fn check_run(&self) -> Result<()> {
        let r = &self.run;
        if r.batch_size == 0 || r.grad_accum == 0 {
            return Err(Error::Config("[run] batch_size and grad_accum must be at least 1".into()));
        }
        if !["min", "max"].contains(&r.best_mode.as_str()) {
            return Err(Error::Config(format!("[run] best_mode must be 'min' or 'max', got '{}'", r.best_mode)));
        }
        if !["auto", "nccl", "gloo"].contains(&r.dist_backend.as_str()) {
            return Err(Error::Config(format!(
                "[run] dist_backend must be auto, nccl or gloo, got '{}'",
                r.dist_backend
            )));
        }
        if !["auto", "fp32", "bf16"].contains(&r.precision.as_str()) {
            return Err(Error::Config(format!("[run] precision must be auto, fp32 or bf16, got '{}'", r.precision)));
        }
        if r.max_steps == 0 && r.max_epochs == 0 && r.max_minutes <= 0.0 {
            return Err(Error::Config(
                "[run] sets no stopping point: give max_steps, max_epochs or max_minutes".into(),
            ));
        }
        Ok(())
    }

    /// The recipe as TOML (what `config.toml` in the run directory holds).
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        root.insert("run".into(), Value::try_from(&self.run).unwrap_or(Value::Table(Table::new())));
        root.insert("data".into(), Value::Table(self.data.to_table()));
        root.insert("arch".into(), Value::Table(self.arch.to_table()));
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
        root.insert("optim".into(), Value::Table(self.optim.clone()));
        root.insert("schedule".into(), Value::Table(self.schedule.clone()));
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

/// The top-level keys a serde struct serialises to.
pub fn keys_of<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `a.b.c=value`: value parsed as TOML (number, bool, array, quoted string), else a bare string.
pub fn apply_override(root: &mut Table, spec: &str) -> Result<()> {
    let (path, raw) = spec
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("--set '{spec}': expected KEY=VALUE, e.g. --set optim.lr=1e-3")))?;
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    let parts: Vec<&str> = path.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Config(format!("--set '{spec}': empty key segment")));
    }
    let mut tree = Value::Table(std::mem::take(root));
    let result = set_path(&mut tree, &parts, value, spec);
    if let Value::Table(t) = tree {
        *root = t;
    }
    result
}

fn set_path(cur: &mut Value, parts: &[&str], value: Value, spec: &str) -> Result<()> {
    let Some((head, rest)) = parts.split_first() else {
        return Ok(());
    };
    match cur {
        Value::Table(t) => {
            if rest.is_empty() {
                t.insert(head.to_string(), value);
                return Ok(());
            }
            let next = t.entry(head.to_string()).or_insert_with(|| Value::Table(Table::new()));
            set_path(next, rest, value, spec)
        }
        Value::Array(a) => {
            let len = a.len();
            let slot = head
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| Error::Config(format!("--set '{spec}': '{head}' is not an index below {len}")))?;
            if rest.is_empty() {
                *slot = value;
                Ok(())
            } else {
                set_path(slot, rest, value, spec)
            }
        }
        other => Err(Error::Config(format!("--set '{spec}': '{head}' is inside a {}, not a table", other.type_str()))),
    }
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

/// Expands `{data}` and `{run}` in every string.
pub fn expand(v: serde_json::Value, data_dir: &Path, run_dir: &Path) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(
            s.replace("{data}", &data_dir.display().to_string()).replace("{run}", &run_dir.display().to_string()),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(|x| expand(x, data_dir, run_dir)).collect())
        }
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().map(|(k, x)| (k, expand(x, data_dir, run_dir))).collect())
        }
        other => other,
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
        assert_eq!(r.arch.config["preset"].as_str(), Some("tiny"));
        assert_eq!(r.evals[0].every, Some(5));
        let v = r.evals[0].splits["validation"].config_json(Path::new("/d"), Path::new("/r"));
        assert_eq!(v["files"][0], "/d/v.txt");
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
    fn bad_override_syntax_is_explained() {
        let e = Recipe::parse(BASE, "t", &["run.max_steps".into()]).unwrap_err().to_string();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
    }
}
