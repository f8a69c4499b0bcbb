//! Provider keys for the proxy: a [`KeySource`] (the vault's key ring)
//! kept in a [`KeySlot`] that is empty while the vault is locked.

use std::fmt;
use std::sync::{Arc, RwLock};

use crate::secret::SecretString;

/// Supplies provider keys to the proxy. The vault's key ring implements it.
pub trait KeySource: Send + Sync + 'static {
    /// Returns the key for `provider`; `label` None selects the provider's
    /// default key. The proxy calls this on its async runtime for every
    /// request, so it must return from memory without blocking on I/O.
    fn select(&self, provider: &str, label: Option<&str>) -> Result<SecretString, KeyLookupError>;
}

/// Why a [`KeySource`] has no key for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    #[error("no API key stored for {provider}")]
    NotStored { provider: String },

    #[error("no key labelled {label:?} is stored for {provider}")]
    LabelNotFound { provider: String, label: String },

    #[error("{provider} has several keys ({}) and none is the default", labels.join(", "))]
    Ambiguous {
        provider: String,
        labels: Vec<String>,
    },
}

/// The unlocked keys, shared between the proxy and the code that locks and
/// unlocks the vault. Clones share one slot.
///
/// While the slot is empty, requests that need a key get 503 "vault locked".
#[derive(Clone, Default)]
pub struct KeySlot {
    source: Arc<RwLock<Option<Arc<dyn KeySource>>>>,
}

impl KeySlot {
    /// Creates an empty (locked) slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `source` the key source for every request from now on.
    pub fn set(&self, source: Arc<dyn KeySource>) {
        *self.write() = Some(source);
    }

    /// Empties the slot. Requests already holding a key finish with it.
    pub fn clear(&self) {
        *self.write() = None;
    }

    pub fn is_unlocked(&self) -> bool {
        self.current().is_some()
    }

    /// Returns the key source, if the vault is unlocked.
    pub(crate) fn current(&self) -> Option<Arc<dyn KeySource>> {
        // A poisoned lock still holds a consistent Option; the writer only
        // ever replaces it whole.
        match self.source.read() {
            Ok(source) => source.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<dyn KeySource>>> {
        match self.source.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySlot")
            .field("unlocked", &self.is_unlocked())
            .finish()
    }
}

impl KeySource for crate::vault::KeyRing {
    fn select(&self, provider: &str, label: Option<&str>) -> Result<SecretString, KeyLookupError> {
        use crate::vault::KeySelectError;

        match crate::vault::KeyRing::select(self, provider, label) {
            Ok(key) => Ok(key.clone()),
            Err(KeySelectError::NoKeyForProvider { provider }) => {
                Err(KeyLookupError::NotStored { provider })
            }
            Err(KeySelectError::LabelNotFound {
                provider, label, ..
            }) => Err(KeyLookupError::LabelNotFound { provider, label }),
            Err(KeySelectError::Ambiguous { provider, labels }) => {
                Err(KeyLookupError::Ambiguous { provider, labels })
            }
        }
    }
}
