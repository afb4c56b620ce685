//! One request in, one decision out: the only function the shell calls per request.
//!
//! Sequence: drop forged output headers; extract; verify; apply the requirement mode;
//! then compute what to strip and what to add. Every outcome, allow or deny, leaves
//! through [`Decision`], with its reason and its record.

use crate::binding::Presentation;
use crate::cache::{self, TokenCache};
use crate::claims;
use crate::config::Location;
use crate::config::{Config, Requirement, DEFAULT_REALM};
use crate::extractor::{self, Candidate};
use crate::leakguard;
use crate::policy::{Connection, PolicyInput, TokenInput};
use crate::reason::Reason;
use crate::replay::ReplayCache;
use crate::request::{Mutation, Request};
use crate::response::{self, Denial};
use crate::snapshot::LiveKeys;
use crate::snapshot::{LiveList, Snapshot};
use crate::telemetry::{self, Record};
use crate::verifier::{self, Failure, Stop, Wait};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Let the request through (after the mutations) or answer it locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Denial),
    /// Pause the request until remote keys or the revocation list arrive, then decide
    /// again (without waiting a second time).
    Wait(Wait),
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// The failure, also when the requirement mode let the request through.
    pub reason: Option<Reason>,
    /// Index of the provider the token was for, when known.
    pub provider: Option<usize>,
    /// Header changes to apply: before the request continues, or, on deny, before the
    /// local reply (so the access log never sees the credential).
    pub mutations: Vec<Mutation>,
    pub record: Record,
}

/// What a worker knows besides the request: live keys and lists, the connection (read
/// only when a policy or a token's `cnf` needs it), and the DPoP replay cache.
pub struct Env<'a> {
    pub snapshot: &'a Snapshot,
    pub connection: &'a dyn Fn() -> Connection,
    pub replay: &'a RefCell<ReplayCache>,
    pub cache: &'a RefCell<TokenCache>,
}

/// Decides `req` under `cfg` at time `now` (seconds since the epoch), with inline keys,
/// no mTLS connection and a fresh replay cache.
pub fn decide(cfg: &Config, req: &Request, now: u64) -> Decision {
    let snapshot = Snapshot::new(cfg);
    let replay = RefCell::new(ReplayCache::new(cfg.authorization.dpop.replay_cache_size));
    let cache = RefCell::new(TokenCache::new(0));
    let env = Env {
        snapshot: &snapshot,
        connection: &Connection::default,
        replay: &replay,
        cache: &cache,
    };
    decide_live(cfg, &env, req, now, false)
}

/// Decides with the worker's live keys, revocation list, connection and replay cache.
/// `may_wait`: the request has not waited yet, so missing remote keys answer
/// [`Verdict::Wait`].
pub fn decide_live(cfg: &Config, env: &Env<'_>, req: &Request, now: u64, may_wait: bool) -> Decision {
    let leaks = leakguard::scan(cfg, req);
    // Headers hopguard writes are never taken from the client.
    let mut base: Vec<Mutation> = Vec::new();
    for h in cfg.output_headers() {
        if req.header(h).is_some() && !base.iter().any(|m| matches!(m, Mutation::Remove(x) if x == h)) {
            base.push(Mutation::Remove(h.to_owned()));
        }
    }
    let record = Record {
        request_id: request_id(req),
        route: Some(route_of(req.path()).to_owned()),
        leaks: leaks.kinds,
        ..Record::default()
    };
    let mut d = decide_token(cfg, env, req, now, may_wait, base.clone(), record);
    if cfg.dry_run {
        if let Verdict::Deny(_) = d.verdict {
            d.verdict = Verdict::Allow;
            d.record.decision = "dry_run_deny";
            d.mutations = base;
        }
    }
    // Leaked credentials go last, computed against the request as already changed: two
    // rewrites of `:path` from the same original would undo each other.
    if !leaks.mutations.is_empty() && !matches!(d.verdict, Verdict::Wait(_)) {
        let after = req.applied(&d.mutations);
        d.mutations.extend(leakguard::scan(cfg, &after).mutations);
    }
    if cfg.telemetry.hash_subject {
        d.record.subject = d
            .record
            .subject
            .map(|s| format!("sha256:{}", telemetry::fingerprint(&s)));
    }
    d
}

