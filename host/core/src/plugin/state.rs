//! What one call's Store holds: the WASI sandbox (no files, no environment, no sockets), the
//! memory and CPU meters, captured stdout/stderr, and the host imports' behaviour for that call.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::hosts::AllowedHosts;
use super::http::{HttpClient, HttpFailure, HttpRequest, HttpResponse};
use super::manifest::Manifest;
use crate::cancel::CancelToken;
use crate::provider::CallContext;
use crate::secret::{Secret, redact};

/// Bytes of stdout (and of stderr) kept per call; the rest is dropped, never blocks the plugin.
const OUTPUT_CAPTURE_BYTES: usize = 64 * 1024;
/// How often a host `sleep` looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// After the user cancels, a plugin may still send this many requests (within the runtime's
/// `cancel_grace`) to tidy up, e.g. cancel a remote job that would otherwise keep running and
/// billing. Everything else it asks for is refused as cancelled.
const GRACE_REQUESTS: u32 = 2;
/// WebAssembly compute a plugin may still use after the cancel: enough to send its tidy-up
/// requests, far too little to keep a busy loop alive.
const GRACE_CPU: Duration = Duration::from_millis(200);
/// Header values that carry credentials; they are redacted wherever they could be echoed.
const SECRET_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

/// The plugin asked for more memory than its limit. Raised as the trap's error.
#[derive(Debug, thiserror::Error)]
#[error("the plugin's memory limit was reached")]
pub(crate) struct MemoryLimitHit;

/// The plugin ran WebAssembly longer than its CPU budget. Raised as the trap's error.
#[derive(Debug, thiserror::Error)]
#[error("the plugin's CPU time limit was reached")]
pub(crate) struct CpuLimitHit;

/// The user cancelled while the plugin was computing. Raised as the trap's error.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub(crate) struct CancelledHit;

/// Everything the host imports need during one call.
pub(crate) struct CallEnv {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) ctx: CallContext,
    pub(crate) http: Arc<HttpClient>,
}

/// The data of one call's `Store`.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) clock: CpuClock,
    grace: Grace,
    env: CallEnv,
    allowed: OnceLock<AllowedHosts>,
    /// The plugin's key and every credential header it sent: redacted from logs and errors.
    secrets: Vec<Secret>,
    stdout: Capture,
    stderr: Capture,
}

