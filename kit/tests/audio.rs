//! `pt_kit::audio` on real WAV files written with hound: decoding of every supported encoding,
//! resampling and downmixing, batches (padding, mask, crop, normalisation), labels, and the error
//! or counted skip for each kind of bad input.
//! Run: `cargo test --release -p pt-sdk --features audio --test audio`.

use hound::{SampleFormat, WavSpec, WavWriter};
use pt_kit::audio::{read_wav, read_wav_header, AudioConfig, AudioFiles};
use pt_sdk::{Component, CreateCtx, Dataset, DatasetInfo, PtError, StepCtx, Tensors};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

fn spec(rate: u32, channels: u16, bits: u16, float: bool) -> WavSpec {
    WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float { SampleFormat::Float } else { SampleFormat::Int },
    }
}

fn sine(freq: f64, rate: u32, frames: usize, amplitude: f64) -> Vec<f64> {
    (0..frames).map(|i| amplitude * (2.0 * PI * freq * i as f64 / rate as f64).sin()).collect()
}

/// Writes interleaved samples in [-1, 1] as integer PCM of `bits` bits.
fn write_int(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[f64]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut w = WavWriter::create(path, spec(rate, channels, bits, false)).unwrap();
    let full = (1i64 << (bits - 1)) as f64;
    for &x in samples {
        let v = (x * full).round().clamp(-full, full - 1.0);
        match bits {
            8 => w.write_sample(v as i8).unwrap(),
            16 => w.write_sample(v as i16).unwrap(),
            _ => w.write_sample(v as i32).unwrap(),
        }
    }
    w.finalize().unwrap();
}

fn write_float(path: &Path, rate: u32, samples: &[f32]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut w = WavWriter::create(path, spec(rate, 1, 32, true)).unwrap();
    for &x in samples {
        w.write_sample(x).unwrap();
    }
    w.finalize().unwrap();
}

/// A 16 kHz mono 16-bit 440 Hz sine of `frames` samples.
fn write_tone(path: &Path, frames: usize) {
    write_int(path, 16_000, 1, 16, &sine(440.0, 16_000, frames, 0.5));
}

fn open(path: &Path, tweak: impl FnOnce(&mut AudioConfig)) -> pt_sdk::Result<AudioFiles> {
    let mut cfg = AudioConfig { path: path.display().to_string(), ..Default::default() };
    tweak(&mut cfg);
    AudioFiles::new(cfg, &CreateCtx::default())
}

fn ctx(train: bool, epoch: u64) -> StepCtx {
    StepCtx { seed: 11, epoch, train, ..Default::default() }
}

fn floats(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.reshape([-1])).unwrap()
}

fn ints(t: &tch::Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.reshape([-1])).unwrap()
}

fn batch(ds: &AudioFiles, indices: &[u64], ctx: &StepCtx) -> Tensors {
    ds.get_batch(indices, ctx).unwrap()
}

fn zero_crossings(x: &[f32]) -> usize {
    x.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count()
}

fn expect_error(result: pt_sdk::Result<AudioFiles>, needles: &[&str]) -> PtError {
    let err = match result {
        Ok(ds) => panic!("expected an error mentioning {needles:?}, got a dataset of {} clips", ds.len()),
        Err(e) => e,
    };
    for needle in needles {
        assert!(err.message.contains(needle), "error should mention '{needle}': {}", err.message);
    }
    err
}

fn skipped(info: &DatasetInfo) -> (u64, serde_json::Value) {
    (info.notes["skipped"].as_u64().unwrap(), info.notes.get("skipped_reasons").cloned().unwrap_or_default())
}

