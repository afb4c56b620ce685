//! Fail-closed, proven against real Envoy 1.40: a refused configuration (at startup and over
//! LDS), a Wasm VM that cannot load or that fails at runtime (`fail_open: false`), keys older
//! than `maxStalenessSeconds`, a stale revocation list with `failClosed`, and a full DPoP
//! replay cache. Each is shown to refuse traffic (and the upstream to receive nothing it
//! should not), never to let it through.
//!
//! Each test prints its rows (case, expected, got) and writes them to
//! `$CARGO_TARGET_TMPDIR/fail-closed/<test>.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::envoy::{
    bootstrap_yaml, bootstrap_yaml_with_clusters, cluster_yaml, hopguard_filter_yaml, wasm_filter_yaml, Envoy,
    EnvoyOptions, Listener, TempDir,
};
use support::http::{self, Response};
use support::mint::{self, Signer};
use support::upstream::{Reply, Upstream};

const ISS: &str = "http://idp.test";

/// Rows of one proof, printed and written as Markdown; the test fails if any is wrong.
struct Rows {
    name: &'static str,
    rows: Vec<(String, String, String, bool)>,
}

impl Rows {
    fn new(name: &'static str) -> Rows {
        Rows { name, rows: Vec::new() }
    }

    fn row(&mut self, case: &str, expected: &str, got: String, ok: bool) {
        eprintln!(
            "[{}] {case}: expected {expected}, got {got}",
            if ok { "ok" } else { "FAIL" }
        );
        self.rows.push((case.into(), expected.into(), got, ok));
    }

    fn finish(self) {
        let mut md = String::from("| fail-closed case | expected | got |\n|---|---|---|\n");
        for (case, expected, got, ok) in &self.rows {
            let mark = if *ok { "" } else { " **(wrong)**" };
            md.push_str(&format!("| {case} | {expected} | {got}{mark} |\n"));
        }
        println!("\n{md}");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fail-closed");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{}.md", self.name)), &md);
        assert!(self.rows.iter().all(|r| r.3), "{md}");
    }
}

fn outcome(r: &Response) -> String {
    if r.status == 200 {
        return "200 allowed".into();
    }
    let reason = serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    format!("{} {reason}", r.status)
}

fn bearer(port: u16, token: &str) -> Response {
    http::request(port, "GET", "/orders", &[("authorization", &format!("Bearer {token}"))])
}

