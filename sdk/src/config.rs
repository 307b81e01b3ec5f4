//! Component configs: a serde struct with `Default`, described key by key for `pt plugin info`.
//! `#[derive(PluginConfig)]` (see [`crate::PluginConfig`]) writes the whole impl from the struct:
//! descriptions from doc comments, defaults, checks and host-filled inputs from `#[config]`.

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

    /// Host-filled keys whose type has no "unset" (not `Option`): the host always fills them
    /// before construction, so the component reads them as plain values.
    fn filled_inputs() -> &'static [&'static str] {
        &[]
    }

    /// Checks values the types cannot (ranges, combinations), naming the key. The host calls
    /// it when it plans a run, before any component is built, and again at construction.
    fn validate(&self) -> Result<(), PtError> {
        Ok(())
    }

    /// [`Config::validate`] while the host-filled keys in `unset` are not filled yet (the plan's
    /// check, before the run is wired): their checks wait for construction.
    fn validate_except(&self, unset: &[&str]) -> Result<(), PtError> {
        let _ = unset;
        self.validate()
    }

    /// The keys with defaults and descriptions.
    fn schema() -> Vec<ConfigKey> {
        let defaults = serde_json::to_value(Self::default()).unwrap_or_default();
        let map = defaults.as_object().cloned().unwrap_or_default();
        let inputs = Self::inputs();
        let mut keys: Vec<ConfigKey> = map
            .into_iter()
            .map(|(key, default)| {
                let description =
                    Self::describe().iter().find(|(k, _)| *k == key).map(|(_, d)| d.to_string()).unwrap_or_default();
                // A host-filled key's default is "unset", whatever its type holds meanwhile.
                let default = if inputs.iter().any(|i| i.key == key) { serde_json::Value::Null } else { default };
                ConfigKey { key, default, description }
            })
            .collect();
        let order = |k: &str| Self::describe().iter().position(|(d, _)| *d == k).unwrap_or(usize::MAX);
        keys.sort_by_key(|k| order(&k.key));
        keys
    }

    /// Parses a JSON object, naming the bad key and the accepted ones on error.
    fn from_json(text: &str) -> Result<Self, PtError> {
        let (config, unset) = parse::<Self>(text)?;
        if let Some(key) = unset.iter().find(|k| Self::filled_inputs().contains(&k.as_str())) {
            return Err(PtError::config(format!(
                "{key} is unset and no component of the run provided it: set it in the recipe"
            )));
        }
        config.validate()?;
        Ok(config)
    }

    /// The plan's check of a recipe's keys: as [`Config::from_json`], with the host-filled keys
    /// the recipe leaves unset not checked yet.
    fn check_json(text: &str) -> Result<(), PtError> {
        let (config, unset) = parse::<Self>(text)?;
        let unset: Vec<&str> = unset.iter().map(String::as_str).collect();
        config.validate_except(&unset)
    }
}

/// The config `text` holds, and its host-filled keys that it leaves unset (absent or null).
fn parse<C: Config>(text: &str) -> Result<(C, Vec<String>), PtError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let bad = |e: serde_json::Error| {
        let keys: Vec<&str> = C::describe().iter().map(|(k, _)| *k).collect();
        PtError::config(format!("{} (accepted keys: {})", key_error::<C>(text, &e), keys.join(", ")))
    };
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
    let mut unset = Vec::new();
    if let Some(map) = value.as_object_mut() {
        for input in C::inputs() {
            if map.get(&input.key).is_none_or(serde_json::Value::is_null) {
                // Absent, so the type's placeholder stands in until the host fills it.
                map.remove(&input.key);
                unset.push(input.key);
            }
        }
    }
    let config = serde_json::from_value(value).map_err(bad)?;
    Ok((config, unset))
}

/// The checks `#[derive(PluginConfig)]` writes, each naming the key.
#[doc(hidden)]
pub mod check {
    use crate::PtError;

