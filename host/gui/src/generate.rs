//! The Generate tab: provider and model pickers, the controls the model's capabilities call for,
//! templates, the job queue with progress, step previews and cancel, and this session's results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use imageai_core::PreviewFn;
use imageai_core::config::same_id;
use imageai_core::jobs::{ANY_MODEL, Job, JobEvent, JobHandle, JobId, JobQueue, JobRequest};
use imageai_core::provider::{
    Capability, EditMode, EditRequest, GenerateRequest, Image, ModelInfo, Param, UpscaleRequest,
};
use imageai_core::templates::{self, TemplateSource, TemplateUse};

use crate::app::{App, ProviderState, set_gui};
use crate::background::Notifier;
use crate::mask::{self, MaskPainter};
use crate::{files, widgets};

/// The schedulers local Stable Diffusion runs, as its `scheduler` option names them.
pub const SD_SCHEDULERS: [&str; 6] = [
    "ddim",
    "pndm",
    "euler",
    "euler-a",
    "dpm++2m",
    "dpm++2m-karras",
];

/// Local Stable Diffusion's img2img strength when none is chosen (the engine's default).
const SD_DEFAULT_STRENGTH: f32 = 0.8;

/// The longest side of a job's preview in the queue, in points.
const PREVIEW_SIDE: f32 = 160.0;

/// How the seed is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedMode {
    Random,
    Fixed,
    ReuseLast,
}

/// A mask sent with an edit: a file, or one painted with the brush (one byte per pixel).
#[derive(Debug, Clone)]
pub enum MaskInput {
    File(PathBuf),
    Painted {
        size: [usize; 2],
        pixels: Arc<Vec<u8>>,
    },
}

/// The images a job starts from.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Text to image.
    None,
    /// An edit of the reference images, inpainting where the mask says when there is one.
    Edit {
        references: Vec<PathBuf>,
        mask: Option<MaskInput>,
        /// How far to move from the images, 0 (keep) to 1 (replace); `None`: the provider's
        /// default.
        strength: Option<f32>,
    },
    Upscale {
        source: PathBuf,
    },
}

/// What a job was made from: enough to run it again.
#[derive(Debug, Clone)]
pub struct Submission {
    pub provider: String,
    /// The prompt and parameters (for an upscale, its model only).
    pub request: GenerateRequest,
    pub inputs: Inputs,
}

/// A job in the queue panel.
pub struct JobView {
    pub id: JobId,
    pub handle: JobHandle,
    pub provider: String,
    pub prompt: String,
    pub fraction: f32,
    pub status: JobStatus,
    pub submission: Submission,
    /// Previews the provider sent so far (local Stable Diffusion sends one per step).
    pub previews: usize,
    /// The latest preview, shown while the job runs; freed when it ends.
    preview: Option<egui::TextureHandle>,
    /// A preview decoded off the UI thread, waiting to be uploaded.
    pending_preview: Option<egui::ColorImage>,
}

impl JobView {
    /// The size in pixels of the preview on screen, while there is one.
    pub fn preview_size(&self) -> Option<[usize; 2]> {
        self.preview.as_ref().map(egui::TextureHandle::size)
    }
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
    /// The job that made it (its submission runs it again).
    pub job: JobId,
}

pub struct GenerateTab {
    pub provider: Option<String>,
    pub model: Option<String>,
    /// The model typed when the provider's "any model" entry is chosen: a repo id, or a folder
    /// for local Stable Diffusion.
    pub any_model: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub size: Option<String>,
    /// A size typed for a model that lists none (local Stable Diffusion): `WxH`, or empty for
    /// the model's own.
    pub custom_size: String,
    pub aspect_ratio: Option<String>,
    pub quality: Option<String>,
    pub style: Option<String>,
    pub n: u32,
    pub seed_mode: SeedMode,
    pub seed: u64,
    pub last_seed: Option<u64>,
    pub steps: u32,
    pub guidance: f32,
    /// The local Stable Diffusion scheduler; empty: the model's own.
    pub scheduler: String,
    /// Local Stable Diffusion's img2img strength (sent when editing reference images).
    pub strength: f32,
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
    /// Images to edit (reference images), in order.
    pub references: Vec<PathBuf>,
    /// The path typed into the reference field.
    pub reference_path: String,
    /// A mask file chosen for inpainting.
    pub mask_file: Option<PathBuf>,
    /// The mask brush, once opened on a reference image.
    pub painter: Option<MaskPainter>,
    /// An image decoded for the brush, waiting for the UI thread to upload it.
    pending_painter: Option<(PathBuf, egui::ColorImage)>,
    /// An image decoded for the clipboard, waiting for the UI thread.
    pending_copy: Option<(String, egui::ColorImage)>,
}

