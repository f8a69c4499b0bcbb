//! `keyport config …`: show the effective configuration.

use super::Context;
use crate::cli::ConfigCommand;
use crate::error::CliError;
use crate::output;

pub fn run(context: &Context, command: ConfigCommand) -> Result<(), CliError> {
    match command {
        ConfigCommand::Path => {
            output::result_line(&context.data_dir.config().display().to_string());
        }
        ConfigCommand::Show => {
            let config = context.config()?;
            let source = if config.path.exists() {
                "defaults overridden by"
            } else {
                "defaults only; this file does not exist:"
            };
            output::result_line(&format!(
                "# Effective configuration: {source} {}\n{}",
                config.path.display(),
                config.to_toml()
            ));
        }
    }
    Ok(())
}
