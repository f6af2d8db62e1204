//! The plugin runtime: one shared wasmtime Engine, components compiled once (and cached on
//! disk), and sandboxed instances with memory and CPU limits. An instance that ended its call
//! cleanly is kept warm for the plugin's next call with the same key; one that trapped, hit a
//! limit, was cancelled or grew large is dropped, and the next call gets a fresh one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use super::bindings::{self, CallResult, Instance, Pre};
use super::cache::{ComponentCache, sha256_hex};
use super::error::PluginError;
use super::http::{HttpClient, HttpOptions, human_bytes};
use super::manifest::{COMPONENT_FILE, Manifest};
use super::state::{CallEnv, CancelledHit, CpuLimitHit, MemoryLimitHit, PluginState};
use crate::provider::{
    CallContext, EditRequest, GenerateRequest, Generation, Provider, ProviderError, ProviderInfo,
    UpscaleRequest,
};
use crate::secret::Secret;

/// How often the epoch advances while a plugin runs: the granularity of the CPU limit and of
/// cancelling a plugin that is busy computing.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Plugin calls that can run at the same time (each holds one instance slot of the pool).
const POOL_SLOTS: u32 = 32;
/// Pool slots that warm instances (one per plugin at most) may hold while idle; the rest are
/// always free for running calls.
const WARM_SLOTS: usize = 8;
/// An instance whose memory grew beyond this is dropped after its call rather than kept warm,
/// so an idle app does not hold the memory of one large answer.
const WARM_MEMORY_MAX: usize = 32 * 1024 * 1024;

/// Limits and locations of the plugin runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Memory per instance, in bytes.
    pub memory_limit: usize,
    /// WebAssembly execution time per call (time inside host calls such as HTTP does not count).
    pub cpu_timeout: Duration,
    /// Largest HTTP response body a plugin may receive.
    pub max_response_bytes: usize,
    /// Linear memory kept mapped between calls and cleared with `memset` instead of being
    /// handed back to the kernel (and faulted in again, page by page, by the next call).
    pub keep_resident: usize,
    /// After the user cancels, how long a plugin may still run to tidy up (at most two requests,
    /// e.g. to cancel a remote prediction) before it is stopped.
    pub cancel_grace: Duration,
    /// Keep a plugin's instance after a clean call and run its next call (with the same key) in
    /// it, instead of instantiating afresh each time.
    pub reuse_instances: bool,
    pub http: HttpOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            memory_limit: 256 * 1024 * 1024,
            cpu_timeout: Duration::from_secs(60),
            max_response_bytes: 64 * 1024 * 1024,
            cancel_grace: Duration::from_secs(10),
            keep_resident: 4 * 1024 * 1024,
            reuse_instances: true,
            http: HttpOptions::default(),
        }
    }
}