fn inline_config(signer: &Signer, extra: Value) -> String {
    let mut c = json!({"providers": [{"issuer": ISS, "audiences": ["orders"], "jwks": mint::jwks(&[signer])}],
                       "revocation": {"jtis": ["stolen"]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

#[test]
fn refused_configurations_never_serve() {
    let mut rows = Rows::new("refused-config");
    let k = Signer::new("ES256", "fc-1");
    let echo = Upstream::start();
    let weak = Signer::rsa_bits("RS256", "weak", 1024);
    // 1. At startup: Envoy does not start, `--mode validate` fails, nothing is served.
    let bad_static = inline_config(&weak, json!({}));
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&bad_static))];
    let yaml = bootstrap_yaml(&listeners, echo.port());
    match Envoy::try_start(&yaml, 1) {
        Ok(envoy) => {
            let r = http::request(envoy.port("hg"), "GET", "/", &[]);
            rows.row(
                "RSA-1024 key at startup",
                "Envoy does not start",
                format!("started, answered {}", r.status),
                false,
            );
        }
        Err(logs) => {
            let named = logs.contains("configuration refused: $.providers[0].jwks.keys[0].n");
            rows.row(
                "RSA-1024 key at startup",
                "Envoy does not start; log names $.providers[0].jwks.keys[0].n",
                format!("exited; path {}", if named { "named" } else { "missing" }),
                named,
            );
        }
    }
    let (valid, out) = Envoy::validate_yaml(&yaml);
    rows.row(
        "RSA-1024 key, envoy --mode validate",
        "fails",
        if valid {
            "passed".into()
        } else if out.contains("configuration refused") {
            "failed, naming the refusal".into()
        } else {
            "failed".into()
        },
        !valid,
    );

    // 2. Over LDS: the update is rejected and the running listener keeps enforcing, even
    // when the refused update would have let everything through.
    let mut envoy = Envoy::start_dynamic(
        &[cluster_yaml("upstream", echo.port())],
        &[Listener::new("hg").filter(hopguard_filter_yaml(&inline_config(&k, json!({}))))],
        2,
    );
    let valid_token = k.token(&mint::claims(ISS, "orders", "alice", mint::now()));
    let mut stolen = mint::claims(ISS, "orders", "mallory", mint::now());
    stolen["jti"] = json!("stolen");
    let stolen = k.token(&stolen);
    let refused_updates = [
        ("typo `requirment: allowMissingOrFailed`", inline_config(&k, json!({"requirment": "allowMissingOrFailed"}))),
        ("alg none key", json!({"providers": [{"issuer": ISS, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "none"}]}}]}).to_string()),
        ("an empty revocation entry", inline_config(&k, json!({"revocation": {"jtis": [""]}}))),
        ("not JSON", "{\"providers\": [".to_owned()),
    ];
    for (name, cfg) in refused_updates {
        let pushed = envoy.push_listeners(&[Listener::new("hg").filter(hopguard_filter_yaml(&cfg))]);
        let port = envoy.port("hg");
        let (none, good, revoked) = (
            outcome(&http::request(port, "GET", "/orders", &[])),
            outcome(&bearer(port, &valid_token)),
            outcome(&bearer(port, &stolen)),
        );
        let ok =
            pushed.is_err() && none == "401 token_missing" && good == "200 allowed" && revoked == "401 token_revoked";
        rows.row(
            &format!("LDS update with {name}"),
            "rejected; old listener: no token 401, valid 200, revoked 401",
            format!(
                "{}; {none} / {good} / {revoked}",
                if pushed.is_err() { "rejected" } else { "APPLIED" }
            ),
            ok,
        );
    }
    let rejected = envoy.stat("listener_manager.lds.update_rejected").unwrap_or(0);
    rows.row(
        "listener_manager.lds.update_rejected",
        "4",
        rejected.to_string(),
        rejected == 4,
    );
    assert!(
        !echo.requests().iter().any(|r| r.mentions(&stolen)),
        "a revoked token reached the upstream"
    );
    rows.finish();
}

// ---------------------------------------------------------------------------------------------
// A Wasm VM that fails
// ---------------------------------------------------------------------------------------------

fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// A minimal proxy-wasm module (ABI 0.2.1): it starts and configures fine, and traps
/// (`unreachable`) in `proxy_on_request_headers`: a VM failure at request time.
fn trapping_module() -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Types: () -> (); (i32,i32) -> (); (i32,i32) -> i32; (i32,i32,i32) -> i32; (i32) -> i32.
    let types: Vec<u8> = [
        &[0x05][..],
        &[0x60, 0x00, 0x00],
        &[0x60, 0x02, 0x7f, 0x7f, 0x00],
        &[0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f],
        &[0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x01, 0x7f],
        &[0x60, 0x01, 0x7f, 0x01, 0x7f],
    ]
    .concat();
    section(1, &types, &mut m);
    // Functions: abi marker, context_create, vm_start, configure, request_headers, malloc.
    section(3, &[0x06, 0, 1, 2, 2, 3, 4], &mut m);
    section(5, &[0x01, 0x00, 0x02], &mut m);
    let exports: [(&str, u8, u8); 7] = [
        ("proxy_abi_version_0_2_1", 0, 0),
        ("proxy_on_context_create", 0, 1),
        ("proxy_on_vm_start", 0, 2),
        ("proxy_on_configure", 0, 3),
        ("proxy_on_request_headers", 0, 4),
        ("malloc", 0, 5),
        ("memory", 2, 0),
    ];
    let mut e = vec![exports.len() as u8];
    for (name, kind, index) in exports {
        leb(name.len(), &mut e);
        e.extend_from_slice(name.as_bytes());
        e.push(kind);
        e.push(index);
    }
    section(7, &e, &mut m);
    let bodies: [&[u8]; 6] = [
        &[0x00, 0x0b],
        &[0x00, 0x0b],
        &[0x00, 0x41, 0x01, 0x0b],
        &[0x00, 0x41, 0x01, 0x0b],
        &[0x00, 0x00, 0x0b],
        &[0x00, 0x41, 0x80, 0x08, 0x0b],
    ];
    let mut code = vec![bodies.len() as u8];
    for b in bodies {
        leb(b.len(), &mut code);
        code.extend_from_slice(b);
    }
    section(10, &code, &mut m);
    m
}

