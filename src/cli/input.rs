//! Reading what the user points at: files or stdin, JSON or YAML, and finding hopguard plugin
//! configurations inside Istio and Envoy documents.

use serde::Deserialize;
use serde_json::Value;
use std::io::Read;

/// Largest input read from a file or stdin.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Reads `arg`: a path, or `-` for stdin. Returns a label for messages and the bytes.
pub fn read_source(arg: &str) -> Result<(String, Vec<u8>), String> {
    let mut bytes = Vec::new();
    if arg == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(("<stdin>".to_owned(), bytes));
    }
    let file = std::fs::File::open(arg).map_err(|e| format!("cannot read {arg}: {e}"))?;
    file.take(MAX_INPUT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {arg}: {e}"))?;
    Ok((arg.to_owned(), bytes))
}

/// Parses every YAML document in `bytes` into JSON values (empty documents are skipped).
pub fn yaml_documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_slice(bytes).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| format!("YAML document {}: {e}", i + 1))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// One plugin configuration found in the input: where, and the exact bytes the filter receives.
#[derive(Debug, Clone)]
pub struct ConfigDoc {
    /// Where it came from, e.g. `istio/x.yaml: WasmPlugin orders/hopguard`.
    pub label: String,
    pub bytes: Vec<u8>,
    /// Warnings about how the document reads (not the filter's verdict).
    pub warnings: Vec<String>,
}

/// Finds the hopguard plugin configurations in `bytes` (read from `source`).
///
/// - Text that starts with `{` (or is empty) is the configuration itself, byte for byte: what
///   Envoy's `configuration` field delivers.
/// - Otherwise YAML: each WasmPlugin's `spec.pluginConfig` (serialized to JSON, as Istio does;
///   absent means empty), each hopguard Wasm filter's `configuration.value` in an EnvoyFilter or
///   an Envoy config, and any mapping with `providers` (the configuration written as YAML).
pub fn config_documents(source: &str, bytes: &[u8]) -> Result<Vec<ConfigDoc>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{source}: not UTF-8 text"))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.is_empty() || trimmed.starts_with('{') {
        return Ok(vec![ConfigDoc {
            label: source.to_owned(),
            bytes: bytes.to_vec(),
            warnings: Vec::new(),
        }]);
    }
    let docs = yaml_documents(bytes).map_err(|e| format!("{source}: neither JSON nor YAML: {e}"))?;
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc.get("kind").and_then(Value::as_str);
        let name = resource_name(doc);
        match kind {
            Some("WasmPlugin") => {
                let config = doc.get("spec").and_then(|s| s.get("pluginConfig"));
                let bytes = match config {
                    None | Some(Value::Null) => Vec::new(),
                    Some(v) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
                };
                let mut warnings = Vec::new();
                if let Some(v) = config {
                    yaml11_booleans(v, "$", &mut warnings, 0);
                    // Only the words written bare somewhere in the file (quoted ones are fine).
                    warnings.retain(|w| bare_somewhere(text, w));
                }
                out.push(ConfigDoc {
                    label: format!("{source}: WasmPlugin {name}"),
                    bytes,
                    warnings,
                });
            }
            _ if doc.get("providers").is_some() && kind.is_none() => {
                out.push(ConfigDoc {
                    label: format!("{source}: document {}", i + 1),
                    bytes: serde_json::to_vec(doc).map_err(|e| e.to_string())?,
                    warnings: Vec::new(),
                });
            }
            _ => {
                let mut found = Vec::new();
                wasm_filter_configs(doc, &mut found, 0);
                let what = match kind {
                    Some(k) => format!("{k} {name}"),
                    None => format!("document {}", i + 1),
                };
                let many = found.len() > 1;
                for (j, value) in found.into_iter().enumerate() {
                    let label = if many {
                        format!("{source}: {what}, hopguard filter {}", j + 1)
                    } else {
                        format!("{source}: {what}, hopguard filter")
                    };
                    out.push(ConfigDoc {
                        label,
                        bytes: value.into_bytes(),
                        warnings: Vec::new(),
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{source}: no hopguard configuration found (expected the plugin configuration JSON, an Istio \
             WasmPlugin, or an EnvoyFilter / Envoy config with the hopguard Wasm filter)"
        ));
    }
    Ok(out)
}

/// Strings that Kubernetes' YAML 1.1 reader turns into booleans when they are not quoted (this
/// tool reads YAML 1.2, where they stay strings): `off` in `allowLog: off` reaches the filter as
/// `false`.
fn yaml11_booleans(v: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
    const WORDS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "true",
        "True", "TRUE", "false", "False", "FALSE",
    ];
    if depth > 64 {
        return;
    }
    match v {
        Value::String(s) if WORDS.contains(&s.as_str()) => out.push(format!(
            "{path} is the string {s:?}: if it is not quoted in the YAML, Kubernetes reads it as a boolean \
             (YAML 1.1) and the filter gets true or false; quote it"
        )),
        Value::Object(m) => {
            for (k, c) in m {
                yaml11_booleans(c, &format!("{path}.{k}"), out, depth + 1);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                yaml11_booleans(c, &format!("{path}[{i}]"), out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Whether the word a [`yaml11_booleans`] warning is about appears unquoted as a value in `text`
/// (`key: off`, `- off`, optionally followed by a comment).
fn bare_somewhere(text: &str, warning: &str) -> bool {
    let Some(word) = warning.split('"').nth(1) else {
        return true;
    };
    text.lines().any(|line| {
        let line = line.split(" #").next().unwrap_or(line).trim_end();
        line.ends_with(&format!(": {word}")) || line.trim_start() == format!("- {word}")
    })
}

fn resource_name(doc: &Value) -> String {
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("?");
    match meta.and_then(|m| m.get("namespace")).and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Collects `configuration.value` of every hopguard `envoy.extensions.filters.http.wasm.v3.Wasm`
/// (by root id, plugin name or module file name) anywhere in `v`.
fn wasm_filter_configs(v: &Value, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(map) => {
            let is_wasm = map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("envoy.extensions.filters.http.wasm.v3.Wasm"));
            if is_wasm {
                if let Some(config) = map.get("config") {
                    if is_hopguard(config) {
                        let value = config
                            .get("configuration")
                            .and_then(|c| c.get("value"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        out.push(value.to_owned());
                    }
                }
                return;
            }
            for child in map.values() {
                wasm_filter_configs(child, out, depth + 1);
            }
        }
        Value::Array(items) => {
            for child in items {
                wasm_filter_configs(child, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn is_hopguard(config: &Value) -> bool {
    let mentions = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| s.contains("hopguard"));
    let code = config.get("vm_config").and_then(|vm| vm.get("code"));
    mentions(config.get("root_id"))
        || mentions(config.get("name"))
        || mentions(code.and_then(|c| c.get("local")).and_then(|l| l.get("filename")))
        || mentions(
            code.and_then(|c| c.get("remote"))
                .and_then(|r| r.get("http_uri"))
                .and_then(|h| h.get("uri")),
        )
}

/// Reads a token argument: the token itself, `@FILE`, or `-` for stdin; surrounding whitespace
/// is dropped.
pub fn read_token(arg: &str) -> Result<String, String> {
    let raw = if arg == "-" {
        let (_, b) = read_source("-")?;
        b
    } else if let Some(path) = arg.strip_prefix('@') {
        let (_, b) = read_source(path)?;
        b
    } else {
        return Ok(arg.trim().to_owned());
    };
    let text = String::from_utf8(raw).map_err(|_| "the token is not UTF-8 text".to_owned())?;
    Ok(text.trim().to_owned())
}
