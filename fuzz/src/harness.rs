//! What every fuzz target does with its input, and the invariants it checks.
//!
//! Each `pub fn <target>(data: &[u8])` feeds untrusted bytes to hopguard's public core API
//! and panics only when an invariant breaks (a panic inside hopguard is a finding too). The
//! structured targets read their input as a mode byte, a flags byte and `\n`-separated
//! lines; `seed_*` functions write inputs in the same shapes (see tests/fuzz_regressions.rs,
//! which generates the seed corpora and replays them and every crash on stable).
//!
//! Signed inputs are signed here with fixed keys (HS256, ES256, EdDSA) that the fixed
//! configuration trusts, so the fuzzer reaches the claim checks, revocation, policies,
//! DPoP and the credential removal, not only the parsers.
//!
//! This file is included with `#[path]` by a test crate: it has no crate-level attributes
//! and uses only crates the main crate also depends on.

use hopguard::algorithm::Alg;
use hopguard::config::{Config, LeakGuard, Location, Requirement};
use hopguard::decision::{self, Decision, Verdict};
use hopguard::dpop::{self, DpopSettings};
use hopguard::extractor::{self, Candidate};
use hopguard::jwks::{JwkSet, MAX_KEYS};
use hopguard::policy::{Connection, Policies, PolicyInput, TokenInput};
use hopguard::remote::{self, Fetched};
use hopguard::replay::ReplayCache;
use hopguard::request::{Mutation, Request};
use hopguard::revocation::MAX_ENTRIES;
use hopguard::{b64, json, leakguard, telemetry, token, verifier};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key};
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The fixed clock of every target (2030-03-17).
pub const NOW: u64 = 1_900_000_000;
/// The issuer of the fixed configuration's main provider.
pub const ISS: &str = "https://idp.fuzz";
/// The issuer of the second provider (a header of its own).
pub const OTHER_ISS: &str = "https://other.fuzz";

/// A fuzz target: bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name, for replaying corpora.
pub const TARGETS: [(&str, Target); 9] = [
    ("token", token),
    ("decide", decide),
    ("jwks", jwks),
    ("config", config),
    ("dpop", dpop),
    ("policy", policy),
    ("extract", extract),
    ("remote", remote),
    ("ed25519", ed25519),
];

// ---------------------------------------------------------------------------------------------
// Fixed keys and the fixed configuration
// ---------------------------------------------------------------------------------------------

/// A 2048-bit RSA public modulus (no private half here): the target of the
/// algorithm-confusion inputs (HS256 "signed" with the RSA public key).
pub const RSA_N: &str = concat!(
    "qVhMqhRMk_2--zAK7vp0sWGTOoIWdSg0YpO1pJezZLHMeCcUznmQ12OF03ycUFtw4p_VPClMU9ILz6Ob3J-5",
    "wwhE9lf-dT34fSpsz54gfK-cdbjrmi9-C-RPVfh9dHHdm7bVeNGCzo5dqEQLQDt1CJ3582gU9Ve8jItGht2Y",
    "aUkjxXQkEEqc2bjEDPpXShy4YOyatfSrBJp6VejdaMwPhrg8CL6ZnIjOHNg46FMPLZLJ8giPKBkBkWrxagC5",
    "FRn2DbKIn0kBfZ7LIXc4cny0waZ2HxXFwTcQHegKjGffD5Hpd6Td-PxX5jqfkZmyBbWMgyQ-ZyRr_KzVoyBF",
    "E5EGBw",
);

/// The signing keys the fixed configuration trusts, and a DPoP proof key.
pub struct Keys {
    pub hs: Vec<u8>,
    pub es: p256::ecdsa::SigningKey,
    pub ed: ed25519_dalek::SigningKey,
    /// Signs for the second provider.
    pub other: p256::ecdsa::SigningKey,
    /// DPoP proof keys (the client's), never in a JWKS.
    pub proof_ed: ed25519_dalek::SigningKey,
    pub proof_es: p256::ecdsa::SigningKey,
}

pub fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        hs: (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect(),
        es: p256_key(0x11),
        ed: ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]),
        other: p256_key(0x44),
        proof_ed: ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]),
        proof_es: p256_key(0x55),
    })
}

fn p256_key(byte: u8) -> p256::ecdsa::SigningKey {
    match p256::ecdsa::SigningKey::from_slice(&[byte; 32]) {
        Ok(k) => k,
        Err(e) => panic!("fixed P-256 key: {e}"),
    }
}

/// Which fixed key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Hs,
    Es,
    Ed,
    Other,
    ProofEd,
    ProofEs,
}

