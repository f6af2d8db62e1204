//! Which model a request runs and the input fields it takes: the curated models with their
//! exact field names and limits, and any other `owner/name[:version]` with the names most image
//! models on Replicate use. Requests a curated model would reject fail here, before anything is sent.

use imageai_sdk::{Capability, GenerateRequest, ModelInfo, Param, ProviderError};
use serde_json::{Map, Value, json};

use imageai_sdk::json::{short_float, value_from_text};

/// The model id in `info()` that stands for "any model id": see `ANY_MODEL` in the README.
pub const ANY_MODEL: &str = "*";

/// How a model takes the picture's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `width` and `height` in pixels, any multiple of `step` in `min..=max`.
    WidthHeight { min: u32, max: u32, step: u32 },
    /// `aspect_ratio` from a fixed list.
    AspectRatio(&'static [&'static str]),
    /// `aspect_ratio` from a list, or `aspect_ratio: "custom"` with `width` and `height`.
    AspectRatioOrCustom {
        ratios: &'static [&'static str],
        min: u32,
        max: u32,
        step: u32,
    },
    /// Unknown model: `width`/`height` for a size, `aspect_ratio` for a ratio, unchecked.
    Any,
}

/// The input field names of one model; `None` where the model has no such input.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub negative_prompt: Option<&'static str>,
    pub seed: Option<&'static str>,
    /// Name, min, max.
    pub steps: Option<(&'static str, u32, u32)>,
    /// Name, min, max.
    pub guidance: Option<(&'static str, f32, f32)>,
    /// Name and the most images one prediction makes.
    pub n: Option<(&'static str, u32)>,
    /// Name and the values accepted (empty: unchecked).
    pub output_format: Option<(&'static str, &'static [&'static str])>,
    pub shape: Shape,
}

/// A curated model: what the host shows, how to run it, and its inputs.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// `owner/name`.
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// The version community models are pinned to (run through `POST /predictions`); official
    /// models have none and run the latest through `POST /models/{owner}/{name}/predictions`.
    pub version: Option<&'static str>,
    pub inputs: Inputs,
}

const FLUX_RATIOS: &[&str] = &[
    "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
];
const FLUX_PRO_RATIOS: &[&str] = &[
    "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3",
];
const FLUX_ULTRA_RATIOS: &[&str] = &[
    "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21",
];
const IMAGEN_RATIOS: &[&str] = &["1:1", "9:16", "16:9", "3:4", "4:3"];
const WEBP_JPG_PNG: &[&str] = &["webp", "jpg", "png"];
const JPG_PNG: &[&str] = &["jpg", "png"];

/// The curated list: popular text-to-image models, newest and most used first.
pub const MODELS: &[Model] = &[
    Model {
        id: "black-forest-labs/flux-schnell",
        name: "FLUX.1 [schnell]",
        description: "The fastest FLUX model: good images in 1 to 4 steps.",
        version: None,
        inputs: Inputs {
            negative_prompt: None,
            seed: Some("seed"),
            steps: Some(("num_inference_steps", 1, 4)),
            guidance: None,
            n: Some(("num_outputs", 4)),
            output_format: Some(("output_format", WEBP_JPG_PNG)),
            shape: Shape::AspectRatio(FLUX_RATIOS),
        },
    },
    Model {
        id: "black-forest-labs/flux-dev",
        name: "FLUX.1 [dev]",
        description: "FLUX for detail and prompt following, with guidance and up to 50 steps.",
        version: None,
        inputs: Inputs {
            negative_prompt: None,
            seed: Some("seed"),
            steps: Some(("num_inference_steps", 1, 50)),
            guidance: Some(("guidance", 0.0, 10.0)),
            n: Some(("num_outputs", 4)),
            output_format: Some(("output_format", WEBP_JPG_PNG)),
            shape: Shape::AspectRatio(FLUX_RATIOS),
        },
    },
    Model {
        id: "black-forest-labs/flux-1.1-pro",
        name: "FLUX1.1 [pro]",
        description: "Black Forest Labs' pro model: aspect ratios or a custom size up to 1440 px.",
        version: None,
        inputs: Inputs {
            negative_prompt: None,
            seed: Some("seed"),
            steps: None,
            guidance: None,
            n: None,
            output_format: Some(("output_format", WEBP_JPG_PNG)),
            shape: Shape::AspectRatioOrCustom {
                ratios: FLUX_PRO_RATIOS,
                min: 256,
                max: 1440,
                step: 32,
            },
        },
    },
    Model {
        id: "black-forest-labs/flux-1.1-pro-ultra",
        name: "FLUX1.1 [pro] ultra",
        description: "Up to 4 megapixel images from FLUX1.1 [pro].",
        version: None,
        inputs: Inputs {
            negative_prompt: None,
            seed: Some("seed"),
            steps: None,
            guidance: None,
            n: None,
            output_format: Some(("output_format", JPG_PNG)),
            shape: Shape::AspectRatio(FLUX_ULTRA_RATIOS),
        },
    },
    Model {
        id: "stability-ai/stable-diffusion-3.5-large",
        name: "Stable Diffusion 3.5 Large",
        description: "Stability AI's largest SD 3.5 model, with negative prompts and guidance.",
        version: None,
        inputs: Inputs {
            negative_prompt: Some("negative_prompt"),
            seed: Some("seed"),
            steps: Some(("steps", 1, 50)),
            guidance: Some(("cfg", 0.0, 20.0)),
            n: None,
            output_format: Some(("output_format", WEBP_JPG_PNG)),
            shape: Shape::AspectRatio(FLUX_RATIOS),
        },
    },
    Model {
        id: "google/imagen-4",
        name: "Imagen 4",
        description: "Google's Imagen 4: photorealism and legible text.",
        version: None,
        inputs: Inputs {
            negative_prompt: None,
            seed: None,
            steps: None,
            guidance: None,
            n: None,
            output_format: Some(("output_format", JPG_PNG)),
            shape: Shape::AspectRatio(IMAGEN_RATIOS),
        },
    },
    Model {
        id: "stability-ai/sdxl",
        name: "Stable Diffusion XL",
        description: "The SDXL base model (a community model, pinned to a version): sizes, negative prompts, up to 4 images.",
        version: Some("7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"),
        inputs: Inputs {
            negative_prompt: Some("negative_prompt"),
            seed: Some("seed"),
            steps: Some(("num_inference_steps", 1, 500)),
            guidance: Some(("guidance_scale", 1.0, 50.0)),
            n: Some(("num_outputs", 4)),
            output_format: None,
            shape: Shape::WidthHeight {
                min: 128,
                max: 2048,
                step: 8,
            },
        },
    },
];

/// What any other model gets: the field names most image models on Replicate use. Fields the
/// model does not know are ignored by Replicate, and `--set name=value` covers the rest.
const ANY_INPUTS: Inputs = Inputs {
    negative_prompt: Some("negative_prompt"),
    seed: Some("seed"),
    steps: Some(("num_inference_steps", 1, 1000)),
    guidance: Some(("guidance_scale", 0.0, 100.0)),
    n: Some(("num_outputs", 4)),
    output_format: Some(("output_format", &[])),
    shape: Shape::Any,
};

impl Model {
    pub fn info(&self) -> ModelInfo {
        let mut info = ModelInfo::new(self.id, self.name)
            .description(self.description)
            .capabilities([Capability::TextToImage])
            .params(params(&self.inputs))
            .max_n(self.inputs.n.map_or(1, |(_, max)| max));
        if let Some((_, formats)) = self.inputs.output_format {
            info = info.output_formats(formats.iter().copied());
        }
        match self.inputs.shape {
            Shape::AspectRatio(ratios) | Shape::AspectRatioOrCustom { ratios, .. } => {
                info = info.aspect_ratios(ratios.iter().copied());
            }
            Shape::WidthHeight { .. } => info = info.default_size("1024x1024"),
            Shape::Any => {}
        }
        info
    }
}

/// The entry that lets any `owner/name[:version]` through the host's model check.
pub fn any_model_info() -> ModelInfo {
    ModelInfo::new(ANY_MODEL, "Any Replicate model")
        .description(
            "Type any image model's id: `owner/name` for official models, `owner/name:version` for the others. \
             Model-specific inputs go in with --set name=value.",
        )
        .capabilities([Capability::TextToImage])
        .params(params(&ANY_INPUTS))
        .max_n(4)
}

fn params(inputs: &Inputs) -> Vec<Param> {
    let mut params = Vec::new();
    if inputs.n.is_some() {
        params.push(Param::N);
    }
    for (present, param) in [
        (inputs.seed.is_some(), Param::Seed),
        (inputs.steps.is_some(), Param::Steps),
        (inputs.guidance.is_some(), Param::Guidance),
        (inputs.negative_prompt.is_some(), Param::NegativePrompt),
        (inputs.output_format.is_some(), Param::OutputFormat),
    ] {
        if present {
            params.push(param);
        }
    }
    match inputs.shape {
        Shape::WidthHeight { .. } => params.push(Param::Size),
        Shape::AspectRatio(_) => params.push(Param::AspectRatio),
        Shape::AspectRatioOrCustom { .. } | Shape::Any => {
            params.extend([Param::Size, Param::AspectRatio])
        }
    }
    params
}

/// Where a prediction is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `POST /models/{owner}/{name}/predictions`: official models, always their latest version.
    Official { owner: String, name: String },
    /// `POST /predictions` with `version`.
    Version { version: String },
}

/// The model a request runs: its id as typed, where to send it, and the inputs it takes.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `owner/name` (or the bare version id), for messages and links.
    pub reference: String,
    pub target: Target,
    pub inputs: Inputs,
    /// The curated entry, when the model is one.
    pub curated: Option<&'static Model>,
}

/// Read a model id: `owner/name`, `owner/name:version`, a bare 64-character version id, or a
/// model page URL (`https://replicate.com/owner/name`).
pub fn resolve(id: &str) -> Result<Resolved, ProviderError> {
    let id = id.trim();
    let id = id
        .strip_prefix("https://replicate.com/")
        .or_else(|| id.strip_prefix("replicate.com/"))
        .map_or(id, |rest| rest.trim_end_matches('/'));
    if id.is_empty() || id == ANY_MODEL {
        return Err(ProviderError::invalid_request(
            "choose a Replicate model: type its id, e.g. `black-forest-labs/flux-schnell`, or `owner/name:version` for community models",
        ));
    }
    if is_version_id(id) {
        return Ok(Resolved {
            reference: id.to_owned(),
            target: Target::Version {
                version: id.to_owned(),
            },
            inputs: ANY_INPUTS,
            curated: None,
        });
    }
    let (reference, version) = match id.split_once(':') {
        Some((reference, version)) => (reference, Some(version)),
        None => (id, None),
    };
    let (owner, name) = reference.split_once('/').ok_or_else(|| bad_id(id))?;
    if !is_name(owner) || !is_name(name) {
        return Err(bad_id(id));
    }
    if let Some(version) = version
        && !(!version.is_empty()
            && version.len() <= 128
            && version.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ProviderError::invalid_request(format!(
            "`{version}` is not a Replicate version id (letters and digits, e.g. 64 hex characters); copy it from https://replicate.com/{reference}/versions"
        )));
    }
    let curated = MODELS.iter().find(|m| m.id == reference);
    let target = match version.or_else(|| curated.and_then(|m| m.version)) {
        Some(version) => Target::Version {
            version: version.to_owned(),
        },
        None => Target::Official {
            owner: owner.to_owned(),
            name: name.to_owned(),
        },
    };
    Ok(Resolved {
        reference: reference.to_owned(),
        target,
        inputs: curated.map_or(ANY_INPUTS, |m| m.inputs),
        curated,
    })
}

