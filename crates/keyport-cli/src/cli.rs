//! Command-line arguments.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Passwords come from KEYPORT_PASSWORD, --password-file, or a no-echo prompt.
Keys come from standard input or a no-echo prompt, never from arguments.

Exit status: 0 success, 1 failure, 2 invalid usage or input,
3 wrong password, 4 vault in use by another Keyport process.";

/// Keep LLM provider API keys in an encrypted local vault and proxy requests
/// to the providers with the right key attached.
#[derive(Debug, Parser)]
#[command(name = "keyport", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Folder that contains the vault, tokens and config.toml
    /// [default: the platform's app-data folder]
    #[arg(long, global = true, env = keyport_core::paths::DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Read the vault password from the first line of this file instead of
    /// prompting. KEYPORT_PASSWORD takes precedence.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new, empty vault protected by a password.
    Init,

    /// Store, list and remove provider API keys.
    #[command(subcommand)]
    Key(KeyCommand),

    /// Create, list and revoke client tokens for local programs.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Change the vault password.
    Passwd(PasswdArgs),

    /// Run the proxy until interrupted.
    Serve(ServeArgs),

    /// Show the effective configuration or its path.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Store or replace a provider's key. The key is read from standard
    /// input, or from a no-echo prompt in a terminal.
    Set {
        /// Provider id, such as openai, anthropic, google or mistral
        provider: String,
        /// Name for this key, so one provider can hold several
        #[arg(long, default_value = "default")]
        label: String,
    },

    /// List stored keys, masked.
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Remove a provider's key.
    Remove {
        provider: String,
        #[arg(long, default_value = "default")]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a client token and print it once on standard output.
    Create {
        /// Name shown in lists and logs, such as kaiban-dev
        name: String,
    },

    /// List client tokens (names and prefixes only).
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Revoke a client token; the proxy rejects it from then on.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Read the new password from the first line of this file instead of
    /// prompting. KEYPORT_NEW_PASSWORD takes precedence.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free port [default: proxy.port in
    /// config.toml, else 7447]
    #[arg(long)]
    pub port: Option<u16>,

    /// Address to listen on [default: proxy.bind in config.toml, else
    /// 127.0.0.1]
    #[arg(long)]
    pub bind: Option<IpAddr>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as config.toml text.
    Show,
    /// Print the path of config.toml.
    Path,
}

impl Command {
    /// Log level for Keyport's own messages: a server reports each request,
    /// one-shot commands only problems.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}
