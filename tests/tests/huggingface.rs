//! The real Hugging Face plugin (`plugins/huggingface` built for wasm32-wasip2) in the real
//! runtime, against a local server that speaks HF Inference's text-to-image task and the Hub's
//! whoami. Requests are checked on the server side (method, path, headers, JSON body); images,
//! waits for loading models and failures on the plugin side.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imageai_core::plugin::{RuntimeOptions, WasmProvider};
use imageai_core::{
    CallContext, GenerateRequest, Generation, Param, Provider, ProviderError, Secret,
};
use imageai_tests::Recorded;
use imageai_tests::huggingface_server::{
    HuggingFaceServer, Scripted, TEST_TOKEN, TokenKind, image_for,
};
use imageai_tests::plugins::{
    Reports, load, no_retries, only, quick_retries, read_timeout, record_progress,
};
use serde_json::json;

const PACKAGE: &str = "imageai-plugin-huggingface";

/// The plugin with the default limits, but quick host retries.
const SDXL: &str = "stabilityai/stable-diffusion-xl-base-1.0";
const SCHNELL: &str = "black-forest-labs/FLUX.1-schnell";
const FLUX_DEV: &str = "black-forest-labs/FLUX.1-dev";

/// The plugin with the default limits, but quick host retries.
fn huggingface() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, quick_retries()))
}

/// The plugin with host retries off, so each scripted failure reaches it as is.
fn huggingface_no_retries() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, no_retries()))
}

fn ctx(server: &HuggingFaceServer) -> CallContext {
    ctx_with_key(server, Some(TEST_TOKEN))
}

fn ctx_with_key(server: &HuggingFaceServer, key: Option<&str>) -> CallContext {
    let settings = BTreeMap::from([
        ("base_url".to_owned(), server.base_url()),
        ("hub_url".to_owned(), server.hub_url()),
    ]);
    CallContext::new(key.map(Secret::new), settings)
}

/// A context that records every progress report.
fn ctx_with_progress(server: &HuggingFaceServer) -> (CallContext, Reports) {
    let mut ctx = ctx(server);
    let reports = record_progress(&mut ctx);
    (ctx, reports)
}

fn request(model: &str, prompt: &str) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        prompt: prompt.into(),
        ..GenerateRequest::default()
    }
}

fn generate(
    server: &HuggingFaceServer,
    request: &GenerateRequest,
) -> Result<Generation, ProviderError> {
    huggingface().generate(request, &ctx(server))
}

/// An inference call as HF documents it.
fn assert_inference(recorded: &Recorded) {
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    assert_eq!(recorded.header("accept"), Some("image/png"));
    assert_eq!(
        recorded.header("x-use-cache"),
        Some("false"),
        "a new request must not get a cached image"
    );
}

#[test]
fn info_lists_the_curated_models_and_the_any_model_entry() {
    let info = huggingface().info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.id, "huggingface");
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.first(), Some(&SCHNELL));
    assert_eq!(ids.last(), Some(&"*"));
    let sdxl = info.model(SDXL).unwrap_or_else(|| panic!("no sdxl"));
    for param in [
        Param::N,
        Param::Seed,
        Param::Steps,
        Param::Guidance,
        Param::NegativePrompt,
        Param::Size,
    ] {
        assert!(sdxl.params.contains(&param), "{param:?}");
    }
    assert_eq!(sdxl.max_n, 4);
    let schnell = info.model(SCHNELL).unwrap_or_else(|| panic!("no schnell"));
    assert!(!schnell.params.contains(&Param::NegativePrompt));
}

