//! The architecture through a real, tiny `pt train` with the `simclr` objective.

mod common;
use common::{data_path, pt, run_ok, scratch, write_images};

#[test]
fn trains_with_simclr_on_images() {
    let dir = scratch("__name__");
    let images = dir.join("images.csv");
    write_images(&images, 32);
    let run = dir.join("run");
    run_ok(
        pt().args(["train", "--objective", "simclr", "--arch", "__name__", "--data", "pixel_csv", "--device", "cpu"])
            .args(["--max-steps", "4", "--run-dir"])
            .arg(&run)
            .args(["--set", &data_path(&images), "--set", "run.batch_size=8"]),
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    assert!(metrics.lines().any(|l| l.contains("\"loss\"")), "{metrics}");
    std::fs::remove_dir_all(&dir).ok();
}
