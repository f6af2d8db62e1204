//! A provider plugin that misbehaves on purpose, to test the sandbox from the inside. The
//! prompt of `generate` picks the behaviour; each one tries to break out (or break the host)
//! and reports what it saw, so `tests/tests/sandbox.rs` can assert the host refused it.
//!
//! Written against the raw contract with `wit-bindgen` (not the SDK) so it can do things the
//! SDK would never let a plugin author do.

use std::hint::black_box;

/// The contract's bindings. wit-bindgen's generated glue is `unsafe` FFI (the canonical ABI);
/// the lint is lifted for this module only, and the plugin's own code stays safe.
#[allow(unsafe_code, reason = "wit-bindgen's generated canonical-ABI glue")]
mod bindings {
    #[cfg(target_arch = "wasm32")]
    use super::Hostile;

    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit/since_v0.1.0",
    });

    // The exports' names (`imageai:provider/provider@0.1.0#…`) only link into a wasm
    // component; a native build of the workspace (`cargo test --workspace`) skips them.
    #[cfg(target_arch = "wasm32")]
    export!(Hostile with_types_in self);
}

use bindings::exports::imageai::provider::provider::Guest;
use bindings::imageai::provider::host::{self, HttpError, HttpRequest, HttpResponse, LogLevel};
use bindings::imageai::provider::types::{
    Capability, EditRequest, GenerateRequest, Generation, Image, ModelInfo, ProviderError,
    ProviderInfo, UpscaleRequest,
};

struct Hostile;

impl Guest for Hostile {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "hostile".into(),
            name: "Hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            models: vec![ModelInfo {
                id: "hostile-1".into(),
                name: "Hostile 1".into(),
                description: "Does what the prompt says, however bad.".into(),
                capabilities: vec![Capability::TextToImage],
                params: Vec::new(),
                sizes: Vec::new(),
                aspect_ratios: Vec::new(),
                qualities: Vec::new(),
                styles: Vec::new(),
                output_formats: vec!["png".into()],
                max_n: 1,
                default_size: None,
            }],
        }
    }

    fn generate(request: GenerateRequest) -> Result<Generation, ProviderError> {
        let extra = |name: &str| {
            request
                .extra
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        match request.prompt.as_str() {
            "ok" => fetch_image("/ok"),
            "ok-redirect" => fetch_image("/hop"),
            "undeclared-host" => {
                let targets = extra("targets").unwrap_or_else(|| "http://example.invalid/".into());
                refused_everywhere(
                    targets
                        .split(',')
                        .map(|url| get(url.trim(), Vec::new()))
                        .collect(),
                    &targets,
                )
            }
            "redirect-escape" => {
                let outcome = get(&format!("{}/escape", base_url()?), Vec::new());
                refused_everywhere(vec![outcome], "redirect")
            }
            "host-header" => {
                let url = format!("{}/ok", base_url()?);
                let attempts = [
                    ("Host", "evil.example"),
                    ("content-length", "0"),
                    ("Transfer-Encoding", "chunked"),
                    ("Connection", "close"),
                    ("Upgrade", "websocket"),
                ];
                let outcomes = attempts
                    .iter()
                    .map(|(name, value)| get(&url, vec![((*name).into(), (*value).into())]))
                    .collect();
                refused_everywhere(outcomes, "forbidden headers")
            }
            "read-file" => read_files(),
            "env" => Ok(environment()),
            "other-key" => Ok(other_keys()),
            "memory-bomb" => memory_bomb(),
            "infinite-loop" => spin(),
            "huge-response" => {
                let outcome = get(&format!("{}/huge", base_url()?), Vec::new());
                refused_everywhere(vec![outcome], "huge response")
            }
            "trap" => panic!("hostile plugin panicked on purpose"),
            "abort" => std::process::abort(),
            "slow" => {
                let response =
                    get(&format!("{}/slow", base_url()?), Vec::new()).map_err(http_error)?;
                Ok(note(format!(
                    "slow request finished with {}",
                    response.status
                )))
            }
            "sleep" => {
                if host::sleep(10_000) {
                    Ok(note("slept the full 10 s".into()))
                } else {
                    Err(ProviderError::Cancelled)
                }
            }
            "after-cancel" => {
                // Wait for the cancel, then ask for every path in `paths` (comma-separated)
                // and report what came back for each: `200`, or the error's kind.
                while !host::sleep(10_000) && !host::is_cancelled() {}
                let paths = extra("paths").unwrap_or_default();
                let outcomes: Vec<String> = paths
                    .split(',')
                    .map(
                        |path| match get(&format!("{}{}", base_url()?, path.trim()), Vec::new()) {
                            Ok(response) => Ok(response.status.to_string()),
                            Err(error) => Ok(match error {
                                HttpError::Cancelled => "cancelled".to_owned(),
                                HttpError::Timeout(_) => "timeout".to_owned(),
                                other => format!("{other:?}"),
                            }),
                        },
                    )
                    .collect::<Result<_, ProviderError>>()?;
                Ok(note(outcomes.join(",")))
            }
            "no-retry" => {
                let response = get(
                    &format!("{}/flaky", base_url()?),
                    vec![("X-ImageAI-No-Retry".into(), "503".into())],
                )
                .map_err(http_error)?;
                Ok(note(format!("status {}", response.status)))
            }
            "flaky" => {
                let response =
                    get(&format!("{}/flaky", base_url()?), Vec::new()).map_err(http_error)?;
                Ok(note(format!("status {}", response.status)))
            }
            "leak-secret" => leak_secret(),
            "count" => Ok(count_calls()),
            "allocate" => {
                let mib: usize = extra("mib").and_then(|m| m.parse().ok()).unwrap_or(1);
                let held = black_box(vec![1u8; mib << 20]);
                Ok(note(format!("held {} MiB", held.len() >> 20)))
            }
            "progress" => {
                host::progress(0.25, "a quarter");
                host::progress(1.0, "done");
                Ok(note("progress reported".into()))
            }
            "stdout" => {
                #[allow(clippy::print_stdout, reason = "printing is the behaviour under test")]
                for i in 0..5_000 {
                    println!("hello from the plugin, line {i}");
                }
                eprintln!("a line on stderr");
                Ok(note("printed".into()))
            }
            other => Err(ProviderError::InvalidRequest(format!(
                "unknown behaviour `{other}`"
            ))),
        }
    }

    fn edit(_: EditRequest) -> Result<Generation, ProviderError> {
        Err(ProviderError::InvalidRequest(
            "hostile does not edit".into(),
        ))
    }

    fn upscale(_: UpscaleRequest) -> Result<Generation, ProviderError> {
        Err(ProviderError::InvalidRequest(
            "hostile does not upscale".into(),
        ))
    }

    fn check_key() -> Result<(), ProviderError> {
        let key = host::api_key().ok_or_else(|| ProviderError::Auth("no key".into()))?;
        let response = get(
            &format!("{}/check", base_url()?),
            vec![("Authorization".into(), format!("Bearer {key}"))],
        )
        .map_err(http_error)?;
        match response.status {
            200 => Ok(()),
            401 => Err(ProviderError::Auth(format!("the server refused key {key}"))),
            status => Err(ProviderError::Server(format!("status {status}"))),
        }
    }
}

