//! The keys handed to the proxy: a copy of the vault's secrets that needs no
//! file access and no password.

use std::collections::BTreeMap;
use std::fmt;

use super::record::Entries;
use super::validate::DEFAULT_LABEL;
use crate::secret::SecretString;

/// Keys by provider id, then by label.
///
/// `Debug` lists providers and labels only. The keys are zeroized when the
/// last clone that contains them is dropped.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, BTreeMap<String, SecretString>>,
}

/// Failure to pick a key from a [`KeyRing`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySelectError {
    #[error("no key stored for provider `{provider}`; add one to the vault")]
    NoKeyForProvider { provider: String },

    #[error(
        "no key labelled `{label}` for provider `{provider}`; stored labels: {}",
        labels.join(", ")
    )]
    LabelNotFound {
        provider: String,
        label: String,
        labels: Vec<String>,
    },

    #[error(
        "provider `{provider}` has several keys ({}) and none is labelled `default`; \
         name the label to use",
        labels.join(", ")
    )]
    Ambiguous {
        provider: String,
        labels: Vec<String>,
    },
}

impl KeyRing {
    pub(crate) fn from_entries(entries: &Entries) -> Self {
        let mut keys: BTreeMap<String, BTreeMap<String, SecretString>> = BTreeMap::new();
        for (id, entry) in entries {
            keys.entry(id.provider.clone())
                .or_default()
                .insert(id.label.clone(), entry.key.clone());
        }
        Self { keys }
    }

    /// Returns the key for `provider`.
    ///
    /// With a label, returns the key with that label. Without one, returns
    /// the key labelled `default` if there is one, else the provider's only
    /// key; several keys and no `default` is [`KeySelectError::Ambiguous`].
    pub fn select(
        &self,
        provider: &str,
        label: Option<&str>,
    ) -> Result<&SecretString, KeySelectError> {
        let Some(by_label) = self.keys.get(provider).filter(|keys| !keys.is_empty()) else {
            return Err(KeySelectError::NoKeyForProvider {
                provider: provider.to_owned(),
            });
        };
        let labels = || by_label.keys().cloned().collect::<Vec<_>>();

        if let Some(label) = label {
            return by_label
                .get(label)
                .ok_or_else(|| KeySelectError::LabelNotFound {
                    provider: provider.to_owned(),
                    label: label.to_owned(),
                    labels: labels(),
                });
        }
        if let Some(key) = by_label.get(DEFAULT_LABEL) {
            return Ok(key);
        }
        let mut keys = by_label.values();
        match (keys.next(), keys.next()) {
            (Some(only), None) => Ok(only),
            _ => Err(KeySelectError::Ambiguous {
                provider: provider.to_owned(),
                labels: labels(),
            }),
        }
    }

    /// Returns the ids of the providers that have at least one key, sorted.
    pub fn providers(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels = self
            .keys
            .iter()
            .map(|(provider, keys)| (provider, keys.keys().collect::<Vec<_>>()));
        f.debug_struct("KeyRing")
            .field("labels", &labels.collect::<BTreeMap<_, _>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use chrono::Utc;

    use super::super::record::{Entry, EntryId};
    use super::*;
    use crate::secret::ExposeSecret;

    fn ring(pairs: &[(&str, &str, &str)]) -> KeyRing {
        let now = Utc::now();
        let entries: Entries = pairs
            .iter()
            .map(|(provider, label, key)| {
                let id = EntryId {
                    provider: (*provider).into(),
                    label: (*label).into(),
                };
                let entry = Entry {
                    key: SecretString::from(*key),
                    created_at: now,
                    updated_at: now,
                };
                (id, entry)
            })
            .collect();
        KeyRing::from_entries(&entries)
    }

    #[test]
    fn select_prefers_default_then_only_key() {
        let ring = ring(&[
            ("openai", "default", "k-openai-default"),
            ("openai", "work", "k-openai-work"),
            ("groq", "personal", "k-groq-personal"),
        ]);
        let select = |provider, label| {
            ring.select(provider, label)
                .unwrap()
                .expose_secret()
                .to_owned()
        };

        assert_eq!(select("openai", None), "k-openai-default");
        assert_eq!(select("openai", Some("work")), "k-openai-work");
        assert_eq!(select("groq", None), "k-groq-personal");
        assert_eq!(ring.providers(), ["groq", "openai"]);
        assert!(!ring.is_empty());
    }

    #[test]
    fn select_reports_missing_and_ambiguous() {
        let ring = ring(&[("anthropic", "a", "k1"), ("anthropic", "b", "k2")]);
        assert_eq!(
            ring.select("anthropic", None).unwrap_err(),
            KeySelectError::Ambiguous {
                provider: "anthropic".into(),
                labels: vec!["a".into(), "b".into()],
            }
        );
        assert!(matches!(
            ring.select("anthropic", Some("c")),
            Err(KeySelectError::LabelNotFound { .. })
        ));
        assert!(matches!(
            ring.select("openai", None),
            Err(KeySelectError::NoKeyForProvider { .. })
        ));
        assert!(KeyRing::default().is_empty());
    }
}
