//! The Gemini API on the wire: the JSON of `:generateContent` (Gemini) and `:predict` (Imagen),
//! the shape of their answers, the safety outcomes they report as HTTP 200, and error mapping.

use imageai_sdk::base64::Encoded;
use imageai_sdk::errors::ErrorDetails;
use imageai_sdk::http::Response;
use imageai_sdk::{GenerateRequest, Image, ProviderError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::models::Model;

/// The JSON body of `POST /models/{id}:generateContent`: the prompt, then the reference images
/// as inline parts, asking for text and image answers.
pub fn gemini_body(model: &Model, request: &GenerateRequest, images: &[Image]) -> Value {
    let mut parts = vec![json!({"text": request.prompt})];
    for image in images {
        parts.push(json!({"inlineData": {"mimeType": image.mime, "data": imageai_sdk::base64::encode(&image.data)}}));
    }
    let mut image_config = Map::new();
    if let Some(ratio) = &request.aspect_ratio {
        image_config.insert("aspectRatio".into(), json!(ratio));
    }
    if let Some(size) = model.image_size(request) {
        image_config.insert("imageSize".into(), json!(size));
    }
    let mut config = Map::new();
    config.insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
    if !image_config.is_empty() {
        config.insert("imageConfig".into(), Value::Object(image_config));
    }
    if let Some(seed) = request.seed {
        config.insert("seed".into(), json!(seed));
    }
    json!({
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": config,
    })
}

/// The JSON body of `POST /models/{id}:predict` (Imagen). `sampleCount` is always sent: the
/// API's default is 4, not 1. `includeRaiReason` makes filtered images say why.
pub fn imagen_body(model: &Model, request: &GenerateRequest) -> Value {
    let mut parameters = Map::new();
    parameters.insert("sampleCount".into(), json!(request.count()));
    if let Some(ratio) = &request.aspect_ratio {
        parameters.insert("aspectRatio".into(), json!(ratio));
    }
    if let Some(person) = request.extra("person_generation") {
        parameters.insert(
            "personGeneration".into(),
            json!(person.trim().to_ascii_uppercase()),
        );
    }
    if let Some(size) = model.image_size(request) {
        parameters.insert("sampleImageSize".into(), json!(size));
    }
    if let Some(format) = &request.output_format {
        parameters.insert(
            "outputOptions".into(),
            json!({"mimeType": mime_for_format(format)}),
        );
    }
    parameters.insert("includeRaiReason".into(), json!(true));
    json!({"instances": [{"prompt": request.prompt}], "parameters": parameters})
}

pub fn mime_for_format(format: &str) -> &'static str {
    match format {
        "jpeg" | "jpg" => "image/jpeg",
        _ => "image/png",
    }
}

/// `{"candidates": [...], "promptFeedback"?, "usageMetadata"?, "modelVersion"?, "responseId"?}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse<'a> {
    #[serde(default, borrow)]
    pub candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<Value>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate<'a> {
    #[serde(default, borrow)]
    pub content: Option<Content<'a>>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub finish_message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Content<'a> {
    #[serde(default, borrow)]
    pub parts: Vec<Part<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, borrow, alias = "inline_data")]
    pub inline_data: Option<Blob<'a>>,
    /// Gemini 3 models show their reasoning in `thought` parts: not part of the answer.
    #[serde(default)]
    pub thought: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    #[serde(default, alias = "mime_type")]
    pub mime_type: Option<String>,
    /// Borrowed from the answer: a large image is neither copied nor checked for UTF-8 twice.
    #[serde(borrow)]
    pub data: Encoded<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
    #[serde(default)]
    pub block_reason_message: Option<String>,
}

/// What one `generateContent` answer gave: images, the text beside them, and bookkeeping.
#[derive(Debug, Default, PartialEq)]
pub struct GeminiAnswer {
    pub images: Vec<Image>,
    pub text: Option<String>,
    pub finish_reason: Option<String>,
    pub response_id: Option<String>,
    pub warnings: Vec<String>,
    pub metadata: Vec<(String, String)>,
}

