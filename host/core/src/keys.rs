//! API keys: kept in the OS keyring when one answers, else in an owner-only `keys.json`, and
//! resolved for a call with the Python app's precedence (flag, key file, stored, environment).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::atomic::{self, Access, AtomicError};
use crate::config::{Config, canonical_id};
use crate::paths::Paths;
use crate::secret::Secret;

/// `IMAGEAI_KEYRING=off` keeps keys in `keys.json` and never touches the OS keyring.
pub const KEYRING_ENV: &str = "IMAGEAI_KEYRING";

/// The keyring service name; the keyring user is the provider id.
pub const KEYRING_SERVICE: &str = "ImageAI";

/// How long to wait for the keyring to say whether it is there at all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one keyring call may take; long enough for the user to answer an unlock prompt.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variable each known provider's key is read from, the last resort of
/// [`resolve`]. Plugin manifests name theirs; this is the table for the built-in providers.
pub fn default_env_var(provider_id: &str) -> Option<&'static str> {
    match canonical_id(provider_id).as_str() {
        "openai" => Some("OPENAI_API_KEY"),
        "google" => Some("GOOGLE_API_KEY"),
        "stability" => Some("STABILITY_API_KEY"),
        "replicate" => Some("REPLICATE_API_TOKEN"),
        "huggingface" => Some("HF_TOKEN"),
        _ => None,
    }
}

/// A key could not be read, stored or removed. Messages never contain a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "could not {action} the {id} key in the OS keyring ({reason}); unlock the keyring, or set {KEYRING_ENV}=off to keep keys in a private file instead"
    )]
    Keyring {
        id: String,
        action: &'static str,
        reason: String,
    },
    #[error("the OS keyring did not answer within {}s when asked to {action} the {id} key; unlock it, or set {KEYRING_ENV}=off to keep keys in a private file instead", CALL_TIMEOUT.as_secs())]
    KeyringTimeout { id: String, action: &'static str },
    #[error("the key file is damaged ({reason}); fix or delete it (setting a key saves a copy of it and starts a new one): {}", path.display())]
    CorruptStore { path: PathBuf, reason: String },
    #[error("could not read the key file ({reason}); check its permissions: {}", path.display())]
    ReadStore { path: PathBuf, reason: io::Error },
    #[error(transparent)]
    WriteStore(#[from] AtomicError),
    #[error(
        "the --api-key value is empty; pass the key itself, or leave the flag out to use the stored key"
    )]
    EmptyFlag,
    #[error("the API key file does not exist; check the path given to --api-key-file: {}", path.display())]
    KeyFileMissing { path: PathBuf },
    #[error("the API key file is empty; put the key on its first line: {}", path.display())]
    KeyFileEmpty { path: PathBuf },
    #[error("the API key file is not UTF-8 text; save the key as plain text: {}", path.display())]
    KeyFileNotText { path: PathBuf },
    #[error("could not read the API key file ({reason}); check its permissions: {}", path.display())]
    KeyFileRead { path: PathBuf, reason: io::Error },
    #[error("a provider id is needed to store a key")]
    EmptyId,
}

/// Where keys are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBackend {
    /// The OS keyring (Keychain, Windows Credential Manager, Secret Service).
    Keyring,
    /// An owner-only JSON file.
    File(PathBuf),
}

impl fmt::Display for KeyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keyring => f.write_str("the OS keyring"),
            Self::File(path) => write!(f, "the private file {}", path.display()),
        }
    }
}

/// Whether [`KeyStore::open_with`] may use the OS keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringMode {
    /// Use it when it answers, else the file.
    Auto,
    /// Always the file.
    Off,
}

impl KeyringMode {
    /// From the value of [`KEYRING_ENV`]: `off`, `0`, `false`, `no` or `file` turn it off.
    pub fn from_env_value(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if matches!(v.as_str(), "off" | "0" | "false" | "no" | "file") => Self::Off,
            _ => Self::Auto,
        }
    }
}

/// The user's stored API keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    backend: KeyBackend,
    file: PathBuf,
}

