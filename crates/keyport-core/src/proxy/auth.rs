//! Client authentication with Keyport tokens, and the vault key that
//! replaces the client's credential upstream.

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};

use super::errors::ProxyError;
use super::keys::{KeyLookupError, KeySlot};
use super::target;
use crate::providers::{AuthStyle, Provider};
use crate::secret::{ExposeSecret, SecretString};
use crate::tokens::{ClientToken, LiveTokens};

/// Headers whose whole value may be a client token.
const TOKEN_HEADERS: [&str; 3] = ["x-api-key", "x-goog-api-key", "api-key"];

/// Query parameter that may carry a client token, as Google SDKs send keys.
pub(crate) const TOKEN_QUERY_PARAM: &str = "key";

/// Request header that selects a labelled key.
const KEY_LABEL_HEADER: &str = "x-keyport-key";

/// Prefix of the `Sec-WebSocket-Protocol` entry in which browsers send an
/// API key, since a page cannot set headers on a WebSocket handshake. OpenAI
/// documents `openai-insecure-api-key.KEY` for its Realtime API.
pub(crate) const CREDENTIAL_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// The credentials a client presented, wherever it put them.
pub(crate) struct ClientCredentials {
    candidates: Vec<SecretString>,
    /// Whether the client used `Authorization: Bearer`; Anthropic routes
    /// then send the vault key the same way.
    pub sent_bearer: bool,
}

impl ClientCredentials {
    /// Collects every credential from the headers and the query, including
    /// the header or query parameter in which `auth` sends the key, since
    /// that provider's SDKs put their key there.
    pub(crate) fn collect(headers: &HeaderMap, query: Option<&str>, auth: &AuthStyle) -> Self {
        let mut candidates = Vec::new();
        let mut sent_bearer = false;
        for value in headers.get_all(AUTHORIZATION) {
            if let Some(token) = value.to_str().ok().and_then(bearer_token) {
                sent_bearer = true;
                candidates.push(SecretString::from(token.to_string()));
            }
        }
        let own_header = match auth {
            AuthStyle::Header(name) if !TOKEN_HEADERS.contains(&name.as_str()) => {
                Some(name.as_str())
            }
            _ => None,
        };
        for name in TOKEN_HEADERS.iter().copied().chain(own_header) {
            for value in headers.get_all(name) {
                if let Ok(text) = value.to_str() {
                    candidates.push(SecretString::from(text.trim().to_string()));
                }
            }
        }
        for protocol in websocket_protocols(headers) {
            if let Some(token) = protocol.strip_prefix(CREDENTIAL_SUBPROTOCOL_PREFIX) {
                candidates.push(SecretString::from(token.to_string()));
            }
        }
        let own_param = match auth {
            AuthStyle::Query(name) if name != TOKEN_QUERY_PARAM => Some(name.as_str()),
            _ => None,
        };
        if let Some(query) = query {
            for name in std::iter::once(TOKEN_QUERY_PARAM).chain(own_param) {
                for value in target::query_values(query, name) {
                    candidates.push(SecretString::from(value.into_owned()));
                }
            }
        }
        candidates.retain(|candidate| !candidate.expose_secret().is_empty());
        Self {
            candidates,
            sent_bearer,
        }
    }

    /// Returns the credentials in the order they are tried.
    pub(crate) fn candidates(&self) -> &[SecretString] {
        &self.candidates
    }
}

/// Returns the entries of every `Sec-WebSocket-Protocol` header, trimmed, in
/// the order the client sent them.
pub(crate) fn websocket_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// Returns the credential of an `Authorization: Bearer` value; the scheme
/// is case-insensitive.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks the client's token and returns it.
///
/// With `require_token` off every request passes, but a live token, if
/// present, still names the client in the log.
pub(crate) fn authenticate(
    tokens: &LiveTokens,
    require_token: bool,
    credentials: &ClientCredentials,
) -> Result<Option<ClientToken>, ProxyError> {
    let find = |verifier: &crate::tokens::TokenVerifier| {
        credentials
            .candidates
            .iter()
            .find_map(|candidate| verifier.verify_client(candidate.expose_secret()))
    };
    let mut name = find(&tokens.current());
    if name.is_none() && !credentials.candidates.is_empty() {
        // A token created a moment ago may not be loaded yet. Checking the
        // file's stamp costs one stat call, and it is re-read only if it
        // changed, so a script can use a token right after creating it.
        match tokens.refresh() {
            Ok(true) => name = find(&tokens.current()),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot reload client tokens"),
        }
    }
    match (name, require_token) {
        (Some(name), _) => Ok(Some(name)),
        (None, false) => Ok(None),
        (None, true) if credentials.candidates.is_empty() => Err(ProxyError::TokenMissing),
        (None, true) => Err(ProxyError::TokenInvalid),
    }
}

