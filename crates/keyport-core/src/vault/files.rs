//! Checks and housekeeping on the vault files in the data folder.

use std::fs;
use std::io;
use std::path::Path;

use super::error::VaultError;
use crate::fsutil::{make_private, sync_dir};
use crate::paths::DataDir;

/// Length of the random hex suffix stronghold_engine 2.0.1 appends to the
/// snapshot path for its temporary file (`<path>.<12 hex digits>`).
const ENGINE_TEMP_SUFFIX_LEN: usize = 12;

/// Suffix `fsutil::write_atomic` puts between a file name and its random part.
const ATOMIC_TEMP_MARKER: &str = ".tmp-";

/// Presence of the two files that make up a vault.
pub struct Presence {
    pub header: bool,
    pub snapshot: bool,
}

impl Presence {
    pub fn check(dir: &DataDir) -> Result<Self, VaultError> {
        Ok(Self {
            header: file_exists(&dir.vault_header())?,
            snapshot: file_exists(&dir.snapshot())?,
        })
    }

    /// Returns an error unless both files exist.
    pub fn require_both(&self, dir: &DataDir) -> Result<(), VaultError> {
        match (self.header, self.snapshot) {
            (true, true) => Ok(()),
            (false, false) => Err(VaultError::NotInitialized {
                dir: dir.root().to_path_buf(),
            }),
            (false, true) => Err(VaultError::HeaderMissing {
                path: dir.vault_header(),
                snapshot: dir.snapshot(),
            }),
            (true, false) => Err(VaultError::SnapshotMissing {
                path: dir.snapshot(),
                header: dir.vault_header(),
            }),
        }
    }

    /// Returns an error if either file exists.
    pub fn require_none(&self, dir: &DataDir) -> Result<(), VaultError> {
        let existing = if self.header {
            dir.vault_header()
        } else if self.snapshot {
            dir.snapshot()
        } else {
            return Ok(());
        };
        Err(VaultError::AlreadyExists {
            dir: dir.root().to_path_buf(),
            path: existing,
        })
    }
}

/// Restricts a snapshot the engine has just renamed into place and makes the
/// rename durable. The engine creates its temporary file with the process
/// umask, so until this runs the file may be group- or world-readable. The
/// folder's 0700 mode keeps other users out during that window.
pub fn finish_snapshot_write(dir: &DataDir) -> Result<(), VaultError> {
    let path = dir.snapshot();
    make_private(&path).map_err(VaultError::io("restrict permissions of", &path))?;
    sync_dir(dir.root()).map_err(VaultError::io("sync the data folder", dir.root()))
}

/// Deletes temporary files that a process killed during a save left behind:
/// the engine's snapshot temp files and `write_atomic` temp files of the
/// headers. Only call this while holding the write lock, because another
/// writer's temporary files would otherwise be removed under it.
pub fn remove_stale_temp_files(dir: &DataDir) -> Result<(), VaultError> {
    let root = dir.root();
    let entries = fs::read_dir(root).map_err(VaultError::io("list the data folder", root))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(VaultError::io("list the data folder", root))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if is_stale_temp_name(name) {
            let path = entry.path();
            fs::remove_file(&path)
                .map_err(VaultError::io("remove the stale temporary file", &path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(root).map_err(VaultError::io("sync the data folder", root))?;
    }
    Ok(())
}

fn is_stale_temp_name(name: &str) -> bool {
    if let Some(suffix) = name.strip_prefix("vault.stronghold.") {
        return suffix.len() == ENGINE_TEMP_SUFFIX_LEN
            && suffix.bytes().all(|b| b.is_ascii_hexdigit());
    }
    ["vault.header.json", "vault.header.json.prev"]
        .iter()
        .any(|base| {
            name.strip_prefix(base)
                .is_some_and(|rest| rest.starts_with(ATOMIC_TEMP_MARKER))
        })
}

fn file_exists(path: &Path) -> Result<bool, VaultError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(VaultError::io("check", path)(error)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_names_are_recognised() {
        for stale in [
            "vault.stronghold.0a1b2c3d4e5f",
            "vault.header.json.tmp-123-0000abcd",
            "vault.header.json.prev.tmp-9-ffffffff",
        ] {
            assert!(is_stale_temp_name(stale), "{stale}");
        }
        for not_stale in [
            "vault.stronghold",
            "vault.stronghold.bak",
            "vault.stronghold.0a1b2c3d4e5",
            "vault.header.json",
            "vault.header.json.prev",
            "tokens.json.tmp-1-00000000",
            "vault.lock",
        ] {
            assert!(!is_stale_temp_name(not_stale), "{not_stale}");
        }
    }
}