impl GenerateTab {
    pub fn new(provider: Option<String>, model: Option<String>) -> Self {
        Self {
            provider,
            model,
            any_model: String::new(),
            prompt: String::new(),
            negative_prompt: String::new(),
            size: None,
            custom_size: String::new(),
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
            strength: SD_DEFAULT_STRENGTH,
            template: None,
            template_fields: BTreeMap::new(),
            template_append: false,
            used_template: None,
            queue: JobQueue::new(2),
            jobs: Vec::new(),
            results: Vec::new(),
            preparing: 0,
            inline_error: None,
            references: Vec::new(),
            reference_path: String::new(),
            mask_file: None,
            painter: None,
            pending_painter: None,
            pending_copy: None,
        }
    }

    /// Add an image to edit (once).
    pub fn add_reference(&mut self, path: PathBuf) {
        if !self.references.contains(&path) {
            self.references.push(path);
        }
    }

    /// The mask the next edit sends: the painted one when something is painted on one of the
    /// reference images, else the chosen file.
    pub fn mask(&self) -> Option<MaskInput> {
        if let Some(painter) = &self.painter
            && painter.painted() > 0
            && self.references.contains(&painter.source)
        {
            return Some(MaskInput::Painted {
                size: painter.size,
                pixels: Arc::new(painter.mask.clone()),
            });
        }
        self.mask_file.clone().map(MaskInput::File)
    }

    /// The painted mask as the PNG an edit would send (`None` before the brush is opened).
    pub fn painted_mask_png(&self) -> Option<Result<Vec<u8>, String>> {
        self.painter.as_ref().map(MaskPainter::to_png)
    }

