//! The real Replicate plugin (`plugins/replicate` built for wasm32-wasip2) in the real runtime,
//! against a local server that speaks Replicate's API. Requests are checked on the server side
//! (method, path, headers, JSON body and each model's input fields); answers, polling,
//! cancellation and failures on the plugin side.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imageai_core::plugin::{RuntimeOptions, WasmProvider};
use imageai_core::{
    CallContext, GenerateRequest, Generation, Param, Provider, ProviderError, Secret,
};
use imageai_tests::Recorded;
use imageai_tests::openai_server::png_size;
use imageai_tests::plugins::{
    Reports, load, no_retries, only, quick_retries, read_timeout, record_progress,
};
use imageai_tests::replicate_server::{
    COMMUNITY_VERSION, FOREVER, ReplicateServer, SDXL_VERSION, Scripted, TEST_TOKEN,
};
use serde_json::json;

const PACKAGE: &str = "imageai-plugin-replicate";

/// The plugin with the default limits, but quick host retries.
fn replicate() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, quick_retries()))
}

/// The plugin with host retries off, so each scripted failure reaches it as is.
fn replicate_no_retries() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, no_retries()))
}

fn ctx(server: &ReplicateServer) -> CallContext {
    ctx_with(server, Some(TEST_TOKEN), &[])
}

fn ctx_with(server: &ReplicateServer, key: Option<&str>, settings: &[(&str, &str)]) -> CallContext {
    let mut all = BTreeMap::from([("base_url".to_owned(), server.base_url())]);
    all.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    CallContext::new(key.map(Secret::new), all)
}

/// A context that records every progress report.
fn ctx_with_progress(server: &ReplicateServer) -> (CallContext, Reports) {
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
    server: &ReplicateServer,
    request: &GenerateRequest,
) -> Result<Generation, ProviderError> {
    replicate().generate(request, &ctx(server))
}

/// A create call as Replicate documents it: bearer token, JSON, `Prefer: wait`.
fn assert_create(recorded: &Recorded) {
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    assert_eq!(recorded.header("prefer"), Some("wait"));
}

fn downloads(server: &ReplicateServer) -> Vec<Recorded> {
    server.requests_under("/delivery/")
}

#[test]
fn info_lists_the_curated_models_and_the_any_model_entry() {
    let info = replicate().info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.id, "replicate");
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.first(), Some(&"black-forest-labs/flux-schnell"));
    assert_eq!(
        ids.last(),
        Some(&"*"),
        "the last entry stands for any owner/name[:version]"
    );
    assert!(ids.contains(&"stability-ai/sdxl") && ids.contains(&"google/imagen-4"));
    let dev = info
        .model("black-forest-labs/flux-dev")
        .unwrap_or_else(|| panic!("no flux-dev"));
    assert_eq!(dev.max_n, 4);
    assert!(dev.params.contains(&Param::Guidance) && !dev.params.contains(&Param::NegativePrompt));
    assert_eq!(dev.output_formats, ["webp", "jpg", "png"]);
    assert!(dev.aspect_ratios.contains(&"21:9".to_owned()));
    let sdxl = info
        .model("stability-ai/sdxl")
        .unwrap_or_else(|| panic!("no sdxl"));
    assert!(sdxl.params.contains(&Param::Size) && sdxl.params.contains(&Param::NegativePrompt));
}

