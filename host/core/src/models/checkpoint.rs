//! Importing a single-file Stable Diffusion 1.x checkpoint (`.safetensors` in Stability's
//! original layout, as Civitai ships them) into a local diffusers folder: the UNet, VAE and CLIP
//! text encoder keys renamed as diffusers' `single_file_utils` (`convert_ldm_unet_checkpoint`,
//! `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`) rename them, tensor bytes copied
//! unchanged, configs written beside them.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::ModelError;
use super::safetensors::{self, CopyTensor, Header};

/// UNet resnets per block in SD 1.x (`layers_per_block`).
const LAYERS_PER_BLOCK: usize = 2;

/// Prefixes of the original layout.
const UNET_PREFIX: &str = "model.diffusion_model.";
const VAE_PREFIX: &str = "first_stage_model.";
const CLIP_PREFIX: &str = "cond_stage_model.transformer.";

/// What kind of checkpoint a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Detected {
    /// UNet input channels: 4 for text-to-image, 9 for inpainting.
    pub in_channels: u64,
    /// Text embedding width the UNet attends to (768 for SD 1.x).
    pub cross_attention_dim: u64,
}

/// One tensor renamed into a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub component: &'static str,
    pub name: String,
    /// The new shape when it changes (VAE attention 1x1 convolutions become linear weights).
    pub shape: Option<Vec<u64>>,
}

/// The diffusers name of one tensor of the original layout, or `None` for tensors diffusers
/// does not keep (EMA copies, the noise schedule, CLIP's `position_ids`).
pub fn rename(key: &str, shape: &[u64], vae_up_blocks: usize) -> Result<Option<Renamed>, String> {
    if let Some(rest) = key.strip_prefix(UNET_PREFIX) {
        let name = unet_key(rest).ok_or_else(|| format!("unexpected UNet tensor `{key}`"))?;
        return Ok(Some(Renamed {
            component: "unet",
            name,
            shape: None,
        }));
    }
    if let Some(rest) = key.strip_prefix(VAE_PREFIX) {
        let (name, squeeze) =
            vae_key(rest, vae_up_blocks).ok_or_else(|| format!("unexpected VAE tensor `{key}`"))?;
        let shape = (squeeze && shape.len() == 4 && shape[2] == 1 && shape[3] == 1)
            .then(|| shape[..2].to_vec());
        return Ok(Some(Renamed {
            component: "vae",
            name,
            shape,
        }));
    }
    if let Some(rest) = key.strip_prefix(CLIP_PREFIX) {
        let name = if rest.starts_with("text_model.") {
            rest.to_owned()
        } else {
            format!("text_model.{rest}")
        };
        if name == "text_model.embeddings.position_ids" {
            return Ok(None);
        }
        return Ok(Some(Renamed {
            component: "text_encoder",
            name,
            shape: None,
        }));
    }
    Ok(None)
}

/// `in_layers.0` → `norm1` and the rest of diffusers' `renew_resnet_paths`.
fn resnet(rest: &str) -> String {
    rest.replace("in_layers.0", "norm1")
        .replace("in_layers.2", "conv1")
        .replace("out_layers.0", "norm2")
        .replace("out_layers.3", "conv2")
        .replace("emb_layers.1", "time_emb_proj")
        .replace("skip_connection", "conv_shortcut")
}

/// Split `a.b.rest` into (`a`, `b` as a number, `rest`).
fn block_index(rest: &str) -> Option<(usize, &str)> {
    let (index, tail) = rest.split_once('.')?;
    Some((index.parse().ok()?, tail))
}