    /// What the next Generate asks for: text to image, an edit, or an inpainting.
    pub fn capability(&self) -> Capability {
        if self.references.is_empty() {
            Capability::TextToImage
        } else if self.mask_file.is_some() || self.painter.as_ref().is_some_and(|p| p.painted() > 0)
        {
            Capability::Inpaint
        } else {
            Capability::Edit
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
                job.preview = None;
                job.pending_preview = None;
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
                                job: id,
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
        // The size picked for another model is not one this model lists: only a typed one.
        request.size = if model.sizes.is_empty() {
            Some(tab.custom_size.trim().to_owned()).filter(|s| !s.is_empty())
        } else {
            tab.size.clone()
        };
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

/// Queue a job from the current controls (the Generate button and Ctrl+Enter): text to image,
/// or an edit of the reference images (inpainting with a mask).
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
    let ProviderState::Ready { info, .. } = app.provider_state(&provider_id) else {
        app.generate.inline_error = Some(format!(
            "{provider_id} is still loading or failed to load; see the message above."
        ));
        return;
    };
    let capability = app.generate.capability();
    let model = match app
        .generate
        .model
        .as_deref()
        .and_then(|m| info.model(m))
        .filter(|m| m.supports(capability))
        .or_else(|| info.models.iter().find(|m| m.supports(capability)))
    {
        Some(model) => model.clone(),
        None => {
            app.generate.inline_error = Some(format!(
                "{} has no model that can do {}; remove the reference images or choose another provider.",
                info.name,
                capability.as_str()
            ));
            return;
        }
    };
    let inputs = if capability == Capability::TextToImage {
        Inputs::None
    } else {
        let strength = (same_id(&provider_id, imageai_core::local_sd::ID)
            && model.takes(Param::Strength))
        .then_some(app.generate.strength);
        Inputs::Edit {
            references: app.generate.references.clone(),
            mask: app.generate.mask(),
            strength,
        }
    };
    let mut request = request(&app.generate, &model);
    if model.id == ANY_MODEL {
        let typed = app.generate.any_model.trim();
        if typed.is_empty() {
            app.generate.inline_error = Some(format!(
                "Type the model to use for {}, or choose one of its listed models.",
                info.name
            ));
            return;
        }
        request.model = typed.to_owned();
    }
    let submission = Submission {
        provider: provider_id,
        request,
        inputs,
    };
    let template = app.generate.used_template.take();
    start(app, submission, template);
}

/// Queue `submission`: its provider must be loaded. Files are read and the key looked up in
/// the background; the job enters the queue on the UI thread.
pub(crate) fn start(app: &mut App, submission: Submission, template: Option<TemplateUse>) {
    let provider_id = submission.provider.clone();
    let ProviderState::Ready { provider, .. } = app.provider_state(&provider_id) else {
        app.generate.inline_error = Some(format!(
            "{provider_id} is still loading or failed to load; see the message above."
        ));
        return;
    };
    let plan = match app.context_plan(&provider_id) {
        Ok(plan) => plan,
        Err(message) => {
            app.generate.inline_error = Some(message);
            return;
        }
    };
    let output_dir = app.core.paths.output_dir();
    app.generate.preparing += 1;
    app.background.spawn("prepare-job", move || {
        // The key lookup may wait on the OS keyring and the images on the disk: do both here.
        let prepared = plan.context(None).and_then(|ctx| {
            job_request(&submission).map(|request| {
                let job = Job {
                    provider: provider_id.clone(),
                    request,
                    template,
                };
                (ctx, job)
            })
        });
        Box::new(move |app: &mut App| {
            app.generate.preparing = app.generate.preparing.saturating_sub(1);
            let (mut ctx, job) = match prepared {
                Ok(prepared) => prepared,
                Err(message) => {
                    app.generate.inline_error = Some(message.clone());
                    app.error(message);
                    return;
                }
            };
            // The queue numbers the job: known once it is in, before any preview is shown.
            let job_id = Arc::new(OnceLock::new());
            ctx.preview = Some(preview_sink(app.background.notifier(), job_id.clone()));
            let handle = app.generate.queue.submit(provider, job, ctx, output_dir);
            let _ = job_id.set(handle.id);
            let prompt = match &submission.inputs {
                Inputs::Upscale { source } => format!("upscale {}", file_name(source)),
                _ => submission.request.prompt.clone(),
            };
            app.generate.jobs.push(JobView {
                id: handle.id,
                handle,
                provider: provider_id,
                prompt,
                fraction: 0.0,
                status: JobStatus::Queued,
                submission,
                previews: 0,
                preview: None,
                pending_preview: None,
            });
        })
    });
}

/// Where a job's previews go: decoded on the job's thread, then handed to the UI thread, which
/// keeps the latest while the job runs.
fn preview_sink(notifier: Notifier, job: Arc<OnceLock<JobId>>) -> PreviewFn {
    Arc::new(move |image: &Image| {
        let decoded = match image::load_from_memory(&image.data) {
            Ok(decoded) => decoded.to_rgba8(),
            Err(err) => {
                tracing::debug!(%err, "a preview could not be decoded");
                return;
            }
        };
        let size = [decoded.width() as usize, decoded.height() as usize];
        let preview = egui::ColorImage::from_rgba_unmultiplied(size, decoded.as_raw());
        let job = job.clone();
        notifier.send(Box::new(move |app: &mut App| {
            let Some(view) = job.get().and_then(|id| app.generate.job_mut(*id)) else {
                return;
            };
            view.previews += 1;
            if view.status.active() {
                view.pending_preview = Some(preview);
            }
        }));
    })
}

/// Upload the previews that arrived since the last frame (one texture per job, updated).
fn upload_previews(app: &mut App, ctx: &egui::Context) {
    for job in &mut app.generate.jobs {
        let Some(image) = job.pending_preview.take() else {
            continue;
        };
        match &mut job.preview {
            Some(texture) => texture.set(image, egui::TextureOptions::LINEAR),
            None => {
                job.preview = Some(ctx.load_texture(
                    format!("job-preview-{}", job.id),
                    image,
                    egui::TextureOptions::LINEAR,
                ));
            }
        }
    }
}

/// An image file as a provider takes it.
fn read_image(path: &std::path::Path, what: &str) -> Result<Image, String> {
    let data = std::fs::read(path).map_err(|e| {
        format!(
            "could not read the {what} ({e}); check that the file still exists: {}",
            path.display()
        )
    })?;
    let mime = image::guess_format(&data)
        .map(|f| f.to_mime_type().to_owned())
        .map_err(|_| {
            format!(
                "the {what} is not an image ImageAI can read (PNG, JPEG, WebP or GIF): {}",
                path.display()
            )
        })?;
    Ok(Image { mime, data })
}

pub(crate) fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The core's request for a submission, with its images read (on a background thread).
fn job_request(submission: &Submission) -> Result<JobRequest, String> {
    match &submission.inputs {
        Inputs::None => Ok(JobRequest::Generate(submission.request.clone())),
        Inputs::Edit {
            references,
            mask,
            strength,
        } => {
            let images = references
                .iter()
                .map(|p| read_image(p, "reference image"))
                .collect::<Result<Vec<_>, _>>()?;
            let mask = match mask {
                None => None,
                Some(MaskInput::File(path)) => Some(read_image(path, "mask")?),
                Some(MaskInput::Painted { size, pixels }) => Some(Image {
                    mime: "image/png".into(),
                    data: mask::encode_png(*size, pixels)?,
                }),
            };
            let mode = if mask.is_some() {
                EditMode::Inpaint
            } else {
                EditMode::Edit
            };
            Ok(JobRequest::Edit {
                request: EditRequest {
                    mode,
                    base: submission.request.clone(),
                    images,
                    mask,
                    strength: *strength,
                },
                sources: references.iter().map(|p| file_name(p)).collect(),
            })
        }
        Inputs::Upscale { source } => Ok(JobRequest::Upscale {
            request: UpscaleRequest {
                model: submission.request.model.clone(),
                image: read_image(source, "image to upscale")?,
                scale: None,
                prompt: None,
                negative_prompt: None,
                seed: None,
                output_format: None,
                extra: BTreeMap::new(),
            },
            source: file_name(source),
        }),
    }
}

/// Upscale `path` with the current provider's upscaling model.
fn upscale(app: &mut App, path: PathBuf) {
    let Some(provider_id) = app.generate.provider.clone() else {
        return;
    };
    let ProviderState::Ready { info, .. } = app.provider_state(&provider_id) else {
        return;
    };
    let Some(model) = info.models.iter().find(|m| m.supports(Capability::Upscale)) else {
        app.error(format!(
            "{} has no upscaling model; choose a provider that has one (such as Stability AI) and try again.",
            info.name
        ));
        return;
    };
    let submission = Submission {
        provider: provider_id,
        request: GenerateRequest {
            model: model.id.clone(),
            ..GenerateRequest::default()
        },
        inputs: Inputs::Upscale { source: path },
    };
    start(app, submission, None);
}

/// Run a job again as it was, putting its prompt back in the controls.
fn rerun(app: &mut App, submission: Submission) {
    if !matches!(submission.inputs, Inputs::Upscale { .. }) {
        app.generate.prompt.clone_from(&submission.request.prompt);
        app.generate.negative_prompt = submission
            .request
            .negative_prompt
            .clone()
            .unwrap_or_default();
        app.generate.model = Some(submission.request.model.clone());
    }
    start(app, submission, None);
}

/// Files dropped on the window: images become reference images on the Generate tab; a folder
/// dropped on the History tab is imported.
pub(crate) fn handle_drops(app: &mut App, ctx: &egui::Context) {
    let mut dropped = files::dropped(ctx);
    if dropped.is_empty() {
        return;
    }
    if app.tab == crate::app::Tab::History {
        let (folders, rest): (Vec<PathBuf>, Vec<PathBuf>) =
            dropped.into_iter().partition(|p| p.is_dir());
        for folder in folders {
            crate::history::import(app, folder);
        }
        dropped = rest;
        if dropped.is_empty() {
            return;
        }
    }
    let (images, other): (Vec<PathBuf>, Vec<PathBuf>) =
        dropped.into_iter().partition(|p| files::is_image(p));
    for path in images.iter().cloned() {
        app.generate.add_reference(path);
    }
    if !images.is_empty() {
        app.set_tab(crate::app::Tab::Generate);
        app.info(format!("Added {} reference image(s).", images.len()));
    }
    if let Some(first) = other.first() {
        app.warn(format!(
            "Only images (PNG, JPEG, WebP, GIF) can be dropped here: {}",
            first.display()
        ));
    }
}

pub(crate) fn ui(app: &mut App, ui: &mut egui::Ui) {
    upload_previews(app, ui.ctx());
    if let Some((source, image)) = app.generate.pending_painter.take() {
        app.generate.painter = Some(MaskPainter::new(ui.ctx(), source, image));
    }
    if let Some((name, image)) = app.generate.pending_copy.take() {
        ui.ctx().copy_image(image);
        app.info(format!("Copied {name} to the clipboard."));
    }
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
    let capability = app.generate.capability();
    let mut models: Vec<&ModelInfo> = info
        .models
        .iter()
        .filter(|m| m.supports(capability))
        .collect();
    if models.is_empty() {
        if capability != Capability::TextToImage {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "{} has no model that can do {}; remove the reference images below, or choose another provider.",
                    info.name,
                    capability.as_str()
                ),
            );
        }
        models = info
            .models
            .iter()
            .filter(|m| m.supports(Capability::TextToImage))
            .collect();
    }
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
    if model.id == ANY_MODEL {
        widgets::text_field(ui, "Model id or folder", &mut app.generate.any_model);
    }
    ui.separator();
    template_ui(app, ui, &chosen);
    widgets::text_area(ui, "Prompt", &mut app.generate.prompt, 4);
    let tab = &mut app.generate;
    if model.takes(Param::NegativePrompt) {
        widgets::text_area(ui, "Negative prompt", &mut tab.negative_prompt, 2);
    }
    let mut chosen_options = Vec::new();
    ui.horizontal_wrapped(|ui| {
        let mut note = |key: &'static str, changed: bool, value: &Option<String>| {
            if changed && let Some(value) = value {
                chosen_options.push((key, value.clone()));
            }
        };
        let changed = option_choice(
            ui,
            "Size",
            &mut tab.size,
            &model.sizes,
            model.takes(Param::Size),
            model.default_size.as_deref(),
        );
        note("size", changed, &tab.size);
        let changed = option_choice(
            ui,
            "Aspect ratio",
            &mut tab.aspect_ratio,
            &model.aspect_ratios,
            model.takes(Param::AspectRatio),
            None,
        );
        note("aspect_ratio", changed, &tab.aspect_ratio);
        let changed = option_choice(
            ui,
            "Quality",
            &mut tab.quality,
            &model.qualities,
            model.takes(Param::Quality),
            None,
        );
        note("quality", changed, &tab.quality);
        let changed = option_choice(
            ui,
            "Style",
            &mut tab.style,
            &model.styles,
            model.takes(Param::Style),
            None,
        );
        note("style", changed, &tab.style);
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
    if same_id(&chosen, imageai_core::local_sd::ID) {
        local_sd_ui(ui, tab, &model);
    } else if model.takes(Param::Scheduler) {
        widgets::text_field(ui, "Scheduler", &mut tab.scheduler);
    }
    // The last choices come back next time (`gui.size`… in config.json).
    for (key, value) in chosen_options {
        app.change_config(Arc::new(move |c| set_gui(c, key, &value)));
    }
    inputs_ui(app, ui);
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

/// Local Stable Diffusion's own controls: the scheduler, and the strength of an img2img edit.
fn local_sd_ui(ui: &mut egui::Ui, tab: &mut GenerateTab, model: &ModelInfo) {
    ui.horizontal_wrapped(|ui| {
        if model.takes(Param::Size) && model.sizes.is_empty() {
            let label = ui.label("Size (WxH)");
            ui.add(
                egui::TextEdit::singleline(&mut tab.custom_size)
                    .hint_text("model default")
                    .desired_width(100.0),
            )
            .labelled_by(label.id)
            .on_hover_text("Width x height in pixels, multiples of 8 (512x512 for SD 1.x, 1024x1024 for XL); empty for the model's own.");
        }
        if model.takes(Param::Scheduler) {
            let choices: Vec<(String, String)> =
                std::iter::once((String::new(), "default".to_owned()))
                    .chain(SD_SCHEDULERS.iter().map(|s| ((*s).to_owned(), (*s).to_owned())))
                    .collect();
            if !choices.iter().any(|(v, _)| *v == tab.scheduler.trim()) {
                tab.scheduler.clear();
            }
            widgets::choice(ui, "Scheduler", &mut tab.scheduler, &choices);
        }
        if model.takes(Param::Strength) && !tab.references.is_empty() {
            let label = ui.label("Strength");
            ui.add(egui::Slider::new(&mut tab.strength, 0.0..=1.0).fixed_decimals(2))
                .labelled_by(label.id)
                .on_hover_text("How far to move from the reference image: 0 keeps it, 1 replaces it.");
        }
    });
}

/// A combo box of the model's options for one parameter; true when the user changed it.
fn option_choice(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut Option<String>,
    options: &[String],
    takes: bool,
    default: Option<&str>,
) -> bool {
    if !takes || options.is_empty() {
        return false;
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
    widgets::choice(ui, label, value, &choices)
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
    let mut again = None;
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
                            if let Some(texture) = &job.preview {
                                let [w, h] = texture.size();
                                let scale = PREVIEW_SIDE / w.max(h).max(1) as f32;
                                ui.add(
                                    egui::Image::from_texture(texture)
                                        .fit_to_exact_size(egui::vec2(
                                            w as f32 * scale,
                                            h as f32 * scale,
                                        ))
                                        .alt_text(format!("Preview of job {}", job.id)),
                                );
                            }
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
                            again = Some(job.submission.clone());
                        }
                    });
                });
            }
        });
    if let Some(submission) = again {
        rerun(app, submission);
    }
}