#[test]
fn an_official_model_runs_in_one_round_trip_with_its_own_input_names() {
    let server = ReplicateServer::start();
    let request = GenerateRequest {
        n: 2,
        seed: Some(1234),
        steps: Some(28),
        guidance: Some(3.5),
        aspect_ratio: Some("16:9".into()),
        output_format: Some("png".into()),
        ..request("black-forest-labs/flux-dev", "a lighthouse at dusk")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent =
        only(server.requests_to("POST", "/v1/models/black-forest-labs/flux-dev/predictions"));
    assert_create(&sent);
    assert_eq!(
        sent.json(),
        json!({"input": {"prompt": "a lighthouse at dusk", "seed": 1234, "num_inference_steps": 28, "guidance": 3.5,
                         "num_outputs": 2, "output_format": "png", "aspect_ratio": "16:9"}})
    );
    assert!(
        server.requests_under("/v1/predictions").is_empty(),
        "a prediction done at once needs no poll"
    );

    let fetched = downloads(&server);
    assert_eq!(fetched.len(), 2);
    for download in &fetched {
        assert_eq!(download.method, "GET");
        assert_eq!(
            download.header("authorization"),
            Some(format!("Bearer {TEST_TOKEN}").as_str())
        );
    }
    assert_eq!(generation.images.len(), 2);
    for image in &generation.images {
        assert_eq!(image.mime, "image/png");
        assert_eq!(image.data, server.image());
    }
    let prediction = &server.predictions()[0];
    assert_eq!(
        generation.request_id.as_deref(),
        Some(prediction.id.as_str())
    );
    assert_eq!(generation.seed, Some(1234));
    assert_eq!(
        generation.metadata.get("model").map(String::as_str),
        Some("black-forest-labs/flux-dev")
    );
    assert_eq!(
        generation.metadata.get("predict_time").map(String::as_str),
        Some("2.500")
    );
    assert_eq!(
        generation.metadata.get("url"),
        Some(&format!("https://replicate.com/p/{}", prediction.id))
    );
}

#[test]
fn a_single_url_output_and_a_custom_size_work() {
    let server = ReplicateServer::start();
    let request = GenerateRequest {
        size: Some("1024x768".into()),
        ..request("black-forest-labs/flux-1.1-pro", "a red fox")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.requests_to(
        "POST",
        "/v1/models/black-forest-labs/flux-1.1-pro/predictions",
    ));
    assert_eq!(
        sent.json(),
        json!({"input": {"prompt": "a red fox", "aspect_ratio": "custom", "width": 1024, "height": 768}})
    );
    assert_eq!(generation.images.len(), 1);
    assert_eq!(png_size(&generation.images[0].data), Some((48, 48)));
    assert_eq!(generation.seed, Some(31337), "the seed the model logged");
}

#[test]
fn a_community_model_runs_by_version_through_predictions() {
    let server = ReplicateServer::start();
    let request = GenerateRequest {
        n: 3,
        size: Some("1152x896".into()),
        negative_prompt: Some("blurry".into()),
        steps: Some(30),
        guidance: Some(7.5),
        ..request("stability-ai/sdxl", "an astronaut riding a unicorn")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.requests_to("POST", "/v1/predictions"));
    assert_create(&sent);
    assert_eq!(
        sent.json(),
        json!({"version": SDXL_VERSION, "input": {"prompt": "an astronaut riding a unicorn", "negative_prompt": "blurry",
               "num_inference_steps": 30, "guidance_scale": 7.5, "num_outputs": 3, "width": 1152, "height": 896}})
    );
    assert_eq!(generation.images.len(), 3);
    assert_eq!(
        generation.metadata.get("version").map(String::as_str),
        Some(SDXL_VERSION)
    );
}

#[test]
fn any_model_by_owner_name_and_version_takes_extra_inputs_as_json() {
    let server = ReplicateServer::start();
    let mut request = GenerateRequest {
        seed: Some(5),
        ..request(&format!("acme/pixel-art:{COMMUNITY_VERSION}"), "a castle")
    };
    for (name, value) in [
        ("lora_scale", "0.7"),
        ("num_frames", "3"),
        ("tiled", "true"),
        ("palette", "gameboy"),
        ("label", "\"42\""),
    ] {
        request.extra.insert(name.into(), value.into());
    }
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.requests_to("POST", "/v1/predictions"));
    assert_eq!(
        sent.json(),
        json!({"version": COMMUNITY_VERSION, "input": {"prompt": "a castle", "seed": 5, "label": "42", "lora_scale": 0.7,
               "num_frames": 3, "palette": "gameboy", "tiled": true}})
    );
    assert_eq!(generation.images.len(), 1);
}

