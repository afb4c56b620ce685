//! Token-bound service policies in a real three-hop mesh: edge -> service A sidecar ->
//! service B sidecar, real Envoy 1.40 at every hop with mTLS between them (workload
//! certificates with SPIFFE IDs from a test CA), hopguard with its own policy at each
//! hop. Direct calls to B with chosen workload certificates play the replaying attacker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::envoy::hopguard_filter_yaml;
use support::http::Response;
use support::mesh::{Hop, Mesh, ATTACKER};
use support::mint::{self, Signer};

const ISS: &str = "https://idp.mesh.test";
const A_ID: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

fn provider(signer: &Signer, audiences: &[&str], forward: bool) -> Value {
    json!({"issuer": ISS, "audiences": audiences, "jwks": mint::jwks(&[signer]), "forwardOriginalToken": forward,
           "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}, {"name": "authorization", "prefix": "DPoP "}]})
}

fn hg(cfg: Value) -> Vec<String> {
    vec![hopguard_filter_yaml(&cfg.to_string())]
}

fn claims(extra: Value) -> Value {
    let mut c = mint::claims(ISS, "orders", "alice", mint::now());
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn reason(r: &Response) -> String {
    if r.status == 200 {
        return "allowed".into();
    }
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or(r.body.clone())
}

/// An RFC 9449 proof signed by `key` for `htm` `htu`, bound to `token`.
fn proof(key: &Signer, htm: &str, htu: &str, token: &str, jti: &str) -> String {
    let mut jwk = key.jwk();
    let jwk = jwk.as_object_mut().unwrap();
    jwk.remove("kid");
    jwk.remove("alg");
    let ath = hopguard::b64::encode(&Sha256::digest(token.as_bytes()));
    key.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &json!({"jti": jti, "htm": htm, "htu": htu, "iat": mint::now(), "ath": ath}),
    )
}

/// RFC 7638 thumbprint of an EC P-256 JWK.
fn thumbprint(key: &Signer) -> String {
    let j = key.jwk();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        j["x"].as_str().unwrap(),
        j["y"].as_str().unwrap()
    );
    hopguard::b64::encode(&Sha256::digest(canonical.as_bytes()))
}

#[test]
fn policies_bindings_and_dpop_at_every_hop() {
    let idp = Signer::new("ES256", "mesh-idp");
    // Edge: methods, scopes, DENY before ALLOW, a dry-run rule, and DPoP.
    let edge = json!({
        "providers": [provider(&idp, &["orders"], true)],
        "authorization": {"policies": [
            {"name": "no-admin", "action": "DENY", "rules": [{"name": "admin", "to": [{"operation": {"paths": ["/admin/*"]}}]}]},
            {"name": "beta", "action": "DENY", "dryRun": true, "rules": [{"name": "preview", "to": [{"operation": {"paths": ["/beta/*"]}}]}]},
            {"name": "api", "action": "ALLOW", "rules": [
                {"name": "read", "to": [{"operation": {"methods": ["GET"]}}], "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]},
                {"name": "write", "to": [{"operation": {"methods": ["POST"]}}], "when": [{"key": "request.auth.claims[scope]", "values": ["orders:write"]}]}
            ]}
        ]}
    });
    // A: passes the token on; callers must come from the edge gateway.
    let a = json!({
        "providers": [provider(&idp, &["orders"], true)],
        "authorization": {"dpop": {"mode": "ignore"}, "policies": [{"name": "from-edge", "action": "ALLOW", "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/istio-system/sa/ingress"]}}]}]}]}
    });
    // B: identity binding.
    let b = json!({
        "providers": [provider(&idp, &["orders"], false)],
        "authorization": {"dpop": {"mode": "ignore"}, "policies": [{"name": "orders", "action": "ALLOW", "rules": [
            {"name": "open", "to": [{"operation": {"paths": ["/orders/*", "/beta/*"]}}]},
            {"name": "bound", "to": [{"operation": {"paths": ["/bound/*"]}}], "bind": {"workload": {"claim": "azp"}}},
            {"name": "cert", "to": [{"operation": {"paths": ["/cert/*"]}}], "bind": {"certificate": true}},
            {"name": "delegated", "to": [{"operation": {"paths": ["/delegated/*"]}}],
             "bind": {"delegation": {"actor": "peer", "required": true}}}
        ]}]}
    });
    let mesh = Mesh::start(hg(edge), hg(a), hg(b));
    let bearer = |t: &str| format!("Bearer {t}");

    // Through all three hops: read passes, write and admin are refused at the edge.
    let reader = idp.token(&claims(json!({"scope": "orders:read"})));
    let r = mesh.edge_request("GET", "/orders/1", &[("authorization", &bearer(&reader))]);
    assert_eq!(reason(&r), "allowed", "{r:?}");
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        echo.to_string().contains(&reader),
        "A is configured to pass the token on"
    );
    assert_eq!(echo["next_status"], 200);
    assert!(
        !echo["next"].to_string().contains(&reader),
        "B stripped the token before its app"
    );
    let r = mesh.edge_request("POST", "/orders/1", &[("authorization", &bearer(&reader))]);
    assert_eq!((r.status, reason(&r).as_str()), (403, "policy_no_match"));
    assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));
    let writer = idp.token(&claims(json!({"scope": "orders:read orders:write"})));
    assert_eq!(
        reason(&mesh.edge_request("POST", "/orders/1", &[("authorization", &bearer(&writer))])),
        "allowed"
    );
    let r = mesh.edge_request("GET", "/admin/users", &[("authorization", &bearer(&writer))]);
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (403, "policy_denied"),
        "DENY beats ALLOW"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["rule"],
        "no-admin/admin"
    );

    // Dry run: allowed through, recorded as what would have happened.
    assert_eq!(
        reason(&mesh.edge_request("GET", "/beta/x", &[("authorization", &bearer(&reader))])),
        "allowed"
    );
    assert!(mesh
        .envoy(Hop::Edge)
        .wait_for_log("\"decision\":\"dry_run_deny\"", std::time::Duration::from_secs(5)));
    assert!(mesh.envoy(Hop::Edge).logs().contains("\"rule\":\"beta/preview\""));

    // A token for another audience (minted for service A), replayed directly at B.
    let for_a = idp.token(&claims(json!({"aud": "frontend"})));
    let r = mesh.direct(Hop::B, "a", "GET", "/orders/1", &[("authorization", &bearer(&for_a))]);
    assert_eq!((r.status, reason(&r).as_str()), (403, "audience_mismatch"));
    // Workload binding: azp names A; A may use it at B, the attacker may not.
    let azp_a = idp.token(&claims(json!({"azp": A_ID})));
    assert_eq!(
        reason(&mesh.direct(Hop::B, "a", "GET", "/bound/1", &[("authorization", &bearer(&azp_a))])),
        "allowed"
    );
    let r = mesh.direct(
        Hop::B,
        ATTACKER,
        "GET",
        "/bound/1",
        &[("authorization", &bearer(&azp_a))],
    );
    assert_eq!((r.status, reason(&r).as_str()), (403, "workload_mismatch"));

    // RFC 8705: a token bound to A's certificate passes over A's mTLS connection only.
    let cert_bound = idp.token(&claims(json!({"cnf": mesh.workload(Hop::A).cnf()})));
    assert_eq!(
        reason(&mesh.direct(
            Hop::B,
            "a",
            "GET",
            "/cert/1",
            &[("authorization", &bearer(&cert_bound))]
        )),
        "allowed"
    );
    let r = mesh.direct(
        Hop::B,
        ATTACKER,
        "GET",
        "/cert/1",
        &[("authorization", &bearer(&cert_bound))],
    );
    assert_eq!((r.status, reason(&r).as_str()), (401, "cert_binding_mismatch"));
    // Even on a route without `bind.certificate`, a bound token is checked (RFC 8705 3).
    let r = mesh.direct(
        Hop::B,
        ATTACKER,
        "GET",
        "/orders/1",
        &[("authorization", &bearer(&cert_bound))],
    );
    assert_eq!(reason(&r), "cert_binding_mismatch");

    // RFC 8693 act: the current actor must be the caller.
    let delegated = idp.token(&claims(json!({"act": {"sub": A_ID}})));
    assert_eq!(
        reason(&mesh.direct(
            Hop::B,
            "a",
            "GET",
            "/delegated/1",
            &[("authorization", &bearer(&delegated))]
        )),
        "allowed"
    );
    let r = mesh.direct(
        Hop::B,
        ATTACKER,
        "GET",
        "/delegated/1",
        &[("authorization", &bearer(&delegated))],
    );
    assert_eq!((r.status, reason(&r).as_str()), (403, "delegation_mismatch"));
    let undelegated = idp.token(&claims(json!({})));
    assert_eq!(
        reason(&mesh.direct(
            Hop::B,
            "a",
            "GET",
            "/delegated/1",
            &[("authorization", &bearer(&undelegated))]
        )),
        "delegation_mismatch"
    );

    // RFC 9449 DPoP at the edge.
    let key = Signer::new("ES256", "client-dpop-key");
    let bound = idp.token(&claims(
        json!({"scope": "orders:read", "cnf": {"jkt": thumbprint(&key)}}),
    ));
    let dpop = format!("DPoP {bound}");
    let htu = "http://shop.example.test/orders/9";
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &dpop)]);
    assert_eq!((r.status, reason(&r).as_str()), (401, "dpop_proof_missing"));
    assert!(r.header("www-authenticate").unwrap().starts_with("DPoP "), "{r:?}");
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &bearer(&bound))]);
    assert_eq!(reason(&r), "dpop_token_as_bearer");
    let wrong_method = proof(&key, "POST", htu, &bound, "p-1");
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &dpop), ("dpop", &wrong_method)]);
    assert_eq!(reason(&r), "dpop_proof_invalid");
    let wrong_url = proof(&key, "GET", "http://shop.example.test/orders/10", &bound, "p-2");
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &dpop), ("dpop", &wrong_url)]);
    assert_eq!(reason(&r), "dpop_proof_invalid");
    let other_key = Signer::new("ES256", "thief-key");
    let stolen = proof(&other_key, "GET", htu, &bound, "p-3");
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &dpop), ("dpop", &stolen)]);
    assert_eq!(reason(&r), "dpop_key_mismatch");
    let good = proof(&key, "GET", htu, &bound, "p-4");
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &dpop), ("dpop", &good)]);
    assert_eq!(reason(&r), "allowed", "{r:?}");
    let r = mesh.edge_request("GET", "/orders/9", &[("authorization", &dpop), ("dpop", &good)]);
    assert_eq!((r.status, reason(&r).as_str()), (401, "dpop_replayed"));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_dpop_proof\""));
}
