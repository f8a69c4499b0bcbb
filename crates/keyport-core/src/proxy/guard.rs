//! The limits step of the handler: applies a client token's allow-list,
//! spend caps and rate limits before the request goes upstream, and
//! counts the finished call's usage.
//!
//! Tokens without limits pass with one branch. For a token with an
//! allow-list, the model comes from the path (Gemini's `models/NAME:…`),
//! the `model` query parameter of a WebSocket handshake, or the request
//! body. Reading it from the body means holding back the body's first
//! 64 KiB until the check has passed. The bytes then go upstream
//! unchanged, and the rest of the body is scanned for a later `"model"`.
//!
//! NOTE: a key spelled with JSON escapes (`"mod\u0065l"`) is not read as
//! `model`, so a crafted body can still name a model the list excludes.

use std::sync::{Arc, Mutex};

use axum::body::{Body, BodyDataStream};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::request::Parts;

use super::errors::ProxyError;
use super::outcome::{OutcomeRecorder, OutcomeSink, RequestOutcome};
use super::target;
use crate::limits::{ActiveLimits, Admission, Limiter, Rejection};
use crate::requestlog::json_scan::{JsonScanner, KeyPath};
use crate::requestlog::request::clean_model;
use crate::requestlog::{inspect_request, REQUEST_INSPECT_LIMIT};
use crate::tokens::ClientToken;

/// The body field that names the model, as the request log reads it.
const MODEL_PATH: &[KeyPath] = &[&["model"]];

/// A body whose `"model"` is checked as it streams, and the error to
/// respond with if it names another model than the one admitted.
pub(super) struct WatchedBody {
    pub(super) body: Body,
    pub(super) model_changed: Option<Arc<Mutex<Option<ProxyError>>>>,
}

