//! The sandbox, tested from the inside: the real hostile plugin (`tests/plugins/hostile`), built
//! for wasm32-wasip2, in the real runtime, doing real HTTP against servers on 127.0.0.1. Each
//! escape attempt must be refused with a clear error, and the same `WasmProvider` must serve a
//! normal call right after.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use imageai_core::plugin::{PluginError, Runtime, RuntimeOptions, Source, WasmProvider, registry};
use imageai_core::{CallContext, GenerateRequest, Generation, Provider, ProviderError, Secret};
use imageai_tests::plugins::plugin_dir;
use imageai_tests::{Reply, TestServer};

const PACKAGE: &str = "imageai-plugin-hostile";
const KEY: &str = "sk-hostile-own-key-0123456789";
const MIB: usize = 1024 * 1024;

/// Small limits keep the CPU and memory tests fast.
fn small_options() -> RuntimeOptions {
    RuntimeOptions {
        memory_limit: 32 * MIB,
        cpu_timeout: Duration::from_secs(2),
        max_response_bytes: MIB,
        cancel_grace: Duration::from_secs(1),
        ..RuntimeOptions::default()
    }
}

fn runtime(options: RuntimeOptions) -> Runtime {
    Runtime::new(options).unwrap_or_else(|err| panic!("could not start the runtime: {err}"))
}

/// One provider shared by the tests (they run in parallel, so this also exercises concurrent
/// calls on one `WasmProvider`).
fn hostile() -> &'static WasmProvider {
    static PROVIDER: OnceLock<WasmProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        logs();
        runtime(small_options())
            .load(&plugin_dir(PACKAGE))
            .unwrap_or_else(|err| panic!("could not load: {err}"))
    })
}

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
        .unwrap_or_else(|err| panic!("{err}"))
}

fn ctx(base_url: &str) -> CallContext {
    CallContext::new(
        Some(Secret::new(KEY)),
        BTreeMap::from([("base_url".to_owned(), base_url.to_owned())]),
    )
}

fn generate(
    provider: &WasmProvider,
    prompt: &str,
    ctx: &CallContext,
) -> Result<Generation, ProviderError> {
    generate_with(provider, prompt, &[], ctx)
}

fn generate_with(
    provider: &WasmProvider,
    prompt: &str,
    extra: &[(&str, String)],
    ctx: &CallContext,
) -> Result<Generation, ProviderError> {
    let request = GenerateRequest {
        model: "hostile-1".into(),
        prompt: prompt.into(),
        extra: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..GenerateRequest::default()
    };
    provider.generate(&request, ctx)
}

/// A server that answers the paths the hostile plugin uses.
fn image_server() -> TestServer {
    let png = png();
    TestServer::start(move |req| match req.path() {
        "/ok" => Reply::bytes(200, "image/png", png.clone()),
        "/hop" => Reply::new(302).header("location", "/ok"),
        _ => Reply::new(404),
    })
}

/// After any misbehaviour, the same provider still serves a normal call.
fn assert_still_serves(provider: &WasmProvider) {
    let server = image_server();
    let generation = generate(provider, "ok", &ctx(&server.url()))
        .unwrap_or_else(|err| panic!("the provider stopped serving after a hostile call: {err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].data, png());
    assert_eq!(generation.images[0].mime, "image/png");
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> ProviderError {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err,
    }
}

fn metadata(generation: &Generation, key: &str) -> String {
    generation
        .metadata
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("no `{key}` in {:?}", generation.metadata))
}

// ---- log capture: one global subscriber writing into a buffer every test can read ----

#[derive(Clone)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged so far by any test in this process (installed on first use).
fn logs() -> String {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    let buffer = BUFFER.get_or_init(|| {
        let buffer = LogBuffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    });
    let bytes = buffer.0.lock().map(|logs| logs.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---- the happy path ----

#[test]
fn ok_returns_the_image_from_the_server() {
    let server = image_server();
    let generation =
        generate(hostile(), "ok", &ctx(&server.url())).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images.len(), 1);
    assert_eq!(generation.images[0].data, png());
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("GET", "/ok")
    );
    assert!(
        requests[0]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("ImageAI/"))
    );
}

