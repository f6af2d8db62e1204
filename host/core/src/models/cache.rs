//! The Hugging Face cache layout, shared with Python's `huggingface_hub`:
//! `<cache>/models--org--name/{refs/<rev>, snapshots/<commit>/<path> → ../../blobs/<etag>, blobs/}`,
//! `.incomplete` blobs while downloading and `<cache>/.locks/` for cross-process locks.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::atomic;
use crate::paths::expand_tilde;

/// `HF_HUB_OFFLINE`: set to 1/on/yes/true, nothing is fetched.
pub const OFFLINE_ENV: &str = "HF_HUB_OFFLINE";

/// Whether `HF_HUB_OFFLINE` asks for offline mode (the values Python's `huggingface_hub` accepts).
pub fn offline_from(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

fn nonempty(value: Option<OsString>) -> Option<PathBuf> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| expand_tilde(&v.to_string_lossy()))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (Python's order).
pub fn hf_home(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(home) = nonempty(env("HF_HOME")) {
        return home;
    }
    if let Some(xdg) = nonempty(env("XDG_CACHE_HOME")) {
        return xdg.join("huggingface");
    }
    expand_tilde("~/.cache/huggingface")
}

/// The hub cache folder. `setting` is the config's `providers.local_sd.model_cache`: the Python
/// app stores the Hugging Face home there (`~/.cache/huggingface`), so a folder that is not a
/// hub cache itself (not named `hub`, no `models--*` inside) means `<it>/hub`. Without it:
/// `$HF_HUB_CACHE`, `$HUGGINGFACE_HUB_CACHE`, then `<HF home>/hub`.
pub fn resolve_cache_dir(setting: Option<&str>, env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(setting) = setting.map(str::trim).filter(|s| !s.is_empty()) {
        let dir = expand_tilde(setting);
        return if looks_like_hub_cache(&dir) {
            dir
        } else {
            dir.join("hub")
        };
    }
    if let Some(dir) =
        nonempty(env("HF_HUB_CACHE")).or_else(|| nonempty(env("HUGGINGFACE_HUB_CACHE")))
    {
        return dir;
    }
    hf_home(env).join("hub")
}

fn looks_like_hub_cache(dir: &Path) -> bool {
    if dir.file_name().is_some_and(|n| n == "hub") {
        return true;
    }
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("models--"))
    })
}

/// The token file `huggingface-cli login` writes: `$HF_TOKEN_PATH`, else `<HF home>/token`.
pub fn token_file(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    nonempty(env("HF_TOKEN_PATH")).unwrap_or_else(|| hf_home(env).join("token"))
}

