//! Documents fetched from an identity provider or a revocation service: where to send
//! the request (an Envoy cluster, an authority, a path), and how to read the answers.
//! Every handler takes the raw status, headers and body and never panics, whatever
//! the server sends.

use crate::json;
use crate::jwks::JwkSet;
use crate::revocation::RevocationList;
use serde_json::Value;

/// Largest response body read from a remote source.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// An HTTP GET through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster: String,
    pub authority: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// `uri` must be an absolute `http` or `https` URI.
    pub fn new(cluster: &str, uri: &str) -> Result<Target, String> {
        let rest = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))
            .ok_or("must be an absolute http(s) URI")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || authority.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err("must name a host (no userinfo, no spaces)".into());
        }
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Target {
            cluster: cluster.to_owned(),
            authority: authority.to_owned(),
            path,
        })
    }

    /// The request headers for `dispatch_http_call`.
    pub fn headers(&self, etag: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), self.path.clone()),
            (":authority".to_owned(), self.authority.clone()),
            ("accept".to_owned(), "application/json".to_owned()),
            ("user-agent".to_owned(), "hopguard".to_owned()),
        ];
        if let Some(e) = etag {
            h.push(("if-none-match".to_owned(), e.to_owned()));
        }
        h
    }
}

/// What a fetch produced.
#[derive(Debug)]
pub enum Fetched<T> {
    /// A usable document, with the server's `max-age` (seconds) if it gave one.
    Fresh {
        doc: T,
        max_age: Option<u64>,
        etag: Option<String>,
    },
    /// `304 Not Modified`.
    NotModified,
}

/// Reads a JWKS response. Garbage, errors and sets without a usable key are errors,
/// so the caller keeps its last good keys.
pub fn jwks_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Result<Fetched<JwkSet>, String> {
    let v = ok_json(status, body)?;
    let set = JwkSet::parse(&v, "$").map_err(|e| format!("JWKS: {e}"))?;
    if set.keys.is_empty() {
        let why = set
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no usable key".to_owned());
        return Err(format!("JWKS has no usable verification key ({why})"));
    }
    Ok(Fetched::Fresh {
        doc: set,
        max_age: max_age(headers),
        etag: None,
    })
}

/// Reads an OpenID Provider configuration (OIDC Discovery 1.0 section 4) and returns its
/// `jwks_uri`. The document's `issuer` must equal the configured one exactly (section
/// 4.3), or the document is refused.
pub fn discovery_response(status: u16, body: &[u8], issuer: &str) -> Result<String, String> {
    let v = ok_json(status, body)?;
    match v.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(_) => return Err("discovery document issuer differs from the configured issuer".into()),
        None => return Err("discovery document has no issuer".into()),
    }
    let uri = v
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery document has no jwks_uri")?;
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Err("discovery document jwks_uri is not an http(s) URI".into());
    }
    Ok(uri.to_owned())
}

/// Reads a revocation list response: `{"jtis":[...],"subjects":[...],"fingerprints":[...]}`.
pub fn revocation_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Fetched<RevocationList>, String> {
    if status == 304 {
        return Ok(Fetched::NotModified);
    }
    let v = ok_json(status, body)?;
    let list = RevocationList::from_value(&v, "$").map_err(|e| format!("revocation list: {e}"))?;
    Ok(Fetched::Fresh {
        doc: list,
        max_age: max_age(headers),
        etag: header(headers, "etag").map(str::to_owned),
    })
}

fn ok_json(status: u16, body: &[u8]) -> Result<Value, String> {
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("body of {} bytes exceeds {MAX_BODY_BYTES}", body.len()));
    }
    json::parse_strict(body).map_err(|e| format!("not valid JSON: {}", json::truncate(&e, 120)))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `Cache-Control: max-age=N` (RFC 9111 5.2.2.1), if present and sane.
pub fn max_age(headers: &[(String, String)]) -> Option<u64> {
    let cc = header(headers, "cache-control")?;
    cc.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn targets() {
        let t = Target::new("idp", "https://idp.example.com:8443/keys?v=1#x").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("idp.example.com:8443", "/keys?v=1")
        );
        assert_eq!(Target::new("c", "http://h").unwrap().path, "/");
        assert!(Target::new("c", "ftp://h/x").is_err());
        assert!(Target::new("c", "https:///x").is_err());
        assert!(Target::new("c", "https://u@h/x").is_err());
        assert!(t
            .headers(Some("\"v1\""))
            .contains(&("if-none-match".into(), "\"v1\"".into())));
    }

    #[test]
    fn max_age_parsing() {
        assert_eq!(max_age(&h(&[("Cache-Control", "public, max-age=300")])), Some(300));
        assert_eq!(max_age(&h(&[("cache-control", "no-cache")])), None);
        assert_eq!(max_age(&h(&[("cache-control", "max-age=-1")])), None);
        assert_eq!(max_age(&h(&[])), None);
    }

    #[test]
    fn jwks_handler_refuses_garbage_and_empty_sets() {
        assert!(jwks_response(500, &[], b"{}").is_err());
        assert!(jwks_response(200, &[], b"<html>").is_err());
        assert!(jwks_response(200, &[], br#"{"keys":[]}"#)
            .unwrap_err()
            .contains("no usable"));
        assert!(jwks_response(200, &[], br#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#).is_err());
        assert!(jwks_response(200, &[], &vec![b' '; MAX_BODY_BYTES + 1]).is_err());
    }

    #[test]
    fn discovery_requires_the_same_issuer() {
        let doc = br#"{"issuer":"https://idp","jwks_uri":"https://idp/keys"}"#;
        assert_eq!(discovery_response(200, doc, "https://idp").unwrap(), "https://idp/keys");
        assert!(discovery_response(200, doc, "https://idp/").is_err());
        assert!(discovery_response(200, br#"{"issuer":"https://idp"}"#, "https://idp").is_err());
        assert!(discovery_response(404, doc, "https://idp").is_err());
    }

    #[test]
    fn revocation_handler() {
        assert!(matches!(
            revocation_response(304, &[], b"").unwrap(),
            Fetched::NotModified
        ));
        let r = revocation_response(200, &h(&[("ETag", "\"7\"")]), br#"{"jtis":["a"]}"#).unwrap();
        let Fetched::Fresh { doc, etag, .. } = r else { panic!() };
        assert_eq!(etag.as_deref(), Some("\"7\""));
        assert!(doc.jtis.contains("a"));
        assert!(revocation_response(200, &[], br#"{"jtis":"a"}"#).is_err());
    }
}
