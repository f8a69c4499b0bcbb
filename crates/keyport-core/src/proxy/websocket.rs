//! WebSocket upgrades, such as OpenAI's Realtime API and Gemini Live.
//!
//! The proxy runs the handshake on each leg itself: it checks the client's
//! token like on any route, opens the upstream WebSocket with the vault key,
//! and responds to the client with its own `Sec-WebSocket-Accept` and the
//! subprotocol the provider chose. After the two `101` responses it copies
//! bytes in both directions without parsing frames. Every frame (text,
//! binary, fragmented, ping, pong, close) therefore reaches the other side
//! exactly as it was sent, nobody answers a ping but the peer, and
//! extensions such as permessage-deflate are negotiated between the client
//! and the provider. For OpenAI-style providers, the usage reader parses a
//! copy of the provider's frames for the Realtime API's usage events.
//!
//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) are not supported;
//! such a request gets 405 like any other `CONNECT`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::request::Parts;
use http::{Method, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use tungstenite::handshake::derive_accept_key;

use super::auth::{self, CREDENTIAL_SUBPROTOCOL_PREFIX};
use super::cors::Cors;
use super::errors::ProxyError;
use super::headers;
use super::outcome::{OutcomeEnd, OutcomeRecorder};
use super::routes::{self, Prepared};
use super::ProxyState;
use crate::providers::ErrorShape;

/// After one side of a session ends, how long the other direction may go
/// on. That leaves time for the peer's own close frame and FIN, and frees
/// the other leg well within a second when a peer vanishes.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Read buffer of each relay direction. Frames larger than this pass in
/// several reads; nothing waits for a whole frame.
const RELAY_BUFFER_BYTES: usize = 16 * 1024;

/// Returns whether the request is a WebSocket upgrade.
pub(crate) fn is_upgrade_request(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && has_token(headers, UPGRADE, "websocket")
        && has_token(headers, CONNECTION, "upgrade")
}

/// Returns whether a comma-separated header lists `token`, ignoring case.
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Forwards a WebSocket upgrade whose token and key have been checked:
/// opens the upstream WebSocket, then responds to the client with 101 and
/// relays the session in a background task. A provider that refuses the
/// upgrade has its response passed to the client unchanged.
pub(super) async fn forward(
    state: &ProxyState,
    prepared: Prepared,
    parts: &mut Parts,
    cors: &Cors,
    shape: ErrorShape,
    mut recorder: OutcomeRecorder,
) -> Response {
    let handshake = match ClientHandshake::take(parts) {
        Ok(handshake) => handshake,
        Err(error) => {
            return routes::reject(error, shape, cors, Body::empty(), Some(recorder)).await
        }
    };
    let upstream_key = tungstenite::handshake::client::generate_key();
    let provider = prepared.provider.clone();
    let request = handshake.upstream_request(prepared, &upstream_key);
    let upstream = match state
        .shared
        .upstream
        .send_websocket(&provider, request)
        .await
    {
        Ok(response) => response,
        Err(error) => {
            return routes::reject(error, shape, cors, Body::empty(), Some(recorder)).await
        }
    };
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return routes::stream_response(state, upstream, &Method::GET, cors, recorder);
    }
    if let Err(error) = handshake.check_upstream(&provider, upstream.headers(), &upstream_key) {
        return routes::reject(error, shape, cors, Body::empty(), Some(recorder)).await;
    }

    let response = handshake.switching_response(upstream.headers());
    recorder.set_response(StatusCode::SWITCHING_PROTOCOLS, None);
    recorder.read_websocket_usage(upstream.headers());
    tracing::debug!("WebSocket upgraded on both legs");
    state.shared.sessions.spawn(relay(
        handshake.on_upgrade,
        upstream,
        recorder,
        state.config().upstream_idle_timeout,
    ));
    response
}

/// The parts of the client's handshake that the proxy keeps.
struct ClientHandshake {
    /// `Sec-WebSocket-Accept` for the client's key.
    accept: HeaderValue,
    /// The offered subprotocols without credential entries.
    protocols: Option<HeaderValue>,
    extensions: Option<HeaderValue>,
    on_upgrade: OnUpgrade,
}

