//! Component configs: a serde struct with `Default`, described key by key for `pt plugin info`.

use crate::{ConfigKey, InputDecl, PtError};
use serde::{de::DeserializeOwned, Serialize};

/// Implement for a component's config struct (`#[derive(Serialize, Deserialize, Default)]`,
/// `#[serde(default, deny_unknown_fields)]`). Defaults come from `Default`; descriptions from
/// [`Config::describe`], which must name every key.
pub trait Config: Serialize + DeserializeOwned + Default {
    /// `(key, description)` for every field.
    fn describe() -> &'static [(&'static str, &'static str)];

    /// Keys the host fills from another component of the run when the recipe leaves them unset
    /// (their default is `null`): e.g. `vocab_size` from the dataset's tokenizer,
    /// `feature_dim` from the architecture. Only a component that declares it provides the
    /// fact fills it; a required input nothing provides stops the run before anything is built.
    fn inputs() -> Vec<InputDecl> {
        Vec::new()
    }

    /// Checks values the types cannot (ranges, combinations), naming the key. The host calls
    /// it when it plans a run, before any component is built, and again at construction.
    fn validate(&self) -> Result<(), PtError> {
        Ok(())
    }

    /// The keys with defaults and descriptions.
    fn schema() -> Vec<ConfigKey> {
        let defaults = serde_json::to_value(Self::default()).unwrap_or_default();
        let map = defaults.as_object().cloned().unwrap_or_default();
        let mut keys: Vec<ConfigKey> = map
            .into_iter()
            .map(|(key, default)| {
                let description =
                    Self::describe().iter().find(|(k, _)| *k == key).map(|(_, d)| d.to_string()).unwrap_or_default();
                ConfigKey { key, default, description }
            })
            .collect();
        let order = |k: &str| Self::describe().iter().position(|(d, _)| *d == k).unwrap_or(usize::MAX);
        keys.sort_by_key(|k| order(&k.key));
        keys
    }

    /// Parses a JSON object, naming the bad key and the accepted ones on error.
    fn from_json(text: &str) -> Result<Self, PtError> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let config: Self = serde_json::from_str(text).map_err(|e| {
            let keys: Vec<&str> = Self::describe().iter().map(|(k, _)| *k).collect();
            PtError::config(format!("{} (accepted keys: {})", key_error::<Self>(text, &e), keys.join(", ")))
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// Which key a config fails on and why (`vocab_size = -3: invalid value: integer `-3`, expected
/// usize`): each key is tried alone, so the message names it; JSON positions are dropped (the
/// user wrote TOML).
fn key_error<C: serde::de::DeserializeOwned>(text: &str, whole: &serde_json::Error) -> String {
    let plain = |e: &serde_json::Error| {
        let m = e.to_string();
        m.split(" at line ").next().unwrap_or(&m).to_string()
    };
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
        for (key, value) in map {
            let one = serde_json::Value::Object([(key.clone(), value.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<C>(one) {
                return format!("{key} = {value}: {}", plain(&e));
            }
        }
    }
    plain(whole)
}

/// The empty config, for components without options.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

impl Config for NoConfig {
    fn describe() -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Probe {
        size: u64,
        rate: f64,
    }

    impl Config for Probe {
        fn describe() -> &'static [(&'static str, &'static str)] {
            &[("size", "a size"), ("rate", "a rate in (0, 1]")]
        }
        fn validate(&self) -> Result<(), PtError> {
            if !(self.rate > 0.0 && self.rate <= 1.0) {
                return Err(PtError::config(format!("rate must be in (0, 1], got {}", self.rate)));
            }
            Ok(())
        }
    }

    #[test]
    fn errors_name_the_key_and_validate_runs() {
        let e = Probe::from_json(r#"{"rate": 0.5, "size": -3}"#).err().unwrap().to_string();
        assert!(e.contains("size = -3: invalid value: integer `-3`, expected u64") && !e.contains("line 1"), "{e}");
        assert!(e.contains("accepted keys: size, rate"), "{e}");
        let e = Probe::from_json(r#"{"rate": 2.0}"#).err().unwrap().to_string();
        assert!(e.contains("rate must be in (0, 1], got 2"), "{e}");
        assert!(Probe::from_json(r#"{"rate": 1.0, "size": 3}"#).is_ok());
    }
}
