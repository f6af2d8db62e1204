//! Build a plugin crate for wasm32-wasip2 and assemble its installable folder
//! (`target/test-plugins/<id>/{plugin.toml,plugin.wasm}`), once per test process; load it into
//! a runtime with the options a test needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use imageai_core::CallContext;
use imageai_core::plugin::{HttpOptions, Runtime, RuntimeOptions, WasmProvider};

use crate::Recorded;

const WASM_TARGET: &str = "wasm32-wasip2";

/// Built folders by package; the lock also serialises the cargo runs of parallel tests.
static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();

/// The folder of the plugin built from cargo package `package`, ready for `Runtime::load`.
///
/// Runs `cargo build --target wasm32-wasip2 --profile plugin -p <package>` in the workspace
/// (sharing its target dir), then copies `<crate>.wasm` and the crate's `plugin.toml` into
/// `target/test-plugins/<id>/`. Panics with the reason when the build fails: this is test
/// support, and a test cannot go on without its plugin.
pub fn plugin_dir(package: &str) -> PathBuf {
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = built.get(package) {
        return dir.clone();
    }
    let dir = build(package);
    built.insert(package.to_owned(), dir.clone());
    dir
}

/// The workspace root: the folder above this crate's (`tests/`), two levels above `tests/src`.
/// Build `package` and load it into a runtime of its own with `options`. Compiled components
/// are cached in `target/test-component-cache`, shared by every test process.
pub fn load(package: &str, options: RuntimeOptions) -> WasmProvider {
    let dir = plugin_dir(package);
    let cache_dir = dir
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("test-component-cache"));
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir,
        ..options
    })
    .unwrap_or_else(|err| panic!("could not start the runtime: {err}"));
    runtime
        .load(&dir)
        .unwrap_or_else(|err| panic!("could not load `{package}`: {err}"))
}

/// The default limits with quick host retries (10 ms backoff), so retry tests stay fast.
pub fn quick_retries() -> RuntimeOptions {
    RuntimeOptions {
        http: HttpOptions {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..HttpOptions::default()
        },
        ..RuntimeOptions::default()
    }
}

/// Host retries off, so each scripted failure reaches the plugin as is.
pub fn no_retries() -> RuntimeOptions {
    RuntimeOptions {
        http: HttpOptions {
            max_retries: 0,
            ..HttpOptions::default()
        },
        ..RuntimeOptions::default()
    }
}

/// A short read timeout and no retries, so a slow answer fails at once.
pub fn read_timeout(timeout: Duration) -> RuntimeOptions {
    RuntimeOptions {
        http: HttpOptions {
            read_timeout: timeout,
            max_retries: 0,
            ..HttpOptions::default()
        },
        ..RuntimeOptions::default()
    }
}

/// The one request in `requests`; a panic naming them all when there are more or none.
pub fn only(requests: Vec<Recorded>) -> Recorded {
    match <[Recorded; 1]>::try_from(requests) {
        Ok([one]) => one,
        Err(all) => panic!(
            "expected exactly one request, got {}: {:?}",
            all.len(),
            all.iter().map(|r| &r.uri).collect::<Vec<_>>()
        ),
    }
}

/// Every progress report of a call, in order.
pub type Reports = Arc<Mutex<Vec<(f32, String)>>>;

/// Record every progress report `ctx` receives.
pub fn record_progress(ctx: &mut CallContext) -> Reports {
    let reports = Reports::default();
    let sink = reports.clone();
    ctx.progress = Some(Arc::new(move |fraction: f32, message: &str| {
        if let Ok(mut all) = sink.lock() {
            all.push((fraction, message.to_owned()));
        }
    }));
    reports
}

/// The repository's root folder.
pub fn workspace_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| tests.to_path_buf())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn build(package: &str) -> PathBuf {
    ensure_wasm_target();
    let root = workspace_root();
    let metadata = metadata(&root);
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let Some(found) = metadata["packages"].as_array().and_then(|packages| {
        packages
            .iter()
            .find(|p| p["name"].as_str() == Some(package))
    }) else {
        panic!(
            "no package `{package}` in the workspace at {}",
            root.display()
        );
    };
    let Some(crate_dir) = found["manifest_path"]
        .as_str()
        .and_then(|p| Path::new(p).parent())
        .map(Path::to_path_buf)
    else {
        panic!("cargo metadata gave no manifest path for `{package}`");
    };
    let crate_name = package.replace('-', "_");

    let output = Command::new(cargo())
        .args([
            "build",
            "--target",
            WASM_TARGET,
            "--profile",
            "plugin",
            "-p",
            package,
        ])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap_or_else(|err| panic!("could not run cargo to build `{package}`: {err}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("may not be installed") || stderr.contains("can't find crate for `core`")
        {
            panic!(
                "the {WASM_TARGET} target is missing: run `rustup target add {WASM_TARGET}`\n{stderr}"
            );
        }
        panic!("building plugin `{package}` for {WASM_TARGET} failed:\n{stderr}");
    }

    let wasm = target_dir
        .join(WASM_TARGET)
        .join("plugin")
        .join(format!("{crate_name}.wasm"));
    let manifest_path = crate_dir.join("plugin.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .unwrap_or_else(|err| panic!("could not read {}: {err}", manifest_path.display()));
    let id =
        manifest_id(&manifest).unwrap_or_else(|| panic!("{} has no `id`", manifest_path.display()));

    let out = target_dir.join("test-plugins").join(&id);
    std::fs::create_dir_all(&out)
        .unwrap_or_else(|err| panic!("could not create {}: {err}", out.display()));
    copy(&wasm, &out.join("plugin.wasm"));
    copy(&manifest_path, &out.join("plugin.toml"));
    out
}

fn metadata(root: &Path) -> serde_json::Value {
    let output = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|err| panic!("could not run cargo metadata: {err}"));
    if !output.status.success() {
        panic!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("cargo metadata printed invalid JSON: {err}"))
}

/// Fail early, with the fix, when the wasm target's standard library is not installed.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(&rustc).args(["--print", "sysroot"]).output() else {
        return;
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success()
        && !sysroot
            .join("lib")
            .join("rustlib")
            .join(WASM_TARGET)
            .exists()
    {
        panic!("the {WASM_TARGET} target is not installed: run `rustup target add {WASM_TARGET}`");
    }
}

/// The manifest's `id`, read without the core crate's parser (that is what is under test).
fn manifest_id(manifest: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(manifest).ok()?;
    table.get("id")?.as_str().map(str::to_owned)
}

/// Copy via a temporary name and a rename, so a test reading the folder never sees half a file.
fn copy(from: &Path, to: &Path) {
    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    std::fs::copy(from, &partial)
        .and_then(|_| std::fs::rename(&partial, to))
        .unwrap_or_else(|err| {
            panic!(
                "could not copy {} to {}: {err}",
                from.display(),
                to.display()
            )
        });
}
