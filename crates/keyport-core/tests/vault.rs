//! Vault tests on real Stronghold snapshot files in temporary folders.
//!
//! The crash tests re-run this test binary as a child process (the ignored
//! `child_*` tests below) and kill it with SIGKILL while it saves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and the child processes report on stdout"
)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use iota_stronghold::engine::snapshot as engine_snapshot;
use keyport_core::paths::DataDir;
use keyport_core::secret::{ExposeSecret, SecretString};
use keyport_core::vault::{
    Access, KeySelectError, NewKey, SetOutcome, Vault, VaultError, VaultFollower, MAX_KEY_BYTES,
    SNAPSHOT_WORK_FACTOR,
};
use rand::Rng;
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";
const CANARY: &str = "sk-CANARY-7f3a9c-do-not-leak-0123456789";

/// Default work factor of iota_stronghold 2.1 snapshots
/// (`RECOMMENDED_MINIMUM_ENCRYPT_WORK_FACTOR` in iota-crypto 0.23).
const ENGINE_DEFAULT_WORK_FACTOR: u8 = 19;

const CHILD_DIR_ENV: &str = "KEYPORT_VAULT_TEST_CHILD_DIR";
const CHILD_READY: &str = "child-ready";

fn password(text: &str) -> SecretString {
    SecretString::from(text)
}

fn temp_data_dir() -> (TempDir, DataDir) {
    let temp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(temp.path().join("data"));
    (temp, dir)
}

/// Creates a vault with three keys and closes it.
fn vault_with_keys() -> (TempDir, DataDir) {
    let (temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();
    vault.set_key("openai", None, CANARY.into()).unwrap();
    vault
        .set_key("openai", Some("work"), "sk-work-key-000000000000".into())
        .unwrap();
    vault
        .set_key("anthropic", None, "sk-ant-key-1111111111111".into())
        .unwrap();
    vault.lock();
    (temp, dir)
}

fn read_all_files(dir: &DataDir) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir.root())
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, fs::read(entry.path()).unwrap())
        })
        .collect()
}

fn vault_files(dir: &DataDir) -> (Vec<u8>, Vec<u8>) {
    (
        fs::read(dir.vault_header()).unwrap(),
        fs::read(dir.snapshot()).unwrap(),
    )
}

fn key_of(vault: &Vault, provider: &str, label: Option<&str>) -> String {
    vault
        .keyring()
        .select(provider, label)
        .unwrap()
        .expose_secret()
        .to_owned()
}

fn prev_header(dir: &DataDir) -> std::path::PathBuf {
    dir.root().join("vault.header.json.prev")
}

/// Derives the snapshot key the way docs/vault.md describes, from the header
/// alone, to check the format independently of the vault code.
fn snapshot_key_from_header(dir: &DataDir, password: &str) -> [u8; 32] {
    let header: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.vault_header()).unwrap()).unwrap();
    let kdf = &header["kdf"];
    assert_eq!(kdf["algorithm"], "argon2id");
    let number = |field: &str| u32::try_from(kdf[field].as_u64().unwrap()).unwrap();
    let params = Params::new(
        number("memory_kib"),
        number("iterations"),
        number("parallelism"),
        Some(64),
    )
    .unwrap();
    let salt = hex::decode(kdf["salt"].as_str().unwrap()).unwrap();

    let mut output = [0u8; 64];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &salt, &mut output)
        .unwrap();
    output[..32].try_into().unwrap()
}

