//! DPoP proof verification (RFC 9449 section 4.3) for a resource server.
//!
//! A proof is the `DPoP` request header: a compact JWS with `typ: dpop+jwt`, an
//! asymmetric `alg`, and the signer's public key in the `jwk` header. Checked here, in
//! this order (the first failure wins, see [`DpopError`]):
//!
//! 1. exactly one `DPoP` header, at most `maxProofBytes`;
//! 2. a well-formed compact JWS (strict base64url, strict JSON, no duplicate names);
//! 3. `typ` is `dpop+jwt` (optionally `application/`, case-insensitively);
//! 4. `alg` is an asymmetric algorithm hopguard implements and the config allows
//!    (never `none`, never `HS*`); `crit` is refused;
//! 5. `jwk` is a public EC (P-256/384/521), RSA (2048-8192 bits) or OKP (Ed25519) key
//!    with no private members, and the signature verifies with it, with `alg` pinned
//!    by the key type;
//! 6. claims `jti` (string), `htm`, `htu` (strings), `iat` (number) and `ath` (string)
//!    are present and typed;
//! 7. `htm` equals the request method (case-sensitive, RFC 9110 9.1);
//! 8. `htu` equals the request URL `scheme://authority/path` ignoring query and
//!    fragment, both sides normalized per RFC 3986 6.2.2 (case, percent-encoding, dot
//!    segments) and 6.2.3 (default port, empty path);
//! 9. `iat` is within `iatWindowSeconds` of `now`, either way;
//! 10. `ath` equals base64url(SHA-256(access token));
//!
//! and then, in [`check`], the binding and the replay cache:
//!
//! 11. the access token's `cnf.jkt` equals the RFC 7638 thumbprint of `jwk`;
//! 12. the proof (`htu`, `jti`) was not seen within its window ([`crate::replay`]).
//!
//! A client signs every proof with the same key, so [`check`] remembers the keys of recent
//! proofs per worker ([`ProofKeys`]): building a key costs more than verifying with it.
//!
//! Server-issued nonces (RFC 9449 section 8/9) are not implemented: hopguard never
//! sends `DPoP-Nonce`, so a `nonce` claim is ignored.

use crate::algorithm::{Alg, AlgName, AlgSet};
use crate::b64;
use crate::json;
use crate::jwks::{JwkSet, Lifetime};
use crate::key::Key;
use crate::replay::{ReplayCache, Seen};
use crate::request::Request;
use crate::telemetry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

/// The proof header (lowercase, as Envoy delivers header names).
pub const DPOP_HEADER: &str = "dpop";
pub const DEFAULT_IAT_WINDOW_SECONDS: u64 = 60;
pub const MAX_IAT_WINDOW_SECONDS: u64 = 600;
pub const DEFAULT_MAX_PROOF_BYTES: usize = 8192;
pub const DEFAULT_REPLAY_CACHE_SIZE: usize = 20_000;
pub const MAX_REPLAY_CACHE_SIZE: usize = 1_000_000;
/// Longest accepted `jti`.
pub const MAX_JTI_BYTES: usize = 1024;

/// The asymmetric algorithms a proof may use (RFC 9449 4.3 step 5).
pub fn asymmetric() -> AlgSet {
    AlgSet::of(&[
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ])
}

/// How proofs are checked (the `dpop` object of the authorization config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// Accepted distance of `iat` from now, in the past or the future.
    pub iat_window_seconds: u64,
    /// Accepted proof algorithms: a subset of [`asymmetric`].
    pub algorithms: AlgSet,
    /// Schemes accepted in `htu`. Empty: only the request's own `:scheme`. In a mesh
    /// where clients sign `http://` URLs that their sidecar upgrades to mTLS, list
    /// `["http", "https"]`.
    pub htu_schemes: Vec<String>,
    pub max_proof_bytes: usize,
    /// Entries of the per-worker replay cache.
    pub replay_cache_size: usize,
}

impl Default for DpopSettings {
    fn default() -> DpopSettings {
        DpopSettings {
            iat_window_seconds: DEFAULT_IAT_WINDOW_SECONDS,
            algorithms: asymmetric(),
            htu_schemes: Vec::new(),
            max_proof_bytes: DEFAULT_MAX_PROOF_BYTES,
            replay_cache_size: DEFAULT_REPLAY_CACHE_SIZE,
        }
    }
}

impl DpopSettings {
    /// The `algs` parameter of a `WWW-Authenticate: DPoP` challenge (RFC 9449 7.1),
    /// e.g. `ES256 EdDSA`.
    pub fn algs_param(&self) -> String {
        self.algorithms.iter().map(Alg::name).collect::<Vec<_>>().join(" ")
    }
}