/// Finish reasons that mean a safety or policy filter stopped the image.
const REFUSALS: &[&str] = &[
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
    "NO_IMAGE",
];

impl GenerateContentResponse<'_> {
    /// Read the answer. Google reports refusals as HTTP 200: a blocked prompt has no candidates
    /// and a `promptFeedback.blockReason`; a refused image has a candidate without image whose
    /// `finishReason` says why. Both become [`ProviderError::ContentPolicy`] with that reason.
    pub fn into_answer(self, model: &str) -> Result<GeminiAnswer, ProviderError> {
        if self.candidates.is_empty() {
            return Err(
                match self
                    .prompt_feedback
                    .as_ref()
                    .and_then(|f| f.block_reason.clone())
                {
                    Some(reason) => {
                        let detail = self
                            .prompt_feedback
                            .and_then(|f| f.block_reason_message)
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default();
                        ProviderError::content_policy(format!(
                            "Google blocked the prompt ({reason}){detail}. Rephrase it and try again."
                        ))
                    }
                    None => ProviderError::server(format!(
                        "{model} answered without any result. Try again."
                    )),
                },
            );
        }
        let mut answer = GeminiAnswer {
            response_id: self.response_id.clone(),
            ..GeminiAnswer::default()
        };
        let mut texts = Vec::new();
        for candidate in &self.candidates {
            let parts = candidate
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or_default();
            for part in parts.iter().filter(|p| p.thought != Some(true)) {
                if let Some(blob) = &part.inline_data {
                    let declared = blob
                        .mime_type
                        .as_deref()
                        .filter(|m| m.starts_with("image/"))
                        .unwrap_or("image/png");
                    answer
                        .images
                        .push(Image::from_base64(&blob.data, declared)?);
                } else if let Some(text) = part
                    .text
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                {
                    texts.push(text.to_owned());
                }
            }
        }
        let first = &self.candidates[0];
        answer.finish_reason = first.finish_reason.clone();
        let said = (!texts.is_empty()).then(|| texts.join("\n\n"));
        if answer.images.is_empty() {
            return Err(no_image(model, first, said));
        }
        answer.text = said;
        if let Some(reason) = answer
            .finish_reason
            .as_deref()
            .filter(|r| REFUSALS.contains(r))
        {
            answer.warnings.push(format!(
                "Google stopped part of the answer ({reason}); some images may be missing."
            ));
        }
        if let Some(version) = &self.model_version {
            answer
                .metadata
                .push(("model_version".into(), version.clone()));
        }
        if let Some(Value::Object(usage)) = &self.usage_metadata {
            for key in [
                "promptTokenCount",
                "candidatesTokenCount",
                "totalTokenCount",
            ] {
                if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                    answer
                        .metadata
                        .push((format!("usage.{key}"), n.to_string()));
                }
            }
        }
        Ok(answer)
    }
}

