//! The policy matcher, table-driven, against the examples of Istio's AuthorizationPolicy
//! reference (istio/api `security/v1beta1/authorization_policy.proto`, quoted as
//! "proto doc"), Istio's path-template integration test (istio/istio
//! `tests/integration/security/authz_test.go` `TestAuthz_PathTemplating`), the
//! conditions page (istio.io `reference/config/security/conditions`), and every field
//! and `not*` form.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "policy_support.rs"]
mod support;

use hopguard::policy::{Policies, PolicyReason};
use serde_json::{json, Value};
use support::{allows, policies, run, Call};

const SLEEP: &str = "cluster.local/ns/default/sa/sleep";

/// One ALLOW policy with one rule.
fn allow_rule(rule: Value) -> Policies {
    policies(json!({"policies": [{"name": "p", "action": "ALLOW", "rules": [rule]}]}))
}

/// Checks a table of (call, allowed) against a policy set.
fn table(p: &Policies, cases: &[(Call, bool)]) {
    for (i, (c, want)) in cases.iter().enumerate() {
        assert_eq!(allows(p, c), *want, "case {i}: {c:?}");
    }
}

#[test]
fn proto_doc_example_allow_httpbin() {
    // proto doc, first example: allow from sa sleep OR namespace test, to GET /info* OR
    // POST /data, when request.auth.claims[iss] is https://accounts.google.com.
    let p = policies(json!({"policies": [{
        "name": "httpbin", "action": "ALLOW",
        "rules": [{
            "from": [{"source": {"principals": [SLEEP]}}, {"source": {"namespaces": ["test"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/info*"]}},
                   {"operation": {"methods": ["POST"], "paths": ["/data"]}}],
            "when": [{"key": "request.auth.claims[iss]", "values": ["https://accounts.google.com"]}]
        }]
    }]}));
    let google = json!({"iss": "https://accounts.google.com", "sub": "u"});
    let other = json!({"iss": "https://idp.other", "sub": "u"});
    table(
        &p,
        &[
            (Call::get("/info").peer(SLEEP).claims(google.clone()), true),
            (Call::get("/info/x?q=1").peer(SLEEP).claims(google.clone()), true),
            (
                Call::post("/data")
                    .peer("cluster.local/ns/test/sa/any")
                    .claims(google.clone()),
                true,
            ),
            (Call::post("/info").peer(SLEEP).claims(google.clone()), false),
            (Call::get("/data").peer(SLEEP).claims(google.clone()), false),
            (
                Call::get("/info")
                    .peer("cluster.local/ns/prod/sa/sleep")
                    .claims(google.clone()),
                false,
            ),
            (Call::get("/info").peer(SLEEP).claims(other), false),
            (Call::get("/info").peer(SLEEP), false),
            (Call::get("/info").claims(google), false),
        ],
    );
    let o = run(&p, &Call::get("/info").peer(SLEEP));
    assert_eq!(o.verdict.denial.unwrap().reason, PolicyReason::PolicyNoMatch);
}

#[test]
fn proto_doc_example_deny_dev_post() {
    // proto doc: deny requests from the dev namespace to the POST method.
    let p = policies(json!({"policies": [{
        "name": "httpbin", "action": "DENY",
        "rules": [{"from": [{"source": {"namespaces": ["dev"]}}], "to": [{"operation": {"methods": ["POST"]}}]}]
    }]}));
    table(
        &p,
        &[
            (Call::post("/").peer("cluster.local/ns/dev/sa/a"), false),
            (Call::get("/").peer("cluster.local/ns/dev/sa/a"), true),
            (Call::post("/").peer("cluster.local/ns/prod/sa/a"), true),
            (Call::post("/"), true),
        ],
    );
    let o = run(&p, &Call::post("/").peer("cluster.local/ns/dev/sa/a"));
    let d = o.verdict.denial.unwrap();
    assert_eq!(d.reason, PolicyReason::PolicyDenied);
    assert_eq!(d.rule.unwrap().to_string(), "httpbin/rules[0]");
    assert_eq!(o.verdict.matched.unwrap().to_string(), "httpbin/rules[0]");
}

#[test]
fn proto_doc_example_deny_post_on_8080() {
    // proto doc: deny POST on port 8080.
    let p = policies(json!({"policies": [{
        "name": "httpbin", "action": "DENY",
        "rules": [{"to": [{"operation": {"methods": ["POST"], "ports": ["8080"]}}]}]
    }]}));
    table(
        &p,
        &[
            (Call::post("/").port(8080), false),
            (Call::post("/").port(9090), true),
            (Call::get("/").port(8080), true),
            (Call::post("/"), true),
        ],
    );
}

#[test]
fn proto_doc_example_audit() {
    // proto doc: audit GET requests to paths with the prefix /user/profile.
    let p = policies(json!({"policies": [{
        "name": "anyname", "action": "AUDIT",
        "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/user/profile/*"]}}]}]
    }]}));
    let o = run(&p, &Call::get("/user/profile/me"));
    assert!(o.allowed());
    assert_eq!(o.audit.len(), 1);
    assert_eq!(o.audit[0].to_string(), "anyname/rules[0]");
    let o = run(&p, &Call::post("/user/profile/me"));
    assert!(o.allowed() && o.audit.is_empty());
    // AUDIT never makes an ALLOW policy exist: still allowed.
    assert!(allows(&p, &Call::get("/elsewhere")));
}

