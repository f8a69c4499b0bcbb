//! The one error type commands return to the webview: `{ code, message }`.
//! The UI branches on `code`; `message` is for people. No message contains
//! a provider key, a password or a client token, because the core errors
//! they come from never do.

use keyport_core::config::ConfigError;
use keyport_core::requestlog::LogError;
use keyport_core::service::ServiceError;
use keyport_core::tokens::TokenError;
use keyport_core::vault::VaultError;
use serde::Serialize;
use ts_rs::TS;

/// Kind of failure of an [`AppError`], for the UI to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum AppErrorCode {
    WrongPassword,
    VaultMissing,
    VaultExists,
    VaultLocked,
    VaultBusy,
    VaultDamaged,
    InvalidInput,
    PortInUse,
    NotFound,
    AlreadyExists,
    Config,
    Io,
    Upstream,
    Internal,
}

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: AppErrorCode,
    pub message: String,
}

impl AppError {
    pub fn new(code: AppErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(AppErrorCode::InvalidInput, message)
    }

    pub fn locked() -> Self {
        Self::new(
            AppErrorCode::VaultLocked,
            "the vault is locked; unlock it with your password first",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(AppErrorCode::Internal, message)
    }
}

impl From<VaultError> for AppError {
    fn from(error: VaultError) -> Self {
        let code = match &error {
            VaultError::NotInitialized { .. } => AppErrorCode::VaultMissing,
            VaultError::AlreadyExists { .. } => AppErrorCode::VaultExists,
            VaultError::WrongPassword => AppErrorCode::WrongPassword,
            VaultError::Busy { .. } => AppErrorCode::VaultBusy,
            VaultError::HeaderMissing { .. }
            | VaultError::HeaderDamaged { .. }
            | VaultError::HeaderUnsupportedVersion { .. }
            | VaultError::SnapshotMissing { .. }
            | VaultError::SnapshotDamaged { .. }
            | VaultError::PasswordChangeInterrupted { .. } => AppErrorCode::VaultDamaged,
            VaultError::EmptyPassword
            | VaultError::InvalidProvider { .. }
            | VaultError::InvalidLabel { .. }
            | VaultError::InvalidKey { .. } => AppErrorCode::InvalidInput,
            VaultError::KeyNotFound { .. } => AppErrorCode::NotFound,
            VaultError::Io { .. } | VaultError::SnapshotWrite { .. } => AppErrorCode::Io,
            VaultError::ReadOnly | VaultError::KeyDerivation { .. } | VaultError::Engine { .. } => {
                AppErrorCode::Internal
            }
        };
        Self::new(code, error.to_string())
    }
}

impl From<TokenError> for AppError {
    fn from(error: TokenError) -> Self {
        let code = match &error {
            TokenError::Read { .. } | TokenError::Write { .. } => AppErrorCode::Io,
            TokenError::Damaged { .. } | TokenError::NewerVersion { .. } => AppErrorCode::Config,
            TokenError::DuplicateName(_) => AppErrorCode::AlreadyExists,
            TokenError::NotFound(_) => AppErrorCode::NotFound,
            TokenError::InvalidName(_)
            | TokenError::InvalidLimits { .. }
            | TokenError::InvalidPin { .. } => AppErrorCode::InvalidInput,
        };
        Self::new(code, error.to_string())
    }
}

impl From<ConfigError> for AppError {
    fn from(error: ConfigError) -> Self {
        let code = match &error {
            ConfigError::Read { .. } => AppErrorCode::Io,
            ConfigError::Parse { .. } => AppErrorCode::Config,
            ConfigError::Invalid { .. } => AppErrorCode::InvalidInput,
        };
        Self::new(code, error.to_string())
    }
}

impl From<LogError> for AppError {
    fn from(error: LogError) -> Self {
        let code = match &error {
            LogError::CreateDir { .. } | LogError::Open { .. } | LogError::Export { .. } => {
                AppErrorCode::Io
            }
            LogError::Damaged { .. }
            | LogError::Locked { .. }
            | LogError::NewerSchema { .. }
            | LogError::Sqlite { .. }
            | LogError::WriterStopped => AppErrorCode::Internal,
        };
        Self::new(code, error.to_string())
    }
}

impl From<ServiceError> for AppError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Vault(error) => error.into(),
            ServiceError::Tokens(error) => error.into(),
            ServiceError::PortInUse { .. } => Self::new(AppErrorCode::PortInUse, error.to_string()),
            ServiceError::Bind { .. } => Self::new(AppErrorCode::Io, error.to_string()),
            ServiceError::Proxy(_) | ServiceError::Serve(_) | ServiceError::Task(_) => {
                Self::internal(error.to_string())
            }
        }
    }
}
