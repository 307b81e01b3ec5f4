//! Applying [`OnDevice`] conversions: the host calls this after copying a batch to the device.

use crate::info::OnDevice;
use crate::{PtError, Result};
use tch::{Kind, Tensor};

impl OnDevice {
    /// `field`'s tensor as components read it; an error names the field when the dataset served
    /// something other than what its info promised. Builds the statistics on `t`'s device each
    /// call: a host that converts every batch keeps them with [`Self::constants`] and calls
    /// [`Self::apply_with`].
    pub fn apply(&self, field: &str, t: &Tensor) -> Result<Tensor> {
        self.apply_with(field, t, &self.constants(t.device())?)
    }

    /// The per-channel mean and standard deviation as `[1, C, 1, 1]` float32 on `device`.
    pub fn constants(&self, device: tch::Device) -> Result<(Tensor, Tensor)> {
        match self {
            OnDevice::NormalizePixels { mean, std, .. } => {
                let on = |v: &[f64]| -> Result<Tensor> {
                    let values: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                    Ok(Tensor::f_from_slice(&values)?.f_reshape([1, values.len() as i64, 1, 1])?.f_to_device(device)?)
                };
                Ok((on(mean)?, on(std)?))
            }
        }
    }

    /// [`Self::apply`] with [`Self::constants`] made once beforehand (no host-to-device copy).
    pub fn apply_with(&self, field: &str, t: &Tensor, constants: &(Tensor, Tensor)) -> Result<Tensor> {
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
                let n = mean.len() as i64;
                if size.len() != 4 || n != std.len() as i64 || (n != 1 && n != size[1]) {
                    return Err(PtError::shape(format!(
                        "batch field `{field}`: {n} mean and {} std values for pixels of shape {size:?} \
                         (need [batch, channels, height, width] and 1 value or one per channel)",
                        std.len()
                    )));
                }
                let pixels = t.f_to_kind(Kind::Float)?.f_mul_scalar(*scale)?; // [B, C, H, W] in pixel units
                Ok(pixels.f_sub(&constants.0)?.f_div(&constants.1)?)
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
