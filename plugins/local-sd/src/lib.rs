//! Local Stable Diffusion engine: diffusers-layout models running on Burn, on any GPU through
//! wgpu (Vulkan, Metal, DX12) or on the CPU. Mirrors diffusers module by module.
//!
//! Without the default `engine` feature only the host's side is built: [`worker::client`], the
//! wire format in [`worker::protocol`] and [`model_files`], with no Burn dependency.

/// Declares modules that run the model (they need Burn), built only with the `engine` feature.
macro_rules! engine_modules {
    ($($name:ident),* $(,)?) => {
        $(
            #[cfg(feature = "engine")]
            pub mod $name;
        )*
    };
}

engine_modules!(
    attention,
    clip,
    cpu_attention,
    cpu_conv,
    cpu_elementwise,
    cpu_group_norm,
    cpu_linear,
    cpu_math,
    cpu_tensor,
    cpu_winograd,
    config,
    device,
    embeddings,
    image_io,
    memory,
    nn,
    pipeline,
    resnet,
    schedulers,
    tokenizer,
    torch_rng,
    unet_2d,
    unet_2d_blocks,
    vae,
    weights,
);

pub mod error;
pub mod model_files;
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
