//! `resnet18`, `resnet34`, `resnet50`: torchvision's ResNets with its state-dict names, an
//! optional small-image stem, and a headless mode whose `features` other objectives use.

use crate::blocks::{BatchNorm2d, Block, BnArgs, Conv2d, Linear, Norm};
use crate::config::{Depth, ResNetConfig};
use pt_kit::params::{Created, Params};
use pt_sdk::prelude::*;
use pt_sdk::taps::{tap_output, wants_tap};

pub struct ResNet {
    depth: Depth,
    config: ResNetConfig,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    stages: Vec<Vec<Block>>,
    fc: Option<Linear>,
    feature_dim: i64,
    params: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
    train: bool,
}

impl ResNet {
    /// Builds the model on `device` with weights drawn from `seed` (identical on every device).
    pub fn new(depth: Depth, config: ResNetConfig, seed: u64, device: Device) -> Result<Self> {
        if config.width < 1 || config.in_channels < 1 {
            bail!(Config, "{}: width and in_channels must be positive", depth.name());
        }
        let num_classes = config.num_classes.unwrap_or(0);
        if num_classes < 0 {
            bail!(Config, "{}: num_classes must be 0 (headless) or positive, got {num_classes}", depth.name());
        }
        let created = Created::default();
        let p = Params::new(seed, 0.0, device, &created);
        let bn =
            BnArgs { momentum: config.bn_momentum, eps: config.bn_eps, zero_init_residual: config.zero_init_residual };
        let w = config.width;
        let conv1 = if config.small_stem {
            Conv2d::new(&p.sub("conv1"), config.in_channels, w, 3, 1, 1)?
        } else {
            Conv2d::new(&p.sub("conv1"), config.in_channels, w, 7, 2, 3)?
        };
        let bn1 = BatchNorm2d::new(&p.sub("bn1"), w, bn.momentum, bn.eps, false)?;
        let mut cin = w;
        let mut stages = Vec::new();
        for (s, &blocks) in depth.layers().iter().enumerate() {
            let width = w << s;
            let stage_p = p.sub(format!("layer{}", s + 1));
            let mut stage = Vec::new();
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                stage.push(Block::new(&stage_p.sub(b), cin, width, stride, depth.bottleneck(), bn)?);
                cin = width * depth.expansion();
            }
            stages.push(stage);
        }
        let fc = if num_classes > 0 { Some(Linear::new(&p.sub("fc"), cin, num_classes)?) } else { None };
        drop(p);
        let (params, buffers) = created.into_parts();
        Ok(ResNet { depth, config, conv1, bn1, stages, fc, feature_dim: cin, params, buffers, train: true })
    }

    /// Training FLOPs per sample (3 × forward, 2 per multiply-add) of the convolutions and `fc`
    /// at `h`×`w` input; BatchNorm, ReLU and pooling are left out.
    pub fn train_flops_per_sample(&self, h: i64, w: i64) -> f64 {
        let (mut macs, mut oh, mut ow) = self.conv1.macs(h, w);
        if !self.config.small_stem {
            (oh, ow) = ((oh + 1) / 2, (ow + 1) / 2); // max-pool 3×3, stride 2, padding 1
        }
        for block in self.stages.iter().flatten() {
            let (m, a, b) = block.macs(oh, ow);
            macs += m;
            (oh, ow) = (a, b);
        }
        if let Some(fc) = &self.fc {
            macs += fc.weight.numel() as f64;
        }
        6.0 * macs
    }

    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.buffers.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    pub fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    pub fn info(&self) -> ArchitectureInfo {
        let mut outputs = vec!["features".to_string()];
        let mut layer_prefixes: Vec<String> =
            ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"].map(String::from).to_vec();
        if self.fc.is_some() {
            outputs.push("logits".into());
            layer_prefixes.push("fc".into());
        }
        let flops = self.config.image_size.as_ref().and_then(|s| match s[..] {
            [h, w] => Some(self.train_flops_per_sample(h, w)),
            _ => None,
        });
        let mut config = serde_json::to_value(&self.config).unwrap_or_default();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("arch".into(), self.depth.name().into());
        }
        ArchitectureInfo {
            inputs: vec!["image".into()],
            optional_inputs: vec![],
            outputs,
            feature_dim: Some(self.feature_dim),
            train_flops_per_sample: flops,
            layer_prefixes,
            config,
            channels_last: true,
            taps: self.taps(),
            exports: self.exports(),
        }
    }

    fn exports(&self) -> Vec<pt_sdk::ExportFormat> {
        let names: Vec<String> = self.params.iter().chain(&self.buffers).map(|(n, _)| n.clone()).collect();
        crate::export::formats(self.depth, &self.config, &names)
    }

    /// `stem` and each stage `layer1..4`, global-average pooled (`layer4` is `features`).
    fn taps(&self) -> Vec<FeatureTap> {
        let w = self.config.width;
        let mut taps = vec![FeatureTap::new("stem", w, "after conv1, bn1, relu (and max-pool), average-pooled")];
        for s in 0..self.stages.len() {
            let dim = (w << s) * self.depth.expansion();
            let about = format!("output of layer{}, average-pooled", s + 1);
            taps.push(FeatureTap::new(format!("layer{}", s + 1), dim, about));
        }
        taps
    }

    /// `image` [B, C, H, W] → `features` [B, D] (global average pool), with a head `logits`
    /// [B, classes], and the taps asked for (`features.layer2` [B, C2], ...).
    pub fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let image = inputs.require("image")?;
        let size = image.size();
        if size.len() != 4 {
            bail!(Shape, "{}: image must be [batch, channels, height, width], got {size:?}", self.depth.name());
        }
        let want = self.config.in_channels;
        let xs = if size[1] == want {
            image.shallow_clone()
        } else if size[1] == 1 {
            image.f_expand([size[0], want, size[2], size[3]], false)? // grayscale → `want` channels
        } else {
            bail!(Shape, "{}: images have {} channels but in_channels is {want}", self.depth.name(), size[1]);
        };
        let xs = if xs.kind() == Kind::Float { xs } else { xs.f_to_kind(Kind::Float)? };
        let norm = match (self.train, self.config.sync_batchnorm && ctx.world_size > 1) {
            (false, _) => Norm::Running,
            (true, false) => Norm::Batch,
            (true, true) => Norm::SyncedBatch,
        };
        let mut xs = self.bn1.forward(&self.conv1.forward(&xs)?, norm)?;
        let _ = xs.f_relu_()?; // in place, as torchvision's ReLU(inplace=True): [B, w, H/2, W/2]
        if !self.config.small_stem {
            xs = xs.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?; // [B, w, H/4, W/4]
        }
        let pool = |xs: &Tensor| xs.f_mean_dim(Some(&[2i64, 3][..]), false, None); // [B, C]
        let mut out = Tensors::new();
        if wants_tap(inputs, "stem") {
            out.insert(tap_output("stem"), pool(&xs)?);
        }
        for (s, stage) in self.stages.iter().enumerate() {
            for block in stage {
                xs = block.forward(&xs, norm)?;
            }
            let tap = format!("layer{}", s + 1);
            if wants_tap(inputs, &tap) {
                out.insert(tap_output(&tap), pool(&xs)?);
            }
        }
        let features = pool(&xs)?; // [B, D]
        if let Some(fc) = &self.fc {
            out.insert("logits", fc.forward(&features)?); // [B, classes]
        }
        out.insert("features", features);
        Ok(out)
    }
}

