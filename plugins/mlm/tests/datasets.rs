//! The `text` and `jsonl` datasets on small corpora: sample layout, caches, labels, bad input.

mod common;

use common::*;
use pt_mlm::text_tokenizer::TextTokenizer;
use pt_mlm::{JsonlDataset, TextDataset};
use pt_sdk::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A corpus file and a tokenizer trained on it.
fn corpus(s: &Scratch, lines: usize) -> (PathBuf, PathBuf) {
    let text = s.write("corpus.txt", generated_lines(lines, 9).join("\n") + "\n");
    let tok = s.path("tokenizer.json");
    pt_kit::text::train_wordpiece(std::slice::from_ref(&text), 200, 2, true, &tok).unwrap();
    (text, tok)
}

fn text_dataset(s: &Scratch, config: serde_json::Value) -> Result<TextDataset> {
    make(config, &s.ctx())
}

fn batch(ds: &impl Dataset, indices: &[u64]) -> Tensors {
    ds.get_batch(indices, &step(true)).unwrap()
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn cache_path(ds: &impl Dataset) -> PathBuf {
    PathBuf::from(ds.info().notes["cache"].as_str().unwrap())
}

#[test]
fn packed_blocks_are_the_token_stream_cut_with_cls_first() {
    let s = Scratch::new();
    let (text, tok) = corpus(&s, 300);
    let ds = text_dataset(&s, json!({"files": [text], "tokenizer": tok, "block_size": 16})).unwrap();
    let info = ds.info();

    // The expected stream: each line's tokens, then [SEP].
    let tokenizer = TextTokenizer::load(&tok).unwrap();
    let content = std::fs::read_to_string(&text).unwrap();
    let mut stream = Vec::new();
    for ids in tokenizer.encode_many(content.lines().collect()).unwrap() {
        stream.extend(ids.iter().map(|&t| t as i64));
        stream.push(3);
    }
    assert_eq!(info.notes["num_tokens"], json!(stream.len()));
    assert_eq!(info.num_samples, stream.len().div_ceil(15) as u64);
    assert_eq!(info.notes["vocab_size"], json!(tokenizer.vocab_size));
    assert_eq!(info.field_names(), vec!["input_ids", "attention_mask", "token_type_ids"]);

    let all: Vec<u64> = (0..info.num_samples).collect();
    let b = batch(&ds, &all);
    let ids = b.get("input_ids").unwrap();
    assert_eq!(ids.size(), vec![info.num_samples as i64, 16]);
    let (ids, mask) = (ivec(ids), ivec(b.get("attention_mask").unwrap()));
    assert!(ivec(b.get("token_type_ids").unwrap()).iter().all(|&t| t == 0));
    let mut rebuilt = Vec::new();
    for (row, m) in ids.chunks(16).zip(mask.chunks(16)) {
        assert_eq!(row[0], 2, "[CLS] first");
        for (&t, &real) in row[1..].iter().zip(&m[1..]) {
            if real == 1 {
                rebuilt.push(t);
            } else {
                assert_eq!(t, 0, "padding is [PAD]");
            }
        }
    }
    assert_eq!(rebuilt, stream);
    // Only the last block may be short.
    let short = mask.chunks(16).filter(|m| m.contains(&0)).count();
    assert!(short <= 1);

    // Random access gives the same rows in any order.
    let picked = batch(&ds, &[5, 0, 5]);
    let picked = ivec(picked.get("input_ids").unwrap());
    assert_eq!(&picked[..16], &ids[5 * 16..6 * 16]);
    assert_eq!(&picked[16..32], &ids[..16]);
    let err = ds.get_batch(&[info.num_samples], &step(true)).unwrap_err();
    assert!(err.message.contains("out of range"), "{err}");
}

#[test]
fn the_cache_is_reused_rebuilt_when_damaged_and_keyed_on_the_data() {
    let s = Scratch::new();
    let (text, tok) = corpus(&s, 200);
    let config = json!({"files": [text], "tokenizer": tok, "block_size": 32});
    let first = text_dataset(&s, config.clone()).unwrap();
    let path = cache_path(&first);
    assert!(path.starts_with(s.path("data/cache")), "{}", path.display());
    let expected = ivec(batch(&first, &[0, 3]).get("input_ids").unwrap());
    let built = mtime(&path);
    std::thread::sleep(std::time::Duration::from_millis(20));

    let again = text_dataset(&s, config.clone()).unwrap();
    assert_eq!(cache_path(&again), path);
    assert_eq!(mtime(&path), built, "a valid cache is read, not rewritten");
    // A block size change reuses the same token stream.
    let longer = text_dataset(&s, json!({"files": [text], "tokenizer": tok, "block_size": 64})).unwrap();
    assert_eq!(cache_path(&longer), path);

    // A flipped payload byte fails the checksum; the cache is rebuilt with the right content.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let rebuilt = text_dataset(&s, config.clone()).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(ivec(batch(&rebuilt, &[0, 3]).get("input_ids").unwrap()), expected);
    // So is a truncated one.
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let rebuilt = text_dataset(&s, config.clone()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert_eq!(ivec(batch(&rebuilt, &[0, 3]).get("input_ids").unwrap()), expected);

    // Changed data is a different cache.
    let mut content = std::fs::read_to_string(&text).unwrap();
    content.push_str("the king said unto them.\n");
    std::fs::write(&text, content).unwrap();
    let changed = text_dataset(&s, config).unwrap();
    assert_ne!(cache_path(&changed), path);
    assert!(changed.info().notes["num_tokens"].as_u64() > first.info().notes["num_tokens"].as_u64());
    // No temp files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(s.path("data/cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn lines_mode_gives_one_line_per_sample_and_counts_truncation() {
    let s = Scratch::new();
    let (_, tok) = corpus(&s, 200);
    let long = vec!["river"; 40].join(" ");
    let text = s.write("lines.txt", format!("the river runs.\n\n{long}\nsmall tree\n"));
    let ds = text_dataset(&s, json!({"files": [text], "tokenizer": tok, "block_size": 10, "mode": "lines"})).unwrap();
    let info = ds.info();
    assert_eq!(info.num_samples, 3, "the empty line is not a sample");
    assert_eq!(info.notes["truncated_lines"], json!(1));
    assert_eq!(info.notes["skipped_empty_lines"], json!(1));
    assert_eq!(info.fields[0].shape, vec![-1]);

    let tokenizer = TextTokenizer::load(&tok).unwrap();
    let river = tokenizer.encode_many(vec!["river"]).unwrap()[0][0] as i64;
    let b = batch(&ds, &[2, 1, 0]);
    let ids = b.get("input_ids").unwrap();
    assert_eq!(ids.size(), vec![3, 10], "padded to the longest row, cut at block_size");
    let (ids, mask) = (ivec(ids), ivec(b.get("attention_mask").unwrap()));
    let small_tree = &ids[..10];
    assert_eq!(small_tree[0], 2);
    let real: i64 = mask[..10].iter().sum();
    assert_eq!(small_tree[real as usize - 1], 3, "[SEP] ends the line");
    assert!(small_tree[real as usize..].iter().all(|&t| t == 0));
    assert_eq!(&ids[10..20], &[2, river, river, river, river, river, river, river, river, 3]);
    assert!(mask[10..20].iter().all(|&m| m == 1));
    // A batch of short lines is only as long as its longest line.
    let short = batch(&ds, &[0]);
    assert!(short.get("input_ids").unwrap().size()[1] < 10);
}

#[test]
fn bad_text_inputs_are_skipped_or_named() {
    let s = Scratch::new();
    let (good, tok) = corpus(&s, 50);
    let empty = s.write("empty.txt", "");
    let mut bytes = b"the river.\n".to_vec();
    bytes.extend_from_slice(b"bad \xff\xfe bytes\nsmall tree.\n");
    let mixed = s.write("mixed.txt", bytes);

    let ds = text_dataset(&s, json!({"files": [good, empty, mixed], "tokenizer": tok, "mode": "lines"})).unwrap();
    let notes = ds.info().notes;
    assert_eq!(notes["skipped_non_utf8_lines"], json!(1));
    assert_eq!(notes["non_utf8_lines_by_file"][mixed.display().to_string()], json!(1));
    assert_eq!(notes["empty_files"], json!([empty.display().to_string()]));
    assert_eq!(ds.info().num_samples, 52);

    let err = expect_err(text_dataset(&s, json!({"files": [empty], "tokenizer": tok})));
    assert!(err.message.contains("no text") && err.message.contains("empty.txt"), "{err}");
    let missing = s.path("missing.txt");
    let err = expect_err(text_dataset(&s, json!({"files": [good, missing], "tokenizer": tok})));
    assert!(err.message.contains("missing.txt") && err.message.contains("not found"), "{err}");
    let err = expect_err(text_dataset(&s, json!({"files": []})));
    assert!(err.message.contains("files"), "{err}");
    let err = expect_err(text_dataset(&s, json!({"files": [good], "mode": "sentences"})));
    assert!(err.message.contains("packed") && err.message.contains("lines"), "{err}");
    let err = expect_err(text_dataset(
        &s,
        json!({"files": [good], "tokenizer": s.path("none.json"), "train_tokenizer": false}),
    ));
    assert!(err.message.contains("none.json"), "{err}");
}

#[test]
fn a_run_keeps_one_tokenizer() {
    let s = Scratch::new();
    let train = s.write("train.txt", generated_lines(300, 4).join("\n"));
    let valid = s.write("valid.txt", generated_lines(40, 5).join("\n"));
    // No tokenizer configured: one is trained on the files, cached, and copied into the run.
    let ds = text_dataset(&s, json!({"files": [train], "vocab_size": 150})).unwrap();
    let trained = PathBuf::from(ds.info().notes["tokenizer"].as_str().unwrap());
    assert!(trained.starts_with(s.path("data/cache/tokenizers")), "{}", trained.display());
    let run_tok = s.path("run/assets/tokenizer.json");
    assert_eq!(std::fs::read(&run_tok).unwrap(), std::fs::read(&trained).unwrap());

    // Later datasets of the run (validation, downstream) use the run's tokenizer by default.
    let v = text_dataset(&s, json!({"files": [valid]})).unwrap();
    assert_eq!(v.info().notes["tokenizer"], json!(run_tok.display().to_string()));
    let cls = s.write("cls.jsonl", "{\"text\": \"the river\", \"label\": \"a\"}\n");
    let j: JsonlDataset = make(json!({"files": [cls]}), &s.ctx()).unwrap();
    assert_eq!(j.info().notes["tokenizer"], json!(run_tok.display().to_string()));

    // Another tokenizer in the same run is refused.
    let other = s.path("other.json");
    pt_kit::text::train_wordpiece(std::slice::from_ref(&valid), 120, 1, true, &other).unwrap();
    let err = expect_err(text_dataset(&s, json!({"files": [valid], "tokenizer": other})));
    assert!(err.message.contains("different tokenizer"), "{err}");

    // Without a run, jsonl needs a tokenizer named.
    let no_run = CreateCtx { run_dir: String::new(), ..s.ctx() };
    let err = expect_err(make::<JsonlDataset>(json!({"files": [cls]}), &no_run));
    assert!(err.message.contains("tokenizer"), "{err}");
}

fn jsonl(s: &Scratch, name: &str, lines: &[&str]) -> PathBuf {
    s.write(name, lines.join("\n") + "\n")
}

#[test]
fn jsonl_labels_become_sorted_classes() {
    let s = Scratch::new();
    let (_, tok) = corpus(&s, 100);
    let f = jsonl(
        &s,
        "a.jsonl",
        &[
            r#"{"text": "the river runs", "label": "water"}"#,
            r#"{"text": "a green tree", "label": "garden"}"#,
            r#"{"text": "the stone", "label": "water", "extra": 1}"#,
            "",
            r#"{"text": "fire in the north", "label": "fire"}"#,
        ],
    );
    let ds: JsonlDataset = make(json!({"files": [f], "tokenizer": tok}), &s.ctx()).unwrap();
    let info = ds.info();
    assert_eq!(info.num_samples, 4);
    assert_eq!(info.classes, vec!["fire", "garden", "water"]);
    assert_eq!(info.class_counts, vec![1, 1, 2]);
    assert!(info.field_names().contains(&"label".to_string()));
    let b = batch(&ds, &[0, 1, 2, 3]);
    assert_eq!(ivec(b.get("label").unwrap()), vec![2, 1, 2, 0]);
    assert_eq!(b.get("label").unwrap().size(), vec![4]);
    assert_eq!(ivec(b.get("input_ids").unwrap())[0], 2);

    // An explicit class list fixes the ids; a label outside it is an error naming the line.
    let explicit: JsonlDataset =
        make(json!({"files": [f], "tokenizer": tok, "labels": ["water", "garden", "fire", "air"]}), &s.ctx()).unwrap();
    assert_eq!(explicit.info().class_counts, vec![2, 1, 1, 0]);
    assert_eq!(ivec(batch(&explicit, &[0, 1, 3]).get("label").unwrap()), vec![0, 1, 2]);
    let err = expect_err(make::<JsonlDataset>(json!({"files": [f], "tokenizer": tok, "labels": ["water"]}), &s.ctx()));
    assert!(err.message.contains("a.jsonl:2") && err.message.contains("garden"), "{err}");

    // Integer labels sort as numbers.
    let n = jsonl(&s, "n.jsonl", &[r#"{"text": "a", "label": 10}"#, r#"{"text": "b", "label": 2}"#]);
    let ds: JsonlDataset = make(json!({"files": [n], "tokenizer": tok}), &s.ctx()).unwrap();
    assert_eq!(ds.info().classes, vec!["2", "10"]);
}

#[test]
fn jsonl_without_labels_and_with_bad_lines() {
    let s = Scratch::new();
    let (_, tok) = corpus(&s, 100);
    let plain = jsonl(&s, "plain.jsonl", &[r#"{"text": "the river"}"#, r#"{"text": "a tree"}"#]);
    let ds: JsonlDataset = make(json!({"files": [plain], "tokenizer": tok}), &s.ctx()).unwrap();
    assert!(ds.info().classes.is_empty());
    assert!(!ds.info().field_names().contains(&"label".to_string()));
    assert!(batch(&ds, &[0, 1]).get("label").is_none());

    let bad = jsonl(
        &s,
        "bad.jsonl",
        &[r#"{"text": "the river", "label": "a"}"#, r#"{"text": "unclosed"#, r#"{"body": "x", "label": "a"}"#],
    );
    let err = expect_err(make::<JsonlDataset>(json!({"files": [bad], "tokenizer": tok}), &s.ctx()));
    assert!(err.message.contains("bad.jsonl:2") && err.message.contains("JSON"), "{err}");
    let ds: JsonlDataset = make(json!({"files": [bad], "tokenizer": tok, "skip_bad_lines": true}), &s.ctx()).unwrap();
    assert_eq!(ds.info().num_samples, 1);
    assert_eq!(ds.info().notes["skipped_bad_lines"], json!(2));

    let mixed = jsonl(&s, "mixed.jsonl", &[r#"{"text": "the river", "label": "a"}"#, r#"{"text": "a tree"}"#]);
    let err = expect_err(make::<JsonlDataset>(json!({"files": [mixed], "tokenizer": tok}), &s.ctx()));
    assert!(err.message.contains("mixed.jsonl:2") && err.message.contains("label"), "{err}");
    let err =
        expect_err(make::<JsonlDataset>(json!({"files": [mixed], "tokenizer": tok, "text_field": "body"}), &s.ctx()));
    assert!(err.message.contains("mixed.jsonl:1") && err.message.contains("body"), "{err}");
}

#[test]
fn the_fortune_classification_set_loads() {
    let data = text_data();
    let s = Scratch::new();
    let tok = s.path("tok.json");
    pt_kit::text::train_wordpiece(&[data.join("tiny/train.txt")], 1000, 2, true, &tok).unwrap();
    let ds: JsonlDataset =
        make(json!({"files": [data.join("tiny/cls-train.jsonl")], "tokenizer": tok, "block_size": 64}), &s.ctx())
            .unwrap();
    let info = ds.info();
    assert_eq!(info.num_samples, 400);
    assert_eq!(info.classes.len(), 12);
    assert!(info.classes.contains(&"computers".to_string()));
    assert_eq!(info.class_counts.iter().sum::<u64>(), 400);
    let b = batch(&ds, &(0..16).collect::<Vec<_>>());
    assert!(b.get("input_ids").unwrap().size()[1] <= 64);
    assert!(ivec(b.get("label").unwrap()).iter().all(|&l| (0..12).contains(&l)));
}

/// Issue 21: a user's corpus as a directory, a pattern, or JSON lines with a text field gives
/// the same token stream as the plain files listed one by one.
#[test]
fn directories_patterns_and_json_lines_read_the_same_text() {
    let s = Scratch::new();
    let lines = generated_lines(120, 4);
    let (a, b) = lines.split_at(60);
    // Sorted by path, as a directory or pattern lists them: a/part-1 before b/part-2.
    s.write("corpus/a/part-1.txt", a.join("\n") + "\n");
    s.write("corpus/b/part-2.txt", b.join("\n") + "\n");
    s.write("corpus/README.md", "not part of the corpus\n");
    let json: Vec<String> = lines.iter().map(|l| json!({"id": 1, "text": l}).to_string()).collect();
    s.write("dump/all.jsonl", json.join("\n") + "\n");
    let tok = s.path("tokenizer.json");
    let parts = [s.path("corpus/a/part-1.txt"), s.path("corpus/b/part-2.txt")];
    pt_kit::text::train_wordpiece(&parts, 200, 2, true, &tok).unwrap();
    let stream = |config: serde_json::Value| {
        let ds = text_dataset(&s, config).unwrap();
        let all: Vec<u64> = (0..ds.info().num_samples).collect();
        ivec(batch(&ds, &all).get("input_ids").unwrap())
    };
    let listed = stream(json!({"files": parts, "tokenizer": tok}));
    assert_eq!(
        stream(json!({"files": [s.path("corpus")], "tokenizer": tok})),
        listed,
        "a directory, README.md left out"
    );
    assert_eq!(stream(json!({"files": [s.path("corpus/**/part-*.txt")], "tokenizer": tok})), listed, "a pattern");
    assert_eq!(
        stream(json!({"files": [s.path("dump")], "text_field": "text", "tokenizer": tok})),
        listed,
        "JSON lines"
    );
    let lines_mode = |files: serde_json::Value, field: &str| {
        let ds =
            text_dataset(&s, json!({"files": files, "text_field": field, "tokenizer": tok, "mode": "lines"})).unwrap();
        ivec(batch(&ds, &[0, 59, 60]).get("input_ids").unwrap())
    };
    assert_eq!(lines_mode(json!([s.path("dump/all.jsonl")]), "text"), lines_mode(json!([s.path("corpus")]), ""));

    // A line without the field is named, or skipped and counted.
    s.write("bad/x.jsonl", format!("{}\n{{\"body\": \"no text here\"}}\n", json[0]));
    let e = text_dataset(&s, json!({"files": [s.path("bad")], "text_field": "text", "tokenizer": tok})).err().unwrap();
    assert!(e.to_string().contains("x.jsonl:2: no field 'text'"), "{e}");
    let ds = text_dataset(
        &s,
        json!({"files": [s.path("bad")], "text_field": "text", "skip_bad_lines": true, "tokenizer": tok}),
    )
    .unwrap();
    assert_eq!(ds.info().notes["skipped_bad_lines"], 1);
    let e = text_dataset(&s, json!({"files": [s.path("corpus/*.jsonl")], "tokenizer": tok})).err().unwrap();
    assert!(e.to_string().contains("matches no file"), "{e}");
}