impl Signer {
    pub fn alg(self) -> &'static str {
        match self {
            Signer::Hs => "HS256",
            Signer::Es | Signer::Other | Signer::ProofEs => "ES256",
            Signer::Ed | Signer::ProofEd => "EdDSA",
        }
    }

    pub fn kid(self) -> &'static str {
        match self {
            Signer::Hs => "hs",
            Signer::Es => "es",
            Signer::Ed => "ed",
            Signer::Other => "other",
            Signer::ProofEd | Signer::ProofEs => "proof",
        }
    }

    /// The public JWK (the secret, for HMAC), without `kid` and `alg`.
    pub fn jwk(self) -> Value {
        let k = keys();
        let ec = |key: &p256::ecdsa::SigningKey| {
            let point = key.verifying_key().to_encoded_point(false);
            let bytes = point.as_bytes();
            json!({"kty": "EC", "crv": "P-256",
                   "x": b64::encode(bytes.get(1..33).unwrap_or(&[])),
                   "y": b64::encode(bytes.get(33..65).unwrap_or(&[]))})
        };
        match self {
            Signer::Hs => json!({"kty": "oct", "k": b64::encode(&k.hs)}),
            Signer::Es => ec(&k.es),
            Signer::Other => ec(&k.other),
            Signer::ProofEs => ec(&k.proof_es),
            Signer::Ed => json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.ed.verifying_key().as_bytes())}),
            Signer::ProofEd => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.proof_ed.verifying_key().as_bytes())})
            }
        }
    }

    /// The JWK as a provider's key set lists it: with `kid` and `alg`.
    pub fn jwk_with_kid(self) -> Value {
        let mut j = self.jwk();
        if let Some(o) = j.as_object_mut() {
            o.insert("kid".into(), json!(self.kid()));
            o.insert("alg".into(), json!(self.alg()));
        }
        j
    }

    /// RFC 7638 thumbprint of the public JWK.
    pub fn jkt(self) -> String {
        self.jwk()
            .as_object()
            .and_then(dpop::jwk_thumbprint)
            .unwrap_or_default()
    }

    pub fn sign_bytes(self, input: &[u8]) -> Vec<u8> {
        let k = keys();
        match self {
            Signer::Hs => Hs256.sign(&Hs256Key::new(&k.hs), input).as_bytes().to_vec(),
            Signer::Es => Es256.sign(&k.es, input).as_bytes().to_vec(),
            Signer::Other => Es256.sign(&k.other, input).as_bytes().to_vec(),
            Signer::ProofEs => Es256.sign(&k.proof_es, input).as_bytes().to_vec(),
            Signer::Ed => Ed25519.sign(&k.ed, input).as_bytes().to_vec(),
            Signer::ProofEd => Ed25519.sign(&k.proof_ed, input).as_bytes().to_vec(),
        }
    }

    /// A compact JWS with exactly this header and these claims.
    pub fn sign(self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64::encode(header.to_string().as_bytes()),
            b64::encode(claims.to_string().as_bytes())
        );
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64::encode(&sig))
    }
}

/// HS256 over `input` with an arbitrary secret (algorithm-confusion inputs).
pub fn hs256_with(secret: &[u8], input: &[u8]) -> Vec<u8> {
    Hs256.sign(&Hs256Key::new(secret), input).as_bytes().to_vec()
}

/// The fixed configuration of the `decide` target, as JSON.
pub fn config_json() -> Value {
    json!({
        "realm": "fuzz",
        "maxTokenBytes": 4096,
        "providers": [
            {
                "issuer": ISS,
                "name": "idp",
                "audiences": ["orders", "billing"],
                "jwks": {"keys": [
                    Signer::Hs.jwk_with_kid(),
                    Signer::Es.jwk_with_kid(),
                    Signer::Ed.jwk_with_kid(),
                    {"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": RSA_N, "e": "AQAB"}
                ]},
                "fromHeaders": [
                    {"name": "authorization", "prefix": "Bearer "},
                    {"name": "authorization", "prefix": "DPoP "}
                ],
                "fromCookies": ["session"],
                "fromParams": ["access_token"],
                "outputPayloadToHeader": "x-jwt-payload",
                "outputClaimToHeaders": [
                    {"header": "x-jwt-sub", "claim": "sub"},
                    {"header": "x-jwt-roles", "claim": "realm.roles"}
                ],
                "maxLifetimeSeconds": 86400
            },
            {
                "issuer": OTHER_ISS,
                "jwks": {"keys": [Signer::Other.jwk_with_kid()]},
                "fromHeaders": [{"name": "x-other-token", "prefix": ""}],
                "requireExpiration": false
            }
        ],
        "revocation": {"jtis": ["revoked-jti"], "subjects": ["revoked-sub"]},
        "telemetry": {"leakGuard": "strip", "hashSubject": true},
        "tokenCacheSize": 16,
        "authorization": {
            "dpop": {"mode": "ifBound", "replayCacheSize": 64},
            "policies": [
                {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
                {"name": "audit", "action": "AUDIT", "rules": [{"when": [{"key": "request.auth.claims[role]", "values": ["auditor"]}]}]},
                {"name": "orders", "action": "ALLOW", "rules": [
                    {"name": "read",
                     "to": [{"operation": {"methods": ["GET", "HEAD"], "paths": ["/orders/{*}", "/orders"]}}],
                     "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]},
                    {"name": "write", "from": [{"source": {"requestPrincipals": ["https://idp.fuzz/*"]}}],
                     "to": [{"operation": {"methods": ["POST"], "paths": ["/orders/{**}"]}}]},
                    {"name": "public", "to": [{"operation": {"paths": ["/public*"]}}]}
                ]}
            ]
        }
    })
}

/// The fixed configuration, parsed once.
pub fn fixed_config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| match Config::parse(config_json().to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("the fuzz harness's own configuration is refused: {e}"),
    })
}

