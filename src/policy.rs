//! The policy engine: who may call which route, tied to the caller's identity.
//!
//! Rules are written in the vocabulary of Istio's `AuthorizationPolicy`
//! (istio/api `security/v1beta1/authorization_policy.proto`) as JSON, so an Istio
//! policy ports line by line, plus hopguard's identity binding (`bind`), per-rule and
//! per-policy dry run, and custom denials. Semantics, as in Istio:
//!
//! - DENY first: any matching DENY rule denies. Then, if at least one ALLOW policy
//!   exists, a request no ALLOW rule matches is denied. AUDIT rules only record.
//! - An ALLOW policy without rules (`{"name":"x"}`, Istio's `spec: {}`) matches nothing:
//!   allow-nothing. A rule `{}` matches everything: `rules: [{}]` is allow-all.
//! - In a rule, `from`, `to` and `when` are ANDed; entries of `from` (or `to`) are
//!   ORed; fields of one `source` / `operation` are ANDed; the values of a field are
//!   ORed; `notX` is "none of these". An attribute the request lacks (no token, no mTLS
//!   peer, no header) matches no value, so it satisfies every `notX`.
//! - Strings: exact, prefix `abc*`, suffix `*abc`, presence `*` (see
//!   [`crate::matcher`]); paths also `{*}` / `{**}` templates
//!   ([`crate::path_template`]).
//! - Claims (`request.auth.claims[a][b]`, nested by brackets): a value matches a string
//!   claim, any element of an array claim, and (a hopguard extension; Istio's Envoy
//!   metadata matcher never matches them) the JSON text of a number or boolean claim.
//!   The claims named in `spaceDelimitedClaims` (always `scope`, `scp` and `permission`)
//!   are split on spaces first, so `values: ["orders:read"]` matches
//!   `"scope": "orders:read orders:write"` (Istio does this for `scope` and
//!   `permission` through Envoy's `space_delimited_claims`).
//!
//! Identity binding (no anchor has it) is in [`crate::binding`] and [`crate::dpop`]:
//! token-level sender constraints (RFC 8705 certificate binding, RFC 9449 DPoP) are
//! enforced for every token that carries them (`certificateBinding` and `dpop.mode`),
//! and ALLOW rules can require more with `bind`. An ALLOW rule matches only when its
//! `from` / `to` / `when` match *and* its `bind` holds; when no ALLOW rule matches and
//! some rule failed only on `bind`, the first such failure is the reason.
//!
//! Dry run (`dryRun` on the whole section, a policy or a rule): the rule is evaluated
//! and its would-be outcome reported in [`PolicyOutcome::dry_run`], but it does not
//! decide. An ALLOW policy all of whose rules are in dry run does not count as an
//! ALLOW policy for enforcement.

use crate::binding::{self, Actor, Bind, BindingMode, Delegation, Mismatch, Presentation, Workload};
use crate::config::{ConfigError, Fields};
use crate::dpop::{self, DpopError, DpopSettings};
use crate::json;
use crate::matcher::{
    namespace_pattern, service_account_patterns, trust_domain_pattern, HostMatch, IpBlock, Pattern, PrincipalMatch,
    RequestPrincipalMatch, StrMatch,
};
use crate::path_template::PathMatch;
use crate::replay::ReplayCache;
use crate::request::Request;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Claims always split on spaces (RFC 6749 3.3 `scope`, Azure/Okta `scp`, and
/// Istio's default `permission`).
pub const DEFAULT_SPACE_DELIMITED_CLAIMS: [&str; 3] = ["scope", "scp", "permission"];
pub const MAX_POLICIES: usize = 1024;
/// Istio's `MaxItems` for `rules`.
pub const MAX_RULES: usize = 512;
pub const MAX_VALUES: usize = 1024;
pub const MAX_DENY_BODY_BYTES: usize = 8192;

/// Why the policy engine refused (or would refuse) a request. The shell maps each to
/// a row of the reason table; the suggested status and challenge are in the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyReason {
    /// A DENY rule matched. 403, `insufficient_scope`.
    PolicyDenied,
    /// ALLOW policies exist and none matched. 403, `insufficient_scope`.
    PolicyNoMatch,
    /// A rule needs the caller's mTLS identity and the connection has none. 403.
    PeerUnauthenticated,
    /// `bind.workload`: the token does not name the calling workload. 403.
    WorkloadMismatch,
    /// `bind.delegation`: no `act`, the current actor is not the caller, or the chain
    /// is too deep. 403.
    DelegationMismatch,
    /// `cnf` (or its `x5t#S256` / `jkt`) is malformed. 401 `invalid_token`.
    CnfInvalid,
    /// A certificate-bound token is required and this one is not. 401 `invalid_token`.
    CertBindingMissing,
    /// RFC 8705: the token is bound to another certificate (or there is no peer
    /// certificate). 401 `invalid_token`.
    CertBindingMismatch,
    /// RFC 9449: DPoP-bound token without a `DPoP` proof header. 401,
    /// `WWW-Authenticate: DPoP error="invalid_dpop_proof"`.
    DpopProofMissing,
    /// RFC 9449 4.3: the proof fails a check (detail says which). 401,
    /// `DPoP error="invalid_dpop_proof"`.
    DpopProofInvalid,
    /// The proof was already used. 401, `DPoP error="invalid_dpop_proof"`.
    DpopReplayed,
    /// The token's `cnf.jkt` is not the proof key. 401, `DPoP error="invalid_token"`.
    DpopKeyMismatch,
    /// A DPoP-bound token is required (or the `DPoP` scheme was used) and the token
    /// has no `cnf.jkt`. 401, `DPoP error="invalid_token"`.
    DpopBindingMissing,
    /// RFC 9449 7.2: a DPoP-bound token presented as a bearer token. 401,
    /// `DPoP error="invalid_token"`.
    DpopTokenAsBearer,
    /// The per-worker replay cache is full of live proofs (fail closed). 503.
    DpopReplayCacheFull,
}

impl PolicyReason {
    pub const ALL: [PolicyReason; 15] = [
        PolicyReason::PolicyDenied,
        PolicyReason::PolicyNoMatch,
        PolicyReason::PeerUnauthenticated,
        PolicyReason::WorkloadMismatch,
        PolicyReason::DelegationMismatch,
        PolicyReason::CnfInvalid,
        PolicyReason::CertBindingMissing,
        PolicyReason::CertBindingMismatch,
        PolicyReason::DpopProofMissing,
        PolicyReason::DpopProofInvalid,
        PolicyReason::DpopReplayed,
        PolicyReason::DpopKeyMismatch,
        PolicyReason::DpopBindingMissing,
        PolicyReason::DpopTokenAsBearer,
        PolicyReason::DpopReplayCacheFull,
    ];

