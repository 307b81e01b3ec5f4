//! Images for pt plugins: datasets over MNIST-style IDX files, folder-per-class trees of PNG/JPEG
//! and CSV pixel tables, and augmentation applied on the training device in batch form.
//!
//! Batches carry `image` as float32 `[batch, channels, height, width]` (served as uint8 and
//! normalised by the host on the training device, see `OnDevice`), normalised with the
//! dataset's per-channel statistics (reported as `mean`/`std` in `DatasetInfo::notes`), and
//! `label` as int64 `[batch]`. Augmentations take per-sample random streams derived from
//! (seed, stream, epoch, sample index), so a resumed or resharded run makes the same views.

pub mod augment;
pub mod decode;
pub mod folder;
pub mod idx;
pub mod pixel_csv;
pub mod shard_images;
pub mod store;
pub mod view_plan;

pub use augment::Normalization;
pub use folder::ImageFolder;
pub use idx::IdxImages;
pub use pixel_csv::PixelCsv;
pub use shard_images::ImageShards;
