//! The accept loop: one hyper connection task per client, graceful
//! shutdown with a bounded grace period for requests and WebSocket
//! sessions alike.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{router, ProxyState};

/// How long open requests may go on after shutdown is requested. Streams
/// still open then are cut, so stopping never hangs on a long generation.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The HTTP/2 connection preface. hyper-util reads a new connection's first
/// bytes to choose between HTTP/1.1 and HTTP/2 and, while they match this
/// preface, waits for more without a timeout of its own.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Pause between two looks at a connection that has sent part of the
/// HTTP/2 preface. Peeking returns at once while bytes are pending, so
/// without a pause the wait would spin.
const PREFACE_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Pause after an accept error such as running out of file descriptors,
/// so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Serves the proxy on `listener` until `shutdown` resolves, then stops
/// accepting, lets open requests finish for a short grace period and
/// returns.
pub async fn serve(
    listener: TcpListener,
    state: ProxyState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let header_timeout = state.shared.config.client_header_timeout;
    let sessions = state.shared.sessions.clone();
    let service = TowerToHyperService::new(router(state));
    let (stop_sender, stop) = watch::channel(());
    let mut connections = JoinSet::new();
    tracing::info!(%address, "proxy started");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let connection = serve_connection(stream, service.clone(), header_timeout, stop.clone());
                    connections.spawn(connection);
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    drop(listener);
    let _ = stop_sender.send(());
    sessions.close();
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
        sessions.wait().await;
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            websocket_sessions = sessions.len(),
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "closing connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
        sessions.cancel();
        // Cancelled sessions drop their connections as soon as they are polled.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait()).await;
    }
    tracing::info!(%address, "proxy stopped");
    Ok(())
}

type Service = TowerToHyperService<axum::Router>;

async fn serve_connection(
    stream: TcpStream,
    service: Service,
    header_timeout: Duration,
    mut stop: watch::Receiver<()>,
) {
    // Events must leave as soon as they are written, not wait for Nagle.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on a client connection");
    }
    // hyper's header timeout starts once the protocol is chosen; this one
    // covers the bytes before that, so a silent client cannot hold a socket.
    match tokio::time::timeout(header_timeout, await_protocol_choice(&stream)).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(_elapsed) => {
            tracing::debug!("closing a client connection that sent no request in time");
            return;
        }
    }

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without half-close, hyper notices a client that closes its socket
    // while its request is in flight and drops the handler, which cancels
    // the upstream call.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .half_close(false);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);

    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Clients that disconnect mid-response end up here; that is normal.
        tracing::debug!(error = %error, "client connection ended with an error");
    }
}

/// Waits until the client has sent enough bytes for hyper-util to choose
/// the protocol: one that differs from the HTTP/2 preface, or all of it.
/// Returns false if the client closed the connection first.
async fn await_protocol_choice(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; H2_PREFACE.len()];
    loop {
        match stream.peek(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) if read == buffer.len() || buffer[..read] != H2_PREFACE[..read] => {
                return true
            }
            Ok(_) => tokio::time::sleep(PREFACE_POLL_INTERVAL).await,
        }
    }
}

/// Errors that concern one connection only; the listener is fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
