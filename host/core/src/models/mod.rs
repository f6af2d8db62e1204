//! The models manager: search the Hugging Face Hub for diffusers text-to-image models, install
//! them into the cache Python's `huggingface_hub` shares, list and remove them, and import
//! single-file checkpoints. The local engine loads what this installs; the CLI and GUI face it.
//!
//! [`ModelManager`] is blocking and owns its own tokio runtime, so the CLI and a GUI worker
//! thread call it alike; progress arrives as [`DownloadEvent`]s through a [`ProgressSink`].

pub mod cache;
pub mod checkpoint;
pub mod curated;
pub mod download;
pub mod hub;
pub mod safetensors;
pub mod select;
mod write;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;

pub use cache::HubCache;
pub use curated::{CURATED, CuratedModel};
pub use download::{DownloadEvent, PlannedFile, ProgressSink, Totals};
pub use select::{Inspection, Precision, RepoFile, Selection, inspect, select};

use crate::cancel::CancelToken;
use crate::config::Config;
use crate::keys::{self, KeyError, KeyStore};
use crate::paths::{Paths, expand_tilde};
use crate::secret::Secret;
use hub::Hub;

/// The Hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The key store's id for the Hugging Face token (`imageai keys set huggingface`).
pub const TOKEN_PROVIDER: &str = "huggingface";
/// The environment variable the token is also read from.
pub const TOKEN_ENV: &str = "HF_TOKEN";
/// The config section (`providers.local_sd`) holding `model_cache` and `import_dir`.
pub const SETTINGS_SECTION: &str = "local-sd";

/// What went wrong, with what to do next. Never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "`{id}` is not a Hugging Face model id; use the form `org/name`, e.g. `stable-diffusion-v1-5/stable-diffusion-v1-5`"
    )]
    InvalidRepoId { id: String },
    #[error("HF_ENDPOINT is not a usable URL ({reason}): {endpoint}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error(
        "Hugging Face is set to offline (HF_HUB_OFFLINE), so ImageAI cannot {action}; unset HF_HUB_OFFLINE to go online. Installed models still work: see `imageai models list`"
    )]
    Offline { action: &'static str },
    #[error(
        "could not reach the Hugging Face Hub ({reason}); check your connection (and HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to work with installed models only: {url}"
    )]
    Network { reason: String, url: String },
    #[error("{repo} is gated or private and the Hub refused access (HTTP {status}): accept its license on {page} while logged in, then set your Hugging Face token with `imageai keys set huggingface` (or the HF_TOKEN variable){}", if *.token_sent { "; a token was sent, so check that it belongs to the account that accepted the license" } else { "" })]
    Access {
        repo: String,
        status: u16,
        page: String,
        token_sent: bool,
    },
    #[error(
        "there is no model `{repo}` on the Hugging Face Hub (HTTP 404){hint}; check the id with `imageai models search`"
    )]
    RepoNotFound { repo: String, hint: String },
    #[error(
        "{repo} has no revision `{revision}`; give a branch, tag or commit that exists (default: main)"
    )]
    RevisionNotFound { repo: String, revision: String },
    #[error(
        "{repo} lists {file} but the Hub has no such file at {revision} (HTTP 404); try again later or install another revision"
    )]
    FileNotFound {
        repo: String,
        file: String,
        revision: String,
    },
    #[error("the Hugging Face Hub answered HTTP {status} ({message}); try again later: {url}")]
    Server {
        status: u16,
        message: String,
        url: String,
    },
    #[error(
        "the Hugging Face Hub sent an answer ImageAI cannot use ({reason}); try again later, or report it if it persists: {url}"
    )]
    BadResponse { reason: String, url: String },
    #[error(
        "{repo} is not a diffusers pipeline ImageAI can install ({reason}). The local engine needs the diffusers layout (model_index.json and safetensors per component); for a single-file checkpoint use `imageai models import FILE`"
    )]
    NotDiffusers { repo: String, reason: String },
    #[error(
        "{file} arrived with the wrong SHA-256 (expected {expected}, got {actual}); the damaged download was deleted, run the install again"
    )]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{file} arrived with {actual} bytes where the Hub announced {expected}; the download was deleted, run the install again"
    )]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "the download of {file} broke off at {done} of {total} ({reason}); run the same install again to resume where it stopped"
    )]
    Interrupted {
        file: String,
        done: String,
        total: String,
        reason: String,
    },
    #[error("not enough free disk space: the download needs {needed} more but only {available} is free; free some space or choose another cache folder (`providers.local_sd.model_cache` in config.json, or HF_HOME): {}", dir.display())]
    NotEnoughSpace {
        needed: String,
        available: String,
        dir: PathBuf,
    },
    #[error("the disk filled up while writing {file}; free some space and run the same command again (downloads resume): {}", dir.display())]
    DiskFull { file: String, dir: PathBuf },
    #[error("cancelled; what was downloaded is kept, run the same install again to resume")]
    Cancelled,
    #[error("could not {action} ({reason}); check free space and the folder's permissions: {}", path.display())]
    Io {
        action: String,
        path: PathBuf,
        reason: io::Error,
    },
    #[error("{id} is not installed; see `imageai models list`")]
    NotInstalled { id: String },
    #[error("could not import the checkpoint: {reason}: {}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error(
        "`{name}` cannot name an imported model: use letters, digits, `-`, `_` and `.` (at most 96)"
    )]
    InvalidName { name: String },
    #[error(
        "a model named `{name}` is already imported; pick another --name or remove it with `imageai models rm {name}`"
    )]
    NameTaken { name: String },
    #[error("could not read the Hugging Face token: {0}")]
    Token(#[from] KeyError),
    #[error("{0}; this is a bug, please report it")]
    Runtime(String),
}

