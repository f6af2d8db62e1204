//! The real Stability AI plugin (`plugins/stability` built for wasm32-wasip2) in the real
//! runtime, against a local server that speaks Stability's v1 and v2beta APIs. Requests are
//! checked on the server side (method, path, bearer key, `accept`, multipart fields and JSON);
//! answers, warnings and failures on the plugin side.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use imageai_core::plugin::{RuntimeOptions, WasmProvider};
use imageai_core::{
    CallContext, EditMode, EditRequest, GenerateRequest, Generation, Image, Provider,
    ProviderError, Secret, UpscaleRequest,
};
use imageai_tests::Recorded;
use imageai_tests::openai_server::png;
use imageai_tests::plugins::{load, no_retries, only, quick_retries, read_timeout};
use imageai_tests::stability_server::{
    Form, RANDOM_SEED, Scripted, StabilityServer, TEST_KEY, fake_jpeg, fake_webp, form_of,
};
use serde_json::json;

const PACKAGE: &str = "imageai-plugin-stability";

/// The plugin with the default limits, but quick host retries.
const CORE: &str = "/v2beta/stable-image/generate/core";
const ULTRA: &str = "/v2beta/stable-image/generate/ultra";
const SD3: &str = "/v2beta/stable-image/generate/sd3";
const SDXL: &str = "/v1/generation/stable-diffusion-xl-1024-v1-0";

/// The plugin with the default limits, but quick host retries.
fn stability() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, quick_retries()))
}

/// The plugin with host retries off, so each scripted failure reaches it as is.
fn stability_no_retries() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| load(PACKAGE, no_retries()))
}

fn ctx(server: &StabilityServer) -> CallContext {
    ctx_with_key(server, Some(TEST_KEY))
}

fn ctx_with_key(server: &StabilityServer, key: Option<&str>) -> CallContext {
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

fn generate(
    server: &StabilityServer,
    request: &GenerateRequest,
) -> Result<Generation, ProviderError> {
    stability().generate(request, &ctx(server))
}

fn edit(server: &StabilityServer, request: &EditRequest) -> Result<Generation, ProviderError> {
    stability().edit(request, &ctx(server))
}

fn edit_request(mode: EditMode, base: GenerateRequest, image: Image) -> EditRequest {
    EditRequest {
        mode,
        base,
        images: vec![image],
        mask: None,
        strength: None,
    }
}

/// A v2beta call: POST, bearer key, `accept: image/*`, a multipart form.
fn v2_form(recorded: &Recorded) -> Form {
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(recorded.header("accept"), Some("image/*"));
    assert_eq!(recorded.header("stability-client-id"), Some("imageai"));
    form_of(recorded)
}

/// The text fields of a form, sorted, for exact comparisons.
fn texts(form: &Form) -> BTreeMap<String, String> {
    form.parts
        .iter()
        .filter(|p| p.filename.is_none())
        .map(|p| {
            (
                p.name.clone(),
                String::from_utf8_lossy(&p.data).into_owned(),
            )
        })
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn png_image(width: u32, height: u32, seed: u32) -> Image {
    Image {
        mime: "image/png".into(),
        data: png(width, height, seed),
    }
}

#[test]
fn info_lists_every_service_with_its_options() {
    let info = stability().info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.id, "stability");
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "stable-image-core",
            "sd3.5-large",
            "sd3.5-large-turbo",
            "sd3.5-medium",
            "sd3.5-flash",
            "stable-image-ultra",
            "stable-image-edit",
            "upscale-fast",
            "upscale-conservative",
            "upscale-creative",
            "stable-diffusion-xl-1024-v1-0"
        ]
    );
    let core = info
        .model("stable-image-core")
        .unwrap_or_else(|| panic!("no core"));
    assert_eq!(core.aspect_ratios.len(), 9);
    assert!(core.styles.contains(&"photographic".to_owned()));
    let edit = info
        .model("stable-image-edit")
        .unwrap_or_else(|| panic!("no edit"));
    for option in ["grow_mask", "left=", "creativity", "search_prompt"] {
        assert!(
            edit.description.contains(option),
            "`{option}` is documented: {}",
            edit.description
        );
    }
    let sdxl = info
        .model("stable-diffusion-xl-1024-v1-0")
        .unwrap_or_else(|| panic!("no sdxl"));
    assert_eq!(sdxl.max_n, 10);
    assert!(sdxl.sizes.contains(&"1216x832".to_owned()) && sdxl.description.contains("sampler"));
}

