//! The Models tab: installed local models (name, size, location, delete), install by id, the
//! curated list and a Hugging Face search with download sizes, one download at a time with
//! progress and cancel, a single-file checkpoint imported into a diffusers folder, and the local
//! engine's settings (device, precision, memory, cache). Everything that touches the disk or the
//! network runs in the background.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use imageai_core::cancel::CancelToken;
use imageai_core::config::Config;
use imageai_core::models::{
    self, CURATED, DownloadEvent, InstallRequest, InstalledModel, ModelManager, ModelSource,
    ModelsConfig, Precision, ProgressSink, SETTINGS_SECTION, SearchResult, human_bytes,
};

use crate::app::App;
use crate::{files, widgets};

/// How many search results to ask the Hub for.
const SEARCH_LIMIT: usize = 30;

/// The download in progress.
pub struct Download {
    pub repo: String,
    /// Bytes on disk so far and the install's total, once planned.
    pub done: u64,
    pub total: u64,
    pub bytes_per_sec: f64,
    /// The file being fetched.
    pub file: String,
    pub cancel: CancelToken,
    pub cancelling: bool,
    events: Receiver<DownloadEvent>,
}

impl Download {
    /// Done as a fraction of the total (0 until the plan is known).
    pub fn fraction(&self) -> f32 {
        fraction(self.done, self.total)
    }
}

/// `done` of `total` as a fraction for a progress bar (0 while the total is unknown).
fn fraction(done: u64, total: u64) -> f32 {
    if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0) as f32
    }
}

/// A progress bar with `text` and a cancel button beside it (off once cancelling); whether the
/// button was clicked.
fn progress_with_cancel(
    ui: &mut egui::Ui,
    fraction: f32,
    text: String,
    cancelling: bool,
    cancel_label: &str,
) -> bool {
    ui.horizontal(|ui| {
        ui.add(
            egui::ProgressBar::new(fraction)
                .text(text)
                .desired_width(420.0),
        );
        ui.add_enabled(!cancelling, egui::Button::new(cancel_label))
            .clicked()
    })
    .inner
}

/// The checkpoint import in progress.
pub struct Import {
    pub file: PathBuf,
    /// Bytes converted so far, of the total.
    pub done: u64,
    pub total: u64,
    pub cancel: CancelToken,
    pub cancelling: bool,
    progress: Receiver<(u64, u64)>,
}

/// What the settings form holds (saved to `providers.local_sd` as each field is left).
#[derive(Default)]
pub struct EngineSettings {
    pub device: String,
    pub precision: String,
    pub memory_limit: String,
    pub cache_dir: String,
    /// An adapter typed in (the engine matches it against the GPU names, or takes an index).
    pub other_device: String,
    loaded: bool,
}

#[derive(Default)]
pub struct ModelsTab {
    pub models: Option<Result<Vec<InstalledModel>, String>>,
    pub loading: bool,
    pub deleting: Option<String>,
    pub confirm_delete: Option<String>,
    pub cache_dir: Option<String>,
    pub query: String,
    pub searching: bool,
    pub results: Option<Result<Vec<SearchResult>, String>>,
    pub install_id: String,
    pub download: Option<Download>,
    /// The checkpoint file and the name to import it as (empty: the file's).
    pub import_file: String,
    pub import_name: String,
    pub import: Option<Import>,
    pub settings: EngineSettings,
    /// The Hub to use instead of `HF_ENDPOINT`'s (a mirror; the tests' local Hub).
    pub endpoint: Option<String>,
    /// The GPU adapters found, as (name, kind), once listed.
    pub adapters: Option<Vec<(String, String)>>,
}

impl ModelsTab {
    pub fn reload(app: &mut App) {
        app.models.loading = true;
        let config = models_config(app);
        app.models.cache_dir = Some(config.cache_dir.display().to_string());
        app.background.spawn("models", move || {
            let listed = ModelManager::new(config)
                .and_then(|m| m.list())
                .map_err(|e| e.to_string());
            Box::new(move |app: &mut App| {
                app.models.loading = false;
                app.models.models = Some(listed);
            })
        });
    }

    /// A download is running.
    pub fn downloading(&self) -> bool {
        self.download.is_some()
    }

