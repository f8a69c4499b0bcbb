//! `keyport key …`: store, list and remove provider keys.

use keyport_core::vault::{Access, SetOutcome};

use super::{token, Context};
use crate::cli::KeyCommand;
use crate::error::CliError;
use crate::{input, output};

pub fn run(context: &Context, command: KeyCommand) -> Result<(), CliError> {
    match command {
        KeyCommand::Set {
            provider,
            label,
            unexpected,
        } => {
            if !unexpected.is_empty() {
                return Err(CliError::Usage(format!(
                    "`keyport key set` takes no key argument, because other local users can read arguments in the process list; \
                     pipe the key in (`printenv {} | keyport key set {provider}`) or run the command in a terminal to type it at a hidden prompt",
                    input::env_var_for(&provider)
                )));
            }
            set(context, &provider, &label)
        }
        KeyCommand::Import(args) => super::key_import::run(context, &args),
        KeyCommand::List { json } => list(context, json),
        KeyCommand::Remove { provider, label } => remove(context, &provider, &label),
    }
}

fn set(context: &Context, provider: &str, label: &str) -> Result<(), CliError> {
    check_provider(context, provider)?;

    // Read the password before the key, so a wrong password fails before
    // the user pastes a key.
    let mut vault = context.open_vault(Access::ReadWrite)?;
    let key = input::read_key(provider)?;
    let outcome = vault.set_key(provider, Some(label), key)?;
    let masked = vault
        .list()
        .into_iter()
        .find(|summary| summary.provider == provider && summary.label == label)
        .map(|summary| summary.masked)
        .unwrap_or_default();
    vault.lock();

    let verb = match outcome {
        SetOutcome::Added => "Stored",
        SetOutcome::Replaced => "Replaced",
    };
    output::result_line(&format!("{verb} the {provider} key {label:?}: {masked}"));
    Ok(())
}

/// Rejects providers the proxy could not route to or that take no key,
/// before any key is read.
fn check_provider(context: &Context, provider: &str) -> Result<(), CliError> {
    let config = context.config()?;
    match config.providers.get(provider) {
        Some(found) if !found.auth.needs_key() => Err(CliError::Usage(format!(
            "{provider} is configured with auth = \"none\" and needs no key"
        ))),
        Some(_) => Ok(()),
        None => Err(CliError::Usage(format!(
            "unknown provider {provider:?}; known providers: {}. Custom providers are added in {}",
            config.providers.ids_for_message(),
            config.path.display()
        ))),
    }
}

fn list(context: &Context, json: bool) -> Result<(), CliError> {
    let vault = context.open_vault(Access::ReadOnly)?;
    let summaries = vault.list();
    vault.lock();

    if json {
        let text = serde_json::to_string_pretty(&summaries)
            .map_err(|error| CliError::Failed(format!("cannot format the key list: {error}")))?;
        output::result_line(&text);
        return Ok(());
    }
    if summaries.is_empty() {
        output::notice("No keys stored. Add one with `keyport key set PROVIDER`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|summary| {
            vec![
                summary.provider.clone(),
                summary.label.clone(),
                summary.masked.clone(),
                summary.created_at.format("%Y-%m-%d %H:%M").to_string(),
                summary.updated_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect();
    output::result_line(&output::table(
        &["PROVIDER", "LABEL", "KEY", "ADDED (UTC)", "UPDATED (UTC)"],
        &rows,
    ));
    Ok(())
}

fn remove(context: &Context, provider: &str, label: &str) -> Result<(), CliError> {
    let mut vault = context.open_vault(Access::ReadWrite)?;
    vault.remove_key(provider, Some(label))?;
    vault.lock();
    output::result_line(&format!("Removed the {provider} key {label:?}"));
    let pinned = token::tokens_pinned_to(context, provider, label);
    if !pinned.is_empty() {
        output::notice(&format!(
            "warning: client token(s) {} are pinned to this key, so their {provider} requests fail              until a key labelled {label:?} is stored again or you change the pin with `keyport              token pin NAME {provider}=LABEL`",
            quoted_list(&pinned)
        ));
    }
    Ok(())
}

/// Joins names as `"a", "b"`.
pub(super) fn quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
    quoted.join(", ")
}