/// The error for an answer without images, from its finish reason and the text beside it.
fn no_image(model: &str, candidate: &Candidate<'_>, said: Option<String>) -> ProviderError {
    let reason = candidate.finish_reason.as_deref().unwrap_or("unspecified");
    let mut details = Vec::new();
    if let Some(message) = candidate
        .finish_message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
    {
        details.push(message.trim().to_owned());
    }
    if let Some(text) = &said {
        details.push(format!("the model said: \"{}\"", clip(text, 400)));
    }
    let detail = if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join("; "))
    };
    if REFUSALS.contains(&reason) {
        return ProviderError::content_policy(format!(
            "Google's safety filters stopped the image ({reason}){detail}. Rephrase the prompt or use other reference images."
        ));
    }
    match reason {
        "STOP" if said.is_some() => ProviderError::invalid_request(format!(
            "{model} answered with text instead of an image{detail}. Ask for an image explicitly, e.g. \"Generate an image of …\"."
        )),
        _ => ProviderError::server(format!(
            "{model} made no image (finish reason {reason}){detail}. Try again or rephrase the prompt."
        )),
    }
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `{"predictions": [{"bytesBase64Encoded", "mimeType"} | {"raiFilteredReason"}]}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictResponse<'a> {
    #[serde(default, borrow)]
    pub predictions: Vec<Prediction<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction<'a> {
    /// Borrowed from the answer, as [`Blob::data`].
    #[serde(default, borrow)]
    pub bytes_base64_encoded: Option<Encoded<'a>>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub rai_filtered_reason: Option<String>,
    /// The prompt as Imagen rewrote it, when it did.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// What one `predict` answer gave.
#[derive(Debug, Default, PartialEq)]
pub struct ImagenAnswer {
    pub images: Vec<Image>,
    pub revised_prompt: Option<String>,
    pub warnings: Vec<String>,
}

impl PredictResponse<'_> {
    /// Read the answer. Imagen drops images its filters catch (HTTP 200 with fewer or no
    /// predictions, with `raiFilteredReason` when asked for): none at all is a content-policy
    /// error with the reason; some missing is a warning.
    pub fn into_answer(
        self,
        asked: u32,
        fallback_mime: &str,
    ) -> Result<ImagenAnswer, ProviderError> {
        let mut answer = ImagenAnswer::default();
        let mut reasons = Vec::new();
        for prediction in self.predictions {
            match (
                prediction.bytes_base64_encoded,
                prediction.rai_filtered_reason,
            ) {
                (Some(data), _) => {
                    let declared = prediction.mime_type.as_deref().unwrap_or(fallback_mime);
                    answer.images.push(Image::from_base64(&data, declared)?);
                    if answer.revised_prompt.is_none() {
                        answer.revised_prompt = prediction.prompt.filter(|p| !p.trim().is_empty());
                    }
                }
                (None, Some(reason)) => reasons.push(reason),
                (None, None) => {}
            }
        }
        let why = if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", reasons.join(" "))
        };
        if answer.images.is_empty() {
            return Err(ProviderError::content_policy(format!(
                "Imagen's safety filters removed every image{why}. Rephrase the prompt (or allow people with `--set person_generation=allow_adult`) and try again."
            )));
        }
        let missing = asked.saturating_sub(u32::try_from(answer.images.len()).unwrap_or(u32::MAX));
        if missing > 0 {
            answer.warnings.push(format!(
                "Imagen's safety filters removed {missing} of {asked} images{why}"
            ));
        }
        Ok(answer)
    }
}

/// Google's errors, worded for ImageAI users. The precise reason (`API_KEY_INVALID`) first: an
/// invalid key is HTTP 400, not 401.
pub fn error(response: &Response) -> ProviderError {
    map_error(response.error_details())
}

fn map_error(details: ErrorDetails) -> ProviderError {
    let status = details.status;
    let message = details
        .message
        .clone()
        .unwrap_or_else(|| "no message".to_owned());
    let message = message.trim_end_matches('.');
    if details.is(&["API_KEY_INVALID", "API_KEY_EXPIRED"]) {
        return ProviderError::auth(format!(
            "Google rejected the key ({}). Create one at https://aistudio.google.com/apikey and set it with `imageai keys set google`.",
            details.code.as_deref().unwrap_or("API_KEY_INVALID")
        ));
    }
    match status {
        401 | 403 => ProviderError::auth(format!(
            "Google refused access ({status}): {message}. Check that the key's project has the Gemini API enabled and no restriction blocks it, or set another key with `imageai keys set google`."
        )),
        429 if message.contains("limit: 0") => ProviderError::quota(format!(
            "Google allows this key no requests to this model ({message}). Image models need a paid tier: enable billing at https://aistudio.google.com/apikey."
        )),
        429 => ProviderError::RateLimited {
            message: format!("Google is rate limiting requests: {message}"),
            retry_after_ms: details.retry_after_ms,
        },
        404 => ProviderError::invalid_request(format!(
            "Google does not offer this model to this key ({message}). Run `imageai providers` for the models this plugin knows."
        )),
        400 | 413 | 422 => ProviderError::invalid_request(format!(
            "Google rejected the request ({status}): {message}"
        )),
        408 | 504 => ProviderError::timeout(format!(
            "Google timed out ({status}): {message}. Try again."
        )),
        500..=599 => ProviderError::server(format!(
            "Google failed ({status}): {message}. Try again in a moment; https://aistudio.google.com/status shows outages."
        )),
        _ => details.into_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::find;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    /// An answer as the types read it (owned strings here; the plugin's end-to-end tests read
    /// real answers, borrowed).
    fn parse<T: Deserialize<'static>>(value: Value) -> Result<T, ProviderError> {
        T::deserialize(value).map_err(|err| ProviderError::server(err.to_string()))
    }

    #[test]
    fn gemini_bodies() -> Result<(), ProviderError> {
        let model = find("gemini-3-pro-image")?;
        let mut request = GenerateRequest {
            aspect_ratio: Some("16:9".into()),
            seed: Some(7),
            ..GenerateRequest::new("gemini-3-pro-image", "a fox")
        };
        request.extra.insert("image_size".into(), "2K".into());
        let body = gemini_body(model, &request, &[Image::png(PNG.to_vec())]);
        assert_eq!(
            body,
            json!({
                "contents": [{"role": "user", "parts": [
                    {"text": "a fox"},
                    {"inlineData": {"mimeType": "image/png", "data": imageai_sdk::base64::encode(PNG)}}
                ]}],
                "generationConfig": {"responseModalities": ["TEXT", "IMAGE"],
                                     "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}, "seed": 7}
            })
        );
        let plain = gemini_body(
            find("gemini-2.5-flash-image")?,
            &GenerateRequest::new("x", "a fox"),
            &[],
        );
        assert_eq!(
            plain["generationConfig"],
            json!({"responseModalities": ["TEXT", "IMAGE"]}),
            "no empty imageConfig"
        );
        Ok(())
    }

    #[test]
    fn imagen_bodies() -> Result<(), ProviderError> {
        let model = find("imagen-4.0-ultra-generate-001")?;
        let mut request = GenerateRequest {
            n: 2,
            aspect_ratio: Some("9:16".into()),
            output_format: Some("jpeg".into()),
            ..GenerateRequest::new("x", "a fox")
        };
        request
            .extra
            .insert("person_generation".into(), "allow_adult".into());
        request.extra.insert("image_size".into(), "2K".into());
        assert_eq!(
            imagen_body(model, &request),
            json!({"instances": [{"prompt": "a fox"}],
                   "parameters": {"sampleCount": 2, "aspectRatio": "9:16", "personGeneration": "ALLOW_ADULT",
                                  "sampleImageSize": "2K", "outputOptions": {"mimeType": "image/jpeg"}, "includeRaiReason": true}})
        );
        assert_eq!(
            imagen_body(model, &GenerateRequest::new("x", "a fox"))["parameters"],
            json!({"sampleCount": 1, "includeRaiReason": true})
        );
        Ok(())
    }

    #[test]
    fn gemini_answers_keep_text_and_skip_thoughts() -> Result<(), ProviderError> {
        let answer: GenerateContentResponse<'_> = parse(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking about foxes", "thought": true},
                {"text": "Here is your fox."},
                {"inlineData": {"mimeType": "image/png", "data": imageai_sdk::base64::encode(PNG)}}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1290, "totalTokenCount": 1297},
            "modelVersion": "gemini-2.5-flash-image",
            "responseId": "resp-1"
        }))?;
        let answer = answer.into_answer("gemini-2.5-flash-image")?;
        assert_eq!(answer.images, vec![Image::png(PNG.to_vec())]);
        assert_eq!(answer.text.as_deref(), Some("Here is your fox."));
        assert_eq!(answer.response_id.as_deref(), Some("resp-1"));
        assert!(
            answer
                .metadata
                .contains(&("usage.totalTokenCount".into(), "1297".into()))
        );
        Ok(())
    }

    #[test]
    fn safety_outcomes_are_content_policy_errors() -> Result<(), ProviderError> {
        let blocked: GenerateContentResponse<'_> =
            parse(json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}))?;
        let err = blocked.into_answer("m").err();
        assert!(
            matches!(&err, Some(ProviderError::ContentPolicy(m)) if m.contains("blocked the prompt (PROHIBITED_CONTENT)")),
            "{err:?}"
        );
        for reason in ["IMAGE_SAFETY", "NO_IMAGE", "PROHIBITED_CONTENT"] {
            let refused: GenerateContentResponse<'_> = parse(
                json!({"candidates": [{"finishReason": reason, "finishMessage": "Unable to show the generated image."}]}),
            )?;
            let err = refused.into_answer("m").err();
            assert!(
                matches!(&err, Some(ProviderError::ContentPolicy(m)) if m.contains(reason) && m.contains("Unable to show")),
                "{err:?}"
            );
        }
        let text_only: GenerateContentResponse<'_> = parse(
            json!({"candidates": [{"content": {"parts": [{"text": "What would you like?"}]}, "finishReason": "STOP"}]}),
        )?;
        assert!(
            matches!(text_only.into_answer("m"), Err(ProviderError::InvalidRequest(m)) if m.contains("What would you like?"))
        );
        let empty: GenerateContentResponse<'_> = parse(json!({}))?;
        assert_eq!(
            empty.into_answer("m").err().map(|e| e.class()),
            Some("server")
        );
        Ok(())
    }

    #[test]
    fn imagen_filtering() -> Result<(), ProviderError> {
        let b64 = imageai_sdk::base64::encode(PNG);
        let some: PredictResponse<'_> = parse(
            json!({"predictions": [{"bytesBase64Encoded": b64, "mimeType": "image/png"}, {"raiFilteredReason": "filtered: people"}]}),
        )?;
        let answer = some.into_answer(2, "image/png")?;
        assert_eq!(answer.images.len(), 1);
        assert_eq!(
            answer.warnings,
            ["Imagen's safety filters removed 1 of 2 images: filtered: people"]
        );
        let none: PredictResponse<'_> = parse(json!({}))?;
        assert!(
            matches!(none.into_answer(1, "image/png"), Err(ProviderError::ContentPolicy(m)) if m.contains("removed every image"))
        );
        Ok(())
    }

    fn google_error(status: u16, body: Value) -> ProviderError {
        error(&Response::new(
            status,
            vec![],
            body.to_string().into_bytes(),
        ))
    }

    #[test]
    fn maps_errors() {
        let invalid_key = google_error(
            400,
            json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}),
        );
        assert!(
            matches!(&invalid_key, ProviderError::Auth(m) if m.contains("API_KEY_INVALID") && m.contains("imageai keys set google")),
            "{invalid_key:?}"
        );
        let exhausted = google_error(
            429,
            json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"}]}}),
        );
        assert!(matches!(
            exhausted,
            ProviderError::RateLimited {
                retry_after_ms: Some(47_000),
                ..
            }
        ));
        let free = google_error(
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded for metric: generate_content_free_tier_requests, limit: 0, model: gemini-2.5-flash-image", "status": "RESOURCE_EXHAUSTED"}}),
        );
        assert_eq!(free.class(), "quota");
        let bad = google_error(
            400,
            json!({"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name \"foo\".", "status": "INVALID_ARGUMENT"}}),
        );
        assert!(
            matches!(&bad, ProviderError::InvalidRequest(m) if m.starts_with("Google rejected the request (400): Invalid JSON payload")),
            "{bad:?}"
        );
        assert_eq!(google_error(503, json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})).class(), "server");
        assert_eq!(google_error(403, json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers", "status": "PERMISSION_DENIED"}})).class(), "auth");
        assert_eq!(google_error(404, json!({"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}})).class(), "invalid-request");
    }
}
