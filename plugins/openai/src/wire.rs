//! OpenAI's image API on the wire: the JSON and multipart bodies of `/images/generations`,
//! `/images/edits` and `/images/variations`, the shape of their answers, and error mapping.

use imageai_sdk::base64::Encoded;
use imageai_sdk::errors::ErrorDetails;
use imageai_sdk::http::Response;
use imageai_sdk::multipart::Form;
use imageai_sdk::{EditMode, EditRequest, GenerateRequest, Image, ProviderError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::models::{Family, Model};

/// The JSON body of `POST /images/generations`.
pub fn generation_body(model: &Model, request: &GenerateRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model.id));
    body.insert("prompt".into(), json!(request.prompt));
    body.insert("n".into(), json!(request.count()));
    insert_common(&mut body, model, request);
    if model.family == Family::DallE3 {
        insert_text(&mut body, "style", request.style.as_deref());
    }
    if model.family == Family::GptImage {
        insert_text(&mut body, "moderation", request.extra("moderation"));
    }
    Value::Object(body)
}

/// Fields generations and edits share: size, quality, output format, background, the response
/// format (DALL·E: base64 unless the user asked for URLs) and the pass-through extras.
fn insert_common(body: &mut Map<String, Value>, model: &Model, request: &GenerateRequest) {
    insert_text(body, "size", request.size.as_deref());
    insert_text(body, "quality", request.quality.as_deref());
    match model.family {
        Family::DallE2 | Family::DallE3 => {
            body.insert(
                "response_format".into(),
                json!(request.extra("response_format").unwrap_or("b64_json")),
            );
        }
        Family::GptImage => {
            insert_text(body, "output_format", request.output_format.as_deref());
            insert_text(body, "background", request.background.as_deref());
            if let Some(compression) = request
                .extra("output_compression")
                .and_then(|v| v.trim().parse::<u8>().ok())
            {
                body.insert("output_compression".into(), json!(compression));
            }
        }
    }
    insert_text(body, "user", request.extra("user"));
}

fn insert_text(body: &mut Map<String, Value>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        body.insert(name.to_owned(), json!(value));
    }
}

/// The multipart body of `POST /images/edits` or `/images/variations`, and that path.
pub fn edit_form(model: &Model, request: &EditRequest) -> (&'static str, Form) {
    let variations = request.mode == EditMode::Variations;
    let mut fields = Map::new();
    fields.insert("model".into(), json!(model.id));
    if !variations {
        fields.insert("prompt".into(), json!(request.base.prompt));
    }
    fields.insert("n".into(), json!(request.base.count()));
    if variations {
        insert_text(&mut fields, "size", request.base.size.as_deref());
        fields.insert(
            "response_format".into(),
            json!(request.base.extra("response_format").unwrap_or("b64_json")),
        );
        insert_text(&mut fields, "user", request.base.extra("user"));
    } else {
        insert_common(&mut fields, model, &request.base);
        if model.family == Family::GptImage {
            insert_text(
                &mut fields,
                "input_fidelity",
                request.base.extra("input_fidelity"),
            );
        }
    }
    let mut form = Form::new();
    for (name, value) in fields {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        form = form.text(name, text);
    }
    // DALL·E 2 takes one `image`; the GPT Image models take `image[]`, repeated.
    let image_field = if model.family == Family::GptImage {
        "image[]"
    } else {
        "image"
    };
    let single = request.images.len() == 1;
    for (i, image) in request.images.iter().enumerate() {
        let stem = if single {
            "image".to_owned()
        } else {
            format!("image-{}", i + 1)
        };
        form = form.file(
            image_field,
            image.file_name(&stem),
            image.mime.clone(),
            image.data.clone(),
        );
    }
    if let Some(mask) = &request.mask {
        form = form.file(
            "mask",
            mask.file_name("mask"),
            mask.mime.clone(),
            mask.data.clone(),
        );
    }
    (
        if variations {
            "/images/variations"
        } else {
            "/images/edits"
        },
        form,
    )
}

/// `{"created": …, "data": [{"b64_json" | "url", "revised_prompt"?}], "usage"?, …}`
#[derive(Debug, Deserialize)]
pub struct ImagesResponse<'a> {
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default, borrow)]
    pub data: Vec<ImageData<'a>>,
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub quality: Option<String>,
    #[serde(default)]
    pub output_format: Option<String>,
    #[serde(default)]
    pub background: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ImageData<'a> {
    /// Borrowed from the answer: a large image is neither copied nor checked for UTF-8 twice.
    #[serde(default, borrow)]
    pub b64_json: Option<Encoded<'a>>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub revised_prompt: Option<String>,
}

/// Where one answered image is: inline, or at a URL to download.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Inline(Image),
    Url(String),
}