#[test]
fn a_generation_sends_inputs_and_parameters_and_reads_raw_bytes() {
    let server = HuggingFaceServer::start();
    let request = GenerateRequest {
        negative_prompt: Some("blurry, low quality".into()),
        size: Some("1152x896".into()),
        steps: Some(30),
        guidance: Some(7.5),
        seed: Some(42),
        ..request(SDXL, "a lighthouse at dusk")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.inference_requests(SDXL));
    assert_inference(&sent);
    assert_eq!(
        sent.json(),
        json!({"inputs": "a lighthouse at dusk", "parameters": {"negative_prompt": "blurry, low quality", "width": 1152,
               "height": 896, "num_inference_steps": 30, "guidance_scale": 7.5, "seed": 42}})
    );
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].mime, "image/png");
    assert_eq!(generation.images[0].data, image_for(42, 1152, 896));
    assert_eq!(generation.seed, Some(42));
    assert_eq!(generation.request_id.as_deref(), Some("hf-req-1"));
    assert_eq!(
        generation.metadata.get("compute_time").map(String::as_str),
        Some("1.25")
    );
    assert_eq!(
        generation.metadata.get("model").map(String::as_str),
        Some(SDXL)
    );
}

#[test]
fn n_images_are_n_calls_with_consecutive_seeds() {
    let server = HuggingFaceServer::start();
    let request = GenerateRequest {
        n: 3,
        seed: Some(7),
        steps: Some(4),
        ..request(SCHNELL, "a red fox")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let sent = server.inference_requests(SCHNELL);
    assert_eq!(sent.len(), 3);
    let seeds: Vec<u64> = sent
        .iter()
        .map(|r| r.json()["parameters"]["seed"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seeds, [7, 8, 9]);
    assert_eq!(generation.images.len(), 3);
    assert_ne!(
        generation.images[0].data, generation.images[1].data,
        "different seeds, different images"
    );
    assert_eq!(
        generation.metadata.get("seeds").map(String::as_str),
        Some("7,8,9")
    );
}

#[test]
fn any_model_id_runs_with_extras_as_json_values() {
    let server = HuggingFaceServer::start();
    let mut request = request("acme/pixel-diffusion", "a castle");
    request
        .extra
        .insert("scheduler".into(), "EulerAncestralDiscreteScheduler".into());
    request.extra.insert("clip_skip".into(), "2".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.inference_requests("acme/pixel-diffusion"));
    assert_eq!(
        sent.json(),
        json!({"inputs": "a castle", "parameters": {"clip_skip": 2, "scheduler": "EulerAncestralDiscreteScheduler"}})
    );
    assert_eq!(generation.images.len(), 1);
}

#[test]
fn an_aspect_ratio_becomes_a_size_of_about_a_megapixel() {
    let server = HuggingFaceServer::start();
    let request = GenerateRequest {
        aspect_ratio: Some("16:9".into()),
        ..request(SDXL, "a wide valley")
    };
    generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.inference_requests(SDXL)).json();
    assert_eq!(
        (
            sent["parameters"]["width"].as_u64(),
            sent["parameters"]["height"].as_u64()
        ),
        (Some(1344), Some(768))
    );
}

#[test]
fn a_loading_model_is_waited_for_with_progress_then_retried() {
    let server = HuggingFaceServer::start();
    // The plugin asks the host not to retry a 503, so it sees each loading answer itself and
    // waits by the estimate (clamped to at least 1 s) instead of the host's backoff.
    server.script([
        Scripted::Loading {
            estimated_secs: 0.3,
        },
        Scripted::Loading {
            estimated_secs: 0.3,
        },
    ]);
    let started = Instant::now();
    let (ctx, reports) = ctx_with_progress(&server);
    let generation = huggingface()
        .generate(&request(SDXL, "a cat"), &ctx)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(
        server.inference_requests(SDXL).len(),
        3,
        "two waits, no host retries"
    );
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "two 1 s waits, not the host's backoff as well: {:?}",
        started.elapsed()
    );
    let reports = reports.lock().map(|r| r.clone()).unwrap_or_default();
    assert!(
        reports
            .iter()
            .any(|(_, m)| m.contains("is loading on HF Inference; waiting about 1 s")),
        "the wait is reported: {reports:?}"
    );
    assert_eq!(reports.last().map(|(f, _)| *f), Some(1.0));
}

