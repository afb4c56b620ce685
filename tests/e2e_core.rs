//! Real Envoy 1.40 loads the release `hopguard.wasm`; an echo upstream reports what it
//! received. Envoy's native `jwt_authn`, in the same Envoy, is the oracle: where the two
//! should agree the test checks both; where hopguard is stricter on purpose, the test
//! names the RFC clause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::envoy::{
    bootstrap_yaml, hopguard_filter_yaml, jwt_authn_filter_yaml, Envoy, JwtProvider, JwtRequires, Listener,
};
use support::http::{self, Response};
use support::mint::{self, Signer, ALL_ALGS};
use support::upstream::Upstream;

const ISS: &str = "https://idp.hopguard.test";
const AUD: &str = "orders";

struct World {
    up: Upstream,
    envoy: Envoy,
    signers: Vec<Signer>,
}

impl World {
    fn signer(&self, alg: &str) -> &Signer {
        self.signers.iter().find(|s| s.alg == alg).unwrap()
    }
    fn get(&self, listener: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        http::request(self.envoy.port(listener), "GET", path, headers)
    }
    fn bearer(&self, listener: &str, token: &str) -> Response {
        self.get(listener, "/orders/1", &[("authorization", &format!("Bearer {token}"))])
    }
    fn claims(&self) -> Value {
        mint::claims(ISS, AUD, "alice", mint::now())
    }
}

