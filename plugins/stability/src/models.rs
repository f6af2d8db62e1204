//! Stability AI's models and services, the values each accepts (from Stability's v1 and v2beta
//! API references), and the checks that turn a request the API would reject into a clear error
//! before anything is uploaded.

use imageai_sdk::{
    Capability, EditMode, EditRequest, GenerateRequest, Image, ModelInfo, Param, ProviderError,
    UpscaleRequest,
};

use imageai_sdk::image_size::dimensions;

/// Which API serves a model: the endpoints, the body format and the answer differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v2beta/stable-image/generate/{endpoint}` (multipart, one image per call).
    Generate {
        endpoint: &'static str,
        image_to_image: bool,
    },
    /// `POST /v2beta/stable-image/edit/{inpaint,erase,outpaint,search-and-replace}`.
    Edit,
    /// `POST /v2beta/stable-image/upscale/{fast,conservative,creative}`.
    Upscale(Upscaler),
    /// `POST /v1/generation/{engine}/…` (JSON or multipart, up to 10 images per call).
    V1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upscaler {
    /// 4× in about a second, no prompt.
    Fast,
    /// To about 4 megapixels, keeping the image as it is; needs a prompt.
    Conservative,
    /// To about 4 megapixels, re-imagining detail; asynchronous (polled).
    Creative,
}

impl Upscaler {
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Conservative => "conservative",
            Self::Creative => "creative",
        }
    }
}

/// One model or service: what the host shows, plus what the API enforces.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub api: Api,
    pub output_formats: &'static [&'static str],
}

/// `aspect_ratio` values of the v2beta generate endpoints.
pub const ASPECT_RATIOS: &[&str] = &[
    "16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21",
];
/// `style_preset` values (v2beta and v1).
pub const STYLE_PRESETS: &[&str] = &[
    "3d-model",
    "analog-film",
    "anime",
    "cinematic",
    "comic-book",
    "digital-art",
    "enhance",
    "fantasy-art",
    "isometric",
    "line-art",
    "low-poly",
    "modeling-compound",
    "neon-punk",
    "origami",
    "photographic",
    "pixel-art",
    "tile-texture",
];
/// The sizes SDXL 1.0 (v1) was trained for and accepts.
pub const SDXL_SIZES: &[&str] = &[
    "1024x1024",
    "1152x896",
    "896x1152",
    "1216x832",
    "832x1216",
    "1344x768",
    "768x1344",
    "1536x640",
    "640x1536",
];
/// v1 `sampler` values.
pub const SAMPLERS: &[&str] = &[
    "DDIM",
    "DDPM",
    "K_DPMPP_2M",
    "K_DPMPP_2S_ANCESTRAL",
    "K_DPM_2",
    "K_DPM_2_ANCESTRAL",
    "K_EULER",
    "K_EULER_ANCESTRAL",
    "K_HEUN",
    "K_LMS",
];
/// v1 `mask_source` values.
pub const MASK_SOURCES: &[&str] = &["MASK_IMAGE_WHITE", "MASK_IMAGE_BLACK", "INIT_IMAGE_ALPHA"];
/// Image types the upload endpoints take.
pub const INPUT_MIMES: &[&str] = &["image/png", "image/jpeg", "image/webp"];
/// Stability refuses request bodies over 10 MiB (HTTP 413).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
/// The largest v2beta seed (0 means random).
pub const MAX_SEED: u64 = 4_294_967_294;
/// Images per v2beta request is 1; the plugin makes one request per image, up to this many.
pub const MAX_V2_IMAGES: u32 = 4;

const ALL_FORMATS: &[&str] = &["png", "jpeg", "webp"];
const SD3_FORMATS: &[&str] = &["png", "jpeg"];

const fn sd3(id: &'static str, name: &'static str, description: &'static str) -> Model {
    Model {
        id,
        name,
        description,
        api: Api::Generate {
            endpoint: "sd3",
            image_to_image: true,
        },
        output_formats: SD3_FORMATS,
    }
}

