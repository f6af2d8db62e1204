//! The glue `register_provider!` expands to: the contract's export trait implemented once, for
//! any [`Provider`], plus the conversions between the contract's records and the SDK's types.
//! Public only so the macro can reach it from the plugin's crate; not part of the API.

use std::marker::PhantomData;

use crate::Provider;
use crate::bindings::exports::imageai::provider::provider::Guest;
use crate::bindings::imageai::provider::types as wit;
use crate::errors::ProviderError;
use crate::types::{
    Capability, EditMode, EditRequest, GenerateRequest, Generation, Image, ModelInfo, Param,
    ProviderInfo, UpscaleRequest,
};

/// Implemented by `register_provider!` for the plugin's provider type: runs `f` with the one
/// instance of the provider this component instance holds (built on first use).
pub trait Registered: Provider + Sized + 'static {
    fn with_instance<R>(f: impl FnOnce(&Self) -> R) -> R;
}

/// The exported component, generic over the registered provider.
pub struct Export<P>(PhantomData<P>);

fn provider_id<P: Registered>() -> String {
    P::with_instance(|provider| provider.info().id)
}

fn call<P: Registered>(
    f: impl FnOnce(&P) -> Result<Generation, ProviderError>,
) -> Result<wit::Generation, wit::ProviderError> {
    crate::host::set_provider_id(provider_id::<P>);
    P::with_instance(f).map(Into::into).map_err(Into::into)
}

impl<P: Registered> Guest for Export<P> {
    fn info() -> wit::ProviderInfo {
        P::with_instance(|provider| provider.info()).into()
    }

    fn generate(request: wit::GenerateRequest) -> Result<wit::Generation, wit::ProviderError> {
        call::<P>(|provider| provider.generate(request.into()))
    }

    fn edit(request: wit::EditRequest) -> Result<wit::Generation, wit::ProviderError> {
        call::<P>(|provider| provider.edit(request.into()))
    }

    fn upscale(request: wit::UpscaleRequest) -> Result<wit::Generation, wit::ProviderError> {
        call::<P>(|provider| provider.upscale(request.into()))
    }

    fn check_key() -> Result<(), wit::ProviderError> {
        crate::host::set_provider_id(provider_id::<P>);
        P::with_instance(|provider| provider.check_key()).map_err(Into::into)
    }
}

impl From<wit::Image> for Image {
    fn from(image: wit::Image) -> Self {
        Self {
            mime: image.mime,
            data: image.data,
        }
    }
}

impl From<Image> for wit::Image {
    fn from(image: Image) -> Self {
        Self {
            mime: image.mime,
            data: image.data,
        }
    }
}

impl From<Capability> for wit::Capability {
    fn from(capability: Capability) -> Self {
        match capability {
            Capability::TextToImage => Self::TextToImage,
            Capability::Edit => Self::Edit,
            Capability::Inpaint => Self::Inpaint,
            Capability::Variations => Self::Variations,
            Capability::Upscale => Self::Upscale,
            Capability::Outpaint => Self::Outpaint,
            Capability::Erase => Self::Erase,
            Capability::SearchReplace => Self::SearchReplace,
        }
    }
}

impl From<Param> for wit::Param {
    fn from(param: Param) -> Self {
        match param {
            Param::N => Self::N,
            Param::Seed => Self::Seed,
            Param::Steps => Self::Steps,
            Param::Guidance => Self::Guidance,
            Param::NegativePrompt => Self::NegativePrompt,
            Param::Quality => Self::Quality,
            Param::Style => Self::Style,
            Param::OutputFormat => Self::OutputFormat,
            Param::Background => Self::Background,
            Param::Strength => Self::Strength,
            Param::Size => Self::Size,
            Param::AspectRatio => Self::AspectRatio,
        }
    }
}

impl From<ModelInfo> for wit::ModelInfo {
    fn from(model: ModelInfo) -> Self {
        Self {
            id: model.id,
            name: model.name,
            description: model.description,
            capabilities: model.capabilities.into_iter().map(Into::into).collect(),
            params: model.params.into_iter().map(Into::into).collect(),
            sizes: model.sizes,
            aspect_ratios: model.aspect_ratios,
            qualities: model.qualities,
            styles: model.styles,
            output_formats: model.output_formats,
            max_n: model.max_n.max(1),
            default_size: model.default_size,
        }
    }
}