fn unet_key(key: &str) -> Option<String> {
    for (from, to) in [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ] {
        if let Some(param) = key.strip_prefix(from) {
            return Some(format!("{to}{param}"));
        }
    }
    if let Some(rest) = key.strip_prefix("input_blocks.") {
        let (i, rest) = block_index(rest)?;
        let (j, rest) = block_index(rest)?;
        if i == 0 {
            return None;
        }
        let block = (i - 1) / (LAYERS_PER_BLOCK + 1);
        let layer = (i - 1) % (LAYERS_PER_BLOCK + 1);
        return match j {
            0 => Some(match rest.strip_prefix("op.") {
                Some(param) => format!("down_blocks.{block}.downsamplers.0.conv.{param}"),
                None => format!("down_blocks.{block}.resnets.{layer}.{}", resnet(rest)),
            }),
            1 => Some(format!("down_blocks.{block}.attentions.{layer}.{rest}")),
            _ => None,
        };
    }
    if let Some(rest) = key.strip_prefix("middle_block.") {
        let (j, rest) = block_index(rest)?;
        return match j {
            0 => Some(format!("mid_block.resnets.0.{}", resnet(rest))),
            1 => Some(format!("mid_block.attentions.0.{rest}")),
            2 => Some(format!("mid_block.resnets.1.{}", resnet(rest))),
            _ => None,
        };
    }
    if let Some(rest) = key.strip_prefix("output_blocks.") {
        let (i, rest) = block_index(rest)?;
        let (j, rest) = block_index(rest)?;
        let block = i / (LAYERS_PER_BLOCK + 1);
        let layer = i % (LAYERS_PER_BLOCK + 1);
        return match j {
            0 => Some(format!(
                "up_blocks.{block}.resnets.{layer}.{}",
                resnet(rest)
            )),
            // The upsampler sits after the resnet (blocks without attention) or after the
            // attention: a bare `conv` is always it.
            1 | 2 if rest == "conv.weight" || rest == "conv.bias" => {
                Some(format!("up_blocks.{block}.upsamplers.0.{rest}"))
            }
            1 => Some(format!("up_blocks.{block}.attentions.{layer}.{rest}")),
            _ => None,
        };
    }
    None
}

/// The VAE name, and whether a 1x1 convolution weight becomes a linear one.
fn vae_key(key: &str, up_blocks: usize) -> Option<(String, bool)> {
    let (side, rest) = key.split_once('.')?;
    if side == "quant_conv" || side == "post_quant_conv" {
        return Some((key.to_owned(), false));
    }
    if side != "encoder" && side != "decoder" {
        return None;
    }
    let vae_resnet = |r: &str| r.replace("nin_shortcut", "conv_shortcut");
    for (from, to) in [
        ("conv_in.", "conv_in."),
        ("conv_out.", "conv_out."),
        ("norm_out.", "conv_norm_out."),
    ] {
        if let Some(param) = rest.strip_prefix(from) {
            return Some((format!("{side}.{to}{param}"), false));
        }
    }
    if let Some(mid) = rest.strip_prefix("mid.") {
        if let Some(r) = mid.strip_prefix("block_1.") {
            return Some((
                format!("{side}.mid_block.resnets.0.{}", vae_resnet(r)),
                false,
            ));
        }
        if let Some(r) = mid.strip_prefix("block_2.") {
            return Some((
                format!("{side}.mid_block.resnets.1.{}", vae_resnet(r)),
                false,
            ));
        }
        let attn = mid.strip_prefix("attn_1.")?;
        let (layer, param) = attn.split_once('.')?;
        let new_layer = match layer {
            "norm" => "group_norm",
            "q" => "to_q",
            "k" => "to_k",
            "v" => "to_v",
            "proj_out" => "to_out.0",
            _ => return None,
        };
        let squeeze = layer != "norm" && param == "weight";
        return Some((
            format!("{side}.mid_block.attentions.0.{new_layer}.{param}"),
            squeeze,
        ));
    }
    if side == "encoder" {
        let (i, r) = block_index(rest.strip_prefix("down.")?)?;
        if let Some(param) = r.strip_prefix("downsample.conv.") {
            return Some((
                format!("encoder.down_blocks.{i}.downsamplers.0.conv.{param}"),
                false,
            ));
        }
        let (j, r) = block_index(r.strip_prefix("block.")?)?;
        return Some((
            format!("encoder.down_blocks.{i}.resnets.{j}.{}", vae_resnet(r)),
            false,
        ));
    }
    let (i, r) = block_index(rest.strip_prefix("up.")?)?;
    let target = up_blocks.checked_sub(1)?.checked_sub(i)?;
    if let Some(param) = r.strip_prefix("upsample.conv.") {
        return Some((
            format!("decoder.up_blocks.{target}.upsamplers.0.conv.{param}"),
            false,
        ));
    }
    let (j, r) = block_index(r.strip_prefix("block.")?)?;
    Some((
        format!("decoder.up_blocks.{target}.resnets.{j}.{}", vae_resnet(r)),
        false,
    ))
}

