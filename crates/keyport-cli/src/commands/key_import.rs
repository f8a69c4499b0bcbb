//! `keyport key import`: move provider keys from a `.env` file or the
//! environment into the vault, and optionally replace them in the file with
//! a client token.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use keyport_core::config::Config;
use keyport_core::envimport::base_urls::BaseUrlSetting;
use keyport_core::envimport::plan::{plan, ImportPlan, Notice, PlannedKey};
use keyport_core::envimport::rewrite::{backup_path, rewrite_file};
use keyport_core::envimport::variables::{
    base_url_variable, base_url_variable_for, key_variable_names, provider_for,
};
use keyport_core::envimport::{from_process_env, EnvFile, ReadError};
use keyport_core::providers::ProviderRegistry;
use keyport_core::secret::{ExposeSecret, SecretString};
use keyport_core::tokens::TokenStore;
use keyport_core::vault::{Access, NewKey, SetOutcome, Vault, DEFAULT_LABEL};

use super::{key, token, Context};
use crate::cli::ImportArgs;
use crate::error::CliError;
use crate::output;

/// The `--from-env` value that selects the process environment.
const ENVIRONMENT_ARG: &str = "-";

/// Maximum length of a token name in the token store, in bytes.
const MAX_TOKEN_NAME_LEN: usize = 64;

/// Highest number appended to the default token name to make it unique.
const MAX_TOKEN_NAME_SUFFIX: u32 = 99;

pub fn run(context: &Context, args: &ImportArgs) -> Result<(), CliError> {
    let from_environment = args.from_env.as_os_str() == ENVIRONMENT_ARG;
    if from_environment && args.rewrite {
        return Err(CliError::Usage(
            "--rewrite needs a file: the environment of this process cannot be rewritten. Pass \
             --from-env FILE, or import without --rewrite"
                .into(),
        ));
    }
    // Checked first, so that a dry run rejects what the import would, and a
    // bad label is reported as a label rather than as the new token's pin.
    keyport_core::vault::validate_label(&args.label)?;
    let config = context.config()?;

    // Everything that can reject the input runs before the password prompt
    // and before the vault changes.
    let file = if from_environment {
        None
    } else {
        Some(EnvFile::read(&args.from_env).map_err(read_error)?)
    };
    let found = match &file {
        Some(file) => file.found(),
        None => from_process_env().map_err(read_error)?,
    };
    let source = describe_source(file.as_ref());
    let plan =
        plan(&found, &args.skip).map_err(|error| CliError::Usage(nothing_imported(&error)))?;
    for notice in &plan.notices {
        output::notice(&format!("note: {notice}"));
    }
    if args.rewrite {
        plan.check_rewrite()
            .map_err(|error| CliError::Usage(nothing_imported(&error)))?;
    }
    // After an earlier --rewrite the file contains client tokens, not keys,
    // and --set-base-urls can still point its SDKs at the proxy.
    if let (Some(file), true, true) = (&file, plan.keys.is_empty(), args.set_base_urls) {
        let settings = base_url_settings(&config, file, &plan)?;
        if !settings.is_empty() {
            return set_base_urls_only(file, &plan, &settings, args);
        }
    }
    check_plan(&config, &plan, &source)?;
    let rewrite = match (&file, args.rewrite) {
        (Some(file), true) => Some(prepare_rewrite(context, &config, file, &plan, args)?),
        _ => None,
    };

    let access = if args.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let mut vault = context.open_vault(access)?;
    if args.dry_run {
        print_dry_run(context, &vault, &plan, &args.label, rewrite.as_ref());
        return Ok(());
    }

    // The token store validates the name, so the token is created before
    // the keys are stored and revoked again if anything after it fails.
    let token = match &rewrite {
        Some(rewrite) => Some(IssuedToken::create(context, rewrite)?),
        None => None,
    };
    let new_token = rewrite.as_ref().map(|rewrite| rewrite.token_name.as_str());
    if let Err(error) = store_keys(context, &mut vault, &plan, &args.label, new_token) {
        if let Some(token) = token {
            output::notice(&format!("The {}.", token.revoke()));
        }
        return Err(error);
    }
    vault.lock();

    if let (Some(file), Some(rewrite), Some(token)) = (&file, &rewrite, token) {
        rewrite_env_file(file, &plan, rewrite, token)?;
    } else if let Some(file) = &file {
        output::notice(&format!(
            "The keys are still in {} in clear text. Run the import again with --rewrite to \
             replace them with a client token, or remove them from the file.",
            file.path.display()
        ));
    }
    print_next_steps(&config, &plan, rewrite.as_ref());
    Ok(())
}

