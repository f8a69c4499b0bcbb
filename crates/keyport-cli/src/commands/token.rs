//! `keyport token …`: client tokens for local programs.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use keyport_core::limits::{period_start, Period, TokenLimits};
use keyport_core::requestlog::{GroupBy, LogFilter, RequestLog};
use keyport_core::secret::ExposeSecret;
use keyport_core::tokens::{collect_pins, PinError, TokenRecord, TokenStore};
use keyport_core::vault::Vault;

use super::Context;
use crate::cli::{TokenCommand, TokenLimitArgs};
use crate::error::CliError;
use crate::output;

pub fn run(context: &Context, command: TokenCommand) -> Result<(), CliError> {
    let mut store = TokenStore::load(&context.data_dir.tokens())?;
    match command {
        TokenCommand::Create { name, keys } => {
            let keys = checked_pins(context, keys)?;
            let token = store.create_pinned(&name, keys.clone())?;
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
            if !keys.is_empty() {
                output::notice(&format!("Its requests use {}.", describe_pins(&keys)));
            }
            if !Vault::exists(&context.data_dir) {
                output::notice(&format!(
                    "warning: {} contains no vault; a proxy started on another data folder will reject this token",
                    context.data_dir.root().display()
                ));
            }
        }
        TokenCommand::List { json } => {
            let spend = spend_by_token(context, store.list());
            list(&store, &spend, json)?
        }
        TokenCommand::Revoke { name } => {
            store.revoke(&name)?;
            output::result_line(&format!("Revoked token {name:?}"));
        }
        TokenCommand::Limit(args) => limit(&mut store, *args)?,
        TokenCommand::Pin {
            name,
            keys,
            unpin,
            clear,
        } => pin(context, &mut store, &name, keys, unpin, clear)?,
    }
    Ok(())
}

/// Checks that each pinned provider exists and takes a key, then collects
/// the pins.
fn checked_pins(
    context: &Context,
    pairs: Vec<(String, String)>,
) -> Result<BTreeMap<String, String>, CliError> {
    let config = context.config()?;
    collect_pins(&config.providers, pairs).map_err(|error| match error {
        PinError::UnknownProvider { .. } => CliError::Usage(format!(
            "{error}. Custom providers are added in {}",
            config.path.display()
        )),
        other => CliError::Usage(other.to_string()),
    })
}

/// Applies `keyport token pin`: pins given are set, `--unpin` removes
/// pins, `--clear` removes all before the others apply.
fn pin(
    context: &Context,
    store: &mut TokenStore,
    name: &str,
    keys: Vec<(String, String)>,
    unpin: Vec<String>,
    clear: bool,
) -> Result<(), CliError> {
    if keys.is_empty() && unpin.is_empty() && !clear {
        return Err(CliError::Usage(format!(
            "nothing to change for token {name:?}; give PROVIDER=LABEL pairs, --unpin PROVIDER or --clear"
        )));
    }
    let keys = checked_pins(context, keys)?;
    // A provider no longer in the config may still be unpinned, so only a
    // provider that is neither configured nor pinned is a mistake.
    let current = store
        .list()
        .iter()
        .find(|record| record.name == name)
        .map(|record| record.keys.clone())
        .unwrap_or_default();
    let config = context.config()?;
    if let Some(unknown) = unpin.iter().find(|provider| {
        config.providers.get(provider).is_none() && !current.contains_key(*provider)
    }) {
        return Err(CliError::Usage(format!(
            "unknown provider {unknown:?}; known providers: {}",
            config.providers.ids_for_message()
        )));
    }
    if let Some(both) = unpin.iter().find(|provider| keys.contains_key(*provider)) {
        return Err(CliError::Usage(format!(
            "{both} is both pinned and unpinned; give it once"
        )));
    }
    let mut missing = Vec::new();
    let pins = store.update_pins(name, |mut current| {
        if clear {
            current.clear();
        }
        for provider in &unpin {
            if current.remove(provider).is_none() && !clear {
                missing.push(provider.clone());
            }
        }
        current.extend(keys);
        current
    })?;
    for provider in missing {
        output::notice(&format!("note: token {name:?} had no pin for {provider}"));
    }
    let text = if pins.is_empty() {
        format!("Token {name:?} has no pinned keys; its requests use each provider's default key or the x-keyport-key header")
    } else {
        format!("Token {name:?} uses {}", describe_pins(&pins))
    };
    output::result_line(&text);
    Ok(())
}

