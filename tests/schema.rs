//! `config.schema.json` agrees with the filter's configuration parser, so editors validate
//! `pluginConfig` as the filter will.
//!
//! The parser is the authority; the schema is checked against it, per object ("site"):
//! - every property the schema documents is known to the parser (not refused as an unknown field);
//! - every field the parser lists when it refuses an unknown one is documented in the schema;
//! - every hopguard object is closed (`additionalProperties: false`), as the parser is;
//! - integer bounds, enums and booleans: the schema and the parser accept and refuse the same
//!   probe values; documented defaults are the parser's defaults;
//! - the schema's examples, and every configuration shipped under istio/ and envoy/, pass both.
//!
//! When the parser grows (a new field, or a new nested object), add it to config.schema.json;
//! a new nested object also gets a row in [`sites`] (where it sits in a configuration).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

#[path = "schema_check/mod.rs"]
mod schema_check;

use hopguard::config::{self, Config, Requirement};
use schema_check::{validate, Dialect};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use support::envoy::repo_root;

fn schema() -> Value {
    let text = std::fs::read_to_string(repo_root().join("config.schema.json")).unwrap();
    serde_json::from_str(&text).expect("config.schema.json is JSON")
}

/// Definitions that describe external formats (RFC 7517 JWK Sets): open, like the parser.
const EXTERNAL: &[&str] = &["/$defs/jwkSet", "/$defs/jwk", "/$defs/jwkSet/properties/keys/items"];

fn jwks() -> Value {
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": "F9Mf-gKUVFtUzcltdsOQeeuEHAicdbqodNxADBrGlLM",
        "y": "O4cI0F0vdZPralBqPR5HYrFeHz9JMGipA2JGNXYq618"}]})
}

fn inline_provider() -> Value {
    json!({"issuer": "https://idp.example.com", "jwks": jwks()})
}

fn remote_provider() -> Value {
    json!({"issuer": "https://idp.example.com", "jwksUri": "https://idp.example.com/keys", "cluster": "idp"})
}

