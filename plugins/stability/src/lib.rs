//! ImageAI provider plugin for Stability AI: the v2beta Stable Image services (generate with
//! Ultra, Core and SD 3.5; edit; upscale, including the asynchronous creative upscaler) and the
//! v1 API for SDXL 1.0, built on `imageai-sdk`.

mod models;
mod wire;

use std::time::Duration;

use imageai_sdk::http::{self, Response};
use imageai_sdk::multipart::Form;
use imageai_sdk::{
    EditMode, EditRequest, GenerateRequest, Generation, Provider, ProviderError, ProviderInfo,
    UpscaleRequest, api_key, check_cancelled, progress, setting_or, sleep,
};
use serde::Deserialize;

use crate::models::{Api, MODELS, Model, Upscaler};
use crate::wire::{Engine, Made, Started, V1Answer};

/// Where requests go unless the `base_url` setting says otherwise (a proxy, a test server). Both
/// API versions live under it (`/v1/…`, `/v2beta/…`).
pub const DEFAULT_BASE_URL: &str = "https://api.stability.ai";

/// Image-to-image strength when the request gives none (the v2beta API requires one).
const DEFAULT_STRENGTH: f32 = 0.5;
/// Polling of asynchronous results: the first wait, growing by half each poll up to the cap,
/// for at most the limit in all (results are kept 24 h, so a timeout loses nothing but time).
const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(8);
const POLL_LIMIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default)]
pub struct Stability;

impl Provider for Stability {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("stability", "Stability AI", env!("CARGO_PKG_VERSION"))
            .models(MODELS.iter().map(Model::info))
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
        let model = models::find(&request.model, "stable-image-core")?;
        model.validate_generate(&request)?;
        let key = api_key()?;
        match model.api {
            Api::V1 => {
                progress(
                    0.05,
                    &format!("asking {} for {} image(s)", model.id, request.count()),
                );
                let body = wire::v1_text_to_image(&request)?;
                let call = http::post(endpoint(&format!(
                    "/v1/generation/{}/text-to-image",
                    model.id
                )))
                .json(&body);
                v1(model, call, &key)
            }
            _ => v2_generate(model, &request, None, &key),
        }
    }

    fn edit(&self, request: EditRequest) -> Result<Generation, ProviderError> {
        let default = if request.mode == EditMode::Edit {
            "sd3.5-large"
        } else {
            "stable-image-edit"
        };
        let model = models::find(&request.base.model, default)?;
        model.validate_edit(&request)?;
        let key = api_key()?;
        match model.api {
            Api::Generate { .. } => {
                let strength = request.strength.unwrap_or(DEFAULT_STRENGTH);
                let source = request.images.first().map(|image| (image, strength));
                let generation = v2_generate(model, &request.base, source, &key)?;
                Ok(generation.metadata("strength", wire::decimal(f64::from(strength))))
            }
            Api::Edit => {
                let (path, form) = wire::edit_form(&request)?;
                progress(
                    0.05,
                    &format!("asking Stability for {}", models::mode_name(request.mode)),
                );
                let made = wire::read_image(
                    &v2_post(path, form, &key)?,
                    mime_for(request.base.output_format.as_deref()),
                )?;
                progress(1.0, "done");
                let generation = finish(vec![made]);
                let ignored = request.mode == EditMode::Erase
                    && (!request.base.prompt.trim().is_empty()
                        || request.base.negative_prompt.is_some());
                Ok(if ignored {
                    generation.warning("Erasing takes no prompt; the prompt was not sent.")
                } else {
                    generation
                })
            }
            Api::V1 => {
                let (suffix, form) = if request.mode == EditMode::Inpaint {
                    ("image-to-image/masking", wire::v1_masking(&request)?)
                } else {
                    ("image-to-image", wire::v1_image_to_image(&request)?)
                };
                progress(
                    0.05,
                    &format!(
                        "asking {} for {}",
                        model.id,
                        models::mode_name(request.mode)
                    ),
                );
                let call = http::post(endpoint(&format!("/v1/generation/{}/{suffix}", model.id)))
                    .multipart(form);
                v1(model, call, &key)
            }
            Api::Upscale(_) => Err(ProviderError::invalid_request(format!(
                "{} upscales; run `imageai upscale` instead",
                model.id
            ))),
        }
    }

    fn upscale(&self, request: UpscaleRequest) -> Result<Generation, ProviderError> {
        let model = models::find(&request.model, "upscale-fast")?;
        model.validate_upscale(&request)?;
        let Api::Upscale(upscaler) = model.api else {
            return Err(ProviderError::invalid_request(format!(
                "{} does not upscale",
                model.id
            )));
        };
        let key = api_key()?;
        let (path, form) = wire::upscale_form(upscaler, &request);
        let fallback = mime_for(request.output_format.as_deref());
        if upscaler != Upscaler::Creative {
            progress(0.05, &format!("upscaling with {}", model.id));
            let made = wire::read_image(&v2_post(&path, form, &key)?, fallback)?;
            progress(1.0, "done");
            return Ok(finish(vec![made]));
        }
        progress(0.02, "sending the image to the creative upscaler");
        let started: Started = v2_post(&path, form, &key)?.json()?;
        let id = started.id.trim().to_owned();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ProviderError::server(format!(
                "Stability answered with an unusable generation id ({} characters). Try again.",
                id.chars().count()
            )));
        }
        let response = poll(&id, &key)?;
        let made = wire::read_image(&response, fallback)?;
        progress(1.0, "done");
        Ok(finish(vec![made]).metadata("generation_id", id))
    }

    /// The balance is the cheapest authenticated call. A valid key on an empty account is
    /// reported as a quota error: every generation would fail with 402.
    fn check_key(&self) -> Result<(), ProviderError> {
        let key = api_key()?;
        let response = send(
            http::get(endpoint("/v1/user/balance"))
                .bearer(&key)
                .header("accept", "application/json"),
        )?;
        let balance: Balance = response.json()?;
        if balance.credits <= 0.0 {
            return Err(ProviderError::quota(format!(
                "the key works, but the account has no credits left ({}). Buy credits at https://platform.stability.ai/account/credits.",
                balance.credits
            )));
        }
        imageai_sdk::log::info(&format!("Stability balance: {} credits", balance.credits));
        Ok(())
    }
}

