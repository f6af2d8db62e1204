//! The Generate tab: provider and model pickers, the controls the model's capabilities call for,
//! templates, the job queue with progress and cancel, and the results of this session.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use imageai_core::jobs::{Job, JobEvent, JobHandle, JobId, JobQueue, JobRequest};
use imageai_core::provider::{Capability, GenerateRequest, ModelInfo, Param};
use imageai_core::templates::{self, TemplateSource};

use crate::app::{App, ProviderState, set_gui};
use crate::widgets;

/// How the seed is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedMode {
    Random,
    Fixed,
    ReuseLast,
}

/// A job in the queue panel.
pub struct JobView {
    pub id: JobId,
    pub handle: JobHandle,
    pub provider: String,
    pub prompt: String,
    pub fraction: f32,
    pub status: JobStatus,
    request: GenerateRequest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobStatus {
    Queued,
    Running(String),
    Done(usize),
    Cancelled,
    Failed(String),
}

impl JobStatus {
    fn active(&self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running(_))
    }
}

/// One saved image of this session.
#[derive(Debug, Clone)]
pub struct ResultImage {
    pub path: PathBuf,
    pub provider: String,
    pub prompt: String,
}

pub struct GenerateTab {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt: String,
    pub negative_prompt: String,
    pub size: Option<String>,
    pub aspect_ratio: Option<String>,
    pub quality: Option<String>,
    pub style: Option<String>,
    pub n: u32,
    pub seed_mode: SeedMode,
    pub seed: u64,
    pub last_seed: Option<u64>,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: String,
    pub template: Option<String>,
    pub template_fields: BTreeMap<String, String>,
    pub template_append: bool,
    used_template: Option<imageai_core::templates::TemplateUse>,
    queue: JobQueue,
    pub jobs: Vec<JobView>,
    pub results: Vec<ResultImage>,
    /// Jobs being prepared (plugin loading, key lookup) before they enter the queue.
    pub preparing: usize,
    pub inline_error: Option<String>,
}

impl GenerateTab {
    pub fn new(provider: Option<String>, model: Option<String>) -> Self {
        Self {
            provider,
            model,
            prompt: String::new(),
            negative_prompt: String::new(),
            size: None,
            aspect_ratio: None,
            quality: None,
            style: None,
            n: 1,
            seed_mode: SeedMode::Random,
            seed: 0,
            last_seed: None,
            steps: 30,
            guidance: 7.5,
            scheduler: String::new(),
            template: None,
            template_fields: BTreeMap::new(),
            template_append: false,
            used_template: None,
            queue: JobQueue::new(2),
            jobs: Vec::new(),
            results: Vec::new(),
            preparing: 0,
            inline_error: None,
        }
    }

    pub fn active_jobs(&self) -> usize {
        self.preparing + self.jobs.iter().filter(|j| j.status.active()).count()
    }

    pub fn cancel_all(&mut self) {
        for job in &self.jobs {
            if job.status.active() {
                job.handle.cancel.cancel();
            }
        }
    }

    fn job_mut(&mut self, id: JobId) -> Option<&mut JobView> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }
}

/// Apply the queue's events.
pub(crate) fn poll_jobs(app: &mut App) {
    while let Some(event) = app.generate.queue.try_recv() {
        match event {
            JobEvent::Started { id } => {
                if let Some(job) = app.generate.job_mut(id) {
                    job.status = JobStatus::Running("starting".into());
                }
            }
            JobEvent::Progress {
                id,
                fraction,
                message,
            } => {
                if let Some(job) = app.generate.job_mut(id) {
                    job.fraction = fraction;
                    job.status = JobStatus::Running(message);
                }
            }
            JobEvent::Finished { id, result } => {
                let Some(job) = app.generate.job_mut(id) else {
                    continue;
                };
                job.fraction = 1.0;
                let provider = job.provider.clone();
                let prompt = job.prompt.clone();
                match result {
                    Ok(output) => {
                        job.status = JobStatus::Done(output.saved.len());
                        if output.record.seed.is_some() {
                            app.generate.last_seed = output.record.seed;
                        }
                        for saved in &output.saved {
                            app.generate.results.push(ResultImage {
                                path: saved.image.clone(),
                                provider: provider.clone(),
                                prompt: prompt.clone(),
                            });
                        }
                        let count = output.saved.len();
                        app.info(format!("{count} image(s) saved to History"));
                        app.history.reload(&app.core, &app.background);
                    }
                    Err(err) if err.is_cancelled() => job.status = JobStatus::Cancelled,
                    Err(err) => {
                        let message = match &err {
                            imageai_core::jobs::JobError::Provider(
                                imageai_core::ProviderError::Auth(_),
                            ) => format!("{err}. Set a new key on the Settings tab."),
                            _ => format!("{err}"),
                        };
                        job.status = JobStatus::Failed(message.clone());
                        app.error(format!("The job failed: {message}"));
                    }
                }
            }
        }
    }
}

