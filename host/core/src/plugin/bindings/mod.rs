//! One bindings module per supported contract version (`wit/since_vX.Y.Z/`), each mapping its
//! generated types onto the host's own ([`crate::provider`]). Supporting a new version = a new
//! module, a new arm in [`Pre`], and its version in [`SUPPORTED_CONTRACTS`].

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::state::PluginState;
use crate::provider::{
    EditRequest, GenerateRequest, Generation, ProviderError, ProviderInfo, UpscaleRequest,
};

mod v0_1_0;

/// Contract versions this build can run, oldest first.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1.0"];

/// The contract's interface names for one version.
pub(crate) struct Interfaces {
    /// Imports a component may have besides WASI.
    pub(crate) imports: &'static [&'static str],
    /// The export a component must have.
    pub(crate) export: &'static str,
}

pub(crate) fn interfaces(contract: &str) -> Option<Interfaces> {
    match contract {
        "0.1.0" => Some(Interfaces {
            imports: &[v0_1_0::HOST_INTERFACE, v0_1_0::TYPES_INTERFACE],
            export: v0_1_0::PROVIDER_INTERFACE,
        }),
        _ => None,
    }
}

/// Define the host imports of every supported version.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    v0_1_0::add_to_linker(linker)
}

/// A pre-instantiated component of some supported contract version.
pub(crate) enum Pre {
    V0_1_0(v0_1_0::Pre),
}

/// What a call returns: the plugin's own answer, or a trap (`Err` of the outer result).
pub(crate) type CallResult<T> = wasmtime::Result<Result<T, ProviderError>>;

impl Pre {
    pub(crate) fn new(contract: &str, pre: InstancePre<PluginState>) -> Result<Self, String> {
        match contract {
            "0.1.0" => v0_1_0::Pre::new(pre)
                .map(Self::V0_1_0)
                .map_err(|err| format!("{err:#}")),
            other => Err(format!("no bindings for contract {other}")),
        }
    }

    /// A new instance in `store` (runs the component's start-up code).
    pub(crate) fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Instance> {
        match self {
            Self::V0_1_0(pre) => pre.instantiate(store).map(Instance::V0_1_0),
        }
    }
}

/// A live instance of some supported contract version.
pub(crate) enum Instance {
    V0_1_0(v0_1_0::Instance),
}

impl Instance {
    pub(crate) fn info(&self, store: &mut Store<PluginState>) -> CallResult<ProviderInfo> {
        match self {
            Self::V0_1_0(instance) => instance.info(store),
        }
    }

    pub(crate) fn generate(
        &self,
        store: &mut Store<PluginState>,
        request: &GenerateRequest,
    ) -> CallResult<Generation> {
        match self {
            Self::V0_1_0(instance) => instance.generate(store, request),
        }
    }

    pub(crate) fn edit(
        &self,
        store: &mut Store<PluginState>,
        request: &EditRequest,
    ) -> CallResult<Generation> {
        match self {
            Self::V0_1_0(instance) => instance.edit(store, request),
        }
    }

    pub(crate) fn upscale(
        &self,
        store: &mut Store<PluginState>,
        request: &UpscaleRequest,
    ) -> CallResult<Generation> {
        match self {
            Self::V0_1_0(instance) => instance.upscale(store, request),
        }
    }

    pub(crate) fn check_key(&self, store: &mut Store<PluginState>) -> CallResult<()> {
        match self {
            Self::V0_1_0(instance) => instance.check_key(store),
        }
    }
}
