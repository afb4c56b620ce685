//! The plugin configuration: what Envoy's `configuration` and Istio's `pluginConfig`
//! deliver, in the vocabulary of Istio's RequestAuthentication `jwtRules`.
//!
//! Parsed once, refused whole on the first problem with its JSON path, then shared
//! immutably. Unknown fields are errors (a typo must not silently disable a check).

use crate::algorithm::{Alg, AlgName, AlgSet};
use crate::json;
use crate::jwks::JwkSet;
use crate::key::Key;
use crate::remote::Target;
use crate::revocation::RevocationList;
use serde_json::{Map, Value};
use std::fmt;

/// A configuration problem: where (JSON path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// What to do when a request carries no token, or a token that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A valid token is required (the default).
    Required,
    /// No token passes; a bad token is refused.
    AllowMissing,
    /// No token or a bad token passes (the failure is still recorded and the token
    /// still stripped). Envoy's `allow_missing_or_failed`.
    AllowMissingOrFailed,
}

/// Where a token may be found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A request header (lowercase name) and an optional value prefix, matched
    /// ASCII case-insensitively (auth schemes are case-insensitive, RFC 9110 11.1).
    Header { name: String, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl Location {
    /// A short, secret-free description for logs and records.
    pub fn describe(&self) -> String {
        match self {
            Location::Header { name, .. } => format!("header:{name}"),
            Location::Param(n) => format!("param:{n}"),
            Location::Cookie(n) => format!("cookie:{n}"),
        }
    }
}

/// A claim copied to a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub header: String,
    /// Path into the claims; `a.b` for nested objects.
    pub claim: Vec<String>,
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Name used in logs and metrics (defaults to the issuer).
    pub name: String,
    pub issuer: String,
    /// Accepted audiences; empty means the audience is not checked.
    pub audiences: Vec<String>,
    pub keys: Vec<Key>,
    /// The algorithms this provider's tokens may use (intersected with each key's).
    pub algorithms: AlgSet,
    /// Indexes into [`Config::locations`].
    pub locations: Vec<usize>,
    pub forward_original_token: bool,
    pub output_payload_to_header: Option<String>,
    pub output_claim_to_headers: Vec<ClaimHeader>,
    pub clock_skew_seconds: u64,
    pub max_lifetime_seconds: Option<u64>,
    pub require_expiration: bool,
    /// Keys fetched from the identity provider (`jwksUri` or OIDC discovery); `keys`
    /// is then empty and the live keys come from the worker's snapshot.
    pub remote: Option<RemoteKeys>,
}

/// Where and how a provider's keys are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKeys {
    /// Either the JWKS itself (`jwksUri`) or the OIDC discovery document.
    pub source: KeySource,
    /// Refresh period without `Cache-Control: max-age`.
    pub cache_ms: u64,
    pub timeout_ms: u64,
    /// Past this age the keys are not used: requests get `keys_unavailable` (503).
    pub max_stale_ms: u64,
    /// How long a request waits for the first keys, or for an unknown-`kid` refetch.
    pub wait_ms: u64,
    /// At most one unknown-`kid` refetch per this interval.
    pub refetch_interval_ms: u64,
    /// Stable id of the source, shared by every worker and config that uses it.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(Target),
    /// `{issuer}/.well-known/openid-configuration`, then its `jwks_uri` (same cluster).
    Discovery(Target),
}

/// Deny-lists: inline, and optionally a remote list polled with `ETag`.
#[derive(Debug, Clone, Default)]
pub struct Revocation {
    pub inline: RevocationList,
    pub remote: Option<RemoteRevocation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRevocation {
    pub target: Target,
    pub poll_ms: u64,
    pub timeout_ms: u64,
    /// When the list is older than `max_stale_ms`: refuse tokens (true) or keep using
    /// the last good list (false).
    pub fail_closed: bool,
    pub max_stale_ms: u64,
    pub wait_ms: u64,
    pub id: String,
}

/// What the leak guard does with credentials found outside the token locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakGuard {
    Off,
    /// Count them (the default).
    Count,
    /// Count and remove them before the request goes upstream.
    Strip,
}

