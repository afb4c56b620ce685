//! Every configuration error: refused whole, with the JSON path of the first problem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mint.rs"]
mod mint;

use hopguard::config::{Config, Location, Requirement};
use serde_json::{json, Value};

fn es_jwk() -> Value {
    mint::Signer::new("ES256", "k1").jwk()
}

fn provider() -> Value {
    json!({"issuer": "https://idp", "jwks": {"keys": [es_jwk()]}})
}

fn with(path_edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = json!({"providers": [provider()]});
    path_edit(&mut v);
    v
}

fn refused(v: &Value) -> (String, String) {
    let e = Config::parse(v.to_string().as_bytes()).expect_err("config should be refused");
    (e.path, e.message)
}

#[test]
fn a_good_config_parses_with_istio_defaults() {
    let c = Config::parse(with(|_| {}).to_string().as_bytes()).unwrap();
    assert_eq!(c.requirement, Requirement::Required);
    assert_eq!(c.realm, "hopguard");
    assert_eq!(c.max_token_bytes, 8192);
    let p = &c.providers[0];
    assert_eq!(p.name, "https://idp");
    assert_eq!(p.clock_skew_seconds, 60);
    assert!(p.require_expiration);
    assert!(!p.forward_original_token);
    assert_eq!(
        c.locations,
        vec![
            Location::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into()
            },
            Location::Param("access_token".into())
        ]
    );
    // The JWKS may be given as a JSON string, as Istio's jwtRules.jwks is.
    let as_string = with(|v| v["providers"][0]["jwks"] = json!(json!({"keys": [es_jwk()]}).to_string()));
    assert!(Config::parse(as_string.to_string().as_bytes()).is_ok());
}

