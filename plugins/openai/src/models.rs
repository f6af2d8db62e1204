//! OpenAI's image models and the values each accepts (from the official OpenAPI spec), and the
//! checks that turn a request the API would reject into a clear error before anything is sent.

use imageai_sdk::{
    Capability, EditMode, EditRequest, GenerateRequest, Image, ModelInfo, Param, ProviderError,
};

/// The model families differ in endpoints and parameters, not just in values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    DallE2,
    DallE3,
    GptImage,
}

/// One model: what the host shows, plus the limits the API enforces.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub family: Family,
    pub sizes: &'static [&'static str],
    pub default_size: &'static str,
    pub qualities: &'static [&'static str],
    pub styles: &'static [&'static str],
    pub output_formats: &'static [&'static str],
    pub backgrounds: &'static [&'static str],
    pub max_n: u32,
    pub max_prompt_chars: usize,
    /// Most input images one edit takes (0: no edits).
    pub max_edit_images: usize,
    /// Largest input image the API takes, in bytes.
    pub max_image_bytes: usize,
}

const GPT_IMAGE_SIZES: &[&str] = &["auto", "1024x1024", "1536x1024", "1024x1536"];
const GPT_IMAGE_QUALITIES: &[&str] = &["auto", "low", "medium", "high"];
const GPT_IMAGE_FORMATS: &[&str] = &["png", "jpeg", "webp"];
const GPT_IMAGE_BACKGROUNDS: &[&str] = &["auto", "transparent", "opaque"];
const MIB: usize = 1024 * 1024;

const fn gpt_image(id: &'static str, name: &'static str, description: &'static str) -> Model {
    Model {
        id,
        name,
        description,
        family: Family::GptImage,
        sizes: GPT_IMAGE_SIZES,
        default_size: "auto",
        qualities: GPT_IMAGE_QUALITIES,
        styles: &[],
        output_formats: GPT_IMAGE_FORMATS,
        backgrounds: GPT_IMAGE_BACKGROUNDS,
        max_n: 10,
        max_prompt_chars: 32_000,
        max_edit_images: 16,
        max_image_bytes: 50 * MIB,
    }
}

pub const MODELS: &[Model] = &[
    gpt_image(
        "gpt-image-1.5",
        "GPT Image 1.5",
        "OpenAI's newest image model: best instruction following and text rendering.",
    ),
    gpt_image(
        "gpt-image-1",
        "GPT Image 1",
        "Natively multimodal image model; edits with several reference images and masks.",
    ),
    gpt_image(
        "gpt-image-1-mini",
        "GPT Image 1 mini",
        "A cheaper, faster GPT Image model.",
    ),
    Model {
        id: "dall-e-3",
        name: "DALL·E 3",
        description: "Detailed images from long prompts; rewrites the prompt (kept as the revised prompt).",
        family: Family::DallE3,
        sizes: &["1024x1024", "1792x1024", "1024x1792"],
        default_size: "1024x1024",
        qualities: &["standard", "hd"],
        styles: &["vivid", "natural"],
        output_formats: &["png"],
        backgrounds: &[],
        max_n: 1,
        max_prompt_chars: 4000,
        max_edit_images: 0,
        max_image_bytes: 0,
    },
    Model {
        id: "dall-e-2",
        name: "DALL·E 2",
        description: "Small square images, masked edits of one square PNG, and variations.",
        family: Family::DallE2,
        sizes: &["256x256", "512x512", "1024x1024"],
        default_size: "1024x1024",
        qualities: &["standard"],
        styles: &[],
        output_formats: &["png"],
        backgrounds: &[],
        max_n: 10,
        max_prompt_chars: 1000,
        max_edit_images: 1,
        max_image_bytes: 4 * MIB,
    },
];

/// The model with this id, or an error listing the known ones.
pub fn find(id: &str) -> Result<&'static Model, ProviderError> {
    MODELS.iter().find(|m| m.id == id).ok_or_else(|| {
        ProviderError::invalid_request(format!(
            "OpenAI has no image model `{id}`; choose one of {}",
            list(&ids())
        ))
    })
}

fn ids() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.id).collect()
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

