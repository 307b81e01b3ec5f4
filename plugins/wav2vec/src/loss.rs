//! wav2vec 2.0's contrastive loss (eq. 3 of the paper): for each masked frame, the context vector
//! must pick its own quantised target among K distractors by cosine similarity / κ.

use pt_sdk::prelude::*;

/// `context` and `targets` [masked, dim]; `negatives` [masked, K] indices into `targets`.
/// Returns the summed cross-entropy over masked frames and the fraction where the true target
/// scores highest. A distractor identical to the target (a collapsed codebook) is ignored, as
/// fairseq and transformers do.
pub fn contrastive_loss(
    context: &Tensor,
    targets: &Tensor,
    negatives: &Tensor,
    kappa: f64,
) -> Result<(Tensor, Tensor)> {
    let (m, k) = negatives.size2()?;
    let dim = targets.size()[1];
    let distractors = targets.f_index_select(0, &negatives.f_reshape([-1])?)?.f_view([m, k, dim])?; // [M, K, dim]
    let candidates = Tensor::f_cat(&[targets.f_unsqueeze(1)?, distractors.shallow_clone()], 1)?; // [M, 1+K, dim]
    let logits = Tensor::f_cosine_similarity(&context.f_unsqueeze(1)?, &candidates, -1, 1e-8)?.f_div_scalar(kappa)?; // [M, 1+K]
    let same = distractors.f_eq_tensor(&targets.f_unsqueeze(1)?)?.f_all_dim(-1, false)?; // [M, K]
    let never = Tensor::f_zeros([m, 1], (Kind::Bool, same.device()))?;
    let logits = logits.f_to_kind(Kind::Float)?.f_masked_fill(&Tensor::f_cat(&[never, same], 1)?, f64::NEG_INFINITY)?;
    let zeros = Tensor::f_zeros([m], (Kind::Int64, logits.device()))?;
    let loss = logits.f_cross_entropy_loss::<Tensor>(&zeros, None, tch::Reduction::Sum, -100, 0.0)?;
    let accuracy = logits.f_argmax(-1, false)?.f_eq(0)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?;
    Ok((loss, accuracy))
}

/// (G·V − perplexity) / (G·V): 0 when every codeword is used equally, near 1 when one is.
pub fn diversity_loss(prob_perplexity: &Tensor, codewords: i64) -> Result<Tensor> {
    Ok(prob_perplexity.f_neg()?.f_add_scalar(codewords as f64)?.f_div_scalar(codewords as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantizer::perplexity;

    fn cos(a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb).max(1e-8)
    }

    /// Eq. 3 of the paper, frame by frame: −log(exp(sim(c, q)/κ) / Σ_{q̃ ∈ {q} ∪ Q} exp(sim(c, q̃)/κ)).
    #[test]
    fn contrastive_loss_is_the_papers_formula() {
        tch::manual_seed(0);
        let (m, k, dim, kappa) = (6usize, 4usize, 5i64, 0.1);
        let context = Tensor::randn([m as i64, dim], (Kind::Float, Device::Cpu));
        let targets = Tensor::randn([m as i64, dim], (Kind::Float, Device::Cpu));
        // Frame 3's target equals frame 4's: a distractor identical to the positive is ignored.
        targets.get(3).copy_(&targets.get(4));
        let negatives: Vec<i64> = (0..m * k).map(|i| ((i / k + 1 + i % k) % m) as i64).collect();
        let neg = Tensor::from_slice(&negatives).view([m as i64, k as i64]);
        let (loss, accuracy) = contrastive_loss(&context, &targets, &neg, kappa).unwrap();
        let c: Vec<Vec<f64>> =
            (0..m).map(|i| Vec::<f64>::try_from(&context.get(i as i64).to_kind(Kind::Double)).unwrap()).collect();
        let q: Vec<Vec<f64>> =
            (0..m).map(|i| Vec::<f64>::try_from(&targets.get(i as i64).to_kind(Kind::Double)).unwrap()).collect();
        let (mut direct, mut hits) = (0.0, 0.0);
        for j in 0..m {
            let positive = cos(&c[j], &q[j]) / kappa;
            let mut scores = vec![positive];
            for &n in &negatives[j * k..(j + 1) * k] {
                if q[n as usize] != q[j] {
                    scores.push(cos(&c[j], &q[n as usize]) / kappa);
                }
            }
            let log_sum: f64 = scores.iter().map(|s| s.exp()).sum::<f64>().ln();
            direct += log_sum - positive;
            hits += f64::from(scores[1..].iter().all(|&s| s < positive));
        }
        let ours = loss.double_value(&[]);
        assert!((ours - direct).abs() < 1e-4 * direct.abs(), "pt {ours} vs direct {direct}");
        assert!((accuracy.double_value(&[]) - hits / m as f64).abs() < 1e-6);
    }

    /// L_d = (G·V − Σ_g exp(−Σ_v p̄_gv log p̄_gv)) / (G·V), p̄ the softmax averaged over frames.
    #[test]
    fn diversity_loss_is_the_papers_formula() {
        tch::manual_seed(1);
        let (frames, g, v) = (9, 2, 5);
        let probs = Tensor::randn([frames, g, v], (Kind::Float, Device::Cpu)).softmax(-1, Kind::Float);
        let p: Vec<f64> = Vec::<f64>::try_from(&probs.to_kind(Kind::Double).reshape([-1])).unwrap();
        let mut ppl = 0.0;
        for gi in 0..g as usize {
            let mut entropy = 0.0;
            for vi in 0..v as usize {
                let mean: f64 = (0..frames as usize).map(|f| p[(f * g as usize + gi) * v as usize + vi]).sum::<f64>()
                    / frames as f64;
                entropy -= mean * mean.ln();
            }
            ppl += entropy.exp();
        }
        let ours = perplexity(&probs).unwrap();
        assert!((ours.double_value(&[]) - ppl).abs() < 1e-4, "perplexity {} vs {ppl}", ours.double_value(&[]));
        let loss = diversity_loss(&ours, g * v).unwrap().double_value(&[]);
        let direct = (g * v) as f64 - ppl;
        assert!((loss - direct / (g * v) as f64).abs() < 1e-5);
        // Uniform use of every codeword: no diversity loss.
        let uniform = Tensor::full([frames, g, v], 1.0 / v as f64, (Kind::Float, Device::Cpu));
        assert!(diversity_loss(&perplexity(&uniform).unwrap(), g * v).unwrap().double_value(&[]).abs() < 1e-5);
    }
}
