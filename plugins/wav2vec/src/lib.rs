//! pt's wav2vec 2.0 plugin: the `wav2vec2` architecture (transformers' `Wav2Vec2Model` names,
//! presets tiny to base), the `wav2vec2` self-supervised objective (span masking, Gumbel product
//! quantiser, contrastive + diversity loss + feature penalty), and the SDK's `audio` dataset
//! (WAV folders or TSV manifests, resampled to 16 kHz, length-bucketed batches).

pub mod config;
pub mod encoder;
pub mod feature_encoder;
pub mod loss;
pub mod masking;
pub mod model;
pub mod objective;
pub mod quantizer;

pub use model::{Wav2Vec2, Wav2Vec2Arch};
pub use objective::Wav2Vec2Objective;
use pt_kit::audio::AudioFiles;

pt_sdk::export_plugin! {
    name: "wav2vec",
    datasets: [AudioFiles],
    architectures: [Wav2Vec2Arch],
    objectives: [Wav2Vec2Objective],
    evaluators: [],
}
