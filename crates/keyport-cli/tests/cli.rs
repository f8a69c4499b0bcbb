//! End-to-end tests of the `keyport` binary: vault, keys, tokens, `serve`
//! against a mock upstream on 127.0.0.1, exit codes, and a canary sweep of
//! everything the program writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{
    assert_success, canary_sweep, chat_request, stderr, stdout, Env, MockUpstream, Server, PASSWORD,
};
const VAULT_KEY: &str = "sk-vault-oai-CANARY0001";
const ANTHROPIC_KEY: &str = "sk-ant-vault-CANARY0002";
const REPLACED_KEY: &str = "sk-vault-oai-CANARY0009";

#[test]
fn init_creates_vault_and_refuses_second_init() {
    let env = Env::new();
    env.init();
    assert!(env.data_dir().join("vault.stronghold").exists());
    assert!(env.data_dir().join("vault.header.json").exists());

    let again = env.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn init_rejects_short_password() {
    let env = Env::new();
    let output = env
        .command(&["init"])
        .env("KEYPORT_PASSWORD", "short")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("at least 8 characters"),
        "{}",
        stderr(&output)
    );
    assert!(!env.data_dir().join("vault.stronghold").exists());
}

#[test]
fn commands_without_vault_say_to_run_init() {
    let env = Env::new();
    let output = env.run(&["key", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("keyport init"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn key_set_list_remove_shows_only_masked_keys() {
    let env = Env::new();
    env.init();

    let set = env.run_with_stdin(&["key", "set", "openai"], &format!("{VAULT_KEY}\n"));
    assert_success(&set);
    assert!(stdout(&set).contains("Stored"), "{}", stdout(&set));

    let replaced = env.run_with_stdin(&["key", "set", "openai"], VAULT_KEY);
    assert_success(&replaced);
    assert!(
        stdout(&replaced).contains("Replaced"),
        "{}",
        stdout(&replaced)
    );

    let labelled = env.run_with_stdin(&["key", "set", "openai", "--label", "work"], ANTHROPIC_KEY);
    assert_success(&labelled);

    let list = env.run(&["key", "list"]);
    assert_success(&list);
    let text = stdout(&list);
    assert!(text.contains("openai"), "{text}");
    assert!(text.contains("work"), "{text}");
    assert!(text.contains("…0001"), "{text}");

    let json = env.run(&["key", "list", "--json"]);
    assert_success(&json);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 2);

    let removed = env.run(&["key", "remove", "openai", "--label", "work"]);
    assert_success(&removed);
    let missing = env.run(&["key", "remove", "openai", "--label", "work"]);
    assert_eq!(missing.status.code(), Some(1));

    let transcript = env.transcript.lock().unwrap();
    assert!(!transcript.contains(VAULT_KEY), "key printed: {transcript}");
    assert!(
        !transcript.contains(ANTHROPIC_KEY),
        "key printed: {transcript}"
    );
}

#[test]
fn key_set_rejects_unknown_provider_and_empty_key() {
    let env = Env::new();
    env.init();

    let unknown = env.run_with_stdin(&["key", "set", "opneai"], VAULT_KEY);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("unknown provider"),
        "{}",
        stderr(&unknown)
    );
    assert!(stderr(&unknown).contains("openai"), "{}", stderr(&unknown));

    let empty = env.run_with_stdin(&["key", "set", "openai"], "\n");
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("no key"), "{}", stderr(&empty));
}

#[test]
fn key_as_argument_is_rejected_unechoed() {
    let env = Env::new();
    env.init();
    let output = env.run(&["key", "set", "openai", VAULT_KEY]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("process list"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("OPENAI_API_KEY"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains(VAULT_KEY), "{}", stderr(&output));
    assert!(!stdout(&output).contains(VAULT_KEY));
}

#[test]
fn password_file_beats_environment() {
    let env = Env::new();
    env.init();
    let file = env.dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let output = env
        .command(&["--password-file", file.to_str().unwrap(), "key", "list"])
        .env("KEYPORT_PASSWORD", "stale and wrong")
        .output()
        .unwrap();
    assert_success(&output);

    let wrong_file = env.dir.path().join("wrong");
    std::fs::write(&wrong_file, "not the password\n").unwrap();
    let output = env
        .command(&[
            "--password-file",
            wrong_file.to_str().unwrap(),
            "key",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains(wrong_file.to_str().unwrap()),
        "{}",
        stderr(&output)
    );
}

#[test]
fn token_create_names_folder_and_warns_without_vault() {
    let env = Env::new();
    let output = env.run(&["token", "create", "x"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("tokens.json"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("contains no vault"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn wrong_password_exits_with_code_3() {
    let env = Env::new();
    env.init();
    let output = env
        .command(&["key", "list"])
        .env("KEYPORT_PASSWORD", "not the password")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("wrong vault password"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn password_file_is_read() {
    let env = Env::new();
    env.init();
    let file = env.dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let output = env
        .command(&["--password-file", file.to_str().unwrap(), "key", "list"])
        .env_remove("KEYPORT_PASSWORD")
        .output()
        .unwrap();
    assert_success(&output);
}

#[test]
fn missing_password_source_is_explained() {
    let env = Env::new();
    env.init();
    let output = env
        .command(&["key", "list"])
        .env_remove("KEYPORT_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("KEYPORT_PASSWORD"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn token_limit_sets_shows_and_clears_limits() {
    let env = Env::new();
    assert_success(&env.run(&["token", "create", "agent"]));
    assert_success(&env.run(&["token", "create", "free"]));

    let set = env.run(&[
        "token",
        "limit",
        "agent",
        "--rpm",
        "60",
        "--tpm",
        "100000",
        "--daily-usd",
        "5",
        "--monthly-usd",
        "50",
        "--warn-at",
        "50",
        "--allow",
        "openai:gpt-4o-mini*",
        "--allow",
        "anthropic:*",
    ]);
    assert_success(&set);
    assert!(stdout(&set).contains("60 rpm"), "{}", stdout(&set));

    // Today's spend comes from the request log: $3 of $5 is past 50 %.
    let log = keyport_core::requestlog::RequestLog::open(
        &env.data_dir().join("requests.sqlite3"),
        keyport_core::requestlog::LogSettings::default(),
    )
    .unwrap();
    let mut record = keyport_core::requestlog::RequestRecord::new(
        chrono::Utc::now(),
        "openai",
        "POST",
        "/llm/openai/chat/completions",
    );
    record.token_name = Some("agent".into());
    record.cost_usd = Some(3.0);
    log.recorder().record(record);
    log.flush().unwrap();
    drop(log);

    let list = env.run(&["token", "list"]);
    assert_success(&list);
    let text = stdout(&list);
    let agent_line = text.lines().find(|line| line.starts_with("agent")).unwrap();
    for part in [
        "60 rpm",
        "100000 tpm",
        "$5.00/day (today $3.00)",
        "$50.00/month (month $3.00)",
        "warn at 50 %",
        "allow openai:gpt-4o-mini* anthropic:*",
        "WARNING",
    ] {
        assert!(agent_line.contains(part), "{part:?} missing: {agent_line}");
    }
    let free_line = text.lines().find(|line| line.starts_with("free")).unwrap();
    assert!(free_line.trim_end().ends_with('-'), "{free_line}");

    let json = env.run(&["token", "list", "--json"]);
    assert_success(&json);
    let items: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let agent = &items[0];
    assert_eq!(agent["limits"]["requests_per_minute"], 60);
    assert_eq!(agent["limits"]["daily_usd"], 5.0);
    assert_eq!(agent["limits"]["allow"][1], "anthropic:*");
    assert_eq!(agent["spend"]["today_usd"], 3.0);
    assert_eq!(agent["spend"]["warning"], true);
    assert!(items[1]["limits"].is_null());

    // Options not given keep their values.
    assert_success(&env.run(&["token", "limit", "agent", "--rpm", "10"]));
    let json = env.run(&["token", "list", "--json"]);
    let items: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(items[0]["limits"]["requests_per_minute"], 10);
    assert_eq!(items[0]["limits"]["tokens_per_minute"], 100000);

    assert_success(&env.run(&["token", "limit", "agent", "--clear"]));
    let json = env.run(&["token", "list", "--json"]);
    let items: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert!(items[0]["limits"].is_null(), "{items}");
}

#[test]
fn token_limit_rejects_invalid_values() {
    let env = Env::new();
    assert_success(&env.run(&["token", "create", "agent"]));

    let pattern = env.run(&["token", "limit", "agent", "--allow", "gpt-4o"]);
    assert_eq!(pattern.status.code(), Some(2));
    assert!(
        stderr(&pattern).contains("PROVIDER:MODEL"),
        "{}",
        stderr(&pattern)
    );

    let zero = env.run(&["token", "limit", "agent", "--rpm", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(
        stderr(&zero).contains("requests per minute"),
        "{}",
        stderr(&zero)
    );

    let nothing = env.run(&["token", "limit", "agent"]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(stderr(&nothing).contains("--rpm"), "{}", stderr(&nothing));

    let missing = env.run(&["token", "limit", "nobody", "--rpm", "5"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no token named"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn concurrent_token_limits_both_apply() {
    let env = Env::new();
    assert_success(&env.run(&["token", "create", "agent"]));

    // Holding the file lock makes both runs start before either writes.
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.data_dir().join("tokens.json.lock"))
        .unwrap();
    lock.lock().unwrap();
    let spawn = |args: &[&str]| {
        env.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rpm = spawn(&["token", "limit", "agent", "--rpm", "7"]);
    let daily = spawn(&["token", "limit", "agent", "--daily-usd", "3"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    lock.unlock().unwrap();
    for child in [rpm, daily] {
        let output = child.wait_with_output().unwrap();
        env.record(&output);
        assert_success(&output);
    }

    let json = env.run(&["token", "list", "--json"]);
    let items: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(items[0]["limits"]["requests_per_minute"], 7, "{items}");
    assert_eq!(items[0]["limits"]["daily_usd"], 3.0, "{items}");
}

#[test]
fn passwd_changes_password() {
    let env = Env::new();
    env.init();
    assert_success(&env.run_with_stdin(&["key", "set", "openai"], VAULT_KEY));

    let new_password = "a different long password";
    let output = env
        .command(&["passwd"])
        .env("KEYPORT_NEW_PASSWORD", new_password)
        .output()
        .unwrap();
    assert_success(&output);

    let old = env.run(&["key", "list"]);
    assert_eq!(old.status.code(), Some(3));
    let new = env
        .command(&["key", "list"])
        .env("KEYPORT_PASSWORD", new_password)
        .output()
        .unwrap();
    assert_success(&new);
    assert!(stdout(&new).contains("openai"));
}

#[test]
fn token_create_prints_only_the_token() {
    let env = Env::new();
    let output = env.run(&["token", "create", "kaiban-dev"]);
    assert_success(&output);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("kp_"), "{text}");

    let list = env.run(&["token", "list"]);
    assert_success(&list);
    assert!(stdout(&list).contains("kaiban-dev"));
    assert!(!stdout(&list).contains(lines[0]));

    let duplicate = env.run(&["token", "create", "kaiban-dev"]);
    assert_eq!(duplicate.status.code(), Some(1));
    let invalid = env.run(&["token", "create", "bad name"]);
    assert_eq!(invalid.status.code(), Some(2));

    assert_success(&env.run(&["token", "revoke", "kaiban-dev"]));
    assert_eq!(
        env.run(&["token", "revoke", "kaiban-dev"]).status.code(),
        Some(1)
    );
}

#[test]
fn config_errors_name_the_setting() {
    let env = Env::new();
    env.write_config("[proxy]\nport = 1\nrequire_tokens = false\n");
    let output = env.run(&["config", "show"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("require_tokens"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("config.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn config_show_prints_effective_values() {
    let env = Env::new();
    env.write_config("[providers.openai]\nbase_url = \"http://127.0.0.1:9/v1\"\n");
    let output = env.run(&["config", "show"]);
    assert_success(&output);
    assert!(stdout(&output).contains("http://127.0.0.1:9/v1"));
    assert!(stdout(&output).contains("port = 7447"));

    let path = env.run(&["config", "path"]);
    assert_eq!(
        stdout(&path).trim(),
        env.data_dir().join("config.toml").display().to_string()
    );
}

#[test]
fn serve_injects_vault_key_and_never_leaks_it() {
    let env = Env::new();
    let upstream = MockUpstream::start();
    env.write_config(&format!(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:{}/v1\"\n",
        upstream.port
    ));
    env.init();
    assert_success(&env.run_with_stdin(&["key", "set", "openai"], VAULT_KEY));
    // `token create` prints the token by design, so its output stays out of
    // the transcript that the canary sweep searches.
    let token_output = env.command(&["token", "create", "test"]).output().unwrap();
    assert_success(&token_output);
    let token = stdout(&token_output).trim().to_string();

    let server = Server::start(&env);

    let response = chat_request(server.port, &format!("authorization: Bearer {token}\r\n"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("hello from mock"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-request-id: req_mock"),
        "{response}"
    );

    let requests = upstream.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let upstream_request = &requests[0];
    assert!(
        upstream_request.starts_with("POST /v1/chat/completions "),
        "{upstream_request}"
    );
    assert!(
        upstream_request.to_ascii_lowercase().contains(&format!(
            "authorization: bearer {}",
            VAULT_KEY.to_ascii_lowercase()
        )),
        "{upstream_request}"
    );
    assert!(
        !upstream_request.contains(&token),
        "client token reached upstream"
    );

    let unauthenticated = chat_request(server.port, "");
    assert!(
        unauthenticated.starts_with("HTTP/1.1 401"),
        "{unauthenticated}"
    );
    assert!(
        unauthenticated.contains("keyport token create"),
        "{unauthenticated}"
    );

    // A key replaced while the proxy runs is used within a few seconds.
    assert_success(&env.run_with_stdin(&["key", "set", "openai"], REPLACED_KEY));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = chat_request(server.port, &format!("authorization: Bearer {token}\r\n"));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let last = upstream.requests.lock().unwrap().last().cloned().unwrap();
        if last.contains(REPLACED_KEY) {
            break;
        }
        assert!(last.contains(VAULT_KEY), "{last}");
        assert!(
            Instant::now() < deadline,
            "the replaced key was not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Revoking a token takes effect in the running proxy.
    assert_success(&env.run(&["token", "revoke", "test"]));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = chat_request(server.port, &format!("authorization: Bearer {token}\r\n"));
        if response.starts_with("HTTP/1.1 401") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revoked token still accepted: {response}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let status = server.stop(&env);
    assert!(status.success(), "serve exited with {status:?}");

    // Every request above is in the request log, the rejected ones too.
    let logs = env.run(&["logs", "--json"]);
    assert_success(&logs);
    let rows: Vec<serde_json::Value> = stdout(&logs)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(rows.len() >= 3, "{rows:?}");
    assert_eq!(rows[0]["status"], 200, "{:?}", rows[0]);
    assert_eq!(rows[0]["provider"], "openai");
    assert_eq!(rows[0]["model"], "gpt-4o-mini");
    assert_eq!(rows[0]["token_name"], "test");
    assert_eq!(rows[1]["status"], 401);

    let table = env.run(&["logs", "--provider", "openai", "--status", "2xx"]);
    assert_success(&table);
    // The revocation loop above may have made more successful calls
    // before the proxy reloaded the tokens.
    let data_lines: Vec<String> = stdout(&table).lines().skip(1).map(str::to_string).collect();
    assert!(!data_lines.is_empty(), "{}", stdout(&table));
    for line in &data_lines {
        assert!(line.contains(" 200 "), "{line}");
    }

    let csv = env.run(&["logs", "export", "--format", "csv"]);
    assert_success(&csv);
    assert!(stdout(&csv).starts_with("id,"), "{}", stdout(&csv));

    let totals = env.run(&["logs", "totals", "--by", "provider", "--json"]);
    assert_success(&totals);
    let totals: serde_json::Value = serde_json::from_slice(&totals.stdout).unwrap();
    assert_eq!(totals[0]["key"], "openai");

    let bad_filter = env.run(&["logs", "--since", "yesterday"]);
    assert_eq!(bad_filter.status.code(), Some(2));
    assert!(
        stderr(&bad_filter).contains("--since"),
        "{}",
        stderr(&bad_filter)
    );

    canary_sweep(&env, &[VAULT_KEY, REPLACED_KEY, &token]);
}

#[test]
fn serve_reports_port_in_use() {
    let env = Env::new();
    env.init();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = env.run(&["serve", "--port", &port]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already in use"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("--port"), "{}", stderr(&output));
}

#[test]
fn serve_keeps_serving_with_a_damaged_log() {
    let env = Env::new();
    let upstream = MockUpstream::start();
    env.write_config(&format!(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:{}/v1\"\n",
        upstream.port
    ));
    env.init();
    assert_success(&env.run_with_stdin(&["key", "set", "openai"], VAULT_KEY));
    let token_output = env.command(&["token", "create", "test"]).output().unwrap();
    let token = stdout(&token_output).trim().to_string();
    std::fs::write(
        env.data_dir().join("requests.sqlite3"),
        b"this is not a SQLite database, it is damaged",
    )
    .unwrap();

    let server = Server::start(&env);
    let response = chat_request(server.port, &format!("authorization: Bearer {token}\r\n"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let log_output = server.stderr.lock().unwrap().clone();
    assert!(log_output.contains("request log is off"), "{log_output}");
    assert!(log_output.contains("requests.sqlite3"), "{log_output}");
    assert!(server.stop(&env).success());
}
