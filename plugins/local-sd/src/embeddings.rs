//! Timestep embeddings (diffusers' `embeddings.py`: `Timesteps`, `TimestepEmbedding`).

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::error::Result;
use crate::nn::{Activation, Linear};
use crate::weights::VarBuilder;

/// `get_timestep_embedding`: sinusoidal features of (possibly fractional) timesteps, computed
/// in f64 on the host and rounded once to f32, as torch computes them in f32 from exact inputs.
pub fn timestep_embedding(
    timesteps: &[f64],
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f64,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        // torch: exponent = -log(10000) * arange(half) / (half - shift), all float32.
        let freqs: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (-(10000f64.ln()) as f32 * i as f32)
                    / (half as f64 - downscale_freq_shift) as f32;
                exponent.exp()
            })
            .collect();
        let args: Vec<f32> = freqs.iter().map(|f| t as f32 * f).collect();
        let (first, second): (Vec<f32>, Vec<f32>) = if flip_sin_to_cos {
            (
                args.iter().map(|a| a.cos()).collect(),
                args.iter().map(|a| a.sin()).collect(),
            )
        } else {
            (
                args.iter().map(|a| a.sin()).collect(),
                args.iter().map(|a| a.cos()).collect(),
            )
        };
        out.extend(first);
        out.extend(second);
        if dim % 2 == 1 {
            out.push(0.0);
        }
    }
    let t: Tensor<2> = Tensor::from_data(
        TensorData::new(out, [timesteps.len(), dim]),
        (device, DType::F32),
    );
    crate::nn::to_dtype(t, dtype)
}

/// `TimestepEmbedding`: linear, SiLU, linear.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    act: Activation,
}

impl TimestepEmbedding {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize, act: Activation) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::load(&vb.pp("linear_1"), in_dim, out_dim, true)?,
            linear_2: Linear::load(&vb.pp("linear_2"), out_dim, out_dim, true)?,
            act,
        })
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2
            .forward(self.act.forward(self.linear_1.forward(x)))
    }
}
