//! Plugin authoring: scaffold a provider plugin crate from the SDK's template, and build a plugin
//! crate into an installable folder (`plugin.toml` + `plugin.wasm`). Validating the result is the
//! runtime's job; this module only runs cargo and copies files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The contract version the scaffolded plugin declares: the one the SDK of this release builds for.
const CONTRACT_VERSION: &str = "0.1.0";

/// The template, embedded from `sdk/template/` (real files, so they can be read and edited as such).
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../sdk/template/Cargo.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../sdk/template/src/lib.rs.in"),
    ),
    (
        "plugin.toml",
        include_str!("../../../sdk/template/plugin.toml.in"),
    ),
    (
        "README.md",
        include_str!("../../../sdk/template/README.md.in"),
    ),
    (
        ".gitignore",
        include_str!("../../../sdk/template/gitignore.in"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../../sdk/template/cargo-config.toml.in"),
    ),
];

/// Where the scaffolded crate gets `imageai-sdk` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A local checkout of the SDK (the `sdk/` folder of this repository).
    Path(PathBuf),
    /// A published version, e.g. `0.1.0`.
    Version(String),
}

impl SdkSource {
    /// The SDK folder of the repository this binary was built from, when it is still there (a
    /// developer build), else the published SDK of the same version.
    pub fn detect() -> Self {
        let repo_sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
        match repo_sdk
            .join("Cargo.toml")
            .is_file()
            .then(|| repo_sdk.canonicalize())
        {
            Some(Ok(path)) => Self::Path(path),
            _ => Self::published(),
        }
    }

    /// The published SDK with this release's version.
    pub fn published() -> Self {
        Self::Version(env!("CARGO_PKG_VERSION").to_owned())
    }

    /// The dependency's value in `Cargo.toml`.
    fn dependency(&self) -> String {
        match self {
            Self::Path(path) => format!("{{ path = {} }}", toml_string(&path.to_string_lossy())),
            Self::Version(version) => toml_string(version),
        }
    }
}

/// A basic TOML string, escaped (paths on Windows have backslashes).
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// Why scaffolding or building a plugin failed. Each message says what to do next; paths last.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    #[error(
        "`{name}` cannot be a plugin name: {reason}. Use lower-case letters, digits and dashes, e.g. `my-provider`"
    )]
    InvalidName { name: String, reason: &'static str },

    #[error("{} already exists; choose another name or folder", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("could not {action}: {source} ({})", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the {WASM_TARGET} target is not installed: run `rustup target add {WASM_TARGET}`")]
    TargetMissing,

    #[error("could not run cargo ({source}); install Rust from https://rustup.rs")]
    CargoMissing {
        #[source]
        source: std::io::Error,
    },

    #[error("{command} failed; fix what cargo reports below, then build again ({})\n{stderr}", dir.display())]
    Cargo {
        command: String,
        dir: PathBuf,
        stderr: String,
    },

    #[error("{message} ({})", path.display())]
    Manifest { message: String, path: PathBuf },

    #[error("cargo built no .wasm for {package}; its Cargo.toml needs `crate-type = [\"cdylib\"]` under [lib] ({})", dir.display())]
    NoComponent { package: String, dir: PathBuf },
}

impl AuthoringError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The names one plugin name turns into.
struct Names {
    id: String,
    display: String,
    package: String,
    crate_name: String,
    type_name: String,
    env_id: String,
}

impl Names {
    fn new(name: &str) -> Result<Self, AuthoringError> {
        let invalid = |reason| AuthoringError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > 64 {
            return Err(invalid("it is longer than 64 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid("it has characters other than a-z, 0-9 and -"));
        }
        if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
            return Err(invalid("dashes must separate words"));
        }
        let words: Vec<&str> = name.split('-').collect();
        let capitalise = |word: &str| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        };
        let mut type_name: String = words.iter().map(|w| capitalise(w)).collect();
        if type_name.starts_with(|c: char| c.is_ascii_digit()) {
            type_name.insert_str(0, "Provider");
        }
        let env_id = name.to_ascii_uppercase().replace('-', "_");
        Ok(Self {
            id: name.to_owned(),
            display: words
                .iter()
                .map(|w| capitalise(w))
                .collect::<Vec<_>>()
                .join(" "),
            package: format!("imageai-plugin-{name}"),
            crate_name: format!("imageai_plugin_{}", name.replace('-', "_")),
            type_name,
            env_id,
        })
    }

