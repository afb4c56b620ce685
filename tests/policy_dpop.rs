//! RFC 9449 DPoP through the policy engine: real proofs minted with P-256, P-384,
//! Ed25519 and RSA keys, the happy path, and every failure of RFC 9449 4.3 plus the
//! binding, the replay cache and the bearer downgrade (7.2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mint.rs"]
mod mint;
#[path = "policy_support.rs"]
mod support;

use hopguard::b64;
use hopguard::binding::Presentation;
use hopguard::dpop::{self, DpopSettings, Target};
use hopguard::policy::{Policies, PolicyOutcome, PolicyReason};
use hopguard::replay::ReplayCache;
use mint::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use support::{policies, run, run_with, Call, NOW};

const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
const HTU: &str = "https://api.example.com/orders/1";

struct Keys {
    es256: Signer,
    es384: Signer,
    ed: Signer,
    ps256: Signer,
    other: Signer,
    hs256: Signer,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        es256: Signer::new("ES256", "proof"),
        es384: Signer::new("ES384", "proof384"),
        ed: Signer::new("EdDSA", "proof-ed"),
        ps256: Signer::new("PS256", "proof-rsa"),
        other: Signer::new("ES256", "other"),
        hs256: Signer::new("HS256", "mac"),
    })
}

/// The public JWK as a client embeds it (no kid/alg needed).
fn public_jwk(s: &Signer) -> Value {
    let mut j = s.jwk();
    let o = j.as_object_mut().unwrap();
    o.remove("kid");
    o.remove("alg");
    j
}

fn jkt(s: &Signer) -> String {
    dpop::jwk_thumbprint(public_jwk(s).as_object().unwrap()).unwrap()
}

fn ath(token: &str) -> String {
    b64::encode(&Sha256::digest(token.as_bytes()))
}

fn header(s: &Signer) -> Value {
    json!({"typ": "dpop+jwt", "alg": s.alg, "jwk": public_jwk(s)})
}

fn claims(htm: &str, htu: &str, iat: u64, jti: &str) -> Value {
    json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat, "ath": ath(TOKEN)})
}

/// A valid proof for `GET HTU` now, by `s`.
fn proof(s: &Signer, jti: &str) -> String {
    s.sign(&header(s), &claims("GET", HTU, NOW, jti))
}

/// The request the proofs are for: `GET https://api.example.com/orders/1?expand=x`,
/// with a token bound to `bound_to`.
fn call(bound_to: &Signer, proof: &str) -> Call {
    Call::get("/orders/1?expand=x")
        .host("api.example.com")
        .claims(json!({"iss": "https://idp", "sub": "alice", "cnf": {"jkt": jkt(bound_to)}}))
        .token(TOKEN, Presentation::Dpop)
        .header("dpop", proof)
}

fn default() -> Policies {
    policies(json!({}))
}

fn denial(o: &PolicyOutcome) -> (PolicyReason, &'static str) {
    let d = o.verdict.denial.as_ref().expect("denied");
    (d.reason, d.detail)
}

fn refused(c: &Call) -> (PolicyReason, &'static str) {
    denial(&run(&default(), c))
}

#[test]
fn happy_path_for_every_key_type() {
    let k = keys();
    for s in [&k.es256, &k.es384, &k.ed, &k.ps256] {
        let o = run(&default(), &call(s, &proof(s, &format!("jti-{}", s.alg))));
        assert!(o.allowed(), "{}: {:?}", s.alg, o.verdict.denial);
    }
    // typ may carry the media type prefix, in any case.
    let s = &k.es256;
    let mut h = header(s);
    h["typ"] = json!("application/DPoP+JWT");
    assert!(run(&default(), &call(s, &s.sign(&h, &claims("GET", HTU, NOW, "t")))).allowed());
}

