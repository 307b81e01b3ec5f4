//! TensorBoard event files: our reader round-trips them with CRC checks, and TensorBoard's own
//! reader (`EventAccumulator`, from the project venv) accepts them.

use pt_report::tensorboard::{event_files, read_scalars, Scalar};
use pt_report::{MetricsLog, ReportError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Logs a few rows, including a tag with a slash and a non-finite value.
fn write_run(dir: &Path) -> PathBuf {
    let mut log = MetricsLog::open(dir).unwrap();
    log.log(0, [("train/loss", 2.5), ("lr", 0.0)]).unwrap();
    log.log(100, [("train/loss", 1.25), ("lr", 3e-4)]).unwrap();
    log.log(200, [("train/loss", f64::NAN), ("lr", 2e-4)]).unwrap();
    log.log(200, [("eval/accuracy", 0.875)]).unwrap();
    log.tensorboard_path().to_path_buf()
}

fn key(s: &Scalar) -> (String, i64, u32) {
    (s.tag.clone(), s.step, s.value.to_bits())
}

#[test]
fn event_file_round_trips_through_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_run(dir.path());
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("events.out.tfevents.") && name.ends_with(".pt"), "{name}");
    assert_eq!(path.parent().unwrap(), dir.path().join("tb"));

    let scalars = read_scalars(&path).unwrap();
    let got: Vec<(String, i64, u32)> = scalars.iter().map(key).collect();
    let expected: Vec<(String, i64, u32)> = [
        ("train/loss", 0, 2.5f32),
        ("lr", 0, 0.0),
        ("train/loss", 100, 1.25),
        ("lr", 100, 3e-4),
        ("train/loss", 200, f32::NAN),
        ("lr", 200, 2e-4),
        ("eval/accuracy", 200, 0.875),
    ]
    .iter()
    .map(|&(tag, step, value)| (tag.to_string(), step, value.to_bits()))
    .collect();
    assert_eq!(got, expected);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(scalars.iter().all(|s| (now - s.wall_time).abs() < 600.0));
}

#[test]
fn reader_rejects_corrupt_records_and_ignores_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_run(dir.path());
    let good = std::fs::read(&path).unwrap();
    let total = read_scalars(&path).unwrap().len();

    // Record layout: u64 length, u32 length CRC, data, u32 data CRC. The first record (the
    // file-version header) has 8 + 4 + len + 4 bytes.
    let first_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let second = 16 + first_len;

    let mut bad_data = good.clone();
    bad_data[second + 12 + 3] ^= 0x40; // a byte inside the second record's data
    std::fs::write(&path, &bad_data).unwrap();
    let err = read_scalars(&path).expect_err("data corruption not detected");
    assert!(
        matches!(&err, ReportError::CorruptRecord { offset, message, .. } if *offset == second as u64 && message.contains("data CRC")),
        "{err}"
    );

    let mut bad_len = good.clone();
    bad_len[second] ^= 0x01; // the second record's length
    std::fs::write(&path, &bad_len).unwrap();
    let err = read_scalars(&path).expect_err("length corruption not detected");
    assert!(err.to_string().contains("length CRC"), "{err}");

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x80; // the last record's stored data CRC
    std::fs::write(&path, &bad_crc).unwrap();
    assert!(read_scalars(&path).is_err());

    // A writer killed mid-record leaves a short tail: the complete records still read.
    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert_eq!(read_scalars(&path).unwrap().len(), total - 1);
}

/// The project venv's Python (`$PT_PYTHON` or `<repo>/.pt/venv/bin/python`).
fn python() -> PathBuf {
    let path = std::env::var_os("PT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pt/venv/bin/python"));
    assert!(
        path.exists(),
        "{} not found: the TensorBoard compatibility test needs the project venv; run scripts/setup.sh (or set PT_PYTHON)",
        path.display()
    );
    path
}

const LOAD_WITH_TENSORBOARD: &str = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
for tag in acc.Tags()["scalars"]:
    for e in acc.Scalars(tag):
        print(f"{tag}\t{e.step}\t{e.value!r}")
"#;

