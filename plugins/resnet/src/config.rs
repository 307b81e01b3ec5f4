//! ResNet's configuration: the depth (from the component name) and the user-facing options.

use pt_sdk::Config;
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

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetConfig {
    pub num_classes: Option<i64>,
    pub small_stem: bool,
    pub in_channels: i64,
    pub width: i64,
    pub zero_init_residual: bool,
    pub image_size: Option<Vec<i64>>,
    pub bn_momentum: f64,
    pub bn_eps: f64,
    pub sync_batchnorm: bool,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            num_classes: None,
            small_stem: false,
            in_channels: 3,
            width: 64,
            zero_init_residual: false,
            image_size: None,
            bn_momentum: 0.1,
            bn_eps: 1e-5,
            sync_batchnorm: false,
        }
    }
}

impl Config for ResNetConfig {
    fn inputs() -> Vec<pt_sdk::InputDecl> {
        vec![pt_sdk::InputDecl::key("num_classes").optional(), pt_sdk::InputDecl::key("image_size").optional()]
    }

    fn describe() -> &'static [(&'static str, &'static str)] {
        &[
            ("num_classes", "classes of the `fc` head (null: from the dataset; 0: headless trunk, `features` only)"),
            ("small_stem", "3×3 stride-1 first conv and no max-pool, for 28-32 px images (CIFAR-style)"),
            ("in_channels", "input channels of conv1 (1-channel images are repeated to 3 when this is 3)"),
            ("width", "channels of the first stage (64 in torchvision; smaller is faster, not weight-compatible)"),
            ("zero_init_residual", "start each block's last BatchNorm at zero, so blocks begin as identities"),
            ("image_size", "[height, width] of the inputs, for the FLOPs count (null: from the dataset)"),
            ("bn_momentum", "BatchNorm running-statistics momentum (PyTorch convention: 0.1)"),
            ("bn_eps", "BatchNorm epsilon"),
            ("sync_batchnorm", "multi-process runs: BatchNorm statistics over the global batch, every rank's samples (nn.SyncBatchNorm)"),
        ]
    }
}
