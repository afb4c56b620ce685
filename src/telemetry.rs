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
    fingerprint_of_digest(&Sha256::digest(token.as_bytes()).into())
}

/// [`fingerprint`] from the token's SHA-256, when the caller has it already.
pub fn fingerprint_of_digest(digest: &[u8; 32]) -> String {
    // 12 bytes are exactly the first 16 base64 characters of the whole digest.
    b64::encode(digest.get(..FINGERPRINT_CHARS / 4 * 3).unwrap_or(digest))
}

/// The per-request decision record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub request_id: Option<String>,
    /// The request path without its query.
    pub route: Option<String>,
    /// `allow`, `deny`, `allow_failed` (allowed despite a failure), `dry_run_deny`
    /// (would have been refused), or `wait`.
    pub decision: &'static str,
    pub reason: Option<&'static str>,
    pub provider: Option<String>,
    pub location: Option<String>,
    pub fingerprint: Option<String>,
    pub kid: Option<String>,
    pub subject: Option<String>,
    pub jti: Option<String>,
    /// The policy rule that decided, when one did.
    pub rule: Option<String>,
    /// Verification time in microseconds (set by the shell, which has the clock).
    pub verify_us: Option<u64>,
    /// Leak kinds found in the request.
    pub leaks: Vec<&'static str>,
    /// AUDIT policy rules that matched.
    pub audit: Vec<String>,
    /// Whether the verified-token cache answered (None: no token was verified).
    pub cache_hit: Option<bool>,
}

impl Record {
    pub fn to_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "route": self.route,
            "decision": self.decision,
            "reason": self.reason,
            "provider": self.provider,
            "location": self.location,
            "token_fingerprint": self.fingerprint,
            "kid": self.kid,
            "sub": self.subject,
            "jti": self.jti,
            "rule": self.rule,
            "verify_us": self.verify_us,
            "leaks": self.leaks,
            "audit": self.audit,
            "cache_hit": self.cache_hit,
        })
    }
}

/// The prefix of every metric (Envoy adds `wasmcustom.` in front of Wasm metrics).
pub const METRIC_PREFIX: &str = "hopguard";

