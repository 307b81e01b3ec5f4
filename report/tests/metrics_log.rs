//! MetricsLog: the JSONL and CSV files after writes, reopening, resuming and truncating.

use pt_report::tensorboard::{event_files, read_scalars};
use pt_report::{read_metrics, MetricsLog, ReportError};
use std::path::Path;

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

/// The CSV as rows of cells, without the wall_time column (not reproducible).
fn csv_without_time(path: &Path) -> Vec<Vec<String>> {
    lines(path)
        .iter()
        .map(|line| {
            let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
            cells.remove(1);
            cells
        })
        .collect()
}

fn cells(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
}

fn steps(dir: &Path) -> Vec<u64> {
    read_metrics(&dir.join("metrics.jsonl")).unwrap().iter().map(|r| r.step).collect()
}

#[test]
fn jsonl_and_csv_hold_the_logged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let before = now();
    let mut log = MetricsLog::open(dir.path()).unwrap();
    log.log(1, [("train/loss", 2.5), ("lr", 1e-3)]).unwrap();
    log.log(2, [("train/loss", 2.0), ("lr", 9e-4)]).unwrap();
    // A new metric appears at the first evaluation; a diverged loss is NaN.
    log.log(3, [("train/loss", f64::NAN), ("lr", 8e-4), ("eval/acc", 0.75)]).unwrap();
    let after = now();

    // Rows are on disk without an explicit flush or drop.
    let jsonl = lines(&dir.path().join("metrics.jsonl"));
    assert_eq!(jsonl.len(), 3);
    let first: serde_json::Value = serde_json::from_str(&jsonl[0]).unwrap();
    assert_eq!(first["step"], 1);
    assert_eq!(first["train/loss"], 2.5);
    assert_eq!(first["lr"], 1e-3);
    let t = first["wall_time"].as_f64().unwrap();
    assert!(t >= before - 1.0 && t <= after + 1.0, "wall_time {t} not in [{before}, {after}]");
    // Keys keep the logging order: step, wall_time, then the metrics.
    assert!(jsonl[2].starts_with("{\"step\":3,\"wall_time\":"));
    assert!(jsonl[2].ends_with(",\"train/loss\":null,\"lr\":0.0008,\"eval/acc\":0.75}"), "{}", jsonl[2]);

    let rows = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].get("train/loss"), Some(2.0));
    assert!(rows[2].get("train/loss").unwrap().is_nan());
    assert_eq!(rows[2].get("eval/acc"), Some(0.75));
    assert_eq!(rows[0].get("eval/acc"), None);

    // The CSV header widened when eval/acc appeared; earlier rows have an empty cell.
    let csv_path = dir.path().join("metrics.csv");
    assert_eq!(lines(&csv_path)[0], "step,wall_time,train/loss,lr,eval/acc");
    assert_eq!(
        csv_without_time(&csv_path),
        cells(&[
            &["step", "train/loss", "lr", "eval/acc"],
            &["1", "2.5", "0.001", ""],
            &["2", "2.0", "0.0009", ""],
            &["3", "NaN", "0.0008", "0.75"],
        ])
    );
    drop(log);
}

#[test]
fn reopening_continues_the_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = MetricsLog::open(dir.path()).unwrap();
        log.log(1, [("loss", 3.0)]).unwrap();
        log.log(2, [("loss", 2.0)]).unwrap();
    }
    {
        let mut log = MetricsLog::open(dir.path()).unwrap();
        log.log(3, [("loss", 1.0)]).unwrap();
    }
    assert_eq!(steps(dir.path()), [1, 2, 3]);
    assert_eq!(
        csv_without_time(&dir.path().join("metrics.csv")),
        cells(&[&["step", "loss"], &["1", "3.0"], &["2", "2.0"], &["3", "1.0"]])
    );
    // One event file per process; together they hold every scalar once.
    let tb = dir.path().join("tb");
    assert_eq!(event_files(&tb).unwrap().len(), 2);
    let tb_steps: Vec<i64> = read_scalars(&tb).unwrap().iter().map(|s| s.step).collect();
    assert_eq!(tb_steps, [1, 2, 3]);
}

