//! Which model a request runs: the curated text-to-image models HF Inference serves, with the
//! parameters each honours, or any other model id on the Hub. Requests a curated model cannot
//! honour fail here, before anything is sent.

use imageai_sdk::{Capability, GenerateRequest, ModelInfo, Param, ProviderError};

/// The model id in `info()` that stands for "any model id".
pub const ANY_MODEL: &str = "*";
/// The most images one request asks for: HF Inference makes one image per call, so `n` images
/// are `n` calls.
pub const MAX_N: u32 = 4;
/// The pixel budget an aspect ratio is turned into a size with (about one megapixel).
const RATIO_AREA: f64 = 1024.0 * 1024.0;

/// A curated model.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// `org/model` on the Hub.
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// The request parameters the model's pipeline honours.
    pub params: &'static [Param],
    /// Whether the Hub makes users accept the model's terms before it can be used.
    pub gated: bool,
}

const ALL_PARAMS: &[Param] = &[
    Param::N,
    Param::Seed,
    Param::Steps,
    Param::Guidance,
    Param::NegativePrompt,
    Param::Size,
];

/// The curated list: text-to-image models HF Inference serves, most used first.
pub const MODELS: &[Model] = &[
    Model {
        id: "black-forest-labs/FLUX.1-schnell",
        name: "FLUX.1 [schnell]",
        description: "The fastest FLUX model: good images in 1 to 4 steps (no guidance or negative prompt).",
        params: &[Param::N, Param::Seed, Param::Steps, Param::Size],
        gated: false,
    },
    Model {
        id: "black-forest-labs/FLUX.1-dev",
        name: "FLUX.1 [dev]",
        description: "FLUX for detail and prompt following. Gated: accept its license on the Hub first.",
        params: &[
            Param::N,
            Param::Seed,
            Param::Steps,
            Param::Guidance,
            Param::Size,
        ],
        gated: true,
    },
    Model {
        id: "stabilityai/stable-diffusion-3.5-large",
        name: "Stable Diffusion 3.5 Large",
        description: "Stability AI's largest SD 3.5 model. Gated: accept its license on the Hub first.",
        params: ALL_PARAMS,
        gated: true,
    },
    Model {
        id: "stabilityai/stable-diffusion-xl-base-1.0",
        name: "Stable Diffusion XL",
        description: "The SDXL base model: negative prompts, guidance, any size around 1024 px.",
        params: ALL_PARAMS,
        gated: false,
    },
];

impl Model {
    pub fn info(&self) -> ModelInfo {
        ModelInfo::new(self.id, self.name)
            .description(self.description)
            .capabilities([Capability::TextToImage])
            .params(self.params.iter().copied())
            .default_size("1024x1024")
            .max_n(MAX_N)
    }
}

/// The entry that lets any `org/model` through the host's model check.
pub fn any_model_info() -> ModelInfo {
    ModelInfo::new(ANY_MODEL, "Any Hugging Face model")
        .description(
            "Type the id of any text-to-image model HF Inference serves (`org/model`). Pipeline-specific parameters go in with --set name=value.",
        )
        .capabilities([Capability::TextToImage])
        .params(ALL_PARAMS.iter().copied())
        .max_n(MAX_N)
}

/// The model a request runs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `org/model` as sent in the URL path.
    pub id: String,
    /// The curated entry, when the model is one.
    pub curated: Option<&'static Model>,
}

/// Read a model id (`org/model`, or a Hub URL to it); check it is safe to put in a URL path.
pub fn resolve(id: &str) -> Result<Resolved, ProviderError> {
    let id = id.trim();
    let id = id
        .strip_prefix("https://huggingface.co/")
        .or_else(|| id.strip_prefix("huggingface.co/"))
        .map_or(id, |rest| rest.trim_end_matches('/'));
    if id.is_empty() || id == ANY_MODEL {
        return Err(ProviderError::invalid_request(
            "choose a Hugging Face model: type its id, e.g. `black-forest-labs/FLUX.1-schnell`",
        ));
    }
    let parts: Vec<&str> = id.split('/').collect();
    let valid = matches!(parts.len(), 1 | 2) && parts.iter().all(|part| is_name(part));
    if !valid {
        return Err(ProviderError::invalid_request(format!(
            "`{id}` is not a Hugging Face model id: use `org/model`, e.g. `stabilityai/stable-diffusion-xl-base-1.0`"
        )));
    }
    let curated = MODELS.iter().find(|m| m.id.eq_ignore_ascii_case(id));
    Ok(Resolved {
        id: curated.map_or(id, |m| m.id).to_owned(),
        curated,
    })
}

