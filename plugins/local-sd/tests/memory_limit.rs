//! The memory limit: the plan turns savings on as the limit falls, and each one takes effect
//! (text encoder and VAE dropped, tiled decode); a limit that cannot be met is a clear error.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use burn::tensor::Device;
use common::*;
use imageai_local_sd::pipeline::{Control, GenerateParams, LoadOptions, Mode, StableDiffusion};
use imageai_local_sd::schedulers::SchedulerKind;

fn params() -> GenerateParams {
    GenerateParams {
        prompt: "a castle on a hill at sunset".into(),
        negative_prompt: String::new(),
        // 32x32 latents: four times the fixture VAE's 8-latent tile per side.
        width: 64,
        height: 64,
        steps: 2,
        // Without guidance the UNet's batch is 1 and the decode is the peak, so tiling it pays.
        guidance_scale: 1.0,
        seed: 11,
        num_images: 1,
        scheduler: SchedulerKind::Euler,
        mode: Mode::Txt2Img,
        init_noise: None,
        timestep_spacing: None,
    }
}

fn load(memory_limit: Option<u64>) -> StableDiffusion {
    StableDiffusion::load(
        &fixture("sd1"),
        &Device::flex(),
        LoadOptions {
            memory_limit,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn memory_limit_switches_take_effect() {
    let p = params();
    let free = load(None);
    let plan = free.memory_plan(&p).unwrap();
    println!("no limit: {plan:?}");
    assert!(!plan.saves_memory());
    assert!(free.text_encoders_loaded() && free.vae_loaded());
    let latents = free.denoise(&p, &mut |_| Control::Continue).unwrap();
    let whole = free
        .decode_with(latents.clone(), &plan)
        .unwrap()
        .remove(0)
        .rgb;
    assert!(free.text_encoders_loaded() && free.vae_loaded());

    // Just enough for every saving: the estimate with all of them on.
    let least = imageai_local_sd::memory::plan(
        free.footprint(),
        &imageai_local_sd::memory::Workload {
            width: 64,
            height: 64,
            images: 1,
            guidance: false,
        },
        None,
        true,
    )
    .unwrap();
    assert!(least.peak_bytes < plan.peak_all_loaded_bytes);
    let tight = load(Some(least.peak_bytes));
    let tplan = tight.memory_plan(&p).unwrap();
    println!("limit {} B: {tplan:?}", least.peak_bytes);
    assert!(tplan.drop_text_encoders && tplan.vae_on_demand);
    assert_eq!(tplan.vae_tile, Some(8));
    let image = tight
        .generate(&p, &mut |_| Control::Continue)
        .unwrap()
        .remove(0)
        .rgb;
    // Nothing but the UNet stays loaded between uses.
    assert!(!tight.text_encoders_loaded() && !tight.vae_loaded());
    // Same latents (same seed, same encoders loaded from the same file), decoded in tiles.
    let tiled = free.decode_with(latents, &tplan).unwrap().remove(0).rgb;
    assert_eq!(image, tiled);
    let seams = mean_abs_diff(&image, &whole);
    println!("tiled vs whole decode: mean abs diff {seams:.4}");
    assert!(seams > 0.0, "the tiled decode did not run");

    // One byte less cannot fit: a clear error that names the size and what to try.
    let over = load(Some(least.peak_bytes - 1));
    let err = over
        .generate(&p, &mut |_| Control::Continue)
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains("64x64") && err.contains("fp16") && err.contains("memory limit"));

    // A roomy limit changes nothing.
    let roomy = load(Some(plan.peak_all_loaded_bytes));
    assert!(!roomy.memory_plan(&p).unwrap().saves_memory());
    assert!(roomy.text_encoders_loaded() && roomy.vae_loaded());
}