#[test]
fn htu_is_compared_normalized_without_query() {
    let s = &keys().es256;
    for (i, htu) in [
        "https://api.example.com/orders/1",
        "HTTPS://API.EXAMPLE.COM:443/orders/1",
        "https://api.example.com/orders/./x/../1",
        "https://api.example.com/orders/%31",
        "https://api.example.com/orders/1?other=query#frag",
    ]
    .iter()
    .enumerate()
    {
        let p = s.sign(&header(s), &claims("GET", htu, NOW, &format!("n{i}")));
        assert!(run(&default(), &call(s, &p)).allowed(), "{htu}");
    }
    for htu in [
        "https://api.example.com/orders/2",
        "https://api.example.com/orders/1/",
        "https://api.example.com:8443/orders/1",
        "https://evil.example.com/orders/1",
        "http://api.example.com/orders/1",
        "/orders/1",
        "not a url",
    ] {
        let p = s.sign(&header(s), &claims("GET", htu, NOW, "u"));
        assert_eq!(
            refused(&call(s, &p)),
            (PolicyReason::DpopProofInvalid, "dpop_htu"),
            "{htu}"
        );
    }
    // A mesh where clients sign http:// URLs their sidecar upgrades to mTLS.
    let mesh = policies(json!({"dpop": {"htuSchemes": ["http", "https"]}}));
    let p = s.sign(&header(s), &claims("GET", "http://api.example.com/orders/1", NOW, "m"));
    assert!(run(&mesh, &call(s, &p)).allowed());
    let p = s.sign(&header(s), &claims("GET", "ftp://api.example.com/orders/1", NOW, "f"));
    assert_eq!(denial(&run(&mesh, &call(s, &p))).1, "dpop_htu");
}

#[test]
fn proof_presence_and_count() {
    let s = &keys().es256;
    let mut c = call(s, "x");
    c.headers.clear();
    assert_eq!(refused(&c), (PolicyReason::DpopProofMissing, "dpop_missing"));
    let c = call(s, &proof(s, "a")).header("dpop", &proof(s, "b"));
    assert_eq!(refused(&c), (PolicyReason::DpopProofInvalid, "dpop_multiple"));
    let c = call(s, &format!("{},{}", proof(s, "a"), proof(s, "b")));
    assert_eq!(refused(&c).1, "dpop_multiple");
}

#[test]
fn header_failures() {
    let k = keys();
    let s = &k.es256;
    let c = |h: Value| call(s, &s.sign(&h, &claims("GET", HTU, NOW, "h")));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut h = header(s);
        f(&mut h);
        h
    };
    assert_eq!(refused(&c(with(&|h| h["typ"] = json!("JWT")))).1, "dpop_typ");
    assert_eq!(
        refused(&c(with(&|h| {
            h.as_object_mut().unwrap().remove("typ");
        })))
        .1,
        "dpop_typ"
    );
    assert_eq!(refused(&c(with(&|h| h["alg"] = json!("none")))).1, "dpop_alg");
    assert_eq!(refused(&c(with(&|h| h["alg"] = json!("ES256K")))).1, "dpop_alg");
    assert_eq!(refused(&c(with(&|h| h["crit"] = json!(["x"])))).1, "dpop_crit");
    assert_eq!(
        refused(&c(with(&|h| {
            h.as_object_mut().unwrap().remove("jwk");
        })))
        .1,
        "dpop_jwk"
    );
    assert_eq!(refused(&c(with(&|h| h["jwk"] = json!("key")))).1, "dpop_jwk");
    assert_eq!(refused(&c(with(&|h| h["jwk"]["crv"] = json!("P-192")))).1, "dpop_jwk");
    assert_eq!(refused(&c(with(&|h| h["jwk"]["x"] = json!("AAAA")))).1, "dpop_jwk");
    // A private key in the header (RFC 9449 4.3 step 7).
    assert_eq!(
        refused(&c(with(&|h| h["jwk"]["d"] = json!("c2VjcmV0")))),
        (PolicyReason::DpopProofInvalid, "dpop_jwk_private")
    );
    // A symmetric key and algorithm (never for DPoP).
    let mac = &k.hs256;
    let h = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": public_jwk(s)});
    assert_eq!(
        refused(&call(s, &mac.sign(&h, &claims("GET", HTU, NOW, "m")))).1,
        "dpop_alg"
    );
    let h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": mac.jwk()});
    assert_eq!(
        refused(&call(s, &s.sign(&h, &claims("GET", HTU, NOW, "m")))).1,
        "dpop_jwk_private"
    );
    // An algorithm the config does not allow.
    let only_ed = policies(json!({"dpop": {"algorithms": ["EdDSA"]}}));
    assert_eq!(denial(&run(&only_ed, &call(s, &proof(s, "e")))).1, "dpop_alg");
}