/// Valid claims for the main provider.
pub fn default_claims() -> Value {
    json!({"iss": ISS, "aud": "orders", "sub": "alice", "iat": NOW - 10, "exp": NOW + 600,
           "jti": "j1", "scope": "orders:read", "realm": {"roles": ["reader", "writer"]}})
}

// ---------------------------------------------------------------------------------------------
// Input helpers
// ---------------------------------------------------------------------------------------------

/// `base` with the members of `line` (a JSON object) merged in; a `null` member removes the
/// key. A line that is not a JSON object leaves `base` as it is; `"!"` followed by JSON
/// replaces `base` whole with any JSON value (arrays, strings, duplicate keys as text...).
fn merged(base: Value, line: &str) -> Value {
    if let Some(raw) = line.strip_prefix('!') {
        return serde_json::from_str(raw).unwrap_or(Value::String(raw.to_owned()));
    }
    let Ok(Value::Object(over)) = serde_json::from_str::<Value>(line) else {
        return base;
    };
    let mut out = match base {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in over {
        if v.is_null() {
            out.remove(&k);
        } else {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// A compact JWS with a raw header and payload text (for duplicate-key inputs, which
/// `serde_json::Value` cannot hold).
fn sign_raw(signer: Signer, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
    let sig = signer.sign_bytes(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

/// Header or claims: a merged JSON value, or raw text after `=` (signed as is).
fn segment(base: Value, line: &str) -> String {
    match line.strip_prefix('=') {
        Some(raw) => raw.to_owned(),
        None => merged(base, line).to_string(),
    }
}

/// Reads a request: the first line `METHOD PATH` (defaults `GET /`), then `name: value`
/// header lines (names lowercased, as Envoy delivers them). `:authority` and `:scheme`
/// default to `api.fuzz` and `https`.
pub fn request_from<'a>(mut lines: impl Iterator<Item = &'a str>) -> Request {
    let first = lines.next().unwrap_or("");
    let (method, path) = match first.split_once(' ') {
        Some((m, p)) if !m.is_empty() => (m, p),
        _ => ("GET", if first.is_empty() { "/" } else { first }),
    };
    let mut headers = vec![
        (":method".to_owned(), method.to_owned()),
        (":path".to_owned(), path.to_owned()),
    ];
    for line in lines.take(256) {
        let (name, value) = match line.strip_prefix(':') {
            Some(rest) => match rest.split_once(':') {
                Some((n, v)) => (format!(":{n}"), v),
                None => continue,
            },
            None => match line.split_once(':') {
                Some((n, v)) => (n.to_owned(), v),
                None => continue,
            },
        };
        let name = name.trim().to_ascii_lowercase();
        if name == ":method" || name == ":path" {
            continue;
        }
        headers.push((name, value.trim_start_matches([' ', '\t']).to_owned()));
    }
    for (name, default) in [(":authority", "api.fuzz"), (":scheme", "https")] {
        if !headers.iter().any(|(n, _)| n == name) {
            headers.push((name.to_owned(), default.to_owned()));
        }
    }
    Request::new(headers)
}

/// The request after the shell applies `mutations` in order.
pub fn apply(req: &Request, mutations: &[Mutation]) -> Request {
    let mut headers = req.headers.clone();
    for m in mutations {
        match m {
            Mutation::Remove(n) => headers.retain(|(k, _)| k != n),
            Mutation::Add(n, v) => headers.push((n.clone(), v.clone())),
            Mutation::Set(n, v) => {
                headers.retain(|(k, _)| k != n);
                headers.push((n.clone(), v.clone()));
            }
        }
    }
    Request::new(headers)
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (data.get(..i).unwrap_or(&[]), data.get(i + 1..).unwrap_or(&[])),
        None => (data, &[]),
    }
}

fn path_of(req: &Request) -> String {
    let p = req.path();
    p.split(['?', '#']).next().unwrap_or("/").to_owned()
}

// ---------------------------------------------------------------------------------------------
// token: compact JWS parsing
// ---------------------------------------------------------------------------------------------

/// Input: any bytes, as a token (lossy UTF-8 too).
pub fn token(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        check_token(s);
    }
    check_token(&text(data));
}

fn check_token(s: &str) {
    let Ok(jws) = token::parse(s) else {
        return;
    };
    assert!(s.starts_with(jws.signing_input), "signing input is not a prefix");
    assert_eq!(
        jws.signing_input.matches('.').count(),
        1,
        "signing input is not header.payload"
    );
    assert!(jws.signing_input.ends_with(jws.payload_b64));
    assert!(
        Alg::ALL.contains(&jws.alg),
        "parsed an algorithm outside the 13 supported"
    );
    let header = s.split('.').next().and_then(b64::decode);
    let header = header.and_then(|h| json::parse_strict(&h).ok());
    assert!(
        header.as_ref().and_then(|h| h.get("crit")).is_none(),
        "a header with crit was accepted"
    );
}

// ---------------------------------------------------------------------------------------------
// decide: the whole decision on a request built from the input
// ---------------------------------------------------------------------------------------------

/// Input: `[mode, flags]` then lines: token header, token claims, DPoP proof claims, then the
/// request (`METHOD PATH`, headers).
///
/// mode % 5: 0 the request as written (tokens are whatever its lines carry); 1 HS256, 2
/// ES256, 3 EdDSA: a token signed by the trusted key over the merged header/claims; 4 ES256
/// plus a DPoP proof by a client key. flags & 3 picks where the token goes (Bearer header,
/// DPoP scheme, `session` cookie, `access_token` parameter); flags & 4 binds the token to the
/// proof key (`cnf.jkt`); flags & 8 signs with the second provider's key instead.
pub fn decide(data: &[u8]) {
    let (mode, flags, rest) = match data {
        [m, f, rest @ ..] => (*m, *f, rest),
        [m] => (*m, 0, &[][..]),
        [] => return,
    };
    let t = text(rest);
    let mut lines = t.split('\n');
    let header_line = lines.next().unwrap_or("");
    let claims_line = lines.next().unwrap_or("");
    let proof_line = lines.next().unwrap_or("");
    let mut req = request_from(lines);
    let mode = mode % 5;
    let token = if mode == 0 {
        None
    } else {
        let signer = match (mode, flags & 8 != 0) {
            (_, true) => Signer::Other,
            (1, _) => Signer::Hs,
            (3, _) => Signer::Ed,
            _ => Signer::Es,
        };
        let header = segment(
            json!({"alg": signer.alg(), "kid": signer.kid(), "typ": "JWT"}),
            header_line,
        );
        let mut claims = default_claims();
        if flags & 4 != 0 {
            claims["cnf"] = json!({"jkt": Signer::ProofEs.jkt()});
        }
        Some(sign_raw(signer, &header, &segment(claims, claims_line)))
    };
    if let Some(t) = &token {
        match flags & 3 {
            0 => req.headers.push(("authorization".into(), format!("Bearer {t}"))),
            1 => req.headers.push(("authorization".into(), format!("DPoP {t}"))),
            2 => req.headers.push(("cookie".into(), format!("session={t}"))),
            _ => {
                let path = req.path().to_owned();
                let sep = if path.contains('?') { '&' } else { '?' };
                if let Some(p) = req.headers.iter_mut().find(|(n, _)| n == ":path") {
                    p.1 = format!("{path}{sep}access_token={t}");
                }
            }
        }
        if mode == 4 {
            let htu = format!(
                "{}://{}{}",
                req.header(":scheme").unwrap_or("https"),
                req.header(":authority").unwrap_or(""),
                path_of(&req)
            );
            let claims = json!({"jti": format!("p-{}", rest.len()), "htm": req.header(":method").unwrap_or("GET"),
                                "htu": htu, "iat": NOW, "ath": telemetry::token_hash(t)});
            let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": Signer::ProofEs.jwk()});
            let proof = sign_raw(Signer::ProofEs, &header.to_string(), &segment(claims, proof_line));
            req.headers.push(("dpop".into(), proof));
        }
    }
    let cfg = fixed_config();
    let d = decision::decide(cfg, &req, NOW);
    check_decision(cfg, &req, &d, true);
}

/// Invariants of every decision. `strict`: the fixed configuration (no forwarding, leak
/// guard `strip`, no dry run, no custom denials).
fn check_decision(cfg: &Config, req: &Request, d: &Decision, strict: bool) {
    let record = d.record.to_json().to_string();
    match &d.verdict {
        Verdict::Wait(w) => panic!("decide() with inline keys only asked to wait: {w:?}"),
        Verdict::Deny(denial) => {
            let reason = d.reason.unwrap_or_else(|| panic!("a denial without a reason: {d:?}"));
            if strict {
                assert!(
                    matches!(denial.status, 400 | 401 | 403 | 503),
                    "status {} for {}",
                    denial.status,
                    reason.code()
                );
                let body: Value = serde_json::from_str(&denial.body)
                    .unwrap_or_else(|e| panic!("denial body is not JSON ({e}): {}", denial.body));
                assert_eq!(body["reason"], reason.code(), "body reason");
                assert_eq!(body["status"], denial.status, "body status");
            }
            assert!(
                denial
                    .headers
                    .iter()
                    .all(|(n, v)| !n.is_empty() && !v.contains(['\r', '\n', '\0'])),
                "unsafe response header: {:?}",
                denial.headers
            );
        }
        Verdict::Allow => {}
    }
    let before = extractor::extract(&cfg.locations, req);
    let after = apply(req, &d.mutations);
    // Header values the shell writes must be writable (Envoy refuses CR, LF and NUL).
    for m in &d.mutations {
        if let Mutation::Add(n, v) | Mutation::Set(n, v) = m {
            // Characters Envoy never delivers may be carried over from the same header.
            let inherited = req
                .headers
                .iter()
                .any(|(hn, hv)| hn == n && hv.contains(['\r', '\n', '\0']));
            assert!(
                inherited || !v.contains(['\r', '\n', '\0']),
                "hopguard writes a header {n} with a control character: {v:?}"
            );
        }
    }
    if !strict {
        return;
    }
    // The credential never goes upstream (or into the access log, on refusals).
    let left = extractor::extract(&cfg.locations, &after);
    assert!(
        left.is_empty(),
        "credential left in the request after the mutations: {left:?}\nrequest: {:?}\nmutations: {:?}",
        req.headers,
        d.mutations
    );
    // With leakGuard strip, no leaked credential goes upstream either.
    let leaks = leakguard::scan(cfg, &after);
    assert!(
        leaks.kinds.is_empty(),
        "leak guard strip left {:?} in the request\nrequest: {:?}\nmutations: {:?}\nafter: {:?}",
        leaks.kinds,
        req.headers,
        d.mutations,
        after.headers
    );
    // Headers hopguard writes are never the client's.
    for h in cfg.output_headers() {
        for v in after.header_values(h) {
            assert!(
                d.mutations
                    .iter()
                    .any(|m| matches!(m, Mutation::Set(n, x) if n == h && x == v)),
                "client-supplied {h}: {v:?} reached upstream"
            );
        }
    }
    if d.verdict == Verdict::Allow && cfg.requirement == Requirement::Required {
        let [one] = before.as_slice() else {
            panic!("allowed with {} tokens: {before:?}", before.len());
        };
        assert!(
            verifier::verify(cfg, one.location, &one.token, NOW).is_ok(),
            "allowed a token the verifier refuses: {:?}",
            verifier::verify(cfg, one.location, &one.token, NOW).err()
        );
        assert!(d.reason.is_none(), "allowed with a reason: {:?}", d.reason);
    }
    // The decision record never carries the token (only its fingerprint).
    for c in &before {
        let elsewhere = path_of(req).contains(&c.token)
            || req
                .headers
                .iter()
                .any(|(n, v)| !n.starts_with(':') && n != "authorization" && n != "cookie" && v.contains(&c.token));
        if c.token.len() >= 24 && !elsewhere {
            assert!(!record.contains(&c.token), "the decision record carries the token");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jwks: JWK Set parsing and verification with whatever keys it yields
// ---------------------------------------------------------------------------------------------

/// Input: JSON (a JWK Set), optionally `\0` and signature bytes to verify with every key.
pub fn jwks(data: &[u8]) {
    let (doc, sig) = split_nul(data);
    let Ok(v) = json::parse_strict(doc) else {
        return;
    };
    let Ok(set) = JwkSet::parse(&v, "$") else {
        return;
    };
    assert!(set.keys.len() <= MAX_KEYS, "more than {MAX_KEYS} keys accepted");
    for k in &set.keys {
        assert!(!k.algs.is_empty(), "a key with no algorithm");
        for alg in k.algs.iter() {
            let _ = k.verify(alg, b"eyJhbGciOiJub25lIn0.e30", sig);
        }
        // A key never verifies an algorithm it is not pinned to.
        for alg in Alg::ALL {
            if !k.algs.contains(alg) {
                assert!(
                    !k.verify(alg, b"x.y", sig),
                    "key verified {alg:?} outside its pinned set"
                );
            }
        }
    }
    // The remote handler reads the same bytes the same way.
    let remote = remote::jwks_response(200, &[], doc);
    assert_eq!(
        remote.is_ok(),
        !set.keys.is_empty(),
        "remote handler disagrees with the parser"
    );
}

// ---------------------------------------------------------------------------------------------
// config: plugin configuration parsing, then decisions under whatever it accepts
// ---------------------------------------------------------------------------------------------

/// Input: the plugin configuration bytes.
pub fn config(data: &[u8]) {
    let Ok(cfg) = Config::parse(data) else {
        return;
    };
    assert!(!cfg.providers.is_empty(), "a configuration without providers");
    let _ = telemetry::metrics_of(&cfg);
    let _ = cfg.output_headers().count();
    let t = Signer::Es.sign(
        &json!({"alg": "ES256", "kid": "es"}),
        &json!({"iss": ISS, "sub": "a", "exp": NOW + 60}),
    );
    let requests = [
        request_from(["GET /".to_owned()].iter().map(String::as_str)),
        request_from(
            [
                "POST /orders/1?access_token=x".to_owned(),
                format!("authorization: Bearer {t}"),
                format!("cookie: a=b; session={t}"),
                "dpop: x.y.z".to_owned(),
            ]
            .iter()
            .map(String::as_str),
        ),
    ];
    for req in &requests {
        let d = decision::decide(&cfg, req, NOW);
        check_decision(&cfg, req, &d, false);
    }
}

// ---------------------------------------------------------------------------------------------
// dpop: RFC 9449 proofs
// ---------------------------------------------------------------------------------------------

/// Input: `[mode, flags]` then lines: proof header (merged), proof claims (merged), the
/// request (`METHOD URL`: scheme, authority and path are taken from the URL), the token's
/// `cnf.jkt` (empty: the proof key's thumbprint).
///
/// mode % 4: 0 the proof header line is the raw proof; 1 signed by an Ed25519 client key; 2
/// by a P-256 client key; 3 signed by the P-256 key while the header carries the Ed25519 key.
/// flags & 1 accepts both `http` and `https` in `htu`; flags & 2 allows only ES256.
pub fn dpop(data: &[u8]) {
    let (mode, flags, rest) = match data {
        [m, f, rest @ ..] => (*m, *f, rest),
        _ => return,
    };
    let t = text(rest);
    let mut lines = t.split('\n');
    let header_line = lines.next().unwrap_or("");
    let claims_line = lines.next().unwrap_or("");
    let target_line = lines.next().unwrap_or("GET https://api.fuzz/orders/1");
    let jkt_line = lines.next().unwrap_or("");
    let (method, url) = target_line.split_once(' ').unwrap_or(("GET", target_line));
    let (scheme, after) = url.split_once("://").unwrap_or(("https", url));
    let (authority, path) = match after.find('/') {
        Some(i) => (after.get(..i).unwrap_or(""), after.get(i..).unwrap_or("/")),
        None => (after, "/"),
    };
    let access_token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    let (signer, jwk_of) = match mode % 4 {
        1 => (Signer::ProofEd, Signer::ProofEd),
        3 => (Signer::ProofEs, Signer::ProofEd),
        _ => (Signer::ProofEs, Signer::ProofEs),
    };
    let proof = if mode % 4 == 0 {
        header_line.to_owned()
    } else {
        let header = segment(
            json!({"typ": "dpop+jwt", "alg": signer.alg(), "jwk": jwk_of.jwk()}),
            header_line,
        );
        let claims = json!({"jti": "fuzz", "htm": method, "htu": format!("{scheme}://{authority}{path}"),
                            "iat": NOW, "ath": telemetry::token_hash(access_token)});
        sign_raw(signer, &header, &segment(claims, claims_line))
    };
    let req = Request::new(vec![
        (":method".into(), method.into()),
        (":scheme".into(), scheme.into()),
        (":authority".into(), authority.into()),
        (":path".into(), path.into()),
        ("dpop".into(), proof.clone()),
    ]);
    let mut settings = DpopSettings::default();
    if flags & 1 != 0 {
        settings.htu_schemes = vec!["http".into(), "https".into()];
    }
    if flags & 2 != 0 {
        settings.algorithms = hopguard::algorithm::AlgSet::of(&[Alg::ES256]);
    }
    let jkt = if jkt_line.is_empty() {
        jwk_of.jkt()
    } else {
        jkt_line.to_owned()
    };
    let mut cache = ReplayCache::new(8);
    let first = dpop::check(&settings, &req, access_token, Some(&jkt), &mut cache, NOW);
    let second = dpop::check(&settings, &req, access_token, Some(&jkt), &mut cache, NOW);
    assert!(
        !(first.is_ok() && second.is_ok()),
        "the same proof passed twice: {first:?}"
    );
    if let Ok(p) = &first {
        assert!(mode % 4 != 3, "a proof signed by another key than its jwk passed");
        assert_eq!(p.jkt, jkt, "bound to another key");
        assert!(
            p.iat.is_finite() && (p.iat - NOW as f64).abs() <= settings.iat_window_seconds as f64,
            "iat outside the window"
        );
    }
    // URL normalization is idempotent.
    for u in [url, target_line, header_line] {
        if let Some(n) = dpop::normalize_url(u) {
            assert_eq!(
                dpop::normalize_url(&n).as_deref(),
                Some(n.as_str()),
                "normalize_url is not idempotent on {u:?}"
            );
        }
    }
    if let Ok(Value::Object(h)) = serde_json::from_str::<Value>(header_line) {
        if let Some(Value::Object(j)) = h.get("jwk") {
            let _ = dpop::jwk_thumbprint(j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// policy: the authorization section, parsed and evaluated
// ---------------------------------------------------------------------------------------------

/// Input: the `authorization` JSON, `\0`, then lines: token claims (a JSON object; anything
/// else means no token), `METHOD PATH`, peer SPIFFE ID, peer certificate SHA-256 (hex), then
/// request headers.
pub fn policy(data: &[u8]) {
    let (section, rest) = split_nul(data);
    let Ok(v) = json::parse_strict(section) else {
        return;
    };
    let Ok(policies) = Policies::parse(&v, "$.authorization") else {
        return;
    };
    let t = text(rest);
    let mut lines = t.split('\n');
    let claims_line = lines.next().unwrap_or("");
    let request_line = lines.next().unwrap_or("GET /");
    let peer = lines.next().unwrap_or("");
    let cert = lines.next().unwrap_or("");
    let req = request_from(std::iter::once(request_line).chain(lines));
    let claims = match serde_json::from_str::<Value>(claims_line) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    let connection = Connection {
        peer_uri_san: (!peer.is_empty()).then(|| peer.to_owned()),
        peer_cert_sha256: (!cert.is_empty()).then(|| cert.to_owned()),
        destination_port: Some(443),
        sni: Some("api.fuzz".into()),
        ..Connection::default()
    };
    let presentation = match req.header("authorization") {
        Some(a) if a.len() > 5 && a.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("dpop ")) => {
            hopguard::binding::Presentation::Dpop
        }
        _ => hopguard::binding::Presentation::Bearer,
    };
    let raw = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    let input = PolicyInput {
        request: &req,
        connection: &connection,
        token: claims.as_ref().map(|c| TokenInput {
            raw,
            claims: c,
            presentation,
        }),
        now: NOW,
    };
    let capacity = policies.dpop.replay_cache_size.min(64);
    let a = policies.evaluate(&input, &mut ReplayCache::new(capacity));
    let b = policies.evaluate(&input, &mut ReplayCache::new(capacity));
    assert_eq!(a.allowed(), b.allowed(), "evaluation is not deterministic");
    if policies.policies.is_empty() && claims.is_none() {
        assert!(
            a.allowed(),
            "no policies and no token, yet refused: {:?}",
            a.verdict.denial
        );
    }
}

// ---------------------------------------------------------------------------------------------
// extract: finding tokens and taking them out again
// ---------------------------------------------------------------------------------------------

/// The locations of the `extract` target.
pub fn extract_locations() -> Vec<Location> {
    let header = |name: &str, prefix: &str| Location::Header {
        name: name.into(),
        prefix: prefix.into(),
    };
    vec![
        header("authorization", "Bearer "),
        header("authorization", "DPoP "),
        header("x-token", ""),
        header("x-api-key", "Token "),
        Location::Param("access_token".into()),
        Location::Param("id_token".into()),
        Location::Cookie("session".into()),
        Location::Cookie("__Host-token".into()),
    ]
}

/// Input: a request (`METHOD PATH`, then headers).
pub fn extract(data: &[u8]) {
    let t = text(data);
    let req = request_from(t.split('\n'));
    let locations = extract_locations();
    let found = extractor::extract(&locations, &req);
    let all: Vec<&Candidate> = found.iter().collect();
    let after = apply(&req, &extractor::removal(&req, &all));
    let left = extractor::extract(&locations, &after);
    assert!(
        left.is_empty(),
        "tokens left after removing all: {left:?}\nrequest: {:?}\nafter: {:?}",
        req.headers,
        after.headers
    );
    // Removal takes out the tokens and nothing else: other query pieces and cookies stay.
    let kept_pieces = |r: &Request| -> Vec<String> {
        r.path()
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(q))
            .map(|q| q.split('&').filter(|p| !p.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let token_pieces: Vec<usize> = found
        .iter()
        .filter_map(|c| match c.spot {
            extractor::Spot::Param { nth } => Some(nth),
            _ => None,
        })
        .collect();
    if !token_pieces.is_empty() {
        let original: Vec<String> = req
            .path()
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(q))
            .map(|q| {
                q.split('&')
                    .enumerate()
                    .filter(|(i, p)| !token_pieces.contains(i) && !p.is_empty())
                    .map(|(_, p)| p.to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            kept_pieces(&after),
            original,
            "query pieces other than the token changed"
        );
    }
    for (name, value) in &req.headers {
        let touched = name == ":path"
            || name == "cookie"
            || locations
                .iter()
                .any(|l| matches!(l, Location::Header { name: n, .. } if n == name));
        if !touched {
            assert!(
                after.headers.iter().any(|(n, v)| n == name && v == value),
                "unrelated header {name} changed"
            );
        }
    }
    // Removing one candidate never creates a new one.
    if let Some(first) = found.first() {
        let after_one = apply(&req, &extractor::removal(&req, &[first]));
        let again = extractor::extract(&locations, &after_one);
        assert!(again.len() < found.len(), "removing one token did not reduce the count");
        for c in &again {
            assert!(
                found.iter().any(|f| f.token == c.token),
                "removal created a token: {c:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// remote: what the identity provider and the revocation service send back
// ---------------------------------------------------------------------------------------------

/// Input: `[kind, status]`, then `name: value` header lines up to an empty line, then the
/// body. kind % 5: JWKS, discovery, revocation list, `Cache-Control` only, a URI for
/// [`remote::Target`] (the body's first line). status picks 200, 304, 404, 500, 503, or
/// the byte itself.
pub fn remote(data: &[u8]) {
    let (kind, status, rest) = match data {
        [k, s, rest @ ..] => (*k, *s, rest),
        _ => return,
    };
    let status = match status % 8 {
        0..=2 => 200,
        3 => 304,
        4 => 404,
        5 => 500,
        6 => 503,
        _ => u16::from(status),
    };
    let mut headers = Vec::new();
    let mut body = rest;
    while let Some(end) = body.iter().position(|b| *b == b'\n') {
        let line = body.get(..end).unwrap_or(&[]);
        body = body.get(end + 1..).unwrap_or(&[]);
        if line.is_empty() || headers.len() >= 64 {
            break;
        }
        let line = text(line);
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    match kind % 5 {
        0 => {
            if let Ok(Fetched::Fresh { doc, .. }) = remote::jwks_response(status, &headers, body) {
                assert!(status == 200, "keys accepted from a {status}");
                assert!(
                    !doc.keys.is_empty() && doc.keys.len() <= MAX_KEYS,
                    "{} keys",
                    doc.keys.len()
                );
            }
        }
        1 => {
            if let Ok(uri) = remote::discovery_response(status, body, ISS) {
                assert!(status == 200, "discovery accepted from a {status}");
                assert!(
                    uri.starts_with("https://") || uri.starts_with("http://"),
                    "jwks_uri {uri:?}"
                );
                let _ = remote::Target::new("idp", &uri);
            }
        }
        2 => match remote::revocation_response(status, &headers, body) {
            Ok(Fetched::Fresh { doc, .. }) => {
                assert!(status == 200, "list accepted from a {status}");
                assert!(doc.len() <= MAX_ENTRIES, "{} entries", doc.len());
            }
            Ok(Fetched::NotModified) => assert_eq!(status, 304),
            Err(_) => {}
        },
        3 => {
            let _ = remote::max_age(&headers);
        }
        _ => {
            let uri = text(body);
            let uri = uri.lines().next().unwrap_or("");
            if let Ok(t) = remote::Target::new("idp", uri) {
                assert!(
                    !t.authority.is_empty() && !t.authority.contains('@'),
                    "authority {:?}",
                    t.authority
                );
                assert!(t.path.starts_with('/'), "path {:?}", t.path);
                assert!(!t.path.contains('#'), "fragment sent: {:?}", t.path);
                let _ = t.headers(Some("\"e\""));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seed inputs (written by tests/fuzz_regressions.rs)
// ---------------------------------------------------------------------------------------------

/// A `decide` input.
pub fn seed_decide(mode: u8, flags: u8, header: &str, claims: &str, proof: &str, request: &[&str]) -> Vec<u8> {
    let mut out = vec![mode, flags];
    out.extend_from_slice(format!("{header}\n{claims}\n{proof}\n{}", request.join("\n")).as_bytes());
    out
}

/// A `dpop` input.
pub fn seed_dpop(mode: u8, flags: u8, header: &str, claims: &str, target: &str, jkt: &str) -> Vec<u8> {
    let mut out = vec![mode, flags];
    out.extend_from_slice(format!("{header}\n{claims}\n{target}\n{jkt}").as_bytes());
    out
}

/// A `policy` input.
pub fn seed_policy(section: &Value, claims: &str, request: &[&str]) -> Vec<u8> {
    let mut out = section.to_string().into_bytes();
    out.push(0);
    out.extend_from_slice(claims.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(request.join("\n").as_bytes());
    out
}

/// A `remote` input.
pub fn seed_remote(kind: u8, status: u8, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, status];
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Signs `claims` for the main provider with `signer` (seeds and tests).
pub fn signed(signer: Signer, claims: &Value) -> String {
    signer.sign(&json!({"alg": signer.alg(), "kid": signer.kid(), "typ": "JWT"}), claims)
}

/// The config's RSA public JWK (for seeds).
pub fn rsa_jwk() -> Value {
    json!({"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": RSA_N, "e": "AQAB"})
}

/// A JWS with raw segments (seeds).
pub fn raw_jws(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64::encode(header.as_bytes()),
        b64::encode(payload.as_bytes()),
        b64::encode(sig)
    )
}

/// Checks that `LeakGuard` is `Strip` in the fixed config (a guard for the invariant above).
pub fn fixed_config_strips_leaks() -> bool {
    fixed_config().telemetry.leak_guard == LeakGuard::Strip
}

// ---------------------------------------------------------------------------------------------
// ed25519: hopguard's Ed25519 arithmetic against curve25519-dalek / ed25519-dalek
// ---------------------------------------------------------------------------------------------

/// Input: 32 bytes of key, 32 of `R`, 32 of `S`, then the message. Invariants: hopguard
/// accepts exactly the keys `ed25519-dalek` accepts; for an accepted key, the commitment
/// `[S]B - [k]A` hopguard computes is curve25519-dalek's (none when `S >= l`); the verdicts
/// on `R || S` (and on a signature whose `R` is that commitment, which passes exactly when
/// the commitment of the new `R` is itself) agree with `ed25519-dalek`, with and without the
/// key's table.
pub fn ed25519(data: &[u8]) {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::Scalar;
    use ed25519_dalek::Verifier;
    use hopguard::ed25519::Ed25519Key;
    use sha2::{Digest, Sha512};
    let (Some(key), Some(r), Some(s)) = (
        data.get(..32).and_then(|b| <[u8; 32]>::try_from(b).ok()),
        data.get(32..64).and_then(|b| <[u8; 32]>::try_from(b).ok()),
        data.get(64..96).and_then(|b| <[u8; 32]>::try_from(b).ok()),
    ) else {
        return;
    };
    let msg = data.get(96..).unwrap_or(&[]);
    let reference = ed25519_dalek::VerifyingKey::from_bytes(&key).ok();
    let (mine, one_shot) = (Ed25519Key::from_bytes(&key), Ed25519Key::one_shot(&key));
    assert_eq!(mine.is_some(), reference.is_some(), "key acceptance differs");
    assert_eq!(
        one_shot.is_some(),
        reference.is_some(),
        "one-shot key acceptance differs"
    );
    let (Some(mine), Some(one_shot), Some(reference)) = (mine, one_shot, reference) else {
        return;
    };
    let commitment = |r: &[u8; 32]| -> Option<[u8; 32]> {
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
        let a = CompressedEdwardsY(key).decompress()?;
        let mut h = Sha512::new();
        h.update(r);
        h.update(key);
        h.update(msg);
        let mut wide = [0u8; 64];
        wide.copy_from_slice(&h.finalize());
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        Some(
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s)
                .compress()
                .to_bytes(),
        )
    };
    let want = commitment(&r);
    assert_eq!(mine.commitment(&r, &s, msg), want, "commitment differs");
    assert_eq!(one_shot.commitment(&r, &s, msg), want, "commitment differs (one-shot)");
    for r in [Some(r), want].into_iter().flatten() {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&s);
        let expected = reference
            .verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok();
        assert_eq!(mine.verify(msg, &sig), expected, "verdict differs (table)");
        assert_eq!(one_shot.verify(msg, &sig), expected, "verdict differs (one-shot)");
    }
}