/// The generate request from the controls the model takes.
fn request(tab: &GenerateTab, model: &ModelInfo) -> GenerateRequest {
    let takes = |p| model.takes(p);
    let mut request = GenerateRequest {
        model: model.id.clone(),
        prompt: tab.prompt.trim().to_owned(),
        n: if takes(Param::N) { tab.n.max(1) } else { 1 },
        ..GenerateRequest::default()
    };
    if takes(Param::NegativePrompt) && !tab.negative_prompt.trim().is_empty() {
        request.negative_prompt = Some(tab.negative_prompt.trim().to_owned());
    }
    if takes(Param::Size) {
        request.size = tab.size.clone();
    }
    if takes(Param::AspectRatio) {
        request.aspect_ratio = tab.aspect_ratio.clone();
    }
    if takes(Param::Quality) {
        request.quality = tab.quality.clone();
    }
    if takes(Param::Style) {
        request.style = tab.style.clone();
    }
    if takes(Param::Seed) {
        request.seed = match tab.seed_mode {
            SeedMode::Random => None,
            SeedMode::Fixed => Some(tab.seed),
            SeedMode::ReuseLast => tab.last_seed,
        };
    }
    if takes(Param::Steps) {
        request.steps = Some(tab.steps);
    }
    if takes(Param::Guidance) {
        request.guidance = Some(tab.guidance);
    }
    if takes(Param::Scheduler) && !tab.scheduler.trim().is_empty() {
        request
            .extra
            .insert("scheduler".into(), tab.scheduler.trim().to_owned());
    }
    request
}

/// Queue a job from the current controls (the Generate button and Ctrl+Enter).
pub(crate) fn submit(app: &mut App) {
    app.generate.inline_error = None;
    let Some(provider_id) = app.generate.provider.clone() else {
        app.generate.inline_error = Some(
            "Choose a provider first. None installed? See the Plugins tab, or run `cargo xtask plugins`."
                .into(),
        );
        return;
    };
    if app.generate.prompt.trim().is_empty() {
        app.generate.inline_error = Some("Type a prompt first.".into());
        return;
    }
    let ProviderState::Ready { provider, info } = app.provider_state(&provider_id) else {
        app.generate.inline_error = Some(format!(
            "{provider_id} is still loading or failed to load; see the message above."
        ));
        return;
    };
    let model = match app
        .generate
        .model
        .as_deref()
        .and_then(|m| info.model(m))
        .or_else(|| {
            info.models
                .iter()
                .find(|m| m.supports(Capability::TextToImage))
        }) {
        Some(model) => model.clone(),
        None => {
            app.generate.inline_error = Some(format!(
                "{} has no model that makes images from text.",
                info.name
            ));
            return;
        }
    };
    let plan = match app.context_plan(&provider_id) {
        Ok(plan) => plan,
        Err(message) => {
            app.generate.inline_error = Some(message);
            return;
        }
    };
    let generate_request = request(&app.generate, &model);
    let job = Job {
        provider: provider_id.clone(),
        request: JobRequest::Generate(generate_request.clone()),
        template: app.generate.used_template.take(),
    };
    let output_dir = app.core.paths.output_dir();
    app.generate.preparing += 1;
    app.background.spawn("prepare-job", move || {
        // The key lookup may wait on the OS keyring: do it here, then queue on the UI thread.
        let context = plan.context(None);
        Box::new(move |app: &mut App| {
            app.generate.preparing = app.generate.preparing.saturating_sub(1);
            let ctx = match context {
                Ok(ctx) => ctx,
                Err(message) => {
                    app.generate.inline_error = Some(message.clone());
                    app.error(message);
                    return;
                }
            };
            let handle = app.generate.queue.submit(provider, job, ctx, output_dir);
            app.generate.jobs.push(JobView {
                id: handle.id,
                handle,
                provider: provider_id,
                prompt: generate_request.prompt.clone(),
                fraction: 0.0,
                status: JobStatus::Queued,
                request: generate_request,
            });
        })
    });
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    egui::Panel::right("queue")
        .resizable(true)
        .default_size(300.0)
        .show(ui, |ui| queue_ui(app, ui));
    egui::ScrollArea::vertical()
        .id_salt("generate-controls")
        .show(ui, |ui| controls_ui(app, ui));
}