fn decide_token(
    cfg: &Config,
    env: &Env<'_>,
    req: &Request,
    now: u64,
    may_wait: bool,
    base: Vec<Mutation>,
    mut record: Record,
) -> Decision {
    let snap = env.snapshot;
    let mut mutations = base;

    let candidates = extractor::extract(&cfg.locations, req);
    let one = match candidates.as_slice() {
        [] => {
            if cfg.requirement == Requirement::Required {
                // Forged output headers still go, before the access log reads them.
                let mut d = deny(cfg, Failure::from(Reason::TokenMissing), record);
                d.mutations = mutations;
                return d;
            }
            let dry = match authorize(cfg, env, req, now, None, &mut record) {
                Ok(dry) => dry,
                Err(denial) => return policy_denial(cfg, denial, None, mutations, record),
            };
            record.decision = "allow";
            return with_dry_run(
                Decision {
                    verdict: Verdict::Allow,
                    reason: None,
                    provider: None,
                    mutations,
                    record,
                },
                dry,
            );
        }
        [one] => one,
        many => {
            let all: Vec<&Candidate> = many.iter().collect();
            return fail(
                cfg,
                env,
                req,
                now,
                Failure::from(Reason::TokenAmbiguous),
                &all,
                mutations,
                record,
            );
        }
    };
    record.location = cfg.locations.get(one.location).map(|l| l.describe());

    // The verified-token cache (a hit skips hashing, parsing and the signature only),
    // then full verification.
    let key_set = |p: usize| match snap.keys.get(p) {
        Some(LiveKeys::Ready { keys, .. }) => Arc::as_ptr(keys) as usize,
        _ => 0,
    };
    let cached = match env.cache.try_borrow_mut() {
        Ok(mut c) if one.token.len() <= cache::MAX_CACHED_TOKEN_BYTES => c.get(&one.token, key_set, now).filter(|e| {
            cfg.providers
                .get(e.provider)
                .is_some_and(|p| p.locations.contains(&one.location))
                // Keys past their maximum staleness (or gone) refuse cached tokens too.
                && !matches!(
                    snap.keys.get(e.provider),
                    Some(LiveKeys::Ready { stale: true, .. } | LiveKeys::Pending)
                )
        }),
        _ => None,
    };
    record.cache_hit = Some(cached.is_some());
    let mut entry = match cached {
        Some(e) => {
            record.fingerprint = Some(telemetry::fingerprint_of_digest(&e.digest));
            let checked = cfg.providers.get(e.provider).map_or(Err(Reason::ConfigInvalid), |p| {
                verifier::check_claims(p, &e.claims, now)
            });
            if let Err(reason) = checked {
                let f = Failure {
                    reason,
                    provider: Some(e.provider),
                };
                return fail(cfg, env, req, now, f, &[one], mutations, record);
            }
            e
        }
        None => {
            // One SHA-256 of the token per verification: the fingerprint and the revocation key.
            let digest: [u8; 32] = Sha256::digest(one.token.as_bytes()).into();
            record.fingerprint = Some(telemetry::fingerprint_of_digest(&digest));
            let v = match verifier::verify_live(cfg, snap, one.location, &one.token, now, may_wait) {
                Ok(v) => v,
                Err(Stop::Wait(w)) => return wait(w, mutations, record),
                Err(Stop::Fail(f)) => return fail(cfg, env, req, now, f, &[one], mutations, record),
            };
            let e = cache::Entry {
                provider: v.provider,
                key: v.key,
                key_set: key_set(v.provider),
                kid: v.jws.kid,
                exp: v.jws.claims.get("exp").and_then(|x| x.as_f64()),
                claims: Rc::new(v.jws.claims),
                digest,
            };
            if let Ok(mut c) = env.cache.try_borrow_mut() {
                c.insert(&one.token, e.clone());
            }
            e
        }
    };
    let Some(provider) = cfg.providers.get(entry.provider) else {
        return deny(cfg, Failure::from(Reason::ConfigInvalid), record);
    };
    let claims: &serde_json::Map<String, serde_json::Value> = &entry.claims;
    // Revocation: inline and remote lists, by jti, sub and the token's hash.
    let jti = claims.get("jti").and_then(|v| v.as_str());
    let sub = claims.get("sub").and_then(|v| v.as_str());
    let remote_list = match (&snap.revocation, &cfg.revocation.remote) {
        (LiveList::Ready { list, stale }, Some(r)) => {
            if *stale && r.fail_closed {
                let f = Failure {
                    reason: Reason::RevocationUnavailable,
                    provider: Some(entry.provider),
                };
                return fail(cfg, env, req, now, f, &[one], mutations, record);
            }
            Some(list)
        }
        // Before the first list arrives, every request waits for it (a revoked token must
        // not slip through at startup); after the wait only failClosed refuses.
        (LiveList::Pending, Some(_)) if may_wait => return wait(Wait::RevocationList, mutations, record),
        (LiveList::Pending, Some(r)) if r.fail_closed => {
            let f = Failure {
                reason: Reason::RevocationUnavailable,
                provider: Some(entry.provider),
            };
            return fail(cfg, env, req, now, f, &[one], mutations, record);
        }
        _ => None,
    };
    // The token's hash as lists carry it, encoded only when a list revokes by hash.
    let by_hash = cfg.revocation.inline.by_hash() || remote_list.is_some_and(|l| l.by_hash());
    let hash = if by_hash {
        crate::b64::encode(&entry.digest)
    } else {
        String::new()
    };
    if cfg.revocation.inline.revokes(jti, sub, &hash) || remote_list.is_some_and(|l| l.revokes(jti, sub, &hash)) {
        let f = Failure {
            reason: Reason::TokenRevoked,
            provider: Some(entry.provider),
        };
        return fail(cfg, env, req, now, f, &[one], mutations, record);
    }
    record.provider = Some(provider.name.clone());
    record.kid = entry.kid.take();
    record.subject = claims.get("sub").and_then(|v| v.as_str()).map(str::to_owned);
    record.jti = claims.get("jti").and_then(|v| v.as_str()).map(str::to_owned);
    record.decision = "allow";

    // Token-bound policies and the RFC 8705 / RFC 9449 binding checks.
    let presentation = match cfg.locations.get(one.location) {
        Some(Location::Header { name, prefix }) => Presentation::of_header(name, prefix),
        _ => Presentation::Other,
    };
    let token = TokenInput {
        raw: &one.token,
        claims,
        presentation,
    };
    let dry = match authorize(cfg, env, req, now, Some(token), &mut record) {
        Ok(dry) => dry,
        Err(denial) => {
            let mut m = mutations;
            m.extend(extractor::removal(req, &[one]));
            return policy_denial(cfg, denial, Some(entry.provider), m, record);
        }
    };
    // A DPoP proof is good for one hop only.
    if req.header("dpop").is_some() {
        mutations.push(Mutation::Remove("dpop".into()));
    }

    if !provider.forward_original_token {
        mutations.extend(extractor::removal(req, &[one]));
    }
    if let Some(h) = &provider.output_payload_to_header {
        let payload = one.token.split('.').nth(1).unwrap_or("");
        mutations.push(Mutation::Set(h.clone(), payload.to_owned()));
    }
    for ch in &provider.output_claim_to_headers {
        if let Some(v) = claims::header_value(claims, &ch.claim) {
            mutations.push(Mutation::Set(ch.header.clone(), v));
        }
    }
    with_dry_run(
        Decision {
            verdict: Verdict::Allow,
            reason: None,
            provider: Some(entry.provider),
            mutations,
            record,
        },
        dry,
    )
}

