//! The real OpenAI plugin (`plugins/openai` built for wasm32-wasip2) in the real runtime, against
//! a local server that speaks OpenAI's image API. Requests are checked on the server side
//! (method, path, headers, JSON and multipart fields); answers and failures on the plugin side.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use imageai_core::plugin::{RuntimeOptions, WasmProvider};
use imageai_core::{
    CallContext, EditMode, EditRequest, GenerateRequest, Generation, Image, Provider,
    ProviderError, Secret,
};
use imageai_tests::Recorded;
use imageai_tests::openai_server::{
    FormPart, OpenAiServer, Scripted, TEST_KEY, parse_multipart, png, png_size,
};
use imageai_tests::plugins::{load, no_retries, only, quick_retries, read_timeout};
use serde_json::json;

/// The plugin with the default limits, but quick retries.
const PACKAGE: &str = "imageai-plugin-openai";

/// The plugin with the default limits, but quick host retries.
fn openai() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, quick_retries()))
}

/// The plugin with host retries off, so each scripted failure reaches it as is.
fn openai_no_retries() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, no_retries()))
}

fn ctx(server: &OpenAiServer) -> CallContext {
    ctx_with_key(server, Some(TEST_KEY))
}

fn ctx_with_key(server: &OpenAiServer, key: Option<&str>) -> CallContext {
    let settings = BTreeMap::from([("base_url".to_owned(), server.base_url())]);
    CallContext::new(key.map(Secret::new), settings)
}

fn request(model: &str, prompt: &str) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        prompt: prompt.into(),
        ..GenerateRequest::default()
    }
}

fn generate(server: &OpenAiServer, request: &GenerateRequest) -> Result<Generation, ProviderError> {
    openai().generate(request, &ctx(server))
}

fn assert_authorized_json(recorded: &Recorded) {
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(recorded.header("content-type"), Some("application/json"));
}

fn form(recorded: &Recorded) -> Vec<FormPart> {
    let content_type = recorded.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    parse_multipart(content_type, &recorded.body)
        .unwrap_or_else(|err| panic!("the plugin sent a malformed multipart body: {err}"))
}

fn text_field(parts: &[FormPart], name: &str) -> Option<String> {
    parts
        .iter()
        .find(|p| p.name == name && p.filename.is_none())
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
}

fn png_image(seed: u32) -> Image {
    Image {
        mime: "image/png".into(),
        data: png(32, 32, seed),
    }
}

#[test]
fn info_lists_every_model_with_its_limits() {
    let info = openai().info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.id, "openai");
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "gpt-image-1.5",
            "gpt-image-1",
            "gpt-image-1-mini",
            "dall-e-3",
            "dall-e-2"
        ]
    );
    let dalle3 = info
        .model("dall-e-3")
        .unwrap_or_else(|| panic!("no dall-e-3"));
    assert_eq!(dalle3.sizes, ["1024x1024", "1792x1024", "1024x1792"]);
    assert_eq!(dalle3.qualities, ["standard", "hd"]);
    assert_eq!(dalle3.styles, ["vivid", "natural"]);
    assert_eq!(dalle3.max_n, 1);
    let gpt = info
        .model("gpt-image-1")
        .unwrap_or_else(|| panic!("no gpt-image-1"));
    assert_eq!(gpt.output_formats, ["png", "jpeg", "webp"]);
    assert_eq!(gpt.max_n, 10);
}

#[test]
fn dall_e_3_generation_sends_the_documented_request_and_keeps_the_revised_prompt() {
    let server = OpenAiServer::start();
    let request = GenerateRequest {
        size: Some("1792x1024".into()),
        quality: Some("hd".into()),
        style: Some("natural".into()),
        seed: Some(42),
        ..request("dall-e-3", "a lighthouse at dusk")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.requests_to("/v1/images/generations"));
    assert_authorized_json(&sent);
    assert_eq!(
        sent.json(),
        json!({"model": "dall-e-3", "prompt": "a lighthouse at dusk", "n": 1, "size": "1792x1024",
               "quality": "hd", "style": "natural", "response_format": "b64_json"})
    );
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].mime, "image/png");
    assert_eq!(generation.images[0].data, server.image());
    assert_eq!(
        generation.revised_prompt.as_deref(),
        Some("a lighthouse at dusk (revised)")
    );
    assert_eq!(generation.request_id.as_deref(), Some("req_test_1"));
    assert_eq!(
        generation.warnings,
        ["OpenAI's image API has no seed parameter; it was ignored"]
    );
    assert_eq!(
        generation.metadata.get("created").map(String::as_str),
        Some("1700000000")
    );
}

