//! `hopguard translate`: Istio RequestAuthentication (security.istio.io v1 / v1beta1) in, a
//! hopguard plugin configuration out, with a note for everything that cannot be expressed.
//!
//! Semantics kept: Istio lets a request without a token through (`requirement: allowMissing`)
//! unless an AuthorizationPolicy demands a request principal. The one AuthorizationPolicy shape
//! the current core expresses is "any valid token" (`requestPrincipals: ["*"]` alone), which
//! becomes `requirement: required`; other rules wait for hopguard's policies.

use super::args::{Parsed, Spec};
use super::input::{read_source, yaml_documents};
use super::{json_line, Format, Outcome, EXIT_FAIL, EXIT_OK};
use hopguard::config::Config;
use serde_json::{json, Map, Value};

pub const SPECS: &[Spec] = &[Spec::value("wasmplugin")];

const API_GROUP: &str = "security.istio.io";

/// The jwtRule fields copied unchanged (same name, same meaning).
const SAME: &[&str] = &[
    "issuer",
    "audiences",
    "fromParams",
    "fromCookies",
    "forwardOriginalToken",
    "outputPayloadToHeader",
];

#[derive(Debug, Default)]
struct Translation {
    providers: Vec<Value>,
    requirement_required: bool,
    notes: Vec<String>,
    /// (namespace, selector) of each RequestAuthentication, for --wasmplugin.
    targets: Vec<(Option<String>, Option<Value>)>,
}

pub fn run(parsed: &Parsed, format: Format) -> Outcome {
    let [source] = parsed.positionals.as_slice() else {
        return Outcome::usage(
            "translate needs exactly one FILE.yaml (or - for stdin)",
            Some("translate"),
        );
    };
    let (label, bytes) = match read_source(source) {
        Ok(x) => x,
        Err(e) => return Outcome::trouble(&e),
    };
    let docs = match yaml_documents(&bytes) {
        Ok(d) => d,
        Err(e) => return Outcome::trouble(&format!("{label}: {e}")),
    };
    let mut t = Translation::default();
    for (i, doc) in docs.iter().enumerate() {
        translate_doc(doc, i + 1, &mut t);
    }
    if t.targets.is_empty() {
        t.notes.push(format!(
            "{label}: no RequestAuthentication resource found; nothing to translate"
        ));
    }
    let mut config = Map::new();
    config.insert("providers".into(), Value::Array(t.providers.clone()));
    config.insert(
        "requirement".into(),
        json!(if t.requirement_required {
            "required"
        } else {
            "allowMissing"
        }),
    );
    let config = Value::Object(config);
    let checked = Config::from_value(&config);
    let valid = checked.is_ok() && !t.targets.is_empty();
    if let Err(e) = &checked {
        t.notes.push(format!(
            "the translated configuration is not valid yet: {}",
            super::check::refusal_log(e)
        ));
    }
    let code = if valid { EXIT_OK } else { EXIT_FAIL };
    let artifact = match parsed.value("wasmplugin") {
        None => None,
        Some(url) => match wasmplugin(&config, url, &t) {
            Ok(y) => Some(y),
            Err(e) => return Outcome::trouble(&e),
        },
    };
    match format {
        Format::Json => {
            let mut out = json!({
                "config": config,
                "valid": valid,
                "error": checked.as_ref().err().map(|e| json!({"path": e.path, "message": e.message})),
                "notes": t.notes,
            });
            if let (Some(y), Some(m)) = (artifact, out.as_object_mut()) {
                m.insert("wasmPlugin".into(), Value::String(y));
            }
            Outcome {
                code,
                stdout: json_line(&out),
                stderr: String::new(),
            }
        }
        Format::Text => Outcome {
            code,
            stdout: artifact.unwrap_or_else(|| json_line(&config)),
            stderr: t.notes.iter().map(|n| format!("note: {n}\n")).collect(),
        },
    }
}

fn translate_doc(doc: &Value, index: usize, t: &mut Translation) {
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("?");
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
    let what = format!(
        "{kind} {}{name} (document {index})",
        namespace.map(|n| format!("{n}/")).unwrap_or_default()
    );
    let group_ok = matches!(api.split_once('/'), Some((g, v)) if g == API_GROUP && (v == "v1" || v == "v1beta1"));
    match kind {
        "RequestAuthentication" if group_ok => request_authentication(doc, &what, namespace, t),
        "AuthorizationPolicy" if group_ok => authorization_policy(doc, &what, t),
        "RequestAuthentication" | "AuthorizationPolicy" => t.notes.push(format!(
            "{what}: apiVersion {api:?} is not {API_GROUP}/v1 or v1beta1; skipped"
        )),
        _ => t.notes.push(format!("{what}: not a RequestAuthentication; skipped")),
    }
}

