//! Google's image models on the Gemini API and the values each accepts: the Gemini image models
//! (`:generateContent`) and Imagen 4 (`:predict`). Requests the API would reject become clear
//! errors here, before anything is sent.

use imageai_sdk::{
    Capability, EditMode, EditRequest, GenerateRequest, Image, ModelInfo, Param, ProviderError,
};

/// The two APIs differ in endpoint, body and answer, not just in values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `POST /models/{id}:generateContent`, images as inline parts of a chat answer.
    Gemini,
    /// `POST /models/{id}:predict`, images as predictions.
    Imagen,
}

/// One model: what the host shows, plus the limits the API enforces.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub family: Family,
    /// Retired names that still reach this model (users' configs and scripts keep them).
    pub aliases: &'static [&'static str],
    pub aspect_ratios: &'static [&'static str],
    /// Values of the `image_size` option; empty when the model has one fixed size.
    pub image_sizes: &'static [&'static str],
    pub output_formats: &'static [&'static str],
    /// Images per request: Imagen's `sampleCount`; for Gemini, one request per image.
    pub max_n: u32,
    /// Reference images one edit takes (0: no edits).
    pub max_reference_images: usize,
}

/// Gemini's `imageConfig.aspectRatio` values.
const GEMINI_RATIOS: &[&str] = &[
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];
/// Imagen's `aspectRatio` values.
const IMAGEN_RATIOS: &[&str] = &["1:1", "3:4", "4:3", "9:16", "16:9"];
/// Input image types the Gemini API takes inline.
pub const INPUT_MIMES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/heic",
    "image/heif",
];
/// The Gemini API refuses requests over 20 MB; inline images travel as base64 (4/3 larger).
pub const MAX_INLINE_REQUEST_BYTES: usize = 20 * 1000 * 1000;
/// `person_generation` values, as users type them (the API takes them upper case).
pub const PERSON_GENERATION: &[&str] = &["dont_allow", "allow_adult", "allow_all"];

pub const MODELS: &[Model] = &[
    Model {
        id: "gemini-2.5-flash-image",
        name: "Gemini 2.5 Flash Image (Nano Banana)",
        description: "Fast image generation and editing from instructions, with up to 14 reference images \
            (best with 3 or fewer); text it returns beside the image is kept as the note. Takes an aspect \
            ratio; one fixed size (about 1024 px). One request per image.",
        family: Family::Gemini,
        aliases: &["gemini-2.5-flash-image-preview"],
        aspect_ratios: GEMINI_RATIOS,
        image_sizes: &[],
        output_formats: &["png"],
        max_n: 4,
        max_reference_images: 14,
    },
    Model {
        id: "gemini-3-pro-image",
        name: "Gemini 3 Pro Image (Nano Banana Pro)",
        description: "Google's most capable image model: text rendering, up to 14 reference images, and \
            `--set image_size=1K|2K|4K`. Text it returns beside the image is kept as the note.",
        family: Family::Gemini,
        aliases: &["gemini-3-pro-image-preview"],
        aspect_ratios: GEMINI_RATIOS,
        image_sizes: &["1K", "2K", "4K"],
        output_formats: &["png"],
        max_n: 4,
        max_reference_images: 14,
    },
    Model {
        id: "gemini-3.1-flash-image",
        name: "Gemini 3.1 Flash Image",
        description: "Fast Gemini 3 image model: generation and editing with up to 14 reference images, \
            `--set image_size=1K|2K|4K`.",
        family: Family::Gemini,
        aliases: &["gemini-3.1-flash-image-preview"],
        aspect_ratios: GEMINI_RATIOS,
        image_sizes: &["1K", "2K", "4K"],
        output_formats: &["png"],
        max_n: 4,
        max_reference_images: 14,
    },
    Model {
        id: "imagen-4.0-generate-001",
        name: "Imagen 4",
        description: "Photorealistic text-to-image, 1 to 4 images per request. Options: \
            `--set person_generation=dont_allow|allow_adult|allow_all`, `--set image_size=1K|2K`.",
        family: Family::Imagen,
        aliases: &[],
        aspect_ratios: IMAGEN_RATIOS,
        image_sizes: &["1K", "2K"],
        output_formats: &["png", "jpeg"],
        max_n: 4,
        max_reference_images: 0,
    },
    Model {
        id: "imagen-4.0-ultra-generate-001",
        name: "Imagen 4 Ultra",
        description: "Imagen 4's highest quality. Options: `--set person_generation=dont_allow|allow_adult|allow_all`, \
            `--set image_size=1K|2K`.",
        family: Family::Imagen,
        aliases: &[],
        aspect_ratios: IMAGEN_RATIOS,
        image_sizes: &["1K", "2K"],
        output_formats: &["png", "jpeg"],
        max_n: 4,
        max_reference_images: 0,
    },
    Model {
        id: "imagen-4.0-fast-generate-001",
        name: "Imagen 4 Fast",
        description: "Imagen 4 at lower cost and latency, 1K only. Option: \
            `--set person_generation=dont_allow|allow_adult|allow_all`.",
        family: Family::Imagen,
        aliases: &[],
        aspect_ratios: IMAGEN_RATIOS,
        image_sizes: &[],
        output_formats: &["png", "jpeg"],
        max_n: 4,
        max_reference_images: 0,
    },
];

