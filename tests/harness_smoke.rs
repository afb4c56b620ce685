//! Smoke tests of the test harness itself (tests/support) against the real Envoy: a plain proxy
//! reaches the echo upstream, and the native jwt_authn oracle refuses a request without a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use support::envoy::{bootstrap_yaml, jwt_authn_filter_yaml, Envoy, JwtProvider, JwtRequires, Listener};
use support::http::request;
use support::upstream::Upstream;

/// A P-256 public key (no private half needed: these tests never mint a token).
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"F9Mf-gKUVFtUzcltdsOQeeuEHAicdbqodNxADBrGlLM","y":"O4cI0F0vdZPralBqPR5HYrFeHz9JMGipA2JGNXYq618"}]}"#;

#[test]
fn plain_listener_reaches_the_echo_upstream() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&bootstrap_yaml(&[Listener::new("plain")], upstream.port()), 1);

    let response = request(envoy.port("plain"), "GET", "/hello?x=1", &[("x-test", "smoke")]);

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("server"), Some("envoy"));
    let echo = response.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/hello?x=1");
    let received = upstream.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("x-test"), Some("smoke"));
    assert!(received[0].header("x-request-id").is_some());
    assert!(envoy.stat("http.plain.downstream_rq_2xx").unwrap_or(0) >= 1);
}

#[test]
fn jwt_authn_oracle_refuses_a_request_without_a_token() {
    let upstream = Upstream::start();
    let provider = JwtProvider {
        audiences: vec!["orders".to_string()],
        from_headers: vec![("authorization".to_string(), "Bearer ".to_string())],
        ..JwtProvider::new("idp", "https://idp.example.com", JWKS)
    };
    let listener = Listener::new("oracle").filter(jwt_authn_filter_yaml(
        &[provider],
        &JwtRequires::Any(vec!["idp".to_string()]),
    ));
    let envoy = Envoy::start(&bootstrap_yaml(&[listener], upstream.port()), 1);

    let missing = request(envoy.port("oracle"), "GET", "/orders", &[]);
    let garbage = request(
        envoy.port("oracle"),
        "GET",
        "/orders",
        &[("authorization", "Bearer not-a-jwt")],
    );

    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(missing.body, "Jwt is missing");
    assert_eq!(garbage.status, 401, "{}", garbage.body);
    assert!(
        garbage
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer realm=")),
        "{:?}",
        garbage.headers
    );
    assert_eq!(upstream.count(), 0, "{:?}", upstream.requests());
    assert_eq!(envoy.stat("http.oracle.jwt_authn.denied"), Some(2));
}

#[test]
fn upstream_echoes_request_bodies_and_keeps_a_log() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&bootstrap_yaml(&[Listener::new("plain")], upstream.port()), 1);

    let response = support::http::request_with_body(
        envoy.port("plain"),
        "POST",
        "/submit",
        &[("content-type", "text/plain")],
        b"hello body",
    );

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["body"], "hello body");
    assert!(upstream.saw("hello body"));
    assert!(!upstream.saw("never-sent"));

    let chunked = support::http::request_with_body(
        envoy.port("plain"),
        "POST",
        "/chunked",
        &[("transfer-encoding", "chunked")],
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 200, "{}", chunked.body);
    assert_eq!(chunked.json()["body"], "hello world");
    assert_eq!(upstream.count(), 2);
}

#[test]
fn admin_endpoints_are_readable() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&bootstrap_yaml(&[Listener::new("plain")], upstream.port()), 1);
    request(envoy.port("plain"), "GET", "/", &[]);

    assert!(envoy.wait_for_stat(
        "http.plain.downstream_rq_completed",
        1,
        std::time::Duration::from_secs(5)
    ));
    assert!(envoy
        .stats_prometheus()
        .contains("envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix=\"plain\"} 1"));
    assert!(envoy.admin_get("/config_dump").contains("\"plain\""));
    assert!(envoy.stats().contains_key("listener_manager.total_listeners_active"));
    assert!(envoy.logs().contains("starting main dispatch loop"));
    assert_eq!(envoy.ports().keys().collect::<Vec<_>>(), ["plain"]);
}

