//! End-to-end tests of `keyport key import` with the real binary, a real
//! vault in a temporary folder and, for the rewrite, `keyport serve` in
//! front of a mock upstream on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use keyport_core::envimport::variables::recognised_names;
use support::{
    assert_success, canary_sweep, chat_request, files_under, stderr, stdout, Env, MockUpstream,
    Server,
};

const OPENAI_OLD: &str = "sk-proj-CANARY-old-openai-0001";
const OPENAI_KEY: &str = "sk-proj-CANARY-openai-key-0002";
const ANTHROPIC_KEY: &str = "sk-ant-CANARY-anthropic-key-0003";
const GEMINI_KEY: &str = "AIzaCANARY-gemini-key-000004";
const DATABASE_PASSWORD: &str = "db-password-not-a-provider-key";

/// A `.env` file like a KaibanJS project's, with CRLF line endings on some
/// lines, a duplicate name, an empty value and a front-end prefix.
fn project_env() -> String {
    format!(
        "\
# KaibanJS team settings\n\
export OPENAI_API_KEY={OPENAI_OLD}   # the old key\n\
\n\
ANTHROPIC_API_KEY='{ANTHROPIC_KEY}'\r\n\
VITE_GEMINI_API_KEY=\"{GEMINI_KEY}\" # browser demo\n\
DATABASE_URL=\"postgres://app:{DATABASE_PASSWORD}@localhost/app\"\n\
GROQ_API_KEY=\n\
OPENAI_API_KEY = {OPENAI_KEY}\n\
PORT=3000\n"
    )
}

const CANARIES: [&str; 4] = [OPENAI_OLD, OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY];

/// Writes `text` to `NAME/.env` under the test folder and returns its path.
fn write_env(env: &Env, folder: &str, text: &str) -> PathBuf {
    let dir = env.dir.path().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(".env");
    std::fs::write(&path, text).unwrap();
    path
}

