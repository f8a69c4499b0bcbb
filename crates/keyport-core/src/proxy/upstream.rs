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
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    remote: Client,
    direct: Client,
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
        let remote = builder()
            .build()
            .map_err(|source| ProxyError::HttpClient { source })?;
        let direct = builder()
            .no_proxy()
            .build()
            .map_err(|source| ProxyError::HttpClient { source })?;
        Ok(Self {
            remote,
            direct,
            response_timeout: config.upstream_response_timeout,
            connect_timeout: config.upstream_connect_timeout,
            max_request_body_bytes: config.max_request_body_bytes,
        })
    }

    fn client_for(&self, url: &Url) -> &Client {
        let host = url.host_str().unwrap_or_default();
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        let local = host.eq_ignore_ascii_case("localhost")
            || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if local {
            &self.direct
        } else {
            &self.remote
        }
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
        let client = self.client_for(request.url()).clone();
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
