//! `hopguard explain`: runs the filter's decision function on a described request and shows
//! everything the filter would do, plus hints that answer "why?". The token and its signature
//! are never printed: only its fingerprint, the one the filter logs.
//!
//! The request arrives over the connection `--peer` and `--peer-cert-sha256` describe (the mTLS
//! peer's SPIFFE ID and certificate digest, the Envoy properties the filter reads), so policies on
//! `principals`, `namespaces`, `bind.workload` and `bind.certificate` are explained too.

use super::args::{Parsed, Spec};
use super::check::refusal_log;
use super::input::{config_documents, read_source, read_token};
use super::{json_line, summary, time, Format, Outcome, EXIT_FAIL, EXIT_OK};
use hopguard::cache::TokenCache;
use hopguard::config::{Config, Location, Provider};
use hopguard::decision::{self, Decision, Env, Verdict};
use hopguard::extractor;
use hopguard::matcher::SPIFFE_SCHEME;
use hopguard::policy::Connection;
use hopguard::reason::Reason;
use hopguard::replay::ReplayCache;
use hopguard::request::{Mutation, Request};
use hopguard::snapshot::Snapshot;
use hopguard::{b64, json as strict_json, telemetry};
use serde_json::{json, Map, Value};
use std::cell::RefCell;

pub const SPECS: &[Spec] = &[
    Spec::value("config"),
    Spec::value("token"),
    Spec::value("token-in"),
    Spec::value("method"),
    Spec::value("path"),
    Spec::value("host"),
    Spec::many("header"),
    Spec::value("at"),
    Spec::value("peer"),
    Spec::value("peer-cert-sha256"),
    Spec::many("jwks"),
];

/// Provider members that only matter for fetched keys; dropped when `--jwks` puts keys inline.
const REMOTE_KEY_FIELDS: &[&str] = &[
    "jwksUri",
    "cluster",
    "cacheDurationSeconds",
    "fetchTimeoutMs",
    "maxStalenessSeconds",
    "keyWaitMs",
    "unknownKidRefetchSeconds",
];

/// Longest header value shown in full; longer ones are shortened.
const SHOW_MAX: usize = 160;

struct RequestSpec {
    method: String,
    path: String,
    host: String,
    headers: Vec<(String, String)>,
    token: Option<String>,
    token_in: Option<Location>,
    at: u64,
    /// The mTLS peer's URI SAN, `spiffe://...`.
    peer: Option<String>,
    /// Lowercase hex SHA-256 of the peer's DER certificate.
    peer_cert_sha256: Option<String>,
}

pub fn run(parsed: &Parsed, format: Format) -> Outcome {
    if let Some(p) = parsed.positionals.first() {
        return Outcome::usage(&format!("unexpected argument {p:?}"), Some("explain"));
    }
    let Some(config_arg) = parsed.value("config") else {
        return Outcome::usage("--config is required", Some("explain"));
    };
    if config_arg == "-" && parsed.value("token") == Some("-") {
        return Outcome::usage("--config and --token cannot both read stdin", Some("explain"));
    }
    let spec = match request_spec(parsed) {
        Ok(s) => s,
        Err(e) => return Outcome::usage(&e, Some("explain")),
    };
    let (label, bytes) = match read_source(config_arg) {
        Ok(x) => x,
        Err(e) => return Outcome::trouble(&e),
    };
    let docs = match config_documents(&label, &bytes) {
        Ok(d) => d,
        Err(e) => return Outcome::trouble(&e),
    };
    let [doc] = docs.as_slice() else {
        return Outcome::trouble(&format!(
            "{label} holds {} hopguard configurations; explain needs exactly one",
            docs.len()
        ));
    };
    let mut notes = Vec::new();
    let bytes = match inline_jwks(&doc.bytes, &parsed.values("jwks"), &mut notes) {
        Ok(b) => b,
        Err(e) => return Outcome::usage(&e, Some("explain")),
    };
    let config = Config::parse(&bytes);
    if let Ok(cfg) = &config {
        for p in cfg.providers.iter().filter(|p| p.keys.is_empty()) {
            notes.push(format!(
                "provider {} fetches its keys at run time; explain has no network, so its tokens get \
                 keys_unavailable. Fetch the JWK Set and pass it: --jwks '{}=FILE'",
                p.name, p.issuer
            ));
        }
    }
    let peer_rules = serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| reads_peer(&v));
    let mut report = explain(config.as_ref(), &spec, peer_rules);
    report.notes.extend(notes);
    let code = match report.decision.verdict {
        Verdict::Allow => EXIT_OK,
        _ => EXIT_FAIL,
    };
    let out = match format {
        Format::Json => json_line(&report.to_json()),
        Format::Text => report.to_text(),
    };
    let stdout = scrub(&out, spec.token.as_deref());
    Outcome {
        code,
        stdout,
        stderr: String::new(),
    }
}

