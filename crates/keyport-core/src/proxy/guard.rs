//! The limits step of the handler: applies a client token's allow-list,
//! spend caps and rate limits before the request goes upstream, and
//! counts the finished call's usage.
//!
//! Tokens without limits pass without a check, but their spend is still
//! counted when the request log's prices are known, because a spend cap
//! can be set while the proxy runs. For a token with an allow-list,
//! `allow_list` reads every model the request names.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::request::Parts;

use super::allow_list;
use super::errors::ProxyError;
use super::outcome::{OutcomeRecorder, OutcomeSink, RequestOutcome};
use crate::limits::{ActiveLimits, Admission, Limiter, Rejection};
use crate::tokens::ClientToken;

/// A body whose models are checked as it streams, and the error to
/// respond with if its rest failed the check.
pub(super) struct WatchedBody {
    pub(super) body: Body,
    pub(super) model_changed: Option<Arc<Mutex<Option<ProxyError>>>>,
}

impl WatchedBody {
    /// Returns the error to respond with when the upstream call failed
    /// because the body failed the allow-list check after its first 64 KiB.
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
        track_spend(limiter, client, recorder);
        return Ok(WatchedBody {
            body,
            model_changed: None,
        });
    };

    let mut model = None;
    let mut watched = WatchedBody {
        body,
        model_changed: None,
    };
    if !limits.allow.is_empty() {
        let checked = allow_list::check(name, limits, provider, parts, watched.body).await?;
        model = Some(checked.model);
        watched = WatchedBody {
            body: checked.body,
            model_changed: checked.model_changed,
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
        track_spend(limiter, client, recorder);
        return Ok(());
    };
    let model = if limits.allow.is_empty() {
        None
    } else {
        Some(allow_list::check_websocket(name, limits, provider, parts)?)
    };
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

/// Counts the spend of a call by a token without limits, so that a spend
/// cap set while the proxy runs includes it.
fn track_spend(
    limiter: &Arc<Limiter>,
    client: Option<&ClientToken>,
    recorder: &mut OutcomeRecorder,
) {
    let Some(admission) = client.and_then(|client| limiter.track_spend(&client.name)) else {
        return;
    };
    recorder.wrap_sink(|inner| {
        Arc::new(LimitedSink {
            inner,
            limiter: limiter.clone(),
            admission,
        })
    });
}

fn limited(client: Option<&ClientToken>) -> Option<(&Arc<str>, &Arc<ActiveLimits>)> {
    let client = client?;
    Some((&client.name, client.limits.as_ref()?))
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
        Rejection::ModelUnknown => ProxyError::ModelUnknown {
            token,
            reason: "it names no model",
        },
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
