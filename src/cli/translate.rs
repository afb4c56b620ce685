//! `hopguard translate`: Istio RequestAuthentication and AuthorizationPolicy (security.istio.io
//! v1 / v1beta1) in, one hopguard plugin configuration out, with a note for everything that cannot
//! be expressed.
//!
//! Each jwtRule becomes a provider; each AuthorizationPolicy becomes a policy of the
//! `authorization` section, which speaks the same vocabulary (action, rules, `from.source`,
//! `to.operation`, `when`). Semantics kept: Istio lets a request without a token through
//! RequestAuthentication and leaves the refusal to an AuthorizationPolicy that needs a request
//! principal, so the configuration always says `requirement: allowMissing` and the translated
//! policy refuses with 403, as Istio does.
//!
//! What the filter's parser refuses in a rule (`remoteIpBlocks`, `remote.ip`, Envoy metadata keys)
//! is dropped the way Istio treats attributes it cannot evaluate, failing closed: an ALLOW (or
//! AUDIT) rule is skipped (it matches nothing), a DENY rule loses the field or condition (it matches
//! more). `CUSTOM` policies (external authorization) are skipped. Each case gets a note.

use super::args::{Parsed, Spec};
use super::input::{read_source, yaml_documents};
use super::{json_line, Format, Outcome, EXIT_FAIL, EXIT_OK};
use hopguard::config::Config;
use hopguard::policy::Policies;
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

/// The annotation that puts an AuthorizationPolicy in dry run.
const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Istio's default root namespace: a policy there without a selector applies to the whole mesh.
const ROOT_NAMESPACE: &str = "istio-system";

/// Longest policy name the filter accepts.
const MAX_NAME: usize = 64;

type Target = (Option<String>, Option<Value>);

#[derive(Debug, Default)]
struct Translation {
    providers: Vec<Value>,
    /// The translated AuthorizationPolicies, in document order.
    policies: Vec<Value>,
    /// `spaceDelimitedClaims` of the jwtRules: (where, claim names).
    space_delimited: Vec<(String, Vec<String>)>,
    notes: Vec<String>,
    /// (namespace, selector) of each RequestAuthentication, for --wasmplugin.
    targets: Vec<Target>,
    /// (what, namespace and selector) of each AuthorizationPolicy.
    policy_targets: Vec<(String, Target)>,
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
        t.notes.push(if t.policy_targets.is_empty() {
            format!("{label}: no RequestAuthentication resource found; nothing to translate")
        } else {
            format!(
                "{label}: no RequestAuthentication resource found: hopguard needs at least one provider (the issuer \
                 and its keys) to verify the tokens these policies ask about; add the RequestAuthentication of \
                 these workloads to the input"
            )
        });
    }
    merged_scope_notes(&mut t);
    let mut config = Map::new();
    config.insert("providers".into(), Value::Array(t.providers.clone()));
    // Istio's RequestAuthentication lets a request without a token through; an AuthorizationPolicy
    // (translated below) is what refuses it.
    config.insert("requirement".into(), json!("allowMissing"));
    if let Some(section) = authorization_section(&mut t) {
        config.insert("authorization".into(), section);
    }
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

/// The `authorization` section: the policies, and the jwtRules' `spaceDelimitedClaims` (which
/// only matter to claim conditions). `None` when the input has no AuthorizationPolicy.
fn authorization_section(t: &mut Translation) -> Option<Value> {
    if t.policies.is_empty() {
        for (at, claims) in &t.space_delimited {
            t.notes.push(format!(
                "{at}: spaceDelimitedClaims {claims:?} only affects AuthorizationPolicy claim matching, and the \
                 input has no AuthorizationPolicy; dropped"
            ));
        }
        return None;
    }
    let mut section = Map::new();
    let mut claims: Vec<String> = Vec::new();
    for (at, names) in &t.space_delimited {
        for n in names {
            if n.is_empty() || n.contains('[') || n.contains(']') {
                t.notes.push(format!(
                    "{at}: spaceDelimitedClaims entry {n:?} is not a claim name; dropped"
                ));
            } else if !claims.contains(n) {
                claims.push(n.clone());
            }
        }
        t.notes.push(format!(
            "{at}: spaceDelimitedClaims becomes authorization.spaceDelimitedClaims, which hopguard applies to the \
             tokens of every provider (Istio: of this issuer only); scope, scp and permission are always split"
        ));
    }
    if !claims.is_empty() {
        section.insert("spaceDelimitedClaims".into(), json!(claims));
    }
    section.insert("policies".into(), Value::Array(t.policies.clone()));
    Some(Value::Object(section))
}

