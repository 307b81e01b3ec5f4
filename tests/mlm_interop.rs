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
print(len(info['missing_keys']), len(info['unexpected_keys']), bool(torch.isfinite(y).all()), y.shape[-1])\n\
m.save_pretrained(sys.argv[2])",
        &[hf.to_str().unwrap(), dir.path().join("hf2").to_str().unwrap()],
    );
    assert_eq!(report.trim(), "0 0 True 500", "no missing or unused keys, finite logits over the 500-token vocab");

    // Issue 24: `pt embed` at each layer's [CLS] state equals transformers' hidden_states.
    let lines = write_file(
        dir.path(),
        "s.jsonl",
        "{\"text\": \"and god said let there be light\"}\n{\"text\": \"in the beginning\"}\n",
    );
    let emb = dir.path().join("emb.safetensors");
    let files = format!("files=[\"{}\"]", lines.display());
    pt.ok(&[
        "embed",
        run.to_str().unwrap(),
        "-o",
        emb.to_str().unwrap(),
        "--data",
        "jsonl",
        "--set",
        &files,
        "--set",
        "tokenizer={run}/assets/tokenizer.json",
        "--set",
        "block_size=16",
        "--layer",
        "embeddings",
        "--layer",
        "layer1",
        "--layer",
        "layer2",
    ]);
    let diff = py(
        "import sys, torch; from transformers import BertModel, AutoTokenizer; from safetensors.torch import load_file\n\
m = BertModel.from_pretrained(sys.argv[1]).eval(); t = AutoTokenizer.from_pretrained(sys.argv[1])\n\
x = t(['and god said let there be light', 'in the beginning'], padding=True, return_tensors='pt')\n\
hs = m(**x, output_hidden_states=True).hidden_states\n\
e = load_file(sys.argv[2])\n\
print(max((e['features.' + n] - hs[k][:, 0]).abs().max().item() for k, n in enumerate(['embeddings', 'layer1', 'layer2'])))",
        &[hf.to_str().unwrap(), emb.to_str().unwrap()],
    );
    let diff: f64 = diff.trim().parse().unwrap();
    assert!(diff < 1e-4, "pt's per-layer [CLS] states differ from transformers' by {diff}");

    // Reference weights straight in: the transformers directory itself, embedded and probed
    // without a pt run around it, gives the run's own features.
    let from_hf = dir.path().join("from-hf.safetensors");
    let mut args =
        vec!["embed", hf.to_str().unwrap(), "-o", from_hf.to_str().unwrap(), "--data", "jsonl", "--set", &files];
    args.extend(["--set", "tokenizer={run}/assets/tokenizer.json", "--set", "block_size=16", "--layer", "layer1"]);
    let out = pt.run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ours, theirs) = (read_safetensors(&emb), read_safetensors(&from_hf));
    assert_eq!(ours["features.layer1"].f32s(), theirs["features.layer1"].f32s(), "the same weights, the same features");
    let err = pt.fails(&["embed", hf.to_str().unwrap(), "-o", from_hf.to_str().unwrap()]);
    assert!(err.contains("reference weights have no data of their own"), "{err}");
    let labelled = write_file(
        dir.path(),
        "labelled.jsonl",
        "{\"text\": \"and god said let there be light\", \"label\": \"a\"}\n{\"text\": \"in the beginning\", \"label\": \"b\"}\n",
    );
    let split = format!(
        "{{ name = \"jsonl\", files = [\"{}\"], tokenizer = \"{{run}}/assets/tokenizer.json\", block_size = 16, label_field = \"label\" }}",
        labelled.display()
    );
    let task = format!("[[eval]]\nname = \"knn\"\nk = 1\nsplits.train = {split}\nsplits.test = {split}\n");
    let task = write_file(dir.path(), "self.toml", &task);
    let out = pt.ok(&[
        "transfer",
        hf.to_str().unwrap(),
        "--task",
        task.to_str().unwrap(),
        "--no-baseline",
        "--out",
        dir.path().join("t").to_str().unwrap(),
    ]);
    assert!(
        out.lines().any(|l| l.starts_with("knn") && l.contains("100.0 %")),
        "each sentence is its own nearest neighbour: {out}"
    );
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

/// The tiny ELECTRA recipe, saved every 2 steps.
fn electra_recipe(dir: &std::path::Path, max_steps: u64) -> std::path::PathBuf {
    let text = tiny_electra_recipe(&data_dir("text"), max_steps, "").replace("every = 0\n", "every = 2\n");
    write_file(dir, "electra.toml", &text)
}

fn f32_tensors(run: &std::path::Path, step: u64, file: &str) -> std::collections::BTreeMap<String, Vec<f32>> {
    let all = read_safetensors(&checkpoint_dir(run, step).join(file));
    all.into_iter().filter(|(_, t)| t.dtype == "F32").map(|(n, t)| (n, t.f32s())).collect()
}