/// Log level of decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordLevel {
    Off,
    Debug,
    Info,
    Warn,
}

/// Telemetry settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// Level of the decision record of allowed requests.
    pub allow_log: RecordLevel,
    /// Level of the decision record of refused (or dry-run-refused, or failed) requests.
    pub deny_log: RecordLevel,
    /// Fraction of allowed requests whose record is logged (refusals are always logged).
    pub sample_rate: f64,
    /// Records carry `sha256:<fingerprint>` of the subject instead of the subject.
    pub hash_subject: bool,
    pub leak_guard: LeakGuard,
    /// What goes to Envoy filter state for access logs.
    pub filter_state: FilterState,
}

/// Decision facts exported to Envoy filter state (`wasm.hopguard_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterState {
    /// Nothing (the default: four filter-state writes cost Envoy several microseconds per
    /// request, for access logs that may not read them).
    Off,
    /// decision, reason, provider and fingerprint.
    Fields,
    /// The fields and the whole record as JSON (`wasm.hopguard_record`).
    Record,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            allow_log: RecordLevel::Debug,
            deny_log: RecordLevel::Info,
            sample_rate: 1.0,
            hash_subject: false,
            leak_guard: LeakGuard::Count,
            filter_state: FilterState::Off,
        }
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub providers: Vec<Provider>,
    /// Every distinct token location of every provider.
    pub locations: Vec<Location>,
    pub requirement: Requirement,
    pub realm: String,
    pub max_token_bytes: usize,
    pub revocation: Revocation,
    /// Decide and record, but let every request through (authentication dry run).
    pub dry_run: bool,
    pub telemetry: Telemetry,
    /// Token-bound service policies (Istio AuthorizationPolicy vocabulary) and the
    /// RFC 8705 / RFC 9449 binding checks.
    pub authorization: crate::policy::Policies,
    /// Verified tokens remembered per worker (0 disables the cache).
    pub token_cache_size: usize,
    /// Non-fatal notes from parsing (e.g. JWKs skipped), for the shell to log.
    pub notes: Vec<String>,
}

pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
pub const DEFAULT_MAX_TOKEN_BYTES: u64 = 8192;
pub const MIN_MAX_TOKEN_BYTES: u64 = 256;
pub const MAX_MAX_TOKEN_BYTES: u64 = 65536;
pub const DEFAULT_REALM: &str = "hopguard";

/// Headers hopguard refuses to write claims into.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "authorization",
    "x-request-id",
];