fn import(env: &Env, path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["key", "import", "--from-env", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// Returns the stored keys as (provider, label, masked) rows.
fn key_list(env: &Env) -> Vec<(String, String, String)> {
    let output = env.run(&["key", "list", "--json"]);
    assert_success(&output);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["provider"].as_str().unwrap().to_owned(),
                row["label"].as_str().unwrap().to_owned(),
                row["masked"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn vault_bytes(env: &Env) -> Vec<u8> {
    std::fs::read(env.data_dir().join("vault.stronghold")).unwrap()
}

/// Returns the token that a rewrite put in place of `name`'s value.
fn token_in(text: &str, name: &str) -> String {
    let start = text
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("{name} missing in {text}"));
    let rest = &text[start + name.len() + 1..];
    let token: String = rest
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert!(token.starts_with("kp_"), "{text}");
    token
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn import_stores_keys_and_reports_notes() {
    let env = Env::new();
    env.init();
    let path = write_env(&env, "team", &project_env());

    let output = import(&env, &path, &[]);
    assert_success(&output);
    let out = stdout(&output);
    assert!(
        out.contains("Added the anthropic key \"default\" from ANTHROPIC_API_KEY (line 4)"),
        "{out}"
    );
    assert!(
        out.contains("Added the google key \"default\" from VITE_GEMINI_API_KEY (line 5)"),
        "{out}"
    );
    assert!(
        out.contains("Added the openai key \"default\" from OPENAI_API_KEY (line 8)"),
        "{out}"
    );
    let err = stderr(&output);
    assert!(
        err.contains("OPENAI_API_KEY is set more than once (line 2 and line 8)"),
        "{err}"
    );
    assert!(
        err.contains("GROQ_API_KEY (line 7) is empty; skipped"),
        "{err}"
    );
    assert!(err.contains("still in"), "{err}");
    assert!(err.contains("keyport token create NAME"), "{err}");
    assert!(
        err.contains("OPENAI_BASE_URL=http://127.0.0.1:7447/llm/openai"),
        "{err}"
    );
    assert!(
        err.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:7447/llm/anthropic"),
        "{err}"
    );

    // The last OPENAI_API_KEY wins, as in dotenv: its tail is shown.
    let keys = key_list(&env);
    let providers: Vec<&str> = keys.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(providers, ["anthropic", "google", "openai"]);
    assert!(keys[2].2.ends_with("0002"), "{keys:?}");

    // Without --rewrite the file is untouched.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), project_env());

    let again = import(&env, &path, &["--label", "work"]);
    assert_success(&again);
    assert!(
        stdout(&again).contains("Added the openai key \"work\""),
        "{}",
        stdout(&again)
    );
    let replaced = import(&env, &path, &[]);
    assert_success(&replaced);
    assert!(
        stdout(&replaced).contains("Replaced the openai key \"default\""),
        "{}",
        stdout(&replaced)
    );

    canary_sweep(&env, &CANARIES);
}

#[test]
fn next_steps_name_no_port_when_the_port_is_picked_at_start() {
    let env = Env::new();
    env.init();
    env.write_config("[proxy]\nport = 0\n");
    let path = write_env(&env, "team", &project_env());

    let output = import(&env, &path, &[]);
    assert_success(&output);
    let err = stderr(&output);
    assert!(
        err.contains("OPENAI_BASE_URL=http://127.0.0.1:PORT/llm/openai"),
        "{err}"
    );
    assert!(err.contains("the port `keyport serve` prints"), "{err}");
    // A prefixed key gets the base-URL name with the same prefix.
    assert!(
        err.contains("VITE_GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:PORT/llm/google"),
        "{err}"
    );
    assert!(!err.contains("127.0.0.1:0"), "{err}");
}

#[test]
fn dry_run_changes_nothing() {
    let env = Env::new();
    env.init();
    let path = write_env(&env, "team", &project_env());
    let before = vault_bytes(&env);

    let output = import(&env, &path, &["--dry-run", "--rewrite", "--backup"]);
    assert_success(&output);
    let out = stdout(&output);
    assert!(out.contains("Would add the openai key"), "{out}");
    assert!(out.contains("Would copy the file to"), "{out}");
    assert!(out.contains("client token \"env-team\""), "{out}");
    assert!(stderr(&output).contains("nothing was changed"));

    assert_eq!(vault_bytes(&env), before);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), project_env());
    assert!(!path.with_file_name(".env.keyport-backup").exists());
    assert!(!env.data_dir().join("tokens.json").exists());
    canary_sweep(&env, &CANARIES);
}

#[test]
fn malformed_line_imports_nothing() {
    let env = Env::new();
    env.init();
    assert_success(&env.run_with_stdin(&["key", "set", "groq"], "gsk_existing-key-000001"));
    let before = vault_bytes(&env);

    let text = format!(
        "{}MY VAR=value\nMISTRAL_API_KEY=mistral-CANARY-0005\n",
        project_env()
    );
    let path = write_env(&env, "broken", &text);
    let output = import(&env, &path, &["--rewrite"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "{}, line 10: invalid variable name",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("Nothing was imported"), "{err}");

    let unterminated = write_env(&env, "quote", "A=1\nOPENAI_API_KEY=\"sk-CANARY-open\n");
    let output = import(&env, &unterminated, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("line 2: the value opens a \" quote"));

    assert_eq!(vault_bytes(&env), before);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert!(!env.data_dir().join("tokens.json").exists());
    canary_sweep(
        &env,
        &[&CANARIES[..], &["mistral-CANARY-0005", "sk-CANARY-open"]].concat(),
    );
}

#[test]
fn rejected_value_imports_nothing() {
    let env = Env::new();
    env.init();
    let before = vault_bytes(&env);

    // One bad value among good ones rejects the whole import.
    let text = format!(
        "{}MISTRAL_API_KEY=\"mistral CANARY with space\"\n",
        project_env()
    );
    let path = write_env(&env, "bad", &text);
    let output = import(&env, &path, &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("MISTRAL_API_KEY (line 10) is not a valid mistral key"),
        "{err}"
    );
    assert!(err.contains("Nothing was imported"), "{err}");
    assert!(!err.contains(".."), "{err}");
    assert_eq!(vault_bytes(&env), before);

    let conflict = write_env(
        &env,
        "conflict",
        "GOOGLE_API_KEY=AIza-CANARY-first-000\nGEMINI_API_KEY=AIza-CANARY-second-00\n",
    );
    let output = import(&env, &conflict, &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("GOOGLE_API_KEY (line 1)"), "{err}");
    assert!(err.contains("GEMINI_API_KEY (line 2)"), "{err}");
    assert!(err.contains("--skip"), "{err}");
    assert_eq!(vault_bytes(&env), before);

    let skipped = import(&env, &conflict, &["--skip", "GOOGLE_API_KEY"]);
    assert_success(&skipped);
    assert!(key_list(&env)[0].2.ends_with("d-00"));

    canary_sweep(
        &env,
        &[
            &CANARIES[..],
            &[
                "mistral CANARY with space",
                "AIza-CANARY-first-000",
                "AIza-CANARY-second-00",
            ],
        ]
        .concat(),
    );
}

#[cfg(unix)]
#[test]
fn rewrite_without_backup_leaves_no_secret_copy() {
    let env = Env::new();
    env.init();
    let path = write_env(&env, "my project", &project_env());
    set_mode(&path, 0o640);

    let output = import(&env, &path, &["--rewrite"]);
    assert_success(&output);
    // The rewritten file already contains the client token.
    assert!(!stderr(&output).contains("keyport token create"));
    let rewritten = std::fs::read_to_string(&path).unwrap();
    let token = token_in(&rewritten, "ANTHROPIC_API_KEY");

    // Every byte but the imported values is unchanged, the old duplicate
    // included; the database URL and the empty value stay as they were.
    let expected = project_env()
        .replace(OPENAI_OLD, &token)
        .replace(OPENAI_KEY, &token)
        .replace(ANTHROPIC_KEY, &token)
        .replace(GEMINI_KEY, &token);
    assert_eq!(rewritten, expected);
    assert!(rewritten.contains(DATABASE_PASSWORD));
    assert_eq!(mode(&path), 0o640);

    let out = stdout(&output);
    assert!(out.contains("client token \"env-my-project\""), "{out}");
    assert!(!out.contains("Copied"), "{out}");
    let listed = env.run(&["token", "list"]);
    assert!(stdout(&listed).contains("env-my-project"));

    // Nothing else in the project folder holds a key.
    let project_files = files_under(path.parent().unwrap());
    assert_eq!(project_files, std::slice::from_ref(&path));

    // A second run finds only tokens and leaves the vault alone.
    let before = vault_bytes(&env);
    let again = import(&env, &path, &["--rewrite"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("contains a Keyport client token"),
        "{}",
        stderr(&again)
    );
    assert_eq!(vault_bytes(&env), before);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), rewritten);

    // A second import into the same folder gets a new token name.
    let other = write_env(
        &env,
        "my project",
        "OPENAI_API_KEY=sk-proj-second-key-0001\n",
    );
    let output = import(&env, &other, &["--rewrite"]);
    assert_success(&output);
    assert!(stdout(&output).contains("\"env-my-project-2\""));

    canary_sweep(&env, &[&CANARIES[..], &[token.as_str()]].concat());
}

#[cfg(unix)]
#[test]
fn rewrite_with_backup_keeps_private_original() {
    let env = Env::new();
    env.init();
    let path = write_env(&env, "team", &project_env());
    set_mode(&path, 0o644);

    let output = import(
        &env,
        &path,
        &["--rewrite", "--backup", "--token-name", "team-dev"],
    );
    assert_success(&output);
    let backup = path.with_file_name(".env.keyport-backup");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), project_env());
    assert_eq!(mode(&backup), 0o600);
    assert_eq!(mode(&path), 0o644);
    let rewritten = std::fs::read_to_string(&path).unwrap();
    for canary in CANARIES {
        assert!(!rewritten.contains(canary), "{canary} in {rewritten}");
    }
    assert!(stdout(&output).contains("\"team-dev\""));

    // An existing backup is never overwritten, and nothing changes.
    std::fs::write(&path, project_env()).unwrap();
    let before = vault_bytes(&env);
    let output = import(&env, &path, &["--rewrite", "--backup"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(vault_bytes(&env), before);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), project_env());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), project_env());

    // A taken --token-name is rejected before the import.
    std::fs::remove_file(&backup).unwrap();
    let output = import(&env, &path, &["--rewrite", "--token-name", "team-dev"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("already exists"));
    assert_eq!(vault_bytes(&env), before);

    canary_sweep(&env, &CANARIES);
}