/// Returns how messages name the source: the file's path or the environment.
fn describe_source(file: Option<&EnvFile>) -> String {
    match file {
        Some(file) => file.path.display().to_string(),
        None => "the environment".to_owned(),
    }
}

fn read_error(error: ReadError) -> CliError {
    match error {
        ReadError::Io { .. } => CliError::Failed(error.to_string()),
        ReadError::TooLarge { .. }
        | ReadError::NotUtf8 { .. }
        | ReadError::Parse { .. }
        | ReadError::EnvNotUnicode { .. } => CliError::Usage(nothing_imported(&error)),
    }
}

/// Rejects an empty plan and providers that the configuration does not
/// route with a key.
fn check_plan(config: &Config, plan: &ImportPlan, source: &str) -> Result<(), CliError> {
    let holds_tokens = plan
        .notices
        .iter()
        .any(|notice| matches!(notice, Notice::AlreadyToken(_)));
    if plan.keys.is_empty() && holds_tokens {
        return Err(CliError::Failed(format!(
            "nothing to import: {source} contains Keyport client tokens in place of provider \
             keys, as after an earlier --rewrite. To point its SDKs at the proxy, run the \
             import with --rewrite --set-base-urls"
        )));
    }
    if plan.keys.is_empty() {
        return Err(CliError::Failed(format!(
            "found no provider keys in {source}. Recognised names: {}, also with a VITE_, \
             NEXT_PUBLIC_ or REACT_APP_ prefix",
            key_variable_names().collect::<Vec<_>>().join(", ")
        )));
    }
    for key in &plan.keys {
        let needs_key = config
            .providers
            .get(key.provider)
            .is_some_and(|provider| provider.auth.needs_key());
        if !needs_key {
            return Err(CliError::Usage(format!(
                "{} sets the {} key, but {} configures that provider with auth = \"none\". Remove \
                 the setting or pass --skip. Nothing was imported.",
                variable_list(key),
                key.provider,
                config.path.display()
            )));
        }
    }
    Ok(())
}

/// The token name, backup path and base-URL variables of a `--rewrite`,
/// decided before the vault changes.
struct RewritePlan {
    token_name: String,
    /// Key pins of the new token: with `--label`, the imported providers'
    /// keys under that label, so the project keeps using the keys from its
    /// file while the providers' default keys stay as they are.
    keys: BTreeMap<String, String>,
    backup: Option<PathBuf>,
    base_urls: Vec<BaseUrlSetting>,
}

/// Picks the token name, checks that the backup can be created and that
/// the base-URL variables can be set, so that these mistakes are reported
/// before anything changes.
fn prepare_rewrite(
    context: &Context,
    config: &Config,
    file: &EnvFile,
    plan: &ImportPlan,
    args: &ImportArgs,
) -> Result<RewritePlan, CliError> {
    let store = TokenStore::load(&context.data_dir.tokens())?;
    let taken_names: BTreeSet<&str> = store
        .list()
        .iter()
        .map(|record| record.name.as_str())
        .collect();
    let token_name = match &args.token_name {
        Some(name) if taken_names.contains(name.as_str()) => {
            return Err(CliError::Failed(format!(
                "a token named {name:?} already exists; choose another --token-name, or leave \
                 it out to get a new name. Nothing was imported."
            )));
        }
        Some(name) => name.clone(),
        None => default_token_name(&file.path, &taken_names)?,
    };

    let backup = planned_backup(file, args)?;
    let base_urls = if args.set_base_urls {
        base_url_settings(config, file, plan)?
    } else {
        Vec::new()
    };
    let keys = if args.label == DEFAULT_LABEL {
        BTreeMap::new()
    } else {
        plan.keys
            .iter()
            .map(|key| (key.provider.to_owned(), args.label.clone()))
            .collect()
    };
    Ok(RewritePlan {
        token_name,
        keys,
        backup,
        base_urls,
    })
}