#[test]
fn core_text_to_image_sends_every_field_and_reads_the_seed_header() {
    let server = StabilityServer::start();
    let mut request = GenerateRequest {
        negative_prompt: Some("blurry".into()),
        aspect_ratio: Some("21:9".into()),
        seed: Some(77),
        output_format: Some("png".into()),
        ..request("stable-image-core", "a lighthouse at dusk")
    };
    request
        .extra
        .insert("style_preset".into(), "cinematic".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let form = v2_form(&only(server.requests_to(CORE)));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "a lighthouse at dusk"),
            ("negative_prompt", "blurry"),
            ("aspect_ratio", "21:9"),
            ("seed", "77"),
            ("output_format", "png"),
            ("style_preset", "cinematic")
        ])
    );
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].mime, "image/png");
    assert_eq!(generation.images[0].data, server.image());
    assert_eq!(generation.seed, Some(77));
    assert_eq!(generation.finish_reason.as_deref(), Some("SUCCESS"));
    assert!(generation.warnings.is_empty());
}

#[test]
fn an_empty_model_means_core_and_style_works_as_the_style_preset() {
    let server = StabilityServer::start();
    let generation = generate(
        &server,
        &GenerateRequest {
            style: Some("anime".into()),
            output_format: Some("webp".into()),
            ..request("", "a fox")
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let form = v2_form(&only(server.requests_to(CORE)));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "a fox"),
            ("output_format", "webp"),
            ("style_preset", "anime")
        ])
    );
    assert_eq!(generation.images[0].mime, "image/webp");
    assert_eq!(generation.images[0].data, fake_webp());
    assert_eq!(generation.seed, Some(RANDOM_SEED));
}

#[test]
fn sd3_sends_model_mode_and_cfg_scale_and_one_request_per_image() {
    let server = StabilityServer::start();
    let request = GenerateRequest {
        n: 3,
        seed: Some(10),
        guidance: Some(4.5),
        output_format: Some("jpeg".into()),
        ..request("sd3.5-large-turbo", "a red fox")
    };
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let sent = server.requests_to(SD3);
    assert_eq!(sent.len(), 3);
    for (i, recorded) in sent.iter().enumerate() {
        let seed = (10 + i).to_string();
        assert_eq!(
            texts(&v2_form(recorded)),
            fields(&[
                ("prompt", "a red fox"),
                ("model", "sd3.5-large-turbo"),
                ("mode", "text-to-image"),
                ("seed", &seed),
                ("output_format", "jpeg"),
                ("cfg_scale", "4.5")
            ])
        );
    }
    assert_eq!(generation.images.len(), 3);
    assert!(
        generation
            .images
            .iter()
            .all(|i| i.mime == "image/jpeg" && i.data == fake_jpeg())
    );
    assert_eq!(generation.seed, Some(10));
    assert_eq!(
        generation.metadata.get("seeds").map(String::as_str),
        Some("10,11,12")
    );
}

#[test]
fn ultra_image_to_image_uploads_the_image_with_the_strength() {
    let server = StabilityServer::start();
    let source = png_image(96, 96, 1);
    let request = EditRequest {
        strength: Some(0.35),
        ..edit_request(
            EditMode::Edit,
            request("stable-image-ultra", "make it autumn"),
            source.clone(),
        )
    };
    let generation = edit(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let form = v2_form(&only(server.requests_to(ULTRA)));
    assert_eq!(
        texts(&form),
        fields(&[("prompt", "make it autumn"), ("strength", "0.35")])
    );
    let image = form
        .file("image")
        .unwrap_or_else(|| panic!("no image part"));
    assert_eq!(image.data, source.data);
    assert_eq!(image.content_type.as_deref(), Some("image/png"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(
        generation.metadata.get("strength").map(String::as_str),
        Some("0.35")
    );
}

#[test]
fn sd3_image_to_image_defaults_to_sd3_5_large_and_half_strength() {
    let server = StabilityServer::start();
    let source = png_image(80, 80, 2);
    let generation = edit(
        &server,
        &edit_request(EditMode::Edit, request("", "make it snow"), source.clone()),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let form = v2_form(&only(server.requests_to(SD3)));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "make it snow"),
            ("model", "sd3.5-large"),
            ("mode", "image-to-image"),
            ("strength", "0.5")
        ])
    );
    assert_eq!(
        form.file("image").map(|p| p.data.clone()),
        Some(source.data)
    );
    assert_eq!(
        generation.metadata.get("strength").map(String::as_str),
        Some("0.5")
    );
}

