//! Timings on this machine: WordPiece training and tokenization of a text file (default: the
//! full pretraining corpus), and a `bert` forward + backward step.
//!
//! `cargo run --release -p pt-plugin-mlm --example bench -- [TEXT_FILE] [PRESET] [BATCH] [SEQ]`

use pt_mlm::bert::config::{BertArgs, Preset};
use pt_mlm::{Bert, Mlm, TextDataset};
use pt_sdk::prelude::*;
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = args.first().cloned().unwrap_or_else(|| {
        dirs::home_dir().unwrap_or_default().join(".cache/pt/data/text/train.txt").display().to_string()
    });
    let preset: Preset = serde_json::from_value(serde_json::json!(args.get(1).map_or("mini", String::as_str)))?;
    let batch: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let seq: i64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(128);
    let scratch = tempfile::tempdir().map_err(|e| PtError::io("tempdir", e))?;
    let ctx = CreateCtx { data_dir: scratch.path().display().to_string(), ..Default::default() };
    let size = std::fs::metadata(&file).map_err(|e| PtError::io(&file, e))?.len();
    println!("file {file} ({:.1} MB), {} threads for libtorch", size as f64 / 1e6, tch::get_num_threads());

    let tok = scratch.path().join("tokenizer.json");
    let t = Instant::now();
    pt_kit::text::train_wordpiece(&[file.clone().into()], 8000, 2, true, &tok)?;
    println!("train WordPiece (vocab 8000):        {:6.2} s", t.elapsed().as_secs_f64());

    for mode in ["packed", "lines"] {
        let config = serde_json::json!({"files": [file], "tokenizer": tok, "mode": mode, "block_size": seq});
        let t = Instant::now();
        let ds = TextDataset::new(serde_json::from_value(config.clone())?, &ctx)?;
        let first = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let again = TextDataset::new(serde_json::from_value(config)?, &ctx)?;
        let cached = t.elapsed().as_secs_f64();
        let info = again.info();
        println!(
            "{mode:>6}: tokenize + cache {first:6.2} s, reopen from cache {cached:6.3} s; {} samples, {} tokens",
            info.num_samples, info.notes["num_tokens"]
        );
        let step = StepCtx::default();
        let indices: Vec<u64> = (0..batch as u64).map(|i| i * 37 % info.num_samples).collect();
        let t = Instant::now();
        for _ in 0..20 {
            ds.get_batch(&indices, &step)?;
        }
        println!("{mode:>6}: get_batch of {batch}: {:6.2} ms", t.elapsed().as_secs_f64() * 50.0);
    }

    let bert_args = BertArgs { preset, vocab_size: Some(8000), ..Default::default() };
    let bert = Bert::new(bert_args, &ctx)?;
    let mlm = Mlm::new(serde_json::from_value(serde_json::json!({"vocab_size": 8000}))?, &ctx)?;
    let params: Vec<Tensor> = bert.parameters().into_iter().map(|(_, t)| t).collect();
    let n_params: i64 = params.iter().map(|t| t.numel() as i64).sum();
    let ids = Tensor::randint_low(5, 8000, [batch, seq], (Kind::Int64, Device::Cpu));
    let sample_index = Tensor::arange(batch, (Kind::Int64, Device::Cpu));
    let step_ctx = StepCtx { train: true, ..Default::default() };
    let mut times = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        let batch =
            Tensors::new().with("input_ids", ids.shallow_clone()).with("sample_index", sample_index.shallow_clone());
        let batch = mlm.prepare(batch, &step_ctx)?;
        let out = bert.forward(&batch, &step_ctx)?;
        let loss = mlm.loss(&batch, &out, &step_ctx)?.loss;
        loss.f_backward()?;
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let flops = bert.train_flops_per_sample(seq) * batch as f64;
    println!(
        "bert {preset:?} ({:.1} M params) forward + backward, batch {batch} x {seq}: {:.0} ms/step ({:.1} seq/s, {:.1} GFLOP/s by info's count)",
        n_params as f64 / 1e6,
        mean * 1e3,
        batch as f64 / mean,
        flops / mean / 1e9
    );
    Ok(())
}