#[test]
fn a_slow_prediction_is_polled_with_progress_until_it_succeeds() {
    let server = ReplicateServer::start();
    server.script([Scripted::Polls(3)]);
    let (ctx, reports) = ctx_with_progress(&server);
    let generation = replicate()
        .generate(&request("black-forest-labs/flux-schnell", "a cat"), &ctx)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);

    let id = &server.predictions()[0].id;
    let polls = server.requests_to("GET", &format!("/v1/predictions/{id}"));
    assert_eq!(
        polls.len(),
        4,
        "3 polls while processing, then the one that sees it succeed"
    );
    for poll in &polls {
        assert_eq!(
            poll.header("authorization"),
            Some(format!("Bearer {TEST_TOKEN}").as_str())
        );
    }
    let reports = reports.lock().map(|r| r.clone()).unwrap_or_default();
    assert!(
        reports
            .iter()
            .any(|(f, m)| m.contains("40 %") && (*f - 0.39).abs() < 0.01),
        "progress from the logs: {reports:?}"
    );
    assert!(
        reports.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only grows: {reports:?}"
    );
    assert_eq!(reports.last().map(|(f, _)| *f), Some(1.0));
}

#[test]
fn data_uri_outputs_are_decoded() {
    let server = ReplicateServer::start();
    let encoded = imageai_tests::base64(&server.image());
    server.script([Scripted::Output(json!([format!(
        "data:image/png;base64,{encoded}"
    )]))]);
    let generation = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].data, server.image());
    assert!(downloads(&server).is_empty());
}

#[test]
fn a_failed_prediction_with_http_200_is_an_error_with_replicate_s_message() {
    let server = ReplicateServer::start();
    server.script([Scripted::Fails {
        error: "CUDA out of memory. Tried to allocate 2.00 GiB".into(),
        polls: 1,
    }]);
    let result = generate(&server, &request("black-forest-labs/flux-dev", "a cat"));
    match result {
        Err(ProviderError::Server(message)) => {
            assert!(
                message.starts_with(
                    "black-forest-labs/flux-dev failed on Replicate: CUDA out of memory"
                ),
                "{message}"
            );
            assert!(message.contains("https://replicate.com/p/"), "{message}");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert!(downloads(&server).is_empty());
}

#[test]
fn an_nsfw_failure_is_a_content_policy_refusal() {
    let server = ReplicateServer::start();
    server.script([Scripted::Fails {
        error: "NSFW content detected. Try running it again, or try a different prompt.".into(),
        polls: 0,
    }]);
    let result = generate(
        &server,
        &request("black-forest-labs/flux-schnell", "something refused"),
    );
    assert_eq!(
        result,
        Err(ProviderError::ContentPolicy(
            "NSFW content detected. Try running it again, or try a different prompt.".into()
        ))
    );
}

#[test]
fn check_key_reads_the_account() {
    let server = ReplicateServer::start();
    replicate()
        .check_key(&ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.requests_to("GET", "/v1/account"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );

    let wrong = replicate().check_key(&ctx_with(
        &server,
        Some("r8_wrongwrongwrongwrongwrongwrong00"),
        &[],
    ));
    match wrong {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("imageai keys set replicate"), "{message}")
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[test]
fn a_missing_token_says_how_to_set_one_and_sends_nothing() {
    let server = ReplicateServer::start();
    match replicate().generate(
        &request("black-forest-labs/flux-schnell", "a cat"),
        &ctx_with(&server, None, &[]),
    ) {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("imageai keys set replicate"), "{message}")
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[test]
fn a_rejected_token_is_an_auth_error() {
    let server = ReplicateServer::start();
    server.script([Scripted::InvalidToken]);
    let result = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Auth(m)) if m.starts_with("Replicate rejected the token (401)")),
        "{result:?}"
    );
}

#[test]
fn no_credit_is_a_quota_error() {
    let server = ReplicateServer::start();
    server.script([Scripted::NoCredit]);
    let result = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Quota(m)) if m.contains("insufficient credit") && m.contains("replicate.com/account/billing")),
        "{result:?}"
    );
}

