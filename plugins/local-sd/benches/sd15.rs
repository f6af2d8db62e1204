//! SD 1.5's real UNet and VAE decoder, built from their diffusers configs with random weights
//! (no download): times one UNet evaluation at 512x512 with guidance (batch 2) and one VAE
//! decode of a 64x64 latent. Compare with `tools/local-sd/bench_torch.py` on the same machine.
//!
//!     cargo bench -p imageai-local-sd --bench sd15 -- [--device cpu|auto|<adapter>] [--precision fp32|fp16] [--iters N] [--warmup N] [--only unet|vae]
//!
//! `--peak-memory` instead measures the peak resident memory (`VmHWM`, Linux) of a whole
//! SD 1.5 pipeline at 512x512 on the CPU, text encoder + one guided UNet step + VAE decode, in
//! a fresh child process per precision, and prints it next to the engine's estimate
//! (`imageai_local_sd::memory`).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use burn::tensor::{DType, Distribution, Tensor};
use imageai_local_sd::clip::{ClipTextConfig, ClipTextModel};
use imageai_local_sd::device::{self, DeviceChoice};
use imageai_local_sd::memory::{self, ModelFootprint, Workload};
use imageai_local_sd::pipeline::Precision;
use imageai_local_sd::unet_2d::{UNet2DConditionConfig, UNet2DConditionModel};
use imageai_local_sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use imageai_local_sd::weights::{VarBuilder, Weights};

/// `runwayml/stable-diffusion-v1-5` `unet/config.json` (the fields that shape the network).
const UNET: &str = r#"{"act_fn":"silu","attention_head_dim":8,"block_out_channels":[320,640,1280,1280],
"center_input_sample":false,"cross_attention_dim":768,"down_block_types":["CrossAttnDownBlock2D",
"CrossAttnDownBlock2D","CrossAttnDownBlock2D","DownBlock2D"],"downsample_padding":1,"flip_sin_to_cos":true,
"freq_shift":0,"in_channels":4,"layers_per_block":2,"mid_block_scale_factor":1,"norm_eps":1e-05,
"norm_num_groups":32,"out_channels":4,"sample_size":64,"up_block_types":["UpBlock2D","CrossAttnUpBlock2D",
"CrossAttnUpBlock2D","CrossAttnUpBlock2D"]}"#;

/// `runwayml/stable-diffusion-v1-5` `vae/config.json`.
const VAE: &str = r#"{"act_fn":"silu","block_out_channels":[128,256,512,512],"down_block_types":
["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],"in_channels":3,
"latent_channels":4,"layers_per_block":2,"norm_num_groups":32,"out_channels":3,"sample_size":512,
"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"]}"#;

/// `openai/clip-vit-large-patch14` as SD 1.5's `text_encoder/config.json` gives it.
const CLIP: &str = r#"{"vocab_size":49408,"hidden_size":768,"intermediate_size":3072,"num_hidden_layers":12,
"num_attention_heads":12,"max_position_embeddings":77,"hidden_act":"quick_gelu","layer_norm_eps":1e-05,
"eos_token_id":2}"#;