#[test]
fn batch_pads_unequal_clips_on_the_right_and_masks_the_padding() {
    let dir = tempfile::tempdir().unwrap();
    // Sorted by path: a (8000), b (4000), c (12000).
    write_tone(&dir.path().join("a.wav"), 8000);
    write_tone(&dir.path().join("b.wav"), 4000);
    write_tone(&dir.path().join("sub/c.wav"), 12000);
    std::fs::write(dir.path().join("readme.txt"), "not audio, not a .wav: ignored").unwrap();
    let ds = open(dir.path(), |c| c.normalize = false).unwrap();
    let info = ds.info();
    assert_eq!(info.num_samples, 3);
    assert_eq!(info.lengths, vec![8000, 4000, 12000]);
    assert_eq!(info.field_names(), vec!["input_values", "attention_mask"]);
    assert_eq!(info.fields[0].dtype, "float32");
    assert_eq!(info.fields[0].shape, vec![-1]);
    assert_eq!(info.fields[1].dtype, "int64");
    assert!(info.classes.is_empty());
    assert_eq!(info.notes["sample_rate"], 16_000);
    assert_eq!(info.notes["total_seconds"], 1.5);
    assert_eq!(info.notes["resampled"], 0);
    assert_eq!(info.notes["downmixed"], 0);
    assert_eq!(info.notes["skipped"], 0);
    assert!(ds.path(2).unwrap().ends_with("sub/c.wav"));

    let b = batch(&ds, &[1, 2, 0], &ctx(true, 0));
    let values = b.require("input_values").unwrap();
    let mask = b.require("attention_mask").unwrap();
    assert_eq!(values.size(), vec![3, 12000]);
    assert_eq!(mask.size(), vec![3, 12000]);
    assert_eq!(values.kind(), tch::Kind::Float);
    assert_eq!(mask.kind(), tch::Kind::Int64);
    assert!(!b.contains("label"));
    let (v, m) = (floats(values), ints(mask));
    let expected = sine(440.0, 16_000, 12000, 0.5);
    for (row, len) in [(0usize, 4000usize), (1, 12000), (2, 8000)] {
        let r = &v[row * 12000..(row + 1) * 12000];
        let mr = &m[row * 12000..(row + 1) * 12000];
        assert!(mr[..len].iter().all(|&x| x == 1) && mr[len..].iter().all(|&x| x == 0), "row {row} mask");
        assert!(r[len..].iter().all(|&x| x == 0.0), "row {row} padding is zero");
        // 16-bit PCM decodes to the written sine within one quantisation step.
        let worst = (0..len).map(|i| (r[i] as f64 - expected[i]).abs()).fold(0.0, f64::max);
        assert!(worst <= 1.0 / 32768.0 + 1e-7, "row {row}: deviation {worst}");
    }
}

#[test]
fn stereo_44k_clip_is_downmixed_and_resampled_keeping_its_frequency() {
    let dir = tempfile::tempdir().unwrap();
    let frames = 44_100; // one second
    let left = sine(440.0, 44_100, frames, 0.8);
    let right = sine(440.0, 44_100, frames, 0.4);
    let interleaved: Vec<f64> = left.iter().zip(&right).flat_map(|(l, r)| [*l, *r]).collect();
    let path = dir.path().join("stereo.wav");
    write_int(&path, 44_100, 2, 16, &interleaved);

    let (mono, facts) = read_wav(&path, 16_000).unwrap();
    assert_eq!((facts.sample_rate, facts.channels, facts.frames), (44_100, 2, 44_100));
    let expected_len = (frames as f64 * 16_000.0 / 44_100.0).ceil() as usize;
    assert!(mono.len().abs_diff(expected_len) <= 2, "{} samples, expected ≈ {expected_len}", mono.len());
    // 440 Hz for one second: 880 sign changes.
    let crossings = zero_crossings(&mono);
    assert!(crossings.abs_diff(880) <= 4, "{crossings} zero crossings");
    // The mix is a 0.6-amplitude sine: RMS 0.6/√2 away from the edges.
    let middle = &mono[1000..15000];
    let rms = (middle.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
    assert!((rms - 0.6 / 2f64.sqrt()).abs() < 0.01, "rms {rms}");
    // And it is that sine, in phase (within a fraction of an input sample).
    let ideal = sine(440.0, 16_000, mono.len(), 0.6);
    let worst = (1000..15000).map(|i| (mono[i] as f64 - ideal[i]).abs()).fold(0.0, f64::max);
    assert!(worst < 0.03, "deviation from the ideal 16 kHz sine: {worst}");

    let ds = open(dir.path(), |c| c.normalize = false).unwrap();
    let info = ds.info();
    assert_eq!(info.notes["resampled"], 1);
    assert_eq!(info.notes["downmixed"], 1);
    assert_eq!(info.lengths, vec![mono.len() as u64]);
    let b = batch(&ds, &[0], &ctx(false, 0));
    assert_eq!(floats(b.require("input_values").unwrap()), mono);
}

#[test]
fn reads_8_16_24_32_bit_integer_and_float_wavs() {
    let dir = tempfile::tempdir().unwrap();
    let tone = sine(440.0, 16_000, 1600, 0.7);
    for bits in [8u16, 16, 24, 32] {
        let path = dir.path().join(format!("int{bits}.wav"));
        write_int(&path, 16_000, 1, bits, &tone);
        let (x, facts) = read_wav(&path, 16_000).unwrap();
        assert_eq!((facts.bits_per_sample, facts.float, x.len()), (bits, false, 1600));
        let step = 1.0 / (1u64 << (bits - 1)) as f64;
        let worst = x.iter().zip(&tone).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst <= step / 2.0 + 1e-6, "{bits}-bit: deviation {worst}");
    }
    let values: Vec<f32> = tone.iter().map(|&v| v as f32).collect();
    let path = dir.path().join("float.wav");
    write_float(&path, 16_000, &values);
    let (x, facts) = read_wav(&path, 16_000).unwrap();
    assert!(facts.float);
    assert_eq!(x, values);
    assert_eq!(read_wav_header(&path).unwrap(), facts);
    // All five open as one dataset.
    assert_eq!(open(dir.path(), |_| {}).unwrap().len(), 5);
}

