//! The worker's side of the protocol: reads requests line by line, runs them on one model, and
//! writes events. A reader thread keeps listening while a generation runs, so `cancel` stops it
//! between steps. Panics inside the engine (device loss, out-of-memory in a backend) are caught
//! and reported as classified errors; the worker keeps serving.

use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::device::{self, DeviceChoice};
use crate::error::Error;
use crate::image_io;
use crate::model_files;
use crate::pipeline::{Control, GenerateParams, LoadOptions, Mode, Precision, StableDiffusion};
use crate::schedulers::SchedulerKind;
use crate::worker::protocol::{ErrorKind, Event, GenerateRequest, LoadRequest, Request};

/// Writes events, one JSON line each, flushed at once.
#[derive(Clone)]
struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    fn send(&self, event: &Event) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        if let Ok(mut w) = self.0.lock() {
            // A closed stdout means the host is gone; the read loop ends on its own then.
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }

    fn error(&self, id: u64, kind: ErrorKind, message: impl Into<String>) {
        self.send(&Event::Error {
            id,
            kind,
            message: message.into(),
        });
    }
}

struct Loaded {
    model: StableDiffusion,
    description: String,
    precision: Precision,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Sorts a backend failure into what the user should do about it.
fn classify(message: &str) -> ErrorKind {
    let m = message.to_lowercase();
    if m.contains("out of memory")
        || m.contains("outofmemory")
        || m.contains("oom")
        || m.contains("allocat")
    {
        ErrorKind::OutOfMemory
    } else if m.contains("device lost") || m.contains("devicelost") || m.contains("lost device") {
        ErrorKind::DeviceLost
    } else {
        ErrorKind::Internal
    }
}

fn error_kind(e: &Error) -> ErrorKind {
    match e {
        Error::Cancelled => ErrorKind::Cancelled,
        Error::ModelNotFound(_) => ErrorKind::ModelNotFound,
        Error::InvalidRequest(_)
        | Error::PromptTooLong { .. }
        | Error::NoSuchDevice(_)
        | Error::MemoryLimit(_) => ErrorKind::InvalidRequest,
        Error::Device(m) => classify(m),
        _ => ErrorKind::Model,
    }
}

/// Serves requests from `input` until `shutdown` or end of input.
pub fn serve(input: impl BufRead + Send + 'static, output: impl Write + Send + 'static) {
    let out = Out(Arc::new(Mutex::new(Box::new(output))));
    out.send(&Event::Ready {
        id: 0,
        version: env!("CARGO_PKG_VERSION").to_string(),
    });

    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Request>();
    {
        let out = out.clone();
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            for line in input.lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Cancel { .. }) => cancel.store(true, Ordering::SeqCst),
                    Ok(req) => {
                        if tx.send(req).is_err() {
                            break;
                        }
                    }
                    Err(e) => out.error(
                        0,
                        ErrorKind::InvalidRequest,
                        format!("unreadable request ({e}): {line}"),
                    ),
                }
            }
            // The host is gone (its end of stdin closed): stop a running generation at the next
            // step instead of finishing images nobody will read.
            cancel.store(true, Ordering::SeqCst);
        });
    }

    let mut loaded: Option<Loaded> = None;
    // The last successful load, to reload after an idle unload.
    let mut last_load: Option<(LoadRequest, Option<u64>)> = None;
    loop {
        let idle = last_load
            .as_ref()
            .and_then(|(l, _)| l.idle_unload_secs)
            .filter(|_| loaded.is_some());
        let req = match idle {
            Some(secs) => match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    loaded = None;
                    out.send(&Event::Unloaded { id: 0 });
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        match req {
            Request::Shutdown { .. } => break,
            Request::Cancel { .. } => {}
            Request::ListDevices { id } => out.send(&Event::Devices {
                id,
                adapters: device::list_adapters(),
            }),
            Request::Unload { id } => {
                loaded = None;
                last_load = None;
                out.send(&Event::Unloaded { id });
            }
            Request::Load {
                id,
                load,
                memory_limit_mib,
            } => {
                loaded = None;
                match catch_unwind(AssertUnwindSafe(|| load_model(&load, memory_limit_mib))) {
                    Ok(Ok(l)) => {
                        out.send(&Event::Loaded {
                            id,
                            family: format!("{:?}", l.model.family()).to_lowercase(),
                            device: l.description.clone(),
                            default_scheduler: l.model.default_scheduler().name().to_string(),
                            default_size: l.model.default_size() as u32,
                        });
                        loaded = Some(l);
                        last_load = Some((load, memory_limit_mib));
                    }
                    Ok(Err(e)) => out.error(id, error_kind(&e), e.to_string()),
                    Err(p) => {
                        let msg = panic_text(&*p);
                        let kind = classify(&msg);
                        let text = match kind {
                            ErrorKind::OutOfMemory => "out of GPU memory while loading the model: try --precision fp16 or --device cpu".to_string(),
                            _ => format!("the engine failed while loading the model: {msg}"),
                        };
                        out.error(id, kind, text);
                    }
                }
            }
            Request::Generate { id, generate } => {
                if loaded.is_none()
                    && let Some((load, limit)) = &last_load
                {
                    // Unloaded while idle: load again before generating.
                    match catch_unwind(AssertUnwindSafe(|| load_model(load, *limit))) {
                        Ok(Ok(l)) => loaded = Some(l),
                        Ok(Err(e)) => {
                            out.error(id, error_kind(&e), e.to_string());
                            continue;
                        }
                        Err(p) => {
                            out.error(id, classify(&panic_text(&*p)), "reloading the model failed");
                            continue;
                        }
                    }
                }
                let Some(l) = &loaded else {
                    out.error(
                        id,
                        ErrorKind::NoModel,
                        "no model is loaded; send a load request first",
                    );
                    continue;
                };
                cancel.store(false, Ordering::SeqCst);
                let result = catch_unwind(AssertUnwindSafe(|| {
                    run_generate(id, &generate, l, &out, &cancel)
                }));
                match result {
                    Ok(Ok(())) => out.send(&Event::Done { id }),
                    Ok(Err(e)) => out.error(id, error_kind(&e), e.to_string()),
                    Err(p) => {
                        let msg = panic_text(&*p);
                        let kind = classify(&msg);
                        let (w, h) = (generate.width.unwrap_or(0), generate.height.unwrap_or(0));
                        let precision = match l.precision {
                            Precision::Fp32 => "fp32",
                            Precision::Fp16 => "fp16",
                        };
                        let text = match kind {
                            ErrorKind::OutOfMemory => {
                                format!(
                                    "out of GPU memory at {w}x{h} {precision}: try fp16 or a smaller size"
                                )
                            }
                            ErrorKind::DeviceLost => {
                                "the GPU was lost (driver reset or removed); load the model again"
                                    .to_string()
                            }
                            _ => format!("the engine failed: {msg}"),
                        };
                        if kind == ErrorKind::DeviceLost {
                            loaded = None;
                        }
                        out.error(id, kind, text);
                    }
                }
            }
        }
    }
}

