//! diffusers' `attention.py`, `attention_processor.py` and `transformer_2d.py`: multi-head
//! (cross-)attention, the GEGLU feed-forward, `BasicTransformerBlock` and `Transformer2DModel`.

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Tensor};

use crate::cpu_attention;
use crate::cpu_elementwise;
use crate::cpu_tensor::{self, CpuTensor};

use crate::error::{Error, Result};
use crate::nn::{Activation, Conv2d, GroupNorm, LayerNorm, Linear, to_dtype, to_f32};
use crate::weights::VarBuilder;

/// Scaled dot-product attention over `[batch, tokens, heads * head_dim]` inputs: Burn's fused
/// attention kernel on a GPU, [`cpu_attention`] on the CPU backend. `upcast` computes it in f32
/// (diffusers' `upcast_attention`, needed by SD 2.x in fp16); on the CPU it always runs in f32.
pub fn multi_head_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    upcast: bool,
) -> Tensor<3> {
    let dtype = q.dtype();
    let [b, nq, inner] = q.dims();
    let [_, nk, _] = k.dims();
    let d = inner / heads;
    let device = q.device();
    if device == Device::flex() {
        let (q, k, v) = (CpuTensor::new(q), CpuTensor::new(k), CpuTensor::new(v));
        let mut out = vec![0f32; q.values().len()];
        let shape = cpu_attention::Shape {
            batch: b,
            queries: nq,
            keys: nk,
            heads,
            head_dim: d,
        };
        cpu_attention::attention(q.values(), k.values(), v.values(), &mut out, shape);
        return cpu_tensor::tensor_from(out, [b, nq, inner], dtype);
    }
    let split = |t: Tensor<3>, n: usize| t.reshape([b, n, heads, d]).swap_dims(1, 2);
    let (q, k, v) = if upcast || dtype == DType::F16 {
        // Softmax in f32: fp16 attention scores overflow for long sequences.
        (to_f32(q), to_f32(k), to_f32(v))
    } else {
        (q, k, v)
    };
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: false,
    };
    let out = attention(
        split(q, nq),
        split(k, nk),
        split(v, nk),
        None,
        None,
        options,
    );
    to_dtype(out.swap_dims(1, 2).reshape([b, nq, inner]), dtype)
}

/// diffusers' `Attention` as used in the UNet: `to_q`, `to_k`, `to_v` without bias, `to_out.0`
/// with bias.
#[derive(Debug, Clone)]
pub struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    upcast: bool,
}

impl CrossAttention {
    pub fn load(
        vb: &VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        upcast: bool,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: Linear::load(&vb.pp("to_q"), query_dim, inner, false)?,
            to_k: Linear::load(&vb.pp("to_k"), context_dim, inner, false)?,
            to_v: Linear::load(&vb.pp("to_v"), context_dim, inner, false)?,
            to_out: Linear::load(&vb.pp("to_out").pp(0), inner, query_dim, true)?,
            heads,
            upcast,
        })
    }

    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let ctx = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(ctx.clone());
        let v = self.to_v.forward(ctx);
        self.to_out
            .forward(multi_head_attention(q, k, v, self.heads, self.upcast))
    }
}

/// `FeedForward` with the GEGLU activation: `net.0.proj` to twice the inner size, value times
/// GELU(gate), then `net.2`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    proj: Linear,
    out: Linear,
    inner: usize,
}

