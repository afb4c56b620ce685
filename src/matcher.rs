//! Value matchers in the vocabulary of Istio's AuthorizationPolicy, with the semantics of
//! the Envoy RBAC matchers istiod generates for them (istio/istio
//! `pilot/pkg/security/authz/matcher/*.go` and `model/generator.go`).
//!
//! Istio string values are exact (`abc`), prefix (`abc*`), suffix (`*abc`) or presence
//! (`*`: any non-empty value). hopguard refuses at parse time any other use of `*` (a
//! `*` in the middle, or two of them): istiod silently turns `/a*b` into an exact match
//! on the literal text `/a*b` and `*a*` into a suffix match on `a*`, which is never what
//! the author meant. Namespaces are the exception: Istio compiles them to a regex where
//! every `*` is `.*`, so they are globs here too.
//!
//! Everything here is total: no input panics, and the glob matcher is linear in the
//! pattern times the input (no backtracking).

use std::net::IpAddr;

/// Istio's four string match forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: the value is present and not empty (istiod emits the regex `.+`).
    Presence,
}

/// Why a matcher value was refused.
pub type ValueError = &'static str;

const WILDCARD_RULE: &str = "'*' is only allowed as the whole value, or once as its first or last character";

impl StrMatch {
    /// Parses one Istio string value. Empty values and ambiguous wildcards are refused.
    pub fn parse(v: &str) -> Result<StrMatch, ValueError> {
        if v.is_empty() {
            return Err("empty value not allowed");
        }
        if v == "*" {
            return Ok(StrMatch::Presence);
        }
        if v.matches('*').count() > 1 {
            return Err(WILDCARD_RULE);
        }
        if let Some(rest) = v.strip_prefix('*') {
            return Ok(StrMatch::Suffix(rest.to_owned()));
        }
        if let Some(rest) = v.strip_suffix('*') {
            return Ok(StrMatch::Prefix(rest.to_owned()));
        }
        if v.contains('*') {
            return Err(WILDCARD_RULE);
        }
        Ok(StrMatch::Exact(v.to_owned()))
    }

    /// Case-sensitive match (Envoy `StringMatcher` with `ignore_case: false`).
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Exact(e) => s == e,
            StrMatch::Prefix(p) => s.starts_with(p.as_str()),
            StrMatch::Suffix(x) => s.ends_with(x.as_str()),
            StrMatch::Presence => !s.is_empty(),
        }
    }

    /// ASCII case-insensitive match (Istio `hosts`).
    pub fn matches_ignore_case(&self, s: &str) -> bool {
        let (s, m) = (s.as_bytes(), self);
        match m {
            StrMatch::Exact(e) => s.eq_ignore_ascii_case(e.as_bytes()),
            StrMatch::Prefix(p) => {
                s.len() >= p.len() && s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
            }
            StrMatch::Suffix(x) => {
                s.len() >= x.len()
                    && s.get(s.len() - x.len()..)
                        .is_some_and(|t| t.eq_ignore_ascii_case(x.as_bytes()))
            }
            StrMatch::Presence => !s.is_empty(),
        }
    }
}

/// `source.principal` / `principals`: Istio values are SPIFFE IDs without the
/// `spiffe://` scheme (`cluster.local/ns/default/sa/sleep`), matched against the peer
/// certificate's URI SAN with the scheme prepended (istiod's `StringMatcherWithPrefix`):
/// `*` matches any non-empty URI SAN, `abc*` a URI starting `spiffe://abc`, `*abc` a
/// URI starting `spiffe://` and ending `abc`, and `abc` exactly `spiffe://abc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalMatch(StrMatch);

pub const SPIFFE_SCHEME: &str = "spiffe://";

impl PrincipalMatch {
    pub fn parse(v: &str) -> Result<PrincipalMatch, ValueError> {
        StrMatch::parse(v).map(PrincipalMatch)
    }

    /// `uri` is the peer's full URI SAN (`spiffe://...`).
    pub fn matches(&self, uri: &str) -> bool {
        match &self.0 {
            StrMatch::Presence => !uri.is_empty(),
            StrMatch::Exact(e) => uri.strip_prefix(SPIFFE_SCHEME) == Some(e.as_str()),
            StrMatch::Prefix(p) => uri
                .strip_prefix(SPIFFE_SCHEME)
                .is_some_and(|r| r.starts_with(p.as_str())),
            StrMatch::Suffix(x) => uri.strip_prefix(SPIFFE_SCHEME).is_some_and(|r| r.ends_with(x.as_str())),
        }
    }
}

