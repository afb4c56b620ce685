//! No input panics: seeded random and hostile inputs through every parser and matcher
//! of the policy core (a panic would kill the worker's Wasm VM).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "policy_support.rs"]
mod support;

use hopguard::binding::{self, Presentation};
use hopguard::dpop::{self, DpopSettings, Target};
use hopguard::matcher::{address_ip, namespace_pattern, IpBlock, StrMatch};
use hopguard::path_template::PathMatch;
use hopguard::policy::Policies;
use hopguard::replay::ReplayCache;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::{policies, run_with, Call};

const ALPHABET: &[u8] = b"/{}*.%?#:[]@=-_~aZ09 \t\x7f,;'\"\\";

fn garbage(rng: &mut StdRng, max: usize) -> String {
    let n = rng.gen_range(0..max);
    let mut s = String::with_capacity(n);
    for _ in 0..n {
        if rng.gen_bool(0.05) {
            s.push(char::from_u32(rng.gen_range(0x80..0x3000)).unwrap_or('x'));
        } else {
            s.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
        }
    }
    s
}

#[test]
fn matchers_and_parsers_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let a = garbage(&mut rng, 24);
        let b = garbage(&mut rng, 40);
        if let Ok(m) = PathMatch::parse(&a) {
            let _ = m.matches(&b);
        }
        if let Ok(m) = StrMatch::parse(&a) {
            let _ = m.matches_ignore_case(&b);
        }
        if let Ok(p) = namespace_pattern(&a) {
            let _ = p.matches(&b);
        }
        let _ = IpBlock::parse(&a);
        let _ = address_ip(&a);
        let _ = dpop::normalize_url(&b);
        let _ = dpop::request_url(&a, &a, &b);
        let _ = binding::hex_digest(&b);
        let _ = binding::check_certificate(&a, Some(&b));
        let _ = Policies::parse(
            &json!({"policies": [{"name": "p", "rules": [
            {"to": [{"operation": {"paths": [a.clone()], "hosts": [b.clone()]}}],
             "when": [{"key": a.clone(), "values": [b.clone()]}]}]}]}),
            "$",
        );
    }
}

#[test]
fn hostile_requests_never_panic() {
    let p = policies(json!({"policies": [
        {"name": "a", "rules": [{
            "from": [{"source": {"namespaces": ["*a*"], "trustDomains": ["*.x"]}}, {"source": {"serviceAccounts": ["x/y"]}}, {"source": {"notPrincipals": ["*"]}}],
            "to": [{"operation": {"paths": ["/a/{*}/b/{**}", "*x"], "hosts": ["*.y"]}}],
            "when": [{"key": "request.auth.claims[a][b][c]", "notValues": ["*"]},
                     {"key": "request.headers[x]", "notValues": ["v*"]}],
            "bind": {"dpop": true, "delegation": {"required": false, "maxDepth": 3}}
        }]},
        {"name": "d", "action": "DENY", "rules": [{"when": [{"key": "request.auth.claims[scope]", "values": ["x"]}]}]}
    ]}));
    let mut rng = StdRng::seed_from_u64(11);
    let mut cache = ReplayCache::new(8);
    for i in 0..5_000 {
        let mut c = Call::get(&garbage(&mut rng, 60))
            .host(&garbage(&mut rng, 20))
            .header("x", &garbage(&mut rng, 10))
            .header("dpop", &garbage(&mut rng, 80));
        c.method = garbage(&mut rng, 6);
        c.conn.peer_uri_san = Some(garbage(&mut rng, 50));
        c.conn.peer_cert_sha256 = Some(garbage(&mut rng, 64));
        c = c.claims(json!({
            "scope": garbage(&mut rng, 10),
            "a": {"b": {"c": [1, garbage(&mut rng, 5), null, {"d": 1}]}},
            "cnf": {"jkt": garbage(&mut rng, 43), "x5t#S256": garbage(&mut rng, 43)},
            "act": {"sub": garbage(&mut rng, 10), "act": {"act": {"sub": 1}}}
        }));
        c.presentation = if i % 2 == 0 {
            Presentation::Dpop
        } else {
            Presentation::Bearer
        };
        let _ = run_with(&p, &c, &mut cache);
    }
}

#[test]
fn hostile_proofs_never_panic() {
    let mut rng = StdRng::seed_from_u64(13);
    let settings = DpopSettings::default();
    let target = Target {
        method: "GET",
        scheme: "https",
        authority: "a",
        path: "/",
    };
    let b64 = |s: &str| hopguard::b64::encode(s.as_bytes());
    for _ in 0..5_000 {
        let h = garbage(&mut rng, 60);
        let p = garbage(&mut rng, 60);
        for proof in [
            format!("{}.{}.{}", b64(&h), b64(&p), b64(&h)),
            format!(
                "{}.{}.AA",
                b64(&format!(
                    r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{h}","y":"{p}"}}}}"#
                )),
                b64(r#"{"jti":"j","htm":"GET","htu":"https://a/","iat":1e308,"ath":"x"}"#)
            ),
            format!(
                "{}.{}.AA",
                b64(r#"{"typ":"dpop+jwt","alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}"#),
                b64(&p)
            ),
            garbage(&mut rng, 200),
        ] {
            let _ = dpop::verify(&settings, &proof, &target, "t", 1_900_000_000);
        }
    }
}