/// Plugin HTTP normally runs on the calling thread's own tokio runtime; a caller already inside
/// tokio (where blocking on another runtime would panic) is served by the host's worker threads.
#[test]
fn plugins_can_be_called_from_inside_a_tokio_runtime() {
    let server = image_server();
    let url = server.url();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    // On a runtime thread (as an async task that blocks, which tokio allows but dislikes) and
    // on a `spawn_blocking` thread (the usual way to call blocking code from async code).
    let in_task = tokio.block_on(async { generate(hostile(), "ok", &ctx(&url)) });
    let url_for_blocking = url.clone();
    let in_blocking = tokio
        .block_on(tokio.spawn_blocking(move || generate(hostile(), "ok", &ctx(&url_for_blocking))))
        .unwrap_or_else(|err| panic!("{err}"));
    for generation in [in_task, in_blocking] {
        let generation = generation.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(generation.images[0].data, png());
    }
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn info_comes_from_the_plugin_and_is_cached() {
    let info = hostile().info().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        (info.id.as_str(), info.name.as_str()),
        ("hostile", "Hostile")
    );
    assert_eq!(info.models.len(), 1);
    assert_eq!(info.models[0].id, "hostile-1");
    assert_eq!(hostile().info().ok(), Some(info));
    assert_eq!(hostile().manifest().id, "hostile");
}

#[test]
fn redirects_within_allowed_hosts_are_followed() {
    let server = image_server();
    let generation = generate(hostile(), "ok-redirect", &ctx(&server.url()))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.images[0].data, png());
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    assert_eq!(paths, ["/hop", "/ok"]);
}

#[test]
fn progress_reaches_the_caller() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut ctx = ctx("http://127.0.0.1:9");
    ctx.progress = Some(Arc::new(move |fraction, message: &str| {
        if let Ok(mut seen) = sink.lock() {
            seen.push((fraction, message.to_owned()));
        }
    }));
    generate(hostile(), "progress", &ctx).unwrap_or_else(|err| panic!("{err}"));
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        [(0.25, "a quarter".to_owned()), (1.0, "done".to_owned())]
    );
}

// ---- network escapes ----

#[test]
fn undeclared_hosts_are_denied() {
    let server = image_server();
    let port = server.addr().port();
    // A listener on another loopback address, to prove nothing connects to it.
    let other = TcpListener::bind("127.0.0.2:0").ok();
    let other_port = other
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(port);
    let targets = [
        "http://example.invalid/".to_owned(),
        format!("http://127.0.0.2:{other_port}/"),
        format!("http://0x7f.0.0.2:{other_port}/"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
        format!("http://user@127.0.0.1:{port}/ok"),
        format!("ftp://127.0.0.1:{port}/ok"),
    ];
    let err = expect_err(generate_with(
        hostile(),
        "undeclared-host",
        &[("targets", targets.join(","))],
        &ctx(&server.url()),
    ))
    .to_string();
    assert!(!err.contains("ESCAPED"), "{err}");
    assert_eq!(
        err.matches("denied:").count(),
        targets.len(),
        "every target refused by the host: {err}"
    );
    assert!(
        err.contains("host `example.invalid` is not declared in the plugin's allowed-hosts"),
        "{err}"
    );
    assert!(err.contains("host `127.0.0.2` is not declared"), "{err}");
    assert!(err.contains("user name or password"), "{err}");
    assert!(err.contains("only http and https"), "{err}");
    assert!(
        server.requests().is_empty(),
        "nothing reached the allowed server either"
    );
    if let Some(other) = other {
        other
            .set_nonblocking(true)
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(other.accept().is_err(), "something connected to 127.0.0.2");
    }
    assert_still_serves(hostile());
}

#[test]
fn redirects_to_undeclared_hosts_are_refused() {
    let elsewhere = TestServer::start(|_| Reply::new(200).body(b"stolen".to_vec()));
    let target = format!("http://localhost:{}/stolen", elsewhere.addr().port());
    let server = TestServer::start(move |req| match req.path() {
        "/escape" => Reply::new(302).header("location", &target),
        _ => Reply::new(404),
    });
    let err = expect_err(generate(hostile(), "redirect-escape", &ctx(&server.url()))).to_string();
    assert!(!err.contains("ESCAPED"), "{err}");
    assert!(
        err.contains("denied: redirect from 127.0.0.1 refused: host `localhost` is not declared"),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target must not be contacted"
    );
    assert_still_serves(hostile());
}

#[test]
fn transport_headers_cannot_be_set() {
    let server = image_server();
    let err = expect_err(generate(hostile(), "host-header", &ctx(&server.url()))).to_string();
    assert!(!err.contains("ESCAPED"), "{err}");
    assert_eq!(err.matches("denied:").count(), 5, "{err}");
    for name in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
    ] {
        assert!(
            err.contains(&format!("the `{name}` header is set by the host")),
            "{name}: {err}"
        );
    }
    assert!(server.requests().is_empty());
    assert_still_serves(hostile());
}

