//! `__name__`: a multilayer perceptron over a flattened input field (Linear → GELU per layer),
//! with its last hidden layer as `features`. Works with any objective that reads `features`
//! (`simclr`, `rotnet`, `denoise`...) and any dataset with a float field of fixed size.
//! `pt plugin new NAME --kind architecture` wrote this file; replace the layers with yours.

use pt_kit::params::{Created, Linear, Params};
use pt_sdk::prelude::*;
use pt_sdk::taps::{tap_output, wants_tap};
use serde::{Deserialize, Serialize};

/// The `[arch]` keys (`pt plugin info __name__`).
#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct __Name__Config {
    /// The input field, float [batch, ...]; flattened per sample.
    #[config(default = "image", non_empty)]
    pub field: String,
    /// Values per sample after flattening (64 for 8×8 one-channel images).
    #[config(default = 64, min = 1)]
    pub in_features: i64,
    /// Width of every hidden layer, and of `features`.
    #[config(default = 128, min = 1)]
    pub hidden: i64,
    /// Hidden layers.
    #[config(default = 2, min = 1)]
    pub layers: i64,
}

pub struct __Name__ {
    config: __Name__Config,
    /// `layers.{i}.weight` [hidden, in]: named like PyTorch's `nn.ModuleList` of `nn.Linear`.
    layers: Vec<Linear>,
    created: Created,
}

impl Component for __Name__ {
    const NAME: &'static str = "__name__";
    const ABOUT: &'static str = "a multilayer perceptron over a flattened field";
    /// `feature_dim` (from `ArchitectureInfo`) for objectives that size their heads by it.
    const PROVIDES: &'static [&'static str] = &["feature_dim"];
    type Config = __Name__Config;

    fn new(config: __Name__Config, ctx: &CreateCtx) -> Result<Self> {
        let created = Created::default();
        let params = Params::new(ctx.seed, 0.02, ctx.device(), &created);
        let mut layers = Vec::new();
        for i in 0..config.layers {
            let cin = if i == 0 { config.in_features } else { config.hidden };
            layers.push(Linear::new(&params.sub("layers").sub(i), cin, config.hidden)?);
        }
        Ok(__Name__ { config, layers, created })
    }
}

impl Architecture for __Name__ {
    fn info(&self) -> ArchitectureInfo {
        let c = &self.config;
        // forward + backward ≈ 3 × (2 × multiply-adds) per sample.
        let macs = c.in_features * c.hidden + (c.layers - 1) * c.hidden * c.hidden;
        ArchitectureInfo {
            inputs: vec![c.field.clone()],
            outputs: vec!["features".into()],
            feature_dim: Some(c.hidden),
            train_flops_per_sample: Some(6.0 * macs as f64),
            layer_prefixes: (0..c.layers).map(|i| format!("layers.{i}.")).collect(),
            config: pt_sdk::serde_json::to_value(c).unwrap_or_default(),
            // Every hidden layer can be read (`layer = "layer1"` in probes, `pt embed --layer`).
            taps: (1..=c.layers).map(|k| FeatureTap::new(format!("layer{k}"), c.hidden, "hidden layer output")).collect(),
            ..Default::default()
        }
    }

    /// The very tensors `forward` uses (the trainer optimises what this returns).
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.created.parameters.borrow().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    fn set_train(&mut self, _train: bool) {}

    /// [B, ...] → `features` [B, hidden]; with `features.layerK` among the inputs, that
    /// hidden layer's output too.
    fn forward(&self, inputs: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        let x = inputs.require(&self.config.field)?;
        let mut h = x.f_flatten(1, -1)?.f_to_kind(Kind::Float)?;
        if h.size()[1] != self.config.in_features {
            bail!(
                Shape,
                "field '{}' has {} values per sample, the architecture expects in_features = {}: set [arch] in_features = {}",
                self.config.field,
                h.size()[1],
                self.config.in_features,
                h.size()[1]
            );
        }
        let mut out = Tensors::new();
        for (k, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?.f_gelu("none")?;
            let tap = format!("layer{}", k + 1);
            if wants_tap(inputs, &tap) {
                out.insert(tap_output(&tap), h.shallow_clone());
            }
        }
        out.insert("features", h);
        Ok(out)
    }
}

pt_sdk::export_plugin! {
    name: "__name__",
    architectures: [__Name__],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_have_the_hidden_width_and_every_parameter_trains() {
        let config = __Name__Config::from_json(r#"{"in_features": 4, "hidden": 3}"#).unwrap();
        let arch = __Name__::new(config, &CreateCtx::default()).unwrap();
        let inputs = Tensors::new().with("image", Tensor::ones([2, 1, 2, 2], (Kind::Float, Device::Cpu)));
        let features = arch.forward(&inputs, &StepCtx::default()).unwrap().remove("features").unwrap();
        assert_eq!(features.size(), [2, 3]);
        let asked = inputs.share().with("features.layer1", Tensor::from(1i64));
        assert_eq!(arch.forward(&asked, &StepCtx::default()).unwrap().require("features.layer1").unwrap().size(), [2, 3]);
        features.sum(Kind::Float).backward();
        for (name, p) in arch.parameters() {
            assert!(p.grad().defined(), "{name} got no gradient");
        }
    }
}