fn hopguard_provider(jwks: &Value, extra: Value) -> Value {
    let mut p = json!({
        "issuer": ISS,
        "audiences": [AUD],
        "jwks": jwks,
        "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}, {"name": "x-token"}],
        "fromParams": ["access_token"],
        "fromCookies": ["session"],
        "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}, {"header": "x-jwt-roles", "claim": "roles"}],
        "outputPayloadToHeader": "x-jwt-payload"
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn native_provider(jwks: &Value, forward: bool) -> JwtProvider {
    let mut p = JwtProvider::new("idp", ISS, &jwks.to_string());
    p.audiences = vec![AUD.into()];
    p.from_headers = vec![
        ("authorization".into(), "Bearer ".into()),
        ("x-token".into(), String::new()),
    ];
    p.from_params = vec!["access_token".into()];
    p.from_cookies = vec!["session".into()];
    p.claim_to_headers = vec![("x-jwt-sub".into(), "sub".into())];
    p.forward_payload_header = Some("x-jwt-payload".into());
    p.require_expiration = true;
    p.forward = forward;
    p
}

/// One Envoy, concurrency 2, with hopguard and native listeners side by side.
fn world() -> World {
    let signers: Vec<Signer> = ALL_ALGS.iter().map(|a| Signer::new(a, &format!("k-{a}"))).collect();
    let jwks = mint::jwks(&signers.iter().collect::<Vec<_>>());
    let up = Upstream::start();
    let hg = |extra: Value, top: Value| {
        let mut cfg = top;
        cfg["providers"] = json!([hopguard_provider(&jwks, extra)]);
        hopguard_filter_yaml(&cfg.to_string())
    };
    let listeners = vec![
        Listener::new("hg").filter(hg(json!({}), json!({"realm": "orders-api"}))),
        Listener::new("hg_forward").filter(hg(json!({"forwardOriginalToken": true}), json!({}))),
        Listener::new("hg_allow_missing").filter(hg(json!({}), json!({"requirement": "allowMissing"}))),
        Listener::new("hg_allow_failed").filter(hg(json!({}), json!({"requirement": "allowMissingOrFailed"}))),
        Listener::new("native").filter(jwt_authn_filter_yaml(
            &[native_provider(&jwks, false)],
            &JwtRequires::Any(vec!["idp".into()]),
        )),
    ];
    let envoy = Envoy::start(&bootstrap_yaml(&listeners, up.port()), 2);
    World { up, envoy, signers }
}

fn problem(r: &Response) -> Value {
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{r:?}");
    r.json()
}

/// What the upstream saw for the last request, as JSON (the echo body).
fn seen(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn seen_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str() == Some(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn all_13_algorithms_pass_on_hopguard_and_native_and_the_token_is_stripped() {
    let w = world();
    for alg in ALL_ALGS {
        let token = w.signer(alg).token(&w.claims());
        for listener in ["hg", "native"] {
            let r = w.bearer(listener, &token);
            let echo = seen(&r);
            assert!(
                seen_header(&echo, "authorization").is_empty(),
                "{listener} {alg}: token forwarded"
            );
            assert_eq!(seen_header(&echo, "x-jwt-sub"), ["alice"], "{listener} {alg}");
            assert!(
                !echo.to_string().contains(&token),
                "{listener} {alg}: upstream saw the token"
            );
        }
    }
    assert_eq!(w.up.count(), 26);
    assert!(!w.envoy.logs().contains("panic"), "{}", w.envoy.logs());
}

struct Case {
    name: &'static str,
    token: String,
    reason: &'static str,
    status: u16,
    /// The native filter's status for the same token; `None` where hopguard is
    /// deliberately stricter (the case name says which RFC clause).
    native: Option<u16>,
}

#[test]
fn each_refusal_reason_matches_the_table_and_the_native_oracle() {
    let w = world();
    let es = w.signer("ES256");
    let hdr = json!({"alg": "ES256", "kid": "k-ES256", "typ": "JWT"});
    let now = mint::now();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = w.claims();
        edit(&mut c);
        c
    };
    let stranger = Signer::new("ES256", "stranger");
    let tampered = {
        let t = es.token(&w.claims());
        let mut p: Vec<String> = t.split('.').map(str::to_owned).collect();
        p[1] = hopguard::b64::encode(with(&|c| c["sub"] = json!("mallory")).to_string().as_bytes());
        p.join(".")
    };
    let cases = vec![
        Case {
            name: "alg none (RFC 7518 3.6, RFC 8725 3.1)",
            token: mint::raw(r#"{"alg":"none"}"#, &w.claims().to_string(), b""),
            reason: "alg_none",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "unsupported alg",
            token: mint::raw(r#"{"alg":"ES256K","kid":"k-ES256"}"#, &w.claims().to_string(), b"sig"),
            reason: "alg_unsupported",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "not a JWS",
            token: "abc.def".into(),
            reason: "token_malformed",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "JWE-shaped (five segments)",
            token: "a.b.c.d.e".into(),
            reason: "token_malformed",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "crit header not understood (RFC 7515 4.1.11 MUST reject)",
            token: es.sign(
                &json!({"alg":"ES256","kid":"k-ES256","crit":["exp"],"exp":1}),
                &w.claims(),
            ),
            reason: "crit_unsupported",
            status: 401,
            native: None,
        },
        Case {
            name: "DPoP proof used as access token (RFC 8725 3.11, RFC 9449 4.2)",
            token: es.sign(&json!({"alg":"ES256","kid":"k-ES256","typ":"dpop+jwt"}), &w.claims()),
            reason: "typ_not_accepted",
            status: 401,
            native: None,
        },
        Case {
            name: "duplicate claim names (RFC 7519 4: reject or last-wins; hopguard rejects)",
            token: {
                let input = format!(
                    "{}.{}",
                    hopguard::b64::encode(hdr.to_string().as_bytes()),
                    hopguard::b64::encode(
                        format!(
                            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","sub":"root","exp":{}}}"#,
                            now + 600
                        )
                        .as_bytes()
                    )
                );
                format!("{input}.{}", hopguard::b64::encode(&es.sign_bytes(input.as_bytes())))
            },
            reason: "token_malformed",
            status: 401,
            native: None,
        },
        Case {
            name: "no iss",
            token: es.sign(
                &hdr,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            ),
            reason: "issuer_missing",
            status: 401,
            native: None,
        },
        Case {
            name: "unknown issuer",
            token: es.sign(&hdr, &with(&|c| c["iss"] = json!("https://evil.test"))),
            reason: "issuer_unknown",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "unknown kid",
            token: es.sign(&json!({"alg":"ES256","kid":"nope"}), &w.claims()),
            reason: "key_not_found",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "signed by another key",
            token: stranger.sign(&hdr, &w.claims()),
            reason: "signature_invalid",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "payload tampered",
            token: tampered,
            reason: "signature_invalid",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "expired",
            token: es.sign(&hdr, &with(&|c| c["exp"] = json!(now - 120))),
            reason: "token_expired",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "not yet valid",
            token: es.sign(&hdr, &with(&|c| c["nbf"] = json!(now + 600))),
            reason: "token_not_yet_valid",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "no exp (requireExpiration)",
            token: es.sign(
                &hdr,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            reason: "exp_missing",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "exp not a NumericDate (RFC 7519 4.1.4)",
            token: es.sign(&hdr, &with(&|c| c["exp"] = json!("2999-01-01"))),
            reason: "claim_invalid",
            status: 401,
            native: Some(401),
        },
        Case {
            name: "aud not string or array (RFC 7519 4.1.3)",
            token: es.sign(&hdr, &with(&|c| c["aud"] = json!({"x": 1}))),
            reason: "claim_invalid",
            status: 401,
            native: None,
        },
        Case {
            name: "wrong audience",
            token: es.sign(&hdr, &with(&|c| c["aud"] = json!(["billing"]))),
            reason: "audience_mismatch",
            status: 403,
            native: Some(403),
        },
        Case {
            name: "audience differs only in case (RFC 7519 4.1.3: case-sensitive)",
            token: es.sign(&hdr, &with(&|c| c["aud"] = json!("ORDERS"))),
            reason: "audience_mismatch",
            status: 403,
            native: Some(403),
        },
        Case {
            name: "too large",
            token: es.sign(&hdr, &with(&|c| c["pad"] = json!("x".repeat(9000)))),
            reason: "token_too_large",
            status: 401,
            native: None,
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let r = w.bearer("hg", &c.token);
        let body = if r.header("content-type") == Some("application/problem+json") {
            r.json()
        } else {
            json!(null)
        };
        let www = r.header("www-authenticate").unwrap_or("").to_owned();
        let ok = r.status == c.status
            && body["reason"] == c.reason
            && body["status"] == c.status
            && body["type"] == format!("urn:hopguard:reason:{}", c.reason)
            && www.starts_with("Bearer realm=\"orders-api\", error=\"invalid_token\", error_description=\"")
            && !www.contains(&c.token)
            && !r.body.contains(&c.token);
        if !ok {
            failures.push(format!("{}: hopguard answered {} {www:?} {}", c.name, r.status, r.body));
        }
        if let Some(native) = c.native {
            let n = w.bearer("native", &c.token);
            if n.status != native {
                failures.push(format!(
                    "{}: native answered {} (expected {native}): {}",
                    c.name, n.status, n.body
                ));
            }
        }
    }
    assert_eq!(w.up.count(), 0, "a refused request reached the upstream");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // No token: 401 with a bare challenge (RFC 6750 3.1: no error code).
    let r = w.get("hg", "/orders/1", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"orders-api\""));
    assert_eq!(problem(&r)["reason"], "token_missing");
    assert_eq!(w.get("native", "/orders/1", &[]).status, 401);
    // A non-bearer scheme is not a bearer token.
    let r = w.get("hg", "/", &[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")]);
    assert_eq!(problem(&r)["reason"], "token_missing");

    // Two tokens: 400 invalid_request (RFC 6750 2: one method per request). Envoy
    // picks one and lets the request through.
    let t = es.token(&w.claims());
    let r = w.get(
        "hg",
        &format!("/x?access_token={t}"),
        &[("authorization", &format!("Bearer {t}"))],
    );
    assert_eq!(r.status, 400);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_request\""));
    assert_eq!(problem(&r)["reason"], "token_ambiguous");
    let r = w.get(
        "hg",
        "/",
        &[
            ("authorization", &format!("Bearer {t}")),
            ("authorization", &format!("Bearer {t}")),
        ],
    );
    assert_eq!(problem(&r)["reason"], "token_ambiguous");

    // The realm never echoes the request URL or query (Envoy's does).
    let n = w.get("native", "/secret?q=leak", &[("authorization", "Bearer x.y.z")]);
    let h = w.get("hg", "/secret?q=leak", &[("authorization", "Bearer x.y.z")]);
    assert_eq!(n.status, 401);
    assert_eq!(h.status, 401);
    assert!(!h.header("www-authenticate").unwrap().contains("leak"));
}

#[test]
fn every_extraction_place_is_read_and_stripped_including_cookies() {
    let w = world();
    let t = w.signer("EdDSA").token(&w.claims());
    // Authorization header, case-insensitive scheme.
    let e = seen(&w.get("hg", "/a?keep=1", &[("authorization", &format!("bEaReR {t}"))]));
    assert!(!e.to_string().contains(&t));
    assert_eq!(e["path"], "/a?keep=1");
    // Custom header without prefix.
    let e = seen(&w.get("hg", "/b", &[("x-token", &t)]));
    assert!(seen_header(&e, "x-token").is_empty());
    assert!(!e.to_string().contains(&t));
    // Query parameter: removed, the other parameters kept in order.
    let e = seen(&w.get("hg", &format!("/c?a=1&access_token={t}&b=2"), &[]));
    assert_eq!(e["path"], "/c?a=1&b=2");
    let e = seen(&w.get("hg", &format!("/c?access_token={t}"), &[]));
    assert_eq!(e["path"], "/c");
    // Cookie: removed, the other cookies kept.
    let e = seen(&w.get("hg", "/d", &[("cookie", &format!("theme=dark; session={t}; lang=en"))]));
    assert_eq!(seen_header(&e, "cookie"), ["theme=dark; lang=en"]);
    assert!(!e.to_string().contains(&t));
    let e = seen(&w.get("hg", "/d", &[("cookie", &format!("session={t}"))]));
    assert!(seen_header(&e, "cookie").is_empty());
    // Envoy's native filter strips headers but leaves the cookie (and the parameter)
    // in place: the upstream sees the token.
    let n = seen(&w.get("native", "/d", &[("cookie", &format!("theme=dark; session={t}"))]));
    assert!(
        n.to_string().contains(&t),
        "native jwt_authn is expected to forward the cookie"
    );

    for r in w.up.requests() {
        if r.path.starts_with("/d") && r.mentions(&t) {
            continue; // the native listener's request above
        }
        assert!(!r.mentions(&t), "upstream saw the token: {r:?}");
    }
}

#[test]
fn claims_payload_forged_headers_forwarding_and_requirement_modes() {
    let w = world();
    let mut c = w.claims();
    c["roles"] = json!(["reader", "writer"]);
    let t = w.signer("ES384").token(&c);
    let forged = [
        ("x-jwt-sub", "root"),
        ("x-jwt-roles", "admin"),
        ("x-jwt-payload", "e30"),
    ];
    let mut hs: Vec<(&str, &str)> = forged.to_vec();
    let auth = format!("Bearer {t}");
    hs.push(("authorization", &auth));
    let e = seen(&w.get("hg", "/", &hs));
    assert_eq!(seen_header(&e, "x-jwt-sub"), ["alice"]);
    assert_eq!(
        seen_header(&e, "x-jwt-roles"),
        ["reader,writer"],
        "array claims are joined"
    );
    assert_eq!(seen_header(&e, "x-jwt-payload"), [t.split('.').nth(1).unwrap()]);

    // allowMissing: no token passes, forged headers are still removed.
    let e = seen(&w.get("hg_allow_missing", "/", &forged));
    for (h, _) in forged {
        assert!(seen_header(&e, h).is_empty(), "forged {h} reached the upstream");
    }
    let r = w.get("hg_allow_missing", "/", &[("authorization", "Bearer bad")]);
    assert_eq!(r.status, 401);

    // allowMissingOrFailed: a bad token passes, stripped.
    let e = seen(&w.get("hg_allow_failed", "/", &[("authorization", "Bearer bad.token.here")]));
    assert!(seen_header(&e, "authorization").is_empty());
    let e = seen(&w.get("hg_allow_failed", "/", &[("authorization", &auth)]));
    assert_eq!(seen_header(&e, "x-jwt-sub"), ["alice"]);

    // forwardOriginalToken: the credential reaches the upstream unchanged.
    let e = seen(&w.get("hg_forward", "/", &[("authorization", &auth)]));
    assert_eq!(seen_header(&e, "authorization"), [auth]);
}

#[test]
fn a_refused_config_never_serves_and_names_the_json_path() {
    let up = Upstream::start();
    let weak = Signer::rsa_bits("RS256", "weak", 1024);
    let cfg = json!({"providers": [{"issuer": ISS, "jwks": mint::jwks(&[&weak])}]});
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))];
    match Envoy::try_start(&bootstrap_yaml(&listeners, up.port()), 1) {
        Ok(envoy) => {
            // If Envoy came up anyway, the filter must refuse everything.
            let r = http::request(envoy.port("hg"), "GET", "/", &[]);
            assert_ne!(r.status, 200, "{r:?}");
            assert!(
                envoy.logs().contains("$.providers[0].jwks.keys[0].n"),
                "{}",
                envoy.logs()
            );
        }
        Err(logs) => {
            assert!(
                logs.contains("hopguard: configuration refused: $.providers[0].jwks.keys[0].n"),
                "{logs}"
            );
            assert!(logs.contains("at least 2048"), "{logs}");
        }
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn hostile_headers_do_not_take_the_filter_down() {
    let w = world();
    let t = w.signer("ES256").token(&w.claims());
    // Fifty Authorization headers: ambiguous, refused, Envoy still serving.
    let auth = format!("Bearer {t}");
    let many: Vec<(&str, &str)> = (0..50).map(|_| ("authorization", auth.as_str())).collect();
    assert_eq!(w.get("hg", "/", &many).status, 400);
    // Obs-text (non-UTF-8) header values: the SDK's string accessor would panic here.
    let mut bytes = b"GET / HTTP/1.1\r\nhost: x\r\nx-odd: caf\xe9\r\n".to_vec();
    bytes.extend_from_slice(format!("authorization: Bearer {t}\r\nconnection: close\r\n\r\n").as_bytes());
    let resp = raw_request(w.envoy.port("hg"), &bytes);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("caf\u{fffd}"),
        "the odd header reached the upstream untouched: {resp}"
    );
    // A huge token and a NUL-laden token.
    let huge = format!("Bearer {}", "a".repeat(30_000));
    assert_eq!(w.get("hg", "/", &[("authorization", &huge)]).status, 401);
    assert_eq!(w.bearer("hg", &t).status, 200, "still serving");
    assert!(!w.envoy.logs().contains("panic"), "{}", w.envoy.logs());
}

/// Sends raw bytes, returns the raw response (for requests the client cannot build).
fn raw_request(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Every row of the README's "Where hopguard and Envoy's jwt_authn differ" table,
/// checked against the native filter in the same Envoy.
#[test]
fn where_hopguard_is_stricter_than_native_on_purpose() {
    let w = world();
    let es = w.signer("ES256");
    let status = |listener: &str, t: &str| w.bearer(listener, t).status;

    // RFC 7515 4.1.11: crit must be understood.
    let crit = es.sign(
        &json!({"alg": "ES256", "kid": "k-ES256", "crit": ["exp"], "exp": 1}),
        &w.claims(),
    );
    assert_eq!((status("native", &crit), status("hg", &crit)), (200, 401));
    // RFC 8725 3.11 / RFC 9449: a DPoP proof is not an access token.
    let dpop = es.sign(
        &json!({"alg": "ES256", "kid": "k-ES256", "typ": "dpop+jwt"}),
        &w.claims(),
    );
    assert_eq!((status("native", &dpop), status("hg", &dpop)), (200, 401));
    // Claims of an unverified token mean nothing: bad signature + wrong audience.
    let mut c = w.claims();
    c["aud"] = json!("billing");
    let forged = Signer::new("ES256", "stranger").sign(&json!({"alg": "ES256", "kid": "k-ES256"}), &c);
    assert_eq!((status("native", &forged), status("hg", &forged)), (403, 401));
    let r = w.bearer("hg", &forged);
    assert_eq!(problem(&r)["reason"], "signature_invalid");
    // The realm: Envoy echoes the request URL, hopguard its configured realm.
    let n = w.get("native", "/private/path?q=1", &[("authorization", "Bearer a.b.c")]);
    assert!(n.header("www-authenticate").unwrap().contains("/private/path"), "{n:?}");
    let h = w.get("hg", "/private/path?q=1", &[("authorization", "Bearer a.b.c")]);
    assert!(h
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer realm=\"orders-api\""));
    // Envoy's body is text; hopguard's an RFC 9457 problem.
    assert!(!n.header("content-type").unwrap_or("").contains("problem"));
    assert_eq!(problem(&h)["status"], 401);
    // Two tokens: Envoy picks one; hopguard refuses.
    let t = es.token(&w.claims());
    let two = [
        ("authorization", format!("Bearer {t}")),
        ("cookie", format!("session={t}")),
    ];
    let two: Vec<(&str, &str)> = two.iter().map(|(a, b)| (*a, b.as_str())).collect();
    assert_eq!(w.get("native", "/", &two).status, 200);
    assert_eq!(w.get("hg", "/", &two).status, 400);
}

/// Envoy's default accepts tokens without `exp`; hopguard's default refuses them.
#[test]
fn expiration_default_differs_from_native_and_is_configurable() {
    let signer = Signer::new("EdDSA", "e1");
    let jwks = mint::jwks(&[&signer]);
    let up = Upstream::start();
    let mut native = JwtProvider::new("idp", ISS, &jwks.to_string());
    native.require_expiration = false;
    let cfg = |extra: Value| {
        let mut p = json!({"issuer": ISS, "jwks": jwks});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        hopguard_filter_yaml(&json!({"providers": [p]}).to_string())
    };
    let listeners = vec![
        Listener::new("native").filter(jwt_authn_filter_yaml(&[native], &JwtRequires::Any(vec!["idp".into()]))),
        Listener::new("hg").filter(cfg(json!({}))),
        Listener::new("hg_lenient").filter(cfg(json!({"requireExpiration": false}))),
    ];
    let envoy = Envoy::start(&bootstrap_yaml(&listeners, up.port()), 1);
    let t = signer.token(&json!({"iss": ISS, "sub": "a"}));
    let get = |l: &str| http::request(envoy.port(l), "GET", "/", &[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(get("native").status, 200);
    let r = get("hg");
    assert_eq!((r.status, r.json()["reason"].as_str()), (401, Some("exp_missing")));
    assert_eq!(get("hg_lenient").status, 200);
}