fn base_url() -> Result<String, ProviderError> {
    host::setting("base_url")
        .map(|url| url.trim_end_matches('/').to_owned())
        .ok_or_else(|| ProviderError::InvalidRequest("base_url is not set".into()))
}

fn get(url: &str, headers: Vec<(String, String)>) -> Result<HttpResponse, HttpError> {
    host::send(&HttpRequest {
        method: "GET".into(),
        url: url.into(),
        headers,
        body: Vec::new(),
        timeout_ms: None,
    })
}

fn note(text: String) -> Generation {
    Generation {
        images: Vec::new(),
        seed: None,
        revised_prompt: None,
        note: Some(text),
        request_id: None,
        finish_reason: None,
        warnings: Vec::new(),
        metadata: Vec::new(),
    }
}

fn http_error(error: HttpError) -> ProviderError {
    match error {
        HttpError::Denied(m) => ProviderError::Other(format!("denied: {m}")),
        HttpError::TooLarge(m) => ProviderError::Other(format!("too-large: {m}")),
        HttpError::Timeout(m) => ProviderError::Timeout(m),
        HttpError::Network(m) => ProviderError::Network(m),
        HttpError::Cancelled => ProviderError::Cancelled,
    }
}

fn describe(outcome: &Result<HttpResponse, HttpError>) -> String {
    match outcome {
        Ok(response) => format!("ESCAPED with status {}", response.status),
        Err(HttpError::Denied(m)) => format!("denied: {m}"),
        Err(HttpError::TooLarge(m)) => format!("too-large: {m}"),
        Err(HttpError::Timeout(m)) => format!("timeout: {m}"),
        Err(HttpError::Network(m)) => format!("network: {m}"),
        Err(HttpError::Cancelled) => "cancelled".into(),
    }
}

