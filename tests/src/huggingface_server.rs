//! A local server that speaks HF Inference's text-to-image task
//! (`POST /hf-inference/models/{org}/{model}` → raw image bytes) and the Hub's
//! `GET /api/whoami-v2`. It checks the bearer token, the JSON body and the types of the
//! parameters, knows which models exist and which are gated, answers a PNG that depends on the
//! seed, and scripts failures (a loading model's 503, 401/403/402/429/5xx, slow, truncated,
//! malformed, oversized) one inference request at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::openai_server::png;
use crate::server::{Recorded, Reply, TestServer};

/// The token the server accepts.
pub const TEST_TOKEN: &str = "hf_TestToken0123456789abcdefghijklmnop";
/// Models the server serves; the gated ones need [`HuggingFaceServer::deny_gated`] off.
pub const MODELS: &[&str] = &[
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.1-dev",
    "stabilityai/stable-diffusion-3.5-large",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "acme/pixel-diffusion",
];
const GATED: &[&str] = &[
    "black-forest-labs/FLUX.1-dev",
    "stabilityai/stable-diffusion-3.5-large",
];

/// What the next inference request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    Success,
    /// 503 `{"error": "Model … is currently loading", "estimated_time": <secs>}`.
    Loading {
        estimated_secs: f64,
    },
    /// 401 whatever the token.
    InvalidToken,
    /// 402: the monthly credits are used up.
    NoCredits,
    /// 400 with the safety checker's message.
    Nsfw,
    /// 429 with `retry-after: <seconds>`.
    RateLimited {
        retry_after_secs: u32,
    },
    /// 500.
    ServerError,
    /// The normal answer after waiting this long.
    Slow(Duration),
    /// The normal answer cut off after half its body.
    Truncated,
    /// 200 `image/png` with bytes that are no image.
    MalformedBody,
    /// 200 with an image body of this many bytes.
    Oversized(usize),
}

/// How the Hub describes the token (`auth.accessToken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Read,
    /// Fine-grained, with the "Make calls to Inference Providers" permission.
    FineGrainedWithInference,
    /// Fine-grained, without it.
    FineGrainedWithoutInference,
}

pub struct HuggingFaceServer {
    server: TestServer,
    state: Arc<State>,
}

struct State {
    script: Mutex<VecDeque<Scripted>>,
    deny_gated: AtomicBool,
    token: Mutex<TokenKind>,
    request_ids: AtomicU64,
}

