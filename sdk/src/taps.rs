//! Named feature taps (SDK 0.1.5): places inside an architecture where a per-sample feature
//! vector can be read besides the last `features` — a ResNet's stages, a transformer's layers.
//! Middle layers often transfer better than the last (RotNet, wav2vec2), so probes, kNN,
//! fine-tuning and `pt embed` take a `layer`.
//!
//! The protocol: an architecture lists its taps in [`crate::ArchitectureInfo::taps`]; a caller
//! that wants tap `t` puts any tensor named `features.t` among the inputs, and forward returns
//! `features.t` `[batch, dim]` beside its usual outputs. Taps nobody asks for cost nothing.

use crate::{FeatureTap, PtError, Tensors};
use serde::{Deserialize, Serialize};

/// Inputs and outputs of a tap are named `features.<tap>`.
pub const TAP_PREFIX: &str = "features.";

/// The output (and request) name of tap `tap`; the empty name and `features` are the
/// architecture's `features` output itself.
pub fn tap_output(tap: &str) -> String {
    match tap {
        "" | "features" => "features".into(),
        t => format!("{TAP_PREFIX}{t}"),
    }
}

/// Whether `inputs` ask for tap `tap`.
pub fn wants_tap(inputs: &Tensors, tap: &str) -> bool {
    inputs.contains(&tap_output(tap))
}

/// Whether `inputs` ask for any tap (an architecture then collects its intermediate states).
pub fn wants_any_tap(inputs: &Tensors) -> bool {
    inputs.names().any(|n| n.starts_with(TAP_PREFIX))
}

/// Adds the requests for `outputs` (names from [`tap_output`]; `features` needs none) to a
/// batch before forward.
pub fn request_taps(batch: &mut Tensors, outputs: &[String]) {
    for name in outputs.iter().filter(|n| n.starts_with(TAP_PREFIX)) {
        batch.insert(name.clone(), tch::Tensor::from(1i64));
    }
}

/// Refuses taps the architecture does not declare, naming the ones it has.
pub fn check_taps(wanted: &[String], taps: &[FeatureTap], who: &str) -> Result<(), PtError> {
    for t in wanted.iter().filter(|t| !matches!(t.as_str(), "" | "features")) {
        if !taps.iter().any(|have| &have.name == t) {
            let have: Vec<&str> = taps.iter().map(|t| t.name.as_str()).collect();
            return Err(PtError::config(match have.is_empty() {
                true => format!("{who}: layer '{t}': the architecture declares no feature taps (use its `features`)"),
                false => format!("{who}: layer '{t}' is not a tap of the architecture; its taps: {}", have.join(", ")),
            }));
        }
    }
    Ok(())
}

/// A config value naming one tap or several: `layer = "layer3"` or
/// `layer = ["layer1", "layer2"]`; `features` (the default) is the architecture's last
/// `features`.
#[derive(Clone, Debug, PartialEq)]
pub struct Layers(Vec<String>);

impl Default for Layers {
    fn default() -> Self {
        Layers(vec!["features".into()])
    }
}

impl Serialize for Layers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0[..] {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Layers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a tap name (\"layer3\") or a list of them ([\"layer1\", \"layer2\"])")]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(t) if t.is_empty() => Layers::default(),
            OneOrMany::One(t) => Layers(vec![t]),
            OneOrMany::Many(v) if v.is_empty() => Layers::default(),
            OneOrMany::Many(v) => Layers(v),
        })
    }
}

impl Layers {
    /// The taps named, in order.
    pub fn names(&self) -> &[String] {
        &self.0
    }
    /// More than one tap: reports then carry one row per layer.
    pub fn several(&self) -> bool {
        self.0.len() > 1
    }
    /// The output names forward must produce.
    pub fn outputs(&self) -> Vec<String> {
        self.0.iter().map(|t| tap_output(t)).collect()
    }
    /// Refuses empty and repeated names, naming `key`.
    pub fn validate(&self, key: &str) -> Result<(), PtError> {
        for (i, n) in self.0.iter().enumerate() {
            if n.is_empty() {
                return Err(PtError::config(format!("{key}: entry {} is empty: name a tap (e.g. \"layer3\")", i + 1)));
            }
            if self.0[..i].contains(n) {
                return Err(PtError::config(format!("{key}: '{n}' is listed twice")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_read_a_name_or_a_list() {
        let one: Layers = serde_json::from_str("\"layer3\"").unwrap();
        assert_eq!(one.outputs(), ["features.layer3"]);
        let many: Layers = serde_json::from_str("[\"layer1\", \"features\"]").unwrap();
        assert_eq!(many.outputs(), ["features.layer1", "features"]);
        assert!(many.several());
        assert_eq!(serde_json::to_string(&many).unwrap(), "[\"layer1\",\"features\"]");
        assert_eq!(Layers::default().outputs(), ["features"]);
        assert_eq!(serde_json::to_string(&Layers::default()).unwrap(), "\"features\"");
        let twice: Layers = serde_json::from_str("[\"layer1\", \"layer1\"]").unwrap();
        assert!(twice.validate("layer").is_err());
        let taps = [FeatureTap { name: "layer1".into(), dim: 4, description: String::new() }];
        assert!(check_taps(&["layer1".into(), "features".into()], &taps, "knn").is_ok());
        let err = check_taps(&["layer9".into()], &taps, "knn").unwrap_err().to_string();
        assert!(err.contains("layer9") && err.contains("its taps: layer1"), "{err}");
    }
}
