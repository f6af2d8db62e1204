//! A local server that speaks OpenAI's image API (`/v1/images/{generations,edits,variations}`,
//! `/v1/models`) closely enough to catch wrong requests: it checks the bearer key, parses JSON
//! and multipart bodies, validates model, size, n, quality and style as the real API does, and
//! answers with real PNGs. Tests script failures (401, content policy, 429, 500, slow, truncated,
//! malformed, oversized) one request at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::server::{Recorded, Reply, TestServer};

/// The key the server accepts unless told otherwise.
pub const TEST_KEY: &str = "sk-test-0123456789abcdef";

/// What the next API request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// The normal answer (after validation).
    Success,
    /// 401 `invalid_api_key`, whatever the key.
    InvalidKey,
    /// 400 `content_policy_violation` (DALL·E's refusal).
    ContentPolicy,
    /// 400 `moderation_blocked` (GPT Image's refusal).
    ModerationBlocked,
    /// 429 `rate_limit_exceeded` with `retry-after: <seconds>`.
    RateLimited { retry_after_secs: u32 },
    /// 429 `insufficient_quota` (OpenAI uses 429 for an empty balance too).
    InsufficientQuota,
    /// 500 `server_error`.
    ServerError,
    /// The normal answer, after waiting this long before the headers.
    Slow(Duration),
    /// The normal answer, cut off after half its body (the length header promises all of it).
    Truncated,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with a JSON body of this many bytes.
    Oversized(usize),
    /// 200 with this text as the image's `b64_json`, as is.
    Base64(String),
}

/// Generations answer with `response_format=url` items pointing at `/files/<name>` on this
/// server; downloads there need no key, like Azure's pre-signed links.
pub struct OpenAiServer {
    server: TestServer,
    state: Arc<State>,
}

struct State {
    key: String,
    script: Mutex<VecDeque<Scripted>>,
    /// The PNG every answer carries.
    image: Mutex<Arc<Vec<u8>>>,
    /// `http://127.0.0.1:PORT`, known once the listener is bound.
    origin: OnceLock<String>,
    request_ids: AtomicU64,
}

impl OpenAiServer {
    /// A server that accepts [`TEST_KEY`] and answers with a 64×64 PNG.
    pub fn start() -> Self {
        Self::with_key(TEST_KEY)
    }

    pub fn with_key(key: &str) -> Self {
        let state = Arc::new(State {
            key: key.to_owned(),
            script: Mutex::new(VecDeque::new()),
            image: Mutex::new(Arc::new(png(64, 64, 1))),
            origin: OnceLock::new(),
            request_ids: AtomicU64::new(0),
        });
        let handler_state = state.clone();
        let server = TestServer::start(move |request| handler_state.handle(request));
        let _ = state.origin.set(server.url());
        Self { server, state }
    }

    /// The value for the plugin's `base_url` setting: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queue replies for the next API requests, in order; once used up, requests succeed.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut script) = self.state.script.lock() {
            script.extend(replies);
        }
    }

    /// The image every answer carries from now on (e.g. a larger one for benchmarks).
    pub fn set_image(&self, png: Vec<u8>) {
        if let Ok(mut image) = self.state.image.lock() {
            *image = Arc::new(png);
        }
    }

    /// The image answers carry now.
    pub fn image(&self) -> Vec<u8> {
        self.state
            .image
            .lock()
            .map(|i| i.as_ref().clone())
            .unwrap_or_default()
    }

    /// Every request received, in order (API calls and file downloads).
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Requests to `path` (e.g. `/v1/images/generations`).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }
}

