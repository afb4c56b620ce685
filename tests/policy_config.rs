//! The `authorization` section is refused whole, with the JSON path of the first
//! problem: unknown fields, what Istio's validation refuses, and what hopguard refuses
//! on top (ambiguous wildcards, unsupported attributes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "policy_support.rs"]
mod support;

use hopguard::algorithm::Alg;
use hopguard::binding::BindingMode;
use hopguard::policy::Action;
use serde_json::{json, Value};
use support::{policies, refused};

/// One ALLOW policy with one rule.
fn with_rule(rule: Value) -> Value {
    json!({"policies": [{"name": "p", "rules": [rule]}]})
}

#[test]
fn a_full_section_parses() {
    let p = policies(json!({
        "dryRun": false,
        "denyStatus": 403,
        "denyBody": {"title": "no"},
        "certificateBinding": "required",
        "spaceDelimitedClaims": ["roles"],
        "dpop": {"mode": "ignore", "iatWindowSeconds": 30, "algorithms": ["ES256", "EdDSA"],
                 "htuSchemes": ["http", "HTTPS"], "maxProofBytes": 4096, "replayCacheSize": 100},
        "policies": [
            {"name": "a", "action": "ALLOW", "dryRun": true, "denyStatus": 418, "denyBody": "short and stout",
             "rules": [{"name": "r", "dryRun": true, "denyStatus": 451,
                        "from": [{"source": {"principals": ["*"], "notPrincipals": ["x"], "requestPrincipals": ["*"],
                                             "notRequestPrincipals": ["a/b"], "namespaces": ["n"], "notNamespaces": ["m"],
                                             "trustDomains": ["td"], "notTrustDomains": ["*.x"],
                                             "ipBlocks": ["10.0.0.0/8"], "notIpBlocks": ["10.0.0.1"]}},
                                 {"source": {"serviceAccounts": ["ns/sa"], "notServiceAccounts": ["ns/other"]}}],
                        "to": [{"operation": {"hosts": ["h"], "notHosts": ["*.h"], "ports": ["80", 443], "notPorts": ["1"],
                                              "methods": ["GET"], "notMethods": ["POST"], "paths": ["/a/{*}"],
                                              "notPaths": ["/b*"]}}],
                        "when": [{"key": "request.auth.claims[a][b]", "values": ["x"], "notValues": ["y"]}],
                        "bind": {"workload": {"claim": "azp", "map": {"web": ["spiffe://td/ns/n/sa/web"], "cli": "td/ns/n/sa/cli"}},
                                 "certificate": true, "dpop": true,
                                 "delegation": {"actor": "peer", "maxDepth": 3, "required": false}}}]},
            {"name": "b", "action": "DENY", "rules": [{}]},
            {"name": "c", "action": "AUDIT"}
        ]
    }));
    assert_eq!(p.policies.len(), 3);
    assert_eq!(p.policies[1].action, Action::Deny);
    assert_eq!(p.policies[2].action, Action::Audit);
    assert_eq!(p.certificate_binding, BindingMode::Required);
    assert_eq!(p.dpop_binding, BindingMode::Ignore);
    assert_eq!(p.dpop.iat_window_seconds, 30);
    assert_eq!(p.dpop.replay_cache_size, 100);
    assert_eq!(p.dpop.htu_schemes, vec!["http", "https"]);
    assert!(p.dpop.algorithms.contains(Alg::EdDSA) && !p.dpop.algorithms.contains(Alg::RS256));
    assert_eq!(p.dpop.algs_param(), "ES256 EdDSA");
    assert!(p.has_dry_run());
    assert_eq!(p.custom.status, Some(403));
    assert_eq!(p.custom.content_type, Some("application/problem+json"));
    let a = &p.policies[0];
    assert_eq!(a.custom.content_type, Some("text/plain; charset=utf-8"));
    assert_eq!(a.rules[0].custom.status, Some(451));
    let bind = a.rules[0].bind.as_ref().unwrap();
    assert!(bind.certificate && bind.dpop);
    assert_eq!(bind.workload.as_ref().unwrap().map.as_ref().unwrap().len(), 2);
}

