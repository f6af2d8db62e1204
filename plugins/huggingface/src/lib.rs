//! ImageAI provider plugin for Hugging Face Inference: text-to-image on any model id through the
//! inference router (`https://router.huggingface.co/hf-inference/models/{model}`).
//!
//! HF Inference answers one image per call as raw bytes, so `n` images are `n` calls (seeds
//! `seed`, `seed + 1`…). A model that is not loaded yet answers 503 with an estimate: the plugin
//! waits that long (bounded, cancellable, with progress) and tries again.

mod models;
mod wire;

use std::time::Duration;

use imageai_sdk::http::{self, Response};
use imageai_sdk::{
    GenerateRequest, Generation, Image, Provider, ProviderError, ProviderInfo, api_key, progress,
    setting_or, sleep,
};
use serde_json::Value;

use crate::models::{Checked, MODELS, Model, Resolved};

/// Where inference requests go unless the `base_url` setting says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://router.huggingface.co/hf-inference";
/// Where the key check goes unless the `hub_url` setting says otherwise.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";
/// Bounds on waiting for a model to load: tries, total time, and one wait.
const MAX_LOADING_WAITS: u32 = 10;
const MAX_LOADING_TOTAL: Duration = Duration::from_secs(600);
const LOADING_WAIT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));

#[derive(Debug, Default)]
pub struct HuggingFace;

impl Provider for HuggingFace {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("huggingface", "Hugging Face", env!("CARGO_PKG_VERSION"))
            .models(MODELS.iter().map(Model::info))
            .model(models::any_model_info())
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
        let model = models::resolve(&request.model)?;
        let checked = models::check(&model, &request)?;
        let key = api_key()?;
        let url = format!(
            "{}/models/{}",
            setting_or("base_url", DEFAULT_BASE_URL).trim_end_matches('/'),
            model.id
        );
        let extra: Vec<(String, String)> = request
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let mut images = Vec::with_capacity(checked.n as usize);
        let mut last = None;
        for index in 0..checked.n {
            let body = wire::body(&request.prompt, &checked, index, &extra);
            let (image, response) = one_image(&url, &key, &body, &model, &checked, index)?;
            images.push(image);
            last = Some(response);
        }
        progress(1.0, "done");
        Ok(generation(images, &model, &checked, last.as_ref()))
    }

    fn check_key(&self) -> Result<(), ProviderError> {
        let hub = setting_or("hub_url", DEFAULT_HUB_URL);
        let response = http::get(format!("{}/api/whoami-v2", hub.trim_end_matches('/')))
            .bearer(&api_key()?)
            .send()?;
        if !response.is_success() {
            return Err(match response.status {
                401 | 403 => ProviderError::auth(
                    "Hugging Face rejected the token. Create one with the \"Make calls to Inference Providers\" permission at https://huggingface.co/settings/tokens and set it with `imageai keys set huggingface`.",
                ),
                _ => response.error(),
            });
        }
        let whoami: Value = response.json()?;
        if wire::token_can_infer(&whoami) {
            Ok(())
        } else {
            Err(ProviderError::auth(
                "the Hugging Face token is valid but may not call Inference Providers. Edit it at https://huggingface.co/settings/tokens and tick \"Make calls to Inference Providers\", or set another with `imageai keys set huggingface`.",
            ))
        }
    }
}

imageai_sdk::register_provider!(HuggingFace);