/// Hub names: letters, digits, `-`, `_`, `.`, at most 96 characters, no `..`, not starting or
/// ending with `-` or `.`.
fn is_name(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 96
        && !part.contains("..")
        && !part.starts_with(['-', '.'])
        && !part.ends_with(['-', '.'])
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What one request asks for, checked: the parameters HF Inference's text-to-image task takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub negative_prompt: Option<String>,
    pub size: Option<(u32, u32)>,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub seed: Option<u64>,
    pub n: u32,
}

/// Check a request against the model: a prompt, `n` within bounds, a sane size, and (for curated
/// models) only the parameters the model honours.
pub fn check(model: &Resolved, request: &GenerateRequest) -> Result<Checked, ProviderError> {
    let who = model.id.as_str();
    if request.prompt.trim().is_empty() {
        return Err(ProviderError::invalid_request(
            "the prompt is empty; describe the image to make",
        ));
    }
    for (name, value) in [
        ("quality", &request.quality),
        ("style", &request.style),
        ("background", &request.background),
        ("output format", &request.output_format),
    ] {
        if value.is_some() {
            return Err(ProviderError::invalid_request(format!(
                "HF Inference takes no {name}; leave it out (pipeline parameters go in with --set name=value)"
            )));
        }
    }
    let takes = |param: Param| model.curated.is_none_or(|m| m.params.contains(&param));
    let refuse = |what: &str| {
        ProviderError::invalid_request(format!("{who} does not take {what}; leave it out"))
    };
    let n = request.count();
    if n > MAX_N {
        return Err(ProviderError::invalid_request(format!(
            "HF Inference makes 1 to {MAX_N} image(s) per request (one call each), not {n}"
        )));
    }
    let negative_prompt = request
        .negative_prompt
        .clone()
        .filter(|p| !p.trim().is_empty());
    if negative_prompt.is_some() && !takes(Param::NegativePrompt) {
        return Err(refuse("a negative prompt"));
    }
    if request.guidance.is_some() && !takes(Param::Guidance) {
        return Err(refuse("a guidance scale"));
    }
    if let Some(guidance) = request.guidance
        && !(guidance.is_finite() && (0.0..=100.0).contains(&guidance))
    {
        return Err(ProviderError::invalid_request(format!(
            "guidance must be from 0 to 100, not {guidance}"
        )));
    }
    if let Some(steps) = request.steps
        && !(1..=500).contains(&steps)
    {
        return Err(ProviderError::invalid_request(format!(
            "steps must be from 1 to 500, not {steps}"
        )));
    }
    let size = match (
        request
            .size
            .as_deref()
            .filter(|s| !s.trim().is_empty() && *s != "auto"),
        request.aspect_ratio.as_deref(),
    ) {
        (Some(size), _) => Some(parse_size(size)?),
        (None, Some(ratio)) if !ratio.trim().is_empty() => Some(size_for_ratio(ratio)?),
        _ => None,
    };
    if let Some((width, height)) = size {
        for side in [width, height] {
            if !(64..=2048).contains(&side) || side % 8 != 0 {
                return Err(ProviderError::invalid_request(format!(
                    "HF Inference takes widths and heights from 64 to 2048 in steps of 8, not {width}x{height}"
                )));
            }
        }
    }
    Ok(Checked {
        negative_prompt,
        size,
        steps: request.steps,
        guidance: request.guidance,
        seed: request.seed,
        n,
    })
}

/// `WIDTHxHEIGHT`.
fn parse_size(size: &str) -> Result<(u32, u32), ProviderError> {
    size.trim()
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0)
        .ok_or_else(|| {
            ProviderError::invalid_request(format!(
                "`{size}` is not a size; write WIDTHxHEIGHT, e.g. 1024x768"
            ))
        })
}