fn bad_id(id: &str) -> ProviderError {
    ProviderError::invalid_request(format!(
        "`{id}` is not a Replicate model id: use `owner/name` (e.g. `black-forest-labs/flux-schnell`) or `owner/name:version`"
    ))
}

/// Owner and model names: letters, digits, `-`, `_`, `.`, not starting with a dot.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_version_id(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The prediction's `input`: the common parameters under the model's own field names, then
/// the `--set` extras (which win), with values that read as JSON sent as JSON.
pub fn input(
    model: &Resolved,
    request: &GenerateRequest,
) -> Result<Map<String, Value>, ProviderError> {
    let who = model.reference.as_str();
    let strict = model.curated.is_some();
    let inputs = &model.inputs;
    if request.prompt.trim().is_empty() {
        return Err(ProviderError::invalid_request(
            "the prompt is empty; describe the image to make",
        ));
    }
    for (name, value) in [
        ("quality", &request.quality),
        ("style", &request.style),
        ("background", &request.background),
    ] {
        if value.is_some() {
            return Err(ProviderError::invalid_request(format!(
                "Replicate models take no `{name}` parameter; pass the model's own inputs with --set name=value"
            )));
        }
    }
    let mut input = Map::new();
    input.insert("prompt".into(), json!(request.prompt));

    if let Some(negative) = request
        .negative_prompt
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        let field = inputs
            .negative_prompt
            .ok_or_else(|| unsupported(who, "a negative prompt"))?;
        input.insert(field.into(), json!(negative));
    }
    if let Some(seed) = request.seed {
        let field = inputs.seed.ok_or_else(|| unsupported(who, "a seed"))?;
        input.insert(field.into(), json!(seed));
    }
    if let Some(steps) = request.steps {
        let (field, min, max) = inputs
            .steps
            .ok_or_else(|| unsupported(who, "a step count"))?;
        if strict && !(min..=max).contains(&steps) {
            return Err(ProviderError::invalid_request(format!(
                "{who} takes {min} to {max} steps, not {steps}"
            )));
        }
        input.insert(field.into(), json!(steps));
    }
    if let Some(guidance) = request.guidance {
        let (field, min, max) = inputs
            .guidance
            .ok_or_else(|| unsupported(who, "a guidance scale"))?;
        if !guidance.is_finite() || (strict && !(min..=max).contains(&guidance)) {
            return Err(ProviderError::invalid_request(format!(
                "{who} takes guidance from {min} to {max}, not {guidance}"
            )));
        }
        input.insert(field.into(), short_float(guidance));
    }
    match inputs.n {
        Some((field, max)) => {
            if request.count() > max {
                return Err(ProviderError::invalid_request(format!(
                    "{who} makes 1 to {max} image(s) per request, not {}",
                    request.count()
                )));
            }
            // Unknown models may not take `num_outputs`: only send it when more than one is asked.
            if request.n > 1 || (strict && request.n == 1) {
                input.insert(field.into(), json!(request.count()));
            }
        }
        None if request.count() > 1 => {
            return Err(ProviderError::invalid_request(format!(
                "{who} makes one image per request, not {}; run it several times instead",
                request.count()
            )));
        }
        None => {}
    }
    if let Some(format) = request.output_format.as_deref() {
        let (field, formats) = inputs
            .output_format
            .ok_or_else(|| unsupported(who, "an output format"))?;
        // Replicate spells JPEG `jpg`.
        let format = if format == "jpeg" { "jpg" } else { format };
        if !formats.is_empty() && !formats.contains(&format) {
            return Err(ProviderError::invalid_request(format!(
                "{who} outputs {}, not `{format}`",
                one_of(formats)
            )));
        }
        input.insert(field.into(), json!(format));
    }
    insert_shape(&mut input, who, inputs.shape, request)?;

    for (name, value) in &request.extra {
        let name = name.trim();
        if name.is_empty() {
            return Err(ProviderError::invalid_request(
                "an extra input (--set name=value) has an empty name",
            ));
        }
        input.insert(name.to_owned(), value_from_text(value));
    }
    Ok(input)
}

