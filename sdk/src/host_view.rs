//! The author-side view of what the host lends an evaluator: the model and the dataset splits.

use crate::ffi::{HostDataRef, HostModelRef};
use crate::{ArchitectureInfo, DatasetInfo, PtError, Result, StepCtx, Tensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// The model under evaluation. Its parameters are shared: an evaluator that fine-tunes trains
/// them in place (the host lends a copy when the original must stay untouched).
pub struct HostModel<'a> {
    pub(crate) inner: HostModelRef<'a>,
}

impl<'a> HostModel<'a> {
    pub fn new(inner: HostModelRef<'a>) -> Self {
        HostModel { inner }
    }
    pub fn info(&self) -> Result<ArchitectureInfo> {
        let text = self.inner.info().into_result()?;
        Ok(serde_json::from_str(&text)?)
    }
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Tensors::from_ffi(self.inner.parameters().into_result()?).into_iter().collect())
    }
    pub fn set_train(&self, train: bool) -> Result<()> {
        self.inner.set_train(train).into_result()
    }
    pub fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let map = inputs.share().into_ffi();
        Ok(Tensors::from_ffi(self.inner.forward(&map, ctx).into_result()?))
    }
}

/// One dataset split; batches arrive on the model's device.
pub struct HostData<'a> {
    pub(crate) inner: HostDataRef<'a>,
}

impl<'a> HostData<'a> {
    pub fn new(inner: HostDataRef<'a>) -> Self {
        HostData { inner }
    }
    pub fn info(&self) -> Result<DatasetInfo> {
        let text = self.inner.info().into_result()?;
        Ok(serde_json::from_str(&text)?)
    }
    pub fn get_batch(&self, indices: &[u64], ctx: &StepCtx) -> Result<Tensors> {
        Ok(Tensors::from_ffi(self.inner.get_batch(indices.into(), ctx).into_result()?))
    }
}

/// The splits an evaluator asked for, by name.
pub struct Splits<'a> {
    pub(crate) entries: Vec<(String, HostData<'a>)>,
}

impl<'a> Splits<'a> {
    pub fn new(entries: Vec<(String, HostData<'a>)>) -> Self {
        Splits { entries }
    }
    pub fn get(&self, name: &str) -> Result<&HostData<'a>> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, d)| d).ok_or_else(|| {
            PtError::config(format!(
                "evaluator needs split '{name}' but the host lent only: {}",
                self.entries.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// What an evaluator returns: scalar metrics, curves (x, y) such as accuracy by step, a
/// confusion matrix (which the host draws as a PNG in the run directory), and the paths of any
/// files it wrote itself.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct EvalReport {
    pub metrics: BTreeMap<String, f64>,
    pub curves: BTreeMap<String, Vec<(f64, f64)>>,
    pub artefacts: Vec<String>,
    pub confusion: Option<ConfusionMatrix>,
    /// An evaluation of several feature taps (`layer = [...]`): their names in order; each
    /// tap's metrics are `<metric>@<tap>` (`accuracy@layer2`). (SDK 0.1.5.)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// Counts of (true class, predicted class): `counts[true][predicted]`.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    pub classes: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

impl EvalReport {
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_string(), value);
        self
    }
}