/// `--jwks ISSUER=FILE` (or `NAME=FILE`): the provider's keys inline from FILE instead of fetched.
fn inline_jwks(bytes: &[u8], args: &[&str], notes: &mut Vec<String>) -> Result<Vec<u8>, String> {
    if args.is_empty() {
        return Ok(bytes.to_vec());
    }
    let mut config: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("--jwks needs a configuration that is valid JSON: {e}"))?;
    for arg in args {
        let (who, file) = arg
            .rsplit_once('=')
            .ok_or_else(|| format!("--jwks {arg:?} must look like ISSUER=FILE"))?;
        let (_, set) = read_source(file)?;
        let set: Value = serde_json::from_slice(&set).map_err(|e| format!("--jwks {file}: not JSON: {e}"))?;
        let provider = config
            .get_mut("providers")
            .and_then(Value::as_array_mut)
            .and_then(|ps| {
                ps.iter_mut().find(|p| {
                    p.get("issuer").and_then(Value::as_str) == Some(who)
                        || p.get("name").and_then(Value::as_str) == Some(who)
                })
            })
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("--jwks {arg:?}: no provider with issuer or name {who:?}"))?;
        for k in REMOTE_KEY_FIELDS {
            provider.remove(*k);
        }
        provider.insert("jwks".into(), set);
        notes.push(format!(
            "provider {who}: keys from {file} (--jwks) instead of the configured source"
        ));
    }
    serde_json::to_vec(&config).map_err(|e| e.to_string())
}

fn request_spec(parsed: &Parsed) -> Result<RequestSpec, String> {
    let method = parsed.value("method").unwrap_or("GET").to_owned();
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(format!("--method {method:?} is not an HTTP method"));
    }
    let path = parsed.value("path").unwrap_or("/").to_owned();
    if !(path.starts_with('/') || path == "*") || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("--path {path:?} must start with / and hold no spaces"));
    }
    let host = parsed.value("host").unwrap_or("localhost").to_owned();
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("--host {host:?} is not an authority"));
    }
    let mut headers = Vec::new();
    for h in parsed.values("header") {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?} must look like 'name: value'"))?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!(
                "--header {h:?}: {name:?} is not a header name (use --method, --path, --host for pseudo-headers)"
            ));
        }
        headers.push((name, value.trim_matches([' ', '\t']).to_owned()));
    }
    let token = match parsed.value("token") {
        None => None,
        Some(arg) => Some(read_token(arg)?),
    };
    let token_in = match parsed.value("token-in") {
        None => None,
        Some(loc) => Some(parse_location(loc)?),
    };
    if token_in.is_some() && token.is_none() {
        return Err("--token-in needs --token".to_owned());
    }
    let at = match parsed.value("at") {
        None => time::now(),
        Some(s) => time::parse(s).map_err(|e| format!("--at {e}"))?,
    };
    Ok(RequestSpec {
        method,
        path,
        host,
        headers,
        token,
        token_in,
        at,
        peer: parsed.value("peer").map(parse_peer).transpose()?,
        peer_cert_sha256: parsed.value("peer-cert-sha256").map(parse_digest).transpose()?,
    })
}

/// `--peer`: a SPIFFE ID, with or without the `spiffe://` scheme (Istio writes principals
/// without it); the URI SAN Envoy reports always has it.
fn parse_peer(s: &str) -> Result<String, String> {
    let id = s.strip_prefix(SPIFFE_SCHEME).unwrap_or(s);
    if id.is_empty() || id.contains("://") || id.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "--peer {s:?} is not a SPIFFE ID (spiffe://cluster.local/ns/NAMESPACE/sa/ACCOUNT)"
        ));
    }
    Ok(format!("{SPIFFE_SCHEME}{id}"))
}

/// `--peer-cert-sha256`: 64 hex digits, also as `openssl x509 -fingerprint -sha256` prints them
/// (upper case, colon-separated).
fn parse_digest(s: &str) -> Result<String, String> {
    let hex: String = s
        .strip_prefix("sha256:")
        .unwrap_or(s)
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "--peer-cert-sha256 {s:?} is not a SHA-256 digest (64 hex digits, colons allowed)"
        ));
    }
    Ok(hex)
}