impl ModelError {
    /// A short class for scripts and exit codes: `auth`, `network`, `not_found`, `invalid`,
    /// `server`, `integrity`, `disk`, `cancelled` or `other`.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Access { .. } | Self::Token(_) => "auth",
            Self::Offline { .. } | Self::Network { .. } | Self::Interrupted { .. } => "network",
            Self::RepoNotFound { .. }
            | Self::RevisionNotFound { .. }
            | Self::FileNotFound { .. }
            | Self::NotInstalled { .. } => "not_found",
            Self::InvalidRepoId { .. }
            | Self::BadEndpoint { .. }
            | Self::NotDiffusers { .. }
            | Self::Checkpoint { .. }
            | Self::InvalidName { .. }
            | Self::NameTaken { .. } => "invalid",
            Self::Server { .. } | Self::BadResponse { .. } => "server",
            Self::ChecksumMismatch { .. } | Self::SizeMismatch { .. } => "integrity",
            Self::NotEnoughSpace { .. } | Self::DiskFull { .. } => "disk",
            Self::Cancelled => "cancelled",
            Self::Io { .. } | Self::Runtime(_) => "other",
        }
    }
}

/// Sizes as people read them: `2.13 GB`, `512 kB` (decimal units, as the Hub shows them).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    value /= 1000.0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Where models live and how the Hub is reached.
#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// The hub cache (`…/huggingface/hub`), shared with Python tools.
    pub cache_dir: PathBuf,
    /// Where imported checkpoints are converted to (`<config>/models` by default).
    pub imports_dir: PathBuf,
    /// The Hub's base URL (`HF_ENDPOINT`).
    pub endpoint: String,
    /// `HF_HUB_OFFLINE`: no network at all.
    pub offline: bool,
    /// The Hugging Face token, for gated and private models.
    pub token: Option<Secret>,
    /// Attempts after a broken connection, each resuming.
    pub retries: u32,
    /// Files downloaded at the same time.
    pub parallel: usize,
}

impl ModelsConfig {
    /// Models in `cache_dir`, imports in `imports_dir`, the public Hub, online, no token.
    pub fn new(cache_dir: impl Into<PathBuf>, imports_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            imports_dir: imports_dir.into(),
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            offline: false,
            token: None,
            retries: 3,
            parallel: 4,
        }
    }

    /// From the settings and the environment: the cache is `providers.local_sd.model_cache`
    /// (see [`cache::resolve_cache_dir`]), else `HF_HUB_CACHE` / `HF_HOME`, else
    /// `~/.cache/huggingface/hub`; imports go to `providers.local_sd.import_dir`, else
    /// `<config>/models`; `HF_ENDPOINT` and `HF_HUB_OFFLINE` as Python reads them. No token:
    /// add one with [`ModelsConfig::with_token`] (see [`resolve_token`]).
    pub fn from_settings(paths: &Paths, config: &Config) -> Self {
        Self::from_lookup(paths, config, &|name| std::env::var_os(name))
    }

    fn from_lookup(paths: &Paths, config: &Config, env: &dyn Fn(&str) -> Option<OsString>) -> Self {
        let setting = config.provider_setting(SETTINGS_SECTION, "model_cache");
        let cache_dir = cache::resolve_cache_dir(setting.as_deref(), env);
        let imports_dir = config
            .provider_setting(SETTINGS_SECTION, "import_dir")
            .filter(|s| !s.trim().is_empty())
            .map(|s| expand_tilde(s.trim()))
            .unwrap_or_else(|| paths.config_dir().join("models"));
        let endpoint = env("HF_ENDPOINT")
            .map(|v| v.to_string_lossy().trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let offline =
            cache::offline_from(env(cache::OFFLINE_ENV).as_deref().and_then(|v| v.to_str()));
        Self {
            endpoint,
            offline,
            ..Self::new(cache_dir, imports_dir)
        }
    }

    #[must_use]
    pub fn with_token(mut self, token: Option<Secret>) -> Self {
        self.token = token;
        self
    }
}