impl State {
    fn handle(&self, request: &Recorded) -> Reply {
        let path = request.path().to_owned();
        if request.method == "GET"
            && let Some(name) = path.strip_prefix("/files/")
        {
            return self.file(name);
        }
        if !path.starts_with("/v1/") {
            return not_found(&path);
        }
        let expected = format!("Bearer {}", self.key);
        match request.header("authorization") {
            None => {
                return error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                    None,
                );
            }
            Some(given) if given != expected => {
                return error(
                    401,
                    "Incorrect API key provided: sk-tes***cdef. You can find your API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                );
            }
            Some(_) => {}
        }
        let scripted = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(Scripted::Success);
        let reply = match scripted {
            Scripted::Success | Scripted::Slow(_) | Scripted::Truncated => self.api(request, &path),
            Scripted::InvalidKey => error(401, "Incorrect API key provided: sk-tes***cdef. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", None, Some("invalid_api_key")),
            Scripted::ContentPolicy => error(400, "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.", "invalid_request_error", None, Some("content_policy_violation")),
            Scripted::ModerationBlocked => error(400, "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID req_123.", "image_generation_user_error", None, Some("moderation_blocked")),
            Scripted::RateLimited { retry_after_secs } => error(429, "Rate limit reached for gpt-image-1 on images per minute (IPM): Limit 5, Used 5, Requested 1.", "requests", None, Some("rate_limit_exceeded"))
                .header("retry-after", &retry_after_secs.to_string()),
            Scripted::InsufficientQuota => error(429, "You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", None, Some("insufficient_quota")),
            Scripted::ServerError => error(500, "The server had an error while processing your request. Sorry about that!", "server_error", None, None),
            Scripted::MalformedJson => Reply::bytes(200, "application/json", b"{\"created\": 1, \"data\": [{\"b64_json\": \"iVBORw0K\"}, oops".to_vec()),
            Scripted::Oversized(bytes) => {
                let filler = "A".repeat(bytes.saturating_sub(40));
                Reply::json(200, &json!({"created": 1, "data": [{"b64_json": filler}]}))
            }
            Scripted::Base64(ref text) => {
                Reply::json(200, &json!({"created": 1, "data": [{"b64_json": text}]}))
            }
        };
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let reply = reply.header("x-request-id", &format!("req_test_{id}"));
        match scripted {
            Scripted::Slow(delay) => reply.delay(delay),
            Scripted::Truncated => {
                let half = reply.body.len() / 2;
                reply.truncate_at(half)
            }
            _ => reply,
        }
    }

    fn file(&self, name: &str) -> Reply {
        if name.ends_with(".png") {
            Reply::bytes(200, "image/png", self.image())
        } else {
            Reply::new(404).body(b"<Error><Code>BlobNotFound</Code></Error>".to_vec())
        }
    }

    fn image(&self) -> Vec<u8> {
        self.image
            .lock()
            .map(|i| i.as_ref().clone())
            .unwrap_or_default()
    }

    fn api(&self, request: &Recorded, path: &str) -> Reply {
        match (request.method.as_str(), path) {
            ("GET", "/v1/models") => Reply::json(
                200,
                &json!({"object": "list", "data": [
                    {"id": "dall-e-2", "object": "model", "created": 1698798177, "owned_by": "system"},
                    {"id": "dall-e-3", "object": "model", "created": 1698785189, "owned_by": "system"},
                    {"id": "gpt-image-1", "object": "model", "created": 1745517030, "owned_by": "system"}
                ]}),
            ),
            ("POST", "/v1/images/generations") => match generation(request) {
                Ok(params) => self.images(&params),
                Err(reply) => reply,
            },
            ("POST", "/v1/images/edits") => match edit(request, false) {
                Ok(params) => self.images(&params),
                Err(reply) => reply,
            },
            ("POST", "/v1/images/variations") => match edit(request, true) {
                Ok(params) => self.images(&params),
                Err(reply) => reply,
            },
            _ => not_found(path),
        }
    }

    /// The success answer: `n` copies of the image, inline or as links.
    fn images(&self, params: &Params) -> Reply {
        let image = self.image();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
        let origin = self.origin.get().cloned().unwrap_or_default();
        let data: Vec<Value> = (0..params.n)
            .map(|i| {
                let mut item = if params.response_format == "url" {
                    json!({"url": format!("{origin}/files/img-{i}.png?se=2030-01-01&sig=test")})
                } else {
                    json!({"b64_json": encoded})
                };
                if params.model == "dall-e-3" {
                    item["revised_prompt"] = json!(format!("{} (revised)", params.prompt));
                }
                item
            })
            .collect();
        let mut body = json!({"created": 1_700_000_000, "data": data});
        if params.model.starts_with("gpt-image") {
            body["usage"] = json!({"input_tokens": 12, "output_tokens": 272, "total_tokens": 284,
                                  "input_tokens_details": {"text_tokens": 12, "image_tokens": 0}});
            body["output_format"] =
                json!(params.output_format.clone().unwrap_or_else(|| "png".into()));
            body["size"] = json!(params.size.clone().unwrap_or_else(|| "1024x1024".into()));
            body["quality"] = json!(params.quality.clone().unwrap_or_else(|| "high".into()));
            body["background"] =
                json!(params.background.clone().unwrap_or_else(|| "opaque".into()));
        }
        Reply::json(200, &body)
    }
}

