//! Following a vault that other processes edit, for a proxy that keeps
//! serving while the user adds or replaces keys with the CLI.

use crate::fsutil::{stamp, FileStamp};
use crate::paths::DataDir;
use crate::secret::SecretString;

use super::{Access, Vault, VaultError};

/// Re-opens a vault read-only whenever its snapshot or header changes.
///
/// The follower keeps the password, because every re-open derives the
/// snapshot key again from the header's current salt. Writers replace both
/// files by atomic renames, so a re-open reads a whole old or new file. A
/// password change in progress can still pair an old snapshot with a new
/// header, which fails to open and is retried on the next change.
pub struct VaultFollower {
    dir: DataDir,
    password: SecretString,
    stamps: (Option<FileStamp>, Option<FileStamp>),
}

impl VaultFollower {
    /// Opens the vault read-only and starts following it.
    pub fn open(dir: &DataDir, password: SecretString) -> Result<(Self, Vault), VaultError> {
        let stamps = Self::current_stamps(dir);
        let vault = Vault::open(dir, &password, Access::ReadOnly)?;
        let follower = Self {
            dir: dir.clone(),
            password,
            stamps,
        };
        Ok((follower, vault))
    }

    /// Returns a freshly opened vault if either file changed since the last
    /// successful open, or None if nothing changed.
    ///
    /// A failed re-open leaves the recorded stamps alone, so the next call
    /// tries again. Once the vault has a new password, every call returns
    /// [`VaultError::WrongPassword`] until a restart with that password.
    pub fn reload_if_changed(&mut self) -> Result<Option<Vault>, VaultError> {
        let stamps = Self::current_stamps(&self.dir);
        if stamps == self.stamps {
            return Ok(None);
        }
        let vault = Vault::open(&self.dir, &self.password, Access::ReadOnly)?;
        self.stamps = stamps;
        Ok(Some(vault))
    }

    fn current_stamps(dir: &DataDir) -> (Option<FileStamp>, Option<FileStamp>) {
        (stamp(&dir.snapshot()), stamp(&dir.vault_header()))
    }
}