/// One object of the configuration: its schema, where it sits, and base configurations in
/// which a member can be set on it (the first base the schema accepts a probe in is used).
struct Site {
    /// JSON pointer into config.schema.json.
    schema: &'static str,
    /// The parser's JSON path of the object.
    path: &'static str,
    /// (base configuration, JSON pointer of the object inside it).
    bases: Vec<(Value, &'static str)>,
}

fn sites() -> Vec<Site> {
    let with = |p: Value| json!({"providers": [p]});
    let mut header = inline_provider();
    header["fromHeaders"] = json!([{"name": "x-token"}]);
    let mut claim = inline_provider();
    claim["outputClaimToHeaders"] = json!([{"header": "x-sub", "claim": "sub"}]);
    let mut inline_rev = with(inline_provider());
    inline_rev["revocation"] = json!({});
    let mut telemetry = with(inline_provider());
    telemetry["telemetry"] = json!({});
    let mut remote_rev = with(inline_provider());
    remote_rev["revocation"] = json!({"uri": "https://lists.example.com/revoked", "cluster": "lists"});
    // The authorization section: one policy with one rule holding every part.
    let authz = |section: Value| {
        let mut c = with(inline_provider());
        c["authorization"] = section;
        c
    };
    let rule = |r: Value| authz(json!({"policies": [{"name": "p", "rules": [r]}]}));
    let rule_at = "/authorization/policies/0/rules/0";
    let nested = |schema: &'static str, path: &'static str, r: Value, at: &'static str| Site {
        schema,
        path,
        bases: vec![(rule(r), at)],
    };
    let mut out = vec![
        Site {
            schema: "/$defs/authorization",
            path: "$.authorization",
            bases: vec![(authz(json!({})), "/authorization")],
        },
        Site {
            schema: "/$defs/dpop",
            path: "$.authorization.dpop",
            bases: vec![(authz(json!({"dpop": {}})), "/authorization/dpop")],
        },
        Site {
            schema: "/$defs/policy",
            path: "$.authorization.policies[0]",
            bases: vec![(authz(json!({"policies": [{"name": "p"}]})), "/authorization/policies/0")],
        },
        nested(
            "/$defs/rule",
            "$.authorization.policies[0].rules[0]",
            json!({}),
            rule_at,
        ),
        nested(
            "/$defs/from",
            "$.authorization.policies[0].rules[0].from[0]",
            json!({"from": [{"source": {"namespaces": ["a"]}}]}),
            "/authorization/policies/0/rules/0/from/0",
        ),
        nested(
            "/$defs/source",
            "$.authorization.policies[0].rules[0].from[0].source",
            json!({"from": [{"source": {"namespaces": ["a"]}}]}),
            "/authorization/policies/0/rules/0/from/0/source",
        ),
        nested(
            "/$defs/to",
            "$.authorization.policies[0].rules[0].to[0]",
            json!({"to": [{"operation": {"methods": ["GET"]}}]}),
            "/authorization/policies/0/rules/0/to/0",
        ),
        nested(
            "/$defs/operation",
            "$.authorization.policies[0].rules[0].to[0].operation",
            json!({"to": [{"operation": {"methods": ["GET"]}}]}),
            "/authorization/policies/0/rules/0/to/0/operation",
        ),
        nested(
            "/$defs/condition",
            "$.authorization.policies[0].rules[0].when[0]",
            json!({"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]}),
            "/authorization/policies/0/rules/0/when/0",
        ),
        nested(
            "/$defs/bind",
            "$.authorization.policies[0].rules[0].bind",
            json!({"bind": {"certificate": true}}),
            "/authorization/policies/0/rules/0/bind",
        ),
        nested(
            "/$defs/workload",
            "$.authorization.policies[0].rules[0].bind.workload",
            json!({"bind": {"workload": {"claim": "azp"}}}),
            "/authorization/policies/0/rules/0/bind/workload",
        ),
        nested(
            "/$defs/delegation",
            "$.authorization.policies[0].rules[0].bind.delegation",
            json!({"bind": {"delegation": {}}}),
            "/authorization/policies/0/rules/0/bind/delegation",
        ),
    ];
    out.extend(vec![
        Site {
            schema: "",
            path: "$",
            bases: vec![(with(inline_provider()), "")],
        },
        Site {
            schema: "/$defs/provider",
            path: "$.providers[0]",
            bases: vec![
                (with(inline_provider()), "/providers/0"),
                (with(remote_provider()), "/providers/0"),
            ],
        },
        Site {
            schema: "/$defs/fromHeader",
            path: "$.providers[0].fromHeaders[0]",
            bases: vec![(with(header), "/providers/0/fromHeaders/0")],
        },
        Site {
            schema: "/$defs/claimToHeader",
            path: "$.providers[0].outputClaimToHeaders[0]",
            bases: vec![(with(claim), "/providers/0/outputClaimToHeaders/0")],
        },
        Site {
            schema: "/$defs/telemetry",
            path: "$.telemetry",
            bases: vec![(telemetry, "/telemetry")],
        },
        Site {
            schema: "/$defs/revocation",
            path: "$.revocation",
            bases: vec![(inline_rev, "/revocation"), (remote_rev, "/revocation")],
        },
    ]);
    out
}

fn props<'s>(schema: &'s Value, pointer: &str) -> &'s Map<String, Value> {
    schema
        .pointer(pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("config.schema.json has no properties at {pointer:?}"))
}

/// `base` with `name: value` set on the object at `at` (or removed, for `None`).
fn set(base: &Value, at: &str, name: &str, value: Option<Value>) -> Value {
    let mut c = base.clone();
    let obj = c.pointer_mut(at).unwrap().as_object_mut().unwrap();
    match value {
        Some(v) => {
            obj.insert(name.to_owned(), v);
        }
        None => {
            obj.remove(name);
        }
    }
    c
}

fn schema_errors(schema: &Value, config: &Value) -> Vec<String> {
    validate(Dialect::JsonSchema, schema, schema, config, "$")
}

/// The parser's error, if its path is `path` or inside it.
fn parser_error_at(config: &Value, path: &str) -> Option<String> {
    match Config::from_value(config) {
        Ok(_) => None,
        Err(e)
            if e.path == path || e.path.starts_with(&format!("{path}.")) || e.path.starts_with(&format!("{path}[")) =>
        {
            Some(e.to_string())
        }
        Err(_) => None,
    }
}