impl ImagesResponse<'_> {
    /// Decode the inline images and list the URLs to fetch, in the order given.
    pub fn sources(&self, requested_format: &str) -> Result<Vec<Source>, ProviderError> {
        if self.data.is_empty() {
            return Err(ProviderError::server(
                "OpenAI answered without any image. Try again.",
            ));
        }
        let format = self.output_format.as_deref().unwrap_or(requested_format);
        let fallback = mime_for_format(format);
        self.data
            .iter()
            .enumerate()
            .map(|(i, item)| match (&item.b64_json, &item.url) {
                (Some(b64), _) => Image::from_base64(b64, fallback).map(Source::Inline),
                (None, Some(url)) => Ok(Source::Url(url.clone())),
                (None, None) => Err(ProviderError::server(format!(
                    "OpenAI's answer has neither `b64_json` nor `url` for image {}",
                    i + 1
                ))),
            })
            .collect()
    }

    /// What to keep in the history sidecar besides the images.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut metadata = Vec::new();
        if let Some(created) = self.created {
            metadata.push(("created".to_owned(), created.to_string()));
        }
        for (key, value) in [
            ("size", &self.size),
            ("quality", &self.quality),
            ("output_format", &self.output_format),
            ("background", &self.background),
        ] {
            if let Some(value) = value {
                metadata.push((key.to_owned(), value.clone()));
            }
        }
        if let Some(Value::Object(usage)) = &self.usage {
            for key in ["input_tokens", "output_tokens", "total_tokens"] {
                if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                    metadata.push((format!("usage.{key}"), n.to_string()));
                }
            }
        }
        metadata
    }

    /// DALL·E 3 rewrites the prompt; all images of one request share it.
    pub fn revised_prompt(&self) -> Option<String> {
        self.data
            .iter()
            .find_map(|item| item.revised_prompt.clone())
            .filter(|p| !p.is_empty())
    }
}

pub fn mime_for_format(format: &str) -> &'static str {
    match format {
        "jpeg" | "jpg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "image/png",
    }
}

/// OpenAI's errors, worded for ImageAI users. Codes first (a 429 can be `insufficient_quota`),
/// then the status; anything else falls back to the SDK's generic mapping.
pub fn error(response: &Response) -> ProviderError {
    map_error(response.error_details())
}

