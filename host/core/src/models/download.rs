//! Fetching a repository's files into the hub cache: ranged requests that resume an
//! `.incomplete` blob, SHA-256 and size checks before a blob is renamed into place, progress
//! events, cancellation, and the order that keeps a partial install from looking installed
//! (blobs, then their pointers, `model_index.json`'s pointer, and `refs/<revision>` last).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{self, SHA256};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::cache::{self, HubCache};
use super::hub::{self, Hub};
use super::select::RepoFile;
use super::write;
use super::{ModelError, human_bytes};
use crate::cancel::CancelToken;

/// How often progress is reported at most, per file.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Chunks in flight between the network and the writer thread (a few MB).
const CHANNEL_CHUNKS: usize = 64;

/// Totals for the whole install, sent with every progress event.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Bytes of the install on disk so far (cached files and resumed parts included).
    pub done: u64,
    /// Bytes of the whole install.
    pub total: u64,
    /// Bytes fetched over the network in this run, per second since it started.
    pub bytes_per_sec: f64,
    /// Time left at that speed, when known.
    pub eta_secs: Option<f64>,
}

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedFile {
    pub path: String,
    pub size: u64,
    /// Already in the cache (from an earlier install, or from Python tools).
    pub cached: bool,
}

/// What an install reports while it runs. The CLI draws it with indicatif; the GUI subscribes
/// through [`ProgressSink::channel`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DownloadEvent {
    /// The plan is known: every file of the install and what must be fetched.
    Planned {
        repo: String,
        revision: String,
        commit: String,
        files: Vec<PlannedFile>,
        totals: Totals,
    },
    /// A file's transfer begins (again, after a broken connection), `resume_from` bytes in.
    FileStarted {
        path: String,
        size: u64,
        resume_from: u64,
    },
    /// Bytes arrived.
    Bytes {
        path: String,
        file_done: u64,
        file_size: u64,
        totals: Totals,
    },
    /// A file is verified and in place.
    FileDone {
        path: String,
        size: u64,
        cached: bool,
    },
    /// Everything is in place.
    Finished { totals: Totals },
}

/// Where progress events go: a callback that must be cheap (it runs on download threads).
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(&DownloadEvent) + Send + Sync>);

impl ProgressSink {
    pub fn new(callback: impl Fn(&DownloadEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(callback))
    }

    /// Events are dropped.
    pub fn none() -> Self {
        Self::new(|_| {})
    }

    /// Events go to a channel (for a GUI that polls each frame).
    pub fn channel() -> (Self, std::sync::mpsc::Receiver<DownloadEvent>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let sink = Self::new(move |event| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(event.clone());
            }
        });
        (sink, rx)
    }

    pub fn emit(&self, event: &DownloadEvent) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// Running totals shared by the file tasks.
struct Counter {
    done: AtomicU64,
    fetched: AtomicU64,
    total: u64,
    started: Instant,
}

impl Counter {
    fn totals(&self) -> Totals {
        let done = self.done.load(Ordering::Relaxed);
        let fetched = self.fetched.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let bytes_per_sec = if secs > 0.0 {
            fetched as f64 / secs
        } else {
            0.0
        };
        let eta_secs =
            (bytes_per_sec > 0.0).then(|| self.total.saturating_sub(done) as f64 / bytes_per_sec);
        Totals {
            done,
            total: self.total,
            bytes_per_sec,
            eta_secs,
        }
    }

    fn add(&self, bytes: u64, fetched: bool) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        if fetched {
            self.fetched.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn remove(&self, bytes: u64) {
        let _ = self
            .done
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(bytes))
            });
    }
}

/// Tunables of one install.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Attempts after a broken connection, each resuming where the last stopped.
    pub retries: u32,
    /// Files fetched at the same time.
    pub parallel: usize,
}

/// One file to put in the snapshot.
#[derive(Debug, Clone)]
struct Job {
    file: RepoFile,
    etag: String,
    size: u64,
    sha256: Option<String>,
    /// The snapshot pointer exists and resolves: nothing to do.
    linked: bool,
    /// The blob exists with the right size: only the pointer is missing.
    blob_present: bool,
}

/// The result of fetching a set of files of one commit.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub snapshot: PathBuf,
    pub files: Vec<PlannedFile>,
    pub downloaded_bytes: u64,
    pub cached_bytes: u64,
    pub elapsed: Duration,
}

