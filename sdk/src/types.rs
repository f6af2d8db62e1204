//! The values a plugin receives and returns: requests, model descriptions, images, generations.
//! They mirror the contract's records with Rust-friendly shapes (maps, builders, defaults).

use std::collections::BTreeMap;
use std::fmt;

use crate::errors::ProviderError;

/// An encoded image (PNG, JPEG, WebP…) and its mime type.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Image {
    /// `image/png`, `image/jpeg`, `image/webp`…
    pub mime: String,
    /// The encoded bytes.
    pub data: Vec<u8>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("mime", &self.mime)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Image {
    /// An image with an explicit mime type.
    pub fn new(mime: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            mime: mime.into(),
            data,
        }
    }

    /// A PNG image.
    pub fn png(data: Vec<u8>) -> Self {
        Self::new("image/png", data)
    }

    /// An image whose mime type is read from its first bytes (PNG, JPEG, WebP, GIF);
    /// `fallback` when they match none of those.
    pub fn sniff(data: Vec<u8>, fallback: &str) -> Self {
        let mime = sniff_mime(&data).unwrap_or(fallback).to_owned();
        Self { mime, data }
    }

    /// Decode a base64 image as providers send them (`b64_json`, `inlineData`…). The mime type
    /// is read from the decoded bytes when recognisable, else `fallback` is used.
    pub fn from_base64(encoded: impl AsRef<[u8]>, fallback: &str) -> Result<Self, ProviderError> {
        let data = crate::base64::decode(encoded)?;
        Ok(Self::sniff(data, fallback))
    }

    /// The conventional file extension for the mime type (`png` when unknown).
    pub fn extension(&self) -> &'static str {
        match self.mime.as_str() {
            "image/jpeg" | "image/jpg" => "jpg",
            "image/webp" => "webp",
            "image/gif" => "gif",
            _ => "png",
        }
    }

    /// `<stem>.<extension>`, handy as a multipart file name.
    pub fn file_name(&self, stem: &str) -> String {
        format!("{stem}.{}", self.extension())
    }
}

/// The mime type of encoded image bytes, from their magic numbers.
pub fn sniff_mime(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Prompt in, images out.
    TextToImage,
    /// Prompt plus one or more reference images (image-to-image, instruction editing).
    Edit,
    /// Prompt plus an image and a mask: only the masked area changes.
    Inpaint,
    /// Variations of one image, no prompt needed.
    Variations,
    /// A larger version of one image.
    Upscale,
    /// Extend an image past its borders.
    Outpaint,
    /// Remove what a mask covers.
    Erase,
    /// Replace what a search prompt finds.
    SearchReplace,
}

/// A request parameter a model honours; the host shows only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Param {
    N,
    Seed,
    Steps,
    Guidance,
    NegativePrompt,
    Quality,
    Style,
    OutputFormat,
    Background,
    Strength,
    Size,
    AspectRatio,
}

/// One model a provider offers, with the values its parameters accept.
///
/// ```
/// use imageai_sdk::{Capability, ModelInfo, Param};
///
/// let model = ModelInfo::new("dall-e-3", "DALL·E 3")
///     .description("OpenAI's DALL·E 3")
///     .capabilities([Capability::TextToImage])
///     .params([Param::Size, Param::Quality, Param::Style])
///     .sizes(["1024x1024", "1792x1024", "1024x1792"])
///     .qualities(["standard", "hd"])
///     .max_n(1);
/// assert_eq!(model.default_size.as_deref(), Some("1024x1024"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// The id sent to the provider, e.g. `dall-e-3`.
    pub id: String,
    /// A human name, e.g. `DALL·E 3`.
    pub name: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
    pub params: Vec<Param>,
    /// Exact sizes accepted, `WIDTHxHEIGHT` (or `auto`); empty when the model takes aspect
    /// ratios or any size.
    pub sizes: Vec<String>,
    /// Aspect ratios accepted, `W:H`; empty when the model takes sizes.
    pub aspect_ratios: Vec<String>,
    pub qualities: Vec<String>,
    pub styles: Vec<String>,
    /// Output formats the model can return (`png`, `jpeg`, `webp`).
    pub output_formats: Vec<String>,
    /// The most images one request may ask for (at least 1).
    pub max_n: u32,
    pub default_size: Option<String>,
}

