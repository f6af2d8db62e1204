//! Where plugins live: bundled ones shipped with the app and user-installed ones, found by
//! their manifests; installing (validated, then copied atomically) and removing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::PluginError;
use super::manifest::{COMPONENT_FILE, MANIFEST_FILE, Manifest};
use super::runtime::Runtime;

/// Where a plugin was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Shipped with ImageAI.
    Bundled,
    /// Installed by the user (`imageai plugin install`).
    User,
}

/// A plugin folder with a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub source: Source,
}

/// Every plugin in `dirs`, in order (bundled dirs first, then the user's), folders sorted by
/// name. Folders without a manifest are skipped; invalid manifests are logged and skipped.
pub fn list<P: AsRef<Path>>(dirs: impl IntoIterator<Item = (P, Source)>) -> Vec<Discovered> {
    let mut found = Vec::new();
    for (dir, source) in dirs {
        let dir = dir.as_ref();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                tracing::warn!("could not list plugins: {err} ({})", dir.display());
                continue;
            }
        };
        let mut folders: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_dir() && path.join(MANIFEST_FILE).is_file())
            .filter(|path| !is_hidden(path))
            .collect();
        folders.sort();
        for folder in folders {
            match Manifest::read(&folder) {
                Ok(manifest) => found.push(Discovered {
                    dir: folder,
                    manifest,
                    source,
                }),
                Err(err) => tracing::warn!("skipping a plugin: {err}"),
            }
        }
    }
    found
}

/// The plugins to use: one per id, later dirs overriding earlier ones (a user plugin with the
/// id of a bundled one replaces it, with a log line). Sorted by id.
pub fn discover<P: AsRef<Path>>(dirs: impl IntoIterator<Item = (P, Source)>) -> Vec<Discovered> {
    let mut by_id: BTreeMap<String, Discovered> = BTreeMap::new();
    for plugin in list(dirs) {
        if let Some(previous) = by_id.get(&plugin.manifest.id) {
            tracing::info!(
                plugin = %plugin.manifest.id,
                "the plugin in {} (version {}) overrides the one in {} (version {})",
                plugin.dir.display(),
                plugin.manifest.version,
                previous.dir.display(),
                previous.manifest.version
            );
        }
        by_id.insert(plugin.manifest.id.clone(), plugin);
    }
    by_id.into_values().collect()
}

/// Validate the plugin in `src` by loading it, then copy its manifest and component into
/// `<user_dir>/<id>/`, replacing an installed version of the same id. A failed validation or
/// copy leaves any installed version untouched.
pub fn install(runtime: &Runtime, src: &Path, user_dir: &Path) -> Result<Manifest, PluginError> {
    let manifest = runtime.load(src)?.manifest().clone();
    std::fs::create_dir_all(user_dir)
        .map_err(|e| PluginError::io("create the plugins folder", user_dir, e))?;

    // Assemble the new folder next to its destination, then swap it in with renames.
    let staging = tempfile::Builder::new()
        .prefix(".installing-")
        .tempdir_in(user_dir)
        .map_err(|e| PluginError::io("create a staging folder", user_dir, e))?;
    for file in [MANIFEST_FILE, COMPONENT_FILE] {
        let from = src.join(file);
        std::fs::copy(&from, staging.path().join(file))
            .map_err(|e| PluginError::io("copy the plugin", &from, e))?;
    }
    let dest = user_dir.join(&manifest.id);
    let old = if dest.exists() {
        let parked = tempfile::Builder::new()
            .prefix(".replaced-")
            .tempdir_in(user_dir)
            .map_err(|e| PluginError::io("prepare replacing the installed plugin", user_dir, e))?;
        let parked_path = parked.path().join(&manifest.id);
        std::fs::rename(&dest, &parked_path)
            .map_err(|e| PluginError::io("move the installed version aside", &dest, e))?;
        Some((parked, parked_path))
    } else {
        None
    };
    let staged = staging.keep();
    if let Err(err) = std::fs::rename(&staged, &dest) {
        // Put the previous version back so a failed install changes nothing.
        if let Some((_, parked_path)) = &old {
            let _ = std::fs::rename(parked_path, &dest);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(PluginError::io("install the plugin", &dest, err));
    }
    // `old` (if any) is a TempDir: dropping it deletes the replaced version.
    drop(old);
    tracing::info!(plugin = %manifest.id, version = %manifest.version, "installed plugin ({})", dest.display());
    Ok(manifest)
}

/// Remove the user-installed plugin `id` from `user_dir`. Bundled plugins cannot be removed.
pub fn remove(id: &str, user_dir: &Path) -> Result<(), PluginError> {
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let dest = user_dir.join(id);
    if !valid || !dest.join(MANIFEST_FILE).is_file() {
        return Err(PluginError::NotInstalled {
            id: id.to_owned(),
            dir: user_dir.to_owned(),
        });
    }
    // Rename first so the plugin disappears at once, even if deleting its files takes a while.
    let parked = tempfile::Builder::new()
        .prefix(".removing-")
        .tempdir_in(user_dir)
        .map_err(|e| PluginError::io("prepare removing the plugin", user_dir, e))?;
    std::fs::rename(&dest, parked.path().join(id))
        .map_err(|e| PluginError::io("remove the plugin", &dest, e))?;
    parked
        .close()
        .map_err(|e| PluginError::io("delete the removed plugin's files", user_dir, e))?;
    tracing::info!(plugin = %id, "removed plugin ({})", dest.display());
    Ok(())
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_manifest(dir: &Path, id: &str, version: &str) {
        let folder = dir.join(id);
        std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("{e}"));
        let text = format!(
            "id = \"{id}\"\nname = \"{id}\"\nversion = \"{version}\"\ncontract = \"0.1.0\"\n"
        );
        std::fs::write(folder.join(MANIFEST_FILE), text).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn user_plugins_override_bundled_ones() {
        let bundled = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let user = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_manifest(bundled.path(), "openai", "0.1.0");
        write_manifest(bundled.path(), "stability", "0.1.0");
        write_manifest(user.path(), "openai", "0.2.0");
        std::fs::create_dir_all(user.path().join("broken")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(user.path().join("broken").join(MANIFEST_FILE), "id = 1")
            .unwrap_or_else(|e| panic!("{e}"));

        let dirs = [
            (bundled.path(), Source::Bundled),
            (user.path(), Source::User),
        ];
        let found = discover(dirs);
        let summary: Vec<(&str, &str, Source)> = found
            .iter()
            .map(|d| {
                (
                    d.manifest.id.as_str(),
                    d.manifest.version.as_str(),
                    d.source,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("openai", "0.2.0", Source::User),
                ("stability", "0.1.0", Source::Bundled)
            ]
        );
        assert_eq!(list(dirs).len(), 3);
    }

    #[test]
    fn remove_refuses_what_is_not_installed() {
        let user = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_manifest(user.path(), "mine", "0.1.0");
        assert!(matches!(
            remove("../etc", user.path()),
            Err(PluginError::NotInstalled { .. })
        ));
        assert!(matches!(
            remove("other", user.path()),
            Err(PluginError::NotInstalled { .. })
        ));
        remove("mine", user.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!user.path().join("mine").exists());
        assert_eq!(
            std::fs::read_dir(user.path())
                .map(|d| d.count())
                .unwrap_or(99),
            0
        );
    }
}