impl Config {
    /// Parses the plugin configuration bytes. The first problem refuses it whole.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::new(
                "$",
                "the configuration is empty; hopguard needs at least one provider",
            ));
        }
        let v = json::parse_strict(bytes).map_err(|e| ConfigError::new("$", format!("not valid JSON: {e}")))?;
        Config::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Config, ConfigError> {
        let top = Fields::new(
            v,
            "$",
            &[
                "providers",
                "requirement",
                "realm",
                "maxTokenBytes",
                "revocation",
                "dryRun",
                "telemetry",
                "authorization",
                "tokenCacheSize",
            ],
        )?;
        let requirement = match top.opt_str("requirement")? {
            None | Some("required") => Requirement::Required,
            Some("allowMissing") => Requirement::AllowMissing,
            Some("allowMissingOrFailed") => Requirement::AllowMissingOrFailed,
            Some(_) => {
                return Err(top.err(
                    "requirement",
                    "must be one of \"required\", \"allowMissing\", \"allowMissingOrFailed\"",
                ))
            }
        };
        let realm = match top.opt_str("realm")? {
            None => DEFAULT_REALM.to_owned(),
            Some(r) if !r.is_empty() && r.len() <= 128 && r.bytes().all(is_quoted_string_safe) => r.to_owned(),
            Some(_) => {
                return Err(top.err(
                    "realm",
                    "must be 1-128 printable ASCII characters without quote or backslash",
                ))
            }
        };
        let max_token_bytes = top
            .opt_u64_in("maxTokenBytes", MIN_MAX_TOKEN_BYTES, MAX_MAX_TOKEN_BYTES)?
            .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        let revocation = match top.opt("revocation") {
            None => Revocation::default(),
            Some(r) => parse_revocation(r, "$.revocation")?,
        };
        let dry_run = top.opt_bool("dryRun")?.unwrap_or(false);
        let telemetry = match top.opt("telemetry") {
            None => Telemetry::default(),
            Some(t) => parse_telemetry(t, "$.telemetry")?,
        };
        let token_cache_size = top
            .opt_u64_in("tokenCacheSize", 0, 1_000_000)?
            .map_or(crate::cache::DEFAULT_ENTRIES, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            });
        let authorization = match top.opt("authorization") {
            None => crate::policy::Policies::default(),
            Some(a) => crate::policy::Policies::parse(a, "$.authorization")?,
        };
        let list = top.req_array("providers")?;
        if list.is_empty() {
            return Err(ConfigError::new("$.providers", "at least one provider is required"));
        }
        let mut cfg = Config {
            providers: Vec::with_capacity(list.len()),
            locations: Vec::new(),
            requirement,
            realm,
            max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(usize::MAX),
            revocation,
            dry_run,
            telemetry,
            authorization,
            token_cache_size,
            notes: Vec::new(),
        };
        for (i, p) in list.iter().enumerate() {
            let path = format!("$.providers[{i}]");
            let provider = parse_provider(p, &path, &mut cfg.locations, &mut cfg.notes)?;
            if let Some(prev) = cfg.providers.iter().find(|q| q.issuer == provider.issuer) {
                return Err(ConfigError::new(
                    &format!("{path}.issuer"),
                    format!("issuer already configured by provider {:?}", prev.name),
                ));
            }
            if cfg.providers.iter().any(|q| q.name == provider.name) {
                return Err(ConfigError::new(&format!("{path}.name"), "duplicate provider name"));
            }
            cfg.providers.push(provider);
        }
        check_output_headers(&cfg)?;
        Ok(cfg)
    }

    /// Every header hopguard writes: removed from incoming requests first.
    pub fn output_headers(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().flat_map(|p| {
            p.output_payload_to_header
                .iter()
                .map(String::as_str)
                .chain(p.output_claim_to_headers.iter().map(|c| c.header.as_str()))
        })
    }
}

