//! The `local-sd` provider: Stable Diffusion on this machine. The engine runs in its own
//! process, `imageai-sd-worker`, which this provider spawns on first use and talks to over stdio.
//!
//! A crash, a lost GPU or running out of memory in the worker comes back as a
//! [`ProviderError`] saying what to do; the app keeps running, and the next call starts a new
//! worker. Killing the worker frees all of its device memory. Models come from the Hugging Face
//! cache the models manager fills (`imageai models install`) or from any diffusers folder.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imageai_local_sd::worker::client::{ClientError, LoadedModel, WorkerClient, WorkerProgress};
use imageai_local_sd::worker::protocol::{self, ErrorKind, LoadRequest};

use crate::jobs::ANY_MODEL;
use crate::models::cache::{self, HubCache};
use crate::models::{ModelManager, ModelsConfig};
use crate::paths::expand_tilde;
use crate::plugin::SUPPORTED_CONTRACTS;
use crate::plugin::manifest::{Manifest, SettingKind, SettingSpec};
use crate::provider::{
    CallContext, Capability, EditMode, EditRequest, GenerateRequest, Generation, Image, ModelInfo,
    Param, Provider, ProviderError, ProviderInfo, UpscaleRequest,
};

/// The provider id users type (`--provider local-sd`).
pub const ID: &str = "local-sd";
/// The provider's display name.
pub const NAME: &str = "Local Stable Diffusion";
/// Environment variable naming the worker binary; overrides the search beside the executable.
pub const WORKER_ENV: &str = "IMAGEAI_SD_WORKER";
/// The worker binary's file name (with `.exe` on Windows).
pub const WORKER_FILE: &str = if cfg!(windows) {
    "imageai-sd-worker.exe"
} else {
    "imageai-sd-worker"
};

/// Default precision: half the memory of fp32, and the engine keeps norms, softmax and the VAE
/// in f32 where fp16 would overflow.
const DEFAULT_PRECISION: &str = "fp16";
const PNG: &str = "image/png";

/// The worker binary: `$IMAGEAI_SD_WORKER` when set, else beside the running executable, else in
/// its parent folder (`target/<profile>/deps` test binaries). `IMAGEAI_PLUGIN_DIRS` names the
/// bundled providers exactly, so when it is set only `$IMAGEAI_SD_WORKER` adds this one.
pub fn find_worker() -> Option<PathBuf> {
    find_worker_in(
        std::env::var_os(WORKER_ENV),
        std::env::var_os("IMAGEAI_PLUGIN_DIRS").is_some(),
        std::env::current_exe().ok().as_deref(),
    )
}

fn find_worker_in(
    env: Option<OsString>,
    plugin_dirs_set: bool,
    exe: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        // Named explicitly: registered even when missing, so using it says what is wrong.
        return Some(PathBuf::from(path));
    }
    if plugin_dirs_set {
        return None;
    }
    let exe_dir = exe?.parent()?;
    [Some(exe_dir), exe_dir.parent()]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(WORKER_FILE))
        .find(|candidate| candidate.is_file())
}

/// The provider's manifest: no network, no key, and the engine's settings
/// (`providers.local_sd.<name>` in config.json, or `IMAGEAI_LOCAL_SD_<NAME>`).
pub fn manifest() -> Manifest {
    let setting = |name: &str, label: &str, default: Option<&str>| SettingSpec {
        name: name.to_owned(),
        label: label.to_owned(),
        kind: SettingKind::Text,
        default: default.map(str::to_owned),
    };
    Manifest {
        id: ID.to_owned(),
        name: NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        contract: SUPPORTED_CONTRACTS
            .last()
            .copied()
            .unwrap_or("0.1.0")
            .to_owned(),
        description: "Stable Diffusion 1.x, 2.x and XL on this machine's GPU (Vulkan, Metal, DX12) or CPU; models from the Hugging Face cache or any diffusers folder".to_owned(),
        allowed_hosts: Vec::new(),
        key: None,
        settings: vec![
            setting("model_cache", "Model cache folder", None),
            setting("device", "Device (auto, cpu, or an adapter)", Some("auto")),
            setting("precision", "Precision (fp16 or fp32)", Some(DEFAULT_PRECISION)),
            setting("scheduler", "Default scheduler", None),
            setting(
                "memory_limit",
                "Memory limit: a size such as `6GiB` or `6144` (MiB) turns on only the savings needed to stay under it; `low` turns them all on",
                None,
            ),
        ],
    }
}