#[test]
fn huge_responses_are_refused() {
    let server =
        TestServer::start(|_| Reply::bytes(200, "application/octet-stream", vec![7; 8 * MIB]));
    let err = expect_err(generate(hostile(), "huge-response", &ctx(&server.url()))).to_string();
    assert!(
        err.contains("too-large: the response is larger than the 1 MiB the host accepts"),
        "{err}"
    );
    assert_still_serves(hostile());
}

#[test]
fn huge_streamed_responses_are_cut_off() {
    // No Content-Length: the cap has to be enforced while streaming.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("{err}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|err| panic!("{err}"));
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let server = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(100 * MIB / chunk.len()) {
            let head = format!("{:x}\r\n", chunk.len());
            let wrote = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&chunk))
                .and_then(|()| stream.write_all(b"\r\n"));
            if wrote.is_err() {
                break;
            }
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let err = expect_err(generate(
        hostile(),
        "huge-response",
        &ctx(&format!("http://127.0.0.1:{port}")),
    ))
    .to_string();
    assert!(err.contains("too-large"), "{err}");
    let _ = server.join();
    assert!(
        sent.load(Ordering::SeqCst) < 100 * MIB,
        "the host stopped reading early"
    );
    assert_still_serves(hostile());
}

// ---- the rest of the sandbox ----

#[test]
fn no_files_are_reachable() {
    let err = expect_err(generate(hostile(), "read-file", &ctx("http://127.0.0.1:9"))).to_string();
    assert!(!err.contains("ESCAPED"), "{err}");
    for what in [
        "read /etc/passwd: failed",
        "list .: failed",
        "list /: failed",
        "write /tmp/hostile: failed",
    ] {
        assert!(err.contains(what), "{what}: {err}");
    }
    assert_still_serves(hostile());
}

#[test]
fn environment_and_arguments_are_empty() {
    let generation = generate(hostile(), "env", &ctx("http://127.0.0.1:9"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        metadata(&generation, "env_count"),
        "0",
        "env: {}",
        metadata(&generation, "env")
    );
    assert_eq!(
        metadata(&generation, "args_count"),
        "0",
        "args: {}",
        metadata(&generation, "args")
    );
    assert_still_serves(hostile());
}

#[test]
fn only_its_own_key_and_declared_settings_are_visible() {
    let mut ctx = ctx("http://127.0.0.1:9");
    // Even if a caller put more into the settings map, undeclared names stay invisible.
    ctx.settings
        .insert("openai_api_key".into(), "sk-openai-must-not-leak".into());
    ctx.settings
        .insert("api_key".into(), "sk-other-must-not-leak".into());
    let generation = generate(hostile(), "other-key", &ctx).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(metadata(&generation, "api-key"), KEY);
    assert_eq!(
        metadata(&generation, "setting:base_url"),
        "http://127.0.0.1:9"
    );
    for (name, value) in &generation.metadata {
        if name != "api-key" && name != "setting:base_url" {
            assert_eq!(value, "<none>", "{name} leaked");
        }
    }
    assert!(generation.metadata.len() > 10);
    assert_still_serves(hostile());
}

#[test]
fn a_memory_bomb_is_stopped() {
    let err = expect_err(generate(
        hostile(),
        "memory-bomb",
        &ctx("http://127.0.0.1:9"),
    ));
    assert_eq!(
        err,
        ProviderError::Plugin("plugin hostile ran out of memory (limit 32 MiB)".into())
    );
    assert_still_serves(hostile());
}

#[test]
fn an_infinite_loop_hits_the_cpu_limit() {
    let provider = hostile(); // loaded before the clock starts
    let started = Instant::now();
    let err = expect_err(generate(
        provider,
        "infinite-loop",
        &ctx("http://127.0.0.1:9"),
    ));
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        ProviderError::Plugin("plugin hostile exceeded its CPU time limit of 2 s".into())
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert_still_serves(provider);
}

#[test]
fn time_in_host_calls_is_not_cpu_time() {
    // The request takes 3 s, longer than the 2 s CPU budget; the plugin itself barely runs.
    let server = TestServer::start(|_| Reply::new(200).delay(Duration::from_secs(3)));
    let generation =
        generate(hostile(), "slow", &ctx(&server.url())).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        generation.note.as_deref(),
        Some("slow request finished with 200")
    );
}