fn parse_location(s: &str) -> Result<Location, String> {
    let (kind, name) = s
        .split_once(':')
        .ok_or_else(|| format!("--token-in {s:?} must be header:NAME, param:NAME or cookie:NAME"))?;
    if name.is_empty() {
        return Err(format!("--token-in {s:?}: the name is empty"));
    }
    match kind {
        "header" => Ok(Location::Header {
            name: name.to_ascii_lowercase(),
            prefix: String::new(),
        }),
        "param" => Ok(Location::Param(name.to_owned())),
        "cookie" => Ok(Location::Cookie(name.to_owned())),
        _ => Err(format!(
            "--token-in {s:?} must be header:NAME, param:NAME or cookie:NAME"
        )),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The token's pieces, decoded without verifying anything.
#[derive(Debug, Default)]
struct Inspected {
    segments: usize,
    header: Option<Value>,
    claims: Option<Map<String, Value>>,
    signature_bytes: Option<usize>,
    problems: Vec<String>,
}

fn inspect(token: &str) -> Inspected {
    let parts: Vec<&str> = token.split('.').collect();
    let mut out = Inspected {
        segments: parts.len(),
        ..Inspected::default()
    };
    let decode_json = |seg: &str, what: &str, problems: &mut Vec<String>| -> Option<Value> {
        let Some(bytes) = b64::decode(seg) else {
            problems.push(format!("the {what} is not base64url without padding"));
            return None;
        };
        match strict_json::parse_strict(&bytes) {
            Ok(v) if v.is_object() => Some(v),
            Ok(_) => {
                problems.push(format!("the {what} is JSON but not an object"));
                None
            }
            Err(e) => {
                problems.push(format!("the {what} is not valid JSON: {e}"));
                None
            }
        }
    };
    if let Some(h) = parts.first() {
        out.header = decode_json(h, "header", &mut out.problems);
    }
    if let Some(p) = parts.get(1) {
        out.claims = decode_json(p, "payload", &mut out.problems).and_then(|v| v.as_object().cloned());
    }
    if let Some(s) = parts.get(2) {
        match b64::decode(s) {
            Some(sig) => out.signature_bytes = Some(sig.len()),
            None => out
                .problems
                .push("the signature is not base64url without padding".to_owned()),
        }
    }
    if parts.len() != 3 {
        out.problems.push(format!(
            "{} dot-separated segments; a compact JWS has 3{}",
            parts.len(),
            if parts.len() == 5 {
                " (5 is an encrypted JWE)"
            } else {
                ""
            }
        ));
    }
    out
}

/// Where to put the token: `--token-in`, else the first location of the provider for the
/// token's `iss`, else the first configured location, else `Authorization: Bearer`.
fn placement(cfg: Option<&Config>, spec: &RequestSpec, claims: Option<&Map<String, Value>>) -> Location {
    if let Some(l) = &spec.token_in {
        if let (Some(cfg), Location::Header { name, .. }) = (cfg, l) {
            // Use the configured prefix of that header, if there is one.
            if let Some(found) = cfg
                .locations
                .iter()
                .find(|c| matches!(c, Location::Header { name: n, .. } if n == name))
            {
                return found.clone();
            }
        }
        return l.clone();
    }
    let bearer = Location::Header {
        name: "authorization".to_owned(),
        prefix: "Bearer ".to_owned(),
    };
    let Some(cfg) = cfg else {
        return bearer;
    };
    let iss = claims.and_then(|c| c.get("iss")).and_then(Value::as_str);
    let by_issuer = cfg
        .providers
        .iter()
        .find(|p| Some(p.issuer.as_str()) == iss)
        .and_then(|p| p.locations.first())
        .and_then(|i| cfg.locations.get(*i));
    by_issuer.or(cfg.locations.first()).cloned().unwrap_or(bearer)
}

fn build_request(spec: &RequestSpec, token_at: Option<&Location>) -> Request {
    let mut path = spec.path.clone();
    let mut headers: Vec<(String, String)> = vec![
        (":method".to_owned(), spec.method.clone()),
        (":scheme".to_owned(), "http".to_owned()),
        (":authority".to_owned(), spec.host.clone()),
    ];
    let mut extra: Vec<(String, String)> = spec.headers.clone();
    if let (Some(token), Some(loc)) = (&spec.token, token_at) {
        match loc {
            Location::Header { name, prefix } => extra.push((name.clone(), format!("{prefix}{token}"))),
            Location::Param(n) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                path = format!("{path}{sep}{}={}", pct(n), pct(token));
            }
            Location::Cookie(n) => match extra.iter_mut().find(|(h, _)| h == "cookie") {
                Some((_, v)) => *v = format!("{v}; {n}={token}"),
                None => extra.push(("cookie".to_owned(), format!("{n}={token}"))),
            },
        }
    }
    headers.insert(1, (":path".to_owned(), path));
    headers.extend(extra);
    Request::new(headers)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Report {
    refused: Option<hopguard::config::ConfigError>,
    /// The request headers as shown: the token replaced by `<token>`.
    shown_headers: Vec<(String, String)>,
    at: u64,
    token: Option<TokenReport>,
    decision: Decision,
    provider: Option<String>,
    /// The connection the request arrived on (`--peer`, `--peer-cert-sha256`).
    connection: Connection,
    hints: Vec<String>,
    notes: Vec<String>,
}

struct TokenReport {
    fingerprint: String,
    bytes: usize,
    placed: Option<String>,
    inspected: Inspected,
}

/// Whether a policy of the configuration reads the mTLS peer identity (source principals,
/// namespaces, service accounts, trust domains, or a workload or delegation binding).
fn reads_peer(config: &Value) -> bool {
    const SOURCE: [&str; 8] = [
        "principals",
        "notPrincipals",
        "namespaces",
        "notNamespaces",
        "serviceAccounts",
        "notServiceAccounts",
        "trustDomains",
        "notTrustDomains",
    ];
    let list = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let policies = config
        .get("authorization")
        .map(|a| list(a, "policies"))
        .unwrap_or_default();
    policies.iter().flat_map(|p| list(p, "rules")).any(|rule| {
        list(&rule, "from").iter().any(|f| {
            f.get("source")
                .and_then(Value::as_object)
                .is_some_and(|s| s.keys().any(|k| SOURCE.contains(&k.as_str())))
        }) || list(&rule, "when").iter().any(|c| {
            c.get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| k.starts_with("source.") && k != "source.ip")
        }) || rule
            .get("bind")
            .is_some_and(|b| b.get("workload").is_some() || b.get("delegation").is_some())
    })
}

fn explain(config: Result<&Config, &hopguard::config::ConfigError>, spec: &RequestSpec, peer_rules: bool) -> Report {
    let cfg = config.ok();
    let inspected = spec.token.as_deref().map(inspect);
    let token_at = spec
        .token
        .as_ref()
        .map(|_| placement(cfg, spec, inspected.as_ref().and_then(|i| i.claims.as_ref())));
    let request = build_request(spec, token_at.as_ref());
    let connection = Connection {
        peer_uri_san: spec.peer.clone(),
        peer_cert_sha256: spec.peer_cert_sha256.clone(),
        ..Connection::default()
    };
    let decision = match cfg {
        Some(cfg) => {
            // What a worker holds, fresh: inline keys, no cached verification, an empty DPoP replay
            // cache; and the connection described on the command line.
            let snapshot = Snapshot::new(cfg);
            let replay = RefCell::new(ReplayCache::new(cfg.authorization.dpop.replay_cache_size));
            let cache = RefCell::new(TokenCache::new(0));
            let env = Env {
                snapshot: &snapshot,
                connection: &|| connection.clone(),
                replay: &replay,
                cache: &cache,
            };
            decision::decide_live(cfg, &env, &request, spec.at, false)
        }
        None => decision::unconfigured(&request),
    };
    let provider = cfg.and_then(|c| decision.provider.and_then(|i| c.providers.get(i)));
    let mut notes = Vec::new();
    if let Some(cfg) = cfg {
        notes.extend(cfg.notes.iter().map(|n| format!("configuration: {n}")));
    }
    let token = spec.token.as_ref().zip(inspected).map(|(t, inspected)| TokenReport {
        fingerprint: telemetry::fingerprint(t),
        bytes: t.len(),
        placed: token_at.as_ref().map(summary::location_text),
        inspected,
    });
    let hints = match (cfg, decision.reason) {
        (Some(cfg), Some(reason)) => {
            let mut h = hints(cfg, &request, reason, provider, token.as_ref(), spec.at);
            h.extend(connection_hints(reason, &connection, token.as_ref(), peer_rules));
            h
        }
        _ => Vec::new(),
    };
    let shown_headers = request
        .headers
        .iter()
        .map(|(n, v)| {
            let v = match spec.token.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => v.replace(t, "<token>").replace(&pct(t), "<token>"),
                None => v.clone(),
            };
            (n.clone(), v)
        })
        .collect();
    Report {
        refused: config.err().cloned(),
        shown_headers,
        at: spec.at,
        token,
        provider: provider.map(|p| p.name.clone()),
        decision,
        connection,
        hints,
        notes,
    }
}