/// What a valid request asked for.
#[derive(Debug, Default)]
struct Params {
    model: String,
    prompt: String,
    n: u64,
    size: Option<String>,
    quality: Option<String>,
    output_format: Option<String>,
    background: Option<String>,
    response_format: String,
}

fn generation(request: &Recorded) -> Result<Params, Reply> {
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return Err(invalid(
            "Expected a JSON body (content-type: application/json).",
            None,
        ));
    }
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
        invalid(
            &format!("We could not parse the JSON body of your request. ({e})"),
            None,
        )
    })?;
    let Some(object) = body.as_object() else {
        return Err(invalid("The body must be a JSON object.", None));
    };
    let text = |name: &str| -> Result<Option<String>, Reply> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(
                &format!("Invalid type for '{name}': expected a string, but got {other}."),
                Some(name),
            )),
        }
    };
    let n = match object.get("n") {
        None | Some(Value::Null) => 1,
        Some(value) => value
            .as_u64()
            .ok_or_else(|| invalid("Invalid type for 'n': expected an integer.", Some("n")))?,
    };
    let fields = Fields {
        model: text("model")?,
        prompt: text("prompt")?,
        n,
        size: text("size")?,
        quality: text("quality")?,
        style: text("style")?,
        response_format: text("response_format")?,
        output_format: text("output_format")?,
        background: text("background")?,
        output_compression: object.get("output_compression").cloned(),
    };
    for name in object.keys() {
        if !GENERATION_FIELDS.contains(&name.as_str()) {
            return Err(invalid(
                &format!("Unknown parameter: '{name}'."),
                Some(name),
            ));
        }
    }
    fields.validate(false)
}

const GENERATION_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "style",
    "response_format",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "user",
];

fn edit(request: &Recorded, variations: bool) -> Result<Params, Reply> {
    let content_type = request.header("content-type").unwrap_or_default();
    let parts = parse_multipart(content_type, &request.body)
        .map_err(|e| invalid(&format!("Could not parse multipart form: {e}"), None))?;
    let text = |name: &str| -> Result<Option<String>, Reply> {
        match parts.iter().find(|p| p.name == name) {
            None => Ok(None),
            Some(part) if part.filename.is_some() => Err(invalid(
                &format!("'{name}' must be a text field."),
                Some(name),
            )),
            Some(part) => Ok(Some(String::from_utf8_lossy(&part.data).into_owned())),
        }
    };
    let images: Vec<&FormPart> = parts
        .iter()
        .filter(|p| p.name == "image" || p.name == "image[]")
        .collect();
    if images.is_empty() {
        return Err(invalid(
            "Missing required parameter: 'image'.",
            Some("image"),
        ));
    }
    for image in &images {
        if image.filename.is_none() {
            return Err(invalid("'image' must be a file.", Some("image")));
        }
        let mime = image
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        if !["image/png", "image/jpeg", "image/webp"].contains(&mime) {
            return Err(invalid(
                &format!(
                    "Invalid file 'image': unsupported mimetype ('{mime}'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
                ),
                Some("image"),
            ));
        }
    }
    if let Some(mask) = parts.iter().find(|p| p.name == "mask")
        && (mask.filename.is_none() || mask.content_type.as_deref() != Some("image/png"))
    {
        return Err(invalid(
            "Invalid mask: it must be a PNG file.",
            Some("mask"),
        ));
    }
    let n = match text("n")? {
        None => 1,
        Some(n) => n.parse().map_err(|_| {
            invalid(
                &format!("Invalid value for 'n': '{n}' is not an integer."),
                Some("n"),
            )
        })?,
    };
    let mut fields = Fields {
        model: text("model")?,
        prompt: text("prompt")?,
        n,
        size: text("size")?,
        quality: text("quality")?,
        style: None,
        response_format: text("response_format")?,
        output_format: text("output_format")?,
        background: text("background")?,
        output_compression: text("output_compression")?.map(Value::String),
    };
    if variations {
        if fields.prompt.is_some() {
            return Err(invalid("Unknown parameter: 'prompt'.", Some("prompt")));
        }
        fields.prompt = Some(String::new());
        if fields.model.as_deref().is_some_and(|m| m != "dall-e-2") {
            return Err(invalid(
                "Variations are only supported for dall-e-2.",
                Some("model"),
            ));
        }
    }
    let model = fields.model.clone().unwrap_or_else(|| "dall-e-2".into());
    if model == "dall-e-2" && (images.len() > 1 || images[0].name != "image") {
        return Err(invalid(
            "dall-e-2 takes exactly one 'image' file.",
            Some("image"),
        ));
    }
    if model == "dall-e-3" {
        return Err(invalid(
            "Image edits are not supported for dall-e-3.",
            Some("model"),
        ));
    }
    if images.len() > 16 {
        return Err(invalid("Too many images: at most 16.", Some("image")));
    }
    fields.validate(variations)
}

