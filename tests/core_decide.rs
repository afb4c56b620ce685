//! The pure core, end to end on the host: config -> decide -> verdict, for every
//! algorithm and every reason. Time is pinned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mint.rs"]
mod mint;

use hopguard::config::Config;
use hopguard::decision::{decide, Decision, Verdict};
use hopguard::reason::Reason;
use hopguard::request::{Mutation, Request};
use mint::{claims, raw, Signer, ALL_ALGS};
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: u64 = 1_900_000_000;
const ISS: &str = "https://idp.test";

struct Fixture {
    signers: Vec<Signer>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        signers: ALL_ALGS.iter().map(|a| Signer::new(a, &format!("k-{a}"))).collect(),
    })
}

fn signer(alg: &str) -> &'static Signer {
    fixture().signers.iter().find(|s| s.alg == alg).unwrap()
}

fn base_provider() -> Value {
    let keys: Vec<Value> = fixture().signers.iter().map(|s| s.jwk()).collect();
    json!({
        "issuer": ISS,
        "audiences": ["orders"],
        "jwks": {"keys": keys},
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}, {"header": "x-roles", "claim": "roles"}],
        "outputPayloadToHeader": "x-jwt-payload"
    })
}

fn config_with(provider: Value, top: Value) -> Config {
    let mut v = top;
    v["providers"] = json!([provider]);
    Config::from_value(&v).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn cfg() -> Config {
    config_with(base_provider(), json!({}))
}

fn bearer(token: &str) -> Request {
    Request::new(vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/orders/1".into()),
        ("authorization".into(), format!("Bearer {token}")),
    ])
}

fn good_claims() -> Value {
    claims(ISS, "orders", "alice", NOW)
}

fn reason_of(d: &Decision) -> Option<Reason> {
    match &d.verdict {
        Verdict::Allow => None,
        Verdict::Deny(_) => d.reason,
        Verdict::Wait(w) => panic!("inline keys never wait: {w:?}"),
    }
}

#[test]
fn every_algorithm_verifies_and_strips_the_token() {
    let c = cfg();
    for alg in ALL_ALGS {
        let t = signer(alg).token(&good_claims());
        let d = decide(&c, &bearer(&t), NOW);
        assert_eq!(d.verdict, Verdict::Allow, "{alg}: {:?}", d.reason);
        assert!(d.mutations.contains(&Mutation::Remove("authorization".into())), "{alg}");
        assert!(d.mutations.contains(&Mutation::Set("x-sub".into(), "alice".into())));
        assert_eq!(d.record.kid.as_deref(), Some(format!("k-{alg}").as_str()));
        assert!(!format!("{:?}", d.record).contains(&t));
    }
}

#[test]
fn keys_without_alg_are_pinned_by_key_type() {
    let keys: Vec<Value> = fixture().signers.iter().map(|s| s.jwk_without_alg()).collect();
    let mut p = base_provider();
    p["jwks"] = json!({"keys": keys});
    let c = config_with(p, json!({}));
    for alg in ALL_ALGS {
        let d = decide(&c, &bearer(&signer(alg).token(&good_claims())), NOW);
        assert_eq!(d.verdict, Verdict::Allow, "{alg}");
    }
    // An RSA key without alg serves RS* and PS*, but a token claiming RS384 signed
    // with RS256 bytes does not verify.
    let rs = signer("RS256");
    let forged = rs.sign(&json!({"alg": "RS384", "kid": "k-RS256"}), &good_claims());
    assert_eq!(
        reason_of(&decide(&c, &bearer(&forged), NOW)),
        Some(Reason::SignatureInvalid)
    );
}

fn expect(token: &str, want: Reason) {
    let d = decide(&cfg(), &bearer(token), NOW);
    assert_eq!(reason_of(&d), Some(want), "token {token}");
    let Verdict::Deny(denial) = &d.verdict else {
        unreachable!()
    };
    assert_eq!(denial.status, want.spec().status);
    assert!(!denial.body.contains(token));
    for (_, v) in &denial.headers {
        assert!(!v.contains(token));
    }
}

