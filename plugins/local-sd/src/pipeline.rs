//! The Stable Diffusion pipelines (diffusers' `StableDiffusionPipeline`,
//! `StableDiffusionImg2ImgPipeline`, and inpainting by latent mask blending): prompt encoding,
//! classifier-free guidance with both halves in one UNet call, the sampling loop with
//! per-step progress and cancellation, and decoding.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::{DType, Device, Tensor, TensorData};
use half::f16;
use serde::{Deserialize, Serialize};

use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::error::{Error, Result};
use crate::memory::{self, MemoryPlan, ModelFootprint, Workload};
use crate::schedulers::{self, SchedulerConfigFile, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::torch_rng::TorchGenerator;
use crate::unet_2d::{AddedCond, UNet2DConditionConfig, UNet2DConditionModel};
use crate::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::weights::{VarBuilder, Weights};

/// Compute precision of the UNet and text encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Self::Fp32 => DType::F32,
            Self::Fp16 => DType::F16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Self::Fp32),
            "fp16" | "f16" | "float16" | "half" => Ok(Self::Fp16),
            _ => Err(Error::InvalidRequest(format!(
                "unknown precision `{s}`; use fp32 or fp16"
            ))),
        }
    }
}

/// How a model is loaded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadOptions {
    pub precision: Precision,
    /// Keep the VAE in f32 even in fp16 (SD 1.x/2.x VAEs overflow in fp16 unless they are
    /// fp16-fixed). `None`: follow the VAE config's `force_upcast` (true when absent).
    #[serde(default)]
    pub vae_f32: Option<bool>,
    /// Every memory saving on, whatever the estimate: the text encoder loaded for each prompt
    /// and dropped afterwards, the VAE only while it encodes or decodes, large images decoded
    /// in tiles. Lower peak memory, slower generations.
    #[serde(default)]
    pub low_memory: bool,
    /// Peak memory budget in bytes: each generation turns on the savings above, cheapest
    /// first, until its estimate fits (see [`crate::memory`]), and fails with a clear error
    /// when it cannot fit.
    #[serde(default)]
    pub memory_limit: Option<u64>,
}

/// The model family, from the folder's layout and configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFamily {
    /// One CLIP text encoder (SD 1.x, 2.x, SD-Turbo and their fine-tunes).
    Sd,
    /// Two text encoders and added time conditioning (SDXL, SDXL-Turbo).
    Sdxl,
}

/// The RGB source image of img2img and inpainting, values in [0, 1], row-major HWC.
#[derive(Debug, Clone)]
pub struct InputImage {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<f32>,
}

/// What to generate.
#[derive(Debug, Clone)]
pub enum Mode {
    Txt2Img,
    /// Start from `image` noised to `strength` (0: unchanged, 1: ignore the image).
    Img2Img {
        image: InputImage,
        strength: f64,
    },
    /// Repaint where `mask` is 1 (values in [0, 1], one per pixel), keep the rest.
    Inpaint {
        image: InputImage,
        mask: Vec<f32>,
        strength: f64,
    },
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance_scale: f64,
    pub seed: u64,
    /// Images per prompt.
    pub num_images: usize,
    pub scheduler: SchedulerKind,
    pub mode: Mode,
    /// Another timestep spacing than the model's scheduler config gives (`trailing` for
    /// single-step Turbo sampling).
    pub timestep_spacing: Option<crate::schedulers::Spacing>,
    /// Caller-supplied initial latents (`[n, 4, h/8, w/8]`, unscaled standard normal), instead
    /// of drawing them from the seed.
    pub init_noise: Option<Vec<f32>>,
}

/// A finished image: RGB in [0, 1], row-major HWC (diffusers' `output_type="np"`).
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<f32>,
}

impl GeneratedImage {
    /// 8-bit RGB as diffusers' `numpy_to_pil` rounds it.
    pub fn to_rgb8(&self) -> Vec<u8> {
        self.rgb
            .iter()
            .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect()
    }
}