/// Reads the optional `x-keyport-key` label, in the form the vault accepts
/// labels, so that an error can echo it safely. Two such headers are
/// rejected rather than one of them chosen.
pub(crate) fn requested_label(headers: &HeaderMap) -> Result<Option<String>, ProxyError> {
    let mut values = headers.get_all(KEY_LABEL_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ProxyError::InvalidKeyLabel);
    }
    let label = value
        .to_str()
        .map_err(|_| ProxyError::InvalidKeyLabel)?
        .trim();
    crate::vault::validate_label(label).map_err(|_| ProxyError::InvalidKeyLabel)?;
    Ok(Some(label.to_string()))
}

/// Returns the key label a request uses: the token's pin for `provider`,
/// else the `x-keyport-key` header. A header that names another label than
/// the pin is rejected, so a pinned token cannot reach the user's other keys.
pub(crate) fn effective_label(
    client: Option<&ClientToken>,
    provider: &str,
    requested: Option<String>,
) -> Result<Option<KeyChoice>, ProxyError> {
    let pinned = client.and_then(|client| Some((client, client.pinned_label(provider)?)));
    match (pinned, requested) {
        (Some((client, pinned)), Some(requested)) if requested != pinned => {
            Err(ProxyError::KeyPinConflict {
                token: client.name.to_string(),
                provider: provider.to_string(),
                pinned: pinned.to_string(),
                requested,
            })
        }
        (Some((client, pinned)), _) => Ok(Some(KeyChoice {
            label: pinned.to_string(),
            pinned_by: Some(client.name.to_string()),
        })),
        (None, requested) => Ok(requested.map(|label| KeyChoice {
            label,
            pinned_by: None,
        })),
    }
}

/// A key label chosen for a request, and the token that pins it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyChoice {
    pub(crate) label: String,
    pub(crate) pinned_by: Option<String>,
}

/// Selects the vault key for `provider`, or None for providers that take
/// no key (those work while the vault is locked).
pub(crate) fn select_key(
    keys: &KeySlot,
    provider: &Provider,
    choice: Option<&KeyChoice>,
) -> Result<Option<SecretString>, ProxyError> {
    if !provider.auth.needs_key() {
        return Ok(None);
    }
    let source = keys.current().ok_or(ProxyError::VaultLocked)?;
    let label = choice.map(|choice| choice.label.as_str());
    let pinned_by = choice.and_then(|choice| choice.pinned_by.clone());
    let key = source
        .select(&provider.id, label)
        .map_err(|error| match (error, pinned_by) {
            (
                KeyLookupError::NotStored { provider }
                | KeyLookupError::LabelNotFound { provider, .. },
                Some(token),
            ) => ProxyError::PinnedKeyNotStored {
                token,
                provider,
                label: label.unwrap_or_default().to_string(),
            },
            (KeyLookupError::NotStored { provider }, None) => ProxyError::KeyNotStored { provider },
            (KeyLookupError::LabelNotFound { provider, label }, None) => {
                ProxyError::KeyLabelNotFound { provider, label }
            }
            (KeyLookupError::Ambiguous { provider, labels }, _) => {
                ProxyError::KeyAmbiguous { provider, labels }
            }
        })?;
    Ok(Some(key))
}