/// Facts about the connection that explain a policy reason.
/// `peer_rules`: some policy reads the peer identity.
fn connection_hints(
    reason: Reason,
    connection: &Connection,
    token: Option<&TokenReport>,
    peer_rules: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let peer = connection.peer_uri_san.as_deref();
    let claims = token.and_then(|t| t.inspected.claims.as_ref());
    let about_peer = match reason {
        Reason::PeerUnauthenticated | Reason::WorkloadMismatch | Reason::DelegationMismatch => true,
        Reason::PolicyDenied | Reason::PolicyNoMatch => peer_rules || peer.is_some(),
        _ => false,
    };
    match reason {
        _ if about_peer => out.push(match peer {
            Some(p) => format!("the calling workload (mTLS peer) is {p} (--peer)"),
            None => "no mTLS peer identity: rules on principals, namespaces, serviceAccounts or a workload binding \
                     see none; describe the caller with --peer SPIFFE-ID"
                .to_owned(),
        }),
        Reason::CertBindingMismatch | Reason::CertBindingMissing => {
            let x5t = claims
                .and_then(|c| c.get("cnf"))
                .and_then(|c| c.get("x5t#S256"))
                .and_then(Value::as_str);
            let bound = x5t
                .and_then(b64::decode)
                .map(|d| d.iter().map(|b| format!("{b:02x}")).collect::<String>());
            out.push(format!(
                "token cnf x5t#S256 is {}; the peer certificate's SHA-256 is {}",
                match (x5t, &bound) {
                    (Some(_), Some(hex)) => hex.clone(),
                    (Some(raw), None) => format!("{raw:?} (not base64url)"),
                    (None, _) => "absent".to_owned(),
                },
                connection
                    .peer_cert_sha256
                    .as_deref()
                    .unwrap_or("unknown: describe it with --peer-cert-sha256 HEX")
            ));
        }
        _ => {}
    }
    out
}

