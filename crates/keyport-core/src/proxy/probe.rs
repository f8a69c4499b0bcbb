//! Testing a stored key with the cheapest authenticated call a provider
//! offers: listing its models.
//!
//! The probe builds its request with the proxy's own code (path joining,
//! credential stripping, key injection) and sends it with the proxy's
//! upstream client, so a key that passes here works through the proxy. It
//! reads the status only: the response body is dropped unread and never
//! returned, and no message contains the key.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Method, Request};

use super::errors::ProxyError;
use super::routes::build_upstream;
use super::upstream::Upstream;
use super::via;
use crate::config::ProxyConfig;
use crate::providers::{ErrorShape, Provider};
use crate::secret::SecretString;

/// `anthropic-version` sent with Anthropic's model list, the version its
/// API reference uses in every example.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Result of a key test. It carries no key and no response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// True when the provider responded with a 2xx status.
    pub ok: bool,
    /// The provider's HTTP status; None when no response arrived.
    pub status: Option<u16>,
    pub latency: Duration,
    pub message: String,
}

/// Returns the model-list path below the provider's base URL, as the
/// proxy would join it. OpenAI-compatible presets include `/v1` in their
/// base URL; Anthropic, Gemini and Mistral bases are the bare host.
pub fn model_list_path(provider: &Provider) -> &'static str {
    if provider.id == "ollama" {
        return "/api/tags";
    }
    match provider.error_shape {
        ErrorShape::Anthropic | ErrorShape::Mistral => "/v1/models",
        ErrorShape::Google => "/v1beta/models",
        ErrorShape::OpenAi => "/models",
    }
}

/// Sends `GET {base}{model list}` with `key` injected as the proxy injects
/// it, waiting at most `timeout` for the response headers.
pub async fn probe_key(
    config: &ProxyConfig,
    provider: &Provider,
    key: Option<&SecretString>,
    timeout: Duration,
) -> ProbeResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, send_probe(config, provider, key)).await;
    let latency = started.elapsed();
    let id = &provider.id;
    match outcome {
        Err(_elapsed) => ProbeResult {
            ok: false,
            status: None,
            latency,
            message: format!(
                "the {id} API did not answer within {} s; check the network and the provider's base URL",
                timeout.as_secs()
            ),
        },
        Ok(Err(error)) => ProbeResult {
            ok: false,
            status: None,
            latency,
            message: error.to_string(),
        },
        Ok(Ok(status)) => ProbeResult {
            ok: status.is_success(),
            status: Some(status.as_u16()),
            latency,
            message: describe_status(id, status),
        },
    }
}

async fn send_probe(
    config: &ProxyConfig,
    provider: &Provider,
    key: Option<&SecretString>,
) -> Result<http::StatusCode, ProxyError> {
    let path = model_list_path(provider);
    let mut builder = Request::builder().method(Method::GET).uri(path);
    if provider.error_shape == ErrorShape::Anthropic {
        builder = builder.header("anthropic-version", ANTHROPIC_VERSION);
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|_| ProxyError::InvalidPath)?
        .into_parts();
    let mut prepared = build_upstream(provider, &parts, path, key, false)?;
    via::process_name().append(&mut prepared.headers, http::Version::HTTP_11);

    let upstream = Upstream::new(config)?;
    let mut request = reqwest::Request::new(Method::GET, prepared.url);
    *request.headers_mut() = prepared.headers;
    let response = upstream
        .send(&prepared.provider, request, &Arc::new(OnceLock::new()))
        .await?;
    // The body may list account details; it is dropped unread.
    Ok(response.status())
}

fn describe_status(id: &str, status: http::StatusCode) -> String {
    let code = status.as_u16();
    match code {
        200..=299 => format!("the key works: the {id} API listed its models ({code})"),
        401 | 403 => format!(
            "the {id} API rejected the key ({code}); check that it is current and allowed to list models"
        ),
        404 => format!(
            "the {id} API has no model list at this base URL ({code}); the key may still work, check the base URL"
        ),
        429 => format!("the {id} API is rate limiting this key ({code}); try again later"),
        508 => format!(
            "the {id} base URL points back at Keyport itself ({code}); set it to the provider's API"
        ),
        500..=599 => format!("the {id} API failed ({code}); try again later"),
        _ => format!("the {id} API answered {code}"),
    }
}
