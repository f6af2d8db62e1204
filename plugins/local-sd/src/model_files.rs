//! Finding a diffusers model on disk: a local folder, or a repo id in the Hugging Face cache
//! (`$HF_HOME/hub/models--org--name/snapshots/<commit>`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The Hugging Face cache's `hub/` folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (`$XDG_CACHE_HOME` respected).
pub fn hf_hub_cache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("huggingface").join("hub"))
}

/// The snapshot folder of `repo_id` (`org/name`) in a hub cache: the commit `refs/<revision>`
/// names, else the only snapshot present.
pub fn snapshot_in(hub: &Path, repo_id: &str, revision: &str) -> Option<PathBuf> {
    let folder = hub.join(format!("models--{}", repo_id.replace('/', "--")));
    let refs = folder.join("refs").join(revision);
    if let Ok(commit) = std::fs::read_to_string(&refs) {
        let snap = folder.join("snapshots").join(commit.trim());
        if snap.is_dir() {
            return Some(snap);
        }
    }
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(folder.join("snapshots"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    snaps.sort();
    if snaps.len() == 1 { snaps.pop() } else { None }
}

/// A local diffusers folder, or a cached repo id (`org/name` or `org/name@revision`).
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    if repo.split('/').count() == 2
        && let Some(hub) = hf_hub_cache()
        && let Some(snap) = snapshot_in(&hub, repo, revision)
    {
        return Ok(snap);
    }
    Err(Error::ModelNotFound(spec.to_string()))
}