/// Returns the `<log2 N>` of the `-> scrypt <salt> <log2 N>` line in the age
/// header that follows the snapshot's magic and version bytes.
fn snapshot_work_factor(path: &Path) -> u8 {
    let bytes = fs::read(path).unwrap();
    let prefix_len = engine_snapshot::MAGIC.len() + engine_snapshot::VERSION.len();
    assert_eq!(&bytes[..5], &engine_snapshot::MAGIC);
    assert_eq!(&bytes[5..prefix_len], &engine_snapshot::VERSION);

    let mut lines = bytes[prefix_len..].split(|byte| *byte == b'\n');
    assert_eq!(lines.next().unwrap(), b"age-encryption.org/v1");
    let stanza = std::str::from_utf8(lines.next().unwrap()).unwrap();
    let fields: Vec<&str> = stanza.split(' ').collect();
    assert_eq!(fields.len(), 4, "unexpected stanza {stanza:?}");
    assert_eq!(fields[..2], ["->", "scrypt"]);
    fields[3].parse().unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn create_then_open_round_trip() {
    let (_temp, dir) = vault_with_keys();
    assert!(Vault::exists(&dir));

    for access in [Access::ReadOnly, Access::ReadWrite] {
        let vault = Vault::open(&dir, &password(PASSWORD), access).unwrap();
        assert_eq!(vault.access(), access);
        assert_eq!(key_of(&vault, "openai", None), CANARY);
        assert_eq!(
            key_of(&vault, "openai", Some("work")),
            "sk-work-key-000000000000"
        );
        assert_eq!(
            key_of(&vault, "anthropic", None),
            "sk-ant-key-1111111111111"
        );
        assert_eq!(vault.keyring().providers(), ["anthropic", "openai"]);
        vault.lock();
    }
}

#[test]
fn create_new_vault_is_empty() {
    let (_temp, dir) = temp_data_dir();
    assert!(!Vault::exists(&dir));
    let vault = Vault::create(&dir, &password(PASSWORD)).unwrap();
    assert!(vault.list().is_empty());
    assert!(vault.keyring().is_empty());
    assert!(Vault::exists(&dir));
    vault.lock();

    let vault = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap();
    assert!(vault.list().is_empty());
}

#[test]
fn create_rejects_existing_or_partial_vault() {
    let (_temp, dir) = vault_with_keys();
    let error = Vault::create(&dir, &password("other")).unwrap_err();
    assert!(matches!(error, VaultError::AlreadyExists { .. }), "{error}");

    fs::remove_file(dir.vault_header()).unwrap();
    let error = Vault::create(&dir, &password("other")).unwrap_err();
    assert!(
        matches!(&error, VaultError::AlreadyExists { path, .. } if *path == dir.snapshot()),
        "{error}"
    );
}

#[test]
fn create_rejects_empty_password() {
    let (_temp, dir) = temp_data_dir();
    let error = Vault::create(&dir, &password("")).unwrap_err();
    assert!(matches!(error, VaultError::EmptyPassword), "{error}");
    assert!(!Vault::exists(&dir));
}

#[test]
fn wrong_password_is_typed_error() {
    let (_temp, dir) = vault_with_keys();
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let error = Vault::open(&dir, &password("hunter2-typo"), access).unwrap_err();
        assert!(matches!(error, VaultError::WrongPassword), "{error}");
        assert!(!format!("{error} {error:?}").contains("hunter2"));
    }
}

#[test]
fn set_replace_remove_with_labels() {
    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();

    let added = vault
        .set_key("openai", None, "sk-first-aaaaaaaaaaaaaaaa".into())
        .unwrap();
    assert_eq!(added, SetOutcome::Added);
    let added_work = vault
        .set_key("openai", Some("work"), "sk-work-bbbbbbbbbbbbbbbb".into())
        .unwrap();
    assert_eq!(added_work, SetOutcome::Added);
    let first = vault.list();

    std::thread::sleep(Duration::from_millis(5));
    let replaced = vault
        .set_key(
            "openai",
            Some("default"),
            "sk-second-cccccccccccccccc".into(),
        )
        .unwrap();
    assert_eq!(replaced, SetOutcome::Replaced);
    vault
        .set_key("groq", Some("personal"), "gsk_groq-dddddddddddddddd".into())
        .unwrap();
    vault.lock();

    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    let listed = vault.list();
    let ids: Vec<(&str, &str)> = listed
        .iter()
        .map(|s| (s.provider.as_str(), s.label.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("groq", "personal"),
            ("openai", "default"),
            ("openai", "work")
        ]
    );
    assert_eq!(listed[1].masked, "sk-…cccc");
    assert_eq!(listed[1].created_at, first[0].created_at);
    assert!(listed[1].updated_at > first[0].updated_at);
    assert_eq!(key_of(&vault, "openai", None), "sk-second-cccccccccccccccc");

    vault.remove_key("openai", Some("work")).unwrap();
    let error = vault.remove_key("openai", Some("work")).unwrap_err();
    assert!(matches!(error, VaultError::KeyNotFound { .. }), "{error}");
    vault.remove_key("openai", None).unwrap();
    vault.lock();

    let vault = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap();
    let providers: Vec<String> = vault.list().into_iter().map(|s| s.provider).collect();
    assert_eq!(providers, ["groq"]);
    assert!(matches!(
        vault.keyring().select("openai", None),
        Err(KeySelectError::NoKeyForProvider { .. })
    ));
}

