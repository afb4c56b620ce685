//! The three-hop mTLS mesh of `support::mesh` (edge -> A sidecar -> B sidecar, real Envoy 1.40),
//! with no hopguard: each hop sees the calling workload's SPIFFE ID and certificate digest,
//! direct calls carry the chosen caller's identity, and calls without a (trusted) client
//! certificate are refused by TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::envoy::hopguard_filter_yaml;
use support::mesh::{parse_xfcc, Hop, Mesh, ATTACKER, FORGED_A, NO_CERT};
use support::mint::{self, Signer};
use support::pki::{self, Pki};

fn header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("not an echo: {echo}"))
        .iter()
        .filter(|h| h[0].as_str() == Some(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

/// The single XFCC element the app received.
fn xfcc(echo: &Value) -> BTreeMap<String, String> {
    let values = header(echo, "x-forwarded-client-cert");
    assert_eq!(values.len(), 1, "one XFCC header expected: {echo}");
    let mut elements = parse_xfcc(&values[0]);
    assert_eq!(
        elements.len(),
        1,
        "SANITIZE_SET keeps only the current peer: {values:?}"
    );
    elements.remove(0)
}

fn stat_sum(mesh: &Mesh, hop: Hop, suffix: &str) -> u64 {
    mesh.envoy(hop)
        .stats()
        .iter()
        .filter(|(name, _)| name.starts_with("listener.") && name.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

#[test]
fn pki_issues_spiffe_workload_certificates() {
    let pki = Pki::new();
    let w = pki.workload("shop", "orders");
    assert_eq!(w.spiffe_id, "spiffe://cluster.local/ns/shop/sa/orders");
    assert_eq!(pki.workload("shop", "orders"), w, "cached by identity");
    let again = pki.fresh_workload("shop", "orders");
    assert_eq!(again.spiffe_id, w.spiffe_id);
    assert_ne!(
        again.der_sha256_hex, w.der_sha256_hex,
        "a fresh certificate has a new digest"
    );

    let text = pki::openssl(
        pki.dir(),
        &["x509", "-noout", "-text", "-in", &w.cert_pem_path.to_string_lossy()],
    );
    for needle in [
        "URI:spiffe://cluster.local/ns/shop/sa/orders",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "CA:FALSE",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    for purpose in ["sslclient", "sslserver"] {
        let verified = pki::openssl(
            pki.dir(),
            &[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                &pki.ca_path().to_string_lossy(),
                &w.cert_pem_path.to_string_lossy(),
            ],
        );
        assert!(verified.contains(": OK"), "{verified}");
    }
    // openssl's own SHA-256 fingerprint of the DER matches the digest computed in Rust.
    let fingerprint = pki::openssl(
        pki.dir(),
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            &w.cert_pem_path.to_string_lossy(),
        ],
    );
    let hex: String = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase();
    assert_eq!(hex, w.der_sha256_hex);
    assert_eq!(w.der_sha256_b64url.len(), 43);
    assert_eq!(w.cnf()["x5t#S256"], w.der_sha256_b64url.as_str());
    // Another CA does not vouch for this one's certificates.
    let other = Pki::new();
    let refused = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(other.ca_path())
        .arg(&w.cert_pem_path)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[test]
fn mesh_carries_each_callers_identity_hop_by_hop() {
    let mesh = Mesh::start(Vec::new(), Vec::new(), Vec::new());
    eprintln!(
        "mesh started in {:?} (envoys: edge {:?}, a {:?}, b {:?})",
        mesh.started_in(),
        mesh.hop_started_in(Hop::Edge),
        mesh.hop_started_in(Hop::A),
        mesh.hop_started_in(Hop::B)
    );
    let (edge_id, a_id, b_id) = (
        mesh.workload(Hop::Edge).clone(),
        mesh.workload(Hop::A).clone(),
        mesh.workload(Hop::B).clone(),
    );

    // client -> edge -> A -> B, token and proof carried along.
    let r = mesh.edge_request(
        "GET",
        "/orders/1?x=1",
        &[
            ("authorization", "Bearer tok-123"),
            ("dpop", "proof-456"),
            ("x-other", "dropped"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let at_a = r.json();
    assert_eq!(at_a["path"], "/orders/1?x=1");
    assert_eq!(header(&at_a, "host"), [Hop::Edge.host()]);
    assert_eq!(header(&at_a, "authorization"), ["Bearer tok-123"]);
    let xfcc_a = xfcc(&at_a);
    assert_eq!(xfcc_a["URI"], edge_id.spiffe_id, "A sees the edge's identity");
    assert_eq!(
        xfcc_a["Hash"], edge_id.der_sha256_hex,
        "Envoy's digest = the Rust digest"
    );
    assert_eq!(xfcc_a["By"], a_id.spiffe_id);

    assert_eq!(at_a["next_status"], 200);
    let at_b = &at_a["next"];
    assert_eq!(at_b["method"], "GET");
    assert_eq!(at_b["path"], "/orders/1?x=1");
    assert_eq!(header(at_b, "host"), [Hop::B.host()]);
    assert_eq!(header(at_b, "authorization"), ["Bearer tok-123"]);
    assert_eq!(header(at_b, "dpop"), ["proof-456"]);
    assert!(
        header(at_b, "x-other").is_empty(),
        "only the token headers are forwarded"
    );
    let xfcc_b = xfcc(at_b);
    assert_eq!(xfcc_b["URI"], a_id.spiffe_id, "B sees A's identity");
    assert_eq!(xfcc_b["Hash"], a_id.der_sha256_hex);
    assert_eq!(xfcc_b["By"], b_id.spiffe_id);
    eprintln!("A received: {at_a:#}");

    // The same identity through Envoy's connection info (what the Wasm properties
    // connection.uri_san_peer_certificate / sha256_peer_certificate_digest read).
    let log_b = mesh.wait_access_log(Hop::B, 1, Duration::from_secs(5));
    assert_eq!(log_b.len(), 1, "{log_b:?}");
    assert_eq!(log_b[0]["peer_uri_san"], a_id.spiffe_id);
    assert_eq!(log_b[0]["peer_sha256"], a_id.der_sha256_hex);
    let log_a = mesh.wait_access_log(Hop::A, 1, Duration::from_secs(5));
    assert_eq!(log_a[0]["peer_uri_san"], edge_id.spiffe_id);
    let log_edge = mesh.wait_access_log(Hop::Edge, 1, Duration::from_secs(5));
    assert_eq!(
        log_edge[0]["peer_uri_san"],
        Value::Null,
        "the edge listener is plain HTTP"
    );
    eprintln!("access logs: edge {log_edge:?}\na {log_a:?}\nb {log_b:?}");

    // A POST body is forwarded too.
    let r = mesh.edge_request_with_body(
        "POST",
        "/orders",
        &[("authorization", "Bearer w"), ("content-type", "application/json")],
        br#"{"item":1}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["next"]["body"], r#"{"item":1}"#);
    assert_eq!(header(&r.json()["next"], "content-type"), ["application/json"]);

    // A workload replaying a token directly at B: B sees the attacker's identity.
    let attacker = mesh.caller(ATTACKER).clone();
    assert_eq!(attacker.spiffe_id, "spiffe://cluster.local/ns/sandbox/sa/attacker");
    let before = mesh.app(Hop::B).count();
    let r = mesh.direct(
        Hop::B,
        ATTACKER,
        "GET",
        "/orders/1",
        &[("authorization", "Bearer tok-123")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.json();
    assert_eq!(xfcc(&seen)["URI"], attacker.spiffe_id);
    assert_eq!(xfcc(&seen)["Hash"], attacker.der_sha256_hex);
    assert_eq!(header(&seen, "host"), [Hop::B.host()]);
    assert_eq!(mesh.app(Hop::B).count(), before + 1);

    // Direct at A: A sees the caller, B still sees A.
    let r = mesh.direct(Hop::A, ATTACKER, "GET", "/x", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(xfcc(&r.json())["URI"], attacker.spiffe_id);
    assert_eq!(xfcc(&r.json()["next"])["URI"], a_id.spiffe_id);

    // Any hop's workload may be the caller.
    let r = mesh.direct(Hop::B, "edge", "GET", "/x", &[]);
    assert_eq!(xfcc(&r.json())["URI"], edge_id.spiffe_id);

    // No client certificate: refused in the TLS handshake, the app never sees the request.
    let before = mesh.app(Hop::B).count();
    let r = mesh.direct(
        Hop::B,
        NO_CERT,
        "GET",
        "/orders/1",
        &[("authorization", "Bearer tok-123")],
    );
    eprintln!("no client certificate: {} {}", r.status, r.body);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        support::wait_until(Duration::from_secs(5), || stat_sum(
            &mesh,
            Hop::B,
            ".ssl.fail_verify_no_cert"
        ) >= 1),
        "{:?}",
        mesh.envoy(Hop::B).stats()
    );

    // A certificate for A's SPIFFE ID from an untrusted CA: refused too.
    let r = mesh.direct(Hop::B, FORGED_A, "GET", "/orders/1", &[]);
    eprintln!("forged certificate: {} {}", r.status, r.body);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        support::wait_until(Duration::from_secs(5), || stat_sum(
            &mesh,
            Hop::B,
            ".ssl.fail_verify_error"
        ) >= 1),
        "{:?}",
        mesh.envoy(Hop::B).stats()
    );
    assert_eq!(
        mesh.app(Hop::B).count(),
        before,
        "refused connections never reach the app"
    );

    // Plain HTTP at the inbound mTLS port gets no HTTP answer.
    let b_inbound = mesh.envoy(Hop::B).port("inbound");
    let plain = support::http::try_request(b_inbound, "GET", "/orders/1", &[], b"");
    assert!(plain.is_err(), "{plain:?}");
    assert_eq!(mesh.app(Hop::B).count(), before);
}

/// How hopguard plugs into each hop: one `hopguard_filter_yaml(json)` per hop, each with its own
/// config. The token is forwarded (`forwardOriginalToken`) so the next hop can check it again.
#[test]
fn hopguard_runs_at_every_hop_with_its_own_config() {
    let signer = Signer::new("ES256", "mesh");
    let jwks = mint::jwks(&[&signer]);
    let hopguard = |realm: &str| {
        let config = json!({
            "realm": realm,
            "providers": [{
                "issuer": "https://idp.mesh.test",
                "audiences": ["shop"],
                "jwks": jwks,
                "forwardOriginalToken": true,
            }],
        });
        vec![hopguard_filter_yaml(&config.to_string())]
    };
    let mesh = Mesh::start(hopguard("edge"), hopguard("frontend"), hopguard("orders"));
    eprintln!(
        "mesh with hopguard at every hop started in {:?} (envoys: edge {:?}, a {:?}, b {:?})",
        mesh.started_in(),
        mesh.hop_started_in(Hop::Edge),
        mesh.hop_started_in(Hop::A),
        mesh.hop_started_in(Hop::B)
    );

    let token = signer.token(&mint::claims("https://idp.mesh.test", "shop", "alice", mint::now()));
    let bearer = format!("Bearer {token}");
    let r = mesh.edge_request("GET", "/orders/1", &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(header(&r.json()["next"], "authorization"), [bearer.as_str()]);
    assert_eq!(xfcc(&r.json()["next"])["URI"], mesh.workload(Hop::A).spiffe_id);

    // No token at the edge: refused there, nothing reaches A.
    let r = mesh.edge_request("GET", "/orders/1", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(mesh.app(Hop::A).count(), 1);

    // Straight at B without a token: B's own hopguard refuses (realm "orders").
    let r = mesh.direct(Hop::B, ATTACKER, "GET", "/orders/1", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("orders"), "{challenge}");
    assert_eq!(mesh.app(Hop::B).count(), 1);
}

/// A hop's filters are swapped in place (no restart, same ports), e.g. one policy per scenario;
/// a refused config leaves the old filters serving.
#[test]
fn a_hops_filters_are_replaced_in_place() {
    let mut mesh = Mesh::start(Vec::new(), Vec::new(), Vec::new());
    let ports: Vec<u16> = [Hop::A, Hop::B]
        .iter()
        .map(|h| mesh.envoy(*h).port("inbound"))
        .collect();
    let r = mesh.edge_request("GET", "/orders/1", &[]);
    assert_eq!(r.status, 200, "{r:?}");

    let signer = Signer::new("ES256", "mesh");
    let config =
        json!({"realm": "orders", "providers": [{"issuer": "https://idp.mesh.test", "jwks": mint::jwks(&[&signer])}]});
    let started = std::time::Instant::now();
    mesh.set_filters(Hop::B, vec![hopguard_filter_yaml(&config.to_string())])
        .unwrap();
    eprintln!("hopguard pushed to B in {:?}", started.elapsed());
    // The very next request through the mesh meets the new filters at B.
    let r = mesh.edge_request("GET", "/orders/1", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["next_status"], 401, "A passed, B refused");
    assert_eq!(mesh.app(Hop::B).count(), 1);

    let refused = mesh.set_filters(Hop::B, vec![hopguard_filter_yaml(r#"{"providers": "not a list"}"#)]);
    assert!(refused.is_err(), "{refused:?}");
    let r = mesh.edge_request("GET", "/orders/1", &[]);
    assert_eq!(r.status, 401, "the previous filters still serve: {r:?}");

    mesh.set_filters(Hop::B, Vec::new()).unwrap();
    let r = mesh.edge_request("GET", "/orders/1", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let now: Vec<u16> = [Hop::A, Hop::B]
        .iter()
        .map(|h| mesh.envoy(*h).port("inbound"))
        .collect();
    assert_eq!(now, ports);
}

/// The standalone builders give a static sidecar bootstrap Envoy accepts (`--mode validate`).
#[test]
fn static_sidecar_bootstrap_validates() {
    use support::envoy::{cluster_yaml, Envoy};
    use support::mesh::{inbound_listener_yaml, mesh_bootstrap_yaml, mtls_cluster_yaml, outbound_listener_yaml};
    let pki = Pki::new();
    let (own, next) = (pki.workload("shop", "frontend"), pki.workload("shop", "orders"));
    let yaml = mesh_bootstrap_yaml(
        &[
            inbound_listener_yaml("inbound", &own, pki.ca_path(), &[], "app", None),
            outbound_listener_yaml("outbound", &[], "next"),
        ],
        &[
            cluster_yaml("app", 9),
            mtls_cluster_yaml("next", 9, Some(&own), pki.ca_path(), &next.spiffe_id),
        ],
    );
    let (ok, output) = Envoy::validate_yaml(&yaml);
    assert!(ok, "{output}\n{yaml}");
}