#[test]
fn rate_limits_carry_the_retry_hint() {
    let server = ReplicateServer::start();
    server.script([Scripted::RateLimited {
        retry_after_secs: 4,
    }]);
    match replicate_no_retries().generate(
        &request("black-forest-labs/flux-schnell", "a cat"),
        &ctx(&server),
    ) {
        Err(ProviderError::RateLimited {
            message,
            retry_after_ms,
        }) => {
            assert_eq!(retry_after_ms, Some(4000));
            assert!(message.contains("throttled"), "{message}");
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[test]
fn a_rate_limit_then_success_is_retried_by_the_host() {
    let server = ReplicateServer::start();
    server.script([Scripted::RateLimited {
        retry_after_secs: 0,
    }]);
    let generation = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(
        server
            .requests_to(
                "POST",
                "/v1/models/black-forest-labs/flux-schnell/predictions"
            )
            .len(),
        2
    );
}

#[test]
fn a_server_error_then_success_is_retried_by_the_host() {
    let server = ReplicateServer::start();
    server.script([Scripted::Polls(1), Scripted::ServerError]);
    let generation = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    let id = &server.predictions()[0].id;
    assert_eq!(
        server
            .requests_to("GET", &format!("/v1/predictions/{id}"))
            .len(),
        3,
        "the failed poll was retried"
    );
}

#[test]
fn a_failing_server_is_a_server_error() {
    let server = ReplicateServer::start();
    server.script([Scripted::ServerError]);
    let result = replicate_no_retries().generate(
        &request("black-forest-labs/flux-schnell", "a cat"),
        &ctx(&server),
    );
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.starts_with("Replicate failed (500)")),
        "{result:?}"
    );
}

#[test]
fn a_slow_answer_times_out() {
    let provider = load(PACKAGE, read_timeout(Duration::from_millis(400)));
    let server = ReplicateServer::start();
    server.script([Scripted::Slow(Duration::from_secs(3))]);
    let result = provider.generate(
        &request("black-forest-labs/flux-schnell", "a cat"),
        &ctx(&server),
    );
    assert!(
        matches!(result, Err(ProviderError::Timeout(_))),
        "{result:?}"
    );
}

#[test]
fn a_truncated_answer_fails_cleanly() {
    let server = ReplicateServer::start();
    server.script([Scripted::Truncated]);
    match replicate_no_retries().generate(
        &request("black-forest-labs/flux-schnell", "a cat"),
        &ctx(&server),
    ) {
        Err(error @ (ProviderError::Network(_) | ProviderError::Server(_))) => {
            assert!(!error.to_string().contains(TEST_TOKEN))
        }
        other => panic!("expected a network or server error, got {other:?}"),
    }
}

#[test]
fn malformed_json_is_a_server_error() {
    let server = ReplicateServer::start();
    server.script([Scripted::MalformedJson]);
    let result = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("cut off") || m.contains("not the JSON expected")),
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
    let server = ReplicateServer::start();
    server.script([Scripted::Oversized(1024 * 1024)]);
    let result = provider.generate(
        &request("black-forest-labs/flux-schnell", "a cat"),
        &ctx(&server),
    );
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("too large")),
        "{result:?}"
    );
}

