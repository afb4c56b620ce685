//! One request in, one decision out: the only function the shell calls per request.
//!
//! Sequence: drop forged output headers; extract; verify; apply the requirement mode;
//! then compute what to strip and what to add. Every outcome, allow or deny, leaves
//! through [`Decision`], with its reason and its record.

use crate::claims;
use crate::config::{Config, Requirement, DEFAULT_REALM};
use crate::extractor::{self, Candidate};
use crate::reason::Reason;
use crate::request::{Mutation, Request};
use crate::response::{self, Denial};
use crate::telemetry::{self, Record};
use crate::verifier::{self, Failure};

/// Let the request through (after the mutations) or answer it locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Denial),
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// The failure, also when the requirement mode let the request through.
    pub reason: Option<Reason>,
    /// Index of the provider the token was for, when known.
    pub provider: Option<usize>,
    /// Header changes to apply before the request continues (empty on deny).
    pub mutations: Vec<Mutation>,
    pub record: Record,
}

/// Decides `req` under `cfg` at time `now` (seconds since the epoch).
pub fn decide(cfg: &Config, req: &Request, now: u64) -> Decision {
    let mut record = Record {
        request_id: request_id(req),
        ..Record::default()
    };
    // Headers hopguard writes are never taken from the client.
    let mut mutations: Vec<Mutation> = Vec::new();
    for h in cfg.output_headers() {
        if req.header(h).is_some() && !mutations.iter().any(|m| matches!(m, Mutation::Remove(x) if x == h)) {
            mutations.push(Mutation::Remove(h.to_owned()));
        }
    }

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

    let verified = match verifier::verify(cfg, one.location, &one.token, now) {
        Ok(v) => v,
        Err(f) => return fail(cfg, req, f, &[one], mutations, record),
    };
    let Some(provider) = cfg.providers.get(verified.provider) else {
        return deny(cfg, Failure::from(Reason::ConfigInvalid), record);
    };
    let claims = &verified.jws.claims;
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
        return deny(cfg, failure, record);
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