impl WatchedBody {
    /// Returns the error to respond with when the upstream call failed
    /// because the body named another model after its first 64 KiB.
    pub(super) fn take_error(&self) -> Option<ProxyError> {
        let slot = self.model_changed.as_ref()?;
        match slot.lock() {
            Ok(mut error) => error.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// Checks `client`'s limits and returns the body to send upstream, which
/// contains the same bytes as `body`. On admission, the recorder reports the
/// call's usage to the limiter when the call ends.
pub(super) async fn admit(
    limiter: &Arc<Limiter>,
    client: Option<&ClientToken>,
    provider: &str,
    parts: &Parts,
    body: Body,
    recorder: &mut OutcomeRecorder,
) -> Result<WatchedBody, (ProxyError, Body)> {
    let Some((name, limits)) = limited(client) else {
        return Ok(WatchedBody {
            body,
            model_changed: None,
        });
    };

    let mut model = model_from_path_or_query(parts);
    let mut watched = WatchedBody {
        body,
        model_changed: None,
    };
    if model.is_none() && !limits.allow.is_empty() {
        let (prefix, rest) = read_prefix(watched.body).await.map_err(|error| {
            let error = ProxyError::RequestBodyFailed {
                source: Box::new(error),
            };
            (error, Body::empty())
        })?;
        model = inspect_request(parts.uri.path(), &prefix).model;
        let mut scanner = JsonScanner::new(MODEL_PATH);
        scanner.push(&prefix);
        if scanner.is_stopped() {
            // Nesting too deep to follow could hide a later "model" field.
            model = None;
        }
        watched = match (rest, &model) {
            (Some(rest), Some(admitted)) => {
                watch_model(prefix, rest, scanner, name, provider, admitted, limits)
            }
            (Some(rest), None) => WatchedBody {
                body: rejoin(prefix, rest),
                model_changed: None,
            },
            (None, _) => WatchedBody {
                body: Body::from(prefix),
                model_changed: None,
            },
        };
    }

    match limiter.admit(name, limits, provider, model.as_deref()) {
        Ok(admission) => {
            recorder.wrap_sink(|inner| {
                Arc::new(LimitedSink {
                    inner,
                    limiter: limiter.clone(),
                    admission,
                })
            });
            Ok(watched)
        }
        Err(rejection) => Err((to_error(name, rejection), watched.body)),
    }
}

/// Checks a WebSocket handshake, which has no body to read a model from.
pub(super) fn admit_websocket(
    limiter: &Arc<Limiter>,
    client: Option<&ClientToken>,
    provider: &str,
    parts: &Parts,
    recorder: &mut OutcomeRecorder,
) -> Result<(), ProxyError> {
    let Some((name, limits)) = limited(client) else {
        return Ok(());
    };
    let model = model_from_path_or_query(parts);
    let admission = limiter
        .admit(name, limits, provider, model.as_deref())
        .map_err(|rejection| to_error(name, rejection))?;
    recorder.wrap_sink(|inner| {
        Arc::new(LimitedSink {
            inner,
            limiter: limiter.clone(),
            admission,
        })
    });
    Ok(())
}

fn limited(client: Option<&ClientToken>) -> Option<(&Arc<str>, &Arc<ActiveLimits>)> {
    let client = client?;
    Some((&client.name, client.limits.as_ref()?))
}

/// Returns the model named in a Gemini-style path or in a `model` query
/// parameter (OpenAI's Realtime API), as the request log reads it.
fn model_from_path_or_query(parts: &Parts) -> Option<String> {
    let from_path = inspect_request(parts.uri.path(), &[]).model;
    from_path.or_else(|| {
        let query = parts.uri.query()?;
        let value = target::query_values(query, "model").next()?;
        clean_model(&value)
    })
}

/// Reads up to [`REQUEST_INSPECT_LIMIT`] bytes of `body`. Returns them
/// with the rest of the body, or None for the rest when the body ended.
async fn read_prefix(body: Body) -> Result<(Bytes, Option<BodyDataStream>), axum::Error> {
    if http_body::Body::is_end_stream(&body) {
        return Ok((Bytes::new(), None));
    }
    let mut stream = body.into_data_stream();
    let mut prefix = BytesMut::new();
    while prefix.len() < REQUEST_INSPECT_LIMIT {
        match stream.next().await {
            Some(chunk) => prefix.extend_from_slice(&chunk?),
            None => return Ok((prefix.freeze(), None)),
        }
    }
    Ok((prefix.freeze(), Some(stream)))
}

fn rejoin(prefix: Bytes, rest: BodyDataStream) -> Body {
    let head = futures_util::stream::iter([Ok::<_, axum::Error>(prefix)]);
    Body::from_stream(head.chain(rest))
}

/// Error that ends the upstream body when it names another model.
#[derive(Debug, thiserror::Error)]
#[error("the request body names a model after its first 64 KiB")]
struct ModelChanged;

/// Streams a body whose model was admitted from its first 64 KiB, which
/// `scanner` has read, scanning the rest for a later top-level `"model"`, which most JSON parsers would
/// take instead. A different value, or JSON nested too deep to follow,
/// ends the body before the chunk that contains it goes upstream, so the
/// provider never receives a complete request.
fn watch_model(
    prefix: Bytes,
    rest: BodyDataStream,
    mut scanner: JsonScanner,
    token: &str,
    provider: &str,
    admitted: &str,
    limits: &ActiveLimits,
) -> WatchedBody {
    let mut admitted_raw = scanner.result(0).map(<[u8]>::to_vec);
    let slot = Arc::new(Mutex::new(None));
    let changed = slot.clone();
    let (token, provider, admitted) = (
        token.to_string(),
        provider.to_string(),
        admitted.to_string(),
    );
    let allow = limits.allow.clone();

    let checked = rest.map(move |chunk| {
        let chunk = chunk.map_err(axum::BoxError::from)?;
        scanner.push(&chunk);
        if scanner.result(0) == admitted_raw.as_deref() && !scanner.is_stopped() {
            return Ok(chunk);
        }
        let model = match scanner.value(0) {
            Some(serde_json::Value::String(model)) if !scanner.is_stopped() => clean_model(&model),
            _ => None,
        };
        let error = match model {
            Some(model) if allow.iter().any(|pattern| pattern.matches(&provider, &model)) => {
                // Another allowed model: the request stays within the list.
                admitted_raw = scanner.result(0).map(<[u8]>::to_vec);
                return Ok(chunk);
            }
            Some(model) => ProxyError::ModelNotAllowed {
                token: token.clone(),
                provider: provider.clone(),
                model,
            },
            None => ProxyError::ModelUnknown {
                token: token.clone(),
            },
        };
        tracing::warn!(%admitted, code = error.code(), "the request body names another model after its first 64 KiB; ending it before it reaches the provider");
        if let Ok(mut slot) = changed.lock() {
            slot.get_or_insert(error);
        }
        Err(axum::BoxError::from(ModelChanged))
    });
    let head = futures_util::stream::iter([Ok::<_, axum::BoxError>(prefix)]);
    WatchedBody {
        body: Body::from_stream(head.chain(checked)),
        model_changed: Some(slot),
    }
}

/// Passes outcomes on to the request's sink after counting their usage.
struct LimitedSink {
    inner: Arc<dyn OutcomeSink>,
    limiter: Arc<Limiter>,
    admission: Admission,
}

impl OutcomeSink for LimitedSink {
    fn record(&self, outcome: &RequestOutcome) {
        if let Some(usage) = &outcome.usage {
            self.limiter.record_usage(
                &self.admission,
                &outcome.provider,
                outcome.model.as_deref(),
                usage,
            );
        }
        self.inner.record(outcome);
    }

    fn body_capture_limit(&self) -> Option<usize> {
        self.inner.body_capture_limit()
    }
}

fn to_error(token: &str, rejection: Rejection) -> ProxyError {
    let token = token.to_string();
    match rejection {
        Rejection::ModelNotAllowed { provider, model } => ProxyError::ModelNotAllowed {
            token,
            provider,
            model,
        },
        Rejection::ModelUnknown => ProxyError::ModelUnknown { token },
        Rejection::SpendCap {
            period,
            cap_usd,
            spent_usd,
            resets_at,
        } => ProxyError::SpendCapReached {
            token,
            period: period.as_str(),
            cap_usd,
            spent_usd,
            resets_at: resets_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        },
        Rejection::RateLimited {
            kind,
            limit,
            retry_after_secs,
        } => ProxyError::RateLimited {
            token,
            unit: kind.unit(),
            limit,
            retry_after_secs,
        },
    }
}