/// Every schema node with `properties`, by JSON pointer.
fn object_nodes(v: &Value, pointer: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") {
                out.push(pointer.to_owned());
            }
            for (k, child) in m {
                if k == "examples" || k == "default" || k == "enum" || k == "const" {
                    continue;
                }
                object_nodes(
                    child,
                    &format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                object_nodes(child, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_schema_is_draft_2020_12_and_closed_where_the_parser_is() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let mut nodes = Vec::new();
    object_nodes(&s, "", &mut nodes);
    let site_pointers: Vec<&str> = sites().iter().map(|s| s.schema).collect();
    for node in &nodes {
        if EXTERNAL.contains(&node.as_str()) {
            continue;
        }
        let n = s.pointer(node).unwrap();
        assert_eq!(
            n["additionalProperties"],
            Value::Bool(false),
            "{node}: hopguard refuses unknown fields, so the schema must too (additionalProperties: false)"
        );
        assert!(
            site_pointers.contains(&node.as_str()),
            "{node} is an object of the configuration without a row in sites() (tests/schema.rs): add one"
        );
        for r in n["required"].as_array().into_iter().flatten() {
            assert!(
                n["properties"].get(r.as_str().unwrap()).is_some(),
                "{node}: required {r} is not a property"
            );
        }
        for (name, p) in n["properties"].as_object().unwrap() {
            assert!(
                p.get("description").is_some() || p.get("$ref").is_some(),
                "{node}/{name}: describe it"
            );
            if let Some(d) = p.get("default") {
                let errors = validate(Dialect::JsonSchema, &s, p, d, name);
                assert!(errors.is_empty(), "{node}/{name}: the default does not fit: {errors:?}");
            }
        }
    }
    assert!(nodes.len() >= 5, "{nodes:?}");
}

#[test]
fn every_documented_field_is_known_to_the_parser() {
    let s = schema();
    for site in sites() {
        let (base, at) = &site.bases[0];
        assert!(
            Config::from_value(base).is_ok(),
            "base of {}: {:?}",
            site.path,
            Config::from_value(base).err()
        );
        for name in props(&s, site.schema).keys() {
            let probe = set(base, at, name, Some(Value::Null));
            if let Err(e) = Config::from_value(&probe) {
                assert!(
                    !(e.path == format!("{}.{name}", site.path) && e.message.starts_with("unknown field")),
                    "config.schema.json documents {}.{name}, but the parser refuses it: {e}",
                    site.path
                );
            }
        }
    }
}

#[test]
fn every_field_the_parser_knows_is_documented() {
    let s = schema();
    for site in sites() {
        let (base, at) = &site.bases[0];
        let probe = set(base, at, "zzNotAField", Some(json!(1)));
        let e = Config::from_value(&probe).unwrap_err();
        assert_eq!(e.path, format!("{}.zzNotAField", site.path), "{e}");
        assert!(e.message.starts_with("unknown field"), "{e}");
        let list = e
            .message
            .split_once("expected one of: ")
            .or_else(|| e.message.split_once("expected "))
            .map(|(_, l)| l)
            .unwrap_or_else(|| panic!("the parser's message names no fields: {e}"));
        let parser: BTreeSet<&str> = list.split(", ").map(str::trim).collect();
        let documented: BTreeSet<&str> = props(&s, site.schema).keys().map(String::as_str).collect();
        let missing: Vec<&&str> = parser.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "the parser accepts {missing:?} at {} but config.schema.json ({}) does not document them",
            site.path,
            if site.schema.is_empty() { "root" } else { site.schema }
        );
    }
}

/// Probe values for a property, by its schema: (value, should be accepted).
fn probes(p: &Value) -> Vec<(Value, bool)> {
    let mut out = Vec::new();
    match p.get("type").and_then(Value::as_str) {
        Some("integer") => {
            let lo = p["minimum"].as_i64().unwrap();
            let hi = p["maximum"].as_i64().unwrap();
            out.extend([
                (json!(lo), true),
                (json!(hi), true),
                (json!(lo - 1), false),
                (json!(hi + 1), false),
            ]);
            out.push((json!("10"), false));
        }
        Some("number") => {
            let lo = p["minimum"].as_f64().unwrap();
            let hi = p["maximum"].as_f64().unwrap();
            let mid = (lo + hi) / 2.0;
            out.extend([(json!(lo), true), (json!(mid), true), (json!(hi), true)]);
            out.extend([
                (json!(lo - 0.5), false),
                (json!(hi + 0.5), false),
                (json!("0.5"), false),
            ]);
        }
        Some("boolean") => out.extend([(json!(true), true), (json!(false), true), (json!("true"), false)]),
        _ => {}
    }
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        out.extend(values.iter().map(|v| (v.clone(), true)));
        out.push((json!("Bogus"), false));
    }
    out
}

