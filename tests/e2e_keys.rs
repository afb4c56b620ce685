//! Remote keys and revocation against real Envoy 1.40 (two workers) and a scriptable
//! test identity provider on loopback: discovery, JWKS and a revocation list; it
//! rotates keys, goes down, answers slowly, returns garbage or an empty set on command,
//! and counts every fetch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::envoy::{bootstrap_yaml_with_clusters, cluster_yaml, hopguard_filter_yaml, Envoy, EnvoyOptions, Listener};
use support::http;
use support::mint::{self, Signer};
use support::upstream::{Reply, Upstream};

const ISS: &str = "http://idp.test";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Up,
    Down,
    Garbage,
    Empty,
}

struct IdpState {
    mode: Mode,
    keys: Vec<Value>,
    discovery_issuer: String,
    revoked_jtis: Vec<String>,
    revocation_version: u64,
}

/// The test identity provider.
struct Idp {
    server: Upstream,
    state: Arc<Mutex<IdpState>>,
    jwks_fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
    revocation_fetches: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
}

impl Idp {
    fn start(keys: Vec<Value>) -> Idp {
        let state = Arc::new(Mutex::new(IdpState {
            mode: Mode::Up,
            keys,
            discovery_issuer: ISS.into(),
            revoked_jtis: Vec::new(),
            revocation_version: 1,
        }));
        let (j, d, r, nm) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s2, j2, d2, r2, nm2) = (state.clone(), j.clone(), d.clone(), r.clone(), nm.clone());
        let server = Upstream::start_with(move |req| {
            let st = s2.lock().unwrap();
            match req.path.as_str() {
                "/.well-known/openid-configuration" => {
                    d2.fetch_add(1, Ordering::SeqCst);
                    if st.mode == Mode::Down {
                        return Reply::new(503, "text/plain", "down");
                    }
                    Reply::json(
                        200,
                        &json!({"issuer": st.discovery_issuer, "jwks_uri": format!("{ISS}/jwks")}),
                    )
                }
                "/jwks" => {
                    j2.fetch_add(1, Ordering::SeqCst);
                    match st.mode {
                        Mode::Down => Reply::new(503, "text/plain", "down"),
                        Mode::Garbage => Reply::new(200, "application/json", "{\"keys\": [garbage"),
                        Mode::Empty => Reply::json(200, &json!({"keys": []})),
                        Mode::Up => Reply::json(200, &json!({"keys": st.keys})),
                    }
                }
                "/revocation" => {
                    r2.fetch_add(1, Ordering::SeqCst);
                    if st.mode == Mode::Down {
                        return Reply::new(503, "text/plain", "down");
                    }
                    let etag = format!("\"v{}\"", st.revocation_version);
                    if req.header("if-none-match") == Some(etag.as_str()) {
                        nm2.fetch_add(1, Ordering::SeqCst);
                        return Reply::new(304, "application/json", "").header("etag", &etag);
                    }
                    Reply::json(200, &json!({"jtis": st.revoked_jtis})).header("etag", &etag)
                }
                _ => Reply::new(404, "text/plain", "not found"),
            }
        });
        Idp {
            server,
            state,
            jwks_fetches: j,
            discovery_fetches: d,
            revocation_fetches: r,
            not_modified: nm,
        }
    }
    fn set(&self, f: impl FnOnce(&mut IdpState)) {
        f(&mut self.state.lock().unwrap());
    }
    fn jwks(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

fn provider(extra: Value) -> Value {
    let mut p = json!({
        "issuer": ISS,
        "audiences": ["orders"],
        "jwksUri": format!("{ISS}/jwks"),
        "cluster": "idp",
        "fetchTimeoutMs": 500,
        "keyWaitMs": 2000,
        "unknownKidRefetchSeconds": 3
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v.clone();
        }
    }
    p
}

fn envoy_for(idp: &Idp, echo: &Upstream, config: Value, concurrency: u32) -> Envoy {
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&config.to_string()))];
    let clusters = vec![
        cluster_yaml("upstream", echo.port()),
        cluster_yaml("idp", idp.server.port()),
    ];
    let yaml = bootstrap_yaml_with_clusters(&listeners, &clusters);
    Envoy::start_with(&yaml, &EnvoyOptions::new(concurrency))
}

fn claims(sub: &str) -> Value {
    mint::claims(ISS, "orders", sub, mint::now())
}