#[test]
fn proto_doc_allow_nothing_and_allow_all() {
    // proto doc: `spec: {}` allows nothing; `rules: [{}]` allows everything.
    let nothing = policies(json!({"policies": [{"name": "allow-nothing"}]}));
    let all = policies(json!({"policies": [{"name": "allow-all", "rules": [{}]}]}));
    let empty_rules = policies(json!({"policies": [{"name": "x", "action": "ALLOW", "rules": []}]}));
    let none = policies(json!({}));
    for c in [
        Call::get("/"),
        Call::post("/x").peer(SLEEP).claims(json!({"iss": "i", "sub": "s"})),
    ] {
        assert!(!allows(&nothing, &c));
        assert!(!allows(&empty_rules, &c));
        assert!(allows(&all, &c));
        assert!(allows(&none, &c), "no policies: allow");
    }
    let o = run(&all, &Call::get("/"));
    assert_eq!(o.verdict.matched.unwrap().to_string(), "allow-all/rules[0]");
    let o = run(&none, &Call::get("/"));
    assert_eq!(o.verdict.matched, None);
}

#[test]
fn proto_doc_dry_run_example() {
    // proto doc: istio.io/dry-run DENY on paths /headers.
    let p = policies(json!({"policies": [{
        "name": "dry-run-example", "action": "DENY", "dryRun": true,
        "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]
    }]}));
    let o = run(&p, &Call::get("/headers"));
    assert!(o.allowed());
    let shadow = o.dry_run.unwrap();
    assert!(!shadow.allowed);
    assert_eq!(shadow.denial.unwrap().reason, PolicyReason::PolicyDenied);
    let o = run(&p, &Call::get("/ip"));
    assert!(o.allowed() && o.dry_run.unwrap().allowed);
}

#[test]
fn proto_doc_source_and_operation_examples() {
    // proto doc (Source): principals admin or dev AND namespaces prod or test AND ip
    // not 203.0.113.4 (principals written as full identities so both can hold).
    let p = allow_rule(json!({"from": [{"source": {
        "principals": ["cluster.local/ns/prod/sa/admin", "cluster.local/ns/test/sa/dev"],
        "namespaces": ["prod", "test"],
        "notIpBlocks": ["203.0.113.4"]
    }}]}));
    table(
        &p,
        &[
            (
                Call::get("/")
                    .peer("cluster.local/ns/prod/sa/admin")
                    .source_ip("10.0.0.1"),
                true,
            ),
            (
                Call::get("/")
                    .peer("cluster.local/ns/test/sa/dev")
                    .source_ip("10.0.0.1"),
                true,
            ),
            (
                Call::get("/")
                    .peer("cluster.local/ns/prod/sa/admin")
                    .source_ip("203.0.113.4"),
                false,
            ),
            (Call::get("/").peer("cluster.local/ns/dev/sa/admin"), false),
            (Call::get("/").peer("cluster.local/ns/prod/sa/admin"), true),
        ],
    );
    // proto doc (Operation): host suffix .example.com, GET or HEAD, path not /admin*.
    let p = allow_rule(json!({"to": [{"operation": {
        "hosts": ["*.example.com"], "methods": ["GET", "HEAD"], "notPaths": ["/admin*"]
    }}]}));
    table(
        &p,
        &[
            (Call::get("/x").host("api.example.com"), true),
            (Call::new("HEAD", "/x").host("API.Example.COM"), true),
            (Call::get("/x").host("api.example.com:8443"), true),
            (Call::post("/x").host("api.example.com"), false),
            (Call::get("/admin/users").host("api.example.com"), false),
            (Call::get("/x").host("example.org"), false),
        ],
    );
}

