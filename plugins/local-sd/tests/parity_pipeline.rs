//! Full pipelines against diffusers: every scheduler for txt2img, two images per prompt,
//! img2img with strength; the same seed twice gives the identical image.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use burn::tensor::Device;
use common::*;
use imageai_local_sd::pipeline::{
    Control, GenerateParams, InputImage, LoadOptions, Mode, StableDiffusion,
};
use imageai_local_sd::schedulers::SchedulerKind;

/// diffusers' pipeline outputs are compared as images in [0, 1]. The budget is 1/255
/// mean absolute error: a one-level difference per pixel on average. Numerics differ only by
/// float summation order (component errors ~1e-6), amplified by a few sampling steps.
const IMAGE_MEAN_TOL: f32 = 1.0 / 255.0;

/// The final latents (before the VAE) are compared too, which is far more sensitive than the
/// clamped images: they reach |x| ~ 50 after a few steps of the tiny random UNet, and fp32
/// reordering error is ~1e-6 relative per evaluation; 1e-3 absolute still catches any wrong
/// coefficient or step (those move latents by >= 1e-1).
const LATENTS_TOL: f32 = 1e-3;

fn scheduler_of(name: &str) -> SchedulerKind {
    match name {
        "ddim" => SchedulerKind::Ddim,
        "pndm" => SchedulerKind::Pndm,
        "euler" => SchedulerKind::Euler,
        "euler_a" => SchedulerKind::EulerAncestral,
        "dpmpp_2m" => SchedulerKind::DpmPp2m,
        "dpmpp_2m_karras" => SchedulerKind::DpmPp2mKarras,
        other => panic!("unknown scheduler {other}"),
    }
}

fn params_of(
    case: &serde_json::Value,
    refs: &std::collections::HashMap<String, Ref>,
) -> GenerateParams {
    let key = case["key"].as_str().unwrap();
    let mode = match case["mode"].as_str().unwrap() {
        "txt2img" => Mode::Txt2Img,
        "img2img" => {
            let init = &refs[&format!("{key}.init_image")];
            let (h, w) = (init.shape[2], init.shape[3]);
            // NCHW [-1, 1] -> HWC [0, 1]
            let mut rgb = vec![0f32; h * w * 3];
            for c in 0..3 {
                for i in 0..h * w {
                    rgb[i * 3 + c] = (init.values[c * h * w + i] + 1.0) / 2.0;
                }
            }
            Mode::Img2Img {
                image: InputImage {
                    width: w,
                    height: h,
                    rgb,
                },
                strength: case["strength"].as_f64().unwrap(),
            }
        }
        "inpaint" => {
            let init = &refs[&format!("{key}.init_image")];
            let (h, w) = (init.shape[2], init.shape[3]);
            let mut rgb = vec![0f32; h * w * 3];
            for c in 0..3 {
                for i in 0..h * w {
                    rgb[i * 3 + c] = (init.values[c * h * w + i] + 1.0) / 2.0;
                }
            }
            Mode::Inpaint {
                image: InputImage {
                    width: w,
                    height: h,
                    rgb,
                },
                mask: refs[&format!("{key}.mask")].values.clone(),
                strength: case["strength"].as_f64().unwrap(),
            }
        }
        other => panic!("unknown mode {other}"),
    };
    let (width, height) = match &mode {
        Mode::Img2Img { image, .. } => (image.width, image.height),
        Mode::Inpaint { image, .. } => (image.width, image.height),
        _ => (
            case["width"].as_u64().unwrap() as usize,
            case["height"].as_u64().unwrap() as usize,
        ),
    };
    GenerateParams {
        prompt: case["prompt"].as_str().unwrap().to_string(),
        negative_prompt: case["negative_prompt"].as_str().unwrap_or("").to_string(),
        width,
        height,
        steps: case["num_inference_steps"].as_u64().unwrap() as usize,
        guidance_scale: case["guidance_scale"].as_f64().unwrap(),
        seed: case["seed"].as_u64().unwrap(),
        num_images: case["num_images_per_prompt"].as_u64().unwrap_or(1) as usize,
        scheduler: scheduler_of(case["scheduler"].as_str().unwrap()),
        mode,
        init_noise: None,
        timestep_spacing: case["timestep_spacing"]
            .as_str()
            .map(|s| s.parse().unwrap()),
    }
}