/// Fetch `files` of `repo` at `commit` into the cache. `revision` is what the user asked for;
/// when it is a branch or tag its ref is written last, and only when `write_ref` is set (a
/// partial file set, such as tokenizer files for an import, leaves the ref alone).
#[allow(clippy::too_many_arguments)] // the one entry point; the caller has every piece at hand
pub async fn fetch(
    hub: &Hub,
    cache: &HubCache,
    repo: &str,
    revision: &str,
    commit: &str,
    files: &[RepoFile],
    write_ref: bool,
    options: Options,
    sink: &ProgressSink,
    cancel: &CancelToken,
) -> Result<Fetched, ModelError> {
    for file in files {
        if !cache::safe_relative_path(&file.path) {
            return Err(ModelError::BadResponse {
                reason: format!("the Hub listed an unsafe file path `{}`", file.path),
                url: hub.page(repo),
            });
        }
    }

    // 1. What is there already, and the blob names (etags) of the rest.
    let jobs: Vec<Job> = futures_util::stream::iter(files.iter().cloned())
        .map(|file| plan_file(hub, cache, repo, commit, file))
        .buffered(8)
        .try_collect()
        .await?;
    if cancel.is_cancelled() {
        return Err(ModelError::Cancelled);
    }

    // 2. Enough room for what is missing?
    let needed: u64 = jobs
        .iter()
        .filter(|j| !j.linked && !j.blob_present)
        .map(|j| {
            let partial = fs::metadata(cache.incomplete_path(repo, &j.etag))
                .map(|m| m.len())
                .unwrap_or(0);
            j.size.saturating_sub(partial)
        })
        .sum();
    check_space(cache.root(), needed)?;

    let planned: Vec<PlannedFile> = jobs
        .iter()
        .map(|j| PlannedFile {
            path: j.file.path.clone(),
            size: j.size,
            cached: j.linked || j.blob_present,
        })
        .collect();
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let cached_bytes: u64 = jobs
        .iter()
        .filter(|j| j.linked || j.blob_present)
        .map(|j| j.size)
        .sum();
    let counter = Arc::new(Counter {
        done: AtomicU64::new(cached_bytes),
        fetched: AtomicU64::new(0),
        total,
        started: Instant::now(),
    });
    sink.emit(&DownloadEvent::Planned {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        commit: commit.to_owned(),
        files: planned.clone(),
        totals: counter.totals(),
    });

    // 3. Fetch and link everything but model_index.json, whose pointer marks a complete
    //    snapshot, so it is linked last.
    let (index, mut rest): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| j.file.path == "model_index.json");
    // The largest first, so the small ones fill in beside it rather than the largest starting
    // last and finishing alone.
    rest.sort_by_key(|j| std::cmp::Reverse(j.size));
    let context = FileContext {
        hub,
        cache,
        repo,
        commit,
        options,
        sink,
        cancel,
        counter: &counter,
    };
    let context = &context;
    // Owned jobs keep the futures free of higher-ranked borrows (they must be `Send`).
    futures_util::stream::iter(rest)
        .map(|job| async move { context.put(&job).await })
        .buffer_unordered(options.parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    for job in &index {
        context.put(job).await?;
    }

    // 4. The ref last: from here on the install is visible under its branch name.
    if write_ref && !cache::is_commit_hash(revision) {
        cache.write_ref(repo, revision, commit).map_err(|e| {
            let (path, reason) = e.into_parts();
            ModelError::Io {
                action: "write the revision's ref".into(),
                path,
                reason,
            }
        })?;
    }
    sink.emit(&DownloadEvent::Finished {
        totals: counter.totals(),
    });
    Ok(Fetched {
        snapshot: cache.snapshot_dir(repo, commit),
        files: planned,
        downloaded_bytes: counter.fetched.load(Ordering::Relaxed),
        cached_bytes,
        elapsed: counter.started.elapsed(),
    })
}

