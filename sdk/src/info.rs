//! Component descriptions. They cross the boundary as JSON so new fields (with serde defaults)
//! never break a plugin built against an older SDK.

use serde::{Deserialize, Serialize};

/// The four kinds of component a plugin can provide.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Dataset,
    Architecture,
    Objective,
    Evaluator,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 4] =
        [ComponentKind::Dataset, ComponentKind::Architecture, ComponentKind::Objective, ComponentKind::Evaluator];
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Dataset => "dataset",
            ComponentKind::Architecture => "architecture",
            ComponentKind::Objective => "objective",
            ComponentKind::Evaluator => "evaluator",
        }
    }
    pub fn to_u8(self) -> u8 {
        self as u8
    }
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One config key of a component: its default and what it means.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConfigKey {
    pub key: String,
    pub default: serde_json::Value,
    pub description: String,
}

/// A config key the host fills from another component of the run when the recipe leaves it
/// unset: `fact` (default: the key itself) as published by a component that declares it
/// provides it (`role.fact` names one architecture of a multi-architecture run).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fact: String,
    /// An optional input may stay unset when no component of the run provides it.
    #[serde(default)]
    pub optional: bool,
}

impl InputDecl {
    /// A required input filled from the fact of the same name.
    pub fn key(key: &str) -> Self {
        InputDecl { key: key.into(), fact: String::new(), optional: false }
    }
    /// Filled from another fact (`feature_dim`, or `image.feature_dim` for one role).
    pub fn from(mut self, fact: &str) -> Self {
        self.fact = fact.into();
        self
    }
    /// May stay unset when nothing provides it.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    /// The fact it is filled from.
    pub fn fact(&self) -> &str {
        if self.fact.is_empty() {
            &self.key
        } else {
            &self.fact
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ComponentManifest {
    pub kind: ComponentKind,
    pub name: String,
    pub about: String,
    pub config: Vec<ConfigKey>,
    /// Config keys the host fills from other components (declared, never matched by name).
    #[serde(default)]
    pub inputs: Vec<InputDecl>,
    /// Facts this component publishes once built, for other components' inputs: a dataset's
    /// from its `DatasetInfo` (`notes`, `num_classes` from `classes`), an architecture's from
    /// its `ArchitectureInfo` (`feature_dim`, keys of `config`).
    #[serde(default)]
    pub provides: Vec<String>,
    /// Objectives over several architectures: the role names they need (`image`, `text`);
    /// empty: one architecture.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// What a plugin says about itself at load time (the handshake beyond abi_stable's layout check).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PluginManifest {
    pub name: String,
    pub version: String,
    pub sdk_version: String,
    pub tch_version: String,
    pub libtorch_version: String,
    pub components: Vec<ComponentManifest>,
}

/// A field a dataset provides in each batch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FieldInfo {
    pub name: String,
    /// libtorch dtype name, e.g. `int64`, `float32`.
    pub dtype: String,
    /// Per-sample shape; -1 marks a variable dimension.
    pub shape: Vec<i64>,
    #[serde(default)]
    pub description: String,
    /// Set when the dataset serves the field in a compact form that the host turns into `dtype`
    /// on the training device, after the copy (so the copy moves the compact bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_device: Option<OnDevice>,
}

impl FieldInfo {
    pub fn new(name: &str, dtype: &str, shape: &[i64], description: &str) -> Self {
        FieldInfo {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
            description: description.into(),
            on_device: None,
        }
    }
    /// Served compactly, turned into `dtype` by the host on the device (see [`OnDevice`]).
    pub fn on_device(mut self, transform: OnDevice) -> Self {
        self.on_device = Some(transform);
        self
    }
}

/// A conversion the host applies to a batch field once it is on the training device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OnDevice {
    /// uint8 pixels `[batch, channels, ...]` become float32 `(byte · scale − mean[c]) / std[c]`
    /// (one mean/std for all channels, or one per channel): a quarter of float32's bytes cross
    /// from the loader to the device and the CPU never converts a pixel.
    NormalizePixels { scale: f64, mean: Vec<f64>, std: Vec<f64> },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct DatasetInfo {
    /// Samples in this dataset (before sharding).
    pub num_samples: u64,
    pub fields: Vec<FieldInfo>,
    /// For labelled data: the class names (index = label).
    pub classes: Vec<String>,
    /// Samples per class (the same order as `classes`), if known.
    pub class_counts: Vec<u64>,
    /// Free-form facts worth showing (`tokenizer`, `vocab_size`, `skipped_lines`, ...).
    pub notes: serde_json::Map<String, serde_json::Value>,
    /// Per-sample lengths (in the dataset's own unit, e.g. audio samples after cropping) so the
    /// host can bucket batches by length; empty when samples are fixed-size.
    pub lengths: Vec<u64>,
    /// When only some samples carry a label (semi-supervised data): their indices, so the host
    /// can put a fixed number of them in every batch (`[run] labelled_per_batch`).
    pub labelled: Vec<u64>,
}

impl DatasetInfo {
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ArchitectureInfo {
    /// Batch fields forward needs.
    pub inputs: Vec<String>,
    /// Batch fields forward uses when present (e.g. `attention_mask`, `mlm_positions`).
    pub optional_inputs: Vec<String>,
    /// Output names forward can produce (e.g. `features`, `hidden_states`, `mlm_logits`).
    pub outputs: Vec<String>,
    /// Width of the `features` output.
    pub feature_dim: Option<i64>,
    /// Training FLOPs (forward + backward) per sample, for MFU; None if unknown.
    pub train_flops_per_sample: Option<f64>,
    /// Parameter-name prefixes in input-to-output order, for freezing the first N of them.
    pub layer_prefixes: Vec<String>,
    /// The architecture's resolved config, saved with checkpoints and exports.
    pub config: serde_json::Value,
    /// Convolutions compute faster with 4-D weights in channels_last (NHWC) memory: the host
    /// lays them out so (`[run] memory_format = "auto"`) and activations follow. Forward must
    /// then not assume contiguous weights (`reshape`, not `view`).
    pub channels_last: bool,
    /// Named places where a per-sample feature vector can be read besides `features`, input
    /// to output (see [`crate::taps`]). (SDK 0.1.5.)
    pub taps: Vec<FeatureTap>,
    /// The files `pt export --format NAME` can write, the first the default (empty: one
    /// Hugging Face directory from `config`, every tensor under its own name). (SDK 0.1.5.)
    pub exports: Vec<ExportFormat>,
}

/// One export format of an architecture: what loads it, the `config.json` beside the weights,
/// and the weights' names in it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ExportFormat {
    /// `hf`, `torchvision`, ...
    pub name: String,
    /// How the reference library loads it, shown to the user (`transformers
    /// ResNetForImageClassification.from_pretrained(DIR)`).
    pub loads_with: String,
    /// Written as `config.json` (null: no config file).
    #[serde(default)]
    pub config: serde_json::Value,
    /// pt's tensor name → the format's, for every tensor written (parameters and buffers);
    /// empty: every tensor under its own name.
    #[serde(default)]
    pub names: Vec<(String, String)>,
}

/// One feature tap of an architecture: forward returns `features.<name>` `[batch, dim]` when
/// the inputs hold a tensor of that name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FeatureTap {
    pub name: String,
    pub dim: i64,
    #[serde(default)]
    pub description: String,
}

impl FeatureTap {
    pub fn new(name: impl Into<String>, dim: i64, description: impl Into<String>) -> Self {
        FeatureTap { name: name.into(), dim, description: description.into() }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ObjectiveInfo {
    /// Dataset fields the objective reads.
    pub needs_fields: Vec<String>,
    /// Architecture outputs the objective reads.
    pub needs_outputs: Vec<String>,
    /// Fields `prepare` adds to the batch (so the architecture may need them).
    pub adds_fields: Vec<String>,
    /// Metric names the loss reports besides `loss`.
    pub metrics: Vec<String>,
    /// Outputs `embed` adds for evaluators (e.g. `image/embedding`, `text/embedding`).
    pub embeds: Vec<String>,
    /// `prepare` works on the host: it reads the batch's values and draws its randomness from
    /// `ctx` (seed, epoch, `sample_index`), never from torch's global generator, the device or
    /// the objective's parameters. The host then runs it on the loader thread, on a copy of
    /// the objective, before the batch moves to the device: the training step neither waits
    /// for it nor for the values it reads back (MLM's masks, wav2vec2's spans).
    pub prepare_on_host: bool,
    /// `prepare` runs on the device, but reads fields [`crate::Objective::draw_on_host`] drew
    /// for it on the loader thread: the training step builds none of its small random tensors
    /// and they reach the device with the batch, pinned (SimCLR's views). Without it (or for a batch the loader did not draw,
    /// e.g. an evaluator's) `prepare` draws for itself. (SDK 0.1.6.)
    pub draws_on_host: bool,
    /// Roles whose inputs come from other roles' outputs run in stages, in this order (ELECTRA:
    /// `[["generator"], ["discriminator"]]`): the host runs a stage's architectures, then
    /// [`crate::Objective::next_stage`] for the next stage's inputs. Every role in exactly one
    /// stage. Empty: all roles at once, on `prepare`'s inputs. (SDK 0.1.4.)
    pub stages: Vec<Vec<String>>,
    /// Parameters that architectures under different roles share: storage and gradient, one
    /// optimizer entry (ELECTRA's generator and discriminator share their embeddings).
    /// (SDK 0.1.4.)
    pub ties: Vec<Tie>,
    /// A format `pt export --format` offers with the objective's own weights beside the
    /// model's (wav2vec2's quantiser for transformers' `Wav2Vec2ForPreTraining`). (SDK 0.1.5.)
    pub export: Option<ObjectiveExport>,
}

/// An export format an objective adds by extending one of its architecture's
/// ([`ExportFormat`]): the config gains `config`'s keys, the model's tensors take
/// `model_prefix`, and the objective's tensors join them under `names`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ObjectiveExport {
    /// Its name (`hf-pretraining`).
    pub name: String,
    /// The architecture's format it extends (`hf`).
    pub extends: String,
    pub loads_with: String,
    /// Merged into the extended format's config (`architectures` included).
    pub config: serde_json::Value,
    /// Put before every model tensor's name in the extended format (`wav2vec2.`).
    pub model_prefix: String,
    /// The objective's tensor name → the format's; empty: every objective tensor as named.
    pub names: Vec<(String, String)>,
}

/// Every model parameter named `alias` + rest is the parameter `owner` + rest (role-qualified
/// prefixes such as `generator.bert.embeddings.`): it starts with the owner's values, and both
/// towers then compute with one tensor whose gradient is the sum of theirs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Tie {
    pub alias: String,
    pub owner: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct EvaluatorInfo {
    /// Dataset splits it wants (`train`, `test`, `validation`...).
    pub splits: Vec<String>,
    pub needs_fields: Vec<String>,
    pub needs_outputs: Vec<String>,
    /// The metric a checkpoint manager can rank by (e.g. `accuracy`) and whether higher is better.
    pub primary_metric: Option<String>,
    pub higher_is_better: bool,
}

/// What a component gets when it is created.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct CreateCtx {
    /// -1 for CPU, n for `cuda:n`.
    pub device: i64,
    pub seed: u64,
    pub rank: u32,
    pub world_size: u32,
    /// The run directory, where a component may keep artefacts (tokenizer, plots).
    pub run_dir: String,
    /// Where datasets and caches live (`$PT_DATA`, default `~/.cache/pt/data`).
    pub data_dir: String,
}

impl Default for CreateCtx {
    fn default() -> Self {
        CreateCtx { device: -1, seed: 0, rank: 0, world_size: 1, run_dir: String::new(), data_dir: String::new() }
    }
}

impl CreateCtx {
    pub fn device(&self) -> tch::Device {
        crate::device_from_code(self.device)
    }