/// One note per AuthorizationPolicy that selects other workloads than the first
/// RequestAuthentication (or, without one, the first AuthorizationPolicy).
fn merged_scope_notes(t: &mut Translation) {
    let reference = t
        .targets
        .first()
        .cloned()
        .or_else(|| t.policy_targets.first().map(|(_, target)| target.clone()));
    let Some(reference) = reference else {
        return;
    };
    for (what, target) in &t.policy_targets {
        if *target != reference {
            t.notes.push(format!(
                "{what}: applies to other workloads than the rest of the input; merged anyway: one hopguard \
                 configuration holds every policy for every workload its WasmPlugin selects"
            ));
        }
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
        "AuthorizationPolicy" if group_ok => authorization_policy(doc, &what, namespace, t),
        "RequestAuthentication" | "AuthorizationPolicy" => t.notes.push(format!(
            "{what}: apiVersion {api:?} is not {API_GROUP}/v1 or v1beta1; skipped"
        )),
        _ => t.notes.push(format!(
            "{what}: not a RequestAuthentication or AuthorizationPolicy; skipped"
        )),
    }
}

fn request_authentication(doc: &Value, what: &str, namespace: Option<&str>, t: &mut Translation) {
    let spec = doc.get("spec").cloned().unwrap_or(json!({}));
    let selector = scope_notes(&spec, what, namespace, &mut t.notes);
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
        if let Some(p) = provider(rule, &at, t) {
            t.providers.push(p);
        }
    }
}

/// Notes on where a resource applies (selector, targetRef(s)); returns its selector.
fn scope_notes(spec: &Value, what: &str, namespace: Option<&str>, notes: &mut Vec<String>) -> Option<Value> {
    let selector = spec.get("selector").filter(|s| !s.is_null()).cloned();
    match &selector {
        Some(s) => notes.push(format!(
            "{what}: selector {} belongs on the WasmPlugin (spec.selector)",
            s.get("matchLabels").unwrap_or(s)
        )),
        None if namespace == Some(ROOT_NAMESPACE) => notes.push(format!(
            "{what}: mesh-wide (root namespace, no selector): deploy the WasmPlugin in {ROOT_NAMESPACE} without a \
             selector"
        )),
        None => notes.push(format!(
            "{what}: namespace-wide (no selector): deploy the WasmPlugin in the same namespace without a selector"
        )),
    }
    if spec.get("targetRef").is_some() || spec.get("targetRefs").is_some() {
        notes.push(format!(
            "{what}: targetRef(s) belong on the WasmPlugin (spec.targetRefs)"
        ));
    }
    selector
}