/// In the order the host picks defaults from (the first model that can do what is asked):
/// Core for text-to-image, SD 3.5 Large for image-to-image, the edit services for the edit modes,
/// the fast upscaler for upscaling.
pub const MODELS: &[Model] = &[
    Model {
        id: "stable-image-core",
        name: "Stable Image Core",
        description: "Fast, affordable text-to-image. Aspect ratios, negative prompt, seed, png/jpeg/webp, style presets.",
        api: Api::Generate {
            endpoint: "core",
            image_to_image: false,
        },
        output_formats: ALL_FORMATS,
    },
    sd3(
        "sd3.5-large",
        "Stable Diffusion 3.5 Large",
        "SD 3.5 Large (8B): text-to-image and image-to-image with --strength; --guidance 1–10 (cfg_scale).",
    ),
    sd3(
        "sd3.5-large-turbo",
        "Stable Diffusion 3.5 Large Turbo",
        "SD 3.5 Large distilled for few steps: fast, text-to-image and image-to-image.",
    ),
    sd3(
        "sd3.5-medium",
        "Stable Diffusion 3.5 Medium",
        "SD 3.5 Medium (2.5B): text-to-image and image-to-image.",
    ),
    sd3(
        "sd3.5-flash",
        "Stable Diffusion 3.5 Flash",
        "SD 3.5 Flash: the fastest and cheapest SD 3.5 model.",
    ),
    Model {
        id: "stable-image-ultra",
        name: "Stable Image Ultra",
        description: "Stability's highest quality text-to-image, and image-to-image with --strength. \
            Aspect ratios, negative prompt, seed, png/jpeg/webp, style presets (--style or --set style_preset=…).",
        api: Api::Generate {
            endpoint: "ultra",
            image_to_image: true,
        },
        output_formats: ALL_FORMATS,
    },
    Model {
        id: "stable-image-edit",
        name: "Stable Image Edit",
        description: "Edit services. inpaint: prompt + mask (white = change) or the image's transparency, \
            `--set grow_mask=0..100`. erase: mask or transparency. outpaint: `--set left=|right=|up=|down=PIXELS` \
            (0–2000), `--set creativity=0..1`. search-replace: prompt + `--set search_prompt=WHAT`. Style presets \
            for inpaint, outpaint and search-replace.",
        api: Api::Edit,
        output_formats: ALL_FORMATS,
    },
    Model {
        id: "upscale-fast",
        name: "Fast Upscaler",
        description: "4× larger in about a second, no prompt. Inputs 32–1536 px per side.",
        api: Api::Upscale(Upscaler::Fast),
        output_formats: ALL_FORMATS,
    },
    Model {
        id: "upscale-conservative",
        name: "Conservative Upscaler",
        description: "Up to 4 megapixels keeping the image as it is; needs a prompt describing it. \
            `--set creativity=0.2..0.5`.",
        api: Api::Upscale(Upscaler::Conservative),
        output_formats: ALL_FORMATS,
    },
    Model {
        id: "upscale-creative",
        name: "Creative Upscaler",
        description: "Up to 4 megapixels re-imagining fine detail; needs a prompt. Runs asynchronously \
            (progress is reported, cancelling stops waiting). `--set creativity=0.1..0.5`, style presets.",
        api: Api::Upscale(Upscaler::Creative),
        output_formats: ALL_FORMATS,
    },
    Model {
        id: "stable-diffusion-xl-1024-v1-0",
        name: "SDXL 1.0 (v1 API)",
        description: "SDXL 1.0 on the v1 API: up to 10 images per request at the SDXL sizes, --steps 10–150, \
            --guidance 0–35 (cfg_scale), `--set sampler=K_DPMPP_2M|…`, style presets; image-to-image with \
            --strength; inpainting with a mask (`--set mask_source=MASK_IMAGE_WHITE|MASK_IMAGE_BLACK`, \
            or the image's transparency without a mask).",
        api: Api::V1,
        output_formats: &["png"],
    },
];

/// The model with this id, or an error listing the known ones. An empty id picks the usual
/// model for the kind of call (`default`).
pub fn find(id: &str, default: &'static str) -> Result<&'static Model, ProviderError> {
    let id = if id.trim().is_empty() {
        default
    } else {
        id.trim()
    };
    MODELS.iter().find(|m| m.id == id).ok_or_else(|| {
        let ids: Vec<&str> = MODELS.iter().map(|m| m.id).collect();
        ProviderError::invalid_request(format!(
            "Stability AI has no model `{id}` here; choose one of {}",
            list(&ids)
        ))
    })
}

/// `a, b or c`, each in backticks.
pub fn list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn ids_where(keep: impl Fn(&Model) -> bool) -> Vec<&'static str> {
    MODELS.iter().filter(|m| keep(m)).map(|m| m.id).collect()
}

impl Model {
    pub fn info(&self) -> ModelInfo {
        use Capability as C;
        use Param as P;
        let (capabilities, params): (Vec<C>, Vec<P>) = match self.api {
            Api::Generate {
                endpoint,
                image_to_image,
            } => {
                let mut capabilities = vec![C::TextToImage];
                let mut params = vec![
                    P::N,
                    P::AspectRatio,
                    P::Seed,
                    P::NegativePrompt,
                    P::OutputFormat,
                    P::Style,
                ];
                if image_to_image {
                    capabilities.push(C::Edit);
                    params.push(P::Strength);
                }
                if endpoint == "sd3" {
                    params.push(P::Guidance);
                }
                (capabilities, params)
            }
            Api::Edit => (
                vec![C::Inpaint, C::Erase, C::Outpaint, C::SearchReplace],
                vec![P::Seed, P::NegativePrompt, P::OutputFormat, P::Style],
            ),
            Api::Upscale(Upscaler::Fast) => (vec![C::Upscale], vec![P::OutputFormat]),
            Api::Upscale(Upscaler::Conservative) => (
                vec![C::Upscale],
                vec![P::Seed, P::NegativePrompt, P::OutputFormat],
            ),
            Api::Upscale(Upscaler::Creative) => (
                vec![C::Upscale],
                vec![P::Seed, P::NegativePrompt, P::OutputFormat, P::Style],
            ),
            Api::V1 => (
                vec![C::TextToImage, C::Edit, C::Inpaint],
                vec![
                    P::N,
                    P::Size,
                    P::Seed,
                    P::Steps,
                    P::Guidance,
                    P::NegativePrompt,
                    P::Style,
                    P::Strength,
                ],
            ),
        };
        let takes_style = params.contains(&P::Style);
        let mut info = ModelInfo::new(self.id, self.name)
            .description(self.description)
            .capabilities(capabilities)
            .params(params)
            .output_formats(self.output_formats.iter().copied());
        info = match self.api {
            Api::Generate { .. } => info
                .aspect_ratios(ASPECT_RATIOS.iter().copied())
                .max_n(MAX_V2_IMAGES),
            Api::V1 => info.sizes(SDXL_SIZES.iter().copied()).max_n(10),
            _ => info,
        };
        if takes_style {
            info.styles(STYLE_PRESETS.iter().copied())
        } else {
            info
        }
    }