/// How the engine runs one request: from the request's `extra` (the CLI's `--device`,
/// `--precision`, `--scheduler`, `--init-noise`), else the provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EngineOptions {
    device: String,
    precision: String,
    scheduler: Option<String>,
    init_noise: Option<String>,
    low_memory: bool,
    /// A budget the engine keeps each generation's estimated peak under.
    memory_limit_mib: Option<u64>,
}

impl EngineOptions {
    fn from(
        extra: &BTreeMap<String, String>,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self, ProviderError> {
        let pick = |name: &str| {
            extra
                .get(name)
                .or_else(|| settings.get(name))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let memory = match pick("memory_limit") {
            None => protocol::MemoryLimit::Unlimited,
            Some(value) => protocol::parse_memory_limit(&value).map_err(|message| {
                ProviderError::InvalidRequest(format!(
                    "{message} (the local-sd setting in config.json, or `--set memory_limit=…`)"
                ))
            })?,
        };
        Ok(Self {
            device: pick("device").unwrap_or_else(|| "auto".to_owned()),
            precision: pick("precision")
                .unwrap_or_else(|| DEFAULT_PRECISION.to_owned())
                .to_ascii_lowercase(),
            scheduler: pick("scheduler"),
            init_noise: pick("init_noise"),
            low_memory: memory == protocol::MemoryLimit::Low,
            memory_limit_mib: match memory {
                protocol::MemoryLimit::Mib(mib) => Some(mib),
                _ => None,
            },
        })
    }
}

/// `WxH` as two numbers.
fn parse_size(size: &str) -> Result<(u32, u32), ProviderError> {
    let bad = || {
        ProviderError::InvalidRequest(format!(
            "size `{size}` is not WIDTHxHEIGHT, e.g. 512x512 (both multiples of 8)"
        ))
    };
    let (w, h) = size.trim().split_once(['x', 'X', '×']).ok_or_else(bad)?;
    let w = w.trim().parse().map_err(|_| bad())?;
    let h = h.trim().parse().map_err(|_| bad())?;
    Ok((w, h))
}

/// The worker's request for a text-to-image call.
fn worker_generate(
    request: &GenerateRequest,
    options: &EngineOptions,
) -> Result<protocol::GenerateRequest, ProviderError> {
    let (width, height) = match request.size.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(size) => parse_size(size).map(|(w, h)| (Some(w), Some(h)))?,
        None => (None, None),
    };
    Ok(protocol::GenerateRequest {
        prompt: request.prompt.clone(),
        negative_prompt: request
            .negative_prompt
            .clone()
            .filter(|n| !n.trim().is_empty()),
        width,
        height,
        steps: request.steps,
        guidance: request.guidance,
        seed: request.seed,
        n: Some(request.n.max(1)),
        scheduler: options.scheduler.clone(),
        timestep_spacing: request.extra.get("timestep_spacing").cloned(),
        strength: None,
        init_image_png: None,
        mask_png: None,
        init_noise: options.init_noise.clone(),
        preview: false,
    })
}

fn png_base64(image: &Image, what: &str) -> Result<String, ProviderError> {
    if !image.data.starts_with(b"\x89PNG") {
        return Err(ProviderError::InvalidRequest(format!(
            "local Stable Diffusion reads the {what} as PNG only; convert it to PNG and try again"
        )));
    }
    Ok(STANDARD.encode(&image.data))
}

/// The worker's request for an edit: img2img (`edit`) or inpainting (`inpaint`, with a mask).
fn worker_edit(
    request: &EditRequest,
    options: &EngineOptions,
) -> Result<protocol::GenerateRequest, ProviderError> {
    let mut out = worker_generate(&request.base, options)?;
    let image = request.images.first().ok_or_else(|| {
        ProviderError::InvalidRequest("an edit needs a source image (--image FILE)".into())
    })?;
    if let Some(strength) = request
        .strength
        .filter(|s| !(0.0..=1.0).contains(s) || s.is_nan())
    {
        return Err(ProviderError::InvalidRequest(format!(
            "strength {strength} is outside 0..1; 0 keeps the image, 1 replaces it"
        )));
    }
    out.init_image_png = Some(png_base64(image, "source image")?);
    out.strength = request.strength;
    match request.mode {
        EditMode::Edit => {}
        EditMode::Inpaint => {
            let mask = request.mask.as_ref().ok_or_else(|| {
                ProviderError::InvalidRequest(
                    "inpainting needs a mask (--mask FILE, white = repaint)".into(),
                )
            })?;
            out.mask_png = Some(png_base64(mask, "mask")?);
        }
        other => {
            return Err(ProviderError::InvalidRequest(format!(
                "local Stable Diffusion cannot do {}; it does edit (img2img) and inpaint",
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
    }
    Ok(out)
}

/// Where the model the user named is on disk: an existing folder, an imported model's name, or
/// a Hugging Face repo id (`org/name`, optionally `@revision`) in the hub cache.
fn resolve_model(spec: &str, hub_cache: &Path, imports: &Path) -> Result<PathBuf, ProviderError> {
    let spec = spec.trim();
    if spec.is_empty() || spec == ANY_MODEL {
        return Err(ProviderError::InvalidRequest(
            "no model chosen: pass --model with an installed model (`imageai models list`) or the path of a diffusers folder".into(),
        ));
    }
    let path = expand_tilde(spec);
    if path.is_dir() {
        return Ok(path);
    }
    if !spec.contains(['/', '\\']) && imports.join(spec).is_dir() {
        return Ok(imports.join(spec));
    }
    let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let looks_like_path = spec.starts_with(['/', '.', '~', '\\']) || spec.contains('\\');
    if !looks_like_path && cache::valid_repo_id(repo) {
        let hub = HubCache::new(hub_cache);
        if let Some(commit) = hub.commit_for(repo, revision) {
            let snapshot = hub.snapshot_dir(repo, &commit);
            if snapshot.is_dir() {
                return Ok(snapshot);
            }
        }
        // No ref (a cache copied by hand): the only snapshot there is.
        if revision == "main"
            && let Ok(entries) = std::fs::read_dir(hub.repo_dir(repo).join("snapshots"))
        {
            let mut snapshots: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            if snapshots.len() == 1 {
                return Ok(snapshots.remove(0));
            }
        }
        return Err(ProviderError::InvalidRequest(format!(
            "model `{spec}` is not installed. Install it with `imageai models install {repo}`, or pass the path of a diffusers folder. Looked in {}",
            hub_cache.display()
        )));
    }
    Err(ProviderError::InvalidRequest(format!(
        "no model folder at `{spec}`. Pass a diffusers folder (with model_index.json, unet/, vae/, text_encoder/, tokenizer/) or a Hugging Face repo id installed with `imageai models install ORG/NAME`: {}",
        path.display()
    )))
}

/// What a failed worker call means for the user, and whether the worker must be replaced.
fn map_error(err: ClientError) -> (ProviderError, bool) {
    match err {
        ClientError::Spawn { path, source } => (
            ProviderError::Plugin(format!(
                "could not start the local Stable Diffusion worker ({source}). Reinstall ImageAI, or set {WORKER_ENV} to the worker binary: {}",
                path.display()
            )),
            true,
        ),
        ClientError::WorkerDied { .. } => (
            ProviderError::Plugin(format!(
                "{err}\nIt is started again on the next request. If this keeps happening, try --device cpu, --precision fp16 or a smaller size."
            )),
            true,
        ),
        ClientError::Protocol(_) => (
            ProviderError::Plugin(format!(
                "{err}. The worker is restarted on the next request; reinstall ImageAI if this keeps happening."
            )),
            true,
        ),
        ClientError::Worker { kind, message } => match kind {
            ErrorKind::Cancelled => (ProviderError::Cancelled, false),
            ErrorKind::InvalidRequest => (ProviderError::InvalidRequest(message), false),
            ErrorKind::ModelNotFound => (
                ProviderError::InvalidRequest(format!(
                    "{message} Install it with `imageai models install ORG/NAME`, or pass a folder path."
                )),
                false,
            ),
            ErrorKind::Model => (
                ProviderError::Other(format!("the model could not be loaded: {message}")),
                false,
            ),
            // The worker's message already names the size, precision and the first things to
            // try; the worker is replaced so that its device memory is freed for certain.
            ErrorKind::OutOfMemory => (
                ProviderError::Other(format!(
                    "{message}; fewer images (-n) or `--set memory_limit=low` also help"
                )),
                true,
            ),
            ErrorKind::DeviceLost => (
                ProviderError::Other(format!(
                    "{message}. The engine is restarted on the next request; if it happens again, update the GPU driver or use --device cpu."
                )),
                true,
            ),
            ErrorKind::NoModel | ErrorKind::Internal => (
                ProviderError::Plugin(format!(
                    "the local engine failed: {message}. The worker is restarted on the next request."
                )),
                true,
            ),
        },
    }
}

/// The running worker and what it has loaded.
#[derive(Default)]
struct Worker {
    client: Option<WorkerClient>,
    /// What is loaded, with the memory limit it was loaded under.
    loaded: Option<(LoadRequest, Option<u64>, LoadedModel)>,
}

impl Worker {
    /// Kills the process (freeing its device memory); the next call starts another.
    fn reset(&mut self) {
        if let Some(client) = self.client.take() {
            client.kill();
        }
        self.loaded = None;
    }

    /// The running worker, started (after `starting`) when there is none or it has exited.
    fn started(
        &mut self,
        path: &Path,
        starting: impl FnOnce(),
    ) -> Result<&mut WorkerClient, ClientError> {
        if self.client.as_mut().is_some_and(|c| !c.is_running()) {
            tracing::info!("the local SD worker had exited; starting a new one");
            self.reset();
        }
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                starting();
                WorkerClient::spawn(path)?
            }
        };
        Ok(self.client.insert(client))
    }

    /// The provider error for a worker failure; a worker that may be broken is stopped.
    fn fail(&mut self, err: ClientError) -> ProviderError {
        let (error, restart) = map_error(err);
        if restart {
            self.reset();
        }
        error
    }
}

/// Local Stable Diffusion through the `imageai-sd-worker` process.
pub struct LocalSdProvider {
    worker_path: PathBuf,
    models: ModelsConfig,
    worker: Mutex<Worker>,
}

impl std::fmt::Debug for LocalSdProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSdProvider")
            .field("worker_path", &self.worker_path)
            .finish_non_exhaustive()
    }
}

impl LocalSdProvider {
    /// A provider that spawns `worker_path` on first use; `models` says where installed models
    /// are (its cache folder is overridden per call by the `model_cache` setting).
    pub fn new(worker_path: PathBuf, models: ModelsConfig) -> Self {
        Self {
            worker_path,
            models,
            worker: Mutex::new(Worker::default()),
        }
    }