    /// Stable snake_case code for logs, metrics and problem bodies.
    pub const fn code(self) -> &'static str {
        match self {
            PolicyReason::PolicyDenied => "policy_denied",
            PolicyReason::PolicyNoMatch => "policy_no_match",
            PolicyReason::PeerUnauthenticated => "peer_unauthenticated",
            PolicyReason::WorkloadMismatch => "workload_mismatch",
            PolicyReason::DelegationMismatch => "delegation_mismatch",
            PolicyReason::CnfInvalid => "cnf_invalid",
            PolicyReason::CertBindingMissing => "cert_binding_missing",
            PolicyReason::CertBindingMismatch => "cert_binding_mismatch",
            PolicyReason::DpopProofMissing => "dpop_proof_missing",
            PolicyReason::DpopProofInvalid => "dpop_proof_invalid",
            PolicyReason::DpopReplayed => "dpop_replayed",
            PolicyReason::DpopKeyMismatch => "dpop_key_mismatch",
            PolicyReason::DpopBindingMissing => "dpop_binding_missing",
            PolicyReason::DpopTokenAsBearer => "dpop_token_as_bearer",
            PolicyReason::DpopReplayCacheFull => "dpop_replay_cache_full",
        }
    }

    /// Whether the challenge for this reason uses the `DPoP` scheme (RFC 9449 7.1).
    pub const fn is_dpop(self) -> bool {
        matches!(
            self,
            PolicyReason::DpopProofMissing
                | PolicyReason::DpopProofInvalid
                | PolicyReason::DpopReplayed
                | PolicyReason::DpopKeyMismatch
                | PolicyReason::DpopBindingMissing
                | PolicyReason::DpopTokenAsBearer
        )
    }
}

/// A refusal: the reason and a short secret-free detail for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: PolicyReason,
    pub detail: &'static str,
}

impl Refusal {
    fn new(reason: PolicyReason, detail: &'static str) -> Refusal {
        Refusal { reason, detail }
    }
}

/// A rule, by policy and rule name (`orders/read`; unnamed rules are `rules[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub policy: String,
    pub rule: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.policy, self.rule)
    }
}

/// A configured denial response (`denyStatus`, `denyBody`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Custom {
    pub status: Option<u16>,
    pub body: Option<String>,
    /// `application/problem+json` for an object body, `text/plain; charset=utf-8` for
    /// a string body.
    pub content_type: Option<&'static str>,
}

impl Custom {
    fn or(&self, other: &Custom) -> Custom {
        let (body, content_type) = if self.body.is_some() {
            (self.body.clone(), self.content_type)
        } else {
            (other.body.clone(), other.content_type)
        };
        Custom {
            status: self.status.or(other.status),
            body,
            content_type,
        }
    }
}

/// Why a request is (or would be) refused, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDenial {
    pub reason: PolicyReason,
    pub detail: &'static str,
    /// The rule that denied (DENY match) or whose `bind` failed; `None` for token-level
    /// binding failures and for "no ALLOW rule matched".
    pub rule: Option<RuleRef>,
    /// The configured response, if any (rule, else policy, else the section); applies
    /// to policy denials, never to token-level binding failures.
    pub custom: Custom,
}

/// One decision (enforced, or with the dry-run rules included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub allowed: bool,
    pub denial: Option<PolicyDenial>,
    /// The ALLOW rule that allowed, or the DENY rule that denied.
    pub matched: Option<RuleRef>,
}

impl PolicyVerdict {
    fn allow(matched: Option<RuleRef>) -> PolicyVerdict {
        PolicyVerdict {
            allowed: true,
            denial: None,
            matched,
        }
    }
    fn deny(refusal: Refusal, rule: Option<RuleRef>, custom: Custom) -> PolicyVerdict {
        PolicyVerdict {
            allowed: false,
            denial: Some(PolicyDenial {
                reason: refusal.reason,
                detail: refusal.detail,
                rule: rule.clone(),
                custom,
            }),
            matched: if refusal.reason == PolicyReason::PolicyDenied {
                rule
            } else {
                None
            },
        }
    }
}

/// The result of [`Policies::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The enforced decision: `false` means answer with `denial`.
    pub verdict: PolicyVerdict,
    /// Every AUDIT rule that matched (Istio: "should be audited").
    pub audit: Vec<RuleRef>,
    /// With any dry run configured: the decision with the dry-run rules (and, for a
    /// section-wide dry run, everything) enforced. Record it; never act on it.
    pub dry_run: Option<PolicyVerdict>,
}

impl PolicyOutcome {
    pub fn allowed(&self) -> bool {
        self.verdict.allowed
    }
}

/// The facts about the connection, read by the shell from Envoy properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// `connection.uri_san_peer_certificate`: the peer's SPIFFE ID
    /// (`spiffe://cluster.local/ns/a/sa/b`); `None` without mTLS.
    pub peer_uri_san: Option<String>,
    /// `connection.sha256_peer_certificate_digest`: lowercase hex SHA-256 of the
    /// peer's DER certificate.
    pub peer_cert_sha256: Option<String>,
    /// `source.address` (IP part, see [`crate::matcher::address_ip`]).
    pub source_ip: Option<IpAddr>,
    /// `destination.address` (IP part).
    pub destination_ip: Option<IpAddr>,
    /// `destination.port`.
    pub destination_port: Option<u16>,
    /// `connection.requested_server_name`.
    pub sni: Option<String>,
}

/// The verified token, if any.
#[derive(Debug, Clone, Copy)]
pub struct TokenInput<'a> {
    /// The compact JWS as presented (for DPoP `ath`).
    pub raw: &'a str,
    pub claims: &'a Map<String, Value>,
    pub presentation: Presentation,
}

/// Everything one evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// Request headers with pseudo-headers (`:method`, `:path`, `:authority`,
    /// `:scheme`) and `dpop`.
    pub request: &'a Request,
    pub connection: &'a Connection,
    /// `None` when no valid token was presented.
    pub token: Option<TokenInput<'a>>,
    /// Seconds since the epoch.
    pub now: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Audit,
}

/// One value list with its negation: `values` ORed, `notValues` "none of".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field<M> {
    values: Vec<M>,
    not: Vec<M>,
}

impl<M> Field<M> {
    fn eval(&self, hit: impl Fn(&M) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&hit)) && !self.not.iter().any(&hit)
    }
}

