//! Policies wired into the decision, on the host: verdicts, reasons, challenges, rules
//! named in problem bodies, dry run and custom denials, and the connection read only
//! when needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mint.rs"]
mod mint;

use hopguard::config::Config;
use hopguard::decision::{decide_live, Decision, Env, Verdict};
use hopguard::policy::Connection;
use hopguard::reason::Reason;
use hopguard::replay::ReplayCache;
use hopguard::request::{Mutation, Request};
use hopguard::snapshot::Snapshot;
use mint::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};

const NOW: u64 = 1_900_000_000;
const ISS: &str = "https://idp.test";

fn config(signer: &Signer, authorization: Value) -> Config {
    let v = json!({
        "providers": [{"issuer": ISS, "jwks": mint::jwks(&[signer]),
                       "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}, {"name": "authorization", "prefix": "DPoP "}]}],
        "requirement": "allowMissing",
        "authorization": authorization
    });
    Config::from_value(&v).unwrap_or_else(|e| panic!("{e}"))
}

struct Run {
    decision: Decision,
    connection_reads: u32,
}

fn run(cfg: &Config, method: &str, path: &str, auth: Option<&str>, conn: Connection) -> Run {
    let mut headers = vec![
        (":method".to_owned(), method.to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), "orders.svc".to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
    ];
    if let Some(a) = auth {
        headers.push(("authorization".to_owned(), a.to_owned()));
    }
    let reads = Cell::new(0);
    let read = || {
        reads.set(reads.get() + 1);
        conn.clone()
    };
    let snapshot = Snapshot::new(cfg);
    let replay = RefCell::new(ReplayCache::new(100));
    let cache = RefCell::new(hopguard::cache::TokenCache::new(100));
    let env = Env {
        snapshot: &snapshot,
        connection: &read,
        replay: &replay,
        cache: &cache,
    };
    let decision = decide_live(cfg, &env, &Request::new(headers), NOW, false);
    Run {
        decision,
        connection_reads: reads.get(),
    }
}

fn token(signer: &Signer, extra: Value) -> String {
    let mut c = mint::claims(ISS, "orders", "alice", NOW);
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    format!("Bearer {}", signer.token(&c))
}

fn refused(r: &Run) -> (u16, String, Value, String) {
    let Verdict::Deny(d) = &r.decision.verdict else {
        panic!("allowed: {:?}", r.decision.record)
    };
    let www = d
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let body: Value = serde_json::from_str(&d.body).unwrap_or(Value::String(d.body.clone()));
    (d.status, r.decision.reason.unwrap().code().to_owned(), body, www)
}

fn orders_policies() -> Value {
    json!({"policies": [
        {"name": "deny-admin", "action": "DENY", "rules": [{"name": "admin", "to": [{"operation": {"paths": ["/admin/*"]}}]}]},
        {"name": "orders", "action": "ALLOW", "rules": [
            {"name": "read", "from": [{"source": {"requestPrincipals": [format!("{ISS}/*")]}}],
             "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/*"]}}],
             "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]},
            {"name": "write", "from": [{"source": {"requestPrincipals": [format!("{ISS}/*")]}}],
             "to": [{"operation": {"methods": ["POST"], "paths": ["/orders/*"]}}],
             "when": [{"key": "request.auth.claims[scope]", "values": ["orders:write"]}]},
            {"name": "health", "to": [{"operation": {"paths": ["/healthz"]}}]}
        ]}
    ]})
}

#[test]
fn methods_scopes_and_deny_before_allow() {
    let s = Signer::new("ES256", "p1");
    let cfg = config(&s, orders_policies());
    let reader = token(&s, json!({"scope": "profile orders:read"}));
    let r = run(&cfg, "GET", "/orders/7", Some(&reader), Connection::default());
    assert_eq!(r.decision.verdict, Verdict::Allow);
    assert_eq!(r.decision.record.rule.as_deref(), Some("orders/read"));
    // A read scope cannot write; the problem body names no rule (nothing matched).
    let (status, reason, body, www) = refused(&run(&cfg, "POST", "/orders/7", Some(&reader), Connection::default()));
    assert_eq!((status, reason.as_str()), (403, "policy_no_match"));
    assert!(
        www.starts_with("Bearer realm=\"hopguard\", error=\"insufficient_scope\""),
        "{www}"
    );
    assert_eq!(body["reason"], "policy_no_match");
    // DENY beats ALLOW, and the rule that decided is named.
    let admin = token(&s, json!({"scope": "orders:read orders:write"}));
    let (status, reason, body, _) = refused(&run(&cfg, "GET", "/admin/x", Some(&admin), Connection::default()));
    assert_eq!(
        (status, reason.as_str(), body["rule"].as_str()),
        (403, "policy_denied", Some("deny-admin/admin"))
    );
    // Anonymous requests reach only what allows them (requirement allowMissing).
    assert_eq!(
        run(&cfg, "GET", "/healthz", None, Connection::default())
            .decision
            .verdict,
        Verdict::Allow
    );
    let (status, reason, _, _) = refused(&run(&cfg, "GET", "/orders/7", None, Connection::default()));
    assert_eq!((status, reason.as_str()), (403, "policy_no_match"));
}

