//! A local server that speaks Stability AI's REST API closely enough to catch wrong requests:
//! the v2beta services (multipart forms for generate, edit and upscale; the asynchronous creative
//! upscale polled at `/v2beta/results/{id}`) and v1 (`text-to-image` JSON, `image-to-image` and
//! `masking` multipart, engines list, balance). It checks the bearer key and the `accept` header,
//! refuses unknown fields and out-of-range values as Stability does, and answers with real PNGs,
//! `finish-reason` and `seed` headers. Tests script Stability's failures one request at a time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::openai_server::{FormPart, parse_multipart, png};
use crate::server::{Recorded, Reply, TestServer};

/// The key the server accepts.
pub const TEST_KEY: &str = "sk-stab-test-0123456789abcdef";
/// The seed the server uses when the request leaves it to chance.
pub const RANDOM_SEED: u64 = 3_141_592;

/// What the next API request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// The normal answer (after validation).
    Success,
    /// 401 `unauthorized`, whatever the key.
    InvalidKey,
    /// 402 `payment_required`: no credits left.
    NoCredits,
    /// 403 `content_moderation`.
    ContentModeration,
    /// 413 `payload_too_large`.
    TooLarge,
    /// 422 `invalid_language`.
    Unprocessable,
    /// The normal answer with the image blurred: `finish-reason: CONTENT_FILTERED`.
    ContentFiltered,
    /// 429 `rate_limit_exceeded`, with `retry-after` when given.
    RateLimited { retry_after_secs: Option<u32> },
    /// 500 `server_error`.
    ServerError,
    /// The normal answer, after waiting this long before the headers.
    Slow(Duration),
    /// The normal answer, cut off after half its body.
    Truncated,
    /// 200 with a body that is not what was asked for (garbage "image" bytes, broken JSON).
    MalformedBody,
    /// 200 with a body of about this many bytes.
    Oversized(usize),
}

pub struct StabilityServer {
    server: TestServer,
    state: Arc<State>,
}

struct State {
    key: String,
    script: Mutex<VecDeque<Scripted>>,
    image: Arc<Vec<u8>>,
    credits: Mutex<f64>,
    engines: Mutex<Vec<&'static str>>,
    /// Creative upscale jobs: id → polls left before the result is ready.
    jobs: Mutex<BTreeMap<String, u32>>,
    /// How many 202s a new creative job answers before its result.
    pending_polls: Mutex<u32>,
    /// Whether finished results are gone (404) instead of served: an expired generation.
    expire: Mutex<bool>,
    ids: AtomicU64,
}

impl StabilityServer {
    /// A server that accepts [`TEST_KEY`] and answers with a 64×64 PNG.
    pub fn start() -> Self {
        let state = Arc::new(State {
            key: TEST_KEY.to_owned(),
            script: Mutex::new(VecDeque::new()),
            image: Arc::new(png(64, 64, 5)),
            credits: Mutex::new(24.5),
            engines: Mutex::new(vec![
                "stable-diffusion-xl-1024-v1-0",
                "stable-diffusion-v1-6",
                "esrgan-v1-x2plus",
            ]),
            jobs: Mutex::new(BTreeMap::new()),
            pending_polls: Mutex::new(2),
            expire: Mutex::new(false),
            ids: AtomicU64::new(0),
        });
        let handler_state = state.clone();
        let server = TestServer::start(move |request| handler_state.handle(request));
        Self { server, state }
    }

