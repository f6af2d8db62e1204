//! diffusers' `AutoencoderKL` (`vae.py`): the encoder to latent moments and the decoder back
//! to pixels, with a tiled decode for images too large to decode at once.

use std::path::Path;

use burn::tensor::{DType, Tensor};
use serde::Deserialize;

use crate::attention::multi_head_attention;
use crate::error::{Error, Result};
use crate::nn::{Activation, Conv2d, GroupNorm, Linear};
use crate::resnet::{Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};
use crate::weights::VarBuilder;

#[derive(Debug, Clone, Deserialize)]
pub struct AutoencoderKLConfig {
    #[serde(default = "d3")]
    pub in_channels: usize,
    #[serde(default = "d3")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d1")]
    pub layers_per_block: usize,
    #[serde(default = "d4")]
    pub latent_channels: usize,
    #[serde(default = "d32")]
    pub norm_num_groups: usize,
    #[serde(default = "d_sf")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
    #[serde(default)]
    pub force_upcast: Option<bool>,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn d1() -> usize {
    1
}
fn d3() -> usize {
    3
}
fn d4() -> usize {
    4
}
fn d32() -> usize {
    32
}
fn d_sf() -> f64 {
    0.18215
}
fn d_true() -> bool {
    true
}

impl AutoencoderKLConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config::read_json(path, "VAE config")
    }

    /// How many pixels one latent covers along each side.
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

/// The VAE's single-head spatial self-attention (diffusers' `Attention` with `group_norm`).
#[derive(Debug, Clone)]
struct VaeAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl VaeAttention {
    fn load(vb: &VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::load(&vb.pp("group_norm"), groups, channels, 1e-6)?,
            to_q: Linear::load(&vb.pp("to_q"), channels, channels, true)?,
            to_k: Linear::load(&vb.pp("to_k"), channels, channels, true)?,
            to_v: Linear::load(&vb.pp("to_v"), channels, channels, true)?,
            to_out: Linear::load(&vb.pp("to_out").pp(0), channels, channels, true)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let residual = x.clone();
        let t = self
            .group_norm
            .forward(x)
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let q = self.to_q.forward(t.clone());
        let k = self.to_k.forward(t.clone());
        let v = self.to_v.forward(t);
        let out = self.to_out.forward(multi_head_attention(q, k, v, 1, false));
        out.swap_dims(1, 2).reshape([b, c, h, w]) + residual
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Debug, Clone)]
struct VaeMidBlock {
    resnet0: ResnetBlock2D,
    attention: Option<VaeAttention>,
    resnet1: ResnetBlock2D,
}

