//! One request in, one decision out: the only function the shell calls per request.
//!
//! Sequence: drop forged output headers; extract; verify; apply the requirement mode;
//! then compute what to strip and what to add. Every outcome, allow or deny, leaves
//! through [`Decision`], with its reason and its record.

use crate::claims;
use crate::config::{Config, Requirement, DEFAULT_REALM};
use crate::extractor::{self, Candidate};
use crate::leakguard;
use crate::reason::Reason;
use crate::request::{Mutation, Request};
use crate::response::{self, Denial};
use crate::snapshot::{LiveList, Snapshot};
use crate::telemetry::{self, Record};
use crate::verifier::{self, Failure, Stop, Wait};

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

/// Decides `req` under `cfg` at time `now` (seconds since the epoch), with inline keys.
pub fn decide(cfg: &Config, req: &Request, now: u64) -> Decision {
    decide_live(cfg, &Snapshot::new(cfg), req, now, false)
}

/// Decides with the worker's live keys and revocation list. `may_wait`: the request
/// has not waited yet, so missing remote keys answer [`Verdict::Wait`].
pub fn decide_live(cfg: &Config, snap: &Snapshot, req: &Request, now: u64, may_wait: bool) -> Decision {
    let leaks = leakguard::scan(cfg, req);
    // Headers hopguard writes are never taken from the client; leaked credentials go too
    // when the leak guard strips.
    let mut base: Vec<Mutation> = Vec::new();
    for h in cfg.output_headers() {
        if req.header(h).is_some() && !base.iter().any(|m| matches!(m, Mutation::Remove(x) if x == h)) {
            base.push(Mutation::Remove(h.to_owned()));
        }
    }
    base.extend(leaks.mutations);
    let record = Record {
        request_id: request_id(req),
        route: Some(req.path().split('?').next().unwrap_or("/").chars().take(256).collect()),
        leaks: leaks.kinds,
        ..Record::default()
    };
    let mut d = decide_token(cfg, snap, req, now, may_wait, base.clone(), record);
    if cfg.dry_run {
        if let Verdict::Deny(_) = d.verdict {
            d.verdict = Verdict::Allow;
            d.record.decision = "dry_run_deny";
            d.mutations = base;
        }
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
    snap: &Snapshot,
    req: &Request,
    now: u64,
    may_wait: bool,
    base: Vec<Mutation>,
    mut record: Record,
) -> Decision {
    let mut mutations = base;

    let candidates = extractor::extract(&cfg.locations, req);
    let one = match candidates.as_slice() {
        [] => {
            return if cfg.requirement == Requirement::Required {
                deny(cfg, Failure::from(Reason::TokenMissing), record)
            } else {
                record.decision = "allow";
                Decision {
                    verdict: Verdict::Allow,
                    reason: None,
                    provider: None,
                    mutations,
                    record,
                }
            };
        }
        [one] => one,
        many => {
            let all: Vec<&Candidate> = many.iter().collect();
            return fail(cfg, req, Failure::from(Reason::TokenAmbiguous), &all, mutations, record);
        }
    };
    record.fingerprint = Some(telemetry::fingerprint(&one.token));
    record.location = cfg.locations.get(one.location).map(|l| l.describe());

    let verified = match verifier::verify_live(cfg, snap, one.location, &one.token, now, may_wait) {
        Ok(v) => v,
        Err(Stop::Wait(w)) => return wait(w, mutations, record),
        Err(Stop::Fail(f)) => return fail(cfg, req, f, &[one], mutations, record),
    };
    let Some(provider) = cfg.providers.get(verified.provider) else {
        return deny(cfg, Failure::from(Reason::ConfigInvalid), record);
    };
    let claims = &verified.jws.claims;
    // Revocation: inline and remote lists, by jti, sub and the token's hash.
    let jti = claims.get("jti").and_then(|v| v.as_str());
    let sub = claims.get("sub").and_then(|v| v.as_str());
    let hash = telemetry::token_hash(&one.token);
    let remote_list = match (&snap.revocation, &cfg.revocation.remote) {
        (LiveList::Ready { list, stale }, Some(r)) => {
            if *stale && r.fail_closed {
                let f = Failure {
                    reason: Reason::RevocationUnavailable,
                    provider: Some(verified.provider),
                };
                return fail(cfg, req, f, &[one], mutations, record);
            }
            Some(list)
        }
        // Before the first list arrives, every request waits for it (a revoked token must
        // not slip through at startup); after the wait only failClosed refuses.
        (LiveList::Pending, Some(_)) if may_wait => return wait(Wait::RevocationList, mutations, record),
        (LiveList::Pending, Some(r)) if r.fail_closed => {
            let f = Failure {
                reason: Reason::RevocationUnavailable,
                provider: Some(verified.provider),
            };
            return fail(cfg, req, f, &[one], mutations, record);
        }
        _ => None,
    };
    if cfg.revocation.inline.revokes(jti, sub, &hash) || remote_list.is_some_and(|l| l.revokes(jti, sub, &hash)) {
        let f = Failure {
            reason: Reason::TokenRevoked,
            provider: Some(verified.provider),
        };
        return fail(cfg, req, f, &[one], mutations, record);
    }
    record.provider = Some(provider.name.clone());
    record.kid = verified.jws.kid.clone();
    record.subject = claims.get("sub").and_then(|v| v.as_str()).map(str::to_owned);
    record.jti = claims.get("jti").and_then(|v| v.as_str()).map(str::to_owned);
    record.decision = "allow";

    if !provider.forward_original_token {
        mutations.extend(extractor::removal(req, &[one]));
    }
    if let Some(h) = &provider.output_payload_to_header {
        mutations.push(Mutation::Set(h.clone(), verified.jws.payload_b64.to_owned()));
    }
    for ch in &provider.output_claim_to_headers {
        if let Some(v) = claims::header_value(claims, &ch.claim) {
            mutations.push(Mutation::Set(ch.header.clone(), v));
        }
    }
    Decision {
        verdict: Verdict::Allow,
        reason: None,
        provider: Some(verified.provider),
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
fn fail(
    cfg: &Config,
    req: &Request,
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
fn request_id(req: &Request) -> Option<String> {
    req.header("x-request-id")
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}
