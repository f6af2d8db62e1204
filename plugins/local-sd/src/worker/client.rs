//! The host's side: spawns `imageai-sd-worker`, sends requests, and turns its events into
//! results. A worker that exits or crashes becomes [`ClientError::WorkerDied`] with the tail of
//! its stderr; the host keeps running, and killing the worker frees its device memory.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::worker::protocol::{
    AdapterInfo, ErrorKind, Event, GenerateRequest, LoadRequest, Request,
};

/// The binary's name, for hosts that look it up next to their own executable.
pub const WORKER_BINARY: &str = "imageai-sd-worker";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not start the local Stable Diffusion worker ({source}). Reinstall ImageAI or point to the worker binary: {}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local Stable Diffusion worker stopped unexpectedly ({status}). {}", if stderr.is_empty() { "It printed nothing.".to_string() } else { format!("Its last output:\n{stderr}") })]
    WorkerDied { status: String, stderr: String },
    /// The worker reported an error for this request.
    #[error("{message}")]
    Worker { kind: ErrorKind, message: String },
    #[error("the worker sent an unexpected reply: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The worker's classification, when the worker itself reported the error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Worker { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// What a load request reports.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedModel {
    pub family: String,
    pub device: String,
    pub default_scheduler: String,
    pub default_size: u32,
}

/// One generated image, PNG-encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerImage {
    pub index: u32,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    pub png: Vec<u8>,
}

/// A progress report during [`WorkerClient::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerProgress {
    pub step: u32,
    pub total: u32,
    pub preview_png: Option<Vec<u8>>,
}

/// Sends `cancel` to a running generation from another thread.
#[derive(Clone)]
pub struct CancelHandle {
    stdin: Arc<Mutex<ChildStdin>>,
}

impl CancelHandle {
    /// Asks the worker to stop after the current step; `generate` then returns a
    /// `Worker { kind: Cancelled }` error.
    pub fn cancel(&self) {
        if let Ok(mut s) = self.stdin.lock() {
            let line = serde_json::to_string(&Request::Cancel { id: 0 }).unwrap_or_default();
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }
}

/// A running worker process.
pub struct WorkerClient {
    child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    events: Receiver<Option<Event>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
}

impl std::fmt::Debug for WorkerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerClient")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl WorkerClient {
    /// Starts the worker at `path` and waits for it to say it is ready.
    pub fn spawn(path: &Path) -> Result<Self, ClientError> {
        Self::spawn_command(Command::new(path), path)
    }