#[test]
fn a_model_that_never_loads_gives_up_after_a_bounded_number_of_waits() {
    let server = HuggingFaceServer::start();
    server.script(std::iter::repeat_n(
        Scripted::Loading {
            estimated_secs: 0.05,
        },
        100,
    ));
    let started = Instant::now();
    let result = huggingface_no_retries().generate(&request(SDXL, "a cat"), &ctx(&server));
    match result {
        Err(ProviderError::Timeout(message)) => {
            assert!(
                message.contains("still loading") && message.contains("10 waits"),
                "{message}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        server.inference_requests(SDXL).len(),
        11,
        "the first try and ten more after waits"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_cancel_while_waiting_for_a_loading_model_stops_at_once() {
    let server = HuggingFaceServer::start();
    server.script(std::iter::repeat_n(
        Scripted::Loading {
            estimated_secs: 30.0,
        },
        10,
    ));
    let ctx = ctx(&server);
    let (result, cancelled_at) = std::thread::scope(|scope| {
        let canceller = scope.spawn(|| {
            // Cancel once the plugin is waiting: after the first (loading) answer.
            while server.inference_requests(SDXL).is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(300));
            ctx.cancel.cancel();
            Instant::now()
        });
        let result = huggingface_no_retries().generate(&request(SDXL, "a cat"), &ctx);
        (result, canceller.join().unwrap_or_else(|_| Instant::now()))
    });
    assert_eq!(result, Err(ProviderError::Cancelled));
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "the wait did not end with the cancel"
    );
    assert_eq!(
        server.inference_requests(SDXL).len(),
        1,
        "no retry after the cancel"
    );
}

#[test]
fn a_gated_model_says_to_accept_its_terms() {
    let server = HuggingFaceServer::start();
    server.deny_gated();
    match generate(&server, &request(FLUX_DEV, "a cat")) {
        Err(ProviderError::Auth(message)) => {
            assert!(message.starts_with("black-forest-labs/FLUX.1-dev is gated: accept its terms at https://huggingface.co/black-forest-labs/FLUX.1-dev"), "{message}");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[test]
fn a_missing_model_is_an_invalid_request_with_where_to_look() {
    let server = HuggingFaceServer::start();
    match generate(&server, &request("acme/does-not-exist", "a cat")) {
        Err(ProviderError::InvalidRequest(message)) => {
            assert!(
                message.contains("does not serve `acme/does-not-exist`")
                    && message.contains("inference_provider=hf-inference"),
                "{message}"
            );
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
}

#[test]
fn check_key_asks_the_hub_who_the_token_is() {
    let server = HuggingFaceServer::start();
    huggingface()
        .check_key(&ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    let sent = only(
        server
            .requests()
            .into_iter()
            .filter(|r| r.path() == "/api/whoami-v2")
            .collect(),
    );
    assert_eq!(sent.method, "GET");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );

    server.set_token_kind(TokenKind::Read);
    huggingface()
        .check_key(&ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));

    server.set_token_kind(TokenKind::FineGrainedWithoutInference);
    match huggingface().check_key(&ctx(&server)) {
        Err(ProviderError::Auth(message)) => assert!(
            message.contains("Make calls to Inference Providers"),
            "{message}"
        ),
        other => panic!("expected an auth error, got {other:?}"),
    }

    match huggingface().check_key(&ctx_with_key(
        &server,
        Some("hf_wrongwrongwrongwrongwrongwrong"),
    )) {
        Err(ProviderError::Auth(message)) => assert!(
            message.contains("imageai keys set huggingface"),
            "{message}"
        ),
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[test]
fn a_missing_token_says_how_to_set_one_and_sends_nothing() {
    let server = HuggingFaceServer::start();
    match huggingface().generate(&request(SDXL, "a cat"), &ctx_with_key(&server, None)) {
        Err(ProviderError::Auth(message)) => assert!(
            message.contains("imageai keys set huggingface"),
            "{message}"
        ),
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[test]
fn a_rejected_token_is_an_auth_error() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::InvalidToken]);
    let result = generate(&server, &request(SDXL, "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Auth(m)) if m.starts_with("Hugging Face rejected the token (401)")),
        "{result:?}"
    );
}

#[test]
fn an_nsfw_refusal_is_a_content_policy_error() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::Nsfw]);
    let result = generate(&server, &request(SDXL, "something refused"));
    assert!(
        matches!(&result, Err(ProviderError::ContentPolicy(m)) if m.starts_with("Potential NSFW content was detected")),
        "{result:?}"
    );
}

#[test]
fn used_up_credits_are_a_quota_error() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::NoCredits]);
    let result = generate(&server, &request(SDXL, "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Quota(m)) if m.contains("monthly included credits") && m.contains("settings/billing")),
        "{result:?}"
    );
}

#[test]
fn rate_limits_carry_the_retry_hint() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::RateLimited {
        retry_after_secs: 6,
    }]);
    match huggingface_no_retries().generate(&request(SDXL, "a cat"), &ctx(&server)) {
        Err(ProviderError::RateLimited {
            message,
            retry_after_ms,
        }) => {
            assert_eq!(retry_after_ms, Some(6000));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[test]
fn a_rate_limit_then_success_is_retried_by_the_host() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::RateLimited {
        retry_after_secs: 0,
    }]);
    let generation =
        generate(&server, &request(SDXL, "a cat")).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(server.inference_requests(SDXL).len(), 2);
}