/// A policy refusal: reason, rule, and a rule's own status and body.
struct PolicyRefusal {
    reason: Reason,
    rule: Option<String>,
    custom: crate::policy::Custom,
}

/// Runs the policies (when there are any, or when the token carries `cnf` or came with
/// the DPoP scheme). `Ok(dry)`: allowed, with what a dry-run policy would have refused;
/// `Err`: refused.
fn authorize(
    cfg: &Config,
    env: &Env<'_>,
    req: &Request,
    now: u64,
    token: Option<TokenInput<'_>>,
    record: &mut Record,
) -> Result<Option<PolicyRefusal>, PolicyRefusal> {
    let policies = &cfg.authorization;
    let bound = token.is_some_and(|t| t.claims.contains_key("cnf") || t.presentation == Presentation::Dpop);
    if policies.policies.is_empty() && !bound {
        return Ok(None);
    }
    // Connection facts are host calls in the shell: read only when something looks at them
    // (a bound token's `cnf`, or a policy's source/destination checks or `bind`).
    let connection = if bound || policies.reads_connection() {
        (env.connection)()
    } else {
        Connection::default()
    };
    let input = PolicyInput {
        request: req,
        connection: &connection,
        token,
        now,
    };
    let outcome = match env.replay.try_borrow_mut() {
        Ok(mut replay) => policies.evaluate(&input, &mut replay),
        Err(_) => {
            return Err(PolicyRefusal {
                reason: Reason::DpopReplayCacheFull,
                rule: None,
                custom: crate::policy::Custom::default(),
            })
        }
    };
    record.audit = outcome.audit.iter().map(|r| r.to_string()).collect();
    record.rule = outcome.verdict.matched.as_ref().map(|r| r.to_string());
    let refusal = |v: &crate::policy::PolicyVerdict| {
        v.denial.as_ref().map(|d| PolicyRefusal {
            reason: Reason::from(d.reason),
            rule: d.rule.as_ref().map(|r| r.to_string()),
            custom: d.custom.clone(),
        })
    };
    if !outcome.verdict.allowed {
        return Err(refusal(&outcome.verdict).unwrap_or(PolicyRefusal {
            reason: Reason::PolicyNoMatch,
            rule: None,
            custom: crate::policy::Custom::default(),
        }));
    }
    Ok(outcome.dry_run.as_ref().filter(|v| !v.allowed).and_then(refusal))
}