fn controls_ui(app: &mut App, ui: &mut egui::Ui) {
    let enabled: Vec<(String, String)> = app
        .core
        .providers()
        .iter()
        .filter(|e| app.core.config.is_plugin_enabled(e.id()))
        .map(|e| (e.id().to_owned(), e.manifest.name.clone()))
        .collect();
    if enabled.is_empty() && !app.core.providers().is_empty() {
        ui.heading("Every provider is disabled");
        ui.label("Enable one on the Plugins tab.");
        return;
    }
    if enabled.is_empty() {
        ui.heading("No providers installed");
        ui.label("Install a provider plugin on the Plugins tab, or build the bundled ones with `cargo xtask plugins`.");
        return;
    }
    let current = app
        .generate
        .provider
        .clone()
        .filter(|p| enabled.iter().any(|(id, _)| id == p))
        .or_else(|| {
            app.core
                .config
                .default_provider()
                .filter(|p| enabled.iter().any(|(id, _)| id == p))
        })
        .unwrap_or_else(|| enabled[0].0.clone());
    let mut chosen = current;
    if widgets::choice(ui, "Provider", &mut chosen, &enabled) {
        app.generate.model = None;
        let id = chosen.clone();
        app.change_config(Arc::new(move |c| set_gui(c, "provider", &id)));
    }
    app.generate.provider = Some(chosen.clone());
    let state = app.provider_state(&chosen);
    let info = match state {
        ProviderState::Loading => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Loading the provider…");
            });
            return;
        }
        ProviderState::Failed(message) => {
            ui.colored_label(ui.visuals().error_fg_color, message);
            return;
        }
        ProviderState::Ready { info, .. } => info,
    };
    let models: Vec<&ModelInfo> = info
        .models
        .iter()
        .filter(|m| m.supports(Capability::TextToImage))
        .collect();
    let Some(first) = models.first() else {
        ui.label(format!(
            "{} has no model that makes images from text.",
            info.name
        ));
        return;
    };
    let mut model_id = app
        .generate
        .model
        .clone()
        .filter(|m| models.iter().any(|x| &x.id == m))
        .unwrap_or_else(|| first.id.clone());
    let model_choices: Vec<(String, String)> = models
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                if m.name.is_empty() {
                    m.id.clone()
                } else {
                    m.name.clone()
                },
            )
        })
        .collect();
    if widgets::choice(ui, "Model", &mut model_id, &model_choices) {
        let id = model_id.clone();
        app.change_config(Arc::new(move |c| set_gui(c, "model", &id)));
    }
    app.generate.model = Some(model_id.clone());
    let Some(model) = models
        .iter()
        .find(|m| m.id == model_id)
        .map(|m| (*m).clone())
    else {
        return;
    };
    if !model.description.is_empty() {
        ui.weak(&model.description);
    }
    ui.separator();
    template_ui(app, ui, &chosen);
    widgets::text_area(ui, "Prompt", &mut app.generate.prompt, 4);
    let tab = &mut app.generate;
    if model.takes(Param::NegativePrompt) {
        widgets::text_area(ui, "Negative prompt", &mut tab.negative_prompt, 2);
    }
    ui.horizontal_wrapped(|ui| {
        option_choice(
            ui,
            "Size",
            &mut tab.size,
            &model.sizes,
            model.takes(Param::Size),
            model.default_size.as_deref(),
        );
        option_choice(
            ui,
            "Aspect ratio",
            &mut tab.aspect_ratio,
            &model.aspect_ratios,
            model.takes(Param::AspectRatio),
            None,
        );
        option_choice(
            ui,
            "Quality",
            &mut tab.quality,
            &model.qualities,
            model.takes(Param::Quality),
            None,
        );
        option_choice(
            ui,
            "Style",
            &mut tab.style,
            &model.styles,
            model.takes(Param::Style),
            None,
        );
    });
    ui.horizontal_wrapped(|ui| {
        if model.takes(Param::N) {
            let label = ui.label("Images");
            ui.add(egui::DragValue::new(&mut tab.n).range(1..=model.max_n.max(1)))
                .labelled_by(label.id);
        }
        if model.takes(Param::Steps) {
            let label = ui.label("Steps");
            ui.add(egui::DragValue::new(&mut tab.steps).range(1..=150))
                .labelled_by(label.id);
        }
        if model.takes(Param::Guidance) {
            let label = ui.label("Guidance");
            ui.add(
                egui::DragValue::new(&mut tab.guidance)
                    .range(0.0..=30.0)
                    .speed(0.1),
            )
            .labelled_by(label.id);
        }
    });
    if model.takes(Param::Seed) {
        ui.horizontal(|ui| {
            ui.label("Seed:");
            ui.radio_value(&mut tab.seed_mode, SeedMode::Random, "Random");
            ui.radio_value(&mut tab.seed_mode, SeedMode::Fixed, "Fixed");
            let reuse = match tab.last_seed {
                Some(seed) => format!("Reuse last ({seed})"),
                None => "Reuse last".to_owned(),
            };
            ui.add_enabled(
                tab.last_seed.is_some(),
                egui::RadioButton::new(tab.seed_mode == SeedMode::ReuseLast, reuse),
            )
            .clicked()
            .then(|| tab.seed_mode = SeedMode::ReuseLast);
            if tab.seed_mode == SeedMode::Fixed {
                let label = ui.label("Seed value");
                ui.add(egui::DragValue::new(&mut tab.seed))
                    .labelled_by(label.id);
            }
        });
    }
    if model.takes(Param::Scheduler) {
        widgets::text_field(ui, "Scheduler", &mut tab.scheduler);
    }
    ui.add_space(8.0);
    ui.horizontal(|ui| {
        let generate = ui
            .add(egui::Button::new("Generate"))
            .on_hover_text("Ctrl+Enter");
        if generate.clicked() {
            submit(app);
        }
        let active = app.generate.active_jobs() > 0;
        if ui
            .add_enabled(active, egui::Button::new("Cancel"))
            .clicked()
        {
            app.generate.cancel_all();
        }
    });
    if let Some(message) = &app.generate.inline_error {
        ui.colored_label(ui.visuals().error_fg_color, message);
    }
    ui.separator();
    results_ui(app, ui);
}

