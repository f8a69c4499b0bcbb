//! The proxy service both shells start, the key probe, and config editing,
//! against real vault files, a real SQLite log and mock upstreams on
//! 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::upstream::{ok_json, respond, MockUpstream};
use keyport_core::config::{Config, ProxyConfig};
use keyport_core::config_edit::{ConfigDocument, ProviderSettings, SettingsUpdate};
use keyport_core::paths::DataDir;
use keyport_core::providers::{AuthStyle, ProviderRegistry};
use keyport_core::proxy::{model_list_path, probe_key};
use keyport_core::requestlog::{LogFilter, PageRequest};
use keyport_core::secret::SecretString;
use keyport_core::service::{KeySupply, ProxyService, ServiceError, StartWarning};
use keyport_core::tokens::TokenStore;
use keyport_core::vault::{Access, Vault};

const PASSWORD: &str = "correct horse battery staple";
const KEY: &str = "sk-service-CANARY-7f3a";

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_string())
}

/// Creates a data folder with a vault containing one OpenAI key, a client token, and
/// a config pointing OpenAI at `upstream`.
fn data_dir(upstream: &str) -> (tempfile::TempDir, DataDir, String) {
    let temp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(temp.path().join("data"));
    let mut vault = Vault::create(&dir, &secret(PASSWORD)).unwrap();
    vault.set_key("openai", None, secret(KEY)).unwrap();
    vault.lock();
    let mut tokens = TokenStore::load(&dir.tokens()).unwrap();
    let token = tokens.create("tests").unwrap();
    std::fs::write(
        dir.config(),
        format!("[providers.openai]\nbase_url = \"{upstream}/v1\"\n"),
    )
    .unwrap();
    use keyport_core::secret::ExposeSecret;
    (temp, dir, token.expose_secret().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_follows_vault_and_logs_requests() {
    let upstream = MockUpstream::start(|_| ok_json(r#"{"usage":{"prompt_tokens":3}}"#)).await;
    let (_temp, dir, token) = data_dir(&upstream.base());
    let config = Config::load(&dir.config()).unwrap();

    let running = ProxyService::new(dir.clone(), config)
        .port(Some(0))
        .start(KeySupply::Follow(secret(PASSWORD)))
        .await
        .unwrap();
    assert!(running.address().port() != 0);
    assert!(running.keys().is_unlocked());
    assert!(running.warnings().is_empty(), "{:?}", running.warnings());
    let log = running.request_log().unwrap().log.clone();
    let mut feed = log.subscribe();

    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/llm/openai/chat/completions",
            running.address()
        ))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.single().header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let row = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.record.provider, "openai");

    let keys = running.keys().clone();
    let report = running.stop().await.unwrap();
    assert_eq!(report.log_losses, None);
    assert!(!keys.is_unlocked(), "stop must empty the key slot");
    let page = log
        .query(&LogFilter::default(), PageRequest::first(10))
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_reports_port_in_use() {
    let (_temp, dir, _token) = data_dir("http://127.0.0.1:9");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let vault = Vault::open(&dir, &secret(PASSWORD), Access::ReadWrite).unwrap();

    let result = ProxyService::new(dir.clone(), Config::load(&dir.config()).unwrap())
        .port(Some(port))
        .start(KeySupply::Unlocked(&vault))
        .await;
    match result {
        Err(ServiceError::PortInUse { address }) => assert_eq!(address.port(), port),
        Err(other) => panic!("expected PortInUse, got {other}"),
        Ok(_) => panic!("expected PortInUse, the proxy started"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_warns_about_empty_vault() {
    let temp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(temp.path().join("data"));
    let vault = Vault::create(&dir, &secret(PASSWORD)).unwrap();
    let running = ProxyService::new(dir.clone(), Config::load(&dir.config()).unwrap())
        .port(Some(0))
        .start(KeySupply::Unlocked(&vault))
        .await
        .unwrap();
    assert!(running.warnings().contains(&StartWarning::NoKeys));
    assert!(running.warnings().contains(&StartWarning::NoTokens));
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_wrong_password_is_vault_error() {
    let (_temp, dir, _token) = data_dir("http://127.0.0.1:9");
    let result = ProxyService::new(dir.clone(), Config::load(&dir.config()).unwrap())
        .port(Some(0))
        .start(KeySupply::Follow(secret("not the password")))
        .await;
    assert!(matches!(
        result,
        Err(ServiceError::Vault(
            keyport_core::vault::VaultError::WrongPassword
        ))
    ));
}

fn provider(registry: &ProviderRegistry, id: &str) -> keyport_core::providers::Provider {
    registry.get(id).unwrap().clone()
}

#[tokio::test]
async fn probe_sends_key_like_the_proxy() {
    let upstream =
        MockUpstream::start(|_| ok_json(r#"{"data":[{"id":"secret-model-list"}]}"#)).await;
    let base = upstream.base();
    let cases = [
        (
            "openai",
            "/v1",
            "/v1/models",
            "authorization",
            format!("Bearer {KEY}"),
        ),
        ("anthropic", "", "/v1/models", "x-api-key", KEY.to_string()),
        (
            "google",
            "",
            "/v1beta/models",
            "x-goog-api-key",
            KEY.to_string(),
        ),
        (
            "mistral",
            "",
            "/v1/models",
            "authorization",
            format!("Bearer {KEY}"),
        ),
    ];
    for (id, prefix, expected_path, header, value) in &cases {
        let text = format!("[providers.{id}]\nbase_url = \"{base}{prefix}\"\n");
        let config = Config::parse("config.toml".as_ref(), &text).unwrap();
        let target = provider(&config.providers, id);
        let result = probe_key(
            &ProxyConfig::default(),
            &target,
            Some(&secret(KEY)),
            Duration::from_secs(5),
        )
        .await;
        assert!(result.ok, "{id}: {result:?}");
        assert_eq!(result.status, Some(200), "{id}");
        assert!(!result.message.contains(KEY), "{id}: {}", result.message);
        assert!(!result.message.contains("secret-model-list"), "{id}");
        let recorded = upstream.requests().pop().unwrap();
        assert_eq!(recorded.method, "GET", "{id}");
        assert_eq!(&recorded.target, expected_path, "{id}");
        assert_eq!(recorded.header(header), Some(value.as_str()), "{id}");
        if *id == "anthropic" {
            assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
        }
    }
}

#[tokio::test]
async fn probe_reports_rejected_key_and_timeout() {
    let upstream = MockUpstream::start(|recorded| {
        if recorded.target.starts_with("/slow") {
            vec![common::upstream::sleep_ms(3_000)]
        } else {
            respond(401, "application/json", br#"{"error":"bad key"}"#, &[])
        }
    })
    .await;
    let base = upstream.base();
    let config = Config::parse(
        "config.toml".as_ref(),
        &format!(
            "[providers.openai]\nbase_url = \"{base}/v1\"\n[providers.slow]\nbase_url = \"{base}/slow\"\nauth = \"bearer\"\n"
        ),
    )
    .unwrap();
    let rejected = probe_key(
        &ProxyConfig::default(),
        &provider(&config.providers, "openai"),
        Some(&secret(KEY)),
        Duration::from_secs(5),
    )
    .await;
    assert!(!rejected.ok);
    assert_eq!(rejected.status, Some(401));
    assert!(
        rejected.message.contains("rejected the key"),
        "{}",
        rejected.message
    );

    let slow = probe_key(
        &ProxyConfig::default(),
        &provider(&config.providers, "slow"),
        Some(&secret(KEY)),
        Duration::from_millis(300),
    )
    .await;
    assert!(!slow.ok);
    assert_eq!(slow.status, None);
    assert!(slow.latency < Duration::from_secs(2), "{:?}", slow.latency);
    assert!(slow.message.contains("did not answer"), "{}", slow.message);
}

#[tokio::test]
async fn probe_of_a_base_url_at_keyport_reports_the_loop() {
    // A proxy of this process; the key test's base URL points at it.
    let proxy = common::Setup::new("http://127.0.0.1:9").start().await;
    let config = Config::parse(
        "config.toml".as_ref(),
        &format!(
            "[providers.openai]\nbase_url = \"http://{}/llm/openai\"\n",
            proxy.addr
        ),
    )
    .unwrap();
    let result = probe_key(
        &ProxyConfig::default(),
        &provider(&config.providers, "openai"),
        Some(&secret(KEY)),
        Duration::from_secs(5),
    )
    .await;
    assert!(!result.ok);
    assert_eq!(result.status, Some(508));
    assert!(
        result.message.contains("points back at Keyport itself"),
        "{}",
        result.message
    );
}

#[test]
fn model_list_paths_match_presets() {
    let registry = ProviderRegistry::builtin();
    assert_eq!(model_list_path(&provider(&registry, "openai")), "/models");
    assert_eq!(model_list_path(&provider(&registry, "groq")), "/models");
    assert_eq!(
        model_list_path(&provider(&registry, "anthropic")),
        "/v1/models"
    );
    assert_eq!(
        model_list_path(&provider(&registry, "google")),
        "/v1beta/models"
    );
    assert_eq!(
        model_list_path(&provider(&registry, "mistral")),
        "/v1/models"
    );
    assert_eq!(model_list_path(&provider(&registry, "ollama")), "/api/tags");
}

const COMMENTED: &str = "# Keyport settings, edited by hand.\n\
[proxy]\n\
port = 7447 # the usual port\n\
\n\
# Company gateway for OpenAI.\n\
[providers.openai]\n\
base_url = \"https://gateway.example.com/openai/v1\"\n\
\n\
[log]\n\
retention_days = 7\n";

fn document(text: &str) -> (tempfile::TempDir, std::path::PathBuf, ConfigDocument) {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let document = ConfigDocument::load(&path).unwrap();
    (temp, path, document)
}

#[test]
fn provider_save_keeps_comments() {
    let (_temp, path, mut document) = document(COMMENTED);
    document
        .set_provider(&ProviderSettings {
            id: "azure".into(),
            base_url: "https://res.openai.azure.com/openai/".into(),
            auth: AuthStyle::Header("api-key".into()),
        })
        .unwrap();
    let config = document.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# Keyport settings, edited by hand.\n"),
        "{text}"
    );
    assert!(text.contains("port = 7447 # the usual port"), "{text}");
    assert!(text.contains("# Company gateway for OpenAI."), "{text}");
    assert!(text.contains("[providers.azure]"), "{text}");
    assert!(!text.contains("[providers]\n"), "{text}");
    let azure = config.providers.get("azure").unwrap();
    assert_eq!(azure.auth, AuthStyle::Header("api-key".into()));
    assert_eq!(
        azure.base_url.as_str(),
        "https://res.openai.azure.com/openai"
    );
}

#[test]
fn provider_reset_drops_only_its_table() {
    let (_temp, path, mut document) = document(COMMENTED);
    assert!(document.reset_provider("openai"));
    assert!(!document.reset_provider("openai"));
    let config = document.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("gateway.example.com"), "{text}");
    assert!(text.contains("retention_days = 7"), "{text}");
    assert_eq!(
        config.providers.get("openai").unwrap().base_url.as_str(),
        "https://api.openai.com/v1"
    );
}

#[test]
fn builtin_override_with_preset_auth_writes_only_url() {
    let (_temp, path, mut document) = document("");
    document
        .set_provider(&ProviderSettings {
            id: "mistral".into(),
            base_url: "http://127.0.0.1:9/mistral".into(),
            auth: AuthStyle::Bearer,
        })
        .unwrap();
    document.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.trim(),
        "[providers.mistral]\nbase_url = \"http://127.0.0.1:9/mistral\""
    );
}

#[test]
fn invalid_provider_is_not_written() {
    let (_temp, path, mut document) = document(COMMENTED);
    document
        .set_provider(&ProviderSettings {
            id: "custom".into(),
            base_url: "ftp://example.com".into(),
            auth: AuthStyle::Bearer,
        })
        .unwrap();
    let error = document.save().unwrap_err();
    assert!(error.to_string().contains("ftp://example.com"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), COMMENTED);

    let (_temp, _path, mut document) = self::document("");
    let error = document
        .set_provider(&ProviderSettings {
            id: "Bad Name".into(),
            base_url: "https://example.com".into(),
            auth: AuthStyle::Bearer,
        })
        .unwrap_err();
    assert!(error.to_string().contains("Bad Name"), "{error}");
}

#[test]
fn settings_write_only_changed_keys() {
    let text = format!("{COMMENTED}\n[future]\nsetting = \"kept\"\n");
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("config.toml");
    // A table the config loader does not know is an error, so this file
    // only checks that edits leave such text alone before validation.
    std::fs::write(&path, &text).unwrap();
    let mut document = ConfigDocument::load(&path).unwrap();
    let current = Config::parse(&path, COMMENTED).unwrap();
    let mut update = SettingsUpdate::from_config(&current);
    update.port = 9000;
    update.auto_lock_minutes = 5;
    document.apply_settings(&current, &update).unwrap();
    let edited = document.text();
    assert!(edited.contains("port = 9000 # the usual port"), "{edited}");
    assert!(edited.contains("[future]\nsetting = \"kept\""), "{edited}");
    assert!(
        edited.contains("[desktop]\nauto_lock_minutes = 5"),
        "{edited}"
    );
    assert!(!edited.contains("require_token"), "{edited}");
    assert!(!edited.contains("capture_bodies"), "{edited}");
    assert!(edited.contains("retention_days = 7"), "{edited}");
}

#[test]
fn unchanged_settings_leave_file_alone() {
    let (_temp, path, mut document) = document(COMMENTED);
    let current = Config::load(&path).unwrap();
    let update = SettingsUpdate::from_config(&current);
    document.apply_settings(&current, &update).unwrap();
    let saved = document.save().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), COMMENTED);
    assert_eq!(SettingsUpdate::from_config(&saved), update);
}