fn parse_provider(
    v: &Value,
    path: &str,
    locations: &mut Vec<Location>,
    notes: &mut Vec<String>,
) -> Result<Provider, ConfigError> {
    let f = Fields::new(
        v,
        path,
        &[
            "name",
            "issuer",
            "audiences",
            "jwks",
            "algorithms",
            "fromHeaders",
            "fromParams",
            "fromCookies",
            "forwardOriginalToken",
            "outputPayloadToHeader",
            "outputClaimToHeaders",
            "clockSkewSeconds",
            "maxLifetimeSeconds",
            "requireExpiration",
            "jwksUri",
            "cluster",
            "cacheDurationSeconds",
            "fetchTimeoutMs",
            "maxStalenessSeconds",
            "keyWaitMs",
            "unknownKidRefetchSeconds",
        ],
    )?;
    let issuer = f.req_str("issuer")?;
    if issuer.is_empty() {
        return Err(f.err("issuer", "must not be empty"));
    }
    let issuer = issuer.to_owned();
    let name = match f.opt_str("name")? {
        None => issuer.clone(),
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            n.to_owned()
        }
        Some(_) => return Err(f.err("name", "must be 1-64 characters of [A-Za-z0-9._-]")),
    };
    let audiences = f.opt_string_list("audiences")?;

    // Keys: inline, or fetched (jwksUri, or OIDC discovery from the issuer).
    let jwks_path = format!("{path}.jwks");
    let jwks_uri = f.opt_str("jwksUri")?;
    let cluster = f.opt_str("cluster")?;
    let algorithms = match f.opt("algorithms") {
        None => AlgSet::all(),
        Some(_) => {
            let names = f.opt_string_list("algorithms")?;
            let mut algs = Vec::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                match Alg::parse(n) {
                    AlgName::Known(a) => algs.push(a),
                    _ => {
                        return Err(ConfigError::new(
                            &format!("{path}.algorithms[{i}]"),
                            "not a supported JWS algorithm (HS/RS/PS/ES 256/384/512, EdDSA)",
                        ))
                    }
                }
            }
            if algs.is_empty() {
                return Err(f.err("algorithms", "must not be empty"));
            }
            AlgSet::of(&algs)
        }
    };
    let remote_fields = [
        "cacheDurationSeconds",
        "fetchTimeoutMs",
        "maxStalenessSeconds",
        "keyWaitMs",
        "unknownKidRefetchSeconds",
    ];
    let (keys, remote) = match (f.opt("jwks"), jwks_uri, cluster) {
        (Some(_), Some(_), _) => return Err(f.err("jwksUri", "give either jwks (inline) or jwksUri, not both")),
        (Some(_), None, Some(_)) => return Err(f.err("cluster", "only used with jwksUri or OIDC discovery")),
        (Some(j), None, None) => {
            if let Some(k) = remote_fields.iter().find(|k| f.opt(k).is_some()) {
                return Err(f.err(k, "only used with jwksUri or OIDC discovery"));
            }
            let jwks_value = match j {
                Value::String(s) => json::parse_strict(s.as_bytes())
                    .map_err(|e| ConfigError::new(&jwks_path, format!("not a valid JWK Set JSON string: {e}")))?,
                obj @ Value::Object(_) => obj.clone(),
                _ => {
                    return Err(ConfigError::new(
                        &jwks_path,
                        "must be a JWK Set object or a JSON string of one",
                    ))
                }
            };
            let set = JwkSet::parse(&jwks_value, &jwks_path)?;
            if let Some(e) = set.errors.into_iter().next() {
                return Err(e);
            }
            notes.extend(set.skipped.into_iter().map(|s| format!("skipped JWK {s}")));
            if !set.keys.iter().any(|k| !k.algs.intersect(algorithms).is_empty()) {
                return Err(ConfigError::new(
                    &jwks_path,
                    "no usable verification key (for the allowed algorithms) in this JWK Set",
                ));
            }
            (set.keys, None)
        }
        (None, _, None) => {
            return Err(ConfigError::new(
                &jwks_path,
                "required: an inline JWK Set, or jwksUri with cluster, or cluster alone for OIDC discovery",
            ))
        }
        (None, uri, Some(cluster)) => {
            if cluster.is_empty() || cluster.len() > 256 || cluster.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(f.err("cluster", "must be an Envoy cluster name"));
            }
            let source = match uri {
                Some(u) => KeySource::Jwks(Target::new(cluster, u).map_err(|e| f.err("jwksUri", e))?),
                None => {
                    let doc = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                    KeySource::Discovery(
                        Target::new(cluster, &doc)
                            .map_err(|e| f.err("issuer", format!("OIDC discovery needs an http(s) issuer: {e}")))?,
                    )
                }
            };
            let cache_ms = f.opt_u64_in("cacheDurationSeconds", 1, 86_400)?.unwrap_or(600) * 1000;
            let timeout_ms = f.opt_u64_in("fetchTimeoutMs", 100, 60_000)?.unwrap_or(5_000);
            let max_stale_ms = f.opt_u64_in("maxStalenessSeconds", 60, 30 * 86_400)?.unwrap_or(86_400) * 1000;
            let wait_ms = f.opt_u64_in("keyWaitMs", 0, 30_000)?.unwrap_or(3_000);
            let refetch_interval_ms = f.opt_u64_in("unknownKidRefetchSeconds", 1, 3_600)?.unwrap_or(30) * 1000;
            let id_basis = match &source {
                KeySource::Jwks(t) => format!("jwks|{cluster}|{}|{}", t.authority, t.path),
                KeySource::Discovery(t) => format!("oidc|{cluster}|{}|{}|{issuer}", t.authority, t.path),
            };
            let id = crate::telemetry::fingerprint(&id_basis);
            let remote = RemoteKeys {
                source,
                cache_ms,
                timeout_ms,
                max_stale_ms,
                wait_ms,
                refetch_interval_ms,
                id,
            };
            (Vec::new(), Some(remote))
        }
    };

    // Locations.
    let mut mine = Vec::new();
    let mut add = |loc: Location| {
        let idx = match locations.iter().position(|l| *l == loc) {
            Some(i) => i,
            None => {
                locations.push(loc);
                locations.len() - 1
            }
        };
        if !mine.contains(&idx) {
            mine.push(idx);
        }
    };
    let mut any_location = false;
    if let Some(hs) = f.opt_array("fromHeaders")? {
        for (i, h) in hs.iter().enumerate() {
            let hp = format!("{path}.fromHeaders[{i}]");
            let hf = Fields::new(h, &hp, &["name", "prefix"])?;
            let name = header_name(hf.req_str("name")?, &format!("{hp}.name"))?;
            let prefix = hf.opt_str("prefix")?.unwrap_or("").to_owned();
            if prefix.len() > 64 || !prefix.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(hf.err("prefix", "must be at most 64 printable ASCII characters"));
            }
            if name == "cookie" || name.starts_with(':') {
                return Err(hf.err(
                    "name",
                    "use fromCookies for cookies; pseudo-headers cannot carry tokens",
                ));
            }
            add(Location::Header { name, prefix });
            any_location = true;
        }
    }
    for name in f.opt_string_list("fromParams")? {
        if name.is_empty() {
            return Err(f.err("fromParams", "parameter names must not be empty"));
        }
        add(Location::Param(name));
        any_location = true;
    }
    for (i, name) in f.opt_string_list("fromCookies")?.into_iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(ConfigError::new(
                &format!("{path}.fromCookies[{i}]"),
                "must be a cookie name (an RFC 9110 token)",
            ));
        }
        add(Location::Cookie(name));
        any_location = true;
    }
    if !any_location {
        // Istio's defaults: `Authorization: Bearer` and the `access_token` parameter.
        add(Location::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        });
        add(Location::Param("access_token".into()));
    }

    let forward_original_token = f.opt_bool("forwardOriginalToken")?.unwrap_or(false);
    let output_payload_to_header = match f.opt_str("outputPayloadToHeader")? {
        None => None,
        Some(h) => Some(header_name(h, &format!("{path}.outputPayloadToHeader"))?),
    };
    let mut output_claim_to_headers = Vec::new();
    if let Some(list) = f.opt_array("outputClaimToHeaders")? {
        for (i, c) in list.iter().enumerate() {
            let cp = format!("{path}.outputClaimToHeaders[{i}]");
            let cf = Fields::new(c, &cp, &["header", "claim"])?;
            let header = header_name(cf.req_str("header")?, &format!("{cp}.header"))?;
            let claim = cf.req_str("claim")?;
            let parts: Vec<String> = claim.split('.').map(str::to_owned).collect();
            if parts.iter().any(String::is_empty) {
                return Err(cf.err(
                    "claim",
                    "must be a claim name, or names joined by '.' for nested claims",
                ));
            }
            output_claim_to_headers.push(ClaimHeader { header, claim: parts });
        }
    }
    let clock_skew_seconds = f
        .opt_u64_in("clockSkewSeconds", 0, MAX_CLOCK_SKEW_SECONDS)?
        .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    let max_lifetime_seconds = f.opt_u64_in("maxLifetimeSeconds", 1, 10 * 365 * 24 * 3600)?;
    let require_expiration = f.opt_bool("requireExpiration")?.unwrap_or(true);
    if max_lifetime_seconds.is_some() && !require_expiration {
        return Err(f.err("requireExpiration", "must not be false when maxLifetimeSeconds is set"));
    }

    Ok(Provider {
        name,
        issuer,
        audiences,
        keys,
        algorithms,
        locations: mine,
        forward_original_token,
        output_payload_to_header,
        output_claim_to_headers,
        clock_skew_seconds,
        max_lifetime_seconds,
        require_expiration,
        remote,
    })
}

