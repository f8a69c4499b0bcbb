//! A raw HTTP/1.1 client: sends exact bytes (any Host, hop-by-hop headers)
//! and reads the response frame by frame, noting when each chunk arrived.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The de-chunked body.
    pub body: Vec<u8>,
    /// Each chunk of a chunked body with its arrival time.
    pub chunks: Vec<(Instant, Vec<u8>)>,
    /// False when the connection ended before the body's end (no final
    /// zero-size chunk, or fewer bytes than Content-Length).
    pub complete: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) plus
/// `body`, and reads the whole response, for at most 10 s.
pub async fn request(proxy: SocketAddr, head: &str, body: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let mut bytes = head.trim_end().replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
        .await
        .expect("response did not arrive within 10 s")
}

/// Reads one response from `stream`.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut reader = BufReader::new(stream);
    let status_line = line(&mut reader).await.expect("no status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("malformed status line");
    let mut headers = Vec::new();
    while let Some(text) = line(&mut reader).await {
        if text.is_empty() {
            break;
        }
        let (name, value) = text.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
        chunks: Vec::new(),
        complete: false,
    };
    if status == 204 || status == 304 {
        response.complete = true;
        return response;
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|value| value.contains("chunked"));
    let length = response
        .header("content-length")
        .map(|value| value.parse::<usize>().unwrap());
    if chunked {
        read_chunks(&mut reader, &mut response).await;
    } else if let Some(length) = length {
        let mut body = vec![0; length];
        response.complete = reader.read_exact(&mut body).await.is_ok();
        response.body = body;
    } else {
        let _ = reader.read_to_end(&mut response.body).await;
        response.complete = true;
    }
    response
}

async fn read_chunks(reader: &mut BufReader<&mut TcpStream>, response: &mut RawResponse) {
    loop {
        let Some(size_line) = line(reader).await else {
            return;
        };
        let Ok(size) = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
        else {
            return;
        };
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).await.is_err() {
            return;
        }
        if size == 0 {
            response.complete = true;
            return;
        }
        chunk.truncate(size);
        response.body.extend_from_slice(&chunk);
        response.chunks.push((Instant::now(), chunk));
    }
}

async fn line(reader: &mut BufReader<&mut TcpStream>) -> Option<String> {
    let mut bytes = Vec::new();
    if reader.read_until(b'\n', &mut bytes).await.ok()? == 0 {
        return None;
    }
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Some(String::from_utf8(bytes).unwrap())
}
