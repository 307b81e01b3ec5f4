//! Issue 21: a user's images as WebDataset-style tar shards — written by `pt data pack` and by
//! Python's `tarfile` (interop both ways), trained with `image_shards`, resumed exactly mid-shard,
//! and a damaged shard named.

use pt_tests::*;
use std::path::Path;
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `pt data inspect`: a folder's images, classes and unreadable files, a shard set's samples,
/// and a recipe's dataset read whole with the failing sample named.
fn inspect_names_what_pt_sees(pt: &Pt, tmp: &Path, src: &Path, ours: &Path) {
    let out = pt.ok(&["data", "inspect", s(src)]);
    assert!(out.contains("images: 30 (.png 30)") && out.contains("3 class folder(s): ant 10, bee 10, cat 10"), "{out}");
    assert!(out.contains("name = \"image_folder\""), "{out}");
    let out = pt.ok(&["data", "inspect", s(ours)]);
    assert!(out.contains("tar shards: 4, 30 samples") && out.contains(".cls 30, .png 30"), "{out}");
    let out = pt.ok(&["data", "inspect", s(&image_shards_recipe(tmp, ours, 1)), "--read-all"]);
    assert!(out.contains("samples: 30") && out.contains("read all 30 samples") && out.contains("0 failed"), "{out}");

    let with_bad = tmp.join("with-bad");
    copy_tree(src, &with_bad);
    std::fs::write(with_bad.join("bee/zz-broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let out = pt.ok(&["data", "inspect", s(&with_bad)]);
    assert!(out.contains("unreadable: 1 file(s)") && out.contains("zz-broken.png"), "{out}");
    let packed = tmp.join("with-bad-shards");
    pt.ok(&["data", "pack", s(&with_bad), s(&packed)]);
    let recipe = image_shards_recipe(tmp, &packed, 1);
    // Given statistics: the dataset opens without decoding, so the broken image meets the read.
    let stats = ["--set", "data.mean=[0.5]", "--set", "data.std=[0.25]"];
    let err = pt.fails(&[&["data", "inspect", s(&recipe), "--read-all"], &stats[..]].concat());
    assert!(err.contains("1 of 31 samples could not be read") && err.contains("member 00000020.png"), "{err}");
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn image_shards_pack_interoperate_train_and_resume_exactly() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let (src, ours, theirs) = (tmp.path().join("src"), tmp.path().join("ours"), tmp.path().join("theirs"));
    small_class_folders(&src);
    let notes = tmp.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.txt"), "no images here").unwrap();
    let err = pt.fails(&["data", "pack", s(&notes), s(&tmp.path().join("empty"))]);
    assert!(err.contains("no images (.png/.jpg/.jpeg/.svg) or audio (.wav/.flac/.ogg/.opus/.mp3) found"), "{err}");
    let out = pt.ok(&["data", "pack", s(&src), s(&ours), "--shard-size", "8"]);
    assert!(out.contains("packed 30 images of 3 classes into 4 shard(s)"), "{out}");
    assert_eq!(std::fs::read_to_string(ours.join("classes.txt")).unwrap(), "ant\nbee\ncat\n");
    inspect_names_what_pt_sees(&pt, tmp.path(), &src, &ours);

    // Python's tarfile reads pt's shards, and writes its own (PAX format, nested member names).
    let script = r#"
import sys, tarfile, pathlib
ours, src, theirs = map(pathlib.Path, sys.argv[1:4])
with tarfile.open(ours / "shard-000000.tar") as t:
    names = t.getnames()
    assert names[:4] == ["00000000.png", "00000000.cls", "00000001.png", "00000001.cls"], names
    assert t.extractfile("00000000.cls").read() == b"0"
theirs.mkdir()
for s, cls in enumerate(["ant", "bee", "cat"]):
    with tarfile.open(theirs / f"py-{s}.tar", "w", format=tarfile.PAX_FORMAT) as t:
        for i, img in enumerate(sorted((src / cls).glob("*.png"))):
            key = f"photos/{cls}/sample-{i:03d}"
            t.add(img, arcname=f"{key}.png")
            label = theirs / "label.tmp"
            label.write_text(str(s))
            t.add(label, arcname=f"{key}.cls")
print("ok")
"#;
    let py = Command::new(python()).args(["-c", script]).arg(&ours).arg(&src).arg(&theirs).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    std::fs::remove_file(theirs.join("label.tmp")).unwrap();

    // Python's shards train with pt.
    let run = tmp.path().join("run-theirs");
    pt.ok(&["train", "--recipe", s(&image_shards_recipe(tmp.path(), &theirs, 2)), "--run-dir", s(&run)]);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("num_classes = 3  <- [data] resnet:image_shards"), "{config}");

    // Resuming at step 2 (mid-shard: 16 of the 30 samples read) ends where an unbroken run does.
    let (whole, broken) = (tmp.path().join("whole"), tmp.path().join("broken"));
    pt.ok(&["train", "--recipe", s(&image_shards_recipe(tmp.path(), &ours, 4)), "--run-dir", s(&whole)]);
    pt.ok(&["train", "--recipe", s(&image_shards_recipe(tmp.path(), &ours, 2)), "--run-dir", s(&broken)]);
    pt.ok(&["train", "--resume", s(&broken), "--max-steps", "4"]);
    let (a, b) = (checkpoint_dir(&whole, 4), checkpoint_dir(&broken, 4));
    assert_eq!(read_safetensors(&a.join("model.safetensors")), read_safetensors(&b.join("model.safetensors")));

    // A damaged shard is named.
    let bytes = std::fs::read(ours.join("shard-000002.tar")).unwrap();
    std::fs::write(ours.join("shard-000002.tar"), &bytes[..bytes.len() / 2 + 100]).unwrap();
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&image_shards_recipe(tmp.path(), &ours, 1)),
        "--run-dir",
        s(&tmp.path().join("bad")),
    ]);
    let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(line.contains("shard-000002.tar") && line.contains("truncated"), "{err}");
}