fn parse_telemetry(v: &Value, path: &str) -> Result<Telemetry, ConfigError> {
    let f = Fields::new(
        v,
        path,
        &[
            "allowLog",
            "denyLog",
            "sampleRate",
            "hashSubject",
            "leakGuard",
            "filterState",
        ],
    )?;
    let level = |f: &Fields, key: &str, default: RecordLevel| -> Result<RecordLevel, ConfigError> {
        match f.opt_str(key)? {
            None => Ok(default),
            Some("off") => Ok(RecordLevel::Off),
            Some("debug") => Ok(RecordLevel::Debug),
            Some("info") => Ok(RecordLevel::Info),
            Some("warn") => Ok(RecordLevel::Warn),
            Some(_) => Err(f.err(key, "must be one of \"off\", \"debug\", \"info\", \"warn\"")),
        }
    };
    let d = Telemetry::default();
    let allow_log = level(&f, "allowLog", d.allow_log)?;
    let deny_log = level(&f, "denyLog", d.deny_log)?;
    let sample_rate = match f.opt("sampleRate") {
        None => 1.0,
        Some(v) => match v.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => r,
            _ => return Err(f.err("sampleRate", "must be a number from 0 to 1")),
        },
    };
    let hash_subject = f.opt_bool("hashSubject")?.unwrap_or(false);
    let leak_guard = match f.opt_str("leakGuard")? {
        None | Some("count") => LeakGuard::Count,
        Some("strip") => LeakGuard::Strip,
        Some("off") => LeakGuard::Off,
        Some(_) => return Err(f.err("leakGuard", "must be one of \"count\", \"strip\", \"off\"")),
    };
    let filter_state = match f.opt_str("filterState")? {
        Some("fields") => FilterState::Fields,
        Some("record") => FilterState::Record,
        None | Some("off") => FilterState::Off,
        Some(_) => return Err(f.err("filterState", "must be one of \"fields\", \"record\", \"off\"")),
    };
    Ok(Telemetry {
        allow_log,
        deny_log,
        sample_rate,
        hash_subject,
        leak_guard,
        filter_state,
    })
}