#[test]
fn proto_doc_path_templates() {
    // proto doc, Operation.paths examples.
    let cases: &[(&str, &str, bool)] = &[
        ("/foo/{*}", "/foo/bar", true),
        ("/foo/{*}", "/foo/bar/baz", false),
        ("/foo/{**}/", "/foo/bar/", true),
        ("/foo/{**}/", "/foo//", true),
        ("/foo/{**}/", "/foo/bar", false),
        // The proto doc also lists `/foo/bar/baz.txt` as a match of `/foo/{**}/`; the
        // Envoy uri_template istiod emits (`/foo/[pchar/]*/`, full match) does not
        // match it, and hopguard follows what Envoy does.
        ("/foo/{**}/", "/foo/bar/baz.txt", false),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/", true),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/baz", true),
        // istio/istio TestAuthz_PathTemplating: `/allow/admin/{**}`.
        ("/allow/admin/{**}", "/allow/admin/", true),
        ("/allow/admin/{**}", "/allow/admin", false),
        ("/allow/admin/{**}", "/allow/user/", false),
        ("/allow/admin/{**}", "/allow/admin?param=value", false),
        ("/allow/admin/{**}", "/allow", false),
        ("/allow/admin/{**}", "/allow/admin/temp", true),
        ("/allow/admin/{**}", "/allow/admin/temp.txt", true),
        ("/allow/admin/{**}", "/allow/admin/foo/temp.txt", true),
        // `/foo/{*}/bar/{**}`.
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/bat.txt", true),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/bat.temp.txt", true),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/bat/fuzz.txt", true),
        ("/foo/{*}/bar/{**}", "/foo/bar/bat.txt", false),
        ("/foo/{*}/bar/{**}", "/foo//bar/bat.txt", false),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/bat", true),
        // `/store/{**}/cart`.
        ("/store/{**}/cart", "/store//cart", true),
        ("/store/{**}/cart", "/store/cart", false),
        ("/store/{**}/cart", "/store/foo/cart", true),
        ("/store/{**}/cart", "/store/foo/bar/cart", true),
        // The query is never part of the path.
        ("/store/{**}/cart", "/store/foo/cart?x=/cart", true),
    ];
    for (template, path, want) in cases {
        let p = allow_rule(json!({"to": [{"operation": {"paths": [template]}}]}));
        assert_eq!(allows(&p, &Call::get(path)), *want, "{template} vs {path}");
        let not = allow_rule(json!({"to": [{"operation": {"notPaths": [template]}}]}));
        assert_eq!(allows(&not, &Call::get(path)), !*want, "notPaths {template} vs {path}");
    }
}

#[test]
fn path_string_forms() {
    // Exact / prefix / suffix / presence (Rule message of the proto doc).
    let cases: &[(&str, &str, bool)] = &[
        ("/exact", "/exact", true),
        ("/exact", "/exact/", false),
        ("/exact", "/Exact", false),
        ("/prefix/*", "/prefix/", true),
        ("/prefix/*", "/prefix/a/b", true),
        ("/prefix/*", "/prefix", false),
        ("*/suffix", "/a/suffix", true),
        ("*/suffix", "/suffix", true),
        ("*/suffix", "/suffix/x", false),
        ("*", "/", true),
        ("*", "/anything?q", true),
        ("/exact", "/exact?q=1", true),
        ("/exact", "/exact#frag", true),
    ];
    for (value, path, want) in cases {
        let p = allow_rule(json!({"to": [{"operation": {"paths": [value]}}]}));
        assert_eq!(allows(&p, &Call::get(path)), *want, "{value} vs {path}");
    }
}

