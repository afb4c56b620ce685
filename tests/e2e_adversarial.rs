//! The adversarial suite against real Envoy 1.40: hostile tokens, headers, key sets and
//! revocation lists, each answered with the right refusal (status and reason), never a panic
//! in Envoy's log (`hopguard: panic`), and Envoy still serving a valid token afterwards.
//!
//! Each test prints a results table (case, expected, got) and writes it as Markdown to
//! `$CARGO_TARGET_TMPDIR/adversarial/<section>.md` (the README's Reliability section).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use hopguard::b64;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::envoy::{bootstrap_yaml_with_clusters, cluster_yaml, hopguard_filter_yaml, Envoy, EnvoyOptions, Listener};
use support::http::{self, Response};
use support::mint::{self, Signer};
use support::upstream::{Reply, Upstream};

const ISS: &str = "https://idp.adversarial";
const REMOTE_ISS: &str = "http://idp.test";

// ---------------------------------------------------------------------------------------------
// Results table
// ---------------------------------------------------------------------------------------------

struct Row {
    case: String,
    expected: String,
    got: String,
    ok: bool,
}

/// One section of the results table; every case is checked, then Envoy's health.
struct Table {
    section: &'static str,
    rows: Vec<Row>,
}

impl Table {
    fn new(section: &'static str) -> Table {
        Table {
            section,
            rows: Vec::new(),
        }
    }

    /// A case answered by hopguard: status and reason code (`allowed` for 200).
    fn check(&mut self, case: &str, expected: (u16, &str), got: (u16, String)) {
        let ok = got.0 == expected.0 && got.1 == expected.1;
        self.row(
            case,
            format!("{} {}", expected.0, expected.1),
            format!("{} {}", got.0, got.1),
            ok,
        );
    }

    fn row(&mut self, case: &str, expected: String, got: String, ok: bool) {
        eprintln!(
            "[{}] {case}: expected {expected}, got {got}",
            if ok { "ok" } else { "FAIL" }
        );
        self.rows.push(Row {
            case: case.to_owned(),
            expected,
            got,
            ok,
        });
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} case | expected | got |\n|---|---|---|\n", self.section);
        for r in &self.rows {
            let mark = if r.ok { "" } else { " **(wrong)**" };
            out.push_str(&format!(
                "| {} | {} | {}{mark} |\n",
                r.case.replace('|', "\\|"),
                r.expected.replace('|', "\\|"),
                r.got.replace('|', "\\|")
            ));
        }
        out
    }

    /// Prints and writes the table, then fails if any case went wrong.
    fn finish(self) {
        let md = self.markdown();
        println!("\n{md}");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("adversarial");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}.md", self.section.replace(' ', "-")));
        let _ = std::fs::write(&path, &md);
        println!("(written to {})", path.display());
        let wrong: Vec<&Row> = self.rows.iter().filter(|r| !r.ok).collect();
        assert!(
            wrong.is_empty(),
            "{} of {} cases wrong:\n{md}",
            wrong.len(),
            self.rows.len()
        );
    }
}

/// Status and reason code of a response (`allowed` for a 200, `-` without a problem body).
fn outcome(r: &Response) -> (u16, String) {
    if r.status == 200 {
        return (200, "allowed".into());
    }
    let reason = serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    (r.status, reason)
}

