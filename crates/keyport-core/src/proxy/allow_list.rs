//! Reads every model a request names, for a client token with a model
//! allow-list, and rejects the request unless all of them are allowed.
//!
//! A provider may take the model from the path (Gemini's `models/NAME:…`,
//! Azure's `deployments/NAME/…`), from a `model` query parameter (OpenAI's
//! Realtime API) or from the JSON body, and some read more than one place.
//! So every place is read, each model found must be allowed, and at least
//! one must be found. A body is read with [`ModelScanner`], which decodes
//! JSON escapes and refuses anything a strict parser would refuse.
//!
//! The body's first 64 KiB are held back until the check has passed. The
//! rest streams upstream unchanged while the scan continues, and a chunk
//! that names a model outside the list, or that is not valid JSON, ends the
//! body before it is sent.

use std::sync::{Arc, Mutex};

use axum::body::{Body, BodyDataStream};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::request::Parts;
use percent_encoding::percent_decode_str;

use super::errors::ProxyError;
use super::model_scan::{ModelScanner, Unreadable};
use super::target;
use crate::limits::ActiveLimits;
use crate::requestlog::request::clean_model;
use crate::requestlog::REQUEST_INSPECT_LIMIT;

/// Path segments after which a provider reads a model or deployment name.
const MODEL_SEGMENTS: &[&str] = &["models", "tunedModels", "deployments"];

/// Reason for `model_unknown` when no place names a model.
const NO_MODEL: &str = "it names no model (the JSON body's \"model\" field in its first 64 KiB, a path's models/NAME or deployments/NAME, or a ?model= query parameter)";

/// A request whose models are all allowed.
pub(super) struct Checked {
    /// The model to report to the limiter: from the path, the query or the body, in that order.
    pub(super) model: String,
    pub(super) body: Body,
    /// Filled when the body named a model outside the list after its first 64 KiB.
    pub(super) model_changed: Option<Arc<Mutex<Option<ProxyError>>>>,
}

/// Checks every model that `parts` and `body` name against `limits`, which
/// has an allow-list. On rejection, returns the body that was not sent.
pub(super) async fn check(
    token: &str,
    limits: &Arc<ActiveLimits>,
    provider: &str,
    parts: &Parts,
    body: Body,
) -> Result<Checked, (ProxyError, Body)> {
    let unknown = |reason: &'static str| ProxyError::ModelUnknown {
        token: token.to_string(),
        reason,
    };
    let mut models = match models_in_path_and_query(parts) {
        Ok(models) => models,
        Err(reason) => return Err((unknown(reason), body)),
    };

    let mut watched = None;
    if !http_body::Body::is_end_stream(&body) {
        if let Err(reason) = check_body_headers(parts) {
            return Err((unknown(reason), body));
        }
        let (prefix, rest) = read_prefix(body).await.map_err(|error| {
            let error = ProxyError::RequestBodyFailed {
                source: Box::new(error),
            };
            (error, Body::empty())
        })?;
        let mut scanner = ModelScanner::new();
        let scanned = match &rest {
            _ if prefix.is_empty() && rest.is_none() => Ok(()),
            Some(_) => scanner.push(&prefix),
            None => scanner.push(&prefix).and_then(|()| scanner.finish()),
        };
        if let Err(error) = scanned {
            return Err((unknown(error.reason()), rejoin(prefix, rest)));
        }
        models.extend(scanner.take_models());
        watched = Some((prefix, rest, scanner));
    }

    if let Some(model) = models.iter().find(|model| !limits.allows(provider, model)) {
        let error = ProxyError::ModelNotAllowed {
            token: token.to_string(),
            provider: provider.to_string(),
            model: model.clone(),
        };
        let body = watched.map_or_else(Body::empty, |(prefix, rest, _)| rejoin(prefix, rest));
        return Err((error, body));
    }
    let Some(model) = models.into_iter().next() else {
        let body = watched.map_or_else(Body::empty, |(prefix, rest, _)| rejoin(prefix, rest));
        return Err((unknown(NO_MODEL), body));
    };

    let (body, model_changed) = match watched {
        None => (Body::empty(), None),
        Some((prefix, None, _)) => (Body::from(prefix), None),
        Some((prefix, Some(rest), scanner)) => {
            let watch = RestWatch {
                scanner,
                token: token.to_string(),
                provider: provider.to_string(),
                limits: limits.clone(),
                slot: Arc::new(Mutex::new(None)),
            };
            let slot = watch.slot.clone();
            (watch.into_body(prefix, rest), Some(slot))
        }
    };
    Ok(Checked {
        model,
        body,
        model_changed,
    })
}

/// Checks a WebSocket handshake, which has no body: the path and query must
/// name at least one model, and every one must be allowed.
pub(super) fn check_websocket(
    token: &str,
    limits: &ActiveLimits,
    provider: &str,
    parts: &Parts,
) -> Result<String, ProxyError> {
    let unknown = |reason: &'static str| ProxyError::ModelUnknown {
        token: token.to_string(),
        reason,
    };
    let models = models_in_path_and_query(parts).map_err(unknown)?;
    if let Some(model) = models.iter().find(|model| !limits.allows(provider, model)) {
        return Err(ProxyError::ModelNotAllowed {
            token: token.to_string(),
            provider: provider.to_string(),
            model: model.clone(),
        });
    }
    models.into_iter().next().ok_or_else(|| unknown(NO_MODEL))
}

