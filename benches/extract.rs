//! Host micro-benchmarks of token extraction (issue 6): `hopguard::extractor::extract` over a
//! request with typical headers, with the token in the `Authorization` header, in a cookie among
//! others, in a query parameter, or absent; and `extractor::removal`, the mutations that take the
//! token out again.
//!
//! `cargo bench --bench extract`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mint.rs"]
mod mint;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hopguard::config::Config;
use hopguard::extractor::{extract, removal};
use hopguard::request::Request;
use serde_json::json;
use std::hint::black_box;
use std::time::Duration;

/// A syntactically plausible compact JWS (extraction does not parse it).
fn token() -> String {
    format!(
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.{}.{}",
        "e".repeat(180),
        "s".repeat(86)
    )
}

fn config() -> Config {
    // A key only so the configuration is valid: extraction never looks at it.
    let signer = mint::Signer::new("ES256", "bench-extract");
    let v = json!({"providers": [{
        "issuer": "https://idp.bench.local",
        "jwks": mint::jwks(&[&signer]),
        "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}, {"name": "x-token"}],
        "fromParams": ["access_token"],
        "fromCookies": ["session"]
    }]});
    Config::from_value(&v).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn base(path: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        (":method".into(), "GET".into()),
        (":path".into(), path.into()),
        (":authority".into(), "orders.bench".into()),
        (":scheme".into(), "http".into()),
        ("user-agent".into(), "Mozilla/5.0 (X11; Linux x86_64) bench/1".into()),
        ("accept".into(), "application/json".into()),
        ("accept-encoding".into(), "gzip, deflate, br".into()),
        ("x-request-id".into(), "6f1c2a8e-3b1d-4f3e-9c1a-0d5b7e2f9a41".into()),
        ("x-forwarded-proto".into(), "http".into()),
    ];
    for i in 0..6 {
        h.push((format!("x-custom-{i}"), format!("value-{i}-{}", "v".repeat(24))));
    }
    h
}

fn requests() -> Vec<(&'static str, Request)> {
    let t = token();
    let mut header = base("/orders/1");
    header.push(("authorization".into(), format!("Bearer {t}")));
    let mut cookie = base("/orders/1");
    cookie.push((
        "cookie".into(),
        format!("theme=dark; lang=en; consent=yes; session={t}; _ga=GA1.2.1234567.1700000000"),
    ));
    let param = base(&format!("/orders/1?page=2&access_token={t}&sort=desc"));
    let none = base("/orders/1?page=2");
    vec![
        ("header", Request::new(header)),
        ("cookie", Request::new(cookie)),
        ("param", Request::new(param)),
        ("none", Request::new(none)),
    ]
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let mut group = c.benchmark_group("extract");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for (name, req) in requests() {
        let found = extract(&cfg.locations, &req);
        assert_eq!(found.len(), usize::from(name != "none"), "{name}");
        group.bench_with_input(BenchmarkId::new("extract", name), &req, |b, req| {
            b.iter(|| extract(black_box(&cfg.locations), black_box(req)));
        });
        if let Some(candidate) = found.first() {
            group.bench_with_input(BenchmarkId::new("removal", name), &req, |b, req| {
                b.iter(|| removal(black_box(req), &[black_box(candidate)]));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