/// Facts that explain the reason, from the configuration and the (unverified) token.
fn hints(
    cfg: &Config,
    req: &Request,
    reason: Reason,
    provider: Option<&Provider>,
    token: Option<&TokenReport>,
    at: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let claims = token.and_then(|t| t.inspected.claims.as_ref());
    let header = token.and_then(|t| t.inspected.header.as_ref());
    let claim_str = |name: &str| claims.and_then(|c| c.get(name)).map(compact);
    let header_str = |name: &str| header.and_then(|h| h.get(name)).map(compact);
    let all_locations: Vec<String> = cfg.locations.iter().map(summary::location_text).collect();
    match reason {
        Reason::TokenMissing => out.push(format!(
            "no token in any accepted location: {}",
            all_locations.join(", ")
        )),
        Reason::TokenAmbiguous => {
            let found: Vec<String> = extractor::extract(&cfg.locations, req)
                .iter()
                .filter_map(|c| cfg.locations.get(c.location))
                .map(summary::location_text)
                .collect();
            out.push(format!("{} tokens found, in: {}", found.len(), found.join(", ")));
        }
        Reason::TokenTooLarge => out.push(format!(
            "the token is {} bytes; maxTokenBytes is {}",
            token.map_or(0, |t| t.bytes),
            cfg.max_token_bytes
        )),
        Reason::TokenMalformed => {
            if let Some(t) = token {
                out.extend(t.inspected.problems.iter().cloned());
            }
        }
        Reason::AlgorithmNone | Reason::AlgorithmUnsupported => {
            out.push(format!(
                "header alg is {}",
                header_str("alg").unwrap_or_else(|| "absent".into())
            ));
        }
        Reason::CritUnsupported => out.push(format!(
            "header crit is {}; hopguard understands no critical extensions",
            header_str("crit").unwrap_or_default()
        )),
        Reason::TypeNotAccepted => out.push(format!(
            "header typ is {}: a DPoP proof, not an access token",
            header_str("typ").unwrap_or_default()
        )),
        Reason::IssuerMissing => out.push("the token has no iss claim".to_owned()),
        Reason::IssuerUnknown => {
            let location = extractor::extract(&cfg.locations, req).first().map(|c| c.location);
            let accepting: Vec<&str> = cfg
                .providers
                .iter()
                .filter(|p| location.is_some_and(|l| p.locations.contains(&l)))
                .map(|p| p.issuer.as_str())
                .collect();
            let where_ = location
                .and_then(|l| cfg.locations.get(l))
                .map(summary::location_text)
                .unwrap_or_default();
            out.push(format!(
                "token iss is {}; issuers accepted from {where_}: {}",
                claim_str("iss").unwrap_or_default(),
                if accepting.is_empty() {
                    "none".to_owned()
                } else {
                    accepting.join(", ")
                }
            ));
            if let Some(other) = cfg
                .providers
                .iter()
                .find(|p| claims.and_then(|c| c.get("iss")).and_then(Value::as_str) == Some(p.issuer.as_str()))
            {
                let locs: Vec<String> = summary::provider_locations(cfg, other)
                    .into_iter()
                    .map(summary::location_text)
                    .collect();
                out.push(format!(
                    "provider {} takes its tokens from: {}",
                    other.name,
                    locs.join(", ")
                ));
            }
        }
        Reason::KeyNotFound | Reason::SignatureInvalid | Reason::AlgorithmNotAllowed => {
            if let Some(p) = provider {
                let keys: Vec<String> = p
                    .keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{} [{}]",
                            k.kid.as_deref().unwrap_or("(no kid)"),
                            summary::algs(k.algs.intersect(p.algorithms)).join(" ")
                        )
                    })
                    .collect();
                out.push(format!(
                    "token kid {}, alg {}; provider {} keys: {}",
                    header_str("kid").unwrap_or_else(|| "absent".into()),
                    header_str("alg").unwrap_or_default(),
                    p.name,
                    keys.join(", ")
                ));
                if reason == Reason::SignatureInvalid {
                    out.push(
                        "a key matched kid and alg but the signature does not verify: the token was signed by \
                         another key (rotated or foreign) or altered"
                            .to_owned(),
                    );
                }
            }
        }
        Reason::ClaimInvalid => {
            let c = claims.cloned().unwrap_or_default();
            for name in ["exp", "nbf", "iat"] {
                if c.get(name).is_some_and(|v| !v.is_number()) {
                    out.push(format!(
                        "{name} must be a number (NumericDate), is {}",
                        compact_opt(c.get(name))
                    ));
                }
            }
            for name in ["iss", "sub", "jti"] {
                if c.get(name).is_some_and(|v| !v.is_string()) {
                    out.push(format!("{name} must be a string, is {}", compact_opt(c.get(name))));
                }
            }
            if c.get("aud").is_some_and(|v| !aud_ok(v)) {
                out.push(format!(
                    "aud must be a string or an array of strings, is {}",
                    compact_opt(c.get("aud"))
                ));
            }
        }
        Reason::ExpirationMissing => {
            out.push("the token has no exp and the provider requires one (requireExpiration)".to_owned())
        }
        Reason::TokenExpired | Reason::TokenNotYetValid | Reason::LifetimeTooLong => {
            let skew = provider.map_or(0, |p| p.clock_skew_seconds);
            let num = |n: &str| claims.and_then(|c| c.get(n)).and_then(Value::as_f64);
            let now = at as f64;
            if let (Reason::TokenExpired, Some(exp)) = (reason, num("exp")) {
                out.push(format!(
                    "exp {} is {} before {} (clock skew allowed: {skew}s)",
                    time::format(exp),
                    time::span(now - exp),
                    time::format(now)
                ));
            }
            if let (Reason::TokenNotYetValid, Some(nbf)) = (reason, num("nbf")) {
                out.push(format!(
                    "nbf {} is {} after {} (clock skew allowed: {skew}s)",
                    time::format(nbf),
                    time::span(nbf - now),
                    time::format(now)
                ));
            }
            if let (Reason::LifetimeTooLong, Some(exp)) = (reason, num("exp")) {
                let start = num("iat").unwrap_or(now);
                out.push(format!(
                    "lifetime {} (exp - {}) exceeds maxLifetimeSeconds {}",
                    time::span(exp - start),
                    if num("iat").is_some() { "iat" } else { "now" },
                    provider.and_then(|p| p.max_lifetime_seconds).unwrap_or(0)
                ));
            }
        }
        Reason::AudienceMismatch => out.push(format!(
            "token aud is {}; provider {} accepts: {}",
            claim_str("aud").unwrap_or_else(|| "absent".into()),
            provider.map_or("?", |p| p.name.as_str()),
            provider.map(|p| p.audiences.join(", ")).unwrap_or_default()
        )),
        _ => {}
    }
    out
}

