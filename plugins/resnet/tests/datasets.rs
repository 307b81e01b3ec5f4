//! The SDK's image datasets on the real fetched data (MNIST IDX, scikit-learn digits CSV) and on
//! PNG folders made from them, plus the bad inputs each must name clearly.

use pt_kit::vision::folder::ImageFolderConfig;
use pt_kit::vision::idx::IdxConfig;
use pt_kit::vision::pixel_csv::PixelCsvConfig;
use pt_kit::vision::{IdxImages, ImageFolder, PixelCsv};
use pt_sdk::prelude::*;
use std::path::{Path, PathBuf};

fn images_dir() -> PathBuf {
    let root = std::env::var_os("PT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from).unwrap().join(".cache/pt/data"));
    let dir = root.join("images");
    assert!(
        dir.join("mnist/t10k-images-idx3-ubyte").is_file(),
        "no image data under {}: run `python3 scripts/fetch_data.py images`",
        dir.display()
    );
    dir
}

fn ctx() -> StepCtx {
    StepCtx::default()
}

/// A batch as components receive it: the uint8 fields normalised as the host does on the device.
fn served(ds: &impl Dataset, indices: &[u64]) -> Tensors {
    let mut batch = ds.get_batch(indices, &ctx()).unwrap();
    for field in ds.info().fields {
        if let (Some(transform), Some(t)) = (&field.on_device, batch.get(&field.name)) {
            assert_eq!(t.kind(), tch::Kind::Uint8, "{} is served as uint8", field.name);
            let converted = transform.apply(&field.name, t).unwrap();
            batch.insert(&field.name, converted);
        }
    }
    batch
}

fn idx(split: &str, dir: &Path) -> Result<IdxImages> {
    IdxImages::new(
        IdxConfig { path: dir.display().to_string(), split: split.into(), ..Default::default() },
        &CreateCtx::default(),
    )
}

#[test]
fn mnist_idx_loads_with_labels_statistics_and_normalised_batches() {
    let dir = images_dir().join("mnist");
    let test = idx("test", &dir).unwrap();
    let info = test.info();
    assert_eq!(info.num_samples, 10_000);
    assert_eq!(info.classes.len(), 10);
    assert_eq!(info.class_counts.iter().sum::<u64>(), 10_000);
    assert_eq!(info.class_counts[1], 1135, "MNIST's test set has 1135 ones");
    let mean = info.notes["mean"][0].as_f64().unwrap();
    let std = info.notes["std"][0].as_f64().unwrap();
    assert!((mean - 0.1325).abs() < 2e-3 && (std - 0.3105).abs() < 2e-3, "MNIST test statistics {mean} {std}");
    let batch = served(&test, &[0, 1, 9999]);
    let image = batch.get("image").unwrap();
    assert_eq!(image.size(), [3, 1, 28, 28]);
    assert_eq!(
        Vec::<i64>::try_from(batch.get("label").unwrap()).unwrap(),
        [7, 2, 6],
        "MNIST test labels start 7, 2 and end 6"
    );
    // Background pixels are 0, i.e. -mean/std after normalisation.
    let min = image.min().double_value(&[]);
    assert!((min + mean / std).abs() < 1e-5, "{min}");
    assert!(test.get_batch(&[10_000], &ctx()).is_err());
}

#[test]
fn fashion_mnist_names_its_classes_and_subsets_are_balanced() {
    let cfg = IdxConfig {
        path: images_dir().join("fashion-mnist").display().to_string(),
        max_per_class: 30,
        mean: Some(vec![0.286]),
        std: Some(vec![0.353]),
        ..Default::default()
    };
    let train = IdxImages::new(cfg, &CreateCtx::default()).unwrap();
    let info = train.info();
    assert_eq!(info.classes[0], "T-shirt/top");
    assert_eq!(info.class_counts, vec![30; 10]);
    assert_eq!(info.notes["mean"][0].as_f64(), Some(0.286));
}

#[test]
fn a_truncated_or_mismatched_idx_file_is_a_clear_error() {
    let src = images_dir().join("mnist");
    let dir = tempfile::tempdir().unwrap();
    let images = std::fs::read(src.join("t10k-images-idx3-ubyte")).unwrap();
    let labels = std::fs::read(src.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &images[..images.len() - 100]).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let err = idx("test", dir.path()).err().unwrap().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte") && err.contains("10000×28×28") && err.contains("re-fetch"), "{err}");

    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &labels[..labels.len() - 10]).unwrap();
    let err = idx("test", dir.path()).err().unwrap().to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte"), "{err}");

    let mut bad_label = labels.clone();
    bad_label[8 + 5] = 12;
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &bad_label).unwrap();
    let cfg = |skip| IdxConfig {
        path: dir.path().display().to_string(),
        split: "test".into(),
        num_classes: Some(10),
        skip_bad: skip,
        ..Default::default()
    };
    let err = IdxImages::new(cfg(false), &CreateCtx::default()).err().unwrap().to_string();
    assert!(err.contains("sample 5 has label 12") && err.contains("skip_bad"), "{err}");
    let skipped = IdxImages::new(cfg(true), &CreateCtx::default()).unwrap();
    assert_eq!(skipped.info().num_samples, 9_999);
    assert_eq!(skipped.info().notes["skipped_bad_labels"], 1);

    let err = idx("test", &dir.path().join("missing")).err().unwrap().to_string();
    assert!(err.contains("fetch_data.py images"), "{err}");
}

