//! Child processes that serve HTTP on 127.0.0.1: started, asked for their
//! address, and always stopped, also when the harness fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::BenchError;

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Server {
    name: String,
    child: Child,
    /// Held open: the mock and the floor exit when their standard input
    /// closes, so they cannot outlive a harness that crashed.
    _stdin: Option<ChildStdin>,
    /// Held open so a late write to standard output does not fail.
    _stdout: BufReader<ChildStdout>,
    pub address: String,
}

impl Server {
    /// Starts `command` and waits for the standard output line that
    /// starts with `ready_prefix` and ends with the server's address.
    pub fn start(name: &str, mut command: Command, ready_prefix: &str) -> Result<Self, BenchError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                program: name.to_string(),
                source,
            })?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(BenchError::command(
                name,
                "standard output was not captured",
            ));
        };
        let mut server = Self {
            name: name.to_string(),
            child,
            _stdin: stdin,
            _stdout: BufReader::new(stdout),
            address: String::new(),
        };
        let mut line = String::new();
        loop {
            line.clear();
            let read = server
                ._stdout
                .read_line(&mut line)
                .map_err(|source| BenchError::io(format!("read the output of {name}"), source))?;
            if read == 0 {
                return Err(BenchError::command(
                    name,
                    "exited before it printed its address; its error is above",
                ));
            }
            if let Some(address) = line.trim().strip_prefix(ready_prefix) {
                server.address = address.trim().to_string();
                return Ok(server);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, so a server can shut down cleanly, and waits for it.
    pub fn stop(mut self) -> Result<ExitStatus, BenchError> {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .map_err(|source| BenchError::Spawn {
                program: "kill".into(),
                source,
            })?;
        if !signalled.success() {
            return Err(BenchError::command(
                "kill",
                format!("cannot signal {}", self.name),
            ));
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            let exited = self
                .child
                .try_wait()
                .map_err(|source| BenchError::io(format!("wait for {}", self.name), source))?;
            if let Some(status) = exited {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(BenchError::command(
                    &self.name,
                    format!(
                        "still running {} s after SIGTERM; killed",
                        STOP_GRACE.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a short command to completion and returns its standard output;
/// a failure carries its standard error.
pub fn run_to_end(name: &str, command: &mut Command) -> Result<String, BenchError> {
    let output = command.output().map_err(|source| BenchError::Spawn {
        program: name.to_string(),
        source,
    })?;
    if !output.status.success() {
        return Err(BenchError::command(
            name,
            format!(
                "exit status {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
