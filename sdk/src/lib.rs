//! Write ImageAI provider plugins: implement [`Provider`], call [`register_provider!`], build for
//! `wasm32-wasip2`. The SDK hides the WebAssembly plumbing; a plugin reads like the provider's API
//! docs: build a request, send it, map the answer.
//!
//! # A complete plugin
//!
//! `Cargo.toml` needs `crate-type = ["cdylib"]` and dependencies on `imageai-sdk`, `serde` and
//! `serde_json` (`imageai plugin new <name>` writes all of it). Then `src/lib.rs`:
//!
//! ```
//! use imageai_sdk::{
//!     api_key, http, setting_or, Capability, GenerateRequest, Generation, Image, ModelInfo, Param,
//!     Provider, ProviderError, ProviderInfo,
//! };
//! use serde::Deserialize;
//!
//! const DEFAULT_BASE_URL: &str = "https://api.acme.example/v1";
//!
//! #[derive(Default)]
//! struct Acme;
//!
//! /// `{"images": [{"base64": "..."}], "seed": 42}`
//! #[derive(Deserialize)]
//! struct Answer {
//!     images: Vec<AnswerImage>,
//!     seed: Option<u64>,
//! }
//!
//! #[derive(Deserialize)]
//! struct AnswerImage {
//!     base64: String,
//! }
//!
//! impl Provider for Acme {
//!     fn info(&self) -> ProviderInfo {
//!         ProviderInfo::new("acme", "Acme Images", env!("CARGO_PKG_VERSION")).model(
//!             ModelInfo::new("acme-1", "Acme 1")
//!                 .description("Fast general-purpose model")
//!                 .capabilities([Capability::TextToImage])
//!                 .params([Param::N, Param::Size, Param::Seed])
//!                 .sizes(["1024x1024", "512x512"])
//!                 .max_n(4),
//!         )
//!     }
//!
//!     fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
//!         let model = self.info().find(&request.model).cloned().ok_or_else(|| {
//!             ProviderError::invalid_request(format!("unknown model `{}`; try `acme-1`", request.model))
//!         })?;
//!         if request.count() > model.max_n {
//!             return Err(ProviderError::invalid_request(format!("{} takes at most {} images", model.id, model.max_n)));
//!         }
//!         let base_url = setting_or("base_url", DEFAULT_BASE_URL);
//!         let response = http::post(format!("{}/images", base_url.trim_end_matches('/')))
//!             .bearer(&api_key()?)
//!             .json(&serde_json::json!({
//!                 "model": model.id,
//!                 "prompt": request.prompt,
//!                 "n": request.count(),
//!                 "size": request.size.or(model.default_size),
//!                 "seed": request.seed,
//!             }))
//!             .send()?
//!             .error_for_status()?;
//!         let answer: Answer = response.json()?;
//!         let images = answer
//!             .images
//!             .iter()
//!             .map(|image| Image::from_base64(&image.base64, "image/png"))
//!             .collect::<Result<Vec<_>, _>>()?;
//!         Ok(Generation::new(images)
//!             .seed(answer.seed)
//!             .request_id(response.header("x-request-id").map(str::to_owned)))
//!     }
//!
//!     fn check_key(&self) -> Result<(), ProviderError> {
//!         let base_url = setting_or("base_url", DEFAULT_BASE_URL);
//!         http::get(format!("{}/account", base_url.trim_end_matches('/')))
//!             .bearer(&api_key()?)
//!             .send()?
//!             .error_for_status()?;
//!         Ok(())
//!     }
//! }
//!
//! imageai_sdk::register_provider!(Acme);
//! # fn main() {}
//! ```
//!
//! Next to `Cargo.toml`, `plugin.toml` declares the id, the hosts the plugin may reach, the key
//! and the settings (see the template `imageai plugin new` writes). Build and install with
//! `imageai plugin build` and `imageai plugin install`, or by hand:
//! `cargo build --target wasm32-wasip2 --release`, then copy the `.wasm` beside `plugin.toml` as
//! `plugin.wasm`.
//!
//! # What a plugin can do
//! Only what the host offers: HTTP to the hosts its manifest declares ([`http`]), its own key
//! ([`api_key`]) and settings ([`setting`]), logging ([`log`]), progress ([`progress`]) and
//! cancellation ([`is_cancelled`], [`sleep`]). No files, no environment, no sockets. The host
//! retries transient HTTP failures (408/409/429/5xx) itself.
//!
//! # Testing
//! The SDK also builds for the host target, so a plugin's parsing and validation code can be unit
//! tested with `cargo test`. Calls into the host ([`http::Request::send`], [`api_key`], [`log`]…)
//! only work inside the runtime: outside it they panic. Test whole calls against a local server in
//! the real runtime.

mod adapter;
pub mod base64;
#[doc(hidden)]
pub mod bindings;
pub mod errors;
mod host;
pub mod http;
pub mod image_size;
pub mod json;
pub mod log;
pub mod multipart;
mod types;

pub use errors::ProviderError;
pub use host::{api_key, check_cancelled, is_cancelled, progress, setting, setting_or, sleep};
pub use types::{
    Capability, EditMode, EditRequest, GenerateRequest, Generation, Image, ModelInfo, Param,
    ProviderInfo, UpscaleRequest, sniff_mime,
};

