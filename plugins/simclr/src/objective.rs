//! `simclr`: `prepare` turns a batch of B images into 2B augmented views on the device; `loss`
//! projects the encoder's `features` and applies NT-Xent, plus an online linear probe on
//! detached features when labels are present.

use crate::config::SimclrConfig;
use crate::loss::{global_embeddings, nt_xent, scale_gradient};
use pt_kit::losses::labelled_cross_entropy;
use pt_kit::params::{Created, Linear, Params};
use pt_kit::vision::augment::{images_and_indices, sample_rngs, simclr_view, Normalization, SimclrAugment};
use pt_sdk::prelude::*;

/// Random stream of the views (see `pt_sdk::rng`).
const STREAM_VIEWS: u64 = 0x51C1;

/// SimCLR's projection head g(h) = W2 · ReLU(W1 · h) (`projector.0`, `projector.2`, as an
/// `nn.Sequential(Linear, ReLU, Linear)`).
struct Projector {
    hidden: Linear,
    out: Linear,
}

impl Projector {
    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward(h)?.f_relu()?)
    }
}

pub struct SimClr {
    /// The views' settings, or why they are unknown (a dataset without image statistics):
    /// reported when a batch arrives, so the host's composition check can first name a dataset
    /// without images.
    views: std::result::Result<(SimclrAugment, Normalization), PtError>,
    temperature: f64,
    projector: Projector,
    probe: Option<Linear>,
    params: Vec<(String, Tensor)>,
}

impl Component for SimClr {
    const NAME: &'static str = "simclr";
    const ABOUT: &'static str =
        "SimCLR: two on-device augmented views, projection head, NT-Xent (any `features` encoder)";
    type Config = SimclrConfig;

    fn new(cfg: SimclrConfig, ctx: &CreateCtx) -> Result<Self> {
        let views = view_settings(&cfg);
        let unknown = cfg.image_size.is_none() || cfg.mean.is_none() || cfg.std.is_none();
        if let (Err(e), false) = (&views, unknown) {
            return Err(e.clone());
        }
        let dim = cfg.feature_dim;
        if dim < 1 {
            bail!(Config, "simclr: feature_dim must be >= 1, got {dim}");
        }
        let created = Created::default();
        let p = Params::new(ctx.seed ^ 0x51C1, 0.0, ctx.device(), &created);
        let hidden = cfg.proj_hidden.unwrap_or(dim);
        let projector = Projector {
            hidden: Linear::new(&p.sub("projector.0"), dim, hidden)?,
            out: Linear::new(&p.sub("projector.2"), hidden, cfg.proj_dim)?,
        };
        let probe = match (cfg.online_probe, cfg.num_classes) {
            (true, Some(classes)) if classes > 0 => Some(Linear::new(&p.sub("online_probe"), dim, classes)?),
            (true, _) => {
                tracing::info!("simclr: no class count from the dataset; the online probe is off");
                None
            }
            (false, _) => None,
        };
        drop(p);
        let params = created.into_parts().0;
        Ok(SimClr { views, temperature: cfg.temperature, projector, probe, params })
    }
}

/// The augmentation and the dataset's normalisation, from the config the host filled in.
fn view_settings(cfg: &SimclrConfig) -> Result<(SimclrAugment, Normalization)> {
    let augment = cfg.augmentation()?;
    let norm = match (&cfg.mean, &cfg.std) {
        (Some(mean), Some(std)) => Normalization { mean: mean.clone(), std: std.clone() },
        _ => bail!(
            Config,
            "simclr: mean/std of the dataset's normalisation are unknown: use an image dataset that reports them or set objective.mean and objective.std"
        ),
    };
    norm.validate()?;
    Ok((augment, norm))
}

impl SimClr {
    /// Both views of `images` ([B, C, H, W], normalised) stacked as [2B, C, S, S], normalised.
    pub fn views(&self, images: &Tensor, index: &[i64], ctx: &StepCtx) -> Result<Tensor> {
        let (augment, norm) = self.views.as_ref().map_err(Clone::clone)?;
        let pixels = norm.denormalize(images)?.f_clamp(0.0, 1.0)?; // [B, C, H, W] in [0, 1]
        let mut views = Vec::with_capacity(2);
        for view in 0..2 {
            let mut rngs = sample_rngs(ctx.seed, STREAM_VIEWS, ctx.epoch, index, view);
            views.push(norm.normalize(&simclr_view(&pixels, &mut rngs, augment)?)?);
        }
        Ok(Tensor::f_cat(&views, 0)?)
    }
}

impl Objective for SimClr {
    fn info(&self) -> ObjectiveInfo {
        let mut metrics = vec!["nt_xent".to_string(), "contrastive_accuracy".to_string(), "nt_xent_views".to_string()];
        if self.probe.is_some() {
            metrics.extend(["probe_accuracy".to_string(), "probe_loss".to_string()]);
        }
        ObjectiveInfo {
            needs_fields: vec!["image".into()],
            needs_outputs: vec!["features".into()],
            adds_fields: vec![],
            metrics,
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// Views of sample i come from (seed, stream, epoch, i, view), so a resumed run sees the same ones.
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (images, index) = images_and_indices(&batch, "simclr")?;
        let views = self.views(images, &index, ctx)?;
        batch.insert("image", views);
        Ok(batch)
    }

    fn loss(&self, batch: &Tensors, outputs: &Tensors, ctx: &StepCtx) -> Result<LossOutput> {
        let features = outputs.require("features")?; // [2B, D]
        let mut z = self.projector.forward(&features.f_to_kind(Kind::Float)?)?; // [2B, proj_dim]
        let world = i64::from(ctx.world_size.max(1));
        if world > 1 {
            // Negatives from every rank: [2 × global batch, proj_dim], this rank's rows live.
            let gathered = pt_sdk::host::all_gather(&z.f_detach()?)?;
            z = global_embeddings(&z, &gathered, i64::from(ctx.rank), world)?;
        }
        let (nt, accuracy) = nt_xent(&z, self.temperature)?;
        let views = Tensor::from(z.size()[0] as f64).f_to_device(z.device())?;
        let mut metrics = vec![
            ("nt_xent".to_string(), nt.detach()),
            ("contrastive_accuracy".to_string(), accuracy),
            ("nt_xent_views".to_string(), views),
        ];
        let mut loss = scale_gradient(&nt, world as f64)?;
        if let (Some(probe), Some(labels)) = (&self.probe, batch.get("label")) {
            let b = labels.size()[0];
            let first_view = features.f_narrow(0, 0, b)?.f_detach()?.f_to_kind(Kind::Float)?; // [B, D]
            let logits = probe.forward(&first_view)?;
            // Over labelled samples only (-100 marks unlabelled ones in semi-supervised data).
            let (probe_loss, probe_accuracy) = labelled_cross_entropy(&logits, labels, 0.0)?;
            // Features are detached: this term trains only the probe.
            loss = loss.f_add(&probe_loss)?;
            metrics.push(("probe_accuracy".into(), probe_accuracy));
            metrics.push(("probe_loss".into(), probe_loss.detach()));
        }
        Ok(LossOutput { loss, metrics })
    }
}