    pub fn worker_path(&self) -> &Path {
        &self.worker_path
    }

    fn hub_cache(&self, settings: &BTreeMap<String, String>) -> PathBuf {
        match settings.get("model_cache").filter(|s| !s.trim().is_empty()) {
            Some(setting) => {
                cache::resolve_cache_dir(Some(setting), &|name| std::env::var_os(name))
            }
            None => self.models.cache_dir.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Worker> {
        // A panic while holding the lock leaves at worst a worker in an unknown state: start
        // a fresh one.
        self.worker.lock().unwrap_or_else(|poisoned| {
            let mut worker = poisoned.into_inner();
            worker.reset();
            worker
        })
    }

    /// The devices the engine can run on (GPU adapters by name, and the CPU), as the worker
    /// sees them; a value of the `device` setting or `--device` picks one by name.
    pub fn devices(&self) -> Result<Vec<protocol::AdapterInfo>, ProviderError> {
        let mut worker = self.lock();
        let result = worker
            .started(&self.worker_path, || {})
            .and_then(WorkerClient::list_devices);
        result.map_err(|err| worker.fail(err))
    }

    /// Stops the worker and frees its device memory; the next call starts it again.
    pub fn unload(&self) {
        self.lock().reset();
    }

    /// Load `model` if it is not the loaded one, then run `request` with progress, previews and
    /// cancellation.
    fn run(
        &self,
        model: &str,
        mut request: protocol::GenerateRequest,
        options: &EngineOptions,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        let root = resolve_model(
            model,
            &self.hub_cache(&ctx.settings),
            &self.models.imports_dir,
        )?;
        let load = LoadRequest {
            model: root.display().to_string(),
            device: Some(options.device.clone()),
            precision: Some(options.precision.clone()),
            low_memory: options.low_memory,
            idle_unload_secs: None,
        };
        let mut worker = self.lock();
        if ctx.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let started = worker
            .started(&self.worker_path, || {
                ctx.report(0.0, "starting the local engine");
            })
            .map(|_| ());
        if let Err(err) = started {
            return Err(worker.fail(err));
        }
        let limit = options.memory_limit_mib;
        if worker.loaded.as_ref().map(|(l, m, _)| (l, *m)) != Some((&load, limit)) {
            ctx.report(0.0, "loading the model");
            worker.loaded = None;
            let result = match worker.client.as_mut() {
                Some(client) => client.load_with_memory_limit(load.clone(), limit),
                None => {
                    return Err(ProviderError::Other(
                        "the local engine is not running".into(),
                    ));
                }
            };
            match result {
                Ok(loaded) => worker.loaded = Some((load, limit, loaded)),
                Err(err) => return Err(worker.fail(err)),
            }
        }
        if ctx.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        request.preview = ctx.preview.is_some();
        let scheduler = request.scheduler.clone();
        let (result, loaded) = {
            let Worker { client, loaded } = &mut *worker;
            let Some(client) = client.as_mut() else {
                return Err(ProviderError::Other(
                    "the local engine is not running".into(),
                ));
            };
            (
                generate(client, request, ctx),
                loaded.as_ref().map(|(_, _, l)| l.clone()),
            )
        };
        let images = result.map_err(|e| worker.fail(e))?;
        drop(worker);

        let mut generation = Generation {
            seed: images.first().map(|i| i.seed),
            ..Generation::default()
        };
        if let Some(loaded) = loaded {
            generation
                .metadata
                .insert("device".into(), loaded.device.clone());
            generation.metadata.insert(
                "scheduler".into(),
                scheduler.unwrap_or(loaded.default_scheduler),
            );
            generation.metadata.insert("family".into(), loaded.family);
        }
        generation
            .metadata
            .insert("precision".into(), options.precision.clone());
        generation.images = images
            .into_iter()
            .map(|i| Image {
                mime: PNG.to_owned(),
                data: i.png,
            })
            .collect();
        Ok(generation)
    }
}

/// One generation on the worker, forwarding progress and previews to `ctx` and its cancel
/// token to the worker.
fn generate(
    client: &mut WorkerClient,
    request: protocol::GenerateRequest,
    ctx: &CallContext,
) -> Result<Vec<imageai_local_sd::worker::client::WorkerImage>, ClientError> {
    let cancel = client.cancel_handle();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if ctx.cancel.is_cancelled() {
                    cancel.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let result = client.generate(request, |p: WorkerProgress| {
            let fraction = if p.total == 0 {
                0.0
            } else {
                p.step as f32 / p.total as f32
            };
            ctx.report(fraction, &format!("step {}/{}", p.step, p.total));
            if let (Some(preview), Some(png)) = (&ctx.preview, p.preview_png) {
                preview(&Image {
                    mime: PNG.to_owned(),
                    data: png,
                });
            }
        });
        done.store(true, Ordering::SeqCst);
        result
    })
}

/// What every model of this provider honours.
fn model_info(
    id: &str,
    name: &str,
    description: String,
    capabilities: Vec<Capability>,
) -> ModelInfo {
    ModelInfo {
        id: id.to_owned(),
        name: name.to_owned(),
        description,
        capabilities,
        params: vec![
            Param::N,
            Param::Seed,
            Param::Steps,
            Param::Guidance,
            Param::NegativePrompt,
            Param::Strength,
            Param::Size,
            Param::Scheduler,
        ],
        max_n: 8,
        ..ModelInfo::default()
    }
}

impl Provider for LocalSdProvider {
    /// The loadable installed models, then `*`: any other repo id or folder path.
    fn info(&self) -> Result<ProviderInfo, ProviderError> {
        let mut models: Vec<ModelInfo> = Vec::new();
        match ModelManager::new(self.models.clone()).and_then(|m| m.list()) {
            Ok(installed) => {
                for model in installed.into_iter().filter(|m| m.inspection.loadable) {
                    if models.iter().any(|m| m.id == model.id) {
                        continue;
                    }
                    let pipeline = model.inspection.pipeline.clone().unwrap_or_default();
                    let capabilities = if pipeline.contains("Inpaint") {
                        vec![Capability::Inpaint]
                    } else {
                        vec![
                            Capability::TextToImage,
                            Capability::Edit,
                            Capability::Inpaint,
                        ]
                    };
                    models.push(model_info(&model.id, &model.id, pipeline, capabilities));
                }
            }
            Err(err) => tracing::debug!(%err, "listing installed models for local-sd"),
        }
        models.push(model_info(
            ANY_MODEL,
            "any diffusers folder or cached repo id",
            "a path to a diffusers folder, or an `org/name` installed in the Hugging Face cache"
                .to_owned(),
            vec![
                Capability::TextToImage,
                Capability::Edit,
                Capability::Inpaint,
            ],
        ));
        Ok(ProviderInfo {
            id: ID.to_owned(),
            name: NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            models,
        })
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        let options = EngineOptions::from(&request.extra, &ctx.settings)?;
        let worker_request = worker_generate(request, &options)?;
        self.run(&request.model, worker_request, &options, ctx)
    }

