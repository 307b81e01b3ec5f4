//! Audio for pt plugins: a dataset over folders of WAV, FLAC, Ogg Vorbis, Opus or MP3 files,
//! fairseq-style `.tsv` manifests and tar shards, and the readers behind it.
//!
//! Batches carry `input_values` as float32 `[batch, samples]` (mono at the dataset's
//! `sample_rate`, zero-padded on the right to the batch's longest clip), `attention_mask` as int64
//! `[batch, samples]` (1 real, 0 padding: Hugging Face's convention) and, for labelled data,
//! `label` as int64 `[batch]`. Training crops take per-sample random offsets derived from
//! (seed, stream, epoch, sample index), so a resumed or resharded run reads the same windows.
//! `DatasetInfo::lengths` gives each clip's served length, for length-bucketed batching.

pub mod clip;
mod compressed;
pub mod dataset;
pub mod manifest;
pub mod opus;
pub mod wav;

pub use dataset::{AudioConfig, AudioFiles, LabelSource};
pub use manifest::{read_manifest, scan_wavs, Manifest};
pub use wav::{decode_clip, read_header, read_wav, read_wav_header, resample, Encoded, WavFacts};
