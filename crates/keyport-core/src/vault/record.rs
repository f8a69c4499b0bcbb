//! Vault entries in memory and their serialized form in the Stronghold Store.
//!
//! Each entry is one Store value under `key/<provider>/<label>`: a JSON
//! object with the provider, the label, the key and its timestamps. The key
//! is hex-encoded inside the JSON so that it never needs escaping. Decoding
//! can then borrow it from the zeroized input buffer, where an escaped string
//! would be copied into a scratch buffer that serde_json frees without
//! zeroizing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::validate::{check_key, validate_label, validate_provider};
use crate::secret::{ExposeSecret, SecretString};

/// Prefix of every Store key that contains a vault entry.
pub const STORE_KEY_PREFIX: &str = "key/";

/// Version of the record layout, stored in each record as `v`.
const RECORD_VERSION: u32 = 1;

/// Upper bound on the JSON bytes of a record besides the hex key: field
/// names, two RFC 3339 timestamps and a provider and label of at most 64
/// bytes each. Reserving this up front means the output buffer never grows,
/// so no reallocation leaves an unzeroized copy of the key behind.
const RECORD_OVERHEAD_BYTES: usize = 512;

/// Provider id and label of an entry; the map key of [`Entries`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId {
    pub provider: String,
    pub label: String,
}

/// One stored key with its timestamps.
#[derive(Clone)]
pub struct Entry {
    pub key: SecretString,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// All entries of a vault, sorted by provider and label.
pub type Entries = BTreeMap<EntryId, Entry>;

impl EntryId {
    /// Returns the Store key under which this entry is saved.
    pub fn store_key(&self) -> Vec<u8> {
        format!("{STORE_KEY_PREFIX}{}/{}", self.provider, self.label).into_bytes()
    }
}

#[derive(Serialize)]
struct RecordOut<'a> {
    v: u32,
    provider: &'a str,
    label: &'a str,
    key_hex: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn<'a> {
    v: u32,
    provider: String,
    label: String,
    #[serde(borrow)]
    key_hex: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Serializes an entry into a buffer that is zeroized on drop.
pub fn encode(id: &EntryId, entry: &Entry) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let key = entry.key.expose_secret().as_bytes();
    let mut key_hex = Zeroizing::new(vec![0u8; key.len() * 2]);
    hex::encode_to_slice(key, &mut key_hex[..]).map_err(|_| "the key cannot be hex-encoded")?;
    let key_hex = std::str::from_utf8(&key_hex).map_err(|_| "hex output is not UTF-8")?;

    let record = RecordOut {
        v: RECORD_VERSION,
        provider: &id.provider,
        label: &id.label,
        key_hex,
        created_at: entry.created_at,
        updated_at: entry.updated_at,
    };
    let mut json = Zeroizing::new(Vec::with_capacity(key_hex.len() + RECORD_OVERHEAD_BYTES));
    serde_json::to_writer(&mut *json, &record).map_err(|_| "the record cannot be serialized")?;
    Ok(json)
}

/// Parses a record written by [`encode`] and validates every field.
///
/// The error is a fixed description, never serde's message, because that
/// message may quote the record's contents.
pub fn decode(bytes: &[u8]) -> Result<(EntryId, Entry), &'static str> {
    let record: RecordIn<'_> =
        serde_json::from_slice(bytes).map_err(|_| "contains a record that is not valid JSON")?;
    if record.v != RECORD_VERSION {
        return Err("contains a record with an unknown layout version");
    }
    validate_provider(&record.provider)
        .map_err(|_| "contains a record with an invalid provider id")?;
    validate_label(&record.label).map_err(|_| "contains a record with an invalid label")?;

    let mut key = Zeroizing::new(vec![0u8; record.key_hex.len() / 2]);
    hex::decode_to_slice(record.key_hex, &mut key[..])
        .map_err(|_| "contains a record whose key is not valid hex")?;
    let key = std::str::from_utf8(&key).map_err(|_| "contains a record whose key is not UTF-8")?;
    check_key(key).map_err(|_| "contains a record whose key is invalid")?;

    let id = EntryId {
        provider: record.provider,
        label: record.label,
    };
    // `SecretString::from(&str)` allocates exactly `key.len()` bytes, so the
    // conversion to a boxed str inside `secrecy` does not reallocate.
    let entry = Entry {
        key: SecretString::from(key),
        created_at: record.created_at,
        updated_at: record.updated_at,
    };
    Ok((id, entry))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::super::validate::MAX_KEY_BYTES;
    use super::*;

    fn sample(key: &str) -> (EntryId, Entry) {
        let id = EntryId {
            provider: "openai".into(),
            label: "default".into(),
        };
        let now = Utc::now();
        let entry = Entry {
            key: SecretString::from(key),
            created_at: now,
            updated_at: now,
        };
        (id, entry)
    }

    #[test]
    fn record_round_trips_and_hides_key_in_hex() {
        let key = "sk-\"quoted\\backslash\"-é-canary";
        let (id, entry) = sample(key);
        let bytes = encode(&id, &entry).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"canary"));

        let (decoded_id, decoded) = decode(&bytes).unwrap();
        assert_eq!(decoded_id, id);
        assert_eq!(decoded.key.expose_secret(), key);
        assert_eq!(decoded.created_at, entry.created_at);
        assert_eq!(decoded.updated_at, entry.updated_at);
    }

    #[test]
    fn encode_never_grows_the_buffer() {
        let (_, entry) = sample(&"k".repeat(MAX_KEY_BYTES));
        let id = EntryId {
            provider: "p".repeat(64),
            label: "l".repeat(64),
        };
        let bytes = encode(&id, &entry).unwrap();
        assert_eq!(bytes.capacity(), 2 * MAX_KEY_BYTES + RECORD_OVERHEAD_BYTES);
    }

    #[test]
    fn decode_rejects_bad_records() {
        let (id, entry) = sample("sk-valid-key-1234567890");
        let good: serde_json::Value =
            serde_json::from_slice(&encode(&id, &entry).unwrap()).unwrap();
        let mutations: [(&str, serde_json::Value); 5] = [
            ("v", 2.into()),
            ("provider", "Bad Provider".into()),
            ("label", "".into()),
            ("key_hex", "zz".into()),
            ("key_hex", hex::encode("sk with space").into()),
        ];
        for (field, value) in mutations {
            let mut record = good.clone();
            record[field] = value;
            let bytes = serde_json::to_vec(&record).unwrap();
            assert!(
                decode(&bytes).is_err(),
                "{field} mutation should be rejected"
            );
        }
        assert!(decode(b"{not json").is_err());
    }
}