impl HuggingFaceServer {
    pub fn start() -> Self {
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            deny_gated: AtomicBool::new(false),
            token: Mutex::new(TokenKind::FineGrainedWithInference),
            request_ids: AtomicU64::new(0),
        });
        let handler_state = state.clone();
        let server = TestServer::start(move |request| handler_state.handle(request));
        Self { server, state }
    }

    /// The value for the plugin's `base_url` setting: `http://127.0.0.1:PORT/hf-inference`.
    pub fn base_url(&self) -> String {
        format!("{}/hf-inference", self.server.url())
    }

    /// The value for the plugin's `hub_url` setting: `http://127.0.0.1:PORT`.
    pub fn hub_url(&self) -> String {
        self.server.url()
    }

    /// Queue replies for the next inference requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut script) = self.state.script.lock() {
            script.extend(replies);
        }
    }

    /// From now on the token has not accepted the gated models' terms.
    pub fn deny_gated(&self) {
        self.state.deny_gated.store(true, Ordering::SeqCst);
    }

    pub fn set_token_kind(&self, kind: TokenKind) {
        if let Ok(mut token) = self.state.token.lock() {
            *token = kind;
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Inference requests for `model`.
    pub fn inference_requests(&self, model: &str) -> Vec<Recorded> {
        let path = format!("/hf-inference/models/{model}");
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }
}

/// The image the server makes for a seed (and the parameters' size, when given).
pub fn image_for(seed: u64, width: u32, height: u32) -> Vec<u8> {
    png(
        width.min(64),
        height.min(64),
        (seed % u64::from(u32::MAX)) as u32,
    )
}

impl State {
    fn handle(&self, request: &Recorded) -> Reply {
        let path = request.path().to_owned();
        let authorized =
            request.header("authorization") == Some(format!("Bearer {TEST_TOKEN}").as_str());
        if request.method == "GET" && path == "/api/whoami-v2" {
            return if authorized {
                self.whoami()
            } else {
                hf_error(401, "Invalid credentials in Authorization header")
            };
        }
        let Some(model) = path.strip_prefix("/hf-inference/models/") else {
            return hf_error(404, "Not Found");
        };
        if request.method != "POST" {
            return hf_error(405, "Method Not Allowed");
        }
        if !authorized {
            return hf_error(401, "Invalid credentials in Authorization header");
        }
        let scripted = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(Scripted::Success);
        let reply = match &scripted {
            Scripted::Loading { estimated_secs } => Reply::json(
                503,
                &json!({"error": format!("Model {model} is currently loading"), "estimated_time": estimated_secs}),
            ),
            Scripted::InvalidToken => hf_error(401, "Invalid credentials in Authorization header"),
            Scripted::NoCredits => hf_error(
                402,
                "You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits.",
            ),
            Scripted::Nsfw => hf_error(
                400,
                "Potential NSFW content was detected in one or more images. Try again with a different prompt.",
            ),
            Scripted::RateLimited { retry_after_secs } => hf_error(
                429,
                "Rate limit reached. You reached free usage limit (reset hourly).",
            )
            .header("retry-after", &retry_after_secs.to_string()),
            Scripted::ServerError => hf_error(500, "Internal Server Error")
                .header("x-error-message", "CUDA out of memory"),
            Scripted::MalformedBody => {
                Reply::bytes(200, "image/png", b"\x00\x01 not an image at all".to_vec())
            }
            Scripted::Oversized(bytes) => {
                let mut body = png(8, 8, 1);
                body.resize(*bytes, 0);
                Reply::bytes(200, "image/png", body)
            }
            Scripted::Success | Scripted::Slow(_) | Scripted::Truncated => {
                self.infer(request, model)
            }
        };
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let reply = reply.header("x-request-id", &format!("hf-req-{id}"));
        match scripted {
            Scripted::Slow(delay) => reply.delay(delay),
            Scripted::Truncated => {
                let half = reply.body.len() / 2;
                reply.truncate_at(half)
            }
            _ => reply,
        }
    }

    fn whoami(&self) -> Reply {
        let token = self.token.lock().map(|t| *t).unwrap_or(TokenKind::Read);
        let access = match token {
            TokenKind::Read => json!({"displayName": "imageai", "role": "read"}),
            TokenKind::FineGrainedWithInference => {
                json!({"displayName": "imageai", "role": "fineGrained",
                "fineGrained": {"canReadGatedRepos": true, "global": ["inference.serverless.write", "discussion.write"], "scoped": []}})
            }
            TokenKind::FineGrainedWithoutInference => {
                json!({"displayName": "imageai", "role": "fineGrained",
                "fineGrained": {"canReadGatedRepos": true, "global": ["discussion.write"],
                                "scoped": [{"entity": {"type": "user", "name": "tester"}, "permissions": ["repo.content.read"]}]}})
            }
        };
        Reply::json(
            200,
            &json!({"type": "user", "id": "64f0", "name": "tester", "fullname": "Test User", "isPro": false,
                                 "orgs": [], "auth": {"type": "access_token", "accessToken": access}}),
        )
    }

    /// The text-to-image task: validate like HF Inference, answer a PNG.
    fn infer(&self, request: &Recorded, model: &str) -> Reply {
        if !MODELS.contains(&model) {
            return hf_error(404, &format!("Model {model} does not exist"));
        }
        if GATED.contains(&model) && self.deny_gated.load(Ordering::SeqCst) {
            return hf_error(
                403,
                &format!(
                    "Access to model {model} is restricted and you are not in the authorized list. Visit https://huggingface.co/{model} to ask for access."
                ),
            );
        }
        if !request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            return hf_error(400, "Expected a JSON body");
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
            return hf_error(400, "The body must be a JSON object");
        };
        for key in body.keys() {
            if !["inputs", "parameters"].contains(&key.as_str()) {
                return hf_error(422, &format!("Unexpected field `{key}`"));
            }
        }
        if body
            .get("inputs")
            .and_then(Value::as_str)
            .is_none_or(|p| p.trim().is_empty())
        {
            return hf_error(422, "`inputs` must be a non-empty string");
        }
        let empty = serde_json::Map::new();
        let parameters = match body.get("parameters") {
            None => &empty,
            Some(Value::Object(parameters)) => parameters,
            Some(_) => return hf_error(422, "`parameters` must be an object"),
        };
        for (name, value) in parameters {
            let ok = match name.as_str() {
                "negative_prompt" | "scheduler" => value.is_string(),
                "width" | "height" => value
                    .as_u64()
                    .is_some_and(|v| v % 8 == 0 && (64..=2048).contains(&v)),
                "num_inference_steps" => value.as_u64().is_some_and(|v| v >= 1),
                "guidance_scale" => value.is_number(),
                "seed" => value.is_u64(),
                "clip_skip" => value.is_u64(),
                _ => return hf_error(422, &format!("Unexpected parameter `{name}`")),
            };
            if !ok {
                return hf_error(
                    422,
                    &format!("Invalid value for parameter `{name}`: {value}"),
                );
            }
        }
        let accept = request.header("accept").unwrap_or("*/*");
        let seed = parameters.get("seed").and_then(Value::as_u64).unwrap_or(0);
        let width = parameters
            .get("width")
            .and_then(Value::as_u64)
            .unwrap_or(1024) as u32;
        let height = parameters
            .get("height")
            .and_then(Value::as_u64)
            .unwrap_or(1024) as u32;
        if accept.contains("image/png") {
            Reply::bytes(200, "image/png", image_for(seed, width, height))
                .header("x-compute-type", "gpu")
                .header("x-compute-time", "1.25")
        } else {
            // HF Inference answers JPEG unless PNG is asked for.
            Reply::bytes(
                200,
                "image/jpeg",
                vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'],
            )
        }
    }
}

fn hf_error(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({"error": message}))
}