impl VaeMidBlock {
    fn load(vb: &VarBuilder, channels: usize, groups: usize, attention: bool) -> Result<Self> {
        let rc = resnet_config(channels, channels, groups);
        Ok(Self {
            resnet0: ResnetBlock2D::load(&vb.pp("resnets").pp(0), rc)?,
            attention: if attention {
                Some(VaeAttention::load(
                    &vb.pp("attentions").pp(0),
                    channels,
                    groups,
                )?)
            } else {
                None
            },
            resnet1: ResnetBlock2D::load(&vb.pp("resnets").pp(1), rc)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnet0.forward(x, None);
        if let Some(a) = &self.attention {
            x = a.forward(x);
        }
        self.resnet1.forward(x, None)
    }
}

fn resnet_config(in_channels: usize, out_channels: usize, groups: usize) -> ResnetConfig {
    ResnetConfig {
        in_channels,
        out_channels,
        temb_channels: None,
        groups,
        eps: 1e-6,
        output_scale_factor: 1.0,
    }
}

#[derive(Debug, Clone)]
struct EncoderBlock {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
}

#[derive(Debug, Clone)]
struct DecoderBlock {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<EncoderBlock>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn load(vb: &VarBuilder, c: &AutoencoderKLConfig) -> Result<Self> {
        let g = c.norm_num_groups;
        let ch = &c.block_out_channels;
        let mut down_blocks = Vec::new();
        let mut out_ch = ch[0];
        for (i, &block_ch) in ch.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = block_ch;
            let bvb = vb.pp("down_blocks").pp(i);
            let resnets = (0..c.layers_per_block)
                .map(|j| {
                    let inc = if j == 0 { in_ch } else { out_ch };
                    ResnetBlock2D::load(&bvb.pp("resnets").pp(j), resnet_config(inc, out_ch, g))
                })
                .collect::<Result<Vec<_>>>()?;
            let downsampler = if i + 1 < ch.len() {
                Some(Downsample2D::load(
                    &bvb.pp("downsamplers").pp(0),
                    out_ch,
                    out_ch,
                    0,
                )?)
            } else {
                None
            };
            down_blocks.push(EncoderBlock {
                resnets,
                downsampler,
            });
        }
        let last = ch[ch.len() - 1];
        Ok(Self {
            conv_in: Conv2d::load(&vb.pp("conv_in"), c.in_channels, ch[0], 3, 1, 1)?,
            down_blocks,
            mid_block: VaeMidBlock::load(&vb.pp("mid_block"), last, g, c.mid_block_add_attention)?,
            conv_norm_out: GroupNorm::load(&vb.pp("conv_norm_out"), g, last, 1e-6)?,
            conv_out: Conv2d::load(&vb.pp("conv_out"), last, 2 * c.latent_channels, 3, 1, 1)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv_in.forward(x);
        for block in &self.down_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            if let Some(d) = &block.downsampler {
                x = d.forward(x);
            }
        }
        x = self.mid_block.forward(x);
        self.conv_out
            .forward(self.conv_norm_out.forward_then(x, Some(Activation::Silu)))
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<DecoderBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn load(vb: &VarBuilder, c: &AutoencoderKLConfig) -> Result<Self> {
        let g = c.norm_num_groups;
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::new();
        let mut out_ch = rev[0];
        for (i, &block_ch) in rev.iter().enumerate() {
            let prev = out_ch;
            out_ch = block_ch;
            let bvb = vb.pp("up_blocks").pp(i);
            let resnets = (0..=c.layers_per_block)
                .map(|j| {
                    let inc = if j == 0 { prev } else { out_ch };
                    ResnetBlock2D::load(&bvb.pp("resnets").pp(j), resnet_config(inc, out_ch, g))
                })
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i + 1 < rev.len() {
                Some(Upsample2D::load(
                    &bvb.pp("upsamplers").pp(0),
                    out_ch,
                    out_ch,
                )?)
            } else {
                None
            };
            up_blocks.push(DecoderBlock { resnets, upsampler });
        }
        let first = c.block_out_channels[0];
        Ok(Self {
            conv_in: Conv2d::load(&vb.pp("conv_in"), c.latent_channels, rev[0], 3, 1, 1)?,
            mid_block: VaeMidBlock::load(
                &vb.pp("mid_block"),
                rev[0],
                g,
                c.mid_block_add_attention,
            )?,
            up_blocks,
            conv_norm_out: GroupNorm::load(&vb.pp("conv_norm_out"), g, first, 1e-6)?,
            conv_out: Conv2d::load(&vb.pp("conv_out"), first, c.out_channels, 3, 1, 1)?,
        })
    }

    fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut x = self.mid_block.forward(self.conv_in.forward(z));
        for block in &self.up_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            if let Some(u) = &block.upsampler {
                x = u.forward(x, None);
            }
        }
        self.conv_out
            .forward(self.conv_norm_out.forward_then(x, Some(Activation::Silu)))
    }
}

/// The latent distribution the encoder predicts (`DiagonalGaussianDistribution`).
#[derive(Debug, Clone)]
pub struct LatentDist {
    pub mean: Tensor<4>,
    /// Clamped to [-30, 20] as diffusers does.
    pub logvar: Tensor<4>,
}

impl LatentDist {
    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }
}

#[derive(Debug, Clone)]
pub struct AutoencoderKL {
    encoder: Option<Encoder>,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    config: AutoencoderKLConfig,
    dtype: DType,
}

