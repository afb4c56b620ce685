//! Telemetry against real Envoy: after a scripted mix of requests, every hopguard series
//! in `/stats/prometheus` has its exact count; decision records and the Envoy access log
//! are checked field by field; and no token, key or cookie value used in the run shows
//! up in Envoy's output, the access log, the metrics or any response header.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::envoy::{bootstrap_yaml, hopguard_filter_yaml, Envoy, Listener};
use support::http::{self, Response};
use support::mint::{self, Signer};
use support::upstream::Upstream;

const ISS: &str = "https://idp.telemetry.test";

/// `name{labels} value` lines of the Prometheus text format that mention hopguard.
fn hopguard_series(prom: &str) -> BTreeMap<String, f64> {
    prom.lines()
        .filter(|l| !l.starts_with('#') && l.contains("hopguard"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn metrics_records_and_access_log_are_exact_and_never_leak() {
    let es = Signer::new("ES256", "tel-1");
    let hs = Signer::new("HS256", "tel-hmac");
    let up = Upstream::start();
    let dir = std::env::temp_dir().join(format!("hopguard-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let access_log = dir.join("access.log");
    let provider = |name: &str| {
        json!({"name": name, "issuer": ISS, "audiences": ["orders"], "jwks": mint::jwks(&[&es, &hs]),
               "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}], "fromParams": ["access_token"]})
    };
    let main_cfg = json!({
        "providers": [provider("idp")],
        "revocation": {"jtis": ["revoked-jti"]},
        "telemetry": {"allowLog": "info", "denyLog": "warn", "leakGuard": "strip", "hashSubject": true,
                      "filterState": "fields"}
    });
    let dry_cfg = json!({"providers": [provider("idp-dry")], "dryRun": true, "telemetry": {"allowLog": "info"}});
    let fields = [
        ("status", "%RESPONSE_CODE%"),
        ("path", "%REQ(:PATH)%"),
        ("authorization", "%REQ(AUTHORIZATION)%"),
        ("decision", "%FILTER_STATE(wasm.hopguard_decision:PLAIN)%"),
        ("reason", "%FILTER_STATE(wasm.hopguard_reason:PLAIN)%"),
        ("fingerprint", "%FILTER_STATE(wasm.hopguard_fingerprint:PLAIN)%"),
        ("provider", "%FILTER_STATE(wasm.hopguard_provider:PLAIN)%"),
    ];
    let listeners = vec![
        Listener::new("hg")
            .filter(hopguard_filter_yaml(&main_cfg.to_string()))
            .access_log(access_log.to_str().unwrap(), &fields),
        Listener::new("dry").filter(hopguard_filter_yaml(&dry_cfg.to_string())),
    ];
    let envoy = Envoy::start(&bootstrap_yaml(&listeners, up.port()), 2);

    let now = mint::now();
    let claims = |sub: &str| mint::claims(ISS, "orders", sub, now);
    let valid = es.token(&claims("alice"));
    let valid_hs = hs.token(&claims("hmac-user"));
    let mut c = claims("bob");
    c["exp"] = json!(now - 3600);
    let expired = es.token(&c);
    let forged = Signer::new("ES256", "attacker").sign(&json!({"alg": "ES256", "kid": "tel-1"}), &claims("eve"));
    let mut c = claims("carol");
    c["aud"] = json!("billing");
    let wrong_aud = es.token(&c);
    let mut c = claims("dave");
    c["jti"] = json!("revoked-jti");
    let revoked = es.token(&c);
    let leaked_jwt = es.token(&claims("leaked-in-header"));
    let leaked_query = es.token(&claims("leaked-in-query"));
    let cookie_secret = "cookie-secret-7f3a9c";

    let get = |l: &str, path: &str, h: &[(&str, &str)]| -> Response { http::request(envoy.port(l), "GET", path, h) };
    let bearer = |t: &str| format!("Bearer {t}");
    let mut responses: Vec<Response> = Vec::new();
    let mut expect = |r: Response, status: u16| {
        assert_eq!(r.status, status, "{r:?}");
        responses.push(r);
    };
    for _ in 0..2 {
        expect(
            get(
                "hg",
                "/orders/1",
                &[
                    ("authorization", &bearer(&valid)),
                    ("cookie", &format!("s={cookie_secret}")),
                ],
            ),
            200,
        );
    }
    expect(get("hg", "/orders/1", &[("authorization", &bearer(&valid_hs))]), 200);
    expect(get("hg", "/orders/1", &[]), 401);
    expect(
        get("hg", "/orders/1", &[("cookie", &format!("s={cookie_secret}"))]),
        401,
    );
    expect(get("hg", "/orders/1", &[("authorization", &bearer(&expired))]), 401);
    expect(get("hg", "/orders/1", &[("authorization", &bearer(&forged))]), 401);
    expect(get("hg", "/orders/1", &[("authorization", &bearer(&wrong_aud))]), 403);
    expect(get("hg", "/orders/1", &[("authorization", &bearer(&revoked))]), 401);
    expect(get("hg", &format!("/orders/1?access_token={revoked}"), &[]), 401);
    expect(
        get(
            "hg",
            &format!("/x?access_token={valid}"),
            &[("authorization", &bearer(&valid))],
        ),
        400,
    );
    expect(
        get(
            "hg",
            "/orders/2",
            &[("authorization", &bearer(&valid)), ("x-upstream-jwt", &leaked_jwt)],
        ),
        200,
    );
    expect(
        get(
            "hg",
            &format!("/orders/3?id_token={leaked_query}&page=2"),
            &[("authorization", &bearer(&valid))],
        ),
        200,
    );
    expect(get("dry", "/orders/1", &[("authorization", &bearer(&expired))]), 200);
    expect(get("dry", "/orders/1", &[("authorization", &bearer(&valid))]), 200);

    // The exact count of every series. Histograms appear after Envoy's stats flush (5 s).
    let hist = |s: &BTreeMap<String, f64>| {
        s.iter()
            .find(|(k, _)| k.starts_with("hopguard_verify_duration_us_count"))
            .map(|(_, v)| *v)
    };
    let mut series = hopguard_series(&envoy.stats_prometheus());
    for _ in 0..80 {
        if hist(&series) == Some(12.0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        series = hopguard_series(&envoy.stats_prometheus());
    }
    let want: BTreeMap<&str, f64> = [
        (r#"hopguard_requests_total{decision="allow"}"#, 6.0),
        (r#"hopguard_requests_total{decision="deny"}"#, 8.0),
        (r#"hopguard_requests_total{decision="dry_run_deny"}"#, 1.0),
        (r#"hopguard_requests_total{decision="allow_failed"}"#, 0.0),
        (r#"hopguard_denials_total{reason="token_missing"}"#, 2.0),
        (r#"hopguard_denials_total{reason="token_expired"}"#, 2.0),
        (r#"hopguard_denials_total{reason="signature_invalid"}"#, 1.0),
        (r#"hopguard_denials_total{reason="audience_mismatch"}"#, 1.0),
        (r#"hopguard_denials_total{reason="token_revoked"}"#, 2.0),
        (r#"hopguard_denials_total{reason="token_ambiguous"}"#, 1.0),
        (
            r#"hopguard_provider_requests_total{decision="allow",provider="idp"}"#,
            5.0,
        ),
        (
            r#"hopguard_provider_requests_total{decision="deny",provider="idp"}"#,
            5.0,
        ),
        (
            r#"hopguard_provider_requests_total{decision="allow",provider="idp-dry"}"#,
            1.0,
        ),
        (
            r#"hopguard_provider_requests_total{decision="dry_run_deny",provider="idp-dry"}"#,
            1.0,
        ),
        (r#"hopguard_leaks_total{kind="header_jwt"}"#, 1.0),
        (r#"hopguard_leaks_total{kind="query_token"}"#, 1.0),
    ]
    .into_iter()
    .collect();
    let mut wrong = Vec::new();
    for (k, v) in &want {
        if series.get(*k) != Some(v) {
            wrong.push(format!("{k}: want {v}, got {:?}", series.get(*k)));
        }
    }
    // Every other counter series is zero (no stray counts), bounded in number.
    for (k, v) in &series {
        let is_counter = k.starts_with("hopguard_requests_total")
            || k.starts_with("hopguard_denials_total")
            || k.starts_with("hopguard_provider_requests_total")
            || k.starts_with("hopguard_leaks_total");
        if is_counter && !want.contains_key(k.as_str()) && *v != 0.0 {
            wrong.push(format!("{k}: unexpected {v}"));
        }
    }
    let histogram_count = series
        .iter()
        .find(|(k, _)| k.starts_with("hopguard_verify_duration_us_count"))
        .map(|(_, v)| *v);
    if histogram_count != Some(12.0) {
        wrong.push(format!("verify_duration_us count: want 12, got {histogram_count:?}"));
    }
    // Cache hits depend on which of the two workers took each request; hits + misses do not.
    let cache = |r: &str| {
        series
            .get(&format!("hopguard_token_cache_total{{result=\"{r}\"}}"))
            .copied()
    };
    match (cache("hit"), cache("miss")) {
        (Some(h), Some(m)) if h + m == 12.0 && h >= 1.0 => {}
        other => wrong.push(format!(
            "token cache hit/miss: want a sum of 12 with hits, got {other:?}"
        )),
    }
    assert!(series.len() < 200, "cardinality: {} series", series.len());
    assert!(
        wrong.is_empty(),
        "{}\n--- all hopguard series:\n{series:#?}",
        wrong.join("\n")
    );

    // The leak guard stripped both leaked credentials before the upstream.
    for r in up.requests() {
        assert!(
            !r.mentions(&leaked_jwt) && !r.mentions(&leaked_query),
            "leak reached upstream: {r:?}"
        );
    }
    assert!(up.requests().iter().any(|r| r.path == "/orders/3?page=2"));

    // Decision records: one per request, fields checked.
    let logs = envoy.logs();
    let records: Vec<Value> = logs
        .lines()
        .filter_map(|l| {
            l.split_once("hopguard: decision ")
                .map(|(_, j)| serde_json::from_str(j).unwrap())
        })
        .collect();
    assert_eq!(records.len(), 15, "records: {}", records.len());
    let expired_rec = records
        .iter()
        .find(|r| r["reason"] == "token_expired" && r["decision"] == "deny")
        .unwrap();
    assert_eq!(expired_rec["provider"], "idp");
    assert_eq!(expired_rec["route"], "/orders/1");
    assert_eq!(
        expired_rec["token_fingerprint"],
        hopguard::telemetry::fingerprint(&expired)
    );
    assert!(expired_rec["request_id"].as_str().unwrap().len() >= 16);
    assert!(expired_rec["verify_us"].as_u64().is_some());
    let alice = records
        .iter()
        .find(|r| r["decision"] == "allow" && r["kid"] == "tel-1")
        .unwrap();
    assert_eq!(
        alice["sub"],
        format!("sha256:{}", hopguard::telemetry::fingerprint("alice")),
        "hashed subject"
    );
    assert!(alice["jti"].as_str().unwrap().starts_with("jti-alice-"));
    assert!(records.iter().any(|r| r["leaks"] == json!(["header_jwt"])));
    assert!(records
        .iter()
        .any(|r| r["decision"] == "dry_run_deny" && r["reason"] == "token_expired"));
    assert!(
        logs.contains("[warning][wasm]") && logs.contains("\"decision\":\"deny\""),
        "denials at warn level"
    );

    // The access log, field by field.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 13 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let entries: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 13);
    let e = entries.iter().find(|e| e["reason"] == "audience_mismatch").unwrap();
    assert_eq!(
        (e["status"].as_u64(), e["decision"].as_str()),
        (Some(403), Some("deny"))
    );
    assert_eq!(e["fingerprint"], hopguard::telemetry::fingerprint(&wrong_aud));
    assert_eq!(e["provider"], "idp");
    assert!(
        e["authorization"].is_null() || e["authorization"] == "-",
        "credential removed before the access log"
    );
    assert!(
        entries
            .iter()
            .all(|e| !e["path"].as_str().unwrap_or("").contains("access_token")),
        "{entries:?}"
    );
    assert_eq!(entries.iter().filter(|e| e["decision"] == "allow").count(), 5);

    // Nothing secret anywhere.
    let secrets = [
        valid.as_str(),
        valid_hs.as_str(),
        expired.as_str(),
        forged.as_str(),
        wrong_aud.as_str(),
        revoked.as_str(),
        leaked_jwt.as_str(),
        leaked_query.as_str(),
        cookie_secret,
    ];
    let hmac_secret = hs.jwk()["k"].as_str().unwrap().to_owned();
    let access = std::fs::read_to_string(&access_log).unwrap();
    let prom = envoy.stats_prometheus();
    let stats = envoy.admin_get("/stats");
    for s in secrets.iter().copied().chain([hmac_secret.as_str()]) {
        let needle = &s[s.len().saturating_sub(40)..];
        assert!(!logs.contains(needle), "Envoy output leaks a secret");
        assert!(!access.contains(needle), "access log leaks a secret");
        assert!(
            !prom.contains(needle) && !stats.contains(needle),
            "metrics leak a secret"
        );
        for r in &responses {
            for (_, v) in &r.headers {
                assert!(!v.contains(needle), "a response header leaks a secret");
            }
            assert!(
                !r.body.contains(needle) || r.status == 200,
                "a refusal body leaks a secret"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