#[test]
fn hosts_case_insensitive_and_port_agnostic() {
    let cases: &[(&str, &str, bool)] = &[
        ("example.com", "example.com", true),
        ("example.com", "EXAMPLE.com", true),
        // hopguard: a value without a port ignores the authority's port.
        ("example.com", "example.com:8080", true),
        ("example.com", "example.com.evil", false),
        // A value with a port is matched against the whole authority, as in Istio.
        ("example.com:8080", "example.com:8080", true),
        ("example.com:8080", "example.com", false),
        ("example.com:*", "example.com:1234", true),
        ("example.com:*", "example.com", false),
        ("*.example.com", "a.example.com:443", true),
        ("*.example.com", "example.com", false),
        ("prefix.example.*", "prefix.example.org", true),
        ("*", "anything", true),
        ("[::1]", "[::1]:8080", true),
    ];
    for (value, authority, want) in cases {
        let p = allow_rule(json!({"to": [{"operation": {"hosts": [value]}}]}));
        assert_eq!(
            allows(&p, &Call::get("/").host(authority)),
            *want,
            "{value} vs {authority}"
        );
    }
    // notHosts: the classic DENY that Istio users must write twice.
    let p = policies(json!({"policies": [{"name": "d", "action": "DENY",
        "rules": [{"to": [{"operation": {"hosts": ["admin.example.com"]}}]}]}]}));
    assert!(!allows(&p, &Call::get("/").host("admin.example.com:80")));
    assert!(!allows(&p, &Call::get("/").host("Admin.Example.Com")));
    assert!(allows(&p, &Call::get("/").host("www.example.com")));
}

#[test]
fn methods_and_ports_with_not_forms() {
    let p = allow_rule(json!({"to": [{"operation": {"notMethods": ["DELETE", "PATCH"], "notPorts": [9000]}}]}));
    table(
        &p,
        &[
            (Call::get("/").port(80), true),
            (Call::new("DELETE", "/").port(80), false),
            (Call::new("PATCH", "/"), false),
            (Call::get("/").port(9000), false),
            (Call::get("/"), true),
        ],
    );
    let p = allow_rule(json!({"to": [{"operation": {"methods": ["G*"], "ports": ["80", "443"]}}]}));
    table(
        &p,
        &[
            (Call::get("/").port(443), true),
            (Call::get("/").port(8443), false),
            (Call::post("/").port(80), false),
            (Call::new("get", "/").port(80), false),
            (Call::get("/"), false),
        ],
    );
}

#[test]
fn principals_forms() {
    let cases: &[(&str, &str, bool)] = &[
        (SLEEP, SLEEP, true),
        (SLEEP, "cluster.local/ns/default/sa/sleep2", false),
        ("cluster.local/ns/default/*", SLEEP, true),
        ("cluster.local/ns/other/*", SLEEP, false),
        ("*/sa/sleep", SLEEP, true),
        ("*/sa/sleepy", SLEEP, false),
        ("*", SLEEP, true),
    ];
    for (value, peer, want) in cases {
        let p = allow_rule(json!({"from": [{"source": {"principals": [value]}}]}));
        assert_eq!(allows(&p, &Call::get("/").peer(peer)), *want, "{value} vs {peer}");
        let n = allow_rule(json!({"from": [{"source": {"notPrincipals": [value]}}]}));
        assert_eq!(allows(&n, &Call::get("/").peer(peer)), !*want, "not {value} vs {peer}");
        // No mTLS: a positive never matches, a negative always does.
        assert!(!allows(&p, &Call::get("/")));
        assert!(allows(&n, &Call::get("/")));
    }
    // Istio matches the SPIFFE scheme: a non-SPIFFE URI SAN is not an exact match.
    let p = allow_rule(json!({"from": [{"source": {"principals": ["example.com/x"]}}]}));
    let mut c = Call::get("/");
    c.conn.peer_uri_san = Some("https://example.com/x".into());
    assert!(!allows(&p, &c));
    // ... but `*` only needs a URI SAN.
    let p = allow_rule(json!({"from": [{"source": {"principals": ["*"]}}]}));
    assert!(allows(&p, &c));
}