impl ClientHandshake {
    /// Checks the client's handshake headers and takes the connection's
    /// upgrade handle out of the request.
    fn take(parts: &mut Parts) -> Result<Self, ProxyError> {
        let invalid = |reason| ProxyError::WebSocketHandshakeInvalid { reason };
        if parts
            .headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(invalid("Sec-WebSocket-Version is missing or not 13"));
        }
        let key = parts
            .headers
            .get(SEC_WEBSOCKET_KEY)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| invalid("Sec-WebSocket-Key is missing"))?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| invalid("Sec-WebSocket-Key is invalid"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| invalid("this connection cannot be upgraded"))?;

        let offered: Vec<&str> = auth::websocket_protocols(&parts.headers)
            .filter(|protocol| !protocol.starts_with(CREDENTIAL_SUBPROTOCOL_PREFIX))
            .collect();
        let protocols = (!offered.is_empty())
            .then(|| HeaderValue::from_str(&offered.join(", ")).ok())
            .flatten();
        Ok(Self {
            accept,
            protocols,
            extensions: parts.headers.get(SEC_WEBSOCKET_EXTENSIONS).cloned(),
            on_upgrade,
        })
    }

    /// Builds the upstream handshake: the filtered client headers with the
    /// vault key, plus a fresh `Sec-WebSocket-Key` of the proxy's own.
    fn upstream_request(&self, prepared: Prepared, key: &str) -> reqwest::Request {
        let mut headers = prepared.headers;
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if let Ok(key) = HeaderValue::from_str(key) {
            headers.insert(SEC_WEBSOCKET_KEY, key);
        }
        if let Some(protocols) = &self.protocols {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, protocols.clone());
        }
        if let Some(extensions) = &self.extensions {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, extensions.clone());
        }
        let mut request = reqwest::Request::new(Method::GET, prepared.url);
        *request.headers_mut() = headers;
        request
    }

    /// Checks the provider's 101: the accept value must match the proxy's key
    /// and the chosen subprotocol must be one the client offered.
    fn check_upstream(
        &self,
        provider: &str,
        upstream: &HeaderMap,
        key: &str,
    ) -> Result<(), ProxyError> {
        let invalid = |reason| ProxyError::UpstreamWebSocketInvalid {
            provider: provider.to_string(),
            reason,
        };
        let expected = derive_accept_key(key.as_bytes());
        if upstream
            .get(SEC_WEBSOCKET_ACCEPT)
            .map(HeaderValue::as_bytes)
            != Some(expected.as_bytes())
        {
            return Err(invalid("wrong or missing Sec-WebSocket-Accept"));
        }
        if let Some(chosen) = upstream.get(SEC_WEBSOCKET_PROTOCOL) {
            let offered = self
                .protocols
                .as_ref()
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            let chosen = chosen.to_str().unwrap_or("").trim();
            if !offered.split(',').any(|protocol| protocol.trim() == chosen) {
                return Err(invalid("it chose a subprotocol the client did not offer"));
            }
        }
        Ok(())
    }

    /// Builds the client's 101 from the provider's: its headers minus
    /// hop-by-hop ones, with the accept value for the client's key.
    fn switching_response(&self, upstream: &HeaderMap) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        *headers = headers::client_response_headers(upstream);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, self.accept.clone());
        response
    }
}

/// Background WebSocket sessions, tracked so that shutdown can wait for
/// them and then cut the ones still open.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sessions {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Sessions {
    fn spawn(&self, session: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        let session = async move {
            tokio::select! {
                () = session => {}
                () = cancel.cancelled() => {
                    tracing::info!("closing a WebSocket session at shutdown");
                }
            }
        };
        self.tracker
            .spawn(session.instrument(tracing::Span::current()));
    }

    /// Returns the number of open sessions.
    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every session has ended, once [`Sessions::close`] has been called.
    pub(crate) async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// Marks the set as closed, so that [`Sessions::wait`] can return.
    pub(crate) fn close(&self) {
        self.tracker.close();
    }

    /// Ends every open session by closing both of its connections.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// When a session last relayed bytes in either direction. An atomic, not a
/// `Cell`, because the session future must be `Send`.
struct LastBytes {
    start: tokio::time::Instant,
    nanos: AtomicU64,
}

