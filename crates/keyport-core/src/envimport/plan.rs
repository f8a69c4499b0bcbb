//! Deciding which keys an import stores: the last assignment of a name
//! wins, empty values are skipped, and two names for one provider must
//! agree.

use std::collections::btree_map::{BTreeMap, Entry};
use std::fmt;

use super::variables::{key_variable_names, provider_for, FRONTEND_PREFIXES};
use crate::secret::{ExposeSecret, SecretString};
use crate::tokens::TOKEN_PREFIX;
use crate::vault::{check_key, KeyProblem};

/// Location of a value in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A line of a `.env` file, counted from 1.
    Line(usize),
    /// The process environment.
    Environment,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, "line {line}"),
            Self::Environment => f.write_str("environment"),
        }
    }
}

/// A variable name and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub origin: Origin,
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.origin)
    }
}

/// One variable with its value, as read from a file or the environment.
#[derive(Debug, Clone)]
pub struct Found {
    pub variable: Variable,
    pub value: SecretString,
}

/// A key the import will store.
#[derive(Debug)]
pub struct PlannedKey {
    pub provider: &'static str,
    /// The variables that set this key, in input order. Several variables
    /// appear when they all contain the same value.
    pub variables: Vec<Variable>,
    pub key: SecretString,
}

/// Something the user should hear about that does not stop the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The value is empty, so no key is stored for this variable.
    Empty(Variable),
    /// The name is assigned more than once; the last assignment wins.
    Overridden {
        name: String,
        earlier: Vec<Origin>,
        winner: Origin,
    },
    /// The caller asked to leave this variable out.
    Skipped(Variable),
    /// The value is a Keyport client token, as after an earlier
    /// `--rewrite`, so storing it as a provider key would break the proxy.
    AlreadyToken(Variable),
    /// Earlier assignments of the name contain a value, but the last one
    /// is empty or a client token, so nothing is imported for the name
    /// and the earlier values stay in the file.
    EarlierValueLeft {
        name: String,
        earlier: Vec<Origin>,
        winner: Origin,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty(variable) => write!(f, "{variable} is empty; skipped"),
            Self::Overridden {
                name,
                earlier,
                winner,
            } => {
                write!(
                    f,
                    "{name} is set more than once ({} and {winner}); the last one, {winner}, is \
                     used, as dotenv does",
                    join_origins(earlier)
                )
            }
            Self::Skipped(variable) => write!(f, "{variable} skipped as requested"),
            Self::AlreadyToken(variable) => write!(
                f,
                "{variable} contains a Keyport client token, not a provider key; skipped"
            ),
            Self::EarlierValueLeft {
                name,
                earlier,
                winner,
            } => write!(
                f,
                "{name} has a value at {} that {winner} overrides with an empty value or a \
                 client token, so that value is not imported and stays in the file",
                join_origins(earlier)
            ),
        }
    }
}

fn join_origins(origins: &[Origin]) -> String {
    let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
    origins.join(", ")
}

/// The outcome of planning: keys to store and notices for the user.
#[derive(Debug)]
pub struct ImportPlan {
    /// One key per provider, sorted by provider id.
    pub keys: Vec<PlannedKey>,
    pub notices: Vec<Notice>,
}

impl ImportPlan {
    /// Returns whether `name` set one of the planned keys.
    pub fn imports_variable(&self, name: &str) -> bool {
        self.keys
            .iter()
            .flat_map(|key| &key.variables)
            .any(|variable| variable.name == name)
    }

    /// Rejects a `--rewrite` that would leave a value in the file: a name
    /// whose earlier assignment contains a value that is not imported,
    /// because the last assignment is empty or a client token. Replacing
    /// that value without importing it would lose the key.
    pub fn check_rewrite(&self) -> Result<(), PlanError> {
        for notice in &self.notices {
            if let Notice::EarlierValueLeft {
                name,
                earlier,
                winner,
            } = notice
            {
                return Err(PlanError::RewriteLeavesValue {
                    name: name.clone(),
                    earlier: join_origins(earlier),
                    winner: *winner,
                });
            }
        }
        Ok(())
    }
}

/// A reason the import cannot go ahead. No message contains a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{first} and {second} both set the {provider} key, with different values. Remove or \
         comment out one of them, or pass `--skip NAME` to leave one unimported"
    )]
    Conflict {
        provider: &'static str,
        first: Variable,
        second: Variable,
    },

    #[error("{variable} is not a valid {provider} key: {problem}")]
    InvalidKey {
        provider: &'static str,
        variable: Variable,
        problem: KeyProblem,
    },

    #[error(
        "{variable} refers to another variable with `$`, which Keyport does not expand; put \
         the key itself there"
    )]
    Reference { variable: Variable },

    #[error(
        "cannot skip {name}: no recognised provider variable of that name is set. Recognised \
         names are {} and the same with a {} prefix",
        key_variable_names().collect::<Vec<_>>().join(", "),
        FRONTEND_PREFIXES.join(", ")
    )]
    UnknownSkip { name: String },

    #[error(
        "{name} has a value at {earlier}, but its last assignment, at {winner}, is empty or a \
         client token, so nothing is imported for it and --rewrite would leave that value in \
         the file in clear text. Delete the earlier lines, or move the key to {winner}"
    )]
    RewriteLeavesValue {
        name: String,
        earlier: String,
        winner: Origin,
    },
}

