//! Local Stable Diffusion through the real `imageai` binary, as a user runs it: the host finds
//! `imageai-sd-worker` beside itself, spawns it and drives it over stdio. The model is the tiny
//! random-weight diffusers fixture of `plugins/local-sd`, on the CPU, so no GPU is needed.
#![cfg(unix)]
#![allow(clippy::unwrap_used)] // test helpers: a failure is the test's failure

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imageai_tests::local_sd::{build_worker, copy_dir};
use serde_json::Value;

mod common;
use common::{ids, imageai, ok, sidecar, text};

/// Exit codes documented in `src/exit.rs` (the binary's module is not importable from here).
const EXIT_PLUGIN: i32 = 8;
const EXIT_INVALID: i32 = 9;

fn fixture() -> PathBuf {
    imageai_tests::local_sd::fixture("sd1")
}

/// `imageai-sd-worker`, built into the folder of the `imageai` under test (where users have it
/// and where the app looks). Cargo builds a package's binaries only for that package's tests,
/// so build it here, once.
fn worker() -> &'static Path {
    static WORKER: OnceLock<PathBuf> = OnceLock::new();
    WORKER.get_or_init(|| {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_imageai"))
            .parent()
            .unwrap()
            .to_path_buf();
        build_worker(&bin_dir)
    })
}

/// One user's machine: a config folder and a Hugging Face home of its own.
struct Setup {
    home: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        worker();
        Self {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn hf_home(&self) -> PathBuf {
        self.path("huggingface")
    }

    /// `imageai ARGS` with this setup's folders, nothing else from the environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = imageai(self.home.path(), &self.path("config"), args);
        cmd.env("HF_HOME", self.hf_home())
            .env("HF_HUB_OFFLINE", "1");
        cmd
    }