    /// Stop the download (what arrived is kept; installing again resumes).
    pub fn cancel_download(&mut self) {
        if let Some(download) = &mut self.download {
            download.cancel.cancel();
            download.cancelling = true;
        }
    }

    /// A checkpoint import is running.
    pub fn importing(&self) -> bool {
        self.import.is_some()
    }

    /// Stop the import (nothing of it is kept).
    pub fn cancel_import(&mut self) {
        if let Some(import) = &mut self.import {
            import.cancel.cancel();
            import.cancelling = true;
        }
    }
}

/// The models manager's settings as config.json and the environment give them.
fn models_config(app: &App) -> ModelsConfig {
    let mut config = ModelsConfig::from_settings(&app.core.paths, &app.core.config);
    if let Some(endpoint) = &app.models.endpoint {
        config.endpoint.clone_from(endpoint);
    }
    config
}

/// Opens the models manager with the stored Hugging Face token, on the background thread that
/// calls it (the token may sit in the OS keyring, which can take a moment to answer).
fn manager_with_token(
    app: &App,
) -> impl FnOnce() -> Result<ModelManager, models::ModelError> + Send + 'static {
    let config = models_config(app);
    let settings = app.core.config.clone();
    let keys = app.core.keys.clone();
    move || {
        let token = models::resolve_token(&settings, &keys).unwrap_or_else(|err| {
            tracing::warn!("the Hugging Face token could not be read: {err}");
            None
        });
        ModelManager::new(config.with_token(token))
    }
}

/// The precision downloads use: the setting, fp16 by default.
fn precision(app: &App) -> Precision {
    app.core
        .config
        .provider_setting(SETTINGS_SECTION, "precision")
        .and_then(|p| p.parse().ok())
        .unwrap_or_default()
}

/// Apply the download's and the import's progress (each frame).
pub(crate) fn poll(app: &mut App) {
    if let Some(import) = &mut app.models.import {
        while let Ok((done, total)) = import.progress.try_recv() {
            import.done = done;
            import.total = total;
        }
    }
    let Some(download) = &mut app.models.download else {
        return;
    };
    while let Ok(event) = download.events.try_recv() {
        match event {
            DownloadEvent::Planned { totals, .. } | DownloadEvent::Finished { totals } => {
                download.done = totals.done;
                download.total = totals.total;
            }
            DownloadEvent::Bytes { path, totals, .. } => {
                download.done = totals.done;
                download.total = totals.total;
                download.bytes_per_sec = totals.bytes_per_sec;
                download.file = path;
            }
            DownloadEvent::FileStarted { path, .. } => download.file = path,
            DownloadEvent::FileDone { .. } => {}
        }
    }
}

/// Start installing `repo` in the background (one download at a time).
pub(crate) fn install(app: &mut App, repo: &str) {
    let repo = repo.trim().to_owned();
    if repo.is_empty() {
        app.error("Type a model id first, such as stable-diffusion-v1-5/stable-diffusion-v1-5.");
        return;
    }
    if let Some(current) = &app.models.download {
        let message = format!(
            "{} is still downloading; wait for it or cancel it first.",
            current.repo
        );
        app.warn(message);
        return;
    }
    let open = manager_with_token(app);
    let mut request = InstallRequest::new(repo.clone());
    request.precision = precision(app);
    let (sink, events) = ProgressSink::channel();
    let cancel = CancelToken::new();
    app.models.download = Some(Download {
        repo: repo.clone(),
        done: 0,
        total: 0,
        bytes_per_sec: 0.0,
        file: String::new(),
        cancel: cancel.clone(),
        cancelling: false,
        events,
    });
    app.background.spawn("install-model", move || {
        let installed = open().and_then(|m| m.install(&request, &sink, &cancel));
        Box::new(move |app: &mut App| {
            poll(app);
            app.models.download = None;
            match installed {
                Ok(report) => app.info(format!(
                    "Installed {} ({}, {} downloaded).",
                    report.repo,
                    human_bytes(report.total_bytes),
                    human_bytes(report.downloaded_bytes)
                )),
                Err(models::ModelError::Cancelled) => app.info(format!(
                    "Cancelled the download of {repo}. What arrived is kept: install it again to resume."
                )),
                Err(err) => app.error(format!("{repo} was not installed: {err}")),
            }
            ModelsTab::reload(app);
        })
    });
}

