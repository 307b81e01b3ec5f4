//! `denoise`: learn features that survive corruption.
//!
//! `prepare` stacks two views of every sample into one batch of 2B rows: rows 0..B are the clean
//! input, rows B..2B the same samples with `field` corrupted (tokens masked, or noise added).
//! One forward pass gives `features` for both. The loss asks a small predictor head to map the
//! corrupted view's features onto the clean view's, which are a stop-gradient target (as in
//! BYOL/SimSiam): `2 − 2·cos(predictor(z_corrupt), sg(z_clean))`. A variance term (VICReg's
//! hinge on the per-dimension standard deviation over the batch) rules out the trivial
//! solution where every input maps to the same point.

use crate::config::DenoiseConfig;
use crate::corrupt::{add_noise, mask_tokens, TokenMasking};
use crate::predictor::Predictor;
use pt_kit::rows::tile_rows;
use pt_sdk::prelude::*;

/// The host's global sample indices, int64 [B], present in every batch.
const SAMPLE_INDEX: &str = "sample_index";

pub struct Denoise {
    config: DenoiseConfig,
    predictor: Predictor,
}

impl Component for Denoise {
    const NAME: &'static str = "denoise";
    const ABOUT: &'static str = "predict clean features from a corrupted view (masked tokens or noisy inputs); any architecture with `features`";
    type Config = DenoiseConfig;

    /// pt has checked `config` and filled `feature_dim` from the architecture before this runs.
    fn new(config: DenoiseConfig, ctx: &CreateCtx) -> Result<Self> {
        let predictor = Predictor::new(config.feature_dim, config.predictor_hidden, ctx.seed, ctx.device())?;
        Ok(Denoise { config, predictor })
    }
}

/// A CPU copy of an integer tensor.
fn to_vec(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?)
}

impl Denoise {
    fn corrupt(&self, x: &Tensor, sample_index: &[i64], ctx: &StepCtx) -> Result<Tensor> {
        if x.is_floating_point() {
            return add_noise(x, self.config.noise_std);
        }
        let field = &self.config.field;
        let mask_id = self.config.mask_token_id.ok_or_else(|| {
            PtError::config(format!(
                "`{field}` holds token ids but mask_token_id is unset and the dataset reports none: set [objective] mask_token_id"
            ))
        })?;
        let special = self.config.special_token_ids.clone().unwrap_or_default();
        let masking = TokenMasking { prob: self.config.corrupt_prob, mask_id, special: &special };
        Ok(mask_tokens(x, sample_index, &masking, ctx)?.0)
    }
}

impl Objective for Denoise {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec![self.config.field.clone()],
            needs_outputs: vec!["features".into()],
            adds_fields: vec![],
            metrics: vec!["cosine".into(), "feature_std".into(), "variance_loss".into()],
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.predictor.parameters()
    }

    /// Every per-sample tensor (first dimension B) is tiled: clean rows, then corrupted rows
    /// (`pt_kit::rows`: both copies of a sample keep its `sample_index`).
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let x = batch.require(&self.config.field)?.shallow_clone();
        batch.remove(&self.config.field); // stacked with its corrupted copy below, not tiled
        let rows = *x.size().first().ok_or_else(|| PtError::shape(format!("`{}` is a scalar", self.config.field)))?;
        let sample_index = to_vec(batch.require(SAMPLE_INDEX)?)?;
        let corrupted = self.corrupt(&x, &sample_index, ctx)?;
        let both = Tensor::f_cat(&[&x, &corrupted], 0)?;
        let mut out = tile_rows(&batch, rows, 2)?;
        out.insert(self.config.field.clone(), both);
        Ok(out)
    }

    fn loss(&self, _batch: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<LossOutput> {
        let f = outputs.require("features")?;
        let size = f.size();
        if size.len() != 2 || size[0] % 2 != 0 || size[1] != self.config.feature_dim {
            bail!(
                Shape,
                "expected `features` of shape [2·batch, {}] (clean and corrupted rows), got {size:?}; \
                 set [objective] feature_dim to the architecture's feature width",
                self.config.feature_dim
            );
        }
        let half = size[0] / 2;
        if self.config.variance_weight > 0.0 && half < 2 {
            bail!(Config, "the variance term needs at least 2 samples per batch; raise [run] batch_size or set variance_weight = 0");
        }
        // fp32 for the loss even under autocast.
        let f = f.f_to_kind(Kind::Float)?;
        let clean = f.f_narrow(0, 0, half)?.f_detach()?;
        let noisy = f.f_narrow(0, half, half)?;
        let predicted = self.predictor.forward(&noisy)?;
        let cosine = Tensor::f_cosine_similarity(&predicted, &clean, 1, 1e-8)?; // [B]
        let prediction_loss = cosine.f_mean(Kind::Float)?.f_mul_scalar(-2.0)?.f_add_scalar(2.0)?;
        let std = noisy.f_var_dim(Some(&[0i64][..]), true, false)?.f_add_scalar(1e-4)?.f_sqrt()?; // [D]
        let variance_loss = std.f_neg()?.f_add_scalar(1.0)?.f_relu()?.f_mean(Kind::Float)?;
        let loss = prediction_loss.f_add(&variance_loss.f_mul_scalar(self.config.variance_weight)?)?;
        let metrics = vec![
            ("cosine".to_string(), cosine.f_mean(Kind::Float)?.f_detach()?),
            ("feature_std".to_string(), std.f_mean(Kind::Float)?.f_detach()?),
            ("variance_loss".to_string(), variance_loss.f_detach()?),
        ];
        Ok(LossOutput { loss, metrics })
    }
}
