//! The write lock on `vault.lock`.
//!
//! A `ReadWrite` vault holds an exclusive lock on the file for its whole
//! lifetime and writes its PID into it, so that a second writer can name
//! the process in its error. The lock is advisory (`flock` on Unix,
//! `LockFileEx` on Windows) and the operating system releases it when the
//! process exits, even when it is killed. The file itself is never deleted,
//! because deleting a lock file lets two processes lock two different files.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

use super::error::VaultError;
use crate::fsutil::{make_private, FILE_MODE};
use crate::paths::DataDir;

/// How long [`WriteLock::acquire`] retries a held lock before it reports
/// [`VaultError::Busy`]. A process that forks (any `Command::spawn`) copies
/// its open lock descriptor into the child until the child's `exec` closes
/// it, so a lock that its holder just released can stay held for a few
/// milliseconds more. A real second writer holds the lock far longer.
const BUSY_RETRY_FOR: Duration = Duration::from_millis(250);
const BUSY_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// An acquired write lock; dropping it empties the file and releases the lock.
pub struct WriteLock {
    file: File,
    path: PathBuf,
}

impl WriteLock {
    /// Takes the lock, retrying for up to [`BUSY_RETRY_FOR`], or returns
    /// [`VaultError::Busy`] with the PID that the holder wrote.
    pub fn acquire(dir: &DataDir) -> Result<Self, VaultError> {
        let path = dir.vault_lock();
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        options.mode(FILE_MODE);
        let mut file = options
            .open(&path)
            .map_err(VaultError::io("open the lock file", &path))?;

        let deadline = Instant::now() + BUSY_RETRY_FOR;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(BUSY_RETRY_INTERVAL);
                }
                Err(TryLockError::WouldBlock) => {
                    let pid = read_pid(&mut file);
                    return Err(VaultError::Busy { path, pid });
                }
                Err(TryLockError::Error(error)) => {
                    return Err(VaultError::io("lock", &path)(error));
                }
            }
        }

        make_private(&path).map_err(VaultError::io("restrict permissions of", &path))?;
        write_pid(&mut file).map_err(VaultError::io("write the PID into", &path))?;
        Ok(Self { file, path })
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Emptied while still locked, so a process that fails to take the lock
        // never reads a PID that no longer holds it. Closing the file
        // releases the lock.
        let _ = self.file.set_len(0);
    }
}

impl std::fmt::Debug for WriteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLock")
            .field("path", &self.path)
            .finish()
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

/// Reads the holder's PID; `None` if the file is empty or unreadable.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut contents = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    Read::take(file, 32).read_to_string(&mut contents).ok()?;
    contents.trim().parse().ok()
}