/// Import the checkpoint at `file` (as `name`, or the file's name) in the background.
pub(crate) fn import(app: &mut App, file: &str, name: &str) {
    let file = file.trim();
    if file.is_empty() {
        app.error("Choose a checkpoint first: a .safetensors file in the original Stable Diffusion layout.");
        return;
    }
    if app.models.importing() {
        app.warn("A checkpoint is still being imported; wait for it or cancel it first.");
        return;
    }
    let file = PathBuf::from(file);
    let name = Some(name.trim().to_owned()).filter(|n| !n.is_empty());
    // The tokenizer may come from the Hub, which may want the token.
    let open = manager_with_token(app);
    let (progress_tx, progress) = std::sync::mpsc::channel();
    let cancel = CancelToken::new();
    app.models.import = Some(Import {
        file: file.clone(),
        done: 0,
        total: 0,
        cancel: cancel.clone(),
        cancelling: false,
        progress,
    });
    app.background.spawn("import-checkpoint", move || {
        let mut report_progress = |done, total| {
            let _ = progress_tx.send((done, total));
        };
        let imported = open().and_then(|m| {
            m.import_checkpoint(&file, name.as_deref(), &mut report_progress, &cancel)
        });
        Box::new(move |app: &mut App| {
            poll(app);
            app.models.import = None;
            match imported {
                Ok(report) if report.tokenizer_from.is_none() => app.warn(format!(
                    "Imported {} into {}, but no SD 1.x tokenizer was found in the cache and none \
                     could be fetched: install stable-diffusion-v1-5/stable-diffusion-v1-5, then \
                     import it again.",
                    report.name,
                    report.path.display()
                )),
                Ok(report) if !report.inspection.loadable => app.warn(format!(
                    "Imported {} into {}, but the local engine cannot load it: {}",
                    report.name,
                    report.path.display(),
                    report.inspection.problems.join("; ")
                )),
                Ok(report) => {
                    app.models.import_file.clear();
                    app.models.import_name.clear();
                    app.info(format!(
                        "Imported {} ({}, {}, {}) into {}.",
                        report.name,
                        report.task,
                        report.dtype,
                        human_bytes(report.bytes),
                        report.path.display()
                    ));
                }
                Err(models::ModelError::Cancelled) => {
                    app.info(format!("Cancelled the import of {}.", file.display()));
                }
                Err(err) => app.error(format!("{} was not imported: {err}", file.display())),
            }
            ModelsTab::reload(app);
        })
    });
}

fn search(app: &mut App) {
    app.models.searching = true;
    let config = models_config(app);
    let query = app.models.query.trim().to_owned();
    let precision = precision(app);
    app.background.spawn("search-models", move || {
        let found = ModelManager::new(config)
            .and_then(|m| {
                m.search(
                    Some(query.as_str()).filter(|q| !q.is_empty()),
                    SEARCH_LIMIT,
                    precision,
                )
            })
            .map_err(|e| e.to_string());
        Box::new(move |app: &mut App| {
            app.models.searching = false;
            if let Err(message) = &found {
                app.error(format!("The search failed: {message}"));
            }
            app.models.results = Some(found);
        })
    });
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    if app.models.models.is_none() && !app.models.loading {
        ModelsTab::reload(app);
    }
    if !app.models.settings.loaded {
        load_settings(app);
    }
    egui::Panel::right("engine-settings")
        .resizable(true)
        .default_size(360.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("engine-settings-scroll")
                .show(ui, |ui| settings_ui(app, ui));
        });
    egui::ScrollArea::vertical()
        .id_salt("models")
        .show(ui, |ui| {
            installed_ui(app, ui);
            ui.separator();
            download_ui(app, ui);
            ui.separator();
            import_ui(app, ui);
            ui.separator();
            browse_ui(app, ui);
        });
}