impl KeyStore {
    /// The keyring when it answers (and `IMAGEAI_KEYRING` is not `off`), else `keys.json` in the
    /// config folder. Never hangs: the keyring gets a few seconds to answer.
    pub fn open(paths: &Paths) -> Self {
        let mode = KeyringMode::from_env_value(std::env::var(KEYRING_ENV).ok().as_deref());
        Self::open_with(paths, mode)
    }

    pub fn open_with(paths: &Paths, mode: KeyringMode) -> Self {
        let file = paths.keys_file();
        let backend = match mode {
            KeyringMode::Auto if keyring_available() => KeyBackend::Keyring,
            _ => KeyBackend::File(file.clone()),
        };
        Self { backend, file }
    }

    /// Where [`KeyStore::set`] puts keys, for messages ("saved in the OS keyring").
    pub fn backend(&self) -> &KeyBackend {
        &self.backend
    }

    /// The stored key for `id`. With the keyring, a key in `keys.json` (saved while the keyring
    /// was away) is found too.
    pub fn get(&self, id: &str) -> Result<Option<Secret>, KeyError> {
        let id = checked_id(id)?;
        if self.backend == KeyBackend::Keyring {
            match keyring_call(&id, "read", |entry| entry.get_password())? {
                Some(key) if !key.trim().is_empty() => return Ok(Some(Secret::new(key.trim()))),
                _ => {}
            }
        }
        let keys = read_store(&self.file)?;
        Ok(keys
            .get(&id)
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .map(Secret::new))
    }

    /// Store `key` for `id`, replacing any earlier one.
    pub fn set(&self, id: &str, key: &Secret) -> Result<(), KeyError> {
        let id = checked_id(id)?;
        match &self.backend {
            KeyBackend::Keyring => {
                let value = key.expose().to_owned();
                keyring_call(&id, "store", move |entry| entry.set_password(&value))?;
                // An older copy in the file would only confuse later: drop it.
                self.remove_from_file(&id)?;
            }
            KeyBackend::File(_) => {
                let _lock = atomic::lock_for_update(&self.file)?;
                let mut keys = read_store_for_update(&self.file)?;
                keys.insert(id, key.expose().to_owned());
                write_store(&self.file, &keys)?;
            }
        }
        Ok(())
    }

    /// Remove the key for `id` from the keyring and the file; true when one was there. Keys in
    /// `config.json` are the caller's: see `Config::remove_stored_key`.
    pub fn remove(&self, id: &str) -> Result<bool, KeyError> {
        let id = checked_id(id)?;
        let mut removed = false;
        if self.backend == KeyBackend::Keyring {
            removed |= keyring_call(&id, "remove", |entry| entry.delete_credential())?.is_some();
        }
        removed |= self.remove_from_file(&id)?;
        Ok(removed)
    }

    fn remove_from_file(&self, id: &str) -> Result<bool, KeyError> {
        if !self.file.exists() {
            return Ok(false);
        }
        let _lock = atomic::lock_for_update(&self.file)?;
        let mut keys = read_store_for_update(&self.file)?;
        if keys.remove(id).is_none() {
            return Ok(false);
        }
        write_store(&self.file, &keys)?;
        Ok(true)
    }
}

fn checked_id(id: &str) -> Result<String, KeyError> {
    let id = canonical_id(id.trim());
    if id.is_empty() {
        Err(KeyError::EmptyId)
    } else {
        Ok(id)
    }
}

/// `keys.json`: `{"<provider id>": "<key>"}`. Missing means empty.
fn read_store(path: &Path) -> Result<BTreeMap<String, String>, KeyError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(reason) => {
            return Err(KeyError::ReadStore {
                path: path.to_owned(),
                reason,
            });
        }
    };
    let corrupt = |reason: String| KeyError::CorruptStore {
        path: path.to_owned(),
        reason,
    };
    // Parse into a Value first: serde's typed errors quote the offending value, and that could
    // be a key.
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map
            .into_iter()
            .filter_map(|(id, v)| match v {
                Value::String(key) => Some((id, key)),
                _ => None,
            })
            .collect()),
        Ok(_) => Err(corrupt("the file is JSON but not an object".to_owned())),
        Err(e) => Err(corrupt(format!(
            "not valid JSON: line {}, column {}",
            e.line(),
            e.column()
        ))),
    }
}