impl FeedForward {
    pub fn load(vb: &VarBuilder, dim: usize, mult: usize) -> Result<Self> {
        let inner = dim * mult;
        Ok(Self {
            proj: Linear::load(&vb.pp("net").pp(0).pp("proj"), dim, inner * 2, true)?,
            out: Linear::load(&vb.pp("net").pp(2), inner, dim, true)?,
            inner,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.proj.forward(x);
        if let Some(product) = cpu_elementwise::geglu(&h, self.inner) {
            return self.out.forward(product);
        }
        let [b, n, _] = h.dims();
        let value = h.clone().slice([0..b, 0..n, 0..self.inner]);
        let gate = h.slice([0..b, 0..n, self.inner..self.inner * 2]);
        self.out.forward(value * Activation::Gelu.forward(gate))
    }
}

/// `BasicTransformerBlock`: self-attention, cross-attention on the text, feed-forward, each
/// after a layer norm and with a residual connection.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: CrossAttention,
    norm2: LayerNorm,
    attn2: CrossAttention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn load(
        vb: &VarBuilder,
        dim: usize,
        heads: usize,
        head_dim: usize,
        context_dim: usize,
        upcast: bool,
    ) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::load(&vb.pp("norm1"), dim, 1e-5)?,
            attn1: CrossAttention::load(&vb.pp("attn1"), dim, dim, heads, head_dim, upcast)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), dim, 1e-5)?,
            attn2: CrossAttention::load(
                &vb.pp("attn2"),
                dim,
                context_dim,
                heads,
                head_dim,
                upcast,
            )?,
            norm3: LayerNorm::load(&vb.pp("norm3"), dim, 1e-5)?,
            ff: FeedForward::load(&vb.pp("ff"), dim, 4)?,
        })
    }

    pub fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let add = cpu_elementwise::add;
        let x = add(self.attn1.forward(self.norm1.forward(x.clone()), None), x);
        let attended = self.attn2.forward(self.norm2.forward(x.clone()), Some(context));
        let x = add(attended, x);
        add(self.ff.forward(self.norm3.forward(x.clone())), x)
    }
}

/// Input/output projections of a `Transformer2DModel`: 1x1 convolutions (SD 1.x) or linear
/// layers (`use_linear_projection`, SD 2.x and SDXL).
#[derive(Debug, Clone)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// The sizes of one `Transformer2DModel`.
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    pub heads: usize,
    pub head_dim: usize,
    pub in_channels: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

/// `Transformer2DModel` for continuous (image) inputs.
#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2DModel {
    pub fn load(vb: &VarBuilder, c: Transformer2DConfig) -> Result<Self> {
        let inner = c.heads * c.head_dim;
        if inner == 0 {
            return Err(Error::Config("a transformer block has zero attention heads; check attention_head_dim / num_attention_heads in unet/config.json".into()));
        }
        let proj = |name: &str, i: usize, o: usize| -> Result<Projection> {
            Ok(if c.linear_projection {
                Projection::Linear(Linear::load(&vb.pp(name), i, o, true)?)
            } else {
                Projection::Conv(Conv2d::load(&vb.pp(name), i, o, 1, 1, 0)?)
            })
        };
        let blocks = (0..c.layers)
            .map(|i| {
                BasicTransformerBlock::load(
                    &vb.pp("transformer_blocks").pp(i),
                    inner,
                    c.heads,
                    c.head_dim,
                    c.context_dim,
                    c.upcast_attention,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: GroupNorm::load(&vb.pp("norm"), c.groups, c.in_channels, 1e-6)?,
            proj_in: proj("proj_in", c.in_channels, inner)?,
            blocks,
            proj_out: proj("proj_out", inner, c.in_channels)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let residual = x.clone();
        let x = self.norm.forward(x);
        let to_tokens = |t: Tensor<4>| {
            let [_, ch, _, _] = t.dims();
            t.reshape([b, ch, h * w]).swap_dims(1, 2)
        };
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(x)),
            Projection::Linear(lin) => lin.forward(to_tokens(x)),
        };
        for block in &self.blocks {
            tokens = block.forward(tokens, context);
        }
        let to_image = |t: Tensor<3>| {
            let [_, _, ch] = t.dims();
            t.swap_dims(1, 2).reshape([b, ch, h, w])
        };
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(to_image(tokens)),
            Projection::Linear(lin) => to_image(lin.forward(tokens)),
        };
        let _ = c;
        cpu_elementwise::add(out, residual)
    }
}