fn option_choice(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut Option<String>,
    options: &[String],
    takes: bool,
    default: Option<&str>,
) {
    if !takes || options.is_empty() {
        return;
    }
    if value.as_ref().is_none_or(|v| !options.contains(v)) {
        *value = default
            .filter(|d| options.iter().any(|o| o == d))
            .or(options.first().map(String::as_str))
            .map(str::to_owned);
    }
    let choices: Vec<(Option<String>, String)> = options
        .iter()
        .map(|o| (Some(o.clone()), o.clone()))
        .collect();
    widgets::choice(ui, label, value, &choices);
}

fn template_ui(app: &mut App, ui: &mut egui::Ui, provider: &str) {
    let names: Vec<(Option<String>, String)> = std::iter::once((None, "(none)".to_owned()))
        .chain(
            app.templates
                .store
                .list(Some(provider))
                .iter()
                .map(|l| (Some(l.template.name.clone()), l.template.name.clone())),
        )
        .collect();
    let mut chosen = app.generate.template.clone();
    if widgets::choice(ui, "Template", &mut chosen, &names) {
        app.generate.template = chosen.clone();
        app.generate.template_fields.clear();
    }
    let Some(name) = chosen else {
        return;
    };
    let Some(listed) = app.templates.store.get(&name) else {
        return;
    };
    let template = listed.template.clone();
    let source: TemplateSource = listed.source;
    ui.indent("template-fields", |ui| {
        for field in template.placeholders() {
            let value = app
                .generate
                .template_fields
                .entry(field.clone())
                .or_insert_with(|| template.defaults.get(&field).cloned().unwrap_or_default());
            widgets::text_field(ui, &field, value);
        }
        ui.horizontal(|ui| {
            ui.checkbox(&mut app.generate.template_append, "Append to the prompt");
            if ui.button("Use template").clicked() {
                match template.fill(&app.generate.template_fields) {
                    Ok(filled) => {
                        app.generate.prompt = templates::apply(
                            &app.generate.prompt,
                            &filled,
                            app.generate.template_append,
                        );
                        if let Some(negative) = &template.negative
                            && app.generate.negative_prompt.trim().is_empty()
                        {
                            app.generate.negative_prompt = negative.clone();
                        }
                        app.generate.used_template = Some(template.record_use(
                            app.generate.template_fields.clone(),
                            app.generate.prompt.clone(),
                            app.generate.template_append,
                            source,
                        ));
                    }
                    Err(err) => app.generate.inline_error = Some(format!("{err}")),
                }
            }
        });
    });
}