/// One AND-ed condition of a source, operation or `when`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Principals(Field<PrincipalMatch>),
    RequestPrincipals(Field<RequestPrincipalMatch>),
    Namespaces(Field<Pattern>),
    ServiceAccounts(Field<Vec<Pattern>>),
    TrustDomains(Field<Pattern>),
    SourceIp(Field<IpBlock>),
    DestinationIp(Field<IpBlock>),
    Hosts(Field<HostMatch>),
    Ports(Field<u16>),
    Methods(Field<StrMatch>),
    Paths(Field<PathMatch>),
    Header(String, Field<StrMatch>),
    Claim(Vec<String>, Field<StrMatch>),
    Sni(Field<StrMatch>),
}

impl Check {
    /// Whether the check reads a fact of the connection (the peer's identity, addresses,
    /// the destination port, SNI) rather than of the request or the token.
    fn reads_connection(&self) -> bool {
        matches!(
            self,
            Check::Principals(_)
                | Check::Namespaces(_)
                | Check::ServiceAccounts(_)
                | Check::TrustDomains(_)
                | Check::SourceIp(_)
                | Check::DestinationIp(_)
                | Check::Ports(_)
                | Check::Sni(_)
        )
    }
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub dry_run: bool,
    from: Vec<Vec<Check>>,
    to: Vec<Vec<Check>>,
    when: Vec<Check>,
    pub bind: Option<Bind>,
    pub custom: Custom,
}

/// One policy: Istio's `AuthorizationPolicy` `spec`, with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub action: Action,
    pub dry_run: bool,
    pub rules: Vec<Rule>,
    pub custom: Custom,
}

/// The parsed `authorization` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    pub policies: Vec<Policy>,
    /// Section-wide dry run: nothing here denies; everything is reported.
    pub dry_run: bool,
    /// RFC 8705 enforcement for every token (`certificateBinding`).
    pub certificate_binding: BindingMode,
    /// RFC 9449 enforcement for every token (`dpop.mode`).
    pub dpop_binding: BindingMode,
    pub dpop: DpopSettings,
    pub space_delimited_claims: Vec<String>,
    /// Section-wide `denyStatus` / `denyBody`.
    pub custom: Custom,
    has_dry_run: bool,
}

impl Policies {
    /// Whether evaluating these policies may read the connection (a `source`/`destination`
    /// check or a `bind`). When not, the shell's Envoy property reads are skipped: each is
    /// a host call, and a request path that needs none should not pay for them.
    pub fn reads_connection(&self) -> bool {
        self.policies.iter().flat_map(|p| &p.rules).any(|r| {
            r.bind.is_some()
                || r.from
                    .iter()
                    .chain(&r.to)
                    .flatten()
                    .chain(&r.when)
                    .any(Check::reads_connection)
        })
    }
}

impl Default for Policies {
    /// No policies; sender constraints enforced when bound. Allows every request
    /// whose token carries no binding.
    fn default() -> Policies {
        Policies {
            policies: Vec::new(),
            dry_run: false,
            certificate_binding: BindingMode::IfBound,
            dpop_binding: BindingMode::IfBound,
            dpop: DpopSettings::default(),
            space_delimited_claims: DEFAULT_SPACE_DELIMITED_CLAIMS.iter().map(|s| (*s).to_owned()).collect(),
            custom: Custom::default(),
            has_dry_run: false,
        }
    }
}

// ---------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------

/// Request facts, computed once.
struct Facts<'a> {
    method: Option<&'a str>,
    /// `:path` without query and fragment.
    path: Option<&'a str>,
    authority: Option<&'a str>,
    peer: Option<&'a str>,
}

struct Eval<'i, 'r> {
    input: PolicyInput<'i>,
    facts: Facts<'i>,
    replay: &'r mut ReplayCache,
    /// The DPoP check runs at most once per request (it records the proof).
    dpop: Option<Result<(), Refusal>>,
}

impl Policies {
    /// Evaluates the request. `replay` is the worker's DPoP replay cache (create it
    /// with [`ReplayCache::new`]`(self.dpop.replay_cache_size)`).
    pub fn evaluate(&self, input: &PolicyInput<'_>, replay: &mut ReplayCache) -> PolicyOutcome {
        let req = input.request;
        let facts = Facts {
            method: req.header(":method"),
            path: req.header(":path").map(|p| {
                let p = p.split('?').next().unwrap_or(p);
                p.split('#').next().unwrap_or(p)
            }),
            authority: req.header(":authority").or_else(|| req.header("host")),
            peer: input.connection.peer_uri_san.as_deref().filter(|p| !p.is_empty()),
        };
        let mut ev = Eval {
            input: *input,
            facts,
            replay,
            dpop: None,
        };
        let binding = self.token_binding(&mut ev);
        let audit = self.audit(&ev);
        let decide = |ev: &mut Eval<'_, '_>, shadow: bool| match binding {
            Err(r) => PolicyVerdict::deny(r, None, Custom::default()),
            Ok(()) => self.decide(ev, shadow),
        };
        let verdict = if self.dry_run {
            PolicyVerdict::allow(None)
        } else {
            decide(&mut ev, false)
        };
        let dry_run = self.has_dry_run.then(|| decide(&mut ev, true));
        PolicyOutcome {
            verdict,
            audit,
            dry_run,
        }
    }

    /// Whether any dry run is configured (then [`PolicyOutcome::dry_run`] is set).
    pub fn has_dry_run(&self) -> bool {
        self.has_dry_run
    }

    /// Token-level sender constraints (`certificateBinding`, `dpop.mode`).
    fn token_binding(&self, ev: &mut Eval<'_, '_>) -> Result<(), Refusal> {
        let Some(tok) = ev.input.token else {
            return Ok(());
        };
        if self.certificate_binding == BindingMode::Ignore && self.dpop_binding == BindingMode::Ignore {
            return Ok(());
        }
        let cnf = binding::cnf(tok.claims).map_err(|d| Refusal::new(PolicyReason::CnfInvalid, d))?;
        if self.certificate_binding != BindingMode::Ignore {
            match cnf.x5t_s256 {
                Some(x5t) => binding::check_certificate(x5t, ev.input.connection.peer_cert_sha256.as_deref())
                    .map_err(|d| Refusal::new(PolicyReason::CertBindingMismatch, d))?,
                None if self.certificate_binding == BindingMode::Required => {
                    return Err(Refusal::new(
                        PolicyReason::CertBindingMissing,
                        "token is not certificate-bound",
                    ))
                }
                None => {}
            }
        }
        if self.dpop_binding != BindingMode::Ignore
            && (cnf.jkt.is_some()
                || tok.presentation == Presentation::Dpop
                || self.dpop_binding == BindingMode::Required)
        {
            self.require_dpop(ev)?;
        }
        Ok(())
    }