#[test]
fn training_crops_are_random_but_replayable_and_evaluation_crops_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // A float ramp: every sample value is distinct, so a crop's first value gives its offset.
    let n = 48_000; // 3 s at 16 kHz
    let ramp: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
    write_float(&dir.path().join("long.wav"), 16_000, &ramp);
    write_tone(&dir.path().join("short.wav"), 8000);
    let ds = open(dir.path(), |c| {
        c.max_seconds = 1.0;
        c.normalize = false;
    })
    .unwrap();
    let info = ds.info();
    assert_eq!(info.lengths, vec![16_000, 8000]);
    assert_eq!(info.notes["cropped"], 1);
    let offset = |c: &StepCtx| {
        let x = ds.clip(0, c).unwrap();
        assert_eq!(x.len(), 16_000);
        let start = (x[0] * n as f32).round() as usize;
        assert_eq!(x, ramp[start..start + 16_000], "a contiguous window");
        start
    };
    let first = offset(&ctx(true, 0));
    assert_eq!(first, offset(&ctx(true, 0)), "same seed, epoch and index: same crop");
    let offsets: Vec<usize> = (0..6).map(|e| offset(&ctx(true, e))).collect();
    assert!(offsets.iter().any(|&o| o != first), "epochs draw new offsets: {offsets:?}");
    assert!(offsets.iter().all(|&o| o <= n - 16_000));
    let other_seed = StepCtx { seed: 12, ..ctx(true, 0) };
    assert_ne!(offset(&other_seed), first);
    assert_eq!(offset(&ctx(false, 0)), 0);
    assert_eq!(offset(&ctx(false, 5)), 0);
    // In a batch the cropped clip sets the width.
    let b = batch(&ds, &[0, 1], &ctx(true, 3));
    assert_eq!(b.require("input_values").unwrap().size(), vec![2, 16_000]);
    assert_eq!(
        ints(&b.require("attention_mask").unwrap().sum_dim_intlist(1, false, tch::Kind::Int64)),
        vec![16_000, 8000]
    );
}

#[test]
fn normalisation_gives_each_clip_zero_mean_and_unit_variance_over_its_real_samples() {
    let dir = tempfile::tempdir().unwrap();
    let offset: Vec<f64> = sine(300.0, 16_000, 6000, 0.3).iter().map(|v| v + 0.2).collect();
    write_int(&dir.path().join("a.wav"), 16_000, 1, 16, &offset);
    write_tone(&dir.path().join("b.wav"), 3000);
    let raw = open(dir.path(), |c| c.normalize = false).unwrap();
    let normed = open(dir.path(), |_| {}).unwrap();
    assert_eq!(normed.info().notes["normalize"], true);
    let b = batch(&normed, &[0, 1], &ctx(false, 0));
    let v = floats(b.require("input_values").unwrap());
    for (row, len) in [(0usize, 6000usize), (1, 3000)] {
        let r = &v[row * 6000..row * 6000 + len];
        let mean = r.iter().map(|&x| x as f64).sum::<f64>() / len as f64;
        let var = r.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / len as f64;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "row {row}: mean {mean}, var {var}");
        // Exactly Hugging Face's formula on the raw clip.
        let x = raw.clip(row as u64, &ctx(false, 0)).unwrap();
        let m = x.iter().map(|&a| a as f64).sum::<f64>() / len as f64;
        let s = (x.iter().map(|&a| (a as f64 - m).powi(2)).sum::<f64>() / len as f64 + 1e-7).sqrt();
        let worst = x.iter().zip(r).map(|(a, b)| ((*a as f64 - m) / s - *b as f64).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "row {row}: {worst}");
    }
    assert!(v[6000 + 3000..].iter().all(|&x| x == 0.0), "padding stays zero after normalisation");
}