#[test]
fn signature_failures() {
    let k = keys();
    let s = &k.es256;
    // Signed by another key than the embedded one.
    let forged = k.other.sign(&header(s), &claims("GET", HTU, NOW, "f"));
    assert_eq!(
        refused(&call(s, &forged)),
        (PolicyReason::DpopProofInvalid, "dpop_signature")
    );
    // alg pinned by the key type: ES384 claimed over a P-256 key.
    let mut h = header(s);
    h["alg"] = json!("ES384");
    assert_eq!(
        refused(&call(s, &s.sign(&h, &claims("GET", HTU, NOW, "p")))).1,
        "dpop_signature"
    );
    // A flipped payload byte.
    let p = proof(s, "x");
    let mut parts: Vec<String> = p.split('.').map(str::to_owned).collect();
    let mut payload = b64::decode(&parts[1]).unwrap();
    payload[5] ^= 1;
    parts[1] = b64::encode(&payload);
    let refusal = refused(&call(s, &parts.join(".")));
    assert!(
        refusal.1 == "dpop_signature" || refusal.1 == "dpop_malformed",
        "{refusal:?}"
    );
}

#[test]
fn malformed_proofs() {
    let s = &keys().es256;
    let good = proof(s, "g");
    let cases = [
        "".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{good}x"),
        format!("{}.{}.{}", b64::encode(b"[1]"), b64::encode(b"{}"), "AA"),
        format!("{}.{}.{}", b64::encode(br#"{"a":1,"a":2}"#), b64::encode(b"{}"), "AA"),
    ];
    for p in &cases {
        let r = refused(&call(s, p));
        assert_eq!(r.0, PolicyReason::DpopProofInvalid, "{p:?}");
        assert!(r.1 == "dpop_malformed" || r.1 == "dpop_signature", "{p:?}: {r:?}");
    }
    let big = format!("{good}{}", "A".repeat(9000));
    assert_eq!(refused(&call(s, &big)).1, "dpop_too_large");
}

#[test]
fn claim_failures() {
    let s = &keys().es256;
    let signed = |c: Value| call(s, &s.sign(&header(s), &c));
    let base = claims("GET", HTU, NOW, "c");
    let without = |name: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    for name in ["jti", "htm", "htu", "iat", "ath"] {
        assert_eq!(refused(&signed(without(name))).1, "dpop_claims", "without {name}");
    }
    let mut c = base.clone();
    c["iat"] = json!("1900000000");
    assert_eq!(refused(&signed(c)).1, "dpop_claims");
    let mut c = base.clone();
    c["jti"] = json!("");
    assert_eq!(refused(&signed(c)).1, "dpop_claims");
    // htm: the method, case-sensitive.
    assert_eq!(refused(&signed(claims("POST", HTU, NOW, "m"))).1, "dpop_htm");
    assert_eq!(refused(&signed(claims("get", HTU, NOW, "m"))).1, "dpop_htm");
    // iat window, default 60 s either way.
    assert!(run(&default(), &signed(claims("GET", HTU, NOW - 60, "old-ok"))).allowed());
    assert!(run(&default(), &signed(claims("GET", HTU, NOW + 60, "new-ok"))).allowed());
    assert_eq!(refused(&signed(claims("GET", HTU, NOW - 61, "old"))).1, "dpop_iat");
    assert_eq!(refused(&signed(claims("GET", HTU, NOW + 61, "new"))).1, "dpop_iat");
    let narrow = policies(json!({"dpop": {"iatWindowSeconds": 5}}));
    assert_eq!(
        denial(&run(&narrow, &signed(claims("GET", HTU, NOW - 6, "n")))).1,
        "dpop_iat"
    );
    // ath: the hash of this access token.
    let mut c = base.clone();
    c["ath"] = json!(ath("another.token.value"));
    assert_eq!(refused(&signed(c)), (PolicyReason::DpopProofInvalid, "dpop_ath"));
}

#[test]
fn key_binding() {
    let k = keys();
    // A valid proof by a key the token is not bound to.
    let c = call(&k.other, &proof(&k.es256, "k"));
    assert_eq!(refused(&c), (PolicyReason::DpopKeyMismatch, "dpop_jkt"));
    // The thumbprint is of the public key, whatever else the JWK carries.
    let s = &k.es256;
    let mut h = header(s);
    h["jwk"]["kid"] = json!("any");
    h["jwk"]["use"] = json!("sig");
    assert!(run(&default(), &call(s, &s.sign(&h, &claims("GET", HTU, NOW, "kid")))).allowed());
}

#[test]
fn replay_cache() {
    let s = &keys().es256;
    let p = default();
    let mut cache = ReplayCache::new(p.dpop.replay_cache_size);
    let first = proof(s, "once");
    assert!(run_with(&p, &call(s, &first), &mut cache).allowed());
    assert_eq!(
        denial(&run_with(&p, &call(s, &first), &mut cache)),
        (PolicyReason::DpopReplayed, "dpop_replayed")
    );
    // A fresh jti passes; the same jti for another URL is another proof.
    assert!(run_with(&p, &call(s, &proof(s, "twice")), &mut cache).allowed());
    let other_url = s.sign(
        &header(s),
        &claims("GET", "https://api.example.com/orders/2", NOW, "once"),
    );
    let c = Call {
        path: "/orders/2".into(),
        ..call(s, &other_url)
    };
    assert!(run_with(&p, &c, &mut cache).allowed());
    assert_eq!(cache.len(), 3);
    // Later, the proof is too old anyway, and its entry is gone.
    let later = call(s, &first).at(NOW + 200);
    assert_eq!(denial(&run_with(&p, &later, &mut cache)).1, "dpop_iat");
    cache.purge(NOW + 200);
    assert!(cache.is_empty());
    // Full of live proofs: refuse rather than forget one (fail closed).
    let small = policies(json!({"dpop": {"replayCacheSize": 1}}));
    let mut cache = ReplayCache::new(small.dpop.replay_cache_size);
    assert!(run_with(&small, &call(s, &proof(s, "a")), &mut cache).allowed());
    assert_eq!(
        denial(&run_with(&small, &call(s, &proof(s, "b")), &mut cache)),
        (PolicyReason::DpopReplayCacheFull, "dpop_replay_cache_full")
    );
}

#[test]
fn presentation_rules() {
    let s = &keys().es256;
    // RFC 9449 7.2: a DPoP-bound token as a bearer token is refused, proof or not.
    let c = call(s, &proof(s, "b")).token(TOKEN, Presentation::Bearer);
    assert_eq!(refused(&c).0, PolicyReason::DpopTokenAsBearer);
    let c = call(s, &proof(s, "o")).token(TOKEN, Presentation::Other);
    assert_eq!(refused(&c).0, PolicyReason::DpopTokenAsBearer);
    // The DPoP scheme with a token that is not DPoP-bound.
    let c = call(s, &proof(s, "u")).claims(json!({"sub": "alice"}));
    assert_eq!(
        refused(&c),
        (PolicyReason::DpopBindingMissing, "token is not DPoP-bound")
    );
    // A plain bearer token passes under ifBound, not under required.
    let bearer = Call::get("/").claims(json!({"sub": "alice"}));
    assert!(run(&default(), &bearer).allowed());
    let required = policies(json!({"dpop": {"mode": "required"}}));
    assert_eq!(denial(&run(&required, &bearer)).0, PolicyReason::DpopBindingMissing);
    // ignore: an inner hop that receives the forwarded token as a bearer token.
    let ignore = policies(json!({"dpop": {"mode": "ignore"}}));
    let c = call(s, "").token(TOKEN, Presentation::Bearer);
    assert!(run(&ignore, &c).allowed());
    // A cnf.jkt that is not a string.
    let c = call(s, &proof(s, "j")).claims(json!({"cnf": {"jkt": 1}}));
    assert_eq!(refused(&c).0, PolicyReason::CnfInvalid);
}

#[test]
fn rule_requires_dpop_and_the_proof_is_checked_once() {
    let s = &keys().es256;
    let p = policies(
        json!({"dpop": {"mode": "ignore"}, "policies": [{"name": "svc", "rules": [
            {"name": "pop", "to": [{"operation": {"paths": ["/orders/*"]}}], "bind": {"dpop": true}},
            {"name": "pop2", "to": [{"operation": {"methods": ["GET"]}}], "bind": {"dpop": true, "certificate": true}}
        ]}]}),
    );
    let mut cache = ReplayCache::new(16);
    let o = run_with(&p, &call(s, &proof(s, "r")), &mut cache);
    assert!(o.allowed());
    assert_eq!(o.verdict.matched.unwrap().rule, "pop");
    assert_eq!(cache.len(), 1);
    // Bearer token on a rule that needs DPoP.
    let c = Call::get("/orders/1").claims(json!({"sub": "alice"}));
    assert_eq!(denial(&run(&p, &c)).0, PolicyReason::DpopBindingMissing);
    // Dry run with everything: the proof is still recorded once.
    let dry = policies(json!({"dryRun": true, "policies": [{"name": "svc", "rules": [{"bind": {"dpop": true}}]}]}));
    let mut cache = ReplayCache::new(16);
    let o = run_with(&dry, &call(s, &proof(s, "d")), &mut cache);
    assert!(o.allowed() && o.dry_run.unwrap().allowed);
    assert_eq!(cache.len(), 1);
}

#[test]
fn verify_directly() {
    let s = &keys().ed;
    let settings = DpopSettings::default();
    let target = Target {
        method: "GET",
        scheme: "https",
        authority: "api.example.com",
        path: "/orders/1?q",
    };
    let p = dpop::verify(&settings, &proof(s, "v"), &target, TOKEN, NOW).unwrap();
    assert_eq!(p.jkt, jkt(s));
    assert_eq!(p.htu, HTU);
    assert_eq!(p.jti, "v");
    assert_eq!(p.expires_at, NOW + 61);
    assert_eq!(settings.algs_param().split(' ').count(), 10);
}

/// The worker remembers proof keys by their whole JWK: EC and RSA keys from the first
/// proof, Ed25519 keys from the second (the first verifies without a table). A remembered
/// key decides as a fresh one: another signer, or the same key material with `use: enc`,
/// is still refused. Bounded.
#[test]
fn proof_keys_are_remembered_per_jwk() {
    let p = default();
    let ks = keys();
    for (s, hits_after_three) in [(&ks.es256, 2), (&ks.ps256, 2), (&ks.ed, 1)] {
        let mut cache = ReplayCache::new(p.dpop.replay_cache_size);
        for i in 0..3 {
            let c = call(s, &proof(s, &format!("{}-{i}", s.alg)));
            assert!(run_with(&p, &c, &mut cache).allowed(), "{} proof {i}", s.alg);
        }
        assert_eq!(cache.proof_keys().hits, hits_after_three, "{}", s.alg);
        assert_eq!(cache.proof_keys().len(), 1);
    }
    // Same material, `use: enc`: a different JWK, refused as not for signatures.
    let s = &ks.es256;
    let mut cache = ReplayCache::new(p.dpop.replay_cache_size);
    assert!(run_with(&p, &call(s, &proof(s, "plain")), &mut cache).allowed());
    let mut h = header(s);
    h["jwk"]["use"] = json!("enc");
    let enc = s.sign(&h, &claims("GET", HTU, NOW, "enc"));
    assert_eq!(denial(&run_with(&p, &call(s, &enc), &mut cache)).1, "dpop_jwk");
    // A remembered jwk with a signature by another key: refused.
    let forged = ks.other.sign(&header(s), &claims("GET", HTU, NOW, "forged"));
    assert_eq!(denial(&run_with(&p, &call(s, &forged), &mut cache)).1, "dpop_signature");
    assert_eq!(
        cache.proof_keys().hits,
        1,
        "the forged proof was checked with the remembered key"
    );
    // Bounded: many distinct keys.
    let mut cache = ReplayCache::new(p.dpop.replay_cache_size);
    for i in 0..(dpop::PROOF_KEYS + 10) {
        let signer = Signer::new("ES256", &format!("many-{i}"));
        let _ = run_with(&p, &call(&signer, &proof(&signer, "x")), &mut cache);
        assert!(cache.proof_keys().len() <= dpop::PROOF_KEYS);
    }
    assert_eq!(cache.proof_keys().len(), dpop::PROOF_KEYS);
}