#[test]
fn request_principals_forms() {
    let iss = "https://accounts.google.com";
    let claims = json!({"iss": iss, "sub": "104958560606"});
    let cases: &[(&str, bool)] = &[
        ("https://accounts.google.com/104958560606", true),
        ("https://accounts.google.com/1", false),
        ("https://accounts.google.com/*", true),
        ("https://accounts.google.com/1049*", true),
        ("https://accounts.google.com/2*", false),
        ("*/104958560606", true),
        ("*google.com/104958560606", true),
        ("*yahoo.com/104958560606", false),
        ("*606", true),
        // No '/': a prefix of the issuer (a '/' inside `https://` would split there).
        ("https*", true),
        ("http:*", false),
        ("*", true),
    ];
    for (value, want) in cases {
        let p = allow_rule(json!({"from": [{"source": {"requestPrincipals": [value]}}]}));
        assert_eq!(allows(&p, &Call::get("/").claims(claims.clone())), *want, "{value}");
        let w = allow_rule(json!({"when": [{"key": "request.auth.principal", "values": [value]}]}));
        assert_eq!(
            allows(&w, &Call::get("/").claims(claims.clone())),
            *want,
            "when {value}"
        );
        assert!(!allows(&p, &Call::get("/")), "no token never matches {value}");
    }
    // Istio's "require a token" DENY: notRequestPrincipals ["*"].
    let p = policies(json!({"policies": [{"name": "require-jwt", "action": "DENY",
        "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]}]}));
    assert!(!allows(&p, &Call::get("/")));
    assert!(allows(&p, &Call::get("/").claims(claims.clone())));
    assert!(!allows(&p, &Call::get("/").claims(json!({"iss": iss}))), "no sub");
}

#[test]
fn namespaces_service_accounts_trust_domains() {
    let ns = |v: &str, peer: &str| {
        allows(
            &allow_rule(json!({"from": [{"source": {"namespaces": [v]}}]})),
            &Call::get("/").peer(peer),
        )
    };
    assert!(ns("default", SLEEP));
    assert!(!ns("defaul", SLEEP));
    assert!(ns("def*", SLEEP));
    assert!(ns("*ult", SLEEP));
    assert!(ns("d*t", SLEEP), "Istio namespaces are globs");
    assert!(ns("*", SLEEP));
    assert!(!ns("*", "cluster.local/sa/x"), "no /ns/ segment");
    let w = allow_rule(json!({"when": [{"key": "source.namespace", "notValues": ["kube-*"]}]}));
    assert!(allows(&w, &Call::get("/").peer(SLEEP)));
    assert!(!allows(&w, &Call::get("/").peer("cluster.local/ns/kube-system/sa/x")));

    let sa = |v: &str, peer: &str| {
        allows(
            &allow_rule(json!({"from": [{"source": {"serviceAccounts": [v]}}]})),
            &Call::get("/").peer(peer),
        )
    };
    assert!(sa("default/sleep", SLEEP));
    assert!(!sa("default/sleep", "cluster.local/ns/default/sa/sleep-junk"));
    assert!(sa("default/sleep", "cluster.local/ns/default/x/y/sa/sleep"));
    assert!(sa("default/sleep", "cluster.local/ns/default/sa/sleep/extra"));
    assert!(!sa("other/sleep", SLEEP));

    let td = |v: &str, peer: &str| {
        allows(
            &allow_rule(json!({"from": [{"source": {"trustDomains": [v]}}]})),
            &Call::get("/").peer(peer),
        )
    };
    assert!(td("cluster.local", SLEEP));
    assert!(!td("cluster", SLEEP));
    assert!(td("*.local", SLEEP));
    assert!(td("cluster.*", SLEEP));
    assert!(!td("*.remote", SLEEP));
    assert!(td("*", SLEEP));
}

#[test]
fn ip_blocks_and_connection_conditions() {
    let p = allow_rule(json!({"from": [{"source": {"ipBlocks": ["10.0.0.0/8", "192.168.1.7"]}}]}));
    table(
        &p,
        &[
            (Call::get("/").source_ip("10.9.9.9"), true),
            (Call::get("/").source_ip("192.168.1.7"), true),
            (Call::get("/").source_ip("192.168.1.8"), false),
            (Call::get("/"), false),
        ],
    );
    let p = allow_rule(json!({"when": [
        {"key": "destination.ip", "values": ["172.16.0.0/12"]},
        {"key": "destination.port", "values": ["8080"]},
        {"key": "connection.sni", "values": ["*.svc.cluster.local"]},
        {"key": "source.ip", "notValues": ["172.16.0.9"]}
    ]}));
    let ok = Call::get("/")
        .destination_ip("172.16.0.1")
        .port(8080)
        .sni("a.ns.svc.cluster.local")
        .source_ip("10.0.0.1");
    table(
        &p,
        &[
            (ok.clone(), true),
            (ok.clone().port(8081), false),
            (ok.clone().sni("x.example.com"), false),
            (ok.clone().destination_ip("10.0.0.1"), false),
            (ok.clone().source_ip("172.16.0.9"), false),
        ],
    );
}

#[test]
fn header_conditions() {
    // conditions page: request.headers[User-Agent] values ["Mozilla/*"].
    let p = allow_rule(json!({"when": [{"key": "request.headers[User-Agent]", "values": ["Mozilla/*"]}]}));
    table(
        &p,
        &[
            (Call::get("/").header("user-agent", "Mozilla/5.0"), true),
            (Call::get("/").header("user-agent", "curl/8"), false),
            (Call::get("/"), false),
        ],
    );
    // Presence matches an empty value too (Envoy present_match); not* of a missing
    // header holds.
    let p = allow_rule(json!({"when": [{"key": "request.headers[x-debug]", "values": ["*"]}]}));
    assert!(allows(&p, &Call::get("/").header("x-debug", "")));
    assert!(!allows(&p, &Call::get("/")));
    let p = allow_rule(json!({"when": [{"key": "request.headers[x-env]", "notValues": ["prod"]}]}));
    assert!(allows(&p, &Call::get("/")));
    assert!(allows(&p, &Call::get("/").header("x-env", "dev")));
    assert!(!allows(&p, &Call::get("/").header("x-env", "prod")));
    // Repeated headers are matched joined by ',' as Envoy does.
    let p = allow_rule(json!({"when": [{"key": "request.headers[x-a]", "values": ["1,2"]}]}));
    assert!(allows(&p, &Call::get("/").header("x-a", "1").header("x-a", "2")));
    // Pseudo-headers are headers too.
    let p = allow_rule(json!({"when": [{"key": "request.headers[:method]", "values": ["GET"]}]}));
    assert!(allows(&p, &Call::get("/")));
}

#[test]
fn claim_conditions() {
    let claims = json!({
        "iss": "https://idp", "sub": "alice", "azp": "web-app",
        "aud": ["orders", "billing"],
        "scope": "orders:read profile",
        "scp": "a b",
        "groups": ["admins", "dev"],
        "realm_access": {"roles": ["ops"], "level": {"n": 3}},
        "email_verified": true,
        "tier": 2,
        "nested.dot": "x"
    });
    let cases: &[(&str, Value, bool)] = &[
        ("request.auth.claims[iss]", json!(["https://idp"]), true),
        ("request.auth.claims[sub]", json!(["bob"]), false),
        ("request.auth.claims[groups]", json!(["admins"]), true),
        ("request.auth.claims[groups]", json!(["adm*"]), true),
        ("request.auth.claims[groups]", json!(["ops"]), false),
        ("request.auth.claims[realm_access][roles]", json!(["ops"]), true),
        ("request.auth.claims[realm_access][level][n]", json!(["3"]), true),
        ("request.auth.claims[realm_access]", json!(["*"]), false),
        ("request.auth.claims[scope]", json!(["orders:read"]), true),
        ("request.auth.claims[scope]", json!(["profile"]), true),
        ("request.auth.claims[scope]", json!(["orders:write"]), false),
        ("request.auth.claims[scope]", json!(["orders:read profile"]), false),
        ("request.auth.claims[scp]", json!(["b"]), true),
        ("request.auth.claims[email_verified]", json!(["true"]), true),
        ("request.auth.claims[tier]", json!(["2"]), true),
        ("request.auth.claims[nested.dot]", json!(["x"]), true),
        ("request.auth.claims[missing]", json!(["*"]), false),
        ("request.auth.audiences", json!(["billing"]), true),
        ("request.auth.audiences", json!(["shipping"]), false),
        ("request.auth.presenter", json!(["web-app"]), true),
        ("request.auth.presenter", json!(["cli"]), false),
    ];
    for (key, values, want) in cases {
        let p = allow_rule(json!({"when": [{"key": key, "values": values}]}));
        assert_eq!(
            allows(&p, &Call::get("/").claims(claims.clone())),
            *want,
            "{key} {values}"
        );
        let n = allow_rule(json!({"when": [{"key": key, "notValues": values}]}));
        assert_eq!(
            allows(&n, &Call::get("/").claims(claims.clone())),
            !*want,
            "not {key} {values}"
        );
        assert!(!allows(&p, &Call::get("/")), "no token: {key}");
        assert!(allows(&n, &Call::get("/")), "no token, notValues: {key}");
    }
    // spaceDelimitedClaims adds claims to the split list.
    let p = policies(
        json!({"spaceDelimitedClaims": ["roles"], "policies": [{"name": "p", "rules": [
        {"when": [{"key": "request.auth.claims[roles]", "values": ["b"]}]}]}]}),
    );
    assert!(allows(&p, &Call::get("/").claims(json!({"roles": "a b"}))));
    assert!(p.space_delimited_claims.iter().any(|c| c == "scope"));
}

#[test]
fn source_principal_condition_and_combination_semantics() {
    let p = allow_rule(json!({"when": [{"key": "source.principal", "values": [SLEEP]}]}));
    assert!(allows(&p, &Call::get("/").peer(SLEEP)));
    assert!(!allows(&p, &Call::get("/").peer("cluster.local/ns/default/sa/web")));
    // Within a rule: from AND to AND when; entries of from OR; fields of a source AND;
    // values OR.
    let p = allow_rule(json!({
        "from": [{"source": {"namespaces": ["a"], "principals": ["*/sa/x", "*/sa/y"]}},
                 {"source": {"namespaces": ["b"]}}],
        "to": [{"operation": {"methods": ["GET"]}}],
        "when": [{"key": "request.headers[x-ok]", "values": ["1"]}]
    }));
    let ok = |c: Call| c.header("x-ok", "1");
    table(
        &p,
        &[
            (ok(Call::get("/").peer("td/ns/a/sa/x")), true),
            (ok(Call::get("/").peer("td/ns/a/sa/y")), true),
            (ok(Call::get("/").peer("td/ns/a/sa/z")), false),
            (ok(Call::get("/").peer("td/ns/b/sa/z")), true),
            (ok(Call::post("/").peer("td/ns/b/sa/z")), false),
            (Call::get("/").peer("td/ns/b/sa/z"), false),
        ],
    );
    // A value list and its negation in one field: values AND NOT notValues.
    let p = allow_rule(json!({"to": [{"operation": {"paths": ["/api/*"], "notPaths": ["/api/admin*"]}}]}));
    assert!(allows(&p, &Call::get("/api/orders")));
    assert!(!allows(&p, &Call::get("/api/admin/x")));
}

#[test]
fn deny_before_allow_and_policy_order() {
    let p = policies(json!({"policies": [
        {"name": "allow-orders", "action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/orders*"]}}]}]},
        {"name": "deny-delete", "action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]},
        {"name": "audit-all", "action": "AUDIT", "rules": [{}]}
    ]}));
    let o = run(&p, &Call::new("DELETE", "/orders/1"));
    assert!(!o.allowed(), "DENY beats a matching ALLOW");
    assert_eq!(o.verdict.denial.as_ref().unwrap().reason, PolicyReason::PolicyDenied);
    assert_eq!(o.verdict.matched.unwrap().policy, "deny-delete");
    assert_eq!(o.audit.len(), 1, "audited whatever the verdict");
    let o = run(&p, &Call::get("/orders/1"));
    assert!(o.allowed());
    assert_eq!(o.verdict.matched.unwrap().to_string(), "allow-orders/rules[0]");
    let o = run(&p, &Call::get("/users"));
    assert_eq!(o.verdict.denial.unwrap().reason, PolicyReason::PolicyNoMatch);
    assert!(o.dry_run.is_none(), "no dry run configured");
}

