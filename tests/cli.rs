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

#[test]
fn translate_istios_documented_examples() {
    // Require JWT for app=httpbin: jwksUri through the Istio cluster; the AuthorizationPolicy that
    // only asks for a principal makes the token required.
    let (r, j) = translate("request_authentication_examples.yaml");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        j["config"],
        json!({"providers": [{"issuer": "issuer-foo", "jwksUri": "https://example.com/.well-known/jwks.json",
                              "cluster": "outbound|443||example.com"}],
               "requirement": "required"})
    );
    assert_eq!(j["valid"], true);
    let n = notes(&j);
    assert!(
        n.contains("selector {\"app\":\"httpbin\"} belongs on the WasmPlugin"),
        "{n}"
    );
    assert!(n.contains("translated as requirement required"), "{n}");

    // Mesh-wide in the root namespace.
    let (r, j) = translate("request_authentication_mesh.yaml");
    assert_eq!(r.code, 0);
    assert!(notes(&j).contains("mesh-wide (root namespace, no selector)"));

    // Issuers without keys or URLs: not expressible, and said so; per-host rules wait for policies.
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
    assert!(n.contains("authorization rules wait for hopguard's policies"), "{n}");
    assert_eq!(j["error"]["path"], "$.providers[0].jwks");

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
        n.contains("spaceDelimitedClaims only affects AuthorizationPolicy"),
        "{n}"
    );
    assert!(n.contains("requireExpiration"), "{n}");

    // AuthorizationPolicy alone: nothing to translate yet; each policy is noted.
    let (r, j) = translate("authorization_policy_examples.yaml");
    assert_eq!(r.code, 1);
    let n = notes(&j);
    assert!(
        n.contains("AuthorizationPolicy foo/httpbin (document 1): action ALLOW"),
        "{n}"
    );
    assert!(
        n.contains("AuthorizationPolicy foo/httpbin (document 2): action DENY"),
        "{n}"
    );
    assert!(n.contains("no RequestAuthentication resource found"), "{n}");
}

#[test]
fn translate_text_output_is_the_config_with_notes_on_stderr() {
    let r = run(&["translate", "tests/data/istio/request_authentication_examples.yaml"]);
    assert_eq!(r.code, 0);
    let config: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(config["requirement"], "required");
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
