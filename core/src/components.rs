//! Host-side handles over plugin components: creation with config validation, typed calls,
//! and the composition check that runs before training.

use crate::plan::ComponentPlan;
use crate::{Error, Result};
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec, Tuple2};
use pt_sdk::ffi::{
    ArchitectureBox, DatasetBox, EvaluatorBox, HostDataFfi, HostDataFfi_TO, HostModelFfi, HostModelFfi_TO,
    ObjectiveBox, StepCtx,
};
use pt_sdk::{
    ArchitectureInfo, ComponentManifest, CreateCtx, DatasetInfo, EvalReport, EvaluatorInfo, ObjectiveInfo, PtError,
    Tensors,
};
use serde_json::Value;
use std::cell::RefCell;
use tch::Tensor;

/// The key every batch gets from the host: global sample indices, int64 [B].
pub const SAMPLE_INDEX: &str = "sample_index";

fn rres<T>(r: RResult<T, PtError>) -> Result<T> {
    r.into_result().map_err(Error::Plugin)
}

/// Rejects config keys the component does not declare, with a did-you-mean.
pub fn validate_config(manifest: &ComponentManifest, section: &str, config: &Value) -> Result<()> {
    let Some(obj) = config.as_object() else {
        return Err(Error::Config(format!("[{section}] must be a table of keys, got {config}")));
    };
    let known: Vec<&str> = manifest.config.iter().map(|k| k.key.as_str()).collect();
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            let hint = crate::config::suggest(key, known.iter().copied())
                .map(|k| format!(" Did you mean '{k}'?"))
                .unwrap_or_default();
            return Err(Error::Config(format!(
                "unknown key '{key}' in [{section}] for {} '{}'.{hint} Accepted keys: {}",
                manifest.kind,
                manifest.name,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
    }
    Ok(())
}

/// Calls the plugin's constructor for `plan`'s component (`call` picks it from the root
/// module) with its built config. Returns it and its origin.
fn construct<T>(
    plan: &ComponentPlan,
    config: &Value,
    ctx: &CreateCtx,
    call: impl FnOnce(&pt_sdk::ffi::PluginModRef, RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<T, PtError>,
) -> Result<(T, String)> {
    let ctx = serde_json::to_string(ctx).map_err(|e| Error::Config(e.to_string()))?;
    let cfg = config.to_string();
    let inner =
        rres(call(&plan.plugin.module, plan.manifest.name.as_str().into(), cfg.as_str().into(), ctx.as_str().into()))?;
    Ok((inner, plan.origin()))
}

/// A plugin's named tensor list as `(name, tensor)` pairs.
fn named(r: RResult<pt_sdk::TensorMap, PtError>) -> Result<Vec<(String, Tensor)>> {
    Ok(Tensors::from_ffi(rres(r)?).into_iter().collect())
}

fn parse_info<T: serde::de::DeserializeOwned>(origin: &str, r: RResult<RString, PtError>) -> Result<T> {
    let text = rres(r)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Plugin(PtError::new(pt_sdk::ErrorKind::Other, format!("unreadable info ({e})")).with_origin(origin))
    })
}

pub struct DatasetHandle {
    inner: DatasetBox,
    pub origin: String,
    pub info: DatasetInfo,
    /// This split's label ids → the reference split's (see [`Self::align_labels_to`]).
    label_map: Option<Vec<i64>>,
    /// `on_device` constants per (field, device), made once: no copy to the device per batch.
    constants: std::sync::Mutex<Vec<(String, tch::Device, (Tensor, Tensor))>>,
}

impl DatasetHandle {
    pub fn create(plan: &ComponentPlan, config: &Value, ctx: &CreateCtx) -> Result<Self> {
        let (inner, origin) = construct(plan, config, ctx, |m, n, c, x| (m.create_dataset())(n, c, x))?;
        let info: DatasetInfo = parse_info(&origin, inner.info())?;
        if info.num_samples == 0 {
            return Err(Error::Config(format!(
                "dataset {origin} ([{}]) has no samples: check its files",
                plan.section
            )));
        }
        Ok(DatasetHandle { inner, origin, info, label_map: None, constants: Default::default() })
    }

    /// Numbers this split's classes as `reference` (the training split) numbers them, by name:
    /// each split of a task lists only the classes it holds, so a test split missing one class
    /// would otherwise shift every later label. A class the reference never had is an error
    /// naming it (`what` names this split).
    pub fn align_labels_to(&mut self, reference: &DatasetInfo, what: &str) -> Result<()> {
        if self.info.classes.is_empty() || reference.classes.is_empty() || self.info.classes == reference.classes {
            return Ok(());
        }
        let mut map = Vec::with_capacity(self.info.classes.len());
        for class in &self.info.classes {
            match reference.classes.iter().position(|c| c == class) {
                Some(i) => map.push(i as i64),
                None => {
                    let known: Vec<&str> = reference.classes.iter().take(20).map(String::as_str).collect();
                    return Err(Error::Config(format!(
                        "{what} ({}) has class '{class}', which the training split does not (its classes: {}{}); \
                         a model cannot be scored on a class it was never shown: remove those samples or add them to training",
                        self.origin,
                        known.join(", "),
                        if reference.classes.len() > 20 { ", …" } else { "" }
                    )));
                }
            }
        }
        let mut counts = vec![0u64; reference.classes.len()];
        for (&to, &n) in map.iter().zip(&self.info.class_counts) {
            counts[to as usize] = n;
        }
        tracing::info!(split = what, "labels numbered by the training split's classes");
        self.info.classes = reference.classes.clone();
        self.info.class_counts = counts;
        self.label_map = Some(map);
        Ok(())
    }

    /// `batch`'s `label` renumbered by [`Self::align_labels_to`] (negative labels, "hidden", kept).
    fn relabel(&self, batch: &mut Tensors) -> Result<()> {
        let (Some(map), Some(labels)) = (&self.label_map, batch.get("label")) else { return Ok(()) };
        let ids = Vec::<i64>::try_from(labels.to_kind(tch::Kind::Int64)).map_err(pt_sdk::PtError::from)?;
        let mapped = ids
            .iter()
            .map(|&id| match usize::try_from(id) {
                Err(_) => Ok(id), // hidden (-100)
                Ok(i) => map.get(i).copied().ok_or_else(|| {
                    Error::Plugin(pt_sdk::PtError::data(format!(
                        "label {id} outside the {} classes the dataset declared",
                        map.len()
                    )))
                }),
            })
            .collect::<Result<Vec<i64>>>()?;
        batch.insert("label", Tensor::from_slice(&mapped));
        Ok(())
    }
    /// `batch` on `device` as components read it: copied (non-blocking from pinned memory), then
    /// the fields the dataset serves compactly converted there (`FieldInfo::on_device`).
    /// `sample_index` stays on the host: objectives draw per-sample randomness from its values,
    /// and reading them from a GPU would stall the step.
    pub fn to_device(&self, mut batch: Tensors, device: tch::Device) -> Result<Tensors> {
        let index = batch.remove(SAMPLE_INDEX);
        let mut batch = batch.to_device(device)?;
        if let Some(index) = index {
            batch.insert(SAMPLE_INDEX, index);
        }
        for field in &self.info.fields {
            let (Some(transform), Some(t)) = (&field.on_device, batch.get(&field.name)) else { continue };
            let mut cache = self.constants.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let at = match cache.iter().position(|(f, d, _)| *f == field.name && *d == device) {
                Some(at) => at,
                None => {
                    cache.push((field.name.clone(), device, transform.constants(device)?));
                    cache.len() - 1
                }
            };
            let converted =
                transform.apply_with(&field.name, t, &cache[at].2).map_err(|e| e.with_origin(&self.origin))?;
            drop(cache);
            batch.insert(&field.name, converted);
        }
        Ok(batch)
    }

    /// A CPU batch for `indices` as the dataset serves it (see [`Self::to_device`]), with the
    /// host's `sample_index` field added.
    pub fn get_batch(&self, indices: &[u64], ctx: &StepCtx) -> Result<Tensors> {
        let map = rres(self.inner.get_batch(RSlice::from_slice(indices), ctx))?;
        let mut t = Tensors::from_ffi(map);
        self.relabel(&mut t)?;
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        t.insert(SAMPLE_INDEX, Tensor::from_slice(&idx));
        Ok(t)
    }
}

pub struct ArchHandle {
    inner: ArchitectureBox,
    pub origin: String,
    pub info: ArchitectureInfo,
}

impl ArchHandle {
    pub fn create(plan: &ComponentPlan, config: &Value, ctx: &CreateCtx) -> Result<Self> {
        let (inner, origin) = construct(plan, config, ctx, |m, n, c, x| (m.create_architecture())(n, c, x))?;
        let info = parse_info(&origin, inner.info())?;
        Ok(ArchHandle { inner, origin, info })
    }
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        named(self.inner.parameters())
    }
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        named(self.inner.buffers())
    }
    pub fn set_train(&mut self, train: bool) -> Result<()> {
        rres(self.inner.set_train(train))
    }
    pub fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let map = inputs.share().into_ffi();
        Ok(Tensors::from_ffi(rres(self.inner.forward(&map, ctx))?))
    }
}