/// What a result's buttons asked for.
enum ResultAction {
    SaveAs(PathBuf),
    Copy(PathBuf),
    OpenFolder(PathBuf),
    SendToEdit(PathBuf),
    Upscale(PathBuf),
    Rerun(JobId),
}

fn results_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Results");
    if app.generate.results.is_empty() {
        ui.weak("Images you make appear here and in History.");
        return;
    }
    let size = egui::vec2(160.0, 160.0);
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        for result in app.generate.results.iter().rev() {
            ui.vertical(|ui| {
                ui.set_max_width(size.x);
                let name = file_name(&result.path);
                crate::thumbs::thumbnail(ui, &mut app.thumbs, &result.path, size, &name);
                ui.weak(format!(
                    "{}: {}",
                    result.provider,
                    short(&result.prompt, 24)
                ));
                let path = || result.path.clone();
                ui.horizontal_wrapped(|ui| {
                    let buttons = [
                        (
                            "Save as…",
                            format!("Save {name} as…"),
                            ResultAction::SaveAs(path()),
                        ),
                        ("Copy", format!("Copy {name}"), ResultAction::Copy(path())),
                        (
                            "Folder",
                            format!("Open folder of {name}"),
                            ResultAction::OpenFolder(path()),
                        ),
                        (
                            "Edit",
                            format!("Send {name} to edit"),
                            ResultAction::SendToEdit(path()),
                        ),
                        (
                            "Upscale",
                            format!("Upscale {name}"),
                            ResultAction::Upscale(path()),
                        ),
                        (
                            "Re-run",
                            format!("Re-run {name}"),
                            ResultAction::Rerun(result.job),
                        ),
                    ];
                    for (text, label, asked) in buttons {
                        if widgets::named_button(ui, text, &label).clicked() {
                            action = Some(asked);
                        }
                    }
                });
            });
        }
    });
    match action {
        None => {}
        Some(ResultAction::SaveAs(path)) => save_as(app, path),
        Some(ResultAction::Copy(path)) => copy(app, path),
        Some(ResultAction::OpenFolder(path)) => {
            if let Some(dir) = path.parent() {
                crate::history::open_in_file_manager(app, dir.to_path_buf());
            }
        }
        Some(ResultAction::SendToEdit(path)) => send_to_edit(app, path),
        Some(ResultAction::Upscale(path)) => upscale(app, path),
        Some(ResultAction::Rerun(id)) => {
            if let Some(job) = app.generate.jobs.iter().find(|j| j.id == id) {
                let submission = job.submission.clone();
                rerun(app, submission);
            }
        }
    }
}