/// Records what a dry-run policy would have refused (the request still passes).
fn with_dry_run(mut d: Decision, dry: Option<PolicyRefusal>) -> Decision {
    if let Some(r) = dry {
        d.record.decision = "dry_run_deny";
        d.record.reason = Some(r.reason.code());
        d.record.rule = r.rule;
        d.reason = Some(r.reason);
    }
    d
}

fn policy_denial(
    cfg: &Config,
    p: PolicyRefusal,
    provider: Option<usize>,
    mutations: Vec<Mutation>,
    mut record: Record,
) -> Decision {
    record.decision = "deny";
    record.reason = Some(p.reason.code());
    record.rule = p.rule.clone();
    record.provider = provider.and_then(|i| cfg.providers.get(i)).map(|x| x.name.clone());
    let algs = cfg.authorization.dpop.algs_param();
    let extra = response::Extra {
        rule: p.rule,
        dpop_algs: Some(&algs),
        custom: Some(&p.custom),
    };
    Decision {
        verdict: Verdict::Deny(response::deny_with(p.reason, &cfg.realm, &extra)),
        reason: Some(p.reason),
        provider,
        mutations,
        record,
    }
}

fn wait(w: Wait, mutations: Vec<Mutation>, mut record: Record) -> Decision {
    record.decision = "wait";
    Decision {
        verdict: Verdict::Wait(w),
        reason: None,
        provider: match w {
            Wait::FirstKeys { provider } | Wait::UnknownKid { provider } => Some(provider),
            Wait::RevocationList => None,
        },
        mutations,
        record,
    }
}

/// The decision of a filter that has no valid configuration: refuse (fail closed).
pub fn unconfigured(req: &Request) -> Decision {
    let record = Record {
        request_id: request_id(req),
        ..Record::default()
    };
    let mut d = deny_with_realm(DEFAULT_REALM, Failure::from(Reason::ConfigInvalid), record);
    d.mutations.clear();
    d
}

/// A token failed: refuse, or under `allowMissingOrFailed` let it through stripped.
#[allow(clippy::too_many_arguments)]
fn fail(
    cfg: &Config,
    env: &Env<'_>,
    req: &Request,
    now: u64,
    failure: Failure,
    tokens: &[&Candidate],
    mut mutations: Vec<Mutation>,
    mut record: Record,
) -> Decision {
    record.provider = failure
        .provider
        .and_then(|i| cfg.providers.get(i))
        .map(|p| p.name.clone());
    if cfg.requirement != Requirement::AllowMissingOrFailed {
        // Nothing goes upstream, but Envoy's access log reads the request headers: take
        // the credentials out of them too.
        let mut d = deny(cfg, failure, record);
        mutations.extend(extractor::removal(req, tokens));
        d.mutations = mutations;
        return d;
    }
    // Strip a failed token unless a provider reading that location forwards tokens.
    let strip: Vec<&Candidate> = tokens
        .iter()
        .copied()
        .filter(|c| {
            !cfg.providers
                .iter()
                .any(|p| p.forward_original_token && p.locations.contains(&c.location))
        })
        .collect();
    mutations.extend(extractor::removal(req, &strip));
    if let Err(denial) = authorize(cfg, env, req, now, None, &mut record) {
        return policy_denial(cfg, denial, failure.provider, mutations, record);
    }
    record.decision = "allow_failed";
    record.reason = Some(failure.reason.code());
    Decision {
        verdict: Verdict::Allow,
        reason: Some(failure.reason),
        provider: failure.provider,
        mutations,
        record,
    }
}

fn deny(cfg: &Config, failure: Failure, record: Record) -> Decision {
    let mut record = record;
    record.provider = failure
        .provider
        .and_then(|i| cfg.providers.get(i))
        .map(|p| p.name.clone());
    deny_with_realm(&cfg.realm, failure, record)
}

fn deny_with_realm(realm: &str, failure: Failure, mut record: Record) -> Decision {
    record.decision = "deny";
    record.reason = Some(failure.reason.code());
    Decision {
        verdict: Verdict::Deny(response::deny(failure.reason, realm)),
        reason: Some(failure.reason),
        provider: failure.provider,
        mutations: Vec::new(),
        record,
    }
}

/// `x-request-id`, if it is short and printable.
/// The path without its query, at most 256 characters.
fn route_of(path: &str) -> &str {
    let route = path.split('?').next().unwrap_or("/");
    let end = route.char_indices().nth(256).map_or(route.len(), |(i, _)| i);
    route.get(..end).unwrap_or(route)
}

fn request_id(req: &Request) -> Option<String> {
    req.header("x-request-id")
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}