#[test]
fn defaults() {
    let p = policies(json!({}));
    assert!(p.policies.is_empty());
    assert_eq!(p.certificate_binding, BindingMode::IfBound);
    assert_eq!(p.dpop_binding, BindingMode::IfBound);
    assert_eq!(p.dpop.iat_window_seconds, 60);
    assert_eq!(
        p.dpop.algs_param(),
        "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"
    );
    assert!(!p.has_dry_run());
    let p = policies(json!({"policies": [{"name": "x"}]}));
    assert_eq!(p.policies[0].action, Action::Allow, "ALLOW is Istio's default action");
}

#[test]
fn refusals_with_paths() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([]), "$.authorization", "JSON object"),
        (json!({"polices": []}), "$.authorization.polices", "unknown field"),
        (json!({"policies": {}}), "$.authorization.policies", "array"),
        (
            json!({"policies": [{}]}),
            "$.authorization.policies[0].name",
            "required",
        ),
        (
            json!({"policies": [{"name": "a b"}]}),
            "$.authorization.policies[0].name",
            "characters",
        ),
        (
            json!({"policies": [{"name": "a"}, {"name": "a"}]}),
            "$.authorization.policies[1].name",
            "duplicate",
        ),
        (
            json!({"policies": [{"name": "a", "action": "allow"}]}),
            "$.authorization.policies[0].action",
            "ALLOW",
        ),
        (
            json!({"policies": [{"name": "a", "action": "CUSTOM"}]}),
            "$.authorization.policies[0].action",
            "not supported",
        ),
        (
            json!({"policies": [{"name": "a", "action": "DENY"}]}),
            "$.authorization.policies[0].rules",
            "never matches",
        ),
        (
            json!({"policies": [{"name": "a", "selector": {}}]}),
            "$.authorization.policies[0].selector",
            "unknown field",
        ),
        (
            json!({"policies": [{"name": "a", "action": "AUDIT", "denyStatus": 403, "rules": [{}]}]}),
            "$.authorization.policies[0].denyStatus",
            "AUDIT",
        ),
        (
            json!({"policies": [{"name": "a", "rules": [{"name": "r"}, {"name": "r"}]}]}),
            "$.authorization.policies[0].rules[1].name",
            "duplicate",
        ),
        (
            with_rule(json!({"form": []})),
            "$.authorization.policies[0].rules[0].form",
            "unknown field",
        ),
        (
            with_rule(json!({"from": []})),
            "$.authorization.policies[0].rules[0].from",
            "must not be empty",
        ),
        (
            with_rule(json!({"to": []})),
            "$.authorization.policies[0].rules[0].to",
            "must not be empty",
        ),
        (
            with_rule(json!({"from": [{}]})),
            "$.authorization.policies[0].rules[0].from[0].source",
            "required",
        ),
        (
            with_rule(json!({"from": [{"source": {}}]})),
            "$.authorization.policies[0].rules[0].from[0].source",
            "must not be empty",
        ),
        (
            with_rule(json!({"to": [{"operation": {}}]})),
            "$.authorization.policies[0].rules[0].to[0].operation",
            "must not be empty",
        ),
        (
            with_rule(json!({"from": [{"source": {"principal": ["x"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.principal",
            "unknown field",
        ),
        (
            with_rule(json!({"from": [{"source": {"principals": [""]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.principals[0]",
            "empty",
        ),
        (
            with_rule(json!({"from": [{"source": {"principals": "x"}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.principals",
            "array",
        ),
        (
            with_rule(json!({"from": [{"source": {"principals": ["a*b"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.principals[0]",
            "'*'",
        ),
        (
            with_rule(json!({"from": [{"source": {"requestPrincipals": ["*/*"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.requestPrincipals[0]",
            "'*'",
        ),
        (
            with_rule(json!({"from": [{"source": {"remoteIpBlocks": ["1.2.3.4"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.remoteIpBlocks",
            "not supported",
        ),
        (
            with_rule(json!({"from": [{"source": {"ipBlocks": ["1.2.3.4/33"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.ipBlocks[0]",
            "CIDR",
        ),
        (
            with_rule(json!({"from": [{"source": {"serviceAccounts": ["sa"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.serviceAccounts[0]",
            "namespace",
        ),
        (
            with_rule(json!({"from": [{"source": {"serviceAccounts": ["ns/s*"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.serviceAccounts[0]",
            "wildcard",
        ),
        (
            with_rule(json!({"from": [{"source": {"serviceAccounts": ["ns/sa"], "principals": ["x"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.serviceAccounts",
            "principals",
        ),
        (
            with_rule(json!({"from": [{"source": {"trustDomains": ["td/x"]}}]})),
            "$.authorization.policies[0].rules[0].from[0].source.trustDomains[0]",
            "'/'",
        ),
        (
            with_rule(json!({"to": [{"operation": {"ports": ["http"]}}]})),
            "$.authorization.policies[0].rules[0].to[0].operation.ports[0]",
            "port",
        ),
        (
            with_rule(json!({"to": [{"operation": {"ports": ["65536"]}}]})),
            "$.authorization.policies[0].rules[0].to[0].operation.ports[0]",
            "port",
        ),
        (
            with_rule(json!({"to": [{"operation": {"methods": [7]}}]})),
            "$.authorization.policies[0].rules[0].to[0].operation.methods[0]",
            "string",
        ),
        (
            with_rule(json!({"to": [{"operation": {"hosts": ["*.a.*"]}}]})),
            "$.authorization.policies[0].rules[0].to[0].operation.hosts[0]",
            "'*'",
        ),
        (
            with_rule(json!({"when": [{"key": "request.auth.claims[iss]"}]})),
            "$.authorization.policies[0].rules[0].when[0].values",
            "at least one",
        ),
        (
            with_rule(json!({"when": [{"values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "required",
        ),
        (
            with_rule(json!({"when": [{"key": "request.time", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "unknown attribute",
        ),
        (
            with_rule(json!({"when": [{"key": "remote.ip", "values": ["1.2.3.4"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "not supported",
        ),
        (
            with_rule(json!({"when": [{"key": "experimental.envoy.filters.a.b[c]", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "not supported",
        ),
        (
            with_rule(json!({"when": [{"key": "request.headers[]", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "request.headers",
        ),
        (
            with_rule(json!({"when": [{"key": "request.headers[a][b]", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "request.headers",
        ),
        (
            with_rule(json!({"when": [{"key": "request.headers[a b]", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "header name",
        ),
        (
            with_rule(json!({"when": [{"key": "request.auth.claims[a]x", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "claims",
        ),
        (
            with_rule(json!({"when": [{"key": "request.auth.claims[]", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].key",
            "claims",
        ),
        (
            with_rule(json!({"when": [{"key": "destination.port", "values": ["x"]}]})),
            "$.authorization.policies[0].rules[0].when[0].values[0]",
            "port",
        ),
        (
            with_rule(json!({"when": [{"key": "source.ip", "notValues": ["nope"]}]})),
            "$.authorization.policies[0].rules[0].when[0].notValues[0]",
            "IP",
        ),
        (
            with_rule(json!({"denyStatus": 200})),
            "$.authorization.policies[0].rules[0].denyStatus",
            "400 to 599",
        ),
        (
            with_rule(json!({"denyBody": 7})),
            "$.authorization.policies[0].rules[0].denyBody",
            "string or a JSON object",
        ),
        (
            with_rule(json!({"denyBody": "x".repeat(9000)})),
            "$.authorization.policies[0].rules[0].denyBody",
            "8192",
        ),
        (
            json!({"certificateBinding": "always"}),
            "$.authorization.certificateBinding",
            "ifBound",
        ),
        (json!({"dpop": {"mode": "on"}}), "$.authorization.dpop.mode", "ifBound"),
        (
            json!({"dpop": {"nonce": true}}),
            "$.authorization.dpop.nonce",
            "unknown field",
        ),
        (
            json!({"dpop": {"algorithms": ["HS256"]}}),
            "$.authorization.dpop.algorithms[0]",
            "asymmetric",
        ),
        (
            json!({"dpop": {"algorithms": ["none"]}}),
            "$.authorization.dpop.algorithms[0]",
            "asymmetric",
        ),
        (
            json!({"dpop": {"algorithms": []}}),
            "$.authorization.dpop.algorithms",
            "empty",
        ),
        (
            json!({"dpop": {"iatWindowSeconds": 0}}),
            "$.authorization.dpop.iatWindowSeconds",
            "1 to 600",
        ),
        (
            json!({"dpop": {"replayCacheSize": 0}}),
            "$.authorization.dpop.replayCacheSize",
            "whole number",
        ),
        (
            json!({"dpop": {"htuSchemes": ["ht tp"]}}),
            "$.authorization.dpop.htuSchemes[0]",
            "scheme",
        ),
        (
            json!({"spaceDelimitedClaims": [""]}),
            "$.authorization.spaceDelimitedClaims[0]",
            "claim name",
        ),
        (json!({"dryRun": "yes"}), "$.authorization.dryRun", "true or false"),
    ];
    for (v, path, needle) in cases {
        let (p, m) = refused(v.clone());
        assert_eq!(p, path, "{v}: {m}");
        assert!(m.contains(needle), "{v}: {m:?} lacks {needle:?}");
    }
}

#[test]
fn path_values_refused_like_istio() {
    // istio/istio pkg/config/security TestCheckValidPathTemplate and the proto doc's
    // invalid examples, plus hopguard's wildcard rule for plain paths.
    for bad in [
        "/*/baz/{*}",
        "/**/baz/{*}",
        "/{**}/foo/{*}",
        "/foo/{*}.txt",
        "/foo/{**}buzz/bar",
        "/{*}/foo/{}/bar",
        "/foo/{*}/bar/*",
        "/foo/{*}/bar/**/buzz",
        "/foo/{buzz}/bar",
        "/{buzz}",
        "/foo/{buzz=*}/bar/{**}",
        "/{*}/foo/{**}bar",
        "/{*}/foo/{temp",
        "/{*}/foo/temp}/bar",
        "/{**}/{**}",
        "/{**}/foo/temp/{**}/bar",
        "/{*}/foo/?abc",
        "/a//{*}",
        "foo/{*}",
        "/a*b",
        "*/a*",
        "/api/**",
        "",
    ] {
        let (p, m) = refused(with_rule(json!({"to": [{"operation": {"paths": [bad]}}]})));
        assert_eq!(
            p, "$.authorization.policies[0].rules[0].to[0].operation.paths[0]",
            "{bad}: {m}"
        );
    }
    for good in [
        "/{*}/foo",
        "/{*}/foo/",
        "/foo/{**}/bar",
        "/foo/bar/{**}",
        "/{**}/path/template",
        "/path/template/{*}",
        "/prefix/*",
        "*/suffix",
        "*",
        "/exact",
    ] {
        policies(with_rule(json!({"to": [{"operation": {"notPaths": [good]}}]})));
    }
}

#[test]
fn bind_refusals() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"policies": [{"name": "d", "action": "DENY", "rules": [{"bind": {"certificate": true}}]}]}),
            "$.authorization.policies[0].rules[0].bind",
            "ALLOW rules only",
        ),
        (
            with_rule(json!({"bind": {}})),
            "$.authorization.policies[0].rules[0].bind",
            "at least one",
        ),
        (
            with_rule(json!({"bind": {"certificate": false}})),
            "$.authorization.policies[0].rules[0].bind",
            "at least one",
        ),
        (
            with_rule(json!({"bind": {"mtls": true}})),
            "$.authorization.policies[0].rules[0].bind.mtls",
            "unknown field",
        ),
        (
            with_rule(json!({"bind": {"workload": {}}})),
            "$.authorization.policies[0].rules[0].bind.workload.claim",
            "required",
        ),
        (
            with_rule(json!({"bind": {"workload": {"claim": "azp", "map": []}}})),
            "$.authorization.policies[0].rules[0].bind.workload.map",
            "object",
        ),
        (
            with_rule(json!({"bind": {"workload": {"claim": "azp", "map": {"web": []}}}})),
            "$.authorization.policies[0].rules[0].bind.workload.map.web",
            "non-empty",
        ),
        (
            with_rule(json!({"bind": {"workload": {"claim": "azp", "map": {"web": ["td/*"]}}}})),
            "$.authorization.policies[0].rules[0].bind.workload.map.web[0]",
            "wildcards",
        ),
        (
            with_rule(json!({"bind": {"delegation": {"actor": "caller"}}})),
            "$.authorization.policies[0].rules[0].bind.delegation.actor",
            "peer",
        ),
        (
            with_rule(json!({"bind": {"delegation": {"maxDepth": 0}}})),
            "$.authorization.policies[0].rules[0].bind.delegation.maxDepth",
            "1 to 32",
        ),
        (
            with_rule(json!({"bind": {"dpop": "yes"}})),
            "$.authorization.policies[0].rules[0].bind.dpop",
            "true or false",
        ),
    ];
    for (v, path, needle) in cases {
        let (p, m) = refused(v.clone());
        assert_eq!(p, path, "{v}: {m}");
        assert!(m.contains(needle), "{v}: {m:?} lacks {needle:?}");
    }
}