    /// Expands a setting as the host expands every recipe value (see [`expand_setting`]);
    /// components call it on values that reach them another way.
    pub fn expand(&self, setting: &str) -> String {
        expand_setting(setting, &self.data_dir, &self.run_dir)
    }
}

/// `$PT_DATA`, else `$HOME/.cache/pt/data`: where pt's fetch script puts data and where
/// components keep caches. The host resolves it once per run and passes it in
/// [`CreateCtx::data_dir`].
pub fn default_data_dir() -> std::path::PathBuf {
    match std::env::var_os("PT_DATA").filter(|d| !d.is_empty()) {
        Some(dir) => dir.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache/pt/data"),
    }
}

/// The one expansion rule of settings, shared by host and plugins: `{data}` and `{run}`
/// anywhere, `$PT_DATA` / `${PT_DATA}` and `~` at the start of a path.
pub fn expand_setting(setting: &str, data_dir: &str, run_dir: &str) -> String {
    let s = setting.replace("{data}", data_dir).replace("{run}", run_dir);
    for prefix in ["${PT_DATA}", "$PT_DATA"] {
        if let Some(rest) = s.strip_prefix(prefix).filter(|r| r.is_empty() || r.starts_with('/')) {
            return format!("{data_dir}{rest}");
        }
    }
    match (s.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => format!("{home}{rest}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::expand_setting;

    #[test]
    fn one_expansion_rule_for_settings() {
        assert_eq!(expand_setting("{data}/text/a.txt", "/d", "/r"), "/d/text/a.txt");
        assert_eq!(expand_setting("{run}/assets/t.json", "/d", "/r"), "/r/assets/t.json");
        assert_eq!(expand_setting("$PT_DATA/a", "/d", "/r"), "/d/a");
        assert_eq!(expand_setting("${PT_DATA}/a", "/d", "/r"), "/d/a");
        assert_eq!(expand_setting("$PT_DATAX/a", "/d", "/r"), "$PT_DATAX/a");
        assert_eq!(expand_setting("/abs/a", "/d", "/r"), "/abs/a");
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_setting("~/x", "/d", "/r"), format!("{home}/x"));
    }
}