fn insert_shape(
    input: &mut Map<String, Value>,
    who: &str,
    shape: Shape,
    request: &GenerateRequest,
) -> Result<(), ProviderError> {
    let size = request
        .size
        .as_deref()
        .filter(|s| !s.trim().is_empty() && *s != "auto");
    let ratio = request
        .aspect_ratio
        .as_deref()
        .filter(|r| !r.trim().is_empty());
    match shape {
        Shape::Any => {
            if let Some(size) = size {
                let (width, height) = parse_size(size)?;
                input.insert("width".into(), json!(width));
                input.insert("height".into(), json!(height));
            }
            if let Some(ratio) = ratio {
                input.insert("aspect_ratio".into(), json!(ratio));
            }
        }
        Shape::WidthHeight { min, max, step } => {
            if ratio.is_some() {
                return Err(ProviderError::invalid_request(format!(
                    "{who} takes a size (--size WIDTHxHEIGHT), not an aspect ratio"
                )));
            }
            if let Some(size) = size {
                let (width, height) = checked_size(who, size, min, max, step)?;
                input.insert("width".into(), json!(width));
                input.insert("height".into(), json!(height));
            }
        }
        Shape::AspectRatio(ratios) => {
            if size.is_some() {
                return Err(ProviderError::invalid_request(format!(
                    "{who} takes an aspect ratio ({}), not a size",
                    one_of(ratios)
                )));
            }
            if let Some(ratio) = ratio {
                input.insert(
                    "aspect_ratio".into(),
                    json!(checked_ratio(who, ratio, ratios)?),
                );
            }
        }
        Shape::AspectRatioOrCustom {
            ratios,
            min,
            max,
            step,
        } => match (size, ratio) {
            (Some(_), Some(_)) => {
                return Err(ProviderError::invalid_request(format!(
                    "{who} takes an aspect ratio or a size, not both"
                )));
            }
            (Some(size), None) => {
                let (width, height) = checked_size(who, size, min, max, step)?;
                input.insert("aspect_ratio".into(), json!("custom"));
                input.insert("width".into(), json!(width));
                input.insert("height".into(), json!(height));
            }
            (None, Some(ratio)) => {
                input.insert(
                    "aspect_ratio".into(),
                    json!(checked_ratio(who, ratio, ratios)?),
                );
            }
            (None, None) => {}
        },
    }
    Ok(())
}