imageai_sdk::register_provider!(Stability);

/// `{"credits": 12.5}`
#[derive(Deserialize)]
struct Balance {
    credits: f64,
}

/// `{base_url}{path}`, with the configured base URL's trailing slash ignored.
fn endpoint(path: &str) -> String {
    let base = setting_or("base_url", DEFAULT_BASE_URL);
    format!("{}{path}", base.trim_end_matches('/'))
}

fn mime_for(format: Option<&str>) -> &'static str {
    match format {
        Some("jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "image/png",
    }
}

/// Stability asks API clients to name themselves (optional headers, used in its support).
fn client(request: http::Request) -> http::Request {
    request
        .header("stability-client-id", "imageai")
        .header("stability-client-version", env!("CARGO_PKG_VERSION"))
}

/// Send, turning a failed status into Stability's error.
fn send(request: http::Request) -> Result<Response, ProviderError> {
    let response = client(request).send()?;
    if response.is_success() {
        Ok(response)
    } else {
        Err(wire::error(&response))
    }
}

/// A v2beta service call: a multipart form, the image back as raw bytes.
fn v2_post(path: &str, form: Form, key: &str) -> Result<Response, ProviderError> {
    send(
        http::post(endpoint(path))
            .bearer(key)
            .header("accept", "image/*")
            .multipart(form),
    )
}

/// v2beta generation: one call per image (the services make one each); with `source` it is
/// image-to-image.
fn v2_generate(
    model: &Model,
    request: &GenerateRequest,
    source: Option<(&imageai_sdk::Image, f32)>,
    key: &str,
) -> Result<Generation, ProviderError> {
    let Api::Generate {
        endpoint: service, ..
    } = model.api
    else {
        return Err(ProviderError::invalid_request(format!(
            "{} does not generate images",
            model.id
        )));
    };
    let path = format!("/v2beta/stable-image/generate/{service}");
    let total = request.count();
    let fallback = mime_for(request.output_format.as_deref());
    let mut made = Vec::new();
    for i in 0..total {
        check_cancelled()?;
        progress(
            i as f32 / total as f32,
            &format!("asking {} for image {} of {total}", model.id, i + 1),
        );
        let form = wire::generate_form(model, request, wire::nth_seed(request.seed, i), source)?;
        made.push(wire::read_image(&v2_post(&path, form, key)?, fallback)?);
    }
    progress(1.0, "done");
    Ok(finish(made))
}

