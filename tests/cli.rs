//! The `hopguard` command-line tool, run as a user runs it: outputs and exit codes of `check`,
//! `explain`, `translate` and `reasons`; and `explain` agreeing with the filter in a real Envoy on
//! the same configuration and tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

#[path = "schema_check/mod.rs"]
mod schema_check;

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use support::envoy::{bootstrap_yaml, hopguard_filter_yaml, repo_root, Envoy, EnvoyOptions, Listener, TempDir};
use support::http;
use support::mint::{self, Signer};
use support::upstream::Upstream;

const ISS: &str = "https://idp.hopguard.test";
const AUD: &str = "orders";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

fn hopguard(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hopguard"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    hopguard(args, "")
}

fn signer() -> Signer {
    Signer::new("ES256", "k-ES256")
}

/// The configuration shared by the CLI and the Envoy under test.
fn config(s: &Signer) -> Value {
    json!({
        "providers": [{
            "issuer": ISS,
            "audiences": [AUD],
            "jwks": mint::jwks(&[s]),
            "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
            "fromCookies": ["session"],
            "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]
        }],
        "realm": "orders-api"
    })
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Manners
// ---------------------------------------------------------------------------------------------

#[test]
fn help_version_and_usage_errors() {
    let help = run(&["--help"]);
    assert_eq!(help.code, 0);
    for word in ["check", "explain", "translate", "oci-image", "Exit codes", "--output"] {
        assert!(help.stdout.contains(word), "{word}: {}", help.stdout);
    }
    let version = run(&["--version"]);
    assert_eq!(
        (version.code, version.stdout.trim()),
        (0, format!("hopguard {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    for cmd in ["check", "explain", "translate", "oci-image", "reasons"] {
        let h = run(&[cmd, "--help"]);
        assert_eq!(h.code, 0, "{cmd}");
        assert!(h.stdout.contains("Usage: hopguard"), "{cmd}: {}", h.stdout);
        assert_eq!(run(&["help", cmd]).stdout, h.stdout);
    }
    for (args, needle) in [
        (vec![], "no command"),
        (vec!["frobnicate"], "unknown command"),
        (vec!["check"], "exactly one CONFIG"),
        (vec!["check", "a", "b"], "exactly one CONFIG"),
        (vec!["check", "--bogus", "x"], "unknown option --bogus"),
        (vec!["check", "x", "--output", "yaml"], "--output must be text or json"),
        (vec!["explain"], "--config is required"),
        (vec!["explain", "--config", "x", "--at", "yesterday"], "--at"),
        (
            vec!["explain", "--config", "x", "--token-in", "query:t", "--token", "t"],
            "--token-in",
        ),
        (
            vec!["explain", "--config", "-", "--token", "-"],
            "cannot both read stdin",
        ),
        (
            vec!["explain", "--config", "x", "--peer", "https://web.example.com"],
            "is not a SPIFFE ID",
        ),
        (vec!["explain", "--config", "x", "--peer", ""], "is not a SPIFFE ID"),
        (
            vec!["explain", "--config", "x", "--peer-cert-sha256", "abcd"],
            "is not a SHA-256 digest",
        ),
        (vec!["oci-image", "--wasm", "x"], "--wasm and --out are required"),
        (vec!["check", "/nonexistent/hopguard.json"], "cannot read"),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn reasons_lists_the_reason_table() {
    let r = run(&["reasons", "-o", "json"]);
    assert_eq!(r.code, 0);
    let list = r.json()["reasons"].as_array().unwrap().clone();
    assert_eq!(list.len(), hopguard::reason::Reason::ALL.len());
    for (row, reason) in list.iter().zip(hopguard::reason::Reason::ALL) {
        assert_eq!(row["code"], reason.code());
        assert_eq!(row["status"], reason.spec().status);
    }
    let text = run(&["reasons"]);
    assert!(text
        .stdout
        .lines()
        .any(|l| l.starts_with("token_expired") && l.contains("401")));
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_accepts_and_refuses_exactly_as_the_filter() {
    let dir = TempDir::new("cli-check");
    let good = write(&dir, "good.json", &config(&signer()).to_string());
    let r = run(&["check", &good]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("ok: configuration accepted (1 provider)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("k-ES256 EC P-256 [ES256]"), "{}", r.stdout);
    assert!(
        !r.stdout.contains(&signer().jwk()["x"].as_str().unwrap()[..12]),
        "no key material"
    );

    let mut bad = config(&signer());
    bad["providers"][0]["clockSkewSeconds"] = json!(9999);
    let bad = write(&dir, "bad.json", &bad.to_string());
    let r = run(&["check", &bad]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "configuration refused: $.providers[0].clockSkewSeconds: must be a whole number from 0 to 600\n"
    );
    let j = run(&["check", "-o", "json", &bad]).json();
    assert_eq!(j["valid"], false);
    assert_eq!(j["documents"][0]["error"]["path"], "$.providers[0].clockSkewSeconds");

    // stdin, and the empty configuration the filter gets when pluginConfig is absent.
    let r = hopguard(&["check", "-"], "  \n");
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .starts_with("configuration refused: $: the configuration is empty"),
        "{}",
        r.stdout
    );
    let r = hopguard(&["check", "-"], &config(&signer()).to_string());
    assert_eq!(r.code, 0);
}

#[test]
fn check_reads_istio_and_envoy_manifests() {
    for f in [
        "istio/wasmplugin-workload.yaml",
        "istio/wasmplugin-mesh.yaml",
        "istio/wasmplugin-ingress-gateway.yaml",
        "istio/wasmplugin-remote-jwks.yaml",
        "istio/envoyfilter.yaml",
        "envoy/sidecar.yaml",
        "envoy/edge.yaml",
    ] {
        let r = run(&["check", f]);
        assert_eq!(r.code, 0, "{f}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(&format!("{f}: ")), "{f}: {}", r.stdout);
        assert!(r.stdout.contains("ok: configuration accepted"), "{f}: {}", r.stdout);
    }
    let dir = TempDir::new("cli-check-yaml");
    let yaml = std::fs::read_to_string(repo_root().join("istio/wasmplugin-workload.yaml"))
        .unwrap()
        .replace("    requirement: required", "    requirement: always");
    let f = write(&dir, "plugin.yaml", &yaml);
    let r = run(&["check", &f]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.ends_with(
            "WasmPlugin orders/hopguard: configuration refused: $.requirement: must be one of \"required\", \
             \"allowMissing\", \"allowMissingOrFailed\"\n"
        ),
        "{}",
        r.stdout
    );
    // Kubernetes reads YAML 1.1: a bare `off` becomes false on its way to the filter.
    let mesh = std::fs::read_to_string(repo_root().join("istio/wasmplugin-mesh.yaml")).unwrap();
    assert!(mesh.contains("allowLog: \"off\""));
    assert!(!run(&["check", "istio/wasmplugin-mesh.yaml"])
        .stdout
        .contains("warning:"));
    let bare = write(&dir, "bare.yaml", &mesh.replace("allowLog: \"off\"", "allowLog: off"));
    let r = run(&["check", &bare]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("warning: $.telemetry.allowLog is the string \"off\""),
        "{}",
        r.stdout
    );
    let nothing = write(
        &dir,
        "nothing.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    let r = run(&["check", &nothing]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no hopguard configuration found"), "{}", r.stderr);
}

/// The line `check` prints is the line the filter logs when Envoy loads the same configuration.
#[test]
fn check_prints_the_line_the_filter_logs() {
    let cfg = json!({"providers": [{"issuer": ISS, "jwks": mint::jwks(&[&signer()]), "fromCookies": ["bad cookie"]}]});
    let r = hopguard(&["check", "-"], &cfg.to_string());
    assert_eq!(r.code, 1);
    let line = r.stdout.trim_end();
    assert!(
        line.starts_with("configuration refused: $.providers[0].fromCookies[0]:"),
        "{line}"
    );

    let listener = Listener::new("l").filter(hopguard_filter_yaml(&cfg.to_string()));
    let (ok, output) = Envoy::validate_yaml(&bootstrap_yaml(&[listener], 9));
    assert!(!ok);
    assert!(
        output.contains(&format!("hopguard: {line}")),
        "{line}\nnot in:\n{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// explain
// ---------------------------------------------------------------------------------------------

#[test]
fn explain_never_prints_the_token_or_its_signature() {
    let dir = TempDir::new("cli-secret");
    let s = signer();
    let cfg = write(&dir, "c.json", &config(&s).to_string());
    let now = mint::now();
    let tokens = [
        s.token(&mint::claims(ISS, AUD, "alice", now)),
        s.token(&mint::claims(ISS, "billing", "alice", now)),
        Signer::new("ES256", "k-ES256").sign(
            &json!({"alg": "ES256", "kid": "nope"}),
            &mint::claims(ISS, AUD, "a", now),
        ),
    ];
    for token in &tokens {
        let sig = token.rsplit('.').next().unwrap();
        for out in ["text", "json"] {
            for place in [None, Some("cookie:session")] {
                let mut args = vec!["explain", "--config", &cfg, "--token", token, "-o", out];
                if let Some(p) = place {
                    args.extend(["--token-in", p]);
                }
                let r = run(&args);
                assert!(
                    !r.stdout.contains(token.as_str()) && !r.stdout.contains(sig),
                    "{}",
                    r.stdout
                );
                assert!(r.stdout.contains(&hopguard::telemetry::fingerprint(token)));
            }
        }
    }
    // A nested token inside a claim is not shown either.
    let inner = tokens[0].clone();
    let outer = s.token(&json!({"iss": ISS, "aud": AUD, "sub": "a", "exp": now + 60, "act_token": inner}));
    let r = run(&["explain", "--config", &cfg, "--token", &outer]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        !r.stdout.contains(&inner) && r.stdout.contains("<redacted: a token"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_reads_the_token_from_a_file_or_stdin_and_explains_why() {
    let dir = TempDir::new("cli-explain");
    let s = signer();
    let cfg = write(&dir, "c.json", &config(&s).to_string());
    let at = 1_900_000_000u64;
    let expired = s.token(&json!({"iss": ISS, "aud": AUD, "sub": "bob", "iat": at - 7200, "exp": at - 3600}));
    let file = write(&dir, "token.txt", &format!("{expired}\n"));

    let by_file = run(&[
        "explain",
        "--config",
        &cfg,
        "--token",
        &format!("@{file}"),
        "--at",
        "2030-03-17T17:46:40Z",
    ]);
    let by_stdin = hopguard(
        &["explain", "--config", &cfg, "--token", "-", "--at", &at.to_string()],
        &expired,
    );
    assert_eq!(by_file.stdout, by_stdin.stdout);
    assert_eq!(by_file.code, 1);
    let out = by_file.stdout;
    assert!(
        out.starts_with("verdict:  deny (HTTP 401)\nreason:   token_expired"),
        "{out}"
    );
    assert!(
        out.contains("exp 2030-03-17T16:46:40Z is 1h before 2030-03-17T17:46:40Z (clock skew allowed: 60s)"),
        "{out}"
    );
    assert!(out.contains("claims (NOT verified)"), "{out}");
    assert!(
        out.contains("www-authenticate: Bearer realm=\"orders-api\", error=\"invalid_token\""),
        "{out}"
    );

    let wrong_aud = s.token(&json!({"iss": ISS, "aud": ["billing"], "sub": "bob", "exp": at + 60}));
    let j = run(&[
        "explain",
        "--config",
        &cfg,
        "--token",
        &wrong_aud,
        "--at",
        &at.to_string(),
        "-o",
        "json",
    ])
    .json();
    assert_eq!(j["reason"]["code"], "audience_mismatch");
    assert_eq!(j["status"], 403);
    assert!(j["hints"][0].as_str().unwrap().contains("[\"billing\"]"), "{j}");

    let valid = s.token(&json!({"iss": ISS, "aud": AUD, "sub": "carol", "exp": at + 60}));
    let r = run(&[
        "explain",
        "--config",
        &cfg,
        "--token",
        &valid,
        "--at",
        &at.to_string(),
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0);
    let j = r.json();
    assert_eq!(
        (j["verdict"].as_str(), j["provider"].as_str(), j["kid"].as_str()),
        (Some("allow"), Some(ISS), Some("k-ES256"))
    );
    assert_eq!(j["token"]["verified"], true);
    assert_eq!(j["token"]["claims"]["sub"], "carol");
    assert_eq!(
        j["upstream"],
        json!([{"op": "remove", "header": "authorization"}, {"op": "set", "header": "x-jwt-sub", "value": "carol"}])
    );

    // A refused configuration: the filter fails closed.
    let bad = write(&dir, "bad.json", r#"{"providers": []}"#);
    let r = run(&["explain", "--config", &bad, "--token", &valid]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .starts_with("configuration refused: $.providers: at least one provider is required\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("config_invalid") && r.stdout.contains("HTTP 503"),
        "{}",
        r.stdout
    );
}

/// A provider with fetched keys: explain has no network; `--jwks ISSUER=FILE` supplies the set.
#[test]
fn explain_takes_fetched_keys_from_a_file() {
    let dir = TempDir::new("cli-jwks");
    let s = signer();
    let remote =
        json!({"providers": [{"issuer": ISS, "jwksUri": format!("{ISS}/keys"), "cluster": "outbound|443||idp"}]});
    let cfg = write(&dir, "remote.json", &remote.to_string());
    let set = write(&dir, "jwks.json", &mint::jwks(&[&s]).to_string());
    let token = s.token(&mint::claims(ISS, AUD, "dave", mint::now()));

    let without = run(&["explain", "--config", &cfg, "--token", &token, "-o", "json"]);
    assert_eq!(without.code, 1, "{}", without.stdout);
    let j = without.json();
    assert_ne!(j["verdict"], "allow");
    assert!(j["notes"].to_string().contains("--jwks"), "{j}");

    let with = run(&[
        "explain",
        "--config",
        &cfg,
        "--token",
        &token,
        "--jwks",
        &format!("{ISS}={set}"),
        "-o",
        "json",
    ]);
    assert_eq!(with.code, 0, "{}", with.stdout);
    assert_eq!(with.json()["token"]["claims"]["sub"], "dave");

    let nobody = run(&["explain", "--config", &cfg, "--jwks", &format!("https://other={set}")]);
    assert_eq!(nobody.code, 2);
    assert!(
        nobody.stderr.contains("no provider with issuer or name"),
        "{}",
        nobody.stderr
    );
}

/// `--peer` and `--peer-cert-sha256` describe the mTLS connection: policies on principals and
/// namespaces, and workload and certificate binding, are decided as the filter decides them.
#[test]
fn explain_applies_the_peer_identity_and_certificate() {
    let dir = TempDir::new("cli-peer");
    let s = signer();
    let frontend = "spiffe://cluster.local/ns/web/sa/frontend";
    let mut cfg = config(&s);
    cfg["authorization"] = json!({"policies": [
        {"name": "deny-dev", "action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["dev"]}}]}]},
        {"name": "orders", "action": "ALLOW", "rules": [
            {"name": "read", "from": [{"source": {"principals": ["cluster.local/ns/web/sa/frontend"]}}],
             "to": [{"operation": {"methods": ["GET"]}}]},
            {"name": "write", "to": [{"operation": {"methods": ["POST"]}}],
             "bind": {"workload": {"claim": "azp"}, "certificate": true}}
        ]}
    ]});
    let cfg = write(&dir, "c.json", &cfg.to_string());
    let at = mint::now();
    // The peer's certificate digest (hex, as Envoy reports it) and the token bound to it.
    let digest: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(7).wrapping_add(3)).collect();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let colons: String = digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let mut claims = mint::claims(ISS, AUD, "alice", at);
    claims["azp"] = json!(frontend);
    claims["cnf"] = json!({"x5t#S256": hopguard::b64::encode(&digest)});
    let bound = s.token(&claims);

    let explain = |method: &str, extra: &[&str]| {
        let at = at.to_string();
        let mut args = vec![
            "explain", "--config", &cfg, "--token", &bound, "--method", method, "--at", &at,
        ];
        args.extend(extra);
        args.extend(["-o", "json"]);
        let r = run(&args);
        let j = r.json();
        (r.code, j)
    };
    let reason = |j: &Value| j["reason"]["code"].as_str().map(str::to_owned);

    // GET: the read rule needs the frontend as the peer.
    let (code, j) = explain("GET", &[]);
    assert_eq!((code, reason(&j).as_deref()), (1, Some("cert_binding_mismatch")), "{j}");
    assert!(
        j["hints"]
            .to_string()
            .contains("the peer certificate's SHA-256 is unknown"),
        "{j}"
    );
    let (code, j) = explain("GET", &["--peer", frontend, "--peer-cert-sha256", &hex]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["record"]["rule"], "orders/read");
    assert_eq!(j["connection"], json!({"peer": frontend, "peerCertSha256": hex}));
    // Istio's principal form (no scheme) and openssl's fingerprint form are the same peer.
    let (code, j) = explain(
        "GET",
        &[
            "--peer",
            "cluster.local/ns/web/sa/frontend",
            "--peer-cert-sha256",
            &colons,
        ],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["connection"], json!({"peer": frontend, "peerCertSha256": hex}));
    // Another workload: no ALLOW rule; a workload in dev: the DENY rule.
    let (code, j) = explain(
        "GET",
        &[
            "--peer",
            "spiffe://cluster.local/ns/web/sa/other",
            "--peer-cert-sha256",
            &hex,
        ],
    );
    assert_eq!((code, reason(&j).as_deref()), (1, Some("policy_no_match")), "{j}");
    assert!(
        j["hints"]
            .to_string()
            .contains("the calling workload (mTLS peer) is spiffe://cluster.local/ns/web/sa/other"),
        "{j}"
    );
    let (code, j) = explain(
        "GET",
        &[
            "--peer",
            "spiffe://cluster.local/ns/dev/sa/x",
            "--peer-cert-sha256",
            &hex,
        ],
    );
    assert_eq!((code, reason(&j).as_deref()), (1, Some("policy_denied")), "{j}");
    assert_eq!(j["record"]["rule"], "deny-dev/rules[0]");

    // POST: the write rule binds the token to the calling workload (azp) and its certificate.
    let (code, j) = explain("POST", &["--peer", frontend, "--peer-cert-sha256", &hex]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["record"]["rule"], "orders/write");
    let other_cert = "ab".repeat(32);
    let (code, j) = explain("POST", &["--peer", frontend, "--peer-cert-sha256", &other_cert]);
    assert_eq!((code, reason(&j).as_deref()), (1, Some("cert_binding_mismatch")), "{j}");
    assert!(
        j["hints"].to_string().contains(&format!(
            "token cnf x5t#S256 is {hex}; the peer certificate's SHA-256 is {other_cert}"
        )),
        "{j}"
    );
    let (code, j) = explain(
        "POST",
        &[
            "--peer",
            "spiffe://cluster.local/ns/web/sa/replayer",
            "--peer-cert-sha256",
            &hex,
        ],
    );
    assert_eq!((code, reason(&j).as_deref()), (1, Some("workload_mismatch")), "{j}");

    // Text output shows the connection.
    let r = run(&[
        "explain",
        "--config",
        &cfg,
        "--token",
        &bound,
        "--at",
        &at.to_string(),
        "--peer",
        frontend,
        "--peer-cert-sha256",
        &hex,
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("peer:     {frontend}, certificate SHA-256 {hex}\n")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("not applied"), "{}", r.stdout);
}

/// `explain` and the filter in a real Envoy, same configuration, same tokens, same moment:
/// same status, same WWW-Authenticate, same problem body, same decision record, and the request
/// the upstream receives carries what `explain` says it would.
#[test]
fn explain_agrees_with_the_filter_in_real_envoy() {
    let dir = TempDir::new("cli-agree");
    let s = signer();
    let cfg = config(&s);
    let cfg_path = write(&dir, "c.json", &cfg.to_string());
    let up = Upstream::start();
    // wasm at debug: the filter logs allowed requests at debug, refusals at info.
    let envoy = Envoy::start_with(
        &bootstrap_yaml(
            &[Listener::new("hg").filter(hopguard_filter_yaml(&cfg.to_string()))],
            up.port(),
        ),
        &EnvoyOptions::new(1).component_log_level("wasm:debug"),
    );
    let now = mint::now();
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = mint::claims(ISS, AUD, "alice", now);
        edit(&mut c);
        c
    };
    let valid = s.token(&claims(&|_| {}));
    let cases: Vec<(&str, Option<String>, Vec<String>, u16)> = vec![
        ("valid", Some(valid.clone()), vec![], 200),
        (
            "expired",
            Some(s.token(&claims(&|c| c["exp"] = json!(now - 600)))),
            vec![],
            401,
        ),
        (
            "wrong audience",
            Some(s.token(&claims(&|c| c["aud"] = json!("billing")))),
            vec![],
            403,
        ),
        ("missing", None, vec![], 401),
        (
            "unknown kid",
            Some(s.sign(&json!({"alg": "ES256", "kid": "k-old"}), &claims(&|_| {}))),
            vec![],
            401,
        ),
        (
            "in the cookie",
            Some(valid.clone()),
            vec!["--token-in".into(), "cookie:session".into()],
            200,
        ),
        (
            "two tokens",
            Some(valid.clone()),
            vec!["--header".into(), format!("cookie: session={valid}")],
            400,
        ),
    ];
    for (i, (name, token, extra, want)) in cases.iter().enumerate() {
        let request_id = format!("cli-agree-{i}");
        let mut args: Vec<String> = vec![
            "explain".into(),
            "--config".into(),
            cfg_path.clone(),
            "--path".into(),
            "/orders/1".into(),
            "--header".into(),
            format!("x-request-id: {request_id}"),
            "--at".into(),
            mint::now().to_string(),
            "-o".into(),
            "json".into(),
        ];
        if let Some(t) = token {
            args.extend(["--token".into(), t.clone()]);
        }
        args.extend(extra.iter().cloned());
        let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let explained = r.json();

        // The same request to Envoy, built from what explain says it sent (token restored).
        let mut headers: Vec<(String, String)> = Vec::new();
        for h in explained["request"]["headers"].as_array().unwrap() {
            let (n, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
            if !n.starts_with(':') {
                let v = token.as_ref().map_or(v.to_owned(), |t| v.replace("<token>", t));
                headers.push((n.to_owned(), v));
            }
        }
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let before = up.count();
        let got = http::request(envoy.port("hg"), "GET", "/orders/1", &header_refs);

        assert_eq!(got.status, *want, "{name}: envoy {got:?}");
        assert_eq!(r.code, if *want == 200 { 0 } else { 1 }, "{name}");
        if *want == 200 {
            assert_eq!(explained["verdict"], "allow", "{name}");
            assert_eq!(up.count(), before + 1);
            let seen = &up.requests()[before];
            // What explain says is removed is gone; what it says is set is there.
            for m in explained["upstream"].as_array().unwrap() {
                let h = m["header"].as_str().unwrap();
                match m["op"].as_str().unwrap() {
                    "remove" => assert!(
                        seen.header_all(h)
                            .iter()
                            .all(|v| !v.contains(token.as_ref().unwrap().as_str())),
                        "{name}: {h} still carries the token"
                    ),
                    "set" => assert_eq!(seen.header(h), m["value"].as_str(), "{name}: {h}"),
                    "add" => assert!(
                        seen.header_all(h).contains(&m["value"].as_str().unwrap()),
                        "{name}: {h}"
                    ),
                    other => panic!("{other}"),
                }
            }
            assert!(
                !seen.mentions(token.as_ref().unwrap()),
                "{name}: upstream saw the token"
            );
        } else {
            assert_eq!(explained["status"], got.status, "{name}");
            let response = &explained["response"];
            for h in response["headers"].as_array().unwrap() {
                let (n, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
                assert_eq!(got.header(n), Some(v), "{name}: {n}");
            }
            assert_eq!(got.json(), response["body"], "{name}: problem body");
            assert_eq!(got.json()["reason"], explained["reason"]["code"], "{name}");
        }
        // The decision record the filter logged for this request.
        let logged = wait_for_record(&envoy, &request_id, explained["record"]["token_fingerprint"].as_str());
        let mut expected = explained["record"].clone();
        // Measurements (`verify_us`, `cache_hit`: explain has no verified-token cache) exist only
        // where the filter runs; the decision must agree.
        let mut logged = logged;
        for record in [&mut logged, &mut expected] {
            if let Some(m) = record.as_object_mut() {
                m.retain(|k, _| !k.ends_with("_us") && !k.ends_with("_ms") && k != "cache_hit");
            }
        }
        if logged["request_id"] != expected["request_id"] {
            // Envoy may replace a client's x-request-id; everything else must match.
            expected["request_id"] = logged["request_id"].clone();
        }
        assert_eq!(logged, expected, "{name}: decision record");
    }
}

/// The `hopguard: decision {...}` record Envoy logged for `request_id` (or, if Envoy replaced the
/// id, the one with this token fingerprint).
fn wait_for_record(envoy: &Envoy, request_id: &str, fingerprint: Option<&str>) -> Value {
    let mut found = None;
    support::wait_until(std::time::Duration::from_secs(5), || {
        let logs = envoy.logs();
        let records: Vec<Value> = logs
            .lines()
            .filter_map(|l| l.split_once("hopguard: decision ").map(|(_, j)| j))
            .filter_map(|j| serde_json::from_str(j.trim()).ok())
            .collect();
        found = records
            .iter()
            .find(|r| r["request_id"] == request_id)
            .or_else(|| {
                records
                    .iter()
                    .rev()
                    .find(|r| fingerprint.is_some() && r["token_fingerprint"].as_str() == fingerprint)
            })
            .or_else(|| if fingerprint.is_none() { records.last() } else { None })
            .cloned();
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no decision record for {request_id} in:\n{}", envoy.logs()))
}

// ---------------------------------------------------------------------------------------------
// translate
// ---------------------------------------------------------------------------------------------

/// Istio's CRDs, as in tests/istio_manifests.rs (`$HOPGUARD_ISTIO_CRDS` overrides the path).
fn istio_crds() -> schema_check::Crds {
    let path = std::env::var_os("HOPGUARD_ISTIO_CRDS")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/istio/customresourcedefinitions.gen.yaml"));
    schema_check::Crds::load(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn translate(file: &str) -> (Run, Value) {
    let r = run(&["translate", "-o", "json", &format!("tests/data/istio/{file}")]);
    let j = r.json();
    (r, j)
}

fn notes(j: &Value) -> String {
    j["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn translate_inputs_are_valid_istio_resources() {
    let crds = istio_crds();
    for entry in std::fs::read_dir(repo_root().join("tests/data/istio")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            let errors = crds.validate(&v);
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        }
    }
}

/// Istio's sample JWK Set, key and tokens (istio/istio security/tools/jwt/samples), as used by
/// Istio's task "Authorization with JWT": demo.jwt (no groups) and groups-scope.jwt (groups
/// [group1, group2]), both from issuer and subject testing@secure.istio.io, RS256.
const ISTIO_DEMO_JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkRIRmJwb0lVcXJZOHQyenBBMnFYZkNtcjVWTzVaRXI0UnpIVV8tZW52dlEiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQ2ODU5ODk3MDAsImZvbyI6ImJhciIsImlhdCI6MTUzMjM4OTcwMCwiaXNzIjoidGVzdGluZ0BzZWN1cmUuaXN0aW8uaW8iLCJzdWIiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9.CfNnxWP2tcnR9q0vxyxweaF3ovQYHYZl82hAUsn21bwQd9zP7c-LS9qd_vpdLG4Tn1A15NxfCjp5f7QNBUo-KC9PJqYpgGbaXhaGx7bEdFWjcwv3nZzvc7M__ZpaCERdwU7igUmJqYGBYQ51vr2njU9ZimyKkfDe3axcyiBZde7G6dabliUosJvvKOPcKIWPccCgefSj_GNfwIip3-SsFdlR7BtbVUcqR-yv-XOxJ3Uc1MI0tz3uMiiZcyPV7sNCU4KRnemRIMHVOfuvHsU60_GhGbiSFzgPTAa9WTltbnarTbxudb_YEOx12JiwYToeX0DCPb43W1tzIBxgm8NxUg";
const ISTIO_GROUPS_SCOPE_JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkRIRmJwb0lVcXJZOHQyenBBMnFYZkNtcjVWTzVaRXI0UnpIVV8tZW52dlEiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjM1MzczOTExMDQsImdyb3VwcyI6WyJncm91cDEiLCJncm91cDIiXSwiaWF0IjoxNTM3MzkxMTA0LCJpc3MiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyIsInNjb3BlIjpbInNjb3BlMSIsInNjb3BlMiJdLCJzdWIiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9.EdJnEZSH6X8hcyEii7c8H5lnhgjB5dwo07M5oheC8Xz8mOllyg--AHCFWHybM48reunF--oGaG6IXVngCEpVF0_P5DwsUoBgpPmK1JOaKN6_pe9sh0ZwTtdgK_RP01PuI7kUdbOTlkuUi2AO-qUyOm7Art2POzo36DLQlUXv8Ad7NBOqfQaKjE9ndaPWT7aexUsBHxmgiGbz1SyLH879f7uHYPbPKlpHU6P9S-DaKnGLaEchnoKnov7ajhrEhGXAQRukhDPKUHO9L30oPIr5IJllEQfHYtt6IZvlNUGeLUcif3wpry1R5tBXRicx2sXMQ7LyuDremDbcNy_iE76Upg";

/// The translated `authorization` section, checked by the filter's parser with a stand-in
/// provider (a configuration needs one).
fn accepted_with_a_provider(authorization: &Value) -> hopguard::config::Config {
    let cfg = json!({
        "providers": [{"issuer": ISS, "jwks": mint::jwks(&[&signer()])}],
        "authorization": authorization,
    });
    hopguard::config::Config::from_value(&cfg).unwrap_or_else(|e| panic!("{e:?}\n{cfg:#}"))
}

#[test]
fn translate_istios_documented_examples() {
    // Require JWT for app=httpbin: jwksUri through the Istio cluster; the AuthorizationPolicy that
    // asks for any request principal becomes the same policy, and a request without a token still
    // passes authentication (allowMissing) to be refused by it with 403, as in Istio.
    let (r, j) = translate("request_authentication_examples.yaml");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        j["config"],
        json!({"providers": [{"issuer": "issuer-foo", "jwksUri": "https://example.com/.well-known/jwks.json",
                              "cluster": "outbound|443||example.com"}],
               "requirement": "allowMissing",
               "authorization": {"policies": [{"name": "httpbin", "action": "ALLOW", "rules": [
                   {"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]}})
    );
    assert_eq!(j["valid"], true);
    let n = notes(&j);
    assert!(
        n.contains("selector {\"app\":\"httpbin\"} belongs on the WasmPlugin"),
        "{n}"
    );
    assert!(n.contains("refuses it with 403 policy_no_match, as Istio does"), "{n}");

    // Mesh-wide in the root namespace.
    let (r, j) = translate("request_authentication_mesh.yaml");
    assert_eq!(r.code, 0);
    assert!(notes(&j).contains("mesh-wide (root namespace, no selector)"));
    assert_eq!(
        j["config"]["authorization"]["policies"][0]["name"],
        "require-jwt-for-all"
    );

    // Issuers without keys or URLs: not expressible, and said so; the per-host rules translate.
    let (r, j) = translate("request_authentication_per_host.yaml");
    assert_eq!(r.code, 1);
    assert_eq!(j["valid"], false);
    assert_eq!(
        j["config"]["requirement"], "allowMissing",
        "Istio lets requests without a token through"
    );
    assert_eq!(j["config"]["providers"].as_array().unwrap().len(), 2);
    let n = notes(&j);
    assert!(
        n.contains("\"issuer-foo\" is not an http(s) URL for OpenID Connect discovery"),
        "{n}"
    );
    assert_eq!(j["error"]["path"], "$.providers[0].jwks");
    assert_eq!(
        j["config"]["authorization"]["policies"][0]["rules"][1],
        json!({"from": [{"source": {"requestPrincipals": ["issuer-bar/*"]}}],
               "to": [{"operation": {"hosts": ["another-host.com"]}}]})
    );
    accepted_with_a_provider(&j["config"]["authorization"]);

    // Every JWTRule field of the proto's doc comments (v1beta1).
    let (r, j) = translate("jwt_rule_fields.yaml");
    assert_eq!(r.code, 0, "{}", r.stdout);
    let p = &j["config"]["providers"][0];
    assert_eq!(
        p["audiences"],
        json!(["bookstore_android.apps.example.com", "bookstore_web.apps.example.com"])
    );
    assert_eq!(
        p["fromHeaders"],
        json!([{"name": "x-jwt-assertion", "prefix": "Bearer "}])
    );
    assert_eq!(p["fromParams"], json!(["my_token"]));
    assert_eq!(p["fromCookies"], json!(["auth-token"]));
    assert_eq!(p["outputPayloadToHeader"], "x-jwt-payload");
    assert_eq!(p["forwardOriginalToken"], true);
    assert_eq!(
        p["outputClaimToHeaders"][2],
        json!({"header": "x-jwt-claim-group", "claim": "nested.key.group"})
    );
    assert_eq!(p["fetchTimeoutMs"], 1500, "timeout 1.5s");
    assert_eq!(p["cluster"], "outbound|443||example.com");
    let n = notes(&j);
    assert!(
        n.contains(
            "spaceDelimitedClaims [\"custom_scope\", \"provider.login.scope\", \"roles\"] only affects \
                    AuthorizationPolicy claim matching, and the input has no AuthorizationPolicy"
        ),
        "{n}"
    );
    assert!(n.contains("requireExpiration"), "{n}");
    assert!(j["config"].get("authorization").is_none());

    // With an AuthorizationPolicy, the jwtRule's spaceDelimitedClaims reach the policies.
    let fields = std::fs::read_to_string(repo_root().join("tests/data/istio/jwt_rule_fields.yaml")).unwrap();
    let with_policy = format!(
        "{fields}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: roles, \
         namespace: bookstore}}\nspec:\n  rules:\n  - when: [{{key: \"request.auth.claims[roles]\", values: \
         [admin]}}]\n"
    );
    let r = hopguard(&["translate", "-o", "json", "-"], &with_policy);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let j = r.json();
    assert_eq!(
        j["config"]["authorization"]["spaceDelimitedClaims"],
        json!(["custom_scope", "provider.login.scope", "roles"])
    );
    assert!(notes(&j).contains("becomes authorization.spaceDelimitedClaims"));
    let cfg = hopguard::config::Config::from_value(&j["config"]).unwrap();
    assert!(cfg
        .authorization
        .space_delimited_claims
        .contains(&"provider.login.scope".to_owned()));
}

/// The README's worked translation is what the tool writes.
#[test]
fn translate_writes_the_readmes_worked_translation() {
    let (r, j) = translate("readme_worked_translation.yaml");
    assert_eq!(r.code, 0, "{}", notes(&j));
    assert_eq!(
        j["config"],
        json!({"providers": [{"issuer": "https://idp.example.com", "audiences": ["orders"],
                              "jwksUri": "https://idp.example.com/.well-known/jwks.json",
                              "cluster": "outbound|443||idp.example.com", "forwardOriginalToken": false}],
               "requirement": "allowMissing",
               "authorization": {"policies": [{"name": "orders", "action": "ALLOW", "rules": [{
                   "from": [{"source": {"requestPrincipals": ["https://idp.example.com/*"], "namespaces": ["web"]}}],
                   "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/*"]}}],
                   "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]}]}]}})
    );
}

/// Every example of Istio's authorization_policy.proto becomes a policy in the same words.
#[test]
fn translate_authorization_policies_into_the_filters_vocabulary() {
    let (r, j) = translate("authorization_policy_examples.yaml");
    // No RequestAuthentication: no provider, so not yet a configuration; the policies are there.
    assert_eq!(r.code, 1);
    assert_eq!(j["valid"], false);
    assert_eq!(j["error"]["path"], "$.providers");
    assert_eq!(j["config"]["requirement"], "allowMissing");
    let n = notes(&j);
    assert!(n.contains("no RequestAuthentication resource found"), "{n}");
    let policies = j["config"]["authorization"]["policies"].as_array().unwrap().clone();
    let summary: Vec<(&str, &str, usize, bool)> = policies
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["action"].as_str().unwrap(),
                p["rules"].as_array().map_or(0, Vec::len),
                p["dryRun"] == true,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("httpbin", "ALLOW", 1, false),
            ("httpbin-2", "DENY", 1, false),
            ("httpbin-3", "DENY", 1, false),
            ("anyname", "AUDIT", 1, false),
            ("allow-nothing", "ALLOW", 0, false),
            ("allow-all", "ALLOW", 1, false),
            ("allow-nothing-2", "ALLOW", 0, false),
            ("allow-nothing-3", "ALLOW", 0, false),
            ("dry-run-example", "DENY", 1, true),
        ]
    );
    // The rules are Istio's, word for word.
    assert_eq!(
        policies[0]["rules"][0],
        json!({
            "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}},
                     {"source": {"namespaces": ["test"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/info*"]}},
                   {"operation": {"methods": ["POST"], "paths": ["/data"]}}],
            "when": [{"key": "request.auth.claims[iss]", "values": ["https://accounts.google.com"]}]
        })
    );
    assert_eq!(
        policies[2]["rules"][0],
        json!({"to": [{"operation": {"methods": ["POST"], "ports": ["8080"]}}]})
    );
    assert_eq!(policies[5]["rules"], json!([{}]), "allow-all");
    assert!(
        n.contains("AuthorizationPolicy foo/httpbin (document 2): translated as policy \"httpbin-2\""),
        "{n}"
    );
    assert!(
        n.contains("AuthorizationPolicy dry-run-example (document 9): annotation istio.io/dry-run: \"true\" becomes dryRun: true"),
        "{n}"
    );
    assert!(
        n.contains(
            "AuthorizationPolicy ns1/anyname (document 4): selector {\"app\":\"myapi\"} belongs on the WasmPlugin"
        ),
        "{n}"
    );
    assert!(
        n.contains("AuthorizationPolicy ns1/anyname (document 4): applies to other workloads"),
        "{n}"
    );
    // The filter's parser takes all of them.
    let cfg = accepted_with_a_provider(&j["config"]["authorization"]);
    assert_eq!(cfg.authorization.policies.len(), 9);
    assert!(cfg.authorization.has_dry_run());

    // v1beta1 reads the same; other groups and versions are skipped with a note.
    let text =
        std::fs::read_to_string(repo_root().join("tests/data/istio/authorization_policy_examples.yaml")).unwrap();
    let beta = hopguard(
        &["translate", "-o", "json", "-"],
        &text.replace("security.istio.io/v1\n", "security.istio.io/v1beta1\n"),
    );
    assert_eq!(beta.json()["config"], j["config"]);
    let alpha = hopguard(
        &["translate", "-o", "json", "-"],
        &text.replace("security.istio.io/v1\n", "security.istio.io/v1alpha9\n"),
    );
    assert!(alpha.json()["config"].get("authorization").is_none());
    assert!(notes(&alpha.json()).contains("is not security.istio.io/v1 or v1beta1; skipped"));
}

/// CUSTOM, remoteIpBlocks, remote.ip and Envoy metadata: dropped the way Istio drops what it
/// cannot evaluate (an ALLOW or AUDIT rule matches nothing, a DENY rule matches more), with notes.
#[test]
fn translate_drops_what_hopguard_cannot_evaluate_and_fails_closed() {
    let (r, j) = translate("authorization_policy_unsupported.yaml");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(j["valid"], true);
    assert_eq!(
        j["config"]["authorization"],
        json!({"policies": [
            // rules[0] (remoteIpBlocks only) is skipped: it matches nothing.
            {"name": "ingress-policy", "action": "ALLOW", "rules": [
                {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}], "to": [{"operation": {"paths": ["/internal/*"]}}]}]},
            // The DENY rules lose remoteIpBlocks and the remote.ip condition: they deny more.
            {"name": "ingress-deny", "action": "DENY", "rules": [
                {"from": [{"source": {"ipBlocks": ["192.168.0.0/16"]}}]},
                {"to": [{"operation": {"paths": ["/admin/*"]}}],
                 "when": [{"key": "request.headers[x-admin]", "notValues": ["yes"]}]}]}
        ]}),
        "CUSTOM and the AUDIT policy whose only rule reads Envoy metadata are not translated"
    );
    let n = notes(&j);
    for needle in [
        "AuthorizationPolicy istio-system/ext-authz (document 2): action CUSTOM (external authorization through the \
         extension provider \"sample-ext-authz-grpc\") is not supported by hopguard; not translated: keep this \
         AuthorizationPolicy in Istio",
        "AuthorizationPolicy istio-system/ingress-policy (document 3): rules[0].from[0].source.remoteIpBlocks: not \
         supported",
        "rules[0] skipped: it matches nothing here, as in Istio for an ALLOW rule it cannot evaluate",
        "the rules after it are renumbered",
        "AuthorizationPolicy istio-system/ingress-deny (document 4): rules[0].from[0].source.remoteIpBlocks",
        "from[0].source.remoteIpBlocks dropped, so this DENY rule matches more requests than in Istio",
        "rules[1].when[0].key: remote.ip is not supported",
        "AuthorizationPolicy istio-system/mysql-tables (document 5): rules[0].when[0].key: \
         experimental.envoy.filters.* (Envoy metadata) is not supported; rules[0] skipped: requests it matches are \
         not marked audited",
        "mysql-tables (document 5): no rule left, so it would never match; not translated",
    ] {
        assert!(n.contains(needle), "{needle}\nnot in:\n{n}");
    }
    hopguard::config::Config::from_value(&j["config"]).unwrap();

    // A DENY source left empty matches any source: `from` goes, the rule denies every request to
    // its paths, as Istio's would where it cannot read the client address.
    let only_remote =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: x}\n\
                       spec:\n  action: DENY\n  rules:\n  - from: [{source: {remoteIpBlocks: [1.2.3.4]}}]\n    \
                       to: [{operation: {paths: [/admin]}}]\n";
    let j = hopguard(&["translate", "-o", "json", "-"], only_remote).json();
    assert_eq!(
        j["config"]["authorization"]["policies"][0]["rules"],
        json!([{"to": [{"operation": {"paths": ["/admin"]}}]}])
    );
    assert!(notes(&j).contains("so from is dropped too"), "{}", notes(&j));
}

/// Whatever the input, what translate writes is a configuration the filter's parser accepts (given
/// a provider, for inputs without a RequestAuthentication).
#[test]
fn translate_output_is_accepted_by_the_filters_parser() {
    let mut files = 0;
    for entry in std::fs::read_dir(repo_root().join("tests/data/istio")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let (r, j) = translate(&name);
        assert_ne!(r.code, 2, "{name}: {}", r.stderr);
        let config = &j["config"];
        match hopguard::config::Config::from_value(config) {
            Ok(_) => assert_eq!((r.code, &j["valid"]), (0, &json!(true)), "{name}"),
            Err(e) => {
                assert_eq!((r.code, &j["valid"]), (1, &json!(false)), "{name}");
                assert_eq!(j["error"]["path"], e.path, "{name}");
            }
        }
        if let Some(a) = config.get("authorization") {
            accepted_with_a_provider(a);
        }
        files += 1;
    }
    assert!(files >= 8, "{files}");
}

/// Istio's tasks "Authorization with JWT" and "Authorization on HTTP traffic", translated and run
/// in a real Envoy with Istio's own sample tokens: every status is the one Istio's documentation
/// gives, and `explain` says the same.
#[test]
fn translated_istio_policies_behave_in_real_envoy_as_istio_documents() {
    let dir = TempDir::new("cli-translate-e2e");
    let mut configs = Vec::new();
    let mut listeners = Vec::new();
    for (listener, file) in [
        ("jwt", "authorization_policy_jwt.yaml"),
        ("get", "authorization_policy_http_get.yaml"),
    ] {
        let (r, j) = translate(file);
        assert_eq!(r.code, 0, "{file}: {}", notes(&j));
        let config = j["config"].clone();
        hopguard::config::Config::from_value(&config).unwrap();
        assert_eq!(config["requirement"], "allowMissing", "{file}");
        listeners.push(Listener::new(listener).filter(hopguard_filter_yaml(&config.to_string())));
        configs.push((listener, write(&dir, &format!("{listener}.json"), &config.to_string())));
    }
    let up = Upstream::start();
    let envoy = Envoy::start(&bootstrap_yaml(&listeners, up.port()), 1);
    let invalid = "invalidToken";
    // (listener, method, token, status, reason): Istio's documented outcome for each request.
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, Option<&'a str>);
    let cases: [Case; 10] = [
        // authz-jwt: "a request with an invalid JWT is denied" (401, by RequestAuthentication).
        ("jwt", "GET", Some(invalid), 401, Some("token_malformed")),
        // ... "a request without a JWT is denied" (403, by require-jwt).
        ("jwt", "GET", None, 403, Some("policy_no_match")),
        // ... demo.jwt has no groups claim: denied once the policy asks for group1.
        ("jwt", "GET", Some(ISTIO_DEMO_JWT), 403, Some("policy_no_match")),
        // ... groups-scope.jwt has groups [group1, group2]: allowed.
        ("jwt", "GET", Some(ISTIO_GROUPS_SCOPE_JWT), 200, None),
        // authz-http: productpage-viewer allows GET, anything else is "RBAC: access denied" (403).
        ("get", "GET", None, 200, None),
        ("get", "POST", None, 403, Some("policy_no_match")),
        ("get", "GET", Some(ISTIO_DEMO_JWT), 200, None),
        ("get", "POST", Some(ISTIO_DEMO_JWT), 403, Some("policy_no_match")),
        (
            "get",
            "DELETE",
            Some(ISTIO_GROUPS_SCOPE_JWT),
            403,
            Some("policy_no_match"),
        ),
        ("get", "GET", Some(invalid), 401, Some("token_malformed")),
    ];
    for (listener, method, token, want, reason) in cases {
        let name = format!(
            "{listener}: {method} with {}",
            token.map_or("no token", |t| &t[..12.min(t.len())])
        );
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        let before = up.count();
        let got = http::request(envoy.port(listener), method, "/headers", &headers);
        assert_eq!(got.status, want, "{name}: {got:?}");
        if want == 200 {
            assert_eq!(up.count(), before + 1, "{name}");
            if let Some(t) = token {
                assert!(
                    !up.requests()[before].mentions(t),
                    "{name}: the token reached the upstream"
                );
            }
        } else {
            assert_eq!(up.count(), before, "{name}: refused requests never reach the upstream");
            assert_eq!(got.json()["reason"].as_str(), reason, "{name}");
        }

        // explain, on the same translated configuration, agrees.
        let config = &configs.iter().find(|(l, _)| *l == listener).unwrap().1;
        let mut args = vec![
            "explain", "--config", config, "--method", method, "--path", "/headers", "-o", "json",
        ];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        let r = run(&args);
        assert_eq!(r.code, if want == 200 { 0 } else { 1 }, "{name}: {}", r.stdout);
        let e = r.json();
        assert_eq!(e["reason"]["code"].as_str(), reason, "{name}");
        if want != 200 {
            assert_eq!(e["status"], want, "{name}");
            assert_eq!(e["response"]["body"], got.json(), "{name}: problem body");
        } else if listener == "jwt" {
            assert_eq!(e["record"]["rule"], "require-jwt/rules[0]", "{name}");
        }
    }
}

#[test]
fn translate_text_output_is_the_config_with_notes_on_stderr() {
    let r = run(&["translate", "tests/data/istio/request_authentication_examples.yaml"]);
    assert_eq!(r.code, 0);
    let config: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(config["requirement"], "allowMissing");
    assert_eq!(config["authorization"]["policies"][0]["name"], "httpbin");
    assert!(r.stderr.lines().all(|l| l.starts_with("note: ")), "{}", r.stderr);
    // The output is a configuration `check` accepts.
    let checked = hopguard(&["check", "-"], &r.stdout);
    assert_eq!(checked.code, 0, "{}", checked.stdout);
}

#[test]
fn translate_can_write_a_wasmplugin_that_istio_and_check_accept() {
    let r = run(&[
        "translate",
        "--wasmplugin",
        "oci://registry.example.com/hopguard:0.1.0",
        "tests/data/istio/request_authentication_examples.yaml",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_norway::from_str(&r.stdout).unwrap();
    assert_eq!(doc["kind"], "WasmPlugin");
    assert_eq!(doc["metadata"]["namespace"], "foo");
    assert_eq!(doc["spec"]["selector"]["matchLabels"]["app"], "httpbin");
    let crds = istio_crds();
    assert_eq!(crds.validate(&doc), Vec::<String>::new());
    let checked = hopguard(&["check", "-"], &r.stdout);
    assert_eq!(checked.code, 0, "{}", checked.stdout);
}
