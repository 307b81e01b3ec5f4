//! Parsing one typed section of a recipe with errors that name the section, the key, the value
//! and what is accepted.

use super::keys::check_keys;
use crate::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};
use toml::{Table, Value};

/// The top-level keys a serde struct serialises to.
pub fn keys_of<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Why a value does not fit, in words a user reads (serde's `expected u64` becomes a range).
fn plain(message: &str) -> String {
    message
        .replace("expected u64", "expected a whole number ≥ 0")
        .replace("expected usize", "expected a whole number ≥ 0")
        .replace("expected f64", "expected a number")
}

/// Parses `table` as section `[section]` of type `T` (a `#[serde(default)]` struct): unknown
/// keys get a did-you-mean, and a value of the wrong type names its key.
pub fn parse_section<T: DeserializeOwned + Serialize + Default>(section: &str, table: Table) -> Result<T> {
    let known = keys_of(&T::default());
    check_keys(section, &table, &known.iter().map(String::as_str).collect::<Vec<_>>())?;
    for (key, value) in &table {
        let one: Table = [(key.clone(), value.clone())].into_iter().collect();
        if let Err(e) = Value::Table(one).try_into::<T>() {
            return Err(Error::Config(format!("[{section}] {key} = {value}: {}", plain(e.message()))));
        }
    }
    Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::Config(format!("[{section}]: {}", plain(e.message()))))
}

/// A typed section as a TOML table (every key, defaults included).
pub fn to_table<T: Serialize>(value: &T) -> Table {
    match Value::try_from(value) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

/// Range checks of one section.
pub struct Check<'a> {
    section: &'a str,
}

impl<'a> Check<'a> {
    pub fn new(section: &'a str) -> Self {
        Check { section }
    }
    pub fn error(&self, what: &str) -> Error {
        Error::Config(format!("[{}] {what}", self.section))
    }
    pub fn at_least(&self, key: &str, value: u64, min: u64) -> Result<()> {
        in_range(self.section, key, value, min, u64::MAX, &format!("a whole number ≥ {min}"))
    }
    /// A float that must be finite and satisfy `ok`; `accepted` says what is.
    pub fn float(&self, key: &str, value: f64, accepted: &str, ok: impl Fn(f64) -> bool) -> Result<()> {
        if value.is_finite() && ok(value) {
            Ok(())
        } else {
            Err(self.error(&format!("{key} = {value}: expected {accepted}")))
        }
    }
}

pub fn in_range(section: &str, key: &str, value: u64, min: u64, max: u64, accepted: &str) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config(format!("[{section}] {key} = {value}: expected {accepted}")))
    }
}