/// Decides which keys to import from `found`, in input order. Variables not
/// recognised as provider keys are ignored. Names in `skip` are left out.
pub fn plan(found: &[Found], skip: &[String]) -> Result<ImportPlan, PlanError> {
    let mut notices = Vec::new();
    let winners = last_assignments(found, &mut notices);
    notices.extend(earlier_values_left(found, &winners, skip));

    for name in skip {
        if !winners
            .iter()
            .any(|(found, _)| found.variable.name == *name)
        {
            return Err(PlanError::UnknownSkip { name: name.clone() });
        }
    }

    // The first variable of each provider, and the others that set it.
    let mut by_provider: BTreeMap<&'static str, (&Found, Vec<&Found>)> = BTreeMap::new();
    for (found, provider) in winners {
        let value = found.value.expose_secret();
        if skip.contains(&found.variable.name) {
            notices.push(Notice::Skipped(found.variable.clone()));
            continue;
        }
        if value.is_empty() {
            notices.push(Notice::Empty(found.variable.clone()));
            continue;
        }
        if value.starts_with(TOKEN_PREFIX) {
            notices.push(Notice::AlreadyToken(found.variable.clone()));
            continue;
        }
        check_value(provider, found)?;
        match by_provider.entry(provider) {
            Entry::Vacant(entry) => {
                entry.insert((found, Vec::new()));
            }
            Entry::Occupied(mut entry) => entry.get_mut().1.push(found),
        }
    }

    let keys = by_provider
        .into_iter()
        .map(|(provider, (first, rest))| merge(provider, first, &rest))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ImportPlan { keys, notices })
}

/// Keeps the last assignment of each recognised name, in input order of
/// those last assignments, and reports the names assigned more than once.
fn last_assignments<'a>(
    found: &'a [Found],
    notices: &mut Vec<Notice>,
) -> Vec<(&'a Found, &'static str)> {
    let mut winners = Vec::new();
    for (index, candidate) in found.iter().enumerate() {
        let Some(provider) = provider_for(&candidate.variable.name) else {
            continue;
        };
        let same_name = |other: &&Found| other.variable.name == candidate.variable.name;
        if found[index + 1..].iter().any(|other| same_name(&other)) {
            continue;
        }
        let earlier: Vec<Origin> = found[..index]
            .iter()
            .filter(same_name)
            .map(|other| other.variable.origin)
            .collect();
        if !earlier.is_empty() {
            notices.push(Notice::Overridden {
                name: candidate.variable.name.clone(),
                earlier,
                winner: candidate.variable.origin,
            });
        }
        winners.push((candidate, provider));
    }
    winners
}

/// Returns a notice for each recognised name whose last assignment imports
/// nothing (empty or a client token) while an earlier assignment contains
/// another value. Skipped names are left out, as the caller asked.
fn earlier_values_left(
    found: &[Found],
    winners: &[(&Found, &'static str)],
    skip: &[String],
) -> Vec<Notice> {
    let imports_nothing = |value: &str| value.is_empty() || value.starts_with(TOKEN_PREFIX);
    let mut notices = Vec::new();
    for (winner, _) in winners {
        let name = &winner.variable.name;
        if skip.contains(name) || !imports_nothing(winner.value.expose_secret()) {
            continue;
        }
        let earlier: Vec<Origin> = found
            .iter()
            .take_while(|other| !std::ptr::eq(*other, *winner))
            .filter(|other| other.variable.name == *name)
            .filter(|other| !imports_nothing(other.value.expose_secret()))
            .map(|other| other.variable.origin)
            .collect();
        if !earlier.is_empty() {
            notices.push(Notice::EarlierValueLeft {
                name: name.clone(),
                earlier,
                winner: winner.variable.origin,
            });
        }
    }
    notices
}

/// Rejects a value that the vault would reject or that is a reference to
/// another variable, naming the variable instead of the provider only.
fn check_value(provider: &'static str, found: &Found) -> Result<(), PlanError> {
    let value = found.value.expose_secret();
    // Provider keys never contain `$`, while `${NAME}` and `$NAME` are how
    // shells and dotenv-expand refer to other variables.
    if value.starts_with('$') || value.contains("${") {
        return Err(PlanError::Reference {
            variable: found.variable.clone(),
        });
    }
    check_key(value).map_err(|problem| PlanError::InvalidKey {
        provider,
        variable: found.variable.clone(),
        problem,
    })
}

/// Combines the variables that set one provider's key, which must agree.
fn merge(provider: &'static str, first: &Found, rest: &[&Found]) -> Result<PlannedKey, PlanError> {
    let key = first.value.expose_secret();
    if let Some(different) = rest.iter().find(|other| other.value.expose_secret() != key) {
        return Err(PlanError::Conflict {
            provider,
            first: first.variable.clone(),
            second: different.variable.clone(),
        });
    }
    let variables = std::iter::once(first)
        .chain(rest.iter().copied())
        .map(|found| found.variable.clone())
        .collect();
    Ok(PlannedKey {
        provider,
        variables,
        key: first.value.clone(),
    })
}