    pub fn is_sd3(&self) -> bool {
        matches!(
            self.api,
            Api::Generate {
                endpoint: "sd3",
                ..
            }
        )
    }

    /// Check a text-to-image request.
    pub fn validate_generate(&self, request: &GenerateRequest) -> Result<(), ProviderError> {
        match self.api {
            Api::Generate { .. } | Api::V1 => self.validate_common(request, &[]),
            Api::Edit => Err(ProviderError::invalid_request(format!(
                "{} edits images; give one with --image and a --mode (inpaint, erase, outpaint or search-replace), or use {} for text-to-image",
                self.id,
                list(&ids_where(|m| matches!(
                    m.api,
                    Api::Generate { .. } | Api::V1
                )))
            ))),
            Api::Upscale(_) => Err(ProviderError::invalid_request(format!(
                "{} upscales images; run `imageai upscale --image FILE -m {}` instead",
                self.id, self.id
            ))),
        }
    }

    /// What every generate (and image-to-image) request carries. `extra_options` are the
    /// mode-specific `--set` names allowed besides the model's own.
    fn validate_common(
        &self,
        request: &GenerateRequest,
        extra_options: &[&str],
    ) -> Result<(), ProviderError> {
        let id = self.id;
        let v1 = self.api == Api::V1;
        if request.prompt.trim().is_empty() {
            return Err(ProviderError::invalid_request(format!(
                "{id} needs a prompt"
            )));
        }
        let max_prompt = if v1 { 2000 } else { 10_000 };
        for (what, text) in [
            ("prompt", Some(&request.prompt)),
            ("negative prompt", request.negative_prompt.as_ref()),
        ] {
            let chars = text.map_or(0, |t| t.chars().count());
            if chars > max_prompt {
                return Err(ProviderError::invalid_request(format!(
                    "the {what} has {chars} characters; {id} takes at most {max_prompt}"
                )));
            }
        }
        let max_n = if v1 { 10 } else { MAX_V2_IMAGES };
        if request.count() > max_n {
            return Err(ProviderError::invalid_request(format!(
                "{id} makes 1 to {max_n} image(s) per request, not {}",
                request.count()
            )));
        }
        if v1 {
            if request.aspect_ratio.is_some() {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes a size (one of {}), not an aspect ratio",
                    list(SDXL_SIZES)
                )));
            }
            one_of(id, "size", request.size.as_deref(), SDXL_SIZES)?;
            if let Some(steps) = request.steps
                && !(10..=150).contains(&steps)
            {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes 10 to 150 steps, not {steps}"
                )));
            }
        } else {
            if request.size.is_some() {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes an aspect ratio ({}), not a size",
                    list(ASPECT_RATIOS)
                )));
            }
            one_of(
                id,
                "aspect ratio",
                request.aspect_ratio.as_deref(),
                ASPECT_RATIOS,
            )?;
            if request.steps.is_some() {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes no steps; leave out --steps"
                )));
            }
        }
        if let Some(guidance) = request.guidance {
            let range = if v1 {
                0.0..=35.0
            } else if self.is_sd3() {
                1.0..=10.0
            } else {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes no guidance; {} do",
                    list(&ids_where(|m| m.is_sd3() || m.api == Api::V1))
                )));
            };
            if !range.contains(&guidance) {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes guidance (cfg_scale) from {} to {}, not {guidance}",
                    range.start(),
                    range.end()
                )));
            }
        }
        let max_seed = if v1 { u64::from(u32::MAX) } else { MAX_SEED };
        if let Some(seed) = request.seed
            && seed > max_seed
        {
            return Err(ProviderError::invalid_request(format!(
                "the seed must be at most {max_seed}, not {seed}"
            )));
        }
        one_of(
            id,
            "output format",
            request.output_format.as_deref(),
            self.output_formats,
        )?;
        for (what, given) in [
            ("quality", request.quality.is_some()),
            ("background", request.background.is_some()),
        ] {
            if given {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes no {what}"
                )));
            }
        }
        style_preset(request)?;
        let own: &[&str] = if v1 {
            &["style_preset", "sampler"]
        } else {
            &["style_preset"]
        };
        for (name, value) in &request.extra {
            let name = name.as_str();
            if name == "sampler" && v1 {
                one_of(id, "sampler", Some(value.trim()), SAMPLERS)?;
            } else if !own.contains(&name) && !extra_options.contains(&name) {
                let known: Vec<&str> = own.iter().chain(extra_options).copied().collect();
                return Err(ProviderError::invalid_request(format!(
                    "{id} has no option `{name}` here; its options are {}",
                    list(&known)
                )));
            }
        }
        Ok(())
    }

    /// Check an edit: image-to-image (`edit`) for ultra, SD 3.5 and SDXL; inpainting for SDXL;
    /// the four edit services for `stable-image-edit`.
    pub fn validate_edit(&self, request: &EditRequest) -> Result<(), ProviderError> {
        let id = self.id;
        let mode = request.mode;
        let supported = match (self.api, mode) {
            (Api::Generate { image_to_image, .. }, EditMode::Edit) => image_to_image,
            (Api::V1, EditMode::Edit | EditMode::Inpaint) => true,
            (
                Api::Edit,
                EditMode::Inpaint | EditMode::Erase | EditMode::Outpaint | EditMode::SearchReplace,
            ) => true,
            _ => false,
        };
        if !supported {
            let capability = capability_of(mode);
            let capable = ids_where(|m| m.info().supports(capability));
            return Err(if capable.is_empty() {
                ProviderError::not_supported(mode_name(mode))
            } else {
                ProviderError::invalid_request(format!(
                    "{id} does no {}; use {}",
                    mode_name(mode),
                    list(&capable)
                ))
            });
        }
        match request.images.len() {
            0 => {
                return Err(ProviderError::invalid_request(
                    "give the image to start from with --image",
                ));
            }
            1 => {}
            n => {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes one source image, not {n}"
                )));
            }
        }
        let image = &request.images[0];
        self.validate_input("the source image", image)?;
        let base = &request.base;
        match self.api {
            Api::Generate { .. } => {
                self.validate_common(base, &[])?;
                if base.aspect_ratio.is_some() {
                    return Err(ProviderError::invalid_request(
                        "image-to-image keeps the source image's shape; leave out --aspect-ratio",
                    ));
                }
                validate_strength(request.strength)?;
                if request.mask.is_some() {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} takes no mask; for inpainting use `stable-image-edit` with --mode inpaint"
                    )));
                }
            }
            Api::V1 => {
                let options: &[&str] = if mode == EditMode::Inpaint {
                    &["mask_source"]
                } else {
                    &[]
                };
                self.validate_common(base, options)?;
                if base.size.is_some() {
                    return Err(ProviderError::invalid_request(
                        "image-to-image keeps the source image's size; leave out --size",
                    ));
                }
                if let Some((w, h)) = dimensions(&image.data) {
                    let size = format!("{w}x{h}");
                    if !SDXL_SIZES.contains(&size.as_str()) {
                        return Err(ProviderError::invalid_request(format!(
                            "{id} edits images of the SDXL sizes only ({}); the source is {size}. Resize or crop it first",
                            list(SDXL_SIZES)
                        )));
                    }
                }
                if mode == EditMode::Inpaint {
                    self.validate_v1_mask(request)?;
                } else {
                    validate_strength(request.strength)?;
                    if request.mask.is_some() {
                        return Err(ProviderError::invalid_request(
                            "a mask means inpainting: use --mode inpaint",
                        ));
                    }
                }
            }
            Api::Edit => self.validate_edit_service(request)?,
            Api::Upscale(_) => {}
        }
        Ok(())
    }

    fn validate_v1_mask(&self, request: &EditRequest) -> Result<(), ProviderError> {
        let source = request.base.extra("mask_source").map(str::trim);
        one_of(self.id, "mask_source", source, MASK_SOURCES)?;
        match (&request.mask, source) {
            (Some(_), Some("INIT_IMAGE_ALPHA")) => Err(ProviderError::invalid_request(
                "mask_source=INIT_IMAGE_ALPHA uses the image's transparency; leave out --mask",
            )),
            (None, Some("MASK_IMAGE_WHITE" | "MASK_IMAGE_BLACK")) => {
                Err(ProviderError::invalid_request(
                    "that mask_source needs a mask image: add --mask FILE",
                ))
            }
            (Some(mask), _) => self.validate_same_size(&request.images[0], mask),
            (None, _) => Ok(()),
        }
    }

    /// The v2beta edit services.
    fn validate_edit_service(&self, request: &EditRequest) -> Result<(), ProviderError> {
        let id = self.id;
        let base = &request.base;
        let mode = request.mode;
        // Erasing takes no prompt; one given anyway (the CLI always has one) is not sent, and
        // the result says so.
        let (prompt_required, options): (bool, &[&str]) = match mode {
            EditMode::Inpaint => (true, &["grow_mask", "style_preset"]),
            EditMode::Erase => (false, &["grow_mask"]),
            EditMode::Outpaint => (
                false,
                &["left", "right", "up", "down", "creativity", "style_preset"],
            ),
            _ => (true, &["search_prompt", "grow_mask", "style_preset"]),
        };
        let what = mode_name(mode);
        if prompt_required && base.prompt.trim().is_empty() {
            return Err(ProviderError::invalid_request(format!(
                "{what} needs a prompt"
            )));
        }
        if mode == EditMode::Outpaint && base.negative_prompt.is_some() {
            return Err(ProviderError::invalid_request(
                "outpainting takes no negative prompt",
            ));
        }
        let chars = base.prompt.chars().count();
        if chars > 10_000 {
            return Err(ProviderError::invalid_request(format!(
                "the prompt has {chars} characters; {id} takes at most 10000"
            )));
        }
        if base.count() > 1 {
            return Err(ProviderError::invalid_request(format!(
                "{what} makes one image per request"
            )));
        }
        for (field, given) in [
            ("size", base.size.is_some()),
            ("aspect ratio", base.aspect_ratio.is_some()),
            ("steps", base.steps.is_some()),
            ("guidance", base.guidance.is_some()),
            ("quality", base.quality.is_some()),
            ("background", base.background.is_some()),
            ("strength", request.strength.is_some()),
            (
                "style",
                base.style.is_some() && !options.contains(&"style_preset"),
            ),
        ] {
            if given {
                return Err(ProviderError::invalid_request(format!(
                    "{what} takes no {field}"
                )));
            }
        }
        if let Some(seed) = base.seed
            && seed > MAX_SEED
        {
            return Err(ProviderError::invalid_request(format!(
                "the seed must be at most {MAX_SEED}, not {seed}"
            )));
        }
        one_of(
            id,
            "output format",
            base.output_format.as_deref(),
            self.output_formats,
        )?;
        style_preset(base)?;
        for (name, value) in &base.extra {
            if !options.contains(&name.as_str()) {
                return Err(ProviderError::invalid_request(format!(
                    "{what} has no option `{name}`; its options are {}",
                    list(options)
                )));
            }
            match name.as_str() {
                "grow_mask" => number(name, value, 0.0, 100.0)?,
                "creativity" => number(name, value, 0.0, 1.0)?,
                "left" | "right" | "up" | "down" => number(name, value, 0.0, 2000.0)?,
                _ => {}
            }
        }
        match mode {
            EditMode::Outpaint => {
                let grows = ["left", "right", "up", "down"].iter().any(|side| {
                    base.extra(side)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
                });
                if !grows {
                    return Err(ProviderError::invalid_request(
                        "outpainting needs at least one side to extend: `--set left=|right=|up=|down=PIXELS` (1–2000)",
                    ));
                }
                if request.mask.is_some() {
                    return Err(ProviderError::invalid_request("outpainting takes no mask"));
                }
            }
            EditMode::SearchReplace => {
                if base
                    .extra("search_prompt")
                    .is_none_or(|s| s.trim().is_empty())
                {
                    return Err(ProviderError::invalid_request(
                        "search and replace needs what to find: `--set search_prompt=\"the red car\"`",
                    ));
                }
                if request.mask.is_some() {
                    return Err(ProviderError::invalid_request(
                        "search and replace finds the area itself; leave out --mask",
                    ));
                }
            }
            _ => {
                if let Some(mask) = &request.mask {
                    self.validate_input("the mask", mask)?;
                    self.validate_same_size(&request.images[0], mask)?;
                } else if request.images[0].mime == "image/jpeg" {
                    return Err(ProviderError::invalid_request(format!(
                        "{what} needs a mask (--mask FILE, white = change) or an image whose transparent pixels mark the area; a JPEG has no transparency"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Check an upscale request.
    pub fn validate_upscale(&self, request: &UpscaleRequest) -> Result<(), ProviderError> {
        let id = self.id;
        let Api::Upscale(upscaler) = self.api else {
            return Err(ProviderError::invalid_request(format!(
                "{id} does not upscale; use {}",
                list(&ids_where(|m| matches!(m.api, Api::Upscale(_))))
            )));
        };
        self.validate_input("the image", &request.image)?;
        let prompt = request.prompt.as_deref().map(str::trim).unwrap_or_default();
        match upscaler {
            Upscaler::Fast => {
                if !prompt.is_empty() || request.negative_prompt.is_some() || request.seed.is_some()
                {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} takes no prompt, negative prompt or seed; upscale-conservative and upscale-creative do"
                    )));
                }
                if request.scale.is_some_and(|s| s != 4) {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} always upscales 4×; leave out --scale"
                    )));
                }
            }
            Upscaler::Conservative | Upscaler::Creative => {
                if prompt.is_empty() {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} needs a prompt describing the image (--prompt \"a red fox in snow\")"
                    )));
                }
                if request.scale.is_some() {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} makes an image of about 4 megapixels; it takes no --scale"
                    )));
                }
            }
        }
        if let Some(seed) = request.seed
            && seed > MAX_SEED
        {
            return Err(ProviderError::invalid_request(format!(
                "the seed must be at most {MAX_SEED}, not {seed}"
            )));
        }
        one_of(
            id,
            "output format",
            request.output_format.as_deref(),
            self.output_formats,
        )?;
        let (options, creativity): (&[&str], (f64, f64)) = match upscaler {
            Upscaler::Fast => (&[], (0.0, 0.0)),
            Upscaler::Conservative => (&["creativity"], (0.2, 0.5)),
            Upscaler::Creative => (&["creativity", "style_preset"], (0.1, 0.5)),
        };
        for (name, value) in &request.extra {
            match name.as_str() {
                "creativity" if options.contains(&"creativity") => {
                    number(name, value, creativity.0, creativity.1)?
                }
                "style_preset" if options.contains(&"style_preset") => {
                    one_of(id, "style preset", Some(value.trim()), STYLE_PRESETS)?
                }
                _ => {
                    return Err(ProviderError::invalid_request(if options.is_empty() {
                        format!("{id} takes no options (got `{name}`)")
                    } else {
                        format!(
                            "{id} has no option `{name}`; its options are {}",
                            list(options)
                        )
                    }));
                }
            }
        }
        if let Some((w, h)) = dimensions(&request.image.data) {
            let pixels = u64::from(w) * u64::from(h);
            let fits = match upscaler {
                Upscaler::Fast => {
                    (32..=1536).contains(&w)
                        && (32..=1536).contains(&h)
                        && (1024..=1_048_576).contains(&pixels)
                }
                Upscaler::Conservative => {
                    w >= 64 && h >= 64 && (4096..=9_437_184).contains(&pixels)
                }
                Upscaler::Creative => w >= 64 && h >= 64 && (4096..=1_048_576).contains(&pixels),
            };
            if !fits {
                let rule = match upscaler {
                    Upscaler::Fast => "32 to 1536 px per side and 1,024 to 1,048,576 pixels",
                    Upscaler::Conservative => {
                        "at least 64 px per side and 4,096 to 9,437,184 pixels"
                    }
                    Upscaler::Creative => "at least 64 px per side and 4,096 to 1,048,576 pixels",
                };
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes images of {rule}; this one is {w}x{h}"
                )));
            }
        }
        Ok(())
    }

    /// Type, upload size and (for v2beta) the pixel limits of an input image.
    fn validate_input(&self, what: &str, image: &Image) -> Result<(), ProviderError> {
        if image.data.is_empty() {
            return Err(ProviderError::invalid_request(format!("{what} is empty")));
        }
        if !INPUT_MIMES.contains(&image.mime.as_str()) {
            return Err(ProviderError::invalid_request(format!(
                "{what} is {}; Stability takes {}",
                image.mime,
                list(INPUT_MIMES)
            )));
        }
        if image.data.len() > MAX_UPLOAD_BYTES {
            return Err(ProviderError::invalid_request(format!(
                "{what} is {:.1} MiB; Stability takes uploads under 10 MiB. Use a smaller or JPEG/WebP image",
                image.data.len() as f64 / (1024.0 * 1024.0)
            )));
        }
        if matches!(self.api, Api::Generate { .. } | Api::Edit)
            && let Some((w, h)) = dimensions(&image.data)
        {
            let pixels = u64::from(w) * u64::from(h);
            if w < 64 || h < 64 || !(4096..=9_437_184).contains(&pixels) {
                return Err(ProviderError::invalid_request(format!(
                    "{what} is {w}x{h}; Stability takes images of at least 64 px per side and 4,096 to 9,437,184 pixels"
                )));
            }
        }
        Ok(())
    }

    fn validate_same_size(&self, image: &Image, mask: &Image) -> Result<(), ProviderError> {
        match (dimensions(&image.data), dimensions(&mask.data)) {
            (Some(a), Some(b)) if a != b => Err(ProviderError::invalid_request(format!(
                "the mask is {}x{} but the image is {}x{}; they must be the same size",
                b.0, b.1, a.0, a.1
            ))),
            _ => Ok(()),
        }
    }
}