#[test]
fn manifest_labels_and_roots() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    write_tone(&clips.join("y1.wav"), 1000);
    write_tone(&clips.join("n1.wav"), 2000);
    write_tone(&clips.join("deep/y2.wav"), 3000);
    // Root relative to the manifest's own folder.
    let manifest = dir.path().join("train.tsv");
    std::fs::write(&manifest, "clips\ny1.wav\t1000\tyes\n\nn1.wav\t2000\tno\ndeep/y2.wav\t3000\tyes\n").unwrap();
    let ds = open(&manifest, |_| {}).unwrap();
    let info = ds.info();
    assert_eq!(info.classes, vec!["no", "yes"]);
    assert_eq!(info.class_counts, vec![1, 2]);
    assert_eq!(info.lengths, vec![1000, 2000, 3000], "manifest order");
    assert_eq!(info.field_names(), vec!["input_values", "attention_mask", "label"]);
    let b = batch(&ds, &[2, 1, 0], &ctx(true, 0));
    assert_eq!(ints(b.require("label").unwrap()), vec![1, 0, 1]);
    assert_eq!(b.require("label").unwrap().kind(), tch::Kind::Int64);

    // labels = none ignores the column; max_samples keeps the first lines.
    let plain = open(&manifest, |c| {
        c.labels = pt_kit::audio::LabelSource::Unlabelled;
        c.max_samples = 2;
    })
    .unwrap();
    assert!(plain.info().classes.is_empty());
    assert_eq!(plain.info().lengths, vec![1000, 2000]);
    assert!(!batch(&plain, &[0], &ctx(true, 0)).contains("label"));

    // "." root, the manifest inside the clip folder, no labels.
    let inside = clips.join("all.tsv");
    std::fs::write(&inside, ".\nn1.wav\t2000\n").unwrap();
    assert_eq!(open(&inside, |_| {}).unwrap().info().lengths, vec![2000]);
    // An absolute root.
    let absolute = dir.path().join("abs.tsv");
    std::fs::write(&absolute, format!("{}\ndeep/y2.wav\t3000\n", clips.display())).unwrap();
    assert_eq!(open(&absolute, |_| {}).unwrap().info().lengths, vec![3000]);
}

#[test]
fn folder_labels_come_from_the_class_sub_folders() {
    let dir = tempfile::tempdir().unwrap();
    write_tone(&dir.path().join("dog/a.wav"), 1000);
    write_tone(&dir.path().join("cat/b.wav"), 1000);
    write_tone(&dir.path().join("dog/speaker2/c.wav"), 1000);
    let ds = open(dir.path(), |c| c.labels = pt_kit::audio::LabelSource::Folder).unwrap();
    let info = ds.info();
    assert_eq!(info.classes, vec!["cat", "dog"]);
    assert_eq!(info.class_counts, vec![1, 2]);
    // Sorted paths: cat/b, dog/a, dog/speaker2/c.
    assert_eq!(ints(batch(&ds, &[0, 1, 2], &ctx(true, 0)).require("label").unwrap()), vec![0, 1, 1]);
    // A folder without labels setting is unlabelled.
    assert!(open(dir.path(), |_| {}).unwrap().info().classes.is_empty());
    // A clip directly in the root has no class.
    write_tone(&dir.path().join("stray.wav"), 1000);
    expect_error(
        open(dir.path(), |c| c.labels = pt_kit::audio::LabelSource::Folder),
        &["stray.wav", "class sub-folder"],
    );
}

