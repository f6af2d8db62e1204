//! A local server that speaks Replicate's HTTP API (`/v1/models/{owner}/{name}/predictions`,
//! `/v1/predictions`, polling, cancel, `/v1/account`) and serves output files like
//! replicate.delivery. It checks the bearer token, `Prefer: wait`, the JSON body and each curated
//! model's input fields (names, types, ranges: a field the model does not have is a 422), keeps
//! predictions running for as many polls as a test asks, and answers with real PNGs. Tests script
//! failures one API request at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::openai_server::png;
use crate::server::{Recorded, Reply, TestServer};

/// The token the server accepts.
pub const TEST_TOKEN: &str = "r8_Test0123456789abcdefghijklmnopqrstuv";
/// The version of `stability-ai/sdxl` the plugin pins.
pub const SDXL_VERSION: &str = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc";
/// A community model's version the server knows (as `acme/pixel-art`); any field goes.
pub const COMMUNITY_VERSION: &str =
    "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";
/// Polls for a prediction that never ends.
pub const FOREVER: u32 = u32::MAX;

/// What the next API request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// The normal answer: a new prediction is done by the time the create call answers.
    Success,
    /// A new prediction stays `processing` for this many polls, then succeeds.
    Polls(u32),
    /// A new prediction ends `failed` with this error (still HTTP 201/200) after this many polls.
    Fails { error: String, polls: u32 },
    /// A new prediction succeeds at once with this `output` instead of links to PNGs.
    Output(Value),
    /// 401 Unauthenticated, whatever the token.
    InvalidToken,
    /// 402 Insufficient credit.
    NoCredit,
    /// 429 with `retry-after: <seconds>`.
    RateLimited { retry_after_secs: u32 },
    /// 500.
    ServerError,
    /// The normal answer after waiting this long before the headers.
    Slow(Duration),
    /// The normal answer cut off after half its body.
    Truncated,
    /// 200/201 with a body that is not JSON.
    MalformedJson,
    /// 201 with a JSON prediction padded to this many bytes.
    Oversized(usize),
}

/// One prediction as the server keeps it.
#[derive(Debug, Clone)]
pub struct PredictionState {
    pub id: String,
    /// `owner/name`, or the version for `/v1/predictions` calls.
    pub model: String,
    pub version: Option<String>,
    pub input: Value,
    pub status: String,
    polls_left: u32,
    outcome: Outcome,
    single_output: bool,
}

#[derive(Debug, Clone)]
enum Outcome {
    Images,
    Fails(String),
    Output(Value),
}

pub struct ReplicateServer {
    server: TestServer,
    state: Arc<State>,
}

struct State {
    script: Mutex<VecDeque<Scripted>>,
    predictions: Mutex<HashMap<String, PredictionState>>,
    image: Vec<u8>,
    origin: OnceLock<String>,
    ids: AtomicU64,
}

