//! The dataset through `pt data inspect`, which builds it exactly as `pt train` does and reads
//! every sample.

mod common;
use common::{pt, run_ok, scratch, write_images};

#[test]
fn pt_reads_every_sample() {
    let dir = scratch("__name__");
    let rows = dir.join("rows.csv");
    write_images(&rows, 12);
    let recipe = dir.join("recipe.toml");
    let text = format!(
        "[run]\ndevice = \"cpu\"\n\n[data]\nname = \"__name__\"\npath = {:?}\n\n[arch]\nname = \"resnet18\"\n\n[objective]\nname = \"simclr\"\n",
        rows.display().to_string()
    );
    std::fs::write(&recipe, text).unwrap();
    let out = run_ok(pt().args(["data", "inspect"]).arg(&recipe).arg("--read-all"));
    assert!(out.contains("samples: 12"), "{out}");
    assert!(out.contains("classes (2)"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}