#[test]
fn invalid_input_is_rejected_without_echoing_key() {
    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();

    let error = vault.set_key("Open AI", None, CANARY.into()).unwrap_err();
    assert!(
        matches!(error, VaultError::InvalidProvider { .. }),
        "{error}"
    );
    let error = vault
        .set_key("openai", Some("-bad"), CANARY.into())
        .unwrap_err();
    assert!(matches!(error, VaultError::InvalidLabel { .. }), "{error}");

    let bad_keys = [
        String::new(),
        format!("{CANARY}\n"),
        format!("{CANARY} trailing"),
        format!("{CANARY}\u{0}"),
        format!("{CANARY}{}", "x".repeat(MAX_KEY_BYTES)),
    ];
    for bad_key in bad_keys {
        let error = vault.set_key("openai", None, bad_key.into()).unwrap_err();
        assert!(matches!(error, VaultError::InvalidKey { .. }), "{error}");
        assert!(!error.to_string().contains("CANARY"), "{error}");
        assert!(!format!("{error:?}").contains("CANARY"), "{error:?}");
    }
    assert!(vault.list().is_empty());
}

#[test]
fn set_keys_saves_all_or_nothing() {
    let (_temp, dir) = vault_with_keys();
    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    let before = read_all_files(&dir);

    let rejected = vault
        .set_keys(vec![
            new_key("groq", "gsk_batch-key-0000000000"),
            new_key("openai", &format!("{CANARY} with a space")),
        ])
        .unwrap_err();
    assert!(
        matches!(rejected, VaultError::InvalidKey { .. }),
        "{rejected}"
    );
    assert!(!rejected.to_string().contains("CANARY"), "{rejected}");
    assert_eq!(read_all_files(&dir), before, "a rejected batch was saved");
    assert_eq!(vault.list().len(), 3);

    let outcomes = vault
        .set_keys(vec![
            new_key("groq", "gsk_batch-key-0000000000"),
            new_key("openai", "sk-batch-replacement-000000"),
        ])
        .unwrap();
    assert_eq!(outcomes, [SetOutcome::Added, SetOutcome::Replaced]);
    vault.lock();

    let reopened = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap();
    let keyring = reopened.keyring();
    let groq = keyring.select("groq", None).unwrap();
    assert_eq!(groq.expose_secret(), "gsk_batch-key-0000000000");
    let openai = keyring.select("openai", None).unwrap();
    assert_eq!(openai.expose_secret(), "sk-batch-replacement-000000");
}

fn new_key(provider: &str, key: &str) -> NewKey {
    NewKey {
        provider: provider.into(),
        label: None,
        key: key.into(),
    }
}

#[test]
fn read_only_vault_rejects_changes() {
    let (_temp, dir) = vault_with_keys();
    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap();
    let before = read_all_files(&dir);

    let set = vault
        .set_key("openai", None, "sk-new-key-eeeeeeeeeeee".into())
        .unwrap_err();
    assert!(matches!(set, VaultError::ReadOnly), "{set}");
    let remove = vault.remove_key("openai", None).unwrap_err();
    assert!(matches!(remove, VaultError::ReadOnly), "{remove}");
    let change = vault
        .change_password(&password("new password"))
        .unwrap_err();
    assert!(matches!(change, VaultError::ReadOnly), "{change}");

    assert_eq!(read_all_files(&dir), before);
    assert_eq!(key_of(&vault, "openai", None), CANARY);
}

#[test]
fn debug_and_json_never_show_keys() {
    let (_temp, dir) = vault_with_keys();
    let vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    let list = vault.list();

    let outputs = [
        format!("{vault:?}"),
        format!("{vault:#?}"),
        format!("{:?}", vault.keyring()),
        format!("{list:?}"),
        serde_json::to_string(&list).unwrap(),
    ];
    for output in &outputs {
        assert!(!output.contains(CANARY), "{output}");
        assert!(!output.contains("CANARY"), "{output}");
    }
    assert!(outputs[0].contains("openai/work"), "{}", outputs[0]);
    assert!(outputs[2].contains("anthropic"), "{}", outputs[2]);
}

#[test]
fn change_password_keeps_keys() {
    let (_temp, dir) = vault_with_keys();
    let old_header = fs::read(dir.vault_header()).unwrap();
    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    vault.change_password(&password("a new password")).unwrap();
    vault
        .set_key("groq", None, "gsk_after-change-ffffffffff".into())
        .unwrap();
    vault.lock();

    assert_ne!(fs::read(dir.vault_header()).unwrap(), old_header);
    assert!(!prev_header(&dir).exists());
    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap_err();
    assert!(matches!(error, VaultError::WrongPassword), "{error}");

    let vault = Vault::open(&dir, &password("a new password"), Access::ReadOnly).unwrap();
    assert_eq!(key_of(&vault, "openai", None), CANARY);
    assert_eq!(key_of(&vault, "groq", None), "gsk_after-change-ffffffffff");
    assert_eq!(vault.list().len(), 4);
}