/// Whether `id` is a Hub model id we can put in a path: `name` or `org/name`, each part of
/// letters, digits, `-`, `_`, `.`, not starting with `.` and without `--` (the cache's separator).
pub fn valid_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with('.')
                && !p.contains("--")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// Whether `revision` is a full commit hash.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether a repository path (from the Hub) stays inside the snapshot folder.
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// A hub cache folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name`.
    pub fn folder_name(repo: &str) -> String {
        format!("models--{}", repo.replace('/', "--"))
    }

    /// The repo id of a `models--org--name` folder.
    pub fn repo_of_folder(folder: &str) -> Option<String> {
        folder
            .strip_prefix("models--")
            .map(|rest| rest.replace("--", "/"))
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(Self::folder_name(repo))
    }

    pub fn blob_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag)
    }

    /// Where a blob grows while it downloads; renamed to [`HubCache::blob_path`] once verified.
    pub fn incomplete_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo)
            .join("blobs")
            .join(format!("{etag}.incomplete"))
    }

    pub fn snapshot_dir(&self, repo: &str, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit)
    }

    pub fn pointer_path(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        let mut path = self.snapshot_dir(repo, commit);
        path.extend(file.split('/'));
        path
    }

    pub fn ref_path(&self, repo: &str, revision: &str) -> PathBuf {
        let mut path = self.repo_dir(repo).join("refs");
        path.extend(revision.split('/'));
        path
    }

    /// `<cache>/.locks/models--org--name/<etag>.lock`, as Python's `huggingface_hub` locks.
    pub fn lock_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(Self::folder_name(repo))
            .join(format!("{etag}.lock"))
    }

    /// The commit a branch or tag points at, as last downloaded.
    pub fn read_ref(&self, repo: &str, revision: &str) -> Option<String> {
        let text = fs::read_to_string(self.ref_path(repo, revision)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_owned())
    }

    /// The commit for `revision`: itself when it is a commit hash, else what its ref says.
    pub fn commit_for(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            Some(revision.to_ascii_lowercase())
        } else {
            self.read_ref(repo, revision)
        }
    }

    /// Point `refs/<revision>` at `commit` (atomically, no newline: Python's format).
    pub fn write_ref(
        &self,
        repo: &str,
        revision: &str,
        commit: &str,
    ) -> Result<(), atomic::AtomicError> {
        atomic::write_atomic(&self.ref_path(repo, revision), commit.as_bytes())
    }

    /// Make `snapshots/<commit>/<file>` point at `blobs/<etag>`: a relative symlink where the
    /// platform allows one (as Python does), else a hard link or a copy. The pointer appears
    /// atomically, replacing any older one.
    pub fn link_pointer(&self, repo: &str, commit: &str, file: &str, etag: &str) -> io::Result<()> {
        let pointer = self.pointer_path(repo, commit, file);
        let parent = pointer
            .parent()
            .ok_or_else(|| io::Error::other("the pointer has no folder"))?;
        fs::create_dir_all(parent)?;
        let blob = self.blob_path(repo, etag);
        let temp = parent.join(format!(
            ".{}.{}.tmp",
            pointer
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = fs::remove_file(&temp);
        make_pointer(&blob, parent, &temp)?;
        fs::rename(&temp, &pointer)
    }
}

/// The path of `target` relative to `from_dir`; both under the same cache root.
fn relative_to(target: &Path, from_dir: &Path) -> PathBuf {
    let target: Vec<Component<'_>> = target.components().collect();
    let from: Vec<Component<'_>> = from_dir.components().collect();
    let common = target.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for part in &target[common..] {
        rel.push(part);
    }
    rel
}

#[cfg(unix)]
fn make_pointer(blob: &Path, pointer_dir: &Path, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(relative_to(blob, pointer_dir), at)
}

#[cfg(not(unix))]
fn make_pointer(blob: &Path, pointer_dir: &Path, at: &Path) -> io::Result<()> {
    // Symlinks need developer mode on Windows; Python falls back to copies, a hard link is as
    // good and costs no space.
    let _ = relative_to(blob, pointer_dir);
    fs::hard_link(blob, at).or_else(|_| fs::copy(blob, at).map(|_| ()))
}

/// The size of the file `path` resolves to (following the snapshot symlink), if it is one.
pub fn resolved_size(path: &Path) -> Option<u64> {
    fs::metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
}

/// The closest existing ancestor of `path` (for free-space checks before folders exist).
pub fn existing_ancestor(path: &Path) -> &Path {
    let mut current = path;
    loop {
        if current.exists() {
            return current;
        }
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => return current,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn cache_dir_follows_config_then_python_variables() {
        let none = env_of(&[]);
        let home = expand_tilde("~/.cache/huggingface");
        assert_eq!(resolve_cache_dir(None, &none), home.join("hub"));
        assert_eq!(
            resolve_cache_dir(None, &env_of(&[("HF_HOME", "/hf")])),
            Path::new("/hf/hub")
        );
        assert_eq!(
            resolve_cache_dir(None, &env_of(&[("XDG_CACHE_HOME", "/xdg")])),
            Path::new("/xdg/huggingface/hub")
        );
        assert_eq!(
            resolve_cache_dir(
                None,
                &env_of(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/cache")])
            ),
            Path::new("/cache")
        );
        assert_eq!(
            resolve_cache_dir(None, &env_of(&[("HUGGINGFACE_HUB_CACHE", "/old")])),
            Path::new("/old")
        );
        // The Python app's setting names the Hugging Face home…
        let env = env_of(&[("HF_HUB_CACHE", "/cache")]);
        assert_eq!(
            resolve_cache_dir(Some("/models/hf"), &env),
            Path::new("/models/hf/hub")
        );
        // …unless it already is a hub cache.
        assert_eq!(
            resolve_cache_dir(Some("/models/hub"), &env),
            Path::new("/models/hub")
        );
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("models--a--b")).unwrap();
        assert_eq!(resolve_cache_dir(dir.path().to_str(), &env), dir.path());
        assert_eq!(resolve_cache_dir(Some("  "), &env), Path::new("/cache"));
    }

    #[test]
    fn offline_accepts_pythons_values() {
        for on in ["1", "ON", "yes", "True"] {
            assert!(offline_from(Some(on)), "{on}");
        }
        for off in [None, Some("0"), Some(""), Some("off")] {
            assert!(!offline_from(off), "{off:?}");
        }
    }

    #[test]
    fn repo_ids_are_checked_before_they_become_paths() {
        for ok in [
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "gpt2",
            "org/name.v2_x",
        ] {
            assert!(valid_repo_id(ok), "{ok}");
        }
        for bad in ["", "a/b/c", "../x", "a/..", "a--b/c", "a/b c", "/abs", "a/"] {
            assert!(!valid_repo_id(bad), "{bad}");
        }
        assert!(safe_relative_path("unet/config.json"));
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\\b", ""] {
            assert!(!safe_relative_path(bad), "{bad}");
        }
    }

    #[test]
    fn layout_matches_huggingface_hub() {
        let cache = HubCache::new("/c");
        let repo = "org/name";
        assert_eq!(cache.repo_dir(repo), Path::new("/c/models--org--name"));
        assert_eq!(
            cache.blob_path(repo, "e1"),
            Path::new("/c/models--org--name/blobs/e1")
        );
        assert_eq!(
            cache.incomplete_path(repo, "e1"),
            Path::new("/c/models--org--name/blobs/e1.incomplete")
        );
        assert_eq!(
            cache.pointer_path(repo, "c0", "unet/x.json"),
            Path::new("/c/models--org--name/snapshots/c0/unet/x.json")
        );
        assert_eq!(
            cache.ref_path(repo, "main"),
            Path::new("/c/models--org--name/refs/main")
        );
        assert_eq!(
            cache.lock_path(repo, "e1"),
            Path::new("/c/.locks/models--org--name/e1.lock")
        );
        assert_eq!(
            HubCache::repo_of_folder("models--org--name").as_deref(),
            Some(repo)
        );
        assert_eq!(
            relative_to(
                Path::new("/c/m/blobs/e"),
                Path::new("/c/m/snapshots/abc/unet")
            ),
            Path::new("../../../blobs/e")
        );
    }

    #[cfg(unix)]
    #[test]
    fn pointers_are_relative_symlinks_and_refs_have_no_newline() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let commit = "a".repeat(40);
        fs::create_dir_all(cache.repo_dir("o/n").join("blobs")).unwrap();
        fs::write(cache.blob_path("o/n", "etag1"), b"hello").unwrap();
        cache
            .link_pointer("o/n", &commit, "unet/config.json", "etag1")
            .unwrap();
        cache
            .link_pointer("o/n", &commit, "unet/config.json", "etag1")
            .unwrap(); // replaces
        let pointer = cache.pointer_path("o/n", &commit, "unet/config.json");
        assert_eq!(
            fs::read_link(&pointer).unwrap(),
            Path::new("../../../blobs/etag1")
        );
        assert_eq!(fs::read(&pointer).unwrap(), b"hello");
        assert_eq!(resolved_size(&pointer), Some(5));

        cache.write_ref("o/n", "main", &commit).unwrap();
        assert_eq!(
            fs::read_to_string(cache.ref_path("o/n", "main")).unwrap(),
            commit
        );
        assert_eq!(cache.read_ref("o/n", "main"), Some(commit.clone()));
        assert_eq!(
            cache.commit_for("o/n", &commit.to_uppercase()),
            Some(commit)
        );
        assert_eq!(cache.read_ref("o/n", "dev"), None);
    }
}
