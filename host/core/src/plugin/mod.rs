//! The plugin runtime: cloud providers are WebAssembly components run sandboxed in wasmtime.
//! A plugin reaches the world only through the host imports of its contract version.
//!
//! - [`manifest`]: `plugin.toml`, parsed and validated.
//! - [`Runtime`] / [`WasmProvider`]: one shared engine; a fresh, limited instance per call.
//! - [`registry`]: finding, installing and removing plugin folders.
//!
//! What a plugin cannot do: read files (no preopens), read the environment or arguments, open
//! sockets, reach a host its manifest (or a configured `url` setting) does not name, follow a
//! redirect elsewhere, see any key but its own, use more memory or CPU time than its limits.
//! Secrets never appear in errors or logs.

mod bindings;
mod cache;
mod error;
mod hosts;
mod http;
pub mod manifest;
pub mod registry;
mod runtime;
mod state;

pub use bindings::SUPPORTED_CONTRACTS;
pub use error::PluginError;
pub use http::HttpOptions;
pub use manifest::{COMPONENT_FILE, KeySpec, MANIFEST_FILE, Manifest, SettingKind, SettingSpec};
pub use registry::{Discovered, Source};
pub use runtime::{Runtime, RuntimeOptions, WasmProvider};