    fn edit(&self, request: &EditRequest, ctx: &CallContext) -> Result<Generation, ProviderError> {
        let options = EngineOptions::from(&request.base.extra, &ctx.settings)?;
        let worker_request = worker_edit(request, &options)?;
        self.run(&request.base.model, worker_request, &options, ctx)
    }

    fn upscale(
        &self,
        _request: &UpscaleRequest,
        _ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        Err(ProviderError::InvalidRequest(
            "local Stable Diffusion does not upscale; use a provider that does (see `imageai providers`)".into(),
        ))
    }

    /// No key: the engine runs here.
    fn check_key(&self, _ctx: &CallContext) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> EngineOptions {
        let extra = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EngineOptions::from(&extra, &manifest_defaults()).unwrap()
    }

    fn manifest_defaults() -> BTreeMap<String, String> {
        manifest()
            .settings
            .into_iter()
            .filter_map(|s| Some((s.name, s.default?)))
            .collect()
    }

    fn png(bytes: &[u8]) -> Image {
        let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
        data.extend_from_slice(bytes);
        Image {
            mime: PNG.into(),
            data,
        }
    }

    #[test]
    fn engine_flags_beat_settings_and_defaults() {
        let defaults = options(&[]);
        assert_eq!(defaults.device, "auto");
        assert_eq!(defaults.precision, "fp16");
        assert_eq!(defaults.scheduler, None);
        assert!(!defaults.low_memory);

        let mut settings = manifest_defaults();
        settings.insert("device".into(), "cpu".into());
        settings.insert("scheduler".into(), "ddim".into());
        settings.insert("memory_limit".into(), "low".into());
        let extra = [("scheduler".to_owned(), "euler".to_owned())]
            .into_iter()
            .collect();
        let o = EngineOptions::from(&extra, &settings).unwrap();
        assert_eq!(o.device, "cpu");
        assert_eq!(o.scheduler.as_deref(), Some("euler"));
        assert!(o.low_memory);
        assert_eq!(o.memory_limit_mib, None);

        let o = options(&[("memory_limit", "6GiB")]);
        assert!(!o.low_memory);
        assert_eq!(o.memory_limit_mib, Some(6144));
        let bad = [("memory_limit".to_owned(), "lots".to_owned())]
            .into_iter()
            .collect();
        match EngineOptions::from(&bad, &manifest_defaults()) {
            Err(ProviderError::InvalidRequest(message)) => {
                assert!(message.contains("6GiB"), "{message}")
            }
            other => panic!("expected an invalid request, got {other:?}"),
        }

        let o = options(&[("precision", "FP32"), ("init_noise", "/tmp/n.safetensors")]);
        assert_eq!(o.precision, "fp32");
        assert_eq!(o.init_noise.as_deref(), Some("/tmp/n.safetensors"));
    }

