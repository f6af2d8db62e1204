//! Local Stable Diffusion engine: diffusers-layout models running on Burn, on any GPU through
//! wgpu (Vulkan, Metal, DX12) or on the CPU. Mirrors diffusers module by module.
//!
//! Without the default `engine` feature only the host's side is built: [`worker::client`], the
//! wire format in [`worker::protocol`] and [`model_files`], with no Burn dependency.

#[cfg(feature = "engine")]
pub mod attention;
#[cfg(feature = "engine")]
pub mod clip;
#[cfg(feature = "engine")]
pub mod config;
#[cfg(feature = "engine")]
pub mod device;
#[cfg(feature = "engine")]
pub mod embeddings;
pub mod error;
#[cfg(feature = "engine")]
pub mod image_io;
#[cfg(feature = "engine")]
pub mod memory;
pub mod model_files;
#[cfg(feature = "engine")]
pub mod nn;
#[cfg(feature = "engine")]
pub mod pipeline;
#[cfg(feature = "engine")]
pub mod resnet;
#[cfg(feature = "engine")]
pub mod schedulers;
#[cfg(feature = "engine")]
pub mod tokenizer;
#[cfg(feature = "engine")]
pub mod torch_rng;
#[cfg(feature = "engine")]
pub mod unet_2d;
#[cfg(feature = "engine")]
pub mod unet_2d_blocks;
#[cfg(feature = "engine")]
pub mod vae;
#[cfg(feature = "engine")]
pub mod weights;
pub mod worker;

pub use error::{Error, Result};

#[cfg(feature = "engine")]
pub use pipeline::{
    Control, GenerateParams, GeneratedImage, LoadOptions, Mode, Precision, Progress,
    StableDiffusion,
};
#[cfg(feature = "engine")]
pub use schedulers::SchedulerKind;
pub use worker::client::{ClientError, WorkerClient};