#[test]
fn a_failed_vm_refuses_traffic() {
    let mut rows = Rows::new("vm-failure");
    let echo = Upstream::start();
    let dir = TempDir::new("fail-closed-wasm");

    // A wasm file that is not a module at all, and one that is truncated.
    let real = std::fs::read(support::envoy::wasm_path()).unwrap();
    for (name, bytes) in [
        ("a wasm file that is not WebAssembly", b"this is not wasm".to_vec()),
        ("a truncated hopguard.wasm", real[..real.len() / 2].to_vec()),
    ] {
        let path = dir.path().join(format!("{}.wasm", name.len()));
        std::fs::write(&path, &bytes).unwrap();
        let filter = wasm_filter_yaml(&path, "hopguard", "{}");
        let yaml = bootstrap_yaml(&[Listener::new("hg").filter(filter)], echo.port());
        match Envoy::try_start(&yaml, 1) {
            Ok(envoy) => {
                let r = http::request(envoy.port("hg"), "GET", "/", &[]);
                rows.row(
                    name,
                    "Envoy does not start (or 5xx)",
                    format!("started, answered {}", r.status),
                    r.status >= 500,
                );
            }
            Err(logs) => {
                let why = logs
                    .lines()
                    .find(|l| {
                        l.contains("Unable to create Wasm")
                            || l.contains("Failed to load Wasm")
                            || l.contains("fail closed")
                    })
                    .map(|l| l.rsplit("] ").next().unwrap_or(l).chars().take(80).collect::<String>())
                    .unwrap_or_else(|| "exited".into());
                rows.row(name, "Envoy does not start", format!("exited: {why}"), true);
            }
        }
    }

    // The same broken file pushed over LDS: rejected, the running hopguard keeps enforcing.
    let k = Signer::new("ES256", "fc-vm");
    let mut envoy = Envoy::start_dynamic(
        &[cluster_yaml("upstream", echo.port())],
        &[Listener::new("hg").filter(hopguard_filter_yaml(&inline_config(&k, json!({}))))],
        1,
    );
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0\x01\xff").unwrap();
    let pushed = envoy.push_listeners(&[Listener::new("hg").filter(wasm_filter_yaml(&broken, "hopguard", "{}"))]);
    let none = outcome(&http::request(envoy.port("hg"), "GET", "/", &[]));
    rows.row(
        "LDS update to a broken wasm file",
        "rejected; old listener: no token 401",
        format!("{}; {none}", if pushed.is_err() { "rejected" } else { "APPLIED" }),
        pushed.is_err() && none == "401 token_missing",
    );
    drop(envoy);

    // A module that loads and then traps on every request: `fail_open: false` answers 5xx.
    let trap = dir.path().join("trap.wasm");
    std::fs::write(&trap, trapping_module()).unwrap();
    let filter = wasm_filter_yaml(&trap, "trap", "{}");
    let yaml = bootstrap_yaml(&[Listener::new("hg").filter(filter)], echo.port());
    echo.clear();
    match Envoy::try_start(&yaml, 2) {
        Ok(envoy) => {
            let answers: Vec<u16> = (0..6)
                .map(|_| http::request(envoy.port("hg"), "GET", "/orders", &[]).status)
                .collect();
            rows.row(
                "VM traps in proxy_on_request_headers, 6 requests",
                "every answer 5xx, upstream reached 0 times",
                format!("{answers:?}, upstream reached {} times", echo.count()),
                answers.iter().all(|s| *s >= 500) && echo.count() == 0,
            );
        }
        Err(logs) => rows.row(
            "VM traps in proxy_on_request_headers",
            "Envoy serves 5xx",
            format!("Envoy did not start: {}", support::envoy::log_excerpt(&logs, 3)),
            false,
        ),
    }
    rows.finish();
}

