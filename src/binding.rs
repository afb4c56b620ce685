//! Identity binding: whether *this* token may be presented by *this* caller.
//!
//! - **Certificate-bound tokens** (RFC 8705 section 3): `cnf["x5t#S256"]` is the
//!   base64url SHA-256 of the DER client certificate the token was issued to; it must
//!   equal the SHA-256 of the mTLS peer certificate (Envoy property
//!   `connection.sha256_peer_certificate_digest`, lowercase hex of the same digest).
//! - **Workload binding**: a token claim (`sub`, `azp`, `client_id`, ...) must name the
//!   calling workload, i.e. its SPIFFE ID (Envoy property
//!   `connection.uri_san_peer_certificate`), directly or through a configured table.
//! - **Delegation** (RFC 8693 section 4.1): the outermost `act` claim names the current
//!   actor; it must be the calling workload (or one of a list), so a token cannot be
//!   presented one hop further than it was delegated; the chain depth can be bounded.
//!
//! DPoP (RFC 9449) lives in [`crate::dpop`]. All checks are pure functions of the
//! claims and the connection facts.

use crate::b64;
use crate::matcher::SPIFFE_SCHEME;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// When a kind of sender constraint is enforced for every token (the `certificate`
/// and `dpop.mode` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// Enforced when the token carries the binding (`cnf`); the RFCs' MUST. Default.
    IfBound,
    /// Every token must carry the binding, and it is enforced.
    Required,
    /// Not checked globally (e.g. at an inner hop, behind one that checked it). Rules
    /// can still require it with `bind`.
    Ignore,
}

/// How the access token reached hopguard (from the extractor's location).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` (RFC 9449 section 7.1).
    Dpop,
    /// Any other location (another header, a parameter, a cookie).
    Other,
}

impl Presentation {
    /// From a header location: `name` (lowercase) and its configured value prefix.
    pub fn of_header(name: &str, prefix: &str) -> Presentation {
        if name != "authorization" {
            return Presentation::Other;
        }
        let scheme = prefix.trim_end();
        if scheme.eq_ignore_ascii_case("bearer") {
            Presentation::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Presentation::Dpop
        } else {
            Presentation::Other
        }
    }
}

/// The confirmation members hopguard understands (RFC 7800 `cnf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cnf<'a> {
    /// RFC 8705 `x5t#S256`.
    pub x5t_s256: Option<&'a str>,
    /// RFC 9449 `jkt`.
    pub jkt: Option<&'a str>,
}

/// Reads `cnf`. `Err` when `cnf` is not an object, or `x5t#S256` / `jkt` is not a
/// string: a binding that cannot be read must not be ignored.
pub fn cnf(claims: &Map<String, Value>) -> Result<Cnf<'_>, &'static str> {
    let Some(v) = claims.get("cnf") else {
        return Ok(Cnf::default());
    };
    let o = v.as_object().ok_or("cnf is not an object")?;
    let member = |name: &str| match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err("cnf member is not a string"),
    };
    Ok(Cnf {
        x5t_s256: member("x5t#S256")?,
        jkt: member("jkt")?,
    })
}

