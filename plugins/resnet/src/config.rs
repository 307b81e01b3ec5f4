//! ResNet's configuration: the depth (from the component name) and the user-facing options.

use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};

/// Which torchvision ResNet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    R18,
    R34,
    R50,
}

impl Depth {
    /// Blocks per stage.
    pub fn layers(self) -> [i64; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
        }
    }
    pub fn bottleneck(self) -> bool {
        self == Depth::R50
    }
    /// Output channels of a block relative to its width.
    pub fn expansion(self) -> i64 {
        if self.bottleneck() {
            4
        } else {
            1
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Depth::R18 => "resnet18",
            Depth::R34 => "resnet34",
            Depth::R50 => "resnet50",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetConfig {
    /// classes of the `fc` head (0: headless trunk, `features` only)
    #[config(input, optional)]
    pub num_classes: Option<i64>,
    /// 3×3 stride-1 first conv and no max-pool, for 28-32 px images (CIFAR-style)
    pub small_stem: bool,
    /// input channels of conv1 (1-channel images are repeated to 3 when this is 3)
    #[config(default = 3)]
    pub in_channels: i64,
    /// channels of the first stage (64 in torchvision; smaller is faster, not weight-compatible)
    #[config(default = 64)]
    pub width: i64,
    /// start each block's last BatchNorm at zero, so blocks begin as identities
    pub zero_init_residual: bool,
    /// [height, width] of the inputs, for the FLOPs count
    #[config(input, optional)]
    pub image_size: Option<Vec<i64>>,
    /// BatchNorm running-statistics momentum (PyTorch convention: 0.1)
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// BatchNorm epsilon
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// multi-process runs: BatchNorm statistics over the global batch, every rank's samples (nn.SyncBatchNorm)
    pub sync_batchnorm: bool,
}