// ---------------------------------------------------------------------------------------------
// Keys and lists that go stale
// ---------------------------------------------------------------------------------------------

/// An IdP serving one JWKS and a revocation list, that can be taken down.
fn idp(jwks: Value, down: Arc<AtomicBool>, fetches: Arc<AtomicUsize>) -> Upstream {
    Upstream::start_with(move |req| {
        fetches.fetch_add(1, Ordering::SeqCst);
        if down.load(Ordering::SeqCst) {
            return Reply::new(503, "text/plain", "down");
        }
        match req.path.as_str() {
            "/jwks" => Reply::json(200, &jwks),
            "/revocation" => Reply::json(200, &json!({"jtis": []})),
            _ => Reply::new(404, "text/plain", "no"),
        }
    })
}

#[test]
fn keys_older_than_max_staleness_refuse_tokens() {
    let mut rows = Rows::new("stale-keys");
    let k = Signer::new("ES256", "stale-1");
    let (down, fetches) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let server = idp(mint::jwks(&[&k]), down.clone(), fetches.clone());
    let echo = Upstream::start();
    // maxStalenessSeconds has a floor of 60 s: this test takes about 65 s.
    let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["orders"], "jwksUri": format!("{ISS}/jwks"),
        "cluster": "idp", "cacheDurationSeconds": 1, "fetchTimeoutMs": 500, "keyWaitMs": 1000,
        "maxStalenessSeconds": 60}]});
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))];
    let yaml = bootstrap_yaml_with_clusters(
        &listeners,
        &[
            cluster_yaml("upstream", echo.port()),
            cluster_yaml("idp", server.port()),
        ],
    );
    // One worker, so the token seen before is in the worker's verified-token cache.
    let envoy = Envoy::start_with(&yaml, &EnvoyOptions::new(1));
    let fresh = |i: usize| {
        let mut c = mint::claims(ISS, "orders", "alice", mint::now());
        c["jti"] = json!(format!("fresh-{i}"));
        k.token(&c)
    };
    let seen = fresh(0);
    let port = envoy.port("hg");
    let first = outcome(&bearer(port, &seen));
    rows.row("keys fresh", "200 allowed", first.clone(), first == "200 allowed");
    // The IdP goes away for good; the last good fetch was at most ~1 s ago.
    down.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    let mut allowed_until = Duration::ZERO;
    let mut refused_at: Option<Duration> = None;
    let mut fresh_after = Vec::new();
    let mut seen_after = Vec::new();
    for i in 1..400 {
        let r = outcome(&bearer(port, &fresh(i)));
        let t = down_at.elapsed();
        if refused_at.is_none() && r == "200 allowed" {
            allowed_until = t;
            // The token seen before is still served from the cache while the keys are good.
            let _ = bearer(port, &seen);
        } else {
            refused_at.get_or_insert(t);
            fresh_after.push(r);
            seen_after.push(outcome(&bearer(port, &seen)));
        }
        if refused_at.is_some_and(|at| t >= at + Duration::from_secs(4)) || t > Duration::from_secs(90) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    rows.row(
        "IdP down: last good keys serve until maxStalenessSeconds (60 s)",
        "200 for ~60 s",
        format!("200 until {:.1} s", allowed_until.as_secs_f64()),
        allowed_until >= Duration::from_secs(55),
    );
    let summary = |answers: &[String]| -> (bool, String) {
        let all = !answers.is_empty() && answers.iter().all(|a| a == "503 keys_unavailable");
        let mut kinds: Vec<&String> = answers.iter().collect();
        kinds.dedup();
        (all, format!("{} answers: {kinds:?}", answers.len()))
    };
    let (all_fresh, fresh_text) = summary(&fresh_after);
    rows.row(
        "then: new tokens",
        "503 keys_unavailable from ~60 s on, never 200 again",
        format!(
            "from {:.1} s on, {fresh_text}",
            refused_at.map_or(f64::NAN, |d| d.as_secs_f64())
        ),
        all_fresh && refused_at.is_some_and(|d| d <= Duration::from_secs(70)),
    );
    let (all_seen, seen_text) = summary(&seen_after);
    rows.row(
        "then: a token verified before (in the verified-token cache)",
        "503 keys_unavailable",
        seen_text,
        all_seen,
    );
    let logged = envoy
        .logs()
        .contains("older than maxStalenessSeconds: refusing its tokens");
    rows.row(
        "log line",
        "keys ... older than maxStalenessSeconds",
        if logged { "found" } else { "missing" }.into(),
        logged,
    );
    // The IdP comes back: keys are fetched again and tokens pass.
    down.store(false, Ordering::SeqCst);
    let recovered = support::wait_until(Duration::from_secs(10), || bearer(port, &fresh(999)).status == 200);
    rows.row(
        "IdP back",
        "200 allowed again",
        if recovered { "200 allowed" } else { "still refused" }.into(),
        recovered,
    );
    rows.finish();
}

