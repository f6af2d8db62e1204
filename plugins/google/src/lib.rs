//! ImageAI provider plugin for Google's Gemini API: the Gemini image models (`:generateContent`:
//! text-to-image and editing with reference images) and Imagen 4 (`:predict`), on `imageai-sdk`.

mod models;
mod wire;

use std::time::Duration;

use imageai_sdk::http::{self, Response};
use imageai_sdk::{
    EditRequest, GenerateRequest, Generation, Image, Provider, ProviderError, ProviderInfo,
    api_key, check_cancelled, progress, setting_or, sleep,
};

use crate::models::{Family, MODELS, Model};
use crate::wire::{GenerateContentResponse, PredictResponse};

/// Where requests go unless the `base_url` setting says otherwise (a proxy, a test server).
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// Google puts its 429 retry hint in the body (`RetryInfo.retryDelay`), where the host's retries
/// do not look. When the hint is at most this long the plugin waits it out and tries once more
/// itself; a longer hint goes back to the caller as `rate-limited` with `retry-after-ms`.
const SELF_RETRY_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Google;

impl Provider for Google {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("google", "Google", env!("CARGO_PKG_VERSION"))
            .models(MODELS.iter().map(Model::info))
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
        let model = models::find(&request.model)?;
        model.validate(&request)?;
        let key = api_key()?;
        let generation = match model.family {
            Family::Gemini => gemini(model, &request, &[], &key)?,
            Family::Imagen => imagen(model, &request, &key)?,
        };
        Ok(with_alias_warning(generation, model, &request.model))
    }

    fn edit(&self, request: EditRequest) -> Result<Generation, ProviderError> {
        let model = models::find(&request.base.model)?;
        model.validate_edit(&request)?;
        let key = api_key()?;
        let generation = gemini(model, &request.base, &request.images, &key)?;
        Ok(with_alias_warning(generation, model, &request.base.model))
    }

    fn check_key(&self) -> Result<(), ProviderError> {
        send(
            &http::get(endpoint("/models?pageSize=1")).header("x-goog-api-key", api_key()?),
            0.0,
        )
        .map(|_| ())
    }
}

imageai_sdk::register_provider!(Google);