/// The plugin runtime. Cheap to clone; every clone shares one Engine, HTTP client and cache.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<PluginState>,
    options: RuntimeOptions,
    http: Arc<HttpClient>,
    cache: Option<ComponentCache>,
    ticker: Ticker,
    /// Warm instances idle right now, across all plugins (at most [`WARM_SLOTS`]).
    warm: AtomicUsize,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Runtime, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Plugins are Rust (or C) components: no GC proposals. Turning GC off also means the
        // engine needs none of wasmtime's collectors compiled in.
        config.wasm_gc(false);
        config.wasm_function_references(false);
        config.wasm_exceptions(false);
        config.gc_support(false);
        // `IMAGEAI_WASM_PERFMAP=1` names the plugins' compiled functions for `perf`.
        if std::env::var_os("IMAGEAI_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // A fresh instance per call comes from a pool of pre-reserved slots: no mmap/munmap
        // per call, and the start of the heap stays resident (`keep_resident`).
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 8)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 4)
            .total_stacks(POOL_SLOTS)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(options.memory_limit)
            .linear_memory_keep_resident(options.keep_resident.min(options.memory_limit))
            .table_keep_resident(64 * 1024)
            // Linux 6.7+: reset only the pages a call dirtied, not the whole resident prefix.
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|err| PluginError::Runtime(format!("{err:#}")))?;

        let mut linker = Linker::new(&engine);
        // The full WASI p2 command set, because Rust's std imports most of it; the context
        // built per call (see `PluginState::new`) leaves every capability closed.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|err| PluginError::Runtime(format!("{err:#}")))?;
        bindings::add_to_linker(&mut linker)
            .map_err(|err| PluginError::Runtime(format!("{err:#}")))?;

        let http = Arc::new(HttpClient::new(
            options.http.clone(),
            options.max_response_bytes,
        )?);
        let cache = options
            .cache_dir
            .clone()
            .map(|dir| ComponentCache::new(dir, &engine));
        let ticker = Ticker::start(engine.clone())?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                options,
                http,
                cache,
                ticker,
                warm: AtomicUsize::new(0),
            }),
        })
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Read the manifest, check the contract version, compile (or load from cache), check the
    /// component's imports and exports, and pre-instantiate it.
    pub fn load(&self, dir: &Path) -> Result<WasmProvider, PluginError> {
        let manifest = Manifest::read(dir)?;
        let wasm_path = dir.join(COMPONENT_FILE);
        let wasm = std::fs::read(&wasm_path).map_err(|source| PluginError::ComponentRead {
            path: wasm_path.clone(),
            source,
        })?;
        let invalid = |message: String| PluginError::InvalidComponent {
            id: manifest.id.clone(),
            message,
            path: wasm_path.clone(),
        };
        let Some(interfaces) = bindings::interfaces(&manifest.contract) else {
            // `Manifest::read` already refuses unsupported contracts; this keeps the two in step.
            return Err(invalid(format!(
                "no bindings for contract {}",
                manifest.contract
            )));
        };

        let started = Instant::now();
        let wasm_hash = sha256_hex(&wasm);
        let engine = &self.inner.engine;
        let cached = self
            .inner
            .cache
            .as_ref()
            .and_then(|cache| cache.load(engine, &manifest.id, &wasm_hash));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => compile(engine, &wasm).map_err(&invalid)?,
        };
        check_component(engine, &component, &interfaces).map_err(&invalid)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|err| {
                invalid(format!(
                    "it needs imports ImageAI does not provide ({err:#})"
                ))
            })?;
        let pre = Pre::new(&manifest.contract, instance_pre).map_err(&invalid)?;
        // Only a component that passed every check is worth keeping.
        if !from_cache && let Some(cache) = &self.inner.cache {
            cache.store(&manifest.id, &wasm_hash, &component);
        }
        tracing::debug!(
            plugin = %manifest.id,
            version = %manifest.version,
            from_cache,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "plugin loaded ({})", dir.display()
        );
        Ok(WasmProvider {
            runtime: self.inner.clone(),
            manifest: Arc::new(manifest),
            dir: dir.to_owned(),
            pre,
            warm: Mutex::new(None),
            info: Mutex::new(None),
            from_cache,
        })
    }
}

/// Compile a component (the slow path the disk cache avoids).
fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, String> {
    if !wasm.starts_with(b"\0asm") {
        return Err("the file is not WebAssembly; build it for wasm32-wasip2".into());
    }
    Component::new(engine, wasm).map_err(|err| {
        format!("it is not a WebAssembly component built for wasm32-wasip2 ({err:#})")
    })
}

/// Check that a component exports the provider interface of its contract and imports nothing
/// beyond that contract's host interfaces and WASI.
fn check_component(
    engine: &Engine,
    component: &Component,
    interfaces: &bindings::Interfaces,
) -> Result<(), String> {
    let ty = component.component_type();
    let mut unexpected: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !name.starts_with("wasi:") && !interfaces.imports.contains(name))
        .map(str::to_owned)
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(format!(
            "it imports {}, which ImageAI does not provide (only {} and WASI)",
            unexpected.join(", "),
            interfaces.imports.join(", ")
        ));
    }
    let exports_provider = ty.exports(engine).any(|(name, item)| {
        name == interfaces.export && matches!(item.ty, ComponentItem::ComponentInstance(_))
    });
    if !exports_provider {
        let mut found: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        found.sort();
        let found = if found.is_empty() {
            "nothing".to_owned()
        } else {
            found.join(", ")
        };
        return Err(format!(
            "it does not export {} (it exports {found}); build it with the ImageAI SDK for this contract",
            interfaces.export
        ));
    }
    Ok(())
}

