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
            PtError::config(format!("{e} (accepted keys: {})", keys.join(", ")))
        })?;
        config.validate()?;
        Ok(config)
    }
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