/// Check that `header` is an SD 1.x checkpoint in the original layout and read its shape.
pub fn detect(header: &Header) -> Result<Detected, String> {
    let has = |prefix: &str| header.tensors.keys().any(|k| k.starts_with(prefix));
    if has("conditioner.embedders.") {
        return Err("this is an SDXL checkpoint; ImageAI converts SD 1.x checkpoints only so far. \
            Install the diffusers version from the Hub instead (e.g. `imageai models install stabilityai/stable-diffusion-xl-base-1.0`)"
            .into());
    }
    if has("cond_stage_model.model.") {
        return Err("this is an SD 2.x checkpoint (OpenCLIP text encoder); ImageAI converts SD 1.x checkpoints only so far. \
            Install the diffusers version from the Hub instead (e.g. `imageai models install stabilityai/stable-diffusion-2-1`)"
            .into());
    }
    if !has(UNET_PREFIX) {
        return Err(
            "this file has no Stable Diffusion UNet (no `model.diffusion_model.*` tensors): \
            it may be a LoRA, an embedding, a lone VAE or already in the diffusers layout"
                .into(),
        );
    }
    if !has(VAE_PREFIX) {
        return Err(
            "this checkpoint has no VAE (`first_stage_model.*`); ImageAI needs a full checkpoint"
                .into(),
        );
    }
    if !has(CLIP_PREFIX) {
        return Err("this checkpoint has no CLIP text encoder (`cond_stage_model.transformer.*`); ImageAI needs a full SD 1.x checkpoint".into());
    }
    let conv_in = header
        .tensors
        .get("model.diffusion_model.input_blocks.0.0.weight")
        .ok_or("the UNet has no input convolution (`input_blocks.0.0.weight`)")?;
    let to_k = header
        .tensors
        .get("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        .ok_or(
            "the UNet has no cross-attention where SD 1.x has it (`input_blocks.1.1…attn2.to_k`)",
        )?;
    let (Some(&in_channels), Some(&cross_attention_dim)) =
        (conv_in.shape.get(1), to_k.shape.get(1))
    else {
        return Err("the UNet's tensors have unexpected shapes".into());
    };
    if cross_attention_dim != 768 {
        return Err(format!(
            "the UNet attends to {cross_attention_dim}-wide text embeddings, not SD 1.x's 768"
        ));
    }
    Ok(Detected {
        in_channels,
        cross_attention_dim,
    })
}

/// What [`convert`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub detected: Detected,
    /// Tensors written per component.
    pub tensors: BTreeMap<&'static str, usize>,
    /// The main float dtype of the source (`F16`, `F32`…).
    pub dtype: String,
    pub bytes: u64,
}

