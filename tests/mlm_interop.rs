//! Issue 5 interop: `pt tokenizer train`, `pt export` to a directory transformers loads, and
//! `--init-from` a Hugging Face checkpoint.

use pt_tests::*;
use std::process::Command;

fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("running python");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn tokenizer_train_writes_a_wordpiece_tokenizer_transformers_reads() {
    let data = data_dir("text");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok.json");
    let train = data.join("text/tiny/train.txt");
    let stdout = Pt::new().ok(&[
        "tokenizer",
        "train",
        train.to_str().unwrap(),
        "--vocab-size",
        "400",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("400 tokens"), "{stdout}");
    let ids = py(
        "import sys; from transformers import PreTrainedTokenizerFast as T; t=T(tokenizer_file=sys.argv[1]); \
         print([t.convert_tokens_to_ids(x) for x in ['[PAD]','[UNK]','[CLS]','[SEP]','[MASK]']]); print(t('in the beginning')['input_ids'])",
        &[out.to_str().unwrap()],
    );
    let mut lines = ids.lines();
    assert_eq!(lines.next(), Some("[0, 1, 2, 3, 4]"));
    let enc = lines.next().unwrap();
    assert!(enc.starts_with("[2,") && enc.ends_with(", 3]"), "[CLS] ... [SEP]: {enc}");
    // Bad input: no such file.
    let err = Pt::new().fails(&["tokenizer", "train", "/nonexistent.txt", "-o", out.to_str().unwrap()]);
    assert!(err.contains("/nonexistent.txt"), "{err}");
}

#[test]
fn export_loads_in_transformers_and_hf_weights_import() {
    let data = data_dir("text");
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, tiny_mlm_recipe(&data, 3, "")).unwrap();
    let run = dir.path().join("run");
    let pt = Pt::new();
    pt.ok(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    let hf = dir.path().join("hf");
    let out = pt.ok(&["export", run.to_str().unwrap(), hf.to_str().unwrap()]);
    assert!(out.contains("config.json") && out.contains("tokenizer.json"), "{out}");
    let report = py(
        "import sys, torch; from transformers import BertForMaskedLM, AutoTokenizer\n\
m, info = BertForMaskedLM.from_pretrained(sys.argv[1], output_loading_info=True)\n\
t = AutoTokenizer.from_pretrained(sys.argv[1])\n\
x = t('and god said let there be light', return_tensors='pt')\n\
y = m(**x).logits\n\
print(len(info['missing_keys']), bool(torch.isfinite(y).all()), y.shape[-1])\n\
m.save_pretrained(sys.argv[2])",
        &[hf.to_str().unwrap(), dir.path().join("hf2").to_str().unwrap()],
    );
    assert_eq!(report.trim(), "0 True 500", "no missing keys, finite logits over the 500-token vocab");
    // And back: weights saved by transformers import with --init-from.
    let run2 = dir.path().join("run2");
    let out = pt.run(&[
        "train",
        "--recipe",
        recipe.to_str().unwrap(),
        "--run-dir",
        run2.to_str().unwrap(),
        "--quiet",
        "--init-from",
        dir.path().join("hf2").to_str().unwrap(),
        "--max-steps",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("init-from:")).expect("an init-from report");
    assert!(line.contains("missing 2") || line.contains("missing 0"), "only the pooler may be missing: {line}");
}