    #[test]
    fn generate_request_maps_onto_the_protocol() {
        let request = GenerateRequest {
            model: "org/model".into(),
            prompt: "a fox".into(),
            negative_prompt: Some("blurry".into()),
            n: 2,
            size: Some("64x48".into()),
            seed: Some(9),
            steps: Some(3),
            guidance: Some(5.5),
            ..GenerateRequest::default()
        };
        let o = options(&[("scheduler", "euler-a")]);
        let w = worker_generate(&request, &o).unwrap();
        assert_eq!(
            w,
            protocol::GenerateRequest {
                prompt: "a fox".into(),
                negative_prompt: Some("blurry".into()),
                width: Some(64),
                height: Some(48),
                steps: Some(3),
                guidance: Some(5.5),
                seed: Some(9),
                n: Some(2),
                scheduler: Some("euler-a".into()),
                ..Default::default()
            }
        );
        // n = 0 means one image; no size means the model's own.
        let w = worker_generate(
            &GenerateRequest {
                prompt: "x".into(),
                ..GenerateRequest::default()
            },
            &o,
        )
        .unwrap();
        assert_eq!((w.n, w.width, w.height), (Some(1), None, None));

        let err = worker_generate(
            &GenerateRequest {
                size: Some("large".into()),
                ..request
            },
            &o,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ProviderError::InvalidRequest(m) if m.contains("WIDTHxHEIGHT")),
            "{err}"
        );
    }