fn installed_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("Installed models");
        if ui.button("Refresh models").clicked() {
            ModelsTab::reload(app);
        }
        if app.models.loading || app.models.deleting.is_some() {
            ui.spinner();
        }
    });
    if let Some(dir) = &app.models.cache_dir {
        ui.weak(format!("Model cache: {dir}"));
    }
    let mut delete = None;
    match &app.models.models {
        None => {
            ui.label("Looking for installed models…");
        }
        Some(Err(message)) => {
            ui.colored_label(ui.visuals().error_fg_color, message);
        }
        Some(Ok(models)) if models.is_empty() => {
            ui.label("No models installed. Install one from the list below.");
        }
        Some(Ok(models)) => {
            egui::Grid::new("models-grid")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for title in ["Model", "Size", "", "Location"] {
                        ui.strong(title);
                    }
                    ui.end_row();
                    for model in models {
                        ui.label(&model.id);
                        let finished =
                            model.source == ModelSource::Imported || !model.refs.is_empty();
                        if finished && model.inspection.loadable {
                            ui.label(human_bytes(model.size_on_disk));
                        } else {
                            let size = model.size_on_disk.max(model.partial_bytes);
                            let why = if finished {
                                model.inspection.problems.join("; ")
                            } else {
                                "The download did not finish: install it again to resume.".into()
                            };
                            ui.label(format!("{} (incomplete)", human_bytes(size)))
                                .on_hover_text(why);
                        }
                        if app.models.confirm_delete.as_deref() == Some(model.id.as_str()) {
                            ui.horizontal(|ui| {
                                if ui.button(format!("Really delete {}", model.id)).clicked() {
                                    delete = Some(model.id.clone());
                                }
                                if ui.button("Keep it").clicked() {
                                    app.models.confirm_delete = None;
                                }
                            });
                        } else if ui.button(format!("Delete {}", model.id)).clicked() {
                            app.models.confirm_delete = Some(model.id.clone());
                        }
                        // Last, so a long path moves nothing else.
                        ui.label(model.path.display().to_string());
                        ui.end_row();
                    }
                });
        }
    }
    if let Some(id) = delete {
        delete_model(app, id);
    }
}

fn delete_model(app: &mut App, id: String) {
    app.models.confirm_delete = None;
    app.models.deleting = Some(id.clone());
    let config = models_config(app);
    app.background.spawn("delete-model", move || {
        let removed = ModelManager::new(config)
            .and_then(|m| m.remove(&id, None))
            .map_err(|e| e.to_string());
        Box::new(move |app: &mut App| {
            app.models.deleting = None;
            match removed {
                Ok(report) => app.info(format!(
                    "Deleted {} and freed {}.",
                    report.id,
                    human_bytes(report.freed_bytes)
                )),
                Err(message) => app.error(format!("{id} was not deleted: {message}")),
            }
            ModelsTab::reload(app);
        })
    });
}

fn download_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Install");
    let mut start = None;
    ui.horizontal(|ui| {
        let enter = widgets::hinted_field(
            ui,
            "Model id",
            &mut app.models.install_id,
            "org/name on Hugging Face",
            340.0,
        );
        let idle = app.models.download.is_none();
        if (ui
            .add_enabled(idle, egui::Button::new("Install model"))
            .clicked()
            || enter)
            && idle
        {
            start = Some(app.models.install_id.clone());
        }
        ui.weak(format!("in {}", precision(app)));
    });
    if let Some(download) = &app.models.download {
        let text = if download.total == 0 {
            format!("{}: planning…", download.repo)
        } else {
            let speed = if download.bytes_per_sec > 0.0 {
                format!(", {}/s", human_bytes(download.bytes_per_sec as u64))
            } else {
                String::new()
            };
            format!(
                "{}: {} of {}{speed}",
                download.repo,
                human_bytes(download.done),
                human_bytes(download.total)
            )
        };
        let cancel = progress_with_cancel(
            ui,
            download.fraction(),
            text,
            download.cancelling,
            "Cancel download",
        );
        if !download.file.is_empty() {
            ui.weak(&download.file);
        }
        if cancel {
            app.models.cancel_download();
        }
    }
    if let Some(repo) = start {
        install(app, &repo);
    }
}

