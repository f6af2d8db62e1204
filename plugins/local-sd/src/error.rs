//! Errors of the local Stable Diffusion engine. Each message says what happened and what to do
//! next; paths come last.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or generating an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not read {what}: {source}. Check that the file exists and is readable: {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not valid JSON ({source}). Re-download the model: {}", path.display())]
    Json {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("the weights have no tensor `{name}`. The checkpoint does not match its config.json (wrong or truncated download?): {}", path.display())]
    MissingTensor { name: String, path: PathBuf },
    #[error("tensor `{name}` has shape {found:?} but the model's config expects {expected:?}. The checkpoint does not match its config.json: {}", path.display())]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        path: PathBuf,
    },
    #[error("tensor `{name}` is stored as {dtype}, which the engine cannot load (it reads F32, F16 and BF16): {}", path.display())]
    UnsupportedDtype {
        name: String,
        dtype: String,
        path: PathBuf,
    },
    #[error("{path} is not a valid safetensors file ({reason}). Re-download the model.")]
    BadSafetensors { path: PathBuf, reason: String },
    #[error(
        "no model found for `{0}`. Pass a local diffusers folder (with unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a Hugging Face repo id already in the cache ($HF_HOME/hub)."
    )]
    ModelNotFound(String),
    #[error("the prompt is {tokens} tokens long but the text encoder reads at most {max} (including start and end). Shorten the prompt by {over} tokens.", over = tokens - max)]
    PromptTooLong { tokens: usize, max: usize },
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error(
        "no GPU adapter matches `{0}`. Run `imageai-sd-worker --list-devices` to see the adapters, or use `--device cpu`."
    )]
    NoSuchDevice(String),
    #[error("the device failed: {0}")]
    Device(String),
    /// The memory estimate exceeds the limit even with every saving on.
    #[error("{0}")]
    MemoryLimit(String),
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
