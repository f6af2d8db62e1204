//! The app: the opened core, the state of each tab, background work and the frame loop that
//! eframe (or a test harness) calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use egui_notify::Toasts;
use imageai_core::app::{Core, CoreError, KeyOverride};
use imageai_core::config::{Config, OrderedSaves};
use imageai_core::local_sd;
use imageai_core::plugin::Runtime;
use imageai_core::{CallContext, Provider, ProviderInfo, Secret};
use serde_json::Value;

use crate::background::Background;
use crate::thumbs::Thumbs;
use crate::{generate, help, history, models, plugins, settings, templates};

/// The tabs, in the order the tab bar shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Generate,
    History,
    Templates,
    Models,
    Plugins,
    Settings,
    Help,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Generate,
        Tab::History,
        Tab::Templates,
        Tab::Models,
        Tab::Plugins,
        Tab::Settings,
        Tab::Help,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Generate => "Generate",
            Tab::History => "History",
            Tab::Templates => "Templates",
            Tab::Models => "Models",
            Tab::Plugins => "Plugins",
            Tab::Settings => "Settings",
            Tab::Help => "Help",
        }
    }

    fn from_title(title: &str) -> Option<Tab> {
        Tab::ALL.into_iter().find(|t| t.title() == title)
    }
}

/// A provider as the GUI knows it: loading, loaded with its models, or failed.
#[derive(Clone)]
pub enum ProviderState {
    Loading,
    Ready {
        provider: Arc<dyn Provider>,
        info: ProviderInfo,
    },
    Failed(String),
}

/// The theme preference, saved as `gui.theme` in config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    System,
    Light,
    Dark,
}

impl Theme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    fn parse(text: &str) -> Theme {
        match text {
            "light" => Theme::Light,
            "dark" => Theme::Dark,
            _ => Theme::System,
        }
    }
}

/// A change to config.json: applied to the app's copy at once and saved in the background
/// (re-reading the file first, so another process's edits survive).
pub type ConfigChange = Arc<dyn Fn(&mut Config) + Send + Sync>;

pub struct App {
    pub(crate) core: Core,
    pub(crate) bundled: Vec<PathBuf>,
    /// The local Stable Diffusion worker the core was opened with (opened again with it).
    sd_worker: Option<PathBuf>,
    pub(crate) tab: Tab,
    pub(crate) theme: Theme,
    pub(crate) background: Background,
    config_saves: Arc<OrderedSaves>,
    pub(crate) toasts: Toasts,
    /// Messages shown so far, newest last (tests and the status line read them).
    pub(crate) messages: Vec<String>,
    pub(crate) providers: BTreeMap<String, ProviderState>,
    pub(crate) thumbs: Thumbs,
    pub(crate) generate: generate::GenerateTab,
    pub(crate) history: history::HistoryTab,
    pub(crate) templates: templates::TemplatesTab,
    pub(crate) models: models::ModelsTab,
    pub(crate) plugins: plugins::PluginsTab,
    pub(crate) settings: settings::SettingsTab,
    confirm_close: bool,
    allow_close: bool,
    window_size: Option<egui::Vec2>,
    screenshot: Option<Screenshot>,
    frames: u64,
    theme_applied: Option<Theme>,
}

