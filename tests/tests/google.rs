//! The real Google plugin (`plugins/google` built for wasm32-wasip2) in the real runtime, against
//! a local server that speaks the Gemini API. Requests are checked on the server side (method,
//! path, the `x-goog-api-key` header, the JSON bodies); answers, Google's HTTP-200 safety
//! outcomes and failures on the plugin side.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imageai_core::plugin::{RuntimeOptions, WasmProvider};
use imageai_core::{
    CallContext, EditMode, EditRequest, GenerateRequest, Generation, Image, Provider,
    ProviderError, Secret,
};
use imageai_tests::google_server::{GoogleServer, NOTE, Scripted, TEST_KEY, fake_jpeg};
use imageai_tests::openai_server::png;
use imageai_tests::plugins::{load, no_retries, only, quick_retries, read_timeout};
use imageai_tests::{Recorded, base64};
use serde_json::json;

const PACKAGE: &str = "imageai-plugin-google";

/// The plugin with the default limits, but quick host retries.
const FLASH: &str = "/v1beta/models/gemini-2.5-flash-image:generateContent";
const IMAGEN: &str = "/v1beta/models/imagen-4.0-generate-001:predict";

/// The plugin with the default limits, but quick host retries.
fn google() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, quick_retries()))
}

/// The plugin with host retries off, so each scripted failure reaches it as is.
fn google_no_retries() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, no_retries()))
}

fn ctx(server: &GoogleServer) -> CallContext {
    ctx_with_key(server, Some(TEST_KEY))
}

fn ctx_with_key(server: &GoogleServer, key: Option<&str>) -> CallContext {
    CallContext::new(
        key.map(Secret::new),
        BTreeMap::from([("base_url".to_owned(), server.base_url())]),
    )
}

fn request(model: &str, prompt: &str) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        prompt: prompt.into(),
        ..GenerateRequest::default()
    }
}

fn generate(server: &GoogleServer, request: &GenerateRequest) -> Result<Generation, ProviderError> {
    google().generate(request, &ctx(server))
}

/// POST, the key in `x-goog-api-key` (never in the URL or an `authorization` header), JSON.
fn assert_google_json(recorded: &Recorded) {
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.header("x-goog-api-key"), Some(TEST_KEY));
    assert_eq!(recorded.header("authorization"), None);
    assert!(!recorded.uri.contains("key="), "{}", recorded.uri);
    assert_eq!(recorded.header("content-type"), Some("application/json"));
}

fn policy_message(result: Result<Generation, ProviderError>) -> String {
    match result {
        Err(ProviderError::ContentPolicy(message)) => message,
        other => panic!("expected a content-policy error, got {other:?}"),
    }
}

#[test]
fn info_lists_the_gemini_and_imagen_models() {
    let info = google().info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.id, "google");
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "gemini-2.5-flash-image",
            "gemini-3-pro-image",
            "gemini-3.1-flash-image",
            "imagen-4.0-generate-001",
            "imagen-4.0-ultra-generate-001",
            "imagen-4.0-fast-generate-001"
        ]
    );
    let flash = info
        .model("gemini-2.5-flash-image")
        .unwrap_or_else(|| panic!("no gemini-2.5-flash-image"));
    assert!(flash.aspect_ratios.contains(&"21:9".to_owned()));
    assert!(flash.capabilities.contains(&imageai_core::Capability::Edit));
    let imagen = info
        .model("imagen-4.0-generate-001")
        .unwrap_or_else(|| panic!("no imagen"));
    assert_eq!(imagen.max_n, 4);
    assert_eq!(imagen.output_formats, ["png", "jpeg"]);
    assert!(
        imagen.description.contains("person_generation")
            && imagen.description.contains("image_size"),
        "extras are documented: {}",
        imagen.description
    );
}

