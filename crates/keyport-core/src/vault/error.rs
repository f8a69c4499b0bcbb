//! Errors returned by the vault.
//!
//! No message contains a provider key or the password. Provider ids and
//! labels that fail validation are echoed, truncated, because they are names
//! the user typed and the error is useless without them.

use std::io;
use std::path::PathBuf;

use super::validate::KeyProblem;

/// Maximum number of characters of an invalid provider id or label that an
/// error message repeats.
const ECHO_MAX_CHARS: usize = 64;

/// Advice shared by every message about a missing or unreadable vault file.
const RESTORE_ADVICE: &str = "If you have a backup, restore vault.header.json and \
vault.stronghold together from it, because each snapshot opens only with the header \
written with it.";

/// Errors from creating, opening, changing or saving the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault found in {dir}. Run `keyport init` to create one.")]
    NotInitialized { dir: PathBuf },

    #[error(
        "a vault already exists in {dir} ({path} is present). Unlock it instead, or move \
         vault.header.json and vault.stronghold elsewhere before `keyport init`."
    )]
    AlreadyExists { dir: PathBuf, path: PathBuf },

    #[error("wrong vault password")]
    WrongPassword,

    #[error("the vault password must not be empty")]
    EmptyPassword,

    #[error(
        "vault header {path} is missing but the snapshot {snapshot} exists. {RESTORE_ADVICE} \
         Otherwise move the snapshot elsewhere and run `keyport init` to create a new, empty \
         vault."
    )]
    HeaderMissing { path: PathBuf, snapshot: PathBuf },

    #[error(
        "vault header {path} is damaged ({reason}). {RESTORE_ADVICE} Otherwise move both files \
         elsewhere and run `keyport init` to create a new, empty vault."
    )]
    HeaderDamaged { path: PathBuf, reason: String },

    #[error(
        "vault header {path} has format version {found}, but this Keyport reads only version \
         {supported}. Use the Keyport release that wrote it. {RESTORE_ADVICE}"
    )]
    HeaderUnsupportedVersion {
        path: PathBuf,
        found: u64,
        supported: u32,
    },

    #[error(
        "vault snapshot {path} is missing but the header {header} exists. {RESTORE_ADVICE} \
         Otherwise move the header elsewhere and run `keyport init` to create a new, empty \
         vault."
    )]
    SnapshotMissing { path: PathBuf, header: PathBuf },

    #[error(
        "vault snapshot {path} is damaged: the password is correct but the snapshot {reason}. \
         {RESTORE_ADVICE}"
    )]
    SnapshotDamaged { path: PathBuf, reason: &'static str },

    #[error(
        "the last password change did not finish: {path} was written for the new password, \
         but the snapshot still uses the previous one. Unlock with the previous password, \
         which completes the rollback, then change the password again."
    )]
    PasswordChangeInterrupted { path: PathBuf },

    #[error(
        "another Keyport process{} has the vault open for writing (for example `keyport serve` \
         or the desktop app). Stop it, or retry when it has finished (lock file {path}).",
        describe_pid(*.pid)
    )]
    Busy { path: PathBuf, pid: Option<u32> },

    #[error(
        "the vault was opened read-only. Open it with write access to change keys or the \
         password."
    )]
    ReadOnly,

    #[error(
        "invalid provider id `{}`: use 1 to 64 lowercase ASCII letters, digits, `-` or `_`, \
         starting with a letter or digit",
        truncate_for_echo(.provider)
    )]
    InvalidProvider { provider: String },

    #[error(
        "invalid key label `{}`: use 1 to 64 ASCII letters, digits, `.`, `-` or `_`, starting \
         with a letter or digit",
        truncate_for_echo(.label)
    )]
    InvalidLabel { label: String },

    #[error("invalid key for provider `{provider}`, label `{label}`: {problem}")]
    InvalidKey {
        provider: String,
        label: String,
        problem: KeyProblem,
    },

    #[error("no key stored for provider `{provider}` with label `{label}`")]
    KeyNotFound { provider: String, label: String },

    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to derive the vault key with Argon2id: {reason}")]
    KeyDerivation { reason: String },

    #[error(
        "failed to write the vault snapshot {path}: {reason}. The previous snapshot is unchanged."
    )]
    SnapshotWrite { path: PathBuf, reason: String },

    #[error("the Stronghold engine failed while reading {path}: {reason}")]
    Engine { path: PathBuf, reason: String },
}

impl VaultError {
    /// Builds an [`VaultError::Io`] for `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

fn describe_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    }
}

fn truncate_for_echo(value: &str) -> String {
    let mut echoed: String = value.chars().take(ECHO_MAX_CHARS).collect();
    if echoed.len() < value.len() {
        echoed.push('…');
    }
    echoed.escape_debug().to_string()
}