    /// A DPoP-bound token, presented with the DPoP scheme, with a valid fresh proof.
    fn require_dpop(&self, ev: &mut Eval<'_, '_>) -> Result<(), Refusal> {
        if let Some(done) = ev.dpop {
            return done;
        }
        let result = (|| {
            let tok = ev
                .input
                .token
                .ok_or(Refusal::new(PolicyReason::DpopBindingMissing, "no token"))?;
            let cnf = binding::cnf(tok.claims).map_err(|d| Refusal::new(PolicyReason::CnfInvalid, d))?;
            let Some(jkt) = cnf.jkt else {
                return Err(Refusal::new(
                    PolicyReason::DpopBindingMissing,
                    "token is not DPoP-bound",
                ));
            };
            if tok.presentation != Presentation::Dpop {
                return Err(Refusal::new(
                    PolicyReason::DpopTokenAsBearer,
                    "DPoP-bound token not presented with the DPoP scheme",
                ));
            }
            dpop::check(
                &self.dpop,
                ev.input.request,
                tok.raw,
                Some(jkt),
                ev.replay,
                ev.input.now,
            )
            .map(|_| ())
            .map_err(dpop_refusal)
        })();
        ev.dpop = Some(result);
        result
    }

    fn audit(&self, ev: &Eval<'_, '_>) -> Vec<RuleRef> {
        let mut out = Vec::new();
        for p in self.policies.iter().filter(|p| p.action == Action::Audit) {
            for r in &p.rules {
                if self.conditions_match(r, ev) {
                    out.push(rule_ref(p, r));
                }
            }
        }
        out
    }

    /// Istio's order: DENY, then ALLOW. `shadow` includes dry-run policies and rules.
    fn decide(&self, ev: &mut Eval<'_, '_>, shadow: bool) -> PolicyVerdict {
        let included = |p: &Policy, r: &Rule| shadow || !(p.dry_run || r.dry_run);
        for p in self.policies.iter().filter(|p| p.action == Action::Deny) {
            for r in p.rules.iter().filter(|r| included(p, r)) {
                if self.conditions_match(r, ev) {
                    return PolicyVerdict::deny(
                        Refusal::new(PolicyReason::PolicyDenied, "a DENY rule matched"),
                        Some(rule_ref(p, r)),
                        r.custom.or(&p.custom).or(&self.custom),
                    );
                }
            }
        }
        let allow_exists = self.policies.iter().any(|p| {
            p.action == Action::Allow
                && (shadow || (!p.dry_run && (p.rules.is_empty() || p.rules.iter().any(|r| !r.dry_run))))
        });
        if !allow_exists {
            return PolicyVerdict::allow(None);
        }
        let mut first_failure: Option<(Refusal, RuleRef, Custom)> = None;
        for p in self.policies.iter().filter(|p| p.action == Action::Allow) {
            for r in p.rules.iter().filter(|r| included(p, r)) {
                if !self.conditions_match(r, ev) {
                    continue;
                }
                let bound = match &r.bind {
                    None => Ok(()),
                    Some(b) => self.check_bind(b, ev),
                };
                match bound {
                    Ok(()) => return PolicyVerdict::allow(Some(rule_ref(p, r))),
                    Err(refusal) => {
                        if first_failure.is_none() {
                            first_failure = Some((refusal, rule_ref(p, r), r.custom.or(&p.custom).or(&self.custom)));
                        }
                    }
                }
            }
        }
        match first_failure {
            Some((refusal, rule, custom)) => PolicyVerdict::deny(refusal, Some(rule), custom),
            None => PolicyVerdict::deny(
                Refusal::new(PolicyReason::PolicyNoMatch, "no ALLOW rule matched"),
                None,
                self.custom.clone(),
            ),
        }
    }

    fn check_bind(&self, bind: &Bind, ev: &mut Eval<'_, '_>) -> Result<(), Refusal> {
        let claims = ev.input.token.map(|t| t.claims);
        let peer = ev.facts.peer;
        if bind.certificate {
            let claims = claims.ok_or(Refusal::new(PolicyReason::CertBindingMissing, "no token"))?;
            let cnf = binding::cnf(claims).map_err(|d| Refusal::new(PolicyReason::CnfInvalid, d))?;
            let x5t = cnf.x5t_s256.ok_or(Refusal::new(
                PolicyReason::CertBindingMissing,
                "token is not certificate-bound",
            ))?;
            binding::check_certificate(x5t, ev.input.connection.peer_cert_sha256.as_deref())
                .map_err(|d| Refusal::new(PolicyReason::CertBindingMismatch, d))?;
        }
        if bind.dpop {
            self.require_dpop(ev)?;
        }
        if let Some(w) = &bind.workload {
            let claims = claims.ok_or(Refusal::new(PolicyReason::WorkloadMismatch, "no token"))?;
            w.check(claims, peer)
                .map_err(|m| mismatch(m, PolicyReason::WorkloadMismatch))?;
        }
        if let Some(d) = &bind.delegation {
            match claims {
                None if d.required => return Err(Refusal::new(PolicyReason::DelegationMismatch, "no token")),
                None => {}
                Some(c) => d
                    .check(c, peer)
                    .map_err(|m| mismatch(m, PolicyReason::DelegationMismatch))?,
            }
        }
        Ok(())
    }

    fn conditions_match(&self, r: &Rule, ev: &Eval<'_, '_>) -> bool {
        let all = |checks: &[Check]| checks.iter().all(|c| self.check(c, ev));
        (r.from.is_empty() || r.from.iter().any(|s| all(s)))
            && (r.to.is_empty() || r.to.iter().any(|o| all(o)))
            && all(&r.when)
    }