#[test]
fn damaged_header_is_named_and_untouched() {
    let (_temp, dir) = vault_with_keys();
    let good = fs::read_to_string(dir.vault_header()).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&good).unwrap();
    newer["version"] = 2.into();

    let cases = [
        ("truncated", good[..good.len() / 2].to_owned()),
        ("empty", String::new()),
        ("invalid JSON", "{ this is not json".to_owned()),
        ("wrong version", newer.to_string()),
    ];
    for (case, contents) in &cases {
        fs::write(dir.vault_header(), contents).unwrap();
        let (header_before, snapshot_before) = vault_files(&dir);
        let all_before = read_all_files(&dir);

        for access in [Access::ReadOnly, Access::ReadWrite] {
            let error = Vault::open(&dir, &password(PASSWORD), access).unwrap_err();
            let expected = if *case == "wrong version" {
                matches!(&error, VaultError::HeaderUnsupportedVersion { path, found: 2, .. } if *path == dir.vault_header())
            } else {
                matches!(&error, VaultError::HeaderDamaged { path, .. } if *path == dir.vault_header())
            };
            assert!(expected, "{case}: {error:?}");
            let message = error.to_string();
            assert!(
                message.contains(&dir.vault_header().display().to_string()),
                "{message}"
            );
            assert!(message.contains("restore"), "{message}");
            assert_eq!(
                vault_files(&dir),
                (header_before.clone(), snapshot_before.clone()),
                "{case}"
            );
        }
        assert_eq!(read_all_files(&dir), all_before, "{case}: files changed");
    }
}

#[test]
fn damaged_snapshot_is_named_and_untouched() {
    let (_temp, dir) = vault_with_keys();
    let good = fs::read(dir.snapshot()).unwrap();

    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("truncated to half".into(), good[..good.len() / 2].to_vec()),
        ("truncated to 10 bytes".into(), good[..10].to_vec()),
        ("empty".into(), Vec::new()),
    ];
    // Flip one bit in the magic bytes, the age header, and the payload.
    for position in [2, 40, good.len() / 2, good.len() - 1] {
        let mut flipped = good.clone();
        flipped[position] ^= 0x10;
        cases.push((format!("bit flipped at {position}"), flipped));
    }

    for (case, contents) in cases {
        fs::write(dir.snapshot(), &contents).unwrap();
        let before = read_all_files(&dir);
        for access in [Access::ReadOnly, Access::ReadWrite] {
            let error = Vault::open(&dir, &password(PASSWORD), access).unwrap_err();
            assert!(
                matches!(&error, VaultError::SnapshotDamaged { path, .. } if *path == dir.snapshot()),
                "{case}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&dir.snapshot().display().to_string()),
                "{message}"
            );
            assert!(message.contains("restore"), "{message}");
        }
        assert_eq!(read_all_files(&dir), before, "{case}: files changed");
    }

    fs::write(dir.snapshot(), &good).unwrap();
    let error = Vault::open(&dir, &password("wrong password"), Access::ReadOnly).unwrap_err();
    assert!(matches!(error, VaultError::WrongPassword), "{error}");
    assert!(Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).is_ok());
}

#[test]
fn missing_files_give_distinct_errors() {
    let (_temp, dir) = vault_with_keys();
    let (header, snapshot) = vault_files(&dir);

    fs::remove_file(dir.vault_header()).unwrap();
    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap_err();
    assert!(
        matches!(&error, VaultError::HeaderMissing { path, .. } if *path == dir.vault_header()),
        "{error}"
    );
    assert!(error.to_string().contains("vault.header.json"), "{error}");
    assert!(!dir.vault_header().exists());

    fs::write(dir.vault_header(), &header).unwrap();
    fs::remove_file(dir.snapshot()).unwrap();
    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap_err();
    assert!(
        matches!(&error, VaultError::SnapshotMissing { path, .. } if *path == dir.snapshot()),
        "{error}"
    );
    assert!(error.to_string().contains("vault.stronghold"), "{error}");
    assert!(!dir.snapshot().exists());

    fs::remove_file(dir.vault_header()).unwrap();
    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap_err();
    assert!(
        matches!(error, VaultError::NotInitialized { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("keyport init"), "{error}");
    assert!(!Vault::exists(&dir));

    fs::write(dir.vault_header(), &header).unwrap();
    fs::write(dir.snapshot(), &snapshot).unwrap();
    assert!(Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).is_ok());
}

#[test]
fn open_in_missing_folder_is_not_initialized() {
    let (temp, _) = temp_data_dir();
    let dir = DataDir::new(temp.path().join("does-not-exist"));
    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap_err();
    assert!(
        matches!(error, VaultError::NotInitialized { .. }),
        "{error}"
    );
    assert!(!dir.root().exists(), "open created the data folder");
}

#[cfg(unix)]
#[test]
fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();
    vault
        .set_key("openai", None, "sk-mode-check-0000000000".into())
        .unwrap();
    vault.change_password(&password("second password")).unwrap();

    assert_eq!(mode(dir.root()), 0o700);
    for path in [dir.vault_header(), dir.snapshot(), dir.vault_lock()] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let names: Vec<String> = read_all_files(&dir).into_keys().collect();
    assert_eq!(
        names,
        ["vault.header.json", "vault.lock", "vault.stronghold"]
    );
}