#[test]
fn inpaint_sends_the_mask_or_relies_on_transparency() {
    let server = StabilityServer::start();
    let (source, mask) = (png_image(128, 128, 1), png_image(128, 128, 2));
    let mut base = GenerateRequest {
        seed: Some(5),
        negative_prompt: Some("text".into()),
        ..request("stable-image-edit", "a red hat")
    };
    base.extra.insert("grow_mask".into(), "8".into());
    let with_mask = EditRequest {
        mask: Some(mask.clone()),
        ..edit_request(EditMode::Inpaint, base, source.clone())
    };
    edit(&server, &with_mask).unwrap_or_else(|err| panic!("{err}"));
    edit(
        &server,
        &edit_request(EditMode::Inpaint, request("", "a red hat"), source.clone()),
    )
    .unwrap_or_else(|err| panic!("{err}"));

    let sent = server.requests_to("/v2beta/stable-image/edit/inpaint");
    assert_eq!(sent.len(), 2);
    let first = v2_form(&sent[0]);
    assert_eq!(
        texts(&first),
        fields(&[
            ("prompt", "a red hat"),
            ("negative_prompt", "text"),
            ("grow_mask", "8"),
            ("seed", "5")
        ])
    );
    assert_eq!(
        first.file("image").map(|p| p.data.clone()),
        Some(source.data)
    );
    assert_eq!(first.file("mask").map(|p| p.data.clone()), Some(mask.data));
    let second = v2_form(&sent[1]);
    assert!(
        second.file("mask").is_none(),
        "without a mask the image's alpha marks the area"
    );
}

#[test]
fn erase_sends_no_prompt_and_says_one_given_was_ignored() {
    let server = StabilityServer::start();
    let mut base = request("stable-image-edit", "remove the bird");
    base.extra.insert("grow_mask".into(), "3".into());
    let request = EditRequest {
        mask: Some(png_image(100, 100, 2)),
        ..edit_request(EditMode::Erase, base, png_image(100, 100, 1))
    };
    let generation = edit(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    let form = v2_form(&only(server.requests_to("/v2beta/stable-image/edit/erase")));
    assert_eq!(texts(&form), fields(&[("grow_mask", "3")]));
    assert!(form.file("image").is_some() && form.file("mask").is_some());
    assert_eq!(generation.images.len(), 1);
    assert_eq!(
        generation.warnings,
        ["Erasing takes no prompt; the prompt was not sent."]
    );
}

#[test]
fn outpaint_sends_the_sides_and_creativity() {
    let server = StabilityServer::start();
    let mut base = GenerateRequest {
        output_format: Some("jpeg".into()),
        ..request("stable-image-edit", "more beach")
    };
    for (side, pixels) in [("left", "200"), ("right", "0"), ("up", "64"), ("down", "0")] {
        base.extra.insert(side.into(), pixels.into());
    }
    base.extra.insert("creativity".into(), "0.7".into());
    let generation = edit(
        &server,
        &edit_request(EditMode::Outpaint, base, png_image(64, 64, 1)),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let form = v2_form(&only(
        server.requests_to("/v2beta/stable-image/edit/outpaint"),
    ));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "more beach"),
            ("left", "200"),
            ("right", "0"),
            ("up", "64"),
            ("down", "0"),
            ("creativity", "0.7"),
            ("output_format", "jpeg")
        ])
    );
    assert_eq!(generation.images[0].mime, "image/jpeg");
}