    /// The value for the plugin's `base_url` setting: `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    /// Queue replies for the next API requests, in order; once used up, requests succeed.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut script) = self.state.script.lock() {
            script.extend(replies);
        }
    }

    /// The balance `GET /v1/user/balance` reports.
    pub fn set_credits(&self, credits: f64) {
        if let Ok(mut c) = self.state.credits.lock() {
            *c = credits;
        }
    }

    /// The engines the key may use (v1 calls to others answer 404).
    pub fn set_engines(&self, engines: &[&'static str]) {
        if let Ok(mut e) = self.state.engines.lock() {
            *e = engines.to_vec();
        }
    }

    /// How many times a new creative upscale answers 202 (in progress) before its result.
    pub fn set_pending_polls(&self, polls: u32) {
        if let Ok(mut p) = self.state.pending_polls.lock() {
            *p = polls;
        }
    }

    /// From now on, finished creative results answer 404, as after Stability's 24 hours.
    pub fn expire_results(&self) {
        if let Ok(mut e) = self.state.expire.lock() {
            *e = true;
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

    /// Requests to `path` (e.g. `/v2beta/stable-image/generate/core`).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }
}

/// A few bytes that start like a JPEG.
pub fn fake_jpeg() -> Vec<u8> {
    let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    data.extend_from_slice(b"JFIF\0stability-jpeg");
    data
}

/// A few bytes that start like a WebP.
pub fn fake_webp() -> Vec<u8> {
    let mut data = b"RIFF\x20\0\0\0WEBPVP8 ".to_vec();
    data.extend_from_slice(b"stability-webp-payload");
    data
}

/// A parsed form, by field name.
pub struct Form {
    pub parts: Vec<FormPart>,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<String> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    }

    pub fn file(&self, name: &str) -> Option<&FormPart> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.filename.is_some())
    }

    pub fn names(&self) -> Vec<&str> {
        self.parts.iter().map(|p| p.name.as_str()).collect()
    }
}

/// Parse a recorded request's multipart body (panics with the reason: for tests).
pub fn form_of(recorded: &Recorded) -> Form {
    let content_type = recorded.header("content-type").unwrap_or_default();
    let parts = parse_multipart(content_type, &recorded.body)
        .unwrap_or_else(|err| panic!("malformed multipart body: {err}"));
    Form { parts }
}

/// v2beta errors: `{"id", "name", "errors": [...]}`.
fn v2_error(status: u16, name: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"id": format!("err-{status}-{name}"), "name": name, "errors": [message]}),
    )
}

/// v1 errors: `{"id", "name", "message"}`.
fn v1_error(status: u16, name: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"id": format!("err-{status}-{name}"), "name": name, "message": message}),
    )
}

fn bad(v1: bool, message: &str) -> Reply {
    if v1 {
        v1_error(400, "bad_request", message)
    } else {
        v2_error(400, "bad_request", message)
    }
}

const RATIOS: &[&str] = &[
    "16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21",
];
const STYLES: &[&str] = &[
    "3d-model",
    "analog-film",
    "anime",
    "cinematic",
    "comic-book",
    "digital-art",
    "enhance",
    "fantasy-art",
    "isometric",
    "line-art",
    "low-poly",
    "modeling-compound",
    "neon-punk",
    "origami",
    "photographic",
    "pixel-art",
    "tile-texture",
];
const SD3_MODELS: &[&str] = &[
    "sd3.5-large",
    "sd3.5-large-turbo",
    "sd3.5-medium",
    "sd3.5-flash",
];
const SDXL_SIZES: &[(u64, u64)] = &[
    (1024, 1024),
    (1152, 896),
    (896, 1152),
    (1216, 832),
    (832, 1216),
    (1344, 768),
    (768, 1344),
    (1536, 640),
    (640, 1536),
];
const SAMPLERS: &[&str] = &[
    "DDIM",
    "DDPM",
    "K_DPMPP_2M",
    "K_DPMPP_2S_ANCESTRAL",
    "K_DPM_2",
    "K_DPM_2_ANCESTRAL",
    "K_EULER",
    "K_EULER_ANCESTRAL",
    "K_HEUN",
    "K_LMS",
];

/// What a valid v2beta request asked for, to shape the answer.
struct Asked {
    seed: Option<u64>,
    format: String,
}