struct Screenshot {
    path: PathBuf,
    requested: bool,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl App {
    /// The app over an opened core. `bundled` are the folders the core searched for bundled
    /// plugins (to search again after installing one).
    pub fn new(core: Core, bundled: Vec<PathBuf>, ctx: &egui::Context) -> Self {
        let gui = |key: &str| {
            core.config
                .get("gui")
                .and_then(|g| g.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let theme = Theme::parse(gui("theme").as_deref().unwrap_or("system"));
        let tab = gui("tab")
            .as_deref()
            .and_then(Tab::from_title)
            .unwrap_or(Tab::Generate);
        let mut generate = generate::GenerateTab::new(gui("provider"), gui("model"));
        generate.size = gui("size");
        generate.aspect_ratio = gui("aspect_ratio");
        generate.quality = gui("quality");
        generate.style = gui("style");
        let thumbs = Thumbs::new(core.paths.thumbnails_dir());
        let warnings = core.warnings.clone();
        let sd_worker = sd_worker_of(&core);
        let mut app = Self {
            generate,
            history: history::HistoryTab::default(),
            templates: templates::TemplatesTab::new(&core.paths),
            models: models::ModelsTab::default(),
            plugins: plugins::PluginsTab::default(),
            settings: settings::SettingsTab::new(&core),
            core,
            bundled,
            sd_worker,
            tab,
            theme,
            background: Background::default(),
            config_saves: Arc::default(),
            toasts: Toasts::default(),
            messages: Vec::new(),
            providers: BTreeMap::new(),
            thumbs,
            confirm_close: false,
            allow_close: false,
            window_size: None,
            screenshot: None,
            frames: 0,
            theme_applied: None,
        };
        app.background.set_context(ctx);
        app.thumbs.set_context(ctx);
        for warning in warnings {
            app.warn(warning);
        }
        if let Some(warning) = app.templates.take_warning() {
            app.warn(warning);
        }
        app.history.reload(&app.core, &app.background);
        app.settings.refresh_key_sources(&app.core, &app.background);
        app
    }

    /// Save a PNG of the window after its first frames to `path`, then close (the smoke test).
    pub fn screenshot_after_first_frames(&mut self, path: PathBuf) {
        self.screenshot = Some(Screenshot {
            path,
            requested: false,
            done: Arc::default(),
        });
    }

    /// The local Stable Diffusion worker to open the core with again after installing or
    /// removing a plugin: the one `core` was opened with (`Core::open_with`). [`App::new`]
    /// assumes the standard file name in the provider's folder.
    pub fn set_sd_worker(&mut self, worker: Option<PathBuf>) {
        self.sd_worker = worker;
    }

    pub fn tab(&self) -> Tab {
        self.tab
    }

    pub fn set_tab(&mut self, tab: Tab) {
        if self.tab != tab {
            self.tab = tab;
            self.change_config(Arc::new(move |c: &mut Config| {
                set_gui(c, "tab", tab.title());
            }));
        }
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Messages shown to the user so far (toasts and inline errors), oldest first.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// Background tasks (loads, saves, key tests…) still running; jobs are counted apart.
    pub fn busy(&self) -> bool {
        self.background.running() > 0 || self.thumbs.pending() > 0
    }

    /// Jobs queued or running.
    pub fn active_jobs(&self) -> usize {
        self.generate.active_jobs()
    }

    /// The Generate tab's state, for tests and the benchmark.
    pub fn generate_tab(&self) -> &generate::GenerateTab {
        &self.generate
    }

    /// The History tab's state, for tests and the benchmark.
    pub fn history_tab(&self) -> &history::HistoryTab {
        &self.history
    }

    /// Show these entries on the History tab (the benchmark feeds synthetic ones).
    pub fn set_history_entries(&mut self, entries: Vec<imageai_core::history::Entry>) {
        self.history.set_entries(entries);
    }

    pub fn thumbs(&self) -> &Thumbs {
        &self.thumbs
    }

    /// The Settings tab's line on where `provider`'s key comes from.
    pub fn key_status(&self, provider: &str) -> Option<&str> {
        self.settings.forms.get(provider)?.key_source.as_deref()
    }

    /// The result of the last "Test key" for `provider`.
    pub fn key_test(&self, provider: &str) -> Option<&Result<String, String>> {
        self.settings.forms.get(provider)?.test_result.as_ref()
    }

    /// The prompt templates as the Templates tab has them.
    pub fn template_store(&self) -> &imageai_core::templates::TemplateStore {
        &self.templates.store
    }

    /// The Models tab's list (`None` until it was looked at).
    pub fn installed_models(
        &self,
    ) -> Option<&Result<Vec<imageai_core::models::InstalledModel>, String>> {
        self.models.models.as_ref()
    }

    /// The Models tab's state (search results, the download, the engine settings).
    pub fn models_tab(&self) -> &models::ModelsTab {
        &self.models
    }

    /// Use this Hugging Face endpoint instead of `HF_ENDPOINT`'s (a mirror, or a test's Hub).
    pub fn set_hub_endpoint(&mut self, url: impl Into<String>) {
        self.models.endpoint = Some(url.into());
    }

    pub(crate) fn error(&mut self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!("{message}");
        self.toast(message, "!", egui::Color32::from_rgb(220, 60, 60), 8);
    }

    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.toast(
            message.into(),
            "!",
            egui::Color32::from_rgb(230, 160, 30),
            8,
        );
    }

    pub(crate) fn info(&mut self, message: impl Into<String>) {
        self.toast(message.into(), "i", egui::Color32::from_rgb(60, 160, 90), 4);
    }

    /// A toast with an icon from the default fonts (egui-notify's own icons are emoji that the
    /// bundled fonts cannot draw), closed by clicking it.
    fn toast(&mut self, message: String, icon: &str, color: egui::Color32, secs: u64) {
        self.toasts
            .custom(message.clone(), icon.to_owned(), color)
            .closable(false)
            .duration(Some(std::time::Duration::from_secs(secs)));
        self.messages.push(message);
    }

    /// Apply a config change now and save it in the background.
    pub(crate) fn change_config(&mut self, change: ConfigChange) {
        change(&mut self.core.config);
        let saves = self.config_saves.clone();
        saves.push(Box::new(move |c: &mut Config| change(c)));
        let paths = self.core.paths.clone();
        self.background
            .spawn("save-config", move || match saves.save(&paths) {
                Ok(()) => Box::new(|_: &mut App| {}),
                Err(err) => {
                    let message = format!("Settings were not saved: {err}");
                    Box::new(move |app: &mut App| app.error(message))
                }
            });
    }

    /// The provider's state, starting to load it (in the background) on first ask.
    pub(crate) fn provider_state(&mut self, id: &str) -> ProviderState {
        if let Some(state) = self.providers.get(id) {
            return state.clone();
        }
        self.providers.insert(id.to_owned(), ProviderState::Loading);
        match self.loader(id) {
            Ok(loader) => {
                let id = id.to_owned();
                self.background.spawn("load-plugin", move || {
                    // A native provider lists its installed models here: that reads the disk.
                    let state = match loader.load(&id) {
                        Ok(provider) => match provider.info() {
                            Ok(info) => ProviderState::Ready { provider, info },
                            Err(err) => ProviderState::Failed(format!(
                                "{id} did not describe its models: {err}"
                            )),
                        },
                        Err(message) => ProviderState::Failed(format!(
                            "{message}. Reinstall it on the Plugins tab."
                        )),
                    };
                    Box::new(move |app: &mut App| {
                        if let ProviderState::Failed(message) = &state {
                            app.error(message.clone());
                        }
                        app.providers.insert(id, state);
                    })
                });
            }
            Err(message) => {
                self.providers
                    .insert(id.to_owned(), ProviderState::Failed(message));
            }
        }
        ProviderState::Loading
    }

    /// How to get provider `id` on a background thread.
    pub(crate) fn loader(&self, id: &str) -> Result<Loader, String> {
        let entry = self.core.entry(id).map_err(|e| e.to_string())?;
        if entry.is_native() {
            // Built into the host and created with the core: nothing to compile.
            return self
                .core
                .provider(id)
                .map(Loader::Native)
                .map_err(|e| e.to_string());
        }
        Ok(Loader::Plugin {
            runtime: self.core.runtime().clone(),
            dir: entry.dir.clone(),
        })
    }

    /// Drop loaded providers and the core's discovery: after installing or removing a plugin.
    pub(crate) fn reopen_core(&mut self) {
        let paths = self.core.paths.clone();
        let bundled = self.bundled.clone();
        let sd_worker = self.sd_worker.clone();
        self.background.spawn("reopen-core", move || {
            match Core::open_with(paths, &bundled, sd_worker) {
                Ok(core) => Box::new(move |app: &mut App| {
                    app.core = core;
                    app.providers.clear();
                    app.settings = settings::SettingsTab::new(&app.core);
                    app.settings.refresh_key_sources(&app.core, &app.background);
                }),
                Err(err) => {
                    let message = format!("could not reload the plugins: {err}");
                    Box::new(move |app: &mut App| app.error(message))
                }
            }
        });
    }

    /// Everything a background thread needs to build a provider's call context (its key is
    /// resolved there: the OS keyring may take seconds to answer).
    pub(crate) fn context_plan(&self, id: &str) -> Result<ContextPlan, String> {
        let entry = self.core.entry(id).map_err(|e| e.to_string())?;
        if !self.core.config.is_plugin_enabled(&entry.manifest.id) {
            return Err(format!(
                "the {} plugin is disabled; enable it on the Plugins tab",
                entry.manifest.name
            ));
        }
        self.core
            .context_plan(id)
            .map(ContextPlan)
            .map_err(|e| e.to_string())
    }

    /// One frame: the tab bar, the current tab, toasts and dialogs.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.frames += 1;
        if self.frames == 1 {
            // The context that runs the frames (a test harness makes its own).
            self.background.set_context(&ctx);
            self.thumbs.set_context(&ctx);
        }
        for apply in self.background.ready() {
            apply(self);
        }
        self.thumbs.receive(&ctx);
        generate::handle_drops(self, &ctx);
        generate::poll_jobs(self);
        models::poll(self);
        if self.theme_applied != Some(self.theme) {
            ctx.set_theme(match self.theme {
                Theme::System => egui::ThemePreference::System,
                Theme::Light => egui::ThemePreference::Light,
                Theme::Dark => egui::ThemePreference::Dark,
            });
            self.theme_applied = Some(self.theme);
        }
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Enter)) {
            self.set_tab(Tab::Generate);
            generate::submit(self);
        }

        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                for tab in Tab::ALL {
                    let selected = self.tab == tab;
                    let response = ui.selectable_label(selected, tab.title());
                    // Named "<title> tab" so it differs from buttons such as Generate.
                    response.widget_info(|| {
                        egui::WidgetInfo::selected(
                            egui::Role::Tab,
                            true,
                            selected,
                            format!("{} tab", tab.title()),
                        )
                    });
                    if response.clicked() {
                        self.set_tab(tab);
                    }
                }
                let jobs = self.active_jobs();
                if jobs > 0 {
                    ui.separator();
                    ui.spinner();
                    ui.label(format!("{jobs} job(s) running"));
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Generate => generate::ui(self, ui),
            Tab::History => history::ui(self, ui),
            Tab::Templates => templates::ui(self, ui),
            Tab::Models => models::ui(self, ui),
            Tab::Plugins => plugins::ui(self, ui),
            Tab::Settings => settings::ui(self, ui),
            Tab::Help => help::ui(ui),
        });
        self.thumbs.end_frame();
        self.close_dialog(&ctx);
        self.toasts.show(&ctx);
        self.window_size = ctx.input(|i| i.viewport().inner_rect.map(|r| r.size()));
        if self.active_jobs() > 0 || self.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        self.take_screenshot(&ctx);
    }

    fn close_dialog(&mut self, ctx: &egui::Context) {
        let running = self.active_jobs()
            + usize::from(self.models.downloading())
            + usize::from(self.models.importing());
        if ctx.input(|i| i.viewport().close_requested())
            && running > 0
            && !self.allow_close
            && self.screenshot.is_none()
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm_close = true;
        }
        if !self.confirm_close {
            return;
        }
        egui::Modal::new(egui::Id::unique("confirm-close")).show(ctx, |ui| {
            ui.heading("Quit ImageAI?");
            let jobs = self.generate.active_jobs();
            if jobs > 0 {
                ui.label(format!(
                    "{jobs} job(s) are still running. Quitting cancels them; their images will not be saved."
                ));
            }
            if let Some(download) = &self.models.download {
                ui.label(format!(
                    "{} is still downloading. Quitting stops it; installing it again resumes.",
                    download.repo
                ));
            }
            if let Some(import) = &self.models.import {
                ui.label(format!(
                    "{} is still being imported. Quitting stops it; nothing of it is kept.",
                    import.file.display()
                ));
            }
            ui.horizontal(|ui| {
                if ui.button("Quit and cancel jobs").clicked() {
                    self.generate.cancel_all();
                    self.models.cancel_download();
                    self.models.cancel_import();
                    self.allow_close = true;
                    self.confirm_close = false;
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                if ui.button("Keep running").clicked() {
                    self.confirm_close = false;
                }
            });
        });
    }

    fn take_screenshot(&mut self, ctx: &egui::Context) {
        let Some(shot) = &mut self.screenshot else {
            return;
        };
        ctx.request_repaint();
        // A few frames first, so layout and fonts have settled.
        if !shot.requested && self.frames >= 5 {
            shot.requested = true;
            let path = shot.path.clone();
            let done = shot.done.clone();
            let repaint = ctx.clone();
            let callback = egui::ScreenshotCallback::new(move |image| {
                let [w, h] = image.size;
                let bytes: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
                let saved = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                    .ok_or_else(|| "the screenshot had the wrong size".to_owned())
                    .and_then(|img| img.save(&path).map_err(|e| e.to_string()));
                if let Err(err) = saved {
                    tracing::error!("could not save the screenshot to {}: {err}", path.display());
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                repaint.request_repaint();
            });
            ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
        }
        if shot.done.load(std::sync::atomic::Ordering::SeqCst) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// Save what should outlive the window (its size).
    pub fn save_window_state(&mut self) {
        if let Some(size) = self.window_size {
            let mut geometry = self.core.config.window_geometry().unwrap_or_default();
            geometry.w = size.x.round() as i64;
            geometry.h = size.y.round() as i64;
            self.core.config.set_window_geometry(geometry);
            if let Err(err) = Config::update(&self.core.paths, |c| c.set_window_geometry(geometry))
            {
                tracing::warn!("the window size was not saved: {err}");
            }
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        App::ui(self, ui);
    }

    fn on_exit(&mut self) {
        self.generate.cancel_all();
        self.models.cancel_download();
        self.models.cancel_import();
        self.save_window_state();
    }
}

/// Set `gui.<key>` in config.json.
pub(crate) fn set_gui(config: &mut Config, key: &str, value: &str) {
    let mut gui = config
        .get("gui")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    gui.insert(key.to_owned(), Value::from(value));
    config.set("gui", Value::Object(gui));
}

/// The worker binary of the core's local Stable Diffusion provider, if it has one. The core
/// does not say which file it runs, only its folder: the one [`local_sd::find_worker`] finds
/// when it is in that folder (`IMAGEAI_SD_WORKER` may name any file), else the standard name there.
fn sd_worker_of(core: &Core) -> Option<PathBuf> {
    let entry = core
        .providers()
        .iter()
        .find(|e| e.is_native() && imageai_core::config::same_id(e.id(), local_sd::ID))?;
    local_sd::find_worker()
        .filter(|found| found.parent() == Some(entry.dir.as_path()))
        .or_else(|| Some(entry.dir.join(local_sd::WORKER_FILE)))
}

/// A provider to get on a background thread: a WASM plugin is compiled (or read from the
/// cache) there; a native one is ready.
pub(crate) enum Loader {
    Plugin { runtime: Runtime, dir: PathBuf },
    Native(Arc<dyn Provider>),
}

impl Loader {
    pub fn load(self, id: &str) -> Result<Arc<dyn Provider>, String> {
        match self {
            Loader::Native(provider) => Ok(provider),
            Loader::Plugin { runtime, dir } => runtime
                .load(&dir)
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
                .map_err(|e| format!("the {id} plugin could not be loaded: {e}")),
        }
    }
}

/// What a background thread needs to build a provider's call context: the core's plan, with
/// the GUI's wording for a missing key.
pub(crate) struct ContextPlan(imageai_core::app::ContextPlan);

impl ContextPlan {
    /// The call context with `key` if given, else the key ImageAI finds (stored, config,
    /// environment). Fails, naming where to get one, when the provider needs a key and has none.
    pub fn context(&self, key: Option<Secret>) -> Result<CallContext, String> {
        let over = KeyOverride {
            key: key.map(|k| k.expose().to_owned()),
            key_file: None,
        };
        self.0.context(&over).map_err(|error| match error {
            CoreError::MissingKey { .. } => {
                let manifest = &self.0.manifest;
                let help = manifest
                    .key
                    .as_ref()
                    .map(|k| k.help.as_str())
                    .filter(|h| !h.is_empty())
                    .map(|h| format!(" {h}"))
                    .unwrap_or_default();
                format!(
                    "No API key for {}. Add one on the Settings tab.{help}",
                    manifest.name
                )
            }
            other => other.to_string(),
        })
    }
}
