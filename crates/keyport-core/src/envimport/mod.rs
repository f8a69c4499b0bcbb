//! Importing provider keys from `.env` files and the process environment.
//!
//! This module owns reading a `.env` file the way dotenv does ([`parse`]),
//! recognising the variables that contain provider keys ([`variables`]),
//! deciding what an import stores ([`plan`]), and rewriting the file with
//! the imported values replaced ([`rewrite`]) and the SDKs' base URLs
//! pointed at the proxy ([`base_urls`]). It does not store keys or
//! create client tokens: the caller passes the plan's keys to
//! [`crate::vault::Vault::set_keys`] and creates the token with
//! [`crate::tokens::TokenStore`].
//!
//! The file's text and every value stay in zeroized buffers. Errors name
//! files, line numbers and variable names, never values.

pub mod base_urls;
pub mod parse;
pub mod plan;
pub mod rewrite;
pub mod variables;

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::secret::SecretString;
use base_urls::BaseUrlSetting;
use parse::{Assignment, ParseError, Quote};
use plan::{Found, ImportPlan, Origin, Variable};

/// Largest `.env` file read, in bytes. The limit keeps a wrong path (a log,
/// a binary) from being read whole.
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Errors from reading a `.env` file or the environment.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path} is larger than {MAX_ENV_FILE_BYTES} bytes, which is too large for a .env file; \
         check the path"
    )]
    TooLarge { path: PathBuf },

    #[error("{path}, line {line}: the file is not valid UTF-8; save it as UTF-8")]
    NotUtf8 { path: PathBuf, line: usize },

    #[error("invalid .env file {path}, {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },

    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUnicode { name: String },
}

/// A parsed `.env` file with its original text. `Debug` shows the path and
/// the variable names only.
pub struct EnvFile {
    pub path: PathBuf,
    text: Zeroizing<String>,
    assignments: Vec<Assignment>,
}

impl EnvFile {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        let io_error = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        if size > MAX_ENV_FILE_BYTES {
            return Err(ReadError::TooLarge {
                path: path.to_path_buf(),
            });
        }

        // Reserving the whole size up front keeps `read_to_end` from
        // reallocating, which would free unzeroized copies of the secrets.
        let capacity = usize::try_from(size).unwrap_or(0) + 1;
        let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
        file.take(MAX_ENV_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
            return Err(ReadError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::from_bytes(path, bytes)
    }

    /// Parses `bytes` as the contents of `path`.
    pub fn from_bytes(path: &Path, mut bytes: Zeroizing<Vec<u8>>) -> Result<Self, ReadError> {
        // `take` moves the buffer into the String without copying it.
        let text = match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(text) => Zeroizing::new(text),
            Err(error) => {
                let valid_up_to = error.utf8_error().valid_up_to();
                let rejected = Zeroizing::new(error.into_bytes());
                let line = 1 + rejected[..valid_up_to]
                    .iter()
                    .filter(|&&byte| byte == b'\n')
                    .count();
                return Err(ReadError::NotUtf8 {
                    path: path.to_path_buf(),
                    line,
                });
            }
        };
        let assignments = parse::parse(&text).map_err(|source| ReadError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
            assignments,
        })
    }

    /// Returns the file's text as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }

    /// Returns every assignment as input for [`plan::plan`].
    pub fn found(&self) -> Vec<Found> {
        self.assignments
            .iter()
            .map(|assignment| Found {
                variable: Variable {
                    name: assignment.name.clone(),
                    origin: Origin::Line(assignment.line),
                },
                value: assignment.value.clone(),
            })
            .collect()
    }

    /// Returns the file's text with every non-empty value of the variables
    /// that `plan` imports replaced by `replacement`. Earlier assignments of
    /// the same name are replaced too, because their values are usually
    /// older copies of the same secret. Each of `base_urls` replaces the
    /// values of its lines, or is appended at the end of the file.
    pub fn rewritten(
        &self,
        plan: &ImportPlan,
        replacement: &str,
        base_urls: &[BaseUrlSetting],
    ) -> Zeroizing<String> {
        let mut replacements: Vec<(Range<usize>, Cow<'_, str>)> = Vec::new();
        for assignment in &self.assignments {
            if let Some(setting) = base_urls.iter().find(|s| s.name == assignment.name) {
                replacements.push((
                    assignment.raw_value.clone(),
                    self.fitted_value(assignment, &setting.url),
                ));
            } else if !assignment.raw_value.is_empty() && plan.imports_variable(&assignment.name) {
                replacements.push((assignment.raw_value.clone(), Cow::Borrowed(replacement)));
            }
        }
        let replacements: Vec<(Range<usize>, &str)> = replacements
            .iter()
            .map(|(range, new)| (range.clone(), new.as_ref()))
            .collect();

        // New lines end like the file's last line.
        let line_break = match self.text.rfind('\n') {
            Some(end) if self.text[..end].ends_with('\r') => "\r\n",
            _ => "\n",
        };
        let mut tail = base_urls::appended_lines(base_urls, line_break);
        if !tail.is_empty() && !self.text.is_empty() && !self.text.ends_with('\n') {
            tail.insert_str(0, line_break);
        }
        rewrite::splice(&self.text, &replacements, &tail)
    }

    /// Returns `value` as the new text of `assignment`'s value. An empty
    /// unquoted value followed by a comment (`KEY= # note`) gets a blank
    /// after it, so the `#` still starts a comment.
    fn fitted_value<'a>(&self, assignment: &Assignment, value: &'a str) -> Cow<'a, str> {
        let end = assignment.raw_value.end;
        if assignment.quote == Quote::None && self.text[end..].starts_with('#') {
            Cow::Owned(format!("{value} "))
        } else {
            Cow::Borrowed(value)
        }
    }
}

impl fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .assignments
            .iter()
            .map(|assignment| assignment.name.as_str())
            .collect();
        f.debug_struct("EnvFile")
            .field("path", &self.path)
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

/// Reads every recognised provider variable from the process environment,
/// sorted by name.
pub fn from_process_env() -> Result<Vec<Found>, ReadError> {
    let mut names = variables::recognised_names();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let Some(value) = std::env::var_os(&name) else {
            continue;
        };
        let value = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| ReadError::EnvNotUnicode { name: name.clone() })?,
        );
        found.push(Found {
            variable: Variable {
                name,
                origin: Origin::Environment,
            },
            value: SecretString::from(value.as_str()),
        });
    }
    Ok(found)
}