fn aud_ok(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(a) => a.iter().all(Value::is_string),
        _ => false,
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compact_opt(v: Option<&Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Claim values that look like tokens themselves (nested credentials) are not shown.
fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) if looks_like_token(s) => Value::String(format!(
            "<redacted: a token, fingerprint {}>",
            telemetry::fingerprint(s)
        )),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        other => other.clone(),
    }
}

fn looks_like_token(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    s.len() >= 32
        && (parts.len() == 3 || parts.len() == 5)
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Removes every occurrence of the token, and of its signature, from `text`.
fn scrub(text: &str, token: Option<&str>) -> String {
    let Some(token) = token else {
        return text.to_owned();
    };
    let mut out = text.to_owned();
    if token.len() >= 16 {
        out = out.replace(token, "<token>");
    }
    if let Some(sig) = token.split('.').nth(2).filter(|s| s.len() >= 16) {
        out = out.replace(sig, "<signature>");
    }
    out
}

fn verdict_name(d: &Decision) -> &'static str {
    match (&d.verdict, d.reason) {
        (Verdict::Allow, Some(_)) => "allow_failed",
        (Verdict::Allow, None) => "allow",
        (Verdict::Deny(_), _) => "deny",
        _ => "wait",
    }
}

fn mutation_json(m: &Mutation) -> Value {
    match m {
        Mutation::Remove(h) => json!({"op": "remove", "header": h}),
        Mutation::Add(h, v) => json!({"op": "add", "header": h, "value": v}),
        Mutation::Set(h, v) => json!({"op": "set", "header": h, "value": v}),
    }
}