/// Make `path` the image to edit (it is added to the reference images).
pub(crate) fn send_to_edit(app: &mut App, path: PathBuf) {
    let name = file_name(&path);
    app.generate.add_reference(path);
    app.set_tab(crate::app::Tab::Generate);
    app.info(format!(
        "{name} is ready to edit: describe the change and press Generate."
    ));
}

fn save_as(app: &mut App, path: PathBuf) {
    let name = file_name(&path);
    files::save_as(app, &name, move |app, dest| {
        app.background.spawn("save-as", move || {
            let copied = std::fs::copy(&path, &dest);
            Box::new(move |app: &mut App| match copied {
                Ok(_) => app.info(format!("Saved a copy as {}", dest.display())),
                Err(err) => app.error(format!(
                    "Could not save the copy ({err}); check the folder's permissions and free space: {}",
                    dest.display()
                )),
            })
        });
    });
}

/// Put the image on the clipboard (decoded in the background, copied on the UI thread).
fn copy(app: &mut App, path: PathBuf) {
    app.background.spawn("copy-image", move || {
        let decoded = mask::decode(&path);
        Box::new(move |app: &mut App| match decoded {
            Ok(image) => app.generate.pending_copy = Some((file_name(&path), image)),
            Err(message) => app.error(format!("Could not copy the image: {message}")),
        })
    });
}

