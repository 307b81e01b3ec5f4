//! What a plugin author implements: one trait per component kind, in plain Rust and tch.
//! [`crate::export_plugin!`] wraps them for the boundary (catching panics, converting errors).

use crate::{ArchitectureInfo, Config, CreateCtx, DatasetInfo, EvaluatorInfo, ObjectiveInfo, Result, StepCtx, Tensors};
use tch::Tensor;

/// Shared by every component: its name, a one-line description, its config and constructor.
pub trait Component: Sized + Send + 'static {
    /// The name users select it by (`--arch bert`); unique within the plugin.
    const NAME: &'static str;
    /// One line for `pt plugin info`.
    const ABOUT: &'static str;
    /// Facts it publishes once built, which other components may declare as inputs (see
    /// [`Config::inputs`]): a dataset's are read from its `DatasetInfo` (`notes`, and
    /// `num_classes` from `classes`), an architecture's from its `ArchitectureInfo`
    /// (`feature_dim`, keys of `config`).
    const PROVIDES: &'static [&'static str] = &[];
    /// An objective over several architectures names their roles (`["image", "text"]`): its
    /// `prepare` returns each role's inputs prefixed by the role (`image/image`,
    /// `text/input_ids`) and its `loss` gets their outputs prefixed alike (`image/features`).
    /// Empty: one architecture.
    const ROLES: &'static [&'static str] = &[];
    type Config: Config;
    fn new(config: Self::Config, ctx: &CreateCtx) -> Result<Self>;
}

/// Random-access samples. The host owns order, shuffling, sharding and the resume cursor: it
/// asks for batches by sample index, so every dataset resumes in O(1).
pub trait Dataset: Component + Sync {
    fn info(&self) -> DatasetInfo;
    /// Collates the samples at `indices` (each < `info().num_samples`) into CPU tensors. Include
    /// a `label` field for labelled data.
    fn get_batch(&self, indices: &[u64], ctx: &StepCtx) -> Result<Tensors>;
}

/// A model: named parameters (reference-checkpoint names) and a forward over named tensors.
pub trait Architecture: Component {
    fn info(&self) -> ArchitectureInfo;
    fn parameters(&self) -> Vec<(String, Tensor)>;
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn set_train(&mut self, train: bool);
    fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors>;
}

/// A pretraining loss. May own parameters, which the trainer optimises and checkpoints.
pub trait Objective: Component {
    fn info(&self) -> ObjectiveInfo;
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn set_train(&mut self, _train: bool) {}
    /// Dataset batch (on the training device) → model inputs. Default: unchanged.
    fn prepare(&self, batch: Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        Ok(batch)
    }
    /// `loss` (scalar, with grad) and detached scalar metrics.
    fn loss(&self, batch: &Tensors, outputs: &Tensors, ctx: &StepCtx) -> Result<LossOutput>;
    /// Outputs for evaluation computed from the model's outputs with the objective's own
    /// parameters (e.g. CLIP's projected, normalised `image/embedding`), named in
    /// [`ObjectiveInfo::embeds`]; evaluators then see them as model outputs. Default: none.
    fn embed(&self, _outputs: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        Ok(Tensors::new())
    }
    /// For objectives that run their roles in stages ([`ObjectiveInfo::stages`]): after stage
    /// `stage` (0-based) ran, the inputs of stage `stage + 1` (role-prefixed, e.g. ELECTRA's
    /// `discriminator/input_ids` from the generator's samples) and any fields `loss` wants.
    /// `inputs` holds `prepare`'s fields and earlier stages'; `outputs` every stage's so far.
    /// What it returns joins `inputs`. Runs on the training thread; its randomness comes from
    /// torch's generator, which the host seeds per step.
    fn next_stage(&self, _stage: usize, _inputs: &Tensors, _outputs: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        Ok(Tensors::new())
    }
    /// For objectives that set [`ObjectiveInfo::draws_on_host`]: the batch's randomness drawn
    /// on the loader thread, as small CPU tensors that join the batch, move to the device with
    /// it and reach `prepare` there (SimCLR's crops and colour factors; the supervised
    /// objective's labelled rows). `batch` is the dataset's host batch before the device's
    /// conversions (e.g. uint8 pixels): read its shapes, `sample_index` and fields the dataset
    /// does not convert (labels), not its pixels; `prepare` sees the same shapes. A drawn
    /// field named like a batch field replaces it (a drawn `sample_index` stays on the host).
    /// Draw from `ctx`'s counters, never torch's generator, the objective's parameters (this
    /// is a copy) or `ctx.device`. Default: nothing.
    fn draw_on_host(&self, _batch: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        Ok(Tensors::new())
    }
}

pub struct LossOutput {
    pub loss: Tensor,
    /// Detached scalars, logged as step means. A metric with more than one element is a vector
    /// of counts (e.g. how often each codeword was chosen): the host sums it over the last tenth
    /// of the run and draws `<name>.png` (entries by share of use) with `<name>.json` in the run
    /// directory.
    pub metrics: Vec<(String, Tensor)>,
}

/// Downstream / transfer evaluation of a model the host lends.
pub trait Evaluator: Component {
    fn info(&self) -> EvaluatorInfo;
    fn evaluate(
        &mut self,
        model: &crate::HostModel<'_>,
        splits: &crate::Splits<'_>,
        ctx: &StepCtx,
    ) -> Result<crate::EvalReport>;
}
