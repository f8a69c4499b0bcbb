//! Command-line arguments.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Passwords come from KEYPORT_PASSWORD, --password-file, or a no-echo prompt.
Keys come from standard input or a no-echo prompt, never from arguments.

Exit status: 0 success, 1 failure, 2 invalid arguments or input values,
3 wrong password, 4 vault in use by another Keyport process.
Logs go to standard error; RUST_LOG sets their level (e.g. RUST_LOG=debug)
and NO_COLOR=1 turns off colours.";

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
    /// prompting; takes precedence over KEYPORT_PASSWORD. Only commands that
    /// open the vault use it.
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

    /// Create, list and revoke client tokens for local programs, and set
    /// their limits and key pins.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Change the vault password.
    Passwd(PasswdArgs),

    /// Unlock the vault and run the proxy until interrupted. Keys and
    /// tokens changed by other `keyport` commands take effect while it
    /// runs; after `keyport passwd`, restart it with the new password.
    Serve(ServeArgs),

    /// Show the effective configuration or its path.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Show the request log: one row per proxied request with tokens,
    /// cost and timing.
    Logs(Box<LogsArgs>),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogsArgs {
    #[command(subcommand)]
    pub command: Option<LogsCommand>,

    #[command(flatten)]
    pub filter: LogFilterArgs,

    /// Number of most recent rows to show (1 to 1000), printed oldest first
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,

    /// Print JSON Lines instead of a table
    #[arg(long)]
    pub json: bool,

    /// Keep printing new rows as they arrive (Ctrl-C stops)
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Write every matching row as CSV or JSON Lines.
    Export {
        #[command(flatten)]
        filter: LogFilterArgs,

        /// Output format
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Csv)]
        format: ExportFormatArg,

        /// File to write [default: standard output]
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },

    /// Sum requests, tokens and cost per day, provider, model or token.
    Totals {
        #[command(flatten)]
        filter: LogFilterArgs,

        /// Grouping of the sums
        #[arg(long, value_enum, default_value_t = GroupByArg::Day)]
        by: GroupByArg,

        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

/// Filters shared by the `logs` commands.
#[derive(Debug, Clone, Args)]
pub struct LogFilterArgs {
    /// Only rows at or after this time: RFC 3339 (2026-12-01T00:00:00Z) or
    /// an age such as 30m, 24h or 7d
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only rows before this time, in the same forms as --since
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only this provider, such as openai
    #[arg(long)]
    pub provider: Option<String>,

    /// Only this model
    #[arg(long)]
    pub model: Option<String>,

    /// Only this status class: 1xx to 5xx for responses from the provider,
    /// or error for no response and for Keyport's own rejections (its 400,
    /// 401, 403, 429 and other responses are in error, not in 4xx or 5xx)
    #[arg(long)]
    pub status: Option<String>,

    /// Only requests made with this client token name
    #[arg(long)]
    pub token: Option<String>,

    /// Only paths that contain this text
    #[arg(long, value_name = "TEXT")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormatArg {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GroupByArg {
    Day,
    Provider,
    Model,
    Token,
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

        /// Catches a key typed as an argument, which other local users can
        /// read in the process list, so the command can reject it without
        /// printing it.
        #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
        unexpected: Vec<String>,
    },

    /// List stored keys, masked.
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Import provider keys from a .env file or the environment, in one
    /// vault save: all keys or none.
    Import(ImportArgs),

    /// Remove a provider's key.
    Remove {
        /// Provider id, as shown by `keyport key list`
        provider: String,
        /// Label of the key to remove
        #[arg(long, default_value = "default")]
        label: String,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// .env file to read, or `-` for this process's environment. Recognised:
    /// OPENAI_API_KEY, ANTHROPIC_API_KEY, GOOGLE_API_KEY, GEMINI_API_KEY and
    /// the other providers' usual names, also with a VITE_, NEXT_PUBLIC_ or
    /// REACT_APP_ prefix
    #[arg(long, value_name = "FILE")]
    pub from_env: PathBuf,

    /// Label under which the keys are stored. With --rewrite, the new
    /// client token is pinned to the keys under this label, so the project
    /// keeps using them whatever the providers' default keys are
    #[arg(long, default_value = "default")]
    pub label: String,

    /// Leave this variable out of the import, for example when two names
    /// for one provider hold different keys (repeatable)
    #[arg(long, value_name = "NAME")]
    pub skip: Vec<String>,

    /// Show what would be imported and rewritten without changing anything
    #[arg(long)]
    pub dry_run: bool,

    /// After importing, replace each imported value in FILE with one new
    /// client token, keeping every other byte of the file
    #[arg(long)]
    pub rewrite: bool,

    /// With --rewrite, also point the SDKs that read a base URL from the
    /// environment (OPENAI_BASE_URL, ANTHROPIC_BASE_URL,
    /// GOOGLE_GEMINI_BASE_URL) at the proxy, adding or updating them in FILE
    #[arg(long, requires = "rewrite")]
    pub set_base_urls: bool,

    /// With --rewrite, first copy FILE to FILE.keyport-backup (mode 0600)
    #[arg(long, requires = "rewrite")]
    pub backup: bool,

    /// With --rewrite, name of the new client token [default: env-FOLDER,
    /// from the file's folder, with a number added if taken]
    #[arg(long, requires = "rewrite", value_name = "NAME")]
    pub token_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a client token and print it once on standard output.
    Create {
        /// Name shown in lists and logs, such as kaiban-dev
        name: String,

        /// Use the key with this label for the provider instead of its
        /// default key, as PROVIDER=LABEL such as openai=client-a; repeat
        /// for several providers. The x-keyport-key header cannot pick
        /// another key for a pinned provider. The label is not checked
        /// against the vault: until a key with it is stored, the token's
        /// requests to that provider get 400 pinned_key_not_stored
        #[arg(long = "key", value_name = "PROVIDER=LABEL", value_parser = parse_pin)]
        keys: Vec<(String, String)>,
    },

    /// List client tokens: names, prefixes, limits and key pins (never the
    /// tokens themselves).
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Revoke a client token; the proxy rejects it from then on.
    Revoke {
        /// Name of the token, as shown by `keyport token list`
        name: String,
    },

    /// Set rate limits, spend caps and allowed models of a client token.
    /// Options that are not given keep their value; a running proxy
    /// applies the change within about a second.
    Limit(Box<TokenLimitArgs>),

    /// Choose which stored key a client token's requests use per provider.
    /// A pinned token always gets that key, and the x-keyport-key header
    /// cannot pick another. A running proxy applies the change within about
    /// a second.
    Pin {
        /// Name of the token, as shown by `keyport token list`
        name: String,

        /// PROVIDER=LABEL pairs to set, such as openai=client-a. The label
        /// is not checked against the vault (see `token create --help`)
        #[arg(value_name = "PROVIDER=LABEL", value_parser = parse_pin)]
        keys: Vec<(String, String)>,

        /// Provider whose pin to remove, so the token uses its default key
        /// again; repeat for several
        #[arg(long, value_name = "PROVIDER")]
        unpin: Vec<String>,

        /// Remove every pin first
        #[arg(long)]
        clear: bool,
    },
}

/// Parses `PROVIDER=LABEL`; the token store checks both names.
fn parse_pin(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((provider, label)) if !provider.is_empty() && !label.is_empty() => {
            Ok((provider.to_string(), label.to_string()))
        }
        _ => Err(format!(
            "expected PROVIDER=LABEL, such as openai=client-a, not {text:?}"
        )),
    }
}