#[test]
fn gemini_text_to_image_sends_the_documented_request_and_keeps_the_text_as_note() {
    let server = GoogleServer::start();
    let mut request = GenerateRequest {
        aspect_ratio: Some("16:9".into()),
        seed: Some(1234),
        ..request("gemini-3-pro-image", "a lighthouse at dusk")
    };
    request.extra.insert("image_size".into(), "2K".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.requests_to("/v1beta/models/gemini-3-pro-image:generateContent"));
    assert_google_json(&sent);
    assert_eq!(
        sent.json(),
        json!({
            "contents": [{"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}],
            "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}, "seed": 1234}
        })
    );
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].mime, "image/png");
    assert_eq!(generation.images[0].data, server.image());
    assert_eq!(generation.note.as_deref(), Some(NOTE));
    assert_eq!(generation.finish_reason.as_deref(), Some("STOP"));
    assert_eq!(generation.request_id.as_deref(), Some("resp-1"));
    assert_eq!(
        generation
            .metadata
            .get("usage.totalTokenCount")
            .map(String::as_str),
        Some("1302")
    );
    assert!(generation.warnings.is_empty(), "{:?}", generation.warnings);
}

#[test]
fn gemini_edit_sends_every_reference_image_inline() {
    let server = GoogleServer::start();
    let references = vec![
        Image {
            mime: "image/png".into(),
            data: png(32, 32, 1),
        },
        Image {
            mime: "image/jpeg".into(),
            data: fake_jpeg(),
        },
        Image {
            mime: "image/webp".into(),
            data: b"RIFF\x10\0\0\0WEBPVP8 test".to_vec(),
        },
    ];
    let edit = EditRequest {
        mode: EditMode::Edit,
        base: GenerateRequest {
            aspect_ratio: Some("1:1".into()),
            ..request("gemini-2.5-flash-image", "put the cat on the sofa")
        },
        images: references.clone(),
        mask: None,
        strength: None,
    };
    let generation = google()
        .edit(&edit, &ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.note.as_deref(), Some(NOTE));

    let sent = only(server.requests_to(FLASH));
    assert_google_json(&sent);
    let body = sent.json();
    let parts = body["contents"][0]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(parts.len(), 4, "{body}");
    assert_eq!(parts[0], json!({"text": "put the cat on the sofa"}));
    for (part, original) in parts[1..].iter().zip(&references) {
        assert_eq!(part["inlineData"]["mimeType"], original.mime.as_str());
        assert_eq!(part["inlineData"]["data"], base64(&original.data).as_str());
    }
    assert_eq!(
        body["generationConfig"]["imageConfig"],
        json!({"aspectRatio": "1:1"})
    );
}