/// Progress after each denoising step, with a small preview.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    /// The first image's latents mapped to RGB by a fixed linear approximation: one pixel per
    /// latent (1/8 of the final size), no VAE call.
    pub preview: Option<GeneratedImage>,
}

/// What a progress callback tells the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Cancel,
}

/// A loaded Stable Diffusion model.
pub struct StableDiffusion {
    root: PathBuf,
    family: ModelFamily,
    text_encoders: Vec<TextEncoder>,
    /// SDXL: an empty negative prompt means zero embeddings (`model_index.json`).
    force_zeros_for_empty_prompt: bool,
    unet: UNet2DConditionModel,
    vae: OnDemand<AutoencoderKL>,
    vae_config: AutoencoderKLConfig,
    footprint: ModelFootprint,
    scheduler_config: SchedulerConfigFile,
    default_scheduler: SchedulerKind,
    device: Device,
    options: LoadOptions,
}

impl std::fmt::Debug for StableDiffusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableDiffusion")
            .field("root", &self.root)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

fn component(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join(name);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::Config(format!(
            "the model folder has no {name}/ folder; it must be in diffusers layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/): {}",
            root.display()
        )))
    }
}

impl StableDiffusion {
    /// Loads a diffusers-layout model folder onto `device`.
    pub fn load(root: &Path, device: &Device, options: LoadOptions) -> Result<Self> {
        let dtype = options.precision.dtype();
        let prefer_fp16 = options.precision == Precision::Fp16;
        let family = if root.join("text_encoder_2").is_dir() {
            ModelFamily::Sdxl
        } else {
            ModelFamily::Sd
        };
        let names: &[(&str, &str)] = match family {
            ModelFamily::Sd => &[("tokenizer", "text_encoder")],
            ModelFamily::Sdxl => &[
                ("tokenizer", "text_encoder"),
                ("tokenizer_2", "text_encoder_2"),
            ],
        };
        let text_encoders = names
            .iter()
            .map(|(tok, enc)| TextEncoder::open(root, tok, enc, device, dtype, prefer_fp16))
            .collect::<Result<Vec<_>>>()?;
        #[derive(Deserialize, Default)]
        struct ModelIndex {
            force_zeros_for_empty_prompt: Option<bool>,
        }
        let index_path = root.join("model_index.json");
        let index: ModelIndex = if index_path.is_file() {
            crate::config::read_json(&index_path, "model_index.json")?
        } else {
            ModelIndex::default()
        };
        let force_zeros_for_empty_prompt =
            family == ModelFamily::Sdxl && index.force_zeros_for_empty_prompt.unwrap_or(true);

        let unet_dir = component(root, "unet")?;
        let unet_config = UNet2DConditionConfig::from_file(&unet_dir.join("config.json"))?;
        let unet_weights = Weights::open(&Weights::find_in_dir(&unet_dir, prefer_fp16)?)?;
        let element = |d: DType| d.size() as u64;
        // The weights' bytes once loaded at `d`: on the CPU in f32, Winograd's convolutions keep
        // larger weights (see `cpu_conv`).
        let loaded_bytes = |weights: &Weights, d: DType| {
            let winograd = if *device == Device::flex() && d == DType::F32 {
                crate::cpu_conv::winograd_extra_values(weights.shapes())
            } else {
                0
            };
            (weights.num_elements() + winograd) * element(d)
        };
        let unet_bytes = loaded_bytes(&unet_weights, dtype);
        let unet = UNet2DConditionModel::load(
            &VarBuilder::new(unet_weights, device.clone(), dtype),
            &unet_config,
        )?;

        let vae_dir = component(root, "vae")?;
        let vae_config = AutoencoderKLConfig::from_file(&vae_dir.join("config.json"))?;
        let vae_weights = Weights::open(&Weights::find_in_dir(&vae_dir, prefer_fp16)?)?;
        let vae_f32 = options
            .vae_f32
            .unwrap_or(vae_config.force_upcast.unwrap_or(true));
        let vae_dtype = if vae_f32 { DType::F32 } else { dtype };
        let footprint = ModelFootprint {
            unet_bytes,
            text_encoder_bytes: text_encoders
                .iter()
                .map(|t| t.weights.num_elements())
                .sum::<u64>()
                * element(dtype),
            vae_bytes: loaded_bytes(&vae_weights, vae_dtype),
            unet_channels: unet_config
                .block_out_channels
                .first()
                .copied()
                .unwrap_or(320),
            unet_element_bytes: element(dtype),
            vae_channels: vae_config.block_out_channels.clone(),
            vae_element_bytes: element(vae_dtype),
            vae_scale: vae_config.scale_factor(),
            vae_tile: 0,
        };
        let vae = {
            let (config, device) = (vae_config.clone(), device.clone());
            OnDemand::new(move || {
                AutoencoderKL::load(
                    &VarBuilder::new(vae_weights.clone(), device.clone(), vae_dtype),
                    &config,
                    true,
                )
            })
        };

        let sched_path = component(root, "scheduler")?.join("scheduler_config.json");
        let scheduler_config = SchedulerConfigFile::from_file(&sched_path)?;
        let default_scheduler = scheduler_config
            .class_name
            .as_deref()
            .and_then(SchedulerKind::from_class_name)
            .unwrap_or(SchedulerKind::Pndm);

        let mut sd = Self {
            root: root.to_path_buf(),
            family,
            text_encoders,
            force_zeros_for_empty_prompt,
            unet,
            vae,
            vae_config,
            footprint,
            scheduler_config,
            default_scheduler,
            device: device.clone(),
            options,
        };
        sd.footprint.vae_tile = sd.default_vae_tile();
        // Load what the plan for one image at the default size keeps loaded; the rest loads
        // on first use.
        let size = sd.default_size();
        let preload = sd
            .plan(&Workload {
                width: size,
                height: size,
                images: 1,
                guidance: true,
            })
            .ok();
        if preload.as_ref().is_some_and(|p| !p.drop_text_encoders) {
            for te in &sd.text_encoders {
                te.model.get(true)?;
            }
        }
        if preload.as_ref().is_some_and(|p| !p.vae_on_demand) {
            sd.vae.get(true)?;
        }
        Ok(sd)
    }

