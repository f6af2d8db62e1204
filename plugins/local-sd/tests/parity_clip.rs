//! Tokenizer and CLIP text encoder against transformers' outputs on the tiny fixtures.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use burn::tensor::DType;
use common::*;
use imageai_local_sd::clip::{ClipTextConfig, ClipTextModel};
use imageai_local_sd::tokenizer::ClipTokenizer;
use imageai_local_sd::weights::{VarBuilder, Weights};

fn cases(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("cases.json")).unwrap())
        .unwrap()
}

#[test]
fn tokenizer_matches_transformers() {
    for name in ["sd1", "sd2", "sd1-inpaint"] {
        let refs = load_refs(fixture(name).join("reference.safetensors"));
        let tok = ClipTokenizer::from_dir(&fixture(name).join("tokenizer")).unwrap();
        let prompts = cases(name)["prompts"].as_array().unwrap().clone();
        let ids = &refs["clip.input_ids"];
        for (i, p) in prompts.iter().enumerate() {
            let got = tok.encode_window(p.as_str().unwrap()).unwrap();
            assert_eq!(
                got,
                ids.ints[i * 77..(i + 1) * 77].to_vec(),
                "{name}: prompt {p}"
            );
        }
    }
}

#[test]
fn long_prompt_is_reported_not_cut() {
    let tok = ClipTokenizer::from_dir(&fixture("sd1").join("tokenizer")).unwrap();
    let long = "a photo of an astronaut ".repeat(30);
    let err = tok.encode_window(&long).unwrap_err();
    assert!(
        matches!(err, imageai_local_sd::Error::PromptTooLong { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Shorten the prompt"), "{err}");
}

#[test]
fn clip_text_encoder_matches_transformers() {
    for name in ["sd1", "sd2", "sd1-inpaint"] {
        let dir = fixture(name).join("text_encoder");
        let refs = load_refs(fixture(name).join("reference.safetensors"));
        let config = ClipTextConfig::from_file(&dir.join("config.json")).unwrap();
        let weights = Weights::open(&Weights::find_in_dir(&dir, false).unwrap()).unwrap();
        let ids: Vec<Vec<i64>> = refs["clip.input_ids"]
            .ints
            .chunks(77)
            .map(<[i64]>::to_vec)
            .collect();
        for (dev_name, device) in devices() {
            let model = ClipTextModel::load(
                &VarBuilder::new(weights.clone(), device, DType::F32),
                &config,
            )
            .unwrap();
            let out = model.forward(&ids);
            // fp32 on both sides; the only differences are summation order in matmuls and
            // layer norms, far below 1e-4 at these magnitudes (|x| ~ 1).
            let tol = 1e-4;
            assert_close(
                &format!("{name}/{dev_name} last_hidden_state"),
                &to_vec(out.last_hidden_state),
                &refs["clip.last_hidden_state"],
                tol,
            );
            assert_close(
                &format!("{name}/{dev_name} penultimate"),
                &to_vec(out.penultimate_hidden_state),
                &refs["clip.penultimate_hidden_state"],
                tol,
            );
            assert_close(
                &format!("{name}/{dev_name} pooled"),
                &to_vec(out.pooled),
                &refs["clip.pooler_output"],
                tol,
            );
        }
    }
}

#[test]
fn sdxl_second_text_encoder_with_projection_matches_transformers() {
    let dir = fixture("sdxl");
    let refs = load_refs(dir.join("reference.safetensors"));
    let tok = ClipTokenizer::from_dir(&dir.join("tokenizer_2")).unwrap();
    let prompts = cases("sdxl")["prompts"].as_array().unwrap().clone();
    let ids: Vec<Vec<i64>> = prompts
        .iter()
        .map(|p| tok.encode_window(p.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        ids.concat(),
        refs["clip2.input_ids"].ints,
        "tokenizer_2 (`!` padding) ids"
    );
    let config =
        ClipTextConfig::from_file(&dir.join("text_encoder_2").join("config.json")).unwrap();
    let weights =
        Weights::open(&Weights::find_in_dir(&dir.join("text_encoder_2"), false).unwrap()).unwrap();
    for (dev_name, device) in devices() {
        let model = ClipTextModel::load(
            &VarBuilder::new(weights.clone(), device, DType::F32),
            &config,
        )
        .unwrap();
        let out = model.forward(&ids);
        // Same reasoning and budget as the SD encoders above.
        let tol = 1e-4;
        assert_close(
            &format!("sdxl/{dev_name} text_embeds"),
            &to_vec(out.text_embeds.unwrap()),
            &refs["clip2.text_embeds"],
            tol,
        );
        assert_close(
            &format!("sdxl/{dev_name} penultimate"),
            &to_vec(out.penultimate_hidden_state),
            &refs["clip2.penultimate_hidden_state"],
            tol,
        );
    }
}