impl AutoencoderKL {
    /// Loads the decoder, and the encoder when `with_encoder` (img2img and inpainting need it).
    pub fn load(vb: &VarBuilder, config: &AutoencoderKLConfig, with_encoder: bool) -> Result<Self> {
        if config.block_out_channels.is_empty() {
            return Err(Error::Config(
                "vae/config.json has no block_out_channels".into(),
            ));
        }
        let l = config.latent_channels;
        Ok(Self {
            encoder: if with_encoder {
                Some(Encoder::load(&vb.pp("encoder"), config)?)
            } else {
                None
            },
            decoder: Decoder::load(&vb.pp("decoder"), config)?,
            quant_conv: if with_encoder && config.use_quant_conv {
                Some(Conv2d::load(&vb.pp("quant_conv"), 2 * l, 2 * l, 1, 1, 0)?)
            } else {
                None
            },
            post_quant_conv: if config.use_post_quant_conv {
                Some(Conv2d::load(&vb.pp("post_quant_conv"), l, l, 1, 1, 0)?)
            } else {
                None
            },
            config: config.clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Image in [-1, 1], `[b, 3, h, w]`, to the latent distribution (unscaled).
    pub fn encode(&self, image: Tensor<4>) -> Result<LatentDist> {
        let encoder = self.encoder.as_ref().ok_or_else(|| {
            Error::InvalidRequest(
                "the VAE was loaded without its encoder; load it with the encoder for img2img"
                    .into(),
            )
        })?;
        let mut moments = encoder.forward(crate::nn::to_dtype(image, self.dtype));
        if let Some(q) = &self.quant_conv {
            moments = q.forward(moments);
        }
        let [b, c2, h, w] = moments.dims();
        let c = c2 / 2;
        let mean = moments.clone().slice([0..b, 0..c, 0..h, 0..w]);
        let logvar = moments.slice([0..b, c..c2, 0..h, 0..w]).clamp(-30.0, 20.0);
        Ok(LatentDist { mean, logvar })
    }

    /// Unscaled latents to an image in roughly [-1, 1].
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let mut z = crate::nn::to_dtype(z, self.dtype);
        if let Some(p) = &self.post_quant_conv {
            z = p.forward(z);
        }
        self.decoder.forward(z)
    }

    /// The latent tile size of diffusers' tiled decode: the VAE's `sample_size` in latents
    /// (64 for SD 1.x/2.x, 128 for SDXL).
    pub fn default_tile(&self) -> usize {
        let s = self.config.scale_factor();
        (self.config.sample_size.unwrap_or(512) / s).max(1)
    }

    /// diffusers' `tiled_decode` (`enable_tiling`): `tile`x`tile` latent tiles a quarter
    /// apart less than their size, each decoded alone, blended linearly into the tile above and
    /// the tile to the left over a quarter of the tile, then cropped and joined. Peak memory
    /// follows the tile size rather than the image size; the seams are diffusers' (each tile
    /// has its own norm statistics and attention). Latents no larger than a tile decode whole.
    pub fn decode_tiled(&self, z: Tensor<4>, tile: usize) -> Tensor<4> {
        const OVERLAP: f64 = 0.25;
        let [b, c, h, w] = z.dims();
        let tile = tile.max(1);
        if h <= tile && w <= tile {
            return self.decode(z);
        }
        let sample_tile = tile * self.config.scale_factor();
        // diffusers truncates each of these to an integer.
        let stride = ((tile as f64 * (1.0 - OVERLAP)) as usize).max(1);
        let blend = (sample_tile as f64 * OVERLAP) as usize;
        let keep = sample_tile - blend;
        let device = z.device();
        // `a`'s last rows (or columns) fade into `b`'s first ones: b[k] = a[-e + k] (1 - k/e)
        // + b[k] k/e.
        let blend_into = |a: &Tensor<4>, b: Tensor<4>, dim: usize| -> Tensor<4> {
            let e = blend.min(a.dims()[dim]).min(b.dims()[dim]);
            if e == 0 {
                return b;
            }
            let ramp: Vec<f32> = (0..e).map(|k| k as f32 / e as f32).collect();
            let mut shape = [1, 1, 1, 1];
            shape[dim] = e;
            let ramp = Tensor::<4>::from_data(
                burn::tensor::TensorData::new(ramp, shape),
                (&device, DType::F32),
            );
            let (na, nb) = (a.dims()[dim], b.dims()[dim]);
            let tail = a.clone().narrow(dim, na - e, e);
            let head = b.clone().narrow(dim, 0, e);
            let mixed = tail * (ramp.clone().neg() + 1.0) + head * ramp;
            if nb == e {
                mixed
            } else {
                Tensor::cat(vec![mixed, b.narrow(dim, e, nb - e)], dim)
            }
        };
        let mut above: Vec<Tensor<4>> = Vec::new();
        let mut rows = Vec::new();
        for y in (0..h).step_by(stride) {
            let mut row: Vec<Tensor<4>> = Vec::new();
            for (j, x) in (0..w).step_by(stride).enumerate() {
                let part =
                    z.clone()
                        .slice([0..b, 0..c, y..(y + tile).min(h), x..(x + tile).min(w)]);
                let mut part = crate::nn::to_f32(self.decode(part));
                if let Some(up) = above.get(j) {
                    part = blend_into(up, part, 2);
                }
                if let Some(left) = row.last() {
                    part = blend_into(left, part, 3);
                }
                row.push(part);
            }
            let cropped = row
                .iter()
                .map(|t| {
                    let [_, _, th, tw] = t.dims();
                    t.clone()
                        .narrow(2, 0, th.min(keep))
                        .narrow(3, 0, tw.min(keep))
                })
                .collect();
            rows.push(Tensor::cat(cropped, 3));
            above = row;
        }
        Tensor::cat(rows, 2)
    }
}
