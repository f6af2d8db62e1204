//! Download throughput of `imageai models install` against `curl` fetching the same files from
//! the same local Hub (`tests/src/hub_server.rs` on 127.0.0.1). Both sides follow the LFS
//! redirect and write every byte to disk; ours also asks for the model info, `HEAD`s each file,
//! checks SHA-256 and size, fsyncs and links the snapshot — the real install, end to end.
//!
//! Also printed: reqwest alone (the bytes read and dropped: the HTTP client's ceiling) and curl
//! followed by `sha256sum` (download and verify by hand).
//!
//! A second round paces the server at a real link's speed (`IMAGEAI_BENCH_LINK_MBPS`, default
//! 1000 Mbit/s; 0 skips it), where the network rather than the CPU sets the pace.
//!
//! Target: ours ≥ 0.9× curl. Run with `cargo bench -p imageai-tests --bench download` (or add
//! `--profile dev` to skip the release build; `IMAGEAI_BENCH_MB` sets the fake model's weight
//! size, default 512: about 400 MB fetched).

#![allow(clippy::print_stdout)] // a benchmark reports its numbers on stdout

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use imageai_core::CancelToken;
use imageai_core::models::{
    InstallRequest, ModelManager, ModelsConfig, Precision, ProgressSink, human_bytes, select,
};
use imageai_tests::hub_server::{HubServer, sd_repo};

const REPO: &str = "bench/sd-fake";
const ROUNDS: usize = 5;

fn main() {
    let mb: usize = std::env::var("IMAGEAI_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let repo = sd_repo(REPO, mb * 1_000_000);
    let server = HubServer::start(vec![repo.clone()]);

    // The files an fp16 install fetches, as the selection rules pick them.
    let listed: Vec<imageai_core::models::RepoFile> = repo
        .files
        .iter()
        .map(|f| imageai_core::models::RepoFile {
            path: f.path.clone(),
            size: Some(f.content.len() as u64),
            sha256: None,
        })
        .collect();
    let chosen = select(&listed, Precision::Fp16);
    let bytes = chosen.total_size();
    println!(
        "download bench: {} files, {} (fp16 selection of a {mb} MB fake SD repo), best of {ROUNDS}",
        chosen.files.len(),
        human_bytes(bytes)
    );

    let paths: Vec<&str> = chosen.files.iter().map(|f| f.path.as_str()).collect();
    let has_curl = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_curl {
        println!("curl is not installed (apt-get install curl); only our numbers follow");
    }
    // Rounds interleave the contenders, so a busy machine slows them alike; the best of each counts.
    let (mut curl, mut ours1, mut ours4) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut bare, mut curl_verified) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        if has_curl {
            let (fetched, verified) = time_curl(&server, &paths);
            curl = curl.min(fetched);
            curl_verified = curl_verified.min(verified);
        }
        bare = bare.min(time_reqwest(&server, &paths));
        ours1 = ours1.min(time_install(&server, 1));
        ours4 = ours4.min(time_install(&server, 4));
    }
    if has_curl {
        println!(
            "curl (sequential, one connection): {:.3} s  {}/s",
            curl.as_secs_f64(),
            human_bytes(rate(bytes, curl))
        );
    }
    if has_curl && curl_verified < Duration::MAX {
        println!(
            "curl, then sha256sum of the files (download and verify): {:.3} s  {}/s",
            curl_verified.as_secs_f64(),
            human_bytes(rate(bytes, curl_verified))
        );
    }
    println!(
        "reqwest alone (bytes read and dropped, sequential): {:.3} s  {}/s",
        bare.as_secs_f64(),
        human_bytes(rate(bytes, bare))
    );
    report_ours(bytes, curl, curl_verified, has_curl, ours1, ours4);

    // Over a link of a real connection's speed, where the network, not the CPU, sets the pace.
    let mbps: u64 = std::env::var("IMAGEAI_BENCH_LINK_MBPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    if mbps > 0 {
        server.set_rate(Some(mbps * 1_000_000 / 8));
        let (mut curl, mut ours1, mut ours4) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..2 {
            if has_curl {
                curl = curl.min(time_curl(&server, &paths).0);
            }
            ours1 = ours1.min(time_install(&server, 1));
            ours4 = ours4.min(time_install(&server, 4));
        }
        server.set_rate(None);
        println!("over a paced {mbps} Mbit/s link (best of 2):");
        if has_curl {
            println!(
                "curl (sequential, one connection): {:.3} s  {}/s",
                curl.as_secs_f64(),
                human_bytes(rate(bytes, curl))
            );
        }
        report_ours(bytes, curl, Duration::MAX, has_curl, ours1, ours4);
    }
}

