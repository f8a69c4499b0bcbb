//! The one error type of the benchmark harness.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },

    #[error("cannot start {program}: {source}; is it installed and on PATH?")]
    Spawn {
        program: String,
        source: std::io::Error,
    },

    #[error("{program} failed: {message}")]
    Command { program: String, message: String },

    #[error("cannot parse {what} from {text:?}")]
    Parse { what: &'static str, text: String },

    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },

    #[error("invalid argument: {0}")]
    Usage(String),
}

impl BenchError {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }

    pub fn command(program: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Command {
            program: program.into(),
            message: message.into(),
        }
    }
}
