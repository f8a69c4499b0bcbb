//! Entry points for the fuzz targets and property tests: the pure steps of
//! the request handler, with no server, vault or token store behind them.
//!
//! Not a stable API. It exists so that `fuzz/` and `tests/` can drive the
//! same code the handler runs.

use http::{HeaderMap, Uri};
use reqwest::Url;

use super::auth::ClientCredentials;
use super::errors::ProxyError;
use super::{auth, headers, routes, target};
use crate::providers::{AuthStyle, Provider};
use crate::secret::SecretString;

/// Query parameter that may carry a client token for every provider.
pub const TOKEN_QUERY_PARAM: &str = auth::TOKEN_QUERY_PARAM;

/// Every header in which a client may present a credential.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 6] = headers::CLIENT_CREDENTIAL_HEADERS;

/// Splits `/llm/{provider}{rest}` into the provider segment and the rest.
pub fn split_llm_path(path: &str) -> Option<(&str, &str)> {
    target::split_llm_path(path)
}

/// Removes every query parameter whose decoded name is in `names`.
pub fn remove_params(query: &str, names: &[&str]) -> Option<String> {
    target::remove_params(query, names)
}

/// Returns every credential the client presented, in the order the
/// handler tries them.
pub fn client_credentials(
    headers: &HeaderMap,
    query: Option<&str>,
    auth: &AuthStyle,
) -> Vec<SecretString> {
    ClientCredentials::collect(headers, query, auth)
        .candidates()
        .to_vec()
}

/// Returns the names of the query parameters stripped as client credentials.
pub fn credential_params(auth: &AuthStyle) -> Vec<&str> {
    routes::credential_params(auth)
}

/// The upstream request the handler would send, minus its body.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub url: Url,
    pub headers: HeaderMap,
}

/// Builds the upstream URL and headers for a request to `uri` with
/// `headers`, injecting `key` as `provider` expects it.
pub fn build_upstream(
    provider: &Provider,
    uri: &Uri,
    headers: &HeaderMap,
    key: &SecretString,
) -> Result<UpstreamRequest, ProxyError> {
    let rest = target::split_llm_path(uri.path()).map_or("", |(_, rest)| rest);
    let credentials = ClientCredentials::collect(headers, uri.query(), &provider.auth);
    let mut request = http::Request::new(());
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    let (parts, ()) = request.into_parts();
    let prepared =
        routes::build_upstream(provider, &parts, rest, Some(key), credentials.sent_bearer)?;
    Ok(UpstreamRequest {
        url: prepared.url,
        headers: prepared.headers,
    })
}

/// Returns whether `authorization` carries a Bearer credential, as the
/// handler reads it.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    auth::bearer_token(authorization)
}
