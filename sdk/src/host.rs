//! What the host offers a running call besides HTTP: the plugin's own key and settings,
//! progress reports, cancellation and sleeping.

use std::cell::Cell;
use std::time::Duration;

use crate::bindings::imageai::provider::host;
use crate::errors::ProviderError;

thread_local! {
    /// Set by the export glue before each call: how to learn the provider id, for messages.
    static PROVIDER_ID: Cell<Option<fn() -> String>> = const { Cell::new(None) };
}

pub(crate) fn set_provider_id(id: fn() -> String) {
    PROVIDER_ID.with(|cell| cell.set(Some(id)));
}

/// The id of the provider being called, for messages (`<provider>` outside a call).
pub(crate) fn provider_id() -> String {
    PROVIDER_ID
        .with(Cell::get)
        .map_or_else(|| "<provider>".to_owned(), |id| id())
}

/// The plugin's API key, as the user set it (keychain, config or the manifest's environment
/// variable). When none is set the error says how to set one, so `api_key()?` is all a plugin needs.
pub fn api_key() -> Result<String, ProviderError> {
    match host::api_key() {
        Some(key) if !key.trim().is_empty() => Ok(key.trim().to_owned()),
        _ => {
            let id = provider_id();
            Err(ProviderError::Auth(format!(
                "no API key is set for {id}. Set one with `imageai keys set {id}` or the environment variable named in its plugin.toml."
            )))
        }
    }
}

/// A setting declared in the manifest (`[[settings]]`), as configured or its default; `None`
/// when it is undeclared or empty.
pub fn setting(name: &str) -> Option<String> {
    host::setting(name).filter(|value| !value.trim().is_empty())
}

/// [`setting`], or `default` when it has no value.
pub fn setting_or(name: &str, default: &str) -> String {
    setting(name).unwrap_or_else(|| default.to_owned())
}

/// Report progress of the current call; `fraction` is clamped to 0.0..=1.0.
pub fn progress(fraction: f32, message: &str) {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    host::progress(fraction, message);
}

/// Whether the user cancelled the current call.
pub fn is_cancelled() -> bool {
    host::is_cancelled()
}

/// `Err(ProviderError::Cancelled)` once the user cancelled: `check_cancelled()?` between steps.
pub fn check_cancelled() -> Result<(), ProviderError> {
    if is_cancelled() {
        Err(ProviderError::Cancelled)
    } else {
        Ok(())
    }
}

/// Wait (e.g. between polls of a long job). Returns `Err(ProviderError::Cancelled)` as soon as
/// the user cancels.
pub fn sleep(duration: Duration) -> Result<(), ProviderError> {
    let ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    if host::sleep(ms) {
        Ok(())
    } else {
        Err(ProviderError::Cancelled)
    }
}
