//! Local Stable Diffusion engine: diffusers-layout models running on Burn, on any GPU through
//! wgpu (Vulkan, Metal, DX12) or on the CPU. Mirrors diffusers module by module.

pub mod attention;
pub mod clip;
pub mod config;
pub mod device;
pub mod embeddings;
pub mod error;
pub mod image_io;
pub mod model_files;
pub mod nn;
pub mod pipeline;
pub mod resnet;
pub mod schedulers;
pub mod tokenizer;
pub mod torch_rng;
pub mod unet_2d;
pub mod unet_2d_blocks;
pub mod vae;
pub mod weights;
pub mod worker;

pub use error::{Error, Result};

pub use pipeline::{
    Control, GenerateParams, GeneratedImage, LoadOptions, Mode, Precision, Progress,
    StableDiffusion,
};
pub use schedulers::SchedulerKind;
pub use worker::client::{ClientError, WorkerClient};