#[test]
fn every_error_names_its_path() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "$.providers", "required"),
        (json!({"providers": []}), "$.providers", "at least one"),
        (json!({"providers": {}}), "$.providers", "array"),
        (with(|v| v["extra"] = json!(1)), "$.extra", "unknown field"),
        (with(|v| v["requirement"] = json!("maybe")), "$.requirement", "one of"),
        (with(|v| v["realm"] = json!("a\"b")), "$.realm", "quote"),
        (with(|v| v["maxTokenBytes"] = json!(10)), "$.maxTokenBytes", "256"),
        (
            with(|v| v["maxTokenBytes"] = json!(-1)),
            "$.maxTokenBytes",
            "whole number",
        ),
        (
            with(|v| v["providers"][0]["isuer"] = json!("x")),
            "$.providers[0].isuer",
            "unknown field",
        ),
        (with(|v| v["providers"][0] = json!("x")), "$.providers[0]", "object"),
        (
            with(|v| {
                v["providers"][0].as_object_mut().unwrap().remove("issuer");
            }),
            "$.providers[0].issuer",
            "required",
        ),
        (
            with(|v| v["providers"][0]["issuer"] = json!("")),
            "$.providers[0].issuer",
            "empty",
        ),
        (
            with(|v| v["providers"][0]["issuer"] = json!(1)),
            "$.providers[0].issuer",
            "string",
        ),
        (
            with(|v| v["providers"][0]["name"] = json!("has space")),
            "$.providers[0].name",
            "A-Za-z0-9",
        ),
        (
            with(|v| v["providers"][0]["audiences"] = json!("orders")),
            "$.providers[0].audiences",
            "array",
        ),
        (
            with(|v| v["providers"][0]["audiences"] = json!([1])),
            "$.providers[0].audiences[0]",
            "string",
        ),
        (
            with(|v| {
                v["providers"][0].as_object_mut().unwrap().remove("jwks");
            }),
            "$.providers[0].jwks",
            "required",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!(5)),
            "$.providers[0].jwks",
            "JWK Set",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!("{not json")),
            "$.providers[0].jwks",
            "JSON",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": 1})),
            "$.providers[0].jwks.keys",
            "array",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({})),
            "$.providers[0].jwks.keys",
            "required",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": []})),
            "$.providers[0].jwks",
            "no usable",
        ),
        (
            with(|v| {
                v["providers"][0]["jwks"] = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]})
            }),
            "$.providers[0].jwks.keys[0].x",
            "exactly 32",
        ),
        (
            with(|v| v["providers"][0]["jwks"]["keys"][0]["x"] = json!("!!")),
            "$.providers[0].jwks.keys[0].x",
            "base64url",
        ),
        (
            with(|v| v["providers"][0]["jwks"]["keys"][0]["alg"] = json!("RS256")),
            "$.providers[0].jwks.keys[0].alg",
            "does not fit",
        ),
        (
            with(|v| v["providers"][0]["jwks"]["keys"][0]["alg"] = json!("none")),
            "$.providers[0].jwks.keys[0].alg",
            "none",
        ),
        (
            with(|v| v["providers"][0]["jwks"]["keys"][0]["d"] = json!("AAAA")),
            "$.providers[0].jwks.keys[0].d",
            "private",
        ),
        (
            with(|v| v["providers"][0]["jwks"]["keys"][0]["kid"] = json!(1)),
            "$.providers[0].jwks.keys[0].kid",
            "string",
        ),
        (
            with(|v| {
                v["providers"][0]["jwks"]["keys"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("kty");
            }),
            "$.providers[0].jwks.keys[0].kty",
            "required",
        ),
        (
            with(|v| {
                v["providers"][0]["jwks"]["keys"][0]["use"] = json!("sig");
                v["providers"][0]["jwks"]["keys"][0]["key_ops"] = json!(["encrypt"]);
            }),
            "$.providers[0].jwks.keys[0].key_ops",
            "inconsistent",
        ),
        (
            with(|v| v["providers"][0]["jwks"]["keys"][0]["key_ops"] = json!(["verify", "verify"])),
            "$.providers[0].jwks.keys[0].key_ops[1]",
            "duplicate",
        ),
        (
            with(|v| {
                let y = v["providers"][0]["jwks"]["keys"][0]["x"].clone();
                v["providers"][0]["jwks"]["keys"][0]["y"] = y;
            }),
            "$.providers[0].jwks.keys[0]",
            "not on curve",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]})),
            "$.providers[0].jwks.keys[0].x",
            "32 bytes",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": [{"kty": "RSA", "n": "AQAB"}]})),
            "$.providers[0].jwks.keys[0].e",
            "required",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]})),
            "$.providers[0].jwks.keys[0].n",
            "2048",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": [{"kty": "oct", "k": "c2hvcnQ"}]})),
            "$.providers[0].jwks.keys[0].k",
            "32",
        ),
        (
            with(|v| v["providers"][0]["jwks"] = json!({"keys": (0..300).map(|_| es_jwk()).collect::<Vec<_>>()})),
            "$.providers[0].jwks.keys",
            "at most 256",
        ),
        (
            with(|v| v["providers"][0]["algorithms"] = json!(["RS256"])),
            "$.providers[0].jwks",
            "no usable",
        ),
        (
            with(|v| v["providers"][0]["algorithms"] = json!(["none"])),
            "$.providers[0].algorithms[0]",
            "supported",
        ),
        (
            with(|v| v["providers"][0]["algorithms"] = json!([])),
            "$.providers[0].algorithms",
            "empty",
        ),
        (
            with(|v| v["providers"][0]["fromHeaders"] = json!([{"name": "bad header"}])),
            "$.providers[0].fromHeaders[0].name",
            "header name",
        ),
        (
            with(|v| v["providers"][0]["fromHeaders"] = json!([{"name": "x", "prefix": "a\u{1}"}])),
            "$.providers[0].fromHeaders[0].prefix",
            "printable",
        ),
        (
            with(|v| v["providers"][0]["fromHeaders"] = json!([{"name": "cookie"}])),
            "$.providers[0].fromHeaders[0].name",
            "fromCookies",
        ),
        (
            with(|v| v["providers"][0]["fromHeaders"] = json!([{"name": "x", "value_prefix": "B"}])),
            "$.providers[0].fromHeaders[0].value_prefix",
            "unknown field",
        ),
        (
            with(|v| v["providers"][0]["fromParams"] = json!([""])),
            "$.providers[0].fromParams",
            "empty",
        ),
        (
            with(|v| v["providers"][0]["fromCookies"] = json!(["a;b"])),
            "$.providers[0].fromCookies[0]",
            "cookie name",
        ),
        (
            with(|v| v["providers"][0]["forwardOriginalToken"] = json!("yes")),
            "$.providers[0].forwardOriginalToken",
            "true or false",
        ),
        (
            with(|v| v["providers"][0]["outputPayloadToHeader"] = json!("host")),
            "$.providers[0].outputPayloadToHeader",
            "reserved",
        ),
        (
            with(|v| v["providers"][0]["outputPayloadToHeader"] = json!("authorization")),
            "$.providers[0].outputPayloadToHeader",
            "reserved",
        ),
        (
            with(|v| v["providers"][0]["outputClaimToHeaders"] = json!([{"header": "x-a", "claim": "a..b"}])),
            "$.providers[0].outputClaimToHeaders[0].claim",
            "claim name",
        ),
        (
            with(|v| v["providers"][0]["outputClaimToHeaders"] = json!([{"header": "x-a"}])),
            "$.providers[0].outputClaimToHeaders[0].claim",
            "required",
        ),
        (
            with(|v| {
                v["providers"][0]["outputClaimToHeaders"] =
                    json!([{"header": "x-a", "claim": "a"}, {"header": "X-A", "claim": "b"}])
            }),
            "$.providers[0].outputClaimToHeaders[1].header",
            "twice",
        ),
        (
            with(|v| {
                v["providers"][0]["fromHeaders"] = json!([{"name": "x-tok"}]);
                v["providers"][0]["outputClaimToHeaders"] = json!([{"header": "x-tok", "claim": "a"}]);
            }),
            "$.providers[0].outputClaimToHeaders[0].header",
            "token location",
        ),
        (
            with(|v| v["providers"][0]["clockSkewSeconds"] = json!(601)),
            "$.providers[0].clockSkewSeconds",
            "600",
        ),
        (
            with(|v| v["providers"][0]["clockSkewSeconds"] = json!(1.5)),
            "$.providers[0].clockSkewSeconds",
            "whole number",
        ),
        (
            with(|v| v["providers"][0]["maxLifetimeSeconds"] = json!(0)),
            "$.providers[0].maxLifetimeSeconds",
            "from 1",
        ),
        (
            with(|v| {
                v["providers"][0]["maxLifetimeSeconds"] = json!(60);
                v["providers"][0]["requireExpiration"] = json!(false);
            }),
            "$.providers[0].requireExpiration",
            "maxLifetimeSeconds",
        ),
        (
            with(|v| {
                let p = v["providers"][0].clone();
                v["providers"].as_array_mut().unwrap().push(p);
            }),
            "$.providers[1].issuer",
            "already configured",
        ),
        (
            with(|v| {
                let mut p = v["providers"][0].clone();
                p["issuer"] = json!("https://other");
                p["name"] = json!("dup");
                v["providers"][0]["name"] = json!("dup");
                v["providers"].as_array_mut().unwrap().push(p);
            }),
            "$.providers[1].name",
            "duplicate",
        ),
    ];
    for (v, path, msg) in &cases {
        let (p, m) = refused(v);
        assert_eq!(&p, path, "config {v}: {m}");
        assert!(m.contains(msg), "config {v}: message {m:?} should mention {msg:?}");
    }
}