/// Parameter counts of SD 1.5's components (diffusers' `num_parameters()`).
const UNET_PARAMS: u64 = 859_520_964;
const CLIP_PARAMS: u64 = 123_060_480;
const VAE_PARAMS: u64 = 83_653_863;
/// Values Winograd's weights add on the CPU in f32 (`cpu_conv::winograd_extra_values`
/// over the same models' weight shapes, counted in diffusers).
const UNET_WINOGRAD_EXTRA: u64 = 50_184_960;
const VAE_WINOGRAD_EXTRA: u64 = 60_701_312;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The process's peak resident set so far, in MiB (`VmHWM` in `/proc/self/status`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Parent side of `--peak-memory`: one fresh child per precision, so that each peak is its
/// own.
fn peak_memory_table() {
    let exe = std::env::current_exe().unwrap();
    println!("peak resident memory, SD 1.5 pipeline at 512x512 on the CPU (flex), random weights");
    for precision in ["fp32", "fp16"] {
        let out = std::process::Command::new(&exe)
            .args(["--peak-memory-child", "--precision", precision])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            println!(
                "{precision}: the child failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Child side of `--peak-memory`: load the three components, encode a prompt pair, run one
/// guided UNet step and one VAE decode, printing the high-water mark after each phase.
fn peak_memory_child(precision: Precision) {
    let device = burn::tensor::Device::flex();
    let dtype = precision.dtype();
    let start = peak_rss_mib();
    let vb = VarBuilder::new(Weights::random(), device.clone(), dtype);
    let clip =
        ClipTextModel::load(&vb, &serde_json::from_str::<ClipTextConfig>(CLIP).unwrap()).unwrap();
    let unet = UNet2DConditionModel::load(
        &vb,
        &serde_json::from_str::<UNet2DConditionConfig>(UNET).unwrap(),
    )
    .unwrap();
    let vae_config = serde_json::from_str::<AutoencoderKLConfig>(VAE).unwrap();
    let vae = AutoencoderKL::load(&vb.with_dtype(DType::F32), &vae_config, false).unwrap();
    let loaded = peak_rss_mib();
    let ids: Vec<Vec<i64>> = (0..2)
        .map(|b| (0..77).map(|i| (i * 37 + b * 11) % 49408).collect())
        .collect();
    let context = clip.forward(&ids).last_hidden_state;
    let _ = context.clone().into_data();
    let encoded = peak_rss_mib();
    let sample = Tensor::<4>::random(
        [2, 4, 64, 64],
        Distribution::Normal(0.0, 1.0),
        (&device, dtype),
    );
    let noise = unet.forward(sample, 500.0, &context, None).unwrap();
    let latents = noise.slice([0..1, 0..4, 0..64, 0..64]);
    let _ = latents.clone().into_data();
    let stepped = peak_rss_mib();
    // The tiled decode first: the high-water mark only rises.
    let _ = vae.decode_tiled(latents.clone(), 32).into_data();
    let tiled = peak_rss_mib();
    let _ = vae.decode(latents).into_data();
    let decoded = peak_rss_mib();
    let element = dtype.size() as u64;
    let footprint = ModelFootprint {
        unet_bytes: UNET_PARAMS * element
            + if element == 4 {
                UNET_WINOGRAD_EXTRA * 4
            } else {
                0
            },
        text_encoder_bytes: CLIP_PARAMS * element,
        vae_bytes: (VAE_PARAMS + VAE_WINOGRAD_EXTRA) * 4,
        unet_channels: 320,
        unet_element_bytes: element,
        vae_channels: vae_config.block_out_channels.clone(),
        vae_element_bytes: 4,
        vae_scale: 8,
        vae_tile: 64,
    };
    let workload = Workload {
        width: 512,
        height: 512,
        images: 1,
        guidance: true,
    };
    let estimate = memory::plan(&footprint, &workload, None, false)
        .unwrap()
        .peak_all_loaded_bytes as f64
        / f64::from(1 << 20);
    // The bench keeps every component loaded; only the decode is tiled.
    let estimate_tiled =
        memory::peak(&footprint, &workload, false, false, Some(32)) as f64 / f64::from(1 << 20);
    println!(
        "{precision:?}: peak {decoded:.0} MiB (process start {start:.0}, weights loaded {loaded:.0}, prompt encoded {encoded:.0}, UNet step {stepped:.0}, VAE decode in 32-latent tiles {tiled:.0}, whole VAE decode {decoded:.0}); estimate {estimate:.0} MiB, tiled {estimate_tiled:.0} MiB"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--peak-memory") {
        peak_memory_table();
        return;
    }
    let choice: DeviceChoice = arg(&args, "--device")
        .unwrap_or_else(|| "cpu".into())
        .parse()
        .unwrap();
    let precision: Precision = arg(&args, "--precision")
        .unwrap_or_else(|| "fp32".into())
        .parse()
        .unwrap();
    if args.iter().any(|a| a == "--peak-memory-child") {
        peak_memory_child(precision);
        return;
    }
    let iters: usize = arg(&args, "--iters").map_or(3, |s| s.parse().unwrap());
    let (device, name) = device::select(&choice).unwrap();
    let dtype = precision.dtype();
    println!("device: {name}, precision: {precision:?}, iterations: {iters}");

    let vb = VarBuilder::new(Weights::random(), device.clone(), dtype);
    let unet = UNet2DConditionModel::load(
        &vb,
        &serde_json::from_str::<UNet2DConditionConfig>(UNET).unwrap(),
    )
    .unwrap();
    let vae = AutoencoderKL::load(
        &vb.with_dtype(DType::F32),
        &serde_json::from_str::<AutoencoderKLConfig>(VAE).unwrap(),
        false,
    )
    .unwrap();

    let sample = Tensor::<4>::random(
        [2, 4, 64, 64],
        Distribution::Normal(0.0, 1.0),
        (&device, dtype),
    );
    let context = Tensor::<3>::random(
        [2, 77, 768],
        Distribution::Normal(0.0, 1.0),
        (&device, dtype),
    );
    let latents = Tensor::<4>::random(
        [1, 4, 64, 64],
        Distribution::Normal(0.0, 1.0),
        (&device, DType::F32),
    );

    // `--only unet|vae` and `--warmup 0` shorten profiling runs.
    let only = arg(&args, "--only");
    let warmup: usize = arg(&args, "--warmup").map_or(1, |s| s.parse().unwrap());
    let time = |label: &str, f: &dyn Fn() -> Tensor<4>| {
        if only.as_deref().is_some_and(|o| !label.starts_with(o)) {
            return;
        }
        // Warm-up runs (kernel compilation, autotuning, allocations).
        for _ in 0..warmup {
            let _ = f().into_data();
        }
        let mut times = Vec::new();
        for _ in 0..iters {
            let start = Instant::now();
            let _ = f().into_data();
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{label}: median {median:.3} s over {iters} runs (min {:.3} s, {:.2} it/s)",
            times[0],
            1.0 / median
        );
    };
    time("unet 512x512 batch 2", &|| {
        unet.forward(sample.clone(), 500.0, &context, None).unwrap()
    });
    time("vae decode 512x512", &|| vae.decode(latents.clone()));
}
