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

/// The global batch's embeddings for NT-Xent on rank `rank` of `world`: `gathered` holds every
/// rank's [2b, d] rows (its b first views, then its b second views) in rank order. This rank's
/// rows are replaced by its live `z`, and all rows are reordered into [all first views; all
/// second views], the layout one process with the whole global batch has, so every view's
/// negatives span the global batch.
pub fn global_embeddings(z: &Tensor, gathered: &Tensor, rank: i64, world: i64) -> Result<Tensor> {
    let rows = z.size()[0];
    if gathered.size()[0] != rows * world || rows % 2 != 0 {
        bail!(Shape, "simclr: gathered {:?} embeddings from {world} ranks for a local {:?}", gathered.size(), z.size());
    }
    let b = rows / 2;
    let mut first = Vec::with_capacity(world as usize);
    let mut second = Vec::with_capacity(world as usize);
    for r in 0..world {
        let part = if r == rank { z.shallow_clone() } else { gathered.f_narrow(0, r * rows, rows)? };
        first.push(part.f_narrow(0, 0, b)?);
        second.push(part.f_narrow(0, b, b)?);
    }
    first.extend(second);
    Ok(Tensor::f_cat(&first, 0)?)
}

/// `loss` with its value unchanged and its gradient multiplied by `factor`. Each rank computes
/// the global loss with only its own rows live; scaling by the world size makes the mean of the
/// ranks' gradients (what the all-reduce gives) the one-process gradient.
pub fn scale_gradient(loss: &Tensor, factor: f64) -> Result<Tensor> {
    if factor == 1.0 {
        return Ok(loss.shallow_clone());
    }
    Ok(loss.f_mul_scalar(factor)?.f_sub(&loss.f_mul_scalar(factor - 1.0)?.f_detach()?)?)
}
