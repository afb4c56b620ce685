//! Revocation deny-lists: by `jti`, by `sub`, and by token fingerprint.
//!
//! A fingerprint entry is either the full base64url SHA-256 of the token (43
//! characters) or the 16-character prefix that hopguard's decision records print, so
//! an operator can revoke straight from a log line.

use crate::config::ConfigError;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Most entries accepted in one list (inline or remote).
pub const MAX_ENTRIES: usize = 100_000;
const FULL: usize = 43;
const SHORT: usize = crate::telemetry::FINGERPRINT_CHARS;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    pub jtis: HashSet<String>,
    pub subjects: HashSet<String>,
    /// Full (43-character) token hashes.
    pub hashes: HashSet<String>,
    /// 16-character fingerprint prefixes.
    pub prefixes: HashSet<String>,
}

impl RevocationList {
    /// Reads `{"jtis":[...],"subjects":[...],"fingerprints":[...]}` at `path`;
    /// `extra` names further members the caller handles itself.
    pub fn from_value_with(v: &Value, path: &str, extra: &[&str]) -> Result<RevocationList, ConfigError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ConfigError::new(path, "must be a JSON object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["jtis", "subjects", "fingerprints"].contains(&k.as_str()) && !extra.contains(&k.as_str()))
        {
            return Err(ConfigError::new(
                &format!("{path}.{}", crate::json::truncate(k, 64)),
                "unknown field; expected jtis, subjects, fingerprints",
            ));
        }
        let mut list = RevocationList {
            jtis: strings(obj, "jtis", path)?,
            subjects: strings(obj, "subjects", path)?,
            ..RevocationList::default()
        };
        for (i, f) in strings_vec(obj, "fingerprints", path)?.into_iter().enumerate() {
            let ok_chars = f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            match f.len() {
                FULL if ok_chars => {
                    list.hashes.insert(f);
                }
                SHORT if ok_chars => {
                    list.prefixes.insert(f);
                }
                _ => {
                    return Err(ConfigError::new(
                        &format!("{path}.fingerprints[{i}]"),
                        "must be a base64url SHA-256 of the token (43 characters) or a 16-character fingerprint",
                    ))
                }
            }
        }
        if list.len() > MAX_ENTRIES {
            return Err(ConfigError::new(
                path,
                format!("{} entries; at most {MAX_ENTRIES}", list.len()),
            ));
        }
        Ok(list)
    }

    pub fn from_value(v: &Value, path: &str) -> Result<RevocationList, ConfigError> {
        RevocationList::from_value_with(v, path, &[])
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len() + self.hashes.len() + self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this list revokes any token by its hash (so a caller needs to compute it).
    pub fn by_hash(&self) -> bool {
        !self.hashes.is_empty() || !self.prefixes.is_empty()
    }

    /// Whether a token with these identifiers is revoked. `token_hash` is the full
    /// base64url SHA-256 of the token.
    pub fn revokes(&self, jti: Option<&str>, sub: Option<&str>, token_hash: &str) -> bool {
        jti.is_some_and(|j| self.jtis.contains(j))
            || sub.is_some_and(|s| self.subjects.contains(s))
            || self.hashes.contains(token_hash)
            || token_hash.get(..SHORT).is_some_and(|p| self.prefixes.contains(p))
    }
}

fn strings_vec(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Vec<String>, ConfigError> {
    match obj.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            if a.len() > MAX_ENTRIES {
                return Err(ConfigError::new(
                    &format!("{path}.{name}"),
                    format!("at most {MAX_ENTRIES} entries"),
                ));
            }
            a.iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(ConfigError::new(
                        &format!("{path}.{name}[{i}]"),
                        "must be a non-empty string",
                    )),
                })
                .collect()
        }
        Some(_) => Err(ConfigError::new(
            &format!("{path}.{name}"),
            "must be an array of strings",
        )),
    }
}

fn strings(obj: &Map<String, Value>, name: &str, path: &str) -> Result<HashSet<String>, ConfigError> {
    Ok(strings_vec(obj, name, path)?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::telemetry::{fingerprint, token_hash};
    use serde_json::json;

    #[test]
    fn revokes_by_each_identifier() {
        let t = "a.b.c";
        let l = RevocationList::from_value(
            &json!({"jtis": ["j1"], "subjects": ["bob"], "fingerprints": [token_hash("x.y.z"), fingerprint(t)]}),
            "$",
        )
        .unwrap();
        assert!(l.revokes(Some("j1"), None, &token_hash("q")));
        assert!(l.revokes(None, Some("bob"), &token_hash("q")));
        assert!(l.revokes(None, None, &token_hash("x.y.z")));
        assert!(
            l.revokes(None, None, &token_hash(t)),
            "by the 16-character fingerprint of a log line"
        );
        assert!(!l.revokes(Some("j2"), Some("alice"), &token_hash("q")));
        assert!(l.by_hash());
        let by_id = RevocationList::from_value(&json!({"jtis": ["j1"]}), "$").unwrap();
        assert!(!by_id.by_hash(), "a list of jtis needs no token hash");
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn errors_have_paths() {
        let e = RevocationList::from_value(&json!({"fingerprints": ["short"]}), "$.revocation").unwrap_err();
        assert_eq!(e.path, "$.revocation.fingerprints[0]");
        let e = RevocationList::from_value(&json!({"jti": []}), "$.revocation").unwrap_err();
        assert_eq!(e.path, "$.revocation.jti");
        let e = RevocationList::from_value(&json!({"jtis": [""]}), "$").unwrap_err();
        assert_eq!(e.path, "$.jtis[0]");
    }
}
