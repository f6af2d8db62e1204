//! Local Stable Diffusion engine: diffusers-layout models (SD 1.x, 2.x, SDXL, Turbo) running on
//! Burn, on any GPU through wgpu or on the CPU. Mirrors diffusers module by module.

pub mod attention;
pub mod clip;
pub mod config;
pub mod device;
pub mod embeddings;
pub mod error;
pub mod nn;
pub mod resnet;
pub mod tokenizer;
pub mod torch_rng;
pub mod unet_2d;
pub mod unet_2d_blocks;
pub mod vae;
pub mod weights;

pub use error::{Error, Result};