/// Image-to-image needs a strength from 0 (keep the source) to 1 (ignore it).
fn validate_strength(strength: Option<f32>) -> Result<(), ProviderError> {
    match strength {
        Some(s) if !(0.0..=1.0).contains(&s) => Err(ProviderError::invalid_request(format!(
            "the strength must be from 0 (keep the source) to 1 (ignore it), not {s}"
        ))),
        _ => Ok(()),
    }
}

/// The style preset, from `--style` or `--set style_preset=`; both must agree.
pub fn style_preset(request: &GenerateRequest) -> Result<Option<&str>, ProviderError> {
    let style = request.style.as_deref().map(str::trim);
    let preset = request.extra("style_preset").map(str::trim);
    let chosen = match (style, preset) {
        (Some(a), Some(b)) if a != b => {
            return Err(ProviderError::invalid_request(format!(
                "--style `{a}` and style_preset `{b}` disagree; give one of them"
            )));
        }
        (a, b) => a.or(b),
    };
    if let Some(value) = chosen
        && !STYLE_PRESETS.contains(&value)
    {
        return Err(ProviderError::invalid_request(format!(
            "Stability has no style preset `{value}`; choose one of {}",
            list(STYLE_PRESETS)
        )));
    }
    Ok(chosen)
}

fn number(name: &str, value: &str, min: f64, max: f64) -> Result<(), ProviderError> {
    match value.trim().parse::<f64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(()),
        _ => Err(ProviderError::invalid_request(format!(
            "{name} must be a number from {min} to {max}, not `{value}`"
        ))),
    }
}