fn strings<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Vec<String> {
    values.into_iter().map(Into::into).collect()
}

impl ModelInfo {
    /// A text-to-image model that returns one image; refine it with the builder methods.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            capabilities: vec![Capability::TextToImage],
            max_n: 1,
            ..Self::default()
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        self.capabilities = capabilities.into_iter().collect();
        self
    }

    pub fn params(mut self, params: impl IntoIterator<Item = Param>) -> Self {
        self.params = params.into_iter().collect();
        self
    }

    /// The sizes accepted; the first becomes the default size unless one is set.
    pub fn sizes<S: Into<String>>(mut self, sizes: impl IntoIterator<Item = S>) -> Self {
        self.sizes = strings(sizes);
        if self.default_size.is_none() {
            self.default_size = self.sizes.first().cloned();
        }
        self
    }

    pub fn aspect_ratios<S: Into<String>>(mut self, ratios: impl IntoIterator<Item = S>) -> Self {
        self.aspect_ratios = strings(ratios);
        self
    }

    pub fn qualities<S: Into<String>>(mut self, qualities: impl IntoIterator<Item = S>) -> Self {
        self.qualities = strings(qualities);
        self
    }

    pub fn styles<S: Into<String>>(mut self, styles: impl IntoIterator<Item = S>) -> Self {
        self.styles = strings(styles);
        self
    }

    pub fn output_formats<S: Into<String>>(mut self, formats: impl IntoIterator<Item = S>) -> Self {
        self.output_formats = strings(formats);
        self
    }

    pub fn max_n(mut self, max_n: u32) -> Self {
        self.max_n = max_n.max(1);
        self
    }

    pub fn default_size(mut self, size: impl Into<String>) -> Self {
        self.default_size = Some(size.into());
        self
    }

    pub fn supports(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn takes(&self, param: Param) -> bool {
        self.params.contains(&param)
    }
}

/// Who the provider is and which models it offers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProviderInfo {
    /// The provider id users type; the same as `id` in `plugin.toml`.
    pub id: String,
    pub name: String,
    /// The plugin's own version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: String,
    pub models: Vec<ModelInfo>,
}

impl ProviderInfo {
    pub fn new(id: impl Into<String>, name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            models: Vec::new(),
        }
    }

    /// Add one model.
    pub fn model(mut self, model: ModelInfo) -> Self {
        self.models.push(model);
        self
    }

    /// Add several models.
    pub fn models(mut self, models: impl IntoIterator<Item = ModelInfo>) -> Self {
        self.models.extend(models);
        self
    }

    /// The model with this id.
    pub fn find(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// What every request carries. Fields the user did not set are `None` (or empty).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// Number of images; 0 means the model's default. [`GenerateRequest::count`] resolves it.
    pub n: u32,
    /// `WIDTHxHEIGHT` (or `auto`).
    pub size: Option<String>,
    /// `W:H`.
    pub aspect_ratio: Option<String>,
    pub seed: Option<u64>,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub quality: Option<String>,
    pub style: Option<String>,
    pub output_format: Option<String>,
    pub background: Option<String>,
    /// Provider-specific parameters (`--set name=value` on the command line), as text.
    pub extra: BTreeMap<String, String>,
}

impl GenerateRequest {
    /// A request for one image from `model`; set other fields with struct update syntax.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// The number of images asked for, with 0 read as 1.
    pub fn count(&self) -> u32 {
        self.n.max(1)
    }

    /// A provider-specific parameter, if the user set it.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra.get(name).map(String::as_str)
    }
}

/// How an edit request uses its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EditMode {
    /// Prompt plus reference images.
    #[default]
    Edit,
    /// Change only what the mask marks.
    Inpaint,
    /// Variations of one image.
    Variations,
    Outpaint,
    Erase,
    SearchReplace,
}