#[test]
fn panics_and_aborts_are_reported_and_the_host_keeps_serving() {
    let err = expect_err(generate(hostile(), "trap", &ctx("http://127.0.0.1:9")));
    let ProviderError::Plugin(message) = &err else {
        panic!("expected a plugin error, got {err:?}")
    };
    assert!(message.starts_with("plugin hostile crashed: "), "{message}");
    assert!(
        message.contains("hostile plugin panicked on purpose"),
        "{message}"
    );
    assert_still_serves(hostile());

    let err = expect_err(generate(hostile(), "abort", &ctx("http://127.0.0.1:9")));
    let ProviderError::Plugin(message) = &err else {
        panic!("expected a plugin error, got {err:?}")
    };
    assert!(message.starts_with("plugin hostile crashed: "), "{message}");
    assert_still_serves(hostile());
}

#[test]
fn plugin_output_goes_to_the_log() {
    generate(hostile(), "stdout", &ctx("http://127.0.0.1:9")).unwrap_or_else(|err| panic!("{err}"));
    let logs = logs();
    assert!(
        logs.contains("hello from the plugin, line 0"),
        "stdout is logged"
    );
    assert!(logs.contains("a line on stderr"), "stderr is logged");
    assert!(
        logs.lines()
            .any(|l| l.contains("plugin=hostile") && l.contains("hello from the plugin"))
    );
}

// ---- secrets ----

#[test]
fn secrets_never_reach_errors_or_logs() {
    let server = TestServer::start(|req| {
        // A careless server that echoes the credentials back.
        let echo = format!(
            "bad key in {} and {}",
            req.header("authorization").unwrap_or(""),
            req.uri
        );
        Reply::new(401).body(echo.into_bytes())
    });
    let err = expect_err(generate(hostile(), "leak-secret", &ctx(&server.url())));
    let ProviderError::Auth(message) = &err else {
        panic!("expected an auth error, got {err:?}")
    };
    assert!(!message.contains(KEY), "{message}");
    assert!(message.contains("the server rejected key ***"), "{message}");
    assert!(
        message.contains("Bearer ***"),
        "the echoed header is redacted too: {message}"
    );
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    let err = expect_err(hostile().check_key(&ctx(&server.url())));
    assert_eq!(
        err,
        ProviderError::Auth("the server refused key ***".into())
    );

    let logs = logs();
    assert!(
        logs.contains("my key is ***"),
        "the plugin's log line arrives, redacted"
    );
    assert!(logs.contains("stdout: my key is ***") && logs.contains("stderr: my key is ***"));
    assert!(!logs.contains(KEY), "the key appears in the log");
}

// ---- HTTP behaviour: retries and cancellation ----

/// A server whose answer depends on how many requests it has seen.
/// The calls the serving instance has seen, itself included (the `count` behaviour).
fn instance_calls(provider: &WasmProvider, ctx: &CallContext) -> u32 {
    let generation =
        generate(provider, "count", ctx).unwrap_or_else(|err| panic!("count failed: {err}"));
    metadata(&generation, "calls")
        .parse()
        .unwrap_or_else(|err| panic!("calls is not a number: {err}"))
}