fn call(envoy: &Envoy, token: &str) -> http::Response {
    http::request(
        envoy.port("hg"),
        "GET",
        "/orders",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn reason(r: &http::Response) -> String {
    if r.status == 200 {
        return "allowed".into();
    }
    r.json()["reason"].as_str().unwrap_or("?").to_owned()
}

#[test]
fn first_requests_wait_for_keys_and_two_workers_fetch_once_per_refresh() {
    let k1 = Signer::new("ES256", "k1");
    let idp = Idp::start(vec![k1.jwk()]);
    let echo = Upstream::start();
    let cfg = json!({"providers": [provider(json!({"cacheDurationSeconds": 1}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    // The very first request may arrive before any keys: it waits, then passes.
    let t = k1.token(&claims("alice"));
    assert_eq!(reason(&call(&envoy, &t)), "allowed");
    let start = Instant::now();
    let before = idp.jwks();
    let mut ok = 0;
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(reason(&call(&envoy, &t)), "allowed");
        ok += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let fetched = idp.jwks() - before;
    let secs = start.elapsed().as_secs_f64();
    // Refresh every second: one fetch per second for the whole process, not one per
    // worker (2 workers + the main thread would triple it).
    assert!(
        fetched as f64 <= secs + 2.0,
        "{fetched} fetches in {secs:.1}s: more than one per refresh"
    );
    assert!(
        fetched >= 3,
        "{fetched} fetches in {secs:.1}s: refresh is not happening"
    );
    assert!(ok > 20);
}

#[test]
fn key_rotation_under_continuous_traffic_has_no_wrongful_refusals() {
    let k1 = Signer::new("RS256", "rot-1");
    let k2 = Signer::new("RS256", "rot-2");
    let idp = Idp::start(vec![k1.jwk()]);
    let echo = Upstream::start();
    let cfg = json!({"providers": [provider(json!({"cacheDurationSeconds": 600, "unknownKidRefetchSeconds": 1}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    let t1 = k1.token(&claims("alice"));
    let t2 = k2.token(&claims("alice"));
    let mut counts = std::collections::BTreeMap::new();
    let mut tally = |phase: &str, r: &http::Response| {
        *counts.entry(format!("{phase}:{}", reason(r))).or_insert(0) += 1;
        assert!(r.status < 500, "{phase}: 5xx {r:?}");
    };
    // Phase 1: only k1 is published, tokens signed by k1.
    for _ in 0..30 {
        tally("k1", &call(&envoy, &t1));
    }
    // Phase 2: the IdP publishes k2 next to k1, and k2 tokens arrive at once (before any
    // periodic refresh): the unknown kid triggers a refetch while the request waits.
    idp.set(|s| s.keys = vec![k1.jwk(), k2.jwk()]);
    for i in 0..60 {
        let t = if i % 2 == 0 { &t1 } else { &t2 };
        tally("both", &call(&envoy, t));
    }
    // Phase 3: k1 retired; only k2 tokens are issued now.
    idp.set(|s| s.keys = vec![k2.jwk()]);
    for _ in 0..30 {
        tally("k2", &call(&envoy, &t2));
    }
    let wrongful: i32 = counts
        .iter()
        .filter(|(k, _)| !k.ends_with(":allowed"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(wrongful, 0, "refusals during rotation: {counts:?}");
    assert_eq!(counts.values().sum::<i32>(), 120);
}

#[test]
fn idp_down_at_start_gives_503_after_the_wait_then_recovers() {
    let k1 = Signer::new("EdDSA", "down-1");
    let idp = Idp::start(vec![k1.jwk()]);
    idp.set(|s| s.mode = Mode::Down);
    let echo = Upstream::start();
    let cfg = json!({"providers": [provider(json!({"keyWaitMs": 1500}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    let t = k1.token(&claims("alice"));
    let started = Instant::now();
    let r = call(&envoy, &t);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(reason(&r), "keys_unavailable");
    assert!(r.header("www-authenticate").is_none(), "not an invalid_token");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "the request waited for the keys"
    );
    assert!(envoy.wait_for_log("fetch failed: HTTP status 503", Duration::from_secs(5)));
    // The IdP comes up: the next request waits for the retry and passes.
    idp.set(|s| s.mode = Mode::Up);
    let mut passed = false;
    for _ in 0..10 {
        if call(&envoy, &t).status == 200 {
            passed = true;
            break;
        }
    }
    assert!(passed, "keys never arrived after the IdP came back");
    assert_eq!(echo.count(), echo.requests().len());
}

#[test]
fn idp_failures_after_start_keep_the_last_good_keys() {
    let k1 = Signer::new("ES384", "lg-1");
    let idp = Idp::start(vec![k1.jwk()]);
    let echo = Upstream::start();
    let cfg = json!({"providers": [provider(json!({"cacheDurationSeconds": 1}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    let t = k1.token(&claims("alice"));
    assert_eq!(reason(&call(&envoy, &t)), "allowed");
    for mode in [Mode::Garbage, Mode::Empty, Mode::Down] {
        idp.set(|s| s.mode = mode);
        let before = idp.jwks();
        let deadline = Instant::now() + Duration::from_secs(6);
        while idp.jwks() < before + 2 && Instant::now() < deadline {
            assert_eq!(reason(&call(&envoy, &t)), "allowed", "mode {mode:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(idp.jwks() >= before + 2, "no refetch attempts in mode {mode:?}");
        assert_eq!(reason(&call(&envoy, &t)), "allowed", "mode {mode:?}");
    }
    let logs = envoy.logs();
    assert!(logs.contains("fetch failed: not valid JSON"), "garbage not logged");
    assert!(
        logs.contains("fetch failed: JWKS has no usable verification key"),
        "empty set not logged"
    );
    assert!(logs.contains("fetch failed: HTTP status 503"), "outage not logged");
}

#[test]
fn unknown_kid_triggers_one_refetch_per_window_however_many_requests() {
    let k1 = Signer::new("ES256", "uk-1");
    let idp = Idp::start(vec![k1.jwk()]);
    let echo = Upstream::start();
    let cfg = json!({"providers": [provider(json!({"cacheDurationSeconds": 600, "unknownKidRefetchSeconds": 30}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    assert_eq!(reason(&call(&envoy, &k1.token(&claims("a")))), "allowed");
    let base = idp.jwks();
    let stranger = Signer::new("ES256", "uk-unknown");
    let t = stranger.token(&claims("mallory"));
    let port = envoy.port("hg");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| http::request(port, "GET", "/", &[("authorization", &format!("Bearer {t}"))]))
                    .map(|r| (r.status, r.json()["reason"].as_str().unwrap_or("").to_owned()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<(u16, String)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(results.len(), 40);
    assert!(
        results.iter().all(|(s, r)| *s == 401 && r == "key_not_found"),
        "{results:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(idp.jwks() - base, 1, "exactly one refetch in the rate-limit window");
}

#[test]
fn oidc_discovery_finds_the_jwks_and_checks_the_issuer() {
    let k1 = Signer::new("PS256", "oidc-1");
    let idp = Idp::start(vec![k1.jwk()]);
    let echo = Upstream::start();
    let cfg = json!({"providers": [provider(json!({"jwksUri": null}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    let t = k1.token(&claims("alice"));
    assert_eq!(reason(&call(&envoy, &t)), "allowed");
    assert!(idp.discovery_fetches.load(Ordering::SeqCst) >= 1);
    assert!(idp.jwks() >= 1);
    drop(envoy);

    // A discovery document naming another issuer is refused (OIDC Discovery 4.3).
    let idp = Idp::start(vec![k1.jwk()]);
    idp.set(|s| s.discovery_issuer = "http://evil.test".into());
    let cfg = json!({"providers": [provider(json!({"jwksUri": null, "keyWaitMs": 800}))]});
    let envoy = envoy_for(&idp, &echo, cfg, 1);
    let r = call(&envoy, &t);
    assert_eq!((r.status, reason(&r).as_str()), (503, "keys_unavailable"));
    assert_eq!(idp.jwks(), 0, "no JWKS fetched from an unverified discovery document");
    assert!(envoy.wait_for_log("issuer differs from the configured issuer", Duration::from_secs(3)));
}

#[test]
fn inline_revocation_is_pushed_live_without_a_restart() {
    let k = Signer::new("ES256", "rv-1");
    let echo = Upstream::start();
    let cfg = |revocation: Value| {
        let mut c = json!({"providers": [{"issuer": ISS, "jwks": mint::jwks(&[&k])}]});
        if !revocation.is_null() {
            c["revocation"] = revocation;
        }
        vec![Listener::new("hg").filter(hopguard_filter_yaml(&c.to_string()))]
    };
    let mut envoy = Envoy::start_dynamic(&[cluster_yaml("upstream", echo.port())], &cfg(Value::Null), 2);
    let pid = envoy.pid();
    let alice = k.token(&json!({"iss": ISS, "sub": "alice", "jti": "j-alice", "exp": mint::now() + 600}));
    let bob = k.token(&json!({"iss": ISS, "sub": "bob", "jti": "j-bob", "exp": mint::now() + 600}));
    let carol = k.token(&json!({"iss": ISS, "sub": "carol", "jti": "j-carol", "exp": mint::now() + 600}));
    for t in [&alice, &bob, &carol] {
        assert_eq!(reason(&call(&envoy, t)), "allowed");
    }
    // Revoke alice by jti, bob by sub, carol by the fingerprint her decision records carry.
    let fp = hopguard::telemetry::fingerprint(&carol);
    envoy
        .push_listeners(&cfg(
            json!({"jtis": ["j-alice"], "subjects": ["bob"], "fingerprints": [fp]}),
        ))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reason(&call(&envoy, &alice)) != "token_revoked" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in [&alice, &bob, &carol] {
        let r = call(&envoy, t);
        assert_eq!((r.status, reason(&r).as_str()), (401, "token_revoked"));
        assert!(r.header("www-authenticate").unwrap().contains("invalid_token"));
    }
    assert_eq!(envoy.pid(), pid, "no restart");
    let other = k.token(&json!({"iss": ISS, "sub": "dave", "exp": mint::now() + 600}));
    assert_eq!(reason(&call(&envoy, &other)), "allowed");
    // A bad revocation entry refuses the update whole; the running config keeps working.
    assert!(envoy.push_listeners(&cfg(json!({"fingerprints": ["short"]}))).is_err());
    assert_eq!(reason(&call(&envoy, &alice)), "token_revoked");
}

#[test]
fn remote_revocation_is_polled_with_etags_and_fails_closed_when_configured() {
    let k1 = Signer::new("ES256", "rr-1");
    let idp = Idp::start(vec![k1.jwk()]);
    let echo = Upstream::start();
    let revocation = |on_failure: &str| {
        json!({"uri": format!("{ISS}/revocation"), "cluster": "idp", "pollIntervalSeconds": 1,
               "fetchTimeoutMs": 500, "onFailure": on_failure, "maxStalenessSeconds": 3})
    };
    let cfg = json!({"providers": [provider(json!({}))], "revocation": revocation("failClosed")});
    let envoy = envoy_for(&idp, &echo, cfg, 2);
    let t = k1.token(&json!({"iss": ISS, "aud": "orders", "sub": "alice", "jti": "leaked", "exp": mint::now() + 600}));
    assert_eq!(reason(&call(&envoy, &t)), "allowed");
    // Revoke at the IdP: effective within one poll interval (plus a tick).
    idp.set(|s| {
        s.revoked_jtis = vec!["leaked".into()];
        s.revocation_version = 2;
    });
    let changed_at = Instant::now();
    while reason(&call(&envoy, &t)) != "token_revoked" {
        assert!(
            changed_at.elapsed() < Duration::from_secs(3),
            "not revoked within a poll interval"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        idp.not_modified.load(Ordering::SeqCst) >= 1,
        "polls use If-None-Match and get 304"
    );
    // The list cannot be refreshed any more: fail closed once it is older than 3 s.
    let other = k1.token(&claims("bob"));
    assert_eq!(reason(&call(&envoy, &other)), "allowed");
    idp.set(|s| s.mode = Mode::Down);
    let down_at = Instant::now();
    let mut r = call(&envoy, &other);
    while r.status == 200 && down_at.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(100));
        r = call(&envoy, &other);
    }
    assert_eq!((r.status, reason(&r).as_str()), (503, "revocation_unavailable"));
    drop(envoy);

    // keepLastGood: the same outage keeps the last list and keeps serving.
    idp.set(|s| s.mode = Mode::Up);
    let cfg = json!({"providers": [provider(json!({}))], "revocation": revocation("keepLastGood")});
    let envoy = envoy_for(&idp, &echo, cfg, 1);
    assert_eq!(reason(&call(&envoy, &t)), "token_revoked");
    idp.set(|s| s.mode = Mode::Down);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(reason(&call(&envoy, &other)), "allowed");
    assert_eq!(
        reason(&call(&envoy, &t)),
        "token_revoked",
        "the last good list still applies"
    );
    assert!(idp.revocation_fetches.load(Ordering::SeqCst) >= 3);
}
