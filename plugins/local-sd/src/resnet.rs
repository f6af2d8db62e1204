//! diffusers' `resnet.py` and `downsampling.py`/`upsampling.py`: `ResnetBlock2D`,
//! `Downsample2D`, `Upsample2D`.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};

use crate::cpu_elementwise;
use crate::error::Result;
use crate::nn::{Activation, Conv2d, GroupNorm, Linear};
use crate::weights::VarBuilder;

#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    act: Activation,
    output_scale_factor: f64,
}

/// Sizes and norms of one `ResnetBlock2D`.
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// `None` in the VAE, which has no time embedding.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn load(vb: &VarBuilder, c: ResnetConfig) -> Result<Self> {
        let conv_shortcut = if c.in_channels != c.out_channels {
            Some(Conv2d::load(
                &vb.pp("conv_shortcut"),
                c.in_channels,
                c.out_channels,
                1,
                1,
                0,
            )?)
        } else {
            None
        };
        let time_emb_proj = match c.temb_channels {
            Some(t) => Some(Linear::load(
                &vb.pp("time_emb_proj"),
                t,
                c.out_channels,
                true,
            )?),
            None => None,
        };
        Ok(Self {
            norm1: GroupNorm::load(&vb.pp("norm1"), c.groups, c.in_channels, c.eps)?,
            conv1: Conv2d::load(&vb.pp("conv1"), c.in_channels, c.out_channels, 3, 1, 1)?,
            time_emb_proj,
            norm2: GroupNorm::load(&vb.pp("norm2"), c.groups, c.out_channels, c.eps)?,
            conv2: Conv2d::load(&vb.pp("conv2"), c.out_channels, c.out_channels, 3, 1, 1)?,
            conv_shortcut,
            act: Activation::Silu,
            output_scale_factor: c.output_scale_factor,
        })
    }

    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = self
            .conv1
            .forward(self.norm1.forward_then(x.clone(), Some(self.act)));
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => {
                let t = proj.forward(self.act.forward(t.clone()));
                cpu_elementwise::add_per_channel(h, t)
            }
            _ => h,
        };
        let h = self.conv2.forward(self.norm2.forward_then(h, Some(self.act)));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        let out = cpu_elementwise::add(shortcut, h);
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}

/// `Downsample2D` with a stride-2 convolution. The VAE uses `padding = 0`, which diffusers
/// implements as a (0, 1, 0, 1) zero pad before the convolution.
#[derive(Debug, Clone)]
pub struct Downsample2D {
    conv: Conv2d,
    asymmetric: bool,
}

impl Downsample2D {
    pub fn load(
        vb: &VarBuilder,
        channels: usize,
        out_channels: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::load(&vb.pp("conv"), channels, out_channels, 3, 2, padding)?,
            asymmetric: padding == 0,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.asymmetric {
            let options = ConvOptions::new_with_padding([2, 2], [(0, 1), (0, 1)], [1, 1], 1);
            self.conv.forward_with(x, options)
        } else {
            self.conv.forward(x)
        }
    }
}

/// `Upsample2D`: nearest-neighbour upscaling (to `size`, or 2x) followed by a 3x3 convolution.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn load(vb: &VarBuilder, channels: usize, out_channels: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::load(&vb.pp("conv"), channels, out_channels, 3, 1, 1)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([h * 2, w * 2]);
        if size == [h * 2, w * 2] {
            return self.conv.forward_upsampled_2x(x);
        }
        let mut options = InterpolateOptions::new(InterpolateMode::Nearest);
        options.align_corners = false;
        options.output_size = Some(size);
        self.conv.forward(interpolate(x, options))
    }
}