impl PluginState {
    pub(crate) fn new(
        env: CallEnv,
        memory_limit: usize,
        cpu_limit: Duration,
        cancel_grace: Duration,
    ) -> Self {
        let stdout = Capture::default();
        let stderr = Capture::default();
        // The builder's defaults are already closed: no preopens, no environment, no
        // arguments, stdin closed, every socket address denied. Say so explicitly anyway,
        // so a change of defaults upstream cannot open the sandbox.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let secrets = env.ctx.api_key.iter().cloned().collect();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            clock: CpuClock::new(cpu_limit),
            grace: Grace::new(cancel_grace),
            env,
            allowed: OnceLock::new(),
            secrets,
            stdout,
            stderr,
        }
    }

    /// Ready a warm instance's state for its next call: this call's context, a fresh CPU
    /// budget and grace. The memory meter stays (the instance keeps its memory), and so do the
    /// secrets seen so far, so nothing an earlier call saw can reach a log unredacted.
    pub(crate) fn next_call(&mut self, env: CallEnv, cpu_limit: Duration, cancel_grace: Duration) {
        if let Some(key) = &env.ctx.api_key
            && !self.secrets.contains(key)
        {
            self.secrets.push(key.clone());
        }
        // The allowed hosts depend on the manifest and the settings (the base URL) alone.
        if self.env.ctx.settings != env.ctx.settings {
            self.allowed = OnceLock::new();
        }
        self.env = env;
        self.clock = CpuClock::new(cpu_limit);
        self.grace = Grace::new(cancel_grace);
        self.limiter.hit = false;
    }

    /// Linear memory the instance holds now, in bytes.
    pub(crate) fn memory_in_use(&self) -> usize {
        self.limiter.total
    }

    /// The API key of the current call.
    pub(crate) fn api_key(&self) -> Option<&Secret> {
        self.env.ctx.api_key.as_ref()
    }

    pub(crate) fn plugin_id(&self) -> &str {
        &self.env.manifest.id
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.env.ctx.cancel.is_cancelled()
    }

    /// Whether the plugin must stop now: the user cancelled and the plugin has used up its
    /// grace (wall time or compute) for tidying up.
    pub(crate) fn must_stop(&mut self) -> bool {
        if !self.is_cancelled() {
            return false;
        }
        let used = self.clock.used();
        let grace = self.grace.start(used);
        grace.wall_left().is_zero() || used.saturating_sub(grace.cpu_at_cancel) >= GRACE_CPU
    }

    /// Remove every secret this call has seen from `text`.
    pub(crate) fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    /// Send what the plugin printed to the host log, redacted, and return the stderr text (a
    /// panicking plugin explains itself there).
    pub(crate) fn drain_output(&self) -> String {
        let id = self.plugin_id();
        let stdout = self.redact(&self.stdout.take());
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!(plugin = %id, "stdout: {line}");
        }
        let stderr = self.redact(&self.stderr.take());
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(plugin = %id, "stderr: {line}");
        }
        stderr
    }

    /// Run a host import, keeping its wall time off the plugin's CPU budget.
    fn off_the_clock<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let started = Instant::now();
        let result = f(self);
        self.clock.in_host += started.elapsed();
        result
    }

    // ---- host imports, independent of the contract version ----

    pub(crate) fn host_send(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpFailure> {
        self.off_the_clock(|state| state.send_now(request))
    }

    fn send_now(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpFailure> {
        for (name, value) in &request.headers {
            if SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                remember_credential(&mut self.secrets, value);
            }
        }
        let allowed = self
            .allowed
            .get_or_init(|| AllowedHosts::for_call(&self.env.manifest, &self.env.ctx.settings));
        let method = request.method.clone();
        let url = self.redact(&request.url);
        // Once cancelled, only the grace's few tidy-up requests go out, on a token of their own
        // and cut off at the grace's end.
        let (cancel, deadline) = if self.is_cancelled() {
            let used = self.clock.used();
            let grace = self.grace.start(used);
            if grace.requests_left == 0 || grace.wall_left().is_zero() {
                return Err(HttpFailure::Cancelled);
            }
            grace.requests_left -= 1;
            tracing::info!(
                plugin = %self.env.manifest.id, %method, %url,
                "request after the cancel (tidy-up grace)"
            );
            (CancelToken::new(), grace.ends_at())
        } else {
            (self.env.ctx.cancel.clone(), None)
        };
        let started = Instant::now();
        let result = self
            .env
            .http
            .send(request, allowed, &cancel, deadline, &self.env.manifest.id);
        let elapsed = started.elapsed();
        // Error texts can quote the URL or the server; scrub them before the plugin (and
        // through it, the user) sees them.
        let result = result.map_err(|failure| failure.map_message(|m| redact(&m, &self.secrets)));
        match &result {
            Ok(response) => tracing::debug!(
                plugin = %self.env.manifest.id, %method, %url, status = response.status,
                bytes = response.body.len(), ms = elapsed.as_millis() as u64, "plugin HTTP request"
            ),
            Err(failure) => tracing::info!(
                plugin = %self.env.manifest.id, %method, %url, ms = elapsed.as_millis() as u64,
                "plugin HTTP request failed: {failure}"
            ),
        }
        result
    }

    pub(crate) fn host_log(&mut self, level: tracing::Level, message: &str) {
        let id = self.env.manifest.id.as_str();
        let message = redact(message, &self.secrets);
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin = %id, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin = %id, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin = %id, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin = %id, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin = %id, "{message}"),
        }
    }

    pub(crate) fn host_progress(&mut self, fraction: f32, message: &str) {
        let fraction = if fraction.is_finite() { fraction } else { 0.0 };
        let message = redact(message, &self.secrets);
        self.off_the_clock(|state| state.env.ctx.report(fraction, &message));
    }

    /// Block the plugin for `ms`, waking early when the call is cancelled. `false` = cancelled.
    pub(crate) fn host_sleep(&mut self, ms: u32) -> bool {
        self.off_the_clock(|state| {
            let deadline = Instant::now() + Duration::from_millis(u64::from(ms));
            loop {
                if state.is_cancelled() {
                    return false;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return true;
                }
                std::thread::sleep(left.min(CANCEL_POLL));
            }
        })
    }

    /// The plugin's own key, never another's.
    pub(crate) fn host_api_key(&mut self) -> Option<String> {
        self.env
            .ctx
            .api_key
            .as_ref()
            .map(|key| key.expose().to_owned())
    }

    /// A setting the manifest declares: as configured for this call, else its default.
    /// Undeclared names get nothing, whatever the call's settings map holds.
    pub(crate) fn host_setting(&mut self, name: &str) -> Option<String> {
        let spec = self.env.manifest.setting(name)?;
        self.env
            .ctx
            .settings
            .get(name)
            .cloned()
            .or_else(|| spec.default.clone())
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Redact a credential header's whole value and, for `Bearer x` / `Basic x`, the token alone.
fn remember_credential(secrets: &mut Vec<Secret>, value: &str) {
    let value = value.trim();
    let token = value
        .split_once(' ')
        .map(|(_, token)| token.trim())
        .unwrap_or(value);
    for candidate in [value, token] {
        if !secrets.iter().any(|s| s.expose() == candidate) {
            secrets.push(Secret::new(candidate));
        }
    }
}

/// Caps the memory of one instance (all its linear memories together) and remembers when the
/// cap was hit, so the trap can be reported as "ran out of memory".
pub(crate) struct MemoryLimiter {
    limits: StoreLimits,
    limit: usize,
    total: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(limit)
            .trap_on_grow_failure(true)
            .build();
        Self {
            limits,
            limit,
            total: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Err(wasmtime::Error::new(MemoryLimitHit));
        }
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.total = total;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }
}