/// The Hugging Face token: the key store's `huggingface` entry (or config.json, or `HF_TOKEN`,
/// in ImageAI's usual order), else the file `huggingface-cli login` writes.
pub fn resolve_token(config: &Config, store: &KeyStore) -> Result<Option<Secret>, KeyError> {
    if let Some(found) = keys::resolve(TOKEN_PROVIDER, None, None, Some(TOKEN_ENV), store, config)?
    {
        return Ok(Some(found.secret));
    }
    let file = cache::token_file(&|name| std::env::var_os(name));
    Ok(fs::read_to_string(file)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new))
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchResult {
    pub id: String,
    pub downloads: Option<u64>,
    pub likes: Option<u64>,
    pub tags: Vec<String>,
    /// Bytes `install` would fetch in `precision`, when the Hub told (`None` for a repo that is
    /// not a diffusers pipeline or could not be asked).
    pub download_size: Option<u64>,
    pub precision: Precision,
    /// On the curated list.
    pub curated: bool,
}

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRequest {
    pub repo: String,
    /// Branch, tag or commit; `main` by default.
    pub revision: String,
    pub precision: Precision,
}

impl InstallRequest {
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            revision: "main".to_owned(),
            precision: Precision::Fp16,
        }
    }
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstallReport {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub precision: Precision,
    /// The snapshot folder: what the local engine loads.
    pub path: PathBuf,
    pub files: Vec<PlannedFile>,
    pub total_bytes: u64,
    pub downloaded_bytes: u64,
    pub cached_bytes: u64,
    pub elapsed_secs: f64,
    /// Nothing was asked of the Hub: offline, and the install was already complete.
    pub offline: bool,
    /// Components where the other precision was taken because the asked one is not published.
    pub fallbacks: Vec<String>,
    pub inspection: Inspection,
}

/// Where an installed model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// A Hub repository in the cache.
    Hub,
    /// A converted single-file checkpoint.
    Imported,
}

/// One installed model (a snapshot of a Hub repository, or an imported folder).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstalledModel {
    /// `org/name` for Hub models, the chosen name for imports.
    pub id: String,
    pub source: ModelSource,
    /// Branches and tags pointing at this snapshot (`main`…).
    pub refs: Vec<String>,
    pub commit: Option<String>,
    /// The folder the engine loads.
    pub path: PathBuf,
    /// Bytes of its files on disk (blobs shared by two snapshots count in both).
    pub size_on_disk: u64,
    /// Bytes of unfinished downloads in this repository (resumable by installing again).
    pub partial_bytes: u64,
    pub inspection: Inspection,
}

/// What [`ModelManager::remove`] freed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoveReport {
    pub id: String,
    pub freed_bytes: u64,
    /// Snapshots (or the imported folder) removed.
    pub removed: Vec<PathBuf>,
}

/// What [`ModelManager::import_checkpoint`] produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImportReport {
    pub name: String,
    pub path: PathBuf,
    /// `text-to-image` or `inpainting`.
    pub task: &'static str,
    /// The source's main dtype (`F16`, `F32`…).
    pub dtype: String,
    pub tensors: usize,
    pub bytes: u64,
    /// Where the tokenizer came from (a cached pipeline's), or `None` when none could be found.
    pub tokenizer_from: Option<PathBuf>,
    pub inspection: Inspection,
}