#[test]
fn a_clean_call_leaves_a_warm_instance_for_the_next_call_with_the_same_key() {
    // A provider of its own: the shared one serves other tests' calls in parallel.
    let provider = runtime(small_options())
        .load(&plugin_dir(PACKAGE))
        .unwrap_or_else(|err| panic!("could not load: {err}"));
    let ctx = ctx("http://127.0.0.1:9");
    assert_eq!(instance_calls(&provider, &ctx), 1, "a fresh instance");
    assert_eq!(
        instance_calls(&provider, &ctx),
        2,
        "the same instance again"
    );
    assert_eq!(instance_calls(&provider, &ctx), 3);

    // Another key never runs in an instance that has seen this one.
    let other = CallContext::new(
        Some(Secret::new("sk-someone-else-987654321")),
        ctx.settings.clone(),
    );
    assert_eq!(
        instance_calls(&provider, &other),
        1,
        "a fresh instance for another key"
    );
    assert_eq!(instance_calls(&provider, &other), 2);
    assert_eq!(
        instance_calls(&provider, &ctx),
        1,
        "and a fresh one when the key changes back"
    );

    // A trap drops the instance; so does a cancel.
    expect_err(generate(&provider, "trap", &ctx));
    assert_eq!(instance_calls(&provider, &ctx), 1, "fresh after a trap");
    assert_eq!(instance_calls(&provider, &ctx), 2);
    let cancelled = self::ctx("http://127.0.0.1:9");
    cancel_later(&cancelled, Duration::from_millis(50));
    expect_err(generate(&provider, "sleep", &cancelled));
    assert_eq!(instance_calls(&provider, &ctx), 1, "fresh after a cancel");

    // A plugin error (not a trap) keeps the instance.
    let denied = expect_err(generate(&provider, "undeclared-host", &ctx));
    assert!(!matches!(denied, ProviderError::Plugin(_)), "{denied:?}");
    assert_eq!(
        instance_calls(&provider, &ctx),
        2,
        "kept after a plugin's own error"
    );

    // The allowed hosts follow each call's settings, in a warm instance too.
    let target = [("targets", "http://127.0.0.2:9/".to_owned())];
    let elsewhere = CallContext::new(
        Some(Secret::new(KEY)),
        BTreeMap::from([("base_url".to_owned(), "http://127.0.0.2:9".to_owned())]),
    );
    let denied = expect_err(generate_with(&provider, "undeclared-host", &target, &ctx));
    assert!(denied.to_string().contains("denied:"), "{denied}");
    let admitted = expect_err(generate_with(
        &provider,
        "undeclared-host",
        &target,
        &elsewhere,
    ));
    assert!(!admitted.to_string().contains("denied:"), "{admitted}");
    let denied = expect_err(generate_with(&provider, "undeclared-host", &target, &ctx));
    assert!(denied.to_string().contains("denied:"), "{denied}");
    assert_eq!(
        instance_calls(&provider, &ctx),
        3,
        "all in the same instance"
    );
}

#[test]
fn instances_can_be_fresh_for_every_call() {
    let provider = runtime(RuntimeOptions {
        reuse_instances: false,
        ..small_options()
    })
    .load(&plugin_dir(PACKAGE))
    .unwrap_or_else(|err| panic!("could not load: {err}"));
    let ctx = ctx("http://127.0.0.1:9");
    for _ in 0..3 {
        assert_eq!(instance_calls(&provider, &ctx), 1);
    }
}

#[test]
fn an_instance_that_grew_large_is_not_kept() {
    let provider = runtime(RuntimeOptions {
        memory_limit: 128 * MIB,
        ..small_options()
    })
    .load(&plugin_dir(PACKAGE))
    .unwrap_or_else(|err| panic!("could not load: {err}"));
    let ctx = ctx("http://127.0.0.1:9");
    assert_eq!(instance_calls(&provider, &ctx), 1);
    assert_eq!(instance_calls(&provider, &ctx), 2);
    // 48 MiB held during the call: more than a warm instance may keep.
    generate_with(&provider, "allocate", &[("mib", "48".into())], &ctx)
        .unwrap_or_else(|err| panic!("allocate failed: {err}"));
    assert_eq!(
        instance_calls(&provider, &ctx),
        1,
        "fresh after a large call"
    );
}

