//! Jobs: one request from provider call to saved images and history, and a queue that runs
//! jobs in the background with progress, cancellation and results as events.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::cancel::CancelToken;
use crate::history::{self, HistoryError, Record, SavedImage};
use crate::provider::{
    CallContext, Capability, EditMode, EditRequest, GenerateRequest, Generation, ModelInfo,
    Provider, ProviderError, ProviderInfo, UpscaleRequest,
};
use crate::templates::TemplateUse;

/// What a job asks of its provider.
#[derive(Debug, Clone)]
pub enum JobRequest {
    Generate(GenerateRequest),
    /// `sources` names the input images for the history (file names, never their bytes).
    Edit {
        request: EditRequest,
        sources: Vec<String>,
    },
    Upscale {
        request: UpscaleRequest,
        source: String,
    },
}

impl JobRequest {
    pub fn model(&self) -> &str {
        match self {
            Self::Generate(r) => &r.model,
            Self::Edit { request, .. } => &request.base.model,
            Self::Upscale { request, .. } => &request.model,
        }
    }

    fn model_mut(&mut self) -> &mut String {
        match self {
            Self::Generate(r) => &mut r.model,
            Self::Edit { request, .. } => &mut request.base.model,
            Self::Upscale { request, .. } => &mut request.model,
        }
    }

    /// The capability a model needs to serve this request.
    pub fn capability(&self) -> Capability {
        match self {
            Self::Generate(_) => Capability::TextToImage,
            Self::Edit { request, .. } => match request.mode {
                EditMode::Edit => Capability::Edit,
                EditMode::Inpaint => Capability::Inpaint,
                EditMode::Variations => Capability::Variations,
                EditMode::Outpaint => Capability::Outpaint,
                EditMode::Erase => Capability::Erase,
                EditMode::SearchReplace => Capability::SearchReplace,
            },
            Self::Upscale { .. } => Capability::Upscale,
        }
    }
}

/// One unit of work for a provider.
#[derive(Debug, Clone)]
pub struct Job {
    /// The provider's id (for the history record).
    pub provider: String,
    pub request: JobRequest,
    pub template: Option<TemplateUse>,
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub record: Record,
    pub saved: Vec<SavedImage>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the images were made but could not be saved: {0}")]
    Save(#[from] HistoryError),
}

impl JobError {
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Provider(ProviderError::Cancelled))
    }
}

/// Fill in the model when none was asked for (the first that can serve the request), and check
/// that the model exists and can do what is asked, before anything is sent.
pub fn resolve_model(
    info: &ProviderInfo,
    request: &mut JobRequest,
) -> Result<ModelInfo, ProviderError> {
    let capability = request.capability();
    let models: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    if request.model().is_empty() {
        let model = info
            .models
            .iter()
            .find(|m| m.supports(capability))
            .ok_or_else(|| {
                ProviderError::InvalidRequest(format!(
                    "{} has no model that can do {}",
                    info.name,
                    capability.as_str()
                ))
            })?;
        *request.model_mut() = model.id.clone();
        return Ok(model.clone());
    }
    let model = info.model(request.model()).ok_or_else(|| {
        ProviderError::InvalidRequest(format!(
            "{} has no model `{}`; choose one of: {}",
            info.name,
            request.model(),
            models.join(", ")
        ))
    })?;
    if !model.supports(capability) {
        let able: Vec<&str> = info
            .models
            .iter()
            .filter(|m| m.supports(capability))
            .map(|m| m.id.as_str())
            .collect();
        return Err(ProviderError::InvalidRequest(format!(
            "{} cannot do {}; models that can: {}",
            model.id,
            capability.as_str(),
            if able.is_empty() {
                "none from this provider".to_owned()
            } else {
                able.join(", ")
            }
        )));
    }
    Ok(model.clone())
}

