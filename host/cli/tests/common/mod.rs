//! Set-up shared by the CLI's integration tests (`mod common;` in each test file).
// Each test file is its own crate and uses only some of these helpers; the rest would warn.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `imageai ARGS` run in `home` with `config` as its config folder and no OS keyring; nothing
/// else comes from the environment but `PATH`.
pub fn imageai(home: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imageai"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("IMAGEAI_CONFIG_DIR", config)
        .env("IMAGEAI_KEYRING", "off")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `output`, after failing the test with its exit code and output unless it succeeded.
pub fn ok(output: &Output) -> &Output {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// The `id` of each object in the JSON array `list`.
pub fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect()
}

/// The JSON sidecar saved beside `image` (`<image>.json`).
pub fn sidecar(image: &Path) -> Value {
    let mut name = image.as_os_str().to_owned();
    name.push(".json");
    serde_json::from_slice(&std::fs::read(name).unwrap()).unwrap()
}