/// Like [`read_store`], but a damaged file is copied aside and replaced by an empty store, so
/// that setting a key always works and the old content is never lost.
fn read_store_for_update(path: &Path) -> Result<BTreeMap<String, String>, KeyError> {
    match read_store(path) {
        Err(KeyError::CorruptStore { .. }) => {
            let backup = atomic::backup_corrupt(path)?;
            tracing::warn!(path = %path.display(), backup = %backup.display(), "the key file was damaged; saved a copy and started a new one");
            Ok(BTreeMap::new())
        }
        other => other,
    }
}

fn write_store(path: &Path, keys: &BTreeMap<String, String>) -> Result<(), KeyError> {
    let map: Map<String, Value> = keys
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&map).map_err(|e| AtomicError::Write {
        path: path.to_owned(),
        reason: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    atomic::write_atomic_with(path, &bytes, Access::Private)?;
    Ok(())
}

/// Run `f` on its own thread and wait at most `timeout`. Keyring back ends can block for a long
/// time (a D-Bus service that never answers) and the Secret Service client runs its own async
/// runtime, which must not start inside a caller's runtime: a plain thread avoids both. On a
/// timeout the thread is left to finish on its own.
fn with_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("imageai-keyring".to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

/// Whether the OS keyring answers: a lookup of an entry that does not exist must come back,
/// quickly, with "no such entry" (or an entry).
fn keyring_available() -> bool {
    let probe = with_timeout(PROBE_TIMEOUT, || {
        keyring::Entry::new(KEYRING_SERVICE, "imageai-probe").and_then(|entry| entry.get_password())
    });
    match probe {
        Some(Ok(_) | Err(keyring::Error::NoEntry | keyring::Error::Ambiguous(_))) => true,
        Some(Err(e)) => {
            tracing::info!(reason = %describe(&e), "the OS keyring is not available; keeping keys in a private file");
            false
        }
        None => {
            tracing::info!("the OS keyring did not answer; keeping keys in a private file");
            false
        }
    }
}

/// One keyring operation on the entry for `id`. `Ok(None)`: there was no such entry.
fn keyring_call<T: Send + 'static>(
    id: &str,
    action: &'static str,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Result<Option<T>, KeyError> {
    let user = id.to_owned();
    let result = with_timeout(CALL_TIMEOUT, move || {
        keyring::Entry::new(KEYRING_SERVICE, &user).and_then(|e| op(&e))
    });
    match result {
        None => Err(KeyError::KeyringTimeout {
            id: id.to_owned(),
            action,
        }),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(keyring::Error::NoEntry)) => Ok(None),
        Some(Err(e)) => Err(KeyError::Keyring {
            id: id.to_owned(),
            action,
            reason: describe(&e),
        }),
    }
}

/// A keyring error in words that cannot contain the secret (`BadEncoding` carries its bytes,
/// so nothing is formatted from the error's own `Display` there).
fn describe(error: &keyring::Error) -> String {
    match error {
        keyring::Error::PlatformFailure(e) => format!("the keyring failed: {e}"),
        keyring::Error::NoStorageAccess(e) => {
            format!("the keyring is locked or refused access: {e}")
        }
        keyring::Error::NoEntry => "no such entry".to_owned(),
        keyring::Error::BadEncoding(_) => "the stored key is not UTF-8 text".to_owned(),
        keyring::Error::TooLong(name, limit) => {
            format!("{name} is longer than the keyring's limit of {limit}")
        }
        keyring::Error::Invalid(name, why) => format!("{name} is invalid: {why}"),
        keyring::Error::Ambiguous(items) => format!("{} keyring entries match", items.len()),
        _ => "unknown keyring error".to_owned(),
    }
}