/// Open the mask brush over `path` (decoded in the background).
fn open_painter(app: &mut App, path: PathBuf) {
    app.background.spawn("open-mask", move || {
        let decoded = mask::decode(&path);
        Box::new(move |app: &mut App| match decoded {
            Ok(image) => app.generate.pending_painter = Some((path, image)),
            Err(message) => app.error(format!("Could not open the image for the mask: {message}")),
        })
    });
}

/// Reference images and the mask: drop them on the window, choose them, or type a path.
fn inputs_ui(app: &mut App, ui: &mut egui::Ui) {
    let hovering = ui.ctx().input(|i| !i.raw.hovered_files.is_empty());
    egui::CollapsingHeader::new("Reference images and mask")
        .id_salt("edit-inputs")
        .default_open(true)
        .show(ui, |ui| {
            if hovering {
                ui.colored_label(
                    ui.visuals().selection.stroke.color,
                    "Drop the images to edit them.",
                );
            }
            ui.weak("Images to edit: drop them on the window, choose them, or type a path. With images here, Generate edits them.");
            let mut add_typed = false;
            let mut choose = false;
            ui.horizontal(|ui| {
                let label = ui.label("Reference image path");
                let field = ui
                    .add(
                        egui::TextEdit::singleline(&mut app.generate.reference_path)
                            .desired_width(300.0),
                    )
                    .labelled_by(label.id);
                add_typed = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                add_typed |= ui.button("Add reference image").clicked();
                choose = ui.button("Choose images…").clicked();
            });
            if add_typed {
                let typed = app.generate.reference_path.trim().to_owned();
                if !typed.is_empty() {
                    let path = imageai_core::paths::expand_tilde(&typed);
                    if path.is_file() {
                        app.generate.add_reference(path);
                        app.generate.reference_path.clear();
                    } else {
                        app.generate.inline_error =
                            Some(format!("There is no file at {}", path.display()));
                    }
                }
            }
            if choose {
                files::pick_images(app, "Reference images", |app, paths| {
                    for path in paths {
                        app.generate.add_reference(path);
                    }
                });
            }
            let mut remove = None;
            let mut paint = None;
            if !app.generate.references.is_empty() {
            ui.horizontal_wrapped(|ui| {
                for (index, path) in app.generate.references.iter().enumerate() {
                    let name = file_name(path);
                    ui.vertical(|ui| {
                        crate::thumbs::thumbnail(
                            ui,
                            &mut app.thumbs,
                            path,
                            egui::vec2(96.0, 96.0),
                            &format!("Reference image {name}"),
                        );
                        ui.horizontal(|ui| {
                            if widgets::named_button(ui, "Mask", &format!("Paint mask on {name}"))
                                .clicked()
                            {
                                paint = Some(path.clone());
                            }
                            if widgets::named_button(ui, "Remove", &format!("Remove {name}"))
                                .clicked()
                            {
                                remove = Some(index);
                            }
                        });
                    });
                }
            });
            }
            if let Some(index) = remove {
                let path = app.generate.references.remove(index);
                if app.generate.painter.as_ref().is_some_and(|p| p.source == path) {
                    app.generate.painter = None;
                }
            }
            if let Some(path) = paint {
                open_painter(app, path);
            }
            mask_ui(app, ui);
        });
}

fn mask_ui(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        match &app.generate.mask_file {
            Some(path) => {
                ui.label(format!("Mask file: {}", file_name(path)));
                if ui.button("Remove mask file").clicked() {
                    app.generate.mask_file = None;
                }
            }
            None => {
                ui.weak("No mask file.");
            }
        }
        if ui.button("Choose mask file…").clicked() {
            files::pick_images(app, "Mask", |app, paths| {
                app.generate.mask_file = paths.into_iter().next();
            });
        }
    });
    let Some(painter) = &mut app.generate.painter else {
        return;
    };
    ui.label(format!("Mask brush on {}", file_name(&painter.source)));
    if let mask::Action::Close = mask::ui(painter, ui) {
        app.generate.painter = None;
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