fn shorten(v: &str) -> String {
    if v.chars().count() <= SHOW_MAX {
        v.to_owned()
    } else {
        let head: String = v.chars().take(SHOW_MAX).collect();
        format!("{head}... ({} characters)", v.chars().count())
    }
}

impl Report {
    fn log_line(&self) -> (String, String) {
        let level = match self.decision.verdict {
            Verdict::Allow => "debug",
            _ => "info",
        };
        (
            level.to_owned(),
            format!("hopguard: decision {}", self.decision.record.to_json()),
        )
    }

    fn to_json(&self) -> Value {
        let d = &self.decision;
        let response = match &d.verdict {
            Verdict::Deny(den) => json!({
                "status": den.status,
                "headers": den.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "body": serde_json::from_str::<Value>(&den.body).unwrap_or(Value::String(den.body.clone())),
            }),
            _ => Value::Null,
        };
        let reason = d.reason.map(|r| {
            let s = r.spec();
            json!({"code": s.code, "status": s.status, "title": s.title, "description": s.description})
        });
        let token = self.token.as_ref().map(|t| {
            json!({
                "fingerprint": t.fingerprint,
                "bytes": t.bytes,
                "placedIn": t.placed,
                "verified": d.reason.is_none() && d.provider.is_some(),
                "header": t.inspected.header.as_ref().map(redact),
                "claims": t.inspected.claims.as_ref().map(|c| redact(&Value::Object(c.clone()))),
                "segments": t.inspected.segments,
                "signatureBytes": t.inspected.signature_bytes,
            })
        });
        let (level, line) = self.log_line();
        json!({
            "verdict": verdict_name(d),
            "allowed": matches!(d.verdict, Verdict::Allow),
            "status": match &d.verdict { Verdict::Deny(den) => json!(den.status), _ => Value::Null },
            "reason": reason,
            "configurationRefused": self.refused.as_ref().map(|e| json!({
                "path": e.path, "message": e.message, "log": refusal_log(e)
            })),
            "provider": self.provider,
            "kid": d.record.kid,
            "at": self.at,
            "request": {
                "headers": self.shown_headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            },
            "connection": {
                "peer": self.connection.peer_uri_san,
                "peerCertSha256": self.connection.peer_cert_sha256,
            },
            "token": token,
            "response": response,
            "upstream": d.mutations.iter().map(mutation_json).collect::<Vec<_>>(),
            "record": d.record.to_json(),
            "log": {"level": level, "line": line},
            "hints": self.hints,
            "notes": self.notes,
        })
    }

