//! The vault header, `vault.header.json`: format version, Argon2id
//! parameters with the salt, and the key check value. It contains no secret,
//! but the snapshot cannot be opened without it.
//!
//! During a password change the previous header is kept as
//! `vault.header.json.prev` until the snapshot encrypted with the new key is
//! in place (see `Vault::change_password`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::VaultError;
use super::kdf::{key_check_matches, DerivedKeys, KdfParams, KeyCheck};
use crate::fsutil::write_atomic;
use crate::paths::DataDir;
use crate::secret::SecretString;

/// Value of the `format` field, which identifies the file.
const FORMAT: &str = "keyport-vault";

/// Header format version this code reads and writes.
pub const HEADER_VERSION: u32 = 1;

/// Contents of `vault.header.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    format: String,
    version: u32,
    kdf: KdfParams,
    /// SHA-256 of the second half of the Argon2id output, in lowercase hex.
    key_check: String,
}

impl Header {
    /// Builds the header for a vault whose keys were derived with `kdf`.
    pub fn new(kdf: KdfParams, keys: &DerivedKeys) -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: HEADER_VERSION,
            kdf,
            key_check: hex::encode(keys.key_check),
        }
    }

    /// Derives the keys for `password` and returns them if the password
    /// matches this header's key check value, or `None` if it does not.
    pub fn unlock(&self, password: &SecretString) -> Result<Option<DerivedKeys>, VaultError> {
        let keys = self.kdf.derive(password)?;
        let expected = self.key_check_bytes();
        if key_check_matches(&expected, &keys.key_check) {
            Ok(Some(keys))
        } else {
            Ok(None)
        }
    }

    /// Reads and validates the header at `path`.
    pub fn read(path: &Path) -> Result<Self, VaultError> {
        let bytes = fs::read(path).map_err(VaultError::io("read the vault header", path))?;
        Self::parse(&bytes).map_err(|problem| problem.into_error(path))
    }

    /// Reads the header at `path` if the file exists.
    pub fn read_if_present(path: &Path) -> Result<Option<Self>, VaultError> {
        match fs::read(path) {
            Ok(bytes) => Self::parse(&bytes)
                .map(Some)
                .map_err(|problem| problem.into_error(path)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(VaultError::io("read the vault header", path)(error)),
        }
    }

    /// Writes the header to `path` atomically with owner-only permissions.
    pub fn write(&self, path: &Path) -> Result<(), VaultError> {
        let json = self.to_json().map_err(|error| {
            VaultError::io("serialize the vault header for", path)(error.into())
        })?;
        write_atomic(path, &json).map_err(VaultError::io("write the vault header", path))
    }

    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        Ok(json)
    }

    fn parse(bytes: &[u8]) -> Result<Self, HeaderProblem> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|error| HeaderProblem::Damaged(format!("not valid JSON: {error}")))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(version) if version == u64::from(HEADER_VERSION) => {}
            Some(version) => return Err(HeaderProblem::UnsupportedVersion(version)),
            None => {
                return Err(HeaderProblem::Damaged(
                    "no numeric `version` field".to_owned(),
                ))
            }
        }

        let header: Self = serde_json::from_value(value)
            .map_err(|error| HeaderProblem::Damaged(error.to_string()))?;
        header.validate().map_err(HeaderProblem::Damaged)?;
        Ok(header)
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "`format` is `{}`, expected `{FORMAT}`",
                self.format
            ));
        }
        self.kdf.validate()?;
        let key_check = hex::decode(&self.key_check).map_err(|_| "key_check is not hex")?;
        if key_check.len() != std::mem::size_of::<KeyCheck>() {
            return Err("key_check is not 32 bytes long".to_owned());
        }
        Ok(())
    }

    fn key_check_bytes(&self) -> KeyCheck {
        // Decoding succeeds because `validate` checked every header read from
        // disk and `new` encodes a 32-byte value. If it ever failed, the zero
        // fallback would make every password fail the check, never pass it.
        let mut bytes = [0u8; 32];
        let _ = hex::decode_to_slice(&self.key_check, &mut bytes);
        bytes
    }
}

/// Path of the previous header kept during a password change.
pub fn prev_header_path(dir: &DataDir) -> PathBuf {
    let mut name = dir.vault_header().into_os_string();
    name.push(".prev");
    PathBuf::from(name)
}

#[derive(Debug)]
enum HeaderProblem {
    Damaged(String),
    UnsupportedVersion(u64),
}

impl HeaderProblem {
    fn into_error(self, path: &Path) -> VaultError {
        let path = path.to_path_buf();
        match self {
            Self::Damaged(reason) => VaultError::HeaderDamaged { path, reason },
            Self::UnsupportedVersion(found) => VaultError::HeaderUnsupportedVersion {
                path,
                found,
                supported: HEADER_VERSION,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        let kdf = KdfParams::generate();
        let keys = DerivedKeys {
            snapshot_key: zeroize::Zeroizing::new([1u8; 32]),
            key_check: [2u8; 32],
        };
        Header::new(kdf, &keys)
    }

    #[test]
    fn header_round_trips_through_json() {
        let header = sample_header();
        let parsed = Header::parse(&header.to_json().unwrap()).unwrap();
        assert_eq!(parsed, header);
    }

    #[test]
    fn parse_reports_version_and_damage() {
        let header = sample_header();
        let mut value: serde_json::Value =
            serde_json::from_slice(&header.to_json().unwrap()).unwrap();

        value["version"] = 2.into();
        let newer = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Header::parse(&newer),
            Err(HeaderProblem::UnsupportedVersion(2))
        ));

        value["version"] = 1.into();
        value["key_check"] = "abcd".into();
        let short_check = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Header::parse(&short_check),
            Err(HeaderProblem::Damaged(_))
        ));

        value["key_check"] = header.key_check.clone().into();
        value["extra"] = true.into();
        let unknown_field = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Header::parse(&unknown_field),
            Err(HeaderProblem::Damaged(_))
        ));
    }
}
