//! One UNet evaluation and VAE encode/decode against diffusers on the tiny fixtures, fp32.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use burn::tensor::DType;
use common::*;
use imageai_local_sd::unet_2d::{UNet2DConditionConfig, UNet2DConditionModel};
use imageai_local_sd::vae::{AutoencoderKL, AutoencoderKLConfig};
use imageai_local_sd::weights::{VarBuilder, Weights};

/// fp32 on both sides. The outputs are O(1) and pass through ~30 layers; summation order in
/// convolutions, matmuls and fused attention differs between torch and Burn, which stays well
/// under the 1e-4 budget (measured ~1e-6).
const COMPONENT_TOL: f32 = 1e-4;

#[test]
fn unet_matches_diffusers() {
    for name in ["sd1", "sd2", "sd1-inpaint"] {
        let dir = fixture(name).join("unet");
        let refs = load_refs(fixture(name).join("reference.safetensors"));
        let config = UNet2DConditionConfig::from_file(&dir.join("config.json")).unwrap();
        let weights = Weights::open(&Weights::find_in_dir(&dir, false).unwrap()).unwrap();
        for (dev_name, device) in devices() {
            let unet = UNet2DConditionModel::load(
                &VarBuilder::new(weights.clone(), device.clone(), DType::F32),
                &config,
            )
            .unwrap();
            let sample = tensor::<4>(&refs["unet.sample"], &device);
            let ehs = tensor::<3>(&refs["unet.encoder_hidden_states"], &device);
            let t = f64::from(refs["unet.timestep"].values[0]);
            let out = unet.forward(sample, t, &ehs, None).unwrap();
            assert_close(
                &format!("{name}/{dev_name} unet"),
                &to_vec(out),
                &refs["unet.out"],
                COMPONENT_TOL,
            );
        }
    }
}

#[test]
fn vae_matches_diffusers() {
    for name in ["sd1", "sd2", "sd1-inpaint"] {
        let dir = fixture(name).join("vae");
        let refs = load_refs(fixture(name).join("reference.safetensors"));
        let config = AutoencoderKLConfig::from_file(&dir.join("config.json")).unwrap();
        let weights = Weights::open(&Weights::find_in_dir(&dir, false).unwrap()).unwrap();
        for (dev_name, device) in devices() {
            let vae = AutoencoderKL::load(
                &VarBuilder::new(weights.clone(), device.clone(), DType::F32),
                &config,
                true,
            )
            .unwrap();
            let dist = vae
                .encode(tensor::<4>(&refs["vae.image"], &device))
                .unwrap();
            assert_close(
                &format!("{name}/{dev_name} vae encode mean"),
                &to_vec(dist.mean),
                &refs["vae.encode_mean"],
                COMPONENT_TOL,
            );
            assert_close(
                &format!("{name}/{dev_name} vae encode logvar"),
                &to_vec(dist.logvar),
                &refs["vae.encode_logvar"],
                COMPONENT_TOL,
            );
            let decoded = vae.decode(tensor::<4>(&refs["vae.decode_in"], &device));
            assert_close(
                &format!("{name}/{dev_name} vae decode"),
                &to_vec(decoded),
                &refs["vae.decode_out"],
                COMPONENT_TOL,
            );
        }
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = fixture("sd1").join("unet");
    let mut config = UNet2DConditionConfig::from_file(&dir.join("config.json")).unwrap();
    // A config with one more layer than the weights have.
    config.layers_per_block = imageai_local_sd::config::PerBlock::One(2);
    let weights = Weights::open(&Weights::find_in_dir(&dir, false).unwrap()).unwrap();
    let err = UNet2DConditionModel::load(
        &VarBuilder::new(weights, burn::tensor::Device::flex(), DType::F32),
        &config,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("down_blocks.0.resnets.1"), "{msg}");
}

#[test]
fn sdxl_unet_with_added_conditioning_matches_diffusers() {
    use imageai_local_sd::unet_2d::AddedCond;
    let dir = fixture("sdxl").join("unet");
    let refs = load_refs(fixture("sdxl").join("reference.safetensors"));
    let config = UNet2DConditionConfig::from_file(&dir.join("config.json")).unwrap();
    assert!(config.is_text_time());
    let weights = Weights::open(&Weights::find_in_dir(&dir, false).unwrap()).unwrap();
    let ids = &refs["unet.time_ids"].values;
    let time_ids: Vec<[f64; 6]> = ids
        .chunks(6)
        .map(|c| std::array::from_fn(|i| f64::from(c[i])))
        .collect();
    for (dev_name, device) in devices() {
        let unet = UNet2DConditionModel::load(
            &VarBuilder::new(weights.clone(), device.clone(), DType::F32),
            &config,
        )
        .unwrap();
        let added = AddedCond {
            text_embeds: tensor::<2>(&refs["unet.text_embeds"], &device),
            time_ids: time_ids.clone(),
        };
        let out = unet
            .forward(
                tensor::<4>(&refs["unet.sample"], &device),
                f64::from(refs["unet.timestep"].values[0]),
                &tensor::<3>(&refs["unet.encoder_hidden_states"], &device),
                Some(&added),
            )
            .unwrap();
        assert_close(
            &format!("sdxl/{dev_name} unet"),
            &to_vec(out),
            &refs["unet.out"],
            COMPONENT_TOL,
        );
    }
}

/// diffusers' tiled decode (`enable_tiling`, reference made by `make_fixtures.py --only
/// vae-tiled`): the sd1 VAE's 8-latent tiles over a 20x28 latent, a 4x5 grid with ragged last
/// tiles. Same tolerance as the whole decode: each tile is an ordinary decode and the blend is
/// a few exact multiply-adds.
#[test]
fn tiled_vae_decode_matches_diffusers() {
    let refs = load_refs(fixture("vae_tiled.safetensors"));
    let dir = fixture("sd1").join("vae");
    let config = AutoencoderKLConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = Weights::open(&Weights::find_in_dir(&dir, false).unwrap()).unwrap();
    let tile = refs["tile_latent"].ints[0] as usize;
    for (dev_name, device) in devices() {
        let vae = AutoencoderKL::load(
            &VarBuilder::new(weights.clone(), device.clone(), DType::F32),
            &config,
            false,
        )
        .unwrap();
        assert_eq!(vae.default_tile(), tile);
        let latents = tensor::<4>(&refs["latents"], &device);
        let tiled = to_vec(vae.decode_tiled(latents.clone(), tile));
        assert_close(
            &format!("{dev_name} tiled vae decode"),
            &tiled,
            &refs["tiled"],
            COMPONENT_TOL,
        );
        // Tiles are decoded alone (their own norm statistics and attention), so the result is
        // not the whole decode: the gap is diffusers' own, which we match.
        let untiled = to_vec(vae.decode(latents.clone()));
        assert_close(
            &format!("{dev_name} untiled vae decode"),
            &untiled,
            &refs["untiled"],
            COMPONENT_TOL,
        );
        let ours = mean_abs_diff(&tiled, &untiled);
        let theirs = mean_abs_diff(&refs["tiled"].values, &refs["untiled"].values);
        println!(
            "{dev_name}: tiled vs whole decode, mean abs diff {ours:.4} (diffusers {theirs:.4})"
        );
        assert!((ours - theirs).abs() <= 1e-5);
        // A tile that covers the latent is a whole decode, bit for bit.
        let whole = to_vec(vae.decode_tiled(latents, 28));
        assert_eq!(whole, untiled);
    }
}