#[test]
fn search_and_replace_sends_the_search_prompt() {
    let server = StabilityServer::start();
    let mut base = GenerateRequest {
        style: Some("photographic".into()),
        ..request("stable-image-edit", "a golden retriever")
    };
    base.extra.insert("search_prompt".into(), "the cat".into());
    edit(
        &server,
        &edit_request(EditMode::SearchReplace, base, png_image(64, 96, 1)),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let form = v2_form(&only(
        server.requests_to("/v2beta/stable-image/edit/search-and-replace"),
    ));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "a golden retriever"),
            ("search_prompt", "the cat"),
            ("style_preset", "photographic")
        ])
    );
}

#[test]
fn fast_and_conservative_upscales_answer_at_once() {
    let server = StabilityServer::start();
    let source = png_image(64, 64, 1);
    let fast = stability().upscale(
        &UpscaleRequest {
            model: String::new(),
            image: source.clone(),
            scale: Some(4),
            prompt: None,
            negative_prompt: None,
            seed: None,
            output_format: Some("webp".into()),
            extra: BTreeMap::new(),
        },
        &ctx(&server),
    );
    let fast = fast.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(fast.images[0].mime, "image/webp");
    let form = v2_form(&only(
        server.requests_to("/v2beta/stable-image/upscale/fast"),
    ));
    assert_eq!(texts(&form), fields(&[("output_format", "webp")]));
    assert_eq!(
        form.file("image").map(|p| p.data.clone()),
        Some(source.data.clone())
    );

    let conservative = UpscaleRequest {
        model: "upscale-conservative".into(),
        image: source,
        scale: None,
        prompt: Some("a fox in snow".into()),
        negative_prompt: Some("noise".into()),
        seed: Some(9),
        output_format: None,
        extra: BTreeMap::from([("creativity".to_owned(), "0.25".to_owned())]),
    };
    let generation = stability()
        .upscale(&conservative, &ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.seed, Some(9));
    let form = v2_form(&only(
        server.requests_to("/v2beta/stable-image/upscale/conservative"),
    ));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "a fox in snow"),
            ("negative_prompt", "noise"),
            ("seed", "9"),
            ("creativity", "0.25")
        ])
    );
}

fn creative_request() -> UpscaleRequest {
    UpscaleRequest {
        model: "upscale-creative".into(),
        image: png_image(64, 64, 1),
        scale: None,
        prompt: Some("a fox in snow".into()),
        negative_prompt: None,
        seed: None,
        output_format: None,
        extra: BTreeMap::from([
            ("creativity".to_owned(), "0.3".to_owned()),
            ("style_preset".to_owned(), "enhance".to_owned()),
        ]),
    }
}

#[test]
fn creative_upscale_polls_the_result_with_backoff_and_reports_progress() {
    let server = StabilityServer::start();
    server.set_pending_polls(3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut ctx = ctx(&server);
    ctx.progress = Some(Arc::new(move |fraction, message: &str| {
        if let Ok(mut seen) = sink.lock() {
            seen.push((fraction, message.to_owned()));
        }
    }));
    let started = Instant::now();
    let generation = stability()
        .upscale(&creative_request(), &ctx)
        .unwrap_or_else(|err| panic!("{err}"));
    let elapsed = started.elapsed();

    let form = v2_form(&only(
        server.requests_to("/v2beta/stable-image/upscale/creative"),
    ));
    assert_eq!(
        texts(&form),
        fields(&[
            ("prompt", "a fox in snow"),
            ("creativity", "0.3"),
            ("style_preset", "enhance")
        ])
    );
    let polls: Vec<Recorded> = server
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/v2beta/results/"))
        .collect();
    assert_eq!(polls.len(), 4, "three 202s, then the result");
    let id = generation
        .metadata
        .get("generation_id")
        .cloned()
        .unwrap_or_default();
    assert_eq!(id.len(), 64);
    for poll in &polls {
        assert_eq!(poll.method, "GET");
        assert_eq!(poll.path(), format!("/v2beta/results/{id}"));
        assert_eq!(
            poll.header("authorization"),
            Some(format!("Bearer {TEST_KEY}").as_str())
        );
        assert_eq!(poll.header("accept"), Some("image/*"));
    }
    // Waits of 0.5 s, 0.75 s and 1.125 s between the polls.
    assert!(
        elapsed >= Duration::from_millis(2300),
        "the backoff grows: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(generation.images[0].data, server.image());
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let fractions: Vec<f32> = seen.iter().map(|(f, _)| *f).collect();
    assert!(
        fractions.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {fractions:?}"
    );
    assert!(
        seen.iter()
            .filter(|(_, m)| m.contains("creative upscaler is working"))
            .count()
            == 3,
        "{seen:?}"
    );
    assert_eq!(seen.last().map(|(f, _)| *f), Some(1.0));
}

#[test]
fn cancelling_a_creative_upscale_stops_the_polling() {
    let server = StabilityServer::start();
    server.set_pending_polls(1000);
    let ctx = ctx(&server);
    let token = ctx.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        token.cancel();
    });
    let started = Instant::now();
    let result = stability().upscale(&creative_request(), &ctx);
    assert_eq!(result, Err(ProviderError::Cancelled));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let _ = canceller.join();
    let polls = server
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/v2beta/results/"))
        .count();
    assert!((1..=3).contains(&polls), "{polls} polls");
}