pub struct ObjectiveHandle {
    inner: ObjectiveBox,
    pub origin: String,
    pub info: ObjectiveInfo,
}

/// A loss and the objective's detached metrics.
pub struct LossValue {
    pub loss: Tensor,
    pub metrics: Vec<(String, Tensor)>,
}

impl ObjectiveHandle {
    pub fn create(plan: &ComponentPlan, config: &Value, ctx: &CreateCtx) -> Result<Self> {
        let (inner, origin) = construct(plan, config, ctx, |m, n, c, x| (m.create_objective())(n, c, x))?;
        let info = parse_info(&origin, inner.info())?;
        Ok(ObjectiveHandle { inner, origin, info })
    }
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        named(self.inner.parameters())
    }
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        named(self.inner.buffers())
    }
    pub fn set_train(&mut self, train: bool) -> Result<()> {
        rres(self.inner.set_train(train))
    }
    pub fn prepare(&self, batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        Ok(Tensors::from_ffi(rres(self.inner.prepare(batch.into_ffi(), ctx))?))
    }
    /// The fields it draws for `prepare` on the loader thread (`info.draws_on_host`).
    pub fn draw_on_host(&self, batch: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        Ok(Tensors::from_ffi(rres(self.inner.draw_on_host(&batch.share().into_ffi(), ctx))?))
    }
    /// The loss, checked to be a scalar.
    pub fn loss(&self, batch: &Tensors, outputs: &Tensors, ctx: &StepCtx) -> Result<LossValue> {
        let b = batch.share().into_ffi();
        let o = outputs.share().into_ffi();
        let mut out = Tensors::from_ffi(rres(self.inner.loss(&b, &o, ctx))?);
        let loss = out.remove("loss").ok_or_else(|| {
            Error::Plugin(PtError::shape("loss() returned no 'loss' tensor").with_origin(&self.origin))
        })?;
        if loss.numel() != 1 {
            return Err(Error::Plugin(
                PtError::shape(format!("loss must be a scalar, got shape {:?}", loss.size())).with_origin(&self.origin),
            ));
        }
        let metrics =
            out.into_iter().filter_map(|(n, t)| n.strip_prefix("metric/").map(|m| (m.to_string(), t))).collect();
        Ok(LossValue { loss, metrics })
    }
    /// Its evaluation outputs (`info.embeds`) from the model's `outputs`; none when it declares none.
    pub fn embed(&self, outputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        if self.info.embeds.is_empty() {
            return Ok(Tensors::new());
        }
        // Only the towers the inputs fed ran: an objective embeds what it can.
        Ok(Tensors::from_ffi(rres(self.inner.embed(&outputs.share().into_ffi(), ctx))?))
    }
    /// The model's forward on `prepare`'s `inputs`, stage by stage when the objective runs its
    /// roles in stages (`info.stages`). Returns the inputs with what each stage added (what
    /// `loss` reads) and every stage's outputs.
    pub fn forward(
        &self,
        model: &crate::model::Model,
        mut inputs: Tensors,
        ctx: &StepCtx,
    ) -> Result<(Tensors, Tensors)> {
        let stages = &self.info.stages;
        if stages.is_empty() {
            let outputs = model.forward(&inputs, ctx)?;
            return Ok((inputs, outputs));
        }
        let mut outputs = Tensors::new();
        for (k, roles) in stages.iter().enumerate() {
            for (name, v) in model.forward_roles(&inputs, Some(roles), ctx)?.into_iter() {
                outputs.insert(name, v);
            }
            if k + 1 < stages.len() {
                let (i, o) = (inputs.share().into_ffi(), outputs.share().into_ffi());
                let next = Tensors::from_ffi(rres(self.inner.next_stage(k as u32, &i, &o, ctx))?);
                for (name, v) in next.into_iter() {
                    inputs.insert(name, v);
                }
            }
        }
        Ok((inputs, outputs))
    }
}

