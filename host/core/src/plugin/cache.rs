//! Compiled components on disk, so the second start compiles nothing. An entry is keyed by the
//! `.wasm`'s sha256 and the engine's compatibility hash, written atomically, and checksummed.
//!
//! This is the one module allowed `unsafe`: `Component::deserialize` trusts its bytes to be
//! native code wasmtime produced. That holds here because (1) the file is our own cache, named
//! by the hashes of its inputs, (2) it is written with an atomic rename, so a reader never sees
//! half a file, and (3) its payload's sha256 is stored in front of it and checked before
//! deserializing, so a truncated or bit-flipped entry is discarded and recompiled instead of
//! executed. wasmtime also checks its own header (version, target, engine settings). Someone
//! who can write the cache directory can equally replace the app, so it is no new trust.
#![allow(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{self, SHA256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry; bump the digit when the layout changes.
const MAGIC: &[u8; 16] = b"IMAGEAI-CWASM-1\n";
const DIGEST_LEN: usize = 32;
const EXTENSION: &str = ".cwasm";
/// Hex digits of each hash kept in a file name.
const WASM_HASH_CHARS: usize = 32;
const ENGINE_HASH_CHARS: usize = 16;

/// The compiled-component cache in one directory.
pub(crate) struct ComponentCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ComponentCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        Self {
            dir,
            engine_hash: engine_hash(engine),
        }
    }

    fn path(&self, id: &str, wasm_sha256: &str) -> PathBuf {
        let wasm = &wasm_sha256[..WASM_HASH_CHARS.min(wasm_sha256.len())];
        let engine = &self.engine_hash[..ENGINE_HASH_CHARS.min(self.engine_hash.len())];
        self.dir.join(format!("{id}-{wasm}-{engine}{EXTENSION}"))
    }

    /// The cached component for this plugin build, if there is a sound one. A corrupt or
    /// incompatible entry is deleted (and `None` returned, so the caller recompiles).
    pub(crate) fn load(&self, engine: &Engine, id: &str, wasm_sha256: &str) -> Option<Component> {
        let path = self.path(id, wasm_sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(plugin = %id, "could not read the compiled plugin cache ({err}); compiling instead ({})", path.display());
                return None;
            }
        };
        let Some(payload) = verified_payload(&bytes) else {
            discard(&path, id, "its checksum does not match");
            return None;
        };
        // SAFETY: see the module docs: `payload` is exactly what `store` wrote from
        // `Component::serialize` (its sha256 was checked just above), for this engine's
        // compatibility hash; wasmtime re-checks its own header before using it.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(component) => Some(component),
            Err(err) => {
                discard(&path, id, &format!("wasmtime refused it: {err}"));
                None
            }
        }
    }

    /// Save a freshly compiled component, replacing older builds of the same plugin. Failures
    /// are logged, never fatal: the plugin still runs, it just compiles again next time.
    pub(crate) fn store(&self, id: &str, wasm_sha256: &str, component: &Component) {
        let path = self.path(id, wasm_sha256);
        let result = component
            .serialize()
            .map_err(|err| std::io::Error::other(err.to_string()))
            .and_then(|payload| self.write_atomically(&path, &payload));
        match result {
            Ok(()) => {
                tracing::debug!(plugin = %id, "cached the compiled plugin ({})", path.display());
                self.remove_stale(id, &path);
            }
            Err(err) => tracing::warn!(
                plugin = %id,
                "could not cache the compiled plugin ({err}); it will be compiled again next start ({})",
                path.display()
            ),
        }
    }

    fn write_atomically(&self, path: &Path, payload: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(digest::digest(&SHA256, payload).as_ref())?;
        file.write_all(payload)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|err| err.error)?;
        Ok(())
    }

    /// Delete this plugin's entries for other builds or other engines, so the cache does not
    /// grow with every update.
    fn remove_stale(&self, id: &str, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let tail = 1 + WASM_HASH_CHARS + 1 + ENGINE_HASH_CHARS + EXTENSION.len();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_ours = name.len() == id.len() + tail
                && name.starts_with(id)
                && name[id.len()..].starts_with('-')
                && name.ends_with(EXTENSION);
            if is_ours && path != keep {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

fn verified_payload(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < DIGEST_LEN {
        return None;
    }
    let (stored, payload) = rest.split_at(DIGEST_LEN);
    (digest::digest(&SHA256, payload).as_ref() == stored).then_some(payload)
}

fn discard(path: &Path, id: &str, why: &str) {
    tracing::warn!(plugin = %id, "discarding a corrupt compiled-plugin cache entry ({why}); recompiling ({})", path.display());
    if let Err(err) = std::fs::remove_file(path) {
        tracing::warn!(plugin = %id, "could not delete the corrupt cache entry: {err} ({})", path.display());
    }
}

/// The sha256 of a component's bytes, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&SHA256, bytes))
}

/// A stable digest of [`Engine::precompile_compatibility_hash`]: artifacts compiled by another
/// wasmtime version or with other settings never match.
fn engine_hash(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(digest::Context::new(&SHA256));
    engine.precompile_compatibility_hash().hash(&mut hasher);
    MAGIC.hash(&mut hasher);
    hex::encode(hasher.0.finish())
}

/// Feeds `Hash` into sha256 (std's `DefaultHasher` may change between Rust releases).
struct Sha256Hasher(digest::Context);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finish();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checksum_is_checked() {
        let payload = b"compiled code";
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(digest::digest(&SHA256, payload).as_ref());
        entry.extend_from_slice(payload);
        assert_eq!(verified_payload(&entry), Some(payload.as_slice()));
        let last = entry.len() - 1;
        entry[last] ^= 1;
        assert_eq!(verified_payload(&entry), None);
        assert_eq!(verified_payload(&entry[..20]), None);
        assert_eq!(verified_payload(b"garbage"), None);
    }
}
