//! The limits step of the handler: applies a client token's allow-list,
//! spend caps and rate limits before the request goes upstream, and
//! counts the finished call's usage.
//!
//! Tokens without limits pass with one branch. For a token with an
//! allow-list, the model comes from the path (Gemini's `models/NAME:…`),
//! the `model` query parameter of a WebSocket handshake, or the request
//! body. Reading it from the body means holding back the body's first
//! 64 KiB until the check has passed; the bytes then go upstream
//! unchanged.

use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::request::Parts;

use super::errors::ProxyError;
use super::outcome::{OutcomeRecorder, OutcomeSink, RequestOutcome};
use super::target;
use crate::limits::{ActiveLimits, Admission, Limiter, Rejection};
use crate::requestlog::request::clean_model;
use crate::requestlog::{inspect_request, REQUEST_INSPECT_LIMIT};
use crate::tokens::ClientToken;

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
) -> Result<Body, (ProxyError, Body)> {
    let Some((name, limits)) = limited(client) else {
        return Ok(body);
    };

    let mut model = model_from_path_or_query(parts);
    let body = if model.is_none() && !limits.allow.is_empty() {
        let (prefix, body) = read_prefix(body).await.map_err(|error| {
            let error = ProxyError::RequestBodyFailed {
                source: Box::new(error),
            };
            (error, Body::empty())
        })?;
        model = inspect_request(parts.uri.path(), &prefix).model;
        body
    } else {
        body
    };

    match limiter.admit(name, limits, provider, model.as_deref()) {
        Ok(admission) => {
            recorder.wrap_sink(|inner| {
                Arc::new(LimitedSink {
                    inner,
                    limiter: limiter.clone(),
                    admission,
                })
            });
            Ok(body)
        }
        Err(rejection) => Err((to_error(name, rejection), body)),
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

/// Reads up to [`REQUEST_INSPECT_LIMIT`] bytes of `body` and returns them
/// with a body that yields every byte of the original, in order.
async fn read_prefix(body: Body) -> Result<(Bytes, Body), axum::Error> {
    if http_body::Body::is_end_stream(&body) {
        return Ok((Bytes::new(), body));
    }
    let mut stream = body.into_data_stream();
    let mut prefix = BytesMut::new();
    while prefix.len() < REQUEST_INSPECT_LIMIT {
        match stream.next().await {
            Some(chunk) => prefix.extend_from_slice(&chunk?),
            None => {
                let prefix = prefix.freeze();
                return Ok((prefix.clone(), Body::from(prefix)));
            }
        }
    }
    let prefix = prefix.freeze();
    let head = futures_util::stream::iter([Ok::<_, axum::Error>(prefix.clone())]);
    Ok((prefix, Body::from_stream(head.chain(stream))))
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
