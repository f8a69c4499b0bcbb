//! The desktop commands against real temporary data folders: a real
//! Stronghold snapshot, a real SQLite request log, the real proxy on
//! 127.0.0.1:0 and mock providers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::any;
use axum::Router;
use keyport_core::paths::DataDir;
use keyport_core::vault::{Access, Vault, VaultError};
use keyport_desktop::commands;
use keyport_desktop::error::{AppError, AppErrorCode};
use keyport_desktop::logs;
use keyport_desktop::state::{AppState, EventSink};
use keyport_desktop::types::*;
use serde::Serialize;

const PASSWORD: &str = "orbit-canyon-velvet-42-lantern";
const CANARY_KEY: &str = "sk-desktop-CANARY-91c4e7";

/// Events as the webview would receive them, serialized.
#[derive(Default)]
struct Recorder {
    statuses: Mutex<Vec<AppStatus>>,
    events: Mutex<Vec<String>>,
}

impl EventSink for Recorder {
    fn status_changed(&self, status: &AppStatus) {
        self.statuses.lock().unwrap().push(status.clone());
        self.events
            .lock()
            .unwrap()
            .push(serde_json::to_string(status).unwrap());
    }

    fn request_logged(&self, row: &LogRow) {
        self.events
            .lock()
            .unwrap()
            .push(serde_json::to_string(row).unwrap());
    }
}

/// Log lines written by every test in this binary.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("keyport_core=trace,keyport_desktop=trace,info")
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    _temp: tempfile::TempDir,
    state: AppState,
    events: Arc<Recorder>,
    exports: PathBuf,
}

/// Creates a fresh data folder whose config listens on any free port and points
/// OpenAI at `upstream`.
fn fixture(upstream: Option<SocketAddr>) -> Fixture {
    captured_logs();
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let exports = temp.path().join("downloads");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&exports).unwrap();
    let mut config = String::from("# written by the test\n[proxy]\nport = 0\n");
    if let Some(upstream) = upstream {
        config.push_str(&format!(
            "\n[providers.openai]\nbase_url = \"http://{upstream}/v1\"\n"
        ));
    }
    std::fs::write(data.join("config.toml"), config).unwrap();
    let events = Arc::new(Recorder::default());
    let state = AppState::new(DataDir::new(&data), exports.clone(), events.clone());
    state.open_log().unwrap();
    Fixture {
        _temp: temp,
        state,
        events,
        exports,
    }
}

