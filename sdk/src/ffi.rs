//! The ABI itself: the plugin's root module and the `#[sabi_trait]` objects behind each component.
#![allow(non_local_definitions)]
//! Plugin authors never touch this module; they implement the traits in [`crate::component`] and
//! call [`crate::export_plugin!`]. The host (pt-core) calls through these types.

use crate::{PtError, PtTensor, TensorMap};
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};

/// Per-step facts every call on the hot path gets.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StepCtx {
    pub seed: u64,
    pub epoch: u64,
    /// Optimizer steps taken so far.
    pub step: u64,
    pub rank: u32,
    pub world_size: u32,
    /// -1 for CPU, n for `cuda:n`.
    pub device: i64,
    pub train: bool,
}

impl StepCtx {
    pub fn device(&self) -> tch::Device {
        crate::device_from_code(self.device)
    }
}

#[sabi_trait]
pub trait DatasetFfi: Send + Sync {
    /// JSON [`crate::DatasetInfo`].
    fn info(&self) -> RResult<RString, PtError>;
    /// Collates the samples at `indices` into a batch of CPU tensors.
    #[sabi(last_prefix_field)]
    fn get_batch(&self, indices: RSlice<'_, u64>, ctx: &StepCtx) -> RResult<TensorMap, PtError>;
}

#[sabi_trait]
pub trait ArchitectureFfi: Send {
    /// JSON [`crate::ArchitectureInfo`].
    fn info(&self) -> RResult<RString, PtError>;
    /// Trainable parameters (shared storage), with reference-checkpoint names.
    fn parameters(&self) -> RResult<TensorMap, PtError>;
    /// Non-trainable state saved with the model (BatchNorm statistics...).
    fn buffers(&self) -> RResult<TensorMap, PtError>;
    fn set_train(&mut self, train: bool) -> RResult<(), PtError>;
    #[sabi(last_prefix_field)]
    fn forward(&self, inputs: &TensorMap, ctx: &StepCtx) -> RResult<TensorMap, PtError>;
}

#[sabi_trait]
pub trait ObjectiveFfi: Send {
    /// JSON [`crate::ObjectiveInfo`].
    fn info(&self) -> RResult<RString, PtError>;
    /// Parameters the objective owns (projection heads, quantizers).
    fn parameters(&self) -> RResult<TensorMap, PtError>;
    fn buffers(&self) -> RResult<TensorMap, PtError>;
    fn set_train(&mut self, train: bool) -> RResult<(), PtError>;
    /// Turns a dataset batch (already on the device) into model inputs: masking, augmentation.
    fn prepare(&self, batch: TensorMap, ctx: &StepCtx) -> RResult<TensorMap, PtError>;
    /// Returns `loss` (a scalar with grad) plus detached scalar metrics.
    #[sabi(last_prefix_field)]
    fn loss(&self, batch: &TensorMap, outputs: &TensorMap, ctx: &StepCtx) -> RResult<TensorMap, PtError>;
    /// Evaluation outputs derived from the model's (projected embeddings). Appended in SDK
    /// 0.1.2: the host calls it only when `ObjectiveInfo::embeds` names outputs, which older
    /// plugins never do.
    fn embed(&self, _outputs: &TensorMap, _ctx: &StepCtx) -> RResult<TensorMap, PtError> {
        // A default body makes the vtable entry optional: a plugin built before it gets this.
        RResult::ROk(TensorMap::default())
    }
    /// The next stage's inputs (see `Objective::next_stage`). Appended in SDK 0.1.4: the host
    /// calls it only when `ObjectiveInfo::stages` names stages, which older plugins never do.
    fn next_stage(
        &self,
        _stage: u32,
        _inputs: &TensorMap,
        _outputs: &TensorMap,
        _ctx: &StepCtx,
    ) -> RResult<TensorMap, PtError> {
        RResult::ROk(TensorMap::default())
    }
    /// Fields drawn on the loader thread for `prepare` (see `Objective::draw_on_host`).
    /// Appended in SDK 0.1.6: the host calls it only when `ObjectiveInfo::draws_on_host` is
    /// set, which older plugins never do.
    fn draw_on_host(&self, _batch: &TensorMap, _ctx: &StepCtx) -> RResult<TensorMap, PtError> {
        RResult::ROk(TensorMap::default())
    }
}

/// The model as the host lends it to an evaluator.
#[sabi_trait]
pub trait HostModelFfi {
    fn info(&self) -> RResult<RString, PtError>;
    fn parameters(&self) -> RResult<TensorMap, PtError>;
    fn set_train(&self, train: bool) -> RResult<(), PtError>;
    #[sabi(last_prefix_field)]
    fn forward(&self, inputs: &TensorMap, ctx: &StepCtx) -> RResult<TensorMap, PtError>;
}

/// A dataset split as the host lends it to an evaluator: batches come back on the model's device.
#[sabi_trait]
pub trait HostDataFfi {
    fn info(&self) -> RResult<RString, PtError>;
    #[sabi(last_prefix_field)]
    fn get_batch(&self, indices: RSlice<'_, u64>, ctx: &StepCtx) -> RResult<TensorMap, PtError>;
}

pub type HostModelRef<'a> = HostModelFfi_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;
pub type HostDataRef<'a> = HostDataFfi_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

#[sabi_trait]
pub trait EvaluatorFfi: Send {
    /// JSON [`crate::EvaluatorInfo`].
    fn info(&self) -> RResult<RString, PtError>;
    /// Runs the evaluation; returns JSON `{metric: number}` plus optional artefact paths.
    #[sabi(last_prefix_field)]
    fn evaluate(
        &mut self,
        model: HostModelRef<'_>,
        splits: RVec<Tuple2<RString, HostDataRef<'_>>>,
        ctx: &StepCtx,
    ) -> RResult<RString, PtError>;
}

pub type DatasetBox = DatasetFfi_TO<'static, RBox<()>>;
pub type ArchitectureBox = ArchitectureFfi_TO<'static, RBox<()>>;
pub type ObjectiveBox = ObjectiveFfi_TO<'static, RBox<()>>;
pub type EvaluatorBox = EvaluatorFfi_TO<'static, RBox<()>>;

/// A plugin's root module: a prefix type, so fields added at the end in later SDK versions keep
/// older plugins loadable.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// JSON [`crate::PluginManifest`].
    pub manifest: extern "C" fn() -> RString,
    /// Arguments: component name, config JSON, JSON [`crate::CreateCtx`].
    pub create_dataset: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<DatasetBox, PtError>,
    pub create_architecture: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<ArchitectureBox, PtError>,
    pub create_objective: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<ObjectiveBox, PtError>,
    pub create_evaluator: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<EvaluatorBox, PtError>,
    /// Net tensor handles made minus dropped in this plugin (see [`crate::live_handles`]).
    #[sabi(last_prefix_field)]
    pub live_handles: extern "C" fn() -> i64,
    /// Receives what the host offers (collectives of a multi-process run), once, after loading.
    /// Optional: plugins built before it was added load without it.
    #[sabi(missing_field(option))]
    pub install_host: extern "C" fn(HostServices),
    /// Arguments: component kind (`ComponentKind::to_u8`), name, config JSON. Parses and
    /// validates a config without building the component, so a run's plan is checked before
    /// anything is built. Optional: plugins built before it was added load without it.
    #[sabi(missing_field(option))]
    pub check_config: extern "C" fn(u8, RStr<'_>, RStr<'_>) -> RResult<(), PtError>,
    /// Receives the host's log sink, once, after loading: the plugin's `tracing` events then
    /// reach the host's stderr and `train.log` (see [`crate::log`]). Optional (SDK 0.1.5).
    #[sabi(missing_field(option))]
    pub install_logger: extern "C" fn(LogSink),
}

/// Where a plugin's log events go: `log(level, target, text)`, level 1 error, 2 warn, 3 info.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogSink {
    pub log: extern "C" fn(u8, RStr<'_>, RStr<'_>),
}

/// What the host offers plugins beyond the component calls.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostServices {
    /// Every rank's tensor concatenated along dim 0, in rank order (a single process: the tensor
    /// itself). Not differentiable: the result is detached.
    pub all_gather: extern "C" fn(&PtTensor) -> RResult<PtTensor, PtError>,
    /// The tensor summed over ranks (a single process: the tensor itself). Differentiable: its
    /// backward sums the gradient over ranks.
    pub all_reduce_sum: extern "C" fn(&PtTensor) -> RResult<PtTensor, PtError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pt_plugin";
    const NAME: &'static str = "pt_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