fn capability_of(mode: EditMode) -> Capability {
    match mode {
        EditMode::Edit => Capability::Edit,
        EditMode::Inpaint => Capability::Inpaint,
        EditMode::Variations => Capability::Variations,
        EditMode::Outpaint => Capability::Outpaint,
        EditMode::Erase => Capability::Erase,
        EditMode::SearchReplace => Capability::SearchReplace,
    }
}

pub fn mode_name(mode: EditMode) -> &'static str {
    match mode {
        EditMode::Edit => "image-to-image",
        EditMode::Inpaint => "inpainting",
        EditMode::Variations => "variations",
        EditMode::Outpaint => "outpainting",
        EditMode::Erase => "erasing",
        EditMode::SearchReplace => "search and replace",
    }
}

fn one_of(
    model: &str,
    what: &str,
    value: Option<&str>,
    allowed: &[&str],
) -> Result<(), ProviderError> {
    match value {
        Some(value) if !allowed.contains(&value) => Err(ProviderError::invalid_request(format!(
            "{model} takes {what} {}, not `{value}`",
            list(allowed)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(model: &str) -> GenerateRequest {
        GenerateRequest::new(model, "a lighthouse at dusk")
    }

    fn message(result: Result<(), ProviderError>) -> String {
        match result {
            Err(ProviderError::InvalidRequest(message)) => message,
            other => panic!("expected an invalid-request error, got {other:?}"),
        }
    }

    fn png_of(width: u32, height: u32) -> Image {
        let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        data.extend_from_slice(&width.to_be_bytes());
        data.extend_from_slice(&height.to_be_bytes());
        Image::png(data)
    }

    #[test]
    fn catalogue() -> Result<(), ProviderError> {
        let ultra = find("stable-image-ultra", "x")?.info();
        assert!(
            ultra.supports(Capability::Edit)
                && ultra.takes(Param::Style)
                && !ultra.takes(Param::Guidance)
        );
        assert_eq!(ultra.styles.len(), 17);
        assert_eq!(ultra.max_n, 4);
        let core = find("stable-image-core", "x")?.info();
        assert!(!core.supports(Capability::Edit));
        let sd3 = find("sd3.5-large", "x")?.info();
        assert!(sd3.takes(Param::Guidance) && sd3.output_formats == ["png", "jpeg"]);
        let edit = find("stable-image-edit", "x")?.info();
        assert!(edit.supports(Capability::Outpaint) && !edit.supports(Capability::TextToImage));
        let sdxl = find("stable-diffusion-xl-1024-v1-0", "x")?.info();
        assert_eq!(sdxl.max_n, 10);
        assert_eq!(sdxl.default_size.as_deref(), Some("1024x1024"));
        assert_eq!(find("", "stable-image-core")?.id, "stable-image-core");
        assert!(
            find("sd4", "x")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("`stable-image-core`, `sd3.5-large`")
        );
        Ok(())
    }

    #[test]
    fn generate_checks() -> Result<(), ProviderError> {
        let core = find("stable-image-core", "x")?;
        core.validate_generate(&GenerateRequest {
            aspect_ratio: Some("21:9".into()),
            style: Some("anime".into()),
            seed: Some(MAX_SEED),
            ..request("stable-image-core")
        })?;
        assert!(
            message(core.validate_generate(&GenerateRequest {
                size: Some("1024x1024".into()),
                ..request("stable-image-core")
            }))
            .contains("aspect ratio")
        );
        assert!(
            message(core.validate_generate(&GenerateRequest {
                guidance: Some(5.0),
                ..request("stable-image-core")
            }))
            .contains("takes no guidance")
        );
        assert!(
            message(core.validate_generate(&GenerateRequest {
                style: Some("watercolor".into()),
                ..request("stable-image-core")
            }))
            .contains("no style preset `watercolor`")
        );
        let mut disagree = GenerateRequest {
            style: Some("anime".into()),
            ..request("stable-image-core")
        };
        disagree
            .extra
            .insert("style_preset".into(), "origami".into());
        assert!(message(core.validate_generate(&disagree)).contains("disagree"));
        let sd3 = find("sd3.5-large", "x")?;
        assert!(
            message(sd3.validate_generate(&GenerateRequest {
                output_format: Some("webp".into()),
                ..request("sd3.5-large")
            }))
            .contains("`png` or `jpeg`")
        );
        assert!(
            message(sd3.validate_generate(&GenerateRequest {
                guidance: Some(12.0),
                ..request("sd3.5-large")
            }))
            .contains("from 1 to 10")
        );
        let sdxl = find("stable-diffusion-xl-1024-v1-0", "x")?;
        let mut ok = GenerateRequest {
            n: 10,
            size: Some("1216x832".into()),
            steps: Some(40),
            guidance: Some(7.0),
            ..request("x")
        };
        ok.extra.insert("sampler".into(), "K_DPMPP_2M".into());
        sdxl.validate_generate(&ok)?;
        assert!(
            message(sdxl.validate_generate(&GenerateRequest {
                size: Some("512x512".into()),
                ..request("x")
            }))
            .contains("takes size `1024x1024`")
        );
        assert!(
            message(sdxl.validate_generate(&GenerateRequest {
                steps: Some(5),
                ..request("x")
            }))
            .contains("10 to 150")
        );
        ok.extra.insert("sampler".into(), "euler".into());
        assert!(message(sdxl.validate_generate(&ok)).contains("takes sampler"));
        let edit = find("stable-image-edit", "x")?;
        assert!(message(edit.validate_generate(&request("x"))).contains("--mode"));
        Ok(())
    }

    #[test]
    fn edit_checks() -> Result<(), ProviderError> {
        let image = png_of(1024, 1024);
        let edit = |model: &str, mode, prompt: &str| {
            EditRequest::new(
                mode,
                GenerateRequest::new(model, prompt),
                vec![image.clone()],
            )
        };
        let service = find("stable-image-edit", "x")?;
        service.validate_edit(&edit("x", EditMode::Inpaint, "a cat").mask(png_of(1024, 1024)))?;
        assert!(
            message(
                service
                    .validate_edit(&edit("x", EditMode::Inpaint, "a cat").mask(png_of(512, 512)))
            )
            .contains("same size")
        );
        assert!(
            message(service.validate_edit(&edit("x", EditMode::Inpaint, "")))
                .contains("needs a prompt")
        );
        service.validate_edit(&edit("x", EditMode::Erase, ""))?;
        service.validate_edit(&edit("x", EditMode::Erase, "remove the bird"))?;
        let mut outpaint = edit("x", EditMode::Outpaint, "");
        assert!(message(service.validate_edit(&outpaint)).contains("at least one side"));
        outpaint.base.extra.insert("left".into(), "256".into());
        service.validate_edit(&outpaint)?;
        outpaint.base.extra.insert("down".into(), "3000".into());
        assert!(
            message(service.validate_edit(&outpaint))
                .contains("down must be a number from 0 to 2000")
        );
        let mut replace = edit("x", EditMode::SearchReplace, "a dog");
        assert!(message(service.validate_edit(&replace)).contains("search_prompt"));
        replace
            .base
            .extra
            .insert("search_prompt".into(), "the cat".into());
        service.validate_edit(&replace)?;
        assert!(
            message(service.validate_edit(&edit("x", EditMode::Edit, "a cat")))
                .contains("does no image-to-image")
        );
        assert!(
            message(service.validate_edit(&EditRequest::new(
                EditMode::Inpaint,
                request("x"),
                vec![png_of(32, 32)]
            )))
            .contains("at least 64 px")
        );

        let ultra = find("stable-image-ultra", "x")?;
        ultra.validate_edit(&EditRequest {
            strength: Some(0.4),
            ..edit("x", EditMode::Edit, "a cat")
        })?;
        assert!(
            message(ultra.validate_edit(&EditRequest {
                strength: Some(1.5),
                ..edit("x", EditMode::Edit, "a cat")
            }))
            .contains("strength")
        );
        assert!(
            message(ultra.validate_edit(&edit("x", EditMode::Inpaint, "a cat")))
                .contains("use `stable-image-edit` or `stable-diffusion-xl-1024-v1-0`")
        );
        let core = find("stable-image-core", "x")?;
        assert!(
            message(core.validate_edit(&edit("x", EditMode::Edit, "a cat")))
                .contains("does no image-to-image")
        );
        assert_eq!(
            core.validate_edit(&edit("x", EditMode::Variations, "a cat"))
                .err()
                .map(|e| e.class()),
            Some("invalid-request")
        );

        let sdxl = find("stable-diffusion-xl-1024-v1-0", "x")?;
        sdxl.validate_edit(&edit("x", EditMode::Inpaint, "a cat"))?;
        assert!(
            message(sdxl.validate_edit(&EditRequest::new(
                EditMode::Edit,
                request("x"),
                vec![png_of(1000, 1000)]
            )))
            .contains("SDXL sizes only")
        );
        let mut white = edit("x", EditMode::Inpaint, "a cat");
        white
            .base
            .extra
            .insert("mask_source".into(), "MASK_IMAGE_WHITE".into());
        assert!(message(sdxl.validate_edit(&white)).contains("needs a mask image"));
        Ok(())
    }

    #[test]
    fn upscale_checks() -> Result<(), ProviderError> {
        let fast = find("upscale-fast", "x")?;
        fast.validate_upscale(&UpscaleRequest::new("x", png_of(512, 512)))?;
        assert!(
            message(fast.validate_upscale(&UpscaleRequest::new("x", png_of(2048, 2048))))
                .contains("32 to 1536")
        );
        assert!(
            message(fast.validate_upscale(&UpscaleRequest {
                scale: Some(2),
                ..UpscaleRequest::new("x", png_of(512, 512))
            }))
            .contains("always upscales 4×")
        );
        let creative = find("upscale-creative", "x")?;
        assert!(
            message(creative.validate_upscale(&UpscaleRequest::new("x", png_of(512, 512))))
                .contains("needs a prompt")
        );
        let mut ok = UpscaleRequest {
            prompt: Some("a fox".into()),
            ..UpscaleRequest::new("x", png_of(512, 512))
        };
        ok.extra.insert("creativity".into(), "0.3".into());
        creative.validate_upscale(&ok)?;
        ok.extra.insert("creativity".into(), "0.9".into());
        assert!(message(creative.validate_upscale(&ok)).contains("from 0.1 to 0.5"));
        let core = find("stable-image-core", "x")?;
        assert!(
            message(core.validate_upscale(&UpscaleRequest::new("x", png_of(512, 512))))
                .contains("does not upscale")
        );
        Ok(())
    }
}
