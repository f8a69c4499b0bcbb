//! Client tokens: the credentials local programs present to the proxy in
//! place of a provider key.
//!
//! A token is shown once, when it is created. `tokens.json` in the data
//! folder stores only its SHA-256 hash, a short prefix for recognising it and
//! its metadata. A fast hash is enough because tokens are 256-bit random
//! values, not passwords; no dictionary or brute-force attack applies.
//!
//! Version 2 of the file adds optional limits per token ([`TokenLimits`]).
//! Version 1 files are read as tokens without limits and written back as
//! version 2 on the next change.

use std::collections::HashMap;
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
use crate::secret::{ExposeSecret, SecretString};

/// Every token starts with this, so users and secret scanners can tell a
/// Keyport token from a provider key.
pub const TOKEN_PREFIX: &str = "kp_";

/// Characters of a token kept in `tokens.json` to help users tell tokens
/// apart: the prefix plus four random hex digits (16 of 256 bits).
const SHOWN_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 4;

/// Version written; version 1, the same layout without limits, is still read.
const FILE_VERSION: u32 = 2;
const OLDEST_READ_VERSION: u32 = 1;

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
        validate_name(name)?;
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
            });
            Ok(token)
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
    if !(OLDEST_READ_VERSION..=FILE_VERSION).contains(&file.version) {
        return Err(damaged(format!(
            "version {} is not supported; this Keyport reads versions {OLDEST_READ_VERSION} to {FILE_VERSION}",
            file.version
        )));
    }
    for record in &file.tokens {
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
    }
    Ok(file.tokens)
}

fn write_records(path: &Path, records: &[TokenRecord]) -> Result<(), TokenError> {
    let write_error = |source| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = TokenFile {
        version: FILE_VERSION,
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

/// A live token: its name and, if it has any, its validated limits.
#[derive(Debug, Clone)]
pub struct ClientToken {
    pub name: Arc<str>,
    pub limits: Option<Arc<ActiveLimits>>,
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
                let token = ClientToken {
                    name: Arc::from(record.name.as_str()),
                    limits,
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
        let unchanged = match self.state.read() {
            Ok(state) => state.stamp == new_stamp,
            Err(poisoned) => poisoned.into_inner().stamp == new_stamp,
        };
        if unchanged {
            return Ok(false);
        }
        let verifier = TokenStore::load(&self.path)?.verifier();
        let mut state = match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.verifier = Arc::new(verifier);
        state.stamp = new_stamp;
        Ok(true)
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

        let newer = text.replace("\"version\": 2", "\"version\": 3");
        std::fs::write(&path, newer).unwrap();
        let error = TokenStore::load(&path).unwrap_err().to_string();
        assert!(error.contains("version 3 is not supported"), "{error}");
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
        std::fs::write(
            &path,
            "garbage that is longer than before to change the stamp",
        )
        .unwrap();
        assert!(live.refresh().is_err());
        assert!(live.current().verify(token.expose_secret()).is_some());
    }
}