    fn fill(&self, template: &str, sdk: &SdkSource) -> String {
        template
            .replace("{{id}}", &self.id)
            .replace("{{name}}", &self.display)
            .replace("{{package}}", &self.package)
            .replace("{{crate}}", &self.crate_name)
            .replace("{{type}}", &self.type_name)
            .replace("{{env_key}}", &format!("{}_API_KEY", self.env_id))
            .replace("{{env_id}}", &self.env_id)
            .replace("{{contract}}", CONTRACT_VERSION)
            .replace("{{sdk}}", &sdk.dependency())
    }
}

/// Create `<parent_dir>/<name>/`, a plugin crate that builds as is: `Cargo.toml` (cdylib, size
/// optimised release profile, `imageai-sdk` from `sdk`), `src/lib.rs` (a small provider for an
/// OpenAI-compatible API at a configurable `base_url`), `plugin.toml`, `README.md`, `.gitignore`,
/// `.cargo/config.toml` (WebAssembly SIMD on).
/// `name` becomes the provider id. Returns the crate's folder.
pub fn new_plugin(
    name: &str,
    parent_dir: &Path,
    sdk: SdkSource,
) -> Result<PathBuf, AuthoringError> {
    let names = Names::new(name)?;
    let dir = parent_dir.join(name);
    if dir.exists() {
        return Err(AuthoringError::AlreadyExists { path: dir });
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| AuthoringError::io("create the plugin folder", &dir, e))?;
    for (relative, template) in TEMPLATE {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| AuthoringError::io("create a folder", parent, e))?;
        }
        std::fs::write(&path, names.fill(template, &sdk))
            .map_err(|e| AuthoringError::io("write a file", &path, e))?;
    }
    Ok(dir)
}

/// A plugin folder ready to install or load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPlugin {
    /// `<target dir>/imageai-plugin/<id>/`, holding `plugin.toml` and `plugin.wasm`.
    pub dir: PathBuf,
    /// The `id` from `plugin.toml`.
    pub manifest_id: String,
}

impl fmt::Display for BuiltPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.manifest_id, self.dir.display())
    }
}

/// Build the plugin crate at `crate_dir` for wasm32-wasip2 (`--release` when asked) and assemble
/// `<target dir>/imageai-plugin/<id>/{plugin.toml,plugin.wasm}`. Cargo runs in `crate_dir`, so
/// its `.cargo/config.toml` and toolchain file apply; `CARGO_TARGET_DIR` is honoured.
pub fn build_plugin(crate_dir: &Path, release: bool) -> Result<BuiltPlugin, AuthoringError> {
    let manifest_path = crate_dir.join("Cargo.toml");
    if !manifest_path.is_file() {
        return Err(AuthoringError::Manifest {
            message: "no Cargo.toml here; point at the plugin crate's folder".into(),
            path: crate_dir.to_path_buf(),
        });
    }
    let plugin_toml = crate_dir.join("plugin.toml");
    let manifest_id = read_manifest_id(&plugin_toml)?;
    ensure_wasm_target(crate_dir)?;

    let metadata = cargo_metadata(crate_dir, &manifest_path)?;
    let CrateInfo {
        package,
        lib_name,
        target_dir,
    } = crate_info(&metadata, &manifest_path, crate_dir)?;

    let profile = if release { "release" } else { "debug" };
    let mut args = vec!["build", "--target", WASM_TARGET, "--manifest-path"];
    let manifest_arg = manifest_path.to_string_lossy().into_owned();
    args.push(&manifest_arg);
    args.extend([
        "-p",
        &package,
        "--message-format",
        "json-render-diagnostics",
    ]);
    if release {
        args.push("--release");
    }
    let output = cargo(crate_dir)
        .args(&args)
        .output()
        .map_err(|source| AuthoringError::CargoMissing { source })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        if target_missing(&stderr) {
            return Err(AuthoringError::TargetMissing);
        }
        return Err(AuthoringError::Cargo {
            command: format!("cargo {}", args.join(" ")),
            dir: crate_dir.to_path_buf(),
            stderr,
        });
    }
    let wasm = built_wasm(&String::from_utf8_lossy(&output.stdout), &lib_name)
        .or_else(|| {
            // Cargo said nothing about the artifact (e.g. an unusual wrapper): the usual location.
            let usual = target_dir
                .join(WASM_TARGET)
                .join(profile)
                .join(format!("{lib_name}.wasm"));
            usual.is_file().then_some(usual)
        })
        .ok_or_else(|| AuthoringError::NoComponent {
            package: package.clone(),
            dir: crate_dir.to_path_buf(),
        })?;

    let dir = target_dir.join("imageai-plugin").join(&manifest_id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| AuthoringError::io("create the plugin folder", &dir, e))?;
    copy_atomically(&plugin_toml, &dir.join("plugin.toml"))?;
    copy_atomically(&wasm, &dir.join("plugin.wasm"))?;
    Ok(BuiltPlugin { dir, manifest_id })
}

