//! Exit codes, one per error class, so scripts can react without parsing text.

use imageai_core::ProviderError;
use imageai_core::app::CoreError;

pub const OTHER: i32 = 1;
pub const USAGE: i32 = 2;
pub const AUTH: i32 = 3;
pub const CONTENT_POLICY: i32 = 4;
pub const RATE_LIMIT: i32 = 5;
pub const NETWORK: i32 = 6;
pub const SERVER: i32 = 7;
pub const PLUGIN: i32 = 8;
pub const INVALID: i32 = 9;
pub const CANCELLED: i32 = 130;

/// A failed command: the message for the user, its class and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub class: &'static str,
    pub code: i32,
}

impl Failure {
    pub fn new(code: i32, class: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class,
            code,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, "usage", message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(OTHER, "other", message)
    }

    /// A provider error, with the provider's name and the next step to take.
    pub fn provider(provider: &str, err: &ProviderError) -> Self {
        let (code, hint) = match err {
            ProviderError::Auth(_) => (
                AUTH,
                format!("Set a new key with `imageai keys set {provider}`."),
            ),
            ProviderError::ContentPolicy(_) => (
                CONTENT_POLICY,
                "Rephrase the prompt or change the image.".into(),
            ),
            ProviderError::RateLimited { retry_after_ms, .. } => (
                RATE_LIMIT,
                match retry_after_ms {
                    Some(ms) => format!("Try again in {} s.", ms.div_ceil(1000)),
                    None => "Wait a minute and try again.".into(),
                },
            ),
            ProviderError::Quota(_) => (
                RATE_LIMIT,
                "Check your plan and credits on the provider's site.".into(),
            ),
            ProviderError::Timeout(_) | ProviderError::Network(_) => (
                NETWORK,
                "Check your connection (and the provider's base URL setting), then try again."
                    .into(),
            ),
            ProviderError::Server(_) => (
                SERVER,
                "The provider had a problem; try again later.".into(),
            ),
            ProviderError::InvalidRequest(_) => (
                INVALID,
                format!("Check the options against `imageai providers` for {provider}."),
            ),
            ProviderError::Cancelled => (CANCELLED, String::new()),
            ProviderError::Plugin(_) => (
                PLUGIN,
                format!(
                    "The {provider} plugin failed; reinstall or update it (`imageai plugin list`)."
                ),
            ),
            ProviderError::Other(_) => (OTHER, String::new()),
        };
        let text = err.to_string();
        let text = text.trim_end();
        let message = match (hint.is_empty(), text.ends_with(['.', '!', '?'])) {
            (true, _) => format!("{provider}: {text}"),
            // The plugin may already say what to do: don't say it twice.
            (false, _) if text.contains(hint.trim_end_matches('.')) => {
                format!("{provider}: {text}")
            }
            (false, true) => format!("{provider}: {text} {hint}"),
            (false, false) => format!("{provider}: {text}. {hint}"),
        };
        Self::new(code, err.class(), message)
    }
}

impl From<CoreError> for Failure {
    fn from(err: CoreError) -> Self {
        let (code, class) = match &err {
            CoreError::MissingKey { .. } => (AUTH, "auth"),
            CoreError::UnknownProvider { .. } | CoreError::NoProvider { .. } => (USAGE, "usage"),
            CoreError::Load { .. } | CoreError::Plugin(_) => (PLUGIN, "plugin"),
            _ => (OTHER, "other"),
        };
        Self::new(code, class, err.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Self::other(format!("{err:#}"))
    }
}
