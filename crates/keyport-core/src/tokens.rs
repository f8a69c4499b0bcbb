//! Client tokens: the credentials local programs present to the proxy in
//! place of a provider key.
//!
//! A token is shown once, when it is created. `tokens.json` in the data
//! folder stores only its SHA-256 hash, a short prefix for recognising it and
//! its metadata. A fast hash is enough because tokens are 256-bit random
//! values, not passwords; no dictionary or brute-force attack applies.
//!
//! Version 2 of the file adds optional limits per token ([`TokenLimits`]),
//! version 3 key pins: a vault key label per provider that the token's
//! requests use. Older files are read as they are. A file is written with
//! the oldest version that can hold its contents, so an older Keyport keeps
//! reading it until a token is pinned to a key.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{self, stamp, FileStamp};
use crate::limits::{ActiveLimits, LimitsError, TokenLimits};
use crate::providers::ProviderRegistry;
use crate::secret::{ExposeSecret, SecretString};

/// Every token starts with this, so users and secret scanners can tell a
/// Keyport token from a provider key.
pub const TOKEN_PREFIX: &str = "kp_";

/// Characters of a token kept in `tokens.json` to help users tell tokens
/// apart: the prefix plus four random hex digits (16 of 256 bits).
const SHOWN_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 4;

/// Newest version read and written; version 1, the same layout without
/// limits, and version 2, without key pins, are still read and written.
const FILE_VERSION: u32 = 3;
const OLDEST_READ_VERSION: u32 = 1;
/// Version written when no token has key pins.
const VERSION_WITHOUT_PINS: u32 = 2;
/// Maximum number of providers one token can pin.
const MAX_PINS: usize = 64;

/// Errors from the token store.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("token file {path} is damaged ({reason}); move it aside and create new tokens with `keyport token create NAME`")]
    Damaged { path: PathBuf, reason: String },

    #[error("token file {path} was written by a newer Keyport (file version {version}; this one reads versions {OLDEST_READ_VERSION} to {FILE_VERSION}); upgrade Keyport, and keep the file, which still holds your tokens")]
    NewerVersion { path: PathBuf, version: u32 },

    #[error("cannot write token file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("a token named {0:?} already exists; revoke it first or choose another name")]
    DuplicateName(String),

    #[error("no token named {0:?}; `keyport token list` shows the existing names")]
    NotFound(String),

    #[error("token name {0:?} is invalid; use 1 to 64 letters, digits, '.', '-' or '_'")]
    InvalidName(String),

    #[error("invalid limits for token {name:?}: {source}")]
    InvalidLimits { name: String, source: LimitsError },

    #[error("invalid key pin for token {name:?}: {reason}")]
    InvalidPin { name: String, reason: String },
}

/// Metadata of one token as stored in `tokens.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub name: String,
    /// The first characters of the token, such as `kp_3f9a`.
    pub prefix: String,
    /// Lower-case hex SHA-256 of the whole token.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// Rate limits, spend caps and model allow-list; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TokenLimits>,
    /// Vault key label per provider id that this token's requests use in
    /// place of the provider's default key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The token records of one data folder.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    records: Vec<TokenRecord>,
}

impl TokenStore {
    /// Reads the store; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let records = read_records(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Returns the tokens in creation order.
    pub fn list(&self) -> &[TokenRecord] {
        &self.records
    }

    /// Creates a token called `name`, saves its hash and returns the token,
    /// which is not stored anywhere and cannot be shown again.
    pub fn create(&mut self, name: &str) -> Result<SecretString, TokenError> {
        self.create_pinned(name, BTreeMap::new())
    }

