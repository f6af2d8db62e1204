//! The real worker binary over its stdio protocol, driven by the client a host uses.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;
use imageai_local_sd::worker::client::{ClientError, WorkerClient};
use imageai_local_sd::worker::protocol::{ErrorKind, GenerateRequest, LoadRequest};

fn worker() -> WorkerClient {
    WorkerClient::spawn(Path::new(env!("CARGO_BIN_EXE_imageai-sd-worker"))).unwrap()
}

fn load_sd1(w: &mut WorkerClient) {
    let loaded = w
        .load(LoadRequest {
            model: fixture("sd1").display().to_string(),
            device: Some("cpu".into()),
            precision: Some("fp32".into()),
            low_memory: false,
            idle_unload_secs: None,
        })
        .unwrap();
    assert_eq!(loaded.family, "sd");
    assert_eq!(loaded.default_scheduler, "pndm");
}

fn request(steps: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: "a photo of an astronaut".into(),
        width: Some(32),
        height: Some(32),
        steps: Some(steps),
        seed: Some(7),
        n: Some(2),
        scheduler: Some("euler-a".into()),
        preview: true,
        ..Default::default()
    }
}

#[test]
fn generates_pngs_with_progress_and_previews() {
    let mut w = worker();
    load_sd1(&mut w);
    let mut progress = Vec::new();
    let images = w.generate(request(3), |p| progress.push(p)).unwrap();
    assert_eq!(images.len(), 2);
    assert!(
        images.iter().all(|i| i.png.starts_with(b"\x89PNG")
            && i.width == 32
            && i.height == 32
            && i.seed == 7)
    );
    assert_eq!(
        progress.iter().map(|p| p.step).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(progress.iter().all(|p| {
        p.total == 3
            && p.preview_png
                .as_ref()
                .is_some_and(|b| b.starts_with(b"\x89PNG"))
    }));
    // Same request, same seed: same bytes.
    let again = w.generate(request(3), |_| {}).unwrap();
    assert_eq!(images, again);
    w.unload().unwrap();
    let err = w.generate(request(1), |_| {}).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::NoModel), "{err}");
    w.shutdown();
}

#[test]
fn cancel_stops_between_steps() {
    let mut w = worker();
    load_sd1(&mut w);
    let cancel = w.cancel_handle();
    let mut seen = 0;
    let err = w
        .generate(request(50), |p| {
            seen = p.step;
            if p.step == 2 {
                cancel.cancel();
            }
        })
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Cancelled), "{err}");
    assert!(seen < 50, "ran all steps despite cancel");
    // The worker keeps serving.
    assert_eq!(w.generate(request(1), |_| {}).unwrap().len(), 2);
}

#[test]
fn errors_are_classified_and_worker_survives() {
    let mut w = worker();
    let err = w
        .load(LoadRequest {
            model: "/nonexistent/model".into(),
            device: Some("cpu".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::ModelNotFound), "{err}");
    load_sd1(&mut w);
    let err = w
        .generate(
            GenerateRequest {
                width: Some(33),
                ..request(1)
            },
            |_| {},
        )
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidRequest), "{err}");
    let err = w
        .generate(
            GenerateRequest {
                prompt: "astronaut ".repeat(100),
                ..request(1)
            },
            |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("Shorten the prompt"), "{err}");
    assert_eq!(
        w.list_devices().unwrap().len(),
        imageai_local_sd::device::list_adapters().len()
    );
}

#[test]
fn a_dying_worker_is_a_clear_error() {
    // A stand-in that says it is ready, then crashes on the first request.
    let script = r#"echo '{"event":"ready","id":0,"version":"0"}'; read line; echo 'thread main panicked: boom' >&2; exit 101"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    let mut w = WorkerClient::spawn_command(cmd, Path::new("sh")).unwrap();
    let err = w
        .load(LoadRequest {
            model: "x".into(),
            ..Default::default()
        })
        .unwrap_err();
    match &err {
        ClientError::WorkerDied { status, stderr } => {
            assert!(status.contains("101"), "{status}");
            assert!(stderr.contains("boom"), "{stderr}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(err.to_string().contains("stopped unexpectedly"));
}

#[test]
fn idle_unload_then_transparent_reload() {
    let mut w = worker();
    w.load(LoadRequest {
        model: fixture("sd1").display().to_string(),
        device: Some("cpu".into()),
        idle_unload_secs: Some(1),
        ..Default::default()
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // The model was dropped while idle; the next request loads it again.
    let images = w
        .generate(
            GenerateRequest {
                n: Some(1),
                ..request(1)
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(images.len(), 1);
}

#[test]
fn the_worker_stops_generating_when_the_host_goes_away() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_imageai-sd-worker"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let model = serde_json::to_string(&fixture("sd1").display().to_string()).unwrap();
    writeln!(
        stdin,
        r#"{{"op":"load","id":1,"model":{model},"device":"cpu"}}
{{"op":"generate","id":2,"prompt":"x","width":128,"height":128,"steps":1000,"scheduler":"euler"}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until it is sampling.
    loop {
        let line = lines.next().unwrap().unwrap();
        assert!(!line.contains(r#""event":"error""#), "{line}");
        if line.contains(r#""event":"progress""#) {
            break;
        }
    }
    // The host exits: its end of the pipe closes. The worker stops at the next step and exits.
    drop(stdin);
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the worker kept generating after the host left");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // It got nowhere near the 1000 steps.
    let steps = lines
        .map_while(Result::ok)
        .filter(|l| l.contains(r#""event":"progress""#))
        .count();
    assert!(steps < 900, "{steps} more steps after the host left");
}

#[test]
fn a_memory_limit_from_the_load_request_applies() {
    let mut w = worker();
    let load = LoadRequest {
        model: fixture("sd1").display().to_string(),
        device: Some("cpu".into()),
        ..Default::default()
    };
    // 1 MiB fits nothing: a clear error that names the size, and the worker keeps serving.
    w.load_with_memory_limit(load.clone(), Some(1)).unwrap();
    let err = w.generate(request(1), |_| {}).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidRequest), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("32x32") && msg.contains("memory limit of 1 MiB") && msg.contains("fp16"),
        "{msg}"
    );
    w.load_with_memory_limit(load, Some(64 * 1024)).unwrap();
    assert_eq!(w.generate(request(1), |_| {}).unwrap().len(), 2);
}