#[test]
fn second_writer_is_busy_until_lock() {
    let (_temp, dir) = vault_with_keys();
    let first = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();

    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap_err();
    let pid = std::process::id();
    assert!(
        matches!(&error, VaultError::Busy { pid: Some(p), .. } if *p == pid),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(message.contains("keyport serve"), "{message}");
    let create = Vault::create(&dir, &password(PASSWORD)).unwrap_err();
    assert!(matches!(create, VaultError::Busy { .. }), "{create}");

    let reader = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap();
    assert_eq!(key_of(&reader, "openai", None), CANARY);

    first.lock();
    let second = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    assert_eq!(second.access(), Access::ReadWrite);
}

#[test]
fn snapshot_uses_low_work_factor() {
    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();
    assert_eq!(snapshot_work_factor(&dir.snapshot()), SNAPSHOT_WORK_FACTOR);

    vault
        .set_key("openai", None, "sk-work-factor-000000000".into())
        .unwrap();
    assert_eq!(snapshot_work_factor(&dir.snapshot()), SNAPSHOT_WORK_FACTOR);
    vault.change_password(&password("second password")).unwrap();
    assert_eq!(snapshot_work_factor(&dir.snapshot()), SNAPSHOT_WORK_FACTOR);
}

#[test]
fn snapshot_with_default_work_factor_opens() {
    let (_temp, dir) = vault_with_keys();
    let key = snapshot_key_from_header(&dir, PASSWORD);
    let plain = engine_snapshot::decrypt_file(&dir.snapshot(), &key).unwrap();

    // Re-encrypt the same contents the way the engine does by default.
    let mut rewritten = Vec::new();
    rewritten.extend_from_slice(&engine_snapshot::MAGIC);
    rewritten.extend_from_slice(&engine_snapshot::VERSION);
    let compressed = engine_snapshot::compress(&plain);
    engine_snapshot::encrypt_content_with_work_factor(
        &compressed,
        &mut rewritten,
        &key,
        ENGINE_DEFAULT_WORK_FACTOR,
    )
    .unwrap();
    fs::write(dir.snapshot(), &rewritten).unwrap();
    assert_eq!(
        snapshot_work_factor(&dir.snapshot()),
        ENGINE_DEFAULT_WORK_FACTOR
    );

    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    assert_eq!(key_of(&vault, "openai", None), CANARY);
    vault
        .set_key("groq", None, "gsk_rewritten-000000000000".into())
        .unwrap();
    assert_eq!(snapshot_work_factor(&dir.snapshot()), SNAPSHOT_WORK_FACTOR);
}

#[test]
fn canary_stays_out_of_files() {
    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();
    vault.set_key("openai", None, CANARY.into()).unwrap();
    vault
        .set_key("openai", Some("old"), format!("{CANARY}-old").into())
        .unwrap();
    vault
        .set_key("openai", Some("old"), "sk-replacement-000000000".into())
        .unwrap();
    vault.change_password(&password("second password")).unwrap();
    vault
        .set_key("groq", None, "gsk_other-00000000000000".into())
        .unwrap();
    vault.lock();
    let vault = Vault::open(&dir, &password("second password"), Access::ReadWrite).unwrap();

    let canary_hex = hex::encode(CANARY);
    let files = read_all_files(&dir);
    assert!(files.contains_key("vault.stronghold"));
    for (name, contents) in &files {
        assert!(
            !contains(contents, CANARY.as_bytes()),
            "{name} contains the canary"
        );
        assert!(
            !contains(contents, canary_hex.as_bytes()),
            "{name} contains the hex canary"
        );
    }

    // The snapshot does contain the key once decrypted, so the check above
    // looked at the right data.
    let key = snapshot_key_from_header(&dir, "second password");
    let plain = engine_snapshot::decrypt_file(&dir.snapshot(), &key).unwrap();
    assert!(contains(&plain, canary_hex.as_bytes()));
    drop(vault);
}

#[test]
fn interrupted_change_opens_with_either_password() {
    let (_temp, dir) = vault_with_keys();
    let (old_header, old_snapshot) = vault_files(&dir);
    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    vault.change_password(&password("new password")).unwrap();
    vault.lock();
    let (new_header, new_snapshot) = vault_files(&dir);
    let set_state = |header: &[u8], prev: &[u8], snapshot: &[u8]| {
        fs::write(dir.vault_header(), header).unwrap();
        fs::write(prev_header(&dir), prev).unwrap();
        fs::write(dir.snapshot(), snapshot).unwrap();
    };
    let open = |pw: &str, access| Vault::open(&dir, &password(pw), access);

    // Crash after the previous header was copied: nothing else changed.
    set_state(&old_header, &old_header, &old_snapshot);
    assert_eq!(
        key_of(&open(PASSWORD, Access::ReadOnly).unwrap(), "openai", None),
        CANARY
    );
    open(PASSWORD, Access::ReadWrite).unwrap().lock();
    assert!(!prev_header(&dir).exists());

    // Crash after the new header was written, before the new snapshot.
    set_state(&new_header, &old_header, &old_snapshot);
    let before = read_all_files(&dir);
    let error = open("new password", Access::ReadOnly).unwrap_err();
    assert!(
        matches!(error, VaultError::PasswordChangeInterrupted { .. }),
        "{error}"
    );
    assert_eq!(
        key_of(&open(PASSWORD, Access::ReadOnly).unwrap(), "openai", None),
        CANARY
    );
    assert_eq!(
        read_all_files(&dir),
        before,
        "read-only opens changed files"
    );
    open(PASSWORD, Access::ReadWrite).unwrap().lock();
    assert_eq!(fs::read(dir.vault_header()).unwrap(), old_header);
    assert!(!prev_header(&dir).exists());
    assert!(matches!(
        open("new password", Access::ReadOnly),
        Err(VaultError::WrongPassword)
    ));

    // Crash after the new snapshot was written, before the copy was deleted.
    set_state(&new_header, &old_header, &new_snapshot);
    assert!(matches!(
        open(PASSWORD, Access::ReadOnly),
        Err(VaultError::WrongPassword)
    ));
    assert_eq!(
        key_of(
            &open("new password", Access::ReadOnly).unwrap(),
            "openai",
            None
        ),
        CANARY
    );
    open("new password", Access::ReadWrite).unwrap().lock();
    assert_eq!(fs::read(dir.vault_header()).unwrap(), new_header);
    assert!(!prev_header(&dir).exists());
}

#[test]
fn damaged_snapshot_with_leftover_copy() {
    let (_temp, dir) = vault_with_keys();
    fs::copy(dir.vault_header(), prev_header(&dir)).unwrap();
    let mut snapshot = fs::read(dir.snapshot()).unwrap();
    let middle = snapshot.len() / 2;
    snapshot[middle] ^= 0x01;
    fs::write(dir.snapshot(), &snapshot).unwrap();

    let error = Vault::open(&dir, &password(PASSWORD), Access::ReadOnly).unwrap_err();
    assert!(
        matches!(error, VaultError::SnapshotDamaged { .. }),
        "{error:?}"
    );
    let error = Vault::open(&dir, &password("wrong password"), Access::ReadOnly).unwrap_err();
    assert!(matches!(error, VaultError::WrongPassword), "{error:?}");
}

#[test]
fn damaged_previous_header_is_ignored() {
    let (_temp, dir) = vault_with_keys();
    fs::write(prev_header(&dir), b"{ truncated").unwrap();

    let error = Vault::open(&dir, &password("wrong password"), Access::ReadOnly).unwrap_err();
    assert!(matches!(error, VaultError::WrongPassword), "{error:?}");
    let vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    assert_eq!(key_of(&vault, "openai", None), CANARY);
    assert!(!prev_header(&dir).exists());
}

#[test]
fn open_removes_stale_temp_files() {
    let (_temp, dir) = vault_with_keys();
    let stale = [
        dir.root().join("vault.stronghold.0123456789ab"),
        dir.root().join("vault.header.json.tmp-99-deadbeef"),
    ];
    let unrelated = dir.root().join("tokens.json.tmp-99-deadbeef");
    for path in stale.iter().chain([&unrelated]) {
        fs::write(path, b"leftover").unwrap();
    }

    Vault::open(&dir, &password(PASSWORD), Access::ReadOnly)
        .unwrap()
        .lock();
    assert!(
        stale.iter().all(|path| path.exists()),
        "read-only open deleted files"
    );

    Vault::open(&dir, &password(PASSWORD), Access::ReadWrite)
        .unwrap()
        .lock();
    assert!(stale.iter().all(|path| !path.exists()));
    assert!(unrelated.exists());
}

/// Serializes the tests that spawn child processes. A child spawned while
/// this process holds another vault's lock gets a copy of the lock file
/// descriptor, which O_CLOEXEC only closes at exec. If the two crash tests
/// ran at once, one test's spawn could briefly keep the other test's vault
/// locked and make its next open fail with `Busy`.
static SPAWNING_TESTS: Mutex<()> = Mutex::new(());

fn serialize_spawning_tests() -> MutexGuard<'static, ()> {
    SPAWNING_TESTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Spawns this test binary to run the ignored test `name` on `dir` and waits
/// until it reports that the vault is open.
fn spawn_child(name: &str, dir: &DataDir) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // libtest prints the test name without a line break before the output.
    let ready = lines.any(|line| line.is_ok_and(|line| line.ends_with(CHILD_READY)));
    if !ready {
        let output = child.wait_with_output().unwrap();
        panic!(
            "child {name} exited before opening the vault: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    child
}

/// Kills `child` with SIGKILL after a random delay of up to `max_delay`.
fn kill_at_random_moment(mut child: Child, max_delay: Duration) {
    let delay = rand::thread_rng().gen_range(Duration::ZERO..max_delay);
    std::thread::sleep(delay);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn generation_of(vault: &Vault) -> u64 {
    let key = key_of(vault, "counter", None);
    key.strip_prefix("sk-gen-").unwrap()[..10].parse().unwrap()
}

fn counter_key(generation: u64) -> SecretString {
    format!("sk-gen-{generation:010}-{}", "p".repeat(40)).into()
}

#[test]
fn killed_save_leaves_openable_vault() {
    const ROUNDS: usize = 10;
    let _serial = serialize_spawning_tests();
    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORD)).unwrap();
    vault.set_key("stable", None, CANARY.into()).unwrap();
    vault.set_key("counter", None, counter_key(0)).unwrap();
    vault.lock();

    let mut generation = 0;
    for round in 0..ROUNDS {
        let child = spawn_child("child_saves_in_loop", &dir);
        kill_at_random_moment(child, Duration::from_millis(150));

        let vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite)
            .unwrap_or_else(|error| panic!("round {round}: {error}"));
        let now = generation_of(&vault);
        assert!(
            now >= generation,
            "round {round}: generation went back from {generation} to {now}"
        );
        assert_eq!(key_of(&vault, "stable", None), CANARY, "round {round}");
        assert_eq!(vault.list().len(), 2, "round {round}");
        generation = now;
        vault.lock();

        let names: Vec<String> = read_all_files(&dir).into_keys().collect();
        assert_eq!(
            names,
            ["vault.header.json", "vault.lock", "vault.stronghold"],
            "round {round}"
        );
    }
    assert!(
        generation > 0,
        "the child never completed a save, so no kill hit a save loop"
    );
}

