//! Generates the Tauri context and one `allow-COMMAND` permission per
//! Keyport command, so `capabilities/main-window.json` can grant the main
//! window exactly these commands and nothing else.

/// Every command the webview may call. A command missing here has no
/// permission, so the capability cannot grant it and Tauri rejects calls.
const COMMANDS: &[&str] = &[
    "app_status",
    "password_strength",
    "vault_create",
    "vault_unlock",
    "vault_lock",
    "vault_change_password",
    "keys_list",
    "key_set",
    "key_remove",
    "key_test",
    "providers_list",
    "provider_save",
    "provider_reset",
    "tokens_list",
    "token_create",
    "token_pin",
    "token_revoke",
    "logs_query",
    "logs_totals",
    "logs_export",
    "settings_get",
    "settings_save",
    "proxy_restart",
    "activity",
];

/// Returning the error fails the build with tauri-build's message, which
/// names the config or capability file that is wrong.
fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    let attributes = tauri_build::Attributes::new().app_manifest(manifest);
    tauri_build::try_build(attributes)?;
    Ok(())
}
