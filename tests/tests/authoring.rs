//! Plugin authoring end to end: scaffold a plugin crate with `new_plugin`, build it with
//! `build_plugin` (real cargo, wasm32-wasip2), load the result in the real runtime, and make a
//! real call against a local server, as a plugin author would on day one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use imageai_core::authoring::{SdkSource, build_plugin, new_plugin};
use imageai_core::plugin::{Runtime, RuntimeOptions};
use imageai_core::{CallContext, GenerateRequest, Provider, Secret};
use imageai_tests::openai_server::png;
use imageai_tests::{Reply, TestServer};
use serde_json::json;

fn workspace_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests
        .parent()
        .map_or_else(|| tests.to_path_buf(), Path::to_path_buf)
}

/// This workspace's target folder, so the scaffold's dependencies are compiled once, not per run.
fn shared_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

#[test]
fn a_scaffolded_plugin_builds_loads_and_generates() {
    let parent = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let crate_dir = new_plugin(
        "acme-images",
        parent.path(),
        SdkSource::Path(workspace_root().join("sdk")),
    )
    .unwrap_or_else(|err| panic!("scaffolding failed: {err}"));

    // Build offline, in the shared target folder, with this workspace's lock file: every
    // dependency of the scaffold is then already in the local registry cache, at the same version.
    let config = format!(
        "[net]\noffline = true\n\n[build]\ntarget-dir = {}\n",
        toml_string(&shared_target_dir().to_string_lossy())
    );
    std::fs::create_dir_all(crate_dir.join(".cargo")).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(crate_dir.join(".cargo/config.toml"), config)
        .unwrap_or_else(|err| panic!("{err}"));
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap_or_else(|err| panic!("{err}"));

    let built = build_plugin(&crate_dir, false)
        .unwrap_or_else(|err| panic!("building the scaffold failed: {err}"));
    assert_eq!(built.manifest_id, "acme-images");
    assert!(
        built.dir.ends_with("imageai-plugin/acme-images"),
        "{}",
        built.dir.display()
    );
    assert!(built.dir.join("plugin.toml").is_file() && built.dir.join("plugin.wasm").is_file());

    let runtime = Runtime::new(RuntimeOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    let provider = runtime
        .load(&built.dir)
        .unwrap_or_else(|err| panic!("the scaffold does not load: {err}"));
    assert_eq!(provider.manifest().id, "acme-images");
    let info = provider.info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(info.id, "acme-images");
    assert_eq!(info.name, "Acme Images");
    assert_eq!(
        info.models
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["image-1"]
    );

    // The template is a working provider for an OpenAI-compatible API at `base_url`.
    let image = png(16, 16, 3);
    let answer =
        json!({"data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(&image)}]});
    let server = TestServer::start(move |request| match request.path() {
        "/v1/images/generations" => {
            Reply::json(200, &answer).header("x-request-id", "req_scaffold")
        }
        _ => Reply::json(404, &json!({"error": {"message": "no such route"}})),
    });
    let settings = BTreeMap::from([("base_url".to_owned(), format!("{}/v1", server.url()))]);
    let ctx = CallContext::new(Some(Secret::new("acme-key-123")), settings);
    let request = GenerateRequest {
        model: "image-1".into(),
        prompt: "a lighthouse".into(),
        n: 1,
        ..GenerateRequest::default()
    };
    let generation = provider
        .generate(&request, &ctx)
        .unwrap_or_else(|err| panic!("the scaffold's generate failed: {err}"));
    assert_eq!(generation.images.first().map(|i| &i.data), Some(&image));
    assert_eq!(generation.request_id.as_deref(), Some("req_scaffold"));

    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("authorization"), Some("Bearer acme-key-123"));
    assert_eq!(
        sent[0].json(),
        json!({"model": "image-1", "prompt": "a lighthouse", "n": 1, "size": "1024x1024", "response_format": "b64_json"})
    );
}

#[test]
fn scaffolding_refuses_bad_names_and_existing_folders() {
    let parent = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let bad = new_plugin("Acme Images", parent.path(), SdkSource::published());
    assert!(
        bad.as_ref().is_err_and(|err| err
            .to_string()
            .contains("lower-case letters, digits and dashes")),
        "{bad:?}"
    );
    new_plugin("acme", parent.path(), SdkSource::published()).unwrap_or_else(|err| panic!("{err}"));
    let again = new_plugin("acme", parent.path(), SdkSource::published());
    assert!(
        again
            .as_ref()
            .is_err_and(|err| err.to_string().contains("already exists")),
        "{again:?}"
    );
}

fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}