    fn check(&self, c: &Check, ev: &Eval<'_, '_>) -> bool {
        let f = &ev.facts;
        let conn = ev.input.connection;
        let claims = ev.input.token.map(|t| t.claims);
        match c {
            Check::Principals(field) => field.eval(|m| f.peer.is_some_and(|p| m.matches(p))),
            Check::Namespaces(field) => field.eval(|m| f.peer.is_some_and(|p| m.matches(p))),
            Check::TrustDomains(field) => field.eval(|m| f.peer.is_some_and(|p| m.matches(p))),
            Check::ServiceAccounts(field) => {
                field.eval(|alts| f.peer.is_some_and(|p| alts.iter().any(|m| m.matches(p))))
            }
            Check::RequestPrincipals(field) => {
                let iss_sub = claims.and_then(|c| match (c.get("iss"), c.get("sub")) {
                    (Some(Value::String(i)), Some(Value::String(s))) => Some((i.as_str(), s.as_str())),
                    _ => None,
                });
                field.eval(|m| iss_sub.is_some_and(|(i, s)| m.matches(i, s)))
            }
            Check::SourceIp(field) => field.eval(|b| conn.source_ip.is_some_and(|ip| b.contains(ip))),
            Check::DestinationIp(field) => field.eval(|b| conn.destination_ip.is_some_and(|ip| b.contains(ip))),
            Check::Hosts(field) => field.eval(|m| f.authority.is_some_and(|a| m.matches(a))),
            Check::Ports(field) => field.eval(|p| conn.destination_port == Some(*p)),
            Check::Methods(field) => field.eval(|m| f.method.is_some_and(|x| m.matches(x))),
            Check::Paths(field) => field.eval(|m| f.path.is_some_and(|x| m.matches(x))),
            Check::Sni(field) => field.eval(|m| conn.sni.as_deref().is_some_and(|x| m.matches(x))),
            Check::Header(name, field) => {
                // Envoy's header matcher sees repeated headers joined with ','.
                let mut values = ev.input.request.header_values(name).peekable();
                let joined = values.peek().is_some().then(|| values.collect::<Vec<_>>().join(","));
                field.eval(|m| match (&joined, m) {
                    (Some(_), StrMatch::Presence) => true,
                    (Some(v), m) => m.matches(v),
                    (None, _) => false,
                })
            }
            Check::Claim(path, field) => {
                let value = claims.and_then(|c| claim_at(c, path));
                let split = path.len() == 1
                    && path
                        .first()
                        .is_some_and(|n| self.space_delimited_claims.iter().any(|s| s == n));
                field.eval(|m| value.is_some_and(|v| claim_any(v, split, |s| m.matches(s))))
            }
        }
    }
}

fn rule_ref(p: &Policy, r: &Rule) -> RuleRef {
    RuleRef {
        policy: p.name.clone(),
        rule: r.name.clone(),
    }
}

fn mismatch(m: Mismatch, reason: PolicyReason) -> Refusal {
    match m {
        Mismatch::NoPeer => Refusal::new(PolicyReason::PeerUnauthenticated, "no mTLS peer identity"),
        Mismatch::Differs(d) => Refusal::new(reason, d),
    }
}

fn dpop_refusal(e: DpopError) -> Refusal {
    let reason = match e {
        DpopError::Missing => PolicyReason::DpopProofMissing,
        DpopError::Replayed => PolicyReason::DpopReplayed,
        DpopError::KeyBinding => PolicyReason::DpopKeyMismatch,
        DpopError::CacheFull => PolicyReason::DpopReplayCacheFull,
        _ => PolicyReason::DpopProofInvalid,
    };
    Refusal::new(reason, e.detail())
}

/// The claim at a nested path.
fn claim_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    let mut v = claims.get(first)?;
    for name in rest {
        v = v.as_object()?.get(name)?;
    }
    Some(v)
}

/// Whether any string form of a claim value satisfies `pred`: the string (or its
/// space-separated words), each scalar element of an array, or a scalar's JSON text.
fn claim_any(v: &Value, split: bool, pred: impl Fn(&str) -> bool) -> bool {
    let scalar = |v: &Value| match v {
        Value::String(s) => pred(s),
        Value::Number(n) => pred(&n.to_string()),
        Value::Bool(b) => pred(if *b { "true" } else { "false" }),
        _ => false,
    };
    match v {
        Value::String(s) if split => s.split(' ').filter(|w| !w.is_empty()).any(&pred),
        Value::Array(items) => items.iter().any(scalar),
        other => scalar(other),
    }
}

// ---------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------

impl Policies {
    /// Parses the `authorization` section at `path` (e.g. `$.authorization`). The first
    /// problem refuses it whole, with its JSON path; unknown fields are errors.
    pub fn parse(v: &Value, path: &str) -> Result<Policies, ConfigError> {
        let f = Fields::new(
            v,
            path,
            &[
                "policies",
                "dryRun",
                "denyStatus",
                "denyBody",
                "certificateBinding",
                "dpop",
                "spaceDelimitedClaims",
            ],
        )?;
        let mut out = Policies {
            dry_run: f.opt_bool("dryRun")?.unwrap_or(false),
            custom: parse_custom(&f)?,
            certificate_binding: parse_mode(&f, "certificateBinding")?,
            ..Policies::default()
        };
        for (i, c) in f.opt_string_list("spaceDelimitedClaims")?.into_iter().enumerate() {
            if c.is_empty() || c.contains('[') || c.contains(']') {
                return Err(ConfigError::new(
                    &format!("{path}.spaceDelimitedClaims[{i}]"),
                    "must be a claim name",
                ));
            }
            if !out.space_delimited_claims.contains(&c) {
                out.space_delimited_claims.push(c);
            }
        }
        if let Some(d) = f.opt("dpop") {
            let (mode, settings) = parse_dpop(d, &f.child("dpop"))?;
            out.dpop_binding = mode;
            out.dpop = settings;
        }
        if let Some(list) = f.opt_array("policies")? {
            if list.len() > MAX_POLICIES {
                return Err(f.err("policies", format!("at most {MAX_POLICIES} policies")));
            }
            for (i, p) in list.iter().enumerate() {
                let pp = format!("{path}.policies[{i}]");
                let policy = parse_policy(p, &pp)?;
                if out.policies.iter().any(|q| q.name == policy.name) {
                    return Err(ConfigError::new(&format!("{pp}.name"), "duplicate policy name"));
                }
                out.policies.push(policy);
            }
        }
        out.has_dry_run = out.dry_run
            || out
                .policies
                .iter()
                .any(|p| p.dry_run || p.rules.iter().any(|r| r.dry_run));
        Ok(out)
    }
}

fn parse_mode(f: &Fields<'_>, key: &str) -> Result<BindingMode, ConfigError> {
    match f.opt_str(key)? {
        None | Some("ifBound") => Ok(BindingMode::IfBound),
        Some("required") => Ok(BindingMode::Required),
        Some("ignore") => Ok(BindingMode::Ignore),
        Some(_) => Err(f.err(key, "must be one of \"ifBound\", \"required\", \"ignore\"")),
    }
}