/// Returns the names of the tokens pinned to `provider`'s key `label`. A
/// token file that cannot be read counts as none, because callers only
/// add a warning with the result.
pub(super) fn tokens_pinned_to(context: &Context, provider: &str, label: &str) -> Vec<String> {
    let Ok(store) = TokenStore::load(&context.data_dir.tokens()) else {
        return Vec::new();
    };
    store
        .list()
        .iter()
        .filter(|record| {
            record
                .keys
                .get(provider)
                .is_some_and(|pinned| pinned == label)
        })
        .map(|record| record.name.clone())
        .collect()
}

/// Names the pinned keys, such as `the openai key "client-a"`.
fn describe_pins(keys: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|(provider, label)| format!("the {provider} key {label:?}"))
        .collect();
    parts.join(", ")
}

/// Applies `keyport token limit`: options given replace their values,
/// the others keep theirs unless `--clear` is set.
fn limit(store: &mut TokenStore, args: TokenLimitArgs) -> Result<(), CliError> {
    let any_given = args.rpm.is_some()
        || args.tpm.is_some()
        || args.daily_usd.is_some()
        || args.monthly_usd.is_some()
        || args.warn_at.is_some()
        || !args.allow.is_empty();
    if !args.clear && !any_given {
        return Err(CliError::Usage(format!(
            "no limit given for token {:?}; pass --rpm, --tpm, --daily-usd, --monthly-usd, --warn-at, --allow or --clear",
            args.name
        )));
    }

    // The current limits are read under the tokens.json lock, so a
    // concurrent `token limit` on the same token cannot undo this change.
    let name = args.name.clone();
    let limits = store.update_limits(&name, |current| merge_limits(current, args))?;
    let text = if limits.is_empty() {
        format!("Token {name:?} has no limits")
    } else {
        format!("Token {name:?}: {}", describe(&limits, None))
    };
    output::result_line(&text);
    Ok(())
}

/// Applies the options given to `current`: each replaces its value, the
/// others keep theirs unless `--clear` is set.
fn merge_limits(current: TokenLimits, args: TokenLimitArgs) -> TokenLimits {
    let mut limits = if args.clear {
        TokenLimits::default()
    } else {
        current
    };
    if args.rpm.is_some() {
        limits.requests_per_minute = args.rpm;
    }
    if args.tpm.is_some() {
        limits.tokens_per_minute = args.tpm;
    }
    if args.daily_usd.is_some() {
        limits.daily_usd = args.daily_usd;
    }
    if args.monthly_usd.is_some() {
        limits.monthly_usd = args.monthly_usd;
    }
    if args.warn_at.is_some() {
        limits.warn_at_percent = args.warn_at;
    }
    if !args.allow.is_empty() {
        limits.allow = args.allow;
    }
    limits
}

/// Dollars spent per token in the current UTC day and month.
#[derive(Debug, Default)]
struct SpendByToken {
    day: HashMap<String, f64>,
    month: HashMap<String, f64>,
}

impl SpendByToken {
    fn of(&self, name: &str) -> (f64, f64) {
        (
            self.day.get(name).copied().unwrap_or(0.0),
            self.month.get(name).copied().unwrap_or(0.0),
        )
    }
}

/// Reads the spend of the current UTC day and month from the request log,
/// when a token has a spend cap. A log that cannot be read is reported and
/// the list is shown without spend.
fn spend_by_token(context: &Context, records: &[TokenRecord]) -> Option<SpendByToken> {
    let has_caps = records.iter().any(|record| {
        record
            .limits
            .as_ref()
            .is_some_and(|limits| limits.daily_usd.is_some() || limits.monthly_usd.is_some())
    });
    let path = context.data_dir.request_log();
    if !has_caps || !path.exists() {
        return None;
    }
    let read = || -> Result<SpendByToken, String> {
        let config = context.config().map_err(|error| error.to_string())?;
        let log =
            RequestLog::open(&path, config.log.settings()).map_err(|error| error.to_string())?;
        let now = Utc::now();
        let sums = |period| -> Result<HashMap<String, f64>, String> {
            let filter = LogFilter {
                since: Some(period_start(period, now)),
                ..LogFilter::default()
            };
            let totals = log
                .totals(&filter, GroupBy::Token)
                .map_err(|error| error.to_string())?;
            Ok(totals
                .into_iter()
                .filter_map(|total| Some((total.key?, total.cost_usd)))
                .collect())
        };
        Ok(SpendByToken {
            day: sums(Period::Day)?,
            month: sums(Period::Month)?,
        })
    };
    match read() {
        Ok(spend) => Some(spend),
        Err(error) => {
            output::notice(&format!(
                "warning: cannot read the spend from the request log: {error}"
            ));
            None
        }
    }
}

