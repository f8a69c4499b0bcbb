//! The CLI's error type and its mapping to exit codes.

use std::process::ExitCode;

use keyport_core::config::ConfigError;
use keyport_core::paths::NoDataDir;
use keyport_core::tokens::TokenError;
use keyport_core::vault::VaultError;

/// Exit status for a failure that is neither a usage error nor one of the
/// specific cases below.
const EXIT_FAILURE: u8 = 1;
/// Invalid usage or input (the same status clap uses for bad arguments).
const EXIT_USAGE: u8 = 2;
const EXIT_WRONG_PASSWORD: u8 = 3;
const EXIT_VAULT_BUSY: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Vault(#[from] VaultError),

    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Token(#[from] TokenError),

    #[error(transparent)]
    DataDir(#[from] NoDataDir),

    /// The vault password did not match, with where it came from.
    #[error("{0}")]
    WrongPassword(String),

    /// Bad input from the user: a value, a password or a key.
    #[error("{0}")]
    Usage(String),

    /// Any other failure, already phrased for the user.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        let code = match self {
            CliError::Vault(VaultError::WrongPassword) | CliError::WrongPassword(_) => {
                EXIT_WRONG_PASSWORD
            }
            CliError::Vault(VaultError::Busy { .. }) => EXIT_VAULT_BUSY,
            CliError::Usage(_)
            | CliError::Token(
                TokenError::InvalidName(_)
                | TokenError::InvalidLimits { .. }
                | TokenError::InvalidPin { .. },
            )
            | CliError::Vault(
                VaultError::InvalidKey { .. }
                | VaultError::InvalidLabel { .. }
                | VaultError::InvalidProvider { .. }
                | VaultError::EmptyPassword,
            ) => EXIT_USAGE,
            CliError::Vault(_)
            | CliError::Config(_)
            | CliError::Token(_)
            | CliError::DataDir(_)
            | CliError::Failed(_) => EXIT_FAILURE,
        };
        ExitCode::from(code)
    }
}