fn parse_dpop(v: &Value, path: &str) -> Result<(BindingMode, DpopSettings), ConfigError> {
    let f = Fields::new(
        v,
        path,
        &[
            "mode",
            "iatWindowSeconds",
            "algorithms",
            "htuSchemes",
            "maxProofBytes",
            "replayCacheSize",
        ],
    )?;
    let mode = parse_mode(&f, "mode")?;
    let mut s = DpopSettings::default();
    if let Some(w) = f.opt_u64_in("iatWindowSeconds", 1, dpop::MAX_IAT_WINDOW_SECONDS)? {
        s.iat_window_seconds = w;
    }
    if let Some(n) = f.opt_u64_in("maxProofBytes", 512, 65536)? {
        s.max_proof_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = f.opt_u64_in("replayCacheSize", 1, dpop::MAX_REPLAY_CACHE_SIZE as u64)? {
        s.replay_cache_size = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if f.opt("algorithms").is_some() {
        let names = f.opt_string_list("algorithms")?;
        if names.is_empty() {
            return Err(f.err("algorithms", "must not be empty"));
        }
        let mut algs = Vec::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            match crate::algorithm::Alg::parse(n) {
                crate::algorithm::AlgName::Known(a) if dpop::asymmetric().contains(a) => algs.push(a),
                _ => {
                    return Err(ConfigError::new(
                        &format!("{path}.algorithms[{i}]"),
                        "not an asymmetric JWS algorithm hopguard supports (RS/PS/ES 256/384/512, EdDSA)",
                    ))
                }
            }
        }
        s.algorithms = crate::algorithm::AlgSet::of(&algs);
    }
    for (i, scheme) in f.opt_string_list("htuSchemes")?.into_iter().enumerate() {
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return Err(ConfigError::new(
                &format!("{path}.htuSchemes[{i}]"),
                "must be a URI scheme",
            ));
        }
        s.htu_schemes.push(scheme.to_ascii_lowercase());
    }
    Ok((mode, s))
}

fn parse_custom(f: &Fields<'_>) -> Result<Custom, ConfigError> {
    let status = match f.opt_u64_in("denyStatus", 400, 599)? {
        Some(n) => Some(u16::try_from(n).map_err(|_| f.err("denyStatus", "out of range"))?),
        None => None,
    };
    let (body, content_type) = match f.opt("denyBody") {
        None => (None, None),
        Some(Value::String(s)) => (Some(s.clone()), Some("text/plain; charset=utf-8")),
        Some(o @ Value::Object(_)) => (Some(o.to_string()), Some("application/problem+json")),
        Some(_) => return Err(f.err("denyBody", "must be a string or a JSON object")),
    };
    if body.as_ref().is_some_and(|b| b.len() > MAX_DENY_BODY_BYTES) {
        return Err(f.err("denyBody", format!("at most {MAX_DENY_BODY_BYTES} bytes")));
    }
    Ok(Custom {
        status,
        body,
        content_type,
    })
}

fn parse_policy(v: &Value, path: &str) -> Result<Policy, ConfigError> {
    let f = Fields::new(
        v,
        path,
        &["name", "action", "rules", "dryRun", "denyStatus", "denyBody"],
    )?;
    let name = f.req_str("name")?;
    if !is_name(name) {
        return Err(f.err("name", "must be 1-64 characters of [A-Za-z0-9._-]"));
    }
    let action = match f.opt_str("action")? {
        None | Some("ALLOW") => Action::Allow,
        Some("DENY") => Action::Deny,
        Some("AUDIT") => Action::Audit,
        Some("CUSTOM") => return Err(f.err("action", "CUSTOM (external authorization) is not supported")),
        Some(_) => return Err(f.err("action", "must be one of \"ALLOW\", \"DENY\", \"AUDIT\"")),
    };
    let dry_run = f.opt_bool("dryRun")?.unwrap_or(false);
    let custom = parse_custom(&f)?;
    if action == Action::Audit && custom != Custom::default() {
        return Err(f.err("denyStatus", "an AUDIT policy never denies"));
    }
    let list = f.opt_array("rules")?.map(Vec::as_slice).unwrap_or(&[]);
    if action == Action::Deny && list.is_empty() {
        // Istio's validation: it would never match.
        return Err(f.err(
            "rules",
            "a DENY policy without rules never matches; add a rule {} to deny every request",
        ));
    }
    if list.len() > MAX_RULES {
        return Err(f.err("rules", format!("at most {MAX_RULES} rules")));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        let rule = parse_rule(r, &rp, i, action)?;
        if rules.iter().any(|q| q.name == rule.name) {
            return Err(ConfigError::new(
                &format!("{rp}.name"),
                "duplicate rule name in this policy",
            ));
        }
        rules.push(rule);
    }
    Ok(Policy {
        name: name.to_owned(),
        action,
        dry_run,
        rules,
        custom,
    })
}

fn is_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn parse_rule(v: &Value, path: &str, index: usize, action: Action) -> Result<Rule, ConfigError> {
    let f = Fields::new(
        v,
        path,
        &["name", "from", "to", "when", "bind", "dryRun", "denyStatus", "denyBody"],
    )?;
    let name = match f.opt_str("name")? {
        None => format!("rules[{index}]"),
        Some(n) if is_name(n) => n.to_owned(),
        Some(_) => return Err(f.err("name", "must be 1-64 characters of [A-Za-z0-9._-]")),
    };
    let dry_run = f.opt_bool("dryRun")?.unwrap_or(false);
    let custom = parse_custom(&f)?;
    if action == Action::Audit && custom != Custom::default() {
        return Err(f.err("denyStatus", "an AUDIT rule never denies"));
    }

    let mut from = Vec::new();
    if let Some(list) = f.opt_array("from")? {
        if list.is_empty() {
            return Err(f.err("from", "must not be empty (omit it to match any source)"));
        }
        for (i, e) in list.iter().enumerate() {
            let ep = format!("{path}.from[{i}]");
            let ef = Fields::new(e, &ep, &["source"])?;
            let src = ef.opt("source").ok_or_else(|| ef.err("source", "required"))?;
            from.push(parse_source(src, &format!("{ep}.source"))?);
        }
    }
    let mut to = Vec::new();
    if let Some(list) = f.opt_array("to")? {
        if list.is_empty() {
            return Err(f.err("to", "must not be empty (omit it to match any operation)"));
        }
        for (i, e) in list.iter().enumerate() {
            let ep = format!("{path}.to[{i}]");
            let ef = Fields::new(e, &ep, &["operation"])?;
            let op = ef.opt("operation").ok_or_else(|| ef.err("operation", "required"))?;
            to.push(parse_operation(op, &format!("{ep}.operation"))?);
        }
    }
    let mut when = Vec::new();
    if let Some(list) = f.opt_array("when")? {
        for (i, c) in list.iter().enumerate() {
            when.push(parse_condition(c, &format!("{path}.when[{i}]"))?);
        }
    }
    let bind = match f.opt("bind") {
        None => None,
        Some(_) if action != Action::Allow => {
            return Err(f.err("bind", "identity binding is a requirement of ALLOW rules only"))
        }
        Some(b) => Some(parse_bind(b, &f.child("bind"))?),
    };
    Ok(Rule {
        name,
        dry_run,
        from,
        to,
        when,
        bind,
        custom,
    })
}

