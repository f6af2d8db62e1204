//! A local server that speaks the Gemini API's image calls (`/v1beta/models/{m}:generateContent`,
//! `/v1beta/models/{m}:predict`, `/v1beta/models`) closely enough to catch wrong requests: it
//! checks the `x-goog-api-key` header, refuses unknown JSON fields and models as Google does,
//! validates aspect ratios, image sizes, sample counts and person generation, decodes inline
//! images, and answers with real PNGs. Tests script Google's outcomes one request at a time,
//! including the safety outcomes it reports as HTTP 200.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::openai_server::png;
use crate::server::{Recorded, Reply, TestServer};

/// The key the server accepts.
pub const TEST_KEY: &str = "AIzaSyTest-0123456789abcdefghijklmnopq";

/// The Gemini image models the server knows (the retired `-preview` name is not one of them).
pub const GEMINI_MODELS: &[&str] = &[
    "gemini-2.5-flash-image",
    "gemini-3-pro-image",
    "gemini-3.1-flash-image",
];
/// The Imagen models the server knows.
pub const IMAGEN_MODELS: &[&str] = &[
    "imagen-4.0-generate-001",
    "imagen-4.0-ultra-generate-001",
    "imagen-4.0-fast-generate-001",
];

/// The text Gemini answers beside its image.
pub const NOTE: &str = "Here is a lighthouse at dusk, with warm light in the windows.";