    #[test]
    fn edits_become_img2img_and_inpaint() {
        let o = options(&[]);
        let mut edit = EditRequest {
            mode: EditMode::Edit,
            base: GenerateRequest {
                prompt: "a fox".into(),
                ..GenerateRequest::default()
            },
            images: vec![png(b"image")],
            mask: None,
            strength: Some(0.6),
        };
        let w = worker_edit(&edit, &o).unwrap();
        assert_eq!(w.strength, Some(0.6));
        assert_eq!(
            STANDARD.decode(w.init_image_png.unwrap()).unwrap(),
            edit.images[0].data
        );
        assert_eq!(w.mask_png, None);

        edit.mode = EditMode::Inpaint;
        let err = worker_edit(&edit, &o).unwrap_err();
        assert!(err.to_string().contains("--mask"), "{err}");
        edit.mask = Some(png(b"mask"));
        let w = worker_edit(&edit, &o).unwrap();
        assert_eq!(
            STANDARD.decode(w.mask_png.unwrap()).unwrap(),
            edit.mask.as_ref().unwrap().data
        );

        edit.images = vec![Image {
            mime: "image/jpeg".into(),
            data: vec![0xFF, 0xD8, 0xFF, 0],
        }];
        assert!(
            worker_edit(&edit, &o)
                .unwrap_err()
                .to_string()
                .contains("PNG")
        );

        edit.images = vec![png(b"image")];
        edit.strength = Some(1.5);
        assert!(
            worker_edit(&edit, &o)
                .unwrap_err()
                .to_string()
                .contains("0..1")
        );

        edit.strength = None;
        edit.mode = EditMode::Outpaint;
        assert!(matches!(
            worker_edit(&edit, &o),
            Err(ProviderError::InvalidRequest(_))
        ));
    }