macro_rules! resnet_component {
    ($ty:ident, $depth:expr, $about:literal) => {
        #[doc = $about]
        pub struct $ty(pub ResNet);

        impl Component for $ty {
            const NAME: &'static str = $depth.name();
            const ABOUT: &'static str = $about;
            const PROVIDES: &'static [&'static str] = &["feature_dim"];
            type Config = ResNetConfig;
            fn new(config: ResNetConfig, ctx: &CreateCtx) -> Result<Self> {
                Ok($ty(ResNet::new($depth, config, ctx.seed, ctx.device())?))
            }
        }

        impl Architecture for $ty {
            fn info(&self) -> ArchitectureInfo {
                self.0.info()
            }
            fn parameters(&self) -> Vec<(String, Tensor)> {
                self.0.parameters()
            }
            fn buffers(&self) -> Vec<(String, Tensor)> {
                self.0.buffers()
            }
            fn set_train(&mut self, train: bool) {
                self.0.set_train(train)
            }
            fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
                self.0.forward(inputs, ctx)
            }
        }
    };
}

resnet_component!(ResNet18, Depth::R18, "ResNet-18 (torchvision names; BasicBlock ×[2,2,2,2])");
resnet_component!(ResNet34, Depth::R34, "ResNet-34 (torchvision names; BasicBlock ×[3,4,6,3])");
resnet_component!(ResNet50, Depth::R50, "ResNet-50 (torchvision names; Bottleneck ×[3,4,6,3])");
