//! pt's CLIP plugin: contrastive image–text pretraining (Radford et al. 2021) over two
//! architectures from other plugins (an image encoder under the role `image`, a text encoder
//! under `text`), the `image_text` paired dataset, and zero-shot evaluators.

pub mod loss;
pub mod objective;
pub mod pairs;
pub mod zero_shot;

pub use objective::Clip;
pub use pairs::ImageText;
pub use zero_shot::{Retrieval, ZeroShot};

pt_sdk::export_plugin! {
    name: "clip",
    datasets: [ImageText],
    objectives: [Clip],
    evaluators: [ZeroShot, Retrieval],
}