fn map_error(details: ErrorDetails) -> ProviderError {
    let status = details.status;
    let message = details
        .message
        .clone()
        .unwrap_or_else(|| "no message".to_owned());
    let reference = details
        .request_id
        .as_deref()
        .map(|id| format!(" (request {id})"))
        .unwrap_or_default();
    if details.is(&["content_policy_violation", "moderation_blocked"]) {
        return ProviderError::content_policy(message);
    }
    if status == 402
        || details.is(&[
            "insufficient_quota",
            "billing_hard_limit_reached",
            "billing_not_active",
        ])
    {
        return ProviderError::quota(format!(
            "OpenAI says the account is out of credits or over its limit: {message} Add credits or raise the limit at https://platform.openai.com/settings/organization/billing"
        ));
    }
    match status {
        401 => ProviderError::auth(
            "OpenAI rejected the key (401). Set a new one with `imageai keys set openai`.",
        ),
        403 => ProviderError::auth(format!(
            "OpenAI refused access (403): {message} Check the key's project and permissions, or set another key with `imageai keys set openai`."
        )),
        429 => ProviderError::RateLimited {
            message: format!("OpenAI is rate limiting requests: {message}"),
            retry_after_ms: details.retry_after_ms,
        },
        408 | 504 => ProviderError::timeout(format!(
            "OpenAI timed out ({status}): {message}{reference}. Try again."
        )),
        400 | 404 | 413 | 422 => ProviderError::invalid_request(format!(
            "OpenAI rejected the request ({status}): {message}{reference}"
        )),
        500..=599 => ProviderError::server(format!(
            "OpenAI failed ({status}): {message}{reference}. Try again in a moment; https://status.openai.com shows outages."
        )),
        _ => details.into_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::find;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn text_parts(body: &[u8]) -> String {
        String::from_utf8_lossy(body).into_owned()
    }

    #[test]
    fn dalle3_generation_body() -> Result<(), ProviderError> {
        let request = GenerateRequest {
            size: Some("1792x1024".into()),
            quality: Some("hd".into()),
            style: Some("natural".into()),
            ..GenerateRequest::new("dall-e-3", "a fox")
        };
        let body = generation_body(find("dall-e-3")?, &request);
        assert_eq!(
            body,
            json!({"model": "dall-e-3", "prompt": "a fox", "n": 1, "size": "1792x1024", "quality": "hd",
                   "response_format": "b64_json", "style": "natural"})
        );
        Ok(())
    }

    #[test]
    fn gpt_image_generation_body() -> Result<(), ProviderError> {
        let mut request = GenerateRequest {
            n: 3,
            output_format: Some("webp".into()),
            background: Some("transparent".into()),
            ..GenerateRequest::new("gpt-image-1", "a logo")
        };
        request
            .extra
            .insert("output_compression".into(), "70".into());
        request.extra.insert("moderation".into(), "low".into());
        let body = generation_body(find("gpt-image-1")?, &request);
        assert_eq!(
            body,
            json!({"model": "gpt-image-1", "prompt": "a logo", "n": 3, "output_format": "webp",
                   "background": "transparent", "output_compression": 70, "moderation": "low"})
        );
        assert!(
            body.get("response_format").is_none(),
            "gpt-image always answers base64 and rejects response_format"
        );
        Ok(())
    }

    #[test]
    fn dalle_asks_for_urls_when_told() -> Result<(), ProviderError> {
        let mut request = GenerateRequest::new("dall-e-2", "a fox");
        request.extra.insert("response_format".into(), "url".into());
        assert_eq!(
            generation_body(find("dall-e-2")?, &request)["response_format"],
            "url"
        );
        Ok(())
    }

    #[test]
    fn gpt_image_edit_form() -> Result<(), ProviderError> {
        let mut base = GenerateRequest {
            n: 2,
            size: Some("1024x1536".into()),
            quality: Some("high".into()),
            ..GenerateRequest::new("gpt-image-1", "merge them")
        };
        base.extra.insert("input_fidelity".into(), "high".into());
        let request = EditRequest::new(
            EditMode::Edit,
            base,
            vec![
                Image::png(PNG.to_vec()),
                Image::new("image/jpeg", vec![0xFF, 0xD8, 0xFF]),
            ],
        )
        .mask(Image::png(PNG.to_vec()));
        let (path, form) = edit_form(find("gpt-image-1")?, &request);
        assert_eq!(path, "/images/edits");
        let (_, body) = form.with_boundary("B").finish();
        let text = text_parts(&body);
        for expected in [
            "name=\"model\"\r\n\r\ngpt-image-1\r\n",
            "name=\"prompt\"\r\n\r\nmerge them\r\n",
            "name=\"n\"\r\n\r\n2\r\n",
            "name=\"size\"\r\n\r\n1024x1536\r\n",
            "name=\"quality\"\r\n\r\nhigh\r\n",
            "name=\"input_fidelity\"\r\n\r\nhigh\r\n",
            "name=\"image[]\"; filename=\"image-1.png\"\r\nContent-Type: image/png\r\n",
            "name=\"image[]\"; filename=\"image-2.jpg\"\r\nContent-Type: image/jpeg\r\n",
            "name=\"mask\"; filename=\"mask.png\"\r\nContent-Type: image/png\r\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("response_format"));
        Ok(())
    }

    #[test]
    fn dalle2_edit_and_variations_forms() -> Result<(), ProviderError> {
        let model = find("dall-e-2")?;
        let edit = EditRequest::new(
            EditMode::Inpaint,
            GenerateRequest::new("dall-e-2", "add a hat"),
            vec![Image::png(PNG.to_vec())],
        )
        .mask(Image::png(PNG.to_vec()));
        let (path, form) = edit_form(model, &edit);
        assert_eq!(path, "/images/edits");
        let text = text_parts(&form.with_boundary("B").finish().1);
        assert!(
            text.contains("name=\"image\"; filename=\"image.png\""),
            "{text}"
        );
        assert!(
            text.contains("name=\"response_format\"\r\n\r\nb64_json\r\n"),
            "{text}"
        );
        assert!(!text.contains("image[]"));

        let variations = EditRequest::new(
            EditMode::Variations,
            GenerateRequest {
                n: 4,
                size: Some("512x512".into()),
                ..GenerateRequest::new("dall-e-2", "")
            },
            vec![Image::png(PNG.to_vec())],
        );
        let (path, form) = edit_form(model, &variations);
        assert_eq!(path, "/images/variations");
        let text = text_parts(&form.with_boundary("B").finish().1);
        assert!(!text.contains("name=\"prompt\""), "{text}");
        assert!(
            text.contains("name=\"n\"\r\n\r\n4\r\n")
                && text.contains("name=\"size\"\r\n\r\n512x512\r\n"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn parses_answers() -> Result<(), ProviderError> {
        let body = json!({
            "created": 1_700_000_000,
            "data": [
                {"b64_json": imageai_sdk::base64::encode(PNG), "revised_prompt": "a red fox in snow"},
                {"url": "https://oaidalleapiprodscus.blob.core.windows.net/private/img.png?sig=x"}
            ],
            "usage": {"input_tokens": 10, "output_tokens": 4160, "total_tokens": 4170},
            "output_format": "png",
        });
        let answer = Response::new(200, vec![], body.to_string().into_bytes());
        let response: ImagesResponse<'_> = answer.json()?;
        let sources = response.sources("png")?;
        assert_eq!(sources[0], Source::Inline(Image::png(PNG.to_vec())));
        assert_eq!(
            sources[1],
            Source::Url(
                "https://oaidalleapiprodscus.blob.core.windows.net/private/img.png?sig=x".into()
            )
        );
        assert_eq!(
            response.revised_prompt().as_deref(),
            Some("a red fox in snow")
        );
        let metadata = response.metadata();
        assert!(metadata.contains(&("usage.output_tokens".into(), "4160".into())));
        assert!(metadata.contains(&("created".into(), "1700000000".into())));
        Ok(())
    }

    #[test]
    fn unusable_answers_are_server_errors() {
        let answer = |body: &[u8]| Response::new(200, vec![], body.to_vec());
        let sources = |body: &[u8]| {
            let response = answer(body);
            response
                .json::<ImagesResponse<'_>>()
                .and_then(|r| r.sources("png"))
        };
        assert!(
            matches!(sources(br#"{"created": 1, "data": []}"#), Err(ProviderError::Server(m)) if m.contains("without any image"))
        );
        assert!(matches!(
            sources(br#"{"data": [{}]}"#),
            Err(ProviderError::Server(_))
        ));
        assert!(matches!(
            sources(br#"{"data": [{"b64_json": "%%%"}]}"#),
            Err(ProviderError::Server(_))
        ));
        assert!(
            matches!(sources(br#"{"data": [{"b64_json": "iVBO"#), Err(ProviderError::Server(m)) if m.contains("cut off"))
        );
        assert!(matches!(
            sources(br#"{"data": "nope"}"#),
            Err(ProviderError::Server(_))
        ));
        assert!(matches!(
            sources(br#"{"data": [{"b64_json": 7}]}"#),
            Err(ProviderError::Server(_))
        ));
    }

    fn openai_error(
        status: u16,
        code: &str,
        message: &str,
        headers: Vec<(String, String)>,
    ) -> ProviderError {
        let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
        error(&Response::new(
            status,
            headers,
            body.to_string().into_bytes(),
        ))
    }

    #[test]
    fn maps_errors() {
        assert_eq!(
            openai_error(
                401,
                "invalid_api_key",
                "Incorrect API key provided: sk-abc***xyz.",
                vec![]
            ),
            ProviderError::Auth(
                "OpenAI rejected the key (401). Set a new one with `imageai keys set openai`."
                    .into()
            )
        );
        assert_eq!(
            openai_error(
                400,
                "content_policy_violation",
                "Your request was rejected as a result of our safety system.",
                vec![]
            ),
            ProviderError::ContentPolicy(
                "Your request was rejected as a result of our safety system.".into()
            )
        );
        assert_eq!(
            openai_error(400, "moderation_blocked", "Blocked by moderation.", vec![]).class(),
            "content-policy"
        );
        assert_eq!(
            openai_error(
                429,
                "insufficient_quota",
                "You exceeded your current quota.",
                vec![]
            )
            .class(),
            "quota"
        );
        assert_eq!(
            openai_error(
                400,
                "billing_hard_limit_reached",
                "Billing hard limit has been reached",
                vec![]
            )
            .class(),
            "quota"
        );
        assert_eq!(openai_error(402, "", "pay up", vec![]).class(), "quota");
        match openai_error(
            429,
            "rate_limit_exceeded",
            "Rate limit reached",
            vec![("retry-after".into(), "7".into())],
        ) {
            ProviderError::RateLimited { retry_after_ms, .. } => {
                assert_eq!(retry_after_ms, Some(7000))
            }
            other => panic!("expected rate-limited, got {other:?}"),
        }
        let server = openai_error(
            503,
            "",
            "The server is overloaded",
            vec![("x-request-id".into(), "req_1".into())],
        );
        assert!(
            matches!(&server, ProviderError::Server(m) if m.contains("overloaded") && m.contains("req_1")),
            "{server:?}"
        );
        let invalid = openai_error(400, "invalid_value", "Invalid size", vec![]);
        assert_eq!(
            invalid,
            ProviderError::InvalidRequest("OpenAI rejected the request (400): Invalid size".into())
        );
        let gateway = error(&Response::new(
            504,
            vec![],
            b"<html>gateway</html>".to_vec(),
        ));
        assert_eq!(gateway.class(), "timeout");
    }
}
