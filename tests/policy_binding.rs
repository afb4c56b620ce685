//! Identity binding (workload, RFC 8705 certificate, RFC 8693 delegation), custom
//! denials, and dry run at every level.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "policy_support.rs"]
mod support;

use hopguard::b64;
use hopguard::policy::{Policies, PolicyReason};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{policies, run, Call};

const A: &str = "cluster.local/ns/shop/sa/frontend";
const B: &str = "cluster.local/ns/shop/sa/orders";
const C: &str = "cluster.local/ns/shop/sa/billing";

fn bind_rule(bind: Value) -> Policies {
    policies(json!({"policies": [{"name": "svc", "rules": [{"name": "bound", "bind": bind}]}]}))
}

fn reason(p: &Policies, c: &Call) -> Option<PolicyReason> {
    run(p, c).verdict.denial.map(|d| d.reason)
}

fn detail(p: &Policies, c: &Call) -> &'static str {
    run(p, c).verdict.denial.unwrap().detail
}

/// A stand-in DER certificate's Envoy digest (lowercase hex) and RFC 8705 `x5t#S256`.
fn cert(name: &str) -> (String, String) {
    let d = Sha256::digest(format!("DER of {name}").as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    (hex, b64::encode(&d))
}

#[test]
fn workload_equals_peer() {
    let p = bind_rule(json!({"workload": {"claim": "azp"}}));
    let tok = |azp: &str| json!({"iss": "i", "sub": "s", "azp": azp});
    assert_eq!(
        reason(&p, &Call::get("/").peer(A).claims(tok(&format!("spiffe://{A}")))),
        None
    );
    assert_eq!(reason(&p, &Call::get("/").peer(A).claims(tok(A))), None, "Istio form");
    // A token minted for A, replayed by B.
    assert_eq!(
        reason(&p, &Call::get("/").peer(B).claims(tok(A))),
        Some(PolicyReason::WorkloadMismatch)
    );
    assert_eq!(
        reason(&p, &Call::get("/").claims(tok(A))),
        Some(PolicyReason::PeerUnauthenticated)
    );
    assert_eq!(
        reason(&p, &Call::get("/").peer(A)),
        Some(PolicyReason::WorkloadMismatch)
    );
    assert_eq!(detail(&p, &Call::get("/").peer(A)), "no token");
    let c = Call::get("/").peer(A).claims(json!({"azp": ["x"]}));
    assert_eq!(detail(&p, &c), "workload claim is not a string");
    let c = Call::get("/").peer(A).claims(json!({"sub": "x"}));
    assert_eq!(detail(&p, &c), "workload claim missing");
    let o = run(&p, &Call::get("/").peer(B).claims(tok(A)));
    assert_eq!(o.verdict.denial.unwrap().rule.unwrap().to_string(), "svc/bound");
}

#[test]
fn workload_through_a_map() {
    let p = bind_rule(json!({"workload": {"claim": "client_id", "map": {
        "web-frontend": format!("spiffe://{A}"),
        "batch": [B, format!("spiffe://{C}")]
    }}}));
    let tok = |id: &str| json!({"client_id": id});
    assert_eq!(reason(&p, &Call::get("/").peer(A).claims(tok("web-frontend"))), None);
    assert_eq!(reason(&p, &Call::get("/").peer(B).claims(tok("batch"))), None);
    assert_eq!(reason(&p, &Call::get("/").peer(C).claims(tok("batch"))), None);
    assert_eq!(
        reason(&p, &Call::get("/").peer(B).claims(tok("web-frontend"))),
        Some(PolicyReason::WorkloadMismatch)
    );
    assert_eq!(
        reason(&p, &Call::get("/").peer(A).claims(tok("unknown"))),
        Some(PolicyReason::WorkloadMismatch)
    );
    // The map is the only way in: the peer's own ID as client_id is not in it.
    assert_eq!(
        reason(&p, &Call::get("/").peer(A).claims(tok(A))),
        Some(PolicyReason::WorkloadMismatch)
    );
}

#[test]
fn certificate_bound_tokens_are_enforced_for_every_token() {
    // No policies at all: RFC 8705 binding is still enforced when the token has cnf.
    let p = policies(json!({}));
    let (a_hex, a_x5t) = cert("a");
    let (b_hex, _) = cert("b");
    let bound = json!({"iss": "i", "sub": "s", "cnf": {"x5t#S256": a_x5t}});
    assert_eq!(
        reason(&p, &Call::get("/").peer(A).peer_cert(&a_hex).claims(bound.clone())),
        None
    );
    assert_eq!(
        reason(
            &p,
            &Call::get("/")
                .peer(A)
                .peer_cert(&a_hex.to_uppercase())
                .claims(bound.clone())
        ),
        None,
        "hex in either case"
    );
    // Stolen token over another workload's mTLS connection.
    let c = Call::get("/").peer(B).peer_cert(&b_hex).claims(bound.clone());
    assert_eq!(reason(&p, &c), Some(PolicyReason::CertBindingMismatch));
    assert_eq!(detail(&p, &c), "peer certificate is not the one the token is bound to");
    let c = Call::get("/").claims(bound.clone());
    assert_eq!(reason(&p, &c), Some(PolicyReason::CertBindingMismatch));
    assert_eq!(detail(&p, &c), "no peer certificate");
    let c = Call::get("/").peer_cert("zz").claims(bound);
    assert_eq!(detail(&p, &c), "peer certificate digest unreadable");
    // Malformed bindings.
    for (cnf, want) in [
        (json!({"x5t#S256": "not base64!"}), PolicyReason::CertBindingMismatch),
        (
            json!({"x5t#S256": b64::encode(b"short")}),
            PolicyReason::CertBindingMismatch,
        ),
        (json!({"x5t#S256": 7}), PolicyReason::CnfInvalid),
        (json!("x"), PolicyReason::CnfInvalid),
    ] {
        let c = Call::get("/").peer_cert(&a_hex).claims(json!({"cnf": cnf}));
        assert_eq!(reason(&p, &c), Some(want), "{cnf}");
    }
    // Unbound tokens pass under ifBound.
    assert_eq!(reason(&p, &Call::get("/").claims(json!({"sub": "s"}))), None);
    // `required`: every token must be bound.
    let req = policies(json!({"certificateBinding": "required"}));
    assert_eq!(
        reason(&req, &Call::get("/").peer_cert(&a_hex).claims(json!({"sub": "s"}))),
        Some(PolicyReason::CertBindingMissing)
    );
    assert_eq!(reason(&req, &Call::get("/")), None, "no token: nothing to bind");
    // `ignore`: an inner hop behind one that checked.
    let ign = policies(json!({"certificateBinding": "ignore", "dpop": {"mode": "ignore"}}));
    let c = Call::get("/")
        .peer_cert(&b_hex)
        .claims(json!({"cnf": {"x5t#S256": cert("a").1}}));
    assert_eq!(reason(&ign, &c), None);
    let c = Call::get("/").claims(json!({"cnf": "garbage"}));
    assert_eq!(reason(&ign, &c), None, "cnf not read at all when both are ignored");
}

#[test]
fn certificate_binding_required_by_a_rule() {
    let (a_hex, a_x5t) = cert("a");
    let p = policies(
        json!({"certificateBinding": "ignore", "policies": [{"name": "svc", "rules": [
        {"name": "mtls-bound", "bind": {"certificate": true}}]}]}),
    );
    let bound = json!({"cnf": {"x5t#S256": a_x5t}});
    assert_eq!(
        reason(&p, &Call::get("/").peer_cert(&a_hex).claims(bound.clone())),
        None
    );
    assert_eq!(
        reason(&p, &Call::get("/").peer_cert(&cert("b").0).claims(bound)),
        Some(PolicyReason::CertBindingMismatch)
    );
    assert_eq!(
        reason(&p, &Call::get("/").peer_cert(&a_hex).claims(json!({"sub": "s"}))),
        Some(PolicyReason::CertBindingMissing)
    );
    assert_eq!(reason(&p, &Call::get("/")), Some(PolicyReason::CertBindingMissing));
}

#[test]
fn delegation_chain() {
    let p = bind_rule(json!({"delegation": {"actor": "peer", "maxDepth": 2}}));
    let act = |sub: &str| json!({"sub": "user", "act": {"sub": format!("spiffe://{sub}")}});
    // A delegated to B; B calls us: the current actor is B.
    assert_eq!(reason(&p, &Call::get("/").peer(B).claims(act(B))), None);
    // The same token replayed one hop further by C.
    let c = Call::get("/").peer(C).claims(act(B));
    assert_eq!(reason(&p, &c), Some(PolicyReason::DelegationMismatch));
    assert_eq!(detail(&p, &c), "current actor is not the calling workload");
    // Nested: the outermost act is the current actor; prior actors are nested.
    let nested = json!({"sub": "user", "act": {"sub": B, "act": {"sub": A}}});
    assert_eq!(reason(&p, &Call::get("/").peer(B).claims(nested.clone())), None);
    assert_eq!(
        reason(&p, &Call::get("/").peer(A).claims(nested)),
        Some(PolicyReason::DelegationMismatch),
        "a prior actor is not the current one"
    );
    let deep = json!({"act": {"sub": B, "act": {"sub": A, "act": {"sub": C}}}});
    let c = Call::get("/").peer(B).claims(deep);
    assert_eq!(detail(&p, &c), "delegation chain too deep");
    // Missing and malformed.
    let c = Call::get("/").peer(B).claims(json!({"sub": "user"}));
    assert_eq!(detail(&p, &c), "token has no act claim");
    for (claims, d) in [
        (json!({"act": "B"}), "act is not an object"),
        (json!({"act": {"client": B}}), "act has no sub"),
        (json!({"act": {"sub": B, "act": [1]}}), "act chain malformed"),
    ] {
        assert_eq!(detail(&p, &Call::get("/").peer(B).claims(claims)), d);
    }
    assert_eq!(
        reason(&p, &Call::get("/").claims(act(B))),
        Some(PolicyReason::PeerUnauthenticated)
    );
    assert_eq!(
        reason(&p, &Call::get("/").peer(B)),
        Some(PolicyReason::DelegationMismatch)
    );
    // required: false lets direct (undelegated) tokens through, still checks act.
    let opt = bind_rule(json!({"delegation": {"required": false}}));
    assert_eq!(reason(&opt, &Call::get("/").peer(C).claims(json!({"sub": "u"}))), None);
    assert_eq!(reason(&opt, &Call::get("/").peer(C)), None);
    assert_eq!(
        reason(&opt, &Call::get("/").peer(C).claims(act(B))),
        Some(PolicyReason::DelegationMismatch)
    );
    // A fixed list of actors, whoever calls.
    let list = bind_rule(json!({"delegation": {"actor": [format!("spiffe://{A}"), B]}}));
    assert_eq!(reason(&list, &Call::get("/").claims(act(A))), None);
    assert_eq!(reason(&list, &Call::get("/").claims(json!({"act": {"sub": B}}))), None);
    assert_eq!(
        reason(&list, &Call::get("/").claims(act(C))),
        Some(PolicyReason::DelegationMismatch)
    );
}

#[test]
fn bind_is_part_of_an_allow_rules_match() {
    // Rule 1 needs a workload binding; rule 2 allows health checks to anyone. A failed
    // bind on rule 1 does not stop rule 2; with no other match the bind failure is the
    // reason (not policy_no_match).
    let p = policies(json!({"policies": [{"name": "svc", "rules": [
        {"name": "api", "to": [{"operation": {"paths": ["/api/*"]}}], "bind": {"workload": {"claim": "sub"}}},
        {"name": "health", "to": [{"operation": {"paths": ["/healthz"]}}]}
    ]}]}));
    let tok = json!({"sub": format!("spiffe://{A}")});
    assert_eq!(reason(&p, &Call::get("/api/x").peer(A).claims(tok.clone())), None);
    assert_eq!(
        reason(&p, &Call::get("/api/x").peer(B).claims(tok.clone())),
        Some(PolicyReason::WorkloadMismatch)
    );
    assert_eq!(reason(&p, &Call::get("/healthz").peer(B).claims(tok.clone())), None);
    assert_eq!(
        reason(&p, &Call::get("/other").peer(A).claims(tok)),
        Some(PolicyReason::PolicyNoMatch)
    );
}

#[test]
fn custom_denials_at_every_level() {
    let p = policies(json!({
        "denyStatus": 404, "denyBody": {"title": "Not found"},
        "policies": [
            {"name": "deny-admin", "action": "DENY", "denyStatus": 451, "rules": [
                {"name": "legal", "to": [{"operation": {"paths": ["/legal*"]}}], "denyBody": "unavailable for legal reasons"},
                {"name": "admin", "to": [{"operation": {"paths": ["/admin*"]}}]}
            ]},
            {"name": "allow", "rules": [{"to": [{"operation": {"paths": ["/ok"]}}]}]}
        ]
    }));
    let d = run(&p, &Call::get("/legal")).verdict.denial.unwrap();
    assert_eq!(d.custom.status, Some(451), "policy status");
    assert_eq!(
        d.custom.body.as_deref(),
        Some("unavailable for legal reasons"),
        "rule body"
    );
    assert_eq!(d.custom.content_type, Some("text/plain; charset=utf-8"));
    let d = run(&p, &Call::get("/admin")).verdict.denial.unwrap();
    assert_eq!(d.custom.status, Some(451));
    assert_eq!(
        d.custom.body.as_deref(),
        Some(r#"{"title":"Not found"}"#),
        "section body"
    );
    assert_eq!(d.custom.content_type, Some("application/problem+json"));
    let d = run(&p, &Call::get("/nope")).verdict.denial.unwrap();
    assert_eq!(d.reason, PolicyReason::PolicyNoMatch);
    assert_eq!(d.rule, None);
    assert_eq!(d.custom.status, Some(404), "section default for no-match");
    // Token-level binding failures keep their RFC response: no custom.
    let d = run(&p, &Call::get("/ok").claims(json!({"cnf": {"x5t#S256": cert("a").1}})))
        .verdict
        .denial
        .unwrap();
    assert_eq!(d.reason, PolicyReason::CertBindingMismatch);
    assert_eq!(d.custom, Default::default());
}

#[test]
fn dry_run_per_rule_policy_and_section() {
    // A dry-run DENY rule next to an enforced one.
    let p = policies(json!({"policies": [
        {"name": "deny", "action": "DENY", "rules": [
            {"name": "new", "dryRun": true, "to": [{"operation": {"methods": ["DELETE"]}}]},
            {"name": "old", "to": [{"operation": {"paths": ["/admin*"]}}]}
        ]}
    ]}));
    let o = run(&p, &Call::new("DELETE", "/x"));
    assert!(o.allowed());
    let shadow = o.dry_run.unwrap();
    assert!(!shadow.allowed);
    assert_eq!(shadow.denial.unwrap().rule.unwrap().to_string(), "deny/new");
    let o = run(&p, &Call::get("/admin"));
    assert!(!o.allowed());
    assert!(!o.dry_run.unwrap().allowed);

    // A dry-run ALLOW policy: not enforced (everything allowed), but the shadow shows
    // what it would refuse.
    let p = policies(json!({"policies": [{"name": "allow-get", "dryRun": true,
        "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}]}));
    let o = run(&p, &Call::post("/"));
    assert!(o.allowed());
    assert_eq!(o.dry_run.unwrap().denial.unwrap().reason, PolicyReason::PolicyNoMatch);
    let o = run(&p, &Call::get("/"));
    assert!(o.allowed() && o.dry_run.unwrap().allowed);

    // An ALLOW policy whose only rule is in dry run does not count as an ALLOW policy.
    let p = policies(
        json!({"policies": [{"name": "a", "rules": [{"dryRun": true, "to": [{"operation": {"methods": ["GET"]}}]}]}]}),
    );
    assert!(run(&p, &Call::post("/")).allowed());
    assert!(!run(&p, &Call::post("/")).dry_run.unwrap().allowed);

    // Section-wide dry run covers binding failures too.
    let p = policies(
        json!({"dryRun": true, "policies": [{"name": "a", "rules": [{"bind": {"workload": {"claim": "sub"}}}]}]}),
    );
    let o = run(
        &p,
        &Call::get("/")
            .peer(B)
            .claims(json!({"sub": A, "cnf": {"x5t#S256": cert("a").1}})),
    );
    assert!(o.allowed());
    assert_eq!(o.verdict.denial, None);
    assert_eq!(
        o.dry_run.unwrap().denial.unwrap().reason,
        PolicyReason::CertBindingMismatch
    );
    let o = run(&p, &Call::get("/").peer(B).claims(json!({"sub": A})));
    assert_eq!(
        o.dry_run.unwrap().denial.unwrap().reason,
        PolicyReason::WorkloadMismatch
    );
}

#[test]
fn reason_codes_are_unique_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for r in PolicyReason::ALL {
        let c = r.code();
        assert!(seen.insert(c), "{c}");
        assert!(c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
    }
    assert!(PolicyReason::DpopReplayed.is_dpop());
    assert!(!PolicyReason::DpopReplayCacheFull.is_dpop());
    assert!(!PolicyReason::CertBindingMismatch.is_dpop());
}