#[test]
fn a_server_error_then_success_is_retried_by_the_host() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::ServerError]);
    let generation =
        generate(&server, &request(SDXL, "a cat")).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(server.inference_requests(SDXL).len(), 2);
}

#[test]
fn a_failing_server_is_a_server_error() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::ServerError]);
    let result = huggingface_no_retries().generate(&request(SDXL, "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.starts_with("HF Inference failed on stabilityai/stable-diffusion-xl-base-1.0 (500)")),
        "{result:?}"
    );
}

#[test]
fn a_slow_answer_times_out() {
    let provider = load(PACKAGE, read_timeout(Duration::from_millis(400)));
    let server = HuggingFaceServer::start();
    server.script([Scripted::Slow(Duration::from_secs(3))]);
    let result = provider.generate(&request(SDXL, "a cat"), &ctx(&server));
    assert!(
        matches!(result, Err(ProviderError::Timeout(_))),
        "{result:?}"
    );
}

#[test]
fn a_truncated_answer_fails_cleanly() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::Truncated]);
    match huggingface_no_retries().generate(&request(SDXL, "a cat"), &ctx(&server)) {
        Err(error @ (ProviderError::Network(_) | ProviderError::Server(_))) => {
            assert!(!error.to_string().contains(TEST_TOKEN))
        }
        other => panic!("expected a network or server error, got {other:?}"),
    }
}

#[test]
fn a_body_that_is_no_image_is_a_server_error() {
    let server = HuggingFaceServer::start();
    server.script([Scripted::MalformedBody]);
    let result = generate(&server, &request(SDXL, "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("instead of an image")),
        "{result:?}"
    );
}

#[test]
fn an_oversized_answer_is_refused() {
    let provider = load(
        PACKAGE,
        RuntimeOptions {
            max_response_bytes: 256 * 1024,
            ..RuntimeOptions::default()
        },
    );
    let server = HuggingFaceServer::start();
    server.script([Scripted::Oversized(1024 * 1024)]);
    let result = provider.generate(&request(SDXL, "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("too large")),
        "{result:?}"
    );
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let server = HuggingFaceServer::start();
    let cases = [
        (
            GenerateRequest {
                negative_prompt: Some("dogs".into()),
                ..request(SCHNELL, "a cat")
            },
            "does not take a negative prompt",
        ),
        (
            GenerateRequest {
                n: 5,
                ..request(SDXL, "a cat")
            },
            "1 to 4 image(s)",
        ),
        (
            GenerateRequest {
                size: Some("1000x1001".into()),
                ..request(SDXL, "a cat")
            },
            "in steps of 8",
        ),
        (
            GenerateRequest {
                quality: Some("hd".into()),
                ..request(SDXL, "a cat")
            },
            "takes no quality",
        ),
        (request("*", "a cat"), "choose a Hugging Face model"),
        (
            request("acme/../../admin", "a cat"),
            "is not a Hugging Face model id",
        ),
        (request(SDXL, " "), "the prompt is empty"),
    ];
    for (request, expected) in cases {
        match generate(&server, &request) {
            Err(ProviderError::InvalidRequest(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("expected invalid-request for {request:?}, got {other:?}"),
        }
    }
    assert!(
        server.requests().is_empty(),
        "nothing may be sent for an invalid request"
    );
}
