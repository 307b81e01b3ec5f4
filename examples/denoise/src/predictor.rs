//! The objective's own parameters: a two-layer predictor head (Linear → GELU → Linear), named
//! like PyTorch's `nn.Sequential` (`predictor.0.weight` ...) so a checkpoint's
//! `objective.safetensors` loads into the same module in Python.

use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;

const STREAM_INIT: u64 = 0x494E_4954; // "INIT"

pub struct Predictor {
    /// (name, tensor) in a fixed order; the trainer re-points these tensors into its flat
    /// buffer, so `forward` must use these very tensors (they share one `TensorImpl`).
    params: Vec<(String, Tensor)>,
}

/// nn.Linear's default initialisation, U(-1/√fan_in, 1/√fan_in), drawn from a counter stream so
/// it is identical on every device and never touches libtorch's global generator.
fn uniform(rng: &mut CounterRng, shape: &[i64], fan_in: i64, device: Device) -> Result<Tensor> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
    let t = Tensor::from_slice(&values).f_view(shape)?.f_to_device(device)?;
    Ok(t.set_requires_grad(true))
}

impl Predictor {
    pub fn new(dim: i64, hidden: i64, seed: u64, device: Device) -> Result<Self> {
        let mut rng = CounterRng::new(seed, &[STREAM_INIT]);
        let params = vec![
            ("predictor.0.weight".to_string(), uniform(&mut rng, &[hidden, dim], dim, device)?),
            ("predictor.0.bias".to_string(), uniform(&mut rng, &[hidden], dim, device)?),
            ("predictor.2.weight".to_string(), uniform(&mut rng, &[dim, hidden], hidden, device)?),
            ("predictor.2.bias".to_string(), uniform(&mut rng, &[dim], hidden, device)?),
        ];
        Ok(Predictor { params })
    }

    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// [N, dim] → [N, dim].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = |i: usize| &self.params[i].1;
        let h = x.f_linear(p(0), Some(p(1)))?.f_gelu("none")?;
        Ok(h.f_linear(p(2), Some(p(3)))?)
    }
}
