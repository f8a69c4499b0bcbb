//! Reading passwords and keys without echoing them or taking them from argv.

use std::io::{IsTerminal, Read};
use std::path::Path;

use keyport_core::secret::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::CliError;

/// Environment variable with the vault password, for scripts.
pub const PASSWORD_ENV: &str = "KEYPORT_PASSWORD";
/// Environment variable with the new password for `keyport passwd`.
pub const NEW_PASSWORD_ENV: &str = "KEYPORT_NEW_PASSWORD";

/// Shortest password `init` and `passwd` accept, in characters.
const MIN_PASSWORD_CHARS: usize = 8;
/// Maximum length of a password or key, in bytes.
const MAX_SECRET_BYTES: usize = 16 * 1024;

/// Sources of a password, in order of precedence.
pub struct PasswordSource<'a> {
    pub env_var: &'static str,
    pub file: Option<&'a Path>,
    pub prompt: &'static str,
}

/// Reads an existing password: from the file if one was given, else the
/// environment variable, else a prompt.
pub fn read_password(source: &PasswordSource<'_>) -> Result<SecretString, CliError> {
    if let Some(path) = source.file {
        return from_file(path);
    }
    if let Some(password) = from_env(source.env_var)? {
        return Ok(password);
    }
    prompt(source.prompt, source.env_var)
}

/// Describes where [`read_password`] takes the password from, for error
/// messages.
pub fn describe_source(source: &PasswordSource<'_>) -> String {
    if let Some(path) = source.file {
        return format!("from {}", path.display());
    }
    if std::env::var_os(source.env_var).is_some() {
        return format!("from {}", source.env_var);
    }
    "typed at the prompt".to_string()
}

/// Environment variable under which users usually keep a provider's key.
pub fn env_var_for(provider: &str) -> String {
    match provider {
        "google" => "GEMINI_API_KEY".to_string(),
        other => format!("{}_API_KEY", other.to_ascii_uppercase().replace('-', "_")),
    }
}

/// Reads a new password: from the environment or a file as is, or from the
/// terminal twice so a typo cannot lock the user out. Checks the length.
pub fn read_new_password(source: &PasswordSource<'_>) -> Result<SecretString, CliError> {
    let password = match (source.file, from_env(source.env_var)?) {
        (Some(path), _) => from_file(path)?,
        (None, Some(password)) => password,
        (None, None) => {
            let first = prompt(source.prompt, source.env_var)?;
            let second = prompt("Repeat the password: ", source.env_var)?;
            if first.expose_secret() != second.expose_secret() {
                return Err(CliError::Usage(
                    "the two passwords differ; nothing was changed".into(),
                ));
            }
            first
        }
    };
    if password.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
        return Err(CliError::Usage(format!(
            "the password is too short; use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(password)
}

fn from_env(name: &str) -> Result<Option<SecretString>, CliError> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Err(CliError::Usage(format!(
            "{name} is set but empty; unset it or put the password in it"
        ))),
        Ok(value) => Ok(Some(SecretString::from(value))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(CliError::Usage(format!("{name} is not valid UTF-8")))
        }
    }
}

/// Reads the first line of a password file, warning when other users can
/// read it.
fn from_file(path: &Path) -> Result<SecretString, CliError> {
    warn_if_shared(path);
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| {
        CliError::Usage(format!(
            "cannot read password file {}: {error}",
            path.display()
        ))
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        CliError::Usage(format!(
            "password file {} is not valid UTF-8",
            path.display()
        ))
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(CliError::Usage(format!(
            "password file {} is empty; its first line must hold the password",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_string()))
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            crate::output::notice(&format!(
                "warning: password file {} has mode {mode:o}, so other users may read it; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// Prompts on the terminal without echo.
fn prompt(text: &str, env_var: &str) -> Result<SecretString, CliError> {
    let value = rpassword::prompt_password(text).map_err(|_| {
        CliError::Usage(format!(
            "no terminal to ask for the password; set {env_var} or pass --password-file"
        ))
    })?;
    Ok(SecretString::from(value))
}

/// Reads an API key: all of standard input when it is piped (one trailing
/// newline removed), else a no-echo prompt.
pub fn read_key(provider: &str) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let value = rpassword::prompt_password(format!("API key for {provider} (input hidden): "))
            .map_err(|error| {
                CliError::Failed(format!("cannot read the key from the terminal: {error}"))
            })?;
        return Ok(SecretString::from(value));
    }

    let mut buffer = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut buffer)
        .map_err(|error| {
            CliError::Failed(format!("cannot read the key from standard input: {error}"))
        })?;
    if buffer.len() > MAX_SECRET_BYTES {
        return Err(CliError::Usage(format!(
            "the key on standard input is longer than {MAX_SECRET_BYTES} bytes; pipe only the key"
        )));
    }
    let text = std::str::from_utf8(&buffer)
        .map_err(|_| CliError::Usage("the key on standard input is not valid UTF-8".into()))?;
    let key = text.strip_suffix('\n').unwrap_or(text);
    let key = key.strip_suffix('\r').unwrap_or(key);
    if key.is_empty() {
        return Err(CliError::Usage(format!(
            "no key on standard input; pipe it in, e.g. `printenv {} | keyport key set {provider}`",
            env_var_for(provider)
        )));
    }
    Ok(SecretString::from(key.to_string()))
}
