//! Host micro-benchmarks of one decision per algorithm (issue 6): `hopguard::decision::decide` on a
//! configuration with one provider holding one key, and a valid bearer token of that algorithm.
//! Each iteration is the whole core path of a request (extraction, parsing, key selection,
//! signature, claims, the header mutations and the record), with a fresh worker state, so no
//! verified-token cache can answer: this is the cost of a cache miss, natively.
//! `decide/cached` is the same request answered by a warm verified-token cache
//! (`decision::decide_live`), and `decide/no-token` a request without a token under
//! `allowMissing`: the two paths most requests take.
//!
//! `cargo bench --bench verify` (a few seconds per algorithm; `-- RS256` filters).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mint.rs"]
mod mint;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hopguard::cache::TokenCache;
use hopguard::config::Config;
use hopguard::decision::{decide, decide_live, Env, Verdict};
use hopguard::policy::Connection;
use hopguard::replay::ReplayCache;
use hopguard::request::Request;
use hopguard::snapshot::Snapshot;
use mint::{Signer, ALL_ALGS};
use serde_json::json;
use std::cell::RefCell;
use std::hint::black_box;
use std::time::Duration;

const NOW: u64 = 1_900_000_000;
const ISS: &str = "https://idp.bench.local";

fn config(signer: &Signer) -> Config {
    let v = json!({"providers": [{
        "issuer": ISS,
        "audiences": ["bench"],
        "jwks": mint::jwks(&[signer]),
        "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}]
    }]});
    Config::from_value(&v).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn request(token: &str) -> Request {
    Request::new(vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/orders/1".into()),
        (":authority".into(), "orders.bench".into()),
        ("user-agent".into(), "bench/1".into()),
        ("accept".into(), "*/*".into()),
        ("authorization".into(), format!("Bearer {token}")),
    ])
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for alg in ALL_ALGS {
        let signer = Signer::new(alg, &format!("bench-{alg}"));
        let cfg = config(&signer);
        let claims = json!({"iss": ISS, "aud": "bench", "sub": "alice", "scope": "orders:read",
                            "iat": NOW, "exp": NOW + 3600, "jti": "bench-1"});
        let req = request(&signer.token(&claims));
        let d = decide(&cfg, &req, NOW);
        assert_eq!(d.verdict, Verdict::Allow, "{alg}: {:?}", d.reason);
        group.bench_with_input(BenchmarkId::new("valid", alg), &req, |b, req| {
            b.iter(|| decide(black_box(&cfg), black_box(req), NOW));
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
        assert_eq!(decide_live(&cfg, &env, &req, NOW, false).record.cache_hit, Some(false));
        assert_eq!(decide_live(&cfg, &env, &req, NOW, false).record.cache_hit, Some(true));
        group.bench_with_input(BenchmarkId::new("cached", alg), &req, |b, req| {
            b.iter(|| decide_live(black_box(&cfg), &env, black_box(req), NOW, false));
        });
        if alg == "ES256" {
            let mut lenient = Config::clone(&cfg);
            lenient.requirement = hopguard::config::Requirement::AllowMissing;
            let bare = Request::new(
                req.headers
                    .iter()
                    .filter(|(n, _)| n != "authorization")
                    .cloned()
                    .collect(),
            );
            assert_eq!(decide(&lenient, &bare, NOW).verdict, Verdict::Allow);
            group.bench_function("no-token", |b| {
                b.iter(|| decide_live(black_box(&lenient), &env, black_box(&bare), NOW, false));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
