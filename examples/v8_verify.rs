//! Signature verification inside V8, the Wasm engine Envoy runs hopguard in (issue 6).
//!
//! Two halves of one tool, driven by `scripts/bench-crypto`:
//! - natively, `v8_verify fixture OUT.json` mints one key and one valid token per algorithm
//!   (the test keys of tests/support/mint.rs) and writes them with a one-provider config;
//! - built for wasm32-wasip1 and run by Node's WASI (V8), `v8_verify run FIXTURE.json [MS]` times,
//!   per algorithm, building the key from its JWK (`JwkSet::parse` of a one-key set: what each
//!   key of a fetched JWKS, and each DPoP proof's `jwk`, costs, precomputation included), the
//!   signature check alone (`Key::verify`), a DPoP proof by this key (`dpop::verify`, RFC 9449
//!   4.3: with a key seen for the first time, and with the key the worker remembers), a
//!   whole cache-miss decision
//!   (`decision::decide`), a cache-hit decision (`decision::decide_live` with a warm token cache)
//!   and a request without a token, and prints medians of 7 batches in microseconds.
//!
//! Node's V8 is not Envoy's V8 build, but it is the same engine and compiler tiers, so the
//! ratios between candidate implementations carry over; the Envoy figures come from scripts/bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(not(target_arch = "wasm32"))]
#[path = "../tests/support/mint.rs"]
mod mint;

use hopguard::cache::TokenCache;
use hopguard::config::Config;
use hopguard::decision::{decide, decide_live, Env, Verdict};
use hopguard::policy::Connection;
use hopguard::replay::ReplayCache;
use hopguard::request::Request;
use hopguard::snapshot::Snapshot;
#[cfg(not(target_arch = "wasm32"))]
use serde_json::json;
use serde_json::Value;
use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: u64 = 1_900_000_000;
/// The access token and URL the DPoP proofs are for.
const DPOP_TOKEN: &str = "a.b.c";
#[cfg(not(target_arch = "wasm32"))]
const DPOP_HTU: &str = "https://api.bench.local/orders/1";
#[cfg(not(target_arch = "wasm32"))]
const ISS: &str = "https://idp.bench.local";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fixture") => fixture(args.get(2).expect("usage: v8_verify fixture OUT.json")),
        Some("run") => {
            let ms = args.get(3).map_or(300, |s| s.parse().expect("MS is a number"));
            run(args.get(2).expect("usage: v8_verify run FIXTURE.json [MS]"), ms)
        }
        _ => {
            eprintln!("usage: v8_verify fixture OUT.json | v8_verify run FIXTURE.json [MS]");
            std::process::exit(2);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn fixture(out: &str) {
    let only = std::env::var("HOPGUARD_BENCH_ALGS").unwrap_or_default();
    let cases: Vec<Value> = mint::ALL_ALGS
        .iter()
        .filter(|a| only.is_empty() || only.split(',').any(|o| o == **a))
        .map(|alg| {
            let signer = mint::Signer::new(alg, &format!("v8-{alg}"));
            let claims = json!({"iss": ISS, "aud": "bench", "sub": "alice", "iat": NOW, "exp": NOW + 3600});
            let mut jwk = signer.jwk();
            if let Some(o) = jwk.as_object_mut() {
                o.remove("kid");
                o.remove("alg");
            }
            let ath = hopguard::b64::encode(&<sha2::Sha256 as sha2::Digest>::digest(DPOP_TOKEN.as_bytes()));
            let proof = (!alg.starts_with("HS")).then(|| {
                signer.sign(
                    &json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}),
                    &json!({"jti": "bench", "htm": "GET", "htu": DPOP_HTU, "iat": NOW, "ath": ath}),
                )
            });
            json!({
                "alg": alg,
                "dpop": proof,
                "config": {"providers": [{
                    "issuer": ISS, "audiences": ["bench"], "jwks": mint::jwks(&[&signer]),
                    "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}]
                }]},
                "token": signer.token(&claims),
            })
        })
        .collect();
    std::fs::write(out, serde_json::to_vec_pretty(&json!({ "cases": cases })).unwrap()).unwrap();
}

#[cfg(target_arch = "wasm32")]
fn fixture(_: &str) {
    panic!("the fixture is minted natively (cargo run --example v8_verify -- fixture OUT.json)");
}