/// Our two runs, against curl (and curl followed by `sha256sum`) when measured.
fn report_ours(
    bytes: u64,
    curl: Duration,
    curl_verified: Duration,
    has_curl: bool,
    ours1: Duration,
    ours4: Duration,
) {
    for (parallel, ours) in [(1, ours1), (4, ours4)] {
        let mut versus = String::new();
        if has_curl {
            versus = format!("  = {:.2}x curl", curl.as_secs_f64() / ours.as_secs_f64());
        }
        if curl_verified < Duration::MAX {
            let ratio = curl_verified.as_secs_f64() / ours.as_secs_f64();
            versus.push_str(&format!(", {ratio:.2}x curl+sha256sum"));
        }
        println!(
            "imageai install (parallel {parallel}): {:.3} s  {}/s{versus}",
            ours.as_secs_f64(),
            human_bytes(rate(bytes, ours))
        );
    }
}

fn rate(bytes: u64, took: Duration) -> u64 {
    (bytes as f64 / took.as_secs_f64().max(1e-9)) as u64
}

/// One install into a fresh cache, `parallel` files at a time.
fn time_install(server: &HubServer, parallel: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let mut config = ModelsConfig::new(dir.path().join("hub"), dir.path().join("imports"));
    config.endpoint = server.url();
    config.parallel = parallel;
    let manager = ModelManager::new(config).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let report = manager
        .install(
            &InstallRequest::new(REPO),
            &ProgressSink::none(),
            &CancelToken::new(),
        )
        .unwrap_or_else(|e| panic!("install failed: {e}"));
    let took = start.elapsed();
    assert!(
        report.inspection.loadable,
        "{:?}",
        report.inspection.problems
    );
    took
}

/// The same files read with reqwest and dropped: the HTTP client's own ceiling, no disk, no hash.
fn time_reqwest(server: &HubServer, paths: &[&str]) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let client = reqwest::Client::new();
    let start = Instant::now();
    runtime.block_on(async {
        for path in paths {
            let url = format!("{}/{REPO}/resolve/main/{path}", server.url());
            let mut response = client
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            while let Some(chunk) = response.chunk().await.unwrap_or_else(|e| panic!("{e}")) {
                std::hint::black_box(chunk);
            }
        }
    });
    start.elapsed()
}

/// One `curl` fetching every file (following the LFS redirects, one connection reused); and
/// that time plus `sha256sum` over the files (what checking them by hand adds), when it exists.
fn time_curl(server: &HubServer, paths: &[&str]) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let mut command = Command::new("curl");
    command.args(["-sS", "-f", "-L"]);
    for (i, path) in paths.iter().enumerate() {
        command.arg("-o").arg(dir.path().join(format!("f{i}")));
        command.arg(format!("{}/{REPO}/resolve/main/{path}", server.url()));
    }
    let start = Instant::now();
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("curl failed to start: {e}"));
    let took = start.elapsed();
    assert!(status.success(), "curl failed: {status}");
    check_sizes(dir.path(), paths.len());
    let mut sum = Command::new("sha256sum");
    sum.args((0..paths.len()).map(|i| dir.path().join(format!("f{i}"))));
    let hashing = Instant::now();
    let verified = match sum.output() {
        Ok(out) if out.status.success() => took + hashing.elapsed(),
        _ => Duration::MAX,
    };
    (took, verified)
}

fn check_sizes(dir: &Path, count: usize) {
    for i in 0..count {
        let len = std::fs::metadata(dir.join(format!("f{i}")))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 0, "curl wrote nothing for file {i}");
    }
}