#[test]
fn an_expired_result_says_so() {
    let server = StabilityServer::start();
    server.set_pending_polls(1);
    server.expire_results();
    let result = stability().upscale(&creative_request(), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("expired") && m.contains("24 hours")),
        "{result:?}"
    );
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path().starts_with("/v2beta/results/"))
            .count(),
        2
    );
}

#[test]
fn sdxl_text_to_image_sends_the_v1_json_body() {
    let server = StabilityServer::start();
    let mut request = GenerateRequest {
        negative_prompt: Some("blurry".into()),
        n: 3,
        size: Some("1216x832".into()),
        seed: Some(100),
        steps: Some(40),
        guidance: Some(7.5),
        style: Some("fantasy-art".into()),
        ..request("stable-diffusion-xl-1024-v1-0", "a castle on a hill")
    };
    request.extra.insert("sampler".into(), "K_DPMPP_2M".into());
    let generation = generate(&server, &request).unwrap_or_else(|err| panic!("{err}"));

    let sent = only(server.requests_to(&format!("{SDXL}/text-to-image")));
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(sent.header("accept"), Some("application/json"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.json(),
        json!({"text_prompts": [{"text": "a castle on a hill", "weight": 1.0}, {"text": "blurry", "weight": -1.0}],
               "width": 1216, "height": 832, "samples": 3, "cfg_scale": 7.5, "sampler": "K_DPMPP_2M", "seed": 100, "steps": 40,
               "style_preset": "fantasy-art"})
    );
    assert_eq!(generation.images.len(), 3);
    assert_eq!(generation.seed, Some(100));
    assert_eq!(
        generation.metadata.get("seeds").map(String::as_str),
        Some("100,101,102")
    );
    assert!(generation.images.iter().all(|i| i.data == server.image()));
}

#[test]
fn sdxl_image_to_image_inverts_the_strength_into_image_strength() {
    let server = StabilityServer::start();
    let source = png_image(1024, 1024, 1);
    let request = EditRequest {
        strength: Some(0.35),
        ..edit_request(
            EditMode::Edit,
            GenerateRequest {
                n: 2,
                ..request("stable-diffusion-xl-1024-v1-0", "winter")
            },
            source.clone(),
        )
    };
    let generation = edit(&server, &request).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 2);
    let sent = only(server.requests_to(&format!("{SDXL}/image-to-image")));
    assert_eq!(sent.header("accept"), Some("application/json"));
    let form = form_of(&sent);
    assert_eq!(
        texts(&form),
        fields(&[
            ("text_prompts[0][text]", "winter"),
            ("text_prompts[0][weight]", "1"),
            ("samples", "2"),
            ("init_image_mode", "IMAGE_STRENGTH"),
            ("image_strength", "0.65")
        ])
    );
    assert_eq!(
        form.file("init_image").map(|p| p.data.clone()),
        Some(source.data)
    );
}

