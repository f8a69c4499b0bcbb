//! Pointing a project's SDKs at the proxy: the base-URL variables that
//! `--set-base-urls` adds to or updates in a `.env` file.
//!
//! A rewritten file contains a client token, which only the proxy accepts, so
//! the SDKs that read their base URL from the environment must be sent
//! there too. A variable that already points at another server (a company
//! gateway, say) is not replaced: the project would silently stop using
//! that server, so the caller gets an error instead.

use std::collections::BTreeMap;
use std::net::IpAddr;

use reqwest::Url;

use super::plan::{ImportPlan, Notice};
use super::variables::{base_url_variable_for, provider_for};
use super::EnvFile;
use crate::secret::ExposeSecret;

/// A base-URL variable and what `--set-base-urls` does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrlSetting {
    /// The variable, such as `OPENAI_BASE_URL` or `VITE_OPENAI_BASE_URL`.
    pub name: String,
    pub provider: &'static str,
    /// The proxy's URL for the provider.
    pub url: String,
    /// Lines of the file's assignments of `name`, whose values become
    /// `url`. Empty when the variable is added at the end of the file.
    pub lines: Vec<usize>,
    /// True when every assignment of `name` already contains `url`.
    pub unchanged: bool,
}

/// A base-URL variable that cannot be set. No message contains a value,
/// because a URL can carry a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error(
        "{name} (line {line}) points the project at another server, and --set-base-urls would \
         replace it. If the project needs that server, set it as base_url under \
         [providers.{provider}] in config.toml. Then delete the line and run the import again, \
         or import without --set-base-urls"
    )]
    PointsElsewhere {
        name: String,
        line: usize,
        provider: &'static str,
    },
}

impl EnvFile {
    /// Returns the base-URL variables to set, sorted by name: for the keys
    /// that `plan` imports from this file, and for key variables that
    /// already contain a client token, as after an earlier `--rewrite`.
    ///
    /// `proxy_url` gives the proxy's URL for a provider id, and
    /// `upstream_urls` the provider's own base URLs: the configured one and
    /// the provider's public default. An existing assignment may contain
    /// one of those URLs, a Keyport URL for the provider (any loopback
    /// address and port, any path below it), or nothing. Any other value is
    /// an error.
    pub fn base_url_settings(
        &self,
        plan: &ImportPlan,
        proxy_url: impl Fn(&str) -> String,
        upstream_urls: impl Fn(&str) -> Vec<String>,
    ) -> Result<Vec<BaseUrlSetting>, BaseUrlError> {
        let imported = plan
            .keys
            .iter()
            .flat_map(|key| key.variables.iter().map(|variable| variable.name.as_str()));
        let tokens = plan.notices.iter().filter_map(|notice| match notice {
            Notice::AlreadyToken(variable) => Some(variable.name.as_str()),
            _ => None,
        });
        let mut variables = BTreeMap::new();
        for key_variable in imported.chain(tokens) {
            if let (Some(name), Some(provider)) = (
                base_url_variable_for(key_variable),
                provider_for(key_variable),
            ) {
                variables.insert(name, provider);
            }
        }

        let mut settings = Vec::with_capacity(variables.len());
        for (name, provider) in variables {
            let url = proxy_url(provider);
            let upstreams = upstream_urls(provider);
            let mut lines = Vec::new();
            let mut unchanged = true;
            for assignment in self.assignments.iter().filter(|a| a.name == name) {
                let value = assignment.value.expose_secret();
                let replaceable = value.is_empty()
                    || same_url(value, &url)
                    || is_proxy_url(value, provider)
                    || upstreams.iter().any(|upstream| same_url(value, upstream));
                if !replaceable {
                    return Err(BaseUrlError::PointsElsewhere {
                        name,
                        line: assignment.line,
                        provider,
                    });
                }
                unchanged &= value == url;
                lines.push(assignment.line);
            }
            settings.push(BaseUrlSetting {
                name,
                provider,
                url,
                unchanged: unchanged && !lines.is_empty(),
                lines,
            });
        }
        Ok(settings)
    }
}

/// Compares two URLs as SDKs use them: after parsing, so the host's case
/// and a default port make no difference, and without a trailing slash.
fn same_url(a: &str, b: &str) -> bool {
    let normal = |text: &str| match Url::parse(text) {
        Ok(url) => url.as_str().trim_end_matches('/').to_owned(),
        Err(_) => text.trim_end_matches('/').to_owned(),
    };
    normal(a) == normal(b)
}

/// Returns whether `value` is a Keyport proxy URL for `provider` on this
/// machine, on any port and with any path below it:
/// `http://localhost:7000/llm/openai`, say, left from an earlier import with
/// another port, or `…/llm/openai/v1` with a version copied from the
/// provider's own URL.
fn is_proxy_url(value: &str, provider: &str) -> bool {
    let Ok(url) = Url::parse(value) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "http"
        && loopback
        && url.query().is_none()
        && url
            .path()
            .strip_prefix(&format!("/llm/{provider}"))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Returns the lines to append for settings that the file does not assign
/// yet, with `line_break` after each, or an empty string.
pub(super) fn appended_lines(settings: &[BaseUrlSetting], line_break: &str) -> String {
    let added: Vec<&BaseUrlSetting> = settings.iter().filter(|s| s.lines.is_empty()).collect();
    if added.is_empty() {
        return String::new();
    }
    let mut text =
        format!("# Keyport proxy, added by `keyport key import --set-base-urls`{line_break}");
    for setting in added {
        text.push_str(&setting.name);
        text.push('=');
        text.push_str(&setting.url);
        text.push_str(line_break);
    }
    text
}