fn run_fixture(name: &str, device: &Device, dev_name: &str) {
    let dir = fixture(name);
    let refs = load_refs(dir.join("reference.safetensors"));
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let sd = StableDiffusion::load(&dir, device, LoadOptions::default()).unwrap();
    for case in cases["pipelines"].as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        let params = params_of(case, &refs);
        let mut steps_seen = 0;
        let images = sd
            .generate(&params, &mut |p| {
                steps_seen = p.step;
                assert!(p.preview.is_some());
                Control::Continue
            })
            .unwrap();
        assert!(steps_seen > 0);
        if let Some(want) = refs.get(&format!("{key}.latents")) {
            let latents = sd.denoise(&params, &mut |_| Control::Continue).unwrap();
            assert_close(
                &format!("{name}/{dev_name} {key} latents"),
                &to_vec(latents),
                want,
                LATENTS_TOL,
            );
        }
        let got: Vec<f32> = images.iter().flat_map(|i| i.rgb.iter().copied()).collect();
        let want = &refs[&format!("{key}.image")];
        let mean = mean_abs_diff(&got, &want.values);
        let max = max_abs_diff(&got, &want.values);
        println!(
            "{name}/{dev_name} {key}: image mean abs diff {mean:.2e}, max {max:.2e} (tolerance {IMAGE_MEAN_TOL:.2e} mean)"
        );
        assert!(
            mean <= IMAGE_MEAN_TOL,
            "{name}/{dev_name} {key}: mean abs diff {mean}"
        );
    }
}

#[test]
fn sd1_pipelines_match_diffusers() {
    for (dev_name, device) in devices() {
        run_fixture("sd1", &device, dev_name);
    }
}

#[test]
fn sd2_v_prediction_pipelines_match_diffusers() {
    for (dev_name, device) in devices() {
        run_fixture("sd2", &device, dev_name);
    }
}

#[test]
fn sd1_inpainting_unet_matches_diffusers() {
    for (dev_name, device) in devices() {
        run_fixture("sd1-inpaint", &device, dev_name);
    }
}

#[test]
fn sdxl_pipelines_match_diffusers() {
    for (dev_name, device) in devices() {
        run_fixture("sdxl", &device, dev_name);
    }
}

#[test]
fn same_seed_gives_identical_image() {
    for (dev_name, device) in devices() {
        let dir = fixture("sd1");
        let sd = StableDiffusion::load(&dir, &device, LoadOptions::default()).unwrap();
        let params = GenerateParams {
            prompt: "a castle on a hill".into(),
            negative_prompt: String::new(),
            width: 32,
            height: 32,
            steps: 3,
            guidance_scale: 6.0,
            seed: 4242,
            num_images: 1,
            scheduler: SchedulerKind::EulerAncestral,
            mode: Mode::Txt2Img,
            init_noise: None,
            timestep_spacing: None,
        };
        let a = sd.generate(&params, &mut |_| Control::Continue).unwrap();
        let b = sd.generate(&params, &mut |_| Control::Continue).unwrap();
        assert_eq!(a[0].rgb, b[0].rgb, "{dev_name}: same seed, different image");
        let other = GenerateParams {
            seed: 4243,
            ..params
        };
        let c = sd.generate(&other, &mut |_| Control::Continue).unwrap();
        assert_ne!(
            a[0].rgb, c[0].rgb,
            "{dev_name}: different seeds, same image"
        );
    }
}

#[test]
fn cancel_between_steps() {
    let sd =
        StableDiffusion::load(&fixture("sd1"), &Device::flex(), LoadOptions::default()).unwrap();
    let params = GenerateParams {
        prompt: "a cat".into(),
        negative_prompt: String::new(),
        width: 32,
        height: 32,
        steps: 5,
        guidance_scale: 7.5,
        seed: 1,
        num_images: 1,
        scheduler: SchedulerKind::Ddim,
        mode: Mode::Txt2Img,
        init_noise: None,
        timestep_spacing: None,
    };
    let mut seen = 0;
    let err = sd
        .generate(&params, &mut |p| {
            seen = p.step;
            if p.step == 2 {
                Control::Cancel
            } else {
                Control::Continue
            }
        })
        .unwrap_err();
    assert!(matches!(err, imageai_local_sd::Error::Cancelled));
    assert_eq!(seen, 2);
}