#[test]
fn the_retired_preview_name_reaches_the_current_model_with_a_warning() {
    let server = GoogleServer::start();
    let generation = generate(
        &server,
        &request("gemini-2.5-flash-image-preview", "a red fox"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(only(server.requests()).path(), FLASH);
    assert_eq!(generation.warnings.len(), 1);
    assert!(
        generation.warnings[0].contains("`gemini-2.5-flash-image-preview` was retired"),
        "{:?}",
        generation.warnings
    );
}

#[test]
fn several_gemini_images_take_one_request_each_with_the_seed_counting_up() {
    let server = GoogleServer::start();
    let generation = generate(
        &server,
        &GenerateRequest {
            n: 3,
            seed: Some(40),
            ..request("gemini-2.5-flash-image", "a red fox")
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 3);
    let seeds: Vec<serde_json::Value> = server
        .requests_to(FLASH)
        .iter()
        .map(|r| r.json()["generationConfig"]["seed"].clone())
        .collect();
    assert_eq!(seeds, [json!(40), json!(41), json!(42)]);
    assert_eq!(
        generation.note.as_deref(),
        Some(NOTE),
        "the same note is kept once"
    );
    assert_eq!(generation.request_id.as_deref(), Some("resp-1"));
}

#[test]
fn imagen_sends_sample_count_aspect_ratio_person_generation_and_format() {
    let server = GoogleServer::start();
    let mut request = GenerateRequest {
        n: 3,
        aspect_ratio: Some("9:16".into()),
        output_format: Some("jpeg".into()),
        ..request("imagen-4.0-generate-001", "a portrait of a sailor")
    };
    request
        .extra
        .insert("person_generation".into(), "allow_adult".into());
    request.extra.insert("image_size".into(), "2K".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.requests_to(IMAGEN));
    assert_google_json(&sent);
    assert_eq!(
        sent.json(),
        json!({"instances": [{"prompt": "a portrait of a sailor"}],
               "parameters": {"sampleCount": 3, "aspectRatio": "9:16", "personGeneration": "ALLOW_ADULT", "sampleImageSize": "2K",
                              "outputOptions": {"mimeType": "image/jpeg"}, "includeRaiReason": true}})
    );
    assert_eq!(generation.images.len(), 3);
    assert!(
        generation
            .images
            .iter()
            .all(|i| i.mime == "image/jpeg" && i.data == fake_jpeg())
    );
    assert!(generation.warnings.is_empty());
}

#[test]
fn imagen_asks_for_exactly_one_image_by_default() {
    let server = GoogleServer::start();
    let generation = generate(
        &server,
        &request("imagen-4.0-fast-generate-001", "a red fox"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        generation.images.len(),
        1,
        "Imagen's own default is 4: the plugin must send sampleCount"
    );
    let sent = only(server.requests_to("/v1beta/models/imagen-4.0-fast-generate-001:predict"));
    assert_eq!(
        sent.json()["parameters"],
        json!({"sampleCount": 1, "includeRaiReason": true})
    );
    assert_eq!(generation.images[0].data, server.image());
}

#[test]
fn check_key_lists_models_with_the_key_header() {
    let server = GoogleServer::start();
    google()
        .check_key(&ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.requests_to("/v1beta/models"));
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.header("x-goog-api-key"), Some(TEST_KEY));
    assert!(!sent.uri.contains("key="));

    match google().check_key(&ctx_with_key(
        &server,
        Some("AIzaSyWrong-000000000000000000000000000"),
    )) {
        Err(ProviderError::Auth(message)) => {
            assert!(
                message.contains("API_KEY_INVALID") && message.contains("imageai keys set google"),
                "{message}"
            );
            assert!(
                !message.contains("AIzaSyWrong"),
                "the key must not be echoed: {message}"
            );
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[test]
fn a_missing_key_says_how_to_set_one() {
    let server = GoogleServer::start();
    match google().generate(
        &request("gemini-2.5-flash-image", "a cat"),
        &ctx_with_key(&server, None),
    ) {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("imageai keys set google"), "{message}")
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[test]
fn an_invalid_key_is_http_400_and_an_auth_error() {
    let server = GoogleServer::start();
    server.script([Scripted::InvalidKey]);
    let result = generate(&server, &request("imagen-4.0-generate-001", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Auth(m)) if m.starts_with("Google rejected the key (API_KEY_INVALID)")),
        "{result:?}"
    );
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
}

#[test]
fn a_blocked_prompt_is_a_content_policy_error_with_the_reason() {
    let server = GoogleServer::start();
    server.script([Scripted::PromptBlocked("PROHIBITED_CONTENT")]);
    let message = policy_message(generate(
        &server,
        &request("gemini-2.5-flash-image", "something refused"),
    ));
    assert!(
        message.contains("blocked the prompt (PROHIBITED_CONTENT)"),
        "{message}"
    );
}

#[test]
fn refused_images_are_content_policy_errors_with_the_finish_reason() {
    let server = GoogleServer::start();
    for reason in ["IMAGE_SAFETY", "NO_IMAGE", "PROHIBITED_CONTENT"] {
        server.script([Scripted::Refused(reason)]);
        let message = policy_message(generate(
            &server,
            &request("gemini-2.5-flash-image", "something refused"),
        ));
        assert!(message.contains(&format!("({reason})")), "{message}");
        if reason == "IMAGE_SAFETY" {
            assert!(
                message.contains("Prohibited Use policy"),
                "the finish message is kept: {message}"
            );
        } else {
            assert!(
                message.contains("I can't create that image."),
                "the model's text is kept: {message}"
            );
        }
    }
}

#[test]
fn imagen_filtering_is_an_error_when_total_and_a_warning_when_partial() {
    let server = GoogleServer::start();
    server.script([
        Scripted::ImagenFiltered { kept: 0 },
        Scripted::ImagenFiltered { kept: 1 },
    ]);
    let message = policy_message(generate(
        &server,
        &GenerateRequest {
            n: 2,
            ..request("imagen-4.0-generate-001", "a crowd")
        },
    ));
    assert!(
        message.contains("removed every image") && message.contains("safety filter threshold"),
        "{message}"
    );
    let generation = generate(
        &server,
        &GenerateRequest {
            n: 3,
            ..request("imagen-4.0-generate-001", "a crowd")
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.warnings.len(), 1);
    assert!(
        generation.warnings[0].starts_with("Imagen's safety filters removed 2 of 3 images"),
        "{:?}",
        generation.warnings
    );
}

#[test]
fn a_text_only_answer_says_to_ask_for_an_image() {
    let server = GoogleServer::start();
    server.script([Scripted::TextOnly(
        "Which kind of lighthouse would you like?",
    )]);
    let result = generate(&server, &request("gemini-2.5-flash-image", "lighthouse"));
    assert!(
        matches!(&result, Err(ProviderError::InvalidRequest(m)) if m.contains("Which kind of lighthouse") && m.contains("Ask for an image")),
        "{result:?}"
    );
}

#[test]
fn a_short_retry_delay_in_the_body_is_waited_out_by_the_plugin() {
    let server = GoogleServer::start();
    server.script([Scripted::RateLimited {
        retry_delay: "0.4s",
    }]);
    let started = Instant::now();
    let generation = google_no_retries()
        .generate(&request("gemini-2.5-flash-image", "a cat"), &ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(
        server.requests_to(FLASH).len(),
        2,
        "one 429, then one retry"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the retryDelay was honoured: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_long_retry_delay_comes_back_as_the_rate_limit_hint() {
    let server = GoogleServer::start();
    server.script([Scripted::RateLimited { retry_delay: "47s" }]);
    let started = Instant::now();
    match google_no_retries().generate(&request("imagen-4.0-generate-001", "a cat"), &ctx(&server))
    {
        Err(ProviderError::RateLimited {
            message,
            retry_after_ms,
        }) => {
            assert_eq!(retry_after_ms, Some(47_000));
            assert!(message.contains("Resource has been exhausted"), "{message}");
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn no_quota_for_the_model_is_a_quota_error() {
    let server = GoogleServer::start();
    server.script([Scripted::NoQuota]);
    let result =
        google_no_retries().generate(&request("gemini-2.5-flash-image", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Quota(m)) if m.contains("limit: 0") && m.contains("billing")),
        "{result:?}"
    );
}

#[test]
fn a_server_error_then_success_is_retried_by_the_host() {
    let server = GoogleServer::start();
    server.script([Scripted::ServerError]);
    let generation = generate(&server, &request("imagen-4.0-generate-001", "a cat"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(server.requests_to(IMAGEN).len(), 2);
}

#[test]
fn a_failing_server_is_a_server_error() {
    let server = GoogleServer::start();
    server.script([Scripted::ServerError]);
    let result =
        google_no_retries().generate(&request("gemini-2.5-flash-image", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.starts_with("Google failed (503): The model is overloaded")),
        "{result:?}"
    );
}

#[test]
fn a_slow_answer_times_out() {
    let provider = load(PACKAGE, read_timeout(Duration::from_millis(400)));
    let server = GoogleServer::start();
    server.script([Scripted::Slow(Duration::from_secs(3))]);
    let result = provider.generate(&request("gemini-2.5-flash-image", "a cat"), &ctx(&server));
    assert!(
        matches!(result, Err(ProviderError::Timeout(_))),
        "{result:?}"
    );
}

#[test]
fn a_truncated_answer_fails_cleanly() {
    let server = GoogleServer::start();
    server.script([Scripted::Truncated]);
    match google_no_retries().generate(&request("gemini-2.5-flash-image", "a cat"), &ctx(&server)) {
        Err(error @ (ProviderError::Network(_) | ProviderError::Server(_))) => {
            assert!(!error.to_string().contains(TEST_KEY))
        }
        other => panic!("expected a network or server error, got {other:?}"),
    }
}

#[test]
fn malformed_json_is_a_server_error() {
    let server = GoogleServer::start();
    server.script([Scripted::MalformedJson]);
    let result = generate(&server, &request("gemini-2.5-flash-image", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("not the JSON expected")),
        "{result:?}"
    );
}

#[test]
fn an_oversized_answer_is_refused() {
    let provider = load(
        PACKAGE,
        RuntimeOptions {
            max_response_bytes: 512 * 1024,
            ..RuntimeOptions::default()
        },
    );
    let server = GoogleServer::start();
    server.script([Scripted::Oversized(2 * 1024 * 1024)]);
    let result = provider.generate(&request("gemini-2.5-flash-image", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("too large")),
        "{result:?}"
    );
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let server = GoogleServer::start();
    let mut person_on_gemini = request("gemini-2.5-flash-image", "a cat");
    person_on_gemini
        .extra
        .insert("person_generation".into(), "allow_adult".into());
    let cases = [
        (
            GenerateRequest {
                n: 5,
                ..request("imagen-4.0-generate-001", "a cat")
            },
            "imagen-4.0-generate-001 makes 1 to 4 image(s) per request, not 5",
        ),
        (
            GenerateRequest {
                aspect_ratio: Some("21:9".into()),
                ..request("imagen-4.0-generate-001", "a cat")
            },
            "imagen-4.0-generate-001 takes aspect ratio",
        ),
        (
            GenerateRequest {
                size: Some("1024x1024".into()),
                ..request("gemini-3-pro-image", "a cat")
            },
            "gemini-3-pro-image takes an aspect ratio",
        ),
        (
            GenerateRequest {
                size: Some("2K".into()),
                ..request("gemini-2.5-flash-image", "a cat")
            },
            "gemini-2.5-flash-image makes one fixed size",
        ),
        (
            GenerateRequest {
                negative_prompt: Some("dogs".into()),
                ..request("imagen-4.0-generate-001", "a cat")
            },
            "imagen-4.0-generate-001 takes no negative prompt",
        ),
        (
            person_on_gemini,
            "gemini-2.5-flash-image has no option `person_generation`",
        ),
        (
            request("imagen-3.0-generate-002", "a cat"),
            "Google has no image model `imagen-3.0-generate-002`",
        ),
        (
            request("gemini-2.5-flash-image", "  "),
            "gemini-2.5-flash-image needs a prompt",
        ),
    ];
    for (request, expected) in cases {
        match generate(&server, &request) {
            Err(ProviderError::InvalidRequest(message)) => {
                assert!(message.starts_with(expected), "{message}")
            }
            other => panic!("expected invalid-request for {request:?}, got {other:?}"),
        }
    }
    let imagen_edit = EditRequest {
        mode: EditMode::Edit,
        base: request("imagen-4.0-generate-001", "x"),
        images: vec![Image {
            mime: "image/png".into(),
            data: png(8, 8, 1),
        }],
        mask: None,
        strength: None,
    };
    assert_eq!(
        google()
            .edit(&imagen_edit, &ctx(&server))
            .err()
            .map(|e| e.class()),
        Some("invalid-request")
    );
    let masked = EditRequest {
        mode: EditMode::Inpaint,
        base: request("gemini-2.5-flash-image", "x"),
        images: vec![Image {
            mime: "image/png".into(),
            data: png(8, 8, 1),
        }],
        mask: Some(Image {
            mime: "image/png".into(),
            data: png(8, 8, 2),
        }),
        strength: None,
    };
    assert_eq!(
        google()
            .edit(&masked, &ctx(&server))
            .err()
            .map(|e| e.class()),
        Some("invalid-request")
    );
    assert!(
        server.requests().is_empty(),
        "nothing may be sent for an invalid request"
    );
}