#[test]
fn gpt_image_generation_sends_format_background_and_extras() {
    let server = OpenAiServer::start();
    let mut request = GenerateRequest {
        n: 2,
        size: Some("1536x1024".into()),
        quality: Some("high".into()),
        output_format: Some("webp".into()),
        background: Some("transparent".into()),
        ..request("gpt-image-1.5", "a sticker of a fox")
    };
    request
        .extra
        .insert("output_compression".into(), "80".into());
    request.extra.insert("moderation".into(), "low".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.requests_to("/v1/images/generations"));
    assert_authorized_json(&sent);
    assert_eq!(
        sent.json(),
        json!({"model": "gpt-image-1.5", "prompt": "a sticker of a fox", "n": 2, "size": "1536x1024",
               "quality": "high", "output_format": "webp", "background": "transparent",
               "output_compression": 80, "moderation": "low"})
    );
    assert_eq!(generation.images.len(), 2);
    assert_eq!(
        server.requests().len(),
        1,
        "gpt-image answers inline: nothing to download"
    );
    for image in &generation.images {
        assert_eq!(png_size(&image.data), Some((64, 64)));
    }
    assert_eq!(
        generation
            .metadata
            .get("usage.output_tokens")
            .map(String::as_str),
        Some("272")
    );
    assert_eq!(
        generation.metadata.get("output_format").map(String::as_str),
        Some("webp")
    );
}

#[test]
fn dall_e_2_edit_sends_one_image_and_the_mask_as_multipart() {
    let server = OpenAiServer::start();
    let (image, mask) = (png_image(1), png_image(2));
    let edit = EditRequest {
        mode: EditMode::Inpaint,
        base: GenerateRequest {
            n: 2,
            size: Some("512x512".into()),
            ..request("dall-e-2", "add a red hat")
        },
        images: vec![image.clone()],
        mask: Some(mask.clone()),
        strength: None,
    };
    let generation = openai()
        .edit(&edit, &ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 2);

    let sent = only(server.requests_to("/v1/images/edits"));
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    let parts = form(&sent);
    assert_eq!(text_field(&parts, "model").as_deref(), Some("dall-e-2"));
    assert_eq!(
        text_field(&parts, "prompt").as_deref(),
        Some("add a red hat")
    );
    assert_eq!(text_field(&parts, "n").as_deref(), Some("2"));
    assert_eq!(text_field(&parts, "size").as_deref(), Some("512x512"));
    assert_eq!(
        text_field(&parts, "response_format").as_deref(),
        Some("b64_json")
    );
    let images: Vec<&FormPart> = parts
        .iter()
        .filter(|p| p.name.starts_with("image"))
        .collect();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].name, "image",
        "dall-e-2 takes a single `image` field"
    );
    assert_eq!(images[0].filename.as_deref(), Some("image.png"));
    assert_eq!(images[0].content_type.as_deref(), Some("image/png"));
    assert_eq!(images[0].data, image.data);
    let sent_mask = parts
        .iter()
        .find(|p| p.name == "mask")
        .unwrap_or_else(|| panic!("no mask part"));
    assert_eq!(sent_mask.filename.as_deref(), Some("mask.png"));
    assert_eq!(sent_mask.data, mask.data);
}