#[test]
fn import_from_process_environment() {
    let env = Env::new();
    env.init();
    let mut command = env.command(&["key", "import", "--from-env", "-"]);
    for name in recognised_names() {
        command.env_remove(name);
    }
    let output = command
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("NEXT_PUBLIC_ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("GEMINI_API_KEY", "")
        .output()
        .unwrap();
    env.record(&output);
    assert_success(&output);
    let out = stdout(&output);
    assert!(
        out.contains(
            "Added the anthropic key \"default\" from NEXT_PUBLIC_ANTHROPIC_API_KEY (environment)"
        ),
        "{out}"
    );
    assert!(out.contains("Added the openai key"), "{out}");
    assert!(
        stderr(&output).contains("GEMINI_API_KEY (environment) is empty"),
        "{}",
        stderr(&output)
    );
    assert_eq!(key_list(&env).len(), 2);

    let rewrite = env.run(&["key", "import", "--from-env", "-", "--rewrite"]);
    assert_eq!(rewrite.status.code(), Some(2));
    assert!(stderr(&rewrite).contains("--rewrite needs a file"));

    let wrong_password = env
        .command(&["key", "import", "--from-env", "-"])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("KEYPORT_PASSWORD", "not the password")
        .output()
        .unwrap();
    env.record(&wrong_password);
    assert_eq!(wrong_password.status.code(), Some(3));

    canary_sweep(&env, &CANARIES);
}

#[test]
fn rewritten_token_reaches_upstream_with_imported_key() {
    let env = Env::new();
    let upstream = MockUpstream::start();
    env.write_config(&format!(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:{}/v1\"\n",
        upstream.port
    ));
    env.init();
    let path = write_env(&env, "kaiban-app", &project_env());

    let output = import(&env, &path, &["--rewrite"]);
    assert_success(&output);
    let rewritten = std::fs::read_to_string(&path).unwrap();
    let token = token_in(&rewritten, "OPENAI_API_KEY");

    let server = Server::start(&env);
    let response = chat_request(server.port, &format!("authorization: Bearer {token}\r\n"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("hello from mock"), "{response}");

    let requests = upstream.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let upstream_request = requests[0].to_ascii_lowercase();
    assert!(
        upstream_request.contains(&format!(
            "authorization: bearer {}",
            OPENAI_KEY.to_ascii_lowercase()
        )),
        "{upstream_request}"
    );
    assert!(
        !requests[0].contains(&token),
        "client token reached upstream"
    );
    assert!(server.stop(&env).success());

    // The log row names the token made by the import.
    let logs = env.run(&["logs", "--json"]);
    assert_success(&logs);
    let rows: Vec<serde_json::Value> = stdout(&logs)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["token_name"], "env-kaiban-app");

    for canary in CANARIES {
        assert!(
            !rewritten.contains(canary),
            "{canary} in the rewritten file"
        );
    }
    canary_sweep(&env, &[&CANARIES[..], &[token.as_str()]].concat());
}

/// Returns the `Authorization` value of the last request `upstream` got.
fn last_authorization(upstream: &MockUpstream) -> String {
    let requests = upstream.requests.lock().unwrap();
    let request = requests.last().expect("no upstream request");
    request
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_string())
        })
        .expect("no authorization header upstream")
}