/// One call for one image, waiting out a loading model within the bounds.
fn one_image(
    url: &str,
    key: &str,
    body: &Value,
    model: &Resolved,
    checked: &Checked,
    index: u32,
) -> Result<(Image, Response), ProviderError> {
    let n = checked.n;
    let start = index as f32 / n as f32;
    let what = if n > 1 {
        format!("image {} of {n} from {}", index + 1, model.id)
    } else {
        format!("an image from {}", model.id)
    };
    progress(
        0.02 + 0.9 * start,
        &format!("asking HF Inference for {what}"),
    );
    let mut waits = 0;
    let mut waited = Duration::ZERO;
    loop {
        // HF caches answers to identical requests; a user asking again wants a new image.
        let request = || {
            http::post(url)
                .bearer(key)
                .header("accept", "image/png")
                .header("x-use-cache", "false")
                .json(body)
        };
        // A 503 "model is loading" comes straight here (the host's backoff would ignore its
        // estimate); a 503 without one is sent once more, with the host's retries.
        let mut response = request().no_retry_on(&[503]).send()?;
        if response.status == 503 && wire::loading(&response).is_none() {
            response = request().send()?;
        }
        if response.is_success() {
            return Ok((wire::image(&response, &model.id)?, response));
        }
        let Some(estimate) = wire::loading(&response) else {
            return Err(wire::error(
                &response,
                &model.id,
                model.curated.is_some_and(|m| m.gated),
            ));
        };
        if waits >= MAX_LOADING_WAITS || waited >= MAX_LOADING_TOTAL {
            return Err(ProviderError::timeout(format!(
                "{} was still loading on HF Inference after {} s ({waits} waits). Popular models load within minutes: try again later, or pick a model that is already warm.",
                model.id,
                waited.as_secs()
            )));
        }
        let pause = estimate
            .clamp(LOADING_WAIT_RANGE.0, LOADING_WAIT_RANGE.1)
            .min(MAX_LOADING_TOTAL - waited);
        progress(
            0.02 + 0.9 * start,
            &format!(
                "{} is loading on HF Inference; waiting about {} s",
                model.id,
                pause.as_secs_f32().ceil()
            ),
        );
        sleep(pause)?;
        waits += 1;
        waited += pause;
    }
}

/// The images plus what HF said about the last call.
fn generation(
    images: Vec<Image>,
    model: &Resolved,
    checked: &Checked,
    last: Option<&Response>,
) -> Generation {
    let mut generation = Generation::new(images)
        .seed(checked.seed)
        .metadata("model", model.id.clone());
    if let Some(response) = last {
        generation = generation.request_id(response.header("x-request-id").map(str::to_owned));
        for (header, key) in [
            ("x-compute-type", "compute_type"),
            ("x-compute-time", "compute_time"),
        ] {
            if let Some(value) = response.header(header) {
                generation = generation.metadata(key, value);
            }
        }
    }
    if let Some(seed) = checked.seed.filter(|_| checked.n > 1) {
        let seeds: Vec<String> = (0..checked.n)
            .map(|i| seed.wrapping_add(u64::from(i)).to_string())
            .collect();
        generation = generation.metadata("seeds", seeds.join(","));
    }
    generation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_the_curated_models_then_any_model() {
        let info = HuggingFace.info();
        assert_eq!(info.id, "huggingface");
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "black-forest-labs/FLUX.1-schnell",
                "black-forest-labs/FLUX.1-dev",
                "stabilityai/stable-diffusion-3.5-large",
                "stabilityai/stable-diffusion-xl-base-1.0",
                "*",
            ]
        );
    }

    #[test]
    fn manifest_agrees_with_the_code() {
        let manifest = include_str!("../plugin.toml");
        assert!(manifest.contains("id = \"huggingface\""));
        assert!(manifest.contains(&format!("contract = \"{}\"", imageai_sdk::CONTRACT_VERSION)));
        assert!(manifest.contains(&format!("default = \"{DEFAULT_BASE_URL}\"")));
        assert!(manifest.contains(&format!("default = \"{DEFAULT_HUB_URL}\"")));
        assert!(manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
        assert!(
            manifest.contains(r#"allowed-hosts = ["router.huggingface.co", "huggingface.co"]"#)
        );
        assert!(manifest.contains("env = \"HF_TOKEN\""));
    }

    #[test]
    fn invalid_requests_fail_before_any_host_call() {
        // Off wasm, any host call would panic: these must be refused by validation alone.
        let bad = GenerateRequest {
            negative_prompt: Some("x".into()),
            ..GenerateRequest::new("black-forest-labs/FLUX.1-schnell", "x")
        };
        assert_eq!(
            HuggingFace.generate(bad).err().map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            HuggingFace
                .generate(GenerateRequest::new("*", "x"))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            HuggingFace
                .generate(GenerateRequest::new("a/b/c", "x"))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
    }
}