/// Decides the base-URL variables of `--set-base-urls`, and notes skipped
/// keys that the new base URLs would send to the proxy.
fn base_url_settings(
    config: &Config,
    file: &EnvFile,
    plan: &ImportPlan,
) -> Result<Vec<BaseUrlSetting>, CliError> {
    let host = proxy_host(config);
    let builtin = ProviderRegistry::builtin();
    let settings = file
        .base_url_settings(
            plan,
            |provider| proxy_url(&host, provider),
            |provider| {
                [config.providers.get(provider), builtin.get(provider)]
                    .into_iter()
                    .flatten()
                    .map(|provider| provider.base_url.to_string())
                    .collect()
            },
        )
        .map_err(|error| CliError::Usage(nothing_imported(&error)))?;
    if !settings.is_empty() && config.proxy.port == 0 {
        return Err(CliError::Usage(format!(
            "--set-base-urls writes the proxy's address into the file, but {} sets port = 0, so \
             `keyport serve` picks a port only when it starts. Set a fixed port under [proxy] \
             in that file, or import without --set-base-urls. Nothing was imported.",
            config.path.display()
        )));
    }

    for notice in &plan.notices {
        let Notice::Skipped(variable) = notice else {
            continue;
        };
        let redirected = settings
            .iter()
            .find(|setting| provider_for(&variable.name) == Some(setting.provider));
        if let Some(setting) = redirected {
            output::notice(&format!(
                "note: {variable} was skipped and still contains a key, but {} will send that \
                 provider's requests to Keyport, which rejects the key. Import it, or remove it \
                 from the file",
                setting.name
            ));
        }
    }
    Ok(settings)
}

/// Returns the path of the `--backup` copy, checking that it can be
/// created, so the mistake is reported before anything changes.
fn planned_backup(file: &EnvFile, args: &ImportArgs) -> Result<Option<PathBuf>, CliError> {
    let backup = args.backup.then(|| backup_path(&file.path));
    if let Some(backup) = &backup {
        if backup.symlink_metadata().is_ok() {
            return Err(CliError::Failed(format!(
                "backup {} already exists; move it elsewhere or delete it, or import without \
                 --backup. Nothing was imported.",
                backup.display()
            )));
        }
    }
    Ok(backup)
}

/// Sets the base-URL variables in a file whose keys an earlier `--rewrite`
/// replaced with client tokens. The vault and the tokens stay as they are.
fn set_base_urls_only(
    file: &EnvFile,
    plan: &ImportPlan,
    settings: &[BaseUrlSetting],
    args: &ImportArgs,
) -> Result<(), CliError> {
    let backup = planned_backup(file, args)?;
    let verb = if settings.iter().all(|setting| setting.unchanged) {
        "already point at Keyport"
    } else {
        "are set"
    };
    output::notice(&format!(
        "{} contains client tokens and no provider keys; only its base URLs {verb}.",
        file.path.display()
    ));
    if let (Some(backup), true) = (&backup, args.dry_run) {
        output::result_line(&format!("Would copy the file to {}", backup.display()));
    }
    for setting in settings {
        output::result_line(&describe_base_url(setting, args.dry_run));
    }
    if args.dry_run {
        output::notice("Dry run: nothing was changed.");
        return Ok(());
    }
    let new_text = file.rewritten(plan, "", settings);
    if new_text.as_bytes() != file.text().as_bytes() {
        let written = rewrite_file(
            &file.path,
            file.text().as_bytes(),
            new_text.as_bytes(),
            backup.is_some(),
        )
        .map_err(|error| {
            CliError::Failed(format!(
                "{} was not rewritten: {error}",
                file.path.display()
            ))
        })?;
        if let Some(backup) = written {
            output::result_line(&format!(
                "Copied the original file to {} (mode 0600)",
                backup.display()
            ));
        }
    }
    let prefixed = prefixed_settings(settings);
    if prefixed.is_empty() {
        output::notice("Next: run `keyport serve`.");
    } else {
        output::notice("Next: point the project at the proxy:");
        print_prefixed_hints(&prefixed);
        output::notice("Then run `keyport serve`.");
    }
    Ok(())
}

