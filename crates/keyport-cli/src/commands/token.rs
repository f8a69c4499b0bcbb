//! `keyport token …`: client tokens for local programs.

use keyport_core::secret::ExposeSecret;
use keyport_core::tokens::TokenStore;
use keyport_core::vault::Vault;

use super::Context;
use crate::cli::TokenCommand;
use crate::error::CliError;
use crate::output;

pub fn run(context: &Context, command: TokenCommand) -> Result<(), CliError> {
    let mut store = TokenStore::load(&context.data_dir.tokens())?;
    match command {
        TokenCommand::Create { name } => {
            let token = store.create(&name)?;
            // Only the token goes to stdout, so `$(keyport token create x)` works.
            if let Err(error) = output::write_result_line(token.expose_secret()) {
                // The token was never shown, so it must not stay valid.
                store.revoke(&name)?;
                return Err(CliError::Failed(format!(
                    "cannot write the token to standard output ({error}); token {name:?} was revoked again"
                )));
            }
            output::notice(&format!(
                "Created token {name:?} in {}. It is shown only this once: put it where your client reads its API key.",
                context.data_dir.tokens().display()
            ));
            if !Vault::exists(&context.data_dir) {
                output::notice(&format!(
                    "warning: {} contains no vault; a proxy started on another data folder will reject this token",
                    context.data_dir.root().display()
                ));
            }
        }
        TokenCommand::List { json } => list(&store, json)?,
        TokenCommand::Revoke { name } => {
            store.revoke(&name)?;
            output::result_line(&format!("Revoked token {name:?}"));
        }
    }
    Ok(())
}

fn list(store: &TokenStore, json: bool) -> Result<(), CliError> {
    let records = store.list();
    if json {
        let items: Vec<serde_json::Value> = records
            .iter()
            .map(|record| {
                serde_json::json!({
                    "name": record.name,
                    "prefix": record.prefix,
                    "created_at": record.created_at,
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&items)
            .map_err(|error| CliError::Failed(format!("cannot format the token list: {error}")))?;
        output::result_line(&text);
        return Ok(());
    }
    if records.is_empty() {
        output::notice("No client tokens. Create one with `keyport token create NAME`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|record| {
            vec![
                record.name.clone(),
                format!("{}…", record.prefix),
                record.created_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect();
    output::result_line(&output::table(&["NAME", "TOKEN", "CREATED (UTC)"], &rows));
    Ok(())
}
