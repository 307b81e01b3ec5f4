//! `rotnet`: predict which rotation (0°, 90°, 180°, 270°) was applied to an image, a pretext
//! task that needs no labels (Gidaris et al., "Unsupervised Representation Learning by
//! Predicting Image Rotations", ICLR 2018, https://arxiv.org/abs/1803.07728).
//!
//! Any dataset with a square image field and any architecture with a `features` output work:
//! the rotations are made on the training device in `prepare`, the architecture sees every
//! rotated copy, and a linear head owned by the objective classifies the rotation.
//! `pt plugin new NAME --kind objective` writes this file as a new plugin's starting point.

use pt_kit::params::{Created, Linear, Params};
use pt_kit::rows::{copy_index, tile_rows};
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The `[objective]` keys (`pt plugin info rotnet`).
#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct RotNetConfig {
    /// The image field to rotate, float [batch, channels, height, width] with height = width.
    #[config(default = "image", non_empty)]
    pub field: String,
    /// Rotations to tell apart: 4 (0°, 90°, 180°, 270°) or 2 (0°, 180°).
    #[config(default = 4, one_of = [2, 4])]
    pub rotations: i64,
    /// Width of the architecture's `features`.
    #[config(input, min = 1)]
    pub feature_dim: i64,
}

pub struct RotNet {
    config: RotNetConfig,
    /// Linear rotation classifier on `features`: `head.weight` [rotations, feature_dim].
    head: Linear,
    created: Created,
}

impl Component for RotNet {
    const NAME: &'static str = "rotnet";
    const ABOUT: &'static str = "predict the rotation applied to each image (RotNet)";
    type Config = RotNetConfig;

    fn new(config: RotNetConfig, ctx: &CreateCtx) -> Result<Self> {
        let created = Created::default();
        let params = Params::new(ctx.seed, 0.02, ctx.device(), &created);
        let head = Linear::new(&params.sub("head"), config.feature_dim, config.rotations)?;
        Ok(RotNet { config, head, created })
    }
}

impl Objective for RotNet {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec![self.config.field.clone()],
            needs_outputs: vec!["features".into()],
            adds_fields: vec!["rotation".into()],
            metrics: vec!["rotation_accuracy".into()],
            ..Default::default()
        }
    }

    /// The head's tensors themselves (not copies): the trainer optimises what this returns, so
    /// `loss` must compute with these very tensors.
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.created.parameters.borrow().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// [B, C, H, W] → every field tiled to [rotations·B, ...], block k rotated by k·360°/rotations,
    /// and `rotation` [rotations·B] = k.
    fn prepare(&self, mut batch: Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        let images = batch.require(&self.config.field)?.shallow_clone();
        batch.remove(&self.config.field); // rotated below, not tiled
        let size = images.size();
        if size.len() != 4 || size[2] != size[3] {
            bail!(
                Shape,
                "rotnet rotates square images: field '{}' is {size:?}, expected [batch, channels, side, side] \
                 (crop the dataset to a square, e.g. [data] crop)",
                self.config.field
            );
        }
        let quarter_turns = 4 / self.config.rotations;
        let rotated: Vec<Tensor> = (0..self.config.rotations)
            .map(|k| images.f_rot90(k * quarter_turns, [2, 3]))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = tile_rows(&batch, size[0], self.config.rotations)?;
        out.insert(self.config.field.clone(), Tensor::f_cat(&rotated, 0)?);
        out.insert("rotation", copy_index(size[0], self.config.rotations, &images)?);
        Ok(out)
    }

    fn loss(&self, batch: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<LossOutput> {
        let features = outputs.require("features")?.f_to_kind(Kind::Float)?; // [R·B, D]
        let target = batch.require("rotation")?; // [R·B]
        let logits = self.head.forward(&features)?; // [R·B, R]
        let loss = logits.f_cross_entropy_loss::<Tensor>(target, None, tch::Reduction::Mean, -100, 0.0)?;
        let accuracy = logits.f_argmax(-1, false)?.f_eq_tensor(target)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?;
        Ok(LossOutput { loss, metrics: vec![("rotation_accuracy".into(), accuracy.f_detach()?)] })
    }
}

pt_sdk::export_plugin! {
    name: "rotnet",
    objectives: [RotNet],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotnet(rotations: i64) -> RotNet {
        let config = RotNetConfig::from_json(&format!(r#"{{"feature_dim": 3, "rotations": {rotations}}}"#)).unwrap();
        RotNet::new(config, &CreateCtx::default()).unwrap()
    }

    #[test]
    fn prepare_stacks_the_rotations_and_keeps_fields_aligned() {
        let image = Tensor::arange(2 * 4, (Kind::Float, Device::Cpu)).view([2, 1, 2, 2]);
        let batch = Tensors::new().with("image", image.shallow_clone()).with("label", Tensor::from_slice(&[5i64, 6]));
        let out = rotnet(4).prepare(batch, &StepCtx::default()).unwrap();
        let rotated = out.require("image").unwrap();
        assert_eq!(rotated.size(), [8, 1, 2, 2]);
        assert!(rotated.narrow(0, 0, 2).equal(&image), "block 0 is the original");
        assert!(rotated.narrow(0, 4, 2).equal(&image.flip([2, 3])), "block 2 is turned 180°");
        let rotation: Vec<i64> = Vec::try_from(out.require("rotation").unwrap()).unwrap();
        assert_eq!(rotation, [0, 0, 1, 1, 2, 2, 3, 3]);
        let label: Vec<i64> = Vec::try_from(out.require("label").unwrap()).unwrap();
        assert_eq!(label, [5, 6, 5, 6, 5, 6, 5, 6]);
    }

    #[test]
    fn the_loss_trains_the_head_it_returns() {
        let r = rotnet(2);
        let batch = Tensors::new().with("rotation", Tensor::from_slice(&[0i64, 1]));
        let outputs = Tensors::new().with("features", Tensor::ones([2, 3], (Kind::Float, Device::Cpu)));
        r.loss(&batch, &outputs, &StepCtx::default()).unwrap().loss.backward();
        for (name, p) in r.parameters() {
            assert!(p.grad().defined(), "{name} got no gradient");
        }
    }

    #[test]
    fn bad_keys_are_named() {
        let e = RotNetConfig::from_json(r#"{"feature_dim": 3, "rotations": 3}"#).unwrap_err().to_string();
        assert!(e.contains("rotations must be one of 2, 4; got 3"), "{e}");
        let e = RotNetConfig::from_json("{}").unwrap_err().to_string();
        assert!(e.contains("feature_dim is unset"), "{e}");
    }
}