/// Why a proof was refused. Each maps to a policy reason (see `policy::PolicyReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopError {
    /// No `DPoP` header.
    Missing,
    /// More than one `DPoP` header (or one with a comma: joined headers).
    Multiple,
    TooLarge,
    /// Not a compact JWS with JSON object header and payload.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Type,
    /// `alg` missing, `none`, symmetric, unknown or not allowed.
    Algorithm,
    /// `crit` present.
    Crit,
    /// `jwk` missing, not an object, of an unsupported type, or invalid.
    Jwk,
    /// `jwk` carries private key members.
    JwkPrivate,
    Signature,
    /// A required claim is missing or has the wrong type.
    Claims,
    /// `htm` is not the request method.
    Method,
    /// `htu` is not the request URL.
    Url,
    /// `iat` outside the window.
    IssuedAt,
    /// `ath` is not the hash of the access token.
    AccessTokenHash,
    /// The access token's `cnf.jkt` is not the proof key's thumbprint (or is absent).
    KeyBinding,
    /// The proof was already used.
    Replayed,
    /// The replay cache is full of live entries (fail closed).
    CacheFull,
}

impl DpopError {
    /// A short, stable, secret-free detail for logs and records.
    pub const fn detail(self) -> &'static str {
        match self {
            DpopError::Missing => "dpop_missing",
            DpopError::Multiple => "dpop_multiple",
            DpopError::TooLarge => "dpop_too_large",
            DpopError::Malformed => "dpop_malformed",
            DpopError::Type => "dpop_typ",
            DpopError::Algorithm => "dpop_alg",
            DpopError::Crit => "dpop_crit",
            DpopError::Jwk => "dpop_jwk",
            DpopError::JwkPrivate => "dpop_jwk_private",
            DpopError::Signature => "dpop_signature",
            DpopError::Claims => "dpop_claims",
            DpopError::Method => "dpop_htm",
            DpopError::Url => "dpop_htu",
            DpopError::IssuedAt => "dpop_iat",
            DpopError::AccessTokenHash => "dpop_ath",
            DpopError::KeyBinding => "dpop_jkt",
            DpopError::Replayed => "dpop_replayed",
            DpopError::CacheFull => "dpop_replay_cache_full",
        }
    }
}

/// The request a proof must be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub method: &'a str,
    /// `:scheme` (`http` / `https`).
    pub scheme: &'a str,
    /// `:authority` (or `host`).
    pub authority: &'a str,
    /// `:path`; its query and fragment are ignored.
    pub path: &'a str,
}

impl<'a> Target<'a> {
    /// Reads `:method`, `:scheme`, `:authority` (else `host`) and `:path`.
    pub fn from_request(req: &'a Request) -> Target<'a> {
        Target {
            method: req.header(":method").unwrap_or(""),
            scheme: req.header(":scheme").unwrap_or(""),
            authority: req.header(":authority").or_else(|| req.header("host")).unwrap_or(""),
            path: req.header(":path").unwrap_or(""),
        }
    }
}

/// A proof that passed [`verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof key (base64url SHA-256).
    pub jkt: String,
    pub jti: String,
    /// The normalized request URL the proof is for (the replay cache scope).
    pub htu: String,
    pub iat: f64,
    /// Until when the proof could pass the `iat` check: how long to remember it.
    pub expires_at: u64,
}

/// The single `DPoP` header of the request (RFC 9449 4.3 step 1).
pub fn proof_header(req: &Request) -> Result<&str, DpopError> {
    let mut values = req.header_values(DPOP_HEADER);
    let first = values.next().ok_or(DpopError::Missing)?;
    if values.next().is_some() || first.contains(',') {
        return Err(DpopError::Multiple);
    }
    Ok(first.trim_matches(|c| c == ' ' || c == '\t'))
}

/// Steps 2-10: verifies `proof` for `target`, bound to `access_token`, at `now`.
pub fn verify(
    settings: &DpopSettings,
    proof: &str,
    target: &Target<'_>,
    access_token: &str,
    now: u64,
) -> Result<Proof, DpopError> {
    verify_with(settings, proof, target, access_token, now, None)
}

/// [`verify`], with the worker's remembered proof keys.
pub fn verify_remembering(
    settings: &DpopSettings,
    proof: &str,
    target: &Target<'_>,
    access_token: &str,
    now: u64,
    keys: &mut ProofKeys,
) -> Result<Proof, DpopError> {
    verify_with(settings, proof, target, access_token, now, Some(keys))
}