impl LastBytes {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    fn stamp(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    fn get(&self) -> tokio::time::Instant {
        self.start + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// The reason one relay direction stopped.
enum PumpError {
    Read(io::Error),
    Write(io::Error),
}

/// The side that ended a session first, and how.
enum FirstEnd {
    Client(Result<(), PumpError>),
    Upstream(Result<(), PumpError>),
    /// No bytes either way for the idle timeout. `client_stalled` is true
    /// when bytes from the provider were waiting for the client to read them.
    Idle {
        client_stalled: bool,
    },
}

/// Relays one session until either side ends it, then records its outcome.
async fn relay(
    client: OnUpgrade,
    upstream: reqwest::Response,
    mut recorder: OutcomeRecorder,
    idle_timeout: Duration,
) {
    let legs = tokio::try_join!(async { client.await.map_err(io::Error::other) }, async {
        upstream.upgrade().await.map_err(io::Error::other)
    },);
    let end = match legs {
        Ok((client, upstream)) => {
            let sent = recorder.request_bytes();
            let activity = recorder.activity();
            let first = copy_both_ways(
                TokioIo::new(client),
                upstream,
                idle_timeout,
                |chunk| {
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    activity.stamp();
                },
                |chunk| recorder.observe_response_chunk(chunk),
            )
            .await;
            first.outcome()
        }
        Err(error) => {
            tracing::warn!(%error, "WebSocket upgrade failed after the handshake");
            OutcomeEnd::UpstreamBodyFailed
        }
    };
    recorder.finish(end);
}

/// Copies bytes both ways until one direction ends, gives the other
/// direction [`CLOSE_LINGER`] to finish, and returns how the first one
/// ended. A session with no bytes in either direction for `idle_timeout`
/// ends at once. Pings count as bytes, so a peer that pings stays
/// connected. Bytes to the provider go to `sent`, and bytes to the client
/// to `received`, as they pass. Both connections close when the
/// caller drops them.
async fn copy_both_ways<C, U>(
    client: C,
    upstream: U,
    idle_timeout: Duration,
    mut sent: impl FnMut(&[u8]),
    mut received: impl FnMut(&[u8]),
) -> FirstEnd
where
    C: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let last_bytes = LastBytes::new();
    // Whether bytes from the provider wait for the client to read them.
    let client_writing = AtomicBool::new(false);
    let upstream_writing = AtomicBool::new(false);
    let to_upstream = pump(
        &mut client_read,
        &mut upstream_write,
        &upstream_writing,
        |chunk| {
            last_bytes.stamp();
            sent(chunk);
        },
    );
    let to_client = pump(
        &mut upstream_read,
        &mut client_write,
        &client_writing,
        |chunk| {
            last_bytes.stamp();
            received(chunk);
        },
    );
    let idle = async {
        loop {
            let deadline = last_bytes.get() + idle_timeout;
            if deadline <= tokio::time::Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::pin!(to_upstream, to_client);

    let first = tokio::select! {
        result = &mut to_upstream => FirstEnd::Client(result),
        result = &mut to_client => FirstEnd::Upstream(result),
        () = idle => FirstEnd::Idle {
            client_stalled: client_writing.load(Ordering::Relaxed),
        },
    };
    match first {
        FirstEnd::Idle { .. } => {}
        FirstEnd::Client(_) => {
            let _ = tokio::time::timeout(CLOSE_LINGER, &mut to_client).await;
        }
        FirstEnd::Upstream(_) => {
            let _ = tokio::time::timeout(CLOSE_LINGER, &mut to_upstream).await;
        }
    }
    first
}

impl FirstEnd {
    /// Maps the side that ended a session, and how, to the request outcome.
    /// A clean end on either side is a completed session: without parsing
    /// frames the proxy cannot tell a close frame from a dropped connection.
    fn outcome(self) -> OutcomeEnd {
        match self {
            // A client that stopped reading has in effect left.
            FirstEnd::Idle {
                client_stalled: true,
            } => OutcomeEnd::ClientCancelled,
            FirstEnd::Idle {
                client_stalled: false,
            } => OutcomeEnd::UpstreamIdleTimeout,
            FirstEnd::Client(Ok(())) | FirstEnd::Upstream(Ok(())) => OutcomeEnd::Completed,
            FirstEnd::Client(Err(PumpError::Read(error)))
            | FirstEnd::Upstream(Err(PumpError::Write(error))) => {
                tracing::debug!(%error, "WebSocket client connection failed");
                OutcomeEnd::ClientCancelled
            }
            FirstEnd::Client(Err(PumpError::Write(error)))
            | FirstEnd::Upstream(Err(PumpError::Read(error))) => {
                tracing::warn!(%error, "WebSocket upstream connection failed");
                OutcomeEnd::UpstreamBodyFailed
            }
        }
    }
}

/// Copies bytes from `reader` to `writer` as they arrive and passes each
/// chunk written to `observe`. `writing` is true while a chunk waits for
/// the writer. At the reader's end it shuts the writer down, so the end of
/// stream reaches the peer too.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    writing: &AtomicBool,
    mut observe: impl FnMut(&[u8]),
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; RELAY_BUFFER_BYTES];
    loop {
        let read = reader.read(&mut buffer).await.map_err(PumpError::Read)?;
        if read == 0 {
            let _ = writer.shutdown().await;
            return Ok(());
        }
        writing.store(true, Ordering::Relaxed);
        writer
            .write_all(&buffer[..read])
            .await
            .map_err(PumpError::Write)?;
        writer.flush().await.map_err(PumpError::Write)?;
        writing.store(false, Ordering::Relaxed);
        observe(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_millis(300);

    /// Relays between two in-memory pipes of 1 KiB each and returns how
    /// the session ended.
    async fn relay_pipes(provider_sends: bool) -> OutcomeEnd {
        let (client, _client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let sender = tokio::spawn(async move {
            // Bounded: at most 2 s of 512-byte writes, 5 ms apart.
            for _ in 0..400 {
                if !provider_sends || upstream_peer.write_all(&[b'x'; 512]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            upstream_peer
        });
        let first = tokio::time::timeout(
            Duration::from_secs(5),
            copy_both_ways(client, upstream, IDLE, |_| {}, |_| {}),
        )
        .await
        .expect("the session outlived the idle timeout");
        sender.abort();
        first.outcome()
    }

    #[tokio::test]
    async fn silent_session_is_upstream_idle() {
        assert_eq!(relay_pipes(false).await, OutcomeEnd::UpstreamIdleTimeout);
    }

    #[tokio::test]
    async fn client_that_stops_reading_is_cancelled() {
        assert_eq!(relay_pipes(true).await, OutcomeEnd::ClientCancelled);
    }
}