const SOURCE_FIELDS: [&str; 14] = [
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
];

fn parse_source(v: &Value, path: &str) -> Result<Vec<Check>, ConfigError> {
    let f = Fields::new(v, path, &SOURCE_FIELDS)?;
    if f.map.is_empty() {
        return Err(ConfigError::new(path, "must not be empty"));
    }
    for key in ["remoteIpBlocks", "notRemoteIpBlocks"] {
        if f.opt(key).is_some() {
            return Err(f.err(
                key,
                "not supported: a Wasm filter cannot see Envoy's trusted client address; \
                 use ipBlocks (the direct peer) or request.headers[x-forwarded-for]",
            ));
        }
    }
    let has = |f: &Fields<'_>, k: &str| f.map.contains_key(k);
    if (has(&f, "serviceAccounts") || has(&f, "notServiceAccounts"))
        && ["principals", "notPrincipals", "namespaces", "notNamespaces"]
            .iter()
            .any(|k| has(&f, k))
    {
        return Err(f.err("serviceAccounts", "cannot be set with namespaces or principals"));
    }
    let mut checks = Vec::new();
    if let Some(x) = field(&f, "principals", "notPrincipals", PrincipalMatch::parse)? {
        checks.push(Check::Principals(x));
    }
    if let Some(x) = field(
        &f,
        "requestPrincipals",
        "notRequestPrincipals",
        RequestPrincipalMatch::parse,
    )? {
        checks.push(Check::RequestPrincipals(x));
    }
    if let Some(x) = field(&f, "namespaces", "notNamespaces", namespace_pattern)? {
        checks.push(Check::Namespaces(x));
    }
    if let Some(x) = field(&f, "serviceAccounts", "notServiceAccounts", service_account_patterns)? {
        checks.push(Check::ServiceAccounts(x));
    }
    if let Some(x) = field(&f, "trustDomains", "notTrustDomains", trust_domain_pattern)? {
        checks.push(Check::TrustDomains(x));
    }
    if let Some(x) = field(&f, "ipBlocks", "notIpBlocks", IpBlock::parse)? {
        checks.push(Check::SourceIp(x));
    }
    Ok(checks)
}

fn parse_operation(v: &Value, path: &str) -> Result<Vec<Check>, ConfigError> {
    let f = Fields::new(
        v,
        path,
        &[
            "hosts",
            "notHosts",
            "ports",
            "notPorts",
            "methods",
            "notMethods",
            "paths",
            "notPaths",
        ],
    )?;
    if f.map.is_empty() {
        return Err(ConfigError::new(path, "must not be empty"));
    }
    let mut checks = Vec::new();
    if let Some(x) = field(&f, "hosts", "notHosts", HostMatch::parse)? {
        checks.push(Check::Hosts(x));
    }
    if let Some(x) = field(&f, "ports", "notPorts", parse_port)? {
        checks.push(Check::Ports(x));
    }
    if let Some(x) = field(&f, "methods", "notMethods", StrMatch::parse)? {
        checks.push(Check::Methods(x));
    }
    if let Some(x) = field(&f, "paths", "notPaths", PathMatch::parse)? {
        checks.push(Check::Paths(x));
    }
    Ok(checks)
}

fn parse_port(v: &str) -> Result<u16, &'static str> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a port number from 0 to 65535");
    }
    v.parse::<u16>().map_err(|_| "must be a port number from 0 to 65535")
}

/// The `when` keys hopguard supports: Istio's conditions minus `remote.ip` and
/// `experimental.envoy.filters.*`.
pub const CONDITION_KEYS: [&str; 13] = [
    "request.headers[<name>]",
    "source.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[<name>][<nested>]",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

fn parse_condition(v: &Value, path: &str) -> Result<Check, ConfigError> {
    let f = Fields::new(v, path, &["key", "values", "notValues"])?;
    let key = f.req_str("key")?;
    if f.opt("values").is_none() && f.opt("notValues").is_none() {
        return Err(f.err("values", "at least one of values or notValues is required"));
    }
    let key_err = |msg: &str| ConfigError::new(&format!("{path}.key"), msg);
    let (vk, nk) = ("values", "notValues");
    let present = || ConfigError::new(&format!("{path}.values"), "required");
    let check = match key {
        "source.ip" => Check::SourceIp(field(&f, vk, nk, IpBlock::parse)?.ok_or_else(present)?),
        "destination.ip" => Check::DestinationIp(field(&f, vk, nk, IpBlock::parse)?.ok_or_else(present)?),
        "source.namespace" => Check::Namespaces(field(&f, vk, nk, namespace_pattern)?.ok_or_else(present)?),
        "source.principal" => Check::Principals(field(&f, vk, nk, PrincipalMatch::parse)?.ok_or_else(present)?),
        "source.serviceAccount" => {
            Check::ServiceAccounts(field(&f, vk, nk, service_account_patterns)?.ok_or_else(present)?)
        }
        "source.trustDomain" => Check::TrustDomains(field(&f, vk, nk, trust_domain_pattern)?.ok_or_else(present)?),
        "request.auth.principal" => {
            Check::RequestPrincipals(field(&f, vk, nk, RequestPrincipalMatch::parse)?.ok_or_else(present)?)
        }
        "request.auth.audiences" => Check::Claim(
            vec!["aud".to_owned()],
            field(&f, vk, nk, StrMatch::parse)?.ok_or_else(present)?,
        ),
        "request.auth.presenter" => Check::Claim(
            vec!["azp".to_owned()],
            field(&f, vk, nk, StrMatch::parse)?.ok_or_else(present)?,
        ),
        "destination.port" => Check::Ports(field(&f, vk, nk, parse_port)?.ok_or_else(present)?),
        "connection.sni" => Check::Sni(field(&f, vk, nk, StrMatch::parse)?.ok_or_else(present)?),
        "remote.ip" => {
            return Err(key_err(
                "remote.ip is not supported: a Wasm filter cannot see Envoy's trusted client address; \
                 use source.ip or request.headers[x-forwarded-for]",
            ))
        }
        k if k.starts_with("experimental.envoy.filters.") => {
            return Err(key_err(
                "experimental.envoy.filters.* (Envoy metadata) is not supported",
            ))
        }
        k => {
            if let Some(rest) = k.strip_prefix("request.headers") {
                let names = bracketed(rest)
                    .filter(|n| n.len() == 1)
                    .ok_or_else(|| key_err("expected request.headers[<name>] with a header name"))?;
                let name = names.into_iter().next().unwrap_or_default().to_ascii_lowercase();
                let ok = name
                    .strip_prefix(':')
                    .unwrap_or(&name)
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !ok || name.is_empty() || name == ":" {
                    return Err(key_err("not a valid header name"));
                }
                Check::Header(name, field(&f, vk, nk, StrMatch::parse)?.ok_or_else(present)?)
            } else if let Some(rest) = k.strip_prefix("request.auth.claims") {
                let names = bracketed(rest).ok_or_else(|| {
                    key_err("expected request.auth.claims[<name>], or [<name>][<nested>]... for nested claims")
                })?;
                Check::Claim(names, field(&f, vk, nk, StrMatch::parse)?.ok_or_else(present)?)
            } else {
                return Err(key_err(&format!(
                    "unknown attribute; supported: {}",
                    CONDITION_KEYS.join(", ")
                )));
            }
        }
    };
    Ok(check)
}

/// `[a][b]` -> `["a", "b"]`: at least one non-empty name, no brackets inside names.
fn bracketed(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = inner.get(..end)?;
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_owned());
        rest = inner.get(end + 1..)?;
    }
    (!out.is_empty()).then_some(out)
}