    /// Numbers a bound applies to (each element of a list, the value of a set option).
    pub trait Numbers {
        fn numbers(&self) -> Vec<f64>;
    }
    macro_rules! numbers {
        ($($t:ty),*) => {$(
            impl Numbers for $t {
                fn numbers(&self) -> Vec<f64> {
                    vec![*self as f64]
                }
            }
        )*};
    }
    numbers!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, f32, f64);
    impl<T: Numbers> Numbers for Option<T> {
        fn numbers(&self) -> Vec<f64> {
            self.as_ref().map(Numbers::numbers).unwrap_or_default()
        }
    }
    impl<T: Numbers> Numbers for Vec<T> {
        fn numbers(&self) -> Vec<f64> {
            self.iter().flat_map(Numbers::numbers).collect()
        }
    }

    fn bound(key: &str, value: &impl Numbers, ok: impl Fn(f64) -> bool, rule: String) -> Result<(), PtError> {
        match value.numbers().into_iter().find(|v| !ok(*v)) {
            Some(v) => Err(PtError::config(format!("{key} must be {rule}, got {v}"))),
            None => Ok(()),
        }
    }
    pub fn min(key: &str, value: &impl Numbers, b: f64) -> Result<(), PtError> {
        bound(key, value, |v| v >= b, format!(">= {b}"))
    }
    pub fn max(key: &str, value: &impl Numbers, b: f64) -> Result<(), PtError> {
        bound(key, value, |v| v <= b, format!("<= {b}"))
    }
    pub fn above(key: &str, value: &impl Numbers, b: f64) -> Result<(), PtError> {
        bound(key, value, |v| v > b, format!("> {b}"))
    }
    pub fn below(key: &str, value: &impl Numbers, b: f64) -> Result<(), PtError> {
        bound(key, value, |v| v < b, format!("< {b}"))
    }

    /// Values that can be empty (an unset option is not).
    pub trait Emptiness {
        fn is_empty_value(&self) -> bool;
    }
    impl Emptiness for String {
        fn is_empty_value(&self) -> bool {
            self.trim().is_empty()
        }
    }
    impl Emptiness for std::path::PathBuf {
        fn is_empty_value(&self) -> bool {
            self.as_os_str().is_empty()
        }
    }
    impl<T> Emptiness for Vec<T> {
        fn is_empty_value(&self) -> bool {
            self.is_empty()
        }
    }
    impl<T: Emptiness> Emptiness for Option<T> {
        fn is_empty_value(&self) -> bool {
            self.as_ref().is_some_and(Emptiness::is_empty_value)
        }
    }
    pub fn non_empty(key: &str, value: &impl Emptiness) -> Result<(), PtError> {
        if value.is_empty_value() {
            return Err(PtError::config(format!("{key} must not be empty")));
        }
        Ok(())
    }

    /// Values checked against a list of choices (an unset option is not checked).
    pub trait Choice {
        fn choice(&self) -> Option<String>;
    }
    macro_rules! choice {
        ($($t:ty),*) => {$(
            impl Choice for $t {
                fn choice(&self) -> Option<String> {
                    Some(self.to_string())
                }
            }
        )*};
    }
    choice!(String, i32, i64, u32, u64, usize);
    impl<T: Choice> Choice for Option<T> {
        fn choice(&self) -> Option<String> {
            self.as_ref().and_then(Choice::choice)
        }
    }
    pub fn one_of<A: std::fmt::Display>(key: &str, value: &impl Choice, allowed: &[A]) -> Result<(), PtError> {
        let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        match value.choice() {
            Some(v) if !allowed.contains(&v) => {
                Err(PtError::config(format!("{key} must be one of {}; got {v}", allowed.join(", "))))
            }
            _ => Ok(()),
        }
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

    #[derive(serde::Serialize, serde::Deserialize, Debug, crate::PluginConfig)]
    #[serde(default, deny_unknown_fields)]
    #[config(validate = Derived::cross)]
    struct Derived {
        /// The batch field
        /// to corrupt.
        #[config(default = "input_ids", non_empty)]
        field: String,
        /// A share.
        #[config(default = 0.15, min = 0.0, max = 1.0)]
        share: f64,
        /// Width of the architecture's `features`.
        #[config(input, min = 1)]
        feature_dim: i64,
        /// Id of [MASK].
        #[config(input = "notes.mask", optional)]
        mask: Option<i64>,
        /// How features pool.
        #[config(default = "mean", one_of = ["mean", "cls"])]
        pool: String,
    }

    impl Derived {
        fn cross(&self) -> Result<(), PtError> {
            if self.pool == "cls" && self.feature_dim > 4096 {
                return Err(PtError::config("pool = cls needs feature_dim <= 4096"));
            }
            Ok(())
        }
    }

    #[test]
    fn derive_writes_descriptions_defaults_inputs_and_checks() {
        let keys = Derived::schema();
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(names, ["field", "share", "feature_dim", "mask", "pool"]);
        assert_eq!(keys[0].description, "The batch field to corrupt.");
        assert_eq!(keys[0].default, serde_json::json!("input_ids"));
        assert_eq!(keys[1].default, serde_json::json!(0.15));
        assert!(keys[2].default.is_null() && keys[3].default.is_null(), "host-filled keys default to unset");
        assert!(keys[2].description.contains("filled by pt from the run's `feature_dim`"), "{}", keys[2].description);
        let inputs = Derived::inputs();
        assert_eq!(
            (inputs[0].key.as_str(), inputs[0].fact(), inputs[0].optional),
            ("feature_dim", "feature_dim", false)
        );
        assert_eq!((inputs[1].key.as_str(), inputs[1].fact(), inputs[1].optional), ("mask", "notes.mask", true));
        assert_eq!(Derived::filled_inputs(), ["feature_dim"]);

        // The plan checks before the host fills feature_dim; construction needs it filled.
        Derived::check_json("{}").unwrap();
        let e = Derived::from_json("{}").unwrap_err().to_string();
        assert!(e.contains("feature_dim is unset"), "{e}");
        let c = Derived::from_json(r#"{"feature_dim": 8}"#).unwrap();
        assert_eq!(
            (c.field.as_str(), c.share, c.feature_dim, c.mask, c.pool.as_str()),
            ("input_ids", 0.15, 8, None, "mean")
        );

        let err = |text: &str| Derived::check_json(text).unwrap_err().to_string();
        assert!(err(r#"{"share": 2}"#).contains("share must be <= 1, got 2"));
        assert!(err(r#"{"feature_dim": 0}"#).contains("feature_dim must be >= 1, got 0"));
        assert!(err(r#"{"field": " "}"#).contains("field must not be empty"));
        assert!(err(r#"{"pool": "max"}"#).contains("pool must be one of mean, cls; got max"));
        assert!(err(r#"{"pool": "cls", "feature_dim": 5000}"#).contains("pool = cls needs"));
        assert!(err(r#"{"shares": 1}"#).contains("accepted keys: field, share, feature_dim, mask, pool"));
    }
}
