//! The objective through a real, tiny `pt train` with the `resnet18` architecture.

mod common;
use common::{data_path, pt, run_ok, scratch, write_images};

#[test]
fn trains_with_a_resnet_on_images() {
    let dir = scratch("rotnet");
    let images = dir.join("images.csv");
    write_images(&images, 32);
    let run = dir.join("run");
    run_ok(
        pt().args(["train", "--objective", "rotnet", "--arch", "resnet18", "--data", "pixel_csv", "--device", "cpu"])
            .args(["--max-steps", "4", "--run-dir"])
            .arg(&run)
            .args(["--set", &data_path(&images), "--set", "run.batch_size=8", "--set", "arch.small_stem=true"]),
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    let last = metrics.lines().filter(|l| l.contains("\"rotation_accuracy\"")).last().expect("rotation_accuracy logged");
    assert!(last.contains("\"loss\""), "{last}");
    std::fs::remove_dir_all(&dir).ok();
}
