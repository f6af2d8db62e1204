//! For tests that run local Stable Diffusion for real: the tiny fixture models and the worker
//! binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::plugins::workspace_root;

/// A tiny random-weight pipeline in diffusers layout from `plugins/local-sd/tests/fixtures`
/// (`sd1`, `sd2_v`, `sdxl`, `inpaint`).
pub fn fixture(name: &str) -> PathBuf {
    workspace_root()
        .join("plugins/local-sd/tests/fixtures")
        .join(name)
}

/// Build `imageai-sd-worker` into `bin_dir` (a `target/<profile>` folder: cargo builds a
/// package's binaries only for that package's own tests) and return its path.
pub fn build_worker(bin_dir: &Path) -> PathBuf {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--package",
        "imageai-local-sd",
        "--bin",
        "imageai-sd-worker",
    ])
    .current_dir(workspace_root());
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|err| panic!("could not run cargo to build imageai-sd-worker: {err}"));
    assert!(status.success(), "building imageai-sd-worker failed");
    let worker = bin_dir.join("imageai-sd-worker");
    assert!(worker.is_file(), "no worker at {}", worker.display());
    worker
}

/// Copy a folder tree (a model into a test's Hugging Face cache).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to)
        .unwrap_or_else(|err| panic!("could not create {}: {err}", to.display()));
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|err| panic!("could not read {}: {err}", from.display()));
    for entry in entries.flatten() {
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest)
                .unwrap_or_else(|err| panic!("could not copy {}: {err}", entry.path().display()));
        }
    }
}