    /// Creates a token like [`TokenStore::create`] whose requests use the
    /// key labelled `label` for each provider in `keys`. The token and its
    /// pins are written in one step, so a proxy that reloads the file never
    /// reads the token without its pins.
    pub fn create_pinned(
        &mut self,
        name: &str,
        keys: BTreeMap<String, String>,
    ) -> Result<SecretString, TokenError> {
        validate_name(name)?;
        validate_pins(name, &keys)?;
        self.modify(|records| {
            if records.iter().any(|record| record.name == name) {
                return Err(TokenError::DuplicateName(name.to_string()));
            }
            let token = generate_token();
            records.push(TokenRecord {
                name: name.to_string(),
                prefix: token.expose_secret()[..SHOWN_PREFIX_LEN].to_string(),
                sha256: hex::encode(hash_token(token.expose_secret())),
                created_at: Utc::now(),
                limits: None,
                keys,
            });
            Ok(token)
        })
    }

    /// Replaces the key pins of the token called `name` with `change`
    /// applied to its current pins, read under the file lock. Returns the
    /// new pins. A running proxy applies them once it reloads `tokens.json`.
    pub fn update_pins(
        &mut self,
        name: &str,
        change: impl FnOnce(BTreeMap<String, String>) -> BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, TokenError> {
        self.modify(|records| {
            let record = records
                .iter_mut()
                .find(|record| record.name == name)
                .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
            let keys = change(std::mem::take(&mut record.keys));
            validate_pins(name, &keys)?;
            record.keys = keys.clone();
            Ok(keys)
        })
    }

    /// Deletes the token called `name`; the proxy rejects it from then on.
    pub fn revoke(&mut self, name: &str) -> Result<(), TokenError> {
        self.modify(|records| {
            let before = records.len();
            records.retain(|record| record.name != name);
            if records.len() == before {
                return Err(TokenError::NotFound(name.to_string()));
            }
            Ok(())
        })
    }

    /// Replaces the limits of the token called `name`; `None` or empty
    /// limits remove them. A running proxy applies them once it reloads
    /// `tokens.json`.
    pub fn set_limits(
        &mut self,
        name: &str,
        limits: Option<TokenLimits>,
    ) -> Result<(), TokenError> {
        let limits = limits.filter(|limits| !limits.is_empty());
        if let Some(limits) = &limits {
            limits
                .validate()
                .map_err(|source| TokenError::InvalidLimits {
                    name: name.to_string(),
                    source,
                })?;
        }
        self.modify(|records| {
            let record = records
                .iter_mut()
                .find(|record| record.name == name)
                .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
            record.limits = limits;
            Ok(())
        })
    }

    /// Replaces the limits of the token called `name` with `change` applied
    /// to its current limits, read under the file lock, so that concurrent
    /// changes to one token's limits all survive. Returns the new limits.
    pub fn update_limits(
        &mut self,
        name: &str,
        change: impl FnOnce(TokenLimits) -> TokenLimits,
    ) -> Result<TokenLimits, TokenError> {
        self.modify(|records| {
            let record = records
                .iter_mut()
                .find(|record| record.name == name)
                .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
            let limits = change(record.limits.clone().unwrap_or_default());
            limits
                .validate()
                .map_err(|source| TokenError::InvalidLimits {
                    name: name.to_string(),
                    source,
                })?;
            record.limits = (!limits.is_empty()).then(|| limits.clone());
            Ok(limits)
        })
    }

    /// Builds a lookup table for the proxy.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_records(&self.records)
    }

    /// Re-reads the file and applies `change` under an exclusive lock, so two
    /// processes creating tokens at once cannot lose each other's changes.
    fn modify<T>(
        &mut self,
        change: impl FnOnce(&mut Vec<TokenRecord>) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let _lock = lock_file(&self.path)?;
        let mut records = read_records(&self.path)?;
        let result = change(&mut records)?;
        write_records(&self.path, &records)?;
        self.records = records;
        Ok(result)
    }
}

/// Checks a token name: what users see in lists and, later, the request log.
fn validate_name(name: &str) -> Result<(), TokenError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(TokenError::InvalidName(name.to_string()))
    }
}

/// Reason a requested key pin names a provider that cannot be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("unknown provider {provider:?}; known providers: {known}")]
    UnknownProvider { provider: String, known: String },

    #[error("{provider} takes no key, so a token cannot be pinned to one")]
    TakesNoKey { provider: String },

    #[error(
        "{provider} is given twice, with {first:?} and {second:?}; give one label per provider"
    )]
    GivenTwice {
        provider: String,
        first: String,
        second: String,
    },
}

