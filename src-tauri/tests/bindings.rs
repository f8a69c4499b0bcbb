//! Checks that the TypeScript types in `ui/src/generated/` match the Rust
//! types. Run with `KEYPORT_UPDATE_BINDINGS=1` to rewrite them after
//! changing a type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use keyport_desktop::error::{AppError, AppErrorCode};
use keyport_desktop::types::*;
use ts_rs::TS;

/// Folder of the generated files, relative to the repository root.
const GENERATED: &str = "ui/src/generated";

fn render<T: TS + 'static>() -> (String, String) {
    let config = ts_rs::Config::new().with_large_int("number");
    let name = T::ident(&config);
    let text = T::export_to_string(&config).unwrap();
    (format!("{name}.ts"), text)
}

fn all_types() -> Vec<(String, String)> {
    vec![
        render::<AppErrorCode>(),
        render::<AppError>(),
        render::<VaultState>(),
        render::<ProxyRunState>(),
        render::<ProxyStatus>(),
        render::<AppStatus>(),
        render::<PasswordStrength>(),
        render::<KeySummary>(),
        render::<SetOutcome>(),
        render::<KeyTestResult>(),
        render::<AuthStyle>(),
        render::<ProviderInfo>(),
        render::<ProviderInput>(),
        render::<KeyPin>(),
        render::<TokenInfo>(),
        render::<CreatedToken>(),
        render::<StatusClass>(),
        render::<LogFilter>(),
        render::<LogRow>(),
        render::<LogPage>(),
        render::<Totals>(),
        render::<LogTotals>(),
        render::<ExportFormat>(),
        render::<ExportResult>(),
        render::<Settings>(),
    ]
}

fn generated_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GENERATED)
}

#[test]
fn generated_types_are_current() {
    let dir = generated_dir();
    let update = std::env::var_os("KEYPORT_UPDATE_BINDINGS").is_some_and(|value| value == "1");
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut stale = Vec::new();
    for (file, text) in all_types() {
        let path = dir.join(&file);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if update {
            std::fs::write(&path, &text).unwrap();
        } else {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale TypeScript types in {GENERATED}: {}; run `KEYPORT_UPDATE_BINDINGS=1 cargo test --test bindings` and commit the result",
        stale.join(", ")
    );
}

#[test]
fn no_extra_generated_files() {
    let expected: Vec<String> = all_types().into_iter().map(|(file, _)| file).collect();
    let Ok(entries) = std::fs::read_dir(generated_dir()) else {
        panic!(
            "{GENERATED} is missing; run `KEYPORT_UPDATE_BINDINGS=1 cargo test --test bindings`"
        );
    };
    for entry in entries {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            expected.contains(&name) || name == "index.ts",
            "{GENERATED}/{name} is not generated from a Rust type; delete it"
        );
    }
}

#[test]
fn error_code_is_snake_case_union() {
    let (_, text) = render::<AppErrorCode>();
    assert!(text.contains("\"wrong_password\""), "{text}");
    assert!(text.contains("\"port_in_use\""), "{text}");
}

#[test]
fn fields_are_camel_case() {
    let (_, text) = render::<AppStatus>();
    assert!(text.contains("dataDir: string"), "{text}");
    let (_, text) = render::<ProxyStatus>();
    assert!(text.contains("state: ProxyState"), "{text}");
}