/// Learn a file's blob name and whether it is already there. A pointer that resolves means the
/// file is in place (whoever put it there: us or Python) and no request is made.
async fn plan_file(
    hub: &Hub,
    cache: &HubCache,
    repo: &str,
    commit: &str,
    file: RepoFile,
) -> Result<Job, ModelError> {
    let pointer = cache.pointer_path(repo, commit, &file.path);
    if let Some(on_disk) = cache::resolved_size(&pointer)
        && file.size.is_none_or(|s| s == on_disk)
    {
        let etag = fs::read_link(&pointer)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        return Ok(Job {
            size: on_disk,
            sha256: file.sha256.clone(),
            file,
            etag,
            linked: true,
            blob_present: true,
        });
    }
    let meta = hub.file_meta(repo, commit, &file.path).await?;
    if let Some(served) = &meta.commit
        && served != commit
    {
        return Err(ModelError::BadResponse {
            reason: format!(
                "asked for {} at {commit} but got commit {served}",
                file.path
            ),
            url: hub.resolve_url(repo, commit, &file.path),
        });
    }
    let size = file
        .size
        .or(meta.size)
        .ok_or_else(|| ModelError::BadResponse {
            reason: format!("no size for {}", file.path),
            url: hub.resolve_url(repo, commit, &file.path),
        })?;
    // The LFS hash from the file list, else an etag that is one (LFS etags are the SHA-256).
    let sha256 = file.sha256.clone().or_else(|| {
        (meta.etag.len() == 64 && meta.etag.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| meta.etag.to_ascii_lowercase())
    });
    let blob_present = fs::metadata(cache.blob_path(repo, &meta.etag))
        .is_ok_and(|m| m.is_file() && m.len() == size);
    Ok(Job {
        file,
        etag: meta.etag,
        size,
        sha256,
        linked: false,
        blob_present,
    })
}

fn check_space(root: &Path, needed: u64) -> Result<(), ModelError> {
    if needed == 0 {
        return Ok(());
    }
    let dir = cache::existing_ancestor(root);
    match fs4::available_space(dir) {
        Ok(available) if available < needed => Err(ModelError::NotEnoughSpace {
            needed: human_bytes(needed),
            available: human_bytes(available),
            dir: root.to_path_buf(),
        }),
        // Not knowing the free space is no reason to refuse: the write reports a full disk.
        _ => Ok(()),
    }
}

struct FileContext<'a> {
    hub: &'a Hub,
    cache: &'a HubCache,
    repo: &'a str,
    commit: &'a str,
    options: Options,
    sink: &'a ProgressSink,
    cancel: &'a CancelToken,
    counter: &'a Counter,
}

/// Why one attempt at a file failed.
enum Attempt {
    /// The connection broke: resume and try again.
    Broken(String),
    Fatal(ModelError),
}

