//! base64url without padding (RFC 7515 section 2), strict: no padding, no whitespace,
//! no non-canonical trailing bits.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decodes strict base64url; `None` on any deviation.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
}

/// Encodes base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn strict() {
        assert_eq!(decode("aGk").unwrap(), b"hi");
        assert!(decode("aGk=").is_none(), "padding");
        assert!(decode("aG k").is_none(), "whitespace");
        assert!(decode("aGl").is_none(), "non-canonical trailing bits");
        assert!(decode("a+/=").is_none(), "standard alphabet");
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }
}