#[test]
fn electra_shares_embeddings_resumes_exactly_and_transfers_its_discriminator() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = electra_recipe(tmp.path(), 4);
    let run = tmp.path().join("run");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    pt.ok(&["train", "--recipe", &s(&recipe), "--run-dir", &s(&run), "--quiet"]);
    let share = metric_at(&run, 4, "replaced_share").expect("replaced_share logged");
    // 15 % of tokens chosen, most of them replaced by a sample other than the original.
    assert!(share > 0.02 && share < 0.2, "replaced share {share}");
    assert!(metric_at(&run, 4, "discriminator_accuracy").is_some_and(|a| (0.0..=1.0).contains(&a)));

    // One embedding for both towers, trained by both: equal under both names at every step,
    // and changed by training.
    let (at2, at4) = (f32_tensors(&run, 2, "model.safetensors"), f32_tensors(&run, 4, "model.safetensors"));
    let shared: Vec<&String> = at4.keys().filter(|n| n.starts_with("generator.bert.embeddings.")).collect();
    assert_eq!(shared.len(), 5, "word, position, type embeddings and their LayerNorm");
    for name in shared {
        let owner = name.replace("generator.", "discriminator.");
        assert_eq!(at4[name], at4[&owner], "{name} is {owner}");
        assert_ne!(at2[name], at4[name], "{name} trains");
    }
    assert!(!at4.keys().any(|n| n.starts_with("discriminator.cls.")), "the discriminator has no MLM head");
    let head: Vec<String> = f32_tensors(&run, 4, "objective.safetensors").into_keys().collect();
    assert_eq!(
        head,
        [
            "discriminator_predictions.dense.bias",
            "discriminator_predictions.dense.weight",
            "discriminator_predictions.dense_prediction.bias",
            "discriminator_predictions.dense_prediction.weight"
        ]
    );

    // Resumed from step 2, step 4 is bit-identical (masks, generator samples, both towers).
    let resumed = tmp.path().join("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    Command::new("cp").args(["-r", &format!("{}/.", s(&run)), &s(&resumed)]).status().unwrap();
    std::fs::remove_dir_all(checkpoint_dir(&resumed, 4)).unwrap();
    pt.ok(&["train", "--resume", &s(&resumed), "--quiet"]);
    for file in ["model.safetensors", "objective.safetensors", "optimizer.safetensors"] {
        assert!(f32_tensors(&run, 4, file) == f32_tensors(&resumed, 4, file), "{file} after resuming");
    }

    // Downstream, the discriminator alone: --role picks it; without it the error says so.
    let task = write_file(
        tmp.path(),
        "task.toml",
        &format!(
            "[[eval]]\nname = \"knn\"\nk = 5\nsplits.train = {{ name = \"jsonl\", files = [\"{d}/text/fortunes-cls/train.jsonl\"], tokenizer = \"{{run}}/assets/tokenizer.json\", block_size = 32 }}\nsplits.test = {{ name = \"jsonl\", files = [\"{d}/text/fortunes-cls/test.jsonl\"], tokenizer = \"{{run}}/assets/tokenizer.json\", block_size = 32 }}\n",
            d = data_dir("text").display()
        ),
    );
    let err = pt.fails(&["transfer", &s(&run), "--task", &s(&task), "--no-baseline"]);
    assert!(err.contains("--role discriminator|generator") || err.contains("--role generator|discriminator"), "{err}");
    let out = pt.ok(&["transfer", &s(&run), "--task", &s(&task), "--role", "discriminator"]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("transfer-task/transfer.json")).unwrap()).unwrap();
    let acc = |arm: &str| report["comparisons"][0][arm]["metrics"]["accuracy"].as_f64();
    assert!(acc("pretrained").is_some_and(|a| a > 1.0 / 12.0) && acc("random_init").is_some(), "{out}");
    assert_eq!(report["role"], "discriminator");

    // Sharing nothing: the towers' embeddings go their own ways.
    let apart = tmp.path().join("apart");
    pt.ok(&[
        "train",
        "--recipe",
        &s(&recipe),
        "--run-dir",
        &s(&apart),
        "--quiet",
        "--set",
        "objective.shared_prefixes=[]",
    ]);
    let weights = f32_tensors(&apart, 4, "model.safetensors");
    let word = "bert.embeddings.word_embeddings.weight";
    assert_ne!(weights[&format!("generator.{word}")], weights[&format!("discriminator.{word}")]);

    // Towers too different to share embeddings: a clear error before any step.
    let err = pt.fails(&[
        "train",
        "--recipe",
        &s(&recipe),
        "--run-dir",
        &s(&tmp.path().join("narrow")),
        "--set",
        "arch.generator.hidden_size=64",
    ]);
    assert!(err.contains("generator.bert.embeddings.") && err.contains("same embedding sizes"), "{err}");
}