fn digits(split: &str) -> PixelCsv {
    let cfg = PixelCsvConfig {
        path: images_dir().join("digits/digits.csv").display().to_string(),
        split: split.into(),
        ..Default::default()
    };
    PixelCsv::new(cfg, &CreateCtx::default()).unwrap()
}

#[test]
fn digits_csv_splits_deterministically_into_disjoint_parts() {
    let all = digits("all").info();
    assert_eq!(all.num_samples, 1797);
    assert_eq!(all.notes["image_size"], serde_json::json!([8, 8]));
    let (train, test) = (digits("train"), digits("test"));
    assert_eq!(train.info().num_samples + test.info().num_samples, 1797);
    let share = test.info().num_samples as f64 / 1797.0;
    assert!((share - 0.2).abs() < 0.04, "{share}");
    let b = test.get_batch(&[0, 1], &ctx()).unwrap();
    assert_eq!(b.get("image").unwrap().size(), [2, 1, 8, 8]);
    // Same rows every time.
    let again = digits("test").get_batch(&[0, 1], &ctx()).unwrap();
    assert!(b.get("image").unwrap().equal(again.get("image").unwrap()));
}

#[test]
fn a_malformed_csv_row_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("px.csv");
    std::fs::write(&path, "0,1,2,3,1\n0,1,x,3,0\n4,4,4,4,1\n").unwrap();
    let cfg = |skip| PixelCsvConfig { path: path.display().to_string(), skip_bad: skip, ..Default::default() };
    let err = PixelCsv::new(cfg(false), &CreateCtx::default()).err().unwrap().to_string();
    assert!(err.contains("px.csv:2") && err.contains("not a number"), "{err}");
    let ok = PixelCsv::new(cfg(true), &CreateCtx::default()).unwrap();
    assert_eq!(ok.info().num_samples, 2);
    assert_eq!(ok.info().notes["skipped_rows"], 1);
}

/// Writes `n` digits per class as PNGs under `root/<class>/`.
fn digit_pngs(root: &Path, per_class: usize) {
    let data = digits("all");
    let info = data.info();
    let (mean, std) = (info.notes["mean"][0].as_f64().unwrap(), info.notes["std"][0].as_f64().unwrap());
    let mut written = vec![0; 10];
    for i in 0..info.num_samples {
        let b = served(&data, &[i]);
        let label = b.get("label").unwrap().int64_value(&[0]) as usize;
        if written[label] >= per_class {
            continue;
        }
        let px = (b.get("image").unwrap() * std + mean).clamp(0.0, 1.0) * 255.0;
        let bytes: Vec<u8> = Vec::<f32>::try_from(px.flatten(0, -1)).unwrap().iter().map(|v| v.round() as u8).collect();
        let dir = root.join(format!("digit{label}"));
        std::fs::create_dir_all(&dir).unwrap();
        image::GrayImage::from_raw(8, 8, bytes).unwrap().save(dir.join(format!("{i:04}.png"))).unwrap();
        written[label] += 1;
    }
}

#[test]
fn image_folder_reads_class_trees_resizes_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    digit_pngs(dir.path(), 3);
    let cfg = |size: Option<i64>, skip: bool| ImageFolderConfig {
        path: dir.path().display().to_string(),
        image_size: size,
        skip_bad: skip,
        ..Default::default()
    };
    let ds = ImageFolder::new(cfg(None, false), &CreateCtx::default()).unwrap();
    let info = ds.info();
    assert_eq!(info.num_samples, 30);
    assert_eq!(info.classes[0], "digit0");
    assert_eq!(info.fields[0].shape, [3, 8, 8], "grayscale PNGs become RGB with channels = 3");
    let b = ds.get_batch(&[0, 29], &ctx()).unwrap();
    assert_eq!(Vec::<i64>::try_from(b.get("label").unwrap()).unwrap(), [0, 9]);
    let resized = ImageFolder::new(cfg(Some(16), false), &CreateCtx::default()).unwrap();
    assert_eq!(resized.info().fields[0].shape, [3, 16, 16]);

    std::fs::write(dir.path().join("digit3/zz-corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = ImageFolder::new(cfg(None, false), &CreateCtx::default()).err().unwrap().to_string();
    assert!(err.contains("zz-corrupt.png") && err.contains("skip_bad"), "{err}");
    let skipped = ImageFolder::new(cfg(None, true), &CreateCtx::default()).unwrap();
    assert_eq!(skipped.info().num_samples, 30);
    assert_eq!(skipped.info().notes["skipped_images"], 1);

    std::fs::create_dir_all(dir.path().join("empty_class")).unwrap();
    let err = ImageFolder::new(cfg(None, true), &CreateCtx::default())
        .map(|d| d.info().notes["skipped_empty_classes"].clone());
    assert_eq!(err.unwrap(), serde_json::json!(["empty_class"]));
    std::fs::remove_file(dir.path().join("digit3/zz-corrupt.png")).unwrap();
    let err = ImageFolder::new(cfg(None, false), &CreateCtx::default()).err().unwrap().to_string();
    assert!(err.contains("empty_class") && err.contains("no .png"), "{err}");
}