/// `requestPrincipals` / `request.auth.principal`: `<iss>/<sub>`, split at the last `/`
/// (issuers are URLs), each half matched on its own exactly as istiod's
/// `requestPrincipalGenerator` does:
///
/// | value | `iss` must | `sub` must |
/// |---|---|---|
/// | `*` | be non-empty | be non-empty |
/// | `*/x` | be non-empty | equal `x` |
/// | `*.example.com/x` | end with `.example.com` | equal `x` |
/// | `*x` (no `/`) | be non-empty | end with `x` |
/// | `iss/*` | equal `iss` | be non-empty |
/// | `iss/ab*` | equal `iss` | start with `ab` |
/// | `ab*` (no `/`) | start with `ab` | be non-empty |
/// | `iss/sub` | equal `iss` | equal `sub` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPrincipalMatch {
    iss: StrMatch,
    sub: StrMatch,
}

impl RequestPrincipalMatch {
    pub fn parse(v: &str) -> Result<RequestPrincipalMatch, ValueError> {
        // Validates the wildcard rule on the whole value first.
        StrMatch::parse(v)?;
        let split = v
            .rfind('/')
            .map(|i| (v.get(..i).unwrap_or(""), v.get(i + 1..).unwrap_or("")));
        let exact = |s: &str| StrMatch::Exact(s.to_owned());
        let m = if v == "*" {
            RequestPrincipalMatch {
                iss: StrMatch::Presence,
                sub: StrMatch::Presence,
            }
        } else if let Some(rest) = v.strip_prefix('*') {
            match split {
                Some((iss, sub)) => RequestPrincipalMatch {
                    iss: if iss == "*" {
                        StrMatch::Presence
                    } else {
                        StrMatch::Suffix(iss.get(1..).unwrap_or("").to_owned())
                    },
                    sub: exact(sub),
                },
                None => RequestPrincipalMatch {
                    iss: StrMatch::Presence,
                    sub: StrMatch::Suffix(rest.to_owned()),
                },
            }
        } else if let Some(rest) = v.strip_suffix('*') {
            match split {
                Some((iss, sub)) => RequestPrincipalMatch {
                    iss: exact(iss),
                    sub: if sub == "*" {
                        StrMatch::Presence
                    } else {
                        StrMatch::Prefix(sub.get(..sub.len().saturating_sub(1)).unwrap_or("").to_owned())
                    },
                },
                None => RequestPrincipalMatch {
                    iss: StrMatch::Prefix(rest.to_owned()),
                    sub: StrMatch::Presence,
                },
            }
        } else {
            let (iss, sub) = split.unwrap_or((v, ""));
            RequestPrincipalMatch {
                iss: exact(iss),
                sub: exact(sub),
            }
        };
        Ok(m)
    }

    pub fn matches(&self, iss: &str, sub: &str) -> bool {
        self.iss.matches(iss) && self.sub.matches(sub)
    }
}

/// `hosts`: ASCII case-insensitive, as in Istio. One deliberate difference: a value
/// without `:` is compared with the `:authority` *without its port*, so `example.com`
/// also covers `example.com:8080` (Istio compares the whole authority, and its security
/// best-practices page tells authors to add `example.com:*` by hand; a DENY rule
/// without it is bypassed by adding a port). A value with `:` (`example.com:8080`,
/// `example.com:*`) is compared with the whole authority, as in Istio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch {
    m: StrMatch,
    with_port: bool,
}

impl HostMatch {
    pub fn parse(v: &str) -> Result<HostMatch, ValueError> {
        Ok(HostMatch {
            m: StrMatch::parse(v)?,
            with_port: has_port(v),
        })
    }

    pub fn matches(&self, authority: &str) -> bool {
        if self.m == StrMatch::Presence {
            // Istio: `present_match` on `:authority`.
            return true;
        }
        let subject = if self.with_port {
            authority
        } else {
            strip_port(authority)
        };
        self.m.matches_ignore_case(subject)
    }
}

/// Whether a `hosts` value names a port (`a:80`, `a:*`, `[::1]:80`; not `[::1]`).
fn has_port(v: &str) -> bool {
    if v.starts_with('[') {
        return v
            .find(']')
            .and_then(|i| v.get(i + 1..))
            .is_some_and(|rest| rest.starts_with(':'));
    }
    v.contains(':')
}