/// The model used when the request names none.
pub const DEFAULT_MODEL: &str = "gemini-2.5-flash-image";

/// The model with this id (or a retired alias of it; empty means the default), or an error
/// listing the known ones.
pub fn find(id: &str) -> Result<&'static Model, ProviderError> {
    let id = if id.trim().is_empty() {
        DEFAULT_MODEL
    } else {
        id.trim()
    };
    let id = id.strip_prefix("models/").unwrap_or(id);
    MODELS
        .iter()
        .find(|m| m.id == id || m.aliases.contains(&id))
        .ok_or_else(|| {
            let ids: Vec<&str> = MODELS.iter().map(|m| m.id).collect();
            ProviderError::invalid_request(format!(
                "Google has no image model `{id}` here; choose one of {}",
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

/// The options a family takes in `extra` (`--set name=value`).
fn extras(family: Family) -> &'static [&'static str] {
    match family {
        Family::Gemini => &["image_size"],
        Family::Imagen => &["image_size", "person_generation"],
    }
}

impl Model {
    pub fn info(&self) -> ModelInfo {
        let (capabilities, params) = match self.family {
            Family::Gemini => (
                vec![Capability::TextToImage, Capability::Edit],
                vec![Param::N, Param::AspectRatio, Param::Seed],
            ),
            Family::Imagen => (
                vec![Capability::TextToImage],
                vec![Param::N, Param::AspectRatio, Param::OutputFormat],
            ),
        };
        ModelInfo::new(self.id, self.name)
            .description(self.description)
            .capabilities(capabilities)
            .params(params)
            .aspect_ratios(self.aspect_ratios.iter().copied())
            .output_formats(self.output_formats.iter().copied())
            .max_n(self.max_n)
    }

    /// The `image_size` asked for: `--set image_size=2K`, or `--size 2K` (the host's size field
    /// carries pixel sizes, which Google's models do not take; a `1K`-style value is understood).
    pub fn image_size<'a>(&self, request: &'a GenerateRequest) -> Option<&'a str> {
        request
            .extra("image_size")
            .or(request.size.as_deref())
            .map(str::trim)
    }

    /// Check everything a generation (or the text part of an edit) carries.
    pub fn validate(&self, request: &GenerateRequest) -> Result<(), ProviderError> {
        let id = self.id;
        if request.prompt.trim().is_empty() {
            return Err(ProviderError::invalid_request(format!(
                "{id} needs a prompt"
            )));
        }
        if request.count() > self.max_n {
            return Err(ProviderError::invalid_request(format!(
                "{id} makes 1 to {} image(s) per request, not {}",
                self.max_n,
                request.count()
            )));
        }
        one_of(
            id,
            "aspect ratio",
            request.aspect_ratio.as_deref(),
            self.aspect_ratios,
        )?;
        one_of(
            id,
            "output format",
            request.output_format.as_deref(),
            self.output_formats,
        )?;
        if let (Some(size), Some(option)) = (&request.size, request.extra("image_size"))
            && size.trim() != option.trim()
        {
            return Err(ProviderError::invalid_request(format!(
                "the size `{size}` and `image_size={option}` disagree; give one of them"
            )));
        }
        if let Some(size) = self.image_size(request) {
            if self.image_sizes.is_empty() {
                return Err(ProviderError::invalid_request(format!(
                    "{id} makes one fixed size and takes no image size (got `{size}`); choose the shape with an aspect ratio{}",
                    self.larger_sizes_hint()
                )));
            }
            if !self.image_sizes.contains(&size) {
                let hint = if size.contains('x') {
                    format!(
                        "{id} takes an aspect ratio (e.g. `--aspect-ratio 16:9`) and an image size ({}), not pixel sizes like `{size}`",
                        list(self.image_sizes)
                    )
                } else {
                    format!(
                        "{id} takes image size {}, not `{size}`",
                        list(self.image_sizes)
                    )
                };
                return Err(ProviderError::invalid_request(hint));
            }
        }
        let unsupported = [
            (
                "negative prompt",
                request.negative_prompt.is_some(),
                "describe what you want instead",
            ),
            ("steps", request.steps.is_some(), "leave out --steps"),
            (
                "guidance",
                request.guidance.is_some(),
                "leave out --guidance",
            ),
            ("quality", request.quality.is_some(), "leave out --quality"),
            (
                "style",
                request.style.is_some(),
                "put the style in the prompt",
            ),
            (
                "background",
                request.background.is_some(),
                "leave out --background",
            ),
        ];
        for (what, given, fix) in unsupported {
            if given {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes no {what}; {fix}"
                )));
            }
        }
        match (self.family, request.seed) {
            (Family::Imagen, Some(_)) => {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes no seed on the Gemini API; leave out --seed"
                )));
            }
            // One call per image, the seed counting up: the last one must still fit an int32.
            (Family::Gemini, Some(seed))
                if seed + u64::from(request.count()) - 1 > i32::MAX as u64 =>
            {
                return Err(ProviderError::invalid_request(format!(
                    "the seed must be at most {}, not {seed}",
                    i32::MAX as u64 + 1 - u64::from(request.count())
                )));
            }
            _ => {}
        }
        for (name, value) in &request.extra {
            match name.as_str() {
                "image_size" => {}
                "person_generation" if self.family == Family::Imagen => {
                    let lower = value.trim().to_ascii_lowercase();
                    one_of(id, "person_generation", Some(&lower), PERSON_GENERATION)?;
                }
                _ => {
                    return Err(ProviderError::invalid_request(format!(
                        "{id} has no option `{name}`; its options are {}",
                        list(extras(self.family))
                    )));
                }
            }
        }
        Ok(())
    }

    fn larger_sizes_hint(&self) -> String {
        let larger: Vec<&str> = MODELS
            .iter()
            .filter(|m| m.family == self.family && !m.image_sizes.is_empty())
            .map(|m| m.id)
            .collect();
        if larger.is_empty() {
            String::new()
        } else {
            format!(", or use {} for larger images", list(&larger))
        }
    }

    /// Check an edit: only Gemini edits, from instructions plus reference images.
    pub fn validate_edit(&self, request: &EditRequest) -> Result<(), ProviderError> {
        let id = self.id;
        if self.family == Family::Imagen {
            let gemini: Vec<&str> = MODELS
                .iter()
                .filter(|m| m.max_reference_images > 0)
                .map(|m| m.id)
                .collect();
            return Err(ProviderError::invalid_request(format!(
                "{id} cannot edit images on the Gemini API; use {} for edits",
                list(&gemini)
            )));
        }
        match request.mode {
            EditMode::Edit => {}
            EditMode::Inpaint => {
                return Err(ProviderError::invalid_request(format!(
                    "{id} edits from instructions, not masks: use the edit mode and say in the prompt what to change where"
                )));
            }
            EditMode::Variations => {
                return Err(ProviderError::invalid_request(format!(
                    "{id} makes no variations as such: use the edit mode with a prompt like \"a variation of this image\""
                )));
            }
            EditMode::Outpaint | EditMode::Erase | EditMode::SearchReplace => {
                return Err(ProviderError::not_supported(match request.mode {
                    EditMode::Outpaint => "outpainting",
                    EditMode::Erase => "erasing",
                    _ => "search and replace",
                }));
            }
        }
        self.validate(&request.base)?;
        if request.mask.is_some() {
            return Err(ProviderError::invalid_request(format!(
                "{id} takes no mask; say in the prompt which part to change"
            )));
        }
        if request.strength.is_some() {
            return Err(ProviderError::invalid_request(format!(
                "{id} takes no strength; say in the prompt how much to change"
            )));
        }
        match request.images.len() {
            0 => {
                return Err(ProviderError::invalid_request(
                    "give at least one image to edit or use as a reference",
                ));
            }
            n if n > self.max_reference_images => {
                return Err(ProviderError::invalid_request(format!(
                    "{id} takes at most {} reference images, not {n}",
                    self.max_reference_images
                )));
            }
            _ => {}
        }
        for (i, image) in request.images.iter().enumerate() {
            validate_input(i, image)?;
        }
        let inline: usize = request
            .images
            .iter()
            .map(|i| i.data.len().div_ceil(3) * 4)
            .sum::<usize>()
            + request.base.prompt.len();
        if inline > MAX_INLINE_REQUEST_BYTES {
            return Err(ProviderError::invalid_request(format!(
                "the images add up to {:.1} MB once encoded; the Gemini API takes requests up to 20 MB. Use fewer or smaller images",
                inline as f64 / 1e6
            )));
        }
        Ok(())
    }
}