/// A v1 generation call (`accept: application/json`): up to 10 images as base64 artifacts. A
/// 404 means the engine is not available to the key: the message lists the ones that are.
fn v1(model: &Model, call: http::Request, key: &str) -> Result<Generation, ProviderError> {
    let response = client(call.bearer(key).header("accept", "application/json")).send()?;
    if !response.is_success() {
        let error = wire::error(&response);
        if response.status == 404
            && let Some(engines) = engines(key)
        {
            return Err(ProviderError::invalid_request(format!(
                "{} `{}` is not available to this key; its image engines are {}.",
                error.message(),
                model.id,
                models::list(&engines.iter().map(String::as_str).collect::<Vec<_>>())
            )));
        }
        return Err(error);
    }
    let answer: V1Answer<'_> = response.json()?;
    let generation = finish(answer.made()?);
    progress(1.0, "done");
    Ok(generation)
}

/// The picture engines the key can use (`GET /v1/engines/list`), or `None` when that fails too.
fn engines(key: &str) -> Option<Vec<String>> {
    let response = send(
        http::get(endpoint("/v1/engines/list"))
            .bearer(key)
            .header("accept", "application/json"),
    )
    .ok()?;
    let engines: Vec<Engine> = response.json().ok()?;
    let mut ids: Vec<String> = engines
        .into_iter()
        .filter(|e| e.kind.as_deref().is_none_or(|k| k == "PICTURE"))
        .map(|e| e.id)
        .collect();
    ids.sort();
    (!ids.is_empty()).then_some(ids)
}

/// Wait for an asynchronous result: `GET /v2beta/results/{id}` answers 202 while the job runs
/// and 200 with the image when done. Waits grow from [`POLL_FIRST`] to [`POLL_MAX`] (or follow a
/// `retry-after` the server sends), report progress, and stop at once when the user cancels.
fn poll(id: &str, key: &str) -> Result<Response, ProviderError> {
    let mut delay = POLL_FIRST;
    let mut waited = Duration::ZERO;
    let mut polls: i32 = 0;
    loop {
        check_cancelled()?;
        let response = client(
            http::get(endpoint(&format!("/v2beta/results/{id}")))
                .bearer(key)
                .header("accept", "image/*"),
        )
        .send()?;
        match response.status {
            202 => {}
            404 => {
                return Err(ProviderError::server(format!(
                    "Stability has no result for generation {id}: it may have expired (results are kept 24 hours). Upscale again."
                )));
            }
            _ if response.is_success() => return Ok(response),
            _ => return Err(wire::error(&response)),
        }
        if waited >= POLL_LIMIT {
            return Err(ProviderError::timeout(format!(
                "the creative upscale was still running after {} minutes; Stability keeps the result 24 hours under generation id {id}",
                POLL_LIMIT.as_secs() / 60
            )));
        }
        polls += 1;
        progress(
            0.1 + 0.85 * (1.0 - 0.85f32.powi(polls)),
            "the creative upscaler is working",
        );
        let hinted =
            imageai_sdk::errors::retry_after_ms(&response.headers).map(Duration::from_millis);
        let wait = hinted.filter(|h| *h <= POLL_MAX).unwrap_or(delay);
        sleep(wait)?;
        waited += wait;
        delay = (delay * 3 / 2).min(POLL_MAX);
    }
}