fn parse_revocation(v: &Value, path: &str) -> Result<Revocation, ConfigError> {
    let remote_fields = [
        "uri",
        "cluster",
        "pollIntervalSeconds",
        "fetchTimeoutMs",
        "onFailure",
        "maxStalenessSeconds",
        "waitMs",
    ];
    let inline = RevocationList::from_value_with(v, path, &remote_fields)?;
    let f = Fields::new(
        v,
        path,
        &[&["jtis", "subjects", "fingerprints"][..], &remote_fields[..]].concat(),
    )?;
    let remote = match (f.opt_str("uri")?, f.opt_str("cluster")?) {
        (None, None) => {
            if let Some(k) = remote_fields.iter().find(|k| f.opt(k).is_some()) {
                return Err(f.err(k, "only used with uri and cluster"));
            }
            None
        }
        (Some(_), None) => return Err(f.err("cluster", "required with uri")),
        (None, Some(_)) => return Err(f.err("uri", "required with cluster")),
        (Some(uri), Some(cluster)) => {
            let target = Target::new(cluster, uri).map_err(|e| f.err("uri", e))?;
            let poll_ms = f.opt_u64_in("pollIntervalSeconds", 1, 86_400)?.unwrap_or(30) * 1000;
            let timeout_ms = f.opt_u64_in("fetchTimeoutMs", 100, 60_000)?.unwrap_or(5_000);
            let fail_closed = match f.opt_str("onFailure")? {
                None | Some("keepLastGood") => false,
                Some("failClosed") => true,
                Some(_) => return Err(f.err("onFailure", "must be \"keepLastGood\" or \"failClosed\"")),
            };
            let max_stale_ms = f.opt_u64_in("maxStalenessSeconds", 1, 30 * 86_400)?.map(|s| s * 1000);
            let max_stale_ms = max_stale_ms.unwrap_or(3 * poll_ms + timeout_ms);
            let wait_ms = f.opt_u64_in("waitMs", 0, 30_000)?.unwrap_or(3_000);
            let id =
                crate::telemetry::fingerprint(&format!("revocation|{cluster}|{}|{}", target.authority, target.path));
            Some(RemoteRevocation {
                target,
                poll_ms,
                timeout_ms,
                fail_closed,
                max_stale_ms,
                wait_ms,
                id,
            })
        }
    };
    Ok(Revocation { inline, remote })
}

