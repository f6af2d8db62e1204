//! diffusers' `UNet2DConditionModel`, built from `unet/config.json` (SD 1.x/2.x, SDXL with its
//! `text_time` added conditioning, inpainting UNets with 9 input channels, distilled variants).

use std::path::Path;

use burn::tensor::{DType, Tensor};
use serde::Deserialize;

use crate::config::PerBlock;
use crate::embeddings::{TimestepEmbedding, timestep_embedding};
use crate::error::{Error, Result};
use crate::nn::{Activation, Conv2d, GroupNorm};
use crate::unet_2d_blocks::{BlockConfig, CrossAttn, DownBlock, MidBlock, UpBlock};
use crate::weights::VarBuilder;

/// The fields of `unet/config.json` the model reads; unknown fields are ignored, unsupported
/// values are reported when the model loads.
#[derive(Debug, Clone, Deserialize)]
pub struct UNet2DConditionConfig {
    #[serde(default = "d4")]
    pub in_channels: usize,
    #[serde(default = "d4")]
    pub out_channels: usize,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "d_mid")]
    pub mid_block_type: Option<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_layers")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "d1")]
    pub downsample_padding: usize,
    #[serde(default = "d1f")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "d32")]
    pub norm_num_groups: usize,
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "d_tl")]
    pub transformer_layers_per_block: PerBlock<usize>,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<usize>>,
    #[serde(default)]
    pub attention_head_dim: Option<PerBlock<usize>>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "d3")]
    pub conv_in_kernel: usize,
    #[serde(default = "d3")]
    pub conv_out_kernel: usize,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub only_cross_attention: PerBlock<bool>,
    #[serde(default = "d_default")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

impl Default for PerBlock<bool> {
    fn default() -> Self {
        Self::One(false)
    }
}

fn d4() -> usize {
    4
}
fn d1() -> usize {
    1
}
fn d3() -> usize {
    3
}
fn d32() -> usize {
    32
}
fn d1f() -> f64 {
    1.0
}
fn d_eps() -> f64 {
    1e-5
}
fn d_true() -> bool {
    true
}
fn d_layers() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn d_tl() -> PerBlock<usize> {
    PerBlock::One(1)
}
fn d_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn d_default() -> String {
    "default".into()
}
fn d_silu() -> String {
    "silu".into()
}

impl UNet2DConditionConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config::read_json(path, "UNet config")
    }

    /// The text conditioning width (`cross_attention_dim`).
    pub fn context_dim(&self) -> Result<usize> {
        self.cross_attention_dim.get(0).ok_or_else(|| {
            Error::Config("unet/config.json has an empty cross_attention_dim".into())
        })
    }

    /// Whether the model takes SDXL's pooled text embedding and size/crop ids.
    pub fn is_text_time(&self) -> bool {
        self.addition_embed_type.as_deref() == Some("text_time")
    }

    fn check_supported(&self) -> Result<()> {
        let unsupported =
            |what: String| Err(Error::Unsupported(format!("{what} in unet/config.json")));
        if let Some(t) = &self.class_embed_type {
            return unsupported(format!("class_embed_type `{t}`"));
        }
        if self.num_class_embeds.is_some() {
            return unsupported("num_class_embeds".into());
        }
        if self.encoder_hid_dim.is_some() {
            return unsupported("encoder_hid_dim".into());
        }
        if self.time_cond_proj_dim.is_some() {
            return unsupported("time_cond_proj_dim (LCM-distilled UNet)".into());
        }
        if self.dual_cross_attention {
            return unsupported("dual_cross_attention".into());
        }
        if self.only_cross_attention != PerBlock::One(false) {
            return unsupported("only_cross_attention".into());
        }
        if self.resnet_time_scale_shift != "default" {
            return unsupported(format!(
                "resnet_time_scale_shift `{}`",
                self.resnet_time_scale_shift
            ));
        }
        if let Some(t) = &self.addition_embed_type
            && t != "text_time"
        {
            return unsupported(format!("addition_embed_type `{t}`"));
        }
        if self.down_block_types.len() != self.block_out_channels.len()
            || self.up_block_types.len() != self.block_out_channels.len()
        {
            return Err(Error::Config(
                "unet/config.json: down_block_types, up_block_types and block_out_channels differ in length".into(),
            ));
        }
        Ok(())
    }
}

