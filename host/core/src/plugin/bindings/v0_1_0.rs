//! Host bindings for contract 0.1.0 (`wit/since_v0.1.0`): the generated types, the host imports
//! wired to [`PluginState`], and conversions onto the host's own provider types.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::Store;
use wasmtime::component::{ComponentType, HasSelf, InstancePre, Linker, Lower};

use crate::plugin::http::{HttpFailure, HttpRequest as HostRequest, HttpResponse as HostResponse};
use crate::plugin::state::PluginState;
use crate::provider as host;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit/since_v0.1.0",
});

use imageai::provider::host as wit_host;
use imageai::provider::types as wit;

/// The interface names this version's components import and export.
pub(crate) const HOST_INTERFACE: &str = "imageai:provider/host@0.1.0";
pub(crate) const TYPES_INTERFACE: &str = "imageai:provider/types@0.1.0";
pub(crate) const PROVIDER_INTERFACE: &str = "imageai:provider/provider@0.1.0";

pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    // `send` once more, in place of the generated one: its answer's body goes into the plugin's
    // memory straight from the bytes received ([`ReceivedResponse`]), where the generated
    // `http-response` (a `Vec<u8>` body) would copy a large image once more on the way.
    linker.allow_shadowing(true);
    let replaced = linker.instance(HOST_INTERFACE)?.func_wrap(
        "send",
        |mut store, (request,): (wit_host::HttpRequest,)| {
            Ok((send(store.data_mut(), request).map(ReceivedResponse::from),))
        },
    );
    linker.allow_shadowing(false);
    replaced
}

/// The contract's `http-response` record with the body as received (`list<u8>` lowers from
/// `Bytes` as from a `Vec<u8>`).
#[derive(ComponentType, Lower)]
#[component(record)]
struct ReceivedResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl From<HostResponse> for ReceivedResponse {
    fn from(response: HostResponse) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

/// A plugin's HTTP request, sent by the host.
fn send(
    state: &mut PluginState,
    request: wit_host::HttpRequest,
) -> Result<HostResponse, wit_host::HttpError> {
    let request = HostRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
        timeout: request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
    };
    state.host_send(request).map_err(|failure| match failure {
        HttpFailure::Denied(m) => wit_host::HttpError::Denied(m),
        HttpFailure::Timeout(m) => wit_host::HttpError::Timeout(m),
        HttpFailure::Network(m) => wit_host::HttpError::Network(m),
        HttpFailure::TooLarge(m) => wit_host::HttpError::TooLarge(m),
        HttpFailure::Cancelled => wit_host::HttpError::Cancelled,
    })
}

/// A component pre-instantiated against the linker, ready to instantiate.
pub(crate) struct Pre(PluginPre<PluginState>);

impl Pre {
    pub(crate) fn new(pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        PluginPre::new(pre).map(Self)
    }

    pub(crate) fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Instance> {
        self.0.instantiate(store).map(Instance)
    }
}

/// A live instance; each export can be called on it any number of times.
pub(crate) struct Instance(Plugin);