fn checked_ratio<'a>(who: &str, ratio: &str, ratios: &[&'a str]) -> Result<&'a str, ProviderError> {
    let ratio = ratio.trim();
    ratios.iter().copied().find(|r| *r == ratio).ok_or_else(|| {
        ProviderError::invalid_request(format!(
            "{who} takes aspect ratio {}, not `{ratio}`",
            one_of(ratios)
        ))
    })
}

fn checked_size(
    who: &str,
    size: &str,
    min: u32,
    max: u32,
    step: u32,
) -> Result<(u32, u32), ProviderError> {
    let (width, height) = parse_size(size)?;
    for side in [width, height] {
        if !(min..=max).contains(&side) || side % step != 0 {
            return Err(ProviderError::invalid_request(format!(
                "{who} takes widths and heights from {min} to {max} in steps of {step}, not {width}x{height}"
            )));
        }
    }
    Ok((width, height))
}

/// `WIDTHxHEIGHT`.
pub fn parse_size(size: &str) -> Result<(u32, u32), ProviderError> {
    let parsed = size
        .trim()
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0);
    parsed.ok_or_else(|| {
        ProviderError::invalid_request(format!(
            "`{size}` is not a size; write WIDTHxHEIGHT, e.g. 1024x768"
        ))
    })
}

