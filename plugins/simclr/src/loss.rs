//! NT-Xent, SimCLR's normalised temperature-scaled cross-entropy.

use pt_sdk::prelude::*;

/// NT-Xent over `z` = [2B, d]: rows i and i + B are the two views of one image. Each row's
/// positive is its partner; the other 2B − 2 rows are its negatives. Returns the mean loss over
/// all 2B rows and the fraction of rows whose most similar other row is the partner.
pub fn nt_xent(z: &Tensor, temperature: f64) -> Result<(Tensor, Tensor)> {
    let size = z.size();
    if size.len() != 2 || size[0] < 2 || size[0] % 2 != 0 {
        bail!(Shape, "nt_xent: expected [2 x batch, dim] embeddings, got {size:?}");
    }
    if temperature <= 0.0 {
        bail!(Config, "temperature must be positive, got {temperature}");
    }
    let n = size[0];
    let half = n / 2;
    let device = z.device();
    // In fp32 even under autocast: the softmax over 2B similarities / 0.1 needs the range.
    let z = z.f_to_kind(Kind::Float)?;
    let norm = z.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
    let z = z.f_div(&norm)?; // [2B, d], unit rows
    let sim = z.f_matmul(&z.f_transpose(0, 1)?)?.f_div_scalar(temperature)?; // [2B, 2B]
    let eye = Tensor::f_eye(n, (Kind::Bool, device))?;
    let sim = sim.f_masked_fill(&eye, f64::NEG_INFINITY)?;
    let targets = Tensor::f_arange(n, (Kind::Int64, device))?.f_add_scalar(half)?.f_remainder(n)?; // partner of each row
    let loss = sim.f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0)?;
    let accuracy = sim.detach().f_argmax(1, false)?.f_eq_tensor(&targets)?.f_to_kind(Kind::Float)?.f_mean(None)?;
    Ok((loss, accuracy))
}