    fn to_text(&self) -> String {
        let d = &self.decision;
        let mut out = String::new();
        if let Some(e) = &self.refused {
            out.push_str(&format!("{}\n", refusal_log(e)));
            out.push_str("the filter refuses every request until its configuration is fixed (fail closed)\n");
        }
        let status = match &d.verdict {
            Verdict::Allow => "request continues upstream".to_owned(),
            Verdict::Deny(den) => format!("HTTP {}", den.status),
            _ => "request paused until remote keys or lists arrive".to_owned(),
        };
        out.push_str(&format!("verdict:  {} ({status})\n", verdict_name(d)));
        if let Some(r) = d.reason {
            let s = r.spec();
            out.push_str(&format!("reason:   {} - {}: {}\n", s.code, s.title, s.description));
        }
        for h in &self.hints {
            out.push_str(&format!("  why:    {h}\n"));
        }
        if let Some(p) = &self.provider {
            out.push_str(&format!("provider: {p}\n"));
        }
        if let Some(kid) = &d.record.kid {
            out.push_str(&format!("key:      kid {kid}\n"));
        }
        // The policy rule that decided, when policies are configured.
        let record = d.record.to_json();
        if let Some(rule) = record.get("rule").filter(|r| !r.is_null()) {
            out.push_str(&format!("rule:     {}\n", compact(rule)));
        }
        out.push_str(&format!("at:       {} ({})\n", time::format(self.at as f64), self.at));
        let pseudo = |n: &str| {
            self.shown_headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        out.push_str(&format!(
            "request:  {} {} (host {})\n",
            pseudo(":method"),
            pseudo(":path"),
            pseudo(":authority")
        ));
        for (n, v) in self.shown_headers.iter().filter(|(n, _)| !n.starts_with(':')) {
            out.push_str(&format!("  {n}: {}\n", shorten(v)));
        }
        match (&self.connection.peer_uri_san, &self.connection.peer_cert_sha256) {
            (None, None) => out.push_str("peer:     none (no mTLS peer identity)\n"),
            (peer, cert) => out.push_str(&format!(
                "peer:     {}{}\n",
                peer.as_deref().unwrap_or("no URI SAN"),
                cert.as_ref()
                    .map(|c| format!(", certificate SHA-256 {c}"))
                    .unwrap_or_default()
            )),
        }
        match &self.token {
            None => out.push_str("token:    none given\n"),
            Some(t) => {
                out.push_str(&format!(
                    "token:    fingerprint {}, {} bytes{}\n",
                    t.fingerprint,
                    t.bytes,
                    t.placed.as_ref().map(|p| format!(", sent in {p}")).unwrap_or_default()
                ));
                let verified = d.reason.is_none() && d.provider.is_some();
                if let Some(h) = &t.inspected.header {
                    out.push_str(&format!("  header: {}\n", redact(h)));
                }
                if let Some(c) = &t.inspected.claims {
                    out.push_str(&format!(
                        "  claims ({}):\n",
                        if verified { "verified" } else { "NOT verified" }
                    ));
                    for (k, v) in c {
                        let shown = redact(v);
                        let when = match (k.as_str(), v.as_f64()) {
                            ("exp" | "nbf" | "iat", Some(n)) => format!("  ({})", time::format(n)),
                            _ => String::new(),
                        };
                        out.push_str(&format!("    {k}: {shown}{when}\n"));
                    }
                }
                if let Some(n) = t.inspected.signature_bytes {
                    out.push_str(&format!("  signature: {n} bytes (not shown)\n"));
                }
            }
        }
        match &d.verdict {
            Verdict::Deny(den) => {
                out.push_str("response:\n");
                out.push_str(&format!("  HTTP {}\n", den.status));
                for (n, v) in &den.headers {
                    out.push_str(&format!("  {n}: {v}\n"));
                }
                out.push_str(&format!("  body: {}\n", den.body));
            }
            _ if !matches!(d.verdict, Verdict::Allow) => {}
            _ => {
                if d.mutations.is_empty() {
                    out.push_str("upstream: request forwarded unchanged\n");
                } else {
                    out.push_str("upstream (changes before forwarding):\n");
                    for m in &d.mutations {
                        let line = match m {
                            Mutation::Remove(h) => format!("remove {h}"),
                            Mutation::Add(h, v) => format!("add    {h}: {}", shorten(v)),
                            Mutation::Set(h, v) => format!("set    {h}: {}", shorten(v)),
                        };
                        out.push_str(&format!("  {line}\n"));
                    }
                }
            }
        }
        let (level, line) = self.log_line();
        out.push_str(&format!("log ({level}): {line}\n"));
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}
