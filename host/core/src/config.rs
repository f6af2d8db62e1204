//! `config.json`, shared with the Python ImageAI: typed access to the fields we use, and every
//! other field — top level and inside `providers.*` — kept exactly as found when we save.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};

use crate::atomic::{self, Access, AtomicError, CorruptFile};
use crate::paths::{Paths, expand_tilde};
use crate::secret::Secret;

/// Loading or saving `config.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the settings file ({reason}); check its permissions: {}", path.display())]
    Read { path: PathBuf, reason: io::Error },
    #[error(transparent)]
    File(#[from] AtomicError),
    #[error("could not encode the settings as JSON ({0}); this is a bug, please report it")]
    Encode(serde_json::Error),
}

/// One change to `config.json`, to be made by [`Config::update`].
pub type Change = Box<dyn FnOnce(&mut Config) + Send>;

/// Changes saved in the order they were made, though each is saved on a thread of its own (the
/// GUI changes a setting at once and saves it in the background): [`OrderedSaves::push`] where
/// the change is made, then [`OrderedSaves::save`] on any thread. Picking fp16 then fp32 quickly
/// leaves fp32 in the file whichever save runs first.
#[derive(Default)]
pub struct OrderedSaves {
    pending: Mutex<Vec<Change>>,
    /// Held from taking the pending changes until they are written.
    writing: Mutex<()>,
}

impl OrderedSaves {
    /// Queue `change`; the next [`OrderedSaves::save`] writes it.
    pub fn push(&self, change: Change) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change);
    }

    /// Write every change queued so far, oldest first, in one [`Config::update`]. Nothing is
    /// written when an earlier call already took them.
    pub fn save(&self, paths: &Paths) -> Result<(), ConfigError> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let changes =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if changes.is_empty() {
            return Ok(());
        }
        Config::update(paths, |config| {
            for change in changes {
                change(config);
            }
        })?;
        Ok(())
    }
}

/// What [`Config::load`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    /// Set when `config.json` was corrupt: it was copied aside and defaults are in use. Show it
    /// to the user.
    pub warning: Option<CorruptFile>,
}

/// The window position and size the Python GUI stores as `window_geometry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowGeometry {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// The whole `config.json` document. Unknown fields are never dropped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    doc: Map<String, Value>,
}