fn provider(rule: &Value, at: &str, t: &mut Translation) -> Option<Value> {
    let notes = &mut t.notes;
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
            "spaceDelimitedClaims" => {
                let names: Vec<String> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                t.space_delimited.push((at.to_owned(), names));
            }
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

fn authorization_policy(doc: &Value, what: &str, namespace: Option<&str>, t: &mut Translation) {
    let spec = match doc.get("spec") {
        None | Some(Value::Null) => json!({}),
        Some(s @ Value::Object(_)) => s.clone(),
        Some(_) => {
            t.notes.push(format!("{what}: spec is not a mapping; skipped"));
            return;
        }
    };
    let selector = scope_notes(&spec, what, namespace, &mut t.notes);
    t.policy_targets
        .push((what.to_owned(), (namespace.map(str::to_owned), selector)));
    for key in spec.as_object().into_iter().flat_map(|m| m.keys()) {
        if !["selector", "targetRef", "targetRefs", "rules", "action", "provider"].contains(&key.as_str()) {
            t.notes.push(format!("{what}: spec.{key} is not understood; skipped"));
        }
    }
    let action = match spec.get("action") {
        None | Some(Value::Null) => "ALLOW",
        Some(Value::String(a)) if ["ALLOW", "DENY", "AUDIT"].contains(&a.as_str()) => a.as_str(),
        Some(Value::String(a)) if a == "CUSTOM" => {
            let provider = spec
                .get("provider")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .map(|n| format!(" through the extension provider {n:?}"))
                .unwrap_or_default();
            t.notes.push(format!(
                "{what}: action CUSTOM (external authorization{provider}) is not supported by hopguard; not \
                 translated: keep this AuthorizationPolicy in Istio"
            ));
            return;
        }
        Some(other) => {
            t.notes.push(format!(
                "{what}: action {other} is not ALLOW, DENY, AUDIT or CUSTOM; not translated"
            ));
            return;
        }
    };
    let rules: Vec<Value> = match spec.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().map(istio_rule).collect(),
        Some(_) => {
            t.notes.push(format!("{what}: rules is not a list; not translated"));
            return;
        }
    };
    if action == "DENY" && rules.is_empty() {
        t.notes.push(format!(
            "{what}: a DENY policy without rules never matches (in Istio too); nothing to translate"
        ));
        return;
    }
    let meta = doc.get("metadata");
    let istio_name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
    let taken: Vec<&str> = t
        .policies
        .iter()
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .collect();
    let name = policy_name(istio_name, t.policies.len() + 1, &taken);
    if name != istio_name {
        t.notes.push(format!(
            "{what}: translated as policy {name:?} (hopguard policy names are unique, at most {MAX_NAME} characters \
             of [A-Za-z0-9._-]); decision records and problem bodies name its rules {name}/rules[i]"
        ));
    }
    let dry_run = dry_run_annotation(meta, what, &mut t.notes);
    let mut policy = Map::new();
    policy.insert("name".into(), json!(name));
    policy.insert("action".into(), json!(action));
    if dry_run {
        policy.insert("dryRun".into(), json!(true));
        t.notes.push(format!(
            "{what}: annotation {DRY_RUN_ANNOTATION}: \"true\" becomes dryRun: true (decided and recorded as \
             dry_run_deny, never enforced)"
        ));
    }
    let Some(rules) = supported_rules(&policy, action, rules, what, &mut t.notes) else {
        return;
    };
    if rules.is_empty() && action != "ALLOW" {
        t.notes
            .push(format!("{what}: no rule left, so it would never match; not translated"));
        return;
    }
    if action == "ALLOW" && !rules.is_empty() && rules.iter().all(only_any_principal) {
        t.notes.push(format!(
            "{what}: requires a token (requestPrincipals [\"*\"]): a request without one passes \
             requirement allowMissing and this policy refuses it with 403 policy_no_match, as Istio does; \
             requirement required would answer 401 with WWW-Authenticate instead"
        ));
    }
    if !rules.is_empty() {
        policy.insert("rules".into(), Value::Array(rules));
    } else if action == "ALLOW" {
        t.notes.push(format!(
            "{what}: an ALLOW policy without rules allows nothing: with it, every request is refused \
             (policy_no_match), as in Istio"
        ));
    }
    t.policies.push(Value::Object(policy));
}

/// A rule as Istio reads it: an empty `from`, `to` or `when` list is an unset field (matches
/// anything), which hopguard writes by leaving the field out.
fn istio_rule(rule: &Value) -> Value {
    let mut rule = rule.clone();
    if let Some(m) = rule.as_object_mut() {
        m.retain(|k, v| !(["from", "to", "when"].contains(&k.as_str()) && v.as_array().is_some_and(Vec::is_empty)));
    }
    rule
}

/// The rules the filter accepts, the others dropped as Istio drops what it cannot evaluate: an
/// ALLOW or AUDIT rule is skipped (it matches nothing), a DENY rule loses the field or condition
/// (it matches more: fail closed). `None`: the policy itself cannot be translated.
fn supported_rules(
    policy: &Map<String, Value>,
    action: &str,
    rules: Vec<Value>,
    what: &str,
    notes: &mut Vec<String>,
) -> Option<Vec<Value>> {
    // (index in the Istio resource, rule)
    let mut rules: Vec<(usize, Value)> = rules.into_iter().enumerate().collect();
    // Every round drops a field, a condition or a rule, so this ends; the bound is a backstop.
    for _ in 0..100_000 {
        let mut candidate = policy.clone();
        candidate.insert(
            "rules".into(),
            Value::Array(rules.iter().map(|(_, r)| r.clone()).collect()),
        );
        let Err(e) = Policies::parse(&json!({ "policies": [candidate] }), "$") else {
            return Some(rules.into_iter().map(|(_, r)| r).collect());
        };
        let segments = path_segments(&e.path);
        let (j, rest) = match segments.as_slice() {
            [Seg::Key(root), Seg::Key(p), Seg::Index(0), Seg::Key(r), Seg::Index(j), rest @ ..]
                if root == "$" && p == "policies" && r == "rules" =>
            {
                (*j, rest)
            }
            _ => {
                let at = e.path.strip_prefix("$.policies[0]").unwrap_or(&e.path);
                notes.push(format!(
                    "{what}: not translated: {}: {}",
                    if at.is_empty() {
                        "spec"
                    } else {
                        at.trim_start_matches('.')
                    },
                    e.message
                ));
                return None;
            }
        };
        let (index, rule) = rules.get_mut(j)?;
        let index = *index;
        let at = e
            .path
            .strip_prefix(&format!("$.policies[0].rules[{j}]"))
            .map(|rest| format!("rules[{index}]{rest}"))
            .unwrap_or_else(|| e.path.clone());
        if action == "DENY" {
            if let Some(dropped) = widen(rule, rest) {
                notes.push(format!(
                    "{what}: {at}: {}; {dropped} dropped, so this DENY rule matches more requests than in Istio \
                     (Istio too treats an attribute a DENY rule cannot evaluate as matching: fail closed)",
                    e.message
                ));
                continue;
            }
        }
        rules.retain(|(i, _)| *i != index);
        let consequence = match action {
            "DENY" => "NOT enforced by hopguard: keep this AuthorizationPolicy in Istio",
            "AUDIT" => "requests it matches are not marked audited",
            _ => "it matches nothing here, as in Istio for an ALLOW rule it cannot evaluate (fail closed)",
        };
        notes.push(format!(
            "{what}: {at}: {}; rules[{index}] skipped: {consequence}{}",
            e.message,
            if rules.iter().any(|(i, _)| *i > index) {
                "; the rules after it are renumbered (hopguard names unnamed rules rules[i] by position)"
            } else {
                ""
            }
        ));
    }
    notes.push(format!("{what}: too many unsupported fields; not translated"));
    None
}

