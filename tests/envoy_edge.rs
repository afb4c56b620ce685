//! The shipped edge proxy (`envoy/edge.yaml`) in a real Envoy: tokens are required except on
//! /healthz, paths are normalized before the filter, underscored header names are refused, and
//! its optional TLS listener validates once uncommented.
//! (`tests/envoy_validate.rs` checks every `envoy/*.yaml` as shipped.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::envoy::{log_excerpt, repo_root, wasm_path, Envoy, TempDir};
use support::http;
use support::mint::{self, Signer};
use support::upstream::{Received, Upstream};

const SHIPPED_WASM_PATH: &str = "/etc/envoy/hopguard.wasm";
const SHIPPED_X: &str = "F9Mf-gKUVFtUzcltdsOQeeuEHAicdbqodNxADBrGlLM";
const SHIPPED_Y: &str = "O4cI0F0vdZPralBqPR5HYrFeHz9JMGipA2JGNXYq618";

/// A self-signed P-256 certificate and key for CN=hopguard-test (test only, valid until 2126).
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUI7/7ADchbD6YTI7jI4nbOsYOY1kwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNaG9wZ3VhcmQtdGVzdDAgFw0yNjExMjIwNjQwMTJaGA8yMTI2
MTAyOTA2NDAxMlowGDEWMBQGA1UEAwwNaG9wZ3VhcmQtdGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABHBAw/F0OtKCjDMiW3usJhUliqmOd5hyNjDIOUW4CcvS
vZeaELmTivnQQrFrGk/+IsAo7tZSl6PQBK+a1fv9DUCjUzBRMB0GA1UdDgQWBBSV
Wt25VpPEowTyvKNpQ7JhDL4y4jAfBgNVHSMEGDAWgBSVWt25VpPEowTyvKNpQ7Jh
DL4y4jAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCbcPO2Tccn
rL5A/AGfZjLHSQUQj9/+fANitNd+9nnVKgIhAJ4pTHLb+Bel8KTkJFjVF976wKZh
VH3pSj0XCYPLjX3a
-----END CERTIFICATE-----
";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgplWkDQoZeTeVLu53
9uF1Y9KgjC3LlTvQlIlqJOwCf7ChRANCAARwQMPxdDrSgowzIlt7rCYVJYqpjneY
cjYwyDlFuAnL0r2XmhC5k4r50EKxaxpP/iLAKO7WUpej0ASvmtX7/Q1A
-----END PRIVATE KEY-----
";

fn edge_yaml() -> String {
    std::fs::read_to_string(repo_root().join("envoy/edge.yaml")).unwrap()
}

/// The `# BEGIN TLS` .. `# END TLS` block uncommented.
fn with_tls(yaml: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in yaml.lines() {
        if line.starts_with("# BEGIN TLS") {
            inside = true;
        } else if line.starts_with("# END TLS") {
            inside = false;
        } else if inside {
            out.push_str(line.strip_prefix('#').expect("TLS block lines start with #"));
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_optional_tls_listener_validates_once_uncommented() {
    let dir = TempDir::new("edge-tls");
    std::fs::write(dir.path().join("server.crt"), TEST_CERT).unwrap();
    std::fs::write(dir.path().join("server.key"), TEST_KEY).unwrap();
    let yaml = with_tls(&edge_yaml())
        .replace(SHIPPED_WASM_PATH, &wasm_path().to_string_lossy())
        .replace("/etc/envoy/tls", &dir.path().to_string_lossy());
    assert!(yaml.contains("name: edge_tls") && !yaml.contains("#  - name: edge_tls"));

    let (ok, output) = Envoy::validate_yaml(&yaml);

    assert!(ok, "{}", log_excerpt(&output, 40));
}

fn seen(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str() == Some(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_edge_proxy_checks_tokens_everywhere_but_healthz() {
    let up = Upstream::start();
    let signer = Signer::new("ES256", "k1");
    let jwk = signer.jwk();
    // The shipped config with this test's key, on loopback ports, to the test upstream.
    let yaml = edge_yaml()
        .replace(SHIPPED_WASM_PATH, &wasm_path().to_string_lossy())
        .replace(SHIPPED_X, jwk["x"].as_str().unwrap())
        .replace(SHIPPED_Y, jwk["y"].as_str().unwrap())
        .replace("0.0.0.0", "127.0.0.1")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("backend.internal", "127.0.0.1")
        .replace("port_value: 8080", &format!("port_value: {}", up.port()));
    let envoy = Envoy::start(&yaml, 1);
    let port = envoy.port("edge");
    let now = mint::now();
    let token = signer.token(&json!({
        "iss": "https://idp.example.com", "aud": "api.example.com", "sub": "alice", "iat": now, "exp": now + 600
    }));
    let bearer = format!("Bearer {token}");

    let health = http::request(port, "GET", "/healthz", &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let missing = http::request(port, "GET", "/orders/1", &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"api.example.com\"")
    );

    // /healthz/../orders/1 is /orders/1 by the time the filter looks at it.
    let sneaky = http::request(port, "GET", "/healthz/../orders/1", &[]);
    assert_eq!(sneaky.status, 401, "{sneaky:?}");

    let ok = http::request(
        port,
        "GET",
        "/orders/1",
        &[("authorization", &bearer), ("x-jwt-sub", "mallory")],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let echo = ok.json();
    assert_eq!(seen(&echo, "x-jwt-sub"), ["alice"], "forged header replaced");
    assert!(seen(&echo, "authorization").is_empty());
    assert_eq!(seen(&echo, "x-jwt-payload").len(), 1);
    assert!(!echo.to_string().contains(&token));

    let cookie = http::request(
        port,
        "GET",
        "/orders/1",
        &[("cookie", &format!("theme=dark; session={token}"))],
    );
    assert_eq!(cookie.status, 200, "{cookie:?}");
    assert_eq!(seen(&cookie.json(), "cookie"), ["theme=dark"]);

    let before = up.count();
    let underscored = http::request(
        port,
        "GET",
        "/orders/1",
        &[("authorization", &bearer), ("x_jwt_sub", "admin")],
    );
    assert_eq!(underscored.status, 400, "{underscored:?}");
    assert_eq!(up.count(), before, "the backend never sees it");

    let both = http::request(
        port,
        "GET",
        "/orders/1",
        &[("authorization", &bearer), ("cookie", &format!("session={token}"))],
    );
    assert_eq!(both.status, 400, "two tokens are ambiguous: {both:?}");

    let received: Vec<Received> = up.requests();
    assert!(received.iter().all(|r| !r.mentions(&token)));
    assert!(!envoy.logs().contains("panic"));
}