/// Collects requested `(provider, label)` pins after checking that each
/// provider is configured and takes a key. A provider given twice with the
/// same label counts once. The labels are checked when the pins are stored.
pub fn collect_pins(
    providers: &ProviderRegistry,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, PinError> {
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for (provider, label) in pairs {
        match providers.get(&provider) {
            None => {
                return Err(PinError::UnknownProvider {
                    provider,
                    known: providers.ids_for_message(),
                })
            }
            Some(found) if !found.auth.needs_key() => {
                return Err(PinError::TakesNoKey { provider })
            }
            Some(_) => {}
        }
        if let Some(first) = keys.get(&provider).filter(|first| **first != label) {
            return Err(PinError::GivenTwice {
                first: first.clone(),
                provider,
                second: label,
            });
        }
        keys.insert(provider, label);
    }
    Ok(keys)
}

/// Checks key pins: provider ids and labels in the forms the config and
/// the vault accept, and no more than [`MAX_PINS`] of them.
fn validate_pins(name: &str, keys: &BTreeMap<String, String>) -> Result<(), TokenError> {
    let invalid = |reason: String| TokenError::InvalidPin {
        name: name.to_string(),
        reason,
    };
    if keys.len() > MAX_PINS {
        return Err(invalid(format!(
            "{} providers are pinned; at most {MAX_PINS} are allowed",
            keys.len()
        )));
    }
    for (provider, label) in keys {
        crate::config::validate_provider_id(provider).map_err(invalid)?;
        crate::vault::validate_label(label).map_err(|error| invalid(error.to_string()))?;
    }
    Ok(())
}

fn generate_token() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let mut text = String::with_capacity(TOKEN_PREFIX.len() + 64);
    text.push_str(TOKEN_PREFIX);
    text.push_str(&hex::encode(bytes.as_ref()));
    SecretString::from(text)
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn read_records(path: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TokenError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let damaged = |reason: String| TokenError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let file: TokenFile =
        serde_json::from_str(&text).map_err(|error| damaged(error.to_string()))?;
    if file.version > FILE_VERSION {
        return Err(TokenError::NewerVersion {
            path: path.to_path_buf(),
            version: file.version,
        });
    }
    if file.version < OLDEST_READ_VERSION {
        return Err(damaged(format!(
            "version {} is not supported; this Keyport reads versions {OLDEST_READ_VERSION} to {FILE_VERSION}",
            file.version
        )));
    }
    let mut names = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    for record in &file.tokens {
        if !names.insert(record.name.as_str()) {
            return Err(damaged(format!(
                "the name {:?} appears on two tokens; remove or rename one of them in the file",
                record.name
            )));
        }
        // Two records of one token would give it the limits and pins of
        // whichever the proxy reads last, not those `token list` shows.
        if !hashes.insert(record.sha256.to_ascii_lowercase()) {
            return Err(damaged(format!(
                "token {:?} has the same hash as an earlier token; remove one of the two records",
                record.name
            )));
        }
        let hash_ok = record.sha256.len() == 64 && hex::decode(&record.sha256).is_ok();
        if !hash_ok {
            return Err(damaged(format!(
                "token {:?} has an invalid hash",
                record.name
            )));
        }
        if let Some(limits) = &record.limits {
            if file.version < 2 {
                return Err(damaged(format!(
                    "token {:?} has limits, which version {} files cannot contain",
                    record.name, file.version
                )));
            }
            limits.validate().map_err(|error| {
                damaged(format!(
                    "token {:?} has invalid limits: {error}",
                    record.name
                ))
            })?;
        }
        if !record.keys.is_empty() && file.version < 3 {
            return Err(damaged(format!(
                "token {:?} has key pins, which version {} files cannot contain",
                record.name, file.version
            )));
        }
        validate_pins(&record.name, &record.keys).map_err(|error| damaged(error.to_string()))?;
    }
    Ok(file.tokens)
}

fn write_records(path: &Path, records: &[TokenRecord]) -> Result<(), TokenError> {
    let write_error = |source| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    let pinned = records.iter().any(|record| !record.keys.is_empty());
    let file = TokenFile {
        version: if pinned {
            FILE_VERSION
        } else {
            VERSION_WITHOUT_PINS
        },
        tokens: records.to_vec(),
    };
    let mut text = serde_json::to_string_pretty(&file)
        .map_err(|error| write_error(std::io::Error::other(error)))?;
    text.push('\n');
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir).map_err(write_error)?;
    }
    fsutil::write_atomic(path, text.as_bytes()).map_err(write_error)
}