pub struct EvaluatorHandle {
    inner: EvaluatorBox,
    pub origin: String,
    pub name: String,
    pub info: EvaluatorInfo,
}

impl EvaluatorHandle {
    pub fn create(plan: &ComponentPlan, config: &Value, ctx: &CreateCtx) -> Result<Self> {
        let (inner, origin) = construct(plan, config, ctx, |m, n, c, x| (m.create_evaluator())(n, c, x))?;
        let info = parse_info(&origin, inner.info())?;
        let name = origin.rsplit(':').next().unwrap_or(&origin).to_string();
        Ok(EvaluatorHandle { inner, origin, name, info })
    }

    /// Lends `model` and the named splits to the evaluator.
    pub fn evaluate(
        &mut self,
        model: &LentModel<'_>,
        splits: &[(String, LentData<'_>)],
        ctx: &StepCtx,
    ) -> Result<EvalReport> {
        let model_to = HostModelFfi_TO::from_ptr(model, abi_stable::sabi_trait::TD_Opaque);
        let splits: RVec<_> = splits
            .iter()
            .map(|(n, d)| {
                Tuple2(RString::from(n.as_str()), HostDataFfi_TO::from_ptr(d, abi_stable::sabi_trait::TD_Opaque))
            })
            .collect();
        let text = rres(self.inner.evaluate(model_to, splits, ctx))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Plugin(
                PtError::new(pt_sdk::ErrorKind::Other, format!("unreadable report ({e})")).with_origin(&self.origin),
            )
        })
    }
}