/// The generation for what Stability made: images, the (first) seed, and a warning for each
/// image its content filter blurred (`finish-reason: CONTENT_FILTERED`).
fn finish(made: Vec<Made>) -> Generation {
    let total = made.len();
    let seeds: Vec<String> = made
        .iter()
        .filter_map(|m| m.seed)
        .map(|s| s.to_string())
        .collect();
    let mut generation = Generation::default().seed(made.first().and_then(|m| m.seed));
    for (i, item) in made.into_iter().enumerate() {
        if item.finish_reason.as_deref() == Some("CONTENT_FILTERED") {
            let which = if total == 1 {
                "the image".to_owned()
            } else {
                format!("image {} of {total}", i + 1)
            };
            generation = generation.warning(format!(
                "Stability's content filter blurred {which} (finish reason CONTENT_FILTERED). Rephrase the prompt or try another seed."
            ));
        }
        generation.finish_reason = item.finish_reason;
        generation.images.push(item.image);
    }
    if seeds.len() > 1 {
        generation = generation.metadata("seeds", seeds.join(","));
    }
    generation
}

#[cfg(test)]
mod tests {
    use super::*;
    use imageai_sdk::Image;

    #[test]
    fn info_lists_every_model() {
        let info = Stability.info();
        assert_eq!(info.id, "stability");
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "stable-image-core",
                "sd3.5-large",
                "sd3.5-large-turbo",
                "sd3.5-medium",
                "sd3.5-flash",
                "stable-image-ultra",
                "stable-image-edit",
                "upscale-fast",
                "upscale-conservative",
                "upscale-creative",
                "stable-diffusion-xl-1024-v1-0"
            ]
        );
    }

    #[test]
    fn the_first_capable_model_is_the_intended_default() {
        // The host fills in an empty model with the first one that can do what is asked.
        let info = Stability.info();
        let first = |capability| {
            info.models
                .iter()
                .find(|m| m.supports(capability))
                .map(|m| m.id.as_str())
        };
        assert_eq!(
            first(imageai_sdk::Capability::TextToImage),
            Some("stable-image-core")
        );
        assert_eq!(first(imageai_sdk::Capability::Edit), Some("sd3.5-large"));
        assert_eq!(
            first(imageai_sdk::Capability::Inpaint),
            Some("stable-image-edit")
        );
        assert_eq!(
            first(imageai_sdk::Capability::Upscale),
            Some("upscale-fast")
        );
    }

    #[test]
    fn manifest_agrees_with_the_code() {
        let manifest = include_str!("../plugin.toml");
        assert!(manifest.contains("id = \"stability\""));
        assert!(manifest.contains(&format!("contract = \"{}\"", imageai_sdk::CONTRACT_VERSION)));
        assert!(manifest.contains(&format!("default = \"{DEFAULT_BASE_URL}\"")));
        assert!(manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
        assert!(manifest.contains("env = \"STABILITY_API_KEY\""));
    }

    #[test]
    fn blurred_images_are_warned_about() {
        let made = |reason: &str, seed| Made {
            image: Image::png(vec![1]),
            seed: Some(seed),
            finish_reason: Some(reason.into()),
        };
        let generation = finish(vec![made("SUCCESS", 1), made("CONTENT_FILTERED", 2)]);
        assert_eq!(generation.images.len(), 2);
        assert_eq!(generation.seed, Some(1));
        assert_eq!(
            generation.metadata.get("seeds").map(String::as_str),
            Some("1,2")
        );
        assert_eq!(generation.warnings.len(), 1);
        assert!(
            generation.warnings[0].contains("blurred image 2 of 2"),
            "{:?}",
            generation.warnings
        );
    }

    #[test]
    fn invalid_requests_fail_before_any_host_call() {
        // Off wasm, any host call would panic: these must be refused by validation alone.
        assert_eq!(
            Stability
                .generate(GenerateRequest::new("stable-image-core", ""))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            Stability
                .generate(GenerateRequest::new("upscale-fast", "x"))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
        let edit = EditRequest::new(
            EditMode::Variations,
            GenerateRequest::new("", "x"),
            vec![Image::png(vec![1])],
        );
        assert_eq!(
            Stability.edit(edit).err().map(|e| e.class()),
            Some("invalid-request")
        );
        let upscale = UpscaleRequest::new("upscale-creative", Image::png(vec![1]));
        assert_eq!(
            Stability.upscale(upscale).err().map(|e| e.class()),
            Some("invalid-request")
        );
    }
}