fn load_model(req: &LoadRequest, memory_limit_mib: Option<u64>) -> Result<Loaded, Error> {
    let root = model_files::resolve(&req.model)?;
    let choice: DeviceChoice = req
        .device
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .unwrap_or_default();
    let (device, description) = device::select(&choice)?;
    let precision: Precision = match &req.precision {
        Some(p) => p.parse()?,
        None => Precision::Fp32,
    };
    let options = LoadOptions {
        precision,
        vae_f32: None,
        low_memory: req.low_memory,
        memory_limit: memory_limit_mib.map(|m| m.saturating_mul(1 << 20)),
    };
    let model = StableDiffusion::load(&root, &device, options)?;
    Ok(Loaded {
        model,
        description,
        precision,
    })
}

fn run_generate(
    id: u64,
    req: &GenerateRequest,
    l: &Loaded,
    out: &Out,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let model = &l.model;
    let size = model.default_size();
    let scheduler = match &req.scheduler {
        Some(s) => s.parse::<SchedulerKind>()?,
        None => model.default_scheduler(),
    };
    let mut width = req.width.map_or(size, |w| w as usize);
    let mut height = req.height.map_or(size, |h| h as usize);
    let strength = f64::from(req.strength.unwrap_or(0.8));
    let mode = match (&req.init_image_png, &req.mask_png) {
        (None, None) => Mode::Txt2Img,
        (None, Some(_)) => return Err(Error::InvalidRequest("a mask needs an init image".into())),
        (Some(img), mask) => {
            let (image, _) = image_io::decode_png(&image_io::decode_base64(img)?)?;
            if req.width.is_none() && req.height.is_none() {
                width = image.width;
                height = image.height;
            }
            match mask {
                None => Mode::Img2Img { image, strength },
                Some(m) => {
                    let (mask_img, luma) = image_io::decode_png(&image_io::decode_base64(m)?)?;
                    if mask_img.width != image.width || mask_img.height != image.height {
                        return Err(Error::InvalidRequest(
                            "the mask and the image differ in size".into(),
                        ));
                    }
                    Mode::Inpaint {
                        image,
                        mask: luma,
                        strength,
                    }
                }
            }
        }
    };
    let n = req.n.unwrap_or(1).max(1) as usize;
    let seed = req.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64 & 0xffff_ffff)
    });
    let init_noise = match &req.init_noise {
        Some(path) => Some(image_io::read_init_noise(Path::new(path))?.1),
        None => None,
    };
    let params = GenerateParams {
        prompt: req.prompt.clone(),
        negative_prompt: req.negative_prompt.clone().unwrap_or_default(),
        width,
        height,
        steps: req.steps.unwrap_or(if scheduler == SchedulerKind::Pndm {
            50
        } else {
            30
        }) as usize,
        guidance_scale: f64::from(req.guidance.unwrap_or(7.5)),
        seed,
        num_images: n,
        scheduler,
        mode,
        init_noise,
        timestep_spacing: req
            .timestep_spacing
            .as_deref()
            .map(str::parse)
            .transpose()?,
    };
    let plan = model.memory_plan(&params)?;
    if plan.saves_memory() || plan.limit_bytes.is_some() {
        // The host keeps the worker's last stderr lines for its error reports.
        eprintln!(
            "memory plan: {}",
            serde_json::to_string(&plan).unwrap_or_default()
        );
    }
    let images = model.generate(&params, &mut |p| {
        let preview_png = if req.preview {
            p.preview
                .as_ref()
                .and_then(|i| image_io::encode_png_base64(i).ok())
        } else {
            None
        };
        out.send(&Event::Progress {
            id,
            step: p.step as u32,
            total: p.total as u32,
            preview_png,
        });
        if cancel.load(Ordering::SeqCst) {
            Control::Cancel
        } else {
            Control::Continue
        }
    })?;
    for (index, image) in images.iter().enumerate() {
        out.send(&Event::Image {
            id,
            index: index as u32,
            width: image.width as u32,
            height: image.height as u32,
            seed,
            png: image_io::encode_png_base64(image)?,
        });
    }
    Ok(())
}