#[test]
fn gpt_image_edit_sends_every_reference_image_as_image_array() {
    let server = OpenAiServer::start();
    let references = vec![
        png_image(1),
        Image {
            mime: "image/jpeg".into(),
            data: vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3],
        },
        png_image(3),
    ];
    let mut base = GenerateRequest {
        quality: Some("medium".into()),
        ..request("gpt-image-1", "put them in one picture")
    };
    base.extra.insert("input_fidelity".into(), "high".into());
    let edit = EditRequest {
        mode: EditMode::Edit,
        base,
        images: references.clone(),
        mask: Some(png_image(9)),
        strength: None,
    };
    let generation = openai()
        .edit(&edit, &ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);

    let parts = form(&only(server.requests_to("/v1/images/edits")));
    assert_eq!(text_field(&parts, "model").as_deref(), Some("gpt-image-1"));
    assert_eq!(text_field(&parts, "quality").as_deref(), Some("medium"));
    assert_eq!(
        text_field(&parts, "input_fidelity").as_deref(),
        Some("high")
    );
    assert_eq!(
        text_field(&parts, "response_format"),
        None,
        "gpt-image rejects response_format"
    );
    let images: Vec<&FormPart> = parts.iter().filter(|p| p.name == "image[]").collect();
    assert_eq!(images.len(), 3);
    for (sent, original) in images.iter().zip(&references) {
        assert_eq!(sent.data, original.data);
        assert_eq!(sent.content_type.as_deref(), Some(original.mime.as_str()));
    }
    assert_eq!(images[1].filename.as_deref(), Some("image-2.jpg"));
    assert!(parts.iter().any(|p| p.name == "mask"));
}

#[test]
fn variations_go_to_their_own_endpoint_without_a_prompt() {
    let server = OpenAiServer::start();
    let source = png_image(5);
    let edit = EditRequest {
        mode: EditMode::Variations,
        base: GenerateRequest {
            n: 3,
            size: Some("256x256".into()),
            ..request("dall-e-2", "")
        },
        images: vec![source.clone()],
        mask: None,
        strength: None,
    };
    let generation = openai()
        .edit(&edit, &ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 3);

    let parts = form(&only(server.requests_to("/v1/images/variations")));
    assert_eq!(text_field(&parts, "prompt"), None);
    assert_eq!(text_field(&parts, "n").as_deref(), Some("3"));
    assert_eq!(text_field(&parts, "size").as_deref(), Some("256x256"));
    let image = parts
        .iter()
        .find(|p| p.name == "image")
        .unwrap_or_else(|| panic!("no image part"));
    assert_eq!(image.data, source.data);
}

#[test]
fn url_answers_are_downloaded_without_the_key() {
    let server = OpenAiServer::start();
    let mut request = GenerateRequest {
        n: 2,
        ..request("dall-e-2", "a red fox")
    };
    request.extra.insert("response_format".into(), "url".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    assert_eq!(
        only(server.requests_to("/v1/images/generations")).json()["response_format"],
        "url"
    );
    let downloads: Vec<Recorded> = server
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/files/"))
        .collect();
    assert_eq!(downloads.len(), 2);
    for download in &downloads {
        assert_eq!(download.method, "GET");
        assert_eq!(
            download.header("authorization"),
            None,
            "the key must not go to the download host"
        );
        assert!(
            download.uri.contains("sig=test"),
            "the signed query string is kept: {}",
            download.uri
        );
    }
    assert_eq!(generation.images.len(), 2);
    assert!(
        generation
            .images
            .iter()
            .all(|i| i.data == server.image() && i.mime == "image/png")
    );
}

#[test]
fn check_key_calls_the_models_list() {
    let server = OpenAiServer::start();
    openai()
        .check_key(&ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.requests_to("/v1/models"));
    assert_eq!(sent.method, "GET");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );

    let wrong = openai().check_key(&ctx_with_key(&server, Some("sk-wrong-key-000000000000")));
    assert_eq!(
        wrong,
        Err(ProviderError::Auth(
            "OpenAI rejected the key (401). Set a new one with `imageai keys set openai`.".into()
        ))
    );
}