fn counting_server(
    reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> (TestServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let server = TestServer::start(move |_| reply(seen.fetch_add(1, Ordering::SeqCst)));
    (server, count)
}

#[test]
fn rate_limits_are_retried_after_the_servers_delay() {
    let provider = hostile(); // loaded before the clock starts
    let (server, count) = counting_server(|n| match n {
        0 => Reply::new(429).header("retry-after-ms", "400"),
        1 => Reply::new(429).header("retry-after", "1"),
        _ => Reply::new(200),
    });
    let started = Instant::now();
    let generation =
        generate(provider, "flaky", &ctx(&server.url())).unwrap_or_else(|err| panic!("{err}"));
    let elapsed = started.elapsed();
    assert_eq!(generation.note.as_deref(), Some("status 200"));
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let provider = hostile(); // loaded before the clock starts
    let (server, count) = counting_server(|n| {
        if n == 0 {
            Reply::new(500)
        } else {
            Reply::new(200)
        }
    });
    let started = Instant::now();
    let generation =
        generate(provider, "flaky", &ctx(&server.url())).unwrap_or_else(|err| panic!("{err}"));
    let elapsed = started.elapsed();
    assert_eq!(generation.note.as_deref(), Some("status 200"));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // First backoff: 0.5 s minus up to 25 % jitter.
    assert!(
        elapsed >= Duration::from_millis(370) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[test]
fn retries_are_bounded_and_long_retry_after_is_ignored() {
    let provider = hostile(); // loaded before the clock starts
    // retry-after of 10 minutes is past the 120 s cap: the host uses its own backoff.
    let (server, count) = counting_server(|_| Reply::new(503).header("retry-after", "600"));
    let started = Instant::now();
    let generation =
        generate(provider, "flaky", &ctx(&server.url())).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        generation.note.as_deref(),
        Some("status 503"),
        "the last answer reaches the plugin"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "one request and two retries"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Cancel `ctx` after `after`, from another thread.
fn cancel_later(ctx: &CallContext, after: Duration) -> std::thread::JoinHandle<()> {
    let token = ctx.cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        token.cancel();
    })
}

#[test]
fn a_slow_request_is_cancelled() {
    let provider = hostile(); // loaded before the clock starts
    let server = TestServer::start(|_| Reply::new(200).delay(Duration::from_secs(30)));
    let ctx = ctx(&server.url());
    let canceller = cancel_later(&ctx, Duration::from_millis(300));
    let started = Instant::now();
    let err = expect_err(generate(provider, "slow", &ctx));
    assert_eq!(err, ProviderError::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let _ = canceller.join();
}

#[test]
fn a_sleeping_plugin_wakes_on_cancel() {
    let provider = hostile(); // loaded before the clock starts
    let ctx = ctx("http://127.0.0.1:9");
    let canceller = cancel_later(&ctx, Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(
        expect_err(generate(provider, "sleep", &ctx)),
        ProviderError::Cancelled
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let _ = canceller.join();
}

#[test]
fn a_busy_plugin_stops_on_cancel() {
    let provider = hostile(); // loaded before the clock starts
    let ctx = ctx("http://127.0.0.1:9");
    let canceller = cancel_later(&ctx, Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(
        expect_err(generate(provider, "infinite-loop", &ctx)),
        ProviderError::Cancelled
    );
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "before the CPU limit: {:?}",
        started.elapsed()
    );
    let _ = canceller.join();
    assert_still_serves(provider);
}

#[test]
fn a_cancelled_plugin_may_send_two_tidy_up_requests_and_no_more() {
    let provider = hostile(); // loaded before the clock starts
    let (server, count) = counting_server(|_| Reply::new(200));
    let ctx = ctx(&server.url());
    let canceller = cancel_later(&ctx, Duration::from_millis(200));
    let generation = generate_with(
        provider,
        "after-cancel",
        &[("paths", "/cancel-job,/again,/third".into())],
        &ctx,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let _ = canceller.join();
    assert_eq!(generation.note.as_deref(), Some("200,200,cancelled"));
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "only two requests went out"
    );
    assert_still_serves(provider);
}

#[test]
fn a_tidy_up_request_ends_with_the_grace() {
    let provider = hostile(); // loaded before the clock starts
    let server = TestServer::start(|_| Reply::new(200).delay(Duration::from_secs(30)));
    let ctx = ctx(&server.url());
    let canceller = cancel_later(&ctx, Duration::from_millis(200));
    let started = Instant::now();
    // The request is cut at the grace's end, and the plugin with it.
    let err = expect_err(generate_with(
        provider,
        "after-cancel",
        &[("paths", "/slow".into())],
        &ctx,
    ));
    let _ = canceller.join();
    assert_eq!(err, ProviderError::Cancelled);
    // The cancel at 0.2 s plus the tests' 1 s grace, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_plugin_can_turn_the_hosts_retries_off() {
    let provider = hostile(); // loaded before the clock starts
    let (server, count) = counting_server(|_| Reply::new(503));
    let generation =
        generate(provider, "no-retry", &ctx(&server.url())).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(generation.note.as_deref(), Some("status 503"));
    assert_eq!(count.load(Ordering::SeqCst), 1, "no retry");
    let recorded = server.requests();
    assert!(
        recorded
            .iter()
            .all(|r| r.header("x-imageai-no-retry").is_none()),
        "the instruction to the host was sent to the server"
    );
}

#[test]
fn more_calls_at_once_than_the_pool_holds_get_a_clear_error() {
    // A runtime of its own: the busy calls below must not take the shared provider's slots.
    let provider = Arc::new(
        runtime(small_options())
            .load(&plugin_dir(PACKAGE))
            .unwrap_or_else(|err| panic!("could not load: {err}")),
    );
    let ctx = ctx("http://127.0.0.1:9");
    // 33 calls that each sleep 10 s: one more than the pool holds, so exactly one of them (the
    // last to get there, whichever it is) is refused at once while the others sleep.
    let calls: Vec<_> = (0..33)
        .map(|_| {
            let provider = provider.clone();
            let ctx = ctx.clone();
            std::thread::spawn(move || generate(&provider, "sleep", &ctx))
        })
        .collect();
    let started = Instant::now();
    while !calls.iter().any(|call| call.is_finished()) {
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "no call was refused although 33 ran at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ctx.cancel.cancel();
    let mut refused = Vec::new();
    let mut cancelled = 0;
    for call in calls {
        match call
            .join()
            .unwrap_or_else(|_| panic!("a sleeping call panicked"))
        {
            Err(ProviderError::Plugin(message)) => refused.push(message),
            Err(ProviderError::Cancelled) => cancelled += 1,
            other => panic!("expected a refusal or a cancelled sleep, got {other:?}"),
        }
    }
    assert_eq!((refused.len(), cancelled), (1, 32), "{refused:?}");
    assert!(
        refused[0].contains("32 plugin calls are already running") && refused[0].contains("wait"),
        "{}",
        refused[0]
    );
    let fresh = self::ctx("http://127.0.0.1:9");
    assert!(
        generate(&provider, "progress", &fresh).is_ok(),
        "a slot is free again"
    );
}

// ---- loading: contract versions, invalid components, the compile cache ----

/// A copy of the hostile plugin's folder that a test may change.
fn plugin_copy() -> tempfile::TempDir {
    let source = plugin_dir(PACKAGE);
    let copy = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    for file in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(source.join(file), copy.path().join(file))
            .unwrap_or_else(|err| panic!("{err}"));
    }
    copy
}

fn load_err(runtime: &Runtime, dir: &Path) -> PluginError {
    match runtime.load(dir) {
        Ok(provider) => panic!("expected load to fail, got {provider:?}"),
        Err(err) => err,
    }
}

#[test]
fn a_contract_mismatch_is_refused_naming_both_versions() {
    let copy = plugin_copy();
    let manifest = copy.path().join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(
        &manifest,
        text.replace("contract = \"0.1.0\"", "contract = \"0.2.0\""),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let err = load_err(&runtime(small_options()), copy.path()).to_string();
    assert_eq!(
        err,
        "plugin hostile was built for contract 0.2.0; this ImageAI supports 0.1.0: update ImageAI or use a plugin built for 0.1.0"
    );
}

#[test]
fn invalid_components_fail_to_load_with_a_clear_error() {
    let runtime = runtime(small_options());
    let copy = plugin_copy();
    let wasm = copy.path().join("plugin.wasm");

    std::fs::write(&wasm, b"#!/bin/sh\necho not wasm\n").unwrap_or_else(|err| panic!("{err}"));
    let err = load_err(&runtime, copy.path()).to_string();
    assert!(
        err.starts_with(
            "plugin hostile is not a valid ImageAI plugin: the file is not WebAssembly"
        ),
        "{err}"
    );

    // A valid component that exports nothing (the component-model header alone).
    std::fs::write(&wasm, b"\0asm\x0d\x00\x01\x00").unwrap_or_else(|err| panic!("{err}"));
    let err = load_err(&runtime, copy.path()).to_string();
    assert!(
        err.contains("does not export imageai:provider/provider@0.1.0"),
        "{err}"
    );

    std::fs::remove_file(&wasm).unwrap_or_else(|err| panic!("{err}"));
    assert!(matches!(
        load_err(&runtime, copy.path()),
        PluginError::ComponentRead { .. }
    ));

    std::fs::write(copy.path().join("plugin.toml"), "id = \"Bad Id\"\n")
        .unwrap_or_else(|err| panic!("{err}"));
    let err = load_err(&runtime, copy.path()).to_string();
    assert!(
        err.starts_with("invalid plugin manifest") && err.contains("plugin.toml"),
        "{err}"
    );
}

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

#[test]
fn compiled_components_are_cached_and_corrupt_entries_recompiled() {
    let cache = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..small_options()
    };
    let dir = plugin_dir(PACKAGE);

    let first = runtime(options.clone())
        .load(&dir)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(!first.compiled_from_cache());
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");

    // A second start (a new runtime, as after a restart) compiles nothing.
    let second = runtime(options.clone())
        .load(&dir)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(second.compiled_from_cache());
    assert_still_serves(&second);

    // Flip a byte in the middle: the entry is discarded and the plugin recompiled.
    let mut bytes = std::fs::read(&entries[0]).unwrap_or_else(|err| panic!("{err}"));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap_or_else(|err| panic!("{err}"));
    let third = runtime(options.clone())
        .load(&dir)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(!third.compiled_from_cache(), "a corrupt entry is not used");
    assert_still_serves(&third);

    // Truncated entries too; and each recompile writes a sound entry again.
    let bytes = std::fs::read(&entries[0]).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(&entries[0], &bytes[..bytes.len() / 3]).unwrap_or_else(|err| panic!("{err}"));
    let fourth = runtime(options.clone())
        .load(&dir)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(!fourth.compiled_from_cache());
    let fifth = runtime(options)
        .load(&dir)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(fifth.compiled_from_cache());
    assert_still_serves(&fifth);
    assert_eq!(cache_entries(cache.path()).len(), 1);
}

// ---- the registry: install validates, then copies ----

#[test]
fn install_validates_then_copies_and_remove_deletes() {
    let runtime = runtime(small_options());
    let user = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));

    let broken = plugin_copy();
    std::fs::write(broken.path().join("plugin.wasm"), b"\0asm\x0d\x00\x01\x00")
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(matches!(
        registry::install(&runtime, broken.path(), user.path()),
        Err(PluginError::InvalidComponent { .. })
    ));
    assert!(
        !user.path().join("hostile").exists(),
        "nothing is installed when validation fails"
    );

    let manifest = registry::install(&runtime, &plugin_dir(PACKAGE), user.path())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(manifest.id, "hostile");
    let installed = user.path().join("hostile");
    assert!(installed.join("plugin.toml").is_file() && installed.join("plugin.wasm").is_file());
    // Installing again replaces the folder in place.
    registry::install(&runtime, &plugin_dir(PACKAGE), user.path())
        .unwrap_or_else(|err| panic!("{err}"));
    let visible: Vec<String> = std::fs::read_dir(user.path())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(visible, ["hostile"], "no staging folders left behind");

    let found = registry::discover([(user.path(), Source::User)]);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].manifest.id.as_str(), found[0].source),
        ("hostile", Source::User)
    );
    assert_still_serves(
        &runtime
            .load(&found[0].dir)
            .unwrap_or_else(|err| panic!("{err}")),
    );

    registry::remove("hostile", user.path()).unwrap_or_else(|err| panic!("{err}"));
    assert!(registry::discover([(user.path(), Source::User)]).is_empty());
    assert!(matches!(
        registry::remove("hostile", user.path()),
        Err(PluginError::NotInstalled { .. })
    ));
}
