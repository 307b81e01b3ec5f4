//! ResNet's building blocks, following torchvision's `resnet.py`
//! (<https://github.com/pytorch/vision/blob/main/torchvision/models/resnet.py>): parameter and
//! buffer names match its state dict, initialisation matches its `__init__` (Kaiming-normal
//! convs with fan-out, BatchNorm 1/0, PyTorch's default `nn.Linear` init for `fc`).

pub use pt_kit::params::{Linear, Params};
use pt_sdk::Result;
use tch::{Kind, Tensor};

/// `nn.Conv2d(in, out, k, stride, padding, bias=False)`.
pub struct Conv2d {
    pub weight: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub fn new(p: &Params, cin: i64, cout: i64, kernel: i64, stride: i64, padding: i64) -> Result<Self> {
        // kaiming_normal_(mode="fan_out", nonlinearity="relu")
        let std = (2.0 / (cout * kernel * kernel) as f64).sqrt();
        Ok(Conv2d { weight: p.normal_std("weight", &[cout, cin, kernel, kernel], std, None)?, stride, padding })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_conv2d::<Tensor>(&self.weight, None, [self.stride; 2], [self.padding; 2], [1, 1], 1)?)
    }

    /// Forward multiply-adds for an input of `h`×`w`; returns them and the output size.
    pub fn macs(&self, h: i64, w: i64) -> (f64, i64, i64) {
        let s = self.weight.size();
        let out = |x: i64| (x + 2 * self.padding - s[2]) / self.stride + 1;
        let (oh, ow) = (out(h), out(w));
        ((s[0] * s[1] * s[2] * s[3] * oh * ow) as f64, oh, ow)
    }
}

/// Which statistics BatchNorm normalises with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// The running statistics (evaluation).
    Running,
    /// This batch's (training), updating the running ones.
    Batch,
    /// The global batch's, over every rank of a multi-process run (`nn.SyncBatchNorm`).
    SyncedBatch,
}

/// `nn.BatchNorm2d`: batch statistics in training (updating the running ones), running
/// statistics in evaluation; `nn.SyncBatchNorm` with [`Norm::SyncedBatch`].
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    pub fn new(p: &Params, channels: i64, momentum: f64, eps: f64, zero_weight: bool) -> Result<Self> {
        Ok(BatchNorm2d {
            weight: p.constant("weight", &[channels], if zero_weight { 0.0 } else { 1.0 })?,
            bias: p.constant("bias", &[channels], 0.0)?,
            running_mean: p.buffer("running_mean", &[channels], 0.0, Kind::Float)?,
            running_var: p.buffer("running_var", &[channels], 1.0, Kind::Float)?,
            num_batches_tracked: p.buffer("num_batches_tracked", &[], 0.0, Kind::Int64)?,
            momentum,
            eps,
        })
    }

    pub fn forward(&self, xs: &Tensor, norm: Norm) -> Result<Tensor> {
        let train = norm != Norm::Running;
        if train {
            let _no_grad = tch::no_grad_guard();
            let _ = self.num_batches_tracked.shallow_clone().f_add_scalar_(1)?;
        }
        if norm == Norm::SyncedBatch {
            return self.forward_synced(xs);
        }
        // In training libtorch updates running_mean/var in place (unbiased variance), as PyTorch does.
        Ok(Tensor::f_batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            true,
        )?)
    }

    /// Statistics of the global batch: per-channel sums, sums of squares and the count, summed
    /// over ranks by the host's differentiable all-reduce (one collective per layer), so the
    /// gradient flows through every rank's share as in `nn.SyncBatchNorm`. Float32 statistics.
    fn forward_synced(&self, xs: &Tensor) -> Result<Tensor> {
        let c = self.weight.size()[0];
        let x = xs.f_to_kind(Kind::Float)?; // [B, C, H, W]
        let local_count = (x.numel() as i64 / c) as f64;
        let dims: &[i64] = &[0, 2, 3];
        let sums = Tensor::f_cat(
            &[
                x.f_sum_dim_intlist(Some(dims), false, Kind::Float)?, // [C]
                x.f_square()?.f_sum_dim_intlist(Some(dims), false, Kind::Float)?, // [C]
                Tensor::f_full([1], local_count, (Kind::Float, x.device()))?,
            ],
            0,
        )?;
        let global = pt_sdk::host::all_reduce_sum(&sums)?; // [2C + 1]
        let count = global.f_narrow(0, 2 * c, 1)?; // [1]
        let mean = global.f_narrow(0, 0, c)?.f_div(&count)?; // [C]
        let var = global.f_narrow(0, c, c)?.f_div(&count)?.f_sub(&mean.f_square()?)?.f_clamp_min(0.0)?; // biased
        {
            let _no_grad = tch::no_grad_guard();
            // × n / (n − 1), on the device (no host sync per layer).
            let unbiased = var.f_mul(&count)?.f_div(&count.f_sub_scalar(1.0)?.f_clamp_min(1.0)?)?;
            let m = self.momentum;
            let _ = self.running_mean.shallow_clone().f_mul_scalar_(1.0 - m)?.f_add_(&mean.f_mul_scalar(m)?)?;
            let _ = self.running_var.shallow_clone().f_mul_scalar_(1.0 - m)?.f_add_(&unbiased.f_mul_scalar(m)?)?;
        }
        let shape = [1, c, 1, 1];
        let scale = var.f_add_scalar(self.eps)?.f_rsqrt()?.f_mul(&self.weight)?; // [C]
        let y = x.f_sub(&mean.f_view(shape)?)?.f_mul(&scale.f_view(shape)?)?.f_add(&self.bias.f_view(shape)?)?;
        Ok(if xs.kind() == Kind::Float { y } else { y.f_to_kind(xs.kind())? })
    }
}