    /// diffusers' tile for `enable_vae_tiling`: the VAE's `sample_size` in latents.
    fn default_vae_tile(&self) -> usize {
        let s = self.vae_config.scale_factor();
        (self.vae_config.sample_size.unwrap_or(512) / s).max(1)
    }

    /// What the memory estimate knows about this model.
    pub fn footprint(&self) -> &ModelFootprint {
        &self.footprint
    }

    fn plan(&self, workload: &Workload) -> Result<MemoryPlan> {
        memory::plan(
            &self.footprint,
            workload,
            self.options.memory_limit,
            self.options.low_memory,
        )
    }

    /// How `params` will run within the memory limit: the estimated peak and which savings
    /// are on. An error when the limit cannot be met.
    pub fn memory_plan(&self, params: &GenerateParams) -> Result<MemoryPlan> {
        self.plan(&Workload {
            width: params.width,
            height: params.height,
            images: params.num_images.max(1),
            guidance: params.guidance_scale > 1.0,
        })
    }

    /// Whether the text encoders are loaded now (they are dropped after encoding when the
    /// memory plan says so).
    pub fn text_encoders_loaded(&self) -> bool {
        self.text_encoders.iter().all(|t| t.model.is_loaded())
    }

    /// Whether the VAE is loaded now (it is loaded only to encode or decode when the memory
    /// plan says so).
    pub fn vae_loaded(&self) -> bool {
        self.vae.is_loaded()
    }

    pub fn family(&self) -> ModelFamily {
        self.family
    }

    /// The scheduler the model's `scheduler_config.json` names.
    pub fn default_scheduler(&self) -> SchedulerKind {
        self.default_scheduler
    }

    /// Pixels per latent along each side (8 for every published SD model).
    pub fn vae_scale_factor(&self) -> usize {
        self.vae_config.scale_factor()
    }

