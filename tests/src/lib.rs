//! Test support shared by the cross-crate tests: local servers on 127.0.0.1 that speak the
//! providers' wire formats, and helpers that build the real plugins for wasm32-wasip2.

pub mod google_server;
pub mod hub_server;
pub mod huggingface_server;
pub mod local_sd;
pub mod openai_server;
pub mod plugins;
pub mod replicate_server;
pub mod server;
pub mod stability_server;

pub use server::{Recorded, Reply, TestServer};

/// Standard base64 with padding, as the providers' JSON answers carry images.
pub fn base64(data: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(data)
}
