//! diffusers' `unet_2d_blocks.py`: the down, mid and up blocks of the UNet (`DownBlock2D`,
//! `CrossAttnDownBlock2D`, `UNetMidBlock2DCrossAttn`, `UpBlock2D`, `CrossAttnUpBlock2D`).

use burn::tensor::Tensor;

use crate::attention::{Transformer2DConfig, Transformer2DModel};
use crate::error::Result;
use crate::resnet::{Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};
use crate::weights::VarBuilder;

/// What every block shares: norms, the time embedding size and the attention setup.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub context_dim: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl BlockConfig {
    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            eps: self.eps,
            output_scale_factor: 1.0,
        }
    }

    fn transformer(&self, channels: usize, heads: usize, layers: usize) -> Transformer2DConfig {
        Transformer2DConfig {
            heads,
            head_dim: channels / heads.max(1),
            in_channels: channels,
            layers,
            context_dim: self.context_dim,
            groups: self.groups,
            linear_projection: self.linear_projection,
            upcast_attention: self.upcast_attention,
        }
    }
}

/// Attention settings of a cross-attention block; `None` for plain resnet blocks.
#[derive(Debug, Clone, Copy)]
pub struct CrossAttn {
    pub heads: usize,
    pub transformer_layers: usize,
}

/// `DownBlock2D` or `CrossAttnDownBlock2D`.
#[derive(Debug, Clone)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsampler: Option<Downsample2D>,
}

impl DownBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        c: &BlockConfig,
        in_channels: usize,
        out_channels: usize,
        layers: usize,
        cross: Option<CrossAttn>,
        add_downsample: bool,
        downsample_padding: usize,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..layers {
            let inc = if i == 0 { in_channels } else { out_channels };
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp(i),
                c.resnet(inc, out_channels),
            )?);
            if let Some(x) = cross {
                attentions.push(Transformer2DModel::load(
                    &vb.pp("attentions").pp(i),
                    c.transformer(out_channels, x.heads, x.transformer_layers),
                )?);
            }
        }
        let downsampler = if add_downsample {
            Some(Downsample2D::load(
                &vb.pp("downsamplers").pp(0),
                out_channels,
                out_channels,
                downsample_padding,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// The block's output and the skip connections it hands to the up path.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        context: &Tensor<3>,
    ) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut skips = Vec::new();
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context);
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsampler {
            x = down.forward(x);
            skips.push(x.clone());
        }
        (x, skips)
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) per layer.
#[derive(Debug, Clone)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    pub fn load(
        vb: &VarBuilder,
        c: &BlockConfig,
        channels: usize,
        cross: CrossAttn,
        layers: usize,
    ) -> Result<Self> {
        let mut resnets = vec![ResnetBlock2D::load(
            &vb.pp("resnets").pp(0),
            c.resnet(channels, channels),
        )?];
        let mut attentions = Vec::new();
        for i in 0..layers {
            attentions.push(Transformer2DModel::load(
                &vb.pp("attentions").pp(i),
                c.transformer(channels, cross.heads, cross.transformer_layers),
            )?);
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp(i + 1),
                c.resnet(channels, channels),
            )?);
        }
        Ok(Self {
            resnets,
            attentions,
        })
    }

    pub fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(temb));
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = attn.forward(x, context);
            x = resnet.forward(x, Some(temb));
        }
        x
    }
}

/// `UpBlock2D` or `CrossAttnUpBlock2D`.
#[derive(Debug, Clone)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        c: &BlockConfig,
        in_channels: usize,
        prev_output_channels: usize,
        out_channels: usize,
        layers: usize,
        cross: Option<CrossAttn>,
        add_upsample: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..layers {
            let skip = if i == layers - 1 {
                in_channels
            } else {
                out_channels
            };
            let inc = if i == 0 {
                prev_output_channels
            } else {
                out_channels
            };
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp(i),
                c.resnet(inc + skip, out_channels),
            )?);
            if let Some(x) = cross {
                attentions.push(Transformer2DModel::load(
                    &vb.pp("attentions").pp(i),
                    c.transformer(out_channels, x.heads, x.transformer_layers),
                )?);
            }
        }
        let upsampler = if add_upsample {
            Some(Upsample2D::load(
                &vb.pp("upsamplers").pp(0),
                out_channels,
                out_channels,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    pub fn layers(&self) -> usize {
        self.resnets.len()
    }

    /// Consumes one skip connection per resnet, last first; `upsample_size` is the size of the
    /// next block's skips (diffusers' `upsample_size` for odd latent sizes).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        temb: &Tensor<2>,
        context: &Tensor<3>,
        upsample_size: Option<[usize; 2]>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            if let Some(skip) = skips.pop() {
                x = Tensor::cat(vec![x, skip], 1);
            }
            x = resnet.forward(x, Some(temb));
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x, context);
            }
        }
        match &self.upsampler {
            Some(up) => up.forward(x, upsample_size),
            None => x,
        }
    }
}
