//! A real `keyport serve` set up through the CLI, as a user would: a vault
//! with provider keys, a client token, a config that points the providers
//! at the mock, and the request log on (the default).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::error::BenchError;
use crate::process::{run_to_end, Server};

/// A fixed password, because the vault lives in a temporary folder and
/// contains made-up keys only.
const PASSWORD: &str = "keyport-bench password";

/// Prefix of the line `keyport serve` prints once it listens.
const READY_PREFIX: &str = "Keyport proxy listening on ";

/// A data folder with a vault, keys, a token and a config.
pub struct KeyportSetup {
    binary: PathBuf,
    _temp: TempDir,
    data_dir: PathBuf,
    log_path: PathBuf,
    pub token: String,
}

impl KeyportSetup {
    /// Creates the data folder in a new temporary folder. `mock` is the
    /// mock's `http://127.0.0.1:PORT`.
    pub fn create(binary: &Path, mock: &str) -> Result<Self, BenchError> {
        let temp = tempfile::tempdir()
            .map_err(|source| BenchError::io("create a temporary folder", source))?;
        let data_dir = temp.path().join("data");
        std::fs::create_dir(&data_dir)
            .map_err(|source| BenchError::io(format!("create {}", data_dir.display()), source))?;
        restrict(&data_dir, 0o700)?;
        let config = data_dir.join("config.toml");
        std::fs::write(&config, config_text(mock))
            .map_err(|source| BenchError::io(format!("write {}", config.display()), source))?;
        restrict(&config, 0o600)?;

        let setup = Self {
            binary: binary.to_path_buf(),
            log_path: temp.path().join("serve.log"),
            _temp: temp,
            data_dir,
            token: String::new(),
        };
        run_to_end("keyport init", &mut setup.command("init"))?;
        for provider in ["openai", "anthropic", "google"] {
            setup.set_key(provider)?;
        }
        let token = run_to_end(
            "keyport token create",
            setup.command("token").args(["create", "bench"]),
        )?;
        Ok(Self {
            token: token.trim().to_string(),
            ..setup
        })
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg(subcommand)
            .env("KEYPORT_PASSWORD", PASSWORD)
            .env_remove("RUST_LOG");
        command
    }

    /// Stores a made-up key; the key is read from standard input, never
    /// from an argument.
    fn set_key(&self, provider: &str) -> Result<(), BenchError> {
        let name = format!("keyport key set {provider}");
        let mut child = self
            .command("key")
            .args(["set", provider])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                program: name.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let key = format!("sk-bench-{provider}-0123456789abcdefghijklmnopqrstuv\n");
            stdin
                .write_all(key.as_bytes())
                .map_err(|source| BenchError::io(format!("send the key to {name}"), source))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|source| BenchError::io(format!("wait for {name}"), source))?;
        if !output.status.success() {
            return Err(BenchError::command(
                name,
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    /// Starts `keyport serve --port 0`, with its log (one line per
    /// request at the default level) going to a file.
    pub fn serve(&self) -> Result<Server, BenchError> {
        let log = std::fs::File::create(&self.log_path).map_err(|source| {
            BenchError::io(format!("create {}", self.log_path.display()), source)
        })?;
        let mut command = self.command("serve");
        command.args(["--port", "0"]).stderr(log);
        let mut server = Server::start("keyport serve", command, READY_PREFIX)?;
        server.address = server.address.trim_end_matches('/').to_string();
        Ok(server)
    }

    /// Keyport's log after it stopped.
    pub fn serve_log(&self) -> Result<String, BenchError> {
        std::fs::read_to_string(&self.log_path).map_err(|source| BenchError::ReadFile {
            path: self.log_path.clone(),
            source,
        })
    }
}

fn config_text(mock: &str) -> String {
    format!(
        "# Written by keyport-bench: every provider the benchmark uses points at\n\
         # the mock on 127.0.0.1. The request log keeps its defaults.\n\
         [providers.openai]\nbase_url = \"{mock}/v1\"\n\n\
         [providers.anthropic]\nbase_url = \"{mock}\"\n\n\
         [providers.google]\nbase_url = \"{mock}\"\n"
    )
}

fn restrict(path: &Path, mode: u32) -> Result<(), BenchError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| BenchError::io(format!("set the mode of {}", path.display()), source))
}

/// Rows the request log lost, from the warning `keyport serve` prints at
/// shutdown; no warning means none were lost.
pub fn lost_log_rows(log: &str) -> u64 {
    log.lines()
        .find_map(|line| line.split("the request log lost ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_rows_come_from_the_shutdown_warning() {
        let log = "INFO proxy stopped\nwarning: the request log lost 17 rows (17 dropped because the writer fell behind, 0 failed to write)\n";
        assert_eq!(lost_log_rows(log), 17);
        assert_eq!(lost_log_rows("INFO proxy stopped\n"), 0);
    }

    #[test]
    fn config_names_the_mock_for_each_provider() {
        let text = config_text("http://127.0.0.1:9");
        assert_eq!(text.matches("http://127.0.0.1:9").count(), 3);
        assert!(text.contains("base_url = \"http://127.0.0.1:9/v1\""));
    }
}