    #[test]
    fn models_resolve_from_folders_imports_and_the_hub_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let imports = tmp.path().join("imports");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snapshot = hub.join("models--org--tiny/snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(hub.join("models--org--tiny/refs")).unwrap();
        std::fs::write(hub.join("models--org--tiny/refs/main"), commit).unwrap();
        std::fs::create_dir_all(imports.join("mine")).unwrap();

        assert_eq!(resolve_model("org/tiny", &hub, &imports).unwrap(), snapshot);
        assert_eq!(
            resolve_model(&format!("org/tiny@{commit}"), &hub, &imports).unwrap(),
            snapshot
        );
        assert_eq!(
            resolve_model("mine", &hub, &imports).unwrap(),
            imports.join("mine")
        );
        let folder = snapshot.display().to_string();
        assert_eq!(resolve_model(&folder, &hub, &imports).unwrap(), snapshot);

        let err = resolve_model("org/missing", &hub, &imports).unwrap_err();
        assert!(
            err.to_string()
                .contains("imageai models install org/missing"),
            "{err}"
        );
        let err = resolve_model("/no/such/folder", &hub, &imports).unwrap_err();
        assert!(err.to_string().contains("no model folder"), "{err}");
        assert!(resolve_model("", &hub, &imports).is_err());
    }

    #[test]
    fn worker_errors_say_what_to_do() {
        let (err, restart) = map_error(ClientError::WorkerDied {
            status: "signal: 9".into(),
            stderr: String::new(),
        });
        assert!(restart);
        assert!(err.to_string().contains("started again"), "{err}");
        let (err, restart) = map_error(ClientError::Worker {
            kind: ErrorKind::Cancelled,
            message: "cancelled".into(),
        });
        assert_eq!((err, restart), (ProviderError::Cancelled, false));
        let (err, _) = map_error(ClientError::Worker {
            kind: ErrorKind::InvalidRequest,
            message: "unknown scheduler `x`".into(),
        });
        assert_eq!(
            err,
            ProviderError::InvalidRequest("unknown scheduler `x`".into())
        );
        let (err, restart) = map_error(ClientError::Worker {
            kind: ErrorKind::OutOfMemory,
            message: "out of GPU memory at 1024x1024 fp32: try fp16 or a smaller size".into(),
        });
        assert!(restart);
        assert!(
            err.to_string().contains("try fp16") && err.to_string().contains("memory_limit=low"),
            "{err}"
        );
    }