/// Issue 21: a text corpus in Parquet (pyarrow: two files, snappy with small row groups and zstd,
/// a null row) and in tar shards (Python's tarfile, one `.txt` member per document) trains
/// exactly as the same text in JSON lines does; a wrong column and lines mode are refused by name.
#[test]
fn parquet_text_trains_as_the_same_json_lines_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (parquet, jsonl, shards) = (tmp.path().join("parquet"), tmp.path().join("jsonl"), tmp.path().join("shards"));
    let script = r#"
import sys, json, os, pyarrow as pa, pyarrow.parquet as pq
src, parquet, jsonl, shards = sys.argv[1:5]
lines = [l.strip() for l in open(src, encoding="utf-8") if l.strip()][:240]
rows = lines[:120] + [None] + lines[120:]
os.makedirs(parquet); os.makedirs(jsonl)
table = pa.table({"id": list(range(len(rows))), "text": rows})
pq.write_table(table.slice(0, 100), os.path.join(parquet, "part-0.parquet"), row_group_size=30)
pq.write_table(table.slice(100), os.path.join(parquet, "part-1.parquet"), compression="zstd")
with open(os.path.join(jsonl, "all.jsonl"), "w", encoding="utf-8") as f:
    for i, line in enumerate(lines):
        f.write(json.dumps({"id": i, "text": line}) + "\n")
import tarfile, io
os.makedirs(shards)
for s in range(2):
    with tarfile.open(os.path.join(shards, f"docs-{s}.tar"), "w") as t:
        for i in range(s * 120, (s + 1) * 120):
            data = lines[i].encode("utf-8")
            info = tarfile.TarInfo(f"doc-{i:05d}.txt")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
"#;
    let src = data_dir("text").join("text/tiny/train.txt");
    let py =
        Command::new(python()).args(["-c", script]).arg(&src).arg(&parquet).arg(&jsonl).arg(&shards).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));

    let pt = Pt::new();
    let train = |files: &Path, extra: &str, run: &str| {
        let recipe = tiny_mlm_recipe(&data_dir("text"), 2, "")
            .replace(&format!("{}", src.display()), s(files))
            .replace("block_size = 32", &format!("block_size = 32\ntext_field = \"text\"\n{extra}"));
        let path = write_file(tmp.path(), &format!("{run}.toml"), &recipe);
        let run_dir = tmp.path().join(run);
        (pt.run(&["train", "--recipe", s(&path), "--run-dir", s(&run_dir)]), run_dir)
    };
    let (out, from_parquet) = train(&parquet, "", "run-parquet");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, from_jsonl) = train(&jsonl, "", "run-jsonl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weights = |run: &Path| read_safetensors(&checkpoint_dir(run, 2).join("model.safetensors"));
    assert_eq!(weights(&from_parquet), weights(&from_jsonl));
    let (out, from_shards) = train(&shards, "", "run-shards");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(weights(&from_shards), weights(&from_jsonl), ".txt members of tar shards, one document each");
    let seen = pt.ok(&["data", "inspect", s(&tmp.path().join("run-parquet.toml"))]);
    assert!(seen.contains("lines: 240") && seen.contains("skipped_empty_lines: 1"), "null row counted: {seen}");

    let bad = tiny_mlm_recipe(&data_dir("text"), 1, "")
        .replace(&format!("{}", src.display()), s(&parquet.join("part-1.parquet")))
        .replace("block_size = 32", "block_size = 32\ntext_field = \"body\"");
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&write_file(tmp.path(), "bad.toml", &bad)),
        "--run-dir",
        s(&tmp.path().join("b")),
    ]);
    assert!(err.contains("part-1.parquet: no column 'body' (set text_field to one of: id, text)"), "{err}");
    let (out, _) = train(&parquet, "mode = \"lines\"", "run-lines");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("use mode = \"packed\""), "{err}");
}

/// A plugin's warnings reach the user: the text dataset skips a line of binary data and says
/// so on stderr and in the run's train.log (a plugin's own `tracing` events used to go nowhere).
#[test]
fn a_plugins_warnings_reach_stderr_and_the_run_log() {
    let (pt, tmp, _) = tiny_mlm_setup(1, "");
    let mut text = std::fs::read_to_string(data_dir("text").join("text/tiny/train.txt")).unwrap();
    text.push_str("binary\u{0}\u{0}line\n");
    let file = write_file(tmp.path(), "with-nul.txt", &text);
    let recipe = tiny_mlm_recipe(&data_dir("text"), 1, "")
        .replace(&format!("{}/text/tiny/train.txt", data_dir("text").display()), s(&file));
    let recipe = write_file(tmp.path(), "nul.toml", &recipe);
    let run = tmp.path().join("run");
    let out = pt.run(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr.lines().find(|l| l.contains("skipped lines holding NUL bytes"));
    assert!(warning.is_some_and(|l| l.contains("with-nul.txt") && l.contains("lines=1")), "{stderr}");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("skipped lines holding NUL bytes"), "{log}");
}