/// The models manager. Cheap to keep; every call blocks until done.
pub struct ModelManager {
    config: ModelsConfig,
    cache: HubCache,
    hub: OnceLock<Result<Arc<Hub>, String>>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ModelManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ModelManager {
    pub fn new(config: ModelsConfig) -> Result<Self, ModelError> {
        // One thread drives the HTTP connections and the download loops: handing every chunk
        // from a connection thread to a consumer thread cost more than it saved (measured).
        // Hashing, writing and fsync run on the runtime's blocking threads, one per file.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("imageai-models")
            .enable_all()
            .build()
            .map_err(|e| {
                ModelError::Runtime(format!("could not start the download runtime ({e})"))
            })?;
        let cache = HubCache::new(&config.cache_dir);
        Ok(Self {
            config,
            cache,
            hub: OnceLock::new(),
            runtime,
        })
    }

    pub fn config(&self) -> &ModelsConfig {
        &self.config
    }

    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    /// The curated list.
    pub fn curated(&self) -> &'static [CuratedModel] {
        CURATED
    }

    fn hub(&self) -> Result<Arc<Hub>, ModelError> {
        let made = self.hub.get_or_init(|| {
            Hub::new(
                &self.config.endpoint,
                self.config.token.clone(),
                &self.config.cache_dir,
            )
            .map(Arc::new)
            .map_err(|e| e.to_string())
        });
        match made {
            Ok(hub) => Ok(hub.clone()),
            Err(reason) => Err(ModelError::BadEndpoint {
                endpoint: self.config.endpoint.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Run `future` to completion on the manager's runtime. From inside another tokio runtime
    /// (where `block_on` would panic) it runs on a helper thread.
    fn block<T: Send>(&self, future: impl Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                let handle = scope.spawn(|| self.runtime.block_on(future));
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        } else {
            self.runtime.block_on(future)
        }
    }

    /// Text-to-image diffusers models on the Hub matching `query` (all of them, most downloaded
    /// first, when `None`), with what installing each in `precision` would download.
    pub fn search(
        &self,
        query: Option<&str>,
        limit: usize,
        precision: Precision,
    ) -> Result<Vec<SearchResult>, ModelError> {
        if self.config.offline {
            return Err(ModelError::Offline {
                action: "search the Hub",
            });
        }
        let hub = self.hub()?;
        self.block(async {
            let found = hub.search(query, limit.max(1)).await?;
            let sized = futures_util::stream::iter(found)
                .map(|model| {
                    let hub = hub.clone();
                    async move {
                        let size = match hub.info(&model.id, "main").await {
                            Ok(info) => {
                                let selection = select(&info.files, precision);
                                (selection.has_model_index() && selection.has_weights()).then(|| selection.total_size())
                            }
                            Err(e) => {
                                tracing::debug!(repo = %model.id, error = %e, "no size for search result");
                                None
                            }
                        };
                        SearchResult {
                            curated: curated::find(&model.id).is_some(),
                            id: model.id,
                            downloads: model.downloads,
                            likes: model.likes,
                            tags: model.tags.unwrap_or_default(),
                            download_size: size,
                            precision,
                        }
                    }
                })
                .buffered(8)
                .collect::<Vec<_>>()
                .await;
            Ok(sized)
        })
    }

    /// Install `request.repo` at `request.revision`: the files a diffusers pipeline needs in
    /// `request.precision`, into the hub cache. Files already there (ours or Python's) are not
    /// fetched again; an interrupted download resumes. Offline, an already complete install is
    /// reported as it is.
    pub fn install(
        &self,
        request: &InstallRequest,
        sink: &ProgressSink,
        cancel: &CancelToken,
    ) -> Result<InstallReport, ModelError> {
        let repo = request.repo.trim();
        if !cache::valid_repo_id(repo) {
            return Err(ModelError::InvalidRepoId {
                id: repo.to_owned(),
            });
        }
        let revision = if request.revision.trim().is_empty() {
            "main"
        } else {
            request.revision.trim()
        };
        if self.config.offline {
            return self
                .cached_install(repo, revision, request.precision)
                .ok_or(ModelError::Offline {
                    action: "download models",
                });
        }
        let hub = self.hub()?;
        self.block(async {
            let info = match hub.info(repo, revision).await {
                Ok(info) => info,
                Err(error @ ModelError::Network { .. }) => {
                    return match self.cached_install(repo, revision, request.precision) {
                        Some(report) => {
                            tracing::warn!(%error, "the Hub is unreachable; using the installed copy");
                            Ok(report)
                        }
                        None => Err(error),
                    };
                }
                Err(error) => return Err(error),
            };
            let selection = select(&info.files, request.precision);
            if !selection.has_model_index() {
                return Err(ModelError::NotDiffusers { repo: repo.to_owned(), reason: "no model_index.json at its root".into() });
            }
            if let Some(component) = selection.without_safetensors.first() {
                return Err(ModelError::NotDiffusers {
                    repo: repo.to_owned(),
                    reason: format!("{component} has no .safetensors weights, only formats ImageAI does not load (.bin, .ckpt)"),
                });
            }
            if !selection.has_weights() {
                return Err(ModelError::NotDiffusers {
                    repo: repo.to_owned(),
                    reason: "it has no UNet, VAE or text encoder weights (transformer pipelines such as SD3 and Flux are not supported yet)".into(),
                });
            }
            let options = download::Options { retries: self.config.retries, parallel: self.config.parallel };
            let fetched = download::fetch(&hub, &self.cache, repo, revision, &info.commit, &selection.files, true, options, sink, cancel).await?;
            let inspection = inspect(&fetched.snapshot);
            Ok(InstallReport {
                repo: repo.to_owned(),
                revision: revision.to_owned(),
                commit: info.commit,
                precision: request.precision,
                path: fetched.snapshot,
                total_bytes: fetched.files.iter().map(|f| f.size).sum(),
                files: fetched.files,
                downloaded_bytes: fetched.downloaded_bytes,
                cached_bytes: fetched.cached_bytes,
                elapsed_secs: fetched.elapsed.as_secs_f64(),
                offline: false,
                fallbacks: selection.fallbacks,
                inspection,
            })
        })
    }

    /// The installed copy of `repo` at `revision`, when it is complete.
    fn cached_install(
        &self,
        repo: &str,
        revision: &str,
        precision: Precision,
    ) -> Option<InstallReport> {
        let commit = self.cache.commit_for(repo, revision)?;
        let path = self.cache.snapshot_dir(repo, &commit);
        let inspection = inspect(&path);
        if !inspection.loadable {
            return None;
        }
        let files = snapshot_files(&path);
        let total: u64 = files.iter().map(|f| f.size).sum();
        Some(InstallReport {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
            commit,
            precision,
            path,
            total_bytes: total,
            files,
            downloaded_bytes: 0,
            cached_bytes: total,
            elapsed_secs: 0.0,
            offline: true,
            fallbacks: Vec::new(),
            inspection,
        })
    }

    /// Every installed model: each snapshot in the hub cache and each imported folder, sorted
    /// by id. Works offline.
    pub fn list(&self) -> Result<Vec<InstalledModel>, ModelError> {
        let mut models = self.list_hub()?;
        models.extend(self.list_imports());
        models.sort_by(|a, b| {
            a.id.to_ascii_lowercase()
                .cmp(&b.id.to_ascii_lowercase())
                .then(a.commit.cmp(&b.commit))
        });
        Ok(models)
    }

    fn list_hub(&self) -> Result<Vec<InstalledModel>, ModelError> {
        let hub = self.hub()?;
        let scanned = self.block(async { hub.scan_cache().await });
        let info = match scanned {
            Ok(info) => info,
            Err(reason) => {
                return Err(ModelError::Io {
                    action: "read the model cache".into(),
                    path: self.cache.root().to_path_buf(),
                    reason: io::Error::other(reason),
                });
            }
        };
        for warning in &info.warnings {
            tracing::debug!(%warning, "model cache");
        }
        let mut models = Vec::new();
        for repo in info.repos.into_iter().filter(|r| r.repo_type == "model") {
            let partial_bytes = incomplete_bytes(&repo.repo_path);
            if repo.revisions.is_empty() && partial_bytes > 0 {
                models.push(InstalledModel {
                    id: repo.repo_id.clone(),
                    source: ModelSource::Hub,
                    refs: Vec::new(),
                    commit: None,
                    path: repo.repo_path.clone(),
                    size_on_disk: 0,
                    partial_bytes,
                    inspection: Inspection {
                        problems: vec![
                            "download not finished; run the install again to resume".into(),
                        ],
                        ..Inspection::default()
                    },
                });
            }
            for revision in repo.revisions {
                let mut refs = revision.refs.clone();
                refs.sort();
                models.push(InstalledModel {
                    id: repo.repo_id.clone(),
                    source: ModelSource::Hub,
                    refs,
                    commit: Some(revision.commit_hash.clone()),
                    inspection: inspect(&revision.snapshot_path),
                    path: revision.snapshot_path,
                    size_on_disk: revision.size_on_disk,
                    partial_bytes,
                });
            }
        }
        Ok(models)
    }

    fn list_imports(&self) -> Vec<InstalledModel> {
        let Ok(entries) = fs::read_dir(&self.config.imports_dir) else {
            return Vec::new();
        };
        let mut models = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            models.push(InstalledModel {
                id: name,
                source: ModelSource::Imported,
                refs: Vec::new(),
                commit: None,
                size_on_disk: folder_size(&path),
                partial_bytes: 0,
                inspection: inspect(&path),
                path,
            });
        }
        models
    }

    /// Remove an installed model: `org/name` removes the Hub repository's snapshot for
    /// `revision` (every snapshot when `None`) and the blobs no other snapshot uses, then the
    /// repository's folder once no snapshot is left; a plain name removes an imported model.
    pub fn remove(&self, id: &str, revision: Option<&str>) -> Result<RemoveReport, ModelError> {
        let id = id.trim();
        if !id.contains('/') && valid_name(id) {
            return self.remove_import(id);
        }
        if !cache::valid_repo_id(id) {
            return Err(ModelError::InvalidRepoId { id: id.to_owned() });
        }
        let repo_dir = self.cache.repo_dir(id);
        if !repo_dir.is_dir() {
            return Err(ModelError::NotInstalled { id: id.to_owned() });
        }
        let io_err = |action: &str, path: &Path, reason: io::Error| ModelError::Io {
            action: action.to_owned(),
            path: path.to_path_buf(),
            reason,
        };
        let snapshots_dir = repo_dir.join("snapshots");
        let all: Vec<String> = fs::read_dir(&snapshots_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let doomed: Vec<String> = match revision {
            None => all.clone(),
            Some(rev) => {
                let commit = self
                    .cache
                    .commit_for(id, rev)
                    .filter(|c| all.contains(c))
                    .ok_or_else(|| ModelError::NotInstalled {
                        id: format!("{id} at {rev}"),
                    })?;
                vec![commit]
            }
        };
        let kept: Vec<&String> = all.iter().filter(|c| !doomed.contains(c)).collect();
        let mut report = RemoveReport {
            id: id.to_owned(),
            freed_bytes: 0,
            removed: Vec::new(),
        };

        if kept.is_empty() {
            // Nothing else uses the blobs: the whole folder goes, partial downloads included.
            // The blobs (partial downloads included) are the space; pointers and refs are tiny.
            report.freed_bytes = folder_size(&repo_dir.join("blobs"));
            report.removed = doomed.iter().map(|c| snapshots_dir.join(c)).collect();
            fs::remove_dir_all(&repo_dir)
                .map_err(|e| io_err("remove the model folder", &repo_dir, e))?;
            let locks = self
                .cache
                .root()
                .join(".locks")
                .join(HubCache::folder_name(id));
            let _ = fs::remove_dir_all(locks);
            return Ok(report);
        }
        let mut used = BTreeSet::new();
        for commit in &kept {
            used.extend(blob_names(&snapshots_dir.join(commit)));
        }
        let mut unused = BTreeSet::new();
        for commit in &doomed {
            let dir = snapshots_dir.join(commit);
            unused.extend(blob_names(&dir).into_iter().filter(|b| !used.contains(b)));
            fs::remove_dir_all(&dir).map_err(|e| io_err("remove the snapshot", &dir, e))?;
            report.removed.push(dir);
        }
        for blob in unused {
            let path = repo_dir.join("blobs").join(&blob);
            if let Ok(meta) = fs::symlink_metadata(&path) {
                fs::remove_file(&path).map_err(|e| io_err("remove a blob", &path, e))?;
                report.freed_bytes += meta.len();
            }
        }
        // Refs that pointed at a removed snapshot now point nowhere.
        for name in ref_names(&repo_dir.join("refs")) {
            if self
                .cache
                .read_ref(id, &name)
                .is_some_and(|c| doomed.contains(&c))
            {
                let _ = fs::remove_file(self.cache.ref_path(id, &name));
            }
        }
        Ok(report)
    }

    fn remove_import(&self, name: &str) -> Result<RemoveReport, ModelError> {
        let path = self.config.imports_dir.join(name);
        if !path.is_dir() {
            return Err(ModelError::NotInstalled {
                id: name.to_owned(),
            });
        }
        let freed = folder_size(&path);
        fs::remove_dir_all(&path).map_err(|reason| ModelError::Io {
            action: "remove the imported model".into(),
            path: path.clone(),
            reason,
        })?;
        Ok(RemoveReport {
            id: name.to_owned(),
            freed_bytes: freed,
            removed: vec![path],
        })
    }

    /// Convert a single-file SD 1.x checkpoint (`.safetensors`, original layout) into a diffusers
    /// folder `<imports>/<name>` (name: the file's stem by default). The tokenizer is copied from
    /// an installed SD 1.x pipeline, else fetched from `stable-diffusion-v1-5` when online.
    /// `progress(done, total)` follows the bytes converted. A half-finished import never
    /// appears: the folder is built under a temporary name and renamed at the end.
    pub fn import_checkpoint(
        &self,
        file: &Path,
        name: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
        cancel: &CancelToken,
    ) -> Result<ImportReport, ModelError> {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = name.map(str::trim).unwrap_or(&stem).to_owned();
        if !valid_name(&name) {
            return Err(ModelError::InvalidName { name });
        }
        if !file.is_file() {
            return Err(ModelError::Checkpoint {
                path: file.to_path_buf(),
                reason: "there is no such file".into(),
            });
        }
        if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ckpt") || e.eq_ignore_ascii_case("pt"))
        {
            return Err(ModelError::Checkpoint {
                path: file.to_path_buf(),
                reason: "pickled .ckpt files can run code when loaded, so ImageAI only imports .safetensors; \
                    get the .safetensors version of this model"
                    .into(),
            });
        }
        let dest = self.config.imports_dir.join(&name);
        if dest.exists() {
            return Err(ModelError::NameTaken { name });
        }
        let io_err = |action: &str, path: &Path, reason: io::Error| ModelError::Io {
            action: action.to_owned(),
            path: path.to_path_buf(),
            reason,
        };
        fs::create_dir_all(&self.config.imports_dir)
            .map_err(|e| io_err("create the imports folder", &self.config.imports_dir, e))?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(&self.config.imports_dir)
            .map_err(|e| io_err("create a temporary folder", &self.config.imports_dir, e))?;
        let mut cancelled = false;
        let mut report_progress = |done: u64, total: u64| {
            cancelled |= cancel.is_cancelled();
            progress(done, total);
        };
        let converted = checkpoint::convert(file, temp.path(), &mut report_progress)?;
        if cancelled || cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        let tokenizer_from = self
            .find_tokenizer()
            .or_else(|| self.fetch_tokenizer(cancel));
        if let Some(from) = &tokenizer_from {
            checkpoint::copy_tokenizer(from, temp.path())
                .map_err(|e| io_err("copy the tokenizer", from, e))?;
        }
        let kept = temp.keep();
        fs::rename(&kept, &dest).map_err(|e| {
            let _ = fs::remove_dir_all(&kept);
            io_err("move the converted model into place", &dest, e)
        })?;
        Ok(ImportReport {
            name,
            task: if converted.detected.in_channels == 9 {
                "inpainting"
            } else {
                "text-to-image"
            },
            dtype: converted.dtype,
            tensors: converted.tensors.values().sum(),
            bytes: converted.bytes,
            tokenizer_from,
            inspection: inspect(&dest),
            path: dest,
        })
    }

    /// A `tokenizer/` folder of an installed SD 1.x pipeline (CLIP ViT-L/14's vocabulary).
    fn find_tokenizer(&self) -> Option<PathBuf> {
        let preferred = CURATED.iter().filter(|m| m.family == "sd1").map(|m| m.id);
        for repo in preferred {
            if let Some(commit) = self.cache.read_ref(repo, "main") {
                let dir = self.cache.snapshot_dir(repo, &commit).join("tokenizer");
                if checkpoint::TOKENIZER_FILES
                    .iter()
                    .all(|f| dir.join(f).is_file())
                {
                    return Some(dir);
                }
            }
        }
        None
    }

    /// Fetch `stable-diffusion-v1-5`'s tokenizer files into the cache (no ref is written: the
    /// repository does not look installed).
    fn fetch_tokenizer(&self, cancel: &CancelToken) -> Option<PathBuf> {
        if self.config.offline {
            return None;
        }
        let repo = CURATED.first()?.id;
        let hub = self.hub().ok()?;
        let result = self.block(async {
            let info = hub.info(repo, "main").await?;
            let files: Vec<RepoFile> = info
                .files
                .into_iter()
                .filter(|f| {
                    f.path
                        .strip_prefix("tokenizer/")
                        .is_some_and(|n| checkpoint::TOKENIZER_FILES.contains(&n))
                })
                .collect();
            let options = download::Options {
                retries: self.config.retries,
                parallel: self.config.parallel,
            };
            download::fetch(
                &hub,
                &self.cache,
                repo,
                "main",
                &info.commit,
                &files,
                false,
                options,
                &ProgressSink::none(),
                cancel,
            )
            .await
        });
        match result {
            Ok(fetched) => Some(fetched.snapshot.join("tokenizer")).filter(|dir| {
                checkpoint::TOKENIZER_FILES
                    .iter()
                    .all(|f| dir.join(f).is_file())
            }),
            Err(error) => {
                tracing::warn!(%error, "could not fetch the SD 1.5 tokenizer");
                None
            }
        }
    }
}

/// A name for an imported model: letters, digits, `-`, `_`, `.`; not starting with `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 96
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The files of a snapshot, with their sizes.
fn snapshot_files(dir: &Path) -> Vec<PlannedFile> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => stack.push(path),
                Ok(meta) => {
                    let rel = path
                        .strip_prefix(dir)
                        .map(|p| p.to_string_lossy().replace('\\', "/"))
                        .unwrap_or_default();
                    files.push(PlannedFile {
                        path: rel,
                        size: meta.len(),
                        cached: true,
                    });
                }
                Err(_) => {}
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The blob names the pointers of a snapshot point at.
fn blob_names(snapshot: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![snapshot.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => stack.push(path),
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Some(name) = fs::read_link(&path)
                        .ok()
                        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                    {
                        names.insert(name);
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// Every ref name under `refs/` (`main`, `refs/pr/1`…), relative to it.
fn ref_names(refs: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![refs.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(refs) {
                names.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    names
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn folder_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            match fs::symlink_metadata(entry.path()) {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) if meta.is_file() => total += meta.len(),
                _ => {}
            }
        }
    }
    total
}

/// Bytes of `blobs/*.incomplete` in a repository folder.
fn incomplete_bytes(repo_dir: &Path) -> u64 {
    fs::read_dir(repo_dir.join("blobs"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_hub_shows_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.50 kB");
        assert_eq!(human_bytes(2_134_000_000), "2.13 GB");
        assert_eq!(human_bytes(246_144_152), "246 MB");
    }

    #[test]
    fn settings_come_from_config_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        let mut config = Config::default();
        let env = |name: &str| match name {
            "HF_HOME" => Some(OsString::from("/hf")),
            "HF_ENDPOINT" => Some(OsString::from("http://127.0.0.1:1")),
            "HF_HUB_OFFLINE" => Some(OsString::from("1")),
            _ => None,
        };
        let resolved = ModelsConfig::from_lookup(&paths, &config, &env);
        assert_eq!(resolved.cache_dir, Path::new("/hf/hub"));
        assert_eq!(resolved.imports_dir, dir.path().join("models"));
        assert_eq!(resolved.endpoint, "http://127.0.0.1:1");
        assert!(resolved.offline);
        // The Python app's spelling of the section and its value (a Hugging Face home).
        config.set_provider_setting("local_sd", "model_cache", "/data/huggingface");
        config.set_provider_setting("local_sd", "import_dir", "/data/imports");
        let resolved = ModelsConfig::from_lookup(&paths, &config, &|_| None);
        assert_eq!(resolved.cache_dir, Path::new("/data/huggingface/hub"));
        assert_eq!(resolved.imports_dir, Path::new("/data/imports"));
        assert_eq!(resolved.endpoint, DEFAULT_ENDPOINT);
        assert!(!resolved.offline);
    }

    #[test]
    fn import_names_cannot_escape_the_folder() {
        for ok in ["my-model", "dreamshaper_8", "v1.5"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", "x\\y"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_to_do_and_never_hold_the_token() {
        let access = ModelError::Access {
            repo: "o/n".into(),
            status: 401,
            page: "https://hf.test/o/n".into(),
            token_sent: false,
        };
        let text = access.to_string();
        assert!(
            text.contains("accept its license on https://hf.test/o/n"),
            "{text}"
        );
        assert!(text.contains("imageai keys set huggingface"), "{text}");
        assert_eq!(access.class(), "auth");
        let offline = ModelError::Offline {
            action: "search the Hub",
        }
        .to_string();
        assert!(offline.contains("HF_HUB_OFFLINE"), "{offline}");
    }
}