/// Where a resolved key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `-k/--api-key`.
    Flag,
    /// `-K/--api-key-file`.
    KeyFile(PathBuf),
    /// The key store ([`KeyStore`]).
    Stored(KeyBackend),
    /// `config.json` (as the Python app stored it).
    Config,
    /// An environment variable.
    Env(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("--api-key"),
            Self::KeyFile(path) => write!(f, "the key file {}", path.display()),
            Self::Stored(backend) => backend.fmt(f),
            Self::Config => f.write_str("config.json"),
            Self::Env(var) => write!(f, "the {var} environment variable"),
        }
    }
}

/// A key and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub secret: Secret,
    pub source: KeySource,
}

/// The key to use for `id`, in the Python app's order: `--api-key`, then `--api-key-file`, then
/// the stored key (key store, then `config.json`), then the environment variable `env_var`
/// (the plugin manifest's; [`default_env_var`] when `None`). `Ok(None)`: no key anywhere.
///
/// A keyring that fails is not fatal while a later source has a key; with none, its error is
/// returned.
pub fn resolve(
    id: &str,
    cli_key: Option<&str>,
    cli_key_file: Option<&Path>,
    env_var: Option<&str>,
    store: &KeyStore,
    config: &Config,
) -> Result<Option<ResolvedKey>, KeyError> {
    resolve_with(id, cli_key, cli_key_file, env_var, store, config, |name| {
        std::env::var(name).ok()
    })
}

fn resolve_with(
    id: &str,
    cli_key: Option<&str>,
    cli_key_file: Option<&Path>,
    env_var: Option<&str>,
    store: &KeyStore,
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ResolvedKey>, KeyError> {
    if let Some(key) = cli_key {
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyError::EmptyFlag);
        }
        return Ok(Some(ResolvedKey {
            secret: Secret::new(key),
            source: KeySource::Flag,
        }));
    }
    if let Some(path) = cli_key_file {
        let secret = read_key_file(path)?;
        return Ok(Some(ResolvedKey {
            secret,
            source: KeySource::KeyFile(path.to_owned()),
        }));
    }
    let store_error = match store.get(id) {
        Ok(Some(secret)) => {
            return Ok(Some(ResolvedKey {
                secret,
                source: KeySource::Stored(store.backend().clone()),
            }));
        }
        Ok(None) => None,
        Err(e) => Some(e),
    };
    let found = if let Some(secret) = config.stored_key(id) {
        Some(ResolvedKey {
            secret,
            source: KeySource::Config,
        })
    } else {
        env_var.or_else(|| default_env_var(id)).and_then(|var| {
            env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| ResolvedKey {
                    secret: Secret::new(v),
                    source: KeySource::Env(var.to_owned()),
                })
        })
    };
    match (found, store_error) {
        (Some(found), Some(error)) => {
            tracing::warn!(%error, source = %found.source, "the stored key could not be read; using another source");
            Ok(Some(found))
        }
        (found, None) => Ok(found),
        (None, Some(error)) => Err(error),
    }
}

