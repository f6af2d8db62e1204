//! Why loading, installing or removing a plugin failed. Calls into a loaded plugin fail with
//! [`crate::ProviderError`] instead; this type covers everything before the first call.

use std::path::PathBuf;

/// A plugin could not be read, validated, compiled, installed or removed.
///
/// Every message says what to do next; paths come last.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("could not read the plugin manifest: {source}. A plugin folder holds plugin.toml and plugin.wasm ({})", path.display())]
    ManifestRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid plugin manifest: {message}. Fix the file or reinstall the plugin ({})", path.display())]
    ManifestInvalid { path: PathBuf, message: String },

    #[error(
        "plugin {id} was built for contract {contract}; this ImageAI supports {supported}: update ImageAI or use a plugin built for {supported}"
    )]
    UnsupportedContract {
        id: String,
        contract: String,
        supported: String,
    },

    #[error("could not read the plugin component: {source}. Reinstall the plugin ({})", path.display())]
    ComponentRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("plugin {id} is not a valid ImageAI plugin: {message} ({})", path.display())]
    InvalidComponent {
        id: String,
        message: String,
        path: PathBuf,
    },

    #[error("could not start the plugin runtime: {0}")]
    Runtime(String),

    #[error("could not {action}: {source} ({})", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no user-installed plugin with id `{id}`; `imageai plugin list` shows what is installed ({})", dir.display())]
    NotInstalled { id: String, dir: PathBuf },
}

impl PluginError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