/// Convert `source` into the diffusers folder `dest` (which must not exist yet; the caller
/// builds it under a temporary name and renames it when complete). `progress(done, total)`
/// follows the tensor bytes copied.
pub fn convert(
    source: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Converted, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint {
        path: source.to_path_buf(),
        reason,
    };
    let io = |action: &str, path: &Path, reason: std::io::Error| ModelError::Io {
        action: action.to_owned(),
        path: path.to_path_buf(),
        reason,
    };
    let header = safetensors::read_header(source)
        .map_err(|e| fail(format!("not a readable .safetensors file ({e})")))?;
    let detected = detect(&header).map_err(fail)?;
    let up_blocks = header
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix("first_stage_model.decoder.up."))
        .filter_map(|k| k.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);

    let mut components: BTreeMap<&'static str, Vec<CopyTensor>> = BTreeMap::new();
    for (key, info) in &header.tensors {
        let Some(renamed) = rename(key, &info.shape, up_blocks)
            .map_err(|e| fail(format!("{e}; is this an SD 1.x checkpoint?")))?
        else {
            continue;
        };
        components
            .entry(renamed.component)
            .or_default()
            .push(CopyTensor {
                name: renamed.name,
                dtype: info.dtype.clone(),
                shape: renamed.shape.unwrap_or_else(|| info.shape.clone()),
                source_begin: header.data_start + info.begin,
                source_end: header.data_start + info.end,
            });
    }
    for (component, required) in [
        ("unet", "conv_in.weight"),
        ("vae", "decoder.conv_out.weight"),
        ("text_encoder", "text_model.final_layer_norm.weight"),
    ] {
        let found = components
            .get(component)
            .is_some_and(|t| t.iter().any(|c| c.name == required));
        if !found {
            return Err(fail(format!(
                "the {component} is incomplete (no `{required}`)"
            )));
        }
    }
    for tensors in components.values() {
        let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(fail(format!("two tensors map to `{}`", pair[0])));
        }
    }

    let total: u64 = components
        .values()
        .flatten()
        .map(|t| t.source_end - t.source_begin)
        .sum();
    let mut file = File::open(source).map_err(|e| io("open the checkpoint", source, e))?;
    let metadata = BTreeMap::from([("format".to_owned(), "pt".to_owned())]);
    let mut done_before = 0u64;
    let mut counts = BTreeMap::new();
    for (component, tensors) in &components {
        let weights = if *component == "text_encoder" {
            "model.safetensors"
        } else {
            "diffusion_pytorch_model.safetensors"
        };
        let dir = dest.join(component);
        fs::create_dir_all(&dir).map_err(|e| io("create the model folder", &dir, e))?;
        let out = dir.join(weights);
        let mut report = |n: u64| progress(done_before + n, total);
        safetensors::write_from(&out, tensors, &metadata, &mut file, &mut report).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                ModelError::DiskFull {
                    file: format!("{component}/{weights}"),
                    dir: dest.to_path_buf(),
                }
            } else {
                io("write the converted weights", &out, e)
            }
        })?;
        done_before += tensors
            .iter()
            .map(|t| t.source_end - t.source_begin)
            .sum::<u64>();
        counts.insert(*component, tensors.len());
    }
    write_configs(dest, &detected)?;
    Ok(Converted {
        detected,
        tensors: counts,
        dtype: header.main_float_dtype().unwrap_or("F32").to_owned(),
        bytes: total,
    })
}

