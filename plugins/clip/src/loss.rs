//! CLIP's symmetric InfoNCE (Radford et al. 2021, "Learning Transferable Visual Models From
//! Natural Language Supervision", Fig. 3), with every rank's pairs as negatives.

use pt_sdk::prelude::*;

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
    Ok(x.f_div(&norm)?)
}

/// What one step's loss reports.
pub struct ClipLoss {
    pub loss: Tensor,
    /// Share of this rank's images whose most similar caption (over the global batch) is their own.
    pub image_to_text_accuracy: Tensor,
    pub text_to_image_accuracy: Tensor,
}

/// The loss over this rank's rows of the global batch. `image`, `text`: [B, D] unit rows (pair i
/// is row i); `all_image`, `all_text`: [N, D], every rank's rows in rank order with this rank's
/// at `offset` (one process: the same tensors, offset 0); `scale`: the logit scale (exp of the
/// learnt log scale). Each rank's value is the mean over its rows of the two cross-entropies
/// (image→text over the N captions, text→image over the N images), halved; the mean over ranks
/// is the one-process loss, and with a differentiable gather so is the mean of the gradients.
pub fn clip_loss(
    image: &Tensor,
    text: &Tensor,
    all_image: &Tensor,
    all_text: &Tensor,
    offset: i64,
    scale: &Tensor,
) -> Result<ClipLoss> {
    let (b, n) = (image.size()[0], all_image.size()[0]);
    if text.size()[0] != b || all_text.size()[0] != n || offset + b > n {
        bail!(
            Shape,
            "clip: {:?} images and {:?} captions here, {:?} and {:?} in the global batch (offset {offset})",
            image.size(),
            text.size(),
            all_image.size(),
            all_text.size()
        );
    }
    let targets = Tensor::f_arange(b, (Kind::Int64, image.device()))?.f_add_scalar(offset)?; // [B]
    let per_image = image.f_matmul(&all_text.f_transpose(0, 1)?)?.f_mul(scale)?; // [B, N]
    let per_text = text.f_matmul(&all_image.f_transpose(0, 1)?)?.f_mul(scale)?; // [B, N]
    let ce = |logits: &Tensor| logits.f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0);
    let loss = ce(&per_image)?.f_add(&ce(&per_text)?)?.f_div_scalar(2.0)?;
    let hits = |logits: &Tensor| -> Result<Tensor> {
        Ok(logits.detach().f_argmax(1, false)?.f_eq_tensor(&targets)?.f_to_kind(Kind::Float)?.f_mean(None)?)
    };
    Ok(ClipLoss { loss, image_to_text_accuracy: hits(&per_image)?, text_to_image_accuracy: hits(&per_text)? })
}