struct Fields {
    model: Option<String>,
    prompt: Option<String>,
    n: u64,
    size: Option<String>,
    quality: Option<String>,
    style: Option<String>,
    response_format: Option<String>,
    output_format: Option<String>,
    background: Option<String>,
    output_compression: Option<Value>,
}

impl Fields {
    /// The checks of the real API, with its messages.
    fn validate(self, variations: bool) -> Result<Params, Reply> {
        let model = self.model.unwrap_or_else(|| "dall-e-2".into());
        let prompt = match self.prompt {
            Some(p) if !p.is_empty() || variations => p,
            _ => {
                return Err(invalid(
                    "Missing required parameter: 'prompt'.",
                    Some("prompt"),
                ));
            }
        };
        let gpt_image = model.starts_with("gpt-image");
        let (sizes, qualities, max_n, max_prompt): (&[&str], &[&str], u64, usize) = match model
            .as_str()
        {
            "dall-e-2" => (
                &["256x256", "512x512", "1024x1024"],
                &["standard"],
                10,
                1000,
            ),
            "dall-e-3" => (
                &["1024x1024", "1792x1024", "1024x1792"],
                &["standard", "hd"],
                1,
                4000,
            ),
            "gpt-image-1" | "gpt-image-1-mini" | "gpt-image-1.5" => (
                &["auto", "1024x1024", "1536x1024", "1024x1536"],
                &["auto", "low", "medium", "high"],
                10,
                32000,
            ),
            other => {
                return Err(invalid(
                    &format!(
                        "Invalid value: '{other}'. Value must be one of 'dall-e-2', 'dall-e-3', 'gpt-image-1', 'gpt-image-1-mini', 'gpt-image-1.5'."
                    ),
                    Some("model"),
                ));
            }
        };
        if prompt.chars().count() > max_prompt {
            return Err(invalid(
                &format!(
                    "Invalid 'prompt': string too long. Expected a string with maximum length {max_prompt}."
                ),
                Some("prompt"),
            ));
        }
        if self.n < 1 || self.n > max_n {
            return Err(invalid(
                &format!("Invalid 'n': must be between 1 and {max_n} for {model}."),
                Some("n"),
            ));
        }
        let check = |name: &str, value: &Option<String>, allowed: &[&str]| -> Result<(), Reply> {
            match value {
                Some(v) if !allowed.contains(&v.as_str()) => Err(invalid(
                    &format!(
                        "Invalid value: '{v}'. Supported values are: {}.",
                        allowed
                            .iter()
                            .map(|a| format!("'{a}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(name),
                )),
                _ => Ok(()),
            }
        };
        check("size", &self.size, sizes)?;
        check("quality", &self.quality, qualities)?;
        check(
            "style",
            &self.style,
            if model == "dall-e-3" {
                &["vivid", "natural"]
            } else {
                &[]
            },
        )?;
        if gpt_image {
            if self.response_format.is_some() {
                return Err(invalid(
                    "Unknown parameter: 'response_format'.",
                    Some("response_format"),
                ));
            }
            check(
                "output_format",
                &self.output_format,
                &["png", "jpeg", "webp"],
            )?;
            check(
                "background",
                &self.background,
                &["auto", "transparent", "opaque"],
            )?;
        } else {
            check(
                "response_format",
                &self.response_format,
                &["url", "b64_json"],
            )?;
            for (name, value) in [
                ("output_format", &self.output_format),
                ("background", &self.background),
            ] {
                if value.is_some() {
                    return Err(invalid(
                        &format!("Unknown parameter: '{name}'."),
                        Some(name),
                    ));
                }
            }
            if self.output_compression.is_some() {
                return Err(invalid(
                    "Unknown parameter: 'output_compression'.",
                    Some("output_compression"),
                ));
            }
        }
        Ok(Params {
            model,
            prompt,
            n: self.n,
            size: self.size,
            quality: self.quality,
            output_format: self.output_format,
            background: self.background,
            // GPT Image always answers base64; DALL·E answers links unless asked for base64.
            response_format: if gpt_image {
                "b64_json".into()
            } else {
                self.response_format.unwrap_or_else(|| "url".into())
            },
        })
    }
}

fn error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn invalid(message: &str, param: Option<&str>) -> Reply {
    error(
        400,
        message,
        "invalid_request_error",
        param,
        if param.is_some() {
            Some("invalid_value")
        } else {
            None
        },
    )
}

fn not_found(path: &str) -> Reply {
    error(
        404,
        &format!("Invalid URL (POST {path})"),
        "invalid_request_error",
        None,
        None,
    )
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Parse a `multipart/form-data` body strictly (RFC 7578: CRLF line ends, a closing delimiter).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let (kind, params) = content_type
        .split_once(';')
        .ok_or_else(|| format!("content-type `{content_type}` has no boundary"))?;
    if kind.trim() != "multipart/form-data" {
        return Err(format!("content-type is `{kind}`, not multipart/form-data"));
    }
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or("no boundary parameter")?;
    let delimiter = format!("--{boundary}");
    let separator = format!("\r\n--{boundary}");
    let mut rest = body
        .strip_prefix(delimiter.as_bytes())
        .ok_or("the body does not start with the boundary")?;
    let mut parts = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix(b"--") {
            if after != b"\r\n" && !after.is_empty() {
                return Err("bytes after the closing delimiter".into());
            }
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("no CRLF after a boundary")?;
        let end =
            find(rest, separator.as_bytes()).ok_or("a part is not terminated by the boundary")?;
        let part = &rest[..end];
        rest = &rest[end + separator.len()..];
        let header_end =
            find(part, b"\r\n\r\n").ok_or("a part has no blank line after its headers")?;
        let headers =
            std::str::from_utf8(&part[..header_end]).map_err(|_| "part headers are not UTF-8")?;
        let mut parsed = FormPart {
            name: String::new(),
            filename: None,
            content_type: None,
            data: part[header_end + 4..].to_vec(),
        };
        for line in headers.split("\r\n") {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad part header `{line}`"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    let mut fields = value.split(';').map(str::trim);
                    if fields.next() != Some("form-data") {
                        return Err(format!("content-disposition `{value}` is not form-data"));
                    }
                    for field in fields {
                        if let Some(v) = field.strip_prefix("name=") {
                            parsed.name = v.trim_matches('"').to_owned();
                        } else if let Some(v) = field.strip_prefix("filename=") {
                            parsed.filename = Some(v.trim_matches('"').to_owned());
                        }
                    }
                }
                "content-type" => parsed.content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        if parsed.name.is_empty() {
            return Err("a part has no name".into());
        }
        parts.push(parsed);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A real RGBA PNG, `width`×`height`, with a pattern that depends on `seed`.
pub fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                let v = x
                    .wrapping_mul(7)
                    .wrapping_add(y.wrapping_mul(13))
                    .wrapping_add(seed.wrapping_mul(31));
                [(v % 256) as u8, (x % 256) as u8, (y % 256) as u8, 255]
            })
        })
        .collect();
    encode_png(width, height, &pixels)
}