fn queue_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Queue");
    if app.generate.preparing > 0 {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Preparing…");
        });
    }
    if app.generate.jobs.is_empty() && app.generate.preparing == 0 {
        ui.weak("No jobs yet. Type a prompt and press Generate (Ctrl+Enter).");
    }
    let mut rerun = None;
    egui::ScrollArea::vertical()
        .id_salt("queue-list")
        .show(ui, |ui| {
            for job in app.generate.jobs.iter().rev() {
                ui.group(|ui| {
                    ui.label(format!(
                        "#{} {}: {}",
                        job.id,
                        job.provider,
                        short(&job.prompt, 60)
                    ));
                    match &job.status {
                        JobStatus::Queued => {
                            ui.label("Queued");
                        }
                        JobStatus::Running(message) => {
                            ui.add(egui::ProgressBar::new(job.fraction).text(message.as_str()));
                        }
                        JobStatus::Done(n) => {
                            ui.label(format!("Done: {n} image(s)"));
                        }
                        JobStatus::Cancelled => {
                            ui.label("Cancelled");
                        }
                        JobStatus::Failed(message) => {
                            ui.colored_label(ui.visuals().error_fg_color, message);
                        }
                    }
                    ui.horizontal(|ui| {
                        if job.status.active()
                            && ui.button(format!("Cancel job {}", job.id)).clicked()
                        {
                            job.handle.cancel.cancel();
                        }
                        if !job.status.active()
                            && ui.button(format!("Re-run job {}", job.id)).clicked()
                        {
                            rerun = Some(job.request.clone());
                        }
                    });
                });
            }
        });
    if let Some(request) = rerun {
        app.generate.prompt = request.prompt;
        app.generate.negative_prompt = request.negative_prompt.unwrap_or_default();
        app.generate.model = Some(request.model);
        submit(app);
    }
}

fn results_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Results");
    if app.generate.results.is_empty() {
        ui.weak("Images you make appear here and in History.");
        return;
    }
    let size = egui::vec2(160.0, 160.0);
    let mut open = None;
    ui.horizontal_wrapped(|ui| {
        for result in app.generate.results.iter().rev() {
            ui.vertical(|ui| {
                let name = result
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crate::thumbs::thumbnail(ui, &mut app.thumbs, &result.path, size, &name);
                if ui.button(format!("Open folder of {name}")).clicked() {
                    open = result.path.parent().map(PathBuf::from);
                }
                ui.weak(format!(
                    "{}: {}",
                    result.provider,
                    short(&result.prompt, 24)
                ));
            });
        }
    });
    if let Some(dir) = open {
        crate::history::open_in_file_manager(app, dir);
    }
}

pub(crate) fn short(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}
