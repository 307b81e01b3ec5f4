//! Decoded images held in memory as bytes, batched as uint8 tensors that the host normalises on
//! the training device.

use super::augment::Normalization;
use crate::{DatasetInfo, FieldInfo, OnDevice, PtError, Result, Tensors};
use tch::Tensor;

/// The `image` field: float32 `[channels, height, width]` as components read it, served as uint8
/// bytes and normalised by the host on the device (`pixel = byte · scale`).
pub fn pixel_field(shape: [i64; 3], scale: f64, norm: &Normalization) -> FieldInfo {
    FieldInfo::new("image", "float32", &shape, "normalised pixels (notes: mean, std)")
        .on_device(OnDevice::NormalizePixels { scale, mean: norm.mean.clone(), std: norm.std.clone() })
}

/// `n` images of `[channels, height, width]` bytes, row-major, and their labels.
pub struct ImageStore {
    pub pixels: Vec<u8>,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    /// Pixel value = byte · `scale` (1/255 for 8-bit images, 1/16 for scikit-learn's digits).
    pub scale: f64,
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
    /// For semi-supervised runs: which samples keep their label (the others are served with
    /// label -100, PyTorch's ignore index). `None`: all are labelled.
    pub labelled: Option<Vec<bool>>,
}

/// The label served for samples whose label is hidden (`label_fraction` < 1).
pub const UNLABELLED: i64 = crate::losses::IGNORE_LABEL;

impl ImageStore {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// No classes: images without labels (a flat folder for self-supervised pretraining).
    pub fn unlabelled(&self) -> bool {
        self.classes.is_empty()
    }

    fn image_bytes(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }

    /// Keeps the first `max_per_class` images of every class (file order), for balanced subsets.
    pub fn limit_per_class(&mut self, max_per_class: u64) {
        if max_per_class == 0 || self.unlabelled() {
            return;
        }
        let mut seen = vec![0u64; self.classes.len()];
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| {
                let c = &mut seen[self.labels[i] as usize];
                *c += 1;
                *c <= max_per_class
            })
            .collect();
        self.select(&keep);
    }

    /// Keeps the first `max` images (0: all).
    pub fn limit(&mut self, max: u64) {
        if max > 0 && (max as usize) < self.len() {
            let keep: Vec<usize> = (0..max as usize).collect();
            self.select(&keep);
        }
    }

    fn select(&mut self, keep: &[usize]) {
        let size = self.image_bytes();
        let mut pixels = Vec::with_capacity(keep.len() * size);
        for &i in keep {
            pixels.extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
        }
        self.labels = keep.iter().map(|&i| self.labels[i]).collect();
        if let Some(labelled) = &self.labelled {
            self.labelled = Some(keep.iter().map(|&i| labelled[i]).collect());
        }
        self.pixels = pixels;
    }

    /// Keeps the labels of the first `fraction` of each class's samples (in file order, so the
    /// labelled set is balanced and the same every run) and hides the rest. Returns how many
    /// stay labelled.
    pub fn keep_label_fraction(&mut self, fraction: f64) -> Result<u64> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(PtError::config(format!("label_fraction must be in (0, 1], got {fraction}")));
        }
        if fraction == 1.0 || self.unlabelled() {
            self.labelled = None;
            return Ok(if self.unlabelled() { 0 } else { self.len() as u64 });
        }
        let mut totals = vec![0u64; self.classes.len()];
        for &l in &self.labels {
            totals[l as usize] += 1;
        }
        let quota: Vec<u64> = totals.iter().map(|&t| ((t as f64 * fraction).ceil() as u64).min(t)).collect();
        let mut seen = vec![0u64; self.classes.len()];
        let keep: Vec<bool> = self
            .labels
            .iter()
            .map(|&l| {
                seen[l as usize] += 1;
                seen[l as usize] <= quota[l as usize]
            })
            .collect();
        let kept = keep.iter().filter(|&&k| k).count() as u64;
        self.labelled = Some(keep);
        Ok(kept)
    }

    /// Per-channel mean and standard deviation of the pixel values (in [0, 1] units).
    pub fn statistics(&self) -> Normalization {
        let c = self.channels as usize;
        let plane = (self.height * self.width) as usize;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for image in self.pixels.chunks_exact(self.image_bytes()) {
            for ch in 0..c {
                for &v in &image[ch * plane..(ch + 1) * plane] {
                    let x = v as f64 * self.scale;
                    sum[ch] += x;
                    sq[ch] += x * x;
                }
            }
        }
        let count = (self.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| (q / count - m * m).max(0.0).sqrt().max(1e-6)).collect();
        Normalization { mean, std }
    }

    /// Uses `mean`/`std` from the config when both are given (one value or one per channel), else
    /// this split's own statistics.
    pub fn normalization(&self, mean: &Option<Vec<f64>>, std: &Option<Vec<f64>>, what: &str) -> Result<Normalization> {
        match (mean, std) {
            (Some(m), Some(s)) => {
                let norm = Normalization { mean: m.clone(), std: s.clone() };
                norm.validate().map_err(|e| e.context(what))?;
                if m.len() != 1 && m.len() != self.channels as usize {
                    return Err(PtError::config(format!(
                        "{what}: mean and std need 1 or {} values (one per channel), got {}",
                        self.channels,
                        m.len()
                    )));
                }
                Ok(norm)
            }
            (None, None) => Ok(self.statistics()),
            _ => Err(PtError::config(format!("{what}: set both mean and std, or neither (computed from the data)"))),
        }
    }

    /// The dataset description: `image` [C, H, W] (uint8 normalised to float32 on the device),
    /// `label` int64, class names and counts,
    /// and the normalisation and size in the notes (objectives read `mean`/`std` from there).
    pub fn info(&self, norm: &Normalization, mut notes: serde_json::Map<String, serde_json::Value>) -> DatasetInfo {
        let mut counts = vec![0u64; self.classes.len()];
        for &l in self.labels.iter().filter(|&&l| l >= 0) {
            counts[l as usize] += 1;
        }
        notes.insert("mean".into(), serde_json::json!(norm.mean));
        notes.insert("std".into(), serde_json::json!(norm.std));
        notes.insert("channels".into(), serde_json::json!(self.channels));
        notes.insert("image_size".into(), serde_json::json!([self.height, self.width]));
        if let Some(keep) = &self.labelled {
            notes.insert("labelled_samples".into(), serde_json::json!(keep.iter().filter(|&&k| k).count()));
        }
        let mut fields = vec![pixel_field([self.channels, self.height, self.width], self.scale, norm)];
        if !self.unlabelled() {
            fields.push(FieldInfo::new("label", "int64", &[], "class index (-100: label hidden, see label_fraction)"));
        }
        DatasetInfo {
            num_samples: self.len() as u64,
            fields,
            classes: self.classes.clone(),
            class_counts: counts,
            notes,
            labelled: self
                .labelled
                .as_ref()
                .map(|keep| (0..keep.len() as u64).filter(|&i| keep[i as usize]).collect())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// `image` [B, C, H, W] uint8 (see [`pixel_field`]), `label` [B] int64 (when labelled).
    pub fn batch(&self, indices: &[u64]) -> Result<Tensors> {
        let size = self.image_bytes();
        let mut bytes = Vec::with_capacity(indices.len() * size);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let i = i as usize;
            if i >= self.len() {
                return Err(PtError::data(format!("sample index {i} is out of range (dataset has {})", self.len())));
            }
            bytes.extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
            let hidden = self.labelled.as_ref().is_some_and(|keep| !keep[i]);
            labels.push(if hidden { UNLABELLED } else { self.labels[i] });
        }
        let shape = [indices.len() as i64, self.channels, self.height, self.width];
        let image = Tensor::f_from_slice(&bytes)?.f_view(shape)?; // [batch, channels, height, width] uint8
        if self.unlabelled() {
            return Ok(Tensors::new().with("image", image));
        }
        Ok(Tensors::new().with("image", image).with("label", Tensor::f_from_slice(&labels)?))
    }
}

/// Checks labels against the class list: out of range is an error naming `file`, or with `skip`
/// a counted skip (returned as the indices to keep and how many were dropped).
pub fn check_labels(labels: &[i64], classes: usize, file: &str, skip: bool) -> Result<(Vec<usize>, u64)> {
    let mut keep = Vec::with_capacity(labels.len());
    let mut dropped = 0;
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 && (l as usize) < classes {
            keep.push(i);
        } else if skip {
            dropped += 1;
        } else {
            return Err(PtError::data(format!(
                "{file}: sample {i} has label {l}, outside the {classes} classes (0..{}); fix the file, set num_classes, \
                 or set skip_bad = true to skip such samples",
                classes.saturating_sub(1)
            )));
        }
    }
    Ok((keep, dropped))
}

impl ImageStore {
    /// Drops samples not in `keep` (after [`check_labels`]).
    pub fn retain(&mut self, keep: &[usize]) {
        if keep.len() != self.len() {
            self.select(keep);
        }
    }
}
