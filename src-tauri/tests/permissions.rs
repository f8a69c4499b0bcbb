//! The main window's capability: Keyport's own commands are allowed, and
//! every other command, plugin commands included, is denied. Runs the real
//! `tauri.conf.json`, capability file and generated permissions on Tauri's
//! mock runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindow};

fn main_window() -> (tauri::App<MockRuntime>, WebviewWindow<MockRuntime>) {
    let builder = mock_builder().plugin(tauri_plugin_autostart::init(
        tauri_plugin_autostart::MacosLauncher::LaunchAgent,
        None,
    ));
    let app = keyport_desktop::app::with_commands(builder)
        .build(tauri::generate_context!("tauri.conf.json"))
        .unwrap();
    let window = match app.get_webview_window("main") {
        Some(window) => window,
        None => tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .unwrap(),
    };
    (app, window)
}

fn invoke(
    window: &WebviewWindow<MockRuntime>,
    command: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    let request = InvokeRequest {
        cmd: command.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().unwrap(),
        body: InvokeBody::Json(body),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    get_ipc_response(window, request).map(|body| body.deserialize().unwrap())
}

#[test]
fn keyport_command_is_allowed() {
    let (_app, window) = main_window();
    let reply = invoke(
        &window,
        "password_strength",
        serde_json::json!({ "password": "vT9#qL2!mZ8@wR" }),
    )
    .unwrap();
    assert_eq!(reply["acceptable"], true, "{reply}");
}

#[test]
fn other_commands_are_denied() {
    let (_app, window) = main_window();
    for command in [
        "plugin:autostart|enable",
        "plugin:window|close",
        "plugin:webview|create_webview_window",
        "plugin:app|version",
    ] {
        let error = invoke(&window, command, serde_json::json!({})).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("not allowed"),
            "{command} was not denied by the capability: {text}"
        );
    }
}

/// Returns the quoted names in `build.rs`'s `COMMANDS` list.
fn build_script_commands() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src-tauri/build.rs"))
        .unwrap();
    let start = text.find("const COMMANDS").unwrap();
    let end = start + text[start..].find("];").unwrap();
    text[start..end]
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"'))
        .filter_map(|line| line.strip_suffix("\","))
        .map(str::to_string)
        .collect()
}

#[test]
fn permissions_cover_every_command() {
    let commands = build_script_commands();
    assert_eq!(commands.len(), 24, "{commands:?}");

    let ipc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src-tauri/src/ipc.rs"))
        .unwrap();
    for command in &commands {
        let defined = ipc.contains(&format!("pub fn {command}("))
            || ipc.contains(&format!("pub async fn {command}("))
            || ipc.contains(&format!("pub async fn {command}<"));
        assert!(defined, "{command} is in build.rs but not in ipc.rs");
    }

    let capability: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/capabilities/main-window.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut granted: Vec<String> = capability["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|permission| permission.as_str().unwrap().to_string())
        .collect();
    granted.sort();
    let mut expected: Vec<String> = commands
        .iter()
        .map(|command| format!("allow-{}", command.replace('_', "-")))
        .chain([
            "core:event:allow-listen".into(),
            "core:event:allow-unlisten".into(),
        ])
        .collect();
    expected.sort();
    assert_eq!(granted, expected);
}
