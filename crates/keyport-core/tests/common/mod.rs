//! Shared fixtures for the proxy tests: a proxy on 127.0.0.1:0 whose
//! providers all point at a mock upstream, canary vault keys, a live client
//! token in a temporary token file, and an outcome sink that keeps records.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod raw;
pub mod upstream;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyport_core::config::ProxyConfig;
use keyport_core::providers::{self, Provider, ProviderRegistry};
use keyport_core::proxy::{
    self, KeyLookupError, KeySlot, KeySource, OutcomeSink, ProxyState, RequestOutcome, TracingSink,
};
use keyport_core::secret::{ExposeSecret, SecretString};
use keyport_core::tokens::{LiveTokens, TokenStore};
use reqwest::Url;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OPENAI_KEY: &str = "sk-vault-oai-CANARY0001";
pub const ANTHROPIC_KEY: &str = "sk-ant-vault-CANARY0002";
pub const GOOGLE_KEY: &str = "AIzaVAULT-CANARY0003";
pub const MISTRAL_KEY: &str = "mistral-vault-CANARY0004";
/// Key of every other key-taking built-in provider.
pub const OTHER_KEY: &str = "sk-vault-other-CANARY0005";

pub const ORIGIN: &str = "http://localhost:5173";

/// Returns the canary vault's key for `provider`.
pub fn vault_key(provider: &str) -> &'static str {
    match provider {
        "openai" => OPENAI_KEY,
        "anthropic" => ANTHROPIC_KEY,
        "google" => GOOGLE_KEY,
        "mistral" => MISTRAL_KEY,
        _ => OTHER_KEY,
    }
}

/// An in-memory key source: provider -> (label, key).
#[derive(Default, Clone)]
pub struct TestKeys {
    keys: HashMap<String, Vec<(String, String)>>,
}

impl TestKeys {
    /// Creates one default key per built-in provider, plus any custom ids given.
    pub fn canaries(custom: &[&str]) -> Self {
        let mut keys = Self::default();
        let mut ids: Vec<&str> = providers::builtin_ids().collect();
        ids.extend_from_slice(custom);
        for id in ids {
            keys = keys.with(id, "default", vault_key(id));
        }
        keys
    }

    pub fn with(mut self, provider: &str, label: &str, key: &str) -> Self {
        self.keys
            .entry(provider.to_string())
            .or_default()
            .push((label.to_string(), key.to_string()));
        self
    }

    pub fn without(mut self, provider: &str) -> Self {
        self.keys.remove(provider);
        self
    }
}

impl KeySource for TestKeys {
    fn select(&self, provider: &str, label: Option<&str>) -> Result<SecretString, KeyLookupError> {
        let keys = self
            .keys
            .get(provider)
            .filter(|keys| !keys.is_empty())
            .ok_or_else(|| KeyLookupError::NotStored {
                provider: provider.to_string(),
            })?;
        let requested = label.unwrap_or("default");
        if let Some((_, key)) = keys.iter().find(|(name, _)| name == requested) {
            return Ok(SecretString::from(key.clone()));
        }
        match label {
            Some(label) => Err(KeyLookupError::LabelNotFound {
                provider: provider.to_string(),
                label: label.to_string(),
            }),
            None if keys.len() == 1 => Ok(SecretString::from(keys[0].1.clone())),
            None => Err(KeyLookupError::Ambiguous {
                provider: provider.to_string(),
                labels: keys.iter().map(|(name, _)| name.clone()).collect(),
            }),
        }
    }
}

/// Returns every built-in provider re-pointed at `upstream`, keeping its base path
/// (so openai forwards to `UP/v1/...`, anthropic to `UP/...`).
pub fn providers_at(upstream: &str) -> ProviderRegistry {
    let mut registry = ProviderRegistry::builtin();
    for id in providers::builtin_ids() {
        let provider = registry.get_mut(id).unwrap();
        let path = provider.base_url.path().trim_end_matches('/').to_string();
        provider.base_url = Url::parse(&format!("{upstream}{path}")).unwrap();
    }
    registry
}

/// Adds a custom provider to `registry`.
pub fn add_provider(
    registry: &mut ProviderRegistry,
    id: &str,
    base: &str,
    auth: keyport_core::providers::AuthStyle,
) {
    registry.insert(Provider {
        id: id.to_string(),
        base_url: Url::parse(base).unwrap(),
        auth,
        error_shape: keyport_core::providers::ErrorShape::OpenAi,
        builtin: false,
    });
}

/// Outcome sink that keeps every outcome for assertions.
#[derive(Default)]
pub struct RecordingSink {
    pub outcomes: Mutex<Vec<RequestOutcome>>,
}

impl OutcomeSink for RecordingSink {
    fn record(&self, outcome: &RequestOutcome) {
        TracingSink.record(outcome);
        self.outcomes.lock().unwrap().push(outcome.clone());
    }
}

impl RecordingSink {
    /// Waits up to 3 s for `count` outcomes and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<RequestOutcome> {
        for _ in 0..300 {
            let outcomes = self.outcomes.lock().unwrap().clone();
            if outcomes.len() >= count {
                return outcomes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {count} request outcomes after 3 s");
    }
}

/// Settings for [`Proxy::start`].
pub struct Setup {
    pub config: ProxyConfig,
    pub providers: ProviderRegistry,
    pub keys: TestKeys,
    pub sink: Arc<RecordingSink>,
}

impl Setup {
    /// Defaults, with every built-in provider at `upstream`.
    pub fn new(upstream: &str) -> Self {
        Self {
            config: ProxyConfig::default(),
            providers: providers_at(upstream),
            keys: TestKeys::canaries(&[]),
            sink: Arc::new(RecordingSink::default()),
        }
    }

    pub async fn start(self) -> Proxy {
        Proxy::start(self).await
    }
}

/// A running proxy with a live client token.
pub struct Proxy {
    pub addr: SocketAddr,
    pub keys: KeySlot,
    pub tokens: LiveTokens,
    pub store: TokenStore,
    /// A live token named `test-client`.
    pub token: String,
    pub sink: Arc<RecordingSink>,
    pub activity: Arc<proxy::ProxyActivity>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub async fn start(setup: Setup) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(setup, listener).await
    }

    /// Starts the proxy on `listener`, whose address tests may have put in
    /// the setup's base URLs.
    pub async fn start_on(setup: Setup, listener: tokio::net::TcpListener) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut store = TokenStore::load(&path).unwrap();
        let token = store
            .create("test-client")
            .unwrap()
            .expose_secret()
            .to_string();
        let tokens = LiveTokens::load(&path).unwrap();
        let keys = KeySlot::new();
        keys.set(Arc::new(setup.keys));

        let state = ProxyState::new(setup.config, setup.providers, tokens.clone(), keys.clone())
            .unwrap()
            .with_outcome_sink(setup.sink.clone());
        let activity = state.activity();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            keys,
            tokens,
            store,
            token,
            sink: setup.sink,
            activity,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the proxy and waits for `serve` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("serve did not return within 5 s of shutdown")
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Builds a test HTTP client that never uses a system proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Reads a response body as JSON.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// Counts how often `needle` occurs in `haystack`.
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}