#[test]
fn get_only_route_and_scoped_token_scenario() {
    // The show case: a GET-only route refuses POST; a token scoped orders:read
    // reads but cannot write; DENY beats ALLOW.
    let p = policies(json!({"policies": [
        {"name": "orders", "action": "ALLOW", "rules": [
            {"name": "read", "to": [{"operation": {"methods": ["GET"], "paths": ["/orders", "/orders/*"]}}],
             "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]},
            {"name": "write", "to": [{"operation": {"methods": ["POST"], "paths": ["/orders"]}}],
             "when": [{"key": "request.auth.claims[scope]", "values": ["orders:write"]}]}
        ]},
        {"name": "no-internal", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/orders/internal*"]}}]}]}
    ]}));
    let reader = json!({"iss": "i", "sub": "s", "scope": "openid orders:read"});
    let writer = json!({"iss": "i", "sub": "s", "scope": "orders:read orders:write"});
    table(
        &p,
        &[
            (Call::get("/orders").claims(reader.clone()), true),
            (Call::post("/orders").claims(reader.clone()), false),
            (Call::post("/orders").claims(writer.clone()), true),
            (Call::get("/orders/internal/x").claims(writer), false),
        ],
    );
    let o = run(&p, &Call::get("/orders").claims(reader));
    assert_eq!(o.verdict.matched.unwrap().to_string(), "orders/read");
}