impl ReplicateServer {
    pub fn start() -> Self {
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            predictions: Mutex::new(HashMap::new()),
            image: png(48, 48, 3),
            origin: OnceLock::new(),
            ids: AtomicU64::new(0),
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

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queue replies for the next API requests (not file downloads), in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut script) = self.state.script.lock() {
            script.extend(replies);
        }
    }

    /// The PNG every output file holds.
    pub fn image(&self) -> Vec<u8> {
        self.state.image.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Requests with this method to this path.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path() == path)
            .collect()
    }

    /// Requests to a path under `prefix`.
    pub fn requests_under(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path().starts_with(prefix))
            .collect()
    }

    /// Every prediction created so far.
    pub fn predictions(&self) -> Vec<PredictionState> {
        let mut all: Vec<PredictionState> = self
            .state
            .predictions
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

impl State {
    fn handle(&self, request: &Recorded) -> Reply {
        let path = request.path().to_owned();
        if let Some(file) = path.strip_prefix("/delivery/") {
            return self.file(file);
        }
        if !path.starts_with("/v1/") {
            return problem(
                404,
                "Not found",
                "The requested resource could not be found.",
            );
        }
        if request.header("authorization") != Some(format!("Bearer {TEST_TOKEN}").as_str()) {
            return problem(
                401,
                "Unauthenticated",
                "You did not pass a valid authentication token",
            );
        }
        let scripted = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(Scripted::Success);
        let reply = match &scripted {
            Scripted::InvalidToken => problem(
                401,
                "Unauthenticated",
                "You did not pass a valid authentication token",
            ),
            Scripted::NoCredit => problem(
                402,
                "Insufficient credit",
                "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit.",
            ),
            Scripted::RateLimited { retry_after_secs } => problem(
                429,
                "Too Many Requests",
                &format!(
                    "Request was throttled. Expected available in {retry_after_secs} seconds."
                ),
            )
            .header("retry-after", &retry_after_secs.to_string()),
            Scripted::ServerError => problem(
                500,
                "Internal Server Error",
                "Something went wrong on our side.",
            ),
            Scripted::MalformedJson => Reply::bytes(
                201,
                "application/json",
                b"{\"id\": \"x\", \"status\": \"succeeded\", \"output\": [\"https://".to_vec(),
            ),
            other => self.api(request, &path, other),
        };
        match scripted {
            Scripted::Slow(delay) => reply.delay(delay),
            Scripted::Truncated => {
                let half = reply.body.len() / 2;
                reply.truncate_at(half)
            }
            Scripted::Oversized(bytes) => match serde_json::from_slice::<Value>(&reply.body) {
                Ok(mut value) => {
                    value["logs"] = json!("x".repeat(bytes));
                    Reply::json(reply.status, &value)
                }
                Err(_) => reply,
            },
            _ => reply,
        }
    }

    fn api(&self, request: &Recorded, path: &str, scripted: &Scripted) -> Reply {
        let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["account"]) => Reply::json(
                200,
                &json!({"type": "user", "username": "tester", "name": "Test User", "github_url": null}),
            ),
            ("POST", ["models", owner, name, "predictions"]) => {
                let model = format!("{owner}/{name}");
                let Some(spec) = official(&model) else {
                    return problem(
                        404,
                        "Not found",
                        "The requested resource could not be found.",
                    );
                };
                self.create(request, model, None, Some(spec), scripted)
            }
            ("POST", ["predictions"]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let Some(version) = body
                    .get("version")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    return problem(422, "Input validation failed", "- version: Required\n");
                };
                let model = match version.as_str() {
                    SDXL_VERSION => "stability-ai/sdxl",
                    COMMUNITY_VERSION => "acme/pixel-art",
                    _ => {
                        return problem(
                            422,
                            "Invalid version or not permitted",
                            "The specified version does not exist (or perhaps you don't have permission to use it?)",
                        );
                    }
                };
                let spec = (version == SDXL_VERSION).then_some(&SDXL);
                self.create(request, model.to_owned(), Some(version), spec, scripted)
            }
            ("GET", ["predictions", id]) => self.poll(id),
            ("POST", ["predictions", id, "cancel"]) => self.cancel(id),
            _ => problem(
                404,
                "Not found",
                "The requested resource could not be found.",
            ),
        }
    }

    fn create(
        &self,
        request: &Recorded,
        model: String,
        version: Option<String>,
        spec: Option<&Spec>,
        scripted: &Scripted,
    ) -> Reply {
        if !request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            return problem(415, "Unsupported Media Type", "Expected a JSON body.");
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
            return problem(400, "Bad Request", "The body must be a JSON object.");
        };
        for key in body.keys() {
            if ![
                "input",
                "version",
                "webhook",
                "webhook_events_filter",
                "stream",
            ]
            .contains(&key.as_str())
            {
                return problem(
                    422,
                    "Input validation failed",
                    &format!("- {key}: Additional property {key} is not allowed\n"),
                );
            }
        }
        let Some(Value::Object(input)) = body.get("input") else {
            return problem(422, "Input validation failed", "- input: Required\n");
        };
        if let Some(spec) = spec
            && let Err(invalid) = spec.validate(input)
        {
            return problem(422, "Input validation failed", &invalid);
        }
        if input
            .get("prompt")
            .and_then(Value::as_str)
            .is_none_or(|p| p.trim().is_empty())
        {
            return problem(422, "Input validation failed", "- input.prompt: Required\n");
        }
        let (polls, outcome) = match scripted {
            Scripted::Polls(polls) => (*polls, Outcome::Images),
            Scripted::Fails { error, polls } => (*polls, Outcome::Fails(error.clone())),
            Scripted::Output(output) => (0, Outcome::Output(output.clone())),
            _ => (0, Outcome::Images),
        };
        let id = format!("pred{:020}", self.ids.fetch_add(1, Ordering::Relaxed) + 1);
        let mut prediction = PredictionState {
            id: id.clone(),
            model,
            version,
            input: Value::Object(input.clone()),
            status: "starting".into(),
            polls_left: polls,
            outcome,
            single_output: spec.is_some_and(|s| s.single_output),
        };
        // `Prefer: wait` answers once the prediction is done; without it, the prediction has
        // only just started.
        let waits = request
            .header("prefer")
            .is_some_and(|p| p.trim().starts_with("wait"));
        if waits && prediction.polls_left == 0 {
            self.settle(&mut prediction);
        } else if waits {
            prediction.status = "processing".into();
        }
        let reply = Reply::json(201, &self.json(&prediction));
        if let Ok(mut all) = self.predictions.lock() {
            all.insert(id, prediction);
        }
        reply
    }

    fn poll(&self, id: &str) -> Reply {
        let Ok(mut all) = self.predictions.lock() else {
            return problem(500, "Internal Server Error", "lock");
        };
        let Some(prediction) = all.get_mut(id) else {
            return problem(
                404,
                "Not found",
                "The requested resource could not be found.",
            );
        };
        if ["starting", "processing"].contains(&prediction.status.as_str()) {
            if prediction.polls_left == 0 {
                self.settle(prediction);
            } else {
                prediction.status = "processing".into();
                if prediction.polls_left != FOREVER {
                    prediction.polls_left -= 1;
                }
            }
        }
        Reply::json(200, &self.json(prediction))
    }

    fn cancel(&self, id: &str) -> Reply {
        let Ok(mut all) = self.predictions.lock() else {
            return problem(500, "Internal Server Error", "lock");
        };
        let Some(prediction) = all.get_mut(id) else {
            return problem(
                404,
                "Not found",
                "The requested resource could not be found.",
            );
        };
        if ["starting", "processing"].contains(&prediction.status.as_str()) {
            prediction.status = "canceled".into();
        }
        Reply::json(200, &self.json(prediction))
    }

    fn settle(&self, prediction: &mut PredictionState) {
        prediction.status = match prediction.outcome {
            Outcome::Fails(_) => "failed".into(),
            _ => "succeeded".into(),
        };
    }

    /// The prediction as Replicate shows it.
    fn json(&self, prediction: &PredictionState) -> Value {
        let origin = self.origin.get().cloned().unwrap_or_default();
        let id = &prediction.id;
        let n = prediction
            .input
            .get("num_outputs")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let files: Vec<String> = (0..n)
            .map(|i| format!("{origin}/delivery/{id}/out-{i}.png"))
            .collect();
        let seed = prediction
            .input
            .get("seed")
            .and_then(Value::as_u64)
            .unwrap_or(31337);
        let (output, error) = match (prediction.status.as_str(), &prediction.outcome) {
            ("succeeded", Outcome::Images) if prediction.single_output => {
                (json!(files[0]), Value::Null)
            }
            ("succeeded", Outcome::Images) => (json!(files), Value::Null),
            ("succeeded", Outcome::Output(output)) => (output.clone(), Value::Null),
            ("failed", Outcome::Fails(error)) => (Value::Null, json!(error)),
            _ => (Value::Null, Value::Null),
        };
        let logs = match prediction.status.as_str() {
            "starting" => String::new(),
            "processing" => {
                format!("Using seed: {seed}\n 40%|████      | 8/20 [00:01<00:02,  6.1it/s]")
            }
            _ => format!("Using seed: {seed}\n100%|██████████| 20/20 [00:03<00:00,  6.1it/s]"),
        };
        let done = ["succeeded", "failed", "canceled"].contains(&prediction.status.as_str());
        json!({
            "id": id,
            "model": prediction.model,
            "version": prediction.version.clone().unwrap_or_else(|| "hidden".into()),
            "input": prediction.input,
            "logs": logs,
            "output": output,
            "data_removed": false,
            "error": error,
            "status": prediction.status,
            "created_at": "2025-01-01T00:00:00.000Z",
            "started_at": if prediction.status == "starting" { Value::Null } else { json!("2025-01-01T00:00:01.000Z") },
            "completed_at": if done { json!("2025-01-01T00:00:04.000Z") } else { Value::Null },
            "metrics": if prediction.status == "succeeded" { json!({"predict_time": 2.5}) } else { json!({}) },
            "urls": {
                "cancel": format!("https://api.replicate.com/v1/predictions/{id}/cancel"),
                "get": format!("https://api.replicate.com/v1/predictions/{id}"),
                "web": format!("https://replicate.com/p/{id}"),
            },
        })
    }

    fn file(&self, name: &str) -> Reply {
        if name.ends_with(".png") {
            Reply::bytes(200, "image/png", self.image.clone())
        } else {
            Reply::new(404).body(b"Not Found".to_vec())
        }
    }
}

