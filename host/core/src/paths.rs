//! Where ImageAI keeps its files. The config folder is the Python ImageAI's, so both apps share
//! `config.json`, the `generated/` images and `details.jsonl`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Overrides every location: config, output, plugins and cache all live under it. Tests use it.
pub const CONFIG_DIR_ENV: &str = "IMAGEAI_CONFIG_DIR";

/// The folder name inside the platform's config and cache folders.
pub const APP_DIR_NAME: &str = "ImageAI";

/// The platform's folders could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error(
        "could not find your home folder, so ImageAI does not know where to keep its settings; set {CONFIG_DIR_ENV} to a folder for them"
    )]
    NoHome,
}

/// Every file and folder ImageAI reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    config_dir: PathBuf,
    cache_dir: PathBuf,
    output_dir: Option<PathBuf>,
}

impl Paths {
    /// The locations for this user: `$IMAGEAI_CONFIG_DIR` when set (cache in `<it>/cache`), else
    /// the Python ImageAI's folder — Windows `%APPDATA%\ImageAI`, macOS
    /// `~/Library/Application Support/ImageAI`, Linux `$XDG_CONFIG_HOME/ImageAI` or
    /// `~/.config/ImageAI` — with the cache in the platform cache folder (`…/ImageAI`).
    pub fn from_env() -> Result<Self, PathsError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, PathsError> {
        if let Some(dir) = lookup(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self::at(dir));
        }
        let base = directories::BaseDirs::new().ok_or(PathsError::NoHome)?;
        Ok(Self {
            config_dir: base.config_dir().join(APP_DIR_NAME),
            cache_dir: base.cache_dir().join(APP_DIR_NAME),
            output_dir: None,
        })
    }

    /// Everything under `dir`, the cache in `<dir>/cache`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let config_dir = dir.into();
        Self {
            cache_dir: config_dir.join("cache"),
            config_dir,
            output_dir: None,
        }
    }

    /// Use `dir` for generated images instead of `<config>/generated` (the config's
    /// `output_dir`, see `Config::output_dir`). `None` keeps the default. A relative path is
    /// taken relative to the config folder, so it means the same from any working directory.
    #[must_use]
    pub fn with_output_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.output_dir = dir.map(|d| {
            if d.is_relative() {
                self.config_dir.join(d)
            } else {
                d
            }
        });
        self
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// `<config>/config.json`.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.json")
    }

    /// Where generated images and their sidecars go: `<config>/generated` unless overridden.
    pub fn output_dir(&self) -> PathBuf {
        self.output_dir
            .clone()
            .unwrap_or_else(|| self.config_dir.join("generated"))
    }

    /// `<config>/templates.json`: the user's prompt templates.
    pub fn templates_file(&self) -> PathBuf {
        self.config_dir.join("templates.json")
    }

    /// `<config>/keys.json`: API keys when the OS keyring is not used (owner-only file).
    pub fn keys_file(&self) -> PathBuf {
        self.config_dir.join("keys.json")
    }

    /// `<config>/details.jsonl`: one JSON event per line (template use), as the Python app writes.
    pub fn details_file(&self) -> PathBuf {
        self.config_dir.join("details.jsonl")
    }

    /// `<config>/plugins`: plugins the user installed.
    pub fn plugins_dir(&self) -> PathBuf {
        self.config_dir.join("plugins")
    }

    /// The cache root: compiled plugins, thumbnails. Safe to delete.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// `<cache>/plugins`: compiled plugin code.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("plugins")
    }

    /// `<cache>/thumbnails`.
    pub fn thumbnails_dir(&self) -> PathBuf {
        self.cache_dir.join("thumbnails")
    }
}

/// Expand a leading `~` (alone or followed by a separator) to the home folder, as the Python
/// app's config values (`"model_cache": "~/.cache/huggingface"`) expect. Other paths, and `~`
/// when no home folder is known, are returned unchanged.
pub fn expand_tilde(path: &str) -> PathBuf {
    let rest = if path == "~" {
        Some("")
    } else {
        path.strip_prefix("~/").or_else(|| path.strip_prefix("~\\"))
    };
    match (rest, directories::BaseDirs::new()) {
        (Some(rest), Some(base)) => base.home_dir().join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    #[test]
    fn the_override_puts_everything_under_one_folder() {
        let paths =
            Paths::from_lookup(|name| (name == CONFIG_DIR_ENV).then(|| OsString::from("/tmp/x")))
                .unwrap();
        let root = Path::new("/tmp/x");
        assert_eq!(paths.config_dir(), root);
        assert_eq!(paths.config_file(), root.join("config.json"));
        assert_eq!(paths.output_dir(), root.join("generated"));
        assert_eq!(paths.templates_file(), root.join("templates.json"));
        assert_eq!(paths.keys_file(), root.join("keys.json"));
        assert_eq!(paths.details_file(), root.join("details.jsonl"));
        assert_eq!(paths.plugins_dir(), root.join("plugins"));
        assert_eq!(paths.cache_dir(), root.join("cache"));
        assert_eq!(paths.plugin_cache_dir(), root.join("cache/plugins"));
        assert_eq!(paths, Paths::at("/tmp/x"));
    }

    #[test]
    fn without_the_override_it_is_the_python_apps_folder() {
        let Ok(paths) = Paths::from_lookup(|_| None) else {
            return; // no home folder in this environment: nothing to compare
        };
        let base = directories::BaseDirs::new().unwrap();
        assert_eq!(paths.config_dir(), base.config_dir().join("ImageAI"));
        assert_eq!(paths.cache_dir(), base.cache_dir().join("ImageAI"));
        // An empty override counts as unset.
        let empty = Paths::from_lookup(|_| Some(OsString::new())).unwrap();
        assert_eq!(empty, paths);
    }

    #[test]
    fn output_dir_override_is_relative_to_the_config_folder() {
        let paths = Paths::at("/cfg").with_output_dir(Some(PathBuf::from("pictures")));
        assert_eq!(paths.output_dir(), Path::new("/cfg/pictures"));
        let paths = Paths::at("/cfg").with_output_dir(Some(PathBuf::from("/srv/out")));
        assert_eq!(paths.output_dir(), Path::new("/srv/out"));
        let paths = paths.with_output_dir(None);
        assert_eq!(paths.output_dir(), Path::new("/cfg/generated"));
    }

    #[test]
    fn tilde_expands_to_home() {
        assert_eq!(expand_tilde("/abs/path"), Path::new("/abs/path"));
        assert_eq!(expand_tilde("~user/x"), Path::new("~user/x"));
        if let Some(base) = directories::BaseDirs::new() {
            assert_eq!(
                expand_tilde("~/.cache/huggingface"),
                base.home_dir().join(".cache/huggingface")
            );
            assert_eq!(expand_tilde("~"), base.home_dir());
        }
    }
}
