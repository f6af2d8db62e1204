//! Developer tasks that plain cargo can't express: build the WASM provider plugins for
//! wasm32-wasip2 and put them where the app finds its bundled plugins, build the local Stable
//! Diffusion worker beside `imageai`, then run or test.
//!
//! `cargo xtask run [-- ARGS]`, `cargo xtask test`, `cargo xtask ci`, `cargo xtask plugins`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let rest: Vec<String> = rest
        .iter()
        .filter(|a| a.as_str() != "--")
        .cloned()
        .collect();
    match task {
        "plugins" => build_plugins().map(|_| ()),
        "run" => {
            build_plugins()?;
            build_worker()?;
            cargo(&["run", "--package", "imageai", "--"], &rest)
        }
        "test" => {
            build_plugins()?;
            build_worker()?;
            cargo(&["test", "--workspace"], &rest)
        }
        "ci" => {
            cargo(&["fmt", "--all", "--check"], &[])?;
            build_plugins()?;
            build_worker()?;
            cargo(
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )?;
            cargo(&["test", "--workspace"], &rest)
        }
        "help" | "--help" | "-h" => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  run [-- ARGS]   build the plugins and the local SD worker, then run imageai (no ARGS opens the app)\n  test [ARGS]     build the plugins, then run every test\n  ci              what CI runs: fmt check, plugins, clippy -D warnings, tests\n  plugins         build the bundled plugins into target/plugins/"
            );
            Ok(())
        }
        other => bail!("unknown task `{other}`: run `cargo xtask help` for the list"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo(args: &[&str], extra: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .args(extra)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Build `imageai-sd-worker` (the local Stable Diffusion engine's process) into
/// `target/<profile>/`, beside `imageai`, where the app looks for it.
fn build_worker() -> Result<()> {
    cargo(
        &[
            "build",
            "--package",
            "imageai-local-sd",
            "--bin",
            "imageai-sd-worker",
        ],
        &[],
    )
}

/// Make sure rustup has the wasm target; install it when missing.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => {
            eprintln!("xtask: installing the {WASM_TARGET} target with rustup");
            let status = Command::new("rustup")
                .args(["target", "add", WASM_TARGET])
                .status()?;
            if !status.success() {
                bail!(
                    "`rustup target add {WASM_TARGET}` failed: install the target by hand and retry"
                );
            }
            Ok(())
        }
        // No rustup: trust that the toolchain has the target; cargo will say if not.
        Err(_) => Ok(()),
    }
}

/// Build every bundled plugin and assemble `target/plugins/<id>/{plugin.toml,plugin.wasm}`.
fn build_plugins() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let bundled = bundled_plugins()?;
    let mut args = vec!["build", "--target", WASM_TARGET, "--profile", "plugin"];
    for (package, _) in &bundled {
        args.extend(["--package", package.as_str()]);
    }
    cargo(&args, &[])?;
    let out = target_dir().join("plugins");
    for (package, folder) in &bundled {
        let manifest_path = folder.join("plugin.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let id = manifest_id(&manifest)
            .with_context(|| format!("no `id` in {}", manifest_path.display()))?;
        let wasm = target_dir()
            .join(WASM_TARGET)
            .join("plugin")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = out.join(&id);
        std::fs::create_dir_all(&dest)?;
        std::fs::copy(&wasm, dest.join("plugin.wasm"))
            .with_context(|| format!("copying {}", wasm.display()))?;
        std::fs::write(dest.join("plugin.toml"), manifest)?;
    }
    eprintln!("xtask: plugins ready in {}", out.display());
    Ok(out)
}

/// Every WASM plugin under `plugins/`: a folder with a `plugin.toml` (the native local-sd
/// engine has none). Returns (cargo package name, folder), sorted.
fn bundled_plugins() -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("plugins"))? {
        let folder = entry?.path();
        if !folder.join("plugin.toml").is_file() {
            continue;
        }
        let cargo_toml = std::fs::read_to_string(folder.join("Cargo.toml"))
            .with_context(|| format!("reading {}", folder.join("Cargo.toml").display()))?;
        let package = cargo_toml
            .lines()
            .find_map(|line| {
                let rest = line
                    .trim()
                    .strip_prefix("name")?
                    .trim_start()
                    .strip_prefix('=')?;
                Some(rest.trim().trim_matches('"').to_owned())
            })
            .with_context(|| {
                format!("no package name in {}", folder.join("Cargo.toml").display())
            })?;
        found.push((package, folder));
    }
    found.sort();
    Ok(found)
}

/// The `id = "…"` line of a manifest (the app validates the whole manifest when loading).
fn manifest_id(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("id")?
            .trim_start()
            .strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_owned())
    })
}
