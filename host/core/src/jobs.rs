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

/// The model id of the entry that stands for "any model id this provider can run".
pub const ANY_MODEL: &str = "*";

/// Fill in the model when none was asked for (the first that can serve the request), and check
/// that the model exists and can do what is asked, before anything is sent.
pub fn resolve_model(
    info: &ProviderInfo,
    request: &mut JobRequest,
) -> Result<ModelInfo, ProviderError> {
    let capability = request.capability();
    let models: Vec<&str> = info
        .models
        .iter()
        .map(|m| m.id.as_str())
        .filter(|id| *id != ANY_MODEL)
        .collect();
    if request.model().is_empty() {
        let model = info
            .models
            .iter()
            .find(|m| m.id != ANY_MODEL && m.supports(capability))
            .ok_or_else(|| {
                // A provider that runs any model by id may list none of its own (local Stable
                // Diffusion with nothing installed): say how to name one.
                let any = info
                    .model(ANY_MODEL)
                    .filter(|any| any.supports(capability))
                    .map(|any| format!("; choose one with --model ({})", any.name))
                    .unwrap_or_default();
                ProviderError::InvalidRequest(format!(
                    "{} has no model that can do {}{any}",
                    info.name,
                    capability.as_str()
                ))
            })?;
        *request.model_mut() = model.id.clone();
        return Ok(model.clone());
    }
    // A provider that runs any model by id (Replicate, Hugging Face) lists its curated models
    // and then an entry `*` describing what any other model gets.
    let any = info
        .model(ANY_MODEL)
        .filter(|_| request.model() != ANY_MODEL)
        .map(|any| ModelInfo {
            id: request.model().to_owned(),
            name: request.model().to_owned(),
            ..any.clone()
        });
    let model = info
        .model(request.model())
        .filter(|m| m.id != ANY_MODEL)
        .cloned()
        .or(any)
        .ok_or_else(|| {
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
            .filter(|m| m.id != ANY_MODEL && m.supports(capability))
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
    Ok(model)
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
// A handful of events per job, each moved once: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::provider::{Image, ModelInfo, Param};
    use crate::secret::Secret;

    const KEY: &str = "sk-job-test-key-123456";

    fn tiny_png() -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, 2, 2);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
            .unwrap();
        writer.finish().unwrap();
        bytes
    }

    /// A provider that answers after `delay`, in steps that honour cancellation, and echoes the
    /// key into its note (a misbehaving provider the record must be cleaned of).
    struct Fake {
        delay: Duration,
        calls: AtomicUsize,
    }

    impl Provider for Fake {
        fn info(&self) -> Result<ProviderInfo, ProviderError> {
            Ok(ProviderInfo {
                id: "fake".into(),
                name: "Fake".into(),
                version: "1.0.0".into(),
                models: vec![
                    ModelInfo {
                        id: "painter".into(),
                        name: "Painter".into(),
                        capabilities: vec![Capability::TextToImage],
                        params: vec![Param::N, Param::Seed],
                        max_n: 4,
                        ..ModelInfo::default()
                    },
                    ModelInfo {
                        id: "editor".into(),
                        name: "Editor".into(),
                        capabilities: vec![Capability::Edit, Capability::Inpaint],
                        ..ModelInfo::default()
                    },
                ],
            })
        }

        fn generate(
            &self,
            request: &GenerateRequest,
            ctx: &CallContext,
        ) -> Result<Generation, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let steps = 10;
            for step in 0..steps {
                if ctx.cancel.is_cancelled() {
                    return Err(ProviderError::Cancelled);
                }
                ctx.report(step as f32 / steps as f32, "painting");
                std::thread::sleep(self.delay / steps);
            }
            let key = ctx
                .api_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default();
            Ok(Generation {
                images: (0..request.n.max(1))
                    .map(|_| Image {
                        mime: "image/png".into(),
                        data: tiny_png(),
                    })
                    .collect(),
                seed: request.seed.or(Some(7)),
                note: Some(format!("made with {key}")),
                ..Generation::default()
            })
        }

        fn edit(&self, _: &EditRequest, _: &CallContext) -> Result<Generation, ProviderError> {
            Err(ProviderError::Server("edit failed".into()))
        }

        fn upscale(
            &self,
            _: &UpscaleRequest,
            _: &CallContext,
        ) -> Result<Generation, ProviderError> {
            Err(ProviderError::InvalidRequest("no upscaling".into()))
        }

        fn check_key(&self, _: &CallContext) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    fn fake(delay_ms: u64) -> Arc<Fake> {
        Arc::new(Fake {
            delay: Duration::from_millis(delay_ms),
            calls: AtomicUsize::new(0),
        })
    }

    fn job(model: &str, prompt: &str, n: u32) -> Job {
        Job {
            provider: "fake".into(),
            request: JobRequest::Generate(GenerateRequest {
                model: model.into(),
                prompt: prompt.into(),
                n,
                ..GenerateRequest::default()
            }),
            template: None,
        }
    }

    fn ctx() -> CallContext {
        CallContext::new(Some(Secret::new(KEY)), Default::default())
    }

    #[test]
    fn run_saves_every_image_and_keeps_the_key_out() {
        let dir = tempfile::tempdir().unwrap();
        let provider = fake(0);
        let output = run(
            provider.as_ref(),
            &job("painter", "three dots", 3),
            &ctx(),
            dir.path(),
        )
        .unwrap();
        assert_eq!(output.saved.len(), 3);
        assert_eq!(output.record.seed, Some(7));
        assert_eq!(output.record.output_text.as_deref(), Some("made with ***"));
        for saved in &output.saved {
            for path in [&saved.image, &saved.sidecar] {
                let bytes = std::fs::read(path).unwrap();
                assert!(
                    !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                    "key in {}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_model_is_checked_and_defaulted_before_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let provider = fake(0);
        let err = run(provider.as_ref(), &job("nope", "x", 1), &ctx(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("painter, editor"), "{err}");
        let err = run(
            provider.as_ref(),
            &job("editor", "x", 1),
            &ctx(),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("models that can: painter"),
            "{err}"
        );
        assert_eq!(provider.calls.load(Ordering::SeqCst), 0, "nothing was sent");
        let output = run(provider.as_ref(), &job("", "x", 1), &ctx(), dir.path()).unwrap();
        assert_eq!(output.record.model, "painter");
    }

    #[test]
    fn a_provider_with_an_any_entry_takes_any_model_id() {
        let mut info = fake(0).info().unwrap();
        info.models.push(ModelInfo {
            id: ANY_MODEL.into(),
            name: "Any model".into(),
            capabilities: vec![Capability::TextToImage],
            max_n: 2,
            ..ModelInfo::default()
        });
        let mut request = job("owner/some-model:abc", "x", 1).request;
        let model = resolve_model(&info, &mut request).unwrap();
        assert_eq!(
            (model.id.as_str(), model.max_n),
            ("owner/some-model:abc", 2)
        );
        let mut star = job(ANY_MODEL, "x", 1).request;
        assert!(
            resolve_model(&info, &mut star).is_err(),
            "`*` itself is no model"
        );
        let mut default = job("", "x", 1).request;
        assert_eq!(resolve_model(&info, &mut default).unwrap().id, "painter");
        info.models.retain(|m| m.id == ANY_MODEL);
        let mut none = job("", "x", 1).request;
        match resolve_model(&info, &mut none) {
            Err(ProviderError::InvalidRequest(message)) => assert!(
                message.contains("choose one with --model (Any model)"),
                "`*` is never the default, and the error says how to name one: {message}"
            ),
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn the_queue_runs_jobs_in_order_with_progress_and_cancellation() {
        let dir = tempfile::tempdir().unwrap();
        let queue = JobQueue::new(1);
        let provider = fake(300);
        let first = queue.submit(
            provider.clone(),
            job("painter", "first", 1),
            ctx(),
            dir.path().into(),
        );
        let second = queue.submit(
            provider.clone(),
            job("painter", "second", 1),
            ctx(),
            dir.path().into(),
        );
        let third = queue.submit(
            provider.clone(),
            job("painter", "third", 1),
            ctx(),
            dir.path().into(),
        );
        second.cancel.cancel(); // still queued: it must not run at all
        let mut finished = Vec::new();
        let mut progress = 0;
        while finished.len() < 3 {
            match queue
                .recv_timeout(Duration::from_secs(10))
                .expect("the queue stalled")
            {
                JobEvent::Started { .. } => {}
                JobEvent::Progress { id, .. } => {
                    assert_ne!(id, second.id);
                    progress += 1;
                }
                JobEvent::Finished { id, result } => finished.push((id, result)),
            }
        }
        assert!(progress >= 10, "progress events arrive ({progress})");
        let ids: Vec<JobId> = finished.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [first.id, second.id, third.id]);
        assert!(finished[0].1.is_ok());
        assert!(finished[1].1.as_ref().is_err_and(JobError::is_cancelled));
        assert!(finished[2].1.is_ok());
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_running_job_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let queue = JobQueue::new(2);
        let handle = queue.submit(
            fake(5_000),
            job("painter", "slow", 1),
            ctx(),
            dir.path().into(),
        );
        let started = std::time::Instant::now();
        loop {
            match queue
                .recv_timeout(Duration::from_secs(10))
                .expect("the queue stalled")
            {
                JobEvent::Progress { .. } => handle.cancel.cancel(),
                JobEvent::Finished { result, .. } => {
                    assert!(result.is_err_and(|e| e.is_cancelled()));
                    break;
                }
                JobEvent::Started { .. } => {}
            }
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(0),
            0,
            "nothing saved"
        );
    }
}