/// SDXL's added conditioning: the pooled text embedding and the six size/crop numbers.
#[derive(Debug, Clone)]
pub struct AddedCond {
    pub text_embeds: Tensor<2>,
    /// `[original_h, original_w, crop_top, crop_left, target_h, target_w]` per batch row.
    pub time_ids: Vec<[f64; 6]>,
}

#[derive(Debug, Clone)]
struct AddEmbedding {
    time_dim: usize,
    embedding: TimestepEmbedding,
}

#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AddEmbedding>,
    down_blocks: Vec<DownBlock>,
    mid_block: Option<MidBlock>,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    config: UNet2DConditionConfig,
    dtype: DType,
}

impl UNet2DConditionModel {
    pub fn load(vb: &VarBuilder, config: &UNet2DConditionConfig) -> Result<Self> {
        config.check_supported()?;
        let c = config;
        let blocks = c.block_out_channels.len();
        let ch0 = c.block_out_channels[0];
        let time_dim = c.time_embedding_dim.unwrap_or(ch0 * 4);
        let act = Activation::from_name(&c.act_fn)?;
        // diffusers: `num_attention_heads = num_attention_heads or attention_head_dim`.
        let heads = c
            .num_attention_heads
            .clone()
            .or_else(|| c.attention_head_dim.clone())
            .unwrap_or(PerBlock::One(8))
            .expand(blocks, "attention_head_dim")?;
        let layers = c.layers_per_block.expand(blocks, "layers_per_block")?;
        let tlayers = c
            .transformer_layers_per_block
            .expand(blocks, "transformer_layers_per_block")?;
        let bc = BlockConfig {
            temb_channels: time_dim,
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            context_dim: c.context_dim()?,
            linear_projection: c.use_linear_projection,
            upcast_attention: c.upcast_attention,
        };

        let add_embedding = if c.is_text_time() {
            let (Some(add_dim), Some(input_dim)) = (
                c.addition_time_embed_dim,
                c.projection_class_embeddings_input_dim,
            ) else {
                return Err(Error::Config(
                    "unet/config.json: addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim".into(),
                ));
            };
            Some(AddEmbedding {
                time_dim: add_dim,
                embedding: TimestepEmbedding::load(
                    &vb.pp("add_embedding"),
                    input_dim,
                    time_dim,
                    act,
                )?,
            })
        } else {
            None
        };

        let cross_of =
            |ty: &str, i: usize, transformer_layers: usize| -> Result<Option<CrossAttn>> {
                match ty {
                    "CrossAttnDownBlock2D" | "CrossAttnUpBlock2D" => Ok(Some(CrossAttn {
                        heads: heads[i],
                        transformer_layers,
                    })),
                    "DownBlock2D" | "UpBlock2D" => Ok(None),
                    other => Err(Error::Unsupported(format!("UNet block type `{other}`"))),
                }
            };

        let mut down_blocks = Vec::with_capacity(blocks);
        let mut out_ch = ch0;
        for (i, ty) in c.down_block_types.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = c.block_out_channels[i];
            down_blocks.push(DownBlock::load(
                &vb.pp("down_blocks").pp(i),
                &bc,
                in_ch,
                out_ch,
                layers[i],
                cross_of(ty, i, tlayers[i])?,
                i + 1 < blocks,
                c.downsample_padding,
            )?);
        }