/// Adds the vault key to the upstream headers for header-based auth
/// styles. Query auth is handled when the URL is built. The headers must
/// already be free of client credentials, so the key appears exactly once.
pub(crate) fn inject_key_header(
    headers: &mut HeaderMap,
    provider: &Provider,
    key: &SecretString,
    client_sent_bearer: bool,
) -> Result<(), ProxyError> {
    let not_usable = || ProxyError::KeyNotUsable {
        provider: provider.id.clone(),
    };
    let (name, value) = match &provider.auth {
        AuthStyle::Bearer => (AUTHORIZATION, format!("Bearer {}", key.expose_secret())),
        AuthStyle::Anthropic if client_sent_bearer => {
            (AUTHORIZATION, format!("Bearer {}", key.expose_secret()))
        }
        AuthStyle::Anthropic => (
            HeaderName::from_static("x-api-key"),
            key.expose_secret().to_string(),
        ),
        AuthStyle::Header(name) => (
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| not_usable())?,
            key.expose_secret().to_string(),
        ),
        AuthStyle::Query(_) | AuthStyle::None => return Ok(()),
    };
    let value = zeroize::Zeroizing::new(value);
    let mut value = HeaderValue::from_str(&value).map_err(|_| not_usable())?;
    // Sensitive values print as "Sensitive" in Debug output and are never
    // added to HTTP/2 compression tables.
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer kp_1"), Some("kp_1"));
        assert_eq!(bearer_token("bearer  kp_1 "), Some("kp_1"));
        assert_eq!(bearer_token("Basic Zm9v"), None);
    }

    #[test]
    fn credentials_come_from_every_place() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer a"));
        headers.insert("X-Goog-Api-Key", HeaderValue::from_static("b"));
        headers.insert("api-key", HeaderValue::from_static("c"));
        let credentials =
            ClientCredentials::collect(&headers, Some("alt=sse&key=d"), &AuthStyle::Bearer);
        let found: Vec<&str> = credentials
            .candidates
            .iter()
            .map(|c| c.expose_secret())
            .collect();
        assert_eq!(found, ["a", "b", "c", "d"]);
        assert!(credentials.sent_bearer);
    }

    #[test]
    fn provider_key_locations_carry_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert("x-custom-key", HeaderValue::from_static("a"));
        let header_auth = AuthStyle::Header("x-custom-key".into());
        let credentials = ClientCredentials::collect(&headers, None, &header_auth);
        assert_eq!(credentials.candidates.len(), 1);
        assert!(!credentials.sent_bearer);

        let query_auth = AuthStyle::Query("token".into());
        let credentials =
            ClientCredentials::collect(&HeaderMap::new(), Some("token=b"), &query_auth);
        let found: Vec<&str> = credentials
            .candidates
            .iter()
            .map(|c| c.expose_secret())
            .collect();
        assert_eq!(found, ["b"]);

        let credentials = ClientCredentials::collect(&headers, Some("token=b"), &AuthStyle::Bearer);
        assert!(credentials.candidates.is_empty());
    }

    #[test]
    fn websocket_subprotocol_carries_a_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(
                "realtime, openai-insecure-api-key.kp_1, openai-beta.realtime-v1",
            ),
        );
        let credentials = ClientCredentials::collect(&headers, None, &AuthStyle::Bearer);
        let found: Vec<&str> = credentials
            .candidates
            .iter()
            .map(|c| c.expose_secret())
            .collect();
        assert_eq!(found, ["kp_1"]);
        assert!(!credentials.sent_bearer);
    }

    #[test]
    fn labels_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested_label(&headers).unwrap(), None);
        headers.insert("x-keyport-key", HeaderValue::from_static("work.2"));
        assert_eq!(
            requested_label(&headers).unwrap().as_deref(),
            Some("work.2")
        );
        for bad in ["a b", ".hidden", "", "a,b"] {
            headers.insert("x-keyport-key", HeaderValue::from_static(bad));
            assert!(
                matches!(requested_label(&headers), Err(ProxyError::InvalidKeyLabel)),
                "{bad:?}"
            );
        }
        // Two headers are ambiguous, whichever order a client sends them in.
        headers.insert("x-keyport-key", HeaderValue::from_static("work"));
        headers.append("x-keyport-key", HeaderValue::from_static("home"));
        assert!(matches!(
            requested_label(&headers),
            Err(ProxyError::InvalidKeyLabel)
        ));
    }
}