fn verify_with(
    settings: &DpopSettings,
    proof: &str,
    target: &Target<'_>,
    access_token: &str,
    now: u64,
    keys: Option<&mut ProofKeys>,
) -> Result<Proof, DpopError> {
    if proof.len() > settings.max_proof_bytes {
        return Err(DpopError::TooLarge);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(DpopError::Malformed);
    };
    let header = object(h)?;
    let claims = object(p)?;
    let signature = b64::decode(s).ok_or(DpopError::Malformed)?;
    let signing_input = proof.get(..h.len() + 1 + p.len()).ok_or(DpopError::Malformed)?;

    match header.get("typ") {
        Some(Value::String(t)) if is_dpop_typ(t) => {}
        _ => return Err(DpopError::Type),
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => match Alg::parse(a) {
            AlgName::Known(alg) if asymmetric().contains(alg) && settings.algorithms.contains(alg) => alg,
            _ => return Err(DpopError::Algorithm),
        },
        _ => return Err(DpopError::Algorithm),
    };
    if header.contains_key("crit") {
        return Err(DpopError::Crit);
    }
    let jwk = match header.get("jwk") {
        Some(Value::Object(j)) => j,
        _ => return Err(DpopError::Jwk),
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::JwkPrivate);
    }
    let jkt = jwk_thumbprint(jwk).ok_or(DpopError::Jwk)?;
    let verified = match keys {
        Some(keys) => keys.verify(jwk, alg, signing_input.as_bytes(), &signature)?,
        None => public_key(jwk, Lifetime::OneShot)?.verify(alg, signing_input.as_bytes(), &signature),
    };
    if !verified {
        return Err(DpopError::Signature);
    }

    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_BYTES => j,
        _ => return Err(DpopError::Claims),
    };
    let (Some(Value::String(htm)), Some(Value::String(htu)), Some(Value::String(ath))) =
        (claims.get("htm"), claims.get("htu"), claims.get("ath"))
    else {
        return Err(DpopError::Claims);
    };
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_f64().ok_or(DpopError::Claims)?,
        _ => return Err(DpopError::Claims),
    };

    if htm != target.method {
        return Err(DpopError::Method);
    }
    let request_url = request_url(target.scheme, target.authority, target.path).ok_or(DpopError::Url)?;
    let proof_url = normalize_url(htu).ok_or(DpopError::Url)?;
    if !same_url(settings, &proof_url, &request_url) {
        return Err(DpopError::Url);
    }
    let window = settings.iat_window_seconds as f64;
    let now_f = now as f64;
    if !iat.is_finite() || iat < 0.0 || iat < now_f - window || iat > now_f + window {
        return Err(DpopError::IssuedAt);
    }
    if *ath != telemetry::token_hash(access_token) {
        return Err(DpopError::AccessTokenHash);
    }
    // Saturating float-to-int conversion; iat is finite and non-negative here.
    let expires_at = (iat.floor() as u64)
        .saturating_add(settings.iat_window_seconds)
        .saturating_add(1);
    Ok(Proof {
        jkt,
        jti: jti.clone(),
        htu: request_url,
        iat,
        expires_at,
    })
}

/// Steps 1-12: the request's proof, verified, bound to the token's `cnf.jkt`, and
/// recorded in the replay cache.
pub fn check(
    settings: &DpopSettings,
    req: &Request,
    access_token: &str,
    token_jkt: Option<&str>,
    cache: &mut ReplayCache,
    now: u64,
) -> Result<Proof, DpopError> {
    let header = proof_header(req)?;
    let target = Target::from_request(req);
    let proof = verify_remembering(settings, header, &target, access_token, now, cache.proof_keys())?;
    if token_jkt != Some(proof.jkt.as_str()) {
        return Err(DpopError::KeyBinding);
    }
    match cache.check_and_insert(ReplayCache::key(&proof.htu, &proof.jti), proof.expires_at, now) {
        Seen::Fresh => Ok(proof),
        Seen::Replayed => Err(DpopError::Replayed),
        Seen::Full => Err(DpopError::CacheFull),
    }
}

/// Members that only private JWKs carry (RFC 7518 6.2.2, 6.3.2; RFC 8037 2; `k` of
/// symmetric keys).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn object(segment: &str) -> Result<Map<String, Value>, DpopError> {
    let bytes = b64::decode(segment).ok_or(DpopError::Malformed)?;
    match json::parse_strict(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(DpopError::Malformed),
    }
}