/// A 44-byte-header WAV of 64-bit float samples, which pt does not read.
fn write_f64_wav(path: &Path) {
    let data: Vec<u8> = (0..800).flat_map(|i| (i as f64 / 800.0).to_le_bytes()).collect();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    bytes.extend_from_slice(&(16_000u32 * 8).to_le_bytes());
    bytes.extend_from_slice(&8u16.to_le_bytes()); // block align
    bytes.extend_from_slice(&64u16.to_le_bytes()); // bits
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

/// A folder with one good clip and one bad file.
fn folder_with(bad: impl FnOnce(&Path) -> PathBuf) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_tone(&dir.path().join("good.wav"), 2000);
    let bad = bad(dir.path());
    (dir, bad)
}

#[test]
fn bad_files_fail_naming_the_file_or_are_counted_with_skip_bad() {
    type MakeBad = Box<dyn Fn(&Path) -> PathBuf>;
    let cases: Vec<(&str, MakeBad, Vec<&str>)> = vec![
        (
            "not a WAV",
            Box::new(|d| {
                let p = d.join("notes.wav");
                std::fs::write(&p, "these are meeting notes, not audio").unwrap();
                p
            }),
            vec!["notes.wav", "not a readable WAV file"],
        ),
        (
            "truncated",
            Box::new(|d| {
                let p = d.join("cut.wav");
                write_tone(&p, 4000);
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
                p
            }),
            vec!["cut.wav", "truncated"],
        ),
        (
            "header cut",
            Box::new(|d| {
                let p = d.join("stub.wav");
                write_tone(&p, 4000);
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..20]).unwrap();
                p
            }),
            vec!["stub.wav", "truncated"],
        ),
        (
            "64-bit float",
            Box::new(|d| {
                let p = d.join("double.wav");
                write_f64_wav(&p);
                p
            }),
            vec!["double.wav", "unsupported", "32-bit float"],
        ),
        (
            "too short",
            Box::new(|d| {
                let p = d.join("blip.wav");
                write_tone(&p, 120);
                p
            }),
            vec!["blip.wav", "120 samples", "min_samples = 400", "set skip_bad = true to skip such clips"],
        ),
    ];
    for (what, make, needles) in cases {
        let (dir, _bad) = folder_with(make);
        expect_error(open(dir.path(), |_| {}), &needles);
        let ds = open(dir.path(), |c| c.skip_bad = true).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(ds.len(), 1, "{what}: the good clip stays");
        assert!(ds.path(0).unwrap().ends_with("good.wav"));
        let (count, reasons) = skipped(&ds.info());
        assert_eq!(count, 1, "{what}: {reasons}");
        assert_eq!(reasons.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 1);
        // The good clip still serves a batch.
        assert_eq!(batch(&ds, &[0], &ctx(true, 0)).require("input_values").unwrap().size(), vec![1, 2000]);
    }
}