/// Takes an exclusive lock on `tokens.json.lock`, waiting for other writers.
fn lock_file(path: &Path) -> Result<File, TokenError> {
    let lock_path = path.with_extension("json.lock");
    let write_error = |source| TokenError::Write {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = lock_path.parent() {
        fsutil::ensure_private_dir(dir).map_err(write_error)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(write_error)?;
    fsutil::make_private(&lock_path).map_err(write_error)?;
    file.lock().map_err(write_error)?;
    Ok(file)
}

/// A live token: its name and, if it has any, its validated limits and
/// key pins.
#[derive(Debug, Clone)]
pub struct ClientToken {
    pub name: Arc<str>,
    pub limits: Option<Arc<ActiveLimits>>,
    /// Key label per provider id; None when the token pins no key.
    pub keys: Option<Arc<BTreeMap<String, String>>>,
}

impl ClientToken {
    /// Returns the key label this token pins for `provider`, if any.
    pub fn pinned_label(&self, provider: &str) -> Option<&str> {
        self.keys.as_ref()?.get(provider).map(String::as_str)
    }
}

/// Maps token hashes to tokens, for checking presented tokens.
#[derive(Debug, Default, Clone)]
pub struct TokenVerifier {
    tokens_by_hash: HashMap<[u8; 32], ClientToken>,
}

impl TokenVerifier {
    fn from_records(records: &[TokenRecord]) -> Self {
        let tokens_by_hash = records
            .iter()
            .filter_map(|record| {
                let bytes: [u8; 32] = hex::decode(&record.sha256).ok()?.try_into().ok()?;
                // read_records has validated the limits, so none is dropped here.
                let limits = record
                    .limits
                    .as_ref()
                    .and_then(|limits| limits.validate().ok())
                    .map(Arc::new);
                let keys = (!record.keys.is_empty()).then(|| Arc::new(record.keys.clone()));
                let token = ClientToken {
                    name: Arc::from(record.name.as_str()),
                    limits,
                    keys,
                };
                Some((bytes, token))
            })
            .collect();
        Self { tokens_by_hash }
    }

    /// Returns the name of the token `presented`, if it is a live token.
    pub fn verify(&self, presented: &str) -> Option<Arc<str>> {
        self.verify_client(presented).map(|token| token.name)
    }

    /// Returns the token `presented` with its limits, if it is a live token.
    ///
    /// The lookup compares hashes, so its timing reveals nothing usable
    /// about the tokens themselves.
    pub fn verify_client(&self, presented: &str) -> Option<ClientToken> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return None;
        }
        self.tokens_by_hash.get(&hash_token(presented)).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens_by_hash.is_empty()
    }
}

/// A [`TokenVerifier`] that follows changes to `tokens.json`, so tokens
/// created or revoked with the CLI take effect in a running proxy.
#[derive(Debug, Clone)]
pub struct LiveTokens {
    path: PathBuf,
    state: Arc<RwLock<LiveState>>,
}

#[derive(Debug)]
struct LiveState {
    verifier: Arc<TokenVerifier>,
    stamp: Option<FileStamp>,
    /// Stamp of a file version that failed to load. The proxy refreshes on
    /// every unknown token, so without this a damaged file would be read,
    /// parsed and reported once per request until it is fixed.
    failed_stamp: Option<Option<FileStamp>>,
}