impl State {
    fn handle(&self, request: &Recorded) -> Reply {
        let path = request.path().to_owned();
        let v1 = path.starts_with("/v1/");
        if !v1 && !path.starts_with("/v2beta/") {
            return v2_error(404, "not_found", &format!("no route for {path}"));
        }
        let expected = format!("Bearer {}", self.key);
        match request.header("authorization") {
            None => {
                return if v1 {
                    v1_error(401, "unauthorized", "missing authorization header")
                } else {
                    v2_error(401, "unauthorized", "authorization: is required")
                };
            }
            Some(given) if given != expected => {
                return if v1 {
                    v1_error(401, "unauthorized", "Incorrect API key provided")
                } else {
                    v2_error(401, "unauthorized", "Invalid API key")
                };
            }
            Some(_) => {}
        }
        let scripted = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(Scripted::Success);
        let error = |status: u16, name: &str, message: &str| {
            if v1 {
                v1_error(status, name, message)
            } else {
                v2_error(status, name, message)
            }
        };
        let reply = match &scripted {
            Scripted::Success
            | Scripted::Slow(_)
            | Scripted::Truncated
            | Scripted::ContentFiltered
            | Scripted::MalformedBody
            | Scripted::Oversized(_) => self.api(request, &path, &scripted),
            Scripted::InvalidKey => error(401, "unauthorized", "Invalid API key"),
            Scripted::NoCredits => error(
                402,
                "payment_required",
                "You lack sufficient credits to make this request. Please purchase more credits at https://platform.stability.ai/account/credits and try again.",
            ),
            Scripted::ContentModeration => error(
                403,
                "content_moderation",
                "Your request was flagged by our content moderation system, as a result your request was denied and you were not charged.",
            ),
            Scripted::TooLarge => error(
                413,
                "payload_too_large",
                "Your request was larger than 10MiB.",
            ),
            Scripted::Unprocessable => error(
                422,
                "invalid_language",
                "English is the only supported language for this service.",
            ),
            Scripted::RateLimited { retry_after_secs } => {
                let reply = error(
                    429,
                    "rate_limit_exceeded",
                    "You have exceeded the rate limit of 150 requests within a 10 second period, and have been timed out for 60 seconds.",
                );
                match retry_after_secs {
                    Some(secs) => reply.header("retry-after", &secs.to_string()),
                    None => reply,
                }
            }
            Scripted::ServerError => error(
                500,
                "server_error",
                "An unexpected server error has occurred, please try again later.",
            ),
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

    fn api(&self, request: &Recorded, path: &str, scripted: &Scripted) -> Reply {
        let method = request.method.as_str();
        match (method, path) {
            ("GET", "/v1/user/balance") => Reply::json(
                200,
                &json!({"credits": self.credits.lock().map(|c| *c).unwrap_or(0.0)}),
            ),
            ("GET", "/v1/engines/list") => {
                let engines = self.engines.lock().map(|e| e.clone()).unwrap_or_default();
                let list: Vec<Value> = engines.iter().map(|id| json!({"id": id, "name": id, "description": format!("Stability-AI {id}"), "type": "PICTURE"})).collect();
                Reply::json(200, &Value::Array(list))
            }
            ("GET", _) if path.starts_with("/v2beta/results/") => {
                self.result(request, &path["/v2beta/results/".len()..], scripted)
            }
            ("POST", _) if path.starts_with("/v1/generation/") => {
                self.v1(request, &path["/v1/generation/".len()..], scripted)
            }
            ("POST", _) if path.starts_with("/v2beta/stable-image/") => {
                self.v2(request, &path["/v2beta/stable-image/".len()..], scripted)
            }
            _ => v2_error(404, "not_found", &format!("no route for {method} {path}")),
        }
    }

    fn v2(&self, request: &Recorded, service: &str, scripted: &Scripted) -> Reply {
        let accept = request.header("accept").unwrap_or_default();
        if accept != "image/*" && accept != "application/json" {
            return bad(false, "accept: must be image/* or application/json");
        }
        let content_type = request.header("content-type").unwrap_or_default();
        let parts = match parse_multipart(content_type, &request.body) {
            Ok(parts) => parts,
            Err(err) => {
                return bad(
                    false,
                    &format!("the request must be multipart/form-data ({err})"),
                );
            }
        };
        let form = Form { parts };
        let asked = match validate_v2(service, &form) {
            Ok(asked) => asked,
            Err(reply) => return reply,
        };
        if service == "upscale/creative" {
            let id = format!(
                "{:064x}",
                0xC0FFEE_u64 + self.ids.fetch_add(1, Ordering::Relaxed)
            );
            let polls = self.pending_polls.lock().map(|p| *p).unwrap_or(0);
            if let Ok(mut jobs) = self.jobs.lock() {
                jobs.insert(id.clone(), polls);
            }
            return Reply::json(200, &json!({"id": id}));
        }
        self.v2_image(accept, &asked, scripted)
    }

    /// A finished v2beta image: raw bytes with headers, or the JSON form.
    fn v2_image(&self, accept: &str, asked: &Asked, scripted: &Scripted) -> Reply {
        let data = match asked.format.as_str() {
            "jpeg" => fake_jpeg(),
            "webp" => fake_webp(),
            _ => self.image.as_ref().clone(),
        };
        let finish = if *scripted == Scripted::ContentFiltered {
            "CONTENT_FILTERED"
        } else {
            "SUCCESS"
        };
        let seed = asked.seed.filter(|s| *s != 0).unwrap_or(RANDOM_SEED);
        match scripted {
            Scripted::MalformedBody => {
                return Reply::bytes(
                    200,
                    &format!("image/{}", asked.format),
                    b"<html><body>upstream error</body></html>".to_vec(),
                );
            }
            Scripted::Oversized(bytes) => {
                return Reply::bytes(200, "image/png", vec![0x89; *bytes]);
            }
            _ => {}
        }
        if accept == "application/json" {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            return Reply::json(
                200,
                &json!({"image": encoded, "finish_reason": finish, "seed": seed}),
            );
        }
        Reply::bytes(200, &format!("image/{}", asked.format), data)
            .header("finish-reason", finish)
            .header("seed", &seed.to_string())
    }

    fn result(&self, request: &Recorded, id: &str, scripted: &Scripted) -> Reply {
        let accept = request.header("accept").unwrap_or_default();
        if accept != "image/*" && accept != "application/json" {
            return bad(false, "accept: must be image/* or application/json");
        }
        let expired = self.expire.lock().map(|e| *e).unwrap_or(false);
        let Ok(mut jobs) = self.jobs.lock() else {
            return v2_error(500, "server_error", "lock");
        };
        match jobs.get_mut(id) {
            None | Some(0) if expired => v2_error(
                404,
                "not_found",
                &format!("Generation with id '{id}' was not found."),
            ),
            None => v2_error(
                404,
                "not_found",
                &format!("Generation with id '{id}' was not found."),
            ),
            Some(0) => {
                drop(jobs);
                self.v2_image(
                    accept,
                    &Asked {
                        seed: None,
                        format: "png".into(),
                    },
                    scripted,
                )
            }
            Some(left) => {
                *left -= 1;
                Reply::json(202, &json!({"id": id, "status": "in-progress"}))
            }
        }
    }

    fn v1(&self, request: &Recorded, rest: &str, scripted: &Scripted) -> Reply {
        let (engine, operation) = rest.split_once('/').unwrap_or((rest, ""));
        let engines = self.engines.lock().map(|e| e.clone()).unwrap_or_default();
        if !engines.contains(&engine) {
            return v1_error(
                404,
                "not_found",
                &format!("The specified engine (ID {engine}) was not found."),
            );
        }
        if request.header("accept") != Some("application/json") {
            return bad(
                true,
                "invalid_accept: this test server answers v1 with application/json only; send accept: application/json",
            );
        }
        let body = match operation {
            "text-to-image" => {
                if !request
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json"))
                {
                    return bad(true, "text-to-image takes a JSON body");
                }
                let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
                    return bad(true, "the body is not a JSON object");
                };
                body
            }
            "image-to-image" | "image-to-image/masking" => {
                let content_type = request.header("content-type").unwrap_or_default();
                match parse_multipart(content_type, &request.body) {
                    Ok(parts) => match v1_form_fields(operation, &Form { parts }) {
                        Ok(body) => body,
                        Err(reply) => return reply,
                    },
                    Err(err) => {
                        return bad(
                            true,
                            &format!("{operation} takes multipart/form-data ({err})"),
                        );
                    }
                }
            }
            _ => return v1_error(404, "not_found", &format!("no operation {operation}")),
        };
        let samples = match validate_v1(operation, &body) {
            Ok(samples) => samples,
            Err(reply) => return reply,
        };
        match scripted {
            Scripted::MalformedBody => {
                return Reply::bytes(
                    200,
                    "application/json",
                    b"{\"artifacts\": [{\"base64\": \"iVBOR".to_vec(),
                );
            }
            Scripted::Oversized(bytes) => {
                return Reply::json(
                    200,
                    &json!({"artifacts": [{"base64": "A".repeat(*bytes), "seed": 1, "finishReason": "SUCCESS"}]}),
                );
            }
            _ => {}
        }
        let seed = body
            .get("seed")
            .and_then(Value::as_u64)
            .filter(|s| *s != 0)
            .unwrap_or(RANDOM_SEED);
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.image.as_ref());
        let artifacts: Vec<Value> = (0..samples)
            .map(|i| {
                let finish = if i == 0 && *scripted == Scripted::ContentFiltered {
                    "CONTENT_FILTERED"
                } else {
                    "SUCCESS"
                };
                json!({"base64": encoded, "seed": seed + i, "finishReason": finish})
            })
            .collect();
        Reply::json(200, &json!({"artifacts": artifacts}))
    }
}