/// `id` from `plugin.toml`, checked only as far as building needs (the runtime validates the rest).
fn read_manifest_id(path: &Path) -> Result<String, AuthoringError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuthoringError::io("read the plugin manifest", path, e))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| AuthoringError::Manifest {
        message: format!("plugin.toml is not valid TOML: {}", e.message()),
        path: path.to_path_buf(),
    })?;
    let id = table
        .get("id")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| AuthoringError::Manifest {
            message: "plugin.toml has no `id`; add e.g. `id = \"my-provider\"`".into(),
            path: path.to_path_buf(),
        })?;
    let valid = id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(AuthoringError::Manifest {
            message: format!(
                "plugin.toml's id `{id}` must be lower-case letters, digits and dashes"
            ),
            path: path.to_path_buf(),
        });
    }
    Ok(id.to_owned())
}

fn cargo(dir: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(dir);
    command
}

fn cargo_metadata(dir: &Path, manifest_path: &Path) -> Result<serde_json::Value, AuthoringError> {
    let output = cargo(dir)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest_path)
        .output()
        .map_err(|source| AuthoringError::CargoMissing { source })?;
    if !output.status.success() {
        return Err(AuthoringError::Cargo {
            command: "cargo metadata".into(),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|e| AuthoringError::Cargo {
        command: "cargo metadata".into(),
        dir: dir.to_path_buf(),
        stderr: format!("its output is not JSON: {e}"),
    })
}

/// What cargo metadata says about the crate being built.
struct CrateInfo {
    package: String,
    /// The name of its cdylib target (what the `.wasm` is called).
    lib_name: String,
    target_dir: PathBuf,
}

/// Find the package whose manifest is `manifest_path`, its cdylib target and the target folder.
fn crate_info(
    metadata: &serde_json::Value,
    manifest_path: &Path,
    crate_dir: &Path,
) -> Result<CrateInfo, AuthoringError> {
    let wanted = manifest_path
        .canonicalize()
        .unwrap_or_else(|_| manifest_path.to_path_buf());
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m).canonicalize().is_ok_and(|m| m == wanted))
        })
        .ok_or_else(|| AuthoringError::Manifest {
            message: "cargo metadata does not list this crate; is Cargo.toml a [package]?".into(),
            path: manifest_path.to_path_buf(),
        })?;
    let name = package["name"].as_str().unwrap_or_default().to_owned();
    let lib_name = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["crate_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| AuthoringError::NoComponent {
            package: name.clone(),
            dir: crate_dir.to_path_buf(),
        })?
        .to_owned();
    let target_dir = metadata["target_directory"]
        .as_str()
        .map_or_else(|| crate_dir.join("target"), PathBuf::from);
    Ok(CrateInfo {
        package: name,
        lib_name,
        target_dir,
    })
}