/// Starts a mock provider that records the Authorization header of each
/// request and replies with an OpenAI-style body.
async fn mock_provider() -> (SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().fallback(any(move |uri: axum::http::Uri, headers: HeaderMap| {
        let record = record.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            record.lock().unwrap().push((uri.path().to_string(), auth));
            (
                [("content-type", "application/json")],
                r#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":11,"completion_tokens":5}}"#,
            )
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, seen)
}

fn proxy_address(status: &AppStatus) -> String {
    assert_eq!(status.proxy.state, ProxyRunState::Serving, "{status:?}");
    status.proxy.address.clone().unwrap()
}

fn code(result: Result<impl std::fmt::Debug, AppError>) -> AppErrorCode {
    result.unwrap_err().code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_lifecycle_starts_and_stops_proxy() {
    let fixture = fixture(None);
    let state = &fixture.state;
    assert_eq!(commands::app_status(state).await.vault, VaultState::Missing);

    let weak = commands::vault_create(state, "password1".into()).await;
    assert_eq!(code(weak), AppErrorCode::InvalidInput);

    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    assert_eq!(status.vault, VaultState::Unlocked);
    let address = proxy_address(&status);
    let health = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // The app is the vault's writer while unlocked.
    let busy = Vault::open(
        state.data_dir(),
        &PASSWORD.to_string().into(),
        Access::ReadWrite,
    );
    assert!(matches!(busy, Err(VaultError::Busy { .. })));

    let status = commands::vault_lock(state).await;
    assert_eq!(status.vault, VaultState::Locked);
    assert_eq!(status.proxy.state, ProxyRunState::Stopped);
    assert!(reqwest::get(format!("http://{address}/healthz"))
        .await
        .is_err());
    assert_eq!(
        code(commands::keys_list(state).await),
        AppErrorCode::VaultLocked
    );

    let wrong = commands::vault_unlock(state, "not the password".into()).await;
    assert_eq!(code(wrong), AppErrorCode::WrongPassword);
    let status = commands::vault_unlock(state, PASSWORD.into())
        .await
        .unwrap();
    assert_eq!(status.vault, VaultState::Unlocked);
    proxy_address(&status);

    let recorded: Vec<VaultState> = fixture
        .events
        .statuses
        .lock()
        .unwrap()
        .iter()
        .map(|status| status.vault)
        .collect();
    assert_eq!(
        recorded,
        [
            VaultState::Unlocked,
            VaultState::Locked,
            VaultState::Unlocked
        ]
    );
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_create_is_vault_exists() {
    let fixture = fixture(None);
    commands::vault_create(&fixture.state, PASSWORD.into())
        .await
        .unwrap();
    commands::vault_lock(&fixture.state).await;
    let again = commands::vault_create(&fixture.state, PASSWORD.into()).await;
    assert_eq!(code(again), AppErrorCode::VaultExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_set_reaches_proxy_and_log() {
    let (upstream, seen) = mock_provider().await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let address = proxy_address(&status);

    let outcome = commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();
    assert_eq!(outcome, SetOutcome::Added);
    let outcome = commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();
    assert_eq!(outcome, SetOutcome::Replaced);
    let keys = commands::keys_list(state).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].label, "default");
    assert!(!keys[0].masked.contains(CANARY_KEY));

    let token = commands::token_create(state, "tests".into(), Vec::new()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{address}/llm/openai/chat/completions"))
        .bearer_auth(&token.token)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        seen.lock().unwrap().last().unwrap().1,
        format!("Bearer {CANARY_KEY}")
    );

    let row = wait_for_logged_row(&fixture).await;
    assert!(row.contains("\"provider\":\"openai\""), "{row}");
    let page = logs::query(state, &LogFilter::default(), None, 50).unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].token.as_deref(), Some("tests"));
    assert_eq!(page.rows[0].input_tokens, Some(11));
    assert_eq!(page.rows[0].outcome, "ok");
    let totals = logs::totals(state).unwrap();
    assert_eq!(totals.today.requests, 1);
    assert_eq!(totals.month.input_tokens, 11);
    state.shut_down().await;
}

async fn wait_for_logged_row(fixture: &Fixture) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = fixture
            .events
            .events
            .lock()
            .unwrap()
            .iter()
            .find(|event| event.contains("\"startedAt\""))
            .cloned();
        if let Some(row) = found {
            return row;
        }
        assert!(Instant::now() < deadline, "no request-logged event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_test_calls_model_list() {
    let (upstream, seen) = mock_provider().await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();

    let result = commands::key_test(state, "openai".into(), "".into())
        .await
        .unwrap();
    assert!(result.ok, "{result:?}");
    assert_eq!(result.status, Some(200));
    let (path, auth) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(path, "/v1/models");
    assert_eq!(auth, format!("Bearer {CANARY_KEY}"));
    let reply = serde_json::to_string(&result).unwrap();
    assert!(!reply.contains(CANARY_KEY));
    assert!(
        !reply.contains("prompt_tokens"),
        "the body must not be returned"
    );

    let missing = commands::key_test(state, "openai".into(), "work".into()).await;
    assert_eq!(code(missing), AppErrorCode::NotFound);
    let unknown = commands::key_test(state, "nope".into(), "".into()).await;
    assert_eq!(code(unknown), AppErrorCode::NotFound);
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_fails_then_restarts() {
    let fixture = fixture(None);
    let state = &fixture.state;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = state.data_dir().config();
    std::fs::write(&path, format!("[proxy]\nport = {port}\n")).unwrap();

    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    assert_eq!(status.vault, VaultState::Unlocked);
    assert_eq!(status.proxy.state, ProxyRunState::Failed);
    assert_eq!(
        status.proxy.error.as_ref().unwrap().code,
        AppErrorCode::PortInUse
    );

    let status = commands::proxy_restart(state, Some(0)).await.unwrap();
    let address = proxy_address(&status);
    assert_ne!(status.proxy.port, Some(port));
    let health = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_save_and_reset() {
    let fixture = fixture(None);
    let state = &fixture.state;
    let input = ProviderInput {
        id: "azure".into(),
        base_url: "https://res.openai.azure.com/openai".into(),
        auth: AuthStyle::Header,
        auth_name: Some("api-key".into()),
    };
    let list = commands::provider_save(state, input).await.unwrap();
    let azure = list.iter().find(|provider| provider.id == "azure").unwrap();
    assert!(!azure.built_in);
    assert_eq!(azure.auth, AuthStyle::Header);
    assert_eq!(azure.auth_name.as_deref(), Some("api-key"));
    let text = std::fs::read_to_string(state.data_dir().config()).unwrap();
    assert!(text.starts_with("# written by the test\n"), "{text}");

    let override_input = ProviderInput {
        id: "openai".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        auth: AuthStyle::Bearer,
        auth_name: None,
    };
    let list = commands::provider_save(state, override_input)
        .await
        .unwrap();
    let openai = list
        .iter()
        .find(|provider| provider.id == "openai")
        .unwrap();
    assert!(openai.built_in);
    assert!(openai.overridden);

    let list = commands::provider_reset(state, "openai".into())
        .await
        .unwrap();
    let openai = list
        .iter()
        .find(|provider| provider.id == "openai")
        .unwrap();
    assert!(!openai.overridden);
    let list = commands::provider_reset(state, "azure".into())
        .await
        .unwrap();
    assert!(list.iter().all(|provider| provider.id != "azure"));
    let again = commands::provider_reset(state, "azure".into()).await;
    assert_eq!(code(again), AppErrorCode::NotFound);

    let bad = ProviderInput {
        id: "custom".into(),
        base_url: "ftp://example.com".into(),
        auth: AuthStyle::Bearer,
        auth_name: None,
    };
    assert_eq!(
        code(commands::provider_save(state, bad).await),
        AppErrorCode::InvalidInput
    );
    let nameless = ProviderInput {
        id: "custom".into(),
        base_url: "https://example.com".into(),
        auth: AuthStyle::Query,
        auth_name: None,
    };
    assert_eq!(
        code(commands::provider_save(state, nameless).await),
        AppErrorCode::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_create_list_revoke() {
    let fixture = fixture(None);
    let state = &fixture.state;
    let created = commands::token_create(state, "laptop".into(), Vec::new()).unwrap();
    assert!(created.token.starts_with(&created.prefix));
    assert!(!format!("{created:?}").contains(&created.token));
    let list = commands::tokens_list(state).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "laptop");
    let json = serde_json::to_string(&list).unwrap();
    assert!(!json.contains(&created.token));
    assert_eq!(
        code(commands::token_create(state, "laptop".into(), Vec::new())),
        AppErrorCode::AlreadyExists
    );
    assert_eq!(
        code(commands::token_create(state, "bad name".into(), Vec::new())),
        AppErrorCode::InvalidInput
    );
    commands::token_revoke(state, "laptop".into()).unwrap();
    assert_eq!(
        code(commands::token_revoke(state, "laptop".into())),
        AppErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_token_uses_labelled_key() {
    const PROJECT_KEY: &str = "sk-CANARY-desktop-project-key-7781";
    let (upstream, seen) = mock_provider().await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let address = proxy_address(&status);
    commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();
    commands::key_set(state, "openai".into(), "project".into(), PROJECT_KEY.into())
        .await
        .unwrap();
    let pin = |provider: &str, label: &str| KeyPin {
        provider: provider.into(),
        label: label.into(),
    };

    let invalid = AppErrorCode::InvalidInput;
    for (pins, code, expected) in [
        (
            vec![pin("nosuch", "a")],
            AppErrorCode::NotFound,
            "unknown provider",
        ),
        (vec![pin("ollama", "a")], invalid, "takes no key"),
        (
            vec![pin("openai", "a"), pin("openai", "b")],
            invalid,
            "given twice",
        ),
        (
            vec![pin("openai", "two words")],
            invalid,
            "invalid key label",
        ),
    ] {
        let error = commands::token_create(state, "bad".into(), pins).unwrap_err();
        assert_eq!(error.code, code, "{expected}");
        assert!(error.message.contains(expected), "{}", error.message);
    }
    assert!(commands::tokens_list(state).unwrap().is_empty());

    let token =
        commands::token_create(state, "project".into(), vec![pin("openai", "project")]).unwrap();
    let list = commands::tokens_list(state).unwrap();
    assert_eq!(list[0].keys, [pin("openai", "project")]);
    send_request(&address, &token.token).await;
    assert_eq!(
        seen.lock().unwrap().last().unwrap().1,
        format!("Bearer {PROJECT_KEY}")
    );
    let plain = commands::token_create(state, "plain".into(), Vec::new()).unwrap();
    send_request(&address, &plain.token).await;
    assert_eq!(
        seen.lock().unwrap().last().unwrap().1,
        format!("Bearer {CANARY_KEY}")
    );
    // Re-pinning the plain token moves it to the project's key.
    commands::token_pin(state, "plain".into(), vec![pin("openai", "project")]).unwrap();
    let plain_info = commands::tokens_list(state).unwrap();
    assert_eq!(plain_info[1].keys, [pin("openai", "project")]);
    let error = commands::token_pin(state, "nobody".into(), Vec::new()).unwrap_err();
    assert_eq!(error.code, AppErrorCode::NotFound);
    let error = commands::token_pin(state, "plain".into(), vec![pin("ollama", "a")]).unwrap_err();
    assert_eq!(error.code, AppErrorCode::InvalidInput);
    commands::token_pin(state, "plain".into(), Vec::new()).unwrap();
    assert!(commands::tokens_list(state).unwrap()[1].keys.is_empty());
    let json = serde_json::to_string(&commands::tokens_list(state).unwrap()).unwrap();
    assert!(!json.contains(PROJECT_KEY), "{json}");
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_save_moves_proxy() {
    let fixture = fixture(None);
    let state = &fixture.state;
    commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let mut settings = commands::settings_get(state).unwrap();
    assert_eq!(settings.auto_lock_minutes, 15);
    assert_eq!(settings.port, 0);

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    settings.port = port;
    settings.auto_lock_minutes = 5;
    settings.retention_days = 3;
    let saved = commands::settings_save(state, settings.clone())
        .await
        .unwrap();
    assert_eq!(saved, settings);
    let status = commands::app_status(state).await;
    assert_eq!(status.proxy.port, Some(port));
    let text = std::fs::read_to_string(state.data_dir().config()).unwrap();
    assert!(text.starts_with("# written by the test\n"), "{text}");
    assert!(text.contains("auto_lock_minutes = 5"), "{text}");

    settings.body_capture_limit_kib = 0;
    assert_eq!(
        code(commands::settings_save(state, settings).await),
        AppErrorCode::InvalidInput
    );
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_lock_after_idle_time() {
    let fixture = fixture(None);
    let state = &fixture.state;
    commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    assert!(!state.lock_if_idle(Instant::now()).await);
    assert!(
        !state
            .lock_if_idle(Instant::now() + Duration::from_secs(14 * 60))
            .await
    );
    assert!(
        state
            .lock_if_idle(Instant::now() + Duration::from_secs(16 * 60))
            .await
    );
    let status = commands::app_status(state).await;
    assert_eq!(status.vault, VaultState::Locked);
    assert_eq!(status.proxy.state, ProxyRunState::Stopped);

    let path = state.data_dir().config();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[desktop]\nauto_lock_minutes = 0\n");
    std::fs::write(&path, text).unwrap();
    commands::vault_unlock(state, PASSWORD.into())
        .await
        .unwrap();
    let far = Instant::now() + Duration::from_secs(48 * 3600);
    assert!(!state.lock_if_idle(far).await, "0 turns auto-lock off");
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_needs_current() {
    let fixture = fixture(None);
    let state = &fixture.state;
    commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let next = "granite-meadow-29-sparrow-quill";
    let wrong = commands::vault_change_password(state, "wrong".into(), next.into()).await;
    assert_eq!(code(wrong), AppErrorCode::WrongPassword);
    let weak = commands::vault_change_password(state, PASSWORD.into(), "abc".into()).await;
    assert_eq!(code(weak), AppErrorCode::InvalidInput);
    commands::vault_change_password(state, PASSWORD.into(), next.into())
        .await
        .unwrap();
    commands::vault_lock(state).await;
    let old = commands::vault_unlock(state, PASSWORD.into()).await;
    assert_eq!(code(old), AppErrorCode::WrongPassword);
    commands::vault_unlock(state, next.into()).await.unwrap();
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_export_is_private_file() {
    let (upstream, _seen) = mock_provider().await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();
    let token = commands::token_create(state, "tests".into(), Vec::new()).unwrap();
    send_request(&proxy_address(&status), &token.token).await;
    wait_for_logged_row(&fixture).await;

    for format in [ExportFormat::Csv, ExportFormat::Jsonl] {
        let result = logs::export(state, format, &LogFilter::default()).unwrap();
        assert_eq!(result.rows, 1);
        let path = PathBuf::from(&result.path);
        assert_eq!(path.parent().unwrap(), fixture.exports);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }
    let bad = LogFilter {
        since: Some("yesterday".into()),
        ..LogFilter::default()
    };
    assert_eq!(
        code(logs::export(state, ExportFormat::Csv, &bad)),
        AppErrorCode::InvalidInput
    );
    assert_eq!(
        code(logs::query(state, &LogFilter::default(), None, 501)),
        AppErrorCode::InvalidInput
    );
    state.shut_down().await;
}

async fn send_request(address: &str, token: &str) {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/llm/openai/chat/completions"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn push<T: Serialize>(replies: &mut Vec<String>, value: &T) {
    replies.push(serde_json::to_string(value).unwrap());
}

/// A key set through `key_set` must not appear in any command's reply, in
/// the events, in exported files or in the log output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_key_never_leaves_vault() {
    let (upstream, _seen) = mock_provider().await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    let mut replies = Vec::new();

    push(
        &mut replies,
        &commands::vault_create(state, PASSWORD.into())
            .await
            .unwrap(),
    );
    push(
        &mut replies,
        &commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
            .await
            .unwrap(),
    );
    push(
        &mut replies,
        &commands::key_set(state, "openai".into(), "work".into(), CANARY_KEY.into())
            .await
            .unwrap(),
    );
    // A rejected key must not be echoed in the error either.
    let invalid = format!("{CANARY_KEY}\u{7}");
    push(
        &mut replies,
        &commands::key_set(state, "openai".into(), "".into(), invalid)
            .await
            .unwrap_err(),
    );
    push(&mut replies, &commands::keys_list(state).await.unwrap());
    push(
        &mut replies,
        &commands::key_test(state, "openai".into(), "".into())
            .await
            .unwrap(),
    );
    push(&mut replies, &commands::providers_list(state).unwrap());
    push(&mut replies, &commands::settings_get(state).unwrap());
    let token = commands::token_create(state, "tests".into(), Vec::new()).unwrap();
    push(&mut replies, &commands::tokens_list(state).unwrap());
    let status = commands::app_status(state).await;
    push(&mut replies, &status);
    send_request(&proxy_address(&status), &token.token).await;
    wait_for_logged_row(&fixture).await;
    push(
        &mut replies,
        &logs::query(state, &LogFilter::default(), None, 100).unwrap(),
    );
    push(&mut replies, &logs::totals(state).unwrap());
    let mut exported = Vec::new();
    for format in [ExportFormat::Csv, ExportFormat::Jsonl] {
        let result = logs::export(state, format, &LogFilter::default()).unwrap();
        push(&mut replies, &result);
        exported.push(std::fs::read_to_string(&result.path).unwrap());
    }
    push(
        &mut replies,
        &commands::proxy_restart(state, Some(0)).await.unwrap(),
    );
    push(
        &mut replies,
        &commands::key_remove(state, "openai".into(), "work".into())
            .await
            .unwrap(),
    );
    push(&mut replies, &commands::vault_lock(state).await);
    push(
        &mut replies,
        &commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
            .await
            .unwrap_err(),
    );

    for reply in &replies {
        assert!(!reply.contains(CANARY_KEY), "reply leaks the key: {reply}");
        assert!(
            !reply.contains(PASSWORD),
            "reply leaks the password: {reply}"
        );
    }
    for event in fixture.events.events.lock().unwrap().iter() {
        assert!(!event.contains(CANARY_KEY), "event leaks the key: {event}");
    }
    for text in &exported {
        assert!(!text.contains(CANARY_KEY), "export leaks the key");
        assert!(!text.contains(&token.token), "export leaks the token");
    }
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).to_string();
    assert!(
        logs.contains("proxy serving"),
        "the log capture is not working"
    );
    assert!(!logs.contains(CANARY_KEY), "log output leaks the key");
    assert!(!logs.contains(PASSWORD), "log output leaks the password");
    assert!(!logs.contains(&token.token), "log output leaks the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_lock_follows_setting() {
    let fixture = fixture(None);
    let state = &fixture.state;
    commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    assert!(state.lock_for_screen_lock().await);
    assert_eq!(commands::app_status(state).await.vault, VaultState::Locked);
    assert!(!state.lock_for_screen_lock().await, "already locked");

    let path = state.data_dir().config();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[desktop]\nlock_on_screen_lock = false\n");
    std::fs::write(&path, text).unwrap();
    commands::vault_unlock(state, PASSWORD.into())
        .await
        .unwrap();
    assert!(!state.lock_for_screen_lock().await);
    assert_eq!(
        commands::app_status(state).await.vault,
        VaultState::Unlocked
    );
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tray_status_names_address() {
    use keyport_desktop::app::{status_line, tooltip};

    let fixture = fixture(None);
    let state = &fixture.state;
    let missing = commands::app_status(state).await;
    assert_eq!(status_line(&missing), "No vault yet");

    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let address = proxy_address(&status);
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert_eq!(status_line(&status), format!("Serving on {address}"));
    assert_eq!(tooltip(&status), format!("Keyport: Serving on {address}"));

    commands::vault_lock(state).await;
    let locked = commands::app_status(state).await;
    assert_eq!(status_line(&locked), "Locked");
    assert_eq!(tooltip(&locked), "Keyport: Locked");
    state.shut_down().await;
}

#[test]
fn locked_tray_icon_is_grey_and_faded() {
    use tauri::image::Image;

    let icon = Image::new_owned(vec![255, 0, 0, 255, 10, 200, 30, 128, 0, 0, 0, 0], 3, 1);
    let locked = keyport_desktop::app::locked_icon(&icon);
    assert_eq!((locked.width(), locked.height()), (3, 1));
    assert_eq!(
        locked.rgba(),
        [76, 76, 76, 127, 124, 124, 124, 64, 0, 0, 0, 0]
    );
}

#[test]
fn hidden_flag_starts_in_tray() {
    use keyport_desktop::app::{starts_hidden, HIDDEN_FLAG};
    assert!(starts_hidden(["keyport-desktop", HIDDEN_FLAG]));
    assert!(starts_hidden(["keyport-desktop", "--other", HIDDEN_FLAG]));
    assert!(!starts_hidden(["keyport-desktop"]));
    assert!(!starts_hidden(Vec::<String>::new()));
    // The program name is never read as a flag.
    assert!(!starts_hidden([HIDDEN_FLAG]));
    assert!(!starts_hidden(["keyport-desktop", "--hidden=false"]));
}

/// Starts a provider that responds to one request with a Server-Sent Events
/// stream: one event at once, the last only after `release` fires.
async fn held_stream_provider(release: tokio::sync::oneshot::Receiver<()>) -> SocketAddr {
    held_provider(release, false, None).await
}

/// Starts a provider that responds to one request with a Server-Sent Events
/// stream of two events. With `hold_headers` it sends nothing until
/// `release` fires, else only the last event waits for it. `arrived` fires
/// once the request has been read.
async fn held_provider(
    release: tokio::sync::oneshot::Receiver<()>,
    hold_headers: bool,
    arrived: Option<tokio::sync::oneshot::Sender<()>>,
) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        // Reads the head and the Content-Length body of the one request.
        loop {
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the proxy closed before sending the request");
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse::<usize>().unwrap());
                if request.len() >= head_end + 4 + length {
                    break;
                }
            }
        }
        if let Some(arrived) = arrived {
            let _ = arrived.send(());
        }
        let mut release = Some(release);
        if hold_headers {
            let _ = release.take().unwrap().await;
        }
        let first = "data: {\"choices\":[]}\n\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        if let Some(release) = release {
            let _ = release.await;
        }
        let last = "data: [DONE]\n\n";
        let tail = format!("{:x}\r\n{last}\r\n0\r\n\r\n", last.len());
        socket.write_all(tail.as_bytes()).await.unwrap();
        socket.flush().await.unwrap();
    });
    address
}

/// Creates the vault with an OpenAI key and a client token, then starts a
/// streamed chat completion through the proxy. Returns the response after
/// its first chunk, and when the proxy started.
async fn open_stream(state: &AppState) -> (reqwest::Response, Instant) {
    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let started = Instant::now();
    let address = proxy_address(&status);
    commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();
    let token = commands::token_create(state, "tests".into(), Vec::new()).unwrap();

    let mut response = reqwest::Client::new()
        .post(format!("http://{address}/llm/openai/chat/completions"))
        .bearer_auth(&token.token)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    (response, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_lock_counts_stream_bytes() {
    let (release, released) = tokio::sync::oneshot::channel();
    let upstream = held_stream_provider(released).await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    let (mut response, started) = open_stream(state).await;
    let first_chunk = Instant::now();
    assert!(
        !state
            .lock_if_idle(first_chunk + Duration::from_secs(14 * 60))
            .await,
        "locked 14 minutes after the stream's last bytes"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(()).unwrap();
    while response.chunk().await.unwrap().is_some() {}

    // The proxy writes the log row when the body ends and then drops the
    // request, which stamps its end.
    wait_for_logged_row(&fixture).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The idle time runs from the stream's end, at least 300 ms after the
    // start: 15 minutes and 150 ms after the start is not yet idle.
    let after_start = started + Duration::from_secs(15 * 60) + Duration::from_millis(150);
    assert!(
        !state.lock_if_idle(after_start).await,
        "idle time counted from the start of the stream"
    );
    let locked = state
        .lock_if_idle(Instant::now() + Duration::from_secs(16 * 60))
        .await;
    assert!(locked, "not locked 16 minutes after the stream ended");
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_lock_skips_stalled_stream() {
    let (release, released) = tokio::sync::oneshot::channel();
    let upstream = held_stream_provider(released).await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;

    // The stream stays open, but moves no bytes after its first chunk, as
    // when a client stops reading or a provider stalls.
    let (response, _) = open_stream(state).await;
    let locked = state
        .lock_if_idle(Instant::now() + Duration::from_secs(16 * 60))
        .await;
    assert!(locked, "a stalled stream kept the vault unlocked");
    assert_eq!(commands::app_status(state).await.vault, VaultState::Locked);

    let _ = release.send(());
    drop(response);
    state.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_lock_waits_for_response_headers() {
    let (release, released) = tokio::sync::oneshot::channel();
    let (arrived, arrival) = tokio::sync::oneshot::channel();
    let upstream = held_provider(released, true, Some(arrived)).await;
    let fixture = fixture(Some(upstream));
    let state = &fixture.state;
    let status = commands::vault_create(state, PASSWORD.into())
        .await
        .unwrap();
    let address = proxy_address(&status);
    commands::key_set(state, "openai".into(), "".into(), CANARY_KEY.into())
        .await
        .unwrap();
    let token = commands::token_create(state, "tests".into(), Vec::new()).unwrap();

    // A long generation: the provider sends no headers for a while.
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{address}/llm/openai/chat/completions"))
            .bearer_auth(&token.token)
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    tokio::time::timeout(Duration::from_secs(5), arrival)
        .await
        .expect("the request did not reach the provider within 5 s")
        .unwrap();
    let far = Instant::now() + Duration::from_secs(3600);
    assert!(
        !state.lock_if_idle(far).await,
        "locked while a request waited for its response headers"
    );

    release.send(()).unwrap();
    let body = request.await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");
    wait_for_logged_row(&fixture).await;
    let locked = state
        .lock_if_idle(Instant::now() + Duration::from_secs(16 * 60))
        .await;
    assert!(locked, "not locked 16 minutes after the response ended");
    state.shut_down().await;
}