/// An RFC 7807 problem, as Replicate answers errors.
fn problem(status: u16, title: &str, detail: &str) -> Reply {
    let body = json!({"title": title, "detail": detail, "status": status});
    Reply::bytes(
        status,
        "application/problem+json",
        body.to_string().into_bytes(),
    )
}

/// What one input field takes.
#[derive(Debug, Clone, Copy)]
enum Field {
    Text,
    Enum(&'static [&'static str]),
    Int(i64, i64),
    Number(f64, f64),
    Bool,
}

/// A curated model's inputs, as its OpenAPI schema on Replicate declares them.
struct Spec {
    fields: &'static [(&'static str, Field)],
    /// The output is one URL rather than a list.
    single_output: bool,
}

const FLUX_RATIOS: &[&str] = &[
    "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
];
const WEBP_JPG_PNG: &[&str] = &["webp", "jpg", "png"];

const FLUX_SCHNELL: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        ("aspect_ratio", Field::Enum(FLUX_RATIOS)),
        ("num_outputs", Field::Int(1, 4)),
        ("num_inference_steps", Field::Int(1, 4)),
        ("seed", Field::Int(0, i64::MAX)),
        ("output_format", Field::Enum(WEBP_JPG_PNG)),
        ("output_quality", Field::Int(0, 100)),
        ("disable_safety_checker", Field::Bool),
        ("go_fast", Field::Bool),
        ("megapixels", Field::Enum(&["1", "0.25"])),
    ],
    single_output: false,
};

