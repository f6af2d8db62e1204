//! CLIP text encoder (transformers' `CLIPTextModel` and `CLIPTextModelWithProjection`), the
//! prompt encoder of every Stable Diffusion version.

use std::path::Path;

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::error::Result;
use crate::nn::{Activation, Embedding, LayerNorm, Linear};
use crate::weights::VarBuilder;

/// The fields of transformers' `CLIPTextConfig` the model needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> i64 {
    2
}

impl ClipTextConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config::read_json(path, "text encoder config")
    }
}

/// What the encoder gives the pipeline for a batch of token windows.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// `last_hidden_state`: the last layer, after the final layer norm (SD 1.x/2.x).
    pub last_hidden_state: Tensor<3>,
    /// `hidden_states[-2]`: the output of the second-to-last layer, no final norm (SDXL).
    pub penultimate_hidden_state: Tensor<3>,
    /// The final-norm hidden state at each sequence's end token (`pooler_output`).
    pub pooled: Tensor<2>,
    /// `text_embeds`: `pooled` through `text_projection`, for models with one (SDXL's second
    /// encoder).
    pub text_embeds: Option<Tensor<2>>,
}

#[derive(Debug, Clone)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl ClipAttention {
    fn load(vb: &VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            q_proj: Linear::load(&vb.pp("q_proj"), h, h, true)?,
            k_proj: Linear::load(&vb.pp("k_proj"), h, h, true)?,
            v_proj: Linear::load(&vb.pp("v_proj"), h, h, true)?,
            out_proj: Linear::load(&vb.pp("out_proj"), h, h, true)?,
            heads: c.num_attention_heads,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, h] = x.dims();
        let d = h / self.heads;
        let split = |t: Tensor<3>| t.reshape([b, n, self.heads, d]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let out = attention(q, k, v, None, None, options);
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, n, h]))
    }
}

#[derive(Debug, Clone)]
struct ClipEncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: ClipAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl ClipEncoderLayer {
    fn load(vb: &VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            layer_norm1: LayerNorm::load(&vb.pp("layer_norm1"), h, c.layer_norm_eps)?,
            self_attn: ClipAttention::load(&vb.pp("self_attn"), c)?,
            layer_norm2: LayerNorm::load(&vb.pp("layer_norm2"), h, c.layer_norm_eps)?,
            fc1: Linear::load(&vb.pp("mlp").pp("fc1"), h, c.intermediate_size, true)?,
            fc2: Linear::load(&vb.pp("mlp").pp("fc2"), c.intermediate_size, h, true)?,
            act: Activation::from_name(&c.hidden_act)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        let y = self.fc2.forward(
            self.act
                .forward(self.fc1.forward(self.layer_norm2.forward(x.clone()))),
        );
        x + y
    }
}

/// `CLIPTextModel`, or `CLIPTextModelWithProjection` when the weights have `text_projection`.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<ClipEncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    config: ClipTextConfig,
    device: Device,
}

impl ClipTextModel {
    pub fn load(vb: &VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        // transformers 4 writes `text_model.…`; transformers 5 drops that prefix.
        let tm = if vb.contains("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb.clone()
        };
        let emb = tm.pp("embeddings");
        let h = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| ClipEncoderLayer::load(&tm.pp("encoder").pp("layers").pp(i), config))
            .collect::<Result<Vec<_>>>()?;
        let text_projection = if vb.contains("text_projection.weight") {
            let proj = config.projection_dim.unwrap_or(h);
            Some(Linear::load(&vb.pp("text_projection"), h, proj, false)?)
        } else {
            None
        };
        Ok(Self {
            token_embedding: Embedding::load(&emb.pp("token_embedding"), config.vocab_size, h)?,
            position_embedding: Embedding::load(
                &emb.pp("position_embedding"),
                config.max_position_embeddings,
                h,
            )?,
            layers,
            final_layer_norm: LayerNorm::load(
                &tm.pp("final_layer_norm"),
                h,
                config.layer_norm_eps,
            )?,
            text_projection,
            config: config.clone(),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Encodes a batch of token windows, each the same length (77 for every SD model).
    pub fn forward(&self, ids: &[Vec<i64>]) -> ClipOutput {
        let b = ids.len();
        let n = ids.first().map_or(0, Vec::len);
        let flat: Vec<i64> = ids.iter().flatten().copied().collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, n]), &self.device);
        let positions: Vec<i64> = (0..n as i64).collect();
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(positions, [1, n]), &self.device);
        let mut x =
            self.token_embedding.forward(tokens) + self.position_embedding.forward(positions);
        let mut penultimate = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            if i == last {
                penultimate = x.clone();
            }
            x = layer.forward(x);
        }
        let last_hidden_state = self.final_layer_norm.forward(x);
        let h = self.config.hidden_size;
        let rows: Vec<Tensor<2>> = ids
            .iter()
            .enumerate()
            .map(|(i, seq)| {
                let at = self.end_position(seq);
                last_hidden_state
                    .clone()
                    .slice([i..i + 1, at..at + 1, 0..h])
                    .reshape([1, h])
            })
            .collect();
        let pooled = Tensor::cat(rows, 0);
        let text_embeds = self
            .text_projection
            .as_ref()
            .map(|p| p.forward(pooled.clone()));
        ClipOutput {
            last_hidden_state,
            penultimate_hidden_state: penultimate,
            pooled,
            text_embeds,
        }
    }

    /// Where transformers pools: the highest id for legacy configs (`eos_token_id == 2`),
    /// else the first end-of-text token.
    fn end_position(&self, seq: &[i64]) -> usize {
        if self.config.eos_token_id == 2 {
            let mut best = 0;
            for (i, &t) in seq.iter().enumerate() {
                if t > seq[best] {
                    best = i;
                }
            }
            best
        } else {
            seq.iter()
                .position(|&t| t == self.config.eos_token_id)
                .unwrap_or(0)
        }
    }
}
