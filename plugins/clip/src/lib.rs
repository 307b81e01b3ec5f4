//! pt's CLIP plugin: contrastive image–text pretraining (Radford et al. 2021) over two
//! architectures from other plugins (an image encoder under the role `image`, a text encoder
//! under `text`), the toolkit's `image_text` paired dataset (`pt_kit::pairs`), and zero-shot
//! evaluators.

pub mod loss;
pub mod objective;
pub mod zero_shot;

pub use objective::Clip;
pub use pt_kit::pairs::ImageText;
pub use zero_shot::{Retrieval, ZeroShot};

pt_sdk::export_plugin! {
    name: "clip",
    datasets: [ImageText],
    objectives: [Clip],
    evaluators: [ZeroShot, Retrieval],
}