#[test]
fn bad_manifest_lines_fail_naming_file_and_line_or_are_counted_with_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    write_tone(&dir.path().join("a.wav"), 1000);
    write_tone(&dir.path().join("b.wav"), 2000);
    let cases = [
        ("missing column", "a.wav\t1000\nb.wav\n", vec!["line 3", "1 column"]),
        ("not a number", "a.wav\t1000\nb.wav\tlots\n", vec!["line 3", "'lots' is not a whole number"]),
        ("wrong count", "a.wav\t1000\nb.wav\t1999\n", vec!["line 3", "num_samples is 1999", "b.wav", "2000 frames"]),
        ("missing file", "a.wav\t1000\ngone.wav\t1000\n", vec!["line 3", "gone.wav"]),
        ("mixed labels", "a.wav\t1000\tx\nb.wav\t2000\n", vec!["line 3", "no label column", "line 2"]),
        ("too short", "a.wav\t1000\nb.wav\t2000\n", vec!["line 2", "a.wav", "shorter than min_samples"]),
    ];
    for (i, (what, body, needles)) in cases.into_iter().enumerate() {
        let manifest = dir.path().join(format!("case{i}.tsv"));
        std::fs::write(&manifest, format!(".\n{body}")).unwrap();
        let min = if what == "too short" { 1500 } else { 400 };
        let err = expect_error(open(&manifest, |c| c.min_samples = min), &needles);
        assert!(err.message.contains(&format!("case{i}.tsv")), "{what}: names the manifest: {}", err.message);
        let ds = open(&manifest, |c| {
            c.min_samples = min;
            c.skip_bad = true;
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let kept = if what == "too short" { 2000 } else { 1000 };
        assert_eq!(ds.info().lengths, vec![kept], "{what}");
        assert_eq!(skipped(&ds.info()).0, 1, "{what}");
    }
    // Structural problems are errors even with skip_bad.
    let no_root = dir.path().join("noroot.tsv");
    std::fs::write(&no_root, "a.wav\t1000\n").unwrap();
    expect_error(open(&no_root, |c| c.skip_bad = true), &["noroot.tsv", "root directory"]);
    let empty = dir.path().join("empty.tsv");
    std::fs::write(&empty, "\n\n").unwrap();
    expect_error(open(&empty, |c| c.skip_bad = true), &["empty.tsv", "empty manifest"]);
    let all_bad = dir.path().join("allbad.tsv");
    std::fs::write(&all_bad, ".\na.wav\tx\n").unwrap();
    expect_error(open(&all_bad, |c| c.skip_bad = true), &["allbad.tsv", "no usable clips"]);
}

#[test]
fn config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_tone(&dir.path().join("a.wav"), 1000);
    expect_error(AudioFiles::new(AudioConfig::default(), &CreateCtx::default()), &["set path"]);
    expect_error(open(dir.path(), |c| c.sample_rate = 0), &["sample_rate"]);
    expect_error(open(dir.path(), |c| c.max_seconds = -1.0), &["max_seconds"]);
    expect_error(open(dir.path(), |c| c.max_seconds = 0.01), &["below min_samples"]);
    expect_error(open(&dir.path().join("missing"), |_| {}), &["missing", "does not exist"]);
    let empty = tempfile::tempdir().unwrap();
    expect_error(open(empty.path(), |_| {}), &["no .wav/.flac/.ogg/.opus/.mp3 audio found"]);
    // Paths expand {data}.
    let ctx = CreateCtx { data_dir: dir.path().display().to_string(), ..Default::default() };
    let cfg = AudioConfig { path: "{data}".into(), ..Default::default() };
    assert_eq!(AudioFiles::new(cfg, &ctx).unwrap().len(), 1);
    // Out-of-range indices are errors, not panics.
    let ds = open(dir.path(), |_| {}).unwrap();
    assert!(ds.get_batch(&[1], &StepCtx::default()).unwrap_err().message.contains("out of range"));
    // Older hosts and plugins omit `lengths`: it defaults to empty.
    let old: DatasetInfo = serde_json::from_str(r#"{"num_samples": 3}"#).unwrap();
    assert!(old.lengths.is_empty());
}

#[test]
fn a_clip_changed_after_opening_is_reported_at_batch_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    write_tone(&path, 4000);
    let ds = open(dir.path(), |_| {}).unwrap();
    write_tone(&path, 3000);
    let err = ds.get_batch(&[0], &ctx(true, 0)).unwrap_err();
    assert!(err.message.contains("a.wav") && err.message.contains("changed"), "{}", err.message);
}

#[test]
fn alsa_sample_wavs_decode_and_resample() {
    let dir = Path::new("/usr/share/sounds/alsa");
    if !dir.join("Front_Center.wav").exists() {
        println!("note: /usr/share/sounds/alsa/*.wav not found (Debian package alsa-utils); skipping this test");
        return;
    }
    let ds = open(dir, |c| {
        c.max_seconds = 0.0;
        c.normalize = false;
    })
    .unwrap();
    let info = ds.info();
    assert!(info.num_samples >= 9, "{}", info.num_samples);
    let n = info.num_samples as usize;
    assert_eq!(info.notes["skipped"], 0);
    let all: Vec<u64> = (0..n as u64).collect();
    let b = batch(&ds, &all, &ctx(false, 0));
    let values = b.require("input_values").unwrap();
    assert_eq!(values.size()[0], n as i64);
    let lengths = ints(&b.require("attention_mask").unwrap().sum_dim_intlist(1, false, tch::Kind::Int64));
    assert_eq!(lengths, info.lengths.iter().map(|&l| l as i64).collect::<Vec<_>>());
    for i in 0..n {
        let path = ds.path(i).unwrap().to_path_buf();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let spec = reader.spec();
        assert_eq!(spec.sample_format, SampleFormat::Int);
        let original: Vec<f64> = reader.samples::<i32>().map(|s| s.unwrap() as f64 / 32768.0).collect();
        let frames = original.len() / spec.channels as usize;
        let expected = (frames as u64 * 16_000).div_ceil(spec.sample_rate as u64);
        assert_eq!(info.lengths[i], expected, "{}", path.display());
        let clip = ds.clip(i as u64, &ctx(false, 0)).unwrap();
        assert!(clip.iter().all(|x| x.is_finite() && x.abs() < 1.5));
        if spec.channels == 1 && spec.sample_rate > 16_000 {
            // Speech and these test noises keep > 90 % of their power below 8 kHz: the
            // anti-aliased resampler preserves that part and nothing more.
            let power = |x: &mut dyn Iterator<Item = f64>, n: usize| x.map(|v| v * v).sum::<f64>() / n as f64;
            let before = power(&mut original.iter().copied(), original.len());
            let after = power(&mut clip.iter().map(|&v| v as f64), clip.len());
            let ratio = after / before;
            assert!((0.9..1.02).contains(&ratio), "{}: power ratio {ratio}", path.display());
        }
    }
}

