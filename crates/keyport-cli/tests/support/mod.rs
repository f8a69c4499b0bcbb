//! Helpers shared by the CLI test binaries: a temporary data folder, runs
//! of the real `keyport` binary, `keyport serve` and a mock upstream on
//! 127.0.0.1, and the canary sweep.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "each test binary uses a different subset of these helpers, and a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Every stdout and stderr the binary produced, for the canary sweep.
    pub transcript: Arc<Mutex<String>>,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            transcript: Arc::default(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyport"));
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env("KEYPORT_PASSWORD", PASSWORD)
            .env_remove("KEYPORT_NEW_PASSWORD")
            .env_remove("KEYPORT_DATA_DIR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    pub fn record(&self, output: &Output) {
        let mut transcript = self.transcript.lock().unwrap();
        transcript.push_str(&String::from_utf8_lossy(&output.stdout));
        transcript.push_str(&String::from_utf8_lossy(&output.stderr));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        self.record(&output);
        output
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The program may exit before reading its input (a wrong password,
        // a busy vault), so a broken pipe here is not a failure.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let output = child.wait_with_output().unwrap();
        self.record(&output);
        output
    }

    pub fn init(&self) {
        let output = self.run(&["init"]);
        assert_success(&output);
    }

    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.data_dir()).unwrap();
        std::fs::write(self.data_dir().join("config.toml"), text).unwrap();
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// A one-request-at-a-time HTTP upstream that records raw requests and
/// replies to each with a fixed JSON body.
pub struct MockUpstream {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl MockUpstream {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                serve_one(stream, &recorded);
            }
        });
        Self { port, requests }
    }
}

/// Reads one request, records it, then replies. Recording first means a
/// client that has the reply always finds its request recorded.
pub fn serve_one(mut stream: TcpStream, recorded: &Mutex<Vec<String>>) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().ok()?;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    let reply = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello from mock"},"finish_reason":"stop"}]}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_mock\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let request = format!("{head}{}", String::from_utf8_lossy(&body));
    recorded.lock().unwrap().push(request);
    stream.write_all(response.as_bytes()).ok()
}

/// Sends one HTTP/1.1 request and returns the whole response as text.
pub fn http_request(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

pub fn chat_request(port: u16, credential_header: &str) -> String {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    http_request(
        port,
        &format!(
            "POST /llm/openai/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{credential_header}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A running `keyport serve` whose output is collected by background threads.
pub struct Server {
    child: Child,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(env: &Env) -> Self {
        let mut child = env
            .command(&["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();

        let stderr: Arc<Mutex<String>> = Arc::default();
        let stderr_sink = stderr.clone();
        let mut stderr_pipe = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr_pipe.read_line(&mut line).unwrap_or(0) > 0 {
                stderr_sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });

        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no address in {first:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            });
        env.transcript.lock().unwrap().push_str(&first);
        Self {
            child,
            port,
            stderr,
        }
    }

    /// Sends SIGTERM and waits up to five seconds for a clean exit.
    pub fn stop(mut self, env: &Env) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                env.transcript
                    .lock()
                    .unwrap()
                    .push_str(&self.stderr.lock().unwrap());
                return status;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("keyport serve did not stop within 5 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    /// Kills a server that a failed test left running, so it does not
    /// outlive the test binary.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that no canary appears in anything the binary printed or in any
/// file of the data folder. The snapshot is included: it is encrypted, so
/// the canaries must not appear in it in clear either.
pub fn canary_sweep(env: &Env, canaries: &[&str]) {
    let transcript = env.transcript.lock().unwrap().clone();
    for canary in canaries {
        assert!(
            !transcript.contains(canary),
            "{canary} in output:\n{transcript}"
        );
    }
    for path in files_under(&env.data_dir()) {
        let bytes = std::fs::read(&path).unwrap();
        for canary in canaries {
            let found = bytes
                .windows(canary.len())
                .any(|window| window == canary.as_bytes());
            assert!(!found, "{canary} found in {}", path.display());
        }
    }
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