/// Scalars as TensorBoard's own reader sees them, sorted.
fn load_with_tensorboard(path: &Path) -> Vec<(String, i64, u32)> {
    let output =
        Command::new(python()).arg("-c").arg(LOAD_WITH_TENSORBOARD).arg(path).output().expect("cannot run python");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "TensorBoard's reader failed (is tensorboard installed? run scripts/setup.sh):\n{stderr}"
    );
    let mut scalars: Vec<(String, i64, u32)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let tag = fields.next().unwrap().to_string();
            let step = fields.next().unwrap().parse().unwrap();
            let value: f64 = fields.next().unwrap().parse().unwrap();
            (tag, step, (value as f32).to_bits())
        })
        .collect();
    scalars.sort();
    scalars
}

fn sorted(scalars: &[Scalar]) -> Vec<(String, i64, u32)> {
    let mut keys: Vec<_> = scalars.iter().map(key).collect();
    keys.sort();
    keys
}

#[test]
fn tensorboard_reads_our_event_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_run(dir.path());
    let ours = read_scalars(&path).unwrap();
    assert_eq!(ours.len(), 7);
    assert_eq!(load_with_tensorboard(&path), sorted(&ours));
}

#[test]
fn tensorboard_sees_a_resumed_run_without_the_abandoned_steps() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = MetricsLog::open(dir.path()).unwrap();
        for step in [1, 2, 3, 4] {
            log.log(step, [("loss", 10.0 / step as f64)]).unwrap();
        }
    }
    {
        let mut log = MetricsLog::resume(dir.path(), 2).unwrap();
        for step in [3, 4, 5] {
            log.log(step, [("loss", 1.0 / step as f64)]).unwrap();
        }
    }
    let tb = dir.path().join("tb");
    assert_eq!(event_files(&tb).unwrap().len(), 2);
    let seen = load_with_tensorboard(&tb);
    let expected: Vec<(String, i64, u32)> = [(1, 10.0f32), (2, 5.0), (3, 1.0 / 3.0), (4, 0.25), (5, 0.2)]
        .iter()
        .map(|&(step, value)| ("loss".to_string(), step, value.to_bits()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(sorted(&read_scalars(&tb).unwrap()), expected);
}

const PICTURES_AND_HPARAMS: &str = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
acc = EventAccumulator(sys.argv[1], size_guidance={"images": 0})
acc.Reload()
image = acc.Images("curves/loss")[0]
content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
h = start.hparams
print(image.step, image.width, image.height, len(image.encoded_image_string))
print(h["optim.lr"].number_value, h["arch.name"].string_value, h["run.compile"].bool_value)
"#;

#[test]
fn tensorboard_shows_our_pictures_and_hyperparameters() {
    use pt_report::tensorboard::HParam;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("loss.png");
    let plot = pt_report::LinePlot {
        title: "loss".into(),
        series: vec![pt_report::Series { name: "train".into(), points: vec![(0.0, 2.0), (1.0, 1.0)] }],
        ..Default::default()
    };
    pt_report::plot_lines(&png, &plot).unwrap();
    let mut log = MetricsLog::open(dir.path()).unwrap();
    log.log_hparams(&[
        ("optim.lr".into(), HParam::Number(3e-4)),
        ("arch.name".into(), HParam::Text("resnet18".into())),
        ("run.compile".into(), HParam::Bool(true)),
    ])
    .unwrap();
    log.log(7, [("loss", 1.0)]).unwrap();
    log.log_picture(7, "curves/loss", &png).unwrap();
    let err = log.log_picture(7, "x", &dir.path().join("tb")).unwrap_err();
    assert!(err.to_string().contains("tb"), "{err}");
    let tb = dir.path().join("tb");
    assert_eq!(read_scalars(&tb).unwrap().len(), 1, "pictures and hparams leave the scalars as they are");
    let out = Command::new(python()).arg("-c").arg(PICTURES_AND_HPARAMS).arg(&tb).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let bytes = std::fs::metadata(&png).unwrap().len();
    assert_eq!(text, format!("7 800 500 {bytes}\n0.0003 resnet18 True\n"));
}
