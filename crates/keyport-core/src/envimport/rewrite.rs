//! Replacing imported values in a `.env` file, keeping every other byte.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::fsutil::{self, FILE_MODE};

#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// Suffix of the copy that `--backup` keeps of the original file.
pub const BACKUP_SUFFIX: &str = ".keyport-backup";

/// Errors from rewriting a `.env` file. None contains file contents.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error(
        "{path} changed while the keys were imported, so it was not rewritten. Check it and run \
         the import again"
    )]
    Changed { path: PathBuf },

    #[error(
        "backup {path} already exists; move it elsewhere or delete it, or import without \
         --backup"
    )]
    BackupExists { path: PathBuf },

    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RewriteError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// Returns `text` with each range replaced by its string and `tail`
/// appended. The ranges must be sorted and must not overlap; ranges that
/// break either rule are skipped.
pub fn splice(text: &str, replacements: &[(Range<usize>, &str)], tail: &str) -> Zeroizing<String> {
    let removed: usize = replacements.iter().map(|(range, _)| range.len()).sum();
    let added: usize = replacements.iter().map(|(_, new)| new.len()).sum::<usize>() + tail.len();
    // Sized exactly, so the buffer never reallocates and leaves no
    // unzeroized copy of the file's other secrets behind.
    let mut out = Zeroizing::new(String::with_capacity(
        (text.len() + added).saturating_sub(removed),
    ));

    let mut copied_to = 0;
    for (range, new) in replacements {
        let valid = range.start >= copied_to
            && range.end >= range.start
            && text.get(copied_to..range.start).is_some()
            && text.get(range.clone()).is_some();
        if !valid {
            continue;
        }
        out.push_str(&text[copied_to..range.start]);
        out.push_str(new);
        copied_to = range.end;
    }
    out.push_str(&text[copied_to..]);
    out.push_str(tail);
    out
}

/// Returns the path of the backup of `path`: the same name with
/// [`BACKUP_SUFFIX`] appended.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map_or_else(OsString::new, ToOwned::to_owned);
    name.push(BACKUP_SUFFIX);
    path.with_file_name(name)
}

/// Replaces the file at `path` with `new_contents`, if it still contains
/// `original`.
///
/// A symbolic link is followed and its target rewritten. The new file
/// replaces the old one atomically and keeps its permission bits. With
/// `backup`, `original` is first written to [`backup_path`] with mode 0600,
/// failing if that file exists. Returns the backup's path.
///
/// NOTE: The rename gives the file a new inode, so hard links to the old
/// file keep the old contents, secrets included.
pub fn rewrite_file(
    path: &Path,
    original: &[u8],
    new_contents: &[u8],
    backup: bool,
) -> Result<Option<PathBuf>, RewriteError> {
    let target = fs::canonicalize(path).map_err(RewriteError::io("resolve", path))?;
    let metadata = fs::metadata(&target).map_err(RewriteError::io("read", &target))?;
    let current = Zeroizing::new(fs::read(&target).map_err(RewriteError::io("read", &target))?);
    if current.as_slice() != original {
        return Err(RewriteError::Changed { path: target });
    }

    let backup = if backup {
        let backup = backup_path(path);
        write_backup(&backup, original)?;
        Some(backup)
    } else {
        None
    };

    fsutil::write_atomic_with_mode(&target, new_contents, permission_bits(&metadata))
        .map_err(RewriteError::io("write", &target))?;
    Ok(backup)
}

#[cfg(unix)]
fn permission_bits(metadata: &fs::Metadata) -> u32 {
    metadata.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permission_bits(_metadata: &fs::Metadata) -> u32 {
    FILE_MODE
}

/// Writes `contents` to a new owner-only file at `path` and syncs it.
fn write_backup(path: &Path, contents: &[u8]) -> Result<(), RewriteError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            RewriteError::BackupExists {
                path: path.to_path_buf(),
            }
        } else {
            RewriteError::Io {
                action: "create the backup",
                path: path.to_path_buf(),
                source,
            }
        }
    })?;

    let result = file
        .write_all(contents)
        .and_then(|()| fsutil::make_private(path))
        .and_then(|()| file.sync_all())
        .and_then(|()| match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => fsutil::sync_dir(dir),
            _ => Ok(()),
        });
    if let Err(source) = result {
        let _ = fs::remove_file(path);
        return Err(RewriteError::Io {
            action: "write the backup",
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}