/// A loaded plugin. A call runs in the plugin's warm instance when it has one for the same key,
/// else in a fresh one (from the pre-instantiated component); a trap, an exhausted memory or
/// CPU budget, or a cancel drops the instance, so it affects that call only.
pub struct WasmProvider {
    runtime: Arc<RuntimeInner>,
    manifest: Arc<Manifest>,
    dir: PathBuf,
    pre: Pre,
    warm: Mutex<Option<Warm>>,
    info: Mutex<Option<ProviderInfo>>,
    from_cache: bool,
}

impl std::fmt::Debug for WasmProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmProvider")
            .field("id", &self.manifest.id)
            .field("dir", &self.dir)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

impl WasmProvider {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The folder the plugin was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the compiled code came from the disk cache (nothing was compiled at load).
    pub fn compiled_from_cache(&self) -> bool {
        self.from_cache
    }

    /// Ask the plugin for its info now, bypassing the cached answer [`Provider::info`] keeps.
    pub fn query_info(&self) -> Result<ProviderInfo, ProviderError> {
        let ctx = CallContext::new(None, Default::default());
        self.call(&ctx, |instance, store| instance.info(store))
    }

    /// Run one export (in the warm instance or a fresh one) and turn traps into
    /// [`ProviderError::Plugin`].
    fn call<R>(
        &self,
        ctx: &CallContext,
        run: impl FnOnce(&Instance, &mut Store<PluginState>) -> CallResult<R>,
    ) -> Result<R, ProviderError> {
        if ctx.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let options = &self.runtime.options;
        let env = CallEnv {
            manifest: self.manifest.clone(),
            ctx: ctx.clone(),
            http: self.runtime.http.clone(),
        };
        let warm = self.take_warm(ctx.api_key.as_ref());
        let (mut store, instance) = match warm {
            Some(Warm {
                mut store,
                instance,
            }) => {
                store
                    .data_mut()
                    .next_call(env, options.cpu_timeout, options.cancel_grace);
                (store, Some(instance))
            }
            None => (self.new_store(env), None),
        };
        // Every tick checks the plugin's own compute time (host calls excluded) against its
        // budget, and the cancel flag, so even a busy loop stops promptly.
        store.set_epoch_deadline(1);

        let (outcome, instance) = {
            let _ticking = self.runtime.ticker.running();
            match instance {
                Some(instance) => (run(&instance, &mut store), Some(instance)),
                None => match self.pre.instantiate(&mut store) {
                    Ok(instance) => (run(&instance, &mut store), Some(instance)),
                    Err(trap) => (Err(trap), None),
                },
            }
        };
        let state = store.data();
        let stderr = state.drain_output();
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(redact_error(error, state)),
            Err(trap) => return Err(self.trap_error(&trap, state, &stderr)),
        };
        if let Some(instance) = instance
            && options.reuse_instances
            && !ctx.cancel.is_cancelled()
            && state.memory_in_use() <= WARM_MEMORY_MAX
        {
            self.keep_warm(Warm { store, instance });
        }
        result
    }

    /// A store for a fresh instance, with the memory limiter and the CPU / cancel checks.
    fn new_store(&self, env: CallEnv) -> Store<PluginState> {
        let options = &self.runtime.options;
        let state = PluginState::new(
            env,
            options.memory_limit,
            options.cpu_timeout,
            options.cancel_grace,
        );
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.must_stop() {
                return Err(wasmtime::Error::new(CancelledHit));
            }
            if state.clock.used() >= state.clock.limit {
                state.clock.hit = true;
                return Err(wasmtime::Error::new(CpuLimitHit));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store
    }

    /// The warm instance, if it last ran with this same key (an instance never sees two keys).
    fn take_warm(&self, key: Option<&Secret>) -> Option<Warm> {
        let warm = self.warm.lock().ok()?.take()?;
        self.runtime.warm.fetch_sub(1, Ordering::AcqRel);
        (warm.store.data().api_key() == key).then_some(warm)
    }

    /// Keep an instance for the next call, unless the plugin has one already or the runtime's
    /// warm slots are all taken (then it is dropped and its slot goes back to the pool).
    fn keep_warm(&self, warm: Warm) {
        let Ok(mut slot) = self.warm.lock() else {
            return;
        };
        if slot.is_some() {
            return;
        }
        let taken = self.runtime.warm.fetch_add(1, Ordering::AcqRel);
        if taken >= WARM_SLOTS {
            self.runtime.warm.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        *slot = Some(warm);
    }

    fn trap_error(
        &self,
        trap: &wasmtime::Error,
        state: &PluginState,
        stderr: &str,
    ) -> ProviderError {
        let id = &self.manifest.id;
        let options = &self.runtime.options;
        if trap.downcast_ref::<CancelledHit>().is_some() {
            return ProviderError::Cancelled;
        }
        if state.limiter.hit || trap.downcast_ref::<MemoryLimitHit>().is_some() {
            tracing::warn!(plugin = %id, "plugin ran out of memory; its instance was dropped");
            return ProviderError::Plugin(format!(
                "plugin {id} ran out of memory (limit {})",
                human_bytes(options.memory_limit)
            ));
        }
        if state.clock.hit || trap.downcast_ref::<CpuLimitHit>().is_some() {
            tracing::warn!(plugin = %id, "plugin exceeded its CPU time limit; its instance was dropped");
            return ProviderError::Plugin(format!(
                "plugin {id} exceeded its CPU time limit of {}",
                seconds(options.cpu_timeout)
            ));
        }
        if trap.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            tracing::warn!(plugin = %id, "no instance slot free: {trap:#}");
            return ProviderError::Plugin(format!(
                "{POOL_SLOTS} plugin calls are already running, the most at once; wait for one to finish, then try again"
            ));
        }
        let what = match trap.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{trap:#}"),
        };
        let said = panic_message(stderr);
        let message = match said {
            Some(said) => format!("plugin {id} crashed: {what} ({said})"),
            None => format!("plugin {id} crashed: {what}"),
        };
        let message = state.redact(&message);
        tracing::warn!(plugin = %id, "{message}; its instance was dropped");
        ProviderError::Plugin(message)
    }

    fn cached_info(&self) -> Option<ProviderInfo> {
        self.info.lock().ok().and_then(|info| info.clone())
    }
}

