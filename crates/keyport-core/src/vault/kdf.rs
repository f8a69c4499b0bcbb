//! Derivation of the snapshot key and the password check value from the
//! vault password with Argon2id.
//!
//! One Argon2id run yields 64 bytes. The first 32 are the snapshot key that
//! Stronghold encrypts with. The last 32 are hashed with SHA-256 into a key
//! check value stored in the header, which lets `open` tell a wrong password
//! from a damaged snapshot without decrypting anything. The check value
//! reveals nothing about the snapshot key because the two halves are
//! independent outputs of Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::VaultError;
use crate::secret::{ExposeSecret, SecretString};

/// Name of the only supported algorithm, as written in the header.
pub const ALGORITHM: &str = "argon2id";

/// Argon2 version 1.3 (0x13), the one RFC 9106 specifies.
const ARGON2_VERSION: u32 = 0x13;

/// Memory cost of new vaults in KiB (64 MiB). With the two settings below
/// this is the second recommended option of RFC 9106, section 4, for
/// memory-constrained environments.
pub const MEMORY_KIB: u32 = 64 * 1024;

/// Number of passes over memory for new vaults.
pub const ITERATIONS: u32 = 3;

/// Number of lanes for new vaults. The `argon2` crate (0.5) computes lanes
/// one after another on one thread, so this changes the output but neither
/// the time nor the memory.
pub const PARALLELISM: u32 = 4;

/// Length of the random salt of new vaults in bytes.
pub const SALT_BYTES: usize = 16;

/// Argon2id output: 32 bytes of snapshot key followed by 32 bytes for the key check.
const OUTPUT_BYTES: usize = 64;

/// Length of the Stronghold snapshot key in bytes.
pub const SNAPSHOT_KEY_BYTES: usize = 32;

/// Bounds accepted from a header. The lower bounds stop a tampered header
/// from weakening the key derivation; the upper bounds stop it from making
/// `open` allocate or compute without limit.
const MEMORY_KIB_RANGE: std::ops::RangeInclusive<u32> = MEMORY_KIB..=4 * 1024 * 1024;
const ITERATIONS_RANGE: std::ops::RangeInclusive<u32> = ITERATIONS..=64;
const PARALLELISM_RANGE: std::ops::RangeInclusive<u32> = 1..=64;
const SALT_BYTES_RANGE: std::ops::RangeInclusive<usize> = SALT_BYTES..=64;

/// Key that encrypts the Stronghold snapshot.
pub type SnapshotKey = Zeroizing<[u8; SNAPSHOT_KEY_BYTES]>;

/// Key check value stored in the header: SHA-256 of the second half of the
/// Argon2id output.
pub type KeyCheck = [u8; 32];

/// Argon2id parameters and salt of one vault, as stored in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    algorithm: String,
    argon2_version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    /// Salt in lowercase hex.
    salt: String,
}

/// Output of one derivation.
pub struct DerivedKeys {
    pub snapshot_key: SnapshotKey,
    pub key_check: KeyCheck,
}

impl KdfParams {
    /// Creates the parameters for a new vault (or a new password) with a fresh
    /// random salt from the operating system.
    pub fn generate() -> Self {
        let mut salt = [0u8; SALT_BYTES];
        OsRng.fill_bytes(&mut salt);
        Self {
            algorithm: ALGORITHM.to_owned(),
            argon2_version: ARGON2_VERSION,
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
            salt: hex::encode(salt),
        }
    }

    /// Checks parameters read from a header; the error is the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.algorithm != ALGORITHM {
            return Err(format!("unsupported key derivation `{}`", self.algorithm));
        }
        if self.argon2_version != ARGON2_VERSION {
            return Err(format!(
                "unsupported Argon2 version {}",
                self.argon2_version
            ));
        }
        check_range("memory_kib", self.memory_kib, &MEMORY_KIB_RANGE)?;
        check_range("iterations", self.iterations, &ITERATIONS_RANGE)?;
        check_range("parallelism", self.parallelism, &PARALLELISM_RANGE)?;

        let salt = hex::decode(&self.salt).map_err(|_| "salt is not hex".to_owned())?;
        check_range("salt length", salt.len(), &SALT_BYTES_RANGE)
    }

    /// Runs Argon2id over `password` and splits the output into the snapshot
    /// key and the key check value.
    pub fn derive(&self, password: &SecretString) -> Result<DerivedKeys, VaultError> {
        let failed = |reason: String| VaultError::KeyDerivation { reason };
        let salt = hex::decode(&self.salt).map_err(|_| failed("salt is not hex".to_owned()))?;
        let params = Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_BYTES),
        )
        .map_err(|error| failed(error.to_string()))?;

        let mut output = Zeroizing::new([0u8; OUTPUT_BYTES]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password.expose_secret().as_bytes(), &salt, &mut output[..])
            .map_err(|error| failed(error.to_string()))?;

        let mut snapshot_key = Zeroizing::new([0u8; SNAPSHOT_KEY_BYTES]);
        snapshot_key.copy_from_slice(&output[..SNAPSHOT_KEY_BYTES]);
        let key_check = Sha256::digest(&output[SNAPSHOT_KEY_BYTES..]).into();
        Ok(DerivedKeys {
            snapshot_key,
            key_check,
        })
    }
}

/// Compares two key check values in constant time, so the time taken does
/// not reveal how many leading bytes matched.
pub fn key_check_matches(expected: &KeyCheck, actual: &KeyCheck) -> bool {
    expected.ct_eq(actual).into()
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{name} {value} is outside the accepted range {}..={}",
            range.start(),
            range.end()
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn generated_params_validate_and_use_fresh_salt() {
        let first = KdfParams::generate();
        let second = KdfParams::generate();
        assert_eq!(first.validate(), Ok(()));
        assert_ne!(first.salt, second.salt);
        assert_eq!(first.salt.len(), SALT_BYTES * 2);
    }

    #[test]
    fn validate_rejects_weakened_or_huge_params() {
        let base = KdfParams::generate();
        let cases = [
            KdfParams {
                algorithm: "scrypt".into(),
                ..base.clone()
            },
            KdfParams {
                memory_kib: 1024,
                ..base.clone()
            },
            KdfParams {
                memory_kib: u32::MAX,
                ..base.clone()
            },
            KdfParams {
                iterations: 1,
                ..base.clone()
            },
            KdfParams {
                salt: "abcd".into(),
                ..base.clone()
            },
            KdfParams {
                salt: "zz".repeat(16),
                ..base.clone()
            },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?} should be rejected");
        }
    }

    #[test]
    fn derive_depends_on_password_and_salt() {
        let params = KdfParams::generate();
        let password = SecretString::from("correct horse");
        let first = params.derive(&password).unwrap();
        let again = params.derive(&password).unwrap();
        let other_password = params.derive(&SecretString::from("wrong horse")).unwrap();
        let other_salt = KdfParams::generate().derive(&password).unwrap();

        assert_eq!(*first.snapshot_key, *again.snapshot_key);
        assert!(key_check_matches(&first.key_check, &again.key_check));
        assert!(!key_check_matches(
            &first.key_check,
            &other_password.key_check
        ));
        assert_ne!(*first.snapshot_key, *other_password.snapshot_key);
        assert_ne!(*first.snapshot_key, *other_salt.snapshot_key);
        assert_ne!(first.key_check[..], first.snapshot_key[..]);
    }
}