impl Instance {
    pub(crate) fn info(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Result<host::ProviderInfo, host::ProviderError>> {
        let info = self.0.imageai_provider_provider().call_info(&mut *store)?;
        Ok(Ok(info.into()))
    }

    pub(crate) fn generate(
        &self,
        store: &mut Store<PluginState>,
        request: &host::GenerateRequest,
    ) -> wasmtime::Result<Result<host::Generation, host::ProviderError>> {
        let result = self
            .0
            .imageai_provider_provider()
            .call_generate(&mut *store, &request.into())?;
        Ok(result.map(Into::into).map_err(Into::into))
    }

    pub(crate) fn edit(
        &self,
        store: &mut Store<PluginState>,
        request: &host::EditRequest,
    ) -> wasmtime::Result<Result<host::Generation, host::ProviderError>> {
        let result = self
            .0
            .imageai_provider_provider()
            .call_edit(&mut *store, &request.into())?;
        Ok(result.map(Into::into).map_err(Into::into))
    }

    pub(crate) fn upscale(
        &self,
        store: &mut Store<PluginState>,
        request: &host::UpscaleRequest,
    ) -> wasmtime::Result<Result<host::Generation, host::ProviderError>> {
        let result = self
            .0
            .imageai_provider_provider()
            .call_upscale(&mut *store, &request.into())?;
        Ok(result.map(Into::into).map_err(Into::into))
    }

    pub(crate) fn check_key(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Result<(), host::ProviderError>> {
        let result = self
            .0
            .imageai_provider_provider()
            .call_check_key(&mut *store)?;
        Ok(result.map_err(Into::into))
    }
}

// ---- host imports ----

impl wit::Host for PluginState {}

impl wit_host::Host for PluginState {
    /// Replaced in the linker by the module's `send` (see [`add_to_linker`]); the same request,
    /// its body copied into the generated record.
    fn send(
        &mut self,
        request: wit_host::HttpRequest,
    ) -> Result<wit_host::HttpResponse, wit_host::HttpError> {
        send(self, request).map(|response| wit_host::HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body.to_vec(),
        })
    }

    fn log(&mut self, level: wit_host::LogLevel, message: String) {
        let level = match level {
            wit_host::LogLevel::Trace => tracing::Level::TRACE,
            wit_host::LogLevel::Debug => tracing::Level::DEBUG,
            wit_host::LogLevel::Info => tracing::Level::INFO,
            wit_host::LogLevel::Warn => tracing::Level::WARN,
            wit_host::LogLevel::Error => tracing::Level::ERROR,
        };
        self.host_log(level, &message);
    }

    fn progress(&mut self, fraction: f32, message: String) {
        self.host_progress(fraction, &message);
    }

    fn is_cancelled(&mut self) -> bool {
        PluginState::is_cancelled(self)
    }

    fn sleep(&mut self, ms: u32) -> bool {
        self.host_sleep(ms)
    }

    fn api_key(&mut self) -> Option<String> {
        self.host_api_key()
    }

    fn setting(&mut self, name: String) -> Option<String> {
        self.host_setting(&name)
    }
}

// ---- host types → contract types ----

fn pairs(map: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl From<&host::Image> for wit::Image {
    fn from(image: &host::Image) -> Self {
        Self {
            mime: image.mime.clone(),
            data: image.data.clone(),
        }
    }
}

impl From<&host::GenerateRequest> for wit::GenerateRequest {
    fn from(r: &host::GenerateRequest) -> Self {
        Self {
            model: r.model.clone(),
            prompt: r.prompt.clone(),
            negative_prompt: r.negative_prompt.clone(),
            n: r.n,
            size: r.size.clone(),
            aspect_ratio: r.aspect_ratio.clone(),
            seed: r.seed,
            steps: r.steps,
            guidance: r.guidance,
            quality: r.quality.clone(),
            style: r.style.clone(),
            output_format: r.output_format.clone(),
            background: r.background.clone(),
            extra: pairs(&r.extra),
        }
    }
}

impl From<host::EditMode> for wit::EditMode {
    fn from(mode: host::EditMode) -> Self {
        match mode {
            host::EditMode::Edit => Self::Edit,
            host::EditMode::Inpaint => Self::Inpaint,
            host::EditMode::Variations => Self::Variations,
            host::EditMode::Outpaint => Self::Outpaint,
            host::EditMode::Erase => Self::Erase,
            host::EditMode::SearchReplace => Self::SearchReplace,
        }
    }
}

impl From<&host::EditRequest> for wit::EditRequest {
    fn from(r: &host::EditRequest) -> Self {
        Self {
            mode: r.mode.into(),
            base: (&r.base).into(),
            images: r.images.iter().map(Into::into).collect(),
            mask: r.mask.as_ref().map(Into::into),
            strength: r.strength,
        }
    }
}

impl From<&host::UpscaleRequest> for wit::UpscaleRequest {
    fn from(r: &host::UpscaleRequest) -> Self {
        Self {
            model: r.model.clone(),
            image: (&r.image).into(),
            scale: r.scale,
            prompt: r.prompt.clone(),
            negative_prompt: r.negative_prompt.clone(),
            seed: r.seed,
            output_format: r.output_format.clone(),
            extra: pairs(&r.extra),
        }
    }
}

// ---- contract types → host types ----

impl From<wit::Image> for host::Image {
    fn from(image: wit::Image) -> Self {
        Self {
            mime: image.mime,
            data: image.data,
        }
    }
}

impl From<wit::Capability> for host::Capability {
    fn from(c: wit::Capability) -> Self {
        match c {
            wit::Capability::TextToImage => Self::TextToImage,
            wit::Capability::Edit => Self::Edit,
            wit::Capability::Inpaint => Self::Inpaint,
            wit::Capability::Variations => Self::Variations,
            wit::Capability::Upscale => Self::Upscale,
            wit::Capability::Outpaint => Self::Outpaint,
            wit::Capability::Erase => Self::Erase,
            wit::Capability::SearchReplace => Self::SearchReplace,
        }
    }
}

impl From<wit::Param> for host::Param {
    fn from(p: wit::Param) -> Self {
        match p {
            wit::Param::N => Self::N,
            wit::Param::Seed => Self::Seed,
            wit::Param::Steps => Self::Steps,
            wit::Param::Guidance => Self::Guidance,
            wit::Param::NegativePrompt => Self::NegativePrompt,
            wit::Param::Quality => Self::Quality,
            wit::Param::Style => Self::Style,
            wit::Param::OutputFormat => Self::OutputFormat,
            wit::Param::Background => Self::Background,
            wit::Param::Strength => Self::Strength,
            wit::Param::Size => Self::Size,
            wit::Param::AspectRatio => Self::AspectRatio,
        }
    }
}

impl From<wit::ModelInfo> for host::ModelInfo {
    fn from(m: wit::ModelInfo) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            capabilities: m.capabilities.into_iter().map(Into::into).collect(),
            params: m.params.into_iter().map(Into::into).collect(),
            sizes: m.sizes,
            aspect_ratios: m.aspect_ratios,
            qualities: m.qualities,
            styles: m.styles,
            output_formats: m.output_formats,
            max_n: m.max_n,
            default_size: m.default_size,
        }
    }
}