impl FileContext<'_> {
    /// Make `job`'s pointer resolve: download and verify its blob if needed, then link it.
    async fn put(&self, job: &Job) -> Result<(), ModelError> {
        if job.linked {
            self.sink.emit(&DownloadEvent::FileDone {
                path: job.file.path.clone(),
                size: job.size,
                cached: true,
            });
            return Ok(());
        }
        if !job.blob_present {
            let lock = self.lock(job).await?;
            // Another process may have finished it while we waited for the lock.
            let blob = self.cache.blob_path(self.repo, &job.etag);
            if !fs::metadata(&blob).is_ok_and(|m| m.len() == job.size) {
                self.download(job).await?;
            } else {
                self.counter.add(job.size, false);
            }
            drop(lock);
        }
        self.cache
            .link_pointer(self.repo, self.commit, &job.file.path, &job.etag)
            .map_err(|reason| ModelError::Io {
                action: format!("link {} into the snapshot", job.file.path),
                path: self
                    .cache
                    .pointer_path(self.repo, self.commit, &job.file.path),
                reason,
            })?;
        self.sink.emit(&DownloadEvent::FileDone {
            path: job.file.path.clone(),
            size: job.size,
            cached: job.blob_present,
        });
        Ok(())
    }

    /// Hold `.locks/…/<etag>.lock` (the lock Python's `huggingface_hub` takes for the same blob).
    async fn lock(&self, job: &Job) -> Result<File, ModelError> {
        let path = self.cache.lock_path(self.repo, &job.etag);
        let io_err = |reason| ModelError::Io {
            action: "create the download lock".into(),
            path: path.clone(),
            reason,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) => {
                    if !told {
                        tracing::info!(file = %job.file.path, "another download of this file is running; waiting for it");
                        told = true;
                    }
                    if self.cancel.is_cancelled() {
                        return Err(ModelError::Cancelled);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(fs::TryLockError::Error(reason)) => {
                    // A file system without locks: go on unlocked rather than fail.
                    tracing::debug!(%reason, "could not lock; continuing without the lock");
                    return Ok(file);
                }
            }
        }
    }

    async fn download(&self, job: &Job) -> Result<(), ModelError> {
        let mut attempt = 0;
        // The bytes of this file in the totals; each attempt recounts from what is on disk.
        let mut counted = 0u64;
        loop {
            match self.try_download(job, &mut counted).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Broken(reason)) => {
                    let done = fs::metadata(self.cache.incomplete_path(self.repo, &job.etag))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    if attempt >= self.options.retries {
                        return Err(ModelError::Interrupted {
                            file: job.file.path.clone(),
                            done: human_bytes(done),
                            total: human_bytes(job.size),
                            reason,
                        });
                    }
                    attempt += 1;
                    tracing::info!(file = %job.file.path, %reason, attempt, "the connection broke; resuming");
                    let pause = Duration::from_millis(250 * (1 << attempt.min(5)));
                    tokio::time::sleep(pause).await;
                    if self.cancel.is_cancelled() {
                        return Err(ModelError::Cancelled);
                    }
                }
            }
        }
    }

    /// One attempt: continue `<etag>.incomplete` from its length, verify, rename to the blob.
    async fn try_download(&self, job: &Job, counted: &mut u64) -> Result<(), Attempt> {
        let path = &job.file.path;
        let partial = self.cache.incomplete_path(self.repo, &job.etag);
        let blobs = partial.parent().map(Path::to_path_buf).unwrap_or_default();
        let io_fatal = |action: &str, reason: io::Error| {
            Attempt::Fatal(self.io_error(action, &partial, path, reason))
        };
        fs::create_dir_all(&blobs).map_err(|e| io_fatal("create the blobs folder", e))?;
        let mut have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > job.size {
            fs::remove_file(&partial)
                .map_err(|e| io_fatal("remove a damaged partial download", e))?;
            have = 0;
        }

        // The part already on disk is hashed before the request, so the connection never
        // waits for it.
        let mut hasher = None;
        if job.sha256.is_some() {
            let target = partial.clone();
            hasher = match tokio::task::spawn_blocking(move || hash_prefix(&target, have)).await {
                Ok(Ok(hasher)) => Some(hasher),
                Ok(Err(e)) => return Err(io_fatal("read the partial download", e)),
                Err(e) => return Err(io_fatal("hash the partial download", io::Error::other(e))),
            };
        }

        let url = self.hub.resolve_url(self.repo, self.commit, path);
        let mut response = None;
        if have < job.size {
            let mut request = self.hub.get(&url);
            if have > 0 {
                request = request.header(RANGE, format!("bytes={have}-"));
            }
            let sent = tokio::select! {
                sent = request.send() => sent,
                () = cancelled(self.cancel) => return Err(Attempt::Fatal(ModelError::Cancelled)),
            };
            let answer = match sent {
                Ok(answer) => answer,
                Err(e) if e.is_connect() && !e.is_timeout() => {
                    return Err(Attempt::Fatal(hub::network(&e, &url)));
                }
                Err(e) => return Err(Attempt::Broken(reason_of(&e))),
            };
            match answer.status() {
                StatusCode::PARTIAL_CONTENT if have > 0 => {
                    let start = answer
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if start != Some(have) {
                        return Err(Attempt::Fatal(ModelError::BadResponse {
                            reason: format!(
                                "asked for {path} from byte {have} but got another range"
                            ),
                            url,
                        }));
                    }
                }
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                    // The server sent the whole file: start over.
                    if have > 0 {
                        File::create(&partial)
                            .map_err(|e| io_fatal("restart the partial download", e))?;
                        have = 0;
                        hasher = hasher.map(|_| digest::Context::new(&SHA256));
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    fs::remove_file(&partial)
                        .map_err(|e| io_fatal("remove a damaged partial download", e))?;
                    return Err(Attempt::Broken(
                        "the server refused to resume; starting the file over".into(),
                    ));
                }
                status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(Attempt::Broken(format!("HTTP {}", status.as_u16())));
                }
                _ => {
                    return Err(Attempt::Fatal(
                        self.hub
                            .status_error(answer, self.repo, Some(self.commit), Some(path))
                            .await,
                    ));
                }
            }
            response = Some(answer);
        }

        self.sink.emit(&DownloadEvent::FileStarted {
            path: path.clone(),
            size: job.size,
            resume_from: have,
        });
        self.counter.remove(*counted);
        self.counter.add(have, false);
        *counted = have;
        // The network is read on this task; each file's chunks go through a bounded channel
        // to a blocking thread of its own that writes them and hashes them on the way. So the
        // network and the files' hashes and disk writes work at the same time, files fetched
        // in parallel on as many cores. Under direct I/O the hash reads each chunk from its
        // copy in the aligned buffer, still in the core's cache (the chunk itself arrived on
        // another core): 2.0 GB/s there against 1.3 GB/s.
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(CHANNEL_CHUNKS);
        let target = partial.clone();
        let writer = tokio::task::spawn_blocking(move || write_and_hash(&target, have, hasher, rx));

        let mut written = have;
        let mut outcome = Ok(());
        if let Some(mut answer) = response {
            let mut last_report = Instant::now();
            // One watcher for the whole file: a timer per chunk would cost more than the copy.
            let mut stop = std::pin::pin!(cancelled(self.cancel));
            loop {
                let chunk = tokio::select! {
                    biased;
                    chunk = answer.chunk() => chunk,
                    () = &mut stop => {
                        outcome = Err(Attempt::Fatal(ModelError::Cancelled));
                        break;
                    }
                };
                let chunk = match chunk {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => {
                        outcome = Err(Attempt::Broken(reason_of(&e)));
                        break;
                    }
                };
                let len = chunk.len() as u64;
                if written + len > job.size {
                    outcome = Err(Attempt::Fatal(ModelError::SizeMismatch {
                        file: path.clone(),
                        expected: job.size,
                        actual: written + len,
                    }));
                    break;
                }
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed: its error comes from joining it
                }
                written += len;
                *counted += len;
                self.counter.add(len, true);
                if last_report.elapsed() >= PROGRESS_EVERY {
                    last_report = Instant::now();
                    self.sink.emit(&DownloadEvent::Bytes {
                        path: path.clone(),
                        file_done: written,
                        file_size: job.size,
                        totals: self.counter.totals(),
                    });
                }
            }
        }
        drop(tx);
        let digest = match writer.await {
            Ok(Ok(digest)) => digest,
            Ok(Err(e)) => return Err(io_fatal("write the download", e)),
            Err(e) => return Err(io_fatal("write the download", io::Error::other(e))),
        };
        if let Err(attempt) = outcome {
            if let Attempt::Fatal(ModelError::SizeMismatch { .. }) = &attempt {
                let _ = fs::remove_file(&partial);
                self.counter.remove(*counted);
                *counted = 0;
            }
            return Err(attempt);
        }
        self.sink.emit(&DownloadEvent::Bytes {
            path: path.clone(),
            file_done: written,
            file_size: job.size,
            totals: self.counter.totals(),
        });
        if written < job.size {
            return Err(Attempt::Broken(format!(
                "the server closed the connection after {} of {}",
                human_bytes(written),
                human_bytes(job.size)
            )));
        }
        if let (Some(expected), Some(digest)) = (&job.sha256, digest) {
            let actual = hex::encode(digest);
            if &actual != expected {
                let _ = fs::remove_file(&partial);
                self.counter.remove(*counted);
                *counted = 0;
                return Err(Attempt::Fatal(ModelError::ChecksumMismatch {
                    file: path.clone(),
                    expected: expected.clone(),
                    actual,
                }));
            }
        }
        let blob = self.cache.blob_path(self.repo, &job.etag);
        fs::rename(&partial, &blob)
            .map_err(|e| io_fatal("move the verified download into place", e))?;
        Ok(())
    }

    fn io_error(&self, action: &str, path: &Path, file: &str, reason: io::Error) -> ModelError {
        if matches!(
            reason.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) {
            ModelError::DiskFull {
                file: file.to_owned(),
                dir: self.cache.root().to_path_buf(),
            }
        } else {
            ModelError::Io {
                action: format!("{action} of {file}"),
                path: path.to_path_buf(),
                reason,
            }
        }
    }
}

/// Write the chunks to `partial` after its first `have` bytes, feeding each to `hasher` (which
/// has seen those) as it is written; the file's SHA-256 when there is a hasher.
fn write_and_hash(
    partial: &Path,
    have: u64,
    mut hasher: Option<digest::Context>,
    mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> io::Result<Option<digest::Digest>> {
    let mut output = write::Output::open(partial, have)?;
    let mut seen = |bytes: &[u8]| {
        if let Some(hasher) = &mut hasher {
            hasher.update(bytes);
        }
    };
    while let Some(chunk) = chunks.blocking_recv() {
        output.push(chunk, &mut seen)?;
    }
    output.finish()?;
    Ok(hasher.map(digest::Context::finish))
}

/// A SHA-256 context that has seen the first `len` bytes of `path`.
fn hash_prefix(path: &Path, len: u64) -> io::Result<digest::Context> {
    let mut hasher = digest::Context::new(&SHA256);
    if len == 0 {
        return Ok(hasher);
    }
    let mut file = File::open(path)?.take(len);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buffer[..n]);
    }
}

fn reason_of(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        "connection broken".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn cancelled(token: &CancelToken) {
    while !token.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