/// Derives `env-FOLDER` from the file's folder, adding `-2`, `-3`, … when
/// the name is taken.
fn default_token_name(path: &Path, taken_names: &BTreeSet<&str>) -> Result<String, CliError> {
    let folder = std::fs::canonicalize(path)
        .ok()
        .and_then(|path| Some(path.parent()?.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let suffix_room = format!("-{MAX_TOKEN_NAME_SUFFIX}").len();
    let folder: String = folder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_TOKEN_NAME_LEN - "env-".len() - suffix_room)
        .collect();
    let base = if folder.is_empty() {
        "env".to_owned()
    } else {
        format!("env-{folder}")
    };

    if !taken_names.contains(base.as_str()) {
        return Ok(base);
    }
    (2..=MAX_TOKEN_NAME_SUFFIX)
        .map(|number| format!("{base}-{number}"))
        .find(|name| !taken_names.contains(name.as_str()))
        .ok_or_else(|| {
            CliError::Failed(format!(
                "tokens {base} to {base}-{MAX_TOKEN_NAME_SUFFIX} all exist; pass --token-name. \
                 Nothing was imported."
            ))
        })
}

fn print_dry_run(
    context: &Context,
    vault: &Vault,
    plan: &ImportPlan,
    label: &str,
    rewrite: Option<&RewritePlan>,
) {
    let existing: BTreeSet<(String, String)> = vault
        .list()
        .into_iter()
        .map(|summary| (summary.provider, summary.label))
        .collect();
    for key in &plan.keys {
        let verb = if existing.contains(&(key.provider.to_owned(), label.to_owned())) {
            "Would replace"
        } else {
            "Would add"
        };
        output::result_line(&format!(
            "{verb} the {} key {label:?} from {}",
            key.provider,
            variable_list(key)
        ));
        if verb == "Would replace" {
            note_pinned_tokens(context, key.provider, label, None);
        }
    }
    if let Some(rewrite) = rewrite {
        if let Some(backup) = &rewrite.backup {
            output::result_line(&format!("Would copy the file to {}", backup.display()));
        }
        output::result_line(&format!(
            "Would replace the imported values in the file with a new client token {:?}{}",
            rewrite.token_name,
            pins_clause(&rewrite.keys)
        ));
        for setting in &rewrite.base_urls {
            output::result_line(&describe_base_url(setting, true));
        }
    }
    output::notice("Dry run: nothing was changed.");
}

fn store_keys(
    context: &Context,
    vault: &mut Vault,
    plan: &ImportPlan,
    label: &str,
    new_token: Option<&str>,
) -> Result<(), CliError> {
    let new_keys = plan
        .keys
        .iter()
        .map(|key| NewKey {
            provider: key.provider.to_owned(),
            label: Some(label.to_owned()),
            key: key.key.clone(),
        })
        .collect();
    let outcomes = vault
        .set_keys(new_keys)
        .map_err(|error| context.vault_error(error))?;

    for (key, outcome) in plan.keys.iter().zip(outcomes) {
        let verb = match outcome {
            SetOutcome::Added => "Added",
            SetOutcome::Replaced => "Replaced",
        };
        output::result_line(&format!(
            "{verb} the {} key {label:?} from {}",
            key.provider,
            variable_list(key)
        ));
        if outcome == SetOutcome::Replaced {
            note_pinned_tokens(context, key.provider, label, new_token);
        }
    }
    output::notice(&format!(
        "Imported {} key(s) into the vault in {}.",
        plan.keys.len(),
        context.data_dir.root().display()
    ));
    Ok(())
}

/// A client token created for `--rewrite` that is not in the file yet.
struct IssuedToken {
    store: TokenStore,
    name: String,
    token: SecretString,
}

impl IssuedToken {
    fn create(context: &Context, rewrite: &RewritePlan) -> Result<Self, CliError> {
        let mut store = TokenStore::load(&context.data_dir.tokens())?;
        let token = store
            .create_pinned(&rewrite.token_name, rewrite.keys.clone())
            .map_err(|error| CliError::Failed(nothing_imported(&error)))?;
        Ok(Self {
            store,
            name: rewrite.token_name.clone(),
            token,
        })
    }

    /// Revokes the token and describes the result for an error message.
    fn revoke(mut self) -> String {
        match self.store.revoke(&self.name) {
            Ok(()) => format!("new token {:?} was revoked again", self.name),
            Err(error) => format!(
                "new token {:?} could not be revoked ({error}); revoke it with `keyport token \
                 revoke {}`",
                self.name, self.name
            ),
        }
    }
}

/// Rewrites the file with the token. The keys are already in the vault,
/// so its errors state that.
fn rewrite_env_file(
    file: &EnvFile,
    plan: &ImportPlan,
    rewrite: &RewritePlan,
    token: IssuedToken,
) -> Result<(), CliError> {
    let path = &file.path;
    let new_text = file.rewritten(plan, token.token.expose_secret(), &rewrite.base_urls);
    let written = rewrite_file(
        path,
        file.text().as_bytes(),
        new_text.as_bytes(),
        rewrite.backup.is_some(),
    );
    let backup = match written {
        Ok(backup) => backup,
        Err(error) => {
            return Err(CliError::Failed(format!(
                "the keys were imported, but {} was not rewritten: {error}. The {}. Run the \
                 import with --rewrite again to retry",
                path.display(),
                token.revoke()
            )));
        }
    };

    if let Some(backup) = backup {
        output::result_line(&format!(
            "Copied the original file to {} (mode 0600). It contains the keys in clear text: \
             delete it once the project works through Keyport",
            backup.display()
        ));
    }
    output::result_line(&format!(
        "Rewrote {}: the imported values are now client token {:?}{}",
        path.display(),
        rewrite.token_name,
        pins_clause(&rewrite.keys)
    ));
    for setting in &rewrite.base_urls {
        output::result_line(&describe_base_url(setting, false));
    }
    Ok(())
}

/// Warns that tokens pinned to a replaced key, other than `new_token`,
/// send the new key from now on: another project may be using that label.
fn note_pinned_tokens(context: &Context, provider: &str, label: &str, new_token: Option<&str>) {
    let mut pinned = token::tokens_pinned_to(context, provider, label);
    pinned.retain(|name| Some(name.as_str()) != new_token);
    if !pinned.is_empty() {
        output::notice(&format!(
            "note: client token(s) {} are pinned to the {provider} key {label:?} and use the new              key from now on",
            key::quoted_list(&pinned)
        ));
    }
}

/// Names the keys a pinned token uses, as a clause that ends a sentence
/// about the token. The clause is empty for a token without pins.
fn pins_clause(keys: &BTreeMap<String, String>) -> String {
    let Some(label) = keys.values().next() else {
        return String::new();
    };
    let providers: Vec<&str> = keys.keys().map(String::as_str).collect();
    format!(
        ", which uses the keys labelled {label:?} for {}",
        providers.join(", ")
    )
}

/// Describes what `--set-base-urls` does, or in a dry run would do, with
/// one variable.
fn describe_base_url(setting: &BaseUrlSetting, dry_run: bool) -> String {
    let assignment = format!("{}={}", setting.name, setting.url);
    let lines = setting
        .lines
        .iter()
        .map(|line| format!("line {line}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (verb, place) = match (setting.unchanged, setting.lines.is_empty()) {
        (true, _) => (["Kept", "Would keep"], format!("({lines})")),
        (false, true) => (["Added", "Would add"], "at the end of the file".to_owned()),
        (false, false) => (["Set", "Would set"], format!("({lines})")),
    };
    format!("{} {assignment} {place}", verb[usize::from(dry_run)])
}

/// Returns the proxy's `host:port` for URLs in messages and files, with
/// `PORT` in place of port 0.
fn proxy_host(config: &Config) -> String {
    let ip = if config.proxy.bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        config.proxy.bind
    };
    // Port 0 means `keyport serve` picks a free port at start, so the
    // address is only known then.
    let address = SocketAddr::new(ip, config.proxy.port).to_string();
    match address.strip_suffix(":0") {
        Some(without_port) => format!("{without_port}:PORT"),
        None => address,
    }
}

fn proxy_url(host: &str, provider: &str) -> String {
    format!("http://{host}/llm/{provider}")
}

/// Prints the base URLs the project must now use, because the token in
/// place of the key works only through the proxy, leaving out providers
/// whose base URL the rewrite set. Without a rewrite, the project still
/// needs a client token in place of its key.
fn print_next_steps(config: &Config, plan: &ImportPlan, rewrite: Option<&RewritePlan>) {
    let base_urls = rewrite.map_or(&[][..], |rewrite| rewrite.base_urls.as_slice());
    let remaining: Vec<&PlannedKey> = plan
        .keys
        .iter()
        .filter(|key| {
            !base_urls
                .iter()
                .any(|setting| setting.provider == key.provider)
        })
        .collect();
    let prefixed = prefixed_settings(base_urls);
    if remaining.is_empty() && prefixed.is_empty() {
        output::notice("Next: run `keyport serve`.");
        return;
    }

    let host = proxy_host(config);
    output::notice("Next: point the project at the proxy instead of the provider:");
    if config.proxy.port == 0 {
        output::notice(
            "  (the configured port is 0: use the port `keyport serve` prints when it starts)",
        );
    }
    let mut offer_flag = false;
    for key in remaining {
        let url = proxy_url(&host, key.provider);
        // The same prefix as the key's variable, as --set-base-urls writes it.
        let mut names: Vec<String> = key
            .variables
            .iter()
            .filter_map(|variable| base_url_variable_for(&variable.name))
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            output::notice(&format!(
                "  {}: set the SDK's base URL (KaibanJS: llmConfig.apiBaseUrl) to {url}",
                key.provider
            ));
        }
        for name in names {
            output::notice(&format!("  {name}={url}"));
            offer_flag = true;
        }
    }
    print_prefixed_hints(&prefixed);
    if rewrite.is_none() {
        output::notice(
            "  and put a client token from `keyport token create NAME` where the project \
             reads its API key",
        );
    } else if offer_flag {
        output::notice(
            "  (run the import again with --rewrite --set-base-urls to add these to the file)",
        );
    }
    output::notice("Then run `keyport serve`.");
}

/// Returns the settings with a front-end prefix. SDKs read only the plain
/// names, so `VITE_OPENAI_BASE_URL` reaches one only through the project's
/// code.
fn prefixed_settings(settings: &[BaseUrlSetting]) -> Vec<&BaseUrlSetting> {
    settings
        .iter()
        .filter(|setting| base_url_variable(setting.provider) != Some(setting.name.as_str()))
        .collect()
}

fn print_prefixed_hints(prefixed: &[&BaseUrlSetting]) {
    for setting in prefixed {
        output::notice(&format!(
            "  {}: no SDK reads it by itself, so pass it to the SDK as its base URL in the \
             project's code (KaibanJS: llmConfig.apiBaseUrl)",
            setting.name
        ));
    }
}

/// Lists the variables that set `key`, such as `GOOGLE_API_KEY (line 3)`.
fn variable_list(key: &PlannedKey) -> String {
    key.variables
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends "Nothing was imported." to `error`, whose message may already
/// end with a full stop, as the vault's key checks do.
fn nothing_imported(error: &impl std::fmt::Display) -> String {
    let message = error.to_string();
    format!("{}. Nothing was imported.", message.trim_end_matches('.'))
}