/// Run one job to the end: call the provider, then save every image with its sidecar in
/// `output_dir`. The record never holds the key, and any echo of it is redacted.
pub fn run(
    provider: &dyn Provider,
    job: &Job,
    ctx: &CallContext,
    output_dir: &Path,
) -> Result<JobOutput, JobError> {
    if ctx.cancel.is_cancelled() {
        return Err(ProviderError::Cancelled.into());
    }
    let mut request = job.request.clone();
    let info = provider.info()?;
    resolve_model(&info, &mut request)?;
    ctx.report(0.0, "sending the request");
    let generation: Generation = match &request {
        JobRequest::Generate(r) => provider.generate(r, ctx)?,
        JobRequest::Edit { request, .. } => provider.edit(request, ctx)?,
        JobRequest::Upscale { request, .. } => provider.upscale(request, ctx)?,
    };
    if generation.images.is_empty() {
        return Err(ProviderError::Other(format!(
            "{} returned no image{}",
            info.name,
            generation
                .note
                .as_deref()
                .map(|n| format!(" (it said: {n})"))
                .unwrap_or_default()
        ))
        .into());
    }
    let mut record = match &request {
        JobRequest::Generate(r) => Record::from_generate(&job.provider, r, &generation),
        JobRequest::Edit { request, sources } => {
            Record::from_edit(&job.provider, request, &generation, sources.clone())
        }
        JobRequest::Upscale { request, source } => {
            let mut record = Record::new(
                &job.provider,
                &request.model,
                request.prompt.clone().unwrap_or_default(),
            );
            record.settings = match serde_json::to_value(request) {
                Ok(serde_json::Value::Object(mut map)) => {
                    map.remove("model");
                    map.remove("prompt");
                    map.insert("mode".into(), "upscale".into());
                    map
                }
                _ => serde_json::Map::new(),
            };
            record.seed = generation.seed;
            record.request_id = generation.request_id.clone();
            record.finish_reason = generation.finish_reason.clone();
            record.warnings = generation.warnings.clone();
            record.metadata = generation.metadata.clone();
            record.output_text = generation.note.clone();
            record.source_images = vec![source.clone()];
            record
        }
    };
    if let Some(used) = &job.template {
        record = record.with_template(used.clone());
    }
    if let Some(key) = &ctx.api_key {
        record.redact_secrets(std::slice::from_ref(key));
    }
    ctx.report(1.0, "saving");
    let saved = history::save(output_dir, &record, &generation.images)?;
    Ok(JobOutput { record, saved })
}

/// A job's number in its queue.
pub type JobId = u64;

/// What the queue reports, in order per job: `Started`, any `Progress`, then `Finished`.
#[derive(Debug)]
pub enum JobEvent {
    Started {
        id: JobId,
    },
    Progress {
        id: JobId,
        fraction: f32,
        message: String,
    },
    Finished {
        id: JobId,
        result: Result<JobOutput, JobError>,
    },
}

/// A submitted job: its id and the way to cancel it (queued or running).
#[derive(Debug, Clone)]
pub struct JobHandle {
    pub id: JobId,
    pub cancel: CancelToken,
}

struct Queued {
    id: JobId,
    provider: Arc<dyn Provider>,
    job: Job,
    ctx: CallContext,
    output_dir: PathBuf,
}

/// Runs jobs on background threads, first in first out, and reports [`JobEvent`]s.
pub struct JobQueue {
    sender: Option<Sender<Queued>>,
    events: Receiver<JobEvent>,
    next_id: AtomicU64,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl JobQueue {
    /// A queue running up to `workers` jobs at once (at least one).
    pub fn new(workers: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Queued>();
        let (event_tx, events) = mpsc::channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..workers.max(1))
            .map(|n| {
                let receiver = receiver.clone();
                let events = event_tx.clone();
                std::thread::Builder::new()
                    .name(format!("imageai-job-{n}"))
                    .spawn(move || worker(&receiver, &events))
            })
            .filter_map(Result::ok)
            .collect();
        Self {
            sender: Some(sender),
            events,
            next_id: AtomicU64::new(1),
            workers,
        }
    }

    /// Queue a job. Progress reported through `ctx` also arrives as events.
    pub fn submit(
        &self,
        provider: Arc<dyn Provider>,
        job: Job,
        ctx: CallContext,
        output_dir: PathBuf,
    ) -> JobHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = JobHandle {
            id,
            cancel: ctx.cancel.clone(),
        };
        if let Some(sender) = &self.sender
            && sender
                .send(Queued {
                    id,
                    provider,
                    job,
                    ctx,
                    output_dir,
                })
                .is_ok()
        {
            return handle;
        }
        // No worker thread could be started: cancel rather than lose the job silently.
        handle.cancel.cancel();
        handle
    }

    /// The next event, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<JobEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The next event if one is ready (for a UI loop).
    pub fn try_recv(&self) -> Option<JobEvent> {
        self.events.try_recv().ok()
    }
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        self.sender.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker(receiver: &Mutex<Receiver<Queued>>, events: &Sender<JobEvent>) {
    loop {
        let next = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(Queued {
            id,
            provider,
            job,
            mut ctx,
            output_dir,
        }) = next
        else {
            return;
        };
        let _ = events.send(JobEvent::Started { id });
        let progress_events = events.clone();
        let outer = ctx.progress.take();
        ctx.progress = Some(Arc::new(move |fraction, message: &str| {
            if let Some(outer) = &outer {
                outer(fraction, message);
            }
            let _ = progress_events.send(JobEvent::Progress {
                id,
                fraction,
                message: message.to_owned(),
            });
        }));
        let result = run(provider.as_ref(), &job, &ctx, &output_dir);
        let _ = events.send(JobEvent::Finished { id, result });
    }
}
