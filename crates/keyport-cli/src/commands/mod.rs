//! One module per subcommand, and the context they share.

mod config;
mod key;
mod key_import;
mod logs;
mod passwd;
mod serve;
mod token;

use std::path::{Path, PathBuf};

use keyport_core::config::Config;
use keyport_core::paths::DataDir;
use keyport_core::secret::SecretString;
use keyport_core::vault::{Access, Vault, VaultError};

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::input::{self, PasswordSource, PASSWORD_ENV};
use crate::output;

/// State every subcommand needs: the data folder and the password sources.
pub struct Context {
    pub data_dir: DataDir,
    password_file: Option<PathBuf>,
}

impl Context {
    pub fn config(&self) -> Result<Config, CliError> {
        Ok(Config::load(&self.data_dir.config())?)
    }

    pub fn password_source(&self) -> PasswordSource<'_> {
        PasswordSource {
            env_var: PASSWORD_ENV,
            file: self.password_file.as_deref(),
            prompt: "Vault password: ",
        }
    }

    pub fn password(&self) -> Result<SecretString, CliError> {
        input::read_password(&self.password_source())
    }

    /// Asks for the password and opens the vault.
    pub fn open_vault(&self, access: Access) -> Result<Vault, CliError> {
        self.require_vault()?;
        let password = self.password()?;
        Vault::open(&self.data_dir, &password, access).map_err(|error| self.vault_error(error))
    }

    /// Fails with a pointer to `keyport init` when there is no vault.
    pub fn require_vault(&self) -> Result<(), CliError> {
        if Vault::exists(&self.data_dir) {
            Ok(())
        } else {
            Err(CliError::Failed(not_initialised(self.data_dir.root())))
        }
    }

    /// Converts a vault error, naming the password's source when it was wrong.
    pub fn vault_error(&self, error: VaultError) -> CliError {
        match error {
            VaultError::WrongPassword => CliError::WrongPassword(format!(
                "wrong vault password ({}); check it and try again. A lost password cannot be recovered",
                input::describe_source(&self.password_source())
            )),
            other => CliError::Vault(other),
        }
    }
}

fn not_initialised(root: &Path) -> String {
    format!(
        "no vault in {}; create one with `keyport init` (or pass --data-dir)",
        root.display()
    )
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let context = Context {
        data_dir: DataDir::resolve(cli.global.data_dir)?,
        password_file: cli.global.password_file,
    };
    match cli.command {
        Command::Init => init(&context),
        Command::Key(command) => key::run(&context, command),
        Command::Token(command) => token::run(&context, command),
        Command::Passwd(args) => passwd::run(&context, args),
        Command::Serve(args) => serve::run(&context, args),
        Command::Config(command) => config::run(&context, command),
        Command::Logs(args) => logs::run(&context, *args),
    }
}

fn init(context: &Context) -> Result<(), CliError> {
    // Check the config first, so a broken file is reported before the user
    // types a password.
    context.config()?;
    if Vault::exists(&context.data_dir) {
        return Err(CliError::Failed(format!(
            "a vault already exists in {}; use `keyport passwd` to change its password",
            context.data_dir.root().display()
        )));
    }
    let password = input::read_new_password(&context.password_source())?;
    let vault = Vault::create(&context.data_dir, &password)?;
    vault.lock();

    output::notice(&format!(
        "Created a vault in {}. The password cannot be recovered: if you lose it, the stored keys are lost too.",
        context.data_dir.root().display()
    ));
    output::notice(
        "Next: `keyport key set openai` (or another provider), then `keyport token create NAME`.",
    );
    Ok(())
}