    /// A stand-in worker speaking the protocol: its first process crashes on `generate`; the
    /// second answers one generation, then stops the next one when cancelled.
    #[cfg(unix)]
    fn fake_worker(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let count = dir.join("spawns");
        let script = dir.join("fake-worker");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{count}'
echo '{{"event":"ready","id":0,"version":"0"}}'
read load
echo '{{"event":"loaded","id":1,"family":"sd","device":"fake","default_scheduler":"pndm","default_size":64}}'
read gen
if [ "$n" = 1 ]; then echo 'thread main panicked: boom' >&2; exit 101; fi
echo '{{"event":"progress","id":2,"step":1,"total":1,"preview_png":"iVBORw0KGgo="}}'
echo '{{"event":"image","id":2,"index":0,"width":1,"height":1,"seed":5,"png":"iVBORw0KGgo="}}'
echo '{{"event":"done","id":2}}'
read gen
echo '{{"event":"progress","id":3,"step":1,"total":50}}'
read cancel
echo '{{"event":"error","id":3,"kind":"cancelled","message":"cancelled"}}'
read end
"#,
                count = count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[cfg(unix)]
    #[test]
    fn a_crashed_worker_is_replaced_and_progress_previews_and_cancel_flow() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;

        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        let provider = LocalSdProvider::new(
            fake_worker(tmp.path()),
            ModelsConfig::new(tmp.path().join("hub"), tmp.path().join("imports")),
        );
        let request = GenerateRequest {
            model: model.display().to_string(),
            prompt: "x".into(),
            ..GenerateRequest::default()
        };
        let ctx = CallContext::new(None, manifest_defaults());

        let err = provider.generate(&request, &ctx).unwrap_err();
        assert_eq!(err.class(), "plugin");
        assert!(
            err.to_string().contains("stopped unexpectedly") && err.to_string().contains("boom"),
            "{err}"
        );

        let previews = Arc::new(AtomicUsize::new(0));
        let mut ctx = CallContext::new(None, manifest_defaults());
        let seen = previews.clone();
        ctx.preview = Some(Arc::new(move |image: &Image| {
            assert!(image.data.starts_with(b"\x89PNG"));
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        let generation = provider.generate(&request, &ctx).unwrap();
        assert_eq!(generation.images.len(), 1);
        assert_eq!(generation.images[0].mime, "image/png");
        assert_eq!(generation.seed, Some(5));
        assert_eq!(generation.metadata["device"], "fake");
        assert_eq!(previews.load(Ordering::SeqCst), 1);
        let spawns = || std::fs::read_to_string(tmp.path().join("spawns")).unwrap();
        assert_eq!(spawns().trim(), "2");

        // Same model, same worker: no reload, and cancelling mid-run stops it.
        let mut ctx = CallContext::new(None, manifest_defaults());
        let cancel = ctx.cancel.clone();
        ctx.progress = Some(Arc::new(move |_, message: &str| {
            if message.starts_with("step") {
                cancel.cancel();
            }
        }));
        assert_eq!(
            provider.generate(&request, &ctx).unwrap_err(),
            ProviderError::Cancelled
        );
        assert_eq!(spawns().trim(), "2");
    }

    #[test]
    fn the_worker_is_found_by_env_or_beside_the_exe() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("debug");
        let deps = bin.join("deps");
        std::fs::create_dir_all(&deps).unwrap();
        let exe = bin.join("imageai");
        assert_eq!(find_worker_in(None, false, Some(&exe)), None);
        std::fs::write(bin.join(WORKER_FILE), b"").unwrap();
        assert_eq!(
            find_worker_in(None, false, Some(&exe)),
            Some(bin.join(WORKER_FILE))
        );
        // A test binary in deps/ finds it one level up.
        assert_eq!(
            find_worker_in(None, false, Some(&deps.join("test"))),
            Some(bin.join(WORKER_FILE))
        );
        // Explicit bundled folders: only the environment adds it.
        assert_eq!(find_worker_in(None, true, Some(&exe)), None);
        assert_eq!(
            find_worker_in(Some("/opt/w".into()), true, Some(&exe)),
            Some(PathBuf::from("/opt/w"))
        );
    }

    #[test]
    fn the_manifest_declares_the_engine_settings() {
        let m = manifest();
        assert_eq!(m.id, ID);
        assert!(m.key.is_none() && m.allowed_hosts.is_empty());
        let names: Vec<&str> = m.settings.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "model_cache",
                "device",
                "precision",
                "scheduler",
                "memory_limit"
            ]
        );
        assert_eq!(
            m.setting("precision").and_then(|s| s.default.as_deref()),
            Some("fp16")
        );
    }
}