/// Issue 19 (6): a header claiming 1 Hz (an 80 KB file would decode to 3.3 GB at 16 kHz) is an
/// error naming the file, before anything is decoded.
#[test]
fn an_absurd_sample_rate_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-hertz.wav");
    write_int(&path, 1, 1, 16, &sine(0.1, 1, 40_000, 0.5));
    for e in [read_wav_header(&path).unwrap_err().to_string(), read_wav(&path, 16_000).unwrap_err().to_string()] {
        assert!(e.contains("one-hertz.wav") && e.contains("1 Hz, below the 1000 Hz pt reads"), "{e}");
    }
}

/// Converts `wav` with sox (installed by scripts/setup.sh for the speech set) to `out`.
fn sox(wav: &Path, out: &Path) {
    let st = std::process::Command::new("sox").arg(wav).arg(out).status().expect("sox (scripts/setup.sh installs it)");
    assert!(st.success(), "sox {} {} failed", wav.display(), out.display());
}

/// Issue 21: FLAC (lossless: the very samples of the WAV) and Ogg Vorbis clips are read like
/// WAV, in folders and in fairseq manifests (a LibriSpeech-style FLAC manifest used to fail
/// with "no RIFF tag found"); a corrupt FLAC is an error naming it.
#[test]
fn flac_and_ogg_read_like_wav_in_folders_and_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("src/tone.wav");
    write_int(&wav, 22_050, 2, 16, &sine(440.0, 22_050, 2 * 11_025, 0.5));
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("speaker-1")).unwrap();
    let (flac, ogg) = (corpus.join("speaker-1/a.flac"), corpus.join("b.ogg"));
    sox(&wav, &flac);
    sox(&wav, &ogg);
    let (from_wav, wav_facts) = read_wav(&wav, 16_000).unwrap();
    let (from_flac, flac_facts) = read_wav(&flac, 16_000).unwrap();
    assert_eq!((flac_facts.sample_rate, flac_facts.channels, flac_facts.frames), (22_050, 2, 11_025));
    assert_eq!(read_wav_header(&flac).unwrap().frames, wav_facts.frames);
    assert_eq!(from_flac, from_wav, "FLAC is lossless");
    let (from_ogg, ogg_facts) = read_wav(&ogg, 16_000).unwrap();
    assert_eq!(read_wav_header(&ogg).unwrap().frames, ogg_facts.frames, "the header pass counts what decoding gives");
    let n = from_ogg.len().min(from_wav.len());
    assert!(n as f64 > 0.95 * from_wav.len() as f64, "{} of {} samples", from_ogg.len(), from_wav.len());
    let dot: f64 = (0..n).map(|i| from_ogg[i] as f64 * from_wav[i] as f64).sum();
    let norm = |v: &[f32]| v[..n].iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    assert!(dot / (norm(&from_ogg) * norm(&from_wav)) > 0.99, "Vorbis is lossy but close");

    // A folder of them, and a fairseq manifest pointing at the FLAC.
    let ds = open(&corpus, |c| c.normalize = false).unwrap();
    assert_eq!(ds.info().num_samples, 2);
    assert_eq!(ds.info().notes["resampled"], 2);
    let manifest = dir.path().join("train.tsv");
    std::fs::write(&manifest, format!("{}\nspeaker-1/a.flac\t11025\n", corpus.display())).unwrap();
    let ds = open(&manifest, |c| c.normalize = false).unwrap();
    let b = batch(&ds, &[0], &ctx(false, 0));
    assert_eq!(floats(b.require("input_values").unwrap()), from_wav);

    let broken = corpus.join("broken.flac");
    let bytes = std::fs::read(&flac).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(corpus.join("garbage.flac"), b"fLaC but nothing more").unwrap();
    let e = open(&corpus, |_| {}).err().expect("a corrupt FLAC is refused").to_string();
    assert!(e.contains("broken.flac") || e.contains("garbage.flac"), "{e}");
    let ds = open(&corpus, |c| c.skip_bad = true).unwrap();
    assert_eq!(ds.info().num_samples, 2, "{:?}", ds.info().notes);
}