    /// The image size the UNet was trained at.
    pub fn default_size(&self) -> usize {
        self.unet.config().sample_size.unwrap_or(64) * self.vae_scale_factor()
    }

    fn dtype(&self) -> DType {
        self.options.precision.dtype()
    }

    /// Prompt embeddings for `n` images: `[uncond x n, cond x n]` with guidance so one UNet call
    /// serves both halves; SDXL's pooled embeddings in the same order.
    fn conditioning(
        &self,
        params: &GenerateParams,
        n: usize,
        cfg: bool,
        keep: bool,
    ) -> Result<(Tensor<3>, Option<Tensor<2>>)> {
        let repeat2 = |t: Tensor<2>| t.repeat_dim(0, n);
        if !cfg {
            let (e, p) = self.encode_prompts(&[&params.prompt], keep)?;
            return Ok((e.repeat_dim(0, n), p.map(repeat2)));
        }
        let zero_negative = self.force_zeros_for_empty_prompt && params.negative_prompt.is_empty();
        let (uncond, uncond_pooled, cond, cond_pooled) = if zero_negative {
            let (e, p) = self.encode_prompts(&[&params.prompt], keep)?;
            (
                e.clone().zeros_like(),
                p.clone().map(|p| p.zeros_like()),
                e,
                p,
            )
        } else {
            let (e, p) = self.encode_prompts(&[&params.negative_prompt, &params.prompt], keep)?;
            let [_, len, dim] = e.dims();
            let split = |p: Tensor<2>, i: usize| {
                let d = p.dims()[1];
                p.slice([i..i + 1, 0..d])
            };
            (
                e.clone().slice([0..1, 0..len, 0..dim]),
                p.clone().map(|p| split(p, 0)),
                e.slice([1..2, 0..len, 0..dim]),
                p.map(|p| split(p, 1)),
            )
        };
        let context = Tensor::cat(vec![uncond.repeat_dim(0, n), cond.repeat_dim(0, n)], 0);
        let pooled = match (uncond_pooled, cond_pooled) {
            (Some(u), Some(c)) => Some(Tensor::cat(vec![repeat2(u), repeat2(c)], 0)),
            _ => None,
        };
        Ok((context, pooled))
    }

    /// Text conditioning for a batch of prompts: the hidden states the UNet attends to and,
    /// for SDXL, the pooled embedding of the second encoder. SD 1.x/2.x use the last layer;
    /// SDXL concatenates both encoders' second-to-last layers. Without `keep` each encoder is
    /// dropped once it has run.
    fn encode_prompts(
        &self,
        prompts: &[&str],
        keep: bool,
    ) -> Result<(Tensor<3>, Option<Tensor<2>>)> {
        let mut hidden = Vec::new();
        let mut pooled = None;
        for te in &self.text_encoders {
            let ids = prompts
                .iter()
                .map(|p| te.tokenizer.encode_window(p))
                .collect::<Result<Vec<_>>>()?;
            let out = te.model.get(keep)?.forward(&ids);
            match self.family {
                ModelFamily::Sd => hidden.push(out.last_hidden_state),
                ModelFamily::Sdxl => {
                    hidden.push(out.penultimate_hidden_state);
                    pooled = out.text_embeds.or(Some(out.pooled));
                }
            }
        }
        Ok((Tensor::cat(hidden, 2), pooled))
    }

    /// Initial standard-normal noise for `shape`, drawn as `torch.randn` draws it.
    fn randn(&self, generator: &mut TorchGenerator, shape: [usize; 4]) -> Tensor<4> {
        let n = shape.iter().product();
        if self.dtype() == DType::F16 {
            let v: Vec<f16> = generator.randn_f16(n);
            Tensor::from_data(TensorData::new(v, shape), (&self.device, DType::F16))
        } else {
            let v = generator.randn_f32(n);
            Tensor::from_data(TensorData::new(v, shape), (&self.device, DType::F32))
        }
    }

