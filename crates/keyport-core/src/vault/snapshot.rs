//! Reading and writing `vault.stronghold` with iota_stronghold.
//!
//! The file is a plain iota_stronghold snapshot, the format
//! tauri-plugin-stronghold reads and writes. The entries live in the Store of
//! one client, `keyport`, rather than in vault records. The proxy has to send
//! each key in clear in a request header, and Stronghold vault records can
//! only be used by procedures, never read back.
//!
//! Every load and write uses a fresh `Stronghold` instance that is cleared
//! and dropped before returning, so the engine keeps no entries between calls.
//!
//! NOTE: iota_stronghold 2.1 copies the Store into its in-memory snapshot
//! state on load and commit (`Stronghold::commit_with_keyprovider` clones
//! the client's Store cache, and `Snapshot::get_snapshot_state` clones it
//! again). Those copies are freed without zeroizing when the instance is
//! dropped, and no public API reaches them. The copies this module owns, the
//! Store values and the record buffers, are zeroized.

use std::path::Path;

use iota_stronghold::engine::snapshot::try_set_encrypt_work_factor;
use iota_stronghold::{ClientError, KeyProvider, SnapshotPath, Store, Stronghold};
use zeroize::Zeroizing;

use super::error::VaultError;
use super::kdf::SnapshotKey;
use super::record::{self, Entries, STORE_KEY_PREFIX};

/// Path of the Stronghold client whose Store contains the entries.
const CLIENT_PATH: &[u8] = b"keyport";

/// Base-2 logarithm of the scrypt cost N that the age encryption inside the
/// snapshot format uses when Keyport writes a snapshot. See docs/vault.md:
/// the snapshot key is already a 256-bit Argon2id output, so scrypt adds no
/// strength, and the engine default of 19 costs about 2 s and 512 MiB on
/// every save and unlock. Reading accepts any factor up to the engine's
/// decryption maximum (23), so snapshots written with the default still open.
pub const SNAPSHOT_WORK_FACTOR: u8 = 10;

/// Reason a snapshot could not be loaded.
pub enum LoadError {
    /// The file is not a snapshot for this key, or its contents are invalid.
    /// The text completes the sentence "the snapshot …".
    Damaged(&'static str),
    /// The engine failed for a reason unrelated to the file.
    Engine(String),
}

/// Decrypts the snapshot at `path` and returns its entries.
pub fn load(path: &Path, key: &SnapshotKey) -> Result<Entries, LoadError> {
    let stronghold = Stronghold::default();
    let result = load_entries(&stronghold, path, key);
    let _ = stronghold.clear();
    result
}

/// Encrypts `entries` with `key` and replaces the snapshot at `path`.
///
/// The engine writes a sibling temporary file, syncs it and renames it over
/// `path` (`encrypt_file` in stronghold_engine 2.0.1), so a crash leaves
/// either the old or the new snapshot. The caller still has to restrict the
/// new file's permissions and sync the folder.
pub fn write(path: &Path, key: &SnapshotKey, entries: &Entries) -> Result<(), VaultError> {
    let failed = |reason: String| VaultError::SnapshotWrite {
        path: path.to_path_buf(),
        reason,
    };
    // The setting is process-wide, so it is applied before every write in
    // case other code in the process changed it.
    try_set_encrypt_work_factor(SNAPSHOT_WORK_FACTOR).map_err(|error| failed(error.to_string()))?;

    let stronghold = Stronghold::default();
    let client = stronghold
        .create_client(CLIENT_PATH)
        .map_err(|error| failed(error.to_string()))?;
    let store = client.store();

    let result = fill_store(&store, entries)
        .and_then(|()| commit(&stronghold, path, key))
        .map_err(failed);
    scrub_store(&store);
    let _ = stronghold.clear();
    result
}

fn load_entries(
    stronghold: &Stronghold,
    path: &Path,
    key: &SnapshotKey,
) -> Result<Entries, LoadError> {
    let provider = key_provider(key).map_err(LoadError::Engine)?;
    stronghold
        .load_snapshot(&provider, &SnapshotPath::from_path(path))
        .map_err(|error| match error {
            ClientError::SnapshotFileMissing(_) => {
                LoadError::Damaged("disappeared while it was read")
            }
            _ => LoadError::Damaged("cannot be decrypted or decoded"),
        })?;
    let client = stronghold
        .load_client(CLIENT_PATH)
        .map_err(|error| match error {
            ClientError::ClientDataNotPresent => LoadError::Damaged("contains no Keyport data"),
            other => LoadError::Engine(other.to_string()),
        })?;

    let store = client.store();
    let result = read_store(&store);
    scrub_store(&store);
    result
}

fn read_store(store: &Store) -> Result<Entries, LoadError> {
    let store_keys = store
        .keys()
        .map_err(|error| LoadError::Engine(error.to_string()))?;
    let mut entries = Entries::new();
    for store_key in store_keys {
        if !store_key.starts_with(STORE_KEY_PREFIX.as_bytes()) {
            continue;
        }
        let value = store
            .delete(&store_key)
            .map_err(|error| LoadError::Engine(error.to_string()))?;
        let value = Zeroizing::new(value.unwrap_or_default());

        let (id, entry) = record::decode(&value).map_err(LoadError::Damaged)?;
        if id.store_key() != store_key {
            return Err(LoadError::Damaged(
                "contains a record stored under another name",
            ));
        }
        entries.insert(id, entry);
    }
    Ok(entries)
}

fn fill_store(store: &Store, entries: &Entries) -> Result<(), String> {
    for (id, entry) in entries {
        let mut value = record::encode(id, entry).map_err(str::to_owned)?;
        // Moving the buffer out leaves no copy behind; `scrub_store` zeroizes
        // it when the Store hands it back.
        store
            .insert(id.store_key(), std::mem::take(&mut *value), None)
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

fn commit(stronghold: &Stronghold, path: &Path, key: &SnapshotKey) -> Result<(), String> {
    let provider = key_provider(key)?;
    stronghold
        .commit_with_keyprovider(&SnapshotPath::from_path(path), &provider)
        .map_err(|error| error.to_string())
}

/// Removes every value from `store` and zeroizes it.
fn scrub_store(store: &Store) {
    let Ok(store_keys) = store.keys() else {
        return;
    };
    for store_key in store_keys {
        if let Ok(Some(value)) = store.delete(&store_key) {
            drop(Zeroizing::new(value));
        }
    }
}

fn key_provider(key: &SnapshotKey) -> Result<KeyProvider, String> {
    KeyProvider::try_from(Zeroizing::new(key.to_vec())).map_err(|error| error.to_string())
}