fn request_authentication(doc: &Value, what: &str, namespace: Option<&str>, t: &mut Translation) {
    let spec = doc.get("spec").cloned().unwrap_or(json!({}));
    let selector = spec.get("selector").cloned();
    match &selector {
        Some(s) => t.notes.push(format!(
            "{what}: selector {} belongs on the WasmPlugin (spec.selector)",
            s.get("matchLabels").unwrap_or(s)
        )),
        None if namespace == Some("istio-system") => t.notes.push(format!(
            "{what}: mesh-wide (root namespace, no selector): deploy the WasmPlugin in istio-system without a selector"
        )),
        None => t.notes.push(format!(
            "{what}: namespace-wide (no selector): deploy the WasmPlugin in the same namespace without a selector"
        )),
    }
    if spec.get("targetRef").is_some() || spec.get("targetRefs").is_some() {
        t.notes.push(format!(
            "{what}: targetRef(s) belong on the WasmPlugin (spec.targetRefs)"
        ));
    }
    for key in spec
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !["selector", "targetRef", "targetRefs", "jwtRules"].contains(&key.as_str()) {
            t.notes.push(format!("{what}: spec.{key} is not understood; skipped"));
        }
    }
    if let (Some(a), Some(b)) = (
        t.targets.first(),
        Some(&(namespace.map(str::to_owned), selector.clone())),
    ) {
        if a != b {
            t.notes.push(format!(
                "{what}: merged with RequestAuthentications that select other workloads; one hopguard \
                 configuration applies to every workload its WasmPlugin selects"
            ));
        }
    }
    t.targets.push((namespace.map(str::to_owned), selector));
    let rules = spec
        .get("jwtRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if rules.is_empty() {
        t.notes.push(format!("{what}: no jwtRules"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{what}: jwtRules[{i}]");
        if let Some(p) = provider(rule, &at, &mut t.notes) {
            t.providers.push(p);
        }
    }
}

fn provider(rule: &Value, at: &str, notes: &mut Vec<String>) -> Option<Value> {
    let Some(rule) = rule.as_object() else {
        notes.push(format!("{at}: not a mapping; skipped"));
        return None;
    };
    let mut p = Map::new();
    for (key, value) in rule {
        match key.as_str() {
            k if SAME.contains(&k) => {
                p.insert(k.to_owned(), value.clone());
            }
            "fromHeaders" => {
                // Istio's JWTHeader {name, prefix} is hopguard's; drop empty prefixes.
                let mut list = Vec::new();
                for h in value.as_array().into_iter().flatten() {
                    match h {
                        Value::String(name) => {
                            notes.push(format!(
                                "{at}: fromHeaders entry {name:?} is a bare name; read as {{name: {name:?}}}"
                            ));
                            list.push(json!({ "name": name }));
                        }
                        _ => {
                            let mut h = h.clone();
                            if let Some(m) = h.as_object_mut() {
                                if m.get("prefix").and_then(Value::as_str) == Some("") {
                                    m.remove("prefix");
                                }
                            }
                            list.push(h);
                        }
                    }
                }
                p.insert("fromHeaders".into(), Value::Array(list));
            }
            "outputClaimToHeaders" => {
                p.insert(key.clone(), value.clone());
            }
            "jwks" => {
                // A JSON string in Istio; hopguard takes the JWK Set object (or the same string).
                let inline = value
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| value.clone());
                p.insert("jwks".into(), inline);
            }
            "jwksUri" | "jwks_uri" => {
                let uri = value.as_str().unwrap_or("");
                p.insert("jwksUri".into(), value.clone());
                match istio_cluster(uri) {
                    Some(cluster) => {
                        notes.push(format!(
                            "{at}: {key} {uri}: fetched by the filter through the Envoy cluster {cluster} (Istio \
                             creates it for a host in the mesh registry; an external identity provider needs a \
                             ServiceEntry, and for https a DestinationRule with tls mode SIMPLE)"
                        ));
                        p.insert("cluster".into(), json!(cluster));
                    }
                    None => notes.push(format!("{at}: {key} {uri:?} is not an http(s) URL")),
                }
            }
            "timeout" => {}
            "spaceDelimitedClaims" => notes.push(format!(
                "{at}: spaceDelimitedClaims only affects AuthorizationPolicy claim matching, which waits for \
                 hopguard's policies; dropped"
            )),
            other => notes.push(format!("{at}: {other} is not understood; dropped")),
        }
    }
    let remote = !rule.contains_key("jwks");
    if remote && !rule.contains_key("jwksUri") && !rule.contains_key("jwks_uri") {
        // Istio finds the keys through OpenID Connect discovery of the issuer; so does hopguard,
        // given the cluster that reaches the issuer.
        let issuer = rule.get("issuer").and_then(Value::as_str).unwrap_or("");
        match istio_cluster(issuer) {
            Some(cluster) => {
                notes.push(format!(
                    "{at}: no jwks or jwksUri: keys found by OpenID Connect discovery of {issuer} through the \
                     Envoy cluster {cluster} (an external issuer needs a ServiceEntry)"
                ));
                p.insert("cluster".into(), json!(cluster));
            }
            None => notes.push(format!(
                "{at}: no jwks or jwksUri, and the issuer {issuer:?} is not an http(s) URL for OpenID Connect \
                 discovery: put the key set inline as jwks"
            )),
        }
    }
    if let Some(t) = rule.get("timeout") {
        let text = t.as_str().unwrap_or("");
        match (remote, go_duration_ms(text)) {
            (true, Some(ms)) => {
                let clamped = ms.clamp(100, 60_000);
                p.insert("fetchTimeoutMs".into(), json!(clamped));
                if clamped != ms {
                    notes.push(format!("{at}: timeout {text} clamped to fetchTimeoutMs {clamped}"));
                }
            }
            (true, None) => notes.push(format!("{at}: timeout {text:?} is not a duration; dropped")),
            (false, _) => notes.push(format!(
                "{at}: timeout {text} only applies to fetched keys; the keys are inline; dropped"
            )),
        }
    }
    if rule.contains_key("outputClaimToHeaders") {
        notes.push(format!(
            "{at}: outputClaimToHeaders: hopguard also copies arrays of scalars (comma-joined), which \
             Istio drops"
        ));
    }
    notes.push(format!(
        "{at}: hopguard requires exp by default (requireExpiration: true); Istio accepts tokens \
         without exp. Add \"requireExpiration\": false to match Istio"
    ));
    Some(Value::Object(p))
}