/// No panic and no Wasm failure in Envoy's log.
fn healthy_log(envoy: &Envoy) -> Result<(), String> {
    let logs = envoy.logs();
    for needle in [
        "hopguard: panic",
        "panicked at",
        "Function: proxy_on",
        "wasm trap",
        "RuntimeError",
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
            return Err(line.to_owned());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Keys, tokens and requests
// ---------------------------------------------------------------------------------------------

struct Keys {
    ec: Signer,
    rsa: Signer,
    ed: Signer,
    /// Not trusted by anyone: the attacker's.
    attacker: Signer,
    /// DPoP client keys.
    client: Signer,
    thief: Signer,
}

fn keys() -> Keys {
    Keys {
        ec: Signer::new("ES256", "ec-1"),
        rsa: Signer::new("RS256", "rsa-1"),
        ed: Signer::new("EdDSA", "ed-1"),
        attacker: Signer::new("ES256", "attacker"),
        client: Signer::new("ES256", "client"),
        thief: Signer::new("ES256", "thief"),
    }
}

fn claims() -> Value {
    mint::claims(ISS, "orders", "alice", mint::now())
}

fn claims_with(extra: Value) -> Value {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A token with a raw header and payload text, signed by `s` (duplicate keys, odd bytes).
fn sign_raw(s: &Signer, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = s.sign_bytes(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64::encode(&mac.finalize().into_bytes()))
}

/// An ECDSA signature `r || s` as ASN.1 DER (the format JWS forbids, RFC 7518 3.4).
fn der(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
        if v.first().is_some_and(|x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = raw.split_at(raw.len() / 2);
    let body: Vec<u8> = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The public JWK a DPoP client embeds.
fn public_jwk(s: &Signer) -> Value {
    let mut j = s.jwk();
    let o = j.as_object_mut().unwrap();
    o.remove("kid");
    o.remove("alg");
    j
}

fn jkt(s: &Signer) -> String {
    hopguard::dpop::jwk_thumbprint(public_jwk(s).as_object().unwrap()).unwrap()
}

fn ath(token: &str) -> String {
    b64::encode(&Sha256::digest(token.as_bytes()))
}

/// A DPoP proof by `signer` carrying `jwk_of`'s public key, for `GET http://127.0.0.1:port/path`.
fn proof(signer: &Signer, jwk_of: &Signer, port: u16, path: &str, token: &str, jti: &str, alg: &str) -> String {
    signer.sign(
        &json!({"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk(jwk_of)}),
        &json!({"jti": jti, "htm": "GET", "htu": format!("http://127.0.0.1:{port}{path}"),
                "iat": mint::now(), "ath": ath(token)}),
    )
}

fn bearer(envoy: &Envoy, listener: &str, token: &str) -> Response {
    http::request(
        envoy.port(listener),
        "GET",
        "/orders",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Sends raw bytes (for requests the client cannot build), returns status and reason.
fn raw(port: u16, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let response = Response {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    };
    outcome(&response)
}

/// Two requests on one keep-alive connection (so one Envoy worker, one replay cache).
fn same_connection(port: u16, requests: &[Vec<(String, String)>]) -> Vec<(u16, String)> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    for headers in requests {
        let mut head = format!("GET /orders HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes()).unwrap();
        let status_line = http::read_line(&mut reader).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let hs = http::read_headers(&mut reader).unwrap();
        let body = http::read_body(&mut reader, &hs, false).unwrap();
        out.push(outcome(&Response {
            status,
            headers: hs,
            body: String::from_utf8_lossy(&body).into_owned(),
        }));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The Envoy under attack
// ---------------------------------------------------------------------------------------------

struct World {
    envoy: Envoy,
    echo: Upstream,
    k: Keys,
    valid: String,
}

fn world() -> World {
    let k = keys();
    let echo = Upstream::start();
    let provider = |max: u64, dpop: bool| {
        let mut c = json!({
            "realm": "adversarial",
            "maxTokenBytes": max,
            "providers": [{
                "issuer": ISS,
                "audiences": ["orders"],
                "jwks": mint::jwks(&[&k.ec, &k.rsa, &k.ed]),
                "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}, {"name": "authorization", "prefix": "DPoP "}],
                "fromCookies": ["session"],
                "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]
            }]
        });
        if dpop {
            c["authorization"] = json!({"dpop": {"mode": "ifBound"}});
        }
        c.to_string()
    };
    let listeners = vec![
        Listener::new("hg").filter(hopguard_filter_yaml(&provider(4096, true))),
        Listener::new("big").filter(hopguard_filter_yaml(&provider(65536, false))),
    ];
    let yaml = bootstrap_yaml_with_clusters(&listeners, &[cluster_yaml("upstream", echo.port())]);
    let envoy = Envoy::start_with(&yaml, &EnvoyOptions::new(2));
    let valid = k.ec.token(&claims());
    World { envoy, echo, k, valid }
}

impl World {
    fn port(&self) -> u16 {
        self.envoy.port("hg")
    }

    fn get(&self, listener: &str, headers: &[(&str, &str)]) -> (u16, String) {
        outcome(&http::request(self.envoy.port(listener), "GET", "/orders", headers))
    }

    fn token(&self, t: &str) -> (u16, String) {
        outcome(&bearer(&self.envoy, "hg", t))
    }

    /// After every case: no panic in the log, and a valid token still passes.
    fn alive(&self, table: &mut Table, case: &str) {
        if let Err(line) = healthy_log(&self.envoy) {
            table.row(&format!("{case}: Envoy log"), "no panic".into(), line, false);
        }
        let (status, _) = self.token(&self.valid);
        if status != 200 {
            table.row(
                &format!("{case}: still serving"),
                "200".into(),
                status.to_string(),
                false,
            );
        }
    }
}

#[test]
fn hostile_tokens_and_headers() {
    let w = world();
    let k = &w.k;
    let mut t = Table::new("tokens and headers");
    let case = |t: &mut Table, name: &str, expected: (u16, &str), got: (u16, String)| {
        t.check(name, expected, got);
        w.alive(t, name);
    };

    // Sizes.
    let padded = |n: usize| k.ec.token(&claims_with(json!({"pad": "x".repeat(n)})));
    case(
        &mut t,
        "token of 5 KB (maxTokenBytes 4096)",
        (401, "token_too_large"),
        w.token(&padded(5_000)),
    );
    case(
        &mut t,
        "token of 50 KB",
        (401, "token_too_large"),
        w.token(&"a".repeat(50_000)),
    );
    let huge = format!("Bearer {}", "a".repeat(100_000));
    case(
        &mut t,
        "Authorization header of 100 KB (Envoy's 60 KiB header limit)",
        (431, "-"),
        w.get("hg", &[("authorization", &huge)]),
    );
    let big = padded(40_000);
    case(
        &mut t,
        "valid token of 40 KB, maxTokenBytes 65536",
        (200, "allowed"),
        w.get("big", &[("authorization", &format!("Bearer {big}"))]),
    );
    let wide: serde_json::Map<String, Value> = (0..3000).map(|i| (format!("c{i}"), json!(i))).collect();
    let mut wide_claims = claims();
    wide_claims.as_object_mut().unwrap().extend(wide);
    case(
        &mut t,
        "valid token with 3000 claims",
        (200, "allowed"),
        w.get(
            "big",
            &[("authorization", &format!("Bearer {}", k.ec.token(&wide_claims)))],
        ),
    );
    let nested = |depth: usize| {
        let payload = format!(
            "{{\"iss\":\"{ISS}\",\"aud\":\"orders\",\"exp\":{},\"deep\":{}1{}}}",
            mint::now() + 600,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        sign_raw(&k.ec, br#"{"alg":"ES256","kid":"ec-1"}"#, payload.as_bytes())
    };
    case(
        &mut t,
        "claims nested 100 deep",
        (200, "allowed"),
        w.token(&nested(100)),
    );
    case(
        &mut t,
        "claims nested 1000 deep",
        (401, "token_malformed"),
        w.token(&nested(1000)),
    );
    let mut aud: Vec<String> = (0..999).map(|i| format!("aud-{i}")).collect();
    aud.push("orders".into());
    case(
        &mut t,
        "aud of 1000 elements, ours last",
        (200, "allowed"),
        w.get(
            "big",
            &[(
                "authorization",
                &format!("Bearer {}", k.ec.token(&claims_with(json!({"aud": aud})))),
            )],
        ),
    );
    aud.pop();
    aud.push("other".into());
    case(
        &mut t,
        "aud of 1000 elements, not ours",
        (403, "audience_mismatch"),
        w.get(
            "big",
            &[(
                "authorization",
                &format!("Bearer {}", k.ec.token(&claims_with(json!({"aud": aud})))),
            )],
        ),
    );

    // Duplicate members (parser differentials).
    let exp = mint::now() + 600;
    let dup_claims = format!("{{\"iss\":\"https://evil\",\"iss\":\"{ISS}\",\"aud\":\"orders\",\"exp\":{exp}}}");
    case(
        &mut t,
        "duplicate iss in the claims",
        (401, "token_malformed"),
        w.token(&sign_raw(
            &k.ec,
            br#"{"alg":"ES256","kid":"ec-1"}"#,
            dup_claims.as_bytes(),
        )),
    );
    let dup_header = format!("{{\"iss\":\"{ISS}\",\"aud\":\"orders\",\"exp\":{exp}}}");
    case(
        &mut t,
        "duplicate alg in the header (ES256, none)",
        (401, "token_malformed"),
        w.token(&sign_raw(
            &k.ec,
            br#"{"alg":"ES256","kid":"ec-1","alg":"none"}"#,
            dup_header.as_bytes(),
        )),
    );
    let dup_nested = format!("{{\"iss\":\"{ISS}\",\"aud\":\"orders\",\"exp\":{exp},\"realm\":{{\"roles\":[\"user\"],\"roles\":[\"admin\"]}}}}");
    case(
        &mut t,
        "duplicate nested claim (realm.roles)",
        (401, "token_malformed"),
        w.token(&sign_raw(
            &k.ec,
            br#"{"alg":"ES256","kid":"ec-1"}"#,
            dup_nested.as_bytes(),
        )),
    );

    // Bytes the HTTP client cannot send.
    let port = w.port();
    let mut bad_utf8 = format!(
        "GET /orders HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {}",
        w.valid
    )
    .into_bytes();
    bad_utf8.extend_from_slice(b"\xff\xfe\r\n\r\n");
    case(
        &mut t,
        "invalid UTF-8 after a valid token (raw TCP)",
        (401, "token_malformed"),
        raw(port, &bad_utf8),
    );
    let mut latin1 = b"GET /orders HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-name: caf\xe9\r\n".to_vec();
    latin1.extend_from_slice(format!("authorization: Bearer {}\r\n\r\n", w.valid).as_bytes());
    case(
        &mut t,
        "obs-text (Latin-1) in another header (raw TCP)",
        (200, "allowed"),
        raw(port, &latin1),
    );
    let utf8_claims = [
        b"{\"iss\":\"".as_slice(),
        ISS.as_bytes(),
        b"\",\"aud\":\"orders\",\"sub\":\"\xff\xfe\",\"exp\":9999999999}",
    ]
    .concat();
    case(
        &mut t,
        "invalid UTF-8 inside the signed claims",
        (401, "token_malformed"),
        w.token(&sign_raw(&k.ec, br#"{"alg":"ES256","kid":"ec-1"}"#, &utf8_claims)),
    );
    let nul = format!(
        "GET /orders HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {}\0x\r\n\r\n",
        w.valid
    );
    case(
        &mut t,
        "NUL byte in the Authorization header (raw TCP)",
        (400, "-"),
        raw(port, nul.as_bytes()),
    );
    w.echo.clear();
    let nul_sub = k.ec.token(&claims_with(json!({"sub": "ali\u{0}ce"})));
    let got = w.token(&nul_sub);
    let leaked = w.echo.requests().iter().any(|r| r.header("x-jwt-sub").is_some());
    t.row(
        "NUL in the sub claim (copied to x-jwt-sub)",
        "200, no x-jwt-sub".into(),
        format!(
            "{} {}, x-jwt-sub {}",
            got.0,
            got.1,
            if leaked { "sent" } else { "not sent" }
        ),
        got.0 == 200 && !leaked,
    );
    w.echo.clear();
    let crlf = k.ec.token(&claims_with(json!({"sub": "alice\r\nx-evil: 1"})));
    let got = w.token(&crlf);
    let injected = w
        .echo
        .requests()
        .iter()
        .any(|r| r.header("x-evil").is_some() || r.header("x-jwt-sub").is_some());
    t.row(
        "CRLF header injection in the sub claim",
        "200, no x-evil, no x-jwt-sub".into(),
        format!("{} {}, {}", got.0, got.1, if injected { "injected" } else { "none" }),
        got.0 == 200 && !injected,
    );
    w.alive(&mut t, "control characters in claims");

    // Many credentials.
    let auth = format!("Bearer {}", w.valid);
    let same: Vec<(&str, &str)> = (0..40).map(|_| ("authorization", auth.as_str())).collect();
    case(
        &mut t,
        "40 Authorization headers, same valid token",
        (400, "token_ambiguous"),
        w.get("hg", &same),
    );
    let junk: Vec<String> = (0..40).map(|i| format!("Bearer junk{i}")).collect();
    let junk_h: Vec<(&str, &str)> = junk.iter().map(|v| ("authorization", v.as_str())).collect();
    case(
        &mut t,
        "40 Authorization headers, all different",
        (400, "token_ambiguous"),
        w.get("hg", &junk_h),
    );
    case(
        &mut t,
        "one folded header with two tokens",
        (400, "token_ambiguous"),
        w.get("hg", &[("authorization", &format!("{auth}, {auth}"))]),
    );
    case(
        &mut t,
        "Bearer header and session cookie",
        (400, "token_ambiguous"),
        w.get(
            "hg",
            &[("authorization", &auth), ("cookie", &format!("session={}", w.valid))],
        ),
    );
    let others: Vec<String> = (0..80).map(|i| format!("v{i}")).collect();
    let mut many: Vec<(String, &str)> = others
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("x-h{i}"), v.as_str()))
        .collect();
    many.push(("authorization".into(), &auth));
    let many_h: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    case(
        &mut t,
        "80 other headers and a valid token",
        (200, "allowed"),
        w.get("hg", &many_h),
    );

    // Structure.
    case(
        &mut t,
        "JWE (five segments)",
        (401, "token_malformed"),
        w.token("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
    );
    case(
        &mut t,
        "crit header",
        (401, "crit_unsupported"),
        w.token(
            &k.ec
                .sign(&json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"]}), &claims()),
        ),
    );
    case(
        &mut t,
        "typ dpop+jwt as an access token",
        (401, "typ_not_accepted"),
        w.token(
            &k.ec
                .sign(&json!({"alg": "ES256", "kid": "ec-1", "typ": "dpop+jwt"}), &claims()),
        ),
    );
    case(
        &mut t,
        "exp as a string",
        (401, "claim_invalid"),
        w.token(&k.ec.token(&claims_with(json!({"exp": "9999999999"})))),
    );
    case(
        &mut t,
        "iss as an array",
        (401, "claim_invalid"),
        w.token(&k.ec.token(&claims_with(json!({"iss": [ISS]})))),
    );
    case(
        &mut t,
        "padding in base64url",
        (401, "token_malformed"),
        w.token(&format!("{}=", w.valid)),
    );
    t.finish();
}

#[test]
fn algorithm_confusion_and_key_selection() {
    let w = world();
    let k = &w.k;
    let attacker_site = Upstream::start();
    let evil = format!("http://127.0.0.1:{}", attacker_site.port());
    let mut t = Table::new("algorithm confusion");
    let case = |t: &mut Table, name: &str, expected: (u16, &str), got: (u16, String)| {
        t.check(name, expected, got);
        w.alive(t, name);
    };
    let c = claims();
    let rsa_jwk = k.rsa.jwk();
    let n = b64::decode(rsa_jwk["n"].as_str().unwrap()).unwrap();
    let e = b64::decode(rsa_jwk["e"].as_str().unwrap()).unwrap();
    let pem = {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let pk = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e)).unwrap();
        pk.to_public_key_pem(LineEnding::LF).unwrap()
    };
    let hs_header = json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"});
    case(
        &mut t,
        "HS256 keyed with the RSA modulus, kid of the RSA key",
        (401, "alg_not_allowed"),
        w.token(&hs256(&n, &hs_header, &c)),
    );
    case(
        &mut t,
        "HS256 keyed with the RSA public key PEM",
        (401, "alg_not_allowed"),
        w.token(&hs256(pem.as_bytes(), &hs_header, &c)),
    );
    case(
        &mut t,
        "HS256 keyed with the RSA JWK JSON",
        (401, "alg_not_allowed"),
        w.token(&hs256(rsa_jwk.to_string().as_bytes(), &hs_header, &c)),
    );
    case(
        &mut t,
        "HS512 keyed with the EC JWK x coordinate",
        (401, "alg_not_allowed"),
        w.token(&hs256(
            k.ec.jwk()["x"].as_str().unwrap().as_bytes(),
            &json!({"alg": "HS512", "kid": "ec-1"}),
            &c,
        )),
    );
    case(
        &mut t,
        "ES256 token naming the RSA key's kid",
        (401, "key_not_found"),
        w.token(&k.ec.sign(&json!({"alg": "ES256", "kid": "rsa-1"}), &c)),
    );
    case(
        &mut t,
        "RS256 header over an ES256 signature (kid ec-1)",
        (401, "key_not_found"),
        w.token(&k.ec.sign(&json!({"alg": "RS256", "kid": "ec-1"}), &c)),
    );
    case(
        &mut t,
        "PS256 header, RS256 signature (key pinned to RS256)",
        (401, "alg_not_allowed"),
        w.token(&k.rsa.sign(&json!({"alg": "PS256", "kid": "rsa-1"}), &c)),
    );
    case(
        &mut t,
        "EdDSA token naming the EC key's kid",
        (401, "key_not_found"),
        w.token(&k.ed.sign(&json!({"alg": "EdDSA", "kid": "ec-1"}), &c)),
    );
    case(
        &mut t,
        "ES384 header over an ES256 signature",
        (401, "alg_not_allowed"),
        w.token(&k.ec.sign(&json!({"alg": "ES384", "kid": "ec-1"}), &c)),
    );
    let input = format!(
        "{}.{}",
        b64::encode(br#"{"alg":"ES256","kid":"ec-1"}"#),
        b64::encode(c.to_string().as_bytes())
    );
    let der_sig = der(&k.ec.sign_bytes(input.as_bytes()));
    case(
        &mut t,
        "ES256 signature in DER instead of r||s",
        (401, "signature_invalid"),
        w.token(&format!("{input}.{}", b64::encode(&der_sig))),
    );
    case(
        &mut t,
        "alg none, empty signature",
        (401, "alg_none"),
        w.token(&mint::raw(r#"{"alg":"none"}"#, &c.to_string(), b"")),
    );
    case(
        &mut t,
        "alg NONE",
        (401, "alg_unsupported"),
        w.token(&mint::raw(r#"{"alg":"NONE"}"#, &c.to_string(), b"")),
    );
    let none_with_sig = {
        let input = format!(
            "{}.{}",
            b64::encode(br#"{"alg":"none","kid":"ec-1"}"#),
            b64::encode(c.to_string().as_bytes())
        );
        format!("{input}.{}", b64::encode(&k.ec.sign_bytes(input.as_bytes())))
    };
    case(
        &mut t,
        "alg none with a valid ES256 signature",
        (401, "alg_none"),
        w.token(&none_with_sig),
    );
    case(
        &mut t,
        "alg as an array",
        (401, "token_malformed"),
        w.token(&k.ec.sign(&json!({"alg": ["ES256"], "kid": "ec-1"}), &c)),
    );
    let embedded = json!({"alg": "ES256", "kid": "ec-1", "jwk": public_jwk(&k.attacker)});
    case(
        &mut t,
        "attacker's key in the jwk header, kid ec-1",
        (401, "signature_invalid"),
        w.token(&k.attacker.sign(&embedded, &c)),
    );
    let embedded_nokid = json!({"alg": "ES256", "jwk": public_jwk(&k.attacker)});
    case(
        &mut t,
        "attacker's key in the jwk header, no kid",
        (401, "signature_invalid"),
        w.token(&k.attacker.sign(&embedded_nokid, &c)),
    );
    let jku = json!({"alg": "ES256", "kid": "ec-1", "jku": format!("{evil}/jwks.json")});
    case(
        &mut t,
        "jku pointing at the attacker's JWKS",
        (401, "signature_invalid"),
        w.token(&k.attacker.sign(&jku, &c)),
    );
    let x5u = json!({"alg": "ES256", "kid": "ec-1", "x5u": format!("{evil}/cert.pem"), "x5c": ["MIIBIjAN"]});
    case(
        &mut t,
        "x5u/x5c pointing at the attacker's certificate",
        (401, "signature_invalid"),
        w.token(&k.attacker.sign(&x5u, &c)),
    );
    case(
        &mut t,
        "attacker's key, unknown kid",
        (401, "key_not_found"),
        w.token(&k.attacker.token(&c)),
    );
    let fetched = attacker_site.count();
    t.row(
        "requests hopguard sent to jku/x5u URLs",
        "0".into(),
        fetched.to_string(),
        fetched == 0,
    );

    // kid injection: signed by the real key, only the kid is hostile.
    let long_kid = "k".repeat(1500);
    for kid in [
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "ec-1'; DROP TABLE keys;--",
        "ec-1\u{0}",
        "${jndi:ldap://127.0.0.1/a}",
        "*",
        "",
        "EC-1",
        "ec-1 ",
        long_kid.as_str(),
    ] {
        let shown = if kid.len() > 40 {
            format!("{}... ({} bytes)", &kid[..12], kid.len())
        } else {
            format!("{kid:?}")
        };
        case(
            &mut t,
            &format!("kid {shown}"),
            (401, "key_not_found"),
            w.token(&k.ec.sign(&json!({"alg": "ES256", "kid": kid}), &c)),
        );
    }
    t.finish();
}

#[test]
fn dpop_proofs_with_mismatched_keys() {
    let w = world();
    let k = &w.k;
    let port = w.port();
    let mut t = Table::new("DPoP");
    let case = |t: &mut Table, name: &str, expected: (u16, &str), got: (u16, String)| {
        t.check(name, expected, got);
        w.alive(t, name);
    };
    let bound = k.ec.token(&claims_with(json!({"cnf": {"jkt": jkt(&k.client)}})));
    let dpop = |p: &str| w.get("hg", &[("authorization", &format!("DPoP {bound}")), ("dpop", p)]);
    let good = |jti: &str| proof(&k.client, &k.client, port, "/orders", &bound, jti, "ES256");
    case(
        &mut t,
        "proof by the bound key (control)",
        (200, "allowed"),
        dpop(&good("p-ok")),
    );
    case(
        &mut t,
        "proof by another key (stolen token)",
        (401, "dpop_key_mismatch"),
        dpop(&proof(&k.thief, &k.thief, port, "/orders", &bound, "p-thief", "ES256")),
    );
    case(
        &mut t,
        "proof signed by another key than its jwk",
        (401, "dpop_proof_invalid"),
        dpop(&proof(
            &k.thief, &k.client, port, "/orders", &bound, "p-forged", "ES256",
        )),
    );
    case(
        &mut t,
        "proof for another URL",
        (401, "dpop_proof_invalid"),
        dpop(&proof(&k.client, &k.client, port, "/admin", &bound, "p-url", "ES256")),
    );
    case(
        &mut t,
        "proof with alg HS256",
        (401, "dpop_proof_invalid"),
        dpop(&proof(&k.client, &k.client, port, "/orders", &bound, "p-hs", "HS256")),
    );
    let mut private = public_jwk(&k.client);
    private["d"] = json!("AAAA");
    let with_d = k.client.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
        &json!({"jti": "p-d", "htm": "GET", "htu": format!("http://127.0.0.1:{port}/orders"), "iat": mint::now(), "ath": ath(&bound)}),
    );
    case(
        &mut t,
        "proof whose jwk carries a private key",
        (401, "dpop_proof_invalid"),
        dpop(&with_d),
    );
    let other_token =
        k.ec.token(&claims_with(json!({"cnf": {"jkt": jkt(&k.client)}, "jti": "other"})));
    case(
        &mut t,
        "proof bound to another access token (ath)",
        (401, "dpop_proof_invalid"),
        dpop(&proof(
            &k.client,
            &k.client,
            port,
            "/orders",
            &other_token,
            "p-ath",
            "ES256",
        )),
    );
    case(
        &mut t,
        "bound token without a proof",
        (401, "dpop_proof_missing"),
        w.get("hg", &[("authorization", &format!("DPoP {bound}"))]),
    );
    case(
        &mut t,
        "bound token sent as Bearer",
        (401, "dpop_token_as_bearer"),
        w.get(
            "hg",
            &[
                ("authorization", &format!("Bearer {bound}")),
                ("dpop", &good("p-bearer")),
            ],
        ),
    );
    let (a, b) = (good("p-two-a"), good("p-two-b"));
    case(
        &mut t,
        "two DPoP headers",
        (401, "dpop_proof_invalid"),
        w.get(
            "hg",
            &[("authorization", &format!("DPoP {bound}")), ("dpop", &a), ("dpop", &b)],
        ),
    );
    let replayed = good("p-replay");
    let headers = vec![
        ("authorization".to_owned(), format!("DPoP {bound}")),
        ("dpop".to_owned(), replayed),
    ];
    let got = same_connection(port, &[headers.clone(), headers]);
    t.check("same proof twice (same worker)", (200, "allowed"), got[0].clone());
    case(
        &mut t,
        "same proof twice: the replay",
        (401, "dpop_replayed"),
        got[1].clone(),
    );
    t.finish();
}

/// Finding (found by tests/e2e_fail_closed.rs, fixed in af8c3b2): a DPoP request that had to
/// wait (for the first keys, the first revocation list, or an unknown-`kid` refetch) was refused
/// as a replay. When the wait ended, the shell decided again with `may_wait`; that decision ran
/// the DPoP check, which recorded the proof's `jti` in the replay cache, and was discarded when
/// it was final: the request was decided once more, and the DPoP check found its own `jti`
/// (401 `dpop_replayed` for a legitimate first use).
#[test]
fn a_dpop_request_that_waited_for_keys_is_not_refused_as_a_replay() {
    let good = Signer::new("ES256", "dpop-wait");
    let client = Signer::new("ES256", "dpop-wait-client");
    let idp = Idp::start(&mint::jwks(&[&good]));
    let echo = Upstream::start();
    let cfg = json!({
        "providers": [{"issuer": REMOTE_ISS, "audiences": ["orders"], "jwksUri": format!("{REMOTE_ISS}/jwks"),
                       "cluster": "idp", "keyWaitMs": 3000,
                       "fromHeaders": [{"name": "authorization", "prefix": "DPoP "}]}],
        "authorization": {"dpop": {"mode": "ifBound"}}
    });
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))];
    let clusters = vec![
        cluster_yaml("upstream", echo.port()),
        cluster_yaml("idp", idp.server.port()),
    ];
    let envoy = Envoy::start_with(
        &bootstrap_yaml_with_clusters(&listeners, &clusters),
        &EnvoyOptions::new(1),
    );
    let port = envoy.port("hg");
    let mut c = mint::claims(REMOTE_ISS, "orders", "alice", mint::now());
    c["cnf"] = json!({"jkt": jkt(&client)});
    let token = good.token(&c);
    // The very first request: no keys yet, so it waits for the first fetch.
    let first = proof(&client, &client, port, "/orders", &token, "first-use", "ES256");
    let r = http::request(
        port,
        "GET",
        "/orders",
        &[("authorization", &format!("DPoP {token}")), ("dpop", &first)],
    );
    assert_eq!(
        outcome(&r),
        (200, "allowed".to_owned()),
        "a DPoP proof used once, by a request that waited for the keys, was refused"
    );
    // Control: once the keys are there, a fresh proof passes without waiting.
    let second = proof(&client, &client, port, "/orders", &token, "second-use", "ES256");
    let r = http::request(
        port,
        "GET",
        "/orders",
        &[("authorization", &format!("DPoP {token}")), ("dpop", &second)],
    );
    assert_eq!(outcome(&r), (200, "allowed".to_owned()));
}

#[test]
fn oversized_inline_key_sets_are_refused_at_startup() {
    let mut t = Table::new("inline key sets");
    let echo = Upstream::start();
    let start = |jwks: Value| {
        let cfg = json!({"providers": [{"issuer": ISS, "jwks": jwks}]});
        let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))];
        Envoy::try_start(
            &bootstrap_yaml_with_clusters(&listeners, &[cluster_yaml("upstream", echo.port())]),
            1,
        )
    };
    let ec = Signer::new("ES256", "many");
    let thousands: Vec<Value> = (0..3000)
        .map(|i| {
            let mut j = ec.jwk();
            j["kid"] = json!(format!("k{i}"));
            j
        })
        .collect();
    let huge_n = json!({"kty": "RSA", "kid": "huge", "n": b64::encode(&[0xc7; 2048]), "e": "AQAB"});
    for (name, jwks, path) in [
        (
            "inline JWKS with 3000 keys",
            json!({ "keys": thousands }),
            "$.providers[0].jwks.keys: 3000 keys",
        ),
        (
            "inline JWKS with a 16384-bit modulus",
            json!({"keys": [huge_n]}),
            "$.providers[0].jwks.keys[0].n",
        ),
    ] {
        match start(jwks) {
            Ok(envoy) => {
                let r = http::request(envoy.port("hg"), "GET", "/", &[]);
                t.row(
                    name,
                    "Envoy refuses to start".into(),
                    format!("started; GET answered {}", r.status),
                    false,
                );
            }
            Err(logs) => {
                let named = logs.contains(&format!("configuration refused: {path}"));
                let line = logs
                    .lines()
                    .find(|l| l.contains("configuration refused"))
                    .map(|l| {
                        l.split("configuration refused: ")
                            .nth(1)
                            .unwrap_or(l)
                            .chars()
                            .take(90)
                            .collect::<String>()
                    })
                    .unwrap_or_else(|| "no refusal line".into());
                t.row(
                    name,
                    format!("refused to start, log names `{path}`"),
                    format!("refused to start: `{line}`"),
                    named,
                );
            }
        }
    }
    assert_eq!(echo.count(), 0);
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// A hostile identity provider and revocation service
// ---------------------------------------------------------------------------------------------

/// Serves `/jwks` and `/revocation` from bodies the test swaps, counting fetches.
struct Idp {
    server: Upstream,
    jwks: Arc<Mutex<Vec<u8>>>,
    revocation: Arc<Mutex<(Vec<u8>, u64)>>,
    jwks_fetches: Arc<AtomicUsize>,
    revocation_fetches: Arc<AtomicUsize>,
}

impl Idp {
    fn start(jwks: &Value) -> Idp {
        let body = Arc::new(Mutex::new(jwks.to_string().into_bytes()));
        let revocation = Arc::new(Mutex::new((br#"{"jtis":[]}"#.to_vec(), 1u64)));
        let (jf, rf) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (b2, r2, jf2, rf2) = (body.clone(), revocation.clone(), jf.clone(), rf.clone());
        let server = Upstream::start_with(move |req| match req.path.as_str() {
            "/jwks" => {
                jf2.fetch_add(1, Ordering::SeqCst);
                Reply::new(200, "application/json", b2.lock().unwrap().clone())
            }
            "/revocation" => {
                rf2.fetch_add(1, Ordering::SeqCst);
                let (body, version) = r2.lock().unwrap().clone();
                let etag = format!("\"v{version}\"");
                if req.header("if-none-match") == Some(etag.as_str()) {
                    return Reply::new(304, "application/json", "").header("etag", &etag);
                }
                Reply::new(200, "application/json", body).header("etag", &etag)
            }
            _ => Reply::new(404, "text/plain", "not found"),
        });
        Idp {
            server,
            jwks: body,
            revocation,
            jwks_fetches: jf,
            revocation_fetches: rf,
        }
    }

    /// Serves `body` as the JWKS and waits until Envoy fetched it twice.
    fn serve_jwks(&self, body: Vec<u8>) {
        *self.jwks.lock().unwrap() = body;
        let before = self.jwks_fetches.load(Ordering::SeqCst);
        assert!(
            support::wait_until(Duration::from_secs(10), || self.jwks_fetches.load(Ordering::SeqCst)
                >= before + 2),
            "Envoy did not refetch the JWKS"
        );
    }

    /// Serves `body` as the revocation list (new ETag) and waits until Envoy fetched it twice.
    fn serve_revocation(&self, body: Vec<u8>) {
        {
            let mut r = self.revocation.lock().unwrap();
            r.0 = body;
            r.1 += 1;
        }
        let before = self.revocation_fetches.load(Ordering::SeqCst);
        assert!(
            support::wait_until(Duration::from_secs(10), || self
                .revocation_fetches
                .load(Ordering::SeqCst)
                >= before + 2),
            "Envoy did not poll the revocation list"
        );
    }
}

fn remote_envoy(idp: &Idp, echo: &Upstream) -> Envoy {
    let cfg = json!({
        "providers": [{"issuer": REMOTE_ISS, "audiences": ["orders"], "jwksUri": format!("{REMOTE_ISS}/jwks"),
                       "cluster": "idp", "cacheDurationSeconds": 1, "fetchTimeoutMs": 2000, "keyWaitMs": 3000,
                       "unknownKidRefetchSeconds": 1}],
        "revocation": {"uri": format!("{REMOTE_ISS}/revocation"), "cluster": "idp", "pollIntervalSeconds": 1,
                       "fetchTimeoutMs": 2000, "onFailure": "keepLastGood"}
    });
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))];
    let clusters = vec![
        cluster_yaml("upstream", echo.port()),
        cluster_yaml("idp", idp.server.port()),
    ];
    Envoy::start_with(
        &bootstrap_yaml_with_clusters(&listeners, &clusters),
        &EnvoyOptions::new(2),
    )
}

#[test]
fn hostile_key_sets_and_revocation_lists_from_the_network() {
    let good = Signer::new("ES256", "remote-1");
    let idp = Idp::start(&mint::jwks(&[&good]));
    let echo = Upstream::start();
    let envoy = remote_envoy(&idp, &echo);
    let mut t = Table::new("remote key sets and revocation lists");
    let remote_claims = |jti: &str| {
        let mut c = mint::claims(REMOTE_ISS, "orders", "alice", mint::now());
        c["jti"] = json!(jti);
        c
    };
    let valid = good.token(&remote_claims("keep"));
    let revoked = good.token(&remote_claims("gone"));
    let call = |tok: &str| outcome(&bearer(&envoy, "hg", tok));
    t.check("good key set (control)", (200, "allowed"), call(&valid));
    idp.serve_revocation(br#"{"jtis":["gone"]}"#.to_vec());
    t.check(
        "revoked by the remote list (control)",
        (401, "token_revoked"),
        call(&revoked),
    );

    // Key sets: every bad one is refused whole; the last good keys keep serving.
    let ec = good.jwk();
    let thousands: Vec<Value> = (0..3000)
        .map(|i| {
            let mut j = ec.clone();
            j["kid"] = json!(format!("k{i}"));
            j
        })
        .collect();
    let huge_n = json!({"keys": [{"kty": "RSA", "kid": "huge", "n": b64::encode(&[0xc7; 2048]), "e": "AQAB"}]});
    let attacker = Signer::new("ES256", "remote-1-attacker");
    let mut swapped = attacker.jwk();
    swapped["kid"] = json!("remote-1");
    let bad_sets: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "JWKS with 3000 keys",
            json!({ "keys": thousands }).to_string().into_bytes(),
            "3000 keys; at most 256",
        ),
        (
            "JWKS whose only key has a 16384-bit modulus",
            huge_n.to_string().into_bytes(),
            "no usable verification key",
        ),
        (
            "JWKS of 3 MB",
            format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(3 << 20)).into_bytes(),
            "larger than",
        ),
        (
            "JWKS with duplicate keys members",
            format!("{{\"keys\":[{ec}],\"keys\":[]}}").into_bytes(),
            "duplicate member name",
        ),
        (
            "JWKS nested 10000 deep",
            format!("{{\"keys\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "not valid JSON",
        ),
        (
            "JWKS that is not JSON",
            b"<html>login</html>".to_vec(),
            "not valid JSON",
        ),
    ];
    for (name, body, log) in bad_sets {
        let before = envoy.logs().len();
        idp.serve_jwks(body);
        let logged = envoy.logs()[before..].contains(log);
        let got = call(&valid);
        t.row(
            &format!("{name}: refused, last good keys kept"),
            format!("200 allowed, log `{log}`"),
            format!("{} {}, log {}", got.0, got.1, if logged { "found" } else { "missing" }),
            got == (200, "allowed".to_owned()) && logged,
        );
    }
    // A set that only swaps the key behind a known kid is a good set (the IdP decides): the old
    // key's tokens then fail. Put the good key back.
    idp.serve_jwks(json!({"keys": [swapped]}).to_string().into_bytes());
    t.check(
        "kid re-bound to another key by the IdP: old tokens",
        (401, "signature_invalid"),
        call(&valid),
    );
    idp.serve_jwks(mint::jwks(&[&good]).to_string().into_bytes());
    t.check("good set back", (200, "allowed"), call(&valid));

    // Revocation lists: bad ones are refused whole; the last good list keeps applying.
    let too_many: Vec<String> = (0..100_001).map(|i| format!("j{i}")).collect();
    let bad_lists: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "list of 100001 entries (limit 100000)",
            json!({ "jtis": too_many }).to_string().into_bytes(),
            "at most 100000",
        ),
        (
            "list of 2 MB",
            format!("{{\"jtis\":[\"{}\"]}}", "x".repeat(2 << 20)).into_bytes(),
            "larger than",
        ),
        ("list that is not JSON", b"{\"jtis\": [".to_vec(), "not valid JSON"),
        (
            "list with a non-string entry",
            br#"{"jtis":["gone",7]}"#.to_vec(),
            "must be",
        ),
        (
            "list with an unknown member",
            br#"{"jtis":[],"revokeAll":true}"#.to_vec(),
            "unknown field",
        ),
    ];
    for (name, body, log) in bad_lists {
        let before = envoy.logs().len();
        idp.serve_revocation(body);
        let logged = envoy.logs()[before..].contains(log);
        let (still_revoked, still_valid) = (call(&revoked), call(&valid));
        t.row(
            &format!("{name}: refused, last good list kept"),
            format!("401 token_revoked / 200 allowed, log `{log}`"),
            format!(
                "{} {} / {} {}, log {}",
                still_revoked.0,
                still_revoked.1,
                still_valid.0,
                still_valid.1,
                if logged { "found" } else { "missing" }
            ),
            still_revoked.1 == "token_revoked" && still_valid.0 == 200 && logged,
        );
    }
    let mut large: Vec<String> = (0..50_000).map(|i| format!("j{i}")).collect();
    large.push("keep".into());
    idp.serve_revocation(json!({ "jtis": large }).to_string().into_bytes());
    t.check(
        "list of 50001 entries (legal): applied",
        (401, "token_revoked"),
        call(&valid),
    );
    t.check(
        "list of 50001 entries: others pass",
        (200, "allowed"),
        call(&good.token(&remote_claims("fresh"))),
    );

    if let Err(line) = healthy_log(&envoy) {
        t.row("Envoy log", "no panic".into(), line, false);
    }
    t.finish();
}

#[test]
fn an_unknown_kid_flood_is_one_fetch_per_window() {
    let good = Signer::new("ES256", "flood-1");
    let idp = Idp::start(&mint::jwks(&[&good]));
    let echo = Upstream::start();
    let envoy = remote_envoy(&idp, &echo);
    let mut t = Table::new("unknown kid flood");
    let valid = good.token(&mint::claims(REMOTE_ISS, "orders", "a", mint::now()));
    t.check(
        "valid (control)",
        (200, "allowed"),
        outcome(&bearer(&envoy, "hg", &valid)),
    );
    let attacker = Signer::new("ES256", "flood-attacker");
    let port = envoy.port("hg");
    let before = idp.jwks_fetches.load(Ordering::SeqCst);
    let started = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let tokens: Vec<String> = (0..25)
                .map(|i| {
                    attacker.sign(
                        &json!({"alg": "ES256", "kid": format!("forged-{w}-{i}")}),
                        &mint::claims(REMOTE_ISS, "orders", "m", mint::now()),
                    )
                })
                .collect();
            std::thread::spawn(move || {
                tokens
                    .iter()
                    .map(|t| {
                        outcome(&http::request(
                            port,
                            "GET",
                            "/",
                            &[("authorization", &format!("Bearer {t}"))],
                        ))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<(u16, String)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let secs = started.elapsed().as_secs_f64();
    let fetches = idp.jwks_fetches.load(Ordering::SeqCst) - before;
    let all_refused = results.iter().all(|r| *r == (401, "key_not_found".to_owned()));
    t.row(
        "100 tokens with distinct unknown kids, 4 clients",
        "all 401 key_not_found".into(),
        format!(
            "{} of {} 401 key_not_found",
            results.iter().filter(|r| r.1 == "key_not_found").count(),
            results.len()
        ),
        all_refused,
    );
    // unknownKidRefetchSeconds 1 plus the 1 s periodic refresh: at most about two per second.
    let limit = (2.0 * secs).ceil() as usize + 2;
    t.row(
        "JWKS fetches caused",
        format!("<= {limit} in {secs:.1} s"),
        fetches.to_string(),
        fetches <= limit,
    );
    t.check(
        "valid after the flood",
        (200, "allowed"),
        outcome(&bearer(&envoy, "hg", &valid)),
    );
    if let Err(line) = healthy_log(&envoy) {
        t.row("Envoy log", "no panic".into(), line, false);
    }
    t.finish();
}