#[test]
fn sdxl_masking_sends_the_mask_source() {
    let server = StabilityServer::start();
    let (source, mask) = (png_image(1024, 1024, 1), png_image(1024, 1024, 2));
    let mut base = request("stable-diffusion-xl-1024-v1-0", "a red door");
    base.extra
        .insert("mask_source".into(), "MASK_IMAGE_BLACK".into());
    edit(
        &server,
        &EditRequest {
            mask: Some(mask.clone()),
            ..edit_request(EditMode::Inpaint, base, source.clone())
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
    edit(
        &server,
        &edit_request(
            EditMode::Inpaint,
            request("stable-diffusion-xl-1024-v1-0", "a red door"),
            source,
        ),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let sent = server.requests_to(&format!("{SDXL}/image-to-image/masking"));
    assert_eq!(sent.len(), 2);
    let black = form_of(&sent[0]);
    assert_eq!(
        black.text("mask_source").as_deref(),
        Some("MASK_IMAGE_BLACK")
    );
    assert_eq!(
        black.file("mask_image").map(|p| p.data.clone()),
        Some(mask.data)
    );
    let alpha = form_of(&sent[1]);
    assert_eq!(
        alpha.text("mask_source").as_deref(),
        Some("INIT_IMAGE_ALPHA")
    );
    assert!(alpha.file("mask_image").is_none());
}

#[test]
fn an_engine_the_key_lacks_lists_the_ones_it_has() {
    let server = StabilityServer::start();
    server.set_engines(&["stable-diffusion-v1-6", "esrgan-v1-x2plus"]);
    let result = generate(
        &server,
        &request("stable-diffusion-xl-1024-v1-0", "a castle"),
    );
    match result {
        Err(ProviderError::InvalidRequest(message)) => {
            assert!(
                message.contains("`stable-diffusion-xl-1024-v1-0` is not available to this key"),
                "{message}"
            );
            assert!(
                message.contains("`esrgan-v1-x2plus` or `stable-diffusion-v1-6`"),
                "{message}"
            );
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
    let list = only(server.requests_to("/v1/engines/list"));
    assert_eq!(list.method, "GET");
    assert_eq!(
        list.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
}

#[test]
fn check_key_reads_the_balance() {
    let server = StabilityServer::start();
    stability()
        .check_key(&ctx(&server))
        .unwrap_or_else(|err| panic!("{err}"));
    let sent = only(server.requests_to("/v1/user/balance"));
    assert_eq!(sent.method, "GET");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );

    server.set_credits(0.0);
    let empty = stability().check_key(&ctx(&server));
    assert!(
        matches!(&empty, Err(ProviderError::Quota(m)) if m.contains("the key works") && m.contains("account/credits")),
        "{empty:?}"
    );

    let wrong = stability().check_key(&ctx_with_key(&server, Some("sk-wrong-000000000000000000")));
    assert!(
        matches!(&wrong, Err(ProviderError::Auth(m)) if m.contains("imageai keys set stability")),
        "{wrong:?}"
    );
}

#[test]
fn a_missing_key_says_how_to_set_one() {
    let server = StabilityServer::start();
    match stability().generate(
        &request("stable-image-core", "a cat"),
        &ctx_with_key(&server, None),
    ) {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("imageai keys set stability"), "{message}")
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[test]
fn a_rejected_key_is_an_auth_error() {
    let server = StabilityServer::start();
    server.script([Scripted::InvalidKey]);
    let result = generate(&server, &request("stable-image-core", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Auth(m)) if m.starts_with("Stability rejected the key (401)")),
        "{result:?}"
    );
}

#[test]
fn no_credits_is_a_quota_error() {
    let server = StabilityServer::start();
    server.script([Scripted::NoCredits]);
    let result = generate(&server, &request("stable-image-ultra", "a cat"));
    assert!(
        matches!(&result, Err(ProviderError::Quota(m)) if m.contains("sufficient credits") && m.contains("account/credits")),
        "{result:?}"
    );
}

#[test]
fn moderation_is_a_content_policy_error() {
    let server = StabilityServer::start();
    server.script([Scripted::ContentModeration]);
    let result = generate(&server, &request("sd3.5-large", "something refused"));
    assert!(
        matches!(&result, Err(ProviderError::ContentPolicy(m)) if m.contains("flagged by our content moderation")),
        "{result:?}"
    );
}

#[test]
fn too_large_and_unprocessable_requests_say_what_to_change() {
    let server = StabilityServer::start();
    server.script([Scripted::TooLarge, Scripted::Unprocessable]);
    let large = edit(
        &server,
        &edit_request(
            EditMode::Erase,
            request("stable-image-edit", ""),
            png_image(64, 64, 1),
        ),
    );
    assert!(
        matches!(&large, Err(ProviderError::InvalidRequest(m)) if m.contains("413") && m.contains("under 10 MiB")),
        "{large:?}"
    );
    let language = generate(&server, &request("stable-image-core", "un renard roux"));
    assert!(
        matches!(&language, Err(ProviderError::InvalidRequest(m)) if m.contains("(422)") && m.contains("English is the only supported language")),
        "{language:?}"
    );
}

#[test]
fn blurred_images_come_back_with_a_warning() {
    let server = StabilityServer::start();
    server.script([Scripted::ContentFiltered, Scripted::ContentFiltered]);
    let v2 = generate(&server, &request("stable-image-core", "a beach"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(v2.images.len(), 1);
    assert_eq!(v2.finish_reason.as_deref(), Some("CONTENT_FILTERED"));
    assert_eq!(v2.warnings.len(), 1);
    assert!(
        v2.warnings[0].contains("blurred the image"),
        "{:?}",
        v2.warnings
    );
    let v1 = generate(
        &server,
        &GenerateRequest {
            n: 2,
            ..request("stable-diffusion-xl-1024-v1-0", "a beach")
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(v1.images.len(), 2);
    assert_eq!(v1.warnings.len(), 1);
    assert!(
        v1.warnings[0].contains("blurred image 1 of 2"),
        "{:?}",
        v1.warnings
    );
}

#[test]
fn rate_limits_carry_the_retry_hint() {
    let server = StabilityServer::start();
    server.script([
        Scripted::RateLimited {
            retry_after_secs: Some(7),
        },
        Scripted::RateLimited {
            retry_after_secs: None,
        },
    ]);
    for expected in [7_000, 60_000] {
        match stability_no_retries().generate(&request("stable-image-core", "a cat"), &ctx(&server))
        {
            Err(ProviderError::RateLimited {
                message,
                retry_after_ms,
            }) => {
                assert_eq!(retry_after_ms, Some(expected));
                assert!(message.contains("150 per 10 s"), "{message}");
            }
            other => panic!("expected rate-limited, got {other:?}"),
        }
    }
}

#[test]
fn a_rate_limit_then_success_is_retried_by_the_host() {
    let server = StabilityServer::start();
    server.script([Scripted::RateLimited {
        retry_after_secs: Some(0),
    }]);
    let generation = generate(&server, &request("stable-image-core", "a cat"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(server.requests_to(CORE).len(), 2);
}

#[test]
fn a_server_error_then_success_is_retried_by_the_host() {
    let server = StabilityServer::start();
    server.script([Scripted::ServerError]);
    let generation = generate(&server, &request("stable-diffusion-xl-1024-v1-0", "a cat"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(
        server.requests_to(&format!("{SDXL}/text-to-image")).len(),
        2
    );
}

#[test]
fn a_failing_server_is_a_server_error() {
    let server = StabilityServer::start();
    server.script([Scripted::ServerError]);
    let result =
        stability_no_retries().generate(&request("stable-image-core", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.starts_with("Stability failed (500)") && m.contains("error id err-500-server_error")),
        "{result:?}"
    );
}

#[test]
fn a_slow_answer_times_out() {
    let provider = load(PACKAGE, read_timeout(Duration::from_millis(400)));
    let server = StabilityServer::start();
    server.script([Scripted::Slow(Duration::from_secs(3))]);
    let result = provider.generate(&request("stable-image-core", "a cat"), &ctx(&server));
    assert!(
        matches!(result, Err(ProviderError::Timeout(_))),
        "{result:?}"
    );
}

#[test]
fn a_truncated_answer_fails_cleanly() {
    let server = StabilityServer::start();
    server.script([Scripted::Truncated]);
    match stability_no_retries().generate(&request("stable-image-core", "a cat"), &ctx(&server)) {
        Err(error @ (ProviderError::Network(_) | ProviderError::Server(_))) => {
            assert!(!error.to_string().contains(TEST_KEY))
        }
        other => panic!("expected a network or server error, got {other:?}"),
    }
}

#[test]
fn malformed_bodies_are_server_errors() {
    let server = StabilityServer::start();
    server.script([Scripted::MalformedBody, Scripted::MalformedBody]);
    let v2 = generate(&server, &request("stable-image-core", "a cat"));
    assert!(
        matches!(&v2, Err(ProviderError::Server(m)) if m.contains("not an image")),
        "{v2:?}"
    );
    let v1 = generate(&server, &request("stable-diffusion-xl-1024-v1-0", "a cat"));
    assert!(
        matches!(&v1, Err(ProviderError::Server(m)) if m.contains("cut off") || m.contains("not the JSON expected")),
        "{v1:?}"
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
    let server = StabilityServer::start();
    server.script([Scripted::Oversized(2 * 1024 * 1024)]);
    let result = provider.generate(&request("stable-image-core", "a cat"), &ctx(&server));
    assert!(
        matches!(&result, Err(ProviderError::Server(m)) if m.contains("too large")),
        "{result:?}"
    );
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let server = StabilityServer::start();
    let cases = [
        (
            GenerateRequest {
                size: Some("1024x1024".into()),
                ..request("stable-image-core", "a cat")
            },
            "stable-image-core takes an aspect ratio",
        ),
        (
            GenerateRequest {
                n: 5,
                ..request("stable-image-ultra", "a cat")
            },
            "stable-image-ultra makes 1 to 4 image(s) per request, not 5",
        ),
        (
            GenerateRequest {
                output_format: Some("webp".into()),
                ..request("sd3.5-medium", "a cat")
            },
            "sd3.5-medium takes output format `png` or `jpeg`",
        ),
        (
            GenerateRequest {
                size: Some("512x512".into()),
                ..request("stable-diffusion-xl-1024-v1-0", "a cat")
            },
            "stable-diffusion-xl-1024-v1-0 takes size",
        ),
        (
            GenerateRequest {
                style: Some("watercolour".into()),
                ..request("stable-image-core", "a cat")
            },
            "Stability has no style preset `watercolour`",
        ),
        (
            request("upscale-fast", "a cat"),
            "upscale-fast upscales images",
        ),
        (request("sd4", "a cat"), "Stability AI has no model `sd4`"),
    ];
    for (request, expected) in cases {
        match generate(&server, &request) {
            Err(ProviderError::InvalidRequest(message)) => {
                assert!(message.starts_with(expected), "{message}")
            }
            other => panic!("expected invalid-request for {request:?}, got {other:?}"),
        }
    }
    let no_sides = edit_request(
        EditMode::Outpaint,
        request("stable-image-edit", ""),
        png_image(64, 64, 1),
    );
    assert!(
        matches!(edit(&server, &no_sides), Err(ProviderError::InvalidRequest(m)) if m.contains("left="))
    );
    let tiny = edit_request(
        EditMode::Inpaint,
        request("stable-image-edit", "x"),
        png_image(32, 32, 1),
    );
    assert!(
        matches!(edit(&server, &tiny), Err(ProviderError::InvalidRequest(m)) if m.contains("at least 64 px"))
    );
    let core_edit = edit_request(
        EditMode::Edit,
        request("stable-image-core", "x"),
        png_image(64, 64, 1),
    );
    assert!(
        matches!(edit(&server, &core_edit), Err(ProviderError::InvalidRequest(m)) if m.contains("does no image-to-image"))
    );
    let no_prompt = UpscaleRequest {
        prompt: None,
        ..creative_request()
    };
    assert!(
        matches!(stability().upscale(&no_prompt, &ctx(&server)), Err(ProviderError::InvalidRequest(m)) if m.contains("needs a prompt"))
    );
    assert!(
        server.requests().is_empty(),
        "nothing may be sent for an invalid request"
    );
}
