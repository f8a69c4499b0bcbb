//! The router and the request handler, one function per step.
//!
//! `forward` runs the steps in order: resolve the provider, check Host and
//! Origin (responding to preflights itself), authenticate the client, select the vault
//! key, build the upstream request, send it and stream the response back.
//! The outcome recorder travels along and logs the request when its
//! response ends.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, StatusCode};
use reqwest::Url;
use tracing::instrument;

use super::auth::{self, ClientCredentials, TOKEN_QUERY_PARAM};
use super::body::{self, ResponseStream};
use super::cors::{self, Cors};
use super::errors::ProxyError;
use super::guard;
use super::headers;
use super::outcome::{OutcomeEnd, OutcomeRecorder};
use super::target::{self, KeyParam};
use super::via;
use super::websocket;
use super::ProxyState;
use crate::providers::{AuthStyle, ErrorShape, Provider};
use crate::requestlog::UsageFormat;
use crate::secret::SecretString;
use crate::tokens::ClientToken;

/// Builds the proxy's router: `/llm/{provider}/...` for provider calls,
/// `/healthz`, and a JSON 404 for everything else.
pub fn router(state: ProxyState) -> Router {
    Router::new()
        .route("/healthz", any(health))
        .route("/llm/{provider}", any(forward))
        .route("/llm/{provider}/", any(forward))
        .route("/llm/{provider}/{*rest}", any(forward))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /healthz`: whether the proxy runs and the vault is unlocked. It
/// needs no token and reveals no key or provider.
async fn health(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let shape = ErrorShape::OpenAi;
    let cors = match check_browser(&state, &parts) {
        Ok(cors) => cors,
        Err(error) => return reject(error, shape, &Cors::default(), body, None).await,
    };
    if cors::is_preflight(&parts.method, &parts.headers) {
        return cors.preflight_response(&parts.headers);
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let error = ProxyError::MethodNotAllowed {
            method: parts.method.to_string(),
        };
        return reject(error, shape, &cors, body, None).await;
    }
    let vault = if state.shared.keys.is_unlocked() {
        "unlocked"
    } else {
        "locked"
    };
    let text = serde_json::json!({ "status": "ok", "vault": vault }).to_string();
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    cors.apply(response.headers_mut());
    response
}

/// Responds with 404 to every path that is neither `/healthz` nor a
/// provider route.
async fn not_found(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let shape = ErrorShape::OpenAi;
    let cors = match check_browser(&state, &parts) {
        Ok(cors) => cors,
        Err(error) => return reject(error, shape, &Cors::default(), body, None).await,
    };
    if cors::is_preflight(&parts.method, &parts.headers) {
        return cors.preflight_response(&parts.headers);
    }
    let error = ProxyError::NotFound {
        path: parts.uri.path().chars().take(200).collect(),
    };
    reject(error, shape, &cors, body, None).await
}

/// `/llm/{provider}/{rest}`: forwards any method to the provider.
///
/// The `request` span is at debug level. Creating, entering and printing it
/// cost about a tenth of the proxy's CPU per request at info level, and the
/// one info line per request already names the provider, method and path.
#[instrument(name = "request", level = "debug", skip_all, fields(
    provider = %target::split_llm_path(request.uri().path()).map_or("", |(id, _)| id),
    method = %request.method(),
    path = %request.uri().path(),
))]
async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let (provider_id, rest) = target::split_llm_path(parts.uri.path()).unwrap_or_default();
    let provider = state.shared.providers.get(provider_id);
    let shape = provider.map_or(ErrorShape::OpenAi, |provider| provider.error_shape);

    // The recorder starts first so that requests rejected by the Host and
    // Origin checks are logged like every other rejection.
    let mut recorder = OutcomeRecorder::start(
        state.sink.clone(),
        state.shared.activity.begin(),
        provider_id,
        &parts.method,
        parts.uri.path(),
        UsageFormat::from(shape),
    );
    recorder.set_origin(
        parts
            .headers
            .get(http::header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
    );
    let cors = match check_browser(&state, &parts) {
        Ok(cors) => cors,
        Err(error) => return reject(error, shape, &Cors::default(), body, Some(recorder)).await,
    };
    if cors::is_preflight(&parts.method, &parts.headers) {
        // Preflights carry no credentials and reach no provider, so they
        // are not request-log rows.
        recorder.discard();
        tracing::debug!("responded to CORS preflight");
        return cors.preflight_response(&parts.headers);
    }

    let prepared = match prepare(&state, &parts, provider_id, rest, &mut recorder) {
        Ok(prepared) => prepared,
        Err(error) => return reject(error, shape, &cors, body, Some(recorder)).await,
    };
    let client = prepared.client.as_ref();
    if websocket::is_upgrade_request(&parts.method, &parts.headers) {
        let admitted = guard::admit_websocket(
            &state.limiter,
            client,
            &prepared.provider,
            &parts,
            &mut recorder,
        );
        if let Err(error) = admitted {
            return reject(error, shape, &cors, body, Some(recorder)).await;
        }
        return websocket::forward(&state, prepared, &mut parts, &cors, shape, recorder).await;
    }
    let admitted = guard::admit(
        &state.limiter,
        client,
        &prepared.provider,
        &parts,
        body,
        &mut recorder,
    )
    .await;
    let mut watched = match admitted {
        Ok(watched) => watched,
        Err((error, body)) => return reject(error, shape, &cors, body, Some(recorder)).await,
    };
    let body = std::mem::take(&mut watched.body);
    let upstream = match send_upstream(&state, prepared, &parts.method, body, &recorder).await {
        Ok(response) => response,
        Err(error) => {
            let error = watched.take_error().unwrap_or(error);
            return reject(error, shape, &cors, Body::empty(), Some(recorder)).await;
        }
    };
    stream_response(&state, upstream, &parts.method, &cors, recorder)
}

/// Host check against DNS rebinding, then the Origin allow-list.
fn check_browser(state: &ProxyState, parts: &Parts) -> Result<Cors, ProxyError> {
    cors::check_host(&state.shared.config, &parts.uri, &parts.headers)?;
    cors::check_origin(&state.shared.config, &parts.headers)
}

/// Everything needed to send the upstream request, except its body.
pub(super) struct Prepared {
    pub(super) provider: String,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    /// The authenticated client token, with its limits.
    pub(super) client: Option<ClientToken>,
}

/// Runs the checks that need no body, in order, and builds the upstream
/// URL and headers.
fn prepare(
    state: &ProxyState,
    parts: &Parts,
    provider_id: &str,
    rest: &str,
    recorder: &mut OutcomeRecorder,
) -> Result<Prepared, ProxyError> {
    let shared = &state.shared;
    let provider = resolve_provider(state, provider_id)?;
    if parts.method == Method::CONNECT || parts.method == Method::TRACE {
        return Err(ProxyError::MethodNotAllowed {
            method: parts.method.to_string(),
        });
    }
    // Before the token check, which the looped request would fail with a
    // misleading message.
    if via::process_name().is_looped(&parts.headers) {
        return Err(ProxyError::ProxyLoop {
            provider: provider.id.clone(),
        });
    }

    let credentials = ClientCredentials::collect(&parts.headers, parts.uri.query(), &provider.auth);
    let client = auth::authenticate(&shared.tokens, shared.config.require_token, &credentials)?;
    let token_name = client.as_ref().map(|client| client.name.clone());
    let requested = match auth::requested_label(&parts.headers) {
        Ok(requested) => requested,
        Err(error) => {
            recorder.set_client(token_name, None);
            return Err(error);
        }
    };
    let choice = auth::effective_label(client.as_ref(), &provider.id, requested.clone());
    // A rejected choice is logged with the label the client asked for.
    let logged_label = match &choice {
        Ok(choice) => choice.as_ref().map(|choice| choice.label.clone()),
        Err(_) => requested,
    };
    recorder.set_client(token_name, logged_label);
    let choice = choice?;

    check_declared_length(&parts.headers, shared.config.max_request_body_bytes)?;
    let key = auth::select_key(&shared.keys, provider, choice.as_ref())?;
    if let Some(key) = &key {
        recorder.redact_in_bodies(key);
    }
    let mut prepared =
        build_upstream(provider, parts, rest, key.as_ref(), credentials.sent_bearer)?;
    via::process_name().append(&mut prepared.headers, parts.version);
    prepared.client = client;
    Ok(prepared)
}

fn resolve_provider<'a>(state: &'a ProxyState, id: &str) -> Result<&'a Provider, ProxyError> {
    let providers = &state.shared.providers;
    providers
        .get(id)
        .ok_or_else(|| ProxyError::UnknownProvider {
            provider: id.chars().take(64).collect(),
            known: providers.ids_for_message(),
        })
}

/// Rejects a body that declares more bytes than the limit before any of
/// it is read. Bodies without Content-Length are counted as they stream.
fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), ProxyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(ProxyError::BodyTooLarge { limit_bytes: limit }),
        _ => Ok(()),
    }
}

/// Builds the upstream URL and headers: client credentials removed everywhere,
/// the vault key added once in the provider's auth style.
pub(super) fn build_upstream(
    provider: &Provider,
    parts: &Parts,
    rest: &str,
    key: Option<&SecretString>,
    client_sent_bearer: bool,
) -> Result<Prepared, ProxyError> {
    let query = parts
        .uri
        .query()
        .and_then(|query| target::remove_params(query, &credential_params(&provider.auth)));
    let key_param = match (&provider.auth, key) {
        (AuthStyle::Query(name), Some(key)) => Some(KeyParam { name, key }),
        _ => None,
    };
    let url = target::upstream_url(&provider.base_url, rest, query.as_deref(), key_param)?;

    let mut headers = headers::upstream_request_headers(&parts.headers, &provider.auth);
    if let Some(key) = key {
        auth::inject_key_header(&mut headers, provider, key, client_sent_bearer)?;
    }
    Ok(Prepared {
        provider: provider.id.clone(),
        url,
        headers,
        client: None,
    })
}

/// Returns the query parameters that carry client credentials: `key`, and
/// the provider's own key parameter.
pub(super) fn credential_params(auth: &AuthStyle) -> Vec<&str> {
    let mut names = vec![TOKEN_QUERY_PARAM];
    if let AuthStyle::Query(name) = auth {
        names.push(name);
    }
    names
}

/// Sends the request with the client's body streaming behind it, and waits
/// for the response headers.
async fn send_upstream(
    state: &ProxyState,
    prepared: Prepared,
    method: &Method,
    body: Body,
    recorder: &OutcomeRecorder,
) -> Result<reqwest::Response, ProxyError> {
    let fault = Arc::new(OnceLock::new());
    let mut request = reqwest::Request::new(method.clone(), prepared.url);
    *request.headers_mut() = prepared.headers;
    *request.body_mut() = body::limited_request_body(
        body,
        state.shared.config.max_request_body_bytes,
        recorder.request_bytes(),
        recorder.request_prefix(),
        fault.clone(),
    );
    state
        .shared
        .upstream
        .send(&prepared.provider, request, &fault)
        .await
}

/// Turns the provider's response into the client's: same status, headers
/// minus hop-by-hop ones plus CORS, and the body streamed chunk by chunk.
pub(super) fn stream_response(
    state: &ProxyState,
    upstream: reqwest::Response,
    method: &Method,
    cors: &Cors,
    mut recorder: OutcomeRecorder,
) -> Response {
    let status = upstream.status();
    let mut headers = headers::client_response_headers(upstream.headers());
    cors.apply(&mut headers);
    recorder.set_upstream_response(status, upstream.headers());
    tracing::debug!(
        status = status.as_u16(),
        "upstream response headers received"
    );

    let bodyless = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if bodyless {
        recorder.finish(OutcomeEnd::Completed);
        Body::empty()
    } else {
        let idle_timeout = state.shared.config.upstream_idle_timeout;
        body::response_body(ResponseStream::new(upstream, idle_timeout, recorder))
    };

    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Responds with a proxy-made error in the route's provider shape. The
/// rest of the request body is read first so the client receives the response.
pub(super) async fn reject(
    error: ProxyError,
    shape: ErrorShape,
    cors: &Cors,
    body: Body,
    recorder: Option<OutcomeRecorder>,
) -> Response {
    error.log();
    let prefix = recorder.as_ref().map(OutcomeRecorder::request_prefix);
    let drained = body::drain(body, prefix.as_deref()).await;
    if let Some(recorder) = recorder {
        recorder.add_request_bytes(drained);
        recorder.reject(error.status(), error.code());
    }
    let mut response = error.to_response(shape);
    cors.apply(response.headers_mut());
    response
}
