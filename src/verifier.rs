//! Verifies one token for one request: provider by `iss`, key pinned by `kid`/`alg`,
//! signature, then the registered claims. Time is an argument (`now`, seconds since
//! the epoch), so every rule is testable without a clock.
//!
//! Order: structure, then issuer (which keys), then signature, and only then the
//! claims. A token whose signature fails is reported as such, whatever its claims say:
//! claims of an unverified token mean nothing.

use crate::algorithm::Alg;
use crate::config::{Config, Provider};
use crate::key::Key;
use crate::reason::Reason;
use crate::snapshot::{LiveKeys, Snapshot};
use crate::token::{self, Jws};
use serde_json::{Map, Value};

/// A token that passed every check.
#[derive(Debug)]
pub struct Verified<'t> {
    pub provider: usize,
    /// Index of the key that verified it, in the provider's key list.
    pub key: usize,
    pub jws: Jws<'t>,
}

/// Why a token failed, and which provider (if one was identified) it was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub provider: Option<usize>,
}

impl From<Reason> for Failure {
    fn from(reason: Reason) -> Failure {
        Failure { reason, provider: None }
    }
}

/// Why verification could not finish yet: the provider's remote keys are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No keys were fetched yet.
    FirstKeys { provider: usize },
    /// The token's `kid` (or `alg`) is unknown: a refetch might bring its key.
    UnknownKid { provider: usize },
    /// The remote revocation list (fail-closed) was not fetched yet.
    RevocationList,
}

/// Verification stopped: a failure, or a wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Fail(Failure),
    Wait(Wait),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Fail(f)
    }
}

impl From<Reason> for Stop {
    fn from(r: Reason) -> Stop {
        Stop::Fail(r.into())
    }
}

/// Verifies `token`, found at `location` (an index into `cfg.locations`), at time `now`,
/// with inline keys only (remote providers count as not fetched, and nothing waits).
pub fn verify<'t>(cfg: &Config, location: usize, token: &'t str, now: u64) -> Result<Verified<'t>, Failure> {
    match verify_live(cfg, &Snapshot::new(cfg), location, token, now, false) {
        Ok(v) => Ok(v),
        Err(Stop::Fail(f)) => Err(f),
        Err(Stop::Wait(_)) => Err(Reason::KeysUnavailable.into()),
    }
}

/// Verifies with the worker's live keys. With `may_wait`, a remote provider without
/// keys, or without the token's `kid`, asks the caller to wait for a fetch; without it,
/// those are `keys_unavailable` and `key_not_found`.
pub fn verify_live<'t>(
    cfg: &Config,
    snap: &Snapshot,
    location: usize,
    token: &'t str,
    now: u64,
    may_wait: bool,
) -> Result<Verified<'t>, Stop> {
    if token.len() > cfg.max_token_bytes {
        return Err(Reason::TokenTooLarge.into());
    }
    let jws = token::parse(token)?;
    let iss = match jws.claims.get("iss") {
        None => return Err(Reason::IssuerMissing.into()),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Reason::ClaimInvalid.into()),
    };
    let (index, provider) = cfg
        .providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.issuer == iss && p.locations.contains(&location))
        .ok_or(Stop::from(Reason::IssuerUnknown))?;
    let fail = |reason| {
        Stop::Fail(Failure {
            reason,
            provider: Some(index),
        })
    };

    let keys: &[Key] = match snap.keys.get(index) {
        None | Some(LiveKeys::Inline) => &provider.keys,
        Some(LiveKeys::Pending) if may_wait => return Err(Stop::Wait(Wait::FirstKeys { provider: index })),
        Some(LiveKeys::Pending) | Some(LiveKeys::Ready { stale: true, .. }) => {
            return Err(fail(Reason::KeysUnavailable))
        }
        Some(LiveKeys::Ready { keys, .. }) => keys,
    };
    let key = match verify_signature(provider, keys, &jws) {
        Ok(k) => k,
        Err(Reason::KeyNotFound | Reason::AlgorithmNotAllowed)
            if may_wait && provider.remote.is_some() && provider.algorithms.contains(jws.alg) =>
        {
            return Err(Stop::Wait(Wait::UnknownKid { provider: index }))
        }
        Err(r) => return Err(fail(r)),
    };
    check_claims(provider, &jws.claims, now).map_err(fail)?;
    Ok(Verified {
        provider: index,
        key,
        jws,
    })
}

fn verify_signature(provider: &Provider, keys: &[Key], jws: &Jws<'_>) -> Result<usize, Reason> {
    let alg: Alg = jws.alg;
    let usable = |k: &Key| k.algs.intersect(provider.algorithms).contains(alg);
    if !provider.algorithms.contains(alg) || !keys.iter().any(usable) {
        return Err(Reason::AlgorithmNotAllowed);
    }
    // A key without `kid` is a candidate for any token; a token with `kid` only meets
    // keys with that `kid` (or none).
    let mut candidates = keys.iter().enumerate().filter(|(_, k)| {
        usable(k)
            && match (&jws.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    });
    let mut tried = false;
    let found = candidates.find(|(_, k)| {
        tried = true;
        k.verify(alg, jws.signing_input.as_bytes(), &jws.signature)
    });
    match found {
        Some((i, _)) => Ok(i),
        None if !tried => Err(Reason::KeyNotFound),
        None => Err(Reason::SignatureInvalid),
    }
}

/// RFC 7519 4.1 claim checks, after the signature verified (also for cache hits).
pub fn check_claims(p: &Provider, claims: &Map<String, Value>, now: u64) -> Result<(), Reason> {
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    for name in ["sub", "jti"] {
        if matches!(claims.get(name), Some(v) if !v.is_string()) {
            return Err(Reason::ClaimInvalid);
        }
    }
    let aud = audiences(claims)?;

    let now = now as f64;
    let skew = p.clock_skew_seconds as f64;
    match exp {
        None if p.require_expiration => return Err(Reason::ExpirationMissing),
        Some(exp) if now >= exp + skew => return Err(Reason::TokenExpired),
        _ => {}
    }
    if let Some(nbf) = nbf {
        if now + skew < nbf {
            return Err(Reason::TokenNotYetValid);
        }
    }
    if let (Some(max), Some(exp)) = (p.max_lifetime_seconds, exp) {
        let start = iat.unwrap_or(now);
        if exp - start > max as f64 {
            return Err(Reason::LifetimeTooLong);
        }
    }
    if !p.audiences.is_empty() && !aud.iter().any(|a| p.audiences.iter().any(|want| want == a)) {
        return Err(Reason::AudienceMismatch);
    }
    Ok(())
}

/// RFC 7519 2 NumericDate: a JSON number (possibly non-integer).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(Reason::ClaimInvalid),
        Some(_) => Err(Reason::ClaimInvalid),
    }
}

/// RFC 7519 4.1.3: `aud` is a string or an array of strings, compared exactly.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, Reason> {
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(a)) => a.iter().map(|v| v.as_str().ok_or(Reason::ClaimInvalid)).collect(),
        Some(_) => Err(Reason::ClaimInvalid),
    }
}
