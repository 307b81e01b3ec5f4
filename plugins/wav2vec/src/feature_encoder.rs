//! The convolutional feature encoder: raw audio [batch, samples] → frames [batch, frames, conv_dim]
//! (`feature_extractor.conv_layers.N.{conv,layer_norm}` as in transformers' `Wav2Vec2FeatureEncoder`).

use crate::config::{FeatExtractNorm, Wav2Vec2Config};
use pt_kit::params::Params;
use pt_sdk::prelude::*;

/// Where a conv layer normalises.
enum Norm {
    None,
    /// GroupNorm with one group per channel: each channel normalised over time.
    Group {
        weight: Tensor,
        bias: Tensor,
    },
    /// LayerNorm over channels at each time step.
    Layer {
        weight: Tensor,
        bias: Tensor,
    },
}

struct ConvLayer {
    weight: Tensor, // [out, in, kernel]
    bias: Option<Tensor>,
    stride: i64,
    norm: Norm,
}

impl ConvLayer {
    fn new(
        p: &Params,
        cin: i64,
        cout: i64,
        kernel: i64,
        stride: i64,
        norm: Option<FeatExtractNorm>,
        bias: bool,
    ) -> Result<Self> {
        let conv = p.sub("conv");
        // kaiming_normal_ (fan_in, gain sqrt(2)) as transformers initialises Conv1d.
        let std = (2.0 / (cin * kernel) as f64).sqrt();
        let weight = conv.normal_std("weight", &[cout, cin, kernel], std, None)?;
        let bias = if bias { Some(conv.uniform("bias", &[cout], (1.0 / (cin * kernel) as f64).sqrt())?) } else { None };
        let ln = p.sub("layer_norm");
        let norm = match norm {
            None => Norm::None,
            Some(FeatExtractNorm::Group) => {
                Norm::Group { weight: ln.constant("weight", &[cout], 1.0)?, bias: ln.constant("bias", &[cout], 0.0)? }
            }
            Some(FeatExtractNorm::Layer) => {
                Norm::Layer { weight: ln.constant("weight", &[cout], 1.0)?, bias: ln.constant("bias", &[cout], 0.0)? }
            }
        };
        Ok(ConvLayer { weight, bias, stride, norm })
    }

    /// [batch, in, time] → [batch, out, time']
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = xs.f_conv1d(&self.weight, self.bias.as_ref(), [self.stride], [0], [1], 1)?;
        let channels = self.weight.size()[0];
        let xs = match &self.norm {
            Norm::None => xs,
            Norm::Group { weight, bias } => xs.f_group_norm(channels, Some(weight), Some(bias), 1e-5, true)?,
            Norm::Layer { weight, bias } => xs
                .f_transpose(1, 2)?
                .f_layer_norm([channels], Some(weight), Some(bias), 1e-5, true)?
                .f_transpose(1, 2)?,
        };
        Ok(xs.f_gelu("none")?)
    }
}

pub struct FeatureEncoder {
    layers: Vec<ConvLayer>,
    kernels: Vec<i64>,
    strides: Vec<i64>,
}

impl FeatureEncoder {
    pub fn new(p: &Params, c: &Wav2Vec2Config) -> Result<Self> {
        let mut layers = Vec::new();
        let mut cin = 1;
        for (i, ((&cout, &k), &s)) in c.conv_dim.iter().zip(&c.conv_kernel).zip(&c.conv_stride).enumerate() {
            let norm = match c.feat_extract_norm {
                FeatExtractNorm::Group if i == 0 => Some(FeatExtractNorm::Group),
                FeatExtractNorm::Group => None,
                FeatExtractNorm::Layer => Some(FeatExtractNorm::Layer),
            };
            layers.push(ConvLayer::new(&p.sub(i), cin, cout, k, s, norm, c.conv_bias)?);
            cin = cout;
        }
        Ok(FeatureEncoder { layers, kernels: c.conv_kernel.clone(), strides: c.conv_stride.clone() })
    }

    /// `input_values` [batch, samples] → [batch, conv_dim, frames]
    pub fn forward(&self, input_values: &Tensor) -> Result<Tensor> {
        let mut xs = input_values.f_unsqueeze(1)?; // [batch, 1, samples]
        for layer in &self.layers {
            xs = layer.forward(&xs)?;
        }
        Ok(xs)
    }

    /// Frames the encoder makes of `samples` audio samples (0 when shorter than the receptive field).
    pub fn output_length(&self, samples: i64) -> i64 {
        output_length(&self.kernels, &self.strides, samples)
    }

    /// [`Self::output_length`] of each entry of `samples` (int64), computed where it is.
    pub fn output_lengths(&self, samples: &Tensor) -> Result<Tensor> {
        output_lengths(&self.kernels, &self.strides, samples)
    }
}

/// `input_values` [batch, samples] of a batch and its shape, or a shape error naming the field.
pub fn audio_input(inputs: &Tensors) -> Result<(&Tensor, i64, i64)> {
    let audio = inputs.require("input_values")?;
    let (batch, samples) = audio.size2().map_err(|_| {
        PtError::new(
            ErrorKind::Shape,
            format!("wav2vec2: input_values must be [batch, samples], got {:?}", audio.size()),
        )
    })?;
    Ok((audio, batch, samples))
}

/// The conv stack's output length: floor((L - k) / s) + 1 per layer, as `torch.nn.Conv1d`.
pub fn output_length(kernels: &[i64], strides: &[i64], samples: i64) -> i64 {
    let mut len = samples;
    for (&k, &s) in kernels.iter().zip(strides) {
        if len < k {
            return 0;
        }
        len = (len - k) / s + 1;
    }
    len
}

/// The samples one output frame sees through convolutions of `kernels` and `strides`.
pub fn receptive_field(kernels: &[i64], strides: &[i64]) -> i64 {
    kernels.iter().zip(strides).rev().fold(1, |field, (k, s)| (field - 1) * s + k)
}

/// [`output_length`] of each entry of `samples` (int64, any shape), on `samples`' device, so
/// nothing is read back: a clip shorter than a layer's kernel has no frames.
pub fn output_lengths(kernels: &[i64], strides: &[i64], samples: &Tensor) -> Result<Tensor> {
    let mut len = samples.shallow_clone();
    for (&k, &s) in kernels.iter().zip(strides) {
        // floor((len - k) / s) + 1 is at most 0 exactly when len < k.
        len = len.f_sub_scalar(k)?.f_div_scalar_mode(s, "floor")?.f_add_scalar(1)?.f_clamp_min(0)?;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_at_16khz_gives_49_frames() {
        let k = [10, 3, 3, 3, 3, 2, 2];
        let s = [5, 2, 2, 2, 2, 2, 2];
        assert_eq!(output_length(&k, &s, 16000), 49);
        assert_eq!(output_length(&k, &s, 400), 1);
        assert_eq!(output_length(&k, &s, 399), 0);
        assert_eq!(receptive_field(&k, &s), 400);
    }

    #[test]
    fn lengths_computed_as_tensors_equal_the_host_formula() {
        let k = [10, 3, 3, 3, 3, 2, 2];
        let s = [5, 2, 2, 2, 2, 2, 2];
        let samples: Vec<i64> = (0..2000).step_by(7).chain([399, 400, 16000, 16001]).collect();
        let lengths = output_lengths(&k, &s, &Tensor::from_slice(&samples)).unwrap();
        let expected: Vec<i64> = samples.iter().map(|&n| output_length(&k, &s, n)).collect();
        assert_eq!(Vec::<i64>::try_from(&lengths).unwrap(), expected);
    }
}
