//! What hopguard reports about a request: a token fingerprint (never the token) and a
//! one-line decision record.

use crate::b64;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Characters of the base64url SHA-256 kept in records (96 bits).
pub const FINGERPRINT_CHARS: usize = 16;

/// The full base64url SHA-256 of the token (the revocation key).
pub fn token_hash(token: &str) -> String {
    b64::encode(&Sha256::digest(token.as_bytes()))
}

/// The truncated fingerprint used in logs and records.
pub fn fingerprint(token: &str) -> String {
    token_hash(token).chars().take(FINGERPRINT_CHARS).collect()
}

/// The per-request decision record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub request_id: Option<String>,
    /// `allow`, `deny`, or `allow_failed` (allowed despite a failure).
    pub decision: &'static str,
    pub reason: Option<&'static str>,
    pub provider: Option<String>,
    pub location: Option<String>,
    pub fingerprint: Option<String>,
    pub kid: Option<String>,
    pub subject: Option<String>,
    pub jti: Option<String>,
}

impl Record {
    pub fn to_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "decision": self.decision,
            "reason": self.reason,
            "provider": self.provider,
            "location": self.location,
            "token_fingerprint": self.fingerprint,
            "kid": self.kid,
            "sub": self.subject,
            "jti": self.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn fingerprint_is_a_truncated_hash() {
        // SHA-256("abc") = ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0
        assert_eq!(token_hash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(fingerprint("abc"), "ungWv48Bz-pBQUDe");
    }
}
