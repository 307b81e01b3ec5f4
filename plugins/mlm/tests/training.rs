//! A small pretraining run on real text: the MLM loss falls, the held-out `mlm_eval` numbers
//! improve and are reproducible, and a model smaller than the tokenizer is refused.

mod common;

use common::*;
use pt_mlm::{Bert, Mlm, MlmEval, TextDataset};
use pt_sdk::prelude::*;
use serde_json::json;

/// Plain Adam over the architecture's parameters (the host brings its own optimizers).
struct Adam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i32,
    lr: f64,
}

impl Adam {
    fn new(params: Vec<Tensor>, lr: f64) -> Self {
        let m = params.iter().map(|p| p.zeros_like()).collect();
        let v = params.iter().map(|p| p.zeros_like()).collect();
        Adam { params, m, v, t: 0, lr }
    }

    fn step(&mut self) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let mut g = p.grad();
                if !g.defined() {
                    continue; // the pooler: not on the MLM path
                }
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + &g * &g * (1.0 - b2);
                let update = (&*m / c1) / ((&*v / c2).sqrt() + eps) * self.lr;
                let _ = p.f_sub_(&update).unwrap();
                let _ = g.zero_();
            }
        });
    }
}

#[test]
fn mlm_loss_falls_on_real_text_and_evaluation_tracks_it() {
    let text = text_data();
    let s = Scratch::new();
    let ctx = s.ctx();
    let train: TextDataset =
        make(json!({"files": [text.join("tiny/train.txt")], "vocab_size": 1000, "block_size": 64}), &ctx).unwrap();
    let valid: TextDataset = make(json!({"files": [text.join("tiny/valid.txt")], "block_size": 64}), &ctx).unwrap();
    // The validation set uses the run's tokenizer, the one the training set trained and copied.
    assert_eq!(valid.info().notes["tokenizer"], json!(s.path("run/assets/tokenizer.json").display().to_string()));
    let vocab = train.info().notes["vocab_size"].as_i64().unwrap();
    let mut bert: Bert =
        make(json!({"preset": "tiny", "vocab_size": vocab, "max_position_embeddings": 64}), &ctx).unwrap();
    let mlm: Mlm = make(json!({"vocab_size": vocab}), &ctx).unwrap();
    let mut eval: MlmEval = make(json!({"batch_size": 16, "max_batches": 4}), &ctx).unwrap();

    let before = evaluate(&mut eval, &mut bert, &valid, &step(false)).unwrap();
    let again = evaluate(&mut eval, &mut bert, &valid, &step(false)).unwrap();
    assert_eq!(before, again, "fixed evaluation masks give identical numbers");
    let loss0 = before.metrics["mlm_loss"];
    assert!((loss0 - (vocab as f64).ln()).abs() < 1.0, "untrained loss {loss0} is near ln(vocab)");
    assert!((before.metrics["perplexity"] - loss0.exp()).abs() < 1e-6 * loss0.exp());

    bert.set_train(true);
    let params = bert.parameters().into_iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(params, 2e-3);
    let n = train.info().num_samples;
    let batch_size = 16u64;
    let mut losses = Vec::new();
    for step_no in 0..150u64 {
        let indices: Vec<u64> = (0..batch_size).map(|i| (step_no * batch_size + i) * 7919 % n).collect();
        let ctx = StepCtx { step: step_no, epoch: step_no * batch_size / n, ..step(true) };
        tch::manual_seed(step_no as i64); // the host seeds dropout this way before every step
        let mut batch = train.get_batch(&indices, &ctx).unwrap();
        batch.insert("sample_index", Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>()));
        let batch = mlm.prepare(batch, &ctx).unwrap();

        let out = bert.forward(&batch, &ctx).unwrap();
        let loss = mlm.loss(&batch, &out, &ctx).unwrap().loss;
        loss.backward();
        adam.step();
        losses.push(loss.double_value(&[]));
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    // From ln(vocab) at the start to below the unigram level within 150 steps.
    let (first, last) = (losses[0], mean(&losses[losses.len() - 10..]));
    assert!(last < first - 0.7, "training loss went from {first:.2} to {last:.2}");

    let after = evaluate(&mut eval, &mut bert, &valid, &step(false)).unwrap();
    let loss1 = after.metrics["mlm_loss"];
    assert!(loss1 < loss0 - 0.7, "held-out loss went from {loss0:.2} to {loss1:.2}");
    assert!(after.metrics["mlm_accuracy"] > before.metrics["mlm_accuracy"] + 0.04, "{after:?}");
    assert_eq!(after.metrics["masked_tokens"], before.metrics["masked_tokens"]);
}

#[test]
fn a_model_smaller_than_the_tokenizer_vocabulary_is_refused() {
    let s = Scratch::new();
    let corpus = s.write("corpus.txt", generated_lines(300, 1).join("\n"));
    let data: TextDataset = make(json!({"files": [corpus], "vocab_size": 150, "block_size": 32}), &s.ctx()).unwrap();
    let vocab = data.info().notes["vocab_size"].as_i64().unwrap();
    assert!(vocab > 60);
    let bert: Bert = make(json!({"preset": "tiny", "vocab_size": 40}), &s.ctx()).unwrap();
    let batch = data.get_batch(&[0, 1], &step(true)).unwrap();
    let err = bert.forward(&batch, &step(true)).unwrap_err();
    assert!(err.message.contains("vocab_size is 40") && err.message.contains("tokenizer"), "{err}");
    let fits: Bert = make(json!({"preset": "tiny", "vocab_size": vocab}), &s.ctx()).unwrap();
    assert!(fits.forward(&batch, &step(true)).is_ok());
    // MLM's prepare (on the loader thread in a run) checks the ids against the model's
    // vocabulary (wired from the architecture), so bert need not read them back on a GPU.
    let batch = batch.with("sample_index", Tensor::from_slice(&[0i64, 1]));
    let small: Mlm = make(json!({"vocab_size": 40}), &s.ctx()).unwrap();
    let err = small.prepare(batch.share(), &step(true)).unwrap_err();
    assert!(err.message.contains("vocab_size is 40") && err.message.contains("tokenizer"), "{err}");
    let mlm: Mlm = make(json!({"vocab_size": vocab}), &s.ctx()).unwrap();
    let prepared = mlm.prepare(batch.share(), &step(true)).unwrap();
    assert!(prepared.contains(pt_mlm::bert::IDS_CHECKED));
    assert!(fits.forward(&prepared, &step(true)).is_ok());
    // And the architecture without a vocabulary size says where it comes from.
    let err = expect_err(make::<Bert>(json!({"preset": "tiny"}), &s.ctx()));
    assert!(err.message.contains("vocab_size is not set"), "{err}");
}