/// The configs of an SD 1.x pipeline, as `stable-diffusion-v1-5` publishes them.
fn write_configs(dest: &Path, detected: &Detected) -> Result<(), ModelError> {
    let inpainting = detected.in_channels == 9;
    let pipeline = if inpainting {
        "StableDiffusionInpaintPipeline"
    } else {
        "StableDiffusionPipeline"
    };
    let files = [
        (
            "model_index.json",
            json!({
                "_class_name": pipeline,
                "_diffusers_version": "0.6.0",
                "feature_extractor": [null, null],
                "safety_checker": [null, null],
                "requires_safety_checker": false,
                "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }),
        ),
        (
            "unet/config.json",
            json!({
                "_class_name": "UNet2DConditionModel",
                "_diffusers_version": "0.6.0",
                "act_fn": "silu",
                "attention_head_dim": 8,
                "block_out_channels": [320, 640, 1280, 1280],
                "center_input_sample": false,
                "cross_attention_dim": detected.cross_attention_dim,
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                "downsample_padding": 1,
                "flip_sin_to_cos": true,
                "freq_shift": 0,
                "in_channels": detected.in_channels,
                "layers_per_block": LAYERS_PER_BLOCK,
                "mid_block_scale_factor": 1,
                "norm_eps": 1e-05,
                "norm_num_groups": 32,
                "out_channels": 4,
                "sample_size": 64,
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            }),
        ),
        (
            "vae/config.json",
            json!({
                "_class_name": "AutoencoderKL",
                "_diffusers_version": "0.6.0",
                "act_fn": "silu",
                "block_out_channels": [128, 256, 512, 512],
                "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
                "in_channels": 3,
                "latent_channels": 4,
                "layers_per_block": 2,
                "norm_num_groups": 32,
                "out_channels": 3,
                "sample_size": 512,
                "scaling_factor": 0.18215,
                "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            }),
        ),
        (
            "text_encoder/config.json",
            json!({
                "architectures": ["CLIPTextModel"],
                "attention_dropout": 0.0,
                "bos_token_id": 0,
                "dropout": 0.0,
                "eos_token_id": 2,
                "hidden_act": "quick_gelu",
                "hidden_size": 768,
                "initializer_factor": 1.0,
                "initializer_range": 0.02,
                "intermediate_size": 3072,
                "layer_norm_eps": 1e-05,
                "max_position_embeddings": 77,
                "model_type": "clip_text_model",
                "num_attention_heads": 12,
                "num_hidden_layers": 12,
                "pad_token_id": 1,
                "projection_dim": 768,
                "vocab_size": 49408,
            }),
        ),
        (
            "scheduler/scheduler_config.json",
            json!({
                "_class_name": "PNDMScheduler",
                "_diffusers_version": "0.6.0",
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "clip_sample": false,
                "num_train_timesteps": 1000,
                "prediction_type": "epsilon",
                "set_alpha_to_one": false,
                "skip_prk_steps": true,
                "steps_offset": 1,
                "trained_betas": null,
            }),
        ),
    ];
    for (name, value) in files {
        let path = dest.join(name);
        let mut text =
            serde_json::to_vec_pretty(&value).map_err(|e| ModelError::Runtime(e.to_string()))?;
        text.push(b'\n');
        crate::atomic::write_atomic(&path, &text).map_err(|e| {
            let (path, reason) = e.into_parts();
            ModelError::Io {
                action: "write a model config".into(),
                path,
                reason,
            }
        })?;
    }
    Ok(())
}

/// The tokenizer files an SD 1.x pipeline reads.
pub const TOKENIZER_FILES: &[&str] = &[
    "merges.txt",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.json",
];

/// Copy the tokenizer files from `from` (a pipeline's `tokenizer/` folder) into `dest/tokenizer`.
pub fn copy_tokenizer(from: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    let out = dest.join("tokenizer");
    fs::create_dir_all(&out)?;
    for name in TOKENIZER_FILES {
        let source = from.join(name);
        if source.exists() {
            fs::copy(&source, out.join(name))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    fn unet(key: &str) -> String {
        rename(&format!("model.diffusion_model.{key}"), &[1], 4)
            .unwrap()
            .unwrap()
            .name
    }

    fn vae(key: &str, shape: &[u64]) -> Renamed {
        rename(&format!("first_stage_model.{key}"), shape, 4)
            .unwrap()
            .unwrap()
    }

    /// Pairs checked against the keys of `stable-diffusion-v1-5`'s `v1-5-pruned-emaonly.safetensors`
    /// and its `unet/diffusion_pytorch_model.safetensors` (what diffusers' conversion produces).
    #[test]
    fn unet_keys_follow_diffusers() {
        for (original, diffusers) in [
            ("time_embed.0.weight", "time_embedding.linear_1.weight"),
            ("time_embed.2.bias", "time_embedding.linear_2.bias"),
            ("input_blocks.0.0.weight", "conv_in.weight"),
            (
                "input_blocks.1.0.in_layers.0.weight",
                "down_blocks.0.resnets.0.norm1.weight",
            ),
            (
                "input_blocks.1.0.in_layers.2.bias",
                "down_blocks.0.resnets.0.conv1.bias",
            ),
            (
                "input_blocks.1.0.emb_layers.1.weight",
                "down_blocks.0.resnets.0.time_emb_proj.weight",
            ),
            (
                "input_blocks.1.0.out_layers.0.weight",
                "down_blocks.0.resnets.0.norm2.weight",
            ),
            (
                "input_blocks.1.0.out_layers.3.weight",
                "down_blocks.0.resnets.0.conv2.weight",
            ),
            (
                "input_blocks.1.1.norm.weight",
                "down_blocks.0.attentions.0.norm.weight",
            ),
            (
                "input_blocks.1.1.proj_in.weight",
                "down_blocks.0.attentions.0.proj_in.weight",
            ),
            (
                "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
                "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            ),
            (
                "input_blocks.2.1.transformer_blocks.0.ff.net.0.proj.weight",
                "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight",
            ),
            (
                "input_blocks.3.0.op.weight",
                "down_blocks.0.downsamplers.0.conv.weight",
            ),
            (
                "input_blocks.4.0.skip_connection.weight",
                "down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "input_blocks.9.0.op.bias",
                "down_blocks.2.downsamplers.0.conv.bias",
            ),
            (
                "input_blocks.11.0.in_layers.0.weight",
                "down_blocks.3.resnets.1.norm1.weight",
            ),
            (
                "middle_block.0.in_layers.0.weight",
                "mid_block.resnets.0.norm1.weight",
            ),
            (
                "middle_block.1.proj_out.bias",
                "mid_block.attentions.0.proj_out.bias",
            ),
            (
                "middle_block.2.out_layers.3.weight",
                "mid_block.resnets.1.conv2.weight",
            ),
            (
                "output_blocks.0.0.skip_connection.weight",
                "up_blocks.0.resnets.0.conv_shortcut.weight",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.3.1.norm.bias",
                "up_blocks.1.attentions.0.norm.bias",
            ),
            (
                "output_blocks.5.2.conv.bias",
                "up_blocks.1.upsamplers.0.conv.bias",
            ),
            (
                "output_blocks.11.1.transformer_blocks.0.attn2.to_out.0.weight",
                "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0.weight",
            ),
            ("out.0.weight", "conv_norm_out.weight"),
            ("out.2.bias", "conv_out.bias"),
        ] {
            assert_eq!(unet(original), diffusers, "{original}");
        }
        assert!(rename("model.diffusion_model.mystery.weight", &[1], 4).is_err());
    }

    #[test]
    fn vae_keys_follow_diffusers_and_attention_convs_become_linear() {
        for (original, diffusers) in [
            ("encoder.conv_in.weight", "encoder.conv_in.weight"),
            ("encoder.norm_out.bias", "encoder.conv_norm_out.bias"),
            (
                "encoder.down.0.block.1.conv2.weight",
                "encoder.down_blocks.0.resnets.1.conv2.weight",
            ),
            (
                "encoder.down.1.block.0.nin_shortcut.weight",
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "encoder.down.2.downsample.conv.bias",
                "encoder.down_blocks.2.downsamplers.0.conv.bias",
            ),
            (
                "encoder.mid.block_1.norm1.weight",
                "encoder.mid_block.resnets.0.norm1.weight",
            ),
            (
                "encoder.mid.block_2.conv2.bias",
                "encoder.mid_block.resnets.1.conv2.bias",
            ),
            (
                "encoder.mid.attn_1.norm.weight",
                "encoder.mid_block.attentions.0.group_norm.weight",
            ),
            (
                "decoder.mid.attn_1.proj_out.bias",
                "decoder.mid_block.attentions.0.to_out.0.bias",
            ),
            (
                "decoder.up.3.block.0.conv1.weight",
                "decoder.up_blocks.0.resnets.0.conv1.weight",
            ),
            (
                "decoder.up.3.upsample.conv.weight",
                "decoder.up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "decoder.up.0.block.2.nin_shortcut.bias",
                "decoder.up_blocks.3.resnets.2.conv_shortcut.bias",
            ),
            ("decoder.norm_out.weight", "decoder.conv_norm_out.weight"),
            ("quant_conv.weight", "quant_conv.weight"),
            ("post_quant_conv.bias", "post_quant_conv.bias"),
        ] {
            assert_eq!(vae(original, &[4]).name, diffusers, "{original}");
        }
        let q = vae("encoder.mid.attn_1.q.weight", &[512, 512, 1, 1]);
        assert_eq!(q.name, "encoder.mid_block.attentions.0.to_q.weight");
        assert_eq!(q.shape, Some(vec![512, 512]));
        let bias = vae("decoder.mid.attn_1.k.bias", &[512]);
        assert_eq!(bias.name, "decoder.mid_block.attentions.0.to_k.bias");
        assert_eq!(bias.shape, None);
        assert!(rename("first_stage_model.loss.logvar", &[1], 4).is_err());
    }

    #[test]
    fn clip_keys_lose_their_prefix_and_the_rest_is_dropped() {
        let clip = |k: &str| rename(k, &[1], 4).unwrap();
        assert_eq!(
            clip(
                "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"
            )
            .unwrap()
            .name,
            "text_model.encoder.layers.0.self_attn.q_proj.weight"
        );
        // Older transformers versions had no `text_model.` level.
        assert_eq!(
            clip("cond_stage_model.transformer.embeddings.token_embedding.weight")
                .unwrap()
                .name,
            "text_model.embeddings.token_embedding.weight"
        );
        assert_eq!(
            clip("cond_stage_model.transformer.text_model.embeddings.position_ids"),
            None
        );
        assert_eq!(clip("model_ema.diffusion_modelinput_blocks00weight"), None);
        assert_eq!(clip("alphas_cumprod"), None);
    }
}