    /// Runs `cmd` and fails the test if it takes more than two minutes (a hang).
    fn run_cmd(mut cmd: Command) -> Output {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                panic!("imageai did not finish in 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// `imageai generate -p PROMPT` on local-sd's `model` on the CPU, saving to `out`, plus `more`.
    fn generate_cmd(&self, model: &str, prompt: &str, out: &Path, more: &[&str]) -> Command {
        let mut args = vec![
            "generate",
            "--provider",
            "local-sd",
            "--model",
            model,
            "-p",
            prompt,
            "--device",
            "cpu",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        self.cmd(&args)
    }

    /// `imageai generate` on local-sd with the fixture settings plus `more`.
    fn generate(&self, model: &str, out: &Path, more: &[&str]) -> Output {
        let mut args = vec!["--steps", "2", "--size", "64x64", "--seed", "1"];
        args.extend_from_slice(more);
        Self::run_cmd(self.generate_cmd(model, "a photo of an astronaut", out, &args))
    }
}

fn failed_with(output: &Output, code: i32, needle: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    stderr
}

/// Width, height and RGB(A) bytes of a PNG.
fn pixels(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn generates_a_png_with_its_sidecar_and_the_same_seed_gives_the_same_pixels() {
    let s = Setup::new();
    let model = fixture().display().to_string();
    let first = s.path("first.png");
    ok(&s.generate(&model, &first, &[]));
    let (w, h, px) = pixels(&first);
    assert_eq!((w, h), (64, 64));
    let meta = sidecar(&first);
    assert_eq!(meta["provider"], "local-sd");
    assert_eq!(meta["seed"], 1);
    assert_eq!(meta["model"], model.as_str());
    assert_eq!(meta["settings"]["steps"], 2);

    let again = s.path("again.png");
    ok(&s.generate(&model, &again, &[]));
    assert!(pixels(&again).2 == px, "same seed, different pixels");

    let euler = s.path("euler.png");
    ok(&s.generate(&model, &euler, &["--scheduler", "euler"]));
    assert_eq!(sidecar(&euler)["settings"]["extra"]["scheduler"], "euler");
    assert_eq!(pixels(&euler).0, 64);
}

/// A grey PNG mask, white (repaint) on its right half.
fn write_mask(path: &Path, size: u32) {
    let mut data = Vec::new();
    for _ in 0..size {
        data.extend((0..size).map(|x| if x >= size / 2 { 255u8 } else { 0 }));
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&data)
        .unwrap();
}

#[test]
fn img2img_and_inpaint_take_a_source_image() {
    let s = Setup::new();
    let model = fixture().display().to_string();
    let source = s.path("source.png");
    ok(&s.generate(&model, &source, &[]));
    let source_arg = source.to_str().unwrap();

    let edited = s.path("edited.png");
    ok(&s.generate(
        &model,
        &edited,
        &["--image", source_arg, "--strength", "0.5"],
    ));
    assert_eq!(pixels(&edited).0, 64);
    let meta = sidecar(&edited);
    assert_eq!(meta["settings"]["mode"], "edit");
    assert_eq!(meta["settings"]["strength"], 0.5);
    assert_eq!(meta["source_images"][0], "source.png");
    assert!(
        pixels(&edited).2 != pixels(&source).2,
        "img2img changed nothing"
    );

    let mask = s.path("mask.png");
    write_mask(&mask, 64);
    let inpainted = s.path("inpainted.png");
    ok(&s.generate(
        &model,
        &inpainted,
        &["--image", source_arg, "--mask", mask.to_str().unwrap()],
    ));
    assert_eq!(sidecar(&inpainted)["settings"]["mode"], "inpaint");
    assert_eq!(pixels(&inpainted).0, 64);
}

#[test]
fn bad_requests_are_clear_errors_with_the_invalid_exit_code() {
    let s = Setup::new();
    let model = fixture().display().to_string();
    let out = s.path("x.png");
    failed_with(
        &s.generate(&model, &out, &["--scheduler", "warp-drive"]),
        EXIT_INVALID,
        "unknown scheduler `warp-drive`",
    );
    failed_with(
        &s.generate("/no/such/model", &out, &[]),
        EXIT_INVALID,
        "no model folder at `/no/such/model`",
    );
    failed_with(
        &s.generate("test/not-installed", &out, &[]),
        EXIT_INVALID,
        "imageai models install test/not-installed",
    );
    failed_with(
        &s.generate(&model, &out, &["--set", "memory_limit=lots"]),
        EXIT_INVALID,
        "memory_limit `lots` is not understood",
    );
    assert!(!out.exists());
}

#[test]
fn a_memory_limit_reaches_the_engine() {
    let s = Setup::new();
    let model = fixture().display().to_string();
    let out = s.path("limited.png");
    // Far below what even the tiny model needs: the engine's estimate says so, with the fix.
    let stderr = failed_with(
        &s.generate(&model, &out, &["--set", "memory_limit=1"]),
        EXIT_INVALID,
        "over the memory limit of 1 MiB",
    );
    assert!(stderr.contains("64x64"), "{stderr}");
    assert!(!out.exists());
    // A roomy limit changes nothing.
    let output = s.generate(&model, &out, &["--set", "memory_limit=4GiB"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(out.exists());
}

#[test]
fn a_repo_id_in_the_hugging_face_cache_is_found_and_listed() {
    let s = Setup::new();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = s.hf_home().join("hub/models--test--tiny-sd");
    copy_dir(&fixture(), &repo.join("snapshots").join(commit));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();

    let out = s.path("cached.png");
    ok(&s.generate("test/tiny-sd", &out, &[]));
    assert_eq!(pixels(&out).0, 64);
    assert_eq!(sidecar(&out)["model"], "test/tiny-sd");

    // `imageai providers` lists the provider with the installed model and `*` for any other.
    let mut cmd = s.cmd(&["providers", "--json"]);
    let no_plugins = s.path("no-plugins");
    std::fs::create_dir_all(&no_plugins).unwrap();
    cmd.env("IMAGEAI_PLUGIN_DIRS", &no_plugins)
        .env("IMAGEAI_SD_WORKER", worker());
    let listed: Value = serde_json::from_slice(&ok(&Setup::run_cmd(cmd)).stdout).unwrap();
    let local = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "local-sd")
        .unwrap_or_else(|| panic!("local-sd not listed: {listed}"));
    assert_eq!(local["name"], "Local Stable Diffusion");
    assert_eq!(local["native"], true);
    assert_eq!(local["key"], Value::Null);
    assert_eq!(ids(&local["models"]), ["test/tiny-sd", "*"]);
}

#[test]
fn models_devices_lists_what_the_engine_can_run_on() {
    let s = Setup::new();
    let output = Setup::run_cmd(s.cmd(&["models", "devices", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let devices: Value = serde_json::from_slice(&output.stdout).unwrap();
    let devices = devices.as_array().unwrap();
    // The CPU is always there, whatever GPUs (or lavapipe) this machine has.
    assert!(
        devices
            .iter()
            .any(|d| d["kind"] == "cpu" && d["name"].is_string()),
        "{devices:?}"
    );
    let table = Setup::run_cmd(s.cmd(&["models", "devices"]));
    assert!(table.status.success(), "{}", text(&table.stderr));
    let shown = text(&table.stdout);
    assert!(shown.contains("NAME") && shown.contains("cpu"), "{shown}");

    let mut missing = s.cmd(&["models", "devices"]);
    missing.env("IMAGEAI_SD_WORKER", "/bin/false");
    failed_with(
        &Setup::run_cmd(missing),
        EXIT_PLUGIN,
        "stopped unexpectedly",
    );
}

#[test]
fn a_worker_that_crashes_is_a_clear_error_not_a_hang() {
    let s = Setup::new();
    let model = fixture().display().to_string();
    let out = s.path("x.png");
    let mut cmd = s.generate_cmd(&model, "x", &out, &[]);
    cmd.env("IMAGEAI_SD_WORKER", "/bin/false");
    let stderr = failed_with(&Setup::run_cmd(cmd), EXIT_PLUGIN, "stopped unexpectedly");
    assert!(stderr.contains("started again"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn killing_the_worker_mid_run_is_a_clear_error() {
    let s = Setup::new();
    // A wrapper that notes the worker's pid, so the test can kill the real worker.
    let pid_file = s.path("worker.pid");
    let wrapper = s.path("worker.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec '{}' \"$@\"\n",
            pid_file.display(),
            worker().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let model = fixture().display().to_string();
    let out = s.path("x.png");
    let mut cmd = s.generate_cmd(
        &model,
        "x",
        &out,
        &[
            "--size",
            "256x256",
            "--steps",
            "1000",
            "--scheduler",
            "euler",
        ],
    );
    cmd.env("IMAGEAI_SD_WORKER", &wrapper)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file)
            && !pid.trim().is_empty()
        {
            break pid.trim().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let it load the model and start sampling, then kill it as the OOM killer would.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "imageai finished before the worker was killed; make the run longer"
    );
    let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(killed.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "imageai hangs after its worker died"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = failed_with(&output, EXIT_PLUGIN, "stopped unexpectedly");
    assert!(stderr.contains("signal: 9"), "{stderr}");
    assert!(!out.exists());
}
