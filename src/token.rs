//! Compact JWS parsing (RFC 7515 section 7.1, RFC 7519 section 7.2), strict.
//!
//! Parsing never trusts the token: it only produces the pieces the verifier needs.
//! Header rules enforced here: `alg` present and never `none`; `crit` refused (hopguard
//! understands no extensions, RFC 7515 4.1.11); `typ` of a DPoP proof refused as an
//! access token (RFC 8725 3.11, RFC 9449 4.2); member types checked; duplicate
//! member names refused (see [`crate::json`]).

use crate::algorithm::{Alg, AlgName};
use crate::b64;
use crate::json;
use crate::reason::Reason;
use serde_json::{Map, Value};

/// A parsed, not yet verified, compact JWS.
#[derive(Debug)]
pub struct Jws<'a> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a str,
    /// The payload segment as sent (base64url), for `outputPayloadToHeader`.
    pub payload_b64: &'a str,
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
}

/// Parses a compact JWS. Errors are reasons, never panics.
pub fn parse(token: &str) -> Result<Jws<'_>, Reason> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        // Includes JWE (five segments) and anything that is not a JWS.
        return Err(Reason::TokenMalformed);
    };
    let header_bytes = b64::decode(h).ok_or(Reason::TokenMalformed)?;
    let header = match json::parse_strict(&header_bytes) {
        Ok(Value::Object(m)) => m,
        _ => return Err(Reason::TokenMalformed),
    };
    let alg = match header.get("alg") {
        Some(Value::String(a)) => match Alg::parse(a) {
            AlgName::Known(alg) => alg,
            AlgName::None => return Err(Reason::AlgorithmNone),
            AlgName::Unsupported => return Err(Reason::AlgorithmUnsupported),
        },
        _ => return Err(Reason::TokenMalformed),
    };
    if header.contains_key("crit") {
        return Err(Reason::CritUnsupported);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Reason::TokenMalformed),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) => {
            let t = t.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if t == "dpop+jwt" {
                return Err(Reason::TypeNotAccepted);
            }
        }
        Some(_) => return Err(Reason::TokenMalformed),
    }
    let payload_bytes = b64::decode(p).ok_or(Reason::TokenMalformed)?;
    let claims = match json::parse_strict(&payload_bytes) {
        Ok(Value::Object(m)) => m,
        _ => return Err(Reason::TokenMalformed),
    };
    let signature = b64::decode(s).ok_or(Reason::TokenMalformed)?;
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(Reason::TokenMalformed)?;
    Ok(Jws {
        signing_input,
        payload_b64: p,
        alg,
        kid,
        claims,
        signature,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn tok(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64::encode(header.as_bytes()),
            b64::encode(payload.as_bytes()),
            b64::encode(b"sig")
        )
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = tok(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#, r#"{"iss":"a","n":1}"#);
        let j = parse(&t).unwrap();
        assert_eq!(j.alg, Alg::ES256);
        assert_eq!(j.kid.as_deref(), Some("k1"));
        assert_eq!(j.claims["iss"], "a");
        assert_eq!(j.signature, b"sig");
        assert_eq!(j.signing_input.matches('.').count(), 1);
        assert!(t.starts_with(j.signing_input));
    }

    #[test]
    fn header_rules() {
        let p = r#"{"iss":"a"}"#;
        assert_eq!(parse(&tok(r#"{"alg":"none"}"#, p)).unwrap_err(), Reason::AlgorithmNone);
        assert_eq!(
            parse(&tok(r#"{"alg":"HS1"}"#, p)).unwrap_err(),
            Reason::AlgorithmUnsupported
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"rs256"}"#, p)).unwrap_err(),
            Reason::AlgorithmUnsupported
        );
        assert_eq!(parse(&tok(r#"{"kid":"x"}"#, p)).unwrap_err(), Reason::TokenMalformed);
        assert_eq!(parse(&tok(r#"{"alg":256}"#, p)).unwrap_err(), Reason::TokenMalformed);
        assert_eq!(
            parse(&tok(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, p)).unwrap_err(),
            Reason::CritUnsupported
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"RS256","crit":[]}"#, p)).unwrap_err(),
            Reason::CritUnsupported
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"RS256","kid":7}"#, p)).unwrap_err(),
            Reason::TokenMalformed
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"ES256","typ":"dpop+jwt"}"#, p)).unwrap_err(),
            Reason::TypeNotAccepted
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"ES256","typ":"application/DPoP+JWT"}"#, p)).unwrap_err(),
            Reason::TypeNotAccepted
        );
        assert!(parse(&tok(r#"{"alg":"ES256","typ":"at+jwt"}"#, p)).is_ok());
        assert_eq!(
            parse(&tok(r#"{"alg":"RS256","alg":"none"}"#, p)).unwrap_err(),
            Reason::TokenMalformed,
            "duplicate header names"
        );
    }

    #[test]
    fn structure_rules() {
        let good = tok(r#"{"alg":"RS256"}"#, r#"{"iss":"a"}"#);
        assert!(parse(&good).is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d.e",
            &format!("{good}.x"),
            &format!("{good}="),
            &format!(" {good}"),
            &tok(r#"{"alg":"RS256"}"#, "[1,2]"),
            &tok(r#"{"alg":"RS256"}"#, r#"{"iss":"a","iss":"b"}"#),
            &tok(r#"["alg"]"#, "{}"),
            &tok(r#"{"alg":"RS256"}"#, "not json"),
        ] {
            assert_eq!(parse(bad).unwrap_err(), Reason::TokenMalformed, "{bad:?}");
        }
        let padded = format!(
            "{}=.{}.{}",
            b64::encode(br#"{"alg":"RS256"}"#),
            b64::encode(b"{}"),
            "c2ln"
        );
        assert_eq!(parse(&padded).unwrap_err(), Reason::TokenMalformed);
    }
}