#[test]
fn bounds_enums_and_types_agree_with_the_parser() {
    let s = schema();
    let mut checked = 0;
    for site in sites() {
        for (name, p) in props(&s, site.schema) {
            for (value, accept) in probes(p) {
                let field_path = format!("{}.{name}", site.path);
                // The first base in which the schema accepts the field at all.
                let (base, at) = site
                    .bases
                    .iter()
                    .find(|(b, at)| {
                        let ok_value = probes(p).into_iter().find(|(_, a)| *a).map(|(v, _)| v).unwrap();
                        schema_errors(&s, &set(b, at, name, Some(ok_value))).is_empty()
                    })
                    .unwrap_or_else(|| panic!("no base configuration admits {field_path}"));
                let config = set(base, at, name, Some(value.clone()));
                let by_schema = schema_errors(&s, &config);
                let by_parser = parser_error_at(&config, &field_path);
                assert_eq!(
                    by_schema.is_empty(),
                    accept,
                    "schema on {field_path} = {value}: {by_schema:?}"
                );
                assert_eq!(
                    by_parser.is_none(),
                    accept,
                    "parser on {field_path} = {value}: {by_parser:?} (schema says {})",
                    if accept { "accept" } else { "refuse" }
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn documented_defaults_are_the_parsers() {
    let s = schema();
    let cfg = Config::from_value(&json!({"providers": [inline_provider()]})).unwrap();
    let p = &cfg.providers[0];
    let root = props(&s, "");
    let prov = props(&s, "/$defs/provider");
    assert_eq!(root["requirement"]["default"], "required");
    assert_eq!(cfg.requirement, Requirement::Required);
    assert_eq!(root["realm"]["default"], json!(cfg.realm));
    assert_eq!(root["realm"]["default"], config::DEFAULT_REALM);
    assert_eq!(root["maxTokenBytes"]["default"], json!(cfg.max_token_bytes));
    assert_eq!(root["maxTokenBytes"]["minimum"], config::MIN_MAX_TOKEN_BYTES);
    assert_eq!(root["maxTokenBytes"]["maximum"], config::MAX_MAX_TOKEN_BYTES);
    assert_eq!(prov["clockSkewSeconds"]["default"], p.clock_skew_seconds);
    assert_eq!(prov["clockSkewSeconds"]["maximum"], config::MAX_CLOCK_SKEW_SECONDS);
    assert_eq!(prov["requireExpiration"]["default"], p.require_expiration);
    assert_eq!(prov["forwardOriginalToken"]["default"], p.forward_original_token);
    assert_eq!(prov["audiences"]["default"], json!(p.audiences));
    assert_eq!(prov["name"]["pattern"], "^[A-Za-z0-9._-]{1,64}$");
    assert_eq!(p.name, p.issuer, "name defaults to the issuer");
    assert_eq!(root["dryRun"]["default"], cfg.dry_run);
    let tel = props(&s, "/$defs/telemetry");
    let t = hopguard::config::Telemetry::default();
    assert_eq!(cfg.telemetry, t);
    assert_eq!(tel["sampleRate"]["default"], t.sample_rate);
    assert_eq!(tel["hashSubject"]["default"], t.hash_subject);
    let level = |l: hopguard::config::RecordLevel| format!("{l:?}").to_lowercase();
    assert_eq!(tel["allowLog"]["default"], level(t.allow_log));
    assert_eq!(tel["denyLog"]["default"], level(t.deny_log));
    assert_eq!(
        tel["leakGuard"]["default"],
        format!("{:?}", t.leak_guard).to_lowercase()
    );
    let dpop = props(&s, "/$defs/dpop");
    assert_eq!(
        dpop["iatWindowSeconds"]["default"],
        hopguard::dpop::DEFAULT_IAT_WINDOW_SECONDS
    );
    assert_eq!(
        dpop["iatWindowSeconds"]["maximum"],
        hopguard::dpop::MAX_IAT_WINDOW_SECONDS
    );
    assert_eq!(
        dpop["maxProofBytes"]["default"],
        hopguard::dpop::DEFAULT_MAX_PROOF_BYTES
    );
    assert_eq!(
        dpop["replayCacheSize"]["default"],
        hopguard::dpop::DEFAULT_REPLAY_CACHE_SIZE
    );
    assert_eq!(
        dpop["replayCacheSize"]["maximum"],
        hopguard::dpop::MAX_REPLAY_CACHE_SIZE
    );
    let policy = props(&s, "/$defs/policy");
    assert_eq!(policy["rules"]["maxItems"], hopguard::policy::MAX_RULES);
    assert_eq!(
        props(&s, "/$defs/authorization")["policies"]["maxItems"],
        hopguard::policy::MAX_POLICIES
    );
    let algs: Vec<&str> = hopguard::algorithm::Alg::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(prov["algorithms"]["items"]["enum"], json!(algs));
}

/// Every configuration the repository ships: the schema's examples, istio/ and envoy/.
fn shipped_configs() -> Vec<(String, Value)> {
    let s = schema();
    let mut out: Vec<(String, Value)> = s["examples"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("config.schema.json examples[{i}]"), e.clone()))
        .collect();
    for dir in ["istio", "envoy"] {
        let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for doc in serde_norway::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc).unwrap();
                collect_configs(&v, &f.display().to_string(), &mut out);
            }
        }
    }
    assert!(out.len() >= 7, "{}", out.len());
    out
}

fn collect_configs(v: &Value, label: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            if m.get("kind") == Some(&json!("WasmPlugin")) {
                out.push((label.to_owned(), v["spec"]["pluginConfig"].clone()));
                return;
            }
            if let Some(text) = m
                .get("configuration")
                .filter(|c| c["@type"] == "type.googleapis.com/google.protobuf.StringValue")
                .and_then(|c| c["value"].as_str())
            {
                out.push((label.to_owned(), serde_json::from_str(text).unwrap()));
            }
            m.values().for_each(|c| collect_configs(c, label, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_configs(c, label, out)),
        _ => {}
    }
}

#[test]
fn every_shipped_configuration_passes_the_schema_and_the_parser() {
    let s = schema();
    for (label, config) in shipped_configs() {
        let errors = schema_errors(&s, &config);
        assert!(errors.is_empty(), "{label}: config.schema.json refuses it: {errors:#?}");
        if let Err(e) = Config::from_value(&config) {
            panic!("{label}: the parser refuses it: {e}");
        }
    }
}

#[test]
fn configurations_the_parser_refuses_for_their_shape_fail_the_schema_too() {
    let s = schema();
    let base = json!({"providers": [inline_provider()]});
    let mut cases = vec![
        set(&base, "", "requirment", Some(json!("required"))),
        set(&base, "", "requirement", Some(json!("Required"))),
        set(&base, "", "providers", Some(json!([]))),
        set(&base, "", "providers", None),
        set(&base, "/providers/0", "issuer", None),
        set(&base, "/providers/0", "issuer", Some(json!(""))),
        set(&base, "/providers/0", "name", Some(json!("has space"))),
        set(&base, "/providers/0", "clockSkewSeconds", Some(json!(601))),
        set(&base, "/providers/0", "algorithms", Some(json!(["rs256"]))),
        set(&base, "/providers/0", "algorithms", Some(json!([]))),
        set(
            &base,
            "/providers/0",
            "fromHeaders",
            Some(json!([{"name": "bad header"}])),
        ),
        set(
            &base,
            "/providers/0",
            "fromHeaders",
            Some(json!([{"prefix": "Bearer "}])),
        ),
        set(
            &base,
            "/providers/0",
            "outputClaimToHeaders",
            Some(json!([{"header": "x-a", "claim": "a..b"}])),
        ),
        set(&base, "/providers/0", "jwks", Some(json!(7))),
        set(&base, "/providers/0", "jwks", None),
    ];
    // Inline keys and a fetch cluster at once.
    cases.push(set(&base, "/providers/0", "cluster", Some(json!("idp"))));
    for c in cases {
        assert!(Config::from_value(&c).is_err(), "the parser accepts {c}");
        assert!(!schema_errors(&s, &c).is_empty(), "config.schema.json accepts {c}");
    }
}