impl From<ProviderInfo> for wit::ProviderInfo {
    fn from(info: ProviderInfo) -> Self {
        Self {
            id: info.id,
            name: info.name,
            version: info.version,
            models: info.models.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::GenerateRequest> for GenerateRequest {
    fn from(request: wit::GenerateRequest) -> Self {
        Self {
            model: request.model,
            prompt: request.prompt,
            negative_prompt: request.negative_prompt,
            n: request.n,
            size: request.size,
            aspect_ratio: request.aspect_ratio,
            seed: request.seed,
            steps: request.steps,
            guidance: request.guidance,
            quality: request.quality,
            style: request.style,
            output_format: request.output_format,
            background: request.background,
            extra: request.extra.into_iter().collect(),
        }
    }
}

impl From<wit::EditMode> for EditMode {
    fn from(mode: wit::EditMode) -> Self {
        match mode {
            wit::EditMode::Edit => Self::Edit,
            wit::EditMode::Inpaint => Self::Inpaint,
            wit::EditMode::Variations => Self::Variations,
            wit::EditMode::Outpaint => Self::Outpaint,
            wit::EditMode::Erase => Self::Erase,
            wit::EditMode::SearchReplace => Self::SearchReplace,
        }
    }
}

impl From<wit::EditRequest> for EditRequest {
    fn from(request: wit::EditRequest) -> Self {
        Self {
            mode: request.mode.into(),
            base: request.base.into(),
            images: request.images.into_iter().map(Into::into).collect(),
            mask: request.mask.map(Into::into),
            strength: request.strength,
        }
    }
}

impl From<wit::UpscaleRequest> for UpscaleRequest {
    fn from(request: wit::UpscaleRequest) -> Self {
        Self {
            model: request.model,
            image: request.image.into(),
            scale: request.scale,
            prompt: request.prompt,
            negative_prompt: request.negative_prompt,
            seed: request.seed,
            output_format: request.output_format,
            extra: request.extra.into_iter().collect(),
        }
    }
}

impl From<Generation> for wit::Generation {
    fn from(generation: Generation) -> Self {
        Self {
            images: generation.images.into_iter().map(Into::into).collect(),
            seed: generation.seed,
            revised_prompt: generation.revised_prompt,
            note: generation.note,
            request_id: generation.request_id,
            finish_reason: generation.finish_reason,
            warnings: generation.warnings,
            metadata: generation.metadata.into_iter().collect(),
        }
    }
}

impl From<ProviderError> for wit::ProviderError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Auth(m) => Self::Auth(m),
            ProviderError::RateLimited {
                message,
                retry_after_ms,
            } => Self::RateLimited(wit::RateLimit {
                message,
                retry_after_ms,
            }),
            ProviderError::ContentPolicy(m) => Self::ContentPolicy(m),
            ProviderError::InvalidRequest(m) => Self::InvalidRequest(m),
            ProviderError::Quota(m) => Self::Quota(m),
            ProviderError::Timeout(m) => Self::Timeout(m),
            ProviderError::Network(m) => Self::Network(m),
            ProviderError::Server(m) => Self::Server(m),
            ProviderError::Cancelled => Self::Cancelled,
            ProviderError::Other(m) => Self::Other(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_convert_field_for_field() {
        let base = wit::GenerateRequest {
            model: "m".into(),
            prompt: "p".into(),
            negative_prompt: Some("np".into()),
            n: 2,
            size: Some("1024x1024".into()),
            aspect_ratio: None,
            seed: Some(7),
            steps: Some(20),
            guidance: Some(7.5),
            quality: Some("hd".into()),
            style: Some("vivid".into()),
            output_format: Some("png".into()),
            background: Some("transparent".into()),
            extra: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
        };
        let request: EditRequest = wit::EditRequest {
            mode: wit::EditMode::Inpaint,
            base,
            images: vec![wit::Image {
                mime: "image/png".into(),
                data: vec![1],
            }],
            mask: Some(wit::Image {
                mime: "image/png".into(),
                data: vec![2],
            }),
            strength: Some(0.5),
        }
        .into();
        assert_eq!(request.mode, EditMode::Inpaint);
        assert_eq!(request.base.extra("a"), Some("1"));
        assert_eq!(request.base.count(), 2);
        assert_eq!(request.base.guidance, Some(7.5));
        assert_eq!(request.images, vec![Image::png(vec![1])]);
        assert_eq!(request.mask, Some(Image::png(vec![2])));
    }

    #[test]
    fn errors_keep_their_class() {
        let err: wit::ProviderError = ProviderError::RateLimited {
            message: "slow down".into(),
            retry_after_ms: Some(5),
        }
        .into();
        assert!(
            matches!(err, wit::ProviderError::RateLimited(wit::RateLimit { ref message, retry_after_ms: Some(5) }) if message == "slow down")
        );
        assert!(matches!(
            wit::ProviderError::from(ProviderError::Cancelled),
            wit::ProviderError::Cancelled
        ));
    }

    #[test]
    fn generations_convert() {
        let generation: wit::Generation = Generation::new(vec![Image::png(vec![9])])
            .request_id("r".to_owned())
            .metadata("k", "v")
            .warning("w")
            .into();
        assert_eq!(generation.images.len(), 1);
        assert_eq!(generation.request_id.as_deref(), Some("r"));
        assert_eq!(generation.metadata, vec![("k".to_owned(), "v".to_owned())]);
        assert_eq!(generation.warnings, vec!["w".to_owned()]);
    }
}