impl LiveTokens {
    /// Loads `path` once; call [`LiveTokens::refresh`] to pick up changes.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let stamp = stamp(path);
        let verifier = TokenStore::load(path)?.verifier();
        Ok(Self {
            path: path.to_path_buf(),
            state: Arc::new(RwLock::new(LiveState {
                verifier: Arc::new(verifier),
                stamp,
                failed_stamp: None,
            })),
        })
    }

    /// Returns the current verifier.
    pub fn current(&self) -> Arc<TokenVerifier> {
        match self.state.read() {
            Ok(state) => state.verifier.clone(),
            Err(poisoned) => poisoned.into_inner().verifier.clone(),
        }
    }

    /// Reloads the file if it changed. A file that cannot be read keeps the
    /// previous tokens in force and returns the error for the caller to log.
    pub fn refresh(&self) -> Result<bool, TokenError> {
        let new_stamp = stamp(&self.path);
        let seen = |state: &LiveState| {
            state.stamp == new_stamp || state.failed_stamp.as_ref() == Some(&new_stamp)
        };
        let unchanged = match self.state.read() {
            Ok(state) => seen(&state),
            Err(poisoned) => seen(&poisoned.into_inner()),
        };
        if unchanged {
            return Ok(false);
        }
        let loaded = TokenStore::load(&self.path);
        let mut state = match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        match loaded {
            Ok(store) => {
                state.verifier = Arc::new(store.verifier());
                state.stamp = new_stamp;
                state.failed_stamp = None;
                Ok(true)
            }
            Err(error) => {
                state.failed_stamp = Some(new_stamp);
                Err(error)
            }
        }
    }

    /// Polls the file every `interval` until the returned task is aborted.
    pub fn spawn_refresh(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_error: Option<String> = None;
            loop {
                ticker.tick().await;
                match live.refresh() {
                    Ok(true) => {
                        tracing::info!(path = %live.path.display(), "client tokens reloaded");
                        last_error = None;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        // Log each distinct failure once rather than every tick.
                        let message = error.to_string();
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(error = %message, "keeping the previous client tokens");
                            last_error = Some(message);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::load(&dir.path().join("tokens.json")).unwrap();
        (dir, store)
    }

    #[test]
    fn created_token_verifies_and_is_not_stored() {
        let (dir, mut store) = store();
        let token = store.create("kaiban-dev").unwrap();
        let text = token.expose_secret();
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(text.len(), TOKEN_PREFIX.len() + 64);

        let verifier = store.verifier();
        assert_eq!(verifier.verify(text).as_deref(), Some("kaiban-dev"));
        assert_eq!(verifier.verify(&text[..text.len() - 1]), None);
        assert_eq!(verifier.verify("kp_nope"), None);

        let file = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!file.contains(text), "token stored in clear");
        assert!(
            !file.contains(&text[SHOWN_PREFIX_LEN..]),
            "token tail stored"
        );
    }

    #[test]
    fn tokens_survive_reload() {
        let (dir, mut store) = store();
        let token = store.create("a").unwrap();
        let reloaded = TokenStore::load(&dir.path().join("tokens.json")).unwrap();
        assert_eq!(reloaded.list().len(), 1);
        assert!(reloaded.verifier().verify(token.expose_secret()).is_some());
    }

    #[test]
    fn revoked_token_is_rejected() {
        let (_dir, mut store) = store();
        let token = store.create("a").unwrap();
        store.revoke("a").unwrap();
        assert!(store.verifier().verify(token.expose_secret()).is_none());
        assert!(matches!(store.revoke("a"), Err(TokenError::NotFound(_))));
    }

    #[test]
    fn duplicate_and_invalid_names_are_rejected() {
        let (_dir, mut store) = store();
        store.create("a").unwrap();
        assert!(matches!(
            store.create("a"),
            Err(TokenError::DuplicateName(_))
        ));
        for name in ["", "has space", "slash/name", &"x".repeat(65)] {
            assert!(
                matches!(store.create(name), Err(TokenError::InvalidName(_))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn two_stores_do_not_lose_each_others_tokens() {
        let (dir, mut first) = store();
        let mut second = TokenStore::load(&dir.path().join("tokens.json")).unwrap();
        first.create("one").unwrap();
        second.create("two").unwrap();
        let reloaded = TokenStore::load(&dir.path().join("tokens.json")).unwrap();
        let names: Vec<_> = reloaded.list().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
    }

    #[test]
    fn damaged_file_names_the_path() {
        let (dir, _store) = store();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{not json").unwrap();
        let message = TokenStore::load(&path).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("damaged"), "{message}");
    }

    const VERSION_1_FILE: &str = r#"{
  "version": 1,
  "tokens": [
    {
      "name": "old-one",
      "prefix": "kp_aaaa",
      "sha256": "1111111111111111111111111111111111111111111111111111111111111111",
      "created_at": "2026-01-02T03:04:05Z"
    },
    {
      "name": "old-two",
      "prefix": "kp_bbbb",
      "sha256": "2222222222222222222222222222222222222222222222222222222222222222",
      "created_at": "2026-01-02T03:04:06Z"
    }
  ]
}
"#;

    #[test]
    fn version_1_file_migrates_without_losing_tokens() {
        let (dir, _store) = store();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, VERSION_1_FILE).unwrap();
        let mut store = TokenStore::load(&path).unwrap();
        assert_eq!(store.list().len(), 2);
        assert!(store.list().iter().all(|record| record.limits.is_none()));

        let limits = TokenLimits {
            requests_per_minute: Some(60),
            allow: vec!["anthropic:*".into()],
            ..TokenLimits::default()
        };
        store.set_limits("old-two", Some(limits.clone())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");

        let reloaded = TokenStore::load(&path).unwrap();
        let names: Vec<_> = reloaded.list().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["old-one", "old-two"]);
        assert_eq!(reloaded.list()[0].sha256, "1".repeat(64));
        assert_eq!(reloaded.list()[1].limits.as_ref(), Some(&limits));
        assert_eq!(
            reloaded.list()[0].created_at.to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
    }

    fn pins(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(provider, label)| (provider.to_string(), label.to_string()))
            .collect()
    }

    fn file_version(path: &Path) -> u64 {
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["version"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn pins_raise_file_version_while_set() {
        let (dir, mut store) = store();
        let path = dir.path().join("tokens.json");
        let plain = store.create("plain").unwrap();
        assert_eq!(file_version(&path), 2);

        let token = store
            .create_pinned(
                "pinned",
                pins(&[("openai", "client-a"), ("mistral", "home")]),
            )
            .unwrap();
        assert_eq!(file_version(&path), 3);
        let reloaded = TokenStore::load(&path).unwrap();
        let client = reloaded
            .verifier()
            .verify_client(token.expose_secret())
            .unwrap();
        assert_eq!(client.pinned_label("openai"), Some("client-a"));
        assert_eq!(client.pinned_label("mistral"), Some("home"));
        assert_eq!(client.pinned_label("anthropic"), None);
        let plain = reloaded
            .verifier()
            .verify_client(plain.expose_secret())
            .unwrap();
        assert!(plain.keys.is_none());

        let remaining = store
            .update_pins("pinned", |mut keys| {
                keys.remove("openai");
                keys
            })
            .unwrap();
        assert_eq!(remaining, pins(&[("mistral", "home")]));
        store.update_pins("pinned", |_| BTreeMap::new()).unwrap();
        // Without pins the file goes back to the version older Keyports read.
        assert_eq!(file_version(&path), 2);
        let client = store
            .verifier()
            .verify_client(token.expose_secret())
            .unwrap();
        assert!(client.keys.is_none());
    }

    #[test]
    fn collect_pins_checks_providers() {
        let providers = crate::providers::ProviderRegistry::builtin();
        let pair = |provider: &str, label: &str| (provider.to_string(), label.to_string());
        let pins = collect_pins(
            &providers,
            [
                pair("openai", "a"),
                pair("mistral", "b"),
                pair("openai", "a"),
            ],
        )
        .unwrap();
        assert_eq!(pins, self::pins(&[("mistral", "b"), ("openai", "a")]));

        let error = collect_pins(&providers, [pair("nosuch", "a")]).unwrap_err();
        assert!(
            matches!(&error, PinError::UnknownProvider { provider, .. } if provider == "nosuch")
        );
        assert!(error.to_string().contains("openai"), "{error}");
        let error = collect_pins(&providers, [pair("ollama", "a")]).unwrap_err();
        assert_eq!(
            error,
            PinError::TakesNoKey {
                provider: "ollama".into()
            }
        );
        let error =
            collect_pins(&providers, [pair("openai", "a"), pair("openai", "b")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "openai is given twice, with \"a\" and \"b\"; give one label per provider"
        );
    }

    #[test]
    fn invalid_pins_write_nothing() {
        let (dir, mut store) = store();
        let path = dir.path().join("tokens.json");
        for bad in [
            pins(&[("OpenAI", "work")]),
            pins(&[("openai", "")]),
            pins(&[("openai", "two words")]),
            pins(&[("openai", &"x".repeat(65))]),
        ] {
            let error = store.create_pinned("bad", bad.clone()).unwrap_err();
            assert!(
                matches!(&error, TokenError::InvalidPin { name, .. } if name == "bad"),
                "{bad:?}: {error}"
            );
        }
        assert!(store.list().is_empty());
        assert!(!path.exists() || TokenStore::load(&path).unwrap().list().is_empty());

        let too_many: BTreeMap<_, _> = (0..=MAX_PINS)
            .map(|i| (format!("p{i}"), "work".to_string()))
            .collect();
        store.create("a").unwrap();
        let error = store.update_pins("a", |_| too_many).unwrap_err();
        assert!(error.to_string().contains("at most 64"), "{error}");
        assert!(store.list()[0].keys.is_empty());
        let error = store.update_pins("nobody", |keys| keys).unwrap_err();
        assert!(matches!(error, TokenError::NotFound(_)), "{error}");
    }

    #[test]
    fn pins_in_a_file_are_checked() {
        let (dir, _store) = store();
        let path = dir.path().join("tokens.json");
        let record = |version: u32, label: &str| {
            format!(
                r#"{{"version": {version}, "tokens": [{{"name": "a", "prefix": "kp_aaaa",
                "sha256": "{}", "created_at": "2026-01-02T03:04:05Z",
                "keys": {{"openai": "{label}"}}}}]}}"#,
                "1".repeat(64)
            )
        };
        std::fs::write(&path, record(3, "work")).unwrap();
        let store = TokenStore::load(&path).unwrap();
        assert_eq!(store.list()[0].keys, pins(&[("openai", "work")]));

        std::fs::write(&path, record(2, "work")).unwrap();
        let message = TokenStore::load(&path).unwrap_err().to_string();
        assert!(
            message.contains("version 2 files cannot contain"),
            "{message}"
        );

        std::fs::write(&path, record(3, "no way")).unwrap();
        let message = TokenStore::load(&path).unwrap_err().to_string();
        assert!(message.contains("damaged"), "{message}");
        assert!(message.contains("invalid key label"), "{message}");

        std::fs::write(&path, record(4, "work")).unwrap();
        let error = TokenStore::load(&path).unwrap_err();
        assert!(
            matches!(error, TokenError::NewerVersion { version: 4, .. }),
            "{error}"
        );
    }

    #[test]
    fn limits_reach_the_verifier_and_can_be_cleared() {
        let (_dir, mut store) = store();
        let token = store.create("a").unwrap();
        assert!(store
            .verifier()
            .verify_client(token.expose_secret())
            .unwrap()
            .limits
            .is_none());
        let limits = TokenLimits {
            daily_usd: Some(5.0),
            ..TokenLimits::default()
        };
        store.set_limits("a", Some(limits)).unwrap();
        let client = store
            .verifier()
            .verify_client(token.expose_secret())
            .unwrap();
        assert_eq!(client.limits.unwrap().daily_usd, Some(5.0));

        store.set_limits("a", Some(TokenLimits::default())).unwrap();
        assert!(store.list()[0].limits.is_none());
        assert!(matches!(
            store.set_limits("missing", None),
            Err(TokenError::NotFound(_))
        ));
    }

    #[test]
    fn invalid_limits_are_rejected_in_calls_and_files() {
        let (dir, mut store) = store();
        store.create("a").unwrap();
        let bad = TokenLimits {
            allow: vec!["gpt-4o".into()],
            ..TokenLimits::default()
        };
        let error = store.set_limits("a", Some(bad)).unwrap_err().to_string();
        assert!(error.contains("PROVIDER:MODEL"), "{error}");

        let path = dir.path().join("tokens.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text.replace(
            "\"created_at\"",
            "\"limits\": {\"requests_per_minute\": 0},\n      \"created_at\"",
        );
        std::fs::write(&path, broken).unwrap();
        let error = TokenStore::load(&path).unwrap_err().to_string();
        assert!(error.contains("invalid limits"), "{error}");

        let newer = text.replace("\"version\": 2", "\"version\": 4");
        std::fs::write(&path, newer).unwrap();
        let error = TokenStore::load(&path).unwrap_err().to_string();
        assert!(error.contains("newer Keyport"), "{error}");
        assert!(error.contains("keep the file"), "{error}");
    }

    #[test]
    fn live_tokens_follow_the_file() {
        let (dir, mut store) = store();
        let path = dir.path().join("tokens.json");
        let live = LiveTokens::load(&path).unwrap();
        assert!(live.current().is_empty());

        let token = store.create("a").unwrap();
        assert!(live.refresh().unwrap());
        assert!(live.current().verify(token.expose_secret()).is_some());

        store.revoke("a").unwrap();
        live.refresh().unwrap();
        assert!(live.current().verify(token.expose_secret()).is_none());
    }

    #[test]
    fn live_tokens_keep_old_state_when_file_breaks() {
        let (dir, mut store) = store();
        let path = dir.path().join("tokens.json");
        let token = store.create("a").unwrap();
        let live = LiveTokens::load(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        std::fs::write(
            &path,
            "garbage that is longer than before to change the stamp",
        )
        .unwrap();
        assert!(live.refresh().is_err());
        assert!(live.current().verify(token.expose_secret()).is_some());

        // The same broken file is not read and reported again.
        assert!(!live.refresh().unwrap());

        // Fixing the file brings the tokens back in.
        std::fs::write(&path, good).unwrap();
        let second = store.create("b").unwrap();
        assert!(live.refresh().unwrap());
        assert!(live.current().verify(second.expose_secret()).is_some());
    }

    #[test]
    fn file_with_a_name_twice_is_damaged() {
        let (dir, mut store) = store();
        store.create("a").unwrap();
        store.create("b").unwrap();
        let path = dir.path().join("tokens.json");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"b\"", "\"a\"")).unwrap();
        let error = TokenStore::load(&path).unwrap_err().to_string();
        assert!(error.contains("appears on two tokens"), "{error}");
    }

    #[test]
    fn file_with_a_hash_twice_is_damaged() {
        let (dir, mut store) = store();
        store
            .create_pinned("pinned", pins(&[("openai", "client-a")]))
            .unwrap();
        store.create("other").unwrap();
        let path = dir.path().join("tokens.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let hash_of = |name: &str| {
            store
                .list()
                .iter()
                .find(|record| record.name == name)
                .unwrap()
                .sha256
                .clone()
        };
        // A copy of the pinned token without its pin, under another name.
        std::fs::write(&path, text.replace(&hash_of("other"), &hash_of("pinned"))).unwrap();
        let error = TokenStore::load(&path).unwrap_err().to_string();
        assert!(error.contains("same hash as an earlier token"), "{error}");
        assert!(error.contains("\"other\""), "{error}");
    }
}
