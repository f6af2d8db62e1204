//! The torch.nn layers diffusers builds on (Linear, Conv2d, GroupNorm, LayerNorm, Embedding),
//! loaded under torch's parameter names (`weight`, `bias`).

use burn::tensor::module::{conv2d, embedding, interpolate, layer_norm, linear};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use std::sync::Arc;

use burn::tensor::{DType, Device, Int, Tensor};

use crate::cpu_tensor::{self, CpuTensor};
use crate::{cpu_conv, cpu_group_norm, cpu_linear};
use crate::error::Result;
use crate::weights::VarBuilder;

/// Casts to f32 for numerically sensitive statistics, and back.
pub(crate) fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 {
        x
    } else {
        x.cast(DType::F32)
    }
}

pub(crate) fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}

/// `torch.nn.Linear`; the weight is stored `[out, in]` and kept transposed for Burn's
/// `x @ w` convention.
#[derive(Debug, Clone)]
pub struct Linear {
    weights: LinearWeights,
}

// One per layer, built once: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum LinearWeights {
    Tensor {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
    /// f32 on the CPU backend: [`cpu_linear`], in its own layout (instead of the tensors).
    Cpu(Arc<cpu_linear::Weights>),
}

impl Linear {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get("weight", [out_dim, in_dim])?;
        let bias = if bias {
            Some(vb.get("bias", [out_dim])?)
        } else {
            None
        };
        let weights = if *vb.device() == Device::flex() && vb.dtype() == DType::F32 {
            let weight = f32_values(weight);
            let bias = bias.map(f32_values);
            LinearWeights::Cpu(Arc::new(cpu_linear::Weights::from_torch(
                &weight, bias, in_dim, out_dim,
            )))
        } else {
            LinearWeights::Tensor {
                weight: weight.transpose(),
                bias,
            }
        };
        Ok(Self { weights })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.weights {
            LinearWeights::Tensor { weight, bias } => linear(x, weight.clone(), bias.clone()),
            LinearWeights::Cpu(weights) => {
                let dtype = x.dtype();
                let mut shape = x.dims();
                let x = CpuTensor::new(x);
                let out = weights.forward(x.values());
                drop(x);
                shape[D - 1] = weights.out_features();
                cpu_tensor::tensor_from(out, shape, dtype)
            }
        }
    }
}

/// `torch.nn.Conv2d` with square kernels and symmetric padding.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weights: ConvWeights,
    stride: usize,
    padding: usize,
}

// One per layer, built once: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum ConvWeights {
    /// torch's `[out, in, k, k]`, for Burn's convolution.
    Tensor {
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
    },
    /// f32 stride-1 convolutions on the CPU backend run [`cpu_conv`], in its own weight layout
    /// (held instead of the tensor, not beside it).
    Cpu(Arc<cpu_conv::Kernel>),
    /// f32 1x1 convolutions (stride 1, no padding) on the CPU backend: one product per image
    /// ([`cpu_linear`]).
    Pointwise(Arc<cpu_linear::Weights>),
}

impl Conv2d {
    pub fn load(
        vb: &VarBuilder,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = vb.get("weight", [out_ch, in_ch, kernel, kernel])?;
        let bias = Some(vb.get("bias", [out_ch])?);
        let cpu = *vb.device() == Device::flex() && vb.dtype() == DType::F32 && stride == 1;
        let weights = if cpu && kernel == 1 && padding == 0 {
            let weight = f32_values(weight);
            let bias = bias.map(f32_values);
            ConvWeights::Pointwise(Arc::new(cpu_linear::Weights::from_torch(
                &weight, bias, in_ch, out_ch,
            )))
        } else if cpu && kernel > 1 {
            let weight = f32_values(weight);
            let bias = bias.map(f32_values);
            ConvWeights::Cpu(Arc::new(cpu_conv::Kernel::from_torch(
                &weight, bias, out_ch, in_ch, kernel, padding,
            )))
        } else {
            ConvWeights::Tensor { weight, bias }
        };
        Ok(Self {
            weights,
            stride,
            padding,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.weights {
            ConvWeights::Tensor { weight, bias } => {
                let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
                conv2d(x, weight.clone(), bias.clone(), options)
            }
            ConvWeights::Cpu(kernel) => cpu_convolution(kernel, x, 1),
            ConvWeights::Pointwise(weights) => {
                let dtype = x.dtype();
                let [batch, _, height, width] = x.dims();
                let x = CpuTensor::new(x);
                let out = weights.forward_channels_first(x.values(), batch);
                drop(x);
                let shape = [batch, weights.out_features(), height, width];
                cpu_tensor::tensor_from(out, shape, dtype)
            }
        }
    }

    /// The convolution of `x` upscaled 2x by nearest-neighbour sampling. On the CPU the
    /// upscaled image is never made: the convolution reads `x`'s pixels twice each.
    pub fn forward_upsampled_2x(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.weights {
            ConvWeights::Tensor { .. } | ConvWeights::Pointwise(_) => {
                let [_, _, height, width] = x.dims();
                let mut options = InterpolateOptions::new(InterpolateMode::Nearest);
                options.align_corners = false;
                options.output_size = Some([height * 2, width * 2]);
                self.forward(interpolate(x, options))
            }
            ConvWeights::Cpu(kernel) => cpu_convolution(kernel, x, 2),
        }
    }

    /// The convolution with other options (stride, asymmetric padding), on Burn's kernels.
    ///
    /// # Panics
    /// When the weights were loaded for [`cpu_conv`] (stride 1 on the CPU); only stride-2
    /// downsamplers call this.
    pub fn forward_with(&self, x: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
        match &self.weights {
            ConvWeights::Tensor { weight, bias } => {
                conv2d(x, weight.clone(), bias.clone(), options)
            }
            ConvWeights::Cpu(_) | ConvWeights::Pointwise(_) => {
                panic!("a stride-1 CPU convolution was called with other options")
            }
        }
    }
}

/// [`cpu_conv`] of `x` upscaled `scale` times, into `x`'s own buffer when nothing else holds it
/// and the sizes match (its pages are already mapped).
fn cpu_convolution(kernel: &cpu_conv::Kernel, x: Tensor<4>, scale: usize) -> Tensor<4> {
    let dtype = x.dtype();
    let [batch, _, height, width] = x.dims();
    let (out_h, out_w) = kernel.output_size(height * scale, width * scale);
    let shape = [batch, kernel.out_channels(), out_h, out_w];
    let mut x = CpuTensor::new(x);
    let padded = kernel.pad(x.values(), batch, height, width, scale);
    if let Some(out) = x.values_mut().filter(|out| out.len() == padded.output_len()) {
        kernel.convolve(padded, out);
        return to_dtype(x.into_tensor(shape), dtype);
    }
    drop(x);
    let mut out = vec![0f32; padded.output_len()];
    kernel.convolve(padded, &mut out);
    cpu_tensor::tensor_from(out, shape, dtype)
}

/// A CPU backend tensor's values as f32, row-major.
fn f32_values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    // The CPU backend's own data, cast to f32 first: this cannot fail. Moves the buffer out
    // when nothing else holds it.
    to_f32(x)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| panic!("tensor is not f32 data: {e:?}"))
}