/// Issue 21: Opus (opusenc from a WAV) reads as opusdec decodes it: the same length (the last
/// granule less the pre-skip, no decoding at open) and the same samples; it also reads from a
/// folder.
#[test]
fn opus_reads_as_opusdec_decodes_it() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    write_int(&wav, 24_000, 2, 16, &sine(330.0, 24_000, 2 * 36_000, 0.5));
    let opus = dir.path().join("clips/tone.opus");
    std::fs::create_dir_all(opus.parent().unwrap()).unwrap();
    let run = |cmd: &str, args: &[&Path]| {
        let st =
            std::process::Command::new(cmd).arg("--quiet").args(args).status().expect("opus-tools (scripts/setup.sh)");
        assert!(st.success(), "{cmd} failed");
    };
    run("opusenc", &[&wav, &opus]);
    let reference = dir.path().join("opusdec.wav");
    let st = std::process::Command::new("opusdec")
        .args(["--quiet", "--rate", "48000", "--float"])
        .arg(&opus)
        .arg(&reference)
        .status()
        .unwrap();
    assert!(st.success());
    let (theirs, their_facts) = read_wav(&reference, 48_000).unwrap();
    let facts = read_wav_header(&opus).unwrap();
    assert_eq!((facts.sample_rate, facts.channels, facts.frames), (48_000, 2, their_facts.frames));
    assert_eq!(facts.frames, 72_000, "1.5 s at 48 kHz");
    let (ours, _) = read_wav(&opus, 48_000).unwrap();
    assert_eq!(ours.len(), theirs.len());
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "largest difference from opusdec: {worst}");
    let ds = open(&opus.parent().unwrap().to_path_buf(), |c| c.normalize = false).unwrap();
    assert_eq!(ds.info().lengths, vec![16_000 * 3 / 2]);
}

/// Issue 21: a JSON-lines manifest (NeMo's `audio_filepath`, or `path`; labels as strings or
/// numbers; files relative to the manifest) reads as the TSV one does; a bad line is named.
#[test]
fn json_lines_manifests_read_like_tsv_ones() {
    let dir = tempfile::tempdir().unwrap();
    for (name, freq) in [("clips/a.wav", 440.0), ("clips/b.wav", 660.0)] {
        write_int(&dir.path().join(name), 16_000, 1, 16, &sine(freq, 16_000, 8_000, 0.5));
    }
    let manifest = dir.path().join("train.jsonl");
    std::fs::write(
        &manifest,
        "{\"audio_filepath\": \"clips/a.wav\", \"duration\": 0.5, \"label\": 7}\n\n{\"path\": \"clips/b.wav\", \"num_samples\": 8000, \"label\": \"7\"}\n",
    )
    .unwrap();
    let ds = open(&manifest, |_| {}).unwrap();
    let info = ds.info();
    assert_eq!((info.num_samples, info.classes.clone()), (2, vec!["7".to_string()]));
    std::fs::write(&manifest, "{\"path\": \"clips/b.wav\", \"num_samples\": 9000}\n").unwrap();
    expect_error(open(&manifest, |_| {}), &["train.jsonl: line 1: num_samples is 9000"]);
    std::fs::write(&manifest, "{\"text\": \"no file\"}\n").unwrap();
    expect_error(open(&manifest, |_| {}), &["train.jsonl: line 1: no file"]);
}
