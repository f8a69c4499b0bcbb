//! A mock WebSocket provider on 127.0.0.1, built on tokio-tungstenite.
//!
//! It accepts a handshake only with one of the accepted vault keys (as
//! `Authorization: Bearer`, `x-goog-api-key` or the `key` query parameter),
//! selects the `realtime` subprotocol when offered, and records the request
//! and every message it receives. It echoes text and binary messages; after
//! the first one it also sends a text message of its own and a ping. The
//! text `please-close` makes it close with code 1000, `please-drop` makes it
//! drop the TCP connection without a close frame.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The text message the mock sends after the first message it receives.
pub const SERVER_HELLO: &str = "{\"type\":\"session.created\"}";
/// Payload of the ping the mock sends after the first message it receives.
pub const SERVER_PING: &[u8] = b"srv-ping";

/// One WebSocket session as the mock saw it.
#[derive(Debug, Default)]
pub struct WsSession {
    /// The request target: path and query, byte for byte.
    pub target: String,
    /// Header names (lower case) and values of the handshake.
    pub headers: Vec<(String, String)>,
    pub received: Mutex<Vec<Message>>,
    /// When the proxy's side of the connection ended.
    pub ended_at: Mutex<Option<Instant>>,
}

impl WsSession {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Request line and headers as one text, to search for credentials.
    pub fn head_text(&self) -> String {
        let mut text = self.target.clone();
        for (name, value) in &self.headers {
            text.push_str(&format!("\n{name}: {value}"));
        }
        text
    }

    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }

    pub fn ended_at(&self) -> Option<Instant> {
        *self.ended_at.lock().unwrap()
    }
}

/// A running mock WebSocket provider.
pub struct WsUpstream {
    pub addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Arc<WsSession>>>>,
    /// Handshakes the mock refused, as (target, status).
    refused: Arc<Mutex<Vec<(String, u16)>>>,
    task: JoinHandle<()>,
}

impl WsUpstream {
    /// Starts a mock that accepts any of `keys`.
    pub async fn start(keys: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let keys: Arc<Vec<String>> = Arc::new(keys.iter().map(|key| key.to_string()).collect());
        let task = tokio::spawn(accept_loop(
            listener,
            keys,
            sessions.clone(),
            refused.clone(),
        ));
        Self {
            addr,
            sessions,
            refused,
            task,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sessions(&self) -> Vec<Arc<WsSession>> {
        self.sessions.lock().unwrap().clone()
    }

    pub fn refused(&self) -> Vec<(String, u16)> {
        self.refused.lock().unwrap().clone()
    }

    /// Waits up to 3 s for the `index`-th session.
    pub async fn session(&self, index: usize) -> Arc<WsSession> {
        for _ in 0..300 {
            if let Some(session) = self.sessions().get(index) {
                return session.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no WebSocket session {index} after 3 s");
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    keys: Arc<Vec<String>>,
    sessions: Arc<Mutex<Vec<Arc<WsSession>>>>,
    refused: Arc<Mutex<Vec<(String, u16)>>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        connections.spawn(serve(
            stream,
            keys.clone(),
            sessions.clone(),
            refused.clone(),
        ));
    }
}

/// Returns whether the handshake carries one of `keys` in a place the
/// providers accept.
fn has_vault_key(request: &Request, keys: &[String]) -> bool {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let query = request.uri().query().unwrap_or("");
    keys.iter().any(|key| {
        header("authorization") == Some(format!("Bearer {key}").as_str())
            || header("x-goog-api-key") == Some(key.as_str())
            || query.split('&').any(|pair| pair == format!("key={key}"))
    })
}

fn refuse(status: u16, message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!(
        "{{\"error\":{{\"message\":\"{message}\",\"code\":{status}}}}}"
    )));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

// tungstenite's handshake callback returns its large error response by value.
#[allow(clippy::result_large_err)]
async fn serve(
    stream: tokio::net::TcpStream,
    keys: Arc<Vec<String>>,
    sessions: Arc<Mutex<Vec<Arc<WsSession>>>>,
    refused: Arc<Mutex<Vec<(String, u16)>>>,
) {
    stream.set_nodelay(true).unwrap();
    let mut recorded = WsSession::default();
    let callback = |request: &Request, mut response: Response| {
        let target = request
            .uri()
            .path_and_query()
            .map(|target| target.as_str().to_string())
            .unwrap_or_default();
        let refusal = if target.contains("denied") {
            Some(refuse(403, "model not available"))
        } else if !has_vault_key(request, &keys) {
            Some(refuse(401, "missing or wrong API key"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            refused
                .lock()
                .unwrap()
                .push((target, refusal.status().as_u16()));
            return Err(refusal);
        }
        recorded.target = target;
        recorded.headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        let offers_realtime = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|protocol| protocol.trim() == "realtime");
        if offers_realtime {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", "realtime".parse().unwrap());
        }
        response
            .headers_mut()
            .insert("x-request-id", "req_ws_1".parse().unwrap());
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let session = Arc::new(recorded);
    sessions.lock().unwrap().push(session.clone());

    let mut greeted = false;
    while let Some(Ok(message)) = socket.next().await {
        session.received.lock().unwrap().push(message.clone());
        let reply = match &message {
            Message::Text(text) if text.as_str() == "please-close" => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                continue;
            }
            Message::Text(text) if text.as_str() == "please-drop" => break,
            Message::Text(_) | Message::Binary(_) => message.clone(),
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
        if !greeted {
            greeted = true;
            let _ = socket.send(Message::text(SERVER_HELLO)).await;
            let _ = socket.send(Message::Ping(SERVER_PING.into())).await;
        }
    }
    session
        .ended_at
        .lock()
        .unwrap()
        .get_or_insert(Instant::now());
}