/// A JSON path segment of a configuration error (`$.policies[0].rules[1].when[0].key`).
#[derive(Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        for (i, piece) in part.split('[').enumerate() {
            if i == 0 {
                if !piece.is_empty() {
                    out.push(Seg::Key(piece.to_owned()));
                }
            } else {
                match piece.strip_suffix(']').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => out.push(Seg::Index(n)),
                    None => out.push(Seg::Key(format!("[{piece}"))),
                }
            }
        }
    }
    out
}

/// Drops from a DENY rule the source or operation field, or the condition, at `rest` (the path
/// below the rule). An emptied source or operation matches anything, so its list goes too.
/// Returns what was dropped, or `None` when the problem is not in one field or condition.
fn widen(rule: &mut Value, rest: &[Seg]) -> Option<String> {
    let m = rule.as_object_mut()?;
    match rest {
        [Seg::Key(list), Seg::Index(k), Seg::Key(inner), Seg::Key(field), ..]
            if (list == "from" && inner == "source") || (list == "to" && inner == "operation") =>
        {
            let entry = m
                .get_mut(list.as_str())?
                .as_array_mut()?
                .get_mut(*k)?
                .get_mut(inner.as_str())?
                .as_object_mut()?;
            entry.remove(field.as_str())?;
            let mut dropped = format!("{list}[{k}].{inner}.{field}");
            if entry.is_empty() {
                m.remove(list.as_str());
                dropped.push_str(&format!(
                    " (the {inner} is then empty and matches anything, so {list} is dropped too)"
                ));
            }
            Some(dropped)
        }
        [Seg::Key(list), Seg::Index(k), ..] if list == "when" => {
            let when = m.get_mut("when")?.as_array_mut()?;
            if *k >= when.len() {
                return None;
            }
            when.remove(*k);
            if when.is_empty() {
                m.remove("when");
            }
            Some(format!("the condition when[{k}]"))
        }
        _ => None,
    }
}

/// A policy name the filter accepts: the Istio name fitted to [A-Za-z0-9._-]{1,64}, made unique
/// with a number (`httpbin-2`).
fn policy_name(istio: &str, ordinal: usize, taken: &[&str]) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_NAME)
            .collect()
    };
    let base = match clean(istio) {
        b if b.is_empty() => format!("policy-{ordinal}"),
        b => b,
    };
    if !taken.contains(&base.as_str()) {
        return base;
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = MAX_NAME.saturating_sub(suffix.len());
            format!("{}{suffix}", base.chars().take(keep).collect::<String>())
        })
        .find(|c| !taken.contains(&c.as_str()))
        .unwrap_or(base)
}

/// `metadata.annotations["istio.io/dry-run"]`, read as Go's strconv.ParseBool reads it.
fn dry_run_annotation(meta: Option<&Value>, what: &str, notes: &mut Vec<String>) -> bool {
    let Some(value) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
    else {
        return false;
    };
    match value {
        Value::Bool(b) => *b,
        Value::String(s) if ["1", "t", "T", "true", "TRUE", "True"].contains(&s.as_str()) => true,
        Value::String(s) if ["0", "f", "F", "false", "FALSE", "False"].contains(&s.as_str()) => false,
        other => {
            notes.push(format!(
                "{what}: annotation {DRY_RUN_ANNOTATION} {other} is not a boolean; the policy is enforced"
            ));
            false
        }
    }
}

/// A rule that only asks for a request principal, any: `from: [{source: {requestPrincipals: ["*"]}}]`.
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