#[derive(Debug, Args)]
pub struct TokenLimitArgs {
    /// Name of the token, as shown by `keyport token list`
    pub name: String,

    /// Requests per minute (1 to 100000); over it, the proxy responds with 429
    /// with retry-after
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,

    /// Input plus output tokens per minute, counted when calls finish
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,

    /// Spend cap per UTC day, in US dollars, from the estimated costs
    #[arg(long, value_name = "USD")]
    pub daily_usd: Option<f64>,

    /// Spend cap per UTC calendar month, in US dollars
    #[arg(long, value_name = "USD")]
    pub monthly_usd: Option<f64>,

    /// Percentage of a spend cap at which a warning is logged and shown
    /// [default: 80]
    #[arg(long, value_name = "PERCENT")]
    pub warn_at: Option<u8>,

    /// Allowed PROVIDER:MODEL pattern with `*` as wildcard, such as
    /// 'openai:gpt-4o-mini*' or 'anthropic:*'; repeat for several. Replaces
    /// the previous list
    #[arg(long, value_name = "PATTERN")]
    pub allow: Vec<String>,

    /// Remove every limit first; with no other option, the token is
    /// unlimited again
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Read the new password from the first line of this file instead of
    /// prompting; takes precedence over KEYPORT_NEW_PASSWORD.
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