/// Output headers must not be reserved, a token location, or written twice by one provider.
fn check_output_headers(cfg: &Config) -> Result<(), ConfigError> {
    for (i, p) in cfg.providers.iter().enumerate() {
        let named = p
            .output_payload_to_header
            .iter()
            .map(|h| (format!("$.providers[{i}].outputPayloadToHeader"), h.as_str()))
            .chain(p.output_claim_to_headers.iter().enumerate().map(|(j, c)| {
                (
                    format!("$.providers[{i}].outputClaimToHeaders[{j}].header"),
                    c.header.as_str(),
                )
            }));
        let mut seen: Vec<&str> = Vec::new();
        for (path, h) in named {
            if RESERVED_HEADERS.contains(&h) || h.starts_with(':') || h.starts_with("x-envoy-") {
                return Err(ConfigError::new(
                    &path,
                    format!("{h:?} is reserved and cannot carry claims"),
                ));
            }
            let is_token_header = cfg
                .locations
                .iter()
                .any(|l| matches!(l, Location::Header { name, .. } if name == h));
            if is_token_header {
                return Err(ConfigError::new(&path, format!("{h:?} is also a token location")));
            }
            // The same header from two providers is fine (one provider verifies a
            // request); twice within one provider is a mistake.
            if seen.contains(&h) {
                return Err(ConfigError::new(
                    &path,
                    format!("{h:?} is written twice by this provider"),
                ));
            }
            seen.push(h);
        }
    }
    Ok(())
}

/// A header name: an RFC 9110 token, stored lowercase.
fn header_name(raw: &str, path: &str) -> Result<String, ConfigError> {
    if raw.is_empty() || raw.len() > 128 || !raw.bytes().all(is_tchar) {
        return Err(ConfigError::new(path, "must be a header name (an RFC 9110 token)"));
    }
    Ok(raw.to_ascii_lowercase())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_quoted_string_safe(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// An object being read: refuses unknown members up front, then hands out known ones, with
/// the JSON path in every error. Shared by the configuration's parsers (config, policy).
pub(crate) struct Fields<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) path: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(v: &'a Value, path: &str, known: &[&str]) -> Result<Fields<'a>, ConfigError> {
        let map = v
            .as_object()
            .ok_or_else(|| ConfigError::new(path, "must be a JSON object"))?;
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ConfigError::new(
                &format!("{path}.{}", json::truncate(k, 64)),
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
        Ok(Fields {
            map,
            path: path.to_owned(),
        })
    }

    pub(crate) fn child(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub(crate) fn err(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.child(key), msg)
    }

    pub(crate) fn opt(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, ConfigError> {
        self.opt_str(key)?.ok_or_else(|| self.err(key, "required"))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(key, "must be true or false")),
        }
    }

    pub(crate) fn opt_u64_in(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(self.err(key, format!("must be a whole number from {min} to {max}"))),
            },
        }
    }

    pub(crate) fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ConfigError> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.err(key, "must be an array")),
        }
    }

    pub(crate) fn req_array(&self, key: &str) -> Result<&'a Vec<Value>, ConfigError> {
        self.opt_array(key)?.ok_or_else(|| self.err(key, "required"))
    }

    /// A list of strings (absent: empty).
    pub(crate) fn opt_string_list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(a) = self.opt_array(key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(a.len());
        for (i, v) in a.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s.to_owned()),
                None => {
                    return Err(ConfigError::new(
                        &format!("{}.{key}[{i}]", self.path),
                        "must be a string",
                    ))
                }
            }
        }
        Ok(out)
    }
}