#[test]
fn certificate_bound_tokens_follow_rfc_8705_and_the_connection_is_read_only_when_needed() {
    let s = Signer::new("ES256", "p2");
    let cfg = config(&s, json!({}));
    let cert = b"a DER certificate";
    let digest = Sha256::digest(cert);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let bound = token(&s, json!({"cnf": {"x5t#S256": hopguard::b64::encode(&digest)}}));
    let own = Connection {
        peer_cert_sha256: Some(hex),
        peer_uri_san: Some("spiffe://cluster.local/ns/a/sa/web".into()),
        ..Connection::default()
    };
    let r = run(&cfg, "GET", "/", Some(&bound), own);
    assert_eq!(r.decision.verdict, Verdict::Allow);
    assert_eq!(r.connection_reads, 1);
    let other = Connection {
        peer_cert_sha256: Some("00".repeat(32)),
        ..Connection::default()
    };
    let (status, reason, _, www) = refused(&run(&cfg, "GET", "/", Some(&bound), other));
    assert_eq!((status, reason.as_str()), (401, "cert_binding_mismatch"));
    assert!(www.contains("error=\"invalid_token\""));
    let (_, reason, _, _) = refused(&run(&cfg, "GET", "/", Some(&bound), Connection::default()));
    assert_eq!(reason, "cert_binding_mismatch", "no mTLS at all");
    // A plain token with no policies: the connection is never read.
    let plain = token(&s, json!({}));
    let r = run(&cfg, "GET", "/", Some(&plain), Connection::default());
    assert_eq!((r.decision.verdict, r.connection_reads), (Verdict::Allow, 0));
}

#[test]
fn dpop_bound_token_sent_as_bearer_gets_a_dpop_challenge() {
    let s = Signer::new("ES256", "p3");
    let cfg = config(&s, json!({}));
    let t = token(
        &s,
        json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
    );
    let (status, reason, _, www) = refused(&run(&cfg, "GET", "/", Some(&t), Connection::default()));
    assert_eq!((status, reason.as_str()), (401, "dpop_token_as_bearer"));
    assert!(
        www.starts_with("DPoP realm=\"hopguard\", error=\"invalid_token\""),
        "{www}"
    );
    assert!(www.contains("algs=\""), "{www}");
    // With the DPoP scheme but no proof.
    let raw = t.trim_start_matches("Bearer ");
    let (_, reason, _, www) = refused(&run(
        &cfg,
        "GET",
        "/",
        Some(&format!("DPoP {raw}")),
        Connection::default(),
    ));
    assert_eq!(reason, "dpop_proof_missing");
    assert!(www.contains("error=\"invalid_dpop_proof\""), "{www}");
}

#[test]
fn dry_run_rules_record_and_custom_denials_replace_status_and_body() {
    let s = Signer::new("ES256", "p4");
    let cfg = config(
        &s,
        json!({"policies": [
            {"name": "shadow", "action": "DENY", "dryRun": true, "rules": [{"name": "beta", "to": [{"operation": {"paths": ["/beta/*"]}}]}]},
            {"name": "hide", "action": "DENY", "denyStatus": 404, "denyBody": {"title": "Not found"},
             "rules": [{"name": "internal", "to": [{"operation": {"paths": ["/internal/*"]}}]}]}
        ]}),
    );
    let t = token(&s, json!({}));
    let r = run(&cfg, "GET", "/beta/x", Some(&t), Connection::default());
    assert_eq!(r.decision.verdict, Verdict::Allow, "dry run lets it through");
    assert_eq!(r.decision.record.decision, "dry_run_deny");
    assert_eq!(r.decision.record.reason, Some("policy_denied"));
    assert_eq!(r.decision.record.rule.as_deref(), Some("shadow/beta"));
    assert!(r.decision.mutations.contains(&Mutation::Remove("authorization".into())));
    let (status, reason, body, _) = refused(&run(&cfg, "GET", "/internal/x", Some(&t), Connection::default()));
    assert_eq!((status, reason.as_str()), (404, "policy_denied"));
    assert_eq!(body["title"], "Not found");
    assert_eq!(
        Reason::PolicyDenied.spec().status,
        403,
        "the table keeps its own status"
    );
}

#[test]
fn connection_facts_are_read_only_when_a_policy_looks_at_them() {
    use hopguard::policy::Policies;
    let parse = |v: serde_json::Value| Policies::parse(&v, "authorization").unwrap();
    let request_only = parse(
        serde_json::json!({"policies": [{"name": "p", "action": "ALLOW", "rules": [{
        "from": [{"source": {"requestPrincipals": ["*"]}}],
        "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/*"], "hosts": ["orders"]}}],
        "when": [{"key": "request.auth.claims[scope]", "values": ["read"]}]}]}]}),
    );
    assert!(!request_only.reads_connection());
    for (what, rule) in [
        (
            "principals",
            serde_json::json!({"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}),
        ),
        (
            "namespaces",
            serde_json::json!({"from": [{"source": {"notNamespaces": ["dev"]}}]}),
        ),
        (
            "ipBlocks",
            serde_json::json!({"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}),
        ),
        ("ports", serde_json::json!({"to": [{"operation": {"ports": ["8080"]}}]})),
        (
            "sni",
            serde_json::json!({"when": [{"key": "connection.sni", "values": ["a.example"]}]}),
        ),
        ("bind", serde_json::json!({"bind": {"workload": {"claim": "azp"}}})),
    ] {
        let p = parse(serde_json::json!({"policies": [{"name": "p", "action": "ALLOW", "rules": [rule]}]}));
        assert!(p.reads_connection(), "{what}");
    }
}