    fn image_tensor(&self, image: &InputImage, width: usize, height: usize) -> Result<Tensor<4>> {
        if image.width != width || image.height != height {
            return Err(Error::InvalidRequest(format!(
                "the input image is {}x{} but the request asks for {width}x{height}; resize it or request its size",
                image.width, image.height
            )));
        }
        // HWC [0, 1] -> NCHW [-1, 1].
        let t = Tensor::<3>::from_data(
            TensorData::new(image.rgb.clone(), [height, width, 3]),
            (&self.device, DType::F32),
        );
        Ok((t.permute([2, 0, 1]).reshape([1, 3, height, width]) * 2.0) - 1.0)
    }

    /// Runs one request. `progress` sees every step and can cancel between steps.
    pub fn generate(
        &self,
        params: &GenerateParams,
        progress: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Vec<GeneratedImage>> {
        let plan = self.memory_plan(params)?;
        let latents = self.denoise_with(params, &plan, progress)?;
        self.decode_with(latents, &plan)
    }

    /// The sampling loop alone: the final (scaled) latents, before the VAE.
    pub fn denoise(
        &self,
        params: &GenerateParams,
        progress: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Tensor<4>> {
        let plan = self.memory_plan(params)?;
        self.denoise_with(params, &plan, progress)
    }

    /// [`Self::denoise`] under a given memory plan.
    pub fn denoise_with(
        &self,
        params: &GenerateParams,
        plan: &MemoryPlan,
        progress: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Tensor<4>> {
        let s = self.vae_scale_factor();
        if params.width == 0
            || params.height == 0
            || !params.width.is_multiple_of(s)
            || !params.height.is_multiple_of(s)
        {
            return Err(Error::InvalidRequest(format!(
                "width and height must be positive multiples of {s}"
            )));
        }
        let n = params.num_images.max(1);
        let (lh, lw) = (params.height / s, params.width / s);
        let latent_ch = self.vae_config.latent_channels;
        let cfg = params.guidance_scale > 1.0;
        let dtype = self.dtype();

        // Prompt embeddings: [uncond x n, cond x n] so one UNet call serves both halves.
        let (context, pooled) = self.conditioning(params, n, cfg, !plan.drop_text_encoders)?;
        let added = match pooled {
            Some(text_embeds) => {
                // SDXL's size/crop conditioning: original size, crop top-left, target size.
                let (h, w) = (params.height as f64, params.width as f64);
                let rows = text_embeds.dims()[0];
                Some(AddedCond {
                    text_embeds,
                    time_ids: vec![[h, w, 0.0, 0.0, h, w]; rows],
                })
            }
            None => None,
        };

        let mut scheduler = schedulers::build(
            params.scheduler,
            &self.scheduler_config,
            params.steps,
            params.timestep_spacing,
        )?;
        let mut generator = TorchGenerator::new(params.seed);
        let shape = [n, latent_ch, lh, lw];
        let all_steps = scheduler.timesteps().len();

        // The strength-limited start of img2img/inpainting (diffusers' `get_timesteps`).
        let (strength, source) = match &params.mode {
            Mode::Txt2Img => (1.0, None),
            Mode::Img2Img { image, strength }
            | Mode::Inpaint {
                image, strength, ..
            } => {
                if !(0.0..=1.0).contains(strength) {
                    return Err(Error::InvalidRequest(
                        "strength must be between 0 and 1".into(),
                    ));
                }
                (
                    *strength,
                    Some(self.image_tensor(image, params.width, params.height)?),
                )
            }
        };
        let init_steps = ((params.steps as f64 * strength) as usize).min(params.steps);
        let first_step = params.steps - init_steps;
        if first_step >= all_steps {
            return Err(Error::InvalidRequest(format!(
                "strength {strength} with {} steps leaves no step to run; raise strength or steps",
                params.steps
            )));
        }
        let unet_in = self.unet.config().in_channels;
        let inpaint_unet = unet_in == 2 * latent_ch + 1;
        let is_inpaint = matches!(params.mode, Mode::Inpaint { .. });
        if is_inpaint && !inpaint_unet && unet_in != latent_ch {
            return Err(Error::Unsupported(format!(
                "a UNet with {unet_in} input channels"
            )));
        }
        if !is_inpaint && unet_in != latent_ch {
            return Err(Error::InvalidRequest(
                "this is an inpainting model: give it an image and a mask".into(),
            ));
        }

        // Random draws happen in diffusers' order: source latents, initial noise, masked-image
        // latents, then whatever the scheduler draws while sampling.
        let full_strength_inpaint = is_inpaint && strength >= 1.0;
        // Held until the source is encoded; dropped before sampling when loaded on demand.
        let vae = match &source {
            Some(_) => Some(self.vae.get(!plan.vae_on_demand)?),
            None => None,
        };
        let image_latents = match (&source, &vae) {
            (Some(img), Some(vae)) if !(full_strength_inpaint && inpaint_unet) => Some(
                self.encode_sample(vae, img.clone(), &mut generator)?
                    .repeat_dim(0, n),
            ),
            _ => None,
        };
        let noise = match &params.init_noise {
            Some(v) => self.caller_noise(v, shape)?,
            None => self.randn(&mut generator, shape),
        };
        let mut latents = match &image_latents {
            Some(init) if !full_strength_inpaint => {
                scheduler.add_noise(init.clone(), noise.clone(), first_step)
            }
            _ => noise.clone() * scheduler.init_noise_sigma(),
        };
        let mut mask_latent = None;
        let mut masked_image_latents = None;
        if let (Mode::Inpaint { mask, .. }, Some(img), Some(vae)) = (&params.mode, &source, &vae) {
            let (pixel_mask, small) = self.masks(mask, params.width, params.height, lh, lw)?;
            if inpaint_unet {
                let keep = pixel_mask.neg() + 1.0;
                let masked = img.clone() * keep;
                masked_image_latents = Some(
                    self.encode_sample(vae, masked, &mut generator)?
                        .repeat_dim(0, n),
                );
            } else {
                // diffusers encodes the masked image even for a 4-channel UNet and discards it;
                // only its random draw matters here.
                let _ = self.randn(&mut generator, [1, latent_ch, lh, lw]);
            }
            mask_latent = Some(small.repeat_dim(0, n));
        }
        drop(vae);

        let mut noise_fn = |shape: [usize; 4]| self.randn(&mut generator, shape);
        let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
        let total = all_steps - first_step;
        let double = |t: Tensor<4>| {
            if cfg {
                Tensor::cat(vec![t.clone(), t], 0)
            } else {
                t
            }
        };
        let extra = match (&mask_latent, &masked_image_latents) {
            (Some(m), Some(l)) if inpaint_unet => {
                Some(Tensor::cat(vec![double(m.clone()), double(l.clone())], 1))
            }
            _ => None,
        };
        for (k, i) in (first_step..all_steps).enumerate() {
            let t = timesteps[i];
            let input = scheduler.scale_model_input(double(latents.clone()), i);
            let input = match &extra {
                Some(e) => Tensor::cat(vec![input, e.clone()], 1),
                None => input,
            };
            let out = self.unet.forward(
                crate::nn::to_dtype(input, dtype),
                t,
                &context,
                added.as_ref(),
            )?;
            let noise_pred = if cfg {
                let [b2, c, h, w] = out.dims();
                let half = b2 / 2;
                let uncond = out.clone().slice([0..half, 0..c, 0..h, 0..w]);
                let cond = out.slice([half..b2, 0..c, 0..h, 0..w]);
                uncond.clone() + (cond - uncond) * params.guidance_scale
            } else {
                out
            };
            latents = scheduler.step(noise_pred, i, latents, &mut noise_fn);
            if let (Some(mask), Some(init), false) = (&mask_latent, &image_latents, inpaint_unet) {
                // Keep the unmasked region at the source image's noise level for the next step.
                let known = if i + 1 < all_steps {
                    scheduler.add_noise(init.clone(), noise.clone(), i + 1)
                } else {
                    init.clone()
                };
                latents = known * (mask.clone().neg() + 1.0) + latents * mask.clone();
            }
            let preview = self.preview(&latents);
            if progress(Progress {
                step: k + 1,
                total,
                preview,
            }) == Control::Cancel
            {
                return Err(Error::Cancelled);
            }
        }
        Ok(latents)
    }

    fn caller_noise(&self, values: &[f32], shape: [usize; 4]) -> Result<Tensor<4>> {
        let expected: usize = shape.iter().product();
        if values.len() != expected {
            return Err(Error::InvalidRequest(format!(
                "the initial noise has {} values but this request needs {expected} ({shape:?})",
                values.len()
            )));
        }
        let t: Tensor<4> = Tensor::from_data(
            TensorData::new(values.to_vec(), shape),
            (&self.device, DType::F32),
        );
        Ok(crate::nn::to_dtype(t, self.dtype()))
    }

    /// The binarized mask at pixel resolution (`[1, 1, H, W]`, 1 = repaint) and at latent
    /// resolution by nearest-neighbour sampling (`[1, 1, h, w]`), as diffusers' mask processor
    /// and `prepare_mask_latents` make them.
    fn masks(
        &self,
        mask: &[f32],
        width: usize,
        height: usize,
        lh: usize,
        lw: usize,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        if mask.len() != width * height {
            return Err(Error::InvalidRequest(format!(
                "the mask has {} values but the image has {width}x{height} pixels",
                mask.len()
            )));
        }
        let binary: Vec<f32> = mask
            .iter()
            .map(|&m| if m >= 0.5 { 1.0 } else { 0.0 })
            .collect();
        let s = self.vae_scale_factor();
        let small: Vec<f32> = (0..lh)
            .flat_map(|y| (0..lw).map(move |x| (y, x)))
            .map(|(y, x)| binary[(y * s) * width + x * s])
            .collect();
        let pixel: Tensor<4> = Tensor::from_data(
            TensorData::new(binary, [1, 1, height, width]),
            (&self.device, DType::F32),
        );
        let small: Tensor<4> = Tensor::from_data(
            TensorData::new(small, [1, 1, lh, lw]),
            (&self.device, DType::F32),
        );
        Ok((pixel, crate::nn::to_dtype(small, self.dtype())))
    }

    /// `vae.encode(image).latent_dist.sample(generator) * scaling_factor`.
    fn encode_sample(
        &self,
        vae: &AutoencoderKL,
        image: Tensor<4>,
        generator: &mut TorchGenerator,
    ) -> Result<Tensor<4>> {
        let dist = vae.encode(image)?;
        let eps = crate::nn::to_dtype(self.randn(generator, dist.mean.dims()), vae.dtype());
        let latents = (dist.mean.clone() + dist.std() * eps) * self.vae_config.scaling_factor;
        Ok(crate::nn::to_dtype(latents, self.dtype()))
    }

    /// Latents to images: unscale, VAE decode, map to [0, 1], under the memory plan for the
    /// latents' size without guidance.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Vec<GeneratedImage>> {
        let [n, _, lh, lw] = latents.dims();
        let s = self.vae_scale_factor();
        let plan = self.plan(&Workload {
            width: lw * s,
            height: lh * s,
            images: n,
            guidance: false,
        })?;
        self.decode_with(latents, &plan)
    }

    /// [`Self::decode`] under a given memory plan: the VAE loaded for this decode only, and a
    /// tiled decode, when the plan says so.
    pub fn decode_with(
        &self,
        latents: Tensor<4>,
        plan: &MemoryPlan,
    ) -> Result<Vec<GeneratedImage>> {
        let z = crate::nn::to_f32(latents) / self.vae_config.scaling_factor;
        let n = z.dims()[0];
        let vae = self.vae.get(!plan.vae_on_demand)?;
        let images = match plan.vae_tile {
            Some(tile) => vae.decode_tiled(z, tile),
            None => vae.decode(z),
        };
        drop(vae);
        // The decode was the last convolution of this generation.
        crate::cpu_conv::release_workspace();
        let images = ((crate::nn::to_f32(images) / 2.0) + 0.5).clamp(0.0, 1.0);
        let [_, _, h, w] = images.dims();
        let hwc = images.permute([0, 2, 3, 1]);
        let values = hwc
            .into_data()
            .convert_dtype(DType::F32)
            .try_to_vec::<f32>()
            .map_err(|e| {
                Error::Device(format!(
                    "could not read the image back from the device: {e:?}"
                ))
            })?;
        let per = h * w * 3;
        Ok((0..n)
            .map(|i| GeneratedImage {
                width: w,
                height: h,
                rgb: values[i * per..(i + 1) * per].to_vec(),
            })
            .collect())
    }

    /// A cheap RGB preview of the first latent image: a fixed linear map from SD's four latent
    /// channels to RGB (the widely used "latent2rgb" factors for SD 1.x/2.x VAEs).
    fn preview(&self, latents: &Tensor<4>) -> Option<GeneratedImage> {
        const FACTORS: [[f32; 3]; 4] = [
            [0.298, 0.207, 0.208],
            [0.187, 0.286, 0.173],
            [-0.158, 0.189, 0.264],
            [-0.184, -0.271, -0.473],
        ];
        let [_, c, h, w] = latents.dims();
        if c != 4 {
            return None;
        }
        let first = crate::nn::to_f32(latents.clone().slice([0..1, 0..4, 0..h, 0..w]));
        let values = first.into_data().try_to_vec::<f32>().ok()?;
        let mut rgb = vec![0f32; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                for (ch, f) in FACTORS.iter().enumerate() {
                    let v = values[ch * h * w + y * w + x];
                    for k in 0..3 {
                        rgb[(y * w + x) * 3 + k] += v * f[k];
                    }
                }
            }
        }
        for v in &mut rgb {
            *v = (*v * 0.5 + 0.5).clamp(0.0, 1.0);
        }
        Some(GeneratedImage {
            width: w,
            height: h,
            rgb,
        })
    }
}

/// One tokenizer + CLIP text encoder pair (SDXL has two); the model stays loaded or is loaded
/// for each prompt, as the memory plan says.
struct TextEncoder {
    tokenizer: ClipTokenizer,
    weights: Weights,
    model: OnDemand<ClipTextModel>,
}

impl TextEncoder {
    fn open(
        root: &Path,
        tokenizer: &str,
        encoder: &str,
        device: &Device,
        dtype: DType,
        prefer_fp16: bool,
    ) -> Result<Self> {
        let tokenizer = ClipTokenizer::from_dir(&component(root, tokenizer)?)?;
        let dir = component(root, encoder)?;
        let config = ClipTextConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&Weights::find_in_dir(&dir, prefer_fp16)?)?;
        let model = {
            let (weights, device) = (weights.clone(), device.clone());
            OnDemand::new(move || {
                ClipTextModel::load(
                    &VarBuilder::new(weights.clone(), device.clone(), dtype),
                    &config,
                )
            })
        };
        Ok(Self {
            tokenizer,
            weights,
            model,
        })
    }
}

type Loader<T> = Box<dyn Fn() -> Result<T> + Send + Sync>;

/// A component that stays loaded, or is loaded from its memory-mapped weights for one use and
/// freed when that use ends.
struct OnDemand<T> {
    loaded: Mutex<Option<Arc<T>>>,
    load: Loader<T>,
}

impl<T> OnDemand<T> {
    fn new(load: impl Fn() -> Result<T> + Send + Sync + 'static) -> Self {
        Self {
            loaded: Mutex::new(None),
            load: Box::new(load),
        }
    }

    /// The component, loaded if need be. With `keep` it stays loaded afterwards; without, it
    /// is freed when the returned handle is dropped.
    fn get(&self, keep: bool) -> Result<Arc<T>> {
        let mut slot = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let model = match slot.take() {
            Some(m) => m,
            None => Arc::new((self.load)()?),
        };
        if keep {
            *slot = Some(Arc::clone(&model));
        }
        Ok(model)
    }

    fn is_loaded(&self) -> bool {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}