    /// Starts the worker from a prepared command (extra environment, arguments).
    pub fn spawn_command(mut command: Command, path: &Path) -> Result<Self, ClientError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ClientError::Spawn {
                path: path.to_path_buf(),
                source,
            })?;
        let spawn_err = |what: &str| ClientError::Spawn {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("no {what} pipe")),
        };
        let stdin = child.stdin.take().ok_or_else(|| spawn_err("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| spawn_err("stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| spawn_err("stderr"))?;

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(event) = serde_json::from_str::<Event>(&line)
                    && tx.send(Some(event)).is_err()
                {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = String::new();
                while reader.read_line(&mut buf).unwrap_or(0) > 0 {
                    if let Ok(mut t) = tail.lock() {
                        t.push_back(buf.trim_end().to_string());
                        while t.len() > 20 {
                            t.pop_front();
                        }
                    }
                    buf.clear();
                }
                let mut rest = String::new();
                let _ = reader.read_to_string(&mut rest);
            });
        }
        let mut client = Self {
            child,
            stdin: Arc::new(Mutex::new(stdin)),
            events: rx,
            stderr_tail,
            next_id: 1,
        };
        match client.next_event()? {
            Event::Ready { .. } => Ok(client),
            other => Err(ClientError::Protocol(format!(
                "expected `ready`, got {other:?}"
            ))),
        }
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            stdin: self.stdin.clone(),
        }
    }

    fn died(&mut self) -> ClientError {
        // Give the process a moment to finish exiting so its status is known.
        let mut status = None;
        for _ in 0..50 {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = status.map_or_else(
            || "still running but closed its output".to_string(),
            |s| s.to_string(),
        );
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        ClientError::WorkerDied { status, stderr }
    }

    fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            match self.events.recv_timeout(Duration::from_millis(500)) {
                Ok(Some(e)) => return Ok(e),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => return Err(self.died()),
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        // Drain what it wrote before exiting.
                        if let Ok(Some(e)) = self.events.try_recv() {
                            return Ok(e);
                        }
                        return Err(self.died());
                    }
                }
            }
        }
    }

    fn send(&mut self, make: impl FnOnce(u64) -> Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line =
            serde_json::to_string(&make(id)).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let ok = match self.stdin.lock() {
            Ok(mut s) => writeln!(s, "{line}").and_then(|()| s.flush()).is_ok(),
            Err(_) => false,
        };
        if ok { Ok(id) } else { Err(self.died()) }
    }

    /// Waits for the answer to request `id`, passing other events of it to `on_event`.
    fn wait(
        &mut self,
        id: u64,
        mut on_event: impl FnMut(Event) -> Option<Result<(), ClientError>>,
    ) -> Result<(), ClientError> {
        loop {
            let event = self.next_event()?;
            // Id 0 carries worker-wide news: an unreadable request (an error) or an idle unload.
            if event.id() != id && !(event.id() == 0 && matches!(event, Event::Error { .. })) {
                continue;
            }
            if let Event::Error { kind, message, .. } = event {
                return Err(ClientError::Worker { kind, message });
            }
            if let Some(done) = on_event(event) {
                return done;
            }
        }
    }

    /// Whether the worker process is still running (false once it exited or was killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Loads a model (replacing any loaded one).
    pub fn load(&mut self, load: LoadRequest) -> Result<LoadedModel, ClientError> {
        self.load_with_memory_limit(load, None)
    }

    /// Loads a model whose generations keep their estimated peak memory under
    /// `memory_limit_mib` (see `protocol::parse_memory_limit` for the setting).
    pub fn load_with_memory_limit(
        &mut self,
        load: LoadRequest,
        memory_limit_mib: Option<u64>,
    ) -> Result<LoadedModel, ClientError> {
        let id = self.send(|id| Request::Load {
            id,
            load,
            memory_limit_mib,
        })?;
        let mut loaded = None;
        self.wait(id, |e| match e {
            Event::Loaded {
                family,
                device,
                default_scheduler,
                default_size,
                ..
            } => {
                loaded = Some(LoadedModel {
                    family,
                    device,
                    default_scheduler,
                    default_size,
                });
                Some(Ok(()))
            }
            _ => None,
        })?;
        loaded.ok_or_else(|| ClientError::Protocol("no `loaded` event".into()))
    }

    /// Generates images, reporting progress; returns the PNGs in order.
    pub fn generate(
        &mut self,
        generate: GenerateRequest,
        mut on_progress: impl FnMut(WorkerProgress),
    ) -> Result<Vec<WorkerImage>, ClientError> {
        let id = self.send(|id| Request::Generate { id, generate })?;
        let mut images = Vec::new();
        let mut bad = None;
        self.wait(id, |e| match e {
            Event::Progress {
                step,
                total,
                preview_png,
                ..
            } => {
                let preview_png = preview_png.and_then(|p| STANDARD.decode(p.trim()).ok());
                on_progress(WorkerProgress {
                    step,
                    total,
                    preview_png,
                });
                None
            }
            Event::Image {
                index,
                width,
                height,
                seed,
                png,
                ..
            } => {
                match STANDARD.decode(png.trim()) {
                    Ok(png) => images.push(WorkerImage {
                        index,
                        width,
                        height,
                        seed,
                        png,
                    }),
                    Err(e) => bad = Some(format!("invalid base64 image data: {e}")),
                }
                None
            }
            Event::Done { .. } => Some(Ok(())),
            _ => None,
        })?;
        if let Some(b) = bad {
            return Err(ClientError::Protocol(b));
        }
        Ok(images)
    }

    /// Drops the model; the worker keeps running.
    pub fn unload(&mut self) -> Result<(), ClientError> {
        let id = self.send(|id| Request::Unload { id })?;
        self.wait(id, |e| {
            matches!(e, Event::Unloaded { .. }).then_some(Ok(()))
        })
    }

    pub fn list_devices(&mut self) -> Result<Vec<AdapterInfo>, ClientError> {
        let id = self.send(|id| Request::ListDevices { id })?;
        let mut out = Vec::new();
        self.wait(id, |e| match e {
            Event::Devices { adapters, .. } => {
                out = adapters;
                Some(Ok(()))
            }
            _ => None,
        })?;
        Ok(out)
    }

    /// Asks the worker to exit and waits for it; kills it if it does not exit in 5 seconds.
    pub fn shutdown(mut self) {
        let _ = self.send(|id| Request::Shutdown { id });
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the worker at once (frees all its device memory).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
