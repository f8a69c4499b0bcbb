//! The key-injecting HTTP proxy.
//!
//! Local programs call `/llm/{provider}/...` on 127.0.0.1 with a Keyport
//! client token where the provider key would go. The proxy checks the
//! token, puts the provider key from the unlocked vault in its place, and
//! streams the request to the provider and the response back unchanged.
//!
//! The handler in [`routes`] runs named steps: resolve the provider, check
//! Host and Origin ([`cors`]), authenticate the client and select the key
//! ([`auth`]), build the upstream target and headers ([`target`],
//! [`headers`]), send it ([`upstream`]) and stream the response
//! ([`body`]). WebSocket upgrades take the same steps up to the upstream
//! request, then [`websocket`] relays the session. Every request ends in a
//! [`RequestOutcome`] for an [`OutcomeSink`], the seam for a request log.
//!
//! This module does not open the vault: it reads keys through the
//! [`KeySource`] in a [`KeySlot`], which the vault's key ring fills.

mod activity;
mod allow_list;
mod auth;
mod body;
mod cors;
mod errors;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod headers;
mod keys;
mod log_sink;
mod model_scan;
mod outcome;
mod probe;
mod routes;
mod server;
mod target;
mod upstream;
mod via;
mod websocket;

use std::fmt;
use std::sync::Arc;

pub use activity::ProxyActivity;
pub use errors::ProxyError;
pub use keys::{KeyLookupError, KeySlot, KeySource};
pub use log_sink::{to_record, RequestLogSink};
pub use outcome::{OutcomeEnd, OutcomeSink, RequestOutcome, TracingSink};
pub use probe::{model_list_path, probe_key, ProbeResult};
pub use routes::router;
pub use server::serve;

use crate::config::ProxyConfig;
use crate::limits::Limiter;
use crate::providers::ProviderRegistry;
use crate::tokens::LiveTokens;
use upstream::Upstream;
use websocket::Sessions;

/// Everything a running proxy needs. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ProxyState {
    shared: Arc<Shared>,
    sink: Arc<dyn OutcomeSink>,
    limiter: Arc<Limiter>,
}

struct Shared {
    config: ProxyConfig,
    providers: ProviderRegistry,
    tokens: LiveTokens,
    keys: KeySlot,
    upstream: Upstream,
    /// Open WebSocket sessions, which outlive their HTTP connection.
    sessions: Sessions,
    activity: Arc<ProxyActivity>,
}

impl ProxyState {
    /// Builds the state and its upstream HTTP client. Outcomes go to
    /// [`TracingSink`] unless [`ProxyState::with_outcome_sink`] replaces it.
    pub fn new(
        config: ProxyConfig,
        providers: ProviderRegistry,
        tokens: LiveTokens,
        keys: KeySlot,
    ) -> Result<Self, ProxyError> {
        let upstream = Upstream::new(&config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                providers,
                tokens,
                keys,
                upstream,
                sessions: Sessions::default(),
                activity: Arc::default(),
            }),
            sink: Arc::new(TracingSink),
            limiter: Arc::new(Limiter::default()),
        })
    }

    /// Applies client token limits with `limiter`'s counters, clock and
    /// prices instead of a fresh limiter on the system clock without prices.
    pub fn with_limiter(mut self, limiter: Arc<Limiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Sends every request outcome to `sink` instead of the log.
    pub fn with_outcome_sink(mut self, sink: Arc<dyn OutcomeSink>) -> Self {
        self.sink = sink;
        self
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }

    pub fn keys(&self) -> &KeySlot {
        &self.shared.keys
    }

    /// Requests in flight and the end of the last one, shared by clones.
    pub fn activity(&self) -> Arc<ProxyActivity> {
        self.shared.activity.clone()
    }
}

impl fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyState")
            .field("config", &self.shared.config)
            .field("providers", &self.shared.providers.ids_for_message())
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}
