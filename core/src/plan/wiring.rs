//! Inputs one component takes from another: declared by both sides (the consumer's
//! `ComponentManifest::inputs`, the provider's `provides`), chosen at plan time, given values
//! at build time.

use pt_sdk::{ArchitectureInfo, DatasetInfo};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which component of the run provides a fact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provider {
    /// The training dataset (`[data]`).
    Data,
    /// An architecture (`[arch]`, or `[arch.ROLE]`).
    Arch(Option<String>),
    /// An evaluator's split dataset (`[[eval]] #i splits.NAME`).
    Split(usize, String),
}

impl Provider {
    /// The recipe section it lives in.
    pub fn section(&self) -> String {
        match self {
            Provider::Data => "data".into(),
            Provider::Arch(None) => "arch".into(),
            Provider::Arch(Some(role)) => format!("arch.{role}"),
            Provider::Split(i, s) => format!("eval.{i}.splits.{s}"),
        }
    }
}

/// One config key filled at build time from another component's fact.
#[derive(Clone, Debug, PartialEq)]
pub struct Wire {
    pub key: String,
    pub fact: String,
    pub provider: Provider,
    /// `plugin:component` of the provider (for messages and the printed plan).
    pub provider_origin: String,
    pub optional: bool,
}

/// A candidate provider at plan time: where it is, what it is, what it declares.
pub struct Candidate<'a> {
    pub provider: Provider,
    pub origin: &'a str,
    pub provides: &'a [String],
}

impl Candidate<'_> {
    /// Every fact it offers: the declared ones, and the one every component of its kind
    /// publishes through a typed field of the SDK contract (an architecture's
    /// `ArchitectureInfo::feature_dim`, a dataset's class count from `DatasetInfo::classes`),
    /// which needs no declaration. Free-form facts (notes, config keys) must be declared.
    pub fn offered(&self) -> Vec<&str> {
        let contract = match self.provider {
            Provider::Arch(_) => "feature_dim",
            Provider::Data | Provider::Split(..) => "num_classes",
        };
        std::iter::once(contract).chain(self.provides.iter().map(String::as_str).filter(|p| *p != contract)).collect()
    }
}

/// Facts a built component published, by name.
pub type Facts = BTreeMap<String, Value>;

/// A dataset's facts: its notes, and `num_classes` from its classes.
pub fn dataset_facts(info: &DatasetInfo) -> Facts {
    let mut facts: Facts = info.notes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if !info.classes.is_empty() {
        facts.insert("num_classes".into(), Value::from(info.classes.len()));
    }
    facts
}

/// An architecture's facts: `feature_dim` and the keys of its resolved config.
pub fn arch_facts(info: &ArchitectureInfo) -> Facts {
    let mut facts: Facts = match &info.config {
        Value::Object(m) => m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Facts::new(),
    };
    if let Some(d) = info.feature_dim {
        facts.insert("feature_dim".into(), Value::from(d));
    }
    facts
}

/// Picks the provider of `fact` among `candidates` (in precedence order). A fact of one role
/// (`image.feature_dim`) is looked up in that role's architecture only.
pub fn choose<'a>(fact: &str, candidates: &'a [Candidate<'a>]) -> Option<(&'a Candidate<'a>, String)> {
    let (role, name) = match fact.split_once('.') {
        Some((r, n)) => (Some(r), n),
        None => (None, fact),
    };
    candidates
        .iter()
        .filter(|c| role.is_none_or(|r| c.provider == Provider::Arch(Some(r.to_string()))))
        .find(|c| c.offered().contains(&name))
        .map(|c| (c, name.to_string()))
}
