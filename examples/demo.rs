//! The live demo: real Envoy 1.40 with hopguard in front of a sample service, on
//! loopback. Shows allowed and refused requests, then keeps serving (Ctrl-C stops it)
//! with curl commands to try. `--once` exits after the show; `--seconds N` serves N
//! seconds (default 600) before stopping by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::envoy::{bootstrap_yaml, hopguard_filter_yaml, Envoy, Listener};
use support::http::{self, Response};
use support::mint::{self, Signer};
use support::upstream::Upstream;

const ISS: &str = "https://idp.demo.local";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let once = args.iter().any(|a| a == "--once");
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);

    let es = Signer::new("ES256", "demo-es256");
    let ed = Signer::new("EdDSA", "demo-eddsa");
    let config = json!({
        "realm": "orders",
        "providers": [{
            "name": "demo-idp",
            "issuer": ISS,
            "audiences": ["orders"],
            "jwks": mint::jwks(&[&es, &ed]),
            "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
            "fromCookies": ["session"],
            "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}, {"header": "x-jwt-scope", "claim": "scope"}]
        }]
    });
    let service = Upstream::start();
    let listeners = vec![Listener::new("orders").filter(hopguard_filter_yaml(&config.to_string()))];
    let envoy = Envoy::start(&bootstrap_yaml(&listeners, service.port()), 2);
    let port = envoy.port("orders");
    println!(
        "hopguard demo: Envoy 1.40 (pid {}) with hopguard.wasm on http://127.0.0.1:{port}",
        envoy.pid()
    );
    println!(
        "               sample service (echoes what it receives) on 127.0.0.1:{}",
        service.port()
    );
    println!(
        "               Envoy admin on http://127.0.0.1:{}\n",
        envoy.admin_port()
    );
    println!("plugin configuration:\n{}\n", short_config(&config));

    let now = mint::now();
    let claims = |sub: &str| json!({"iss": ISS, "aud": "orders", "sub": sub, "scope": ["orders:read"], "iat": now, "exp": now + 3600});
    let good = es.token(&claims("alice"));
    let mut expired = claims("bob");
    expired["exp"] = json!(now - 3600);
    let mut other_aud = claims("carol");
    other_aud["aud"] = json!("billing");
    let stranger = Signer::new("ES256", "demo-es256-attacker")
        .sign(&json!({"alg": "ES256", "kid": "demo-es256"}), &claims("mallory"));

    let show = |title: &str, path: &str, headers: &[(&str, &str)]| {
        let r = http::request(port, "GET", path, headers);
        print_exchange(title, path, headers, &r);
    };
    let bearer = |t: &str| format!("Bearer {t}");
    show(
        "1. a valid ES256 token",
        "/orders/42",
        &[("authorization", &bearer(&good))],
    );
    show(
        "2. a valid EdDSA token in a cookie",
        "/orders/42",
        &[("cookie", &format!("theme=dark; session={}", ed.token(&claims("dave"))))],
    );
    show("3. no token", "/orders/42", &[]);
    show(
        "4. an expired token",
        "/orders/42",
        &[("authorization", &bearer(&es.token(&expired)))],
    );
    show(
        "5. a token for another audience",
        "/orders/42",
        &[("authorization", &bearer(&es.token(&other_aud)))],
    );
    show(
        "6. a token signed by someone else's key",
        "/orders/42",
        &[("authorization", &bearer(&stranger))],
    );
    show(
        "7. a forged claim header sent by the client",
        "/orders/42",
        &[("authorization", &bearer(&good)), ("x-jwt-sub", "root")],
    );
    show(
        "8. two tokens at once (header and cookie)",
        "/orders/42",
        &[
            ("authorization", &bearer(&good)),
            ("cookie", &format!("session={good}")),
        ],
    );

    if once {
        return;
    }
    println!("Try it yourself (token valid for an hour):\n");
    println!("  TOKEN={good}");
    println!("  curl -si http://127.0.0.1:{port}/orders/1 -H \"Authorization: Bearer $TOKEN\"");
    println!("  curl -si http://127.0.0.1:{port}/orders/1");
    println!("  curl -s  http://127.0.0.1:{}/stats | grep wasm\n", envoy.admin_port());
    println!("Serving for {seconds} s; Ctrl-C stops it.");
    std::thread::sleep(Duration::from_secs(seconds));
}

fn short_config(config: &Value) -> String {
    let mut c = config.clone();
    c["providers"][0]["jwks"] = json!("{ ...2 public keys (ES256, EdDSA)... }");
    serde_json::to_string_pretty(&c).unwrap()
}

fn abbreviate(v: &str) -> String {
    if v.len() > 48 {
        format!("{}...({} bytes)", &v[..40], v.len())
    } else {
        v.to_owned()
    }
}

fn print_exchange(title: &str, path: &str, headers: &[(&str, &str)], r: &Response) {
    println!("== {title}");
    println!("   > GET {path}");
    for (n, v) in headers {
        println!("   > {n}: {}", abbreviate(v));
    }
    println!("   < {}", r.status);
    if r.status == 200 {
        let echo = r.json();
        let seen: Vec<String> = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| {
                let n = h[0].as_str().unwrap();
                n.starts_with("x-jwt") || n == "authorization" || n == "cookie"
            })
            .map(|h| format!("{}: {}", h[0].as_str().unwrap(), abbreviate(h[1].as_str().unwrap())))
            .collect();
        println!(
            "   the service saw {}: {}",
            echo["path"],
            if seen.is_empty() {
                "no credentials".to_owned()
            } else {
                seen.join(" | ")
            }
        );
    } else {
        if let Some(w) = r.header("www-authenticate") {
            println!("   < www-authenticate: {w}");
        }
        println!("   < {}", r.body);
    }
    println!();
}