fn validate_input(index: usize, image: &Image) -> Result<(), ProviderError> {
    if image.data.is_empty() {
        return Err(ProviderError::invalid_request(format!(
            "input image {} is empty",
            index + 1
        )));
    }
    if !INPUT_MIMES.contains(&image.mime.as_str()) {
        return Err(ProviderError::invalid_request(format!(
            "input image {} is {}; Gemini takes {}",
            index + 1,
            image.mime,
            list(INPUT_MIMES)
        )));
    }
    Ok(())
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
    fn aliases_and_the_default_resolve() -> Result<(), ProviderError> {
        assert_eq!(
            find("gemini-2.5-flash-image-preview")?.id,
            "gemini-2.5-flash-image"
        );
        assert_eq!(
            find("models/imagen-4.0-generate-001")?.id,
            "imagen-4.0-generate-001"
        );
        assert_eq!(find("")?.id, DEFAULT_MODEL);
        let unknown = find("imagen-2")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            unknown.contains("`gemini-2.5-flash-image`, `gemini-3-pro-image`"),
            "{unknown}"
        );
        Ok(())
    }

    #[test]
    fn infos_describe_what_each_family_takes() -> Result<(), ProviderError> {
        let gemini = find("gemini-2.5-flash-image")?.info();
        assert!(
            gemini.supports(Capability::Edit)
                && gemini.takes(Param::Seed)
                && !gemini.takes(Param::OutputFormat)
        );
        assert_eq!(gemini.aspect_ratios.len(), 10);
        let imagen = find("imagen-4.0-generate-001")?.info();
        assert!(!imagen.supports(Capability::Edit) && imagen.takes(Param::OutputFormat));
        assert_eq!(imagen.aspect_ratios, ["1:1", "3:4", "4:3", "9:16", "16:9"]);
        assert_eq!(imagen.max_n, 4);
        assert!(
            imagen.description.contains("person_generation"),
            "extras are documented"
        );
        Ok(())
    }

    #[test]
    fn sizes_are_image_sizes_not_pixels() -> Result<(), ProviderError> {
        let pro = find("gemini-3-pro-image")?;
        let mut ok = request("gemini-3-pro-image");
        ok.extra.insert("image_size".into(), "4K".into());
        pro.validate(&ok)?;
        pro.validate(&GenerateRequest {
            size: Some("2K".into()),
            ..request("gemini-3-pro-image")
        })?;
        let pixels = message(pro.validate(&GenerateRequest {
            size: Some("1024x1024".into()),
            ..request("gemini-3-pro-image")
        }));
        assert!(
            pixels.contains("not pixel sizes like `1024x1024`"),
            "{pixels}"
        );
        let flash = find("gemini-2.5-flash-image")?;
        let fixed = message(flash.validate(&GenerateRequest {
            size: Some("2K".into()),
            ..request("gemini-2.5-flash-image")
        }));
        assert!(
            fixed.contains("one fixed size") && fixed.contains("gemini-3-pro-image"),
            "{fixed}"
        );
        let fast = find("imagen-4.0-fast-generate-001")?;
        assert!(
            message(fast.validate(&GenerateRequest {
                size: Some("2K".into()),
                ..request("imagen-4.0-fast-generate-001")
            }))
            .contains("one fixed size")
        );
        Ok(())
    }

    #[test]
    fn unsupported_fields_are_named() -> Result<(), ProviderError> {
        let imagen = find("imagen-4.0-generate-001")?;
        assert_eq!(
            message(imagen.validate(&GenerateRequest {
                negative_prompt: Some("blur".into()),
                ..request("imagen-4.0-generate-001")
            })),
            "imagen-4.0-generate-001 takes no negative prompt; describe what you want instead"
        );
        assert!(
            message(imagen.validate(&GenerateRequest {
                seed: Some(1),
                ..request("imagen-4.0-generate-001")
            }))
            .contains("no seed")
        );
        assert!(
            message(imagen.validate(&GenerateRequest {
                n: 5,
                ..request("imagen-4.0-generate-001")
            }))
            .contains("1 to 4")
        );
        let mut person = request("imagen-4.0-generate-001");
        person
            .extra
            .insert("person_generation".into(), "ALLOW_ADULT".into());
        imagen.validate(&person)?;
        person
            .extra
            .insert("person_generation".into(), "everyone".into());
        assert!(
            message(imagen.validate(&person))
                .contains("`dont_allow`, `allow_adult` or `allow_all`")
        );
        let gemini = find("gemini-2.5-flash-image")?;
        let mut extra = request("gemini-2.5-flash-image");
        extra
            .extra
            .insert("person_generation".into(), "allow_adult".into());
        assert_eq!(
            message(gemini.validate(&extra)),
            "gemini-2.5-flash-image has no option `person_generation`; its options are `image_size`"
        );
        assert!(
            message(gemini.validate(&GenerateRequest {
                aspect_ratio: Some("7:3".into()),
                ..request("gemini-2.5-flash-image")
            }))
            .contains("takes aspect ratio")
        );
        assert!(
            message(gemini.validate(&GenerateRequest {
                seed: Some(u64::from(u32::MAX)),
                ..request("gemini-2.5-flash-image")
            }))
            .contains("at most 2147483647")
        );
        Ok(())
    }

    #[test]
    fn edits_are_checked() -> Result<(), ProviderError> {
        let png = Image::png(b"\x89PNG\r\n\x1a\n".to_vec());
        let edit =
            |model: &str, mode, images: Vec<Image>| EditRequest::new(mode, request(model), images);
        let gemini = find("gemini-2.5-flash-image")?;
        gemini.validate_edit(&edit(
            "gemini-2.5-flash-image",
            EditMode::Edit,
            vec![png.clone(), png.clone()],
        ))?;
        assert!(
            message(gemini.validate_edit(&edit("gemini-2.5-flash-image", EditMode::Edit, vec![])))
                .contains("at least one image")
        );
        assert!(
            message(gemini.validate_edit(&edit(
                "gemini-2.5-flash-image",
                EditMode::Edit,
                vec![png.clone(); 15]
            )))
            .contains("at most 14")
        );
        assert!(
            message(gemini.validate_edit(&edit(
                "gemini-2.5-flash-image",
                EditMode::Inpaint,
                vec![png.clone()]
            )))
            .contains("not masks")
        );
        assert!(
            message(
                gemini.validate_edit(
                    &edit("gemini-2.5-flash-image", EditMode::Edit, vec![png.clone()])
                        .mask(png.clone())
                )
            )
            .contains("no mask")
        );
        let gif = Image::new("image/gif", b"GIF89a".to_vec());
        assert!(
            message(gemini.validate_edit(&edit(
                "gemini-2.5-flash-image",
                EditMode::Edit,
                vec![gif]
            )))
            .contains("input image 1 is image/gif")
        );
        let huge = Image::png(vec![0; 16 * 1000 * 1000]);
        assert!(
            message(gemini.validate_edit(&edit(
                "gemini-2.5-flash-image",
                EditMode::Edit,
                vec![huge]
            )))
            .contains("up to 20 MB")
        );
        let imagen = find("imagen-4.0-generate-001")?;
        assert!(
            message(imagen.validate_edit(&edit(
                "imagen-4.0-generate-001",
                EditMode::Edit,
                vec![png]
            )))
            .contains("cannot edit")
        );
        Ok(())
    }
}