/// The fields each v2beta service takes, and whether `prompt` is required.
fn v2_fields(service: &str) -> Option<(&'static [&'static str], bool)> {
    Some(match service {
        "generate/ultra" => (
            &[
                "prompt",
                "negative_prompt",
                "aspect_ratio",
                "seed",
                "style_preset",
                "output_format",
                "image",
                "strength",
            ],
            true,
        ),
        "generate/core" => (
            &[
                "prompt",
                "negative_prompt",
                "aspect_ratio",
                "seed",
                "style_preset",
                "output_format",
            ],
            true,
        ),
        "generate/sd3" => (
            &[
                "prompt",
                "negative_prompt",
                "aspect_ratio",
                "seed",
                "style_preset",
                "output_format",
                "model",
                "mode",
                "image",
                "strength",
                "cfg_scale",
            ],
            true,
        ),
        "edit/inpaint" => (
            &[
                "image",
                "mask",
                "prompt",
                "negative_prompt",
                "grow_mask",
                "seed",
                "output_format",
                "style_preset",
            ],
            true,
        ),
        "edit/erase" => (
            &["image", "mask", "grow_mask", "seed", "output_format"],
            false,
        ),
        "edit/outpaint" => (
            &[
                "image",
                "left",
                "right",
                "up",
                "down",
                "prompt",
                "creativity",
                "seed",
                "output_format",
                "style_preset",
            ],
            false,
        ),
        "edit/search-and-replace" => (
            &[
                "image",
                "prompt",
                "search_prompt",
                "negative_prompt",
                "grow_mask",
                "seed",
                "output_format",
                "style_preset",
            ],
            true,
        ),
        "upscale/fast" => (&["image", "output_format"], false),
        "upscale/conservative" => (
            &[
                "image",
                "prompt",
                "negative_prompt",
                "seed",
                "creativity",
                "output_format",
            ],
            true,
        ),
        "upscale/creative" => (
            &[
                "image",
                "prompt",
                "negative_prompt",
                "seed",
                "creativity",
                "style_preset",
                "output_format",
            ],
            true,
        ),
        _ => return None,
    })
}

