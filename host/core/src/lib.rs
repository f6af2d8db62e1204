//! ImageAI's core library: everything the CLI and the GUI share, with no GUI dependency.
//! Config, API keys, jobs, history, templates and the sandboxed plugin runtime.

pub mod app;
pub mod atomic;
pub mod authoring;
pub mod cancel;
pub mod config;
pub mod history;
pub mod jobs;
pub mod keys;
pub mod local_sd;
pub mod models;
pub mod paths;
pub mod plugin;
pub mod provider;
pub mod secret;
pub mod templates;

pub use cancel::CancelToken;
pub use provider::{
    CallContext, Capability, EditMode, EditRequest, GenerateRequest, Generation, Image, ModelInfo,
    Param, PreviewFn, Provider, ProviderError, ProviderInfo, UpscaleRequest,
};
pub use secret::Secret;