const FLUX_DEV: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        ("aspect_ratio", Field::Enum(FLUX_RATIOS)),
        ("image", Field::Text),
        ("prompt_strength", Field::Number(0.0, 1.0)),
        ("num_outputs", Field::Int(1, 4)),
        ("num_inference_steps", Field::Int(1, 50)),
        ("guidance", Field::Number(0.0, 10.0)),
        ("seed", Field::Int(0, i64::MAX)),
        ("output_format", Field::Enum(WEBP_JPG_PNG)),
        ("output_quality", Field::Int(0, 100)),
        ("disable_safety_checker", Field::Bool),
        ("go_fast", Field::Bool),
        ("megapixels", Field::Enum(&["1", "0.25"])),
    ],
    single_output: false,
};

const FLUX_PRO: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        (
            "aspect_ratio",
            Field::Enum(&[
                "custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3",
            ]),
        ),
        ("width", Field::Int(256, 1440)),
        ("height", Field::Int(256, 1440)),
        ("seed", Field::Int(0, i64::MAX)),
        ("output_format", Field::Enum(WEBP_JPG_PNG)),
        ("output_quality", Field::Int(0, 100)),
        ("safety_tolerance", Field::Int(1, 6)),
        ("prompt_upsampling", Field::Bool),
        ("image_prompt", Field::Text),
    ],
    single_output: true,
};

const FLUX_ULTRA: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        (
            "aspect_ratio",
            Field::Enum(&[
                "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21",
            ]),
        ),
        ("seed", Field::Int(0, i64::MAX)),
        ("output_format", Field::Enum(&["jpg", "png"])),
        ("safety_tolerance", Field::Int(1, 6)),
        ("raw", Field::Bool),
        ("image_prompt", Field::Text),
        ("image_prompt_strength", Field::Number(0.0, 1.0)),
    ],
    single_output: true,
};

