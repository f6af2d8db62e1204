//! The peak memory of one generation, estimated from the model's weights and the requested
//! size, and the savings a memory limit turns on to stay under it.
//!
//! The savings, cheapest first (diffusers' `enable_model_cpu_offload` and `enable_vae_tiling`
//! trade the same way): text encoders dropped after encoding the prompt (reloaded from the
//! memory-mapped file for the next prompt), the VAE loaded only to encode or decode, and a
//! tiled VAE decode, whose output differs slightly at the seams.

use serde::Serialize;

use crate::error::{Error, Result};

/// Runtime, allocator slack and the worker's own buffers, on top of tensors. Measured: the
/// SD 1.5 VAE decode bench at 512x512 peaks this far above its tensors (see BENCHMARKS.md).
const BASE_BYTES: u64 = 256 << 20;

/// What the estimate needs to know about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFootprint {
    /// Bytes of the UNet's weights at their compute precision.
    pub unet_bytes: u64,
    /// Bytes of all text encoders' weights.
    pub text_encoder_bytes: u64,
    /// Bytes of the VAE's weights (encoder and decoder).
    pub vae_bytes: u64,
    /// UNet `block_out_channels[0]` and the bytes of one element at its precision.
    pub unet_channels: usize,
    pub unet_element_bytes: u64,
    /// VAE `block_out_channels` and the bytes of one element at its precision.
    pub vae_channels: Vec<usize>,
    pub vae_element_bytes: u64,
    /// Pixels per latent along a side.
    pub vae_scale: usize,
    /// Latent tile side of a tiled decode (diffusers': the VAE's `sample_size` in latents).
    pub vae_tile: usize,
}

/// The requested work that drives activation sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub width: usize,
    pub height: usize,
    /// Images per prompt.
    pub images: usize,
    /// Classifier-free guidance doubles the UNet batch.
    pub guidance: bool,
}

/// How one generation runs within the memory limit; the worker logs it for each request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryPlan {
    /// The limit in bytes; `None`: no limit (every component stays loaded).
    pub limit_bytes: Option<u64>,
    /// Estimated peak with every component loaded and a whole-image VAE decode.
    pub peak_all_loaded_bytes: u64,
    /// Estimated peak with the savings below.
    pub peak_bytes: u64,
    /// Drop the text encoders once the prompt is encoded.
    pub drop_text_encoders: bool,
    /// Load the VAE only to encode or decode, and drop it afterwards.
    pub vae_on_demand: bool,
    /// Decode in tiles of this many latents per side.
    pub vae_tile: Option<usize>,
}

impl MemoryPlan {
    /// Whether any saving is on.
    pub fn saves_memory(&self) -> bool {
        self.drop_text_encoders || self.vae_on_demand || self.vae_tile.is_some()
    }
}

