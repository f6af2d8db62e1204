//! ImageAI provider plugin for OpenAI's image API: DALL·E 2, DALL·E 3 and the GPT Image models.
//! Generations, edits (several reference images, masks) and variations, built on `imageai-sdk`.

mod models;
mod wire;

use imageai_sdk::http::{self, Response};
use imageai_sdk::{
    EditMode, EditRequest, GenerateRequest, Generation, Image, Provider, ProviderError,
    ProviderInfo, api_key, progress, setting_or,
};

use crate::models::{MODELS, Model};
use crate::wire::{ImagesResponse, Source};

/// Where requests go unless the `base_url` setting says otherwise (a proxy, Azure, a test server).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

#[derive(Debug, Default)]
pub struct OpenAi;

impl Provider for OpenAi {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("openai", "OpenAI", env!("CARGO_PKG_VERSION"))
            .models(MODELS.iter().map(Model::info))
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
        let model = models::find(&request.model)?;
        model.validate(&request, true)?;
        let body = wire::generation_body(model, &request);
        progress(
            0.05,
            &format!("asking {} for {} image(s)", model.id, request.count()),
        );
        let response = send(
            http::post(endpoint("/images/generations"))
                .bearer(&api_key()?)
                .json(&body),
        )?;
        finish(model, &request, &response)
    }

    fn edit(&self, request: EditRequest) -> Result<Generation, ProviderError> {
        let model = models::find(&request.base.model)?;
        model.validate_edit(&request)?;
        let (path, form) = wire::edit_form(model, &request);
        let what = if request.mode == EditMode::Variations {
            "variations"
        } else {
            "an edit"
        };
        progress(0.05, &format!("asking {} for {what}", model.id));
        let response = send(
            http::post(endpoint(path))
                .bearer(&api_key()?)
                .multipart(form),
        )?;
        finish(model, &request.base, &response)
    }

    fn check_key(&self) -> Result<(), ProviderError> {
        send(http::get(endpoint("/models")).bearer(&api_key()?)).map(|_| ())
    }
}

imageai_sdk::register_provider!(OpenAi);

/// `{base_url}{path}`, with the configured base URL's trailing slash ignored.
fn endpoint(path: &str) -> String {
    let base = setting_or("base_url", DEFAULT_BASE_URL);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Send, and turn a failed status into OpenAI's error.
fn send(request: http::Request) -> Result<Response, ProviderError> {
    let response = request.send()?;
    if response.is_success() {
        Ok(response)
    } else {
        Err(wire::error(&response))
    }
}

/// Read the answer: decode inline images, download URL ones, keep what OpenAI said about them.
fn finish(
    model: &Model,
    request: &GenerateRequest,
    response: &Response,
) -> Result<Generation, ProviderError> {
    let answer: ImagesResponse<'_> = response.json()?;
    let sources = answer.sources(model.output_format(request))?;
    let total = sources.len();
    let mut images = Vec::with_capacity(total);
    for (i, source) in sources.into_iter().enumerate() {
        match source {
            Source::Inline(image) => images.push(image),
            Source::Url(url) => {
                progress(
                    0.5 + 0.5 * i as f32 / total as f32,
                    &format!("downloading image {} of {total}", i + 1),
                );
                images.push(download(&url)?);
            }
        }
    }
    let mut generation = Generation::new(images)
        .revised_prompt(answer.revised_prompt())
        .request_id(response.header("x-request-id").map(str::to_owned));
    for (key, value) in answer.metadata() {
        generation = generation.metadata(key, value);
    }
    for warning in models::ignored(request) {
        generation = generation.warning(warning);
    }
    progress(1.0, "done");
    Ok(generation)
}

/// Fetch an image OpenAI answered with a URL (DALL·E with `response_format=url`; the URLs are
/// pre-signed Azure blob links that expire after an hour). The key is not sent: the link is
/// its own authorisation and the host is not OpenAI's.
fn download(url: &str) -> Result<Image, ProviderError> {
    let response = http::get(url).send()?;
    if !response.is_success() {
        let reason = if response.status == 403 || response.status == 404 {
            " The link may have expired (they last an hour); generate again."
        } else {
            ""
        };
        return Err(ProviderError::server(format!(
            "downloading the image OpenAI made failed with HTTP {}.{reason}",
            response.status
        )));
    }
    let declared = response
        .header("content-type")
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase())
        .unwrap_or_default();
    match imageai_sdk::sniff_mime(&response.bytes) {
        Some(mime) => Ok(Image::new(mime, response.bytes)),
        None if declared.starts_with("image/") => Ok(Image::new(declared, response.bytes)),
        None => Err(ProviderError::server(format!(
            "the link OpenAI answered with did not lead to an image ({} bytes of `{declared}`)",
            response.bytes.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_every_model() {
        let info = OpenAi.info();
        assert_eq!(info.id, "openai");
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "gpt-image-1.5",
                "gpt-image-1",
                "gpt-image-1-mini",
                "dall-e-3",
                "dall-e-2"
            ]
        );
    }

    #[test]
    fn manifest_agrees_with_the_code() {
        let manifest = include_str!("../plugin.toml");
        assert!(manifest.contains("id = \"openai\""));
        assert!(manifest.contains(&format!("contract = \"{}\"", imageai_sdk::CONTRACT_VERSION)));
        assert!(manifest.contains(&format!("default = \"{DEFAULT_BASE_URL}\"")));
        assert!(manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
    }

    #[test]
    fn invalid_requests_fail_before_any_host_call() {
        // Off wasm, any host call would panic: these must be refused by validation alone.
        let bad_size = GenerateRequest {
            size: Some("640x480".into()),
            ..GenerateRequest::new("dall-e-3", "x")
        };
        assert_eq!(
            OpenAi.generate(bad_size).err().map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            OpenAi
                .generate(GenerateRequest::new("gpt-image-1", "  "))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
        let variations = EditRequest::new(
            EditMode::Variations,
            GenerateRequest::new("dall-e-3", ""),
            vec![Image::png(vec![])],
        );
        assert_eq!(
            OpenAi.edit(variations).err().map(|e| e.class()),
            Some("invalid-request")
        );
        assert_eq!(
            OpenAi
                .upscale(imageai_sdk::UpscaleRequest::new(
                    "dall-e-2",
                    Image::png(vec![])
                ))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );
    }
}
