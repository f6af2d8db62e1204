//! The real `imageai` binary, started with no arguments under Xvfb, opens its window, draws
//! its first frames and saves a screenshot (IMAGEAI_GUI_SCREENSHOT) before exiting.
//! Needs `xvfb-run` (Debian: xvfb, xauth), `script` (util-linux) and a Vulkan driver
//! (mesa-vulkan-drivers: lavapipe).
#![allow(clippy::unwrap_used)] // test helpers fail loudly on the first surprise

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::workspace_root;

/// Build the `imageai` binary (the test cannot depend on another package's binary) and
/// return its path.
fn imageai_binary() -> PathBuf {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", "imageai", "--bin", "imageai"])
        .status()
        .unwrap();
    assert!(status.success(), "building imageai failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join("imageai")
}

#[test]
fn the_binary_with_no_arguments_opens_the_window_under_xvfb() {
    let Ok(_) = Command::new("xvfb-run").arg("--help").output() else {
        panic!("xvfb-run is missing: install the Debian packages xvfb and xauth");
    };
    let exe = imageai_binary();
    let tmp = tempfile::tempdir().unwrap();
    let shot = tmp.path().join("first-frame.png");
    // `imageai` reads a prompt from standard input when it is not a terminal; `script` gives
    // it one, as a user's shell would.
    let mut child = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24", "script", "-qec"])
        .arg(exe.display().to_string())
        .arg("/dev/null")
        .env("IMAGEAI_GUI_SCREENSHOT", &shot)
        .env("IMAGEAI_CONFIG_DIR", tmp.path().join("config"))
        .env("IMAGEAI_KEYRING", "off")
        .env("IMAGEAI_PLUGIN_DIRS", tmp.path().join("no-plugins"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the window did not close within 120 s\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let log = format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(status.success(), "imageai exited with {status}\n{log}");
    assert!(shot.is_file(), "no screenshot was saved\n{log}");
    let image = image::open(&shot).unwrap().to_rgba8();
    assert!(
        image.width() >= 640 && image.height() >= 420,
        "{}x{}",
        image.width(),
        image.height()
    );
    let first = image.get_pixel(0, 0);
    assert!(
        image.pixels().any(|p| p != first),
        "the screenshot is one flat colour: nothing was drawn"
    );
    // Keep a copy for a look (the README's screenshots come from the snapshot tests).
    let keep = workspace_root().join("target").join("gui-smoke.png");
    let _ = std::fs::copy(&shot, keep);
}