/// `{base_url}{path}`, with the configured base URL's trailing slash ignored.
fn endpoint(path: &str) -> String {
    let base = setting_or("base_url", DEFAULT_BASE_URL);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Gemini: one `generateContent` call per image asked for (the image models answer one image
/// per call), the text beside the images kept as the note. With a seed, later calls count up
/// from it: the same seed would ask for the same image again.
fn gemini(
    model: &Model,
    request: &GenerateRequest,
    images: &[Image],
    key: &str,
) -> Result<Generation, ProviderError> {
    let mut body = wire::gemini_body(model, request, images);
    let url = endpoint(&format!("/models/{}:generateContent", model.id));
    let total = request.count();
    let mut generation = Generation::default();
    let mut notes = Vec::new();
    for i in 0..total {
        check_cancelled()?;
        let what = if images.is_empty() {
            "an image"
        } else {
            "an edit"
        };
        progress(
            i as f32 / total as f32,
            &format!("asking {} for {what} ({} of {total})", model.id, i + 1),
        );
        if let Some(seed) = request.seed {
            body["generationConfig"]["seed"] = (seed + u64::from(i)).into();
        }
        let call = http::post(&url).header("x-goog-api-key", key).json(&body);
        let response = send(&call, i as f32 / total as f32)?;
        let answer = response
            .json::<GenerateContentResponse<'_>>()?
            .into_answer(model.id)?;
        generation.images.extend(answer.images);
        notes.extend(answer.text);
        generation.warnings.extend(answer.warnings);
        if generation.request_id.is_none() {
            generation.request_id = answer.response_id;
        }
        generation.finish_reason = answer.finish_reason;
        generation.metadata.extend(answer.metadata);
    }
    notes.dedup();
    generation.note = (!notes.is_empty()).then(|| notes.join("\n\n"));
    progress(1.0, "done");
    Ok(generation)
}

/// Imagen: one `predict` call for all the images.
fn imagen(
    model: &Model,
    request: &GenerateRequest,
    key: &str,
) -> Result<Generation, ProviderError> {
    let body = wire::imagen_body(model, request);
    progress(
        0.05,
        &format!("asking {} for {} image(s)", model.id, request.count()),
    );
    let call = http::post(endpoint(&format!("/models/{}:predict", model.id)))
        .header("x-goog-api-key", key)
        .json(&body);
    let response = send(&call, 0.05)?;
    let fallback = wire::mime_for_format(request.output_format.as_deref().unwrap_or("png"));
    let answer = response
        .json::<PredictResponse<'_>>()?
        .into_answer(request.count(), fallback)?;
    let mut generation = Generation::new(answer.images).revised_prompt(answer.revised_prompt);
    generation.warnings = answer.warnings;
    progress(1.0, "done");
    Ok(generation)
}

/// Send, turning a failed status into Google's error. A 429 whose body asks for a short wait is
/// waited out (cancellably, reporting it at progress `at`) and tried once more.
fn send(request: &http::Request, at: f32) -> Result<Response, ProviderError> {
    let response = request.clone().send()?;
    if response.is_success() {
        return Ok(response);
    }
    let error = wire::error(&response);
    let ProviderError::RateLimited {
        retry_after_ms: Some(wait_ms),
        ..
    } = &error
    else {
        return Err(error);
    };
    let wait = Duration::from_millis(*wait_ms);
    if wait > SELF_RETRY_MAX {
        return Err(error);
    }
    imageai_sdk::log::info(&format!(
        "Google asked to wait {} ms before retrying; waiting once",
        wait.as_millis()
    ));
    progress(
        at,
        &format!(
            "rate limited by Google; retrying in {:.1} s",
            wait.as_secs_f32()
        ),
    );
    sleep(wait)?;
    let retried = request.clone().send()?;
    if retried.is_success() {
        Ok(retried)
    } else {
        Err(wire::error(&retried))
    }
}

/// A retired model name still works, with a warning so the user can update it.
fn with_alias_warning(generation: Generation, model: &Model, asked: &str) -> Generation {
    let asked = asked.trim();
    if model.aliases.contains(&asked) {
        generation.warning(format!(
            "`{asked}` was retired; the request went to `{}`. Use that name from now on.",
            model.id
        ))
    } else {
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_every_model() {
        let info = Google.info();
        assert_eq!(info.id, "google");
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "gemini-2.5-flash-image",
                "gemini-3-pro-image",
                "gemini-3.1-flash-image",
                "imagen-4.0-generate-001",
                "imagen-4.0-ultra-generate-001",
                "imagen-4.0-fast-generate-001"
            ]
        );
    }

    #[test]
    fn manifest_agrees_with_the_code() {
        let manifest = include_str!("../plugin.toml");
        assert!(manifest.contains("id = \"google\""));
        assert!(manifest.contains(&format!("contract = \"{}\"", imageai_sdk::CONTRACT_VERSION)));
        assert!(manifest.contains(&format!("default = \"{DEFAULT_BASE_URL}\"")));
        assert!(manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
        assert!(manifest.contains("env = \"GOOGLE_API_KEY\""));
    }

    #[test]
    fn invalid_requests_fail_before_any_host_call() {
        // Off wasm, any host call would panic: these must be refused by validation alone.
        let cases = [
            GenerateRequest::new("gemini-2.5-flash-image", " "),
            GenerateRequest {
                n: 9,
                ..GenerateRequest::new("imagen-4.0-generate-001", "x")
            },
            GenerateRequest::new("dall-e-3", "x"),
        ];
        for request in cases {
            assert_eq!(
                Google.generate(request).err().map(|e| e.class()),
                Some("invalid-request")
            );
        }
        let edit = EditRequest::new(
            imageai_sdk::EditMode::Edit,
            GenerateRequest::new("imagen-4.0-generate-001", "x"),
            vec![Image::png(vec![1])],
        );
        assert_eq!(
            Google.edit(edit).err().map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            Google
                .upscale(imageai_sdk::UpscaleRequest::new("x", Image::png(vec![])))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
    }
}
