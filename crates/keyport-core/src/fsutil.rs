//! File helpers shared by the vault and the token store: private folders and
//! atomic, durable, owner-only file writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Mode of every file Keyport writes (owner read and write).
pub const FILE_MODE: u32 = 0o600;

/// Mode of the data folder (owner only).
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) if missing and restricts it to the owner.
///
/// An existing folder with looser permissions is tightened, because the vault
/// header and token hashes inside must not be readable by other local users.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(dir)?;

    #[cfg(unix)]
    {
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != DIR_MODE {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
        }
    }
    Ok(())
}

/// Restricts an existing file to the owner.
pub fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `contents` to `path` so that readers see either the old file or the
/// new one, never a mix, even if the process dies part-way.
///
/// The bytes go to a new owner-only temporary file in the same folder, which
/// is flushed to disk and then renamed over `path`. The folder is synced too,
/// so the rename itself survives a crash.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, contents, FILE_MODE)
}

/// Writes `contents` to `path` like [`write_atomic`], but the new file gets
/// permission bits `mode` (ignored outside Unix). The temporary file is
/// owner-only until its contents are on disk and only then gets `mode`, so
/// the umask does not change the result.
pub fn write_atomic_with_mode(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent folder"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;

    let mut temp_name = file_name.to_os_string();
    temp_name.push(format!(
        ".tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let temp_path = dir.join(temp_name);

    let result =
        write_new_file(&temp_path, contents, mode).and_then(|()| fs::rename(&temp_path, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    result?;
    sync_dir(dir)
}

/// Creates `path` exclusively with owner-only permissions, writes `contents`
/// and then sets the permission bits to `mode`.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    #[cfg(unix)]
    if mode != FILE_MODE {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.sync_all()
}

/// Flushes a folder's entries (renames, new files) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Identity of one version of a file that Keyport replaces atomically:
/// modification time, length and, on Unix, the inode, which every rename
/// over the file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: std::time::SystemTime,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

/// Returns the stamp of `path`, or None if it cannot be read.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: metadata.modified().ok()?,
        len: metadata.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&metadata),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();

        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files were left behind");
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_creates_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        write_atomic(&path, b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_with_mode_sets_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        for mode in [0o644, 0o640, 0o600] {
            write_atomic_with_mode(&path, b"A=1\n", mode).unwrap();
            let found = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(found, mode, "{mode:o}");
        }
        assert_eq!(fs::read(&path).unwrap(), b"A=1\n");
    }

    #[cfg(unix)]
    #[test]
    fn ensure_private_dir_tightens_existing_folder() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();

        ensure_private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DIR_MODE);
    }
}