#[test]
fn a_refused_bootstrap_returns_the_logs() {
    let missing_wasm = std::path::Path::new("/nonexistent/hopguard.wasm");
    let listener = Listener::new("broken").filter(support::envoy::wasm_filter_yaml(missing_wasm, "hopguard", "{}"));

    let result = Envoy::try_start(&bootstrap_yaml(&[listener], 9), 1);

    let logs = result.err().expect("envoy must refuse a missing wasm file");
    assert!(logs.contains("envoy exited with"), "{logs}");
    assert!(logs.contains("Invalid path: /nonexistent/hopguard.wasm"), "{logs}");
}

#[test]
fn listeners_are_replaced_at_runtime_and_a_refused_update_keeps_the_old_one() {
    let upstream = Upstream::start();
    let clusters = [support::envoy::cluster_yaml("upstream", upstream.port())];
    let mut envoy = Envoy::start_dynamic(&clusters, &[Listener::new("main")], 1);
    assert_eq!(request(envoy.port("main"), "GET", "/", &[]).status, 200);

    let oracle = Listener::new("main").filter(jwt_authn_filter_yaml(
        &[JwtProvider::new("idp", "https://idp.example.com", JWKS)],
        &JwtRequires::Any(vec!["idp".to_string()]),
    ));
    envoy.push_listeners(&[oracle]).expect("jwt_authn listener applied");
    assert_eq!(request(envoy.port("main"), "GET", "/", &[]).status, 401);

    let broken = Listener::new("main").filter(support::envoy::wasm_filter_yaml(
        std::path::Path::new("/nonexistent/hopguard.wasm"),
        "hopguard",
        "{}",
    ));
    let refused = envoy.push_listeners(&[broken]).expect_err("update refused");
    assert!(refused.contains("Invalid path"), "{refused}");
    assert_eq!(request(envoy.port("main"), "GET", "/", &[]).status, 401);

    envoy
        .push_listeners(&[Listener::new("main"), Listener::new("second")])
        .expect("two plain listeners applied");
    assert_eq!(request(envoy.port("main"), "GET", "/", &[]).status, 200);
    assert_eq!(request(envoy.port("second"), "GET", "/", &[]).status, 200);
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected"), Some(1));
}

#[test]
fn every_jwt_authn_oracle_option_is_accepted_by_envoy() {
    let full = JwtProvider {
        audiences: vec!["orders".to_string(), "billing".to_string()],
        from_headers: vec![
            ("authorization".to_string(), "Bearer ".to_string()),
            ("x-token".to_string(), String::new()),
        ],
        from_params: vec!["access_token".to_string()],
        from_cookies: vec!["session".to_string()],
        forward: true,
        forward_payload_header: Some("x-jwt-payload".to_string()),
        claim_to_headers: vec![("x-jwt-sub".to_string(), "sub".to_string())],
        clock_skew_seconds: Some(30),
        require_expiration: true,
        max_lifetime_seconds: Some(86_400),
        payload_in_metadata: Some("payload".to_string()),
        ..JwtProvider::new("full", "https://idp.example.com", JWKS)
    };
    let other = JwtProvider::new("other", "https://other.example.com", JWKS);
    let names = vec!["full".to_string(), "other".to_string()];
    for requires in [
        JwtRequires::Any(vec!["full".to_string()]),
        JwtRequires::Any(names.clone()),
        JwtRequires::AllowMissing(names.clone()),
        JwtRequires::AllowMissingOrFailed(names.clone()),
    ] {
        let listener = Listener::new("oracle").filter(jwt_authn_filter_yaml(&[full.clone(), other.clone()], &requires));

        let (ok, output) = Envoy::validate_yaml(&bootstrap_yaml(&[listener], 9));

        assert!(ok, "{requires:?}:\n{}", support::envoy::log_excerpt(&output, 20));
    }
}

#[test]
fn upstream_accepts_obs_text_header_values() {
    use std::io::{Read, Write};
    let upstream = Upstream::start();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", upstream.port())).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /odd HTTP/1.1\r\nhost: x\r\nx-odd: caf\xe9\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();

    assert!(
        response.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(upstream.requests()[0].header("x-odd"), Some("caf\u{fffd}"));
}
