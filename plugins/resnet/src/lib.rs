//! pt's ResNet plugin: torchvision-compatible `resnet18`/`resnet34`/`resnet50`, the `supervised`
//! (cross-entropy) and `fixmatch` (semi-supervised consistency) objectives, the `classification`
//! evaluator (top-1/top-5 and a confusion matrix), and the SDK's image datasets (`idx_images`,
//! `image_folder`, `pixel_csv`).

pub mod arch;
pub mod blocks;
pub mod config;
pub mod evaluator;
pub mod export;
pub mod fixmatch;
pub mod objective;

pub use arch::{ResNet18, ResNet34, ResNet50};
pub use evaluator::Classification;
pub use fixmatch::FixMatch;
pub use objective::Supervised;
use pt_kit::vision::{IdxImages, ImageFolder, ImageShards, PixelCsv};

pt_sdk::export_plugin! {
    name: "resnet",
    datasets: [IdxImages, ImageFolder, ImageShards, PixelCsv],
    architectures: [ResNet18, ResNet34, ResNet50],
    objectives: [Supervised, FixMatch],
    evaluators: [Classification],
}
