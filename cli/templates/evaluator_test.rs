//! The evaluator at the end of a real, tiny `pt train` (resnet18 + simclr on small images).

mod common;
use common::{pt, run_ok, scratch, write_images};

#[test]
fn evaluates_after_training() {
    let dir = scratch("__name__");
    let images = dir.join("images.csv");
    write_images(&images, 40);
    let csv = images.display().to_string();
    let recipe = dir.join("recipe.toml");
    let text = format!(
        r#"[run]
device = "cpu"
batch_size = 8
max_steps = 2

[data]
name = "pixel_csv"
path = {csv:?}
split = "train"

[arch]
name = "resnet18"
small_stem = true

[objective]
name = "simclr"

[[eval]]
name = "__name__"
splits.train = {{ name = "pixel_csv", path = {csv:?}, split = "train" }}
splits.test = {{ name = "pixel_csv", path = {csv:?}, split = "test" }}
"#
    );
    std::fs::write(&recipe, text).unwrap();
    let run = dir.join("run");
    run_ok(pt().args(["train", "--recipe"]).arg(&recipe).arg("--run-dir").arg(&run));
    let text = std::fs::read_to_string(run.join("summary.json")).expect("summary.json");
    let summary: pt_sdk::serde_json::Value = pt_sdk::serde_json::from_str(&text).expect("summary.json is JSON");
    let accuracy = summary["evals"]["__name__"]["metrics"]["accuracy"].as_f64().expect("the evaluator's accuracy");
    assert!((0.0..=1.0).contains(&accuracy), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}
