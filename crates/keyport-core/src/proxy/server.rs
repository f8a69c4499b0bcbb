//! The accept loop: one hyper connection task per client, graceful
//! shutdown with a bounded grace period.

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

/// Maximum wait for a client's request headers, against idle sockets that
/// never send a request.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
                    connections.spawn(serve_connection(stream, service.clone(), stop.clone()));
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
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "closing connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    tracing::info!(%address, "proxy stopped");
    Ok(())
}

type Service = TowerToHyperService<axum::Router>;

async fn serve_connection(stream: TcpStream, service: Service, mut stop: watch::Receiver<()>) {
    // Events must leave as soon as they are written, not wait for Nagle.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on a client connection");
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without half-close, hyper notices a client that closes its socket
    // while its request is in flight and drops the handler, which cancels
    // the upstream call.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .half_close(false);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
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

/// Errors that concern one connection only; the listener is fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