#[test]
fn killed_password_change_leaves_openable_vault() {
    const ROUNDS: usize = 6;
    const PASSWORDS: [&str; 2] = ["first password", "second password"];
    let _serial = serialize_spawning_tests();
    let (_temp, dir) = temp_data_dir();
    let mut vault = Vault::create(&dir, &password(PASSWORDS[0])).unwrap();
    vault.set_key("stable", None, CANARY.into()).unwrap();
    vault.lock();

    let mut opened_with = BTreeMap::new();
    let mut killed_mid_change = 0;
    for round in 0..ROUNDS {
        let child = spawn_child("child_changes_password_in_loop", &dir);
        kill_at_random_moment(child, Duration::from_millis(600));
        killed_mid_change += usize::from(prev_header(&dir).exists());
        let files_after_kill = describe_files(&dir);

        let mut errors = Vec::new();
        let opened = PASSWORDS.iter().find_map(|pw| {
            match Vault::open(&dir, &password(pw), Access::ReadWrite) {
                Ok(vault) => Some((*pw, vault)),
                Err(error) => {
                    errors.push(error);
                    None
                }
            }
        });
        let (pw, vault) = opened.unwrap_or_else(|| {
            panic!(
                "round {round}: neither password opens: {errors:?}; files after the kill: \
                 {files_after_kill}"
            )
        });
        *opened_with.entry(pw).or_insert(0) += 1;
        assert_eq!(key_of(&vault, "stable", None), CANARY, "round {round}");
        vault.lock();
        assert!(
            !prev_header(&dir).exists(),
            "round {round}: previous header left after open"
        );
    }
    eprintln!(
        "opened with: {opened_with:?}; killed mid-change {killed_mid_change} of {ROUNDS} times"
    );
}