/// Returns the models named by the path's `models/NAME` or
/// `deployments/NAME` segments and by every `model` query parameter, all
/// percent-decoded the way the provider decodes them. A name that is not a
/// model name is an error, because the provider may still read it.
fn models_in_path_and_query(parts: &Parts) -> Result<Vec<String>, &'static str> {
    const INVALID: &str = "the path or a ?model= query parameter contains an invalid model name";
    let mut models = Vec::new();

    // Decoding before splitting also finds `models%2FNAME`. A provider that
    // decodes `%2F` may also resolve a `..` it forms, as in
    // `models/ALLOWED%2F..%2FOTHER`, so such a path names no known model.
    let path = percent_decode_str(parts.uri.path()).decode_utf8_lossy();
    if target::has_dot_segment(&path) {
        return Err("the path contains an encoded . or .. segment");
    }
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        let names_model = MODEL_SEGMENTS
            .iter()
            .any(|name| segment.eq_ignore_ascii_case(name));
        if !names_model {
            continue;
        }
        // `models` ends the path when a client lists models.
        let Some(name) = segments.next() else {
            break;
        };
        let model = name.split(':').next().unwrap_or_default();
        models.push(clean_model(model).ok_or(INVALID)?);
    }

    if let Some(query) = parts.uri.query() {
        for value in target::query_values(query, "model") {
            models.push(clean_model(&value).ok_or(INVALID)?);
        }
    }
    Ok(models)
}

/// Rejects bodies whose bytes are not the JSON the provider will parse: a
/// compressed body, which the proxy forwards without decoding, and a body
/// sent as a form, where a JSON string could hide a `model` form field.
fn check_body_headers(parts: &Parts) -> Result<(), &'static str> {
    let encoded = parts
        .headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(
            "the body is compressed (Content-Encoding), and the proxy does not decompress it",
        );
    }

    // Every Content-Type header is checked, because the provider may read
    // the last one where this check would read the first.
    if !parts.headers.get_all(CONTENT_TYPE).iter().all(is_json_type) {
        return Err("the body's Content-Type is not JSON in UTF-8");
    }
    Ok(())
}

fn is_json_type(content_type: &http::HeaderValue) -> bool {
    let text = content_type
        .to_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut params = text.split(';').map(str::trim);
    let essence = params.next().unwrap_or_default();
    // Browsers send a string body without a set type as text/plain.
    let json_like =
        essence == "application/json" || essence == "text/plain" || essence.ends_with("+json");
    let other_charset = params.any(|param| {
        param
            .strip_prefix("charset=")
            .is_some_and(|charset| !matches!(charset.trim_matches('"'), "utf-8" | "utf8"))
    });
    json_like && !other_charset
}

/// Reads up to [`REQUEST_INSPECT_LIMIT`] bytes of `body`. Returns them
/// with the rest of the body, or None for the rest when the body ended.
async fn read_prefix(body: Body) -> Result<(Bytes, Option<BodyDataStream>), axum::Error> {
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

fn rejoin(prefix: Bytes, rest: Option<BodyDataStream>) -> Body {
    let Some(rest) = rest else {
        return Body::from(prefix);
    };
    let head = futures_util::stream::iter([Ok::<_, axum::Error>(prefix)]);
    Body::from_stream(head.chain(rest))
}

/// Error that ends the upstream body when its rest fails the check.
#[derive(Debug, thiserror::Error)]
#[error("the request body failed the model allow-list check after its first 64 KiB")]
struct BodyRejected;

/// The scan of a body's rest, after its first 64 KiB passed.
struct RestWatch {
    scanner: ModelScanner,
    token: String,
    provider: String,
    limits: Arc<ActiveLimits>,
    slot: Arc<Mutex<Option<ProxyError>>>,
}

impl RestWatch {
    /// Streams `prefix`, then `rest` chunk by chunk, each only after it passed.
    fn into_body(self, prefix: Bytes, rest: BodyDataStream) -> Body {
        let checked = futures_util::stream::unfold(Some((rest, self)), |state| async move {
            let (mut rest, mut watch) = state?;
            let result = match rest.next().await {
                Some(Ok(chunk)) => watch.chunk(&chunk).map(|()| chunk),
                Some(Err(error)) => return Some((Err(axum::BoxError::from(error)), None)),
                None => match watch.scanner.finish() {
                    Ok(()) => return None,
                    Err(error) => Err(watch.unknown(error)),
                },
            };
            match result {
                Ok(chunk) => Some((Ok(chunk), Some((rest, watch)))),
                Err(error) => Some((Err(watch.stop(error)), None)),
            }
        });
        let head = futures_util::stream::iter([Ok::<_, axum::BoxError>(prefix)]);
        Body::from_stream(head.chain(checked))
    }

    fn chunk(&mut self, chunk: &[u8]) -> Result<(), ProxyError> {
        self.scanner
            .push(chunk)
            .map_err(|error| self.unknown(error))?;
        for model in self.scanner.take_models() {
            if !self.limits.allows(&self.provider, &model) {
                return Err(ProxyError::ModelNotAllowed {
                    token: self.token.clone(),
                    provider: self.provider.clone(),
                    model,
                });
            }
        }
        Ok(())
    }

    fn unknown(&self, error: Unreadable) -> ProxyError {
        ProxyError::ModelUnknown {
            token: self.token.clone(),
            reason: error.reason(),
        }
    }

    /// Keeps `error` for the response and returns the error that ends the body.
    fn stop(&self, error: ProxyError) -> axum::BoxError {
        tracing::warn!(
            token = %self.token,
            code = error.code(),
            "the request body failed the allow-list check after its first 64 KiB; ending it before it reaches the provider"
        );
        match self.slot.lock() {
            Ok(mut slot) => {
                slot.get_or_insert(error);
            }
            Err(poisoned) => {
                poisoned.into_inner().get_or_insert(error);
            }
        }
        axum::BoxError::from(BodyRejected)
    }
}