impl Model {
    pub fn info(&self) -> ModelInfo {
        let mut capabilities = vec![Capability::TextToImage];
        let mut params = vec![Param::N, Param::Size];
        match self.family {
            Family::DallE2 => capabilities.extend([
                Capability::Edit,
                Capability::Inpaint,
                Capability::Variations,
            ]),
            Family::DallE3 => params.extend([Param::Quality, Param::Style]),
            Family::GptImage => {
                capabilities.extend([Capability::Edit, Capability::Inpaint]);
                params.extend([Param::Quality, Param::OutputFormat, Param::Background]);
            }
        }
        ModelInfo::new(self.id, self.name)
            .description(self.description)
            .capabilities(capabilities)
            .params(params)
            .default_size(self.default_size)
            .sizes(self.sizes.iter().copied())
            .qualities(self.qualities.iter().copied())
            .styles(self.styles.iter().copied())
            .output_formats(self.output_formats.iter().copied())
            .max_n(self.max_n)
    }

    /// The API's default output format for this model.
    pub fn output_format<'a>(&self, request: &'a GenerateRequest) -> &'a str {
        request.output_format.as_deref().unwrap_or("png")
    }

    /// Check what every request carries: prompt, n, size, quality, style, output format,
    /// background and the provider-specific extras.
    pub fn validate(
        &self,
        request: &GenerateRequest,
        prompt_required: bool,
    ) -> Result<(), ProviderError> {
        let id = self.id;
        if prompt_required && request.prompt.trim().is_empty() {
            return Err(ProviderError::invalid_request(format!(
                "{id} needs a prompt"
            )));
        }
        let chars = request.prompt.chars().count();
        if chars > self.max_prompt_chars {
            return Err(ProviderError::invalid_request(format!(
                "the prompt has {chars} characters; {id} takes at most {}",
                self.max_prompt_chars
            )));
        }
        if request.count() > self.max_n {
            let allowed = if self.max_n == 1 {
                "exactly 1".to_owned()
            } else {
                format!("1 to {}", self.max_n)
            };
            return Err(ProviderError::invalid_request(format!(
                "{id} makes {allowed} image(s) per request, not {}",
                request.count()
            )));
        }
        one_of(id, "size", request.size.as_deref(), self.sizes)?;
        one_of(id, "quality", request.quality.as_deref(), self.qualities)?;
        one_of(id, "style", request.style.as_deref(), self.styles)?;
        one_of(
            id,
            "output format",
            request.output_format.as_deref(),
            self.output_formats,
        )?;
        one_of(
            id,
            "background",
            request.background.as_deref(),
            self.backgrounds,
        )?;
        if request.background.as_deref() == Some("transparent")
            && self.output_format(request) == "jpeg"
        {
            return Err(ProviderError::invalid_request(
                "a transparent background needs the png or webp output format, not jpeg",
            ));
        }
        self.validate_extras(request)
    }

    fn validate_extras(&self, request: &GenerateRequest) -> Result<(), ProviderError> {
        let id = self.id;
        for (name, value) in &request.extra {
            let allowed: &[&str] = match (name.as_str(), self.family) {
                ("user", _) => continue,
                ("response_format", Family::DallE2 | Family::DallE3) => &["b64_json", "url"],
                ("moderation", Family::GptImage) => &["auto", "low"],
                ("input_fidelity", Family::GptImage) => &["low", "high"],
                ("output_compression", Family::GptImage) => {
                    let format = self.output_format(request);
                    if format == "png" {
                        return Err(ProviderError::invalid_request(
                            "output_compression applies to the jpeg and webp output formats only",
                        ));
                    }
                    match value.trim().parse::<u8>() {
                        Ok(0..=100) => continue,
                        _ => {
                            return Err(ProviderError::invalid_request(format!(
                                "output_compression must be a whole number from 0 to 100, not `{value}`"
                            )));
                        }
                    }
                }
                _ => {
                    let known: &[&str] = match self.family {
                        Family::GptImage => {
                            &["moderation", "input_fidelity", "output_compression", "user"]
                        }
                        Family::DallE2 | Family::DallE3 => &["response_format", "user"],
                    };
                    return Err(ProviderError::invalid_request(format!(
                        "{id} has no option `{name}`; its options are {}",
                        list(known)
                    )));
                }
            };
            one_of(id, name, Some(value.as_str()), allowed)?;
        }
        Ok(())
    }

    /// Check an edit (or variations) request against what the endpoint takes for this model.
    pub fn validate_edit(&self, request: &EditRequest) -> Result<(), ProviderError> {
        let id = self.id;
        match request.mode {
            EditMode::Edit | EditMode::Inpaint => {
                if self.max_edit_images == 0 {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} cannot edit images; use {} for edits",
                        list(&edit_models())
                    )));
                }
                self.validate(&request.base, true)?;
                if request.mode == EditMode::Inpaint && request.mask.is_none() {
                    return Err(ProviderError::invalid_request(
                        "inpainting needs a mask: a PNG the size of the image, transparent where it should change",
                    ));
                }
            }
            EditMode::Variations => {
                if self.family != Family::DallE2 {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} makes no variations; only `dall-e-2` does"
                    )));
                }
                self.validate(&request.base, false)?;
            }
            EditMode::Outpaint | EditMode::Erase | EditMode::SearchReplace => {
                return Err(ProviderError::not_supported(match request.mode {
                    EditMode::Outpaint => "outpainting",
                    EditMode::Erase => "erasing",
                    _ => "search and replace",
                }));
            }
        }
        let max_images = if request.mode == EditMode::Variations {
            1
        } else {
            self.max_edit_images
        };
        match request.images.len() {
            0 => {
                return Err(ProviderError::invalid_request(
                    "give the image to start from",
                ));
            }
            n if n > max_images => {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes at most {max_images} input image(s) here, not {n}"
                )));
            }
            _ => {}
        }
        for (i, image) in request.images.iter().enumerate() {
            self.validate_input(&format!("input image {}", i + 1), image)?;
        }
        if let Some(mask) = &request.mask {
            self.validate_input("the mask", mask)?;
            if mask.mime != "image/png" {
                return Err(ProviderError::invalid_request(format!(
                    "the mask must be a PNG with an alpha channel, not {}",
                    mask.mime
                )));
            }
        }
        Ok(())
    }

    fn validate_input(&self, what: &str, image: &Image) -> Result<(), ProviderError> {
        let accepted: &[&str] = match self.family {
            Family::GptImage => &["image/png", "image/jpeg", "image/webp"],
            Family::DallE2 | Family::DallE3 => &["image/png"],
        };
        if !accepted.contains(&image.mime.as_str()) {
            return Err(ProviderError::invalid_request(format!(
                "{what} is {}; {} takes {}",
                image.mime,
                self.id,
                list(accepted)
            )));
        }
        if image.data.len() > self.max_image_bytes {
            return Err(ProviderError::invalid_request(format!(
                "{what} is {:.1} MB; {} takes images under {} MB",
                image.data.len() as f64 / MIB as f64,
                self.id,
                self.max_image_bytes / MIB
            )));
        }
        Ok(())
    }
}