const SD35_LARGE: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        ("aspect_ratio", Field::Enum(FLUX_RATIOS)),
        ("cfg", Field::Number(0.0, 20.0)),
        ("steps", Field::Int(1, 50)),
        ("seed", Field::Int(0, i64::MAX)),
        ("negative_prompt", Field::Text),
        ("image", Field::Text),
        ("prompt_strength", Field::Number(0.0, 1.0)),
        ("output_format", Field::Enum(WEBP_JPG_PNG)),
        ("output_quality", Field::Int(0, 100)),
    ],
    single_output: false,
};

const IMAGEN_4: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        (
            "aspect_ratio",
            Field::Enum(&["1:1", "9:16", "16:9", "3:4", "4:3"]),
        ),
        (
            "safety_filter_level",
            Field::Enum(&[
                "block_low_and_above",
                "block_medium_and_above",
                "block_only_high",
            ]),
        ),
        ("output_format", Field::Enum(&["jpg", "png"])),
    ],
    single_output: true,
};

const SDXL: Spec = Spec {
    fields: &[
        ("prompt", Field::Text),
        ("negative_prompt", Field::Text),
        ("image", Field::Text),
        ("mask", Field::Text),
        ("width", Field::Int(128, 4096)),
        ("height", Field::Int(128, 4096)),
        ("num_outputs", Field::Int(1, 4)),
        (
            "scheduler",
            Field::Enum(&[
                "DDIM",
                "DPMSolverMultistep",
                "HeunDiscrete",
                "KarrasDPM",
                "K_EULER_ANCESTRAL",
                "K_EULER",
                "PNDM",
            ]),
        ),
        ("num_inference_steps", Field::Int(1, 500)),
        ("guidance_scale", Field::Number(1.0, 50.0)),
        ("prompt_strength", Field::Number(0.0, 1.0)),
        ("seed", Field::Int(0, i64::MAX)),
        (
            "refine",
            Field::Enum(&[
                "no_refiner",
                "expert_ensemble_refiner",
                "base_image_refiner",
            ]),
        ),
        ("high_noise_frac", Field::Number(0.0, 1.0)),
        ("refine_steps", Field::Int(1, 500)),
        ("apply_watermark", Field::Bool),
        ("lora_scale", Field::Number(0.0, 1.0)),
        ("disable_safety_checker", Field::Bool),
    ],
    single_output: false,
};

/// Official models the server runs through `/v1/models/{owner}/{name}/predictions`.
fn official(model: &str) -> Option<&'static Spec> {
    match model {
        "black-forest-labs/flux-schnell" => Some(&FLUX_SCHNELL),
        "black-forest-labs/flux-dev" => Some(&FLUX_DEV),
        "black-forest-labs/flux-1.1-pro" => Some(&FLUX_PRO),
        "black-forest-labs/flux-1.1-pro-ultra" => Some(&FLUX_ULTRA),
        "stability-ai/stable-diffusion-3.5-large" => Some(&SD35_LARGE),
        "google/imagen-4" => Some(&IMAGEN_4),
        _ => None,
    }
}

impl Spec {
    /// Cog's validation: known fields only, each of the right type and in range. The error is
    /// Replicate's `detail` text (`- input.width: …` lines).
    fn validate(&self, input: &Map<String, Value>) -> Result<(), String> {
        let mut problems = Vec::new();
        for (name, value) in input {
            let Some((_, field)) = self.fields.iter().find(|(n, _)| n == name) else {
                problems.push(format!(
                    "- input.{name}: Additional property {name} is not allowed"
                ));
                continue;
            };
            let ok = match *field {
                Field::Text => value.is_string(),
                Field::Enum(values) => value.as_str().is_some_and(|v| values.contains(&v)),
                Field::Int(min, max) => value.as_i64().is_some_and(|v| (min..=max).contains(&v)),
                Field::Number(min, max) => value.as_f64().is_some_and(|v| (min..=max).contains(&v)),
                Field::Bool => value.is_boolean(),
            };
            if !ok {
                problems.push(format!(
                    "- input.{name}: {value} is not valid for {field:?}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n") + "\n")
        }
    }
}