/// The model as lent to an evaluator, with the outputs its objectives derive for evaluation
/// (`embed`) appended to its own.
pub struct LentModel<'a> {
    pub model: RefCell<&'a mut crate::model::Model>,
    pub heads: Vec<&'a ObjectiveHandle>,
}

impl<'a> LentModel<'a> {
    pub fn new(model: &'a mut crate::model::Model, heads: Vec<&'a ObjectiveHandle>) -> Self {
        LentModel { model: RefCell::new(model), heads }
    }
    /// The model's info with the heads' outputs among its outputs.
    pub fn info(&self) -> ArchitectureInfo {
        let mut info = self.model.borrow().info.clone();
        info.outputs.extend(self.heads.iter().flat_map(|h| h.info.embeds.iter().cloned()));
        info
    }
    /// The model's forward, then each head's `embed` outputs added.
    pub fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let mut out = self.model.borrow().forward(inputs, ctx)?;
        for head in &self.heads {
            for (name, t) in head.embed(&out, ctx)?.into_iter() {
                out.insert(name, t);
            }
        }
        Ok(out)
    }
}

impl HostModelFfi for LentModel<'_> {
    fn info(&self) -> RResult<RString, PtError> {
        match serde_json::to_string(&LentModel::info(self)) {
            Ok(s) => RResult::ROk(s.into()),
            Err(e) => RResult::RErr(PtError::new(pt_sdk::ErrorKind::Other, e.to_string())),
        }
    }
    fn parameters(&self) -> RResult<pt_sdk::TensorMap, PtError> {
        match self.model.borrow().parameters() {
            Ok(p) => RResult::ROk(p.into_iter().collect::<Tensors>().into_ffi()),
            Err(e) => RResult::RErr(to_pt(e)),
        }
    }
    fn set_train(&self, train: bool) -> RResult<(), PtError> {
        self.model.borrow_mut().set_train(train).map_err(to_pt).into()
    }
    fn forward(&self, inputs: &pt_sdk::TensorMap, ctx: &StepCtx) -> RResult<pt_sdk::TensorMap, PtError> {
        match LentModel::forward(self, &Tensors::share_ffi(inputs), ctx) {
            Ok(t) => RResult::ROk(t.into_ffi()),
            Err(e) => RResult::RErr(to_pt(e)),
        }
    }
}