fn import_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Import a checkpoint");
    ui.weak(
        "A single .safetensors file in the original Stable Diffusion 1.x layout (as Civitai \
         ships them), converted into a diffusers folder the local engine loads.",
    );
    let idle = app.models.import.is_none();
    let mut start = false;
    let mut choose = false;
    ui.horizontal(|ui| {
        start |= widgets::hinted_field(
            ui,
            "Checkpoint file",
            &mut app.models.import_file,
            "path to a .safetensors file",
            340.0,
        ) && idle;
        choose = ui
            .add_enabled(idle, egui::Button::new("Choose checkpoint…"))
            .clicked();
    });
    ui.horizontal(|ui| {
        let enter = widgets::hinted_field(
            ui,
            "Import as",
            &mut app.models.import_name,
            "the file's name",
            240.0,
        );
        start |= (ui
            .add_enabled(idle, egui::Button::new("Import checkpoint"))
            .clicked()
            || enter)
            && idle;
    });
    if let Some(import) = &app.models.import {
        let name = import
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = if import.total == 0 {
            format!("{name}: reading…")
        } else {
            format!(
                "{name}: {} of {}",
                human_bytes(import.done),
                human_bytes(import.total)
            )
        };
        if progress_with_cancel(
            ui,
            fraction(import.done, import.total),
            text,
            import.cancelling,
            "Cancel import",
        ) {
            app.models.cancel_import();
        }
    }
    if choose {
        files::pick_checkpoint(app, |app, path| {
            app.models.import_file = path.display().to_string();
        });
    }
    if start {
        let (file, name) = (
            app.models.import_file.clone(),
            app.models.import_name.clone(),
        );
        import(app, &file, &name);
    }
}

fn browse_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Browse Hugging Face");
    let mut run = false;
    ui.horizontal(|ui| {
        let label = ui.label("Search models");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut app.models.query)
                    .hint_text("e.g. stable diffusion")
                    .desired_width(300.0),
            )
            .labelled_by(label.id);
        run = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        run |= ui
            .add_enabled(!app.models.searching, egui::Button::new("Search"))
            .clicked();
        if app.models.searching {
            ui.spinner();
        }
    });
    if run {
        search(app);
    }
    let precision = precision(app);
    let idle = app.models.download.is_none();
    let mut start = None;
    match &app.models.results {
        Some(Ok(results)) if results.is_empty() => {
            ui.label("Nothing found. Try other words.");
        }
        Some(Ok(results)) => {
            egui::Grid::new("search-results")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for title in ["Model", "Download", "Downloads", ""] {
                        ui.strong(title);
                    }
                    ui.end_row();
                    for result in results {
                        ui.label(&result.id);
                        ui.label(result.download_size.map_or_else(
                            || "not installable".to_owned(),
                            |s| format!("{} ({})", human_bytes(s), result.precision),
                        ));
                        ui.label(result.downloads.map_or_else(String::new, |d| d.to_string()));
                        if ui
                            .add_enabled(
                                idle && result.download_size.is_some(),
                                egui::Button::new(format!("Install {}", result.id)),
                            )
                            .clicked()
                        {
                            start = Some(result.id.clone());
                        }
                        ui.end_row();
                    }
                });
        }
        Some(Err(message)) => {
            ui.colored_label(ui.visuals().error_fg_color, message);
        }
        None => {
            ui.weak("Recommended models (sizes are approximate; a search shows exact ones):");
            egui::Grid::new("curated")
                .num_columns(3)
                .striped(true)
                .show(ui, |ui| {
                    for model in CURATED {
                        ui.label(model.name).on_hover_text(model.note);
                        ui.label(format!(
                            "{} ({precision})",
                            human_bytes(model.size(precision))
                        ));
                        if ui
                            .add_enabled(idle, egui::Button::new(format!("Install {}", model.id)))
                            .clicked()
                        {
                            start = Some(model.id.to_owned());
                        }
                        ui.end_row();
                    }
                });
        }
    }
    if let Some(repo) = start {
        install(app, &repo);
    }
}

/// The GPU adapters wgpu finds, as (name, kind): the ones the local engine chooses among
/// (it matches a device setting against their names).
fn list_adapters() -> Vec<(String, String)> {
    use eframe::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = crate::files::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    let mut found: Vec<(String, String)> = adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete GPU",
                wgpu::DeviceType::IntegratedGpu => "integrated GPU",
                wgpu::DeviceType::VirtualGpu => "virtual GPU",
                wgpu::DeviceType::Cpu => "software",
                wgpu::DeviceType::Other => "other",
            };
            (info.name, kind.to_owned())
        })
        .collect();
    // One adapter can show up once per backend (Vulkan and GL): list each name once.
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