/// Reads `values`/`notValues`-style pairs: `Ok(None)` when both are absent.
fn field<M>(
    f: &Fields<'_>,
    values: &str,
    not_values: &str,
    parse: impl Fn(&str) -> Result<M, &'static str>,
) -> Result<Option<Field<M>>, ConfigError> {
    // Ports may be written as JSON numbers too; everything else is a string.
    let numbers =
        values == "ports" || (values == "values" && f.opt_str("key").ok().flatten() == Some("destination.port"));
    if f.opt(values).is_none() && f.opt(not_values).is_none() {
        return Ok(None);
    }
    let read = |key: &str| -> Result<Vec<M>, ConfigError> {
        let list = value_list(f, key, numbers)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            out.push(parse(s).map_err(|e| ConfigError::new(&format!("{}.{key}[{i}]", f.path), e))?);
        }
        Ok(out)
    };
    Ok(Some(Field {
        values: read(values)?,
        not: read(not_values)?,
    }))
}

fn parse_bind(v: &Value, path: &str) -> Result<Bind, ConfigError> {
    let f = Fields::new(v, path, &["workload", "certificate", "dpop", "delegation"])?;
    let mut bind = Bind {
        certificate: f.opt_bool("certificate")?.unwrap_or(false),
        dpop: f.opt_bool("dpop")?.unwrap_or(false),
        ..Bind::default()
    };
    if let Some(w) = f.opt("workload") {
        let wp = f.child("workload");
        let wf = Fields::new(w, &wp, &["claim", "map"])?;
        let claim = wf.req_str("claim")?;
        if claim.is_empty() {
            return Err(wf.err("claim", "must be a claim name"));
        }
        let map = match wf.opt("map") {
            None => None,
            Some(Value::Object(m)) => {
                let mut table = BTreeMap::new();
                for (k, v) in m {
                    let ids = identities(v, &format!("{wp}.map.{}", json::truncate(k, 64)))?;
                    table.insert(k.clone(), ids);
                }
                Some(table)
            }
            Some(_) => return Err(wf.err("map", "must be an object: claim value -> SPIFFE ID(s)")),
        };
        bind.workload = Some(Workload {
            claim: claim.to_owned(),
            map,
        });
    }
    if let Some(d) = f.opt("delegation") {
        let dp = f.child("delegation");
        let df = Fields::new(d, &dp, &["actor", "maxDepth", "required"])?;
        let actor = match df.opt("actor") {
            None => Actor::Peer,
            Some(Value::String(s)) if s == "peer" => Actor::Peer,
            Some(a @ Value::Array(_)) => Actor::OneOf(identities(a, &format!("{dp}.actor"))?),
            Some(_) => return Err(df.err("actor", "must be \"peer\" or a list of SPIFFE IDs")),
        };
        let max_depth = df
            .opt_u64_in("maxDepth", 1, 32)?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let required = df.opt_bool("required")?.unwrap_or(true);
        bind.delegation = Some(Delegation {
            actor,
            max_depth,
            required,
        });
    }
    if bind == Bind::default() {
        return Err(ConfigError::new(path, "must require at least one binding"));
    }
    Ok(bind)
}

/// A SPIFFE ID or a non-empty list of them.
fn identities(v: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    let list: Vec<&Value> = match v {
        Value::String(_) => vec![v],
        Value::Array(a) if !a.is_empty() => a.iter().collect(),
        _ => {
            return Err(ConfigError::new(
                path,
                "must be a SPIFFE ID or a non-empty list of them",
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        match item.as_str() {
            Some(s) if !s.is_empty() && !s.contains('*') => out.push(s.to_owned()),
            _ => {
                return Err(ConfigError::new(
                    &format!("{path}[{i}]"),
                    "must be a SPIFFE ID (spiffe://td/ns/n/sa/s, or td/ns/n/sa/s), no wildcards",
                ))
            }
        }
    }
    Ok(out)
}

/// A matcher value list: strings (and, with `numbers`, whole numbers as text), at
/// most [`MAX_VALUES`].
fn value_list(f: &Fields<'_>, key: &str, numbers: bool) -> Result<Vec<String>, ConfigError> {
    let Some(a) = f.opt_array(key)? else {
        return Ok(Vec::new());
    };
    if a.len() > MAX_VALUES {
        return Err(f.err(key, format!("at most {MAX_VALUES} values")));
    }
    let mut out = Vec::with_capacity(a.len());
    for (i, v) in a.iter().enumerate() {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) if numbers && n.is_u64() => out.push(n.to_string()),
            _ => return Err(ConfigError::new(&format!("{}[{i}]", f.child(key)), "must be a string")),
        }
    }
    Ok(out)
}
