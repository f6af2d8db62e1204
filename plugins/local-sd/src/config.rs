//! Reading diffusers' and transformers' `config.json` files.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(what, path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A config value that is either one value for every block or one per block (diffusers
/// accepts both for `attention_head_dim`, `transformer_layers_per_block`, ...).
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    pub fn get(&self, block: usize) -> Option<T> {
        match self {
            Self::One(v) => Some(v.clone()),
            Self::Each(v) => v.get(block).cloned(),
        }
    }

    pub fn expand(&self, blocks: usize, what: &str) -> Result<Vec<T>> {
        match self {
            Self::One(v) => Ok(vec![v.clone(); blocks]),
            Self::Each(v) if v.len() == blocks => Ok(v.clone()),
            Self::Each(v) => Err(Error::Config(format!(
                "`{what}` has {} entries but the model has {blocks} blocks; the config.json is inconsistent",
                v.len()
            ))),
        }
    }
}