fn is_dpop_typ(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.strip_prefix("application/").unwrap_or(&t) == "dpop+jwt"
}

/// How many proof keys one worker remembers.
pub const PROOF_KEYS: usize = 64;

/// The verification keys of recent proofs, per worker, remembered by their whole `jwk`
/// (every member, serialized: two JWKs that differ in any member, `use` or `alg` too, are
/// separate entries, so a remembered key decides exactly as a freshly parsed one would).
///
/// Building a key costs more than verifying with it (in V8: a P-256 key about 210 us, a
/// verification 85 us), and a client signs all its proofs with one key. EC and RSA keys
/// are kept from their first proof. An Ed25519 key is verified without its table the
/// first time (a key seen once stays cheap), and built with its table and kept the second
/// time. Bounded: at most [`PROOF_KEYS`] entries, the oldest goes first. Keys that fail to
/// parse are not remembered.
#[derive(Debug, Clone, Default)]
pub struct ProofKeys {
    /// `None`: an Ed25519 key seen once.
    slots: HashMap<String, Option<Key>>,
    order: VecDeque<String>,
    /// Verifications with a remembered key.
    pub hits: u64,
}

impl ProofKeys {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `signature` verifies over `input` with `alg` and the key of `jwk`.
    fn verify(
        &mut self,
        jwk: &Map<String, Value>,
        alg: Alg,
        input: &[u8],
        signature: &[u8],
    ) -> Result<bool, DpopError> {
        let id = Value::Object(jwk.clone()).to_string();
        let (key, keep) = match self.slots.get(&id) {
            Some(Some(key)) => {
                self.hits += 1;
                return Ok(key.verify(alg, input, signature));
            }
            Some(None) => (public_key(jwk, Lifetime::Lasting)?, true),
            None => {
                let key = public_key(jwk, Lifetime::OneShot)?;
                // Kept now unless it was built without its precomputation (Ed25519).
                let keep = key.is_precomputed();
                (key, keep)
            }
        };
        let verified = key.verify(alg, input, signature);
        if !self.slots.contains_key(&id) {
            while self.slots.len() >= PROOF_KEYS {
                match self.order.pop_front() {
                    Some(old) => {
                        self.slots.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(id.clone());
        }
        self.slots.insert(id, keep.then_some(key));
        Ok(verified)
    }
}

/// The verification key of an embedded public JWK, through the same JWK parser (and
/// key-size and curve rules) as the providers' key sets.
fn public_key(jwk: &Map<String, Value>, lifetime: Lifetime) -> Result<Key, DpopError> {
    match jwk.get("kty").and_then(Value::as_str) {
        Some("EC" | "RSA" | "OKP") => {}
        _ => return Err(DpopError::Jwk),
    }
    let set = serde_json::json!({ "keys": [Value::Object(jwk.clone())] });
    let parsed = JwkSet::parse_for(&set, "$.jwk", lifetime).map_err(|_| DpopError::Jwk)?;
    if !parsed.errors.is_empty() {
        return Err(DpopError::Jwk);
    }
    parsed.keys.into_iter().next().ok_or(DpopError::Jwk)
}

/// The RFC 7638 JWK SHA-256 thumbprint (base64url): SHA-256 over the required members
/// in lexicographic order, without whitespace. `None` when a required member is
/// missing or not a string, or the key type is not EC, RSA or OKP.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, m) in members.iter().enumerate() {
        let v = jwk.get(*m)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&serde_json::to_string(m).ok()?);
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(v).ok()?);
    }
    canonical.push('}');
    Some(b64::encode(&Sha256::digest(canonical.as_bytes())))
}

/// The request URL `scheme://authority/path`, normalized like an `htu`.
pub fn request_url(scheme: &str, authority: &str, path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    normalize_url(&format!("{scheme}://{authority}{path}"))
}

fn same_url(settings: &DpopSettings, proof: &str, request: &str) -> bool {
    if settings.htu_schemes.is_empty() {
        return proof == request;
    }
    match (proof.split_once("://"), request.split_once("://")) {
        (Some((ps, prest)), Some((_, rrest))) => {
            prest == rrest && settings.htu_schemes.iter().any(|s| s.eq_ignore_ascii_case(ps))
        }
        _ => false,
    }
}