#[test]
fn a_missing_key_says_how_to_set_one() {
    let server = OpenAiServer::start();
    let result = openai().generate(&request("dall-e-3", "a cat"), &ctx_with_key(&server, None));
    match result {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("imageai keys set openai"), "{message}")
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[test]
fn a_rejected_key_is_an_auth_error_with_the_fix() {
    let server = OpenAiServer::start();
    server.script([Scripted::InvalidKey]);
    let result = generate(&server, &request("gpt-image-1", "a cat"));
    assert_eq!(
        result,
        Err(ProviderError::Auth(
            "OpenAI rejected the key (401). Set a new one with `imageai keys set openai`.".into()
        ))
    );
}

#[test]
fn content_policy_refusals_keep_openai_s_message() {
    let server = OpenAiServer::start();
    server.script([Scripted::ContentPolicy, Scripted::ModerationBlocked]);
    match generate(&server, &request("dall-e-3", "something refused")) {
        Err(ProviderError::ContentPolicy(message)) => assert!(
            message.starts_with("Your request was rejected as a result of our safety system."),
            "{message}"
        ),
        other => panic!("expected content-policy, got {other:?}"),
    }
    match generate(&server, &request("gpt-image-1", "something refused")) {
        Err(ProviderError::ContentPolicy(message)) => assert!(
            message.starts_with("Your request was rejected by the safety system."),
            "{message}"
        ),
        other => panic!("expected content-policy, got {other:?}"),
    }
}

#[test]
fn rate_limits_carry_the_retry_hint() {
    let server = OpenAiServer::start();
    server.script([Scripted::RateLimited {
        retry_after_secs: 7,
    }]);
    match openai_no_retries().generate(&request("gpt-image-1", "a cat"), &ctx(&server)) {
        Err(ProviderError::RateLimited {
            message,
            retry_after_ms,
        }) => {
            assert_eq!(retry_after_ms, Some(7000));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[test]
fn an_empty_balance_is_a_quota_error() {
    let server = OpenAiServer::start();
    server.script([Scripted::InsufficientQuota]);
    let result = openai_no_retries().generate(&request("dall-e-3", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Quota(m)) if m.contains("exceeded your current quota")),
        "{result:?}"
    );
}

#[test]
fn a_server_error_then_success_is_retried_by_the_host() {
    let server = OpenAiServer::start();
    server.script([Scripted::ServerError]);
    let generation =
        generate(&server, &request("dall-e-3", "a cat")).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(server.requests_to("/v1/images/generations").len(), 2);
}

#[test]
fn a_failing_server_is_a_server_error() {
    let server = OpenAiServer::start();
    server.script([Scripted::ServerError]);
    let result = openai_no_retries().generate(&request("dall-e-3", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.starts_with("OpenAI failed (500)") && m.contains("req_test_1")),
        "{result:?}"
    );
}

#[test]
fn a_slow_answer_times_out() {
    let provider = load(PACKAGE, read_timeout(Duration::from_millis(400)));
    let server = OpenAiServer::start();
    server.script([Scripted::Slow(Duration::from_secs(3))]);
    let result = provider.generate(&request("dall-e-3", "a cat"), &ctx(&server));
    assert!(
        matches!(result, Err(ProviderError::Timeout(_))),
        "{result:?}"
    );
}

#[test]
fn a_truncated_answer_fails_cleanly() {
    let server = OpenAiServer::start();
    server.script([Scripted::Truncated]);
    let result = openai_no_retries().generate(&request("gpt-image-1", "a cat"), &ctx(&server));
    match result {
        Err(error @ (ProviderError::Network(_) | ProviderError::Server(_))) => {
            assert!(!error.to_string().contains(TEST_KEY));
        }
        other => panic!("expected a network or server error, got {other:?}"),
    }
}

#[test]
fn malformed_json_is_a_server_error() {
    let server = OpenAiServer::start();
    server.script([Scripted::MalformedJson]);
    let result = generate(&server, &request("gpt-image-1", "a cat"));
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
    let server = OpenAiServer::start();
    server.script([Scripted::Oversized(2 * 1024 * 1024)]);
    let result = provider.generate(&request("gpt-image-1", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("too large")),
        "{result:?}"
    );
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let server = OpenAiServer::start();
    let cases = [
        (
            GenerateRequest {
                n: 2,
                ..request("dall-e-3", "a cat")
            },
            "dall-e-3 makes exactly 1 image(s) per request, not 2",
        ),
        (
            GenerateRequest {
                size: Some("512x512".into()),
                ..request("dall-e-3", "a cat")
            },
            "dall-e-3 takes size `1024x1024`, `1792x1024` or `1024x1792`, not `512x512`",
        ),
        (
            GenerateRequest {
                quality: Some("ultra".into()),
                ..request("gpt-image-1", "a cat")
            },
            "gpt-image-1 takes quality `auto`, `low`, `medium` or `high`, not `ultra`",
        ),
        (
            GenerateRequest {
                n: 11,
                ..request("dall-e-2", "a cat")
            },
            "dall-e-2 makes 1 to 10 image(s) per request, not 11",
        ),
        (
            request("dall-e-4", "a cat"),
            "OpenAI has no image model `dall-e-4`",
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
    let variations_of_dalle3 = EditRequest {
        mode: EditMode::Variations,
        base: request("dall-e-3", ""),
        images: vec![png_image(1)],
        mask: None,
        strength: None,
    };
    assert_eq!(
        openai()
            .edit(&variations_of_dalle3, &ctx(&server))
            .err()
            .map(|e| e.class()),
        Some("invalid-request")
    );
    assert!(
        server.requests().is_empty(),
        "nothing may be sent for an invalid request"
    );
}

/// Bytes that use every base64 character, different for each length.
fn varied_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32 ^ len as u32).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The plugin decodes `b64_json` inside WebAssembly, 128 characters at a time with SIMD and the
/// rest with the general decoder: every length around those sizes comes back byte for byte.
#[test]
fn images_of_every_length_decode_exactly() {
    let server = OpenAiServer::start();
    for len in (1..=400).chain([4095, 4096, 4097, 98_303, 98_304, 98_305]) {
        let data = varied_bytes(len);
        server.set_image(data.clone());
        let generation = generate(&server, &request("gpt-image-1", "a cat"))
            .unwrap_or_else(|err| panic!("{len} bytes: {err}"));
        assert!(generation.images[0].data == data, "{len} bytes differ");
    }
}

/// A character outside the alphabet anywhere (inside a SIMD block, at its edges, in the tail)
/// is an error that says what is wrong, never a wrong image.
#[test]
fn invalid_base64_is_a_server_error_wherever_it_is() {
    let server = OpenAiServer::start();
    let valid = imageai_tests::base64(&varied_bytes(3000));
    let positions = [
        0,
        1,
        15,
        16,
        17,
        63,
        64,
        127,
        128,
        129,
        2000,
        valid.len() - 5,
    ];
    let positions = positions.into_iter().chain(valid.len() - 4..valid.len());
    for (n, at) in positions.enumerate() {
        let bad = [
            '*', '-', '_', '.', ':', '@', '[', '`', '{', '~', '=', '\u{7f}',
        ][n % 12];
        let mut text = valid.clone();
        text.replace_range(at..=at, &bad.to_string());
        server.script([Scripted::Base64(text)]);
        let result = generate(&server, &request("gpt-image-1", "a cat"));
        assert!(
            matches!(&result, Err(ProviderError::Server(m)) if m.contains("not valid base64")),
            "{bad:?} at {at}: {result:?}"
        );
    }
}

/// Base64 folded into lines (as MIME tools write it) still decodes.
#[test]
fn base64_with_line_breaks_decodes() {
    let server = OpenAiServer::start();
    let data = varied_bytes(5000);
    let valid = imageai_tests::base64(&data);
    let folded: Vec<&str> = valid
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap_or_default())
        .collect();
    server.script([Scripted::Base64(folded.join("\r\n"))]);
    let generation =
        generate(&server, &request("gpt-image-1", "a cat")).unwrap_or_else(|err| panic!("{err}"));
    assert!(generation.images[0].data == data);
}