/// Every rank's `[B, D]` rows in rank order, differentiably: this rank's rows placed at its
/// offset in zeros and summed over ranks, so the backward hands each rank the gradient every
/// rank's loss sends to its rows. Returns the gathered rows and this rank's offset.
pub fn gather_rows(x: &Tensor, rank: i64, world: i64) -> Result<(Tensor, i64)> {
    if world <= 1 {
        return Ok((x.shallow_clone(), 0));
    }
    let b = x.size()[0];
    let padded = Tensor::f_cat(
        &[
            Tensor::f_zeros([rank * b, x.size()[1]], (x.kind(), x.device()))?,
            x.shallow_clone(),
            Tensor::f_zeros([(world - rank - 1) * b, x.size()[1]], (x.kind(), x.device()))?,
        ],
        0,
    )?; // [world·B, D]
    Ok((pt_sdk::host::all_reduce_sum(&padded)?, rank * b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's pseudo-code written out with plain loops over a hand-sized batch.
    fn reference(image: &[[f64; 2]], text: &[[f64; 2]], scale: f64) -> f64 {
        let n = image.len();
        let logit = |i: usize, j: usize| scale * (image[i][0] * text[j][0] + image[i][1] * text[j][1]);
        let (mut rows, mut cols) = (0.0, 0.0);
        for i in 0..n {
            let lse_row = (0..n).map(|j| logit(i, j).exp()).sum::<f64>().ln();
            let lse_col = (0..n).map(|j| logit(j, i).exp()).sum::<f64>().ln();
            rows += lse_row - logit(i, i);
            cols += lse_col - logit(i, i);
        }
        (rows / n as f64 + cols / n as f64) / 2.0
    }

    fn unit(v: [f64; 2]) -> [f64; 2] {
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        [v[0] / n, v[1] / n]
    }

    #[test]
    fn loss_is_the_papers_symmetric_cross_entropy() {
        let image = [unit([1.0, 0.2]), unit([0.1, 1.0]), unit([-1.0, 0.3])];
        let text = [unit([0.9, 0.1]), unit([0.3, 1.0]), unit([-0.5, -0.4])];
        let t = |v: &[[f64; 2]]| Tensor::from_slice(&v.iter().flatten().copied().collect::<Vec<_>>()).view([3, 2]);
        let (i, x) = (t(&image), t(&text));
        let out = clip_loss(&i, &x, &i, &x, 0, &Tensor::from(14.285714)).unwrap();
        let want = reference(&image, &text, 14.285714);
        assert!((out.loss.double_value(&[]) - want).abs() < 1e-9, "{} vs {want}", out.loss.double_value(&[]));
        assert_eq!(out.image_to_text_accuracy.double_value(&[]), 1.0);
    }

    /// open_clip's `ClipLoss` (one process) in PyTorch: logits_per_image = scale · I Tᵀ,
    /// logits_per_text its transpose, the mean of the two cross-entropies against arange(N).
    const TORCH_CLIP_LOSS: &str = r#"
import json, sys, torch
import torch.nn.functional as F
d = json.load(open(sys.argv[1]))
image, text = torch.tensor(d["image"], dtype=torch.float64), torch.tensor(d["text"], dtype=torch.float64)
logits_per_image = d["scale"] * image @ text.T
labels = torch.arange(len(image))
print(repr(((F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2).item()))
"#;

    #[test]
    fn loss_equals_open_clips_formula_in_pytorch() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python =
            std::env::var_os("PT_PYTHON").map(std::path::PathBuf::from).unwrap_or(root.join(".pt/venv/bin/python"));
        assert!(python.exists(), "{} not found: run scripts/setup.sh (it installs torch)", python.display());
        tch::manual_seed(11);
        let rows = |t: &Tensor| -> Vec<Vec<f64>> {
            (0..t.size()[0]).map(|r| Vec::<f64>::try_from(t.get(r)).unwrap()).collect()
        };
        let image = l2_normalize(&Tensor::randn([8, 5], (Kind::Double, tch::Device::Cpu))).unwrap();
        let text = l2_normalize(&Tensor::randn([8, 5], (Kind::Double, tch::Device::Cpu))).unwrap();
        let ours = clip_loss(&image, &text, &image, &text, 0, &Tensor::from(12.5f64)).unwrap().loss.double_value(&[]);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("batch.json");
        let batch = serde_json::json!({ "image": rows(&image), "text": rows(&text), "scale": 12.5 });
        std::fs::write(&input, batch.to_string()).unwrap();
        let out = std::process::Command::new(&python).args(["-c", TORCH_CLIP_LOSS]).arg(&input).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let torch: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!((ours - torch).abs() < 1e-12, "pt {ours} vs PyTorch {torch}");
    }

    #[test]
    fn two_halves_average_to_the_whole_batch() {
        tch::manual_seed(3);
        let image = l2_normalize(&Tensor::randn([6, 4], (Kind::Double, tch::Device::Cpu))).unwrap();
        let text = l2_normalize(&Tensor::randn([6, 4], (Kind::Double, tch::Device::Cpu))).unwrap();
        let scale = Tensor::from(10.0f64);
        let whole = clip_loss(&image, &text, &image, &text, 0, &scale).unwrap().loss.double_value(&[]);
        let half = |k: i64| {
            let (i, x) = (image.narrow(0, 3 * k, 3), text.narrow(0, 3 * k, 3));
            clip_loss(&i, &x, &image, &text, 3 * k, &scale).unwrap().loss.double_value(&[])
        };
        assert!(((half(0) + half(1)) / 2.0 - whole).abs() < 1e-12);
    }
}