/// Parameters set on the request that OpenAI's image API has no use for: the call goes ahead
/// without them, and the user is told.
pub fn ignored(request: &GenerateRequest) -> Vec<String> {
    let set = [
        ("negative prompt", request.negative_prompt.is_some()),
        ("seed", request.seed.is_some()),
        ("steps", request.steps.is_some()),
        ("guidance", request.guidance.is_some()),
        (
            "aspect ratio (choose a size instead)",
            request.aspect_ratio.is_some(),
        ),
    ];
    set.iter()
        .filter(|(_, is_set)| *is_set)
        .map(|(what, _)| format!("OpenAI's image API has no {what} parameter; it was ignored"))
        .collect()
}

fn edit_models() -> Vec<&'static str> {
    MODELS
        .iter()
        .filter(|m| m.max_edit_images > 0)
        .map(|m| m.id)
        .collect()
}

fn one_of(
    model: &str,
    what: &str,
    value: Option<&str>,
    allowed: &[&str],
) -> Result<(), ProviderError> {
    match value {
        Some(value) if !allowed.contains(&value) => {
            Err(ProviderError::invalid_request(if allowed.is_empty() {
                format!("{model} takes no {what} (got `{value}`)")
            } else {
                format!("{model} takes {what} {}, not `{value}`", list(allowed))
            }))
        }
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

    #[test]
    fn catalogue_matches_the_api() {
        let dalle3 = find("dall-e-3").map(Model::info).ok();
        let dalle3 = dalle3.as_ref();
        assert_eq!(dalle3.map(|m| m.max_n), Some(1));
        assert_eq!(
            dalle3.map(|m| m.sizes.join(",")),
            Some("1024x1024,1792x1024,1024x1792".to_owned())
        );
        assert_eq!(
            dalle3.map(|m| m.styles.join(",")),
            Some("vivid,natural".to_owned())
        );
        let dalle2 = find("dall-e-2").map(Model::info).ok();
        assert!(
            dalle2
                .as_ref()
                .is_some_and(|m| m.supports(Capability::Variations) && m.max_n == 10)
        );
        for id in ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"] {
            let info = find(id).map(Model::info).ok();
            let info = info.as_ref();
            assert_eq!(
                info.map(|m| m.sizes.join(",")),
                Some("auto,1024x1024,1536x1024,1024x1536".to_owned()),
                "{id}"
            );
            assert_eq!(
                info.map(|m| m.qualities.join(",")),
                Some("auto,low,medium,high".to_owned()),
                "{id}"
            );
            assert_eq!(
                info.map(|m| m.output_formats.join(",")),
                Some("png,jpeg,webp".to_owned()),
                "{id}"
            );
            assert_eq!(
                info.and_then(|m| m.default_size.clone()),
                Some("auto".to_owned()),
                "{id}"
            );
            assert!(
                info.is_some_and(|m| m.takes(Param::Background) && m.supports(Capability::Inpaint)),
                "{id}"
            );
        }
    }

    #[test]
    fn unknown_model_lists_the_known_ones() {
        let err = find("dall-e-4")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains(
                "`gpt-image-1.5`, `gpt-image-1`, `gpt-image-1-mini`, `dall-e-3` or `dall-e-2`"
            ),
            "{err}"
        );
    }

    #[test]
    fn invalid_values_name_the_allowed_ones() -> Result<(), ProviderError> {
        let dalle3 = find("dall-e-3")?;
        let size = message(dalle3.validate(
            &GenerateRequest {
                size: Some("512x512".into()),
                ..request("dall-e-3")
            },
            true,
        ));
        assert_eq!(
            size,
            "dall-e-3 takes size `1024x1024`, `1792x1024` or `1024x1792`, not `512x512`"
        );
        let n = message(dalle3.validate(
            &GenerateRequest {
                n: 2,
                ..request("dall-e-3")
            },
            true,
        ));
        assert_eq!(n, "dall-e-3 makes exactly 1 image(s) per request, not 2");
        let quality = message(dalle3.validate(
            &GenerateRequest {
                quality: Some("high".into()),
                ..request("dall-e-3")
            },
            true,
        ));
        assert_eq!(
            quality,
            "dall-e-3 takes quality `standard` or `hd`, not `high`"
        );
        let gpt = find("gpt-image-1")?;
        let n = message(gpt.validate(
            &GenerateRequest {
                n: 11,
                ..request("gpt-image-1")
            },
            true,
        ));
        assert_eq!(n, "gpt-image-1 makes 1 to 10 image(s) per request, not 11");
        let style = message(gpt.validate(
            &GenerateRequest {
                style: Some("vivid".into()),
                ..request("gpt-image-1")
            },
            true,
        ));
        assert_eq!(style, "gpt-image-1 takes no style (got `vivid`)");
        let dalle2 = find("dall-e-2")?;
        let long = message(dalle2.validate(
            &GenerateRequest {
                prompt: "x".repeat(1001),
                ..request("dall-e-2")
            },
            true,
        ));
        assert_eq!(
            long,
            "the prompt has 1001 characters; dall-e-2 takes at most 1000"
        );
        Ok(())
    }

    #[test]
    fn valid_requests_pass() -> Result<(), ProviderError> {
        find("dall-e-3")?.validate(
            &GenerateRequest {
                size: Some("1792x1024".into()),
                quality: Some("hd".into()),
                style: Some("natural".into()),
                ..request("dall-e-3")
            },
            true,
        )?;
        let mut gpt = GenerateRequest {
            n: 10,
            size: Some("auto".into()),
            quality: Some("high".into()),
            output_format: Some("webp".into()),
            background: Some("transparent".into()),
            ..request("gpt-image-1.5")
        };
        gpt.extra.insert("output_compression".into(), "80".into());
        gpt.extra.insert("moderation".into(), "low".into());
        find("gpt-image-1.5")?.validate(&gpt, true)
    }

    #[test]
    fn extras_are_checked() -> Result<(), ProviderError> {
        let gpt = find("gpt-image-1")?;
        let mut bad = request("gpt-image-1");
        bad.extra.insert("output_compression".into(), "50".into());
        assert_eq!(
            message(gpt.validate(&bad, true)),
            "output_compression applies to the jpeg and webp output formats only"
        );
        bad.output_format = Some("jpeg".into());
        bad.extra.insert("output_compression".into(), "150".into());
        assert!(message(gpt.validate(&bad, true)).contains("from 0 to 100"));
        let mut unknown = request("dall-e-3");
        unknown.extra.insert("seed".into(), "1".into());
        assert_eq!(
            message(find("dall-e-3")?.validate(&unknown, true)),
            "dall-e-3 has no option `seed`; its options are `response_format` or `user`"
        );
        let mut transparent_jpeg = request("gpt-image-1");
        transparent_jpeg.background = Some("transparent".into());
        transparent_jpeg.output_format = Some("jpeg".into());
        assert!(message(gpt.validate(&transparent_jpeg, true)).contains("png or webp"));
        Ok(())
    }

    #[test]
    fn unused_parameters_become_warnings() {
        assert!(ignored(&request("dall-e-3")).is_empty());
        let with_extras = GenerateRequest {
            negative_prompt: Some("blur".into()),
            seed: Some(1),
            ..request("dall-e-3")
        };
        assert_eq!(
            ignored(&with_extras),
            [
                "OpenAI's image API has no negative prompt parameter; it was ignored",
                "OpenAI's image API has no seed parameter; it was ignored"
            ]
        );
    }

    #[test]
    fn edits_are_checked() -> Result<(), ProviderError> {
        let png = Image::png(b"\x89PNG\r\n\x1a\n".to_vec());
        let edit =
            |model: &str, mode, images: Vec<Image>| EditRequest::new(mode, request(model), images);
        let dalle3 = find("dall-e-3")?;
        assert!(
            message(dalle3.validate_edit(&edit("dall-e-3", EditMode::Edit, vec![png.clone()])))
                .contains("cannot edit")
        );
        let dalle2 = find("dall-e-2")?;
        dalle2.validate_edit(&edit("dall-e-2", EditMode::Edit, vec![png.clone()]))?;
        dalle2.validate_edit(&edit("dall-e-2", EditMode::Variations, vec![png.clone()]))?;
        assert!(
            message(dalle2.validate_edit(&edit(
                "dall-e-2",
                EditMode::Edit,
                vec![png.clone(), png.clone()]
            )))
            .contains("at most 1")
        );
        assert!(
            message(dalle2.validate_edit(&edit("dall-e-2", EditMode::Inpaint, vec![png.clone()])))
                .contains("needs a mask")
        );
        let jpeg = Image::new("image/jpeg", vec![0xFF, 0xD8, 0xFF]);
        assert!(
            message(dalle2.validate_edit(&edit("dall-e-2", EditMode::Edit, vec![jpeg.clone()])))
                .contains("takes `image/png`")
        );
        assert!(
            message(dalle2.validate_edit(&edit(
                "dall-e-2",
                EditMode::Edit,
                vec![Image::png(vec![0; 5 * MIB])]
            )))
            .contains("under 4 MB")
        );
        let gpt = find("gpt-image-1")?;
        gpt.validate_edit(
            &edit(
                "gpt-image-1",
                EditMode::Edit,
                vec![png.clone(), jpeg.clone()],
            )
            .mask(png.clone()),
        )?;
        assert!(
            message(gpt.validate_edit(&edit(
                "gpt-image-1",
                EditMode::Variations,
                vec![png.clone()]
            )))
            .contains("only `dall-e-2`")
        );
        assert!(
            message(gpt.validate_edit(&edit("gpt-image-1", EditMode::Edit, vec![png.clone(); 17])))
                .contains("at most 16")
        );
        assert!(
            message(gpt.validate_edit(&edit("gpt-image-1", EditMode::Edit, vec![])))
                .contains("give the image")
        );
        assert!(
            message(
                gpt.validate_edit(
                    &edit("gpt-image-1", EditMode::Edit, vec![png.clone()]).mask(jpeg)
                )
            )
            .contains("mask must be a PNG")
        );
        assert!(
            message(gpt.validate_edit(&edit("gpt-image-1", EditMode::Erase, vec![png])))
                .contains("not supported")
        );
        Ok(())
    }
}