/// The key in a file: its first non-empty line, trimmed (as the Python app reads `-K`).
pub fn read_key_file(path: &Path) -> Result<Secret, KeyError> {
    let bytes = std::fs::read(path).map_err(|reason| match reason.kind() {
        io::ErrorKind::NotFound => KeyError::KeyFileMissing {
            path: path.to_owned(),
        },
        _ => KeyError::KeyFileRead {
            path: path.to_owned(),
            reason,
        },
    })?;
    let text = String::from_utf8(bytes).map_err(|_| KeyError::KeyFileNotText {
        path: path.to_owned(),
    })?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(Secret::new)
        .ok_or_else(|| KeyError::KeyFileEmpty {
            path: path.to_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;
    use serde_json::json;

    fn file_store(dir: &Path) -> (Paths, KeyStore) {
        let paths = Paths::at(dir);
        let store = KeyStore::open_with(&paths, KeyringMode::Off);
        (paths, store)
    }

    #[test]
    fn the_env_switch_turns_the_keyring_off() {
        for off in ["off", "OFF", " 0 ", "false", "no", "file"] {
            assert_eq!(
                KeyringMode::from_env_value(Some(off)),
                KeyringMode::Off,
                "{off}"
            );
        }
        for auto in [None, Some("on"), Some(""), Some("auto")] {
            assert_eq!(
                KeyringMode::from_env_value(auto),
                KeyringMode::Auto,
                "{auto:?}"
            );
        }
    }

    #[test]
    fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, store) = file_store(dir.path());
        assert_eq!(store.backend(), &KeyBackend::File(paths.keys_file()));
        assert_eq!(store.get("openai").unwrap(), None);

        store.set("openai", &Secret::new("sk-one")).unwrap();
        store.set("local_sd", &Secret::new("hf-two")).unwrap();
        assert_eq!(store.get("openai").unwrap().unwrap().expose(), "sk-one");
        assert_eq!(
            store.get("local-sd").unwrap().unwrap().expose(),
            "hf-two",
            "ids match across - and _"
        );

        store.set("openai", &Secret::new("sk-three")).unwrap();
        assert_eq!(store.get("openai").unwrap().unwrap().expose(), "sk-three");

        let on_disk: Value =
            serde_json::from_slice(&std::fs::read(paths.keys_file()).unwrap()).unwrap();
        assert_eq!(on_disk, json!({"local-sd": "hf-two", "openai": "sk-three"}));

        assert!(store.remove("openai").unwrap());
        assert!(!store.remove("openai").unwrap());
        assert_eq!(store.get("openai").unwrap(), None);
        assert!(matches!(
            store.set(" ", &Secret::new("x")),
            Err(KeyError::EmptyId)
        ));
    }

    #[cfg(unix)]
    /// Keys set at once (the GUI's threads, or the GUI and the CLI) all stay in the file.
    #[test]
    fn keys_set_at_once_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = file_store(dir.path());
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let store = &store;
                scope.spawn(move || {
                    for n in 0..5 {
                        store
                            .set(&format!("p{thread}-{n}"), &Secret::new("sk-x"))
                            .unwrap();
                    }
                });
            }
        });
        for thread in 0..8 {
            for n in 0..5 {
                assert!(store.get(&format!("p{thread}-{n}")).unwrap().is_some());
            }
        }
    }

    #[test]
    fn key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (paths, store) = file_store(dir.path());
        store.set("openai", &Secret::new("sk-private")).unwrap();
        let mode = std::fs::metadata(paths.keys_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_file_is_reported_then_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, store) = file_store(dir.path());
        std::fs::write(paths.keys_file(), "{\"openai\": \"sk-lost-quote}").unwrap();

        let err = store.get("openai").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("the key file is damaged"), "{message}");
        assert!(!message.contains("sk-lost"), "{message}");

        // A non-string value must not leak through a typed parse error either.
        std::fs::write(paths.keys_file(), "{\"openai\": [\"sk-in-a-list\"]}").unwrap();
        assert_eq!(store.get("openai").unwrap(), None);

        std::fs::write(paths.keys_file(), "[\"sk-lost\"]").unwrap();
        store.set("google", &Secret::new("g-new")).unwrap();
        assert_eq!(store.get("google").unwrap().unwrap().expose(), "g-new");
        let backups: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("keys.json.corrupt-"))
            .collect();
        assert_eq!(backups.len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&backups[0])).unwrap(),
            "[\"sk-lost\"]"
        );
    }

    #[test]
    fn precedence_is_flag_file_store_config_env() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = file_store(dir.path());
        let key_file = dir.path().join("key.txt");
        std::fs::write(&key_file, "\n  sk-from-file  \nsecond line\n").unwrap();
        let mut config = Config::default();
        config.set_stored_key("openai", &Secret::new("sk-from-config"));
        store.set("openai", &Secret::new("sk-from-store")).unwrap();
        let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-from-env".to_owned());

        let r = |flag: Option<&str>, file: Option<&Path>, store: &KeyStore, config: &Config| {
            resolve_with("openai", flag, file, None, store, config, env)
                .unwrap()
                .unwrap()
        };
        let got = r(Some(" sk-from-flag "), Some(&key_file), &store, &config);
        assert_eq!(
            (got.secret.expose(), got.source),
            ("sk-from-flag", KeySource::Flag)
        );
        let got = r(None, Some(&key_file), &store, &config);
        assert_eq!(
            (got.secret.expose(), got.source),
            ("sk-from-file", KeySource::KeyFile(key_file.clone()))
        );
        let got = r(None, None, &store, &config);
        assert_eq!(got.secret.expose(), "sk-from-store");
        assert_eq!(got.source, KeySource::Stored(store.backend().clone()));
        store.remove("openai").unwrap();
        let got = r(None, None, &store, &config);
        assert_eq!(
            (got.secret.expose(), got.source),
            ("sk-from-config", KeySource::Config)
        );
        config.remove_stored_key("openai");
        let got = r(None, None, &store, &config);
        assert_eq!(
            (got.secret.expose(), got.source),
            ("sk-from-env", KeySource::Env("OPENAI_API_KEY".to_owned()))
        );

        // The manifest's variable wins over the table; an empty variable is no key.
        let custom = resolve_with("openai", None, None, Some("MY_KEY"), &store, &config, |n| {
            (n == "MY_KEY").then(|| "sk-custom".to_owned())
        });
        assert_eq!(
            custom.unwrap().unwrap().source,
            KeySource::Env("MY_KEY".to_owned())
        );
        let empty = resolve_with("openai", None, None, None, &store, &config, |_| {
            Some("  ".to_owned())
        });
        assert_eq!(empty.unwrap(), None);
        assert!(matches!(
            resolve_with("openai", Some("  "), None, None, &store, &config, env),
            Err(KeyError::EmptyFlag)
        ));
    }

    #[test]
    fn a_damaged_store_does_not_hide_other_sources() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, store) = file_store(dir.path());
        std::fs::write(paths.keys_file(), "not json").unwrap();
        let env = |name: &str| (name == "HF_TOKEN").then(|| "hf-env".to_owned());
        let got = resolve_with(
            "huggingface",
            None,
            None,
            None,
            &store,
            &Config::default(),
            env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.source, KeySource::Env("HF_TOKEN".to_owned()));
        let err = resolve_with(
            "huggingface",
            None,
            None,
            None,
            &store,
            &Config::default(),
            |_| None,
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::CorruptStore { .. }));
    }

    #[test]
    fn key_file_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        let err = read_key_file(&missing).unwrap_err();
        assert!(matches!(err, KeyError::KeyFileMissing { .. }));
        assert!(err.to_string().ends_with(&missing.display().to_string()));

        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, " \n\t\n").unwrap();
        assert!(matches!(
            read_key_file(&empty),
            Err(KeyError::KeyFileEmpty { .. })
        ));

        let binary = dir.path().join("binary.txt");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            read_key_file(&binary),
            Err(KeyError::KeyFileNotText { .. })
        ));
    }

    #[test]
    fn env_var_table() {
        assert_eq!(default_env_var("openai"), Some("OPENAI_API_KEY"));
        assert_eq!(default_env_var("google"), Some("GOOGLE_API_KEY"));
        assert_eq!(default_env_var("stability"), Some("STABILITY_API_KEY"));
        assert_eq!(default_env_var("replicate"), Some("REPLICATE_API_TOKEN"));
        assert_eq!(default_env_var("huggingface"), Some("HF_TOKEN"));
        assert_eq!(default_env_var("local-sd"), None);
    }

    #[test]
    fn a_hanging_call_times_out() {
        let started = std::time::Instant::now();
        let result = with_timeout(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(5))
        });
        assert!(result.is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(with_timeout(Duration::from_secs(5), || 7), Some(7));
    }

    #[test]
    fn errors_never_show_the_key() {
        let e = KeyError::Keyring {
            id: "openai".into(),
            action: "store",
            reason: describe(&keyring::Error::BadEncoding(b"sk-secret".to_vec())),
        };
        assert!(!e.to_string().contains("sk-secret"));
        assert!(e.to_string().contains("IMAGEAI_KEYRING=off"));
    }
}