#[test]
fn an_unknown_official_model_says_to_give_a_version() {
    let server = ReplicateServer::start();
    match generate(&server, &request("acme/pixel-art", "a castle")) {
        Err(ProviderError::InvalidRequest(message)) => {
            assert!(
                message.contains("no official model `acme/pixel-art`")
                    && message.contains("acme/pixel-art:<version>"),
                "{message}"
            );
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
    let unknown_version = format!("acme/pixel-art:{}", "0".repeat(64));
    match generate(&server, &request(&unknown_version, "a castle")) {
        Err(ProviderError::InvalidRequest(message)) => {
            assert!(
                message.contains("cannot run version")
                    && message.contains("https://replicate.com/acme/pixel-art/versions"),
                "{message}"
            );
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
}

#[test]
fn a_user_cancel_stops_polling_at_once_and_cancels_the_prediction() {
    let server = ReplicateServer::start();
    server.script([Scripted::Polls(FOREVER)]);
    let ctx = ctx(&server);
    let (result, cancelled_at) = std::thread::scope(|scope| {
        let canceller = scope.spawn(|| {
            // Cancel once the plugin is polling.
            while server.requests_under("/v1/predictions/").is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(300));
            ctx.cancel.cancel();
            Instant::now()
        });
        let result =
            replicate().generate(&request("black-forest-labs/flux-schnell", "a cat"), &ctx);
        (result, canceller.join().unwrap_or_else(|_| Instant::now()))
    });
    assert_eq!(result, Err(ProviderError::Cancelled));
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "the wait did not end with the cancel"
    );
    let id = server.predictions()[0].id.clone();
    let polls = server
        .requests_to("GET", &format!("/v1/predictions/{id}"))
        .len();
    assert!(polls >= 1, "it was polling before the cancel");
    // The prediction would keep running (and billing) on Replicate: the plugin cancels it there
    // within the host's tidy-up grace.
    let cancel = only(server.requests_to("POST", &format!("/v1/predictions/{id}/cancel")));
    assert_eq!(
        cancel.header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );
    assert_eq!(server.predictions()[0].status, "canceled");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        server
            .requests_to("GET", &format!("/v1/predictions/{id}"))
            .len(),
        polls,
        "no poll after the cancel"
    );
    assert!(downloads(&server).is_empty());
}

#[test]
fn a_prediction_that_outlasts_max_wait_is_cancelled_on_replicate() {
    let server = ReplicateServer::start();
    server.script([Scripted::Polls(FOREVER)]);
    let ctx = ctx_with(&server, Some(TEST_TOKEN), &[("max_wait_secs", "2")]);
    let started = Instant::now();
    let result = replicate().generate(&request("black-forest-labs/flux-schnell", "a cat"), &ctx);
    match result {
        Err(ProviderError::Timeout(message)) => assert!(
            message.contains("after 2 s") && message.contains("max_wait_secs"),
            "{message}"
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up after {:?}",
        started.elapsed()
    );
    let prediction = &server.predictions()[0];
    let cancel =
        only(server.requests_to("POST", &format!("/v1/predictions/{}/cancel", prediction.id)));
    assert_eq!(
        cancel.header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );
    assert_eq!(prediction.status, "canceled");
}

#[test]
fn a_bad_max_wait_setting_says_how_to_fix_it() {
    let server = ReplicateServer::start();
    let ctx = ctx_with(&server, Some(TEST_TOKEN), &[("max_wait_secs", "soon")]);
    let result = replicate().generate(&request("black-forest-labs/flux-schnell", "a cat"), &ctx);
    assert!(
        matches!(&result, Err(ProviderError::InvalidRequest(m)) if m.contains("IMAGEAI_REPLICATE_MAX_WAIT_SECS")),
        "{result:?}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn output_links_outside_the_allowed_hosts_are_refused() {
    let server = ReplicateServer::start();
    server.script([Scripted::Output(json!([
        "https://files.example.com/out-0.png"
    ]))]);
    let result = generate(&server, &request("black-forest-labs/flux-schnell", "a cat"));
    match result {
        Err(ProviderError::Other(message)) => assert!(message.contains("refused"), "{message}"),
        other => panic!("expected the host to refuse the download, got {other:?}"),
    }
}

#[test]
fn an_output_without_files_is_a_server_error() {
    let server = ReplicateServer::start();
    server.script([Scripted::Output(json!("a caption, not an image"))]);
    let result = generate(
        &server,
        &request(&format!("acme/pixel-art:{COMMUNITY_VERSION}"), "a castle"),
    );
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("without any output file")),
        "{result:?}"
    );
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let server = ReplicateServer::start();
    let cases = [
        (
            GenerateRequest {
                n: 2,
                ..request("google/imagen-4", "a cat")
            },
            "google/imagen-4 makes one image per request",
        ),
        (
            GenerateRequest {
                steps: Some(10),
                ..request("black-forest-labs/flux-schnell", "a cat")
            },
            "takes 1 to 4 steps",
        ),
        (
            GenerateRequest {
                size: Some("1024x1024".into()),
                ..request("black-forest-labs/flux-dev", "a cat")
            },
            "takes an aspect ratio",
        ),
        (
            GenerateRequest {
                negative_prompt: Some("dogs".into()),
                ..request("black-forest-labs/flux-dev", "a cat")
            },
            "does not take a negative prompt",
        ),
        (request("*", "a cat"), "choose a Replicate model"),
        (request("flux", "a cat"), "is not a Replicate model id"),
        (
            request("black-forest-labs/flux-dev", " "),
            "the prompt is empty",
        ),
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
