//! `[run]`: the host's settings of a run, typed, with every value's range checked at parse time.

use super::section::{in_range, Check};
use crate::Result;
use serde::{Deserialize, Serialize};

/// Where the run computes: `auto` (the first CUDA device when there is one), `cpu`, `cuda`,
/// `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSetting {
    #[default]
    Auto,
    Cpu,
    /// `cuda` (`None`: the local rank's device) or `cuda:N`.
    Cuda(Option<usize>),
}

impl std::str::FromStr for DeviceSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSetting::Auto),
            "cpu" => Ok(DeviceSetting::Cpu),
            "cuda" => Ok(DeviceSetting::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceSetting::Cuda(Some(n)))
                .ok_or_else(|| format!("'{other}' is not a device: use auto, cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for DeviceSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSetting::Auto => f.write_str("auto"),
            DeviceSetting::Cpu => f.write_str("cpu"),
            DeviceSetting::Cuda(None) => f.write_str("cuda"),
            DeviceSetting::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `[run] memory_format`: how 4-D weights (and so activations) are laid out in memory.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormatSetting {
    /// channels_last for architectures that declare it (convolutional ones), else contiguous.
    #[default]
    Auto,
    /// NHWC for every 4-D weight, whatever the architecture declares.
    ChannelsLast,
    /// NCHW, libtorch's default.
    Contiguous,
}

/// `[run] precision`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionSetting {
    /// bf16 autocast on CUDA, fp32 on the CPU.
    #[default]
    Auto,
    Fp32,
    Bf16,
}

/// `[run] dist_backend`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DistBackendSetting {
    /// NCCL on CUDA when pt was built with it, else Gloo.
    #[default]
    Auto,
    Nccl,
    Gloo,
}

/// Host settings of a run (`[run]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random stream (shuffle, masking, augmentation, dropout, init).
    pub seed: u64,
    pub device: DeviceSetting,
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
    /// Stop after this much wall time (0: no limit). A run with no other stopping point has no
    /// length in steps, so its `[schedule]` may not decay nor give its warmup as a ratio.
    pub max_minutes: f64,
    /// Write a metrics row every N steps.
    pub log_every: u64,
    /// Run evaluators every N steps (0: only at the end).
    pub eval_every: u64,
    /// Global gradient-norm clipping (0: off).
    pub grad_clip: f64,
    pub precision: PrecisionSetting,
    /// `auto`: 4-D weights in channels_last (NHWC) memory for architectures that declare it
    /// (cuDNN and oneDNN convolutions run faster so, and their outputs follow the weights);
    /// `channels_last`; `contiguous`. Checkpoints are the same either way.
    pub memory_format: MemoryFormatSetting,
    /// On CUDA: let cuDNN time its convolution algorithms for each new input shape and keep the
    /// fastest (`torch.backends.cudnn.benchmark`). Off for runs whose shapes keep changing.
    pub cudnn_benchmark: bool,
    /// Non-finite losses (or gradients) in a row that stop the run, checked at each log line.
    pub max_bad_steps: u64,
    /// libtorch intra-op threads (0: libtorch's default); at most the machine's CPU count.
    pub num_threads: u64,
    /// Batches prepared ahead on the loader thread.
    pub prefetch: u64,
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
    pub dist_backend: DistBackendSetting,
    /// `[first, last]`: profile training steps first..=last (counted from 1) with PyTorch's
    /// profiler into `RUN_DIR/profile/` as a Chrome trace; empty (the default): off.
    pub profile_steps: Vec<u64>,
    /// Weights the run starts from, each `[ROLE=]PATH`: a pt run (its latest valid checkpoint)
    /// or checkpoint directory, a Hugging Face model directory or a `.safetensors` file, into
    /// the whole model or into the architecture under ROLE (`--init-from`). Ignored once the run
    /// has a checkpoint of its own; kept absolute in the saved config.
    pub init_from: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            device: DeviceSetting::Auto,
            batch_size: 32,
            grad_accum: 1,
            max_steps: 1000,
            max_epochs: 0,
            max_minutes: 0.0,
            log_every: 10,
            eval_every: 0,
            grad_clip: 1.0,
            precision: PrecisionSetting::Auto,
            memory_format: MemoryFormatSetting::Auto,
            cudnn_benchmark: true,
            max_bad_steps: 5,
            num_threads: 0,
            prefetch: 4,
            labelled_per_batch: 0,
            dist_timeout_s: 1800,
            overlap_allreduce: true,
            bucket_mb: 25.0,
            dist_backend: DistBackendSetting::Auto,
            profile_steps: Vec::new(),
            init_from: Vec::new(),
        }
    }
}

/// The machine's CPU count (the bound of `num_threads`).
pub fn cpu_count() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

impl RunConfig {
    /// Ranges the types cannot express, each error naming the key, the value and the range.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("run");
        c.at_least("batch_size", self.batch_size, 1)?;
        c.at_least("grad_accum", self.grad_accum, 1)?;
        c.at_least("log_every", self.log_every, 1)?;
        c.at_least("max_bad_steps", self.max_bad_steps, 1)?;
        c.at_least("dist_timeout_s", self.dist_timeout_s, 1)?;
        c.float("max_minutes", self.max_minutes, "a finite number ≥ 0 (0: no limit)", |v| v >= 0.0)?;
        c.float("grad_clip", self.grad_clip, "a finite number ≥ 0 (0: off)", |v| v >= 0.0)?;
        c.float("bucket_mb", self.bucket_mb, "a finite number > 0 (MB, default 25)", |v| v > 0.0)?;
        let cpus = cpu_count();
        in_range(
            "run",
            "num_threads",
            self.num_threads,
            0,
            cpus,
            &format!("0 (libtorch's default) to {cpus}, this machine's CPU count"),
        )?;
        in_range("run", "prefetch", self.prefetch, 1, 1024, "1 to 1024 batches")?;
        if self.max_steps == 0 && self.max_epochs == 0 && self.max_minutes == 0.0 {
            return Err(c.error("sets no stopping point: give max_steps, max_epochs or max_minutes"));
        }
        match self.profile_steps[..] {
            [] => {}
            [first, last] if first >= 1 && first <= last => {}
            _ => {
                return Err(c.error(&format!(
                    "profile_steps = {:?} must be [first, last] with 1 ≤ first ≤ last (e.g. [10, 12]), or [] for no profile",
                    self.profile_steps
                )))
            }
        }
        if self.labelled_per_batch > 0 && self.labelled_per_batch >= self.batch_size {
            return Err(c.error(&format!(
                "labelled_per_batch = {} must be smaller than batch_size ({})",
                self.labelled_per_batch, self.batch_size
            )));
        }
        Ok(())
    }
}