fn unsupported(who: &str, what: &str) -> ProviderError {
    ProviderError::invalid_request(format!(
        "{who} does not take {what}; leave it out, or pass the model's own input with --set name=value"
    ))
}

/// "`a`, `b` or `c`".
fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(model: &str) -> GenerateRequest {
        GenerateRequest::new(model, "a lighthouse")
    }

    #[test]
    fn resolves_official_versioned_and_pinned_models() -> Result<(), ProviderError> {
        let official = resolve("black-forest-labs/flux-dev")?;
        assert_eq!(
            official.target,
            Target::Official {
                owner: "black-forest-labs".into(),
                name: "flux-dev".into()
            }
        );
        assert!(official.curated.is_some());

        let versioned = resolve("acme/pixel-art:0123abcd")?;
        assert_eq!(
            versioned.target,
            Target::Version {
                version: "0123abcd".into()
            }
        );
        assert_eq!(versioned.reference, "acme/pixel-art");
        assert!(versioned.curated.is_none());

        let pinned = resolve("stability-ai/sdxl")?;
        assert!(
            matches!(pinned.target, Target::Version { ref version } if version.starts_with("7762fd07"))
        );

        let bare = "a".repeat(64);
        assert_eq!(
            resolve(&bare)?.target,
            Target::Version {
                version: bare.clone()
            }
        );
        assert_eq!(
            resolve("https://replicate.com/google/imagen-4/")?.reference,
            "google/imagen-4"
        );

        for bad in [
            "",
            "*",
            "flux",
            "a/b/c",
            "a/ b",
            "../x",
            "a/b:",
            "a/b:ver/sion",
        ] {
            assert_eq!(
                resolve(bad).err().map(|e| e.class()),
                Some("invalid-request"),
                "{bad}"
            );
        }
        Ok(())
    }

    #[test]
    fn maps_common_parameters_onto_each_model_s_fields() -> Result<(), ProviderError> {
        let dev = GenerateRequest {
            n: 2,
            seed: Some(42),
            steps: Some(30),
            guidance: Some(3.3),
            aspect_ratio: Some("16:9".into()),
            output_format: Some("jpeg".into()),
            ..request("black-forest-labs/flux-dev")
        };
        assert_eq!(
            Value::Object(input(&resolve(&dev.model)?, &dev)?),
            json!({"prompt": "a lighthouse", "seed": 42, "num_inference_steps": 30, "guidance": 3.3,
                   "num_outputs": 2, "output_format": "jpg", "aspect_ratio": "16:9"})
        );

        let sd35 = GenerateRequest {
            negative_prompt: Some("blur".into()),
            steps: Some(40),
            guidance: Some(4.5),
            ..request("stability-ai/stable-diffusion-3.5-large")
        };
        assert_eq!(
            Value::Object(input(&resolve(&sd35.model)?, &sd35)?),
            json!({"prompt": "a lighthouse", "negative_prompt": "blur", "steps": 40, "cfg": 4.5})
        );

        let pro = GenerateRequest {
            size: Some("1024x768".into()),
            ..request("black-forest-labs/flux-1.1-pro")
        };
        assert_eq!(
            Value::Object(input(&resolve(&pro.model)?, &pro)?),
            json!({"prompt": "a lighthouse", "aspect_ratio": "custom", "width": 1024, "height": 768})
        );
        Ok(())
    }

    #[test]
    fn any_model_gets_common_names_and_extras_win() -> Result<(), ProviderError> {
        let mut any = GenerateRequest {
            n: 3,
            size: Some("768x512".into()),
            seed: Some(1),
            ..request("acme/pixel-art:abc123")
        };
        any.extra.insert("lora_scale".into(), "0.8".into());
        any.extra
            .insert("refine".into(), "expert_ensemble_refiner".into());
        any.extra.insert("apply_watermark".into(), "false".into());
        any.extra.insert("seed".into(), "7".into());
        assert_eq!(
            Value::Object(input(&resolve(&any.model)?, &any)?),
            json!({"prompt": "a lighthouse", "seed": 7, "num_outputs": 3, "width": 768, "height": 512,
                   "lora_scale": 0.8, "refine": "expert_ensemble_refiner", "apply_watermark": false})
        );
        let single = request("acme/pixel-art");
        assert!(!input(&resolve(&single.model)?, &single)?.contains_key("num_outputs"));
        Ok(())
    }

    #[test]
    fn refuses_what_a_curated_model_would_reject() -> Result<(), ProviderError> {
        let cases = [
            (
                GenerateRequest {
                    n: 2,
                    ..request("black-forest-labs/flux-1.1-pro")
                },
                "makes one image per request",
            ),
            (
                GenerateRequest {
                    n: 5,
                    ..request("black-forest-labs/flux-schnell")
                },
                "makes 1 to 4 image(s)",
            ),
            (
                GenerateRequest {
                    steps: Some(8),
                    ..request("black-forest-labs/flux-schnell")
                },
                "takes 1 to 4 steps",
            ),
            (
                GenerateRequest {
                    negative_prompt: Some("x".into()),
                    ..request("black-forest-labs/flux-dev")
                },
                "does not take a negative prompt",
            ),
            (
                GenerateRequest {
                    aspect_ratio: Some("7:3".into()),
                    ..request("google/imagen-4")
                },
                "takes aspect ratio `1:1`",
            ),
            (
                GenerateRequest {
                    size: Some("1024x1024".into()),
                    ..request("google/imagen-4")
                },
                "not a size",
            ),
            (
                GenerateRequest {
                    size: Some("1000x1000".into()),
                    ..request("black-forest-labs/flux-1.1-pro")
                },
                "in steps of 32",
            ),
            (
                GenerateRequest {
                    output_format: Some("webp".into()),
                    ..request("google/imagen-4")
                },
                "outputs `jpg` or `png`",
            ),
            (
                GenerateRequest {
                    quality: Some("hd".into()),
                    ..request("acme/any")
                },
                "no `quality`",
            ),
            (request(""), "choose a Replicate model"),
        ];
        for (request, expected) in cases {
            let result = resolve(&request.model).and_then(|m| input(&m, &request));
            match result {
                Err(ProviderError::InvalidRequest(message)) => {
                    assert!(message.contains(expected), "{message}")
                }
                other => panic!("expected invalid-request containing {expected:?}, got {other:?}"),
            }
        }
        let blank = GenerateRequest::new("google/imagen-4", "  ");
        assert!(input(&resolve("google/imagen-4")?, &blank).is_err());
        Ok(())
    }

    #[test]
    fn info_describes_each_model() {
        let schnell = MODELS[0].info();
        assert_eq!(
            schnell.params,
            [
                Param::N,
                Param::Seed,
                Param::Steps,
                Param::OutputFormat,
                Param::AspectRatio
            ]
        );
        assert_eq!(schnell.max_n, 4);
        assert_eq!(schnell.aspect_ratios.len(), 11);
        let sdxl = MODELS
            .iter()
            .find(|m| m.id == "stability-ai/sdxl")
            .map(Model::info);
        assert_eq!(sdxl.and_then(|m| m.default_size), Some("1024x1024".into()));
        let any = any_model_info();
        assert_eq!(any.id, ANY_MODEL);
        assert!(
            any.takes(Param::Size)
                && any.takes(Param::AspectRatio)
                && any.takes(Param::NegativePrompt)
        );
    }
}