/// What the next API request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// The normal answer (after validation).
    Success,
    /// 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID`, whatever the key.
    InvalidKey,
    /// 200 without candidates, `promptFeedback.blockReason` set.
    PromptBlocked(&'static str),
    /// 200 with one candidate that has no image and this `finishReason`.
    Refused(&'static str),
    /// 200 with a text-only answer (`finishReason: STOP`).
    TextOnly(&'static str),
    /// Imagen: only this many images survive; the others come back as `raiFilteredReason`.
    ImagenFiltered { kept: usize },
    /// 429 `RESOURCE_EXHAUSTED` with `RetryInfo.retryDelay` in the body (no header).
    RateLimited { retry_delay: &'static str },
    /// 429 for a model the key's tier has no quota for (`limit: 0`).
    NoQuota,
    /// 503 `UNAVAILABLE`.
    ServerError,
    /// The normal answer, after waiting this long before the headers.
    Slow(Duration),
    /// The normal answer, cut off after half its body.
    Truncated,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with a JSON body of about this many bytes.
    Oversized(usize),
}

pub struct GoogleServer {
    server: TestServer,
    state: Arc<State>,
}

struct State {
    key: String,
    script: Mutex<VecDeque<Scripted>>,
    image: Arc<Vec<u8>>,
    responses: AtomicU64,
}

impl GoogleServer {
    /// A server that accepts [`TEST_KEY`] and answers with a 48×48 PNG.
    pub fn start() -> Self {
        let state = Arc::new(State {
            key: TEST_KEY.to_owned(),
            script: Mutex::new(VecDeque::new()),
            image: Arc::new(png(48, 48, 3)),
            responses: AtomicU64::new(0),
        });
        let handler_state = state.clone();
        let server = TestServer::start(move |request| handler_state.handle(request));
        Self { server, state }
    }

    /// The value for the plugin's `base_url` setting: `http://127.0.0.1:PORT/v1beta`.
    pub fn base_url(&self) -> String {
        format!("{}/v1beta", self.server.url())
    }

    /// Queue replies for the next API requests, in order; once used up, requests succeed.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut script) = self.state.script.lock() {
            script.extend(replies);
        }
    }

    /// The PNG every answer carries.
    pub fn image(&self) -> Vec<u8> {
        self.state.image.as_ref().clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Requests to `path` (e.g. `/v1beta/models/gemini-2.5-flash-image:generateContent`).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }
}

/// A few bytes that start like a JPEG (what Imagen sends for `outputOptions.mimeType: image/jpeg`).
pub fn fake_jpeg() -> Vec<u8> {
    let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    data.extend_from_slice(b"JFIF\0test-jpeg-payload");
    data
}

impl State {
    fn handle(&self, request: &Recorded) -> Reply {
        let path = request.path().to_owned();
        let Some(rest) = path.strip_prefix("/v1beta/") else {
            return google_error(
                404,
                "NOT_FOUND",
                &format!("The requested URL {path} was not found on this server."),
                vec![],
            );
        };
        if request.uri.contains("key=") {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Test server: the key belongs in the x-goog-api-key header, not the URL.",
                vec![],
            );
        }
        match request.header("x-goog-api-key") {
            None => {
                return google_error(
                    403,
                    "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                    vec![],
                );
            }
            Some(given) if given != self.key => return invalid_key(),
            Some(_) => {}
        }
        let scripted = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(Scripted::Success);
        let response_id = format!(
            "resp-{}",
            self.responses.fetch_add(1, Ordering::Relaxed) + 1
        );
        let reply = match &scripted {
            Scripted::Success
            | Scripted::Slow(_)
            | Scripted::Truncated
            | Scripted::PromptBlocked(_)
            | Scripted::Refused(_)
            | Scripted::TextOnly(_)
            | Scripted::ImagenFiltered { .. } => self.api(request, rest, &scripted, &response_id),
            Scripted::InvalidKey => invalid_key(),
            Scripted::RateLimited { retry_delay } => google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                vec![
                    json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]}),
                    json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}),
                ],
            ),
            Scripted::NoQuota => google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-flash-image",
                vec![
                    json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}),
                ],
            ),
            Scripted::ServerError => google_error(
                503,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
                vec![],
            ),
            Scripted::MalformedJson => Reply::bytes(
                200,
                "application/json; charset=UTF-8",
                b"{\"candidates\": [{\"content\": {\"parts\": [{\"inlineData\": oops".to_vec(),
            ),
            Scripted::Oversized(bytes) => {
                let filler = "A".repeat(bytes.saturating_sub(120));
                Reply::json(
                    200,
                    &json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": filler}}]}, "finishReason": "STOP"}]}),
                )
            }
        };
        match scripted {
            Scripted::Slow(delay) => reply.delay(delay),
            Scripted::Truncated => {
                let half = reply.body.len() / 2;
                reply.truncate_at(half)
            }
            _ => reply,
        }
    }

    fn api(&self, request: &Recorded, rest: &str, scripted: &Scripted, response_id: &str) -> Reply {
        if request.method == "GET" && rest == "models" {
            let page_size = request
                .uri
                .split_once("pageSize=")
                .and_then(|(_, v)| v.split('&').next()?.parse::<usize>().ok())
                .unwrap_or(50);
            let models: Vec<Value> = GEMINI_MODELS
                .iter()
                .chain(IMAGEN_MODELS)
                .take(page_size)
                .map(|m| json!({"name": format!("models/{m}"), "version": "001", "displayName": m}))
                .collect();
            return Reply::json(200, &json!({"models": models, "nextPageToken": "next"}));
        }
        let Some(name) = rest.strip_prefix("models/") else {
            return google_error(
                404,
                "NOT_FOUND",
                &format!("Method not found: {rest}"),
                vec![],
            );
        };
        let (model, method) = name.split_once(':').unwrap_or((name, ""));
        if request.method != "POST" {
            return google_error(
                404,
                "NOT_FOUND",
                &format!("Method not found: {} {rest}", request.method),
                vec![],
            );
        }
        if !request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received. Expected application/json.",
                vec![],
            );
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received. Unexpected token.",
                vec![],
            );
        };
        match method {
            "generateContent" if GEMINI_MODELS.contains(&model) => {
                match validate_generate_content(&body) {
                    Ok(()) => self.gemini_answer(model, scripted, response_id),
                    Err(reply) => reply,
                }
            }
            "predict" if IMAGEN_MODELS.contains(&model) => match validate_predict(model, &body) {
                Ok(params) => self.imagen_answer(&params, scripted),
                Err(reply) => reply,
            },
            "generateContent" | "predict" => google_error(
                404,
                "NOT_FOUND",
                &format!(
                    "models/{model} is not found for API version v1beta, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."
                ),
                vec![],
            ),
            _ => google_error(
                404,
                "NOT_FOUND",
                &format!("Method not found: {method}"),
                vec![],
            ),
        }
    }

    fn gemini_answer(&self, model: &str, scripted: &Scripted, response_id: &str) -> Reply {
        let usage =
            json!({"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302});
        let body = match scripted {
            Scripted::PromptBlocked(reason) => {
                json!({"promptFeedback": {"blockReason": reason}, "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
            }
            Scripted::Refused(reason) => {
                let mut candidate = json!({"finishReason": reason, "index": 0});
                if *reason == "IMAGE_SAFETY" {
                    candidate["finishMessage"] = json!(
                        "Unable to show the generated image. The image was filtered out because it violated Google's Generative AI Prohibited Use policy."
                    );
                } else {
                    candidate["content"] =
                        json!({"role": "model", "parts": [{"text": "I can't create that image."}]});
                }
                json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
            }
            Scripted::TextOnly(text) => json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage, "modelVersion": model, "responseId": response_id
            }),
            _ => json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [
                        {"text": NOTE},
                        {"inlineData": {"mimeType": "image/png", "data": crate::base64(&self.image)}}
                    ]},
                    "finishReason": "STOP",
                    "index": 0
                }],
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": response_id
            }),
        };
        Reply::json(200, &body)
    }

    fn imagen_answer(&self, params: &ImagenParams, scripted: &Scripted) -> Reply {
        let kept = match scripted {
            Scripted::ImagenFiltered { kept } => (*kept).min(params.count),
            _ => params.count,
        };
        let (mime, data) = if params.mime == "image/jpeg" {
            ("image/jpeg", fake_jpeg())
        } else {
            ("image/png", self.image.as_ref().clone())
        };
        let mut predictions: Vec<Value> = (0..kept)
            .map(|_| json!({"bytesBase64Encoded": crate::base64(&data), "mimeType": mime}))
            .collect();
        if params.rai_reason {
            predictions.extend((kept..params.count).map(|_| {
                json!({"raiFilteredReason": "Your current safety filter threshold filtered out 1 generated images. You will not be charged for blocked images. Try rephrasing the prompt."})
            }));
        }
        if predictions.is_empty() {
            Reply::json(200, &json!({}))
        } else {
            Reply::json(200, &json!({"predictions": predictions}))
        }
    }
}