/// Istio's outbound cluster for the host of an http(s) URL: `outbound|PORT||HOST`.
fn istio_cluster(url: &str) -> Option<String> {
    let (rest, port) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (r, 443),
        (None, Some(r)) => (r, 80),
        (None, None) => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
            (h, p.parse::<u16>().ok()?)
        }
        _ => (authority, port),
    };
    Some(format!("outbound|{port}||{host}"))
}

/// A Go duration (`5s`, `1.5s`, `500ms`, `1m30s`) in milliseconds.
fn go_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ms = match unit {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += n * ms;
        rest = tail;
    }
    (total.is_finite() && total >= 0.0).then_some(total.round() as u64)
}

fn authorization_policy(doc: &Value, what: &str, t: &mut Translation) {
    let spec = doc.get("spec").cloned().unwrap_or(json!({}));
    let action = spec.get("action").and_then(Value::as_str).unwrap_or("ALLOW");
    let rules = spec.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    if action == "ALLOW" && rules.len() == 1 && rules.first().is_some_and(only_any_principal) {
        t.requirement_required = true;
        t.notes.push(format!(
            "{what}: requires any valid token (requestPrincipals [\"*\"]): translated as requirement \
             required; a request without a token gets 401 with WWW-Authenticate instead of Istio's 403"
        ));
        return;
    }
    t.notes.push(format!(
        "{what}: action {action}: authorization rules wait for hopguard's policies (not in this \
         version); not translated. Keep the AuthorizationPolicy in Istio meanwhile"
    ));
}

/// A rule that is exactly `from: [{source: {requestPrincipals: ["*"]}}]`.
fn only_any_principal(rule: &Value) -> bool {
    let Some(rule) = rule.as_object() else {
        return false;
    };
    if rule.keys().any(|k| k != "from") {
        return false;
    }
    let Some([from]) = rule.get("from").and_then(Value::as_array).map(Vec::as_slice) else {
        return false;
    };
    let Some(source) = from.get("source").and_then(Value::as_object) else {
        return false;
    };
    from.as_object().is_some_and(|m| m.len() == 1)
        && source.len() == 1
        && source.get("requestPrincipals") == Some(&json!(["*"]))
}

fn wasmplugin(config: &Value, url: &str, t: &Translation) -> Result<String, String> {
    let (namespace, selector) = t.targets.first().cloned().unwrap_or((None, None));
    let mut spec = Map::new();
    if let Some(s) = selector {
        spec.insert("selector".into(), s);
    }
    spec.insert("url".into(), json!(url));
    spec.insert("phase".into(), json!("AUTHN"));
    spec.insert("failStrategy".into(), json!("FAIL_CLOSE"));
    spec.insert("pluginConfig".into(), config.clone());
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!("hopguard"));
    if let Some(ns) = namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    let doc = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": metadata,
        "spec": spec,
    });
    let yaml = serde_norway::to_string(&doc).map_err(|e| format!("cannot write YAML: {e}"))?;
    Ok(format!(
        "# Written by 'hopguard translate'. Pin the module: add spec.sha256 (for an oci:// url, the\n\
         # manifest digest that 'hopguard oci-image' prints). Check: hopguard check <this file>\n{yaml}"
    ))
}