/// `W:H` as a size of about one megapixel, both sides multiples of 64 (what SD and FLUX pipelines
/// like best).
fn size_for_ratio(ratio: &str) -> Result<(u32, u32), ProviderError> {
    let parsed = ratio
        .trim()
        .split_once(':')
        .and_then(|(w, h)| Some((w.trim().parse::<f64>().ok()?, h.trim().parse::<f64>().ok()?)))
        .filter(|(w, h)| {
            *w > 0.0 && *h > 0.0 && (w / h).is_finite() && (0.25..=4.0).contains(&(w / h))
        });
    let (w, h) = parsed.ok_or_else(|| {
        ProviderError::invalid_request(format!(
            "`{ratio}` is not an aspect ratio from 1:4 to 4:1; write W:H, e.g. 16:9"
        ))
    })?;
    let width = (RATIO_AREA * w / h).sqrt();
    let height = width * h / w;
    let round = |side: f64| ((side / 64.0).round() * 64.0).clamp(64.0, 2048.0) as u32;
    Ok((round(width), round(height)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_model_ids() -> Result<(), ProviderError> {
        assert_eq!(
            resolve("black-forest-labs/flux.1-schnell")?.id,
            "black-forest-labs/FLUX.1-schnell"
        );
        assert!(
            resolve("black-forest-labs/FLUX.1-dev")?
                .curated
                .is_some_and(|m| m.gated)
        );
        let any = resolve("https://huggingface.co/acme/pixel-diffusion/")?;
        assert_eq!(any.id, "acme/pixel-diffusion");
        assert!(any.curated.is_none());
        assert_eq!(resolve("gpt2")?.id, "gpt2");
        for bad in [
            "",
            "*",
            "a/b/c",
            "../x",
            "a/..",
            "a b/c",
            "org/model?x=1",
            "org/-x",
            "org/x#y",
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
    fn checks_requests() -> Result<(), ProviderError> {
        let sdxl = resolve("stabilityai/stable-diffusion-xl-base-1.0")?;
        let request = GenerateRequest {
            n: 2,
            negative_prompt: Some("blurry".into()),
            size: Some("1152x896".into()),
            steps: Some(30),
            guidance: Some(7.0),
            seed: Some(9),
            ..GenerateRequest::new(&sdxl.id, "a fox")
        };
        assert_eq!(
            check(&sdxl, &request)?,
            Checked {
                negative_prompt: Some("blurry".into()),
                size: Some((1152, 896)),
                steps: Some(30),
                guidance: Some(7.0),
                seed: Some(9),
                n: 2
            }
        );
        let wide = GenerateRequest {
            aspect_ratio: Some("16:9".into()),
            ..GenerateRequest::new("x/y", "a fox")
        };
        assert_eq!(check(&resolve("x/y")?, &wide)?.size, Some((1344, 768)));

        let schnell = resolve("black-forest-labs/FLUX.1-schnell")?;
        let cases = [
            (
                GenerateRequest {
                    negative_prompt: Some("x".into()),
                    ..GenerateRequest::new("m", "p")
                },
                "does not take a negative prompt",
            ),
            (
                GenerateRequest {
                    guidance: Some(3.0),
                    ..GenerateRequest::new("m", "p")
                },
                "does not take a guidance scale",
            ),
            (
                GenerateRequest {
                    n: 5,
                    ..GenerateRequest::new("m", "p")
                },
                "1 to 4 image(s)",
            ),
            (
                GenerateRequest {
                    size: Some("1000x7".into()),
                    ..GenerateRequest::new("m", "p")
                },
                "from 64 to 2048",
            ),
            (
                GenerateRequest {
                    size: Some("big".into()),
                    ..GenerateRequest::new("m", "p")
                },
                "not a size",
            ),
            (
                GenerateRequest {
                    aspect_ratio: Some("9:1".into()),
                    ..GenerateRequest::new("m", "p")
                },
                "not an aspect ratio",
            ),
            (
                GenerateRequest {
                    output_format: Some("png".into()),
                    ..GenerateRequest::new("m", "p")
                },
                "no output format",
            ),
            (GenerateRequest::new("m", " "), "the prompt is empty"),
        ];
        for (request, expected) in cases {
            match check(&schnell, &request) {
                Err(ProviderError::InvalidRequest(message)) => {
                    assert!(message.contains(expected), "{message}")
                }
                other => panic!("expected invalid-request containing {expected:?}, got {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn info_describes_each_model() {
        let schnell = MODELS[0].info();
        assert!(!schnell.takes(Param::NegativePrompt) && schnell.takes(Param::Steps));
        assert_eq!(schnell.max_n, MAX_N);
        assert_eq!(schnell.default_size.as_deref(), Some("1024x1024"));
        assert!(any_model_info().takes(Param::NegativePrompt));
    }
}
