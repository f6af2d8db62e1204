//! Crash-safe file writes and backups of damaged files.
//! Every file ImageAI owns (config, keys, templates, images, sidecars) is written through here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read a file written by [`write_atomic_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// The usual permissions for a new file (the user's umask applies). An existing file's
    /// permissions are kept.
    #[default]
    Normal,
    /// Readable and writable by the owner only (0600 on Unix). For files that hold secrets.
    Private,
}

/// A file could not be written or backed up.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    #[error("could not write the file ({reason}); check free disk space and the folder's permissions: {}", path.display())]
    Write { path: PathBuf, reason: io::Error },
    #[error("could not save a copy of the damaged file ({reason}); copy it somewhere safe by hand before ImageAI writes a new one: {}", path.display())]
    Backup { path: PathBuf, reason: io::Error },
    #[error("could not lock the file to change it ({reason}); check the folder's permissions: {}", path.display())]
    Lock { path: PathBuf, reason: io::Error },
}

impl AtomicError {
    /// The file and the I/O error, whatever step failed.
    pub fn into_parts(self) -> (PathBuf, io::Error) {
        match self {
            Self::Write { path, reason }
            | Self::Backup { path, reason }
            | Self::Lock { path, reason } => (path, reason),
        }
    }
}

/// A damaged file that was copied aside at load time; the caller carries on without its content
/// and shows this to the user (its `Display` is the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptFile {
    /// The damaged file, still in place until the next save replaces it.
    pub path: PathBuf,
    /// The copy made by [`backup_corrupt`].
    pub backup: PathBuf,
    /// Why it could not be read (a parse error; never the file's content).
    pub reason: String,
    /// What happens instead, e.g. "starting with defaults".
    pub fallback: &'static str,
}

impl std::fmt::Display for CorruptFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(
            f,
            "{name} was corrupt ({}); saved a copy at {}; {}",
            self.reason,
            self.backup.display(),
            self.fallback
        )
    }
}

/// Replace `path` with `bytes` so that readers see either the old or the new content, never a
/// mix: a temporary file in the same folder is written, flushed to disk and renamed over
/// `path`. Missing parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicError> {
    write_atomic_with(path, bytes, Access::Normal)
}

/// [`write_atomic`] with a choice of [`Access`]. With [`Access::Private`] the new file is
/// owner-only from its first byte (the temporary file is created that way).
pub fn write_atomic_with(path: &Path, bytes: &[u8], access: Access) -> Result<(), AtomicError> {
    write_inner(path, bytes, access).map_err(|reason| AtomicError::Write {
        path: path.to_owned(),
        reason,
    })
}

fn write_inner(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let prefix = format!(".{}.", name.to_string_lossy());

    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match access {
            Access::Private => 0o600,
            // Keep an existing file's mode; a new one gets 0666 less the umask, like any file.
            Access::Normal => fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o666),
        };
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = access;

    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// An exclusive hold on a file for one read-change-write, taken by [`lock_for_update`] and
/// released when dropped.
#[derive(Debug)]
pub struct UpdateLock {
    _file: Option<File>,
}

/// Wait for and take the exclusive lock of `path` (on `.<name>.lock` beside it, which stays), so
/// that two updates — two threads, or the GUI and the CLI — never read the same old content and
/// each write it back without the other's change. Where the platform has no file locks the
/// update goes on unlocked. Missing parent folders are created.
pub fn lock_for_update(path: &Path) -> Result<UpdateLock, AtomicError> {
    lock_inner(path).map_err(|reason| AtomicError::Lock {
        path: path.to_owned(),
        reason,
    })
}

fn lock_inner(path: &Path) -> io::Result<UpdateLock> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(dir.join(format!(".{}.lock", name.to_string_lossy())))?;
    match file.lock() {
        Ok(()) => Ok(UpdateLock { _file: Some(file) }),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(UpdateLock { _file: None }),
        Err(e) => Err(e),
    }
}

/// Copy a damaged file to `<name>.corrupt-<YYYYmmdd-HHMMSS>` beside it and return the copy's
/// path. The original stays where it is; an earlier backup is never overwritten (a `-2`, `-3`…
/// suffix is added). The copy keeps the original's permissions, so a damaged key file stays
/// private.
pub fn backup_corrupt(path: &Path) -> Result<PathBuf, AtomicError> {
    backup_inner(path).map_err(|reason| AtomicError::Backup {
        path: path.to_owned(),
        reason,
    })
}

fn backup_inner(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?
        .to_string_lossy()
        .into_owned();
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let dir = parent_dir(path);
    let original_permissions = fs::metadata(path)?.permissions();
    let mut source = File::open(path)?;

    for attempt in 1u32.. {
        let candidate = if attempt == 1 {
            dir.join(format!("{name}.corrupt-{stamp}"))
        } else {
            dir.join(format!("{name}.corrupt-{stamp}-{attempt}"))
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Owner-only until the original's permissions are copied over.
            options.mode(0o600);
        }
        let mut target = match options.open(&candidate) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        io::copy(&mut source, &mut target)?;
        target.sync_all()?;
        fs::set_permissions(&candidate, original_permissions)?;
        sync_dir(dir);
        return Ok(candidate);
    }
    Err(io::Error::other("no free backup name"))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flush the folder entry of a rename to disk. Best effort: not every platform or file system
/// allows opening a folder, and the data itself is already on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on the first surprise
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["config.json".to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_and_normal_files_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("keys.json");
        write_atomic_with(&secret, b"{}", Access::Private).unwrap();
        assert_eq!(
            fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let normal = dir.path().join("templates.json");
        write_atomic(&normal, b"[]").unwrap();
        fs::set_permissions(&normal, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&normal, b"[1]").unwrap();
        assert_eq!(
            fs::metadata(&normal).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn a_failed_write_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        // A file where a folder should be: the write must fail, not panic.
        let err = write_atomic(&blocker.join("child.json"), b"{}").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("could not write the file"), "{message}");
        assert!(
            message.ends_with(&blocker.join("child.json").display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn backups_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, b"{broken").unwrap();
        let first = backup_corrupt(&path).unwrap();
        fs::write(&path, b"{broken again").unwrap();
        let second = backup_corrupt(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read(&first).unwrap(), b"{broken");
        assert_eq!(fs::read(&second).unwrap(), b"{broken again");
        assert_eq!(
            fs::read(&path).unwrap(),
            b"{broken again",
            "the original stays in place"
        );
        let name = first.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("config.json.corrupt-"), "{name}");
        // <name>.corrupt-YYYYmmdd-HHMMSS
        assert_eq!(name.len(), "config.json.corrupt-".len() + 15, "{name}");
    }

    #[cfg(unix)]
    #[test]
    fn backups_of_private_files_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        write_atomic_with(&path, b"{oops", Access::Private).unwrap();
        let backup = backup_corrupt(&path).unwrap();
        assert_eq!(
            fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