/// The host part of an authority: `[::1]:80` -> `[::1]`, `a.b:80` -> `a.b`.
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(i) => authority.get(..=i).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// One character class of a [`Pattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Any byte (`.`).
    Any,
    /// Any byte but `/` (`[^/]`).
    NotSlash,
}

impl Class {
    fn contains(self, b: u8) -> bool {
        match self {
            Class::Any => true,
            Class::NotSlash => b != b'/',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    One(Class),
    Star(Class),
}

/// A whole-string pattern of literal bytes, single-character classes and starred
/// classes: the subset of RE2 that istiod generates for namespaces, trust domains and
/// service accounts. Matched by a two-row dynamic program, `O(pattern x input)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern(Vec<Tok>);

/// Longest input a [`Pattern`] is matched against (SPIFFE IDs are at most 2048 bytes).
pub const MAX_PATTERN_INPUT: usize = 2048;

impl Pattern {
    pub fn new() -> Pattern {
        Pattern(Vec::new())
    }
    pub fn lit(mut self, s: &str) -> Pattern {
        self.0.extend(s.bytes().map(Tok::Byte));
        self
    }
    /// `c*`
    pub fn star(mut self, c: Class) -> Pattern {
        self.0.push(Tok::Star(c));
        self
    }
    /// `c+`
    pub fn plus(mut self, c: Class) -> Pattern {
        self.0.push(Tok::One(c));
        self.0.push(Tok::Star(c));
        self
    }
    /// A glob: every `*` in `s` is `.*`, everything else literal.
    pub fn glob(mut self, s: &str) -> Pattern {
        for b in s.bytes() {
            self.0
                .push(if b == b'*' { Tok::Star(Class::Any) } else { Tok::Byte(b) });
        }
        self
    }

    /// Whole-string match. Inputs longer than [`MAX_PATTERN_INPUT`] never match.
    pub fn matches(&self, s: &str) -> bool {
        if s.len() > MAX_PATTERN_INPUT {
            return false;
        }
        // cur[j]: the first j tokens match the input consumed so far.
        let mut cur: Vec<bool> = Vec::with_capacity(self.0.len() + 1);
        cur.push(true);
        let mut last = true;
        for t in &self.0 {
            last = last && matches!(t, Tok::Star(_));
            cur.push(last);
        }
        let mut next: Vec<bool> = Vec::with_capacity(cur.len());
        for c in s.bytes() {
            next.clear();
            next.push(false);
            let mut left = false;
            for (t, w) in self.0.iter().zip(cur.windows(2)) {
                let (here, after) = match w {
                    [a, b] => (*a, *b),
                    _ => (false, false),
                };
                let v = match t {
                    Tok::Byte(b) => here && *b == c,
                    Tok::One(cl) => here && cl.contains(c),
                    Tok::Star(cl) => (after && cl.contains(c)) || left,
                };
                next.push(v);
                left = v;
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur.last().copied().unwrap_or(false)
    }
}

/// `namespaces` / `source.namespace`: istiod's regex `.*/ns/<ns>/.*` over the peer's URI
/// SAN, where every `*` in the value is `.*`.
pub fn namespace_pattern(v: &str) -> Result<Pattern, ValueError> {
    if v.is_empty() {
        return Err("empty value not allowed");
    }
    Ok(Pattern::new()
        .star(Class::Any)
        .lit("/ns/")
        .glob(v)
        .lit("/")
        .star(Class::Any))
}

/// `trustDomains` / `source.trustDomain`: `*` any SPIFFE ID, `td` one starting
/// `spiffe://td/`, `*td` / `td*` with the wildcard limited to the trust domain.
pub fn trust_domain_pattern(v: &str) -> Result<Pattern, ValueError> {
    StrMatch::parse(v)?;
    if v.contains('/') {
        return Err("a trust domain must not contain '/'");
    }
    let p = Pattern::new().lit(SPIFFE_SCHEME);
    Ok(if v == "*" {
        p.star(Class::Any)
    } else if let Some((a, b)) = v.split_once('*') {
        p.lit(a).star(Class::NotSlash).lit(b).lit("/").star(Class::Any)
    } else {
        p.lit(v).lit("/").star(Class::Any)
    })
}

/// `serviceAccounts` / `source.serviceAccount`: `<namespace>/<serviceaccount>`, no
/// wildcards; istiod's regex `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`. Returns the
/// four alternatives of the two optional groups.
pub fn service_account_patterns(v: &str) -> Result<Vec<Pattern>, ValueError> {
    if v.contains('*') {
        return Err("wildcards are not allowed in service accounts");
    }
    let Some((ns, sa)) = v.split_once('/') else {
        return Err("expected '<namespace>/<serviceaccount>' (hopguard has no policy namespace to default to)");
    };
    if ns.is_empty() || sa.is_empty() || sa.contains('/') {
        return Err("expected '<namespace>/<serviceaccount>'");
    }
    let head = || {
        Pattern::new()
            .lit(SPIFFE_SCHEME)
            .plus(Class::Any)
            .lit("/ns/")
            .lit(ns)
            .lit("/")
    };
    let mut out = Vec::with_capacity(4);
    for mid in [false, true] {
        for tail in [false, true] {
            let mut p = head();
            if mid {
                p = p.plus(Class::Any).lit("/");
            }
            p = p.lit("sa/").lit(sa);
            if tail {
                p = p.lit("/").plus(Class::Any);
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// An IP address or CIDR block (`ipBlocks`, `source.ip`, `destination.ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    net: IpAddr,
    bits: u8,
}

impl IpBlock {
    pub fn parse(v: &str) -> Result<IpBlock, ValueError> {
        let (addr, bits) = match v.split_once('/') {
            None => (v, None),
            Some((a, b)) => (a, Some(b)),
        };
        let net: IpAddr = addr.parse().map_err(|_| "not an IP address or CIDR block")?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max && !b.starts_with('+') => n,
                _ => return Err("bad CIDR prefix length"),
            },
        };
        Ok(IpBlock { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The IP of an Envoy address property (`source.address`, `destination.address`):
/// `10.0.0.1:8080`, `[::1]:8080`, or a bare IP.
pub fn address_ip(address: &str) -> Option<IpAddr> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Some(ip);
    }
    let host = strip_port(address);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn string_forms() {
        assert_eq!(StrMatch::parse("abc").unwrap(), StrMatch::Exact("abc".into()));
        assert_eq!(StrMatch::parse("abc*").unwrap(), StrMatch::Prefix("abc".into()));
        assert_eq!(StrMatch::parse("*abc").unwrap(), StrMatch::Suffix("abc".into()));
        assert_eq!(StrMatch::parse("*").unwrap(), StrMatch::Presence);
        for bad in ["", "a*b", "*a*", "**", "a**", "/a/*/b"] {
            assert!(StrMatch::parse(bad).is_err(), "{bad}");
        }
        // The comment of Istio's Rule message: `abc*` matches `abc` and `abcd`; `*abc`
        // matches `abc` and `xabc`; `*` matches any non-empty value.
        assert!(StrMatch::parse("abc*").unwrap().matches("abc"));
        assert!(StrMatch::parse("abc*").unwrap().matches("abcd"));
        assert!(StrMatch::parse("*abc").unwrap().matches("abc"));
        assert!(StrMatch::parse("*abc").unwrap().matches("xabc"));
        assert!(StrMatch::Presence.matches("x") && !StrMatch::Presence.matches(""));
        assert!(!StrMatch::parse("abc").unwrap().matches("ABC"));
        assert!(StrMatch::parse("abc").unwrap().matches_ignore_case("ABC"));
    }

    #[test]
    fn globs() {
        let p = namespace_pattern("te*t").unwrap();
        assert!(p.matches("spiffe://td/ns/test/sa/a"));
        assert!(p.matches("spiffe://td/ns/tet/sa/a"));
        assert!(!p.matches("spiffe://td/ns/tes/sa/a"));
        assert!(!Pattern::new().plus(Class::Any).matches(""));
        assert!(Pattern::new().star(Class::Any).matches(""));
        assert!(!Pattern::new().lit("a").star(Class::NotSlash).matches("ab/c"));
        let long = "a".repeat(MAX_PATTERN_INPUT + 1);
        assert!(!Pattern::new().star(Class::Any).matches(&long));
    }

    #[test]
    fn ip_blocks() {
        let b = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.2.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:10.1.9.9".parse().unwrap()));
        assert!(IpBlock::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpBlock::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(!IpBlock::parse("2001:db8::/32")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/+8", "::/129"] {
            assert!(IpBlock::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(address_ip("10.0.0.1:80"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(address_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(address_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(address_ip("nope"), None);
    }

    #[test]
    fn ports_stripped() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a.b:x"), "a.b:x");
    }
}
