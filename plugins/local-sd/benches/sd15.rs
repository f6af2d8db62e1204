//! SD 1.5's real UNet and VAE decoder, built from their diffusers configs with random weights
//! (no download): times one UNet evaluation at 512x512 with guidance (batch 2) and one VAE
//! decode of a 64x64 latent. Compare with `tools/local-sd/bench_torch.py` on the same machine.
//!
//!     cargo bench -p imageai-local-sd --bench sd15 -- [--device cpu|auto|<adapter>] [--precision fp32|fp16] [--iters N]
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use burn::tensor::{DType, Distribution, Tensor};
use imageai_local_sd::device::{self, DeviceChoice};
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

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let choice: DeviceChoice = arg(&args, "--device")
        .unwrap_or_else(|| "cpu".into())
        .parse()
        .unwrap();
    let precision: Precision = arg(&args, "--precision")
        .unwrap_or_else(|| "fp32".into())
        .parse()
        .unwrap();
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

    let time = |label: &str, f: &dyn Fn() -> Tensor<4>| {
        // One warm-up run (kernel compilation, autotuning, allocations).
        let _ = f().into_data();
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