/// Kinds of metrics, as proxy-wasm defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric hopguard emits. Tag values are embedded in the Envoy stat name
/// (`hopguard.denials_total.reason.token_expired`) and turned into Prometheus labels by
/// the tag extractors of [`STATS_TAGS`]. Cardinality is bounded by the configuration:
/// reasons, decisions, providers, sources and leak kinds; never subjects or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests by decision: `allow`, `deny`, `allow_failed`, `dry_run_deny`.
    Requests(&'static str),
    /// Refusals (and recorded failures) by reason code.
    Denials(&'static str),
    /// Requests with a token of this provider, by decision.
    ProviderRequests(String, &'static str),
    /// JWKS fetches of a provider, `success` or `failure`.
    JwksFetches(String, &'static str),
    /// Revocation list polls, `success` or `failure`.
    RevocationFetches(&'static str),
    /// Age of a provider's fetched key set, in seconds.
    KeySetAge(String),
    /// Credentials seen where they should not be, by kind.
    Leaks(&'static str),
    /// Verified-token cache lookups, `hit` or `miss`.
    TokenCache(&'static str),
    /// Signature verification and claim checks, in microseconds.
    VerifyDuration,
}

/// Request decisions as metric tag values.
pub const DECISIONS: [&str; 4] = ["allow", "deny", "allow_failed", "dry_run_deny"];
/// Leak kinds.
pub const LEAK_KINDS: [&str; 2] = ["query_token", "header_jwt"];

impl Metric {
    /// The Envoy stat name (without Envoy's `wasmcustom.`).
    pub fn name(&self) -> String {
        match self {
            Metric::Requests(d) => format!("{METRIC_PREFIX}.requests_total.decision.{d}"),
            Metric::Denials(r) => format!("{METRIC_PREFIX}.denials_total.reason.{r}"),
            Metric::ProviderRequests(p, d) => {
                format!(
                    "{METRIC_PREFIX}.provider_requests_total.provider.{}.decision.{d}",
                    metric_label(p)
                )
            }
            Metric::JwksFetches(p, r) => {
                format!(
                    "{METRIC_PREFIX}.jwks_fetches_total.provider.{}.result.{r}",
                    metric_label(p)
                )
            }
            Metric::RevocationFetches(r) => format!("{METRIC_PREFIX}.revocation_fetches_total.result.{r}"),
            Metric::KeySetAge(p) => format!("{METRIC_PREFIX}.key_set_age_seconds.provider.{}", metric_label(p)),
            Metric::Leaks(k) => format!("{METRIC_PREFIX}.leaks_total.kind.{k}"),
            Metric::TokenCache(r) => format!("{METRIC_PREFIX}.token_cache_total.result.{r}"),
            Metric::VerifyDuration => format!("{METRIC_PREFIX}.verify_duration_us"),
        }
    }

    pub fn kind(&self) -> MetricKind {
        match self {
            Metric::KeySetAge(_) => MetricKind::Gauge,
            Metric::VerifyDuration => MetricKind::Histogram,
            _ => MetricKind::Counter,
        }
    }
}

/// A provider name as a metric tag value: `[A-Za-z0-9_-]`, everything else `_`.
pub fn metric_label(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Envoy `stats_config.stats_tags` (tag name, regex) that turn hopguard's stat names
/// into Prometheus names with labels, e.g. `hopguard_denials_total{reason="token_expired"}`.
/// The first capture group is removed from the name; the second is the tag value.
pub const STATS_TAGS: [(&str, &str); 5] = [
    ("reason", r"^wasmcustom\.hopguard\.denials_total(\.reason\.([a-z_]+))$"),
    (
        "decision",
        r"^wasmcustom\.hopguard\.(?:requests_total|provider_requests_total\.provider\.[A-Za-z0-9_-]+)(\.decision\.([a-z_]+))$",
    ),
    (
        "provider",
        r"^wasmcustom\.hopguard\.(?:provider_requests_total|jwks_fetches_total|key_set_age_seconds)(\.provider\.([A-Za-z0-9_-]+))",
    ),
    (
        "result",
        r"^wasmcustom\.hopguard\.(?:jwks_fetches_total\.provider\.[A-Za-z0-9_-]+|revocation_fetches_total|token_cache_total)(\.result\.([a-z]+))$",
    ),
    ("kind", r"^wasmcustom\.hopguard\.leaks_total(\.kind\.([a-z_]+))$"),
];

/// Every metric of a configuration, defined once at configure time.
pub fn metrics_of(cfg: &crate::config::Config) -> Vec<Metric> {
    let mut out: Vec<Metric> = DECISIONS.iter().map(|d| Metric::Requests(d)).collect();
    out.extend(crate::reason::Reason::ALL.iter().map(|r| Metric::Denials(r.code())));
    for p in &cfg.providers {
        out.extend(DECISIONS.iter().map(|d| Metric::ProviderRequests(p.name.clone(), d)));
        if p.remote.is_some() {
            out.push(Metric::JwksFetches(p.name.clone(), "success"));
            out.push(Metric::JwksFetches(p.name.clone(), "failure"));
            out.push(Metric::KeySetAge(p.name.clone()));
        }
    }
    if cfg.revocation.remote.is_some() {
        out.push(Metric::RevocationFetches("success"));
        out.push(Metric::RevocationFetches("failure"));
    }
    out.extend(LEAK_KINDS.iter().map(|k| Metric::Leaks(k)));
    out.push(Metric::TokenCache("hit"));
    out.push(Metric::TokenCache("miss"));
    out.push(Metric::VerifyDuration);
    out
}

/// A JWT-shaped value: three base64url segments, the first a JSON object (`eyJ`).
pub fn looks_like_jwt(v: &str) -> bool {
    let v = v.trim();
    let v = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .map_or(v, |_| v.get(7..).unwrap_or(""));
    let mut parts = v.split('.');
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => h.starts_with("eyJ") && ok(h) && ok(p) && ok(s),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn jwt_shapes() {
        assert!(looks_like_jwt("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(looks_like_jwt("Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!looks_like_jwt("eyJh.b"));
        assert!(!looks_like_jwt("abc.def.ghi"));
        assert!(!looks_like_jwt("eyJ.a b.c"));
    }

    #[test]
    fn metric_names_and_labels() {
        assert_eq!(
            Metric::Denials("token_expired").name(),
            "hopguard.denials_total.reason.token_expired"
        );
        assert_eq!(metric_label("https://idp.example.com"), "https___idp_example_com");
        assert_eq!(
            Metric::ProviderRequests("a.b".into(), "allow").name(),
            "hopguard.provider_requests_total.provider.a_b.decision.allow"
        );
    }

    #[test]
    fn fingerprint_is_a_truncated_hash() {
        // SHA-256("abc") = ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0
        assert_eq!(token_hash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(fingerprint("abc"), "ungWv48Bz-pBQUDe");
        assert_eq!(fingerprint("abc"), "ungWv48Bz-pBQUDe");
    }
}
