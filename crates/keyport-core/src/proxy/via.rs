//! The `Via` header that Keyport adds to every upstream request, and the
//! loop check it makes possible.
//!
//! A provider's `base_url` that points back at Keyport (a copied proxy URL,
//! say) would send each request to the proxy again, with the vault key as
//! its credential. With client tokens required, the second pass fails
//! with a confusing "invalid token". Without them it forwards to itself
//! until something gives out. Each proxy process names itself in `Via`
//! with a random pseudonym (RFC 9110 section 7.6.3), so a request that
//! carries its own name has gone round in a loop and gets 508.

use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderValue, VIA};
use http::Version;
use rand::RngCore;

/// Returns this process's name, shared by every proxy it runs and by key
/// tests, so a key test whose base URL points at a running proxy is caught
/// as a loop too.
pub(crate) fn process_name() -> &'static ViaName {
    static NAME: OnceLock<ViaName> = OnceLock::new();
    NAME.get_or_init(ViaName::random)
}

/// This process's entry in `Via` for each HTTP version of the client's
/// request.
#[derive(Debug)]
pub(crate) struct ViaName {
    pseudonym: String,
    http1_0: HeaderValue,
    http1_1: HeaderValue,
    http2: HeaderValue,
}

impl ViaName {
    /// Picks a random pseudonym, such as `keyport-3f9a2c1b5e7d0a64`.
    pub(crate) fn random() -> Self {
        let mut bytes = [0_u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let pseudonym = format!("keyport-{hex}");
        // Digits, dots, letters and a space always form a valid value, so
        // the fallback is never used.
        let value = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {pseudonym}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 keyport"))
        };
        Self {
            http1_0: value("1.0"),
            http1_1: value("1.1"),
            http2: value("2"),
            pseudonym,
        }
    }

    /// Returns whether `headers` show that the request already passed
    /// through this process.
    pub(crate) fn is_looped(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(VIA)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|entry| entry.split_whitespace().nth(1) == Some(self.pseudonym.as_str()))
    }

    /// Appends this process's entry for a request received over `version`.
    pub(crate) fn append(&self, headers: &mut HeaderMap, version: Version) {
        let value = match version {
            Version::HTTP_10 | Version::HTTP_09 => &self.http1_0,
            Version::HTTP_2 | Version::HTTP_3 => &self.http2,
            _ => &self.http1_1,
        };
        headers.append(VIA, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_entry_marks_a_loop() {
        let via = ViaName::random();
        let mut headers = HeaderMap::new();
        headers.append(VIA, HeaderValue::from_static("1.1 corporate-gateway"));
        assert!(!via.is_looped(&headers));

        via.append(&mut headers, Version::HTTP_11);
        assert!(via.is_looped(&headers));
        let entries: Vec<&str> = headers
            .get_all(VIA)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect();
        assert_eq!(entries[0], "1.1 corporate-gateway");
        assert!(entries[1].starts_with("1.1 keyport-"), "{entries:?}");

        // Another Keyport process has another name.
        let other = ViaName::random();
        assert!(!other.is_looped(&headers));
    }

    #[test]
    fn entries_in_one_value_are_read() {
        let via = ViaName::random();
        let mut own = HeaderMap::new();
        via.append(&mut own, Version::HTTP_2);
        let entry = own[VIA].to_str().unwrap();
        assert!(entry.starts_with("2 keyport-"), "{entry}");

        let mut headers = HeaderMap::new();
        let combined = format!("1.0 fred, {entry} (Keyport), 1.1 p.example.net");
        headers.insert(VIA, HeaderValue::from_str(&combined).unwrap());
        assert!(via.is_looped(&headers));
    }
}