        let last = c.block_out_channels[blocks - 1];
        let mid_block = match c.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => Some(MidBlock::load(
                &vb.pp("mid_block"),
                &BlockConfig { ..bc },
                last,
                CrossAttn {
                    heads: heads[blocks - 1],
                    transformer_layers: tlayers[blocks - 1],
                },
                1,
            )?),
            None => None,
            Some(other) => return Err(Error::Unsupported(format!("mid_block_type `{other}`"))),
        };
        if c.mid_block_scale_factor != 1.0 {
            return Err(Error::Unsupported(
                "mid_block_scale_factor other than 1".into(),
            ));
        }

        let rev_ch: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let rev_heads: Vec<usize> = heads.iter().rev().copied().collect();
        let rev_layers: Vec<usize> = layers.iter().rev().copied().collect();
        let rev_tlayers: Vec<usize> = c
            .reverse_transformer_layers_per_block
            .clone()
            .unwrap_or_else(|| tlayers.iter().rev().copied().collect());
        let mut up_blocks = Vec::with_capacity(blocks);
        let mut out_ch = rev_ch[0];
        for (i, ty) in c.up_block_types.iter().enumerate() {
            let prev = out_ch;
            out_ch = rev_ch[i];
            let in_ch = rev_ch[(i + 1).min(blocks - 1)];
            let cross = match ty.as_str() {
                "CrossAttnUpBlock2D" => Some(CrossAttn {
                    heads: rev_heads[i],
                    transformer_layers: rev_tlayers[i],
                }),
                "UpBlock2D" => None,
                other => return Err(Error::Unsupported(format!("UNet block type `{other}`"))),
            };
            up_blocks.push(UpBlock::load(
                &vb.pp("up_blocks").pp(i),
                &bc,
                in_ch,
                prev,
                out_ch,
                rev_layers[i] + 1,
                cross,
                i + 1 < blocks,
            )?);
        }

        Ok(Self {
            conv_in: Conv2d::load(
                &vb.pp("conv_in"),
                c.in_channels,
                ch0,
                c.conv_in_kernel,
                1,
                (c.conv_in_kernel - 1) / 2,
            )?,
            time_embedding: TimestepEmbedding::load(&vb.pp("time_embedding"), ch0, time_dim, act)?,
            add_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                &vb.pp("conv_norm_out"),
                c.norm_num_groups,
                ch0,
                c.norm_eps,
            )?,
            conv_out: Conv2d::load(
                &vb.pp("conv_out"),
                ch0,
                c.out_channels,
                c.conv_out_kernel,
                1,
                (c.conv_out_kernel - 1) / 2,
            )?,
            config: config.clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.config
    }

    /// One denoising evaluation. `timestep` applies to every batch row.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timestep: f64,
        encoder_hidden_states: &Tensor<3>,
        added: Option<&AddedCond>,
    ) -> Result<Tensor<4>> {
        let [b, _, _, _] = sample.dims();
        let device = sample.device();
        let ch0 = self.config.block_out_channels[0];
        let t_emb = timestep_embedding(
            &vec![timestep; b],
            ch0,
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
            &device,
            self.dtype,
        );
        let mut emb = self.time_embedding.forward(t_emb);
        if let Some(add) = &self.add_embedding {
            let added = added.ok_or_else(|| {
                Error::InvalidRequest(
                    "this UNet (SDXL) needs the pooled text embedding and time ids".into(),
                )
            })?;
            let ids: Vec<f64> = added.time_ids.iter().flatten().copied().collect();
            let per_row = added.time_ids.first().map_or(0, |r| r.len());
            let time_embeds = timestep_embedding(
                &ids,
                add.time_dim,
                self.config.flip_sin_to_cos,
                self.config.freq_shift,
                &device,
                self.dtype,
            )
            .reshape([b, per_row * add.time_dim]);
            let cond = Tensor::cat(vec![added.text_embeds.clone(), time_embeds], 1);
            emb = emb + add.embedding.forward(cond);
        }

        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            let (out, s) = block.forward(x, &emb, encoder_hidden_states);
            x = out;
            skips.extend(s);
        }
        if let Some(mid) = &self.mid_block {
            x = mid.forward(x, &emb, encoder_hidden_states);
        }
        for block in &self.up_blocks {
            let n = block.layers();
            // The skips this block does not consume: the next block's size is the upsample size.
            let next_size = skips.len().checked_sub(n + 1).map(|i| {
                let [_, _, h, w] = skips[i].dims();
                [h, w]
            });
            x = block.forward(x, &mut skips, &emb, encoder_hidden_states, next_size);
        }
        let x = self.conv_norm_out.forward_then(x, Some(Activation::Silu));
        Ok(self.conv_out.forward(x))
    }
}