fn load_settings(app: &mut App) {
    app.background.spawn("list-adapters", || {
        let adapters = list_adapters();
        Box::new(move |app: &mut App| app.models.adapters = Some(adapters))
    });
    let get = |key: &str| {
        app.core
            .config
            .provider_setting(SETTINGS_SECTION, key)
            .unwrap_or_default()
    };
    app.models.settings = EngineSettings {
        device: Some(get("device"))
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "auto".into()),
        precision: precision(app).as_str().to_owned(),
        memory_limit: get("memory_limit"),
        cache_dir: get("model_cache"),
        other_device: String::new(),
        loaded: true,
    };
}

/// Save one `providers.local_sd` setting (removed when empty).
fn save_setting(app: &mut App, key: &'static str, value: String) {
    let value = value.trim().to_owned();
    let current = app
        .core
        .config
        .provider_setting(SETTINGS_SECTION, key)
        .unwrap_or_default();
    if current == value {
        return;
    }
    app.change_config(Arc::new(move |c: &mut Config| {
        if value.is_empty() {
            c.remove_provider_setting(SETTINGS_SECTION, key);
        } else {
            c.set_provider_setting(SETTINGS_SECTION, key, &value);
        }
    }));
}

fn settings_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Local engine");
    ui.weak("Used by the local Stable Diffusion provider.");
    let form = &mut app.models.settings;
    let mut devices = vec![
        ("auto".to_owned(), "auto (best GPU, else CPU)".to_owned()),
        ("cpu".to_owned(), "cpu".to_owned()),
    ];
    for (name, kind) in app.models.adapters.iter().flatten() {
        devices.push((name.clone(), format!("{name} ({kind})")));
    }
    if !devices.iter().any(|(d, _)| d == &form.device) {
        devices.push((form.device.clone(), form.device.clone()));
    }
    let mut changed = Vec::new();
    if widgets::choice(ui, "Device", &mut form.device, &devices) {
        changed.push(("device", form.device.clone()));
    }
    let typed = widgets::stacked_field(
        ui,
        "Other device (adapter name or index)",
        &mut form.other_device,
        "e.g. RTX 4090, or 1",
    );
    if typed.lost_focus() && !form.other_device.trim().is_empty() {
        form.device = form.other_device.trim().to_owned();
        form.other_device.clear();
        changed.push(("device", form.device.clone()));
    }
    let precisions = [
        ("fp16".to_owned(), "fp16 (half the download)".to_owned()),
        ("fp32".to_owned(), "fp32".to_owned()),
    ];
    if widgets::choice(ui, "Precision", &mut form.precision, &precisions) {
        changed.push(("precision", form.precision.clone()));
    }
    let memory = ui
        .horizontal(|ui| {
            let label = ui.label("Memory limit (GB)");
            ui.add(
                egui::TextEdit::singleline(&mut form.memory_limit)
                    .hint_text("no limit")
                    .desired_width(80.0),
            )
            .labelled_by(label.id)
        })
        .inner;
    let bad_memory = !form.memory_limit.trim().is_empty()
        && form
            .memory_limit
            .trim()
            .parse::<f64>()
            .map_or(true, |v| v.is_nan() || v <= 0.0);
    if bad_memory {
        ui.colored_label(
            ui.visuals().error_fg_color,
            "Give the limit in gigabytes, such as 6 or 7.5, or leave it empty.",
        );
    } else if memory.lost_focus() {
        changed.push(("memory_limit", form.memory_limit.clone()));
    }
    let cache = widgets::stacked_field(
        ui,
        "Model cache folder",
        &mut form.cache_dir,
        "HF_HOME's, else ~/.cache/huggingface",
    );
    if cache.lost_focus() {
        changed.push(("model_cache", form.cache_dir.clone()));
    }
    ui.weak(
        "Shared with Python's Hugging Face tools. Empty: HF_HOME's, else ~/.cache/huggingface.",
    );
    let choose = ui.button("Choose cache folder…").clicked();
    let reload = changed.iter().any(|(k, _)| *k == "model_cache");
    for (key, value) in changed {
        save_setting(app, key, value);
    }
    if reload {
        ModelsTab::reload(app);
    }
    if choose {
        crate::files::pick_folder(app, |app, folder| {
            let text = folder.display().to_string();
            app.models.settings.cache_dir.clone_from(&text);
            save_setting(app, "model_cache", text);
            ModelsTab::reload(app);
        });
    }
}