impl Provider for WasmProvider {
    fn info(&self) -> Result<ProviderInfo, ProviderError> {
        if let Some(info) = self.cached_info() {
            return Ok(info);
        }
        let info = self.query_info()?;
        if let Ok(mut cached) = self.info.lock() {
            *cached = Some(info.clone());
        }
        Ok(info)
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        self.call(ctx, |instance, store| instance.generate(store, request))
    }

    fn edit(&self, request: &EditRequest, ctx: &CallContext) -> Result<Generation, ProviderError> {
        self.call(ctx, |instance, store| instance.edit(store, request))
    }

    fn upscale(
        &self,
        request: &UpscaleRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        self.call(ctx, |instance, store| instance.upscale(store, request))
    }

    fn check_key(&self, ctx: &CallContext) -> Result<(), ProviderError> {
        self.call(ctx, |instance, store| instance.check_key(store))
    }
}

impl Drop for WasmProvider {
    fn drop(&mut self) {
        if self.warm.get_mut().is_ok_and(|warm| warm.take().is_some()) {
            self.runtime.warm.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An idle instance kept for the plugin's next call, with the store it lives in.
struct Warm {
    store: Store<PluginState>,
    instance: Instance,
}

/// A plugin's own error, with every secret of the call removed from its text.
fn redact_error(error: ProviderError, state: &PluginState) -> ProviderError {
    let r = |text: String| state.redact(&text);
    match error {
        ProviderError::Auth(m) => ProviderError::Auth(r(m)),
        ProviderError::RateLimited {
            message,
            retry_after_ms,
        } => ProviderError::RateLimited {
            message: r(message),
            retry_after_ms,
        },
        ProviderError::ContentPolicy(m) => ProviderError::ContentPolicy(r(m)),
        ProviderError::InvalidRequest(m) => ProviderError::InvalidRequest(r(m)),
        ProviderError::Quota(m) => ProviderError::Quota(r(m)),
        ProviderError::Timeout(m) => ProviderError::Timeout(r(m)),
        ProviderError::Network(m) => ProviderError::Network(r(m)),
        ProviderError::Server(m) => ProviderError::Server(r(m)),
        ProviderError::Cancelled => ProviderError::Cancelled,
        ProviderError::Other(m) => ProviderError::Other(r(m)),
        ProviderError::Plugin(m) => ProviderError::Plugin(r(m)),
    }
}

/// What a Rust plugin printed when it panicked (`panicked at …:` and the message line).
fn panic_message(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:"))
        .collect();
    let at = lines
        .iter()
        .rposition(|line| line.contains("panicked at"))?;
    let said: Vec<&str> = lines[at..].iter().take(2).copied().collect();
    let text = said.join(" ");
    Some(if text.len() > 500 {
        format!("{}…", &text[..text.floor_char_boundary(500)])
    } else {
        text
    })
}

fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{secs:.1} s")
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while calls are running, and for a second
/// after the last one (so back-to-back calls do not each wake the thread), then sleeps: an idle
/// app does not wake up 100 times a second.
struct Ticker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

struct TickerShared {
    running: AtomicUsize,
    /// Whether the thread is parked (or about to park) and must be woken by the next call.
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Idle ticks before the ticker parks.
const TICKER_LINGER: u32 = 100;

impl Ticker {
    fn start(engine: Engine) -> Result<Self, PluginError> {
        let shared = Arc::new(TickerShared {
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let ticking = shared.clone();
        let thread = std::thread::Builder::new()
            .name("imageai-plugin-epoch".into())
            .spawn(move || {
                let mut idle = TICKER_LINGER;
                while !ticking.stop.load(Ordering::SeqCst) {
                    if ticking.running.load(Ordering::SeqCst) > 0 {
                        idle = 0;
                    } else if idle >= TICKER_LINGER {
                        ticking.parked.store(true, Ordering::SeqCst);
                        // A call that started before `parked` was set is seen here; one that
                        // starts after sees `parked` and unparks this thread.
                        if ticking.running.load(Ordering::SeqCst) == 0 {
                            std::thread::park();
                        }
                        ticking.parked.store(false, Ordering::SeqCst);
                        continue;
                    } else {
                        idle += 1;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|err| {
                PluginError::Runtime(format!("could not start the CPU-limit timer thread: {err}"))
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Mark a call as running until the guard drops.
    fn running(&self) -> TickGuard<'_> {
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst)
            && let Some(thread) = &self.thread
        {
            thread.thread().unpark();
        }
        TickGuard(&self.shared)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

struct TickGuard<'a>(&'a TickerShared);

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_and_providers_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Runtime>();
        shareable::<WasmProvider>();
    }

    #[test]
    fn panic_messages_are_found() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom on purpose\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:10:5: boom on purpose")
        );
        assert_eq!(panic_message("just a log line"), None);
    }

    #[test]
    fn limits_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(60)), "60 s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(human_bytes(256 * 1024 * 1024), "256 MiB");
    }

    #[test]
    fn an_empty_component_is_refused() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap_or_else(|err| panic!("{err}"));
        // The smallest valid component: the header alone. It exports nothing.
        let component = Component::new(&runtime.inner.engine, b"\0asm\x0d\x00\x01\x00")
            .unwrap_or_else(|err| panic!("{err}"));
        let interfaces =
            bindings::interfaces("0.1.0").unwrap_or_else(|| panic!("0.1.0 is supported"));
        let err = check_component(&runtime.inner.engine, &component, &interfaces)
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("does not export imageai:provider/provider@0.1.0"),
            "{err}"
        );
    }
}