impl Config {
    /// Read `config.json`. A missing file gives the defaults. A file that is not a JSON object is
    /// copied aside with [`atomic::backup_corrupt`] and reported in [`LoadedConfig::warning`];
    /// the defaults are used and the damaged file stays until the next [`Config::save`].
    pub fn load(paths: &Paths) -> Result<LoadedConfig, ConfigError> {
        let path = paths.config_file();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(LoadedConfig {
                    config: Config::default(),
                    warning: None,
                });
            }
            Err(reason) => return Err(ConfigError::Read { path, reason }),
        };
        match parse_object(&bytes) {
            Ok(doc) => Ok(LoadedConfig {
                config: Config { doc },
                warning: None,
            }),
            Err(reason) => {
                let backup = atomic::backup_corrupt(&path)?;
                tracing::warn!(path = %path.display(), backup = %backup.display(), "config.json is corrupt; using defaults");
                Ok(LoadedConfig {
                    config: Config::default(),
                    warning: Some(CorruptFile {
                        path,
                        backup,
                        reason,
                        fallback: "starting with defaults",
                    }),
                })
            }
        }
    }

    /// Write `config.json` atomically as pretty JSON. The file is owner-only because it may
    /// hold API keys (the Python app stored them there).
    pub fn save(&self, paths: &Paths) -> Result<(), ConfigError> {
        let mut bytes = serde_json::to_vec_pretty(&self.doc).map_err(ConfigError::Encode)?;
        bytes.push(b'\n');
        atomic::write_atomic_with(&paths.config_file(), &bytes, Access::Private)?;
        Ok(())
    }

    /// Read `config.json` afresh, change it with `change` and save it: the way to make one edit
    /// (`imageai config set …`) without undoing what another process — the Python app, a second
    /// window — saved since this one loaded. A corrupt file is copied aside first, as in
    /// [`Config::load`], and its warning returned with the new config. Updates wait for each
    /// other ([`atomic::lock_for_update`]), so two at once both land.
    pub fn update(
        paths: &Paths,
        change: impl FnOnce(&mut Config),
    ) -> Result<LoadedConfig, ConfigError> {
        let _lock = atomic::lock_for_update(&paths.config_file())?;
        let mut loaded = Self::load(paths)?;
        change(&mut loaded.config);
        loaded.config.save(paths)?;
        Ok(loaded)
    }

    /// A config from a JSON object (e.g. one the Python app wrote).
    pub fn from_map(doc: Map<String, Value>) -> Self {
        Self { doc }
    }

    /// The whole document.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// A top-level field, whatever its type.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.doc.get(key)
    }

    /// Set a top-level field (for fields without a typed accessor, e.g. the GUI's own).
    pub fn set(&mut self, key: &str, value: Value) {
        self.doc.insert(key.to_owned(), value);
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.doc.shift_remove(key)
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.doc
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    /// The provider chosen last: our `default_provider`, else the Python app's `provider`.
    /// Returned in our id form (`local_sd` → `local-sd`).
    pub fn default_provider(&self) -> Option<String> {
        self.str_field("default_provider")
            .or_else(|| self.str_field("provider"))
            .map(canonical_id)
    }

    /// Record the default provider in both `default_provider` and the Python app's `provider`.
    pub fn set_default_provider(&mut self, id: &str) {
        self.set("default_provider", Value::from(canonical_id(id)));
        self.set("provider", Value::from(python_id(id)));
    }

    /// The Python app's Google auth mode, normalised (`"API Key"` → `api-key`,
    /// `"Google Cloud Account"` → `gcloud`).
    pub fn auth_mode(&self) -> Option<&str> {
        match self.str_field("auth_mode")? {
            "api-key" | "api_key" | "API Key" => Some("api-key"),
            "gcloud" | "Google Cloud Account" => Some("gcloud"),
            other => Some(other),
        }
    }

    /// The Python app's "copy the file name after saving" switch.
    pub fn auto_copy_filename(&self) -> bool {
        self.doc
            .get("auto_copy_filename")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn window_geometry(&self) -> Option<WindowGeometry> {
        let g = self.doc.get("window_geometry")?.as_object()?;
        let field = |k: &str| g.get(k).and_then(Value::as_i64);
        Some(WindowGeometry {
            x: field("x")?,
            y: field("y")?,
            w: field("w")?,
            h: field("h")?,
        })
    }

    /// Store the window geometry, keeping any other keys the Python GUI put beside x/y/w/h.
    pub fn set_window_geometry(&mut self, geometry: WindowGeometry) {
        let g = object_entry(&mut self.doc, "window_geometry");
        for (k, v) in [
            ("x", geometry.x),
            ("y", geometry.y),
            ("w", geometry.w),
            ("h", geometry.h),
        ] {
            g.insert(k.to_owned(), Value::from(v));
        }
    }

    /// Where generated images go, when the user chose a folder: our `output_dir` (a leading `~`
    /// is expanded), else the Python app's `data_roots.images` + `generated` when that folder
    /// exists. Give it to [`Paths::with_output_dir`].
    pub fn output_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = self.str_field("output_dir") {
            return Some(expand_tilde(dir));
        }
        let images = self
            .doc
            .get("data_roots")?
            .get("images")?
            .as_str()
            .filter(|s| !s.is_empty())?;
        let root = expand_tilde(images);
        // The Python app ignores an unreachable root (an unplugged drive) and so do we.
        root.is_dir().then(|| root.join("generated"))
    }

    pub fn set_output_dir(&mut self, dir: Option<&Path>) {
        match dir {
            Some(dir) => self.set(
                "output_dir",
                Value::from(dir.to_string_lossy().into_owned()),
            ),
            None => {
                self.remove("output_dir");
            }
        }
    }

    /// Plugin ids listed in `plugins.disabled`.
    pub fn disabled_plugins(&self) -> Vec<String> {
        self.doc
            .get("plugins")
            .and_then(|p| p.get("disabled"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_plugin_enabled(&self, id: &str) -> bool {
        !self.disabled_plugins().iter().any(|d| same_id(d, id))
    }

    /// Add `id` to or remove it from `plugins.disabled`.
    pub fn set_plugin_enabled(&mut self, id: &str, enabled: bool) {
        let plugins = object_entry(&mut self.doc, "plugins");
        let disabled = plugins
            .entry("disabled")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !disabled.is_array() {
            *disabled = Value::Array(Vec::new());
        }
        if let Value::Array(list) = disabled {
            list.retain(|v| v.as_str().is_none_or(|d| !same_id(d, id)));
            if !enabled {
                list.push(Value::from(canonical_id(id)));
            }
        }
    }

    /// The key of `providers.<id>` in the document: an exact match first, then the same id
    /// spelled with `_` for `-` or the other way round (`local-sd` finds `local_sd`).
    fn section_key(&self, id: &str) -> Option<String> {
        let providers = self.doc.get("providers")?.as_object()?;
        if providers.get(id).is_some_and(Value::is_object) {
            return Some(id.to_owned());
        }
        providers
            .iter()
            .find(|(k, v)| v.is_object() && same_id(k, id))
            .map(|(k, _)| k.clone())
    }

    fn section(&self, id: &str) -> Option<&Map<String, Value>> {
        let key = self.section_key(id)?;
        self.doc.get("providers")?.get(&key)?.as_object()
    }

    /// `providers.<id>`, created (under the Python spelling, `local_sd`) when missing.
    fn section_mut(&mut self, id: &str) -> &mut Map<String, Value> {
        let key = self.section_key(id).unwrap_or_else(|| python_id(id));
        let providers = object_entry(&mut self.doc, "providers");
        object_entry(providers, &key)
    }

    /// A provider's settings: the text, number and true/false entries of `providers.<id>`, as
    /// text, without `api_key`. Nulls, lists and objects are left out.
    pub fn provider_settings(&self, id: &str) -> BTreeMap<String, String> {
        let Some(section) = self.section(id) else {
            return BTreeMap::new();
        };
        section
            .iter()
            .filter(|(k, _)| k.as_str() != "api_key")
            .filter_map(|(k, v)| scalar_text(v).map(|text| (k.clone(), text)))
            .collect()
    }

    /// One setting of `providers.<id>` as text (see [`Config::provider_settings`]).
    pub fn provider_setting(&self, id: &str, name: &str) -> Option<String> {
        self.section(id)?.get(name).and_then(scalar_text)
    }

    /// Set `providers.<id>.<name>` to a text value, keeping the section's other fields.
    pub fn set_provider_setting(&mut self, id: &str, name: &str, value: &str) {
        self.section_mut(id)
            .insert(name.to_owned(), Value::from(value));
    }

    /// Remove `providers.<id>.<name>`; true when it was there.
    pub fn remove_provider_setting(&mut self, id: &str, name: &str) -> bool {
        let Some(key) = self.section_key(id) else {
            return false;
        };
        self.doc
            .get_mut("providers")
            .and_then(|p| p.get_mut(&key))
            .and_then(Value::as_object_mut)
            .is_some_and(|s| s.shift_remove(name).is_some())
    }

    /// An API key kept in `config.json`, in the Python app's order: `providers.<id>.api_key`,
    /// then `keys.<id>`, then the older top-level `<id>_api_key`, then the legacy top-level
    /// `api_key`, which was always Google's.
    pub fn stored_key(&self, id: &str) -> Option<Secret> {
        let nonempty = |v: &Value| {
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
        };
        if let Some(key) = self
            .section(id)
            .and_then(|s| s.get("api_key"))
            .and_then(nonempty)
        {
            return Some(key);
        }
        if let Some(keys) = self.doc.get("keys").and_then(Value::as_object) {
            let found = keys
                .get(id)
                .or_else(|| keys.iter().find(|(k, _)| same_id(k, id)).map(|(_, v)| v));
            if let Some(key) = found.and_then(nonempty) {
                return Some(key);
            }
        }
        if let Some(key) = self
            .doc
            .get(&format!("{}_api_key", python_id(id)))
            .and_then(nonempty)
        {
            return Some(key);
        }
        if id == "google" {
            return self.doc.get("api_key").and_then(nonempty);
        }
        None
    }

    /// Keep an API key in `config.json` as `providers.<id>.api_key` (where the Python app keeps
    /// it when no keyring is available). Prefer the key store; this is for compatibility.
    pub fn set_stored_key(&mut self, id: &str, key: &Secret) {
        self.section_mut(id)
            .insert("api_key".to_owned(), Value::from(key.expose()));
    }

    /// Remove every copy of `id`'s key from `config.json` (all the places
    /// [`Config::stored_key`] looks). True when one was there.
    pub fn remove_stored_key(&mut self, id: &str) -> bool {
        let mut removed = false;
        if let Some(key) = self.section_key(id)
            && let Some(section) = self
                .doc
                .get_mut("providers")
                .and_then(|p| p.get_mut(&key))
                .and_then(Value::as_object_mut)
        {
            removed |= section.shift_remove("api_key").is_some();
        }
        if let Some(keys) = self.doc.get_mut("keys").and_then(Value::as_object_mut) {
            let names: Vec<String> = keys.keys().filter(|k| same_id(k, id)).cloned().collect();
            for name in names {
                removed |= keys.shift_remove(&name).is_some();
            }
        }
        removed |= self
            .doc
            .shift_remove(&format!("{}_api_key", python_id(id)))
            .is_some();
        if id == "google" {
            removed |= self.doc.shift_remove("api_key").is_some();
        }
        removed
    }
}

/// Parse a JSON object; the error says why not (a parse position, never file content).
fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the file is JSON but not an object".to_owned()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// `map[key]` as an object, replacing anything else that was there.
fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        // Just made an object above.
        _ => unreachable!("slot was set to an object"),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Our provider id spelling: `-` between words (`local_sd` → `local-sd`).
pub fn canonical_id(id: &str) -> String {
    id.replace('_', "-")
}

/// The Python app's spelling: `_` between words (`local-sd` → `local_sd`).
fn python_id(id: &str) -> String {
    id.replace('-', "_")
}

/// Whether two provider ids are the same up to `-`/`_`.
pub fn same_id(a: &str, b: &str) -> bool {
    let norm = |c: char| if c == '_' { '-' } else { c };
    a.len() == b.len() && a.chars().map(norm).eq(b.chars().map(norm))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;
    use serde_json::json;

    const PYTHON_CONFIG: &str = r#"{
  "keys": {"google": "g-key-from-keys", "openai": "sk-from-keys"},
  "api_key": "legacy-google-key",
  "provider": "local_sd",
  "auth_mode": "API Key",
  "auto_copy_filename": true,
  "window_geometry": {"x": 10, "y": 20, "w": 1200, "h": 800, "maximized": false},
  "data_roots": {"video": "/nowhere"},
  "discord": {"enabled": false},
  "providers": {
    "openai": {"api_key": "sk-from-providers", "base_url": "https://proxy.example/v1", "org_hint": {"x": 1}},
    "local_sd": {"model_cache": "~/.cache/huggingface", "device": "auto", "memory_limit": null, "steps": 25, "half": true}
  },
  "zzz_unknown": [1, 2, {"deep": "value"}]
}"#;

    fn write_config(paths: &Paths, text: &str) {
        std::fs::create_dir_all(paths.config_dir()).unwrap();
        std::fs::write(paths.config_file(), text).unwrap();
    }

    #[test]
    fn missing_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Config::load(&Paths::at(dir.path())).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.warning.is_none());
    }

    #[test]
    fn reads_the_python_apps_config() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        write_config(&paths, PYTHON_CONFIG);
        let config = Config::load(&paths).unwrap().config;

        assert_eq!(config.default_provider().as_deref(), Some("local-sd"));
        assert_eq!(config.auth_mode(), Some("api-key"));
        assert!(config.auto_copy_filename());
        assert_eq!(
            config.window_geometry(),
            Some(WindowGeometry {
                x: 10,
                y: 20,
                w: 1200,
                h: 800
            })
        );

        let openai = config.provider_settings("openai");
        assert_eq!(
            openai,
            BTreeMap::from([("base_url".to_owned(), "https://proxy.example/v1".to_owned())])
        );
        let local = config.provider_settings("local-sd");
        assert_eq!(local.get("device").map(String::as_str), Some("auto"));
        assert_eq!(
            local.get("model_cache").map(String::as_str),
            Some("~/.cache/huggingface")
        );
        assert_eq!(local.get("steps").map(String::as_str), Some("25"));
        assert_eq!(local.get("half").map(String::as_str), Some("true"));
        assert!(!local.contains_key("memory_limit"), "null is no setting");

        assert_eq!(
            config.stored_key("openai").unwrap().expose(),
            "sk-from-providers"
        );
        assert_eq!(
            config.stored_key("google").unwrap().expose(),
            "g-key-from-keys"
        );
        assert!(config.stored_key("stability").is_none());
    }

    #[test]
    fn key_lookup_order_matches_the_python_app() {
        let mut config =
            Config::from_map(json!({"api_key": "legacy"}).as_object().unwrap().clone());
        assert_eq!(config.stored_key("google").unwrap().expose(), "legacy");
        assert!(
            config.stored_key("openai").is_none(),
            "the legacy key is Google's only"
        );

        config.set("google_api_key", json!("top-level"));
        assert_eq!(config.stored_key("google").unwrap().expose(), "top-level");
        config.set("keys", json!({"google": "  from-keys \n"}));
        assert_eq!(config.stored_key("google").unwrap().expose(), "from-keys");
        config.set_stored_key("google", &Secret::new("from-providers"));
        assert_eq!(
            config.stored_key("google").unwrap().expose(),
            "from-providers"
        );

        // Empty values are no key.
        config.set_provider_setting("google", "api_key", " ");
        assert_eq!(config.stored_key("google").unwrap().expose(), "from-keys");

        assert!(config.remove_stored_key("google"));
        assert!(config.stored_key("google").is_none());
        assert!(!config.remove_stored_key("google"));
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        write_config(&paths, PYTHON_CONFIG);
        let mut config = Config::load(&paths).unwrap().config;

        config.set_provider_setting("openai", "base_url", "https://api.openai.com/v1");
        config.set_provider_setting("local-sd", "device", "cuda");
        config.set_provider_setting("stability", "base_url", "https://api.stability.ai");
        config.set_plugin_enabled("replicate", false);
        config.set_output_dir(Some(Path::new("/srv/images")));
        config.set_default_provider("openai");
        config.set_window_geometry(WindowGeometry {
            x: 1,
            y: 2,
            w: 3,
            h: 4,
        });
        config.save(&paths).unwrap();

        let saved: Value =
            serde_json::from_slice(&std::fs::read(paths.config_file()).unwrap()).unwrap();
        let original: Value = serde_json::from_str(PYTHON_CONFIG).unwrap();
        // Everything we did not touch is exactly as it was.
        for key in [
            "keys",
            "api_key",
            "auth_mode",
            "auto_copy_filename",
            "data_roots",
            "discord",
            "zzz_unknown",
        ] {
            assert_eq!(saved[key], original[key], "{key}");
        }
        assert_eq!(saved["providers"]["openai"]["org_hint"], json!({"x": 1}));
        assert_eq!(
            saved["providers"]["openai"]["api_key"],
            json!("sk-from-providers")
        );
        assert_eq!(saved["providers"]["local_sd"]["memory_limit"], Value::Null);
        assert_eq!(
            saved["providers"]["local_sd"]["device"],
            json!("cuda"),
            "written to the existing local_sd section"
        );
        assert!(saved["providers"].get("local-sd").is_none());
        assert_eq!(
            saved["providers"]["stability"]["base_url"],
            json!("https://api.stability.ai")
        );
        assert_eq!(saved["window_geometry"]["maximized"], json!(false));
        assert_eq!(saved["window_geometry"]["w"], json!(3));
        // Our additions.
        assert_eq!(saved["provider"], json!("openai"));
        assert_eq!(saved["default_provider"], json!("openai"));
        assert_eq!(saved["plugins"]["disabled"], json!(["replicate"]));
        assert_eq!(saved["output_dir"], json!("/srv/images"));
        // Field order is kept too: the file diffs cleanly against the Python app's.
        let keys: Vec<&String> = saved.as_object().unwrap().keys().collect();
        assert_eq!(
            keys[..3],
            [
                &"keys".to_owned(),
                &"api_key".to_owned(),
                &"provider".to_owned()
            ]
        );

        let reloaded = Config::load(&paths).unwrap().config;
        assert_eq!(reloaded, config);
    }

    #[test]
    fn corrupt_config_is_backed_up_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let damaged = "{\"keys\": {\"openai\": \"sk-precious\"},";
        write_config(&paths, damaged);

        let loaded = Config::load(&paths).unwrap();
        assert_eq!(loaded.config, Config::default());
        let warning = loaded.warning.unwrap();
        assert_eq!(std::fs::read_to_string(&warning.backup).unwrap(), damaged);
        assert_eq!(
            std::fs::read_to_string(paths.config_file()).unwrap(),
            damaged,
            "not replaced on load"
        );
        let message = warning.to_string();
        assert!(
            message.starts_with("config.json was corrupt (not valid JSON"),
            "{message}"
        );
        assert!(message.contains("saved a copy at"), "{message}");
        assert!(message.ends_with("starting with defaults"), "{message}");
        assert!(!message.contains("sk-precious"));

        // JSON that is not an object is corrupt too, and a second backup does not replace the first.
        write_config(&paths, "[1, 2]");
        let again = Config::load(&paths).unwrap().warning.unwrap();
        assert_ne!(again.backup, warning.backup);
        assert_eq!(std::fs::read_to_string(&warning.backup).unwrap(), damaged);
    }

    #[cfg(unix)]
    #[test]
    fn saved_config_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().join("new"));
        Config::default().save(&paths).unwrap();
        let mode = std::fs::metadata(paths.config_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn update_keeps_what_another_writer_saved() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let mine = Config::load(&paths).unwrap().config;
        // Another process saves after we loaded.
        write_config(
            &paths,
            r#"{"auth_mode": "gcloud", "gcloud_project_id": "p-1"}"#,
        );
        let updated = Config::update(&paths, |c| c.set_default_provider("openai")).unwrap();
        assert!(updated.warning.is_none());
        let saved = Config::load(&paths).unwrap().config;
        assert_eq!(saved.get("gcloud_project_id"), Some(&json!("p-1")));
        assert_eq!(saved.default_provider().as_deref(), Some("openai"));
        assert_eq!(saved, updated.config);
        assert_ne!(saved, mine);
    }

    /// The GUI saves each setting on its own thread; updates at once must all land (each one
    /// reads the file after the one before wrote it).
    #[test]
    fn updates_at_once_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let paths = &paths;
                scope.spawn(move || {
                    for n in 0..10 {
                        Config::update(paths, |c| c.set(&format!("k{thread}-{n}"), json!(n)))
                            .unwrap();
                    }
                });
            }
        });
        let saved = Config::load(&paths).unwrap().config;
        assert_eq!(saved.as_map().len(), 80, "{saved:?}");
    }

    /// Threads each queue a change numbered in the order made (under `order`) and save at once:
    /// the file ends with the newest number.
    #[test]
    fn ordered_saves_end_with_the_newest_change() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let saves = OrderedSaves::default();
        let order = Mutex::new(0u64);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        {
                            let mut made = order.lock().unwrap();
                            *made += 1;
                            let n = *made;
                            saves.push(Box::new(move |c| c.set("last", json!(n))));
                        }
                        saves.save(&paths).unwrap();
                    }
                });
            }
        });
        let saved = Config::load(&paths).unwrap().config;
        assert_eq!(saved.get("last"), Some(&json!(160)));
    }

    #[test]
    fn plugins_can_be_disabled_and_enabled() {
        let mut config = Config::default();
        assert!(config.is_plugin_enabled("local-sd"));
        config.set_plugin_enabled("local_sd", false);
        config.set_plugin_enabled("local-sd", false);
        assert_eq!(config.disabled_plugins(), vec!["local-sd".to_owned()]);
        assert!(!config.is_plugin_enabled("local-sd"));
        config.set_plugin_enabled("local-sd", true);
        assert!(config.is_plugin_enabled("local-sd"));
        assert!(config.disabled_plugins().is_empty());
    }

    #[test]
    fn output_dir_prefers_ours_then_the_python_data_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        assert_eq!(config.output_dir(), None);
        config.set(
            "data_roots",
            json!({"images": dir.path().to_str().unwrap()}),
        );
        assert_eq!(config.output_dir(), Some(dir.path().join("generated")));
        config.set(
            "data_roots",
            json!({"images": dir.path().join("unplugged").to_str().unwrap()}),
        );
        assert_eq!(config.output_dir(), None, "an unreachable root is ignored");
        config.set_output_dir(Some(Path::new("/srv/out")));
        assert_eq!(config.output_dir(), Some(PathBuf::from("/srv/out")));
        config.set_output_dir(None);
        assert!(config.get("output_dir").is_none());
    }

    #[test]
    fn settings_can_be_removed() {
        let mut config = Config::default();
        config.set_provider_setting("openai", "base_url", "http://127.0.0.1:9");
        assert_eq!(
            config.provider_setting("openai", "base_url").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert!(config.remove_provider_setting("openai", "base_url"));
        assert!(!config.remove_provider_setting("openai", "base_url"));
        assert!(!config.remove_provider_setting("nobody", "base_url"));
        assert!(config.provider_settings("openai").is_empty());
    }

    #[test]
    fn ids_match_across_spellings() {
        assert!(same_id("local-sd", "local_sd"));
        assert!(!same_id("local-sd", "local-sdx"));
        assert_eq!(canonical_id("local_sd"), "local-sd");
    }
}