/// The version of the WIT contract (`wit/since_v<version>/`) this SDK builds plugins for; the
/// `contract` field of `plugin.toml` must say the same.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A provider. Only [`Provider::info`] is required: every other method has a default, so a
/// plugin implements what its API offers and nothing else.
///
/// One instance is built per component instance (the host uses a fresh component instance per
/// call), with `Default` or the constructor given to [`register_provider!`].
pub trait Provider {
    /// Who the provider is and which models it offers. Keep it cheap and free of host calls: the
    /// host calls it when loading the plugin and caches the answer.
    fn info(&self) -> ProviderInfo;

    /// Prompt in, images out.
    fn generate(&self, request: GenerateRequest) -> Result<Generation, ProviderError> {
        let _ = request;
        Err(ProviderError::not_supported("text-to-image generation"))
    }

    /// Edit, inpaint, make variations of… images, per [`EditRequest::mode`].
    fn edit(&self, request: EditRequest) -> Result<Generation, ProviderError> {
        let what = match request.mode {
            EditMode::Edit => "image editing",
            EditMode::Inpaint => "inpainting",
            EditMode::Variations => "image variations",
            EditMode::Outpaint => "outpainting",
            EditMode::Erase => "erasing",
            EditMode::SearchReplace => "search and replace",
        };
        Err(ProviderError::not_supported(what))
    }

    /// A larger version of one image.
    fn upscale(&self, request: UpscaleRequest) -> Result<Generation, ProviderError> {
        let _ = request;
        Err(ProviderError::not_supported("upscaling"))
    }

    /// Check the key with the provider's cheapest authenticated call. The default accepts any key.
    fn check_key(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// Export a [`Provider`] as the plugin's implementation of the contract. Call it once, at the
/// crate root of the plugin:
///
/// ```
/// # use imageai_sdk::{Provider, ProviderInfo};
/// # #[derive(Default)] struct MyProvider;
/// # impl Provider for MyProvider { fn info(&self) -> ProviderInfo { ProviderInfo::new("my", "My", "0.1.0") } }
/// imageai_sdk::register_provider!(MyProvider);
/// # fn main() {}
/// ```
///
/// with a type that implements `Default`, or with a constructor (any `fn() -> MyProvider` or
/// closure):
///
/// ```
/// # use imageai_sdk::{Provider, ProviderInfo};
/// # struct MyProvider { endpoint: &'static str }
/// # impl MyProvider { fn new() -> Self { Self { endpoint: "/v1" } } }
/// # impl Provider for MyProvider { fn info(&self) -> ProviderInfo { ProviderInfo::new("my", "My", "0.1.0") } }
/// imageai_sdk::register_provider!(MyProvider, MyProvider::new);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! register_provider {
    ($provider:ty $(,)?) => {
        $crate::register_provider!($provider, <$provider as ::core::default::Default>::default);
    };
    ($provider:ty, $constructor:expr $(,)?) => {
        // The export glue wit-bindgen generates is `#[unsafe(export_name)] unsafe extern "C"`
        // functions that lift and lower the contract's values: machine-made, not hand-written.
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static PROVIDER: $provider = ($constructor)();
            }

            impl $crate::__private::Registered for $provider {
                fn with_instance<R>(f: impl ::core::ops::FnOnce(&Self) -> R) -> R {
                    PROVIDER.with(f)
                }
            }

            // Only a WebAssembly component has the contract's exports. Natively (unit tests of a
            // plugin crate) there is nothing to export, and the export names, which contain `:`
            // and `#`, would not even link into a shared library.
            #[cfg(target_arch = "wasm32")]
            const _: () = {
                type __ImageaiExport = $crate::__private::Export<$provider>;
                $crate::__private::wit::__export_plugin!(__ImageaiExport with_types_in $crate::__private::wit);
            };
        };
    };
}

/// Reached by `register_provider!` from the plugin's crate. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::{Export, Registered};
    pub use crate::bindings as wit;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Minimal;

    impl Provider for Minimal {
        fn info(&self) -> ProviderInfo {
            ProviderInfo::new("minimal", "Minimal", "0.0.1")
        }
    }

    #[test]
    fn defaults_say_not_supported() {
        let provider = Minimal;
        let generate = provider.generate(GenerateRequest::new("m", "p"));
        assert!(
            matches!(&generate, Err(ProviderError::InvalidRequest(m)) if m.contains("not supported by this provider")),
            "{generate:?}"
        );
        let edit = provider.edit(EditRequest {
            mode: EditMode::Variations,
            ..EditRequest::default()
        });
        assert!(
            matches!(&edit, Err(ProviderError::InvalidRequest(m)) if m.starts_with("image variations is not supported")),
            "{edit:?}"
        );
        let upscale = provider.upscale(UpscaleRequest::new("m", Image::png(vec![])));
        assert_eq!(upscale.err().map(|e| e.class()), Some("invalid-request"));
        assert_eq!(provider.check_key(), Ok(()));
    }

    #[test]
    fn contract_version_matches_the_wit_package() {
        let wit = include_str!("../../wit/since_v0.1.0/provider.wit");
        assert!(wit.contains(&format!("package imageai:provider@{CONTRACT_VERSION};")));
    }
}