/// Time the plugin spends running WebAssembly: wall time since the call began minus time spent
/// in host imports (HTTP, sleep, progress callbacks).
pub(crate) struct CpuClock {
    started: Instant,
    in_host: Duration,
    pub(crate) limit: Duration,
    pub(crate) hit: bool,
}

impl CpuClock {
    fn new(limit: Duration) -> Self {
        Self {
            started: Instant::now(),
            in_host: Duration::ZERO,
            limit,
            hit: false,
        }
    }

    pub(crate) fn used(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.in_host)
    }
}

/// What a cancelled plugin may still do, counted from the first moment it could see the cancel.
pub(crate) struct Grace {
    length: Duration,
    started: Option<Instant>,
    cpu_at_cancel: Duration,
    requests_left: u32,
}

impl Grace {
    fn new(length: Duration) -> Self {
        Self {
            length,
            started: None,
            cpu_at_cancel: Duration::ZERO,
            requests_left: GRACE_REQUESTS,
        }
    }

    /// Start the grace (once) and return it.
    fn start(&mut self, cpu_used: Duration) -> &mut Self {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.cpu_at_cancel = cpu_used;
        }
        self
    }

    fn ends_at(&self) -> Option<Instant> {
        self.started.map(|started| started + self.length)
    }

    fn wall_left(&self) -> Duration {
        self.ends_at().map_or(self.length, |end| {
            end.saturating_duration_since(Instant::now())
        })
    }
}

/// stdout or stderr of one call, kept in memory up to a cap and then written to the log.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn push(&self, bytes: &[u8]) {
        if let Ok(mut buffer) = self.0.lock() {
            let room = OUTPUT_CAPTURE_BYTES.saturating_sub(buffer.len());
            buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    fn take(&self) -> String {
        let bytes = self
            .0
            .lock()
            .map(|mut buffer| std::mem::take(&mut *buffer))
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always accept: past the cap the bytes are dropped, so a chatty plugin never stalls.
        Ok(OUTPUT_CAPTURE_BYTES)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