/// Sends chat requests with `token` until `done` accepts a response, for
/// changes that a running proxy applies within about a second. Fails with
/// `what` after 10 s.
fn poll_proxy(server: &Server, token: &str, what: &str, mut done: impl FnMut(&str) -> bool) {
    let started = std::time::Instant::now();
    loop {
        let response = chat_request(server.port, &format!("authorization: Bearer {token}\r\n"));
        if done(&response) {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}; last response: {response}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Polls until the upstream receives `expected` for `token`'s requests.
fn wait_for_key(server: &Server, upstream: &MockUpstream, token: &str, expected: &str) {
    poll_proxy(
        server,
        token,
        "the upstream still receives another key",
        |response| {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            last_authorization(upstream) == format!("Bearer {expected}")
        },
    );
}

#[test]
fn labelled_imports_pin_project_keys() {
    const KEY_A: &str = "sk-proj-CANARY-project-a-0011";
    const KEY_B: &str = "sk-proj-CANARY-project-b-0012";
    let env = Env::new();
    let upstream = MockUpstream::start();
    env.write_config(&format!(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:{}/v1\"\n",
        upstream.port
    ));
    env.init();
    let path_a = write_env(&env, "project-a", &format!("OPENAI_API_KEY={KEY_A}\n"));
    let path_b = write_env(&env, "project-b", &format!("OPENAI_API_KEY={KEY_B}\n"));

    let output = import(
        &env,
        &path_a,
        &["--rewrite", "--label", "project-a", "--dry-run"],
    );
    assert_success(&output);
    assert!(
        stdout(&output).contains("which uses the keys labelled \"project-a\" for openai"),
        "{}",
        stdout(&output)
    );
    for (path, label) in [(&path_a, "project-a"), (&path_b, "project-b")] {
        let output = import(&env, path, &["--rewrite", "--label", label]);
        assert_success(&output);
        assert!(
            stdout(&output).contains(&format!(
                "which uses the keys labelled {label:?} for openai"
            )),
            "{}",
            stdout(&output)
        );
    }
    let labels: Vec<String> = key_list(&env)
        .into_iter()
        .map(|(_, label, _)| label)
        .collect();
    assert_eq!(labels, ["project-a", "project-b"]);
    let token_a = token_in(&std::fs::read_to_string(&path_a).unwrap(), "OPENAI_API_KEY");
    let token_b = token_in(&std::fs::read_to_string(&path_b).unwrap(), "OPENAI_API_KEY");

    let list = env.run(&["token", "list", "--json"]);
    assert_success(&list);
    let tokens: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(tokens[0]["name"], "env-project-a");
    assert_eq!(tokens[0]["keys"]["openai"], "project-a");
    assert_eq!(tokens[1]["keys"]["openai"], "project-b");
    let table = env.run(&["token", "list"]);
    assert!(
        stdout(&table).contains("openai=project-b"),
        "{}",
        stdout(&table)
    );

    let server = Server::start(&env);
    wait_for_key(&server, &upstream, &token_a, KEY_A);
    wait_for_key(&server, &upstream, &token_b, KEY_B);

    // Re-pinning takes effect in the running proxy.
    let output = env.run(&["token", "pin", "env-project-b", "openai=project-a"]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("uses the openai key \"project-a\""),
        "{}",
        stdout(&output)
    );
    wait_for_key(&server, &upstream, &token_b, KEY_A);

    // Unpinned, the token falls back to the default key, and there is none.
    let output = env.run(&["token", "pin", "env-project-b", "--unpin", "openai"]);
    assert_success(&output);
    poll_proxy(
        &server,
        &token_b,
        "the unpinned token still gets a key",
        |response| response.starts_with("HTTP/1.1 400") && response.contains("key_label_required"),
    );
    assert!(server.stop(&env).success());

    // The log names the key each request used.
    let logs = env.run(&["logs", "--json", "--limit", "500"]);
    assert_success(&logs);
    let labels: std::collections::BTreeSet<String> = stdout(&logs)
        .lines()
        .filter_map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["key_label"].as_str().map(str::to_string)
        })
        .collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["project-a", "project-b"]
    );

    // Bad pins are rejected with the reason and change nothing.
    for (args, expected) in [
        (vec!["openai"], "expected PROVIDER=LABEL"),
        (vec!["nosuch=work"], "unknown provider \"nosuch\""),
        (vec!["openai=two words"], "invalid key label"),
        (vec!["openai=a", "openai=b"], "openai is given twice"),
        (
            vec!["openai=a", "--unpin", "openai"],
            "both pinned and unpinned",
        ),
        (vec!["--unpin", "nosuch"], "unknown provider \"nosuch\""),
        (vec![], "nothing to change"),
    ] {
        let mut command = vec!["token", "pin", "env-project-a"];
        command.extend_from_slice(&args);
        let output = env.run(&command);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // A bad label is a label error, in a dry run too.
    let output = import(
        &env,
        &path_a,
        &["--rewrite", "--label", "bad/x", "--dry-run"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid key label"),
        "{}",
        stderr(&output)
    );

    // Replacing or removing a pinned key names the tokens pinned to it.
    let path_c = write_env(
        &env,
        "project-c",
        "OPENAI_API_KEY=sk-proj-CANARY-project-c-0013\n",
    );
    let output = import(&env, &path_c, &["--label", "project-a"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains(
            "client token(s) \"env-project-a\" are pinned to the openai key \"project-a\""
        ),
        "{}",
        stderr(&output)
    );
    let output = env.run(&["key", "remove", "openai", "--label", "project-a"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("\"env-project-a\" are pinned to this key"),
        "{}",
        stderr(&output)
    );
    let list = env.run(&["token", "list", "--json"]);
    let tokens: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(tokens[0]["keys"]["openai"], "project-a");
    assert_eq!(tokens[1]["keys"], serde_json::json!({}));

    let mut canaries = vec![
        KEY_A,
        KEY_B,
        "sk-proj-CANARY-project-c-0013",
        token_a.as_str(),
        token_b.as_str(),
    ];
    canaries.extend_from_slice(&CANARIES);
    canary_sweep(&env, &canaries);
}

#[test]
fn set_base_urls_adds_proxy_urls() {
    let env = Env::new();
    env.init();
    env.write_config("[proxy]\nport = 7560\n");
    let path = write_env(&env, "sdk-app", &project_env());

    let output = import(&env, &path, &["--rewrite", "--set-base-urls"]);
    assert_success(&output);
    let rewritten = std::fs::read_to_string(&path).unwrap();
    let token = token_in(&rewritten, "OPENAI_API_KEY");
    let expected_file = project_env()
        .replace(OPENAI_OLD, &token)
        .replace(OPENAI_KEY, &token)
        .replace(ANTHROPIC_KEY, &token)
        .replace(GEMINI_KEY, &token)
        + "# Keyport proxy, added by `keyport key import --set-base-urls`\n\
           ANTHROPIC_BASE_URL=http://127.0.0.1:7560/llm/anthropic\n\
           OPENAI_BASE_URL=http://127.0.0.1:7560/llm/openai\n\
           VITE_GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:7560/llm/google\n";
    assert_eq!(rewritten, expected_file);

    let out = stdout(&output);
    assert!(
        out.contains(
            "Added OPENAI_BASE_URL=http://127.0.0.1:7560/llm/openai at the end of the file"
        ),
        "{out}"
    );
    // The prefixed variable needs the project's code to pass it on.
    let err = stderr(&output);
    assert!(
        err.contains("VITE_GOOGLE_GEMINI_BASE_URL: no SDK reads it by itself"),
        "{err}"
    );
    assert!(!err.contains("  OPENAI_BASE_URL="), "{err}");
    assert!(!err.contains("  ANTHROPIC_BASE_URL="), "{err}");

    // A second run finds client tokens and proxy URLs only, and keeps them.
    let vault_before = vault_bytes(&env);
    let again = import(&env, &path, &["--rewrite", "--set-base-urls"]);
    assert_success(&again);
    assert!(
        stdout(&again).contains("Kept OPENAI_BASE_URL=http://127.0.0.1:7560/llm/openai (line 12)"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected_file);
    assert_eq!(vault_bytes(&env), vault_before);
    canary_sweep(&env, &[&CANARIES[..], &[token.as_str()]].concat());
}

#[test]
fn set_base_urls_after_an_earlier_rewrite() {
    let env = Env::new();
    env.init();
    let path = write_env(&env, "later", &project_env());
    let first = import(&env, &path, &["--rewrite"]);
    assert_success(&first);
    assert!(
        stderr(&first).contains("run the import again with --rewrite --set-base-urls"),
        "{}",
        stderr(&first)
    );
    let rewritten = std::fs::read_to_string(&path).unwrap();

    // A plain second import finds tokens, not keys, and reports that.
    let again = import(&env, &path, &[]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing to import") && stderr(&again).contains("client tokens"),
        "{}",
        stderr(&again)
    );
    let tokens_before = std::fs::read(env.data_dir().join("tokens.json")).unwrap();
    let vault_before = vault_bytes(&env);

    let dry = import(&env, &path, &["--rewrite", "--set-base-urls", "--dry-run"]);
    assert_success(&dry);
    assert!(
        stdout(&dry).contains("Would add OPENAI_BASE_URL=http://127.0.0.1:7447/llm/openai"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), rewritten);

    let output = import(&env, &path, &["--rewrite", "--set-base-urls", "--backup"]);
    assert_success(&output);
    let backup = path.with_file_name(".env.keyport-backup");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), rewritten);
    assert_eq!(mode(&backup), 0o600);
    let err = stderr(&output);
    assert!(
        err.contains("contains client tokens and no provider keys"),
        "{err}"
    );
    assert!(
        err.contains("VITE_GOOGLE_GEMINI_BASE_URL: no SDK reads it by itself"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        rewritten
            + "# Keyport proxy, added by `keyport key import --set-base-urls`\n\
               ANTHROPIC_BASE_URL=http://127.0.0.1:7447/llm/anthropic\n\
               OPENAI_BASE_URL=http://127.0.0.1:7447/llm/openai\n\
               VITE_GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:7447/llm/google\n"
    );
    // No new token and no vault change.
    assert_eq!(
        std::fs::read(env.data_dir().join("tokens.json")).unwrap(),
        tokens_before
    );
    assert_eq!(vault_bytes(&env), vault_before);
    canary_sweep(&env, &CANARIES);
}

#[test]
fn set_base_urls_refusals_import_nothing() {
    let env = Env::new();
    env.init();
    let before = vault_bytes(&env);

    // A base URL that points at a gateway is not replaced.
    let text = format!(
        "{}OPENAI_BASE_URL=https://ops:gw-secret@gateway.corp.test/v1\n",
        project_env()
    );
    let path = write_env(&env, "gateway", &text);
    let output = import(&env, &path, &["--rewrite", "--set-base-urls"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("OPENAI_BASE_URL (line 10) points the project at another server"),
        "{err}"
    );
    assert!(err.contains("[providers.openai]"), "{err}");
    assert!(err.contains("Nothing was imported"), "{err}");
    assert!(!err.contains("gw-secret"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // With port 0 the address is not known until `keyport serve` starts.
    env.write_config("[proxy]\nport = 0\n");
    let path = write_env(&env, "picked-port", &project_env());
    let output = import(&env, &path, &["--rewrite", "--set-base-urls"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("sets port = 0"), "{err}");
    assert!(err.contains("Nothing was imported"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), project_env());

    // The flag only makes sense with a rewrite.
    let output = import(&env, &path, &["--set-base-urls"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--rewrite"), "{}", stderr(&output));

    assert_eq!(vault_bytes(&env), before);
    assert!(!env.data_dir().join("tokens.json").exists());
    canary_sweep(&env, &CANARIES);
}

#[test]
fn rewrite_rejects_key_shadowed_by_empty() {
    let env = Env::new();
    env.init();
    let text = format!(
        "OPENAI_API_KEY={OPENAI_OLD}\nANTHROPIC_API_KEY={ANTHROPIC_KEY}\nOPENAI_API_KEY=\n"
    );
    let path = write_env(&env, "shadowed", &text);

    let output = import(&env, &path, &["--rewrite"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("OPENAI_API_KEY has a value at line 1"),
        "{message}"
    );
    assert!(message.contains("Nothing was imported"), "{message}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert!(key_list(&env).is_empty());

    // Without --rewrite the import goes ahead and says what stays behind.
    let output = import(&env, &path, &[]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("OPENAI_API_KEY has a value at line 1 that line 3 overrides"),
        "{}",
        stderr(&output)
    );
    canary_sweep(&env, &CANARIES);
}

#[test]
fn set_base_urls_notes_skipped_keys() {
    let env = Env::new();
    env.init();
    let text = "GOOGLE_API_KEY=AIza-CANARY-google-01\nGEMINI_API_KEY=AIza-CANARY-gemini-02\n";
    let path = write_env(&env, "skipped", text);

    let output = import(
        &env,
        &path,
        &["--rewrite", "--set-base-urls", "--skip", "GEMINI_API_KEY"],
    );
    assert_success(&output);
    let err = stderr(&output);
    assert!(
        err.contains(
            "GEMINI_API_KEY (line 2) was skipped and still contains a key, but \
             GOOGLE_GEMINI_BASE_URL will send"
        ),
        "{err}"
    );
    assert!(!err.contains("CANARY"), "{err}");
}