impl From<wit::ProviderInfo> for host::ProviderInfo {
    fn from(info: wit::ProviderInfo) -> Self {
        Self {
            id: info.id,
            name: info.name,
            version: info.version,
            models: info.models.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::Generation> for host::Generation {
    fn from(g: wit::Generation) -> Self {
        Self {
            images: g.images.into_iter().map(Into::into).collect(),
            seed: g.seed,
            revised_prompt: g.revised_prompt,
            note: g.note,
            request_id: g.request_id,
            finish_reason: g.finish_reason,
            warnings: g.warnings,
            metadata: g.metadata.into_iter().collect(),
        }
    }
}

impl From<wit::ProviderError> for host::ProviderError {
    fn from(e: wit::ProviderError) -> Self {
        match e {
            wit::ProviderError::Auth(m) => Self::Auth(m),
            wit::ProviderError::RateLimited(r) => Self::RateLimited {
                message: r.message,
                retry_after_ms: r.retry_after_ms,
            },
            wit::ProviderError::ContentPolicy(m) => Self::ContentPolicy(m),
            wit::ProviderError::InvalidRequest(m) => Self::InvalidRequest(m),
            wit::ProviderError::Quota(m) => Self::Quota(m),
            wit::ProviderError::Timeout(m) => Self::Timeout(m),
            wit::ProviderError::Network(m) => Self::Network(m),
            wit::ProviderError::Server(m) => Self::Server(m),
            wit::ProviderError::Cancelled => Self::Cancelled,
            wit::ProviderError::Other(m) => Self::Other(m),
        }
    }
}
