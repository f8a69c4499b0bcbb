//! `keyport passwd`: change the vault password.

use keyport_core::vault::Access;

use super::Context;
use crate::cli::PasswdArgs;
use crate::error::CliError;
use crate::input::{self, PasswordSource, NEW_PASSWORD_ENV};
use crate::output;

pub fn run(context: &Context, args: PasswdArgs) -> Result<(), CliError> {
    let mut vault = context.open_vault(Access::ReadWrite)?;
    let new_password = input::read_new_password(&PasswordSource {
        env_var: NEW_PASSWORD_ENV,
        file: args.new_password_file.as_deref(),
        prompt: "New vault password: ",
    })?;
    vault.change_password(&new_password)?;
    vault.lock();
    output::result_line("Changed the vault password. The old password no longer opens the vault.");
    Ok(())
}