/// Median microseconds per call of `f`, over 7 batches sized to about `ms` milliseconds in all.
fn time_us(ms: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_millis(ms / 7 + 1) || calls < 3 {
        f();
        calls += 1;
    }
    let mut batches: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .collect();
    batches.sort_by(|a, b| a.partial_cmp(b).unwrap());
    batches[3]
}

fn run(path: &str, ms: u64) {
    let fixture: Value = serde_json::from_slice(&std::fs::read(path).expect("read fixture")).expect("fixture JSON");
    println!(
        "| alg | key from JWK (us) | verify (us) | DPoP proof, new key (us) | DPoP proof, remembered key (us) \
         | decide, cache miss (us) | decide, cache hit (us) | no token (us) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in fixture["cases"].as_array().expect("cases") {
        let alg = case["alg"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let cfg = Config::from_value(&case["config"]).unwrap_or_else(|e| panic!("{alg}: config refused: {e}"));
        let jws = hopguard::token::parse(token).unwrap();
        let key = &cfg.providers[0].keys[0];
        assert!(
            key.verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature),
            "{alg}: does not verify"
        );
        let req = Request::new(vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/orders/1".into()),
            (":authority".into(), "orders.bench".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ]);
        assert_eq!(decide(&cfg, &req, NOW).verdict, Verdict::Allow, "{alg}: not allowed");
        let jwks = &case["config"]["providers"][0]["jwks"];
        assert_eq!(hopguard::jwks::JwkSet::parse(jwks, "$").unwrap().keys.len(), 1);
        let build = time_us(ms, || {
            black_box(hopguard::jwks::JwkSet::parse(black_box(jwks), "$").is_ok());
        });
        let verify = time_us(ms, || {
            black_box(key.verify(
                jws.alg,
                black_box(jws.signing_input.as_bytes()),
                black_box(&jws.signature),
            ));
        });
        let (dpop_new, dpop_kept) = match case["dpop"].as_str() {
            Some(proof) => {
                let settings = hopguard::dpop::DpopSettings::default();
                let target = hopguard::dpop::Target {
                    method: "GET",
                    scheme: "https",
                    authority: "api.bench.local",
                    path: "/orders/1",
                };
                let check = |keys: Option<&mut hopguard::dpop::ProofKeys>| match keys {
                    Some(k) => hopguard::dpop::verify_remembering(&settings, proof, &target, DPOP_TOKEN, NOW, k),
                    None => hopguard::dpop::verify(&settings, proof, &target, DPOP_TOKEN, NOW),
                };
                assert!(check(None).is_ok(), "{alg}: DPoP proof refused");
                let new = time_us(ms, || {
                    black_box(check(None).is_ok());
                });
                let mut keys = hopguard::dpop::ProofKeys::default();
                let kept = time_us(ms, || {
                    black_box(check(Some(&mut keys)).is_ok());
                });
                assert!(keys.hits > 0);
                (format!("{new:.1}"), format!("{kept:.1}"))
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        let whole = time_us(ms, || {
            black_box(decide(black_box(&cfg), black_box(&req), NOW));
        });
        let snapshot = Snapshot::new(&cfg);
        let replay = RefCell::new(ReplayCache::new(16));
        let cache = RefCell::new(TokenCache::new(1024));
        let env = Env {
            snapshot: &snapshot,
            connection: &Connection::default,
            replay: &replay,
            cache: &cache,
        };
        assert_eq!(decide_live(&cfg, &env, &req, NOW, false).verdict, Verdict::Allow);
        assert_eq!(decide_live(&cfg, &env, &req, NOW, false).record.cache_hit, Some(true));
        let hit = time_us(ms, || {
            black_box(decide_live(black_box(&cfg), &env, black_box(&req), NOW, false));
        });
        let bare = Request::new(
            req.headers
                .iter()
                .filter(|(n, _)| n != "authorization")
                .cloned()
                .collect(),
        );
        let mut lenient = case["config"].clone();
        lenient["requirement"] = "allowMissing".into();
        let lenient = Config::from_value(&lenient).unwrap();
        assert_eq!(decide(&lenient, &bare, NOW).verdict, Verdict::Allow);
        let none = time_us(ms, || {
            black_box(decide_live(black_box(&lenient), &env, black_box(&bare), NOW, false));
        });
        println!("| {alg} | {build:.1} | {verify:.1} | {dpop_new} | {dpop_kept} | {whole:.1} | {hit:.2} | {none:.2} |");
    }
}