fn number(form: &Form, name: &str, min: f64, max: f64) -> Result<Option<f64>, Reply> {
    match form.text(name) {
        None => Ok(None),
        Some(text) => match text.trim().parse::<f64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(bad(
                false,
                &format!("{name}: must be a number from {min} to {max}, got '{text}'"),
            )),
        },
    }
}

fn one_of(v1: bool, name: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), Reply> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(bad(
            v1,
            &format!("{name}: must be one of {}, got '{v}'", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn image_file(form: &Form, name: &str, required: bool) -> Result<(), Reply> {
    match form.parts.iter().find(|p| p.name == name) {
        None if required => Err(bad(false, &format!("{name}: is required"))),
        None => Ok(()),
        Some(part) if part.filename.is_none() => {
            Err(bad(false, &format!("{name}: must be a file")))
        }
        Some(part) => {
            let mime = part.content_type.as_deref().unwrap_or_default();
            if !["image/png", "image/jpeg", "image/webp"].contains(&mime) || part.data.is_empty() {
                Err(bad(
                    false,
                    &format!("{name}: unsupported image type '{mime}'"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

fn validate_v2(service: &str, form: &Form) -> Result<Asked, Reply> {
    let Some((allowed, prompt_required)) = v2_fields(service) else {
        return Err(v2_error(404, "not_found", &format!("no service {service}")));
    };
    if let Some(unknown) = form.names().into_iter().find(|n| !allowed.contains(n)) {
        return Err(bad(
            false,
            &format!("{unknown}: unknown field for {service}"),
        ));
    }
    let mut seen = Vec::new();
    for name in form.names() {
        if seen.contains(&name) {
            return Err(bad(false, &format!("{name}: given more than once")));
        }
        seen.push(name);
    }
    let prompt = form.text("prompt").unwrap_or_default();
    if prompt_required && prompt.trim().is_empty() {
        return Err(bad(false, "prompt: cannot be empty"));
    }
    if prompt.chars().count() > 10_000 {
        return Err(bad(false, "prompt: must be at most 10000 characters"));
    }
    let seed = match form.text("seed") {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 4_294_967_294)
                .ok_or_else(|| {
                    bad(
                        false,
                        &format!("seed: must be an integer from 0 to 4294967294, got '{s}'"),
                    )
                })?,
        ),
    };
    let formats: &[&str] = if service == "generate/sd3" {
        &["png", "jpeg"]
    } else {
        &["png", "jpeg", "webp"]
    };
    let format = form.text("output_format").unwrap_or_else(|| "png".into());
    one_of(false, "output_format", Some(&format), formats)?;
    one_of(
        false,
        "style_preset",
        form.text("style_preset").as_deref(),
        STYLES,
    )?;
    one_of(
        false,
        "aspect_ratio",
        form.text("aspect_ratio").as_deref(),
        RATIOS,
    )?;
    number(form, "grow_mask", 0.0, 100.0)?;
    for side in ["left", "right", "up", "down"] {
        number(form, side, 0.0, 2000.0)?;
    }
    match service {
        "generate/ultra" | "generate/sd3" => {
            let image_to_image = if service == "generate/sd3" {
                let mode = form.text("mode").unwrap_or_else(|| "text-to-image".into());
                one_of(
                    false,
                    "mode",
                    Some(&mode),
                    &["text-to-image", "image-to-image"],
                )?;
                one_of(false, "model", form.text("model").as_deref(), SD3_MODELS)?;
                number(form, "cfg_scale", 1.0, 10.0)?;
                mode == "image-to-image"
            } else {
                form.file("image").is_some()
            };
            if image_to_image {
                image_file(form, "image", true)?;
                if number(form, "strength", 0.0, 1.0)?.is_none() {
                    return Err(bad(false, "strength: is required when image is provided"));
                }
                if form.text("aspect_ratio").is_some() {
                    return Err(bad(
                        false,
                        "aspect_ratio: is not supported with image-to-image",
                    ));
                }
            } else if form
                .parts
                .iter()
                .any(|p| p.name == "image" || p.name == "strength")
            {
                return Err(bad(false, "image: only allowed in image-to-image mode"));
            }
        }
        "generate/core" => {}
        "edit/outpaint" => {
            image_file(form, "image", true)?;
            let grows = ["left", "right", "up", "down"].iter().any(|s| {
                form.text(s)
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
            });
            if !grows {
                return Err(bad(
                    false,
                    "at least one of left, right, up or down must be greater than 0",
                ));
            }
            number(form, "creativity", 0.0, 1.0)?;
        }
        "edit/search-and-replace" => {
            image_file(form, "image", true)?;
            if form
                .text("search_prompt")
                .is_none_or(|s| s.trim().is_empty())
            {
                return Err(bad(false, "search_prompt: is required"));
            }
        }
        "edit/inpaint" | "edit/erase" => {
            image_file(form, "image", true)?;
            image_file(form, "mask", false)?;
        }
        "upscale/conservative" => {
            image_file(form, "image", true)?;
            number(form, "creativity", 0.2, 0.5)?;
        }
        "upscale/creative" => {
            image_file(form, "image", true)?;
            number(form, "creativity", 0.1, 0.5)?;
        }
        _ => image_file(form, "image", true)?,
    }
    Ok(Asked { seed, format })
}

/// A v1 multipart body as the JSON object text-to-image would carry, to validate both alike.
fn v1_form_fields(operation: &str, form: &Form) -> Result<Map<String, Value>, Reply> {
    let mut body = Map::new();
    let mut prompts: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
    for part in &form.parts {
        let name = part.name.as_str();
        if let Some(rest) = name.strip_prefix("text_prompts[") {
            let (index, field) = rest
                .split_once("][")
                .ok_or_else(|| bad(true, &format!("{name}: malformed")))?;
            let index: usize = index
                .parse()
                .map_err(|_| bad(true, &format!("{name}: malformed index")))?;
            let field = field
                .strip_suffix(']')
                .ok_or_else(|| bad(true, &format!("{name}: malformed")))?;
            let value = String::from_utf8_lossy(&part.data).into_owned();
            let value = match field {
                "text" => json!(value),
                "weight" => json!(
                    value
                        .parse::<f64>()
                        .map_err(|_| bad(true, &format!("{name}: not a number")))?
                ),
                _ => return Err(bad(true, &format!("{name}: unknown field"))),
            };
            prompts
                .entry(index)
                .or_default()
                .insert(field.to_owned(), value);
            continue;
        }
        let files: &[&str] = if operation == "image-to-image" {
            &["init_image"]
        } else {
            &["init_image", "mask_image"]
        };
        if files.contains(&name) {
            if part.filename.is_none()
                || !part
                    .content_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with("image/"))
            {
                return Err(bad(true, &format!("{name}: must be an image file")));
            }
            body.insert(name.to_owned(), json!("<file>"));
            continue;
        }
        let text = String::from_utf8_lossy(&part.data).into_owned();
        let value = match text.parse::<f64>() {
            Ok(number)
                if ![
                    "sampler",
                    "style_preset",
                    "init_image_mode",
                    "mask_source",
                    "clip_guidance_preset",
                ]
                .contains(&name) =>
            {
                json!(number)
            }
            _ => json!(text),
        };
        body.insert(name.to_owned(), value);
    }
    body.insert(
        "text_prompts".into(),
        Value::Array(prompts.into_values().map(Value::Object).collect()),
    );
    if !body.contains_key("init_image") {
        return Err(bad(true, "init_image: is required"));
    }
    Ok(body)
}

/// Checks of the v1 OpenAPI spec; returns the number of samples.
fn validate_v1(operation: &str, body: &Map<String, Value>) -> Result<u64, Reply> {
    let common = [
        "text_prompts",
        "cfg_scale",
        "clip_guidance_preset",
        "sampler",
        "samples",
        "seed",
        "steps",
        "style_preset",
        "extras",
    ];
    let own: &[&str] = match operation {
        "text-to-image" => &["width", "height"],
        "image-to-image" => &[
            "init_image",
            "init_image_mode",
            "image_strength",
            "step_schedule_start",
            "step_schedule_end",
        ],
        _ => &["init_image", "mask_source", "mask_image"],
    };
    if let Some(unknown) = body
        .keys()
        .find(|k| !common.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(bad(
            true,
            &format!("{unknown}: unknown field for {operation}"),
        ));
    }
    let prompts = body
        .get("text_prompts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad(true, "text_prompts: is required"))?;
    for prompt in prompts {
        let text = prompt
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if text.trim().is_empty() || text.chars().count() > 2000 {
            return Err(bad(
                true,
                "invalid_prompts: each text prompt needs 1 to 2000 characters",
            ));
        }
        if prompt.get("weight").is_some_and(|w| !w.is_number()) {
            return Err(bad(true, "text_prompts: weight must be a number"));
        }
    }
    let range = |name: &str, min: f64, max: f64| -> Result<Option<f64>, Reply> {
        match body.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| (min..=max).contains(x))
                .map(Some)
                .ok_or_else(|| {
                    bad(
                        true,
                        &format!("{name}: must be from {min} to {max}, got {v}"),
                    )
                }),
        }
    };
    range("cfg_scale", 0.0, 35.0)?;
    let samples = range("samples", 1.0, 10.0)?.unwrap_or(1.0) as u64;
    range("seed", 0.0, 4_294_967_295.0)?;
    range("steps", 10.0, 150.0)?;
    range("image_strength", 0.0, 1.0)?;
    one_of(
        true,
        "sampler",
        body.get("sampler").and_then(Value::as_str),
        SAMPLERS,
    )?;
    one_of(
        true,
        "style_preset",
        body.get("style_preset").and_then(Value::as_str),
        STYLES,
    )?;
    match operation {
        "text-to-image" => {
            let width = body.get("width").and_then(Value::as_u64).unwrap_or(512);
            let height = body.get("height").and_then(Value::as_u64).unwrap_or(512);
            if !SDXL_SIZES.contains(&(width, height)) {
                return Err(bad(
                    true,
                    "invalid_height_or_width: for stable-diffusion-xl-1024-v1-0 the allowed dimensions are 1024x1024, 1152x896, 1216x832, 1344x768, 1536x640, 640x1536, 768x1344, 832x1216, 896x1152",
                ));
            }
        }
        "image-to-image" => one_of(
            true,
            "init_image_mode",
            body.get("init_image_mode").and_then(Value::as_str),
            &["IMAGE_STRENGTH", "STEP_SCHEDULE"],
        )?,
        _ => {
            let source = body
                .get("mask_source")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(true, "mask_source: is required"))?;
            one_of(
                true,
                "mask_source",
                Some(source),
                &["MASK_IMAGE_WHITE", "MASK_IMAGE_BLACK", "INIT_IMAGE_ALPHA"],
            )?;
            if source != "INIT_IMAGE_ALPHA" && !body.contains_key("mask_image") {
                return Err(bad(
                    true,
                    "invalid_mask_image: mask_source is MASK_IMAGE_WHITE or MASK_IMAGE_BLACK but no mask_image was provided",
                ));
            }
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)], files: &[&str]) -> Form {
        let mut parts: Vec<FormPart> = fields
            .iter()
            .map(|(n, v)| FormPart {
                name: (*n).to_owned(),
                filename: None,
                content_type: None,
                data: v.as_bytes().to_vec(),
            })
            .collect();
        parts.extend(files.iter().map(|n| FormPart {
            name: (*n).to_owned(),
            filename: Some("a.png".into()),
            content_type: Some("image/png".into()),
            data: vec![1],
        }));
        Form { parts }
    }

    #[test]
    fn refuses_what_stability_refuses() {
        assert!(validate_v2("generate/core", &form(&[("prompt", "a fox")], &[])).is_ok());
        assert!(
            validate_v2(
                "generate/core",
                &form(&[("prompt", "a fox"), ("cfg_scale", "5")], &[])
            )
            .is_err()
        );
        assert!(
            validate_v2(
                "generate/sd3",
                &form(&[("prompt", "a fox"), ("output_format", "webp")], &[])
            )
            .is_err()
        );
        assert!(
            validate_v2("generate/ultra", &form(&[("prompt", "a fox")], &["image"])).is_err(),
            "strength is required with an image"
        );
        assert!(
            validate_v2("edit/outpaint", &form(&[], &["image"])).is_err(),
            "a side must grow"
        );
        assert!(
            validate_v2(
                "upscale/conservative",
                &form(&[("prompt", "x"), ("creativity", "0.9")], &["image"])
            )
            .is_err()
        );
        let v1 = json!({"text_prompts": [{"text": "a fox"}], "width": 512, "height": 512});
        assert!(
            validate_v1("text-to-image", v1.as_object().unwrap_or(&Map::new())).is_err(),
            "SDXL refuses 512x512"
        );
    }
}
