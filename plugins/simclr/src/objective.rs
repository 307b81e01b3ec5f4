//! `simclr`: `prepare` turns a batch of B images into 2B augmented views on the device, from
//! parameters drawn on the loader thread (`draw_on_host`); `loss` projects the encoder's
//! `features` and applies NT-Xent, plus an online linear probe on detached features when labels
//! are present.

use crate::config::SimclrConfig;
use crate::loss::{global_embeddings, nt_xent, scale_gradient};
use pt_kit::losses::labelled_cross_entropy;
use pt_kit::params::{Created, Linear, Params};
use pt_kit::vision::augment::{
    image_shape, images_and_indices, sample_rngs, Normalization, SimclrAugment, SimclrParams,
};
use pt_kit::vision::view_plan::{apply_simclr_view, simclr_view_tensors};
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

/// Where view `v`'s drawn tensors sit in the batch.
fn view_prefix(view: u64) -> String {
    format!("simclr/view{view}/")
}

/// The views `prepare` makes.
const VIEWS: u64 = 2;

impl SimClr {
    /// The tensors (on the CPU) of both views of images of `shape` `[B, C, H, W]`, sample `i`'s
    /// drawn from (seed, stream, epoch, index[i], view).
    pub fn draw_views(&self, shape: [i64; 4], index: &[i64], ctx: &StepCtx) -> Result<Tensors> {
        let (augment, _) = self.views.as_ref().map_err(Clone::clone)?;
        let mut drawn = Tensors::new();
        for view in 0..VIEWS {
            let rngs = sample_rngs(ctx.seed, STREAM_VIEWS, ctx.epoch, index, view);
            let params: Vec<SimclrParams> =
                rngs.into_iter().map(|mut r| augment.sample(&mut r, shape[2], shape[3])).collect();
            for (name, t) in simclr_view_tensors(&params, augment, shape, &view_prefix(view))? {
                drawn.insert(name, t);
            }
        }
        Ok(drawn)
    }

    /// Both views of `images` ([B, C, H, W], normalised) from `drawn` (on their device),
    /// stacked as [2B, C, S, S], normalised.
    pub fn views(&self, images: &Tensor, drawn: &Tensors) -> Result<Tensor> {
        let (augment, norm) = self.views.as_ref().map_err(Clone::clone)?;
        let pixels = norm.denormalize(images)?.f_clamp(0.0, 1.0)?; // [B, C, H, W] in [0, 1]
        let mut views = Vec::with_capacity(VIEWS as usize);
        for view in 0..VIEWS {
            views.push(norm.normalize(&apply_simclr_view(&pixels, drawn, &view_prefix(view), augment)?)?);
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
            draws_on_host: true,
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// On the loader thread: every view's crop, flip and colour parameters as small tensors.
    fn draw_on_host(&self, batch: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (images, index) = images_and_indices(batch, "simclr")?;
        self.draw_views(image_shape(images, "simclr")?, &index, ctx)
    }

    /// Views of sample i come from (seed, stream, epoch, i, view), so a resumed run sees the
    /// same ones; drawn on the loader thread, or here for a batch the loader did not draw.
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let images = batch.require("image")?;
        let views = match batch.contains(&format!("{}theta", view_prefix(0))) {
            true => self.views(images, &batch)?,
            false => {
                let (images, index) = images_and_indices(&batch, "simclr")?;
                let drawn = self.draw_views(image_shape(images, "simclr")?, &index, ctx)?.to_device(images.device())?;
                self.views(images, &drawn)?
            }
        };
        let prefixes: Vec<String> = (0..VIEWS).map(view_prefix).collect();
        let drawn: Vec<String> =
            batch.names().filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str()))).map(String::from).collect();
        for name in drawn {
            batch.remove(&name);
        }
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
        // Made on the device: a host scalar copied there would wait for the step's kernels.
        let views = Tensor::f_full([], z.size()[0] as f64, (Kind::Float, z.device()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn simclr() -> SimClr {
        let cfg: SimclrConfig = serde_json::from_str(
            r#"{"feature_dim": 8, "image_size": [12, 12], "mean": [0.5], "std": [0.25], "augment": "imagenet", "blur_p": 0.5}"#,
        )
        .unwrap();
        SimClr::new(cfg, &CreateCtx::default()).unwrap()
    }

    /// The loader thread's draw and `prepare`'s own draw make the same views, so a batch
    /// prepared either way trains the same; the drawn tensors are all the device has to receive.
    #[test]
    fn views_from_the_loader_threads_draw_equal_views_drawn_in_prepare() {
        let objective = simclr();
        let images = Tensor::rand([5, 3, 12, 12], (Kind::Float, Device::Cpu)).f_sub_scalar(0.5).unwrap();
        let batch = Tensors::new().with("image", images).with("sample_index", Tensor::from_slice(&[3i64, 9, 4, 0, 7]));
        let ctx = StepCtx { seed: 11, epoch: 2, ..StepCtx::default() };
        let drawn = objective.draw_on_host(&batch, &ctx).unwrap();
        assert!(drawn.contains("simclr/view0/theta") && drawn.contains("simclr/view1/lowest"));
        assert!(drawn.iter().all(|(n, t)| n.starts_with("simclr/view") && t.device() == Device::Cpu));
        let mut with_drawn = batch.share();
        for (n, t) in drawn.into_iter() {
            with_drawn.insert(n, t);
        }
        let from_loader = objective.prepare(with_drawn, &ctx).unwrap();
        let in_prepare = objective.prepare(batch.share(), &ctx).unwrap();
        assert!(from_loader.names().all(|n| !n.starts_with("simclr/")), "drawn fields do not reach the model");
        let (a, b) = (from_loader.require("image").unwrap(), in_prepare.require("image").unwrap());
        assert_eq!(a.size(), [10, 3, 12, 12]);
        assert!(a.equal(b), "the same views either way");
        let other_epoch = objective.prepare(batch.share(), &StepCtx { epoch: 3, ..ctx }).unwrap();
        assert!(!other_epoch.require("image").unwrap().equal(b), "views change with the epoch");
    }
}