/// Finding (this file's stale-keys test, fixed in af8c3b2): the verified-token cache ignored
/// staleness. A token verified before the provider's keys went stale was served from the cache
/// and never reached the staleness check in `verifier::verify_live`, so it kept being allowed
/// past `maxStalenessSeconds`, until it expired.
#[test]
fn core_a_cached_token_is_refused_once_its_keys_are_stale() {
    use hopguard::cache::TokenCache;
    use hopguard::decision::{decide_live, Env, Verdict};
    use hopguard::policy::Connection;
    use hopguard::replay::ReplayCache;
    use hopguard::snapshot::{LiveKeys, Snapshot};
    use std::cell::RefCell;

    let k = Signer::new("ES256", "core-stale");
    let cfg = hopguard::config::Config::parse(
        json!({"providers": [{"issuer": ISS, "jwksUri": format!("{ISS}/jwks"), "cluster": "idp"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let set = hopguard::jwks::JwkSet::parse(&mint::jwks(&[&k]), "$").unwrap();
    let keys = std::sync::Arc::new(set.keys);
    let now = mint::now();
    let token = k.token(&mint::claims(ISS, "orders", "alice", now));
    let req = hopguard::request::Request::new(vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/".into()),
        ("authorization".into(), format!("Bearer {token}")),
    ]);
    let replay = RefCell::new(ReplayCache::new(16));
    let cache = RefCell::new(TokenCache::new(16));
    let decide = |stale: bool| {
        let mut snapshot = Snapshot::new(&cfg);
        snapshot.keys[0] = LiveKeys::Ready {
            keys: keys.clone(),
            stale,
        };
        let env = Env {
            snapshot: &snapshot,
            connection: &Connection::default,
            replay: &replay,
            cache: &cache,
        };
        decide_live(&cfg, &env, &req, now, false)
    };
    assert_eq!(decide(false).verdict, Verdict::Allow);
    let stale = decide(true);
    assert_eq!(
        (stale.verdict != Verdict::Allow, stale.reason),
        (true, Some(hopguard::reason::Reason::KeysUnavailable)),
        "a cached token was allowed with keys older than maxStalenessSeconds (cache hit: {:?})",
        stale.record.cache_hit
    );
}

#[test]
fn a_stale_revocation_list_fails_closed_and_a_full_replay_cache_refuses() {
    let mut rows = Rows::new("stale-list-and-replay-cache");
    let k = Signer::new("ES256", "stale-rv");
    let (down, fetches) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let server = idp(mint::jwks(&[&k]), down.clone(), fetches);
    let echo = Upstream::start();
    let client = Signer::new("ES256", "client-fc");
    let cfg = json!({
        "providers": [{"issuer": ISS, "audiences": ["orders"], "jwks": mint::jwks(&[&k]),
                       "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}, {"name": "authorization", "prefix": "DPoP "}]}],
        "revocation": {"uri": format!("{ISS}/revocation"), "cluster": "idp", "pollIntervalSeconds": 1,
                       "fetchTimeoutMs": 500, "onFailure": "failClosed", "maxStalenessSeconds": 3},
        "authorization": {"dpop": {"mode": "ifBound", "replayCacheSize": 1}}
    });
    let listeners = vec![Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))];
    let yaml = bootstrap_yaml_with_clusters(
        &listeners,
        &[
            cluster_yaml("upstream", echo.port()),
            cluster_yaml("idp", server.port()),
        ],
    );
    let envoy = Envoy::start_with(&yaml, &EnvoyOptions::new(1));
    let port = envoy.port("hg");

    // A DPoP replay cache of one entry: a second live proof on the same worker cannot be
    // remembered, so it is refused (503), not let through unchecked.
    let mut public = client.jwk();
    public.as_object_mut().unwrap().remove("kid");
    public.as_object_mut().unwrap().remove("alg");
    let jkt = hopguard::dpop::jwk_thumbprint(public.as_object().unwrap()).unwrap();
    let mut bound = mint::claims(ISS, "orders", "alice", mint::now());
    bound["cnf"] = json!({"jkt": jkt});
    let bound = k.token(&bound);
    let ath = hopguard::b64::encode(&<sha2::Sha256 as sha2::Digest>::digest(bound.as_bytes()));
    let proof = |jti: &str| {
        client.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public}),
            &json!({"jti": jti, "htm": "GET", "htu": format!("http://127.0.0.1:{port}/orders"), "iat": mint::now(), "ath": ath}),
        )
    };
    // A first request waits for the revocation list; the DPoP requests below then do not.
    let warm = outcome(&bearer(
        port,
        &k.token(&mint::claims(ISS, "orders", "warm", mint::now())),
    ));
    assert_eq!(warm, "200 allowed");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut answers = Vec::new();
    for jti in ["one", "two"] {
        let head = format!(
            "GET /orders HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: DPoP {bound}\r\ndpop: {}\r\n\r\n",
            proof(jti)
        );
        writer.write_all(head.as_bytes()).unwrap();
        let status_line = http::read_line(&mut reader).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = http::read_headers(&mut reader).unwrap();
        let body = http::read_body(&mut reader, &headers, false).unwrap();
        answers.push(outcome(&Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }));
    }
    rows.row(
        "DPoP replay cache full (replayCacheSize 1), second live proof",
        "200 allowed, then 503 dpop_replay_cache_full",
        answers.join(", "),
        answers == ["200 allowed", "503 dpop_replay_cache_full"],
    );

    // The revocation list cannot be refreshed: after maxStalenessSeconds (3 s), failClosed
    // refuses every token.
    let token = k.token(&mint::claims(ISS, "orders", "bob", mint::now()));
    let fresh = outcome(&bearer(port, &token));
    rows.row(
        "revocation list fresh",
        "200 allowed",
        fresh.clone(),
        fresh == "200 allowed",
    );
    down.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    let mut r = outcome(&bearer(port, &token));
    while r == "200 allowed" && down_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        r = outcome(&bearer(port, &token));
    }
    let after: Vec<String> = (0..10).map(|_| outcome(&bearer(port, &token))).collect();
    let all = after.iter().all(|a| a == "503 revocation_unavailable");
    rows.row(
        "revocation service down (failClosed, maxStalenessSeconds 3)",
        "503 revocation_unavailable after ~3 s, every time",
        format!(
            "{r} after {:.1} s; next 10: {}",
            down_at.elapsed().as_secs_f64(),
            if all { "all 503" } else { "NOT all 503" }
        ),
        r == "503 revocation_unavailable" && all,
    );
    rows.finish();
}
