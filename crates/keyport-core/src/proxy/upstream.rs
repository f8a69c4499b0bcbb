//! The HTTP client that talks to providers, and the wait for their
//! response headers.
//!
//! reqwest is built without its gzip, brotli and deflate features, so
//! compressed bodies pass through with their `Content-Encoding` and
//! `Content-Length` intact. Redirects are returned to the client, never
//! followed: following one could carry the key to another host. Nothing is
//! retried.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::{Client, Request, Response, Url};

use super::body::BodyFault;
use super::errors::ProxyError;
use crate::config::ProxyConfig;

/// How long an unused upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The two upstream clients: one that honours the `HTTPS_PROXY` family of
/// environment variables for remote providers, and one that always
/// connects directly, for providers on this machine such as Ollama.
///
/// WebSocket handshakes use a second pair that speaks only HTTP/1.1: an
/// `Upgrade` cannot travel over HTTP/2, which TLS negotiation would otherwise
/// pick for providers that offer it.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    remote: Client,
    direct: Client,
    websocket_remote: Client,
    websocket_direct: Client,
    response_timeout: Duration,
    connect_timeout: Duration,
    max_request_body_bytes: u64,
}

impl Upstream {
    pub(crate) fn new(config: &ProxyConfig) -> Result<Self, ProxyError> {
        let builder = || {
            Client::builder()
                .connect_timeout(config.upstream_connect_timeout)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                // reqwest 0.12 resends requests refused at the protocol
                // level by default; the proxy leaves every retry to the
                // client, which knows whether one is safe.
                .retry(reqwest::retry::never())
                .tcp_nodelay(true)
        };
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .build()
                .map_err(|source| ProxyError::HttpClient { source })
        };
        Ok(Self {
            remote: build(builder())?,
            direct: build(builder().no_proxy())?,
            websocket_remote: build(builder().http1_only())?,
            websocket_direct: build(builder().http1_only().no_proxy())?,
            response_timeout: config.upstream_response_timeout,
            connect_timeout: config.upstream_connect_timeout,
            max_request_body_bytes: config.max_request_body_bytes,
        })
    }

    /// Returns whether `url` points at this machine, which is reached directly
    /// and never through an `HTTPS_PROXY`.
    fn is_local(url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Sends `request` and waits for the response headers, at most the
    /// configured response timeout. `body_fault` tells whether the request
    /// body stream stopped on purpose.
    pub(crate) async fn send(
        &self,
        provider: &str,
        request: Request,
        body_fault: &Arc<OnceLock<BodyFault>>,
    ) -> Result<Response, ProxyError> {
        let client = if Self::is_local(request.url()) {
            &self.direct
        } else {
            &self.remote
        };
        self.execute(client, provider, request, body_fault).await
    }

    /// Sends a WebSocket handshake over HTTP/1.1 and waits for the response
    /// headers, at most the configured response timeout.
    pub(crate) async fn send_websocket(
        &self,
        provider: &str,
        request: Request,
    ) -> Result<Response, ProxyError> {
        let client = if Self::is_local(request.url()) {
            &self.websocket_direct
        } else {
            &self.websocket_remote
        };
        self.execute(client, provider, request, &Arc::new(OnceLock::new()))
            .await
    }

    async fn execute(
        &self,
        client: &Client,
        provider: &str,
        request: Request,
        body_fault: &Arc<OnceLock<BodyFault>>,
    ) -> Result<Response, ProxyError> {
        let sent = tokio::time::timeout(self.response_timeout, client.execute(request)).await;
        if let Some(fault) = body_fault.get() {
            return Err(self.body_error(*fault));
        }
        match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(self.classify(provider, error.without_url())),
            Err(_elapsed) => Err(ProxyError::UpstreamTimeout {
                provider: provider.to_string(),
                timeout: self.response_timeout,
                setting: "proxy.upstream_response_timeout_secs",
            }),
        }
    }

    fn body_error(&self, fault: BodyFault) -> ProxyError {
        match fault {
            BodyFault::TooLarge => ProxyError::BodyTooLarge {
                limit_bytes: self.max_request_body_bytes,
            },
            BodyFault::ClientFailed => ProxyError::RequestBodyFailed {
                source: "the client closed the connection or sent an invalid body".into(),
            },
        }
    }

    fn classify(&self, provider: &str, error: reqwest::Error) -> ProxyError {
        let provider = provider.to_string();
        if error.is_timeout() {
            ProxyError::UpstreamTimeout {
                provider,
                timeout: self.connect_timeout,
                setting: "proxy.upstream_connect_timeout_secs",
            }
        } else if error.is_connect() {
            ProxyError::UpstreamUnreachable {
                provider,
                source: error,
            }
        } else {
            ProxyError::UpstreamFailed {
                provider,
                source: error,
            }
        }
    }
}