fn google_error(code: u16, status: &str, message: &str, details: Vec<Value>) -> Reply {
    let mut error = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    Reply::json(code, &json!({"error": error}))
}

fn invalid_key() -> Reply {
    google_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        vec![
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}),
            json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."}),
        ],
    )
}

fn invalid(message: &str) -> Reply {
    google_error(400, "INVALID_ARGUMENT", message, vec![])
}

/// Google refuses fields it does not know: `Unknown name "x" at 'generation_config'`.
fn known_fields(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Reply> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(name) => Err(invalid(&format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        ))),
        None => Ok(()),
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Reply> {
    value
        .as_object()
        .ok_or_else(|| invalid(&format!("Invalid value at '{at}': expected an object")))
}

/// Whether a JSON value is one of these strings.
fn in_list(value: &Value, allowed: &[&str]) -> bool {
    value.as_str().is_some_and(|v| allowed.contains(&v))
}

const GEMINI_RATIOS: &[&str] = &[
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];
const INLINE_MIMES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/heic",
    "image/heif",
];

fn validate_generate_content(body: &Value) -> Result<(), Reply> {
    let body = object(body, "")?;
    known_fields(
        body,
        &[
            "contents",
            "generationConfig",
            "generation_config",
            "safetySettings",
            "systemInstruction",
            "tools",
            "toolConfig",
        ],
        "",
    )?;
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("* GenerateContentRequest.contents: contents is not specified"))?;
    for (i, content) in contents.iter().enumerate() {
        let content = object(content, &format!("contents[{i}]"))?;
        known_fields(content, &["role", "parts"], &format!("contents[{i}]"))?;
        if content
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| r != "user" && r != "model")
        {
            return Err(invalid(&format!(
                "Please use a valid role: user, model. (contents[{i}].role)"
            )));
        }
        let parts = content.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty()).ok_or_else(|| invalid(&format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")))?;
        for (j, part) in parts.iter().enumerate() {
            let at = format!("contents[{i}].parts[{j}]");
            let part = object(part, &at)?;
            known_fields(part, &["text", "inlineData", "inline_data"], &at)?;
            if part.len() != 1 {
                return Err(invalid(&format!(
                    "* GenerateContentRequest.{at}.data: a part must have exactly one of text or inlineData"
                )));
            }
            if let Some(text) = part.get("text")
                && !text.is_string()
            {
                return Err(invalid(&format!(
                    "Invalid value at '{at}.text' (TYPE_STRING)"
                )));
            }
            if let Some(blob) = part.get("inlineData").or_else(|| part.get("inline_data")) {
                let blob = object(blob, &format!("{at}.inlineData"))?;
                known_fields(
                    blob,
                    &["mimeType", "mime_type", "data"],
                    &format!("{at}.inline_data"),
                )?;
                let mime = blob
                    .get("mimeType")
                    .or_else(|| blob.get("mime_type"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !INLINE_MIMES.contains(&mime) {
                    return Err(invalid(&format!("Unsupported MIME type: {mime}")));
                }
                let data = blob.get("data").and_then(Value::as_str).unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| invalid(&format!("Invalid value at '{at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed")))?;
                if decoded.is_empty() {
                    return Err(invalid(&format!(
                        "* GenerateContentRequest.{at}.inline_data.data: must not be empty"
                    )));
                }
            }
        }
    }
    let Some(config) = body.get("generationConfig") else {
        return Err(invalid(
            "Test server: image models need generationConfig.responseModalities with IMAGE.",
        ));
    };
    let config = object(config, "generation_config")?;
    known_fields(
        config,
        &[
            "responseModalities",
            "imageConfig",
            "seed",
            "temperature",
            "topP",
            "topK",
            "candidateCount",
            "maxOutputTokens",
        ],
        "generation_config",
    )?;
    let modalities: Vec<&str> = config
        .get("responseModalities")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(bad) = modalities.iter().find(|m| !["TEXT", "IMAGE"].contains(m)) {
        return Err(invalid(&format!(
            "Invalid value at 'generation_config.response_modalities[0]' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), \"{bad}\""
        )));
    }
    if !modalities.contains(&"IMAGE") {
        return Err(invalid(
            "Model does not support the requested response modalities: text",
        ));
    }
    if let Some(seed) = config.get("seed")
        && seed
            .as_i64()
            .is_none_or(|s| s < i64::from(i32::MIN) || s > i64::from(i32::MAX))
    {
        return Err(invalid(
            "Invalid value at 'generation_config.seed' (TYPE_INT32)",
        ));
    }
    if let Some(image_config) = config.get("imageConfig") {
        let image_config = object(image_config, "generation_config.image_config")?;
        known_fields(
            image_config,
            &["aspectRatio", "imageSize"],
            "generation_config.image_config",
        )?;
        if let Some(ratio) = image_config.get("aspectRatio")
            && !in_list(ratio, GEMINI_RATIOS)
        {
            return Err(invalid(&format!(
                "* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported aspect ratio {ratio}"
            )));
        }
        if let Some(size) = image_config.get("imageSize")
            && !in_list(size, &["1K", "2K", "4K"])
        {
            return Err(invalid(&format!(
                "* GenerateContentRequest.generation_config.image_config.image_size: unsupported image size {size}"
            )));
        }
    }
    Ok(())
}

/// What a valid `predict` request asked for.
struct ImagenParams {
    count: usize,
    mime: String,
    rai_reason: bool,
}

fn validate_predict(model: &str, body: &Value) -> Result<ImagenParams, Reply> {
    let body = object(body, "")?;
    known_fields(body, &["instances", "parameters"], "")?;
    let instances = body
        .get("instances")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("instances is required"))?;
    if instances.len() != 1 {
        return Err(invalid("Only one instance is allowed per request."));
    }
    let instance = object(&instances[0], "instances[0]")?;
    known_fields(instance, &["prompt"], "instances[0]")?;
    if instance
        .get("prompt")
        .and_then(Value::as_str)
        .is_none_or(|p| p.trim().is_empty())
    {
        return Err(invalid("Prompt is required."));
    }
    let empty = Map::new();
    let parameters = match body.get("parameters") {
        Some(p) => object(p, "parameters")?,
        None => &empty,
    };
    known_fields(
        parameters,
        &[
            "sampleCount",
            "aspectRatio",
            "personGeneration",
            "sampleImageSize",
            "outputOptions",
            "includeRaiReason",
            "includeSafetyAttributes",
            "safetySetting",
            "guidanceScale",
            "language",
        ],
        "parameters",
    )?;
    let count = match parameters.get("sampleCount") {
        None => 4,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=4).contains(n))
            .ok_or_else(|| invalid(&format!("sampleCount must be between 1 and 4, got {n}")))?
            as usize,
    };
    if let Some(ratio) = parameters.get("aspectRatio")
        && !in_list(ratio, &["1:1", "3:4", "4:3", "9:16", "16:9"])
    {
        return Err(invalid(&format!(
            "Unsupported aspect ratio: {ratio}. Supported: 1:1, 3:4, 4:3, 9:16, 16:9."
        )));
    }
    let people = [
        "DONT_ALLOW",
        "ALLOW_ADULT",
        "ALLOW_ALL",
        "dont_allow",
        "allow_adult",
        "allow_all",
    ];
    if let Some(person) = parameters.get("personGeneration")
        && !in_list(person, &people)
    {
        return Err(invalid(&format!(
            "Invalid personGeneration value: {person}"
        )));
    }
    if let Some(size) = parameters.get("sampleImageSize") {
        let ok = size.as_str().is_some_and(|s| ["1K", "2K"].contains(&s))
            && model != "imagen-4.0-fast-generate-001";
        if !ok {
            return Err(invalid(&format!(
                "sampleImageSize {size} is not supported for {model}"
            )));
        }
    }
    let mut mime = "image/png".to_owned();
    if let Some(options) = parameters.get("outputOptions") {
        let options = object(options, "parameters.outputOptions")?;
        known_fields(
            options,
            &["mimeType", "compressionQuality"],
            "parameters.outputOptions",
        )?;
        match options.get("mimeType").and_then(Value::as_str) {
            Some(m @ ("image/png" | "image/jpeg")) => mime = m.to_owned(),
            Some(other) => return Err(invalid(&format!("Unsupported output mime type: {other}"))),
            None => {}
        }
    }
    let rai_reason = parameters
        .get("includeRaiReason")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ImagenParams {
        count,
        mime,
        rai_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reply: Result<(), Reply>) -> Option<u16> {
        reply.err().map(|r| r.status)
    }

    #[test]
    fn refuses_what_google_refuses() {
        let ok = json!({"contents": [{"role": "user", "parts": [{"text": "a fox"}]}], "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}});
        assert_eq!(status(validate_generate_content(&ok)), None);
        let unknown = json!({"contents": [{"parts": [{"text": "a fox"}]}], "generationConfig": {"responseModalities": ["IMAGE"], "aspectRatio": "1:1"}});
        assert_eq!(status(validate_generate_content(&unknown)), Some(400));
        let text_only = json!({"contents": [{"parts": [{"text": "a fox"}]}], "generationConfig": {"responseModalities": ["TEXT"]}});
        assert_eq!(status(validate_generate_content(&text_only)), Some(400));
        let bad_b64 = json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}], "generationConfig": {"responseModalities": ["IMAGE"]}});
        assert_eq!(status(validate_generate_content(&bad_b64)), Some(400));
        let predict = json!({"instances": [{"prompt": "a fox"}], "parameters": {"sampleCount": 5}});
        assert_eq!(
            validate_predict("imagen-4.0-generate-001", &predict)
                .err()
                .map(|r| r.status),
            Some(400)
        );
    }
}