/// Lists the data folder's files with their sizes and whether the previous
/// header equals the current one, which tells the states of a password
/// change apart when a kill leaves a vault that does not open.
fn describe_files(dir: &DataDir) -> String {
    let mut files: Vec<String> = fs::read_dir(dir.root())
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            format!("{} ({size} bytes)", entry.file_name().to_string_lossy())
        })
        .collect();
    files.sort();
    let prev_equals_header = fs::read(prev_header(dir)).ok() == fs::read(dir.vault_header()).ok();
    format!(
        "{}; previous header equals current: {prev_equals_header}",
        files.join(", ")
    )
}

/// Child process for `killed_save_leaves_openable_vault`: saves a new
/// counter key until killed. Bounded so an orphan stops by itself.
#[test]
#[ignore = "helper process started by killed_save_leaves_openable_vault"]
fn child_saves_in_loop() {
    let dir = DataDir::new(std::env::var_os(CHILD_DIR_ENV).expect("run by the parent test"));
    let mut vault = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    let mut generation = generation_of(&vault);
    println!("{CHILD_READY}");

    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..100_000 {
        if Instant::now() > deadline {
            break;
        }
        generation += 1;
        vault
            .set_key("counter", None, counter_key(generation))
            .unwrap();
    }
}

/// Child process for `killed_password_change_leaves_openable_vault`: changes
/// the password back and forth until killed. Bounded like the one above.
#[test]
#[ignore = "helper process started by killed_password_change_leaves_openable_vault"]
fn child_changes_password_in_loop() {
    let dir = DataDir::new(std::env::var_os(CHILD_DIR_ENV).expect("run by the parent test"));
    let passwords = ["first password", "second password"];
    let mut errors = Vec::new();
    let (mut current, mut vault) = passwords
        .iter()
        .enumerate()
        .find_map(
            |(index, pw)| match Vault::open(&dir, &password(pw), Access::ReadWrite) {
                Ok(vault) => Some((index, vault)),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        )
        .unwrap_or_else(|| panic!("neither password opens the vault: {errors:?}"));
    println!("{CHILD_READY}");

    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..1_000 {
        if Instant::now() > deadline {
            break;
        }
        current = 1 - current;
        vault
            .change_password(&password(passwords[current]))
            .unwrap();
    }
}

#[cfg(unix)]
#[test]
fn read_write_open_tightens_loose_modes() {
    use std::os::unix::fs::PermissionsExt;

    let (_temp, dir) = vault_with_keys();
    for path in [dir.snapshot(), dir.vault_header()] {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o755)).unwrap();

    Vault::open(&dir, &password(PASSWORD), Access::ReadWrite)
        .unwrap()
        .lock();

    for path in [dir.snapshot(), dir.vault_header()] {
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let mode = fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn follower_sees_changes_from_a_writer() {
    let (_temp, dir) = vault_with_keys();
    let (mut follower, first) = VaultFollower::open(&dir, password(PASSWORD)).unwrap();
    assert_eq!(first.access(), Access::ReadOnly);
    first.lock();
    assert!(follower.reload_if_changed().unwrap().is_none());

    // A writer can open the vault while the follower exists, because the
    // follower takes no write lock.
    let mut writer = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    writer
        .set_key("mistral", None, "mistral-new-key-000000".into())
        .unwrap();
    writer.lock();

    let reloaded = follower.reload_if_changed().unwrap().expect("a change");
    assert_eq!(key_of(&reloaded, "mistral", None), "mistral-new-key-000000");
    reloaded.lock();
    assert!(follower.reload_if_changed().unwrap().is_none());
}

#[test]
fn follower_reports_a_new_password() {
    let (_temp, dir) = vault_with_keys();
    let (mut follower, first) = VaultFollower::open(&dir, password(PASSWORD)).unwrap();
    first.lock();

    let mut writer = Vault::open(&dir, &password(PASSWORD), Access::ReadWrite).unwrap();
    writer
        .change_password(&password("a new password 123"))
        .unwrap();
    writer.lock();

    assert!(matches!(
        follower.reload_if_changed(),
        Err(VaultError::WrongPassword)
    ));
    // It keeps reporting until restarted with the new password.
    assert!(matches!(
        follower.reload_if_changed(),
        Err(VaultError::WrongPassword)
    ));
}