/// Every attempt should have been refused: report each outcome (`ESCAPED` marks a success).
fn refused_everywhere(
    outcomes: Vec<Result<HttpResponse, HttpError>>,
    what: &str,
) -> Result<Generation, ProviderError> {
    let described: Vec<String> = outcomes.iter().map(describe).collect();
    Err(ProviderError::Other(format!(
        "{what}: {}",
        described.join(" | ")
    )))
}

fn fetch_image(path: &str) -> Result<Generation, ProviderError> {
    let response = get(&format!("{}{path}", base_url()?), Vec::new()).map_err(http_error)?;
    if response.status != 200 {
        return Err(ProviderError::Server(format!("status {}", response.status)));
    }
    let mime = response
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| "image/png".into());
    let mut generation = note("ok".into());
    generation.images.push(Image {
        mime,
        data: response.body,
    });
    Ok(generation)
}

fn read_files() -> Result<Generation, ProviderError> {
    let attempts = [
        (
            "read /etc/passwd",
            std::fs::read("/etc/passwd").map(|b| b.len().to_string()),
        ),
        (
            "list .",
            std::fs::read_dir(".").map(|d| d.count().to_string()),
        ),
        (
            "list /",
            std::fs::read_dir("/").map(|d| d.count().to_string()),
        ),
        (
            "write /tmp/hostile",
            std::fs::write("/tmp/hostile", b"x").map(|()| "written".to_string()),
        ),
        (
            "read ../../Cargo.toml",
            std::fs::read("../../Cargo.toml").map(|b| b.len().to_string()),
        ),
    ];
    let described: Vec<String> = attempts
        .iter()
        .map(|(what, result)| match result {
            Ok(value) => format!("{what}: ESCAPED ({value})"),
            Err(err) => format!("{what}: failed ({err})"),
        })
        .collect();
    Err(ProviderError::Other(format!(
        "file access: {}",
        described.join(" | ")
    )))
}

/// How many calls this instance has served: 1 in a fresh instance, more in a reused one.
fn count_calls() -> Generation {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let mut generation = note(format!("call {calls} of this instance"));
    generation.metadata = vec![("calls".into(), calls.to_string())];
    generation
}

fn environment() -> Generation {
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let args: Vec<String> = std::env::args().collect();
    let mut generation = note("environment".into());
    generation.metadata = vec![
        ("env_count".into(), vars.len().to_string()),
        ("env".into(), vars.join(";")),
        ("args_count".into(), args.len().to_string()),
        ("args".into(), args.join(" ")),
        (
            "cwd".into(),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|e| format!("error: {e}")),
        ),
    ];
    generation
}

fn other_keys() -> Generation {
    let shown = |value: Option<String>| value.unwrap_or_else(|| "<none>".into());
    let mut metadata = vec![("api-key".to_string(), shown(host::api_key()))];
    for name in [
        "openai_api_key",
        "api_key",
        "OPENAI_API_KEY",
        "key",
        "openai",
        "providers.openai.api_key",
        "../openai",
        "base_url",
    ] {
        metadata.push((format!("setting:{name}"), shown(host::setting(name))));
    }
    for name in ["OPENAI_API_KEY", "IMAGEAI_OPENAI_API_KEY", "HOME", "PATH"] {
        metadata.push((format!("env:{name}"), shown(std::env::var(name).ok())));
    }
    let mut generation = note("keys".into());
    generation.metadata = metadata;
    generation
}

fn memory_bomb() -> Result<Generation, ProviderError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every chunk so nothing is optimised away.
        let chunk = vec![hoard.len() as u8; 1 << 20];
        hoard.push(black_box(chunk));
    }
}

fn spin() -> Result<Generation, ProviderError> {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

#[allow(
    clippy::print_stdout,
    reason = "printing the key is the behaviour under test"
)]
fn leak_secret() -> Result<Generation, ProviderError> {
    let key = host::api_key().unwrap_or_default();
    host::log(LogLevel::Info, &format!("my key is {key}"));
    println!("stdout: my key is {key}");
    eprintln!("stderr: my key is {key}");
    let outcome = get(
        &format!("{}/echo?key={key}", base_url()?),
        vec![("Authorization".into(), format!("Bearer {key}"))],
    );
    let body = match outcome {
        Ok(response) => String::from_utf8_lossy(&response.body).into_owned(),
        Err(error) => describe(&Err(error)),
    };
    Err(ProviderError::Auth(format!(
        "the server rejected key {key}: {body}"
    )))
}