#[test]
fn bytes_level_errors() {
    for (bytes, msg) in [
        (&b""[..], "empty"),
        (b"   ", "empty"),
        (b"{", "not valid JSON"),
        (b"[]", "object"),
        (br#"{"providers":[],"providers":[]}"#, "duplicate"),
        (b"{\"realm\":\"\xff\"}", "not valid JSON"),
    ] {
        let e = Config::parse(bytes).unwrap_err();
        assert_eq!(e.path, "$");
        assert!(e.to_string().contains(msg) || e.message.contains(msg), "{e}");
    }
}

#[test]
fn unknown_key_types_are_skipped_with_a_note() {
    let v = with(|v| {
        let keys = v["providers"][0]["jwks"]["keys"].as_array_mut().unwrap();
        keys.push(json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}));
        keys.push(json!({"kty": "RSA", "use": "enc", "n": "AA", "e": "AQAB"}));
        keys.push(json!({"kty": "OKP", "crv": "Ed448", "x": "AA"}));
        keys.push(json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES", "x": "AA", "y": "AA"}));
        keys.push(json!({"kty": "XYZ"}));
    });
    let c = Config::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(c.providers[0].keys.len(), 1);
    assert_eq!(c.notes.len(), 5, "{:?}", c.notes);
    assert!(c
        .notes
        .iter()
        .all(|n| n.starts_with("skipped JWK $.providers[0].jwks.keys[")));
}
