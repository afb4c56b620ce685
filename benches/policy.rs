//! Host micro-benchmarks of token-bound policies (issue 6): parsing an `authorization` section
//! (`Policies::parse`), evaluating it (`Policies::evaluate`) for a small set that allows and for a
//! large set that matches nothing (every rule is tried), and the cost a policy adds to a whole
//! decision (`decide` for ES256 with and without the section).
//!
//! `cargo bench --bench policy`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mint.rs"]
mod mint;

use criterion::{criterion_group, criterion_main, Criterion};
use hopguard::binding::Presentation;
use hopguard::config::Config;
use hopguard::decision::{decide, Verdict};
use hopguard::policy::{Connection, Policies, PolicyInput, TokenInput};
use hopguard::replay::ReplayCache;
use hopguard::request::Request;
use mint::Signer;
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::Duration;

const NOW: u64 = 1_900_000_000;
const ISS: &str = "https://idp.bench.local";
const PEER: &str = "spiffe://cluster.local/ns/web/sa/frontend";

/// The README's example: a DENY policy and an ALLOW policy with two rules.
fn small() -> Value {
    json!({"policies": [
        {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
        {"name": "orders", "action": "ALLOW", "rules": [
            {"name": "read",
             "from": [{"source": {"requestPrincipals": [format!("{ISS}/*")], "principals": ["cluster.local/ns/web/sa/frontend"]}}],
             "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/{*}"]}}],
             "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]},
            {"name": "write", "to": [{"operation": {"methods": ["POST"], "paths": ["/orders/*"]}}],
             "when": [{"key": "request.auth.claims[scope]", "values": ["orders:write"]}]}
        ]}
    ]})
}

/// 20 ALLOW policies of 5 rules each, none of which matches the benchmark request.
fn large() -> Value {
    let policies: Vec<Value> = (0..20)
        .map(|p| {
            let rules: Vec<Value> = (0..5)
                .map(|r| {
                    json!({"name": format!("r{p}-{r}"),
                           "from": [{"source": {"principals": [format!("cluster.local/ns/team{p}/sa/svc{r}")],
                                                "requestPrincipals": [format!("{ISS}/*")]}}],
                           "to": [{"operation": {"methods": ["GET", "POST"],
                                                 "paths": [format!("/api/v{r}/team{p}/{{**}}"), format!("/team{p}/*")],
                                                 "hosts": [format!("team{p}.bench")]}}],
                           "when": [{"key": "request.auth.claims[scope]", "values": [format!("team{p}:{r}")]},
                                    {"key": "request.auth.claims[realm][roles]", "values": ["admin", "ops"]}]})
                })
                .collect();
            json!({"name": format!("team{p}"), "action": "ALLOW", "rules": rules})
        })
        .collect();
    json!({ "policies": policies })
}

fn request(token: Option<&str>) -> Request {
    let mut h: Vec<(String, String)> = vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/orders/42?verbose=1".into()),
        (":authority".into(), "orders.bench".into()),
        ("user-agent".into(), "bench/1".into()),
    ];
    if let Some(t) = token {
        h.push(("authorization".into(), format!("Bearer {t}")));
    }
    Request::new(h)
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "bench", "sub": "alice", "scope": "orders:read orders:write",
           "realm": {"roles": ["user"]}, "iat": NOW, "exp": NOW + 3600, "jti": "bench-1"})
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);

    let (small_v, large_v) = (small(), large());
    group.bench_function("parse/small", |b| {
        b.iter(|| Policies::parse(black_box(&small_v), "$.authorization").unwrap());
    });
    group.bench_function("parse/large-100-rules", |b| {
        b.iter(|| Policies::parse(black_box(&large_v), "$.authorization").unwrap());
    });

    let claims_v = claims();
    let claims_map: Map<String, Value> = claims_v.as_object().unwrap().clone();
    let req = request(Some("header.payload.signature"));
    let conn = Connection {
        peer_uri_san: Some(PEER.into()),
        ..Connection::default()
    };
    let input = PolicyInput {
        request: &req,
        connection: &conn,
        token: Some(TokenInput {
            raw: "header.payload.signature",
            claims: &claims_map,
            presentation: Presentation::Bearer,
        }),
        now: NOW,
    };
    for (name, v, allowed) in [("small-allow", &small_v, true), ("large-no-match", &large_v, false)] {
        let policies = Policies::parse(v, "$.authorization").unwrap();
        let mut replay = ReplayCache::new(policies.dpop.replay_cache_size);
        assert_eq!(policies.evaluate(&input, &mut replay).allowed(), allowed, "{name}");
        group.bench_function(format!("evaluate/{name}"), |b| {
            b.iter(|| policies.evaluate(black_box(&input), &mut replay));
        });
    }

    // The same decision with and without the README policy (no mTLS peer: the `read` rule's
    // `principals` then fails, so the policy here is the DENY rule plus an ALLOW rule on scope).
    let signer = Signer::new("ES256", "bench-ES256");
    let token = signer.token(&claims_v);
    let treq = request(Some(&token));
    let provider = json!({"issuer": ISS, "audiences": ["bench"], "jwks": mint::jwks(&[&signer])});
    let policy = json!({"policies": [
        {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
        {"name": "orders", "action": "ALLOW", "rules": [{
            "from": [{"source": {"requestPrincipals": [format!("{ISS}/*")]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/*"]}}],
            "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]}]}
    ]});
    for (name, top) in [
        ("decide/ES256-no-policy", json!({"providers": [provider]})),
        (
            "decide/ES256-with-policy",
            json!({"providers": [provider], "authorization": policy}),
        ),
    ] {
        let cfg = Config::from_value(&top).unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = decide(&cfg, &treq, NOW);
        assert_eq!(d.verdict, Verdict::Allow, "{name}: {:?}", d.reason);
        group.bench_function(name, |b| b.iter(|| decide(black_box(&cfg), black_box(&treq), NOW)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