/// BatchNorm settings shared by every block.
#[derive(Clone, Copy)]
pub struct BnArgs {
    pub momentum: f64,
    pub eps: f64,
    pub zero_init_residual: bool,
}

/// The 1×1 projection shortcut (`downsample.0` conv, `downsample.1` BatchNorm).
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl Downsample {
    fn new(p: &Params, cin: i64, cout: i64, stride: i64, bn: BnArgs) -> Result<Self> {
        Ok(Downsample {
            conv: Conv2d::new(&p.sub(0), cin, cout, 1, stride, 0)?,
            bn: BatchNorm2d::new(&p.sub(1), cout, bn.momentum, bn.eps, false)?,
        })
    }
}

/// A residual block: `BasicBlock` (two 3×3 convs; ResNet-18/34) or `Bottleneck` (1×1, 3×3 with the
/// stride, 1×1 to 4× width; ResNet-50, torchvision's "v1.5").
pub struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<Downsample>,
}

impl Block {
    pub fn new(p: &Params, cin: i64, width: i64, stride: i64, bottleneck: bool, bn: BnArgs) -> Result<Self> {
        let expansion = if bottleneck { 4 } else { 1 };
        let cout = width * expansion;
        let shapes: Vec<(i64, i64, i64, i64, i64)> = if bottleneck {
            vec![(cin, width, 1, 1, 0), (width, width, 3, stride, 1), (width, cout, 1, 1, 0)]
        } else {
            vec![(cin, width, 3, stride, 1), (width, width, 3, 1, 1)]
        };
        let last = shapes.len() - 1;
        let convs = shapes
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s, pad))| {
                let n = i + 1;
                let zero = bn.zero_init_residual && i == last;
                Ok((
                    Conv2d::new(&p.sub(format!("conv{n}")), ci, co, k, s, pad)?,
                    BatchNorm2d::new(&p.sub(format!("bn{n}")), co, bn.momentum, bn.eps, zero)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let downsample = if stride != 1 || cin != cout {
            Some(Downsample::new(&p.sub("downsample"), cin, cout, stride, bn)?)
        } else {
            None
        };
        Ok(Block { convs, downsample })
    }

    pub fn forward(&self, xs: &Tensor, norm: Norm) -> Result<Tensor> {
        let mut out = xs.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            out = bn.forward(&conv.forward(&out)?, norm)?;
            if i != last {
                let _ = out.f_relu_()?; // in place, as torchvision
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(&d.conv.forward(xs)?, norm)?,
            None => xs.shallow_clone(),
        };
        // In place, as torchvision's `out += identity; relu(out)`: less memory traffic.
        let _ = out.f_add_(&identity)?;
        let _ = out.f_relu_()?;
        Ok(out)
    }

    pub fn macs(&self, h: i64, w: i64) -> (f64, i64, i64) {
        let (mut total, mut oh, mut ow) = (0.0, h, w);
        for (conv, _) in &self.convs {
            let (m, a, b) = conv.macs(oh, ow);
            total += m;
            (oh, ow) = (a, b);
        }
        if let Some(d) = &self.downsample {
            total += d.conv.macs(h, w).0;
        }
        (total, oh, ow)
    }
}
