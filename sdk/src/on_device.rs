//! Applying [`OnDevice`] conversions: the host calls this after copying a batch to the device.

use crate::info::OnDevice;
use crate::{PtError, Result};
use tch::{Kind, Tensor};

impl OnDevice {
    /// `field`'s tensor as components read it; an error names the field when the dataset served
    /// something other than what its info promised.
    pub fn apply(&self, field: &str, t: &Tensor) -> Result<Tensor> {
        match self {
            OnDevice::NormalizePixels { scale, mean, std } => {
                if t.kind() != Kind::Uint8 {
                    return Err(PtError::shape(format!(
                        "batch field `{field}`: the dataset declared uint8 pixels (normalised on the device) \
                         but served {:?}",
                        t.kind()
                    )));
                }
                let size = t.size();
                let channels = *size.get(1).unwrap_or(&0);
                let n = mean.len() as i64;
                if size.len() < 2 || n != std.len() as i64 || (n != 1 && n != channels) {
                    return Err(PtError::shape(format!(
                        "batch field `{field}`: {n} mean and {} std values for pixels of shape {size:?} \
                         (need 1 or one per channel of [batch, channels, ...])",
                        std.len()
                    )));
                }
                let mut shape = vec![1i64; size.len()];
                shape[1] = n;
                let stat = |v: &[f64]| -> Result<Tensor> {
                    let values: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                    Ok(Tensor::f_from_slice(&values)?.f_reshape(&shape)?.f_to_device(t.device())?)
                };
                let pixels = t.f_to_kind(Kind::Float)?.f_mul_scalar(*scale)?; // [B, C, ...] in pixel units
                Ok(pixels.f_sub(&stat(mean)?)?.f_div(&stat(std)?)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_uint8_per_channel_and_refuses_floats() {
        let t = OnDevice::NormalizePixels { scale: 1.0 / 255.0, mean: vec![0.5, 0.0], std: vec![0.5, 2.0] };
        let x = Tensor::from_slice(&[255u8, 0, 255, 51]).reshape([1, 2, 2, 1]);
        let y = Vec::<f32>::try_from(t.apply("image", &x).unwrap().flatten(0, -1)).unwrap();
        let want = [1.0, -1.0, 0.5, 0.1];
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{y:?}");
        let err = t.apply("image", &x.to_kind(Kind::Float)).unwrap_err();
        assert!(err.message.contains("`image`") && err.message.contains("Float"), "{err}");
    }
}
