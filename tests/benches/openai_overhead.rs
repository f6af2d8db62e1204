//! What running OpenAI's provider as a sandboxed plugin costs over calling the API natively.
//!
//! Both sides make the same generation call to the same local OpenAI-format server and both parse
//! the JSON and decode the image:
//! - `plugin`: the real openai `.wasm` in the real runtime (the plugin's warm instance, as every
//!   call after the first gets by default; host HTTP; JSON and base64 inside WebAssembly; the
//!   image copied out through the component ABI);
//! - `plugin, fresh instance`: the same with `reuse_instances: false` (a new instance per call);
//! - `direct reqwest`: the same request with reqwest from native code.
//!
//! Two answer sizes separate the fixed cost per call from the cost per byte: ~100 KB (a noise PNG
//! of ~75 KB, base64 in JSON: a realistic small image) and ~1 KB.
//! Target: the plugin within 5 % of the direct call for the ~100 KB answer. Run with
//! `cargo bench -p imageai-tests --bench openai_overhead`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use imageai_core::plugin::{Runtime, RuntimeOptions};
use imageai_core::{CallContext, GenerateRequest, Provider, Secret};
use imageai_tests::openai_server::{OpenAiServer, TEST_KEY, noise_png};
use imageai_tests::plugins::plugin_dir;

const PROMPT: &str = "a lighthouse on a cliff at dusk, oil painting";

fn overhead(c: &mut Criterion) {
    let server = OpenAiServer::start();
    // `IMAGEAI_BENCH_KEEP_RESIDENT` (bytes) tries other pool settings.
    let mut options = RuntimeOptions::default();
    if let Some(bytes) = std::env::var("IMAGEAI_BENCH_KEEP_RESIDENT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.keep_resident = bytes;
    }
    let runtime = Runtime::new(options.clone())
        .unwrap_or_else(|err| panic!("could not start the runtime: {err}"));
    let provider = runtime
        .load(&plugin_dir("imageai-plugin-openai"))
        .unwrap_or_else(|err| panic!("could not load the openai plugin: {err}"));
    let fresh = Runtime::new(RuntimeOptions {
        reuse_instances: false,
        ..options
    })
    .and_then(|runtime| runtime.load(&plugin_dir("imageai-plugin-openai")))
    .unwrap_or_else(|err| panic!("could not load the openai plugin: {err}"));
    let settings = BTreeMap::from([("base_url".to_owned(), server.base_url())]);
    let ctx = CallContext::new(Some(Secret::new(TEST_KEY)), settings);
    let request = GenerateRequest {
        model: "gpt-image-1".into(),
        prompt: PROMPT.into(),
        ..GenerateRequest::default()
    };

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("could not start tokio: {err}"));
    let client = reqwest::Client::new();
    let url = format!("{}/images/generations", server.base_url());
    let direct = || {
        tokio.block_on(async {
            let body = serde_json::json!({"model": "gpt-image-1", "prompt": PROMPT, "n": 1});
            let response = client
                .post(&url)
                .bearer_auth(TEST_KEY)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|err| panic!("direct request failed: {err}"));
            let bytes = response
                .bytes()
                .await
                .unwrap_or_else(|err| panic!("direct body failed: {err}"));
            let answer: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|err| panic!("{err}"));
            let Some(b64) = answer["data"][0]["b64_json"].as_str() else {
                let start = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
                panic!("the server's answer has no image: {start}")
            };
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_else(|err| panic!("{err}"))
        })
    };

    for (label, png_bytes) in [("~100 KB answer", 64_500), ("~1 KB answer", 700)] {
        let image = noise_png(png_bytes, 42);
        server.set_image(image.clone());
        // Both paths must do the full job before their time means anything.
        let via_plugin = provider
            .generate(&request, &ctx)
            .unwrap_or_else(|err| panic!("plugin call failed: {err}"));
        assert!(
            via_plugin.images.first().is_some_and(|i| i.data == image),
            "the plugin's image differs"
        );
        assert!(direct() == image, "the direct call's image differs");
        let base64_len = base64::engine::general_purpose::STANDARD
            .encode(&image)
            .len();
        eprintln!(
            "{label}: a {} byte PNG, {base64_len} bytes of base64",
            image.len()
        );

        let mut group = c.benchmark_group(format!("openai generate, {label}"));
        group
            .sample_size(60)
            .measurement_time(Duration::from_secs(10));
        for (name, plugin) in [
            ("plugin (wasm, host HTTP)", &provider),
            ("plugin, fresh instance per call", &fresh),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| {
                    black_box(
                        plugin
                            .generate(&request, &ctx)
                            .unwrap_or_else(|err| panic!("{err}")),
                    )
                })
            });
        }
        group.bench_function("direct reqwest", |b| b.iter(|| black_box(direct())));
        group.finish();
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