/// A PNG of noise (it barely compresses), about `bytes` long: a realistic payload size.
pub fn noise_png(bytes: usize, seed: u64) -> Vec<u8> {
    // Three noisy channels per pixel; the opaque alpha channel compresses away.
    let side = ((bytes / 3) as f64).sqrt().ceil().max(1.0) as u32;
    let mut state = seed | 1;
    let pixels: Vec<u8> = (0..side * side * 4)
        .map(|i| {
            if i % 4 == 3 {
                return 255;
            }
            // xorshift64: deterministic noise without a dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    encode_png(side, side, &pixels)
}

fn encode_png(width: u32, height: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let written = encoder.write_header().and_then(|mut writer| {
        writer.write_image_data(rgba)?;
        writer.finish()
    });
    if let Err(err) = written {
        // Encoding a well-formed buffer into memory cannot fail; a test cannot go on if it does.
        panic!("could not encode a test PNG: {err}");
    }
    out
}

/// Decode a PNG's width and height (to check an image came back intact).
pub fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(data));
    let reader = decoder.read_info().ok()?;
    let info = reader.info();
    Some((info.width, info.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multipart_with_both_image_names() -> Result<(), String> {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--b\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=b", body)?;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"hi");
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].data, b"\x89PNG");
        assert!(
            parse_multipart(
                "multipart/form-data; boundary=b",
                b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nno end"
            )
            .is_err()
        );
        Ok(())
    }

    #[test]
    fn pngs_are_real() {
        assert_eq!(png_size(&png(3, 2, 0)), Some((3, 2)));
        let noise = noise_png(75_000, 7);
        assert!((70_000..90_000).contains(&noise.len()), "{}", noise.len());
    }
}
