//! The facade the CLI and the GUI share: opens config, keys and the plugin runtime, discovers
//! providers (WASM plugins, and the native local Stable Diffusion engine when its worker is
//! installed), and hands out a provider with its call context (its own key and settings only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::config::Config;
use crate::keys::{self, KeySource, KeyStore, ResolvedKey};
use crate::local_sd::{self, LocalSdProvider};
use crate::models::ModelsConfig;
use crate::paths::Paths;
use crate::plugin::manifest::{Manifest, SettingKind};
use crate::plugin::registry::{self, Discovered, Source as PluginSource};
use crate::plugin::{Runtime, RuntimeOptions};
use crate::provider::{CallContext, Provider};
use crate::secret::Secret;

/// Errors a user can act on. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(
        "unknown provider `{id}`. Installed providers: {available}. Run `imageai providers` for details."
    )]
    UnknownProvider { id: String, available: String },
    #[error(
        "the {id} plugin is disabled; enable it in Settings or remove it from `plugins.disabled` in config.json"
    )]
    Disabled { id: String },
    #[error("no provider chosen and none configured: pass --provider (one of: {available})")]
    NoProvider { available: String },
    #[error("no API key for {name}. {help}")]
    MissingKey { name: String, help: String },
    #[error("the {id} plugin could not be loaded: {message}")]
    Load { id: String, message: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Paths(#[from] crate::paths::PathsError),
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
}

/// How the caller wants the key found this time (the CLI's `-k` / `-K`).
#[derive(Debug, Clone, Default)]
pub struct KeyOverride {
    pub key: Option<String>,
    pub key_file: Option<PathBuf>,
}

/// A discovered provider: a WASM plugin (loaded on first use) or a native one built into the
/// host (the local Stable Diffusion engine, whose `dir` is the worker binary's folder).
pub struct ProviderEntry {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub source: PluginSource,
    native: bool,
    loaded: OnceLock<Result<Arc<dyn Provider>, String>>,
}

impl ProviderEntry {
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// True for a provider built into the host rather than a WASM plugin.
    pub fn is_native(&self) -> bool {
        self.native
    }
}

/// Everything a provider's call context is built from (see [`Core::context_plan`]).
#[derive(Clone)]
pub struct ContextPlan {
    pub manifest: Manifest,
    pub settings: BTreeMap<String, String>,
    keys: KeyStore,
    config: Config,
}

impl ContextPlan {
    /// The key with ImageAI's precedence: `--api-key`, `--api-key-file`, stored key (keyring or
    /// key file, then config.json), then the manifest's environment variable.
    pub fn resolve_key(&self, over: &KeyOverride) -> Result<Option<ResolvedKey>, CoreError> {
        let manifest = &self.manifest;
        let env = manifest
            .key
            .as_ref()
            .and_then(|k| k.env.clone())
            .or_else(|| keys::default_env_var(&manifest.id).map(str::to_owned));
        Ok(keys::resolve(
            &manifest.id,
            over.key.as_deref(),
            over.key_file.as_deref(),
            env.as_deref(),
            &self.keys,
            &self.config,
        )?)
    }

    /// The call context: the provider's key and settings, nothing else. Fails with a message
    /// naming where to get a key when the provider requires one and none is set.
    pub fn context(&self, over: &KeyOverride) -> Result<CallContext, CoreError> {
        let manifest = &self.manifest;
        let key = self.resolve_key(over)?;
        if key.is_none()
            && let Some(spec) = &manifest.key
            && spec.required
        {
            let help = if spec.help.is_empty() {
                format!("Set one with `imageai keys set {}`.", manifest.id)
            } else {
                spec.help.clone()
            };
            return Err(CoreError::MissingKey {
                name: manifest.name.clone(),
                help,
            });
        }
        Ok(CallContext::new(
            key.map(|k| k.secret),
            self.settings.clone(),
        ))
    }
}

/// The opened core.
pub struct Core {
    pub paths: Paths,
    pub config: Config,
    pub keys: KeyStore,
    runtime: Runtime,
    providers: Vec<ProviderEntry>,
    /// Things the user should see once (a corrupt config that was backed up, a plugin that failed
    /// to load, a user plugin overriding a bundled one).
    pub warnings: Vec<String>,
}

/// Folders searched for bundled plugins: `IMAGEAI_PLUGIN_DIRS` (a path list) when set, else
/// `<exe dir>/plugins` and `<exe dir>/../plugins` (the development layout `target/plugins`).
pub fn bundled_plugin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(list) = std::env::var_os("IMAGEAI_PLUGIN_DIRS") {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("plugins"));
        if let Some(parent) = exe_dir.parent() {
            dirs.push(parent.join("plugins"));
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs.dedup();
    dirs
}

impl Core {
    /// Open the core at the standard paths (`IMAGEAI_CONFIG_DIR` overrides them), with the
    /// bundled plugins and, when its worker is installed, local Stable Diffusion
    /// (see [`local_sd::find_worker`]).
    pub fn open_default() -> Result<Self, CoreError> {
        Self::open_with(
            Paths::from_env()?,
            &bundled_plugin_dirs(),
            local_sd::find_worker(),
        )
    }

    /// Open the core with the WASM plugins in `bundled_dirs` and the user's plugin folder only.
    pub fn open(paths: Paths, bundled_dirs: &[PathBuf]) -> Result<Self, CoreError> {
        Self::open_with(paths, bundled_dirs, None)
    }

    /// Like [`Core::open`], plus the `local-sd` provider running the worker binary
    /// `sd_worker` when given. A user plugin with the id `local-sd` takes its place.
    pub fn open_with(
        paths: Paths,
        bundled_dirs: &[PathBuf],
        sd_worker: Option<PathBuf>,
    ) -> Result<Self, CoreError> {
        let loaded = Config::load(&paths)?;
        let mut warnings = Vec::new();
        if let Some(corrupt) = &loaded.warning {
            warnings.push(corrupt.to_string());
        }
        let config = loaded.config;
        let paths = paths.with_output_dir(config.output_dir());
        let keys = KeyStore::open(&paths);
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(paths.plugin_cache_dir()),
            ..RuntimeOptions::default()
        })?;
        let mut search: Vec<(PathBuf, PluginSource)> = bundled_dirs
            .iter()
            .map(|d| (d.clone(), PluginSource::Bundled))
            .collect();
        search.push((paths.plugins_dir(), PluginSource::User));
        let mut providers: Vec<ProviderEntry> = registry::discover(search)
            .into_iter()
            .map(
                |Discovered {
                     dir,
                     manifest,
                     source,
                 }| ProviderEntry {
                    manifest,
                    dir,
                    source,
                    native: false,
                    loaded: OnceLock::new(),
                },
            )
            .collect();
        if let Some(worker) = sd_worker
            && !providers
                .iter()
                .any(|p| crate::config::same_id(&p.manifest.id, local_sd::ID))
        {
            let manifest = local_sd::manifest();
            let mut models = ModelsConfig::from_settings(&paths, &config);
            // The settings' environment override, as `Core::settings` reads it for each call.
            if let Some(cache) = std::env::var(manifest.setting_env_var("model_cache"))
                .ok()
                .filter(|v| !v.trim().is_empty())
            {
                models.cache_dir = crate::models::cache::resolve_cache_dir(Some(&cache), &|name| {
                    std::env::var_os(name)
                });
            }
            let provider: Arc<dyn Provider> =
                Arc::new(LocalSdProvider::new(worker.clone(), models));
            providers.push(ProviderEntry {
                manifest,
                dir: worker.parent().map(Path::to_path_buf).unwrap_or_default(),
                source: PluginSource::Bundled,
                native: true,
                loaded: OnceLock::from(Ok(provider)),
            });
            providers.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
        }
        Ok(Self {
            paths,
            config,
            keys,
            runtime,
            providers,
            warnings,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Every discovered provider, sorted by id.
    pub fn providers(&self) -> &[ProviderEntry] {
        &self.providers
    }

    pub fn entry(&self, id: &str) -> Result<&ProviderEntry, CoreError> {
        self.providers
            .iter()
            .find(|p| crate::config::same_id(&p.manifest.id, id))
            .ok_or_else(|| CoreError::UnknownProvider {
                id: id.to_owned(),
                available: self.available(),
            })
    }

    fn available(&self) -> String {
        let ids: Vec<&str> = self.providers.iter().map(ProviderEntry::id).collect();
        if ids.is_empty() {
            "none (build them with `cargo xtask plugins`)".into()
        } else {
            ids.join(", ")
        }
    }

    /// The provider to use: the one asked for, else the configured default, else the only one.
    pub fn choose_provider(&self, asked: Option<&str>) -> Result<&ProviderEntry, CoreError> {
        if let Some(id) = asked {
            return self.entry(id);
        }
        if let Some(id) = self.config.default_provider()
            && let Ok(entry) = self.entry(&id)
        {
            return Ok(entry);
        }
        match self.providers.as_slice() {
            [only] => Ok(only),
            _ => Err(CoreError::NoProvider {
                available: self.available(),
            }),
        }
    }

    /// The loaded provider (compiled or taken from the cache on first use).
    pub fn provider(&self, id: &str) -> Result<Arc<dyn Provider>, CoreError> {
        let entry = self.entry(id)?;
        if !self.config.is_plugin_enabled(&entry.manifest.id) {
            return Err(CoreError::Disabled {
                id: entry.manifest.id.clone(),
            });
        }
        let loaded = entry.loaded.get_or_init(|| {
            self.runtime
                .load(&entry.dir)
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
                .map_err(|err| err.to_string())
        });
        match loaded {
            Ok(provider) => Ok(provider.clone()),
            Err(message) => Err(CoreError::Load {
                id: entry.manifest.id.clone(),
                message: message.clone(),
            }),
        }
    }

    /// The provider's settings: environment `IMAGEAI_<ID>_<NAME>`, then config.json
    /// `providers.<id>.<name>`, then the manifest's default.
    pub fn settings(&self, manifest: &Manifest) -> BTreeMap<String, String> {
        let configured = self.config.provider_settings(&manifest.id);
        manifest
            .settings
            .iter()
            .filter_map(|spec| {
                let value = std::env::var(manifest.setting_env_var(&spec.name))
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .or_else(|| configured.get(&spec.name).cloned())
                    .or_else(|| spec.default.clone())?;
                let value = if spec.kind == SettingKind::Url {
                    value.trim().to_owned()
                } else {
                    value
                };
                Some((spec.name.clone(), value))
            })
            .collect()
    }

    /// Find the provider's key with ImageAI's precedence: `--api-key`, `--api-key-file`, stored
    /// key (keyring or key file, then config.json), then the manifest's environment variable.
    pub fn resolve_key(
        &self,
        manifest: &Manifest,
        over: &KeyOverride,
    ) -> Result<Option<ResolvedKey>, CoreError> {
        self.context_plan_for(manifest).resolve_key(over)
    }

    /// The call context for one call: this provider's key and settings, nothing else. Fails
    /// with a message naming where to get a key when the provider requires one and none is set.
    pub fn context(&self, id: &str, over: &KeyOverride) -> Result<CallContext, CoreError> {
        self.context_plan(id)?.context(over)
    }

    /// What building a call context needs, owned, so another thread can do it: resolving the
    /// key may wait seconds on the OS keyring, which a UI thread must not.
    pub fn context_plan(&self, id: &str) -> Result<ContextPlan, CoreError> {
        Ok(self.context_plan_for(&self.entry(id)?.manifest))
    }

    fn context_plan_for(&self, manifest: &Manifest) -> ContextPlan {
        ContextPlan {
            manifest: manifest.clone(),
            settings: self.settings(manifest),
            keys: self.keys.clone(),
            config: self.config.clone(),
        }
    }

    /// Where the key would come from, without revealing it.
    pub fn key_source(&self, id: &str) -> Result<Option<KeySource>, CoreError> {
        let entry = self.entry(id)?;
        Ok(self
            .resolve_key(&entry.manifest, &KeyOverride::default())?
            .map(|k| k.source))
    }

    /// Store a key for a provider in the key store.
    pub fn set_key(&mut self, id: &str, key: &Secret) -> Result<(), CoreError> {
        let id = self.entry(id)?.manifest.id.clone();
        self.keys.set(&id, key)?;
        Ok(())
    }

    /// Remove a provider's key from the key store and from config.json. True when one was removed.
    pub fn remove_key(&mut self, id: &str) -> Result<bool, CoreError> {
        let id = self
            .entry(id)
            .map(|e| e.manifest.id.clone())
            .unwrap_or_else(|_| id.to_owned());
        let from_store = self.keys.remove(&id)?;
        let from_config = self.config.remove_stored_key(&id);
        if from_config {
            // Read afresh so that what another window saved since is kept.
            self.config = Config::update(&self.paths, |c| {
                c.remove_stored_key(&id);
            })?
            .config;
        }
        Ok(from_store || from_config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let dest = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy_dir(&entry.path(), &dest);
            } else {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
    }

    #[test]
    fn local_sd_is_a_native_provider_with_settings_and_installed_models() {
        let tmp = tempfile::tempdir().unwrap();
        let config_dir = tmp.path().join("config");
        let cache = tmp.path().join("hub");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/local-sd/tests/fixtures/sd1");
        copy_dir(
            &fixture,
            &cache.join("models--test--tiny-sd/snapshots").join(commit),
        );
        std::fs::create_dir_all(cache.join("models--test--tiny-sd/refs")).unwrap();
        std::fs::write(cache.join("models--test--tiny-sd/refs/main"), commit).unwrap();
        std::fs::create_dir_all(&config_dir).unwrap();
        let config = serde_json::json!({
            "providers": {"local_sd": {"device": "cpu", "model_cache": cache}}
        });
        std::fs::write(
            config_dir.join("config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();

        // Without a worker there is no local-sd.
        let core = Core::open(Paths::at(&config_dir), &[]).unwrap();
        assert!(core.providers().is_empty());

        let worker = tmp.path().join("bin").join(local_sd::WORKER_FILE);
        let core = Core::open_with(Paths::at(&config_dir), &[], Some(worker.clone())).unwrap();
        let ids: Vec<&str> = core.providers().iter().map(ProviderEntry::id).collect();
        assert_eq!(ids, ["local-sd"]);
        let entry = core.choose_provider(None).unwrap();
        assert!(entry.is_native());
        assert_eq!(entry.dir, tmp.path().join("bin"));

        let settings = core.settings(&entry.manifest);
        assert_eq!(settings["device"], "cpu");
        assert_eq!(settings["precision"], "fp16");
        assert_eq!(settings["model_cache"], cache.display().to_string());
        let ctx = core.context("local_sd", &KeyOverride::default()).unwrap();
        assert!(ctx.api_key.is_none());

        let provider = core.provider("local-sd").unwrap();
        let info = provider.info().unwrap();
        let models: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(models, ["test/tiny-sd", crate::jobs::ANY_MODEL]);
        assert!(provider.check_key(&ctx).is_ok());
    }
}