/// The `.wasm` cargo reported building for the target `lib_name` (from `--message-format json`).
fn built_wasm(stdout: &str, lib_name: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"].as_str() == Some(lib_name)
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .map(|files| {
                    files
                        .iter()
                        .filter_map(|f| f.as_str().map(PathBuf::from))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .rfind(|path| path.extension().is_some_and(|e| e == "wasm"))
}

/// Fail early, with the fix, when the wasm target's standard library is not installed.
fn ensure_wasm_target(dir: &Path) -> Result<(), AuthoringError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc)
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
    else {
        // No rustc to ask: cargo will say what is wrong.
        return Ok(());
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success()
        && !sysroot
            .join("lib")
            .join("rustlib")
            .join(WASM_TARGET)
            .exists()
    {
        return Err(AuthoringError::TargetMissing);
    }
    Ok(())
}

fn target_missing(stderr: &str) -> bool {
    stderr.contains("target may not be installed")
        || stderr.contains("can't find crate for `core`")
        || stderr.contains("can't find crate for `std`")
}

/// Copy via a temporary name and a rename, so a reader never sees half a file.
fn copy_atomically(from: &Path, to: &Path) -> Result<(), AuthoringError> {
    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    std::fs::copy(from, &partial)
        .and_then(|_| std::fs::rename(&partial, to))
        .map_err(|e| AuthoringError::io("copy the built plugin", to, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_plugin_name() -> Result<(), AuthoringError> {
        let names = Names::new("acme-images")?;
        assert_eq!(names.display, "Acme Images");
        assert_eq!(names.package, "imageai-plugin-acme-images");
        assert_eq!(names.crate_name, "imageai_plugin_acme_images");
        assert_eq!(names.type_name, "AcmeImages");
        assert_eq!(names.env_id, "ACME_IMAGES");
        assert_eq!(Names::new("3d")?.type_name, "Provider3d");
        Ok(())
    }

    #[test]
    fn bad_names_are_refused() {
        for name in [
            "",
            "Acme",
            "acme_images",
            "-acme",
            "acme-",
            "a--b",
            "acme images",
            "ünicode",
        ] {
            assert!(
                matches!(Names::new(name), Err(AuthoringError::InvalidName { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn templates_are_filled_completely() -> Result<(), AuthoringError> {
        let names = Names::new("acme")?;
        for sdk in [
            SdkSource::Path(PathBuf::from("/x/sdk")),
            SdkSource::Version("0.1.0".into()),
        ] {
            for (file, template) in TEMPLATE {
                let filled = names.fill(template, &sdk);
                assert!(
                    !filled.contains("{{"),
                    "{file} keeps a placeholder:\n{filled}"
                );
            }
        }
        let cargo_toml = names.fill(TEMPLATE[0].1, &SdkSource::Path(PathBuf::from("C:\\sdk")));
        let parsed: toml::Table =
            toml::from_str(&cargo_toml).map_err(|e| AuthoringError::Manifest {
                message: e.to_string(),
                path: PathBuf::from("Cargo.toml"),
            })?;
        assert_eq!(
            parsed["dependencies"]["imageai-sdk"]["path"].as_str(),
            Some("C:\\sdk")
        );
        assert_eq!(parsed["lib"]["crate-type"][0].as_str(), Some("cdylib"));
        let manifest: toml::Table =
            toml::from_str(&names.fill(TEMPLATE[2].1, &SdkSource::published())).map_err(|e| {
                AuthoringError::Manifest {
                    message: e.to_string(),
                    path: PathBuf::from("plugin.toml"),
                }
            })?;
        assert_eq!(manifest["id"].as_str(), Some("acme"));
        assert_eq!(manifest["key"]["env"].as_str(), Some("ACME_API_KEY"));
        assert_eq!(manifest["contract"].as_str(), Some(CONTRACT_VERSION));
        Ok(())
    }

    #[test]
    fn new_plugin_writes_the_crate_once() -> Result<(), AuthoringError> {
        let parent =
            tempfile::tempdir().map_err(|e| AuthoringError::io("make a temp dir", "/tmp", e))?;
        let dir = new_plugin("acme", parent.path(), SdkSource::published())?;
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "plugin.toml",
            "README.md",
            ".gitignore",
            ".cargo/config.toml",
        ] {
            assert!(dir.join(file).is_file(), "{file} missing");
        }
        assert_eq!(read_manifest_id(&dir.join("plugin.toml"))?, "acme");
        assert!(matches!(
            new_plugin("acme", parent.path(), SdkSource::published()),
            Err(AuthoringError::AlreadyExists { .. })
        ));
        Ok(())
    }

    #[test]
    fn finds_the_wasm_in_cargo_messages() {
        let stdout = r#"{"reason":"compiler-artifact","target":{"name":"serde","kind":["lib"]},"filenames":["/t/libserde.rlib"]}
{"reason":"compiler-artifact","target":{"name":"imageai_plugin_acme","kind":["cdylib","rlib"]},"filenames":["/t/wasm32-wasip2/release/imageai_plugin_acme.wasm","/t/wasm32-wasip2/release/libimageai_plugin_acme.rlib"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            built_wasm(stdout, "imageai_plugin_acme"),
            Some(PathBuf::from(
                "/t/wasm32-wasip2/release/imageai_plugin_acme.wasm"
            ))
        );
        assert_eq!(built_wasm(stdout, "other"), None);
    }

    #[test]
    fn missing_target_is_recognised() {
        assert!(target_missing(
            "error[E0463]: can't find crate for `core`\n  = note: the `wasm32-wasip2` target may not be installed"
        ));
        assert!(!target_missing("error: expected `;`"));
    }
}