fn list(store: &TokenStore, spend: &Option<SpendByToken>, json: bool) -> Result<(), CliError> {
    let records = store.list();
    if json {
        let items: Vec<serde_json::Value> = records
            .iter()
            .map(|record| json_item(record, spend))
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
            let spent = spend.as_ref().map(|spend| spend.of(&record.name));
            vec![
                record.name.clone(),
                format!("{}…", record.prefix),
                record.created_at.format("%Y-%m-%d %H:%M").to_string(),
                record
                    .limits
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |limits| describe(limits, spent)),
                pins_column(&record.keys),
            ]
        })
        .collect();
    output::result_line(&output::table(
        &["NAME", "TOKEN", "CREATED (UTC)", "LIMITS", "KEYS"],
        &rows,
    ));
    Ok(())
}

fn json_item(record: &TokenRecord, spend: &Option<SpendByToken>) -> serde_json::Value {
    let mut item = serde_json::json!({
        "name": record.name,
        "prefix": record.prefix,
        "created_at": record.created_at,
        "limits": record.limits,
        "keys": record.keys,
    });
    if let (Some(limits), Some(spend)) = (&record.limits, spend) {
        let (day, month) = spend.of(&record.name);
        item["spend"] = serde_json::json!({
            "today_usd": day,
            "month_usd": month,
            "warning": warning(limits, day, month),
        });
    }
    item
}

/// Short form of the pins for the list, such as `openai=client-a`; `-`
/// when the token uses the default keys.
fn pins_column(keys: &BTreeMap<String, String>) -> String {
    if keys.is_empty() {
        return "-".to_string();
    }
    let parts: Vec<String> = keys
        .iter()
        .map(|(provider, label)| format!("{provider}={label}"))
        .collect();
    parts.join(" ")
}

/// Returns whether a spend has reached the warning threshold of its cap.
fn warning(limits: &TokenLimits, day: f64, month: f64) -> bool {
    let threshold = f64::from(limits.warn_at()) / 100.0;
    let over = |cap: Option<f64>, spent: f64| cap.is_some_and(|cap| spent >= cap * threshold);
    over(limits.daily_usd, day) || over(limits.monthly_usd, month)
}

/// One-line summary such as `60 rpm, $5.00/day (today $4.10), allow anthropic:*`.
fn describe(limits: &TokenLimits, spent: Option<(f64, f64)>) -> String {
    let mut parts = Vec::new();
    if let Some(rpm) = limits.requests_per_minute {
        parts.push(format!("{rpm} rpm"));
    }
    if let Some(tpm) = limits.tokens_per_minute {
        parts.push(format!("{tpm} tpm"));
    }
    if let Some(cap) = limits.daily_usd {
        let today = spent.map_or(String::new(), |(day, _)| format!(" (today ${day:.2})"));
        parts.push(format!("${cap:.2}/day{today}"));
    }
    if let Some(cap) = limits.monthly_usd {
        let month = spent.map_or(String::new(), |(_, month)| format!(" (month ${month:.2})"));
        parts.push(format!("${cap:.2}/month{month}"));
    }
    if limits.daily_usd.is_some() || limits.monthly_usd.is_some() {
        parts.push(format!("warn at {} %", limits.warn_at()));
    }
    if !limits.allow.is_empty() {
        parts.push(format!("allow {}", limits.allow.join(" ")));
    }
    if let Some((day, month)) = spent {
        if warning(limits, day, month) {
            parts.push("WARNING: spend past the threshold".to_string());
        }
    }
    parts.join(", ")
}