/// Bytes as MiB for messages.
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Working tensors of one UNet evaluation: the skip connections of every level (about six
/// full-resolution feature maps) plus the largest block's temporaries (the GEGLU feed-forward
/// holds eight times the channels at the first level). Attention runs as a flash kernel (Burn's
/// `attention` on flex and wgpu), so there is no `tokens x tokens` score matrix to count.
fn unet_activations(f: &ModelFootprint, w: &Workload) -> u64 {
    let batch = (w.images * if w.guidance { 2 } else { 1 }) as u64;
    let latents = (w.width / f.vae_scale * (w.height / f.vae_scale)) as u64;
    batch * f.unet_channels as u64 * latents * f.unet_element_bytes * 20
}

/// Working tensors of a VAE decode of a `side_h x side_w` pixel area: the last up block at full
/// resolution (its input at the previous block's channels, upsampled, then resnets at the
/// first block's channels, with f32 norm statistics), plus the image.
fn vae_activations(f: &ModelFootprint, images: usize, side_h: usize, side_w: usize) -> u64 {
    let c0 = f.vae_channels.first().copied().unwrap_or(128) as u64;
    let c1 = f.vae_channels.get(1).copied().unwrap_or(c0 as usize) as u64;
    let pixels = (side_h * side_w) as u64;
    images as u64 * (2 * c1 + 3 * c0 + 3) * pixels * f.vae_element_bytes
}

/// Estimated peak bytes over the three phases (encode the prompt, denoise, decode) with the
/// given savings: text encoders dropped after encoding, VAE loaded on demand, decode tile.
pub fn peak(
    f: &ModelFootprint,
    w: &Workload,
    drop_te: bool,
    vae_lazy: bool,
    tile: Option<usize>,
) -> u64 {
    let te = if drop_te { 0 } else { f.text_encoder_bytes };
    let vae_idle = if vae_lazy { 0 } else { f.vae_bytes };
    let encode = f.unet_bytes + f.text_encoder_bytes + vae_idle;
    let denoise = f.unet_bytes + te + vae_idle + unet_activations(f, w);
    let (dh, dw) = match tile {
        Some(t) => {
            let side = t * f.vae_scale;
            (side.min(w.height), side.min(w.width))
        }
        None => (w.height, w.width),
    };
    // The tiled decode also holds the finished rows of the image (3 channels, f32).
    let image = (w.images * 3 * w.width * w.height * 4) as u64;
    let decode = f.unet_bytes
        + te
        + f.vae_bytes
        + vae_activations(f, w.images, dh, dw)
        + if tile.is_some() { image } else { 0 };
    BASE_BYTES + encode.max(denoise).max(decode)
}

/// The plan for `workload` under `limit_bytes`: no savings when the estimate fits, else the
/// cheapest savings that fit; `force` turns every saving on (the `low` memory setting). An
/// error when even every saving cannot fit, naming the size and what to try instead.
pub fn plan(
    f: &ModelFootprint,
    workload: &Workload,
    limit_bytes: Option<u64>,
    force: bool,
) -> Result<MemoryPlan> {
    let all = peak(f, workload, false, false, None);
    let tile = Some(f.vae_tile);
    let steps = [
        (false, false, None),
        (true, false, None),
        (true, true, None),
        (true, true, tile),
    ];
    let chosen = if force {
        steps[3]
    } else {
        match limit_bytes {
            None => steps[0],
            Some(limit) => *steps
                .iter()
                .find(|(d, v, t)| peak(f, workload, *d, *v, *t) <= limit)
                .ok_or_else(|| {
                    let least = peak(f, workload, true, true, tile);
                    Error::MemoryLimit(format!(
                        "{}x{} with {} image(s) needs about {} MiB even with the text encoder and VAE unloaded when idle and a tiled decode, over the memory limit of {} MiB. Try fp16, a smaller size or fewer images, or raise `memory_limit`.",
                        workload.width,
                        workload.height,
                        workload.images,
                        mib(least),
                        limit >> 20
                    ))
                })?,
        }
    };
    let (drop_text_encoders, vae_on_demand, vae_tile) = chosen;
    // A tile as large as the latent is a whole decode: say so.
    let latent_side = (workload.width.max(workload.height)) / f.vae_scale.max(1);
    let vae_tile = vae_tile.filter(|t| *t < latent_side);
    Ok(MemoryPlan {
        limit_bytes,
        peak_all_loaded_bytes: all,
        peak_bytes: peak(f, workload, drop_text_encoders, vae_on_demand, vae_tile),
        drop_text_encoders,
        vae_on_demand,
        vae_tile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SD 1.5 in fp16 with an f32 VAE.
    fn sd15() -> ModelFootprint {
        ModelFootprint {
            unet_bytes: 860_000_000 * 2,
            text_encoder_bytes: 123_000_000 * 2,
            vae_bytes: 84_000_000 * 4,
            unet_channels: 320,
            unet_element_bytes: 2,
            vae_channels: vec![128, 256, 512, 512],
            vae_element_bytes: 4,
            vae_scale: 8,
            vae_tile: 64,
        }
    }

    fn work(side: usize) -> Workload {
        Workload {
            width: side,
            height: side,
            images: 1,
            guidance: true,
        }
    }

    #[test]
    fn savings_turn_on_in_order_as_the_limit_falls() {
        let f = sd15();
        let w = work(1024);
        let none = plan(&f, &w, None, false).unwrap();
        assert!(!none.saves_memory());
        let roomy = plan(&f, &w, Some(none.peak_all_loaded_bytes), false).unwrap();
        assert!(!roomy.saves_memory());
        let te = plan(&f, &w, Some(none.peak_all_loaded_bytes - 1), false).unwrap();
        assert!(te.drop_text_encoders && te.vae_tile.is_none(), "{te:?}");
        let least = plan(&f, &w, None, true).unwrap();
        assert_eq!(least.vae_tile, Some(64));
        let tiled = plan(&f, &w, Some(least.peak_bytes), false).unwrap();
        assert_eq!(
            tiled,
            MemoryPlan {
                limit_bytes: Some(least.peak_bytes),
                ..least.clone()
            }
        );
        let err = plan(&f, &w, Some(least.peak_bytes - 1), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1024x1024") && err.contains("fp16"), "{err}");
    }

    #[test]
    fn a_tile_as_large_as_the_image_is_no_tiling() {
        let p = plan(&sd15(), &work(512), None, true).unwrap();
        assert!(p.drop_text_encoders && p.vae_on_demand);
        assert_eq!(p.vae_tile, None);
    }
}