#[test]
fn resume_drops_rows_after_the_checkpoint_then_appends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = MetricsLog::open(dir.path()).unwrap();
        for step in [10, 20, 30, 40, 50] {
            log.log(step, [("loss", 100.0 / step as f64)]).unwrap();
        }
    }
    // The run crashed after step 50; the last checkpoint is at step 30.
    let mut log = MetricsLog::resume(dir.path(), 30).unwrap();
    assert_eq!(steps(dir.path()), [10, 20, 30]);
    log.log(40, [("loss", 2.0), ("grad_norm", 0.5)]).unwrap();
    drop(log);

    assert_eq!(steps(dir.path()), [10, 20, 30, 40]);
    assert_eq!(
        csv_without_time(&dir.path().join("metrics.csv")),
        cells(&[
            &["step", "loss", "grad_norm"],
            &["10", "10.0", ""],
            &["20", "5.0", ""],
            &["30", "3.3333333333333335", ""],
            &["40", "2.0", "0.5"],
        ])
    );
    // TensorBoard sees the resumed run only: the abandoned steps 40 and 50 are gone.
    let scalars = read_scalars(&dir.path().join("tb")).unwrap();
    let loss: Vec<(i64, f32)> = scalars.iter().filter(|s| s.tag == "loss").map(|s| (s.step, s.value)).collect();
    assert_eq!(loss, [(10, 10.0), (20, 5.0), (30, 100.0f32 / 30.0), (40, 2.0)]);
    assert_eq!(scalars.iter().filter(|s| s.tag == "grad_norm").count(), 1);
}

#[test]
fn truncate_after_rewrites_an_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MetricsLog::open(dir.path()).unwrap();
    for step in 1..=5 {
        log.log(step, [("loss", step as f64)]).unwrap();
    }
    log.log(5, [("eval/loss", 4.5)]).unwrap();
    log.truncate_after(2).unwrap();
    assert_eq!(steps(dir.path()), [1, 2]);
    // The eval column came only from dropped rows, so it is gone from the header too.
    assert_eq!(lines(&dir.path().join("metrics.csv"))[0], "step,wall_time,loss");

    log.log(3, [("loss", 30.0)]).unwrap();
    assert_eq!(steps(dir.path()), [1, 2, 3]);
    assert_eq!(
        csv_without_time(&dir.path().join("metrics.csv")),
        cells(&[&["step", "loss"], &["1", "1.0"], &["2", "2.0"], &["3", "30.0"]])
    );
    // The writer continues the rewritten event file (not the replaced one).
    let scalars = read_scalars(log.tensorboard_path()).unwrap();
    let got: Vec<(i64, f32)> = scalars.iter().map(|s| (s.step, s.value)).collect();
    assert_eq!(got, [(1, 1.0), (2, 2.0), (3, 30.0)]);
}

#[test]
fn a_torn_last_line_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    std::fs::write(&path, "{\"step\":1,\"wall_time\":1.0,\"loss\":2.0}\n{\"step\":2,\"wall_ti").unwrap();
    let mut log = MetricsLog::open(dir.path()).unwrap();
    log.log(2, [("loss", 1.5)]).unwrap();
    drop(log);
    assert_eq!(steps(dir.path()), [1, 2]);
    assert_eq!(lines(&path).len(), 2);
}

#[test]
fn a_malformed_row_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    std::fs::write(&path, "{\"step\":1,\"loss\":2.0}\n{\"step\":-4,\"loss\":1.0}\n{\"step\":3,\"loss\":1.0}\n")
        .unwrap();
    let err = MetricsLog::open(dir.path()).err().expect("malformed file accepted");
    assert!(matches!(err, ReportError::Malformed { line: 2, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("metrics.jsonl:2") && message.contains("step"), "{message}");
}

#[test]
fn invalid_metric_names_are_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MetricsLog::open(dir.path()).unwrap();
    for bad in [vec![("step", 1.0)], vec![("wall_time", 1.0)], vec![("", 1.0)], vec![("loss", 1.0), ("loss", 2.0)]] {
        let err = log.log(1, bad.clone()).expect_err("bad names accepted");
        assert!(matches!(err, ReportError::InvalidInput(_)), "{bad:?}: {err}");
    }
    assert_eq!(steps(dir.path()), Vec::<u64>::new());
    assert!(read_scalars(log.tensorboard_path()).unwrap().is_empty());
    // Values may come from a map of owned names.
    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("loss".to_string(), 1.25);
    log.log(7, &metrics).unwrap();
    assert_eq!(steps(dir.path()), [7]);
}