/// `torch.nn.GroupNorm`. Statistics are computed in f32 whatever the compute precision: in fp16
/// the variance of large activations overflows.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    /// On the CPU backend, `weight` and `bias` for [`cpu_group_norm`].
    cpu: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn load(vb: &VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(crate::Error::Config(format!(
                "GroupNorm at `{}`: {channels} channels do not split into {groups} groups; the config.json is inconsistent",
                vb.pp("weight").prefix_name()
            )));
        }
        let vb32 = vb.with_dtype(DType::F32);
        let weight = vb32.get("weight", [channels])?;
        let bias = vb32.get("bias", [channels])?;
        let cpu = (*vb.device() == Device::flex())
            .then(|| Arc::new((f32_values(weight.clone()), f32_values(bias.clone()))));
        Ok(Self {
            weight,
            bias,
            cpu,
            groups,
            eps,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, None)
    }

    /// The norm followed by `activation`; on the CPU backend a SiLU is applied in the same pass.
    pub fn forward_then(&self, x: Tensor<4>, activation: Option<Activation>) -> Tensor<4> {
        let dtype = x.dtype();
        let [n, c, h, w] = x.dims();
        let fused = matches!(activation, None | Some(Activation::Silu));
        if let Some(params) = self.cpu.as_deref()
            && dtype == DType::F32
            && fused
        {
            let shape = cpu_group_norm::Shape {
                batch: n,
                channels: c,
                spatial: h * w,
                groups: self.groups,
            };
            let silu = activation.is_some();
            return CpuTensor::new(x).update([n, c, h, w], |values| {
                cpu_group_norm::group_norm(values, shape, &params.0, &params.1, self.eps, silu);
            });
        }
        let g = self.groups;
        let x = to_f32(x).reshape([n, g, (c / g) * h * w]);
        let (var, mean) = x.clone().var_mean_bias(2);
        // (x - mean) / std * weight + bias folded into one per-channel scale and shift, so the
        // full-size tensor takes two elementwise passes instead of four.
        let scale = (var + self.eps).sqrt().recip() * self.weight.clone().reshape([1, g, c / g]);
        let shift = self.bias.clone().reshape([1, g, c / g]) - mean * scale.clone();
        let x = x.reshape([n, c, h * w]) * scale.reshape([n, c, 1]) + shift.reshape([n, c, 1]);
        let x = to_dtype(x.reshape([n, c, h, w]), dtype);
        match activation {
            Some(activation) => activation.forward(x),
            None => x,
        }
    }
}

/// `torch.nn.LayerNorm` over the last dimension, statistics in f32.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        let vb32 = vb.with_dtype(DType::F32);
        Ok(Self {
            weight: vb32.get("weight", [dim])?,
            bias: vb32.get("bias", [dim])?,
            eps,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let y = layer_norm(
            to_f32(x),
            self.weight.clone(),
            Some(self.bias.clone()),
            self.eps,
        );
        to_dtype(y, dtype)
    }
}

/// `torch.nn.Embedding`.
#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor<2>,
}

impl Embedding {
    pub fn load(vb: &VarBuilder, count: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get("weight", [count, dim])?,
        })
    }

    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.weight.clone(), ids)
    }

    pub fn weight(&self) -> Tensor<2> {
        self.weight.clone()
    }
}

/// Activations by the names diffusers' and transformers' configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Gelu,
    GeluTanh,
    QuickGelu,
    Relu,
}

impl Activation {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "silu" | "swish" => Self::Silu,
            "gelu" => Self::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu-approximate" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "relu" => Self::Relu,
            other => {
                return Err(crate::Error::Unsupported(format!(
                    "activation function `{other}`"
                )));
            }
        })
    }

    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        use burn::tensor::activation as act;
        match self {
            Self::Silu => act::silu(x),
            Self::Gelu => act::gelu(x),
            Self::GeluTanh => act::gelu_approximate(x),
            Self::QuickGelu => x.clone() * act::sigmoid(x * 1.702),
            Self::Relu => act::relu(x),
        }
    }
}