/// Decodes a 64-character hex SHA-256 digest (either case).
pub fn hex_digest(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut it = s.bytes();
    for byte in out.iter_mut() {
        let hi = hex_nibble(it.next()?)?;
        let lo = hex_nibble(it.next()?)?;
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 8705 3.1: `x5t` (the token's `cnf["x5t#S256"]`) against the peer certificate
/// digest as Envoy gives it (hex). `Err` carries a log detail.
pub fn check_certificate(x5t: &str, peer_sha256_hex: Option<&str>) -> Result<(), &'static str> {
    let want = b64::decode(x5t)
        .filter(|d| d.len() == 32)
        .ok_or("cnf x5t#S256 is not a base64url SHA-256")?;
    let Some(peer) = peer_sha256_hex.filter(|p| !p.is_empty()) else {
        return Err("no peer certificate");
    };
    let have = hex_digest(peer).ok_or("peer certificate digest unreadable")?;
    if constant_time_eq(&want, &have) {
        Ok(())
    } else {
        Err("peer certificate is not the one the token is bound to")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `id` (from a token or a table: a SPIFFE URI, or an Istio principal without
/// the `spiffe://` scheme) names the peer whose URI SAN is `peer_uri`.
pub fn names_peer(id: &str, peer_uri: &str) -> bool {
    !id.is_empty() && (id == peer_uri || peer_uri.strip_prefix(SPIFFE_SCHEME) == Some(id))
}

/// A workload binding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The check needs the peer's identity, and the connection has none (no mTLS).
    NoPeer,
    /// The token does not name the peer; with a log detail.
    Differs(&'static str),
}

/// `bind.workload`: the token claim `claim` names the peer, directly or through `map`
/// (claim value -> SPIFFE IDs allowed to present it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub claim: String,
    pub map: Option<BTreeMap<String, Vec<String>>>,
}

impl Workload {
    pub fn check(&self, claims: &Map<String, Value>, peer: Option<&str>) -> Result<(), Mismatch> {
        let peer = peer.filter(|p| !p.is_empty()).ok_or(Mismatch::NoPeer)?;
        let value = match claims.get(&self.claim) {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(Mismatch::Differs("workload claim is not a string")),
            None => return Err(Mismatch::Differs("workload claim missing")),
        };
        let ok = match &self.map {
            None => names_peer(value, peer),
            Some(map) => map
                .get(value)
                .is_some_and(|ids| ids.iter().any(|id| names_peer(id, peer))),
        };
        if ok {
            Ok(())
        } else {
            Err(Mismatch::Differs("token claim does not name the calling workload"))
        }
    }
}

/// Who the current actor must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The calling workload.
    Peer,
    /// One of these identities (SPIFFE URIs or Istio principals), whoever calls.
    OneOf(Vec<String>),
}

/// `bind.delegation` (RFC 8693 `act`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub actor: Actor,
    /// Longest accepted chain: the number of nested `act` objects.
    pub max_depth: Option<usize>,
    /// A token without `act` fails (default); `false` lets direct tokens pass and only
    /// checks delegated ones.
    pub required: bool,
}

/// Deepest `act` nesting ever walked.
const MAX_WALK: usize = 64;

impl Delegation {
    pub fn check(&self, claims: &Map<String, Value>, peer: Option<&str>) -> Result<(), Mismatch> {
        let Some(act) = claims.get("act") else {
            return if self.required {
                Err(Mismatch::Differs("token has no act claim"))
            } else {
                Ok(())
            };
        };
        let act = act.as_object().ok_or(Mismatch::Differs("act is not an object"))?;
        let sub = match act.get("sub") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(Mismatch::Differs("act has no sub")),
        };
        let depth = chain_depth(act).ok_or(Mismatch::Differs("act chain malformed"))?;
        if self.max_depth.is_some_and(|max| depth > max) {
            return Err(Mismatch::Differs("delegation chain too deep"));
        }
        let ok = match &self.actor {
            Actor::Peer => {
                let peer = peer.filter(|p| !p.is_empty()).ok_or(Mismatch::NoPeer)?;
                names_peer(sub, peer)
            }
            Actor::OneOf(ids) => ids
                .iter()
                .any(|id| id == sub || names_peer(id, sub) || names_peer(sub, id)),
        };
        if ok {
            Ok(())
        } else {
            Err(Mismatch::Differs("current actor is not the calling workload"))
        }
    }
}

/// The number of `act` objects from the outermost one down. `None` when a nested
/// `act` is not an object or the chain is absurdly deep.
pub fn chain_depth(outer: &Map<String, Value>) -> Option<usize> {
    let mut depth = 1;
    let mut cur = outer;
    while let Some(next) = cur.get("act") {
        cur = next.as_object()?;
        depth += 1;
        if depth > MAX_WALK {
            return None;
        }
    }
    Some(depth)
}

/// The identity-binding requirements of one ALLOW rule (`bind`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    pub workload: Option<Workload>,
    /// The token must be certificate-bound to the peer (RFC 8705).
    pub certificate: bool,
    /// The token must be DPoP-bound with a valid proof (RFC 9449).
    pub dpop: bool,
    pub delegation: Option<Delegation>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn hex() {
        let h = "00ff".repeat(16);
        let d = hex_digest(&h).unwrap();
        assert_eq!(d[0], 0);
        assert_eq!(d[1], 255);
        assert_eq!(hex_digest(&h.to_uppercase()), Some(d));
        assert_eq!(hex_digest(&h[2..]), None);
        assert_eq!(hex_digest(&"g".repeat(64)), None);
        assert_eq!(hex_digest("é"), None);
    }

    #[test]
    fn presentation() {
        assert_eq!(
            Presentation::of_header("authorization", "Bearer "),
            Presentation::Bearer
        );
        assert_eq!(Presentation::of_header("authorization", "dpop "), Presentation::Dpop);
        assert_eq!(Presentation::of_header("x-token", "Bearer "), Presentation::Other);
        assert_eq!(Presentation::of_header("authorization", ""), Presentation::Other);
    }

    #[test]
    fn peer_names() {
        let p = "spiffe://cluster.local/ns/a/sa/b";
        assert!(names_peer(p, p));
        assert!(names_peer("cluster.local/ns/a/sa/b", p));
        assert!(!names_peer("", p));
        assert!(!names_peer("cluster.local/ns/a/sa/bb", p));
        assert!(!names_peer("spiffe://cluster.local/ns/a/sa", p));
    }
}
