//! The host's view of a provider, independent of how it runs (WASM component or native worker)
//! and of which contract version it was built for. Every contract version maps onto these types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cancel::CancelToken;
use crate::secret::Secret;

/// An encoded image and its mime type.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Image {
    pub mime: String,
    #[serde(skip)]
    pub data: Vec<u8>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("mime", &self.mime)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Image {
    /// The file extension for this image's mime type (`png` when unknown).
    pub fn extension(&self) -> &'static str {
        match self.mime.as_str() {
            "image/jpeg" | "image/jpg" => "jpg",
            "image/webp" => "webp",
            "image/gif" => "gif",
            _ => "png",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    TextToImage,
    Edit,
    Inpaint,
    Variations,
    Upscale,
    Outpaint,
    Erase,
    SearchReplace,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextToImage => "text-to-image",
            Self::Edit => "edit",
            Self::Inpaint => "inpaint",
            Self::Variations => "variations",
            Self::Upscale => "upscale",
            Self::Outpaint => "outpaint",
            Self::Erase => "erase",
            Self::SearchReplace => "search-replace",
        }
    }
}

/// A request parameter a model honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    N,
    Seed,
    Steps,
    Guidance,
    NegativePrompt,
    Quality,
    Style,
    OutputFormat,
    Background,
    Strength,
    Size,
    AspectRatio,
    /// Native providers only (local Stable Diffusion).
    Scheduler,
}

impl Param {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::N => "n",
            Self::Seed => "seed",
            Self::Steps => "steps",
            Self::Guidance => "guidance",
            Self::NegativePrompt => "negative-prompt",
            Self::Quality => "quality",
            Self::Style => "style",
            Self::OutputFormat => "output-format",
            Self::Background => "background",
            Self::Strength => "strength",
            Self::Size => "size",
            Self::AspectRatio => "aspect-ratio",
            Self::Scheduler => "scheduler",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
    pub params: Vec<Param>,
    pub sizes: Vec<String>,
    pub aspect_ratios: Vec<String>,
    pub qualities: Vec<String>,
    pub styles: Vec<String>,
    pub output_formats: Vec<String>,
    pub max_n: u32,
    pub default_size: Option<String>,
}

impl ModelInfo {
    pub fn supports(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn takes(&self, param: Param) -> bool {
        self.params.contains(&param)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub models: Vec<ModelInfo>,
}

impl ProviderInfo {
    pub fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// Parameters every request carries. Serialised as-is into the history sidecar's `settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Number of images; 0 means the model's default (1).
    #[serde(default)]
    pub n: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// Provider-specific parameters, passed through as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EditMode {
    #[default]
    Edit,
    Inpaint,
    Variations,
    Outpaint,
    Erase,
    SearchReplace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EditRequest {
    pub mode: EditMode,
    #[serde(flatten)]
    pub base: GenerateRequest,
    #[serde(skip)]
    pub images: Vec<Image>,
    #[serde(skip)]
    pub mask: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpscaleRequest {
    pub model: String,
    #[serde(skip)]
    pub image: Image,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// What a provider returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    pub images: Vec<Image>,
    pub seed: Option<u64>,
    pub revised_prompt: Option<String>,
    pub note: Option<String>,
    pub request_id: Option<String>,
    pub finish_reason: Option<String>,
    pub warnings: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Why a provider call failed. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider rejected the API key: {0}")]
    Auth(String),
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after_ms: Option<u64>,
    },
    #[error("refused by the provider's content policy: {0}")]
    ContentPolicy(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("out of credits or over quota: {0}")]
    Quota(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("network error: {0}")]
    Network(String),
    #[error("provider server error: {0}")]
    Server(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
    /// The plugin itself failed (trap, out of memory, CPU deadline, contract violation).
    #[error("the plugin failed: {0}")]
    Plugin(String),
}

impl ProviderError {
    /// A short class name for machine-readable output and exit codes.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth",
            Self::RateLimited { .. } => "rate-limited",
            Self::ContentPolicy(_) => "content-policy",
            Self::InvalidRequest(_) => "invalid-request",
            Self::Quota(_) => "quota",
            Self::Timeout(_) => "timeout",
            Self::Network(_) => "network",
            Self::Server(_) => "server",
            Self::Cancelled => "cancelled",
            Self::Other(_) => "other",
            Self::Plugin(_) => "plugin",
        }
    }
}

/// Progress callback: fraction in 0.0..=1.0 and a short message.
pub type ProgressFn = std::sync::Arc<dyn Fn(f32, &str) + Send + Sync>;

/// Preview callback: a low-resolution image of the work in progress (local Stable Diffusion
/// sends one per step).
pub type PreviewFn = std::sync::Arc<dyn Fn(&Image) + Send + Sync>;

/// What the host hands a provider for one call: the provider's own key and settings only.
#[derive(Clone)]
pub struct CallContext {
    pub api_key: Option<Secret>,
    /// The provider's settings (e.g. `base_url`), already resolved from config, environment and defaults.
    pub settings: BTreeMap<String, String>,
    pub cancel: CancelToken,
    pub progress: Option<ProgressFn>,
    /// Where per-step previews go; providers that can make them only do when this is set.
    pub preview: Option<PreviewFn>,
}

impl CallContext {
    pub fn new(api_key: Option<Secret>, settings: BTreeMap<String, String>) -> Self {
        Self {
            api_key,
            settings,
            cancel: CancelToken::new(),
            progress: None,
            preview: None,
        }
    }

    pub fn report(&self, fraction: f32, message: &str) {
        if let Some(progress) = &self.progress {
            progress(fraction.clamp(0.0, 1.0), message);
        }
    }
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("api_key", &self.api_key)
            .field("settings", &self.settings)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A provider as the host uses it. Implemented by WASM plugins and by the local engine's worker.
pub trait Provider: Send + Sync {
    fn info(&self) -> Result<ProviderInfo, ProviderError>;
    fn generate(
        &self,
        request: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError>;
    fn edit(&self, request: &EditRequest, ctx: &CallContext) -> Result<Generation, ProviderError>;
    fn upscale(
        &self,
        request: &UpscaleRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError>;
    fn check_key(&self, ctx: &CallContext) -> Result<(), ProviderError>;
}