/// A request that starts from images.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EditRequest {
    pub mode: EditMode,
    /// Model, prompt and the other common parameters.
    pub base: GenerateRequest,
    /// Reference or source images, in order.
    pub images: Vec<Image>,
    /// Marks the area to change (transparent or white, per provider).
    pub mask: Option<Image>,
    /// 0.0 keeps the source, 1.0 ignores it (image-to-image).
    pub strength: Option<f32>,
}

impl EditRequest {
    pub fn new(mode: EditMode, base: GenerateRequest, images: Vec<Image>) -> Self {
        Self {
            mode,
            base,
            images,
            mask: None,
            strength: None,
        }
    }

    pub fn mask(mut self, mask: Image) -> Self {
        self.mask = Some(mask);
        self
    }
}

/// A request for a larger version of one image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpscaleRequest {
    pub model: String,
    pub image: Image,
    /// The factor asked for, when the provider takes one.
    pub scale: Option<u32>,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub seed: Option<u64>,
    pub output_format: Option<String>,
    pub extra: BTreeMap<String, String>,
}

impl UpscaleRequest {
    pub fn new(model: impl Into<String>, image: Image) -> Self {
        Self {
            model: model.into(),
            image,
            ..Self::default()
        }
    }
}

/// What a call produced: the images plus what the provider said about them.
///
/// ```
/// use imageai_sdk::{Generation, Image};
///
/// let generation = Generation::new(vec![Image::png(vec![])])
///     .revised_prompt("a red cat, oil painting".to_owned())
///     .request_id(Some("req_123".to_owned()))
///     .metadata("created", "1700000000");
/// assert_eq!(generation.metadata["created"], "1700000000");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    pub images: Vec<Image>,
    /// The seed the provider used, when it says.
    pub seed: Option<u64>,
    /// The prompt as the provider rewrote it.
    pub revised_prompt: Option<String>,
    /// Text the provider returned beside the images.
    pub note: Option<String>,
    pub request_id: Option<String>,
    pub finish_reason: Option<String>,
    /// Warnings worth showing the user (e.g. an image was blurred by a content filter).
    pub warnings: Vec<String>,
    /// Anything else worth keeping in the history sidecar.
    pub metadata: BTreeMap<String, String>,
}

impl Generation {
    pub fn new(images: Vec<Image>) -> Self {
        Self {
            images,
            ..Self::default()
        }
    }

    pub fn seed(mut self, seed: impl Into<Option<u64>>) -> Self {
        self.seed = seed.into();
        self
    }

    pub fn revised_prompt(mut self, prompt: impl Into<Option<String>>) -> Self {
        self.revised_prompt = prompt.into();
        self
    }

    pub fn note(mut self, note: impl Into<Option<String>>) -> Self {
        self.note = note.into();
        self
    }

    pub fn request_id(mut self, id: impl Into<Option<String>>) -> Self {
        self.request_id = id.into();
        self
    }

    pub fn finish_reason(mut self, reason: impl Into<Option<String>>) -> Self {
        self.finish_reason = reason.into();
        self
    }

    pub fn warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_common_formats() {
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_mime(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_mime(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_mime(b"GIF89a"), Some("image/gif"));
        assert_eq!(sniff_mime(b"<html>"), None);
        assert_eq!(Image::sniff(b"??".to_vec(), "image/png").mime, "image/png");
    }

    #[test]
    fn model_builder_defaults() {
        let model = ModelInfo::new("m", "M")
            .sizes(["512x512", "1024x1024"])
            .max_n(0);
        assert_eq!(model.default_size.as_deref(), Some("512x512"));
        assert_eq!(model.max_n, 1);
        assert!(model.supports(Capability::TextToImage));
        let explicit = ModelInfo::new("m", "M")
            .default_size("1024x1024")
            .sizes(["512x512", "1024x1024"]);
        assert_eq!(explicit.default_size.as_deref(), Some("1024x1024"));
    }

    #[test]
    fn request_count_reads_zero_as_one() {
        let mut request = GenerateRequest::new("m", "p");
        assert_eq!(request.count(), 1);
        request.n = 3;
        assert_eq!(request.count(), 3);
    }
}