#[test]
fn each_token_reason() {
    let es = signer("ES256");
    let hdr = json!({"alg": "ES256", "kid": "k-ES256"});
    let mut c = good_claims();

    expect(&raw(r#"{"alg":"none"}"#, &c.to_string(), b""), Reason::AlgorithmNone);
    expect(
        &raw(r#"{"alg":"ES256K"}"#, &c.to_string(), b"x"),
        Reason::AlgorithmUnsupported,
    );
    expect("not-a-jwt", Reason::TokenMalformed);
    expect(
        &es.sign(&json!({"alg":"ES256","kid":"k-ES256","crit":["x"],"x":1}), &c),
        Reason::CritUnsupported,
    );
    expect(
        &es.sign(&json!({"alg":"ES256","kid":"k-ES256","typ":"dpop+jwt"}), &c),
        Reason::TypeNotAccepted,
    );
    expect(
        &es.sign(&hdr, &json!({"sub": "a", "exp": NOW + 10})),
        Reason::IssuerMissing,
    );
    expect(&es.sign(&hdr, &json!({"iss": 7})), Reason::ClaimInvalid);
    expect(
        &es.sign(&hdr, &json!({"iss": "https://other", "exp": NOW + 10})),
        Reason::IssuerUnknown,
    );
    expect(&es.sign(&json!({"alg":"ES256","kid":"nope"}), &c), Reason::KeyNotFound);
    // Signature by another key with the right kid.
    let other = Signer::new("ES256", "other");
    expect(&other.sign(&hdr, &c), Reason::SignatureInvalid);
    // Tampered payload.
    let t = es.token(&c);
    let mut parts: Vec<&str> = t.split('.').collect();
    let evil = hopguard::b64::encode(
        json!({"iss": ISS, "aud": "orders", "sub": "mallory", "exp": NOW + 10})
            .to_string()
            .as_bytes(),
    );
    parts[1] = &evil;
    expect(&parts.join("."), Reason::SignatureInvalid);

    c["exp"] = json!(NOW - 61);
    expect(&es.token(&c), Reason::TokenExpired);
    c["exp"] = json!("tomorrow");
    expect(&es.token(&c), Reason::ClaimInvalid);
    c.as_object_mut().unwrap().remove("exp");
    expect(&es.token(&c), Reason::ExpirationMissing);
    let mut c = good_claims();
    c["nbf"] = json!(NOW + 61);
    expect(&es.token(&c), Reason::TokenNotYetValid);
    let mut c = good_claims();
    c["aud"] = json!(["billing", "ORDERS"]);
    expect(&es.token(&c), Reason::AudienceMismatch);
    c["aud"] = json!([1]);
    expect(&es.token(&c), Reason::ClaimInvalid);
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("aud");
    expect(&es.token(&c), Reason::AudienceMismatch);
    let mut c = good_claims();
    c["sub"] = json!({"x": 1});
    expect(&es.token(&c), Reason::ClaimInvalid);
    let big = es.token(&json!({"iss": ISS, "pad": "x".repeat(9000)}));
    expect(&big, Reason::TokenTooLarge);
}

#[test]
fn time_edges_with_skew() {
    let es = signer("ES256");
    let mut c = good_claims();
    c["exp"] = json!(NOW - 59);
    assert_eq!(
        decide(&cfg(), &bearer(&es.token(&c)), NOW).verdict,
        Verdict::Allow,
        "inside skew"
    );
    c["exp"] = json!(NOW - 60);
    assert_eq!(
        reason_of(&decide(&cfg(), &bearer(&es.token(&c)), NOW)),
        Some(Reason::TokenExpired),
        "exp + skew == now"
    );
    c["exp"] = json!(NOW as f64 + 0.5);
    let mut p = base_provider();
    p["clockSkewSeconds"] = json!(0);
    let strict = config_with(p, json!({}));
    assert_eq!(
        decide(&strict, &bearer(&es.token(&c)), NOW).verdict,
        Verdict::Allow,
        "fractional NumericDate"
    );
    c["exp"] = json!(NOW);
    assert_eq!(
        reason_of(&decide(&strict, &bearer(&es.token(&c)), NOW)),
        Some(Reason::TokenExpired)
    );
    let mut c = good_claims();
    c["nbf"] = json!(NOW);
    assert_eq!(
        decide(&strict, &bearer(&es.token(&c)), NOW).verdict,
        Verdict::Allow,
        "nbf == now"
    );
}

#[test]
fn max_lifetime_and_optional_expiration() {
    let es = signer("ES256");
    let mut p = base_provider();
    p["maxLifetimeSeconds"] = json!(600);
    let c = config_with(p, json!({}));
    let long = es.token(&good_claims());
    assert_eq!(
        reason_of(&decide(&c, &bearer(&long), NOW)),
        Some(Reason::LifetimeTooLong)
    );
    let mut short = good_claims();
    short["exp"] = json!(NOW + 600);
    assert_eq!(decide(&c, &bearer(&es.token(&short)), NOW).verdict, Verdict::Allow);

    let mut p = base_provider();
    p["requireExpiration"] = json!(false);
    let c = config_with(p, json!({}));
    let mut no_exp = good_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(decide(&c, &bearer(&es.token(&no_exp)), NOW).verdict, Verdict::Allow);
}

#[test]
fn algorithm_confusion_is_impossible() {
    // HS256 signed with the RSA public key's bytes as the HMAC secret (the classic).
    let rs = signer("RS256");
    let n = rs.jwk()["n"].as_str().unwrap().to_owned();
    let input = format!(
        "{}.{}",
        hopguard::b64::encode(json!({"alg":"HS256","kid":"k-RS256"}).to_string().as_bytes()),
        hopguard::b64::encode(good_claims().to_string().as_bytes())
    );
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(n.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let t = format!("{input}.{}", hopguard::b64::encode(&mac.finalize().into_bytes()));
    let d = decide(&cfg(), &bearer(&t), NOW);
    assert_eq!(
        reason_of(&d),
        Some(Reason::KeyNotFound),
        "kid of an RSA key never verifies HS256"
    );
    // Provider restricted to RS256 refuses ES256 outright.
    let mut p = base_provider();
    p["algorithms"] = json!(["RS256"]);
    let c = config_with(p, json!({}));
    let d = decide(&c, &bearer(&signer("ES256").token(&good_claims())), NOW);
    assert_eq!(reason_of(&d), Some(Reason::AlgorithmNotAllowed));
}

#[test]
fn requirement_modes() {
    let none = Request::new(vec![(":path".into(), "/".into())]);
    let bad = bearer("garbage");
    let c = cfg();
    assert_eq!(reason_of(&decide(&c, &none, NOW)), Some(Reason::TokenMissing));
    let c = config_with(base_provider(), json!({"requirement": "allowMissing"}));
    assert_eq!(decide(&c, &none, NOW).verdict, Verdict::Allow);
    assert_eq!(reason_of(&decide(&c, &bad, NOW)), Some(Reason::TokenMalformed));
    let c = config_with(base_provider(), json!({"requirement": "allowMissingOrFailed"}));
    let d = decide(&c, &bad, NOW);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.reason, Some(Reason::TokenMalformed));
    assert_eq!(d.record.decision, "allow_failed");
    assert!(
        d.mutations.contains(&Mutation::Remove("authorization".into())),
        "failed token still stripped"
    );
}

#[test]
fn ambiguity_forgery_and_forwarding() {
    let t = signer("ES256").token(&good_claims());
    let two = Request::new(vec![
        (":path".into(), format!("/x?access_token={t}")),
        ("authorization".into(), format!("Bearer {t}")),
    ]);
    assert_eq!(reason_of(&decide(&cfg(), &two, NOW)), Some(Reason::TokenAmbiguous));

    let mut forged = bearer(&t);
    forged.headers.push(("x-sub".into(), "root".into()));
    forged.headers.push(("x-roles".into(), "admin".into()));
    let d = decide(&cfg(), &forged, NOW);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.mutations.contains(&Mutation::Remove("x-sub".into())));
    assert!(
        d.mutations.contains(&Mutation::Remove("x-roles".into())),
        "removed even when the claim is absent"
    );
    assert!(!d
        .mutations
        .iter()
        .any(|m| matches!(m, Mutation::Set(h, _) if h == "x-roles")));

    let mut p = base_provider();
    p["forwardOriginalToken"] = json!(true);
    let c = config_with(p, json!({}));
    let d = decide(&c, &bearer(&t), NOW);
    assert!(!d
        .mutations
        .iter()
        .any(|m| matches!(m, Mutation::Remove(h) if h == "authorization")));
}

#[test]
fn array_claims_and_payload_header() {
    let mut c = good_claims();
    c["roles"] = json!(["reader", "writer"]);
    let t = signer("EdDSA").token(&c);
    let d = decide(&cfg(), &bearer(&t), NOW);
    assert!(d
        .mutations
        .contains(&Mutation::Set("x-roles".into(), "reader,writer".into())));
    let payload = t.split('.').nth(1).unwrap();
    assert!(d
        .mutations
        .contains(&Mutation::Set("x-jwt-payload".into(), payload.into())));
}

#[test]
fn several_providers_by_issuer_and_location() {
    let a = Signer::new("ES256", "a1");
    let b = Signer::new("ES384", "b1");
    let v = json!({"providers": [
        {"issuer": "https://a", "jwks": mint::jwks(&[&a]), "fromHeaders": [{"name": "x-a-token"}]},
        {"issuer": "https://b", "jwks": mint::jwks(&[&b])}
    ]});
    let c = Config::from_value(&v).unwrap();
    let ta = a.token(&json!({"iss": "https://a", "exp": NOW + 60}));
    let tb = b.token(&json!({"iss": "https://b", "exp": NOW + 60}));
    let in_hdr = |name: &str, value: String| Request::new(vec![(":path".into(), "/".into()), (name.into(), value)]);
    assert_eq!(
        decide(&c, &in_hdr("x-a-token", ta.clone()), NOW).verdict,
        Verdict::Allow
    );
    assert_eq!(
        decide(&c, &in_hdr("authorization", format!("Bearer {tb}")), NOW).provider,
        Some(1)
    );
    // A's token in B's location: A does not read tokens there.
    let d = decide(&c, &in_hdr("authorization", format!("Bearer {ta}")), NOW);
    assert_eq!(reason_of(&d), Some(Reason::IssuerUnknown));
}

#[test]
fn key_sizes_are_enforced_at_configure_time() {
    let small = Signer::rsa_bits("RS256", "small", 1024);
    let v = json!({"providers": [{"issuer": ISS, "jwks": mint::jwks(&[&small])}]});
    let e = Config::from_value(&v).unwrap_err();
    assert_eq!(e.path, "$.providers[0].jwks.keys[0].n");
    assert!(e.message.contains("2048"), "{e}");
    let short = Signer::hmac_len("HS256", "short", 31);
    let v = json!({"providers": [{"issuer": ISS, "jwks": mint::jwks(&[&short])}]});
    assert_eq!(
        Config::from_value(&v).unwrap_err().path,
        "$.providers[0].jwks.keys[0].k"
    );
    // 32 bytes is enough for HS256 but not for a key pinned to HS384.
    let mut k = Signer::hmac_len("HS384", "mid", 40).jwk();
    k["alg"] = json!("HS384");
    let v = json!({"providers": [{"issuer": ISS, "jwks": {"keys": [k]}}]});
    assert_eq!(
        Config::from_value(&v).unwrap_err().path,
        "$.providers[0].jwks.keys[0].alg"
    );
}

#[test]
fn an_unconfigured_filter_refuses_everything() {
    let t = signer("ES256").token(&good_claims());
    let d = hopguard::decision::unconfigured(&bearer(&t));
    assert_eq!(reason_of(&d), Some(Reason::ConfigInvalid));
    let Verdict::Deny(denial) = d.verdict else {
        unreachable!()
    };
    assert_eq!(denial.status, 503);
    assert!(!denial.headers.iter().any(|(n, _)| n == "www-authenticate"));
}

#[test]
fn the_token_cache_skips_the_signature_but_never_the_checks() {
    use hopguard::cache::TokenCache;
    use hopguard::decision::{decide_live, Env};
    use hopguard::policy::Connection;
    use hopguard::replay::ReplayCache;
    use hopguard::snapshot::Snapshot;
    use std::cell::RefCell;

    let mut hashed_claims = good_claims();
    hashed_claims["jti"] = json!("revoked-by-hash");
    let hashed = signer("ES256").token(&hashed_claims);
    let mut top = json!({"revocation": {"jtis": ["dead"], "fingerprints": [hopguard::telemetry::token_hash(&hashed)]}});
    top["providers"] = json!([base_provider()]);
    let c = Config::from_value(&top).unwrap();
    let snapshot = Snapshot::new(&c);
    let replay = RefCell::new(ReplayCache::new(10));
    let cache = RefCell::new(TokenCache::new(100));
    let env = Env {
        snapshot: &snapshot,
        connection: &Connection::default,
        replay: &replay,
        cache: &cache,
    };
    let mut claims = good_claims();
    claims["exp"] = json!(NOW + 100);
    let t = signer("RS256").token(&claims);
    let first = decide_live(&c, &env, &bearer(&t), NOW, false);
    assert_eq!(
        (first.verdict.clone(), first.record.cache_hit),
        (Verdict::Allow, Some(false))
    );
    let second = decide_live(&c, &env, &bearer(&t), NOW + 1, false);
    assert_eq!(
        (second.verdict.clone(), second.record.cache_hit),
        (Verdict::Allow, Some(true))
    );
    assert_eq!(first.mutations, second.mutations, "a hit decides exactly as a miss");
    assert_eq!(first.record.fingerprint, Some(hopguard::telemetry::fingerprint(&t)));
    assert_eq!(
        second.record.fingerprint, first.record.fingerprint,
        "a hit carries the same fingerprint"
    );
    // A token that differs in one byte is not a hit.
    let mut other = t.clone();
    other.push('A');
    assert_eq!(
        decide_live(&c, &env, &bearer(&other), NOW, false).record.cache_hit,
        Some(false)
    );
    // Revocation by the token's hash holds on a hit too (the entry keeps the hash).
    for round in [Some(false), Some(true)] {
        let d = decide_live(&c, &env, &bearer(&hashed), NOW, false);
        assert_eq!((d.record.cache_hit, reason_of(&d)), (round, Some(Reason::TokenRevoked)));
    }
    // Expiry is checked at every request, cached or not.
    let late = decide_live(&c, &env, &bearer(&t), NOW + 100 + 60, false);
    assert_eq!(reason_of(&late), Some(Reason::TokenExpired));
    // Revocation runs after the cache.
    claims["jti"] = json!("dead");
    let dead = signer("RS256").token(&claims);
    let _ = decide_live(&c, &env, &bearer(&dead), NOW, false);
    assert_eq!(
        reason_of(&decide_live(&c, &env, &bearer(&dead), NOW, false)),
        Some(Reason::TokenRevoked)
    );
    assert!(cache.borrow().hits >= 1);
}

#[test]
fn leak_stripping_and_token_removal_compose_and_missing_token_refusals_keep_removals() {
    let mut top = json!({"telemetry": {"leakGuard": "strip"}});
    top["providers"] = json!([base_provider()]);
    let c = Config::from_value(&top).unwrap();
    let t = signer("ES256").token(&good_claims());
    let leaked = signer("EdDSA").token(&json!({"iss": "https://elsewhere"}));
    // Token in a parameter and a leaked JWT in another: both leave the path.
    let req = Request::new(vec![
        (":method".into(), "GET".into()),
        (":path".into(), format!("/o?access_token={t}&debug={leaked}&page=2")),
    ]);
    let d = decide(&c, &req, NOW);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(req.applied(&d.mutations).path(), "/o?page=2");
    // No token, a forged claim header and a leaked JWT: the refusal still removes both.
    let req = Request::new(vec![
        (":path".into(), "/o".into()),
        ("x-sub".into(), "admin".into()),
        ("x-forwarded-token".into(), leaked.clone()),
    ]);
    let d = decide(&c, &req, NOW);
    assert_eq!(d.reason, Some(Reason::TokenMissing));
    let after = req.applied(&d.mutations);
    assert_eq!((after.header("x-sub"), after.header("x-forwarded-token")), (None, None));
}

#[test]
fn leak_guard_reads_query_parameters_percent_decoded_as_the_upstream_will() {
    let mut top = json!({"telemetry": {"leakGuard": "strip"}, "requirement": "allowMissing"});
    top["providers"] = json!([base_provider()]);
    let c = Config::from_value(&top).unwrap();
    let leaked = signer("EdDSA").token(&json!({"iss": "https://elsewhere"}));
    // A JWT whose dots are escaped still reaches the upstream as a JWT: found and stripped.
    let escaped = leaked.replace('.', "%2E");
    let req = Request::new(vec![
        (":method".into(), "GET".into()),
        (":path".into(), format!("/o?page=2&debug={escaped}")),
    ]);
    let d = decide(&c, &req, NOW);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.record.leaks, vec!["query_token"]);
    assert_eq!(req.applied(&d.mutations).path(), "/o?page=2");
    // An escaped *configured* parameter name is the token location, not a leak.
    let t = signer("ES256").token(&good_claims());
    let req = Request::new(vec![
        (":method".into(), "GET".into()),
        (":path".into(), format!("/o?access%5Ftoken={t}&page=2")),
    ]);
    let d = decide(&c, &req, NOW);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.record.leaks.is_empty(), "{:?}", d.record.leaks);
    assert_eq!(req.applied(&d.mutations).path(), "/o?page=2");
    // A broken escape is inspected as sent.
    let req = Request::new(vec![(":path".into(), format!("/o?x=%G1&debug={leaked}"))]);
    assert_eq!(decide(&c, &req, NOW).record.leaks, vec!["query_token"]);
}
