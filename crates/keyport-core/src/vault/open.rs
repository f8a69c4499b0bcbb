//! Unlocking an existing vault, including the fallback to the previous
//! header that makes an interrupted password change recoverable.
//!
//! `Vault::change_password` writes, in this order: a copy of the current
//! header to `vault.header.json.prev`, the new header, the snapshot encrypted
//! with the new key, and then deletes the copy. A crash can therefore leave
//!
//! | header | prev | snapshot | opens with |
//! |--------|------|----------|------------|
//! | old    | old  | old key  | old password |
//! | new    | old  | old key  | old password, through the fallback |
//! | new    | old  | new key  | new password |
//!
//! and `unlock` handles each row. A successful `ReadWrite` open then settles
//! the folder back to a plain header and snapshot (see [`settle`]).

use std::fs;
use std::io;

use super::error::VaultError;
use super::header::{prev_header_path, Header};
use super::kdf::DerivedKeys;
use super::record::Entries;
use super::snapshot::{self, LoadError};
use crate::fsutil::sync_dir;
use crate::paths::DataDir;
use crate::secret::SecretString;

/// Header that unlocked the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSource {
    Current,
    Previous,
}

/// Everything `unlock` recovered from the files.
pub struct Unlocked {
    pub header: Header,
    pub keys: DerivedKeys,
    pub entries: Entries,
    pub source: HeaderSource,
}

/// Checks `password` against the current header, then against the previous
/// one if a password change was interrupted, and decrypts the snapshot.
/// Reads only; never writes or deletes.
pub fn unlock(dir: &DataDir, password: &SecretString) -> Result<Unlocked, VaultError> {
    let header = Header::read(&dir.vault_header())?;
    if let Some(keys) = header.unlock(password)? {
        return match snapshot::load(&dir.snapshot(), &keys.snapshot_key) {
            Ok(entries) => Ok(Unlocked {
                header,
                keys,
                entries,
                source: HeaderSource::Current,
            }),
            Err(LoadError::Damaged(_)) if read_other_prev(dir, &header)?.is_some() => {
                Err(VaultError::PasswordChangeInterrupted {
                    path: dir.vault_header(),
                })
            }
            Err(error) => Err(load_error(dir, error)),
        };
    }

    let Some(previous) = read_other_prev(dir, &header)? else {
        return Err(VaultError::WrongPassword);
    };
    let Some(keys) = previous.unlock(password)? else {
        return Err(VaultError::WrongPassword);
    };
    match snapshot::load(&dir.snapshot(), &keys.snapshot_key) {
        Ok(entries) => Ok(Unlocked {
            header: previous,
            keys,
            entries,
            source: HeaderSource::Previous,
        }),
        // The snapshot already uses the new key, so the password change
        // finished and this password is no longer the vault's.
        Err(LoadError::Damaged(_)) => Err(VaultError::WrongPassword),
        Err(error) => Err(load_error(dir, error)),
    }
}

/// Brings the folder back to a single header after a `ReadWrite` open. It
/// deletes a leftover previous header, and if that header was the one that
/// unlocked the snapshot, it first writes it back as the current header.
/// The caller must hold the write lock.
pub fn settle(dir: &DataDir, unlocked: &Unlocked) -> Result<(), VaultError> {
    if unlocked.source == HeaderSource::Previous {
        unlocked.header.write(&dir.vault_header())?;
    }
    let prev = prev_header_path(dir);
    match fs::remove_file(&prev) {
        Ok(()) => sync_dir(dir.root()).map_err(VaultError::io("sync the data folder", dir.root())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(VaultError::io("remove the previous vault header", prev)(
            error,
        )),
    }
}

/// Reads the previous header if it exists and differs from `current`. A copy
/// equal to the current header is left by a change that stopped right after
/// copying, and it unlocks nothing the current header does not.
///
/// An unreadable copy is logged and treated as absent. `write_atomic` never
/// leaves a partial file, so only outside changes damage it, and the
/// current header is still the one to report on.
fn read_other_prev(dir: &DataDir, current: &Header) -> Result<Option<Header>, VaultError> {
    match Header::read_if_present(&prev_header_path(dir)) {
        Ok(previous) => Ok(previous.filter(|previous| previous != current)),
        Err(
            error
            @ (VaultError::HeaderDamaged { .. } | VaultError::HeaderUnsupportedVersion { .. }),
        ) => {
            tracing::warn!(%error, "ignoring the previous vault header");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

fn load_error(dir: &DataDir, error: LoadError) -> VaultError {
    match error {
        LoadError::Damaged(reason) => VaultError::SnapshotDamaged {
            path: dir.snapshot(),
            reason,
        },
        LoadError::Engine(reason) => VaultError::Engine {
            path: dir.snapshot(),
            reason,
        },
    }
}