/// Normalizes an absolute `scheme://authority/path` URL for comparison, dropping query
/// and fragment (RFC 9449 4.3 step 9): lowercase scheme and host, default port and
/// empty port removed, empty path as `/`, percent-encodings uppercased and unreserved
/// ones decoded, dot segments removed (RFC 3986 6.2.2, 6.2.3). `None` when it is not
/// such a URL (userinfo, non-ASCII or control characters, bad percent-encoding).
pub fn normalize_url(url: &str) -> Option<String> {
    let url = url.split('#').next().unwrap_or("");
    let url = url.split('?').next().unwrap_or("");
    let (scheme, rest) = url.split_once("://")?;
    let mut sb = scheme.bytes();
    if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        || !sb.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let authority = normalize_authority(&scheme, authority)?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        remove_dot_segments(&normalize_percent(path)?)
    };
    Some(format!("{scheme}://{authority}{path}"))
}

fn normalize_authority(scheme: &str, a: &str) -> Option<String> {
    if a.is_empty() || a.contains('@') || a.contains('%') || !a.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (host, port) = if a.starts_with('[') {
        let end = a.find(']')?;
        let after = a.get(end + 1..)?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        (a.get(..=end)?, port)
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 5 => {
            Some(p.parse::<u32>().ok().filter(|n| *n <= 65535)?)
        }
        Some(_) => return None,
    };
    let default = match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Some(match port {
        Some(n) if Some(n) != default => format!("{host}:{n}"),
        _ => host,
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Uppercases percent-encodings and decodes those of unreserved characters.
fn normalize_percent(path: &str) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if !b.is_ascii_graphic() {
            return None;
        }
        if b != b'%' {
            out.push(char::from(b));
            continue;
        }
        let hi = hex_val(bytes.next()?)?;
        let lo = hex_val(bytes.next()?)?;
        let v = (hi << 4) | lo;
        if is_unreserved(v) {
            out.push(char::from(v));
        } else {
            out.push('%');
            out.push(char::from(*HEX.get(usize::from(hi))?));
            out.push(char::from(*HEX.get(usize::from(lo))?));
        }
    }
    Some(out)
}

/// RFC 3986 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    let pop = |out: &mut String| {
        let cut = out.rfind('/').unwrap_or(0);
        out.truncate(cut);
    };
    while !input.is_empty() {
        if let Some(r) = input.strip_prefix("../") {
            input = r;
        } else if let Some(r) = input.strip_prefix("./") {
            input = r;
        } else if input.starts_with("/./") {
            input = input.get(2..).unwrap_or("");
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = input.get(3..).unwrap_or("");
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input
                .get(start..)
                .and_then(|s| s.find('/'))
                .map_or(input.len(), |i| i + start);
            out.push_str(input.get(..end).unwrap_or(""));
            input = input.get(end..).unwrap_or("");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn url_normalization() {
        let n = |s: &str| normalize_url(s);
        assert_eq!(
            n("https://Server.Example:443/a/../b/./c?q=1#f").unwrap(),
            "https://server.example/b/c"
        );
        assert_eq!(n("HTTP://a:80").unwrap(), "http://a/");
        assert_eq!(n("http://a:/x").unwrap(), "http://a/x");
        assert_eq!(n("http://a:8080/%7euser/%2f").unwrap(), "http://a:8080/~user/%2F");
        assert_eq!(n("https://[::1]:443/x").unwrap(), "https://[::1]/x");
        assert_eq!(n("https://[::1]:8443/x").unwrap(), "https://[::1]:8443/x");
        assert_eq!(n("https://a/%41%2e%2E/b").unwrap(), "https://a/A../b");
        assert_eq!(n("https://a/x/%2e%2e/y").unwrap(), "https://a/y");
        for bad in [
            "",
            "a",
            "/x",
            "https://",
            "https://u@a/",
            "https://a:b/",
            "https://a/%zz",
            "https://a/%4",
            "https://a/ b",
            "1http://a/",
            "https://a:999999/",
            "https://a:65536/",
            "https://a/é",
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dot_segments_rfc3986_examples() {
        // RFC 3986 5.2.4 examples.
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/.."), "/");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let mut no_e = jwk.clone();
        no_e.remove("e");
        assert_eq!(jwk_thumbprint(&no_e), None);
    }

    #[test]
    fn one_header_only() {
        let req =
            |hs: &[(&str, &str)]| Request::new(hs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect());
        assert_eq!(proof_header(&req(&[])), Err(DpopError::Missing));
        assert_eq!(
            proof_header(&req(&[("dpop", "a"), ("dpop", "b")])),
            Err(DpopError::Multiple)
        );
        assert_eq!(proof_header(&req(&[("dpop", "a, b")])), Err(DpopError::Multiple));
        assert_eq!(proof_header(&req(&[("dpop", " a ")])), Ok("a"));
    }
}