/// A dataset split as lent to an evaluator: batches come on `device` with `sample_index`.
pub struct LentData<'a> {
    pub dataset: &'a DatasetHandle,
    pub device: tch::Device,
}

impl HostDataFfi for LentData<'_> {
    fn info(&self) -> RResult<RString, PtError> {
        match serde_json::to_string(&self.dataset.info) {
            Ok(s) => RResult::ROk(s.into()),
            Err(e) => RResult::RErr(PtError::new(pt_sdk::ErrorKind::Other, e.to_string())),
        }
    }
    fn get_batch(&self, indices: RSlice<'_, u64>, ctx: &StepCtx) -> RResult<pt_sdk::TensorMap, PtError> {
        let r = self
            .dataset
            .get_batch(indices.as_slice(), ctx)
            .and_then(|b| self.dataset.to_device(b, self.device))
            .map_err(to_pt);
        match r {
            Ok(b) => RResult::ROk(b.into_ffi()),
            Err(e) => RResult::RErr(e),
        }
    }
}

fn to_pt(e: Error) -> PtError {
    match e {
        Error::Plugin(p) => p,
        other => PtError::new(pt_sdk::ErrorKind::Other, other.to_string()),
    }
}

/// Checks, before any training, that the dataset provides what the objective and architecture
/// need and that the architecture outputs what the objective consumes.
pub fn check_composition(data: &DatasetHandle, model: &crate::model::Model, objective: &ObjectiveHandle) -> Result<()> {
    let mut problems = Vec::new();
    let data_fields: Vec<String> = data.info.field_names();
    let mut available = data_fields.clone();
    available.push(SAMPLE_INDEX.to_string());
    for f in &objective.info.needs_fields {
        if !available.contains(f) {
            problems.push(format!(
                "objective {} needs dataset field '{f}', but dataset {} provides only: {}",
                objective.origin,
                data.origin,
                data_fields.join(", ")
            ));
        }
    }
    available.extend(objective.info.adds_fields.iter().cloned());
    for f in &model.info.inputs {
        if !available.contains(f) {
            problems.push(format!(
                "architecture {} needs input '{f}', but dataset {} provides {} and objective {} adds {}",
                model.origin,
                data.origin,
                data_fields.join(", "),
                objective.origin,
                if objective.info.adds_fields.is_empty() {
                    "nothing".to_string()
                } else {
                    objective.info.adds_fields.join(", ")
                }
            ));
        }
    }
    if !objective.info.stages.is_empty() {
        let staged: Vec<&String> = objective.info.stages.iter().flatten().collect();
        let roles = model.roles();
        let once = |r: &String| staged.iter().filter(|s| **s == r).count() == 1;
        if staged.len() != roles.len() || !roles.iter().all(once) {
            problems.push(format!(
                "objective {} runs its roles in stages {:?}, but the model's roles are {}: each role must be in exactly one stage",
                objective.origin,
                objective.info.stages,
                roles.join(", ")
            ));
        }
    }
    for o in &objective.info.needs_outputs {
        if !model.info.outputs.contains(o) {
            problems.push(format!(
                "objective {} needs model output '{o}', but architecture {} outputs only: {}",
                objective.origin,
                model.origin,
                model.info.outputs.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Composition(format!("these components do not fit together:\n  - {}", problems.join("\n  - "))))
    }
}
