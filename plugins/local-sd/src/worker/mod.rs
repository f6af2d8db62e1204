//! The worker process the host runs as the `local-sd` provider, and the client that spawns and
//! talks to it over stdio (line-delimited JSON, see [`protocol`]).

pub mod client;
pub mod protocol;
#[cfg(feature = "engine")]
pub mod server;
