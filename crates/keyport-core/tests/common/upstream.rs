//! A scriptable mock provider on 127.0.0.1: raw HTTP/1.1 over tokio TCP.
//!
//! It records each request exactly as it arrived (request line, header
//! names in their case and order, de-chunked body, arrival time) and then
//! runs a script of steps: send a head, write bytes in one `send()`, sleep,
//! close. It also notes when the proxy closed its side of the connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One request as the mock received it.
#[derive(Debug)]
pub struct Recorded {
    pub request_line: String,
    pub method: String,
    /// The request target: path and query, byte for byte.
    pub target: String,
    /// Header names and values in the case and order they arrived.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
    pub received_at: Instant,
    /// When each `Step::Write` of the response finished.
    pub write_times: Mutex<Vec<Instant>>,
    peer_closed: Arc<Mutex<Option<Instant>>>,
}

impl Recorded {
    /// Returns the first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// When the proxy closed this request's connection, if it has.
    pub fn peer_closed_at(&self) -> Option<Instant> {
        *self.peer_closed.lock().unwrap()
    }

    /// Request line and headers as one text, to search for credentials.
    pub fn head_text(&self) -> String {
        let mut text = self.request_line.clone();
        for (name, value) in &self.headers {
            text.push('\n');
            text.push_str(name);
            text.push_str(": ");
            text.push_str(value);
        }
        text
    }
}

/// One step of a scripted response.
#[derive(Debug, Clone)]
pub enum Step {
    /// Status line and headers, exactly as given.
    Head(u16, Vec<(String, String)>),
    /// Bytes in one write, flushed.
    Write(Vec<u8>),
    Sleep(Duration),
    /// Sends FIN and ends the connection.
    Close,
}

/// Builds a head step from string pairs.
pub fn head(status: u16, headers: &[(&str, &str)]) -> Step {
    Step::Head(
        status,
        headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    )
}

pub fn write(bytes: impl AsRef<[u8]>) -> Step {
    Step::Write(bytes.as_ref().to_vec())
}

pub fn sleep_ms(ms: u64) -> Step {
    Step::Sleep(Duration::from_millis(ms))
}

/// Scripts a complete response with Content-Length.
pub fn respond(status: u16, content_type: &str, body: &[u8], extra: &[(&str, &str)]) -> Vec<Step> {
    let length = body.len().to_string();
    let mut headers = vec![
        ("content-type", content_type),
        ("content-length", length.as_str()),
    ];
    headers.extend_from_slice(extra);
    vec![head(status, &headers), write(body)]
}

/// Scripts a 200 JSON response.
pub fn ok_json(body: &str) -> Vec<Step> {
    respond(200, "application/json", body.as_bytes(), &[])
}

type Script = Arc<dyn Fn(&Recorded) -> Vec<Step> + Send + Sync>;

/// A running mock provider. Dropping it stops it and its connections.
pub struct MockUpstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Arc<Recorded>>>>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    pub async fn start(script: impl Fn(&Recorded) -> Vec<Step> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let task = tokio::spawn(accept_loop(listener, script, log.clone()));
        Self { addr, log, task }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Arc<Recorded>> {
        self.log.lock().unwrap().clone()
    }

    /// Returns the only request received so far and fails if there is not
    /// exactly one.
    pub fn single(&self) -> Arc<Recorded> {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected one upstream request");
        requests[0].clone()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, script: Script, log: Arc<Mutex<Vec<Arc<Recorded>>>>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        connections.spawn(serve_connection(stream, script.clone(), log.clone()));
    }
}

async fn serve_connection(stream: TcpStream, script: Script, log: Arc<Mutex<Vec<Arc<Recorded>>>>) {
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let peer_closed = Arc::new(Mutex::new(None));
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_requests(read, sender, peer_closed.clone(), log));
    while let Some(request) = receiver.recv().await {
        let request: Arc<Recorded> = request;
        if !run_script(&mut write, &script(&request), &request).await {
            break;
        }
    }
    // Keep watching for the peer's close after the last response.
    let _ = reader.await;
}

/// Runs the steps; returns false once the connection is closed.
async fn run_script(write: &mut OwnedWriteHalf, steps: &[Step], request: &Recorded) -> bool {
    for step in steps {
        match step {
            Step::Head(status, headers) => {
                let mut text = format!("HTTP/1.1 {status} {}\r\n", reason(*status));
                for (name, value) in headers {
                    text.push_str(&format!("{name}: {value}\r\n"));
                }
                text.push_str("\r\n");
                if send(write, text.as_bytes(), request).await.is_err() {
                    return false;
                }
            }
            Step::Write(bytes) => {
                if send(write, bytes, request).await.is_err() {
                    return false;
                }
                request.write_times.lock().unwrap().push(Instant::now());
            }
            Step::Sleep(duration) => tokio::time::sleep(*duration).await,
            Step::Close => {
                let _ = write.shutdown().await;
                return false;
            }
        }
    }
    true
}

async fn send(write: &mut OwnedWriteHalf, bytes: &[u8], request: &Recorded) -> std::io::Result<()> {
    let result = async {
        write.write_all(bytes).await?;
        write.flush().await
    }
    .await;
    if result.is_err() {
        request
            .peer_closed
            .lock()
            .unwrap()
            .get_or_insert(Instant::now());
    }
    result
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

async fn read_requests(
    read: OwnedReadHalf,
    sender: mpsc::UnboundedSender<Arc<Recorded>>,
    peer_closed: Arc<Mutex<Option<Instant>>>,
    log: Arc<Mutex<Vec<Arc<Recorded>>>>,
) {
    let mut reader = BufReader::new(read);
    loop {
        let Some(request) = read_one(&mut reader, &peer_closed).await else {
            peer_closed.lock().unwrap().get_or_insert(Instant::now());
            return;
        };
        let request = Arc::new(request);
        log.lock().unwrap().push(request.clone());
        if sender.send(request).is_err() {
            // The writer closed the connection; wait for the peer's close.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest).await;
            peer_closed.lock().unwrap().get_or_insert(Instant::now());
            return;
        }
    }
}

async fn read_one(
    reader: &mut BufReader<OwnedReadHalf>,
    peer_closed: &Arc<Mutex<Option<Instant>>>,
) -> Option<Recorded> {
    let request_line = read_line(reader).await?;
    let received_at = Instant::now();
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader).await?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _): &&(String, String)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|value| value.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(reader).await?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = find("content-length") {
        body.resize(length.parse().ok()?, 0);
        reader.read_exact(&mut body).await.ok()?;
    }
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    Some(Recorded {
        request_line,
        method,
        target,
        headers,
        body,
        chunked,
        received_at,
        write_times: Mutex::new(Vec::new()),
        peer_closed: peer_closed.clone(),
    })
}

/// Reads one CRLF-terminated line without its terminator; None at EOF.
async fn read_line(reader: &mut BufReader<OwnedReadHalf>) -> Option<String> {
    let mut line = Vec::new();
    let read = reader.read_until(b'\n', &mut line).await.ok()?;
    if read == 0 {
        return None;
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}
