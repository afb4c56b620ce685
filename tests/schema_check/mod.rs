//! A small structural validator over `serde_json` values, for two dialects:
//!
//! - Kubernetes OpenAPI v3 (CRD `openAPIV3Schema`): unknown fields are errors unless the schema
//!   says `x-kubernetes-preserve-unknown-fields` or gives `additionalProperties` (what
//!   `kubectl apply --validate=strict`, the default, enforces); `nullable`,
//!   `x-kubernetes-int-or-string`. CEL rules (`x-kubernetes-validations`) are not evaluated.
//! - JSON Schema draft 2020-12, the subset `config.schema.json` uses: unknown fields are allowed
//!   unless `additionalProperties: false`; `$ref` to `#/$defs/...`; `const`.
//!
//! Both: type, properties, required, enum, items, additionalProperties, oneOf, anyOf, allOf,
//! not, minimum/maximum, minLength/maxLength, pattern, minItems/maxItems, uniqueItems,
//! min/maxProperties, dependentRequired, format (int32, int64, date-time).
//!
//! Include with `#[path = "schema_check/mod.rs"] mod schema_check;`.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Kubernetes,
    JsonSchema,
}

/// Validates `value` against `schema` (whose `$ref`s resolve against `root`); returns every
/// problem as `path: message`, empty when valid.
pub fn validate(dialect: Dialect, root: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut v = Validator {
        dialect,
        root,
        errors: Vec::new(),
        depth: 0,
    };
    v.check(schema, value, path);
    v.errors
}

struct Validator<'a> {
    dialect: Dialect,
    root: &'a Value,
    errors: Vec<String>,
    depth: usize,
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => match v {
            Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        },
        "number" => v.is_number(),
        "null" => v.is_null(),
        other => type_of(v) == other,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Validator<'a> {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        let p = if path.is_empty() { "(root)" } else { path };
        self.errors.push(format!("{p}: {}", msg.into()));
    }

    /// Whether `value` is valid against `schema`, without recording errors.
    fn passes(&self, schema: &Value, value: &Value, path: &str) -> bool {
        let mut sub = Validator {
            dialect: self.dialect,
            root: self.root,
            errors: Vec::new(),
            depth: self.depth,
        };
        sub.check(schema, value, path);
        sub.errors.is_empty()
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        let root: &'a Value = self.root;
        root.pointer(pointer)
    }

    fn check(&mut self, schema: &Value, value: &Value, path: &str) {
        self.depth += 1;
        if self.depth > 64 {
            self.err(path, "schema nesting too deep");
            self.depth -= 1;
            return;
        }
        self.check_inner(schema, value, path);
        self.depth -= 1;
    }

    fn check_inner(&mut self, schema: &Value, value: &Value, path: &str) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return self.err(path, "not allowed here"),
            Value::Object(s) => s,
            _ => return self.err(path, "(schema is not an object)"),
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match self.resolve(r) {
                Some(target) => self.check(target, value, path),
                None => self.err(path, format!("unresolvable $ref {r}")),
            }
        }
        if value.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if int_or_string && !(is_type(value, "integer") || value.is_string()) {
            return self.err(path, format!("must be an integer or a string, not {}", type_of(value)));
        }
        match s.get("type") {
            Some(Value::String(t)) if !is_type(value, t) => {
                return self.err(path, format!("must be {t}, not {}", type_of(value)));
            }
            Some(Value::Array(ts)) if !ts.iter().any(|t| t.as_str().is_some_and(|t| is_type(value, t))) => {
                return self.err(path, format!("must be one of {ts:?}, not {}", type_of(value)));
            }
            _ => {}
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                self.err(path, format!("{value} is not one of {}", Value::Array(options.clone())));
            }
        }
        if let Some(c) = s.get("const") {
            if c != value {
                self.err(path, format!("must be {c}"));
            }
        }
        self.combinators(s, value, path);
        match value {
            Value::String(text) => self.string(s, text, path),
            Value::Number(_) => self.number(s, value, path),
            Value::Array(items) => self.array(s, items, path),
            Value::Object(map) => self.object(s, map, path),
            _ => {}
        }
    }

    fn combinators(&mut self, s: &serde_json::Map<String, Value>, value: &Value, path: &str) {
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, path);
            }
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
            if !any.iter().any(|sub| self.passes(sub, value, path)) {
                self.err(path, "matches none of anyOf");
            }
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let n = one.iter().filter(|sub| self.passes(sub, value, path)).count();
            if n != 1 {
                self.err(path, format!("must match exactly one of oneOf, matches {n}"));
            }
        }
        if let Some(not) = s.get("not") {
            if self.passes(not, value, path) {
                self.err(path, "matches a schema it must not match (not)");
            }
        }
    }

    fn string(&mut self, s: &serde_json::Map<String, Value>, text: &str, path: &str) {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
            if len < min {
                self.err(path, format!("shorter than minLength {min}"));
            }
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                self.err(path, format!("longer than maxLength {max}"));
            }
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            match regex_lite::Regex::new(p) {
                Ok(re) if re.is_match(text) => {}
                Ok(_) => self.err(path, format!("{text:?} does not match pattern {p}")),
                Err(e) => self.err(path, format!("unsupported pattern {p}: {e}")),
            }
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time") {
            let re = regex_lite::Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
                .unwrap();
            if !re.is_match(text) {
                self.err(path, format!("{text:?} is not an RFC 3339 date-time"));
            }
        }
    }

    fn number(&mut self, s: &serde_json::Map<String, Value>, value: &Value, path: &str) {
        let x = value.as_f64().unwrap_or(f64::NAN);
        let bound = |k: &str| s.get(k).and_then(Value::as_f64);
        if let Some(min) = bound("minimum") {
            if x < min {
                self.err(path, format!("{value} is below the minimum {min}"));
            }
        }
        if let Some(max) = bound("maximum") {
            if x > max {
                self.err(path, format!("{value} is above the maximum {max}"));
            }
        }
        if let Some(min) = bound("exclusiveMinimum") {
            if x <= min {
                self.err(path, format!("{value} must be above {min}"));
            }
        }
        if let Some(max) = bound("exclusiveMaximum") {
            if x >= max {
                self.err(path, format!("{value} must be below {max}"));
            }
        }
        let range = match s.get("format").and_then(Value::as_str) {
            Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            Some("int64") => Some((i64::MIN as f64, i64::MAX as f64)),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            if !(lo..=hi).contains(&x) {
                self.err(path, format!("{value} is out of range for its format"));
            }
        }
    }

    fn array(&mut self, s: &serde_json::Map<String, Value>, items: &[Value], path: &str) {
        let n = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if n < min {
                self.err(path, format!("fewer than minItems {min}"));
            }
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if n > max {
                self.err(path, format!("more than maxItems {max}"));
            }
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, a) in items.iter().enumerate() {
                if items.iter().skip(i + 1).any(|b| a == b) {
                    self.err(&format!("{path}[{i}]"), "duplicate item (uniqueItems)");
                }
            }
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{path}[{i}]"));
            }
        }
    }

    fn object(&mut self, s: &serde_json::Map<String, Value>, map: &serde_json::Map<String, Value>, path: &str) {
        let n = map.len() as u64;
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
            if n > max {
                self.err(path, format!("more than maxProperties {max}"));
            }
        }
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
            if n < min {
                self.err(path, format!("fewer than minProperties {min}"));
            }
        }
        if let Some(required) = s.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    self.err(&join(path, r), "required");
                }
            }
        }
        if let Some(deps) = s.get("dependentRequired").and_then(Value::as_object) {
            for (k, needs) in deps {
                if !map.contains_key(k) {
                    continue;
                }
                for n in needs.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !map.contains_key(n) {
                        self.err(&join(path, k), format!("needs {n}"));
                    }
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let additional = s.get("additionalProperties");
        for (k, v) in map {
            let p = join(path, k);
            if let Some(ps) = props.and_then(|ps| ps.get(k)) {
                self.check(ps, v, &p);
                continue;
            }
            match (additional, self.dialect) {
                (Some(Value::Bool(false)), _) => self.err(&p, "unknown field"),
                (Some(a @ Value::Object(_)), _) => self.check(a, v, &p),
                (Some(_), _) => {}
                (None, Dialect::JsonSchema) => {}
                // A node without `properties` (e.g. `{required: [x]}` inside oneOf) only constrains.
                (None, Dialect::Kubernetes) if preserve || props.is_none() => {}
                (None, Dialect::Kubernetes) => {
                    let known: Vec<&String> = props.map(|ps| ps.keys().collect()).unwrap_or_default();
                    self.err(&p, format!("unknown field (known: {known:?})"));
                }
            }
        }
    }
}

/// The `openAPIV3Schema` of every served version of every CRD in a CRD bundle, by
/// (`group/version`, kind).
pub struct Crds {
    pub schemas: BTreeMap<(String, String), Value>,
}

impl Crds {
    pub fn load(yaml: &str) -> Crds {
        let mut schemas = BTreeMap::new();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("CRD YAML");
            if v.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let group = v["spec"]["group"].as_str().unwrap().to_owned();
            let kind = v["spec"]["names"]["kind"].as_str().unwrap().to_owned();
            for version in v["spec"]["versions"].as_array().unwrap() {
                if version["served"] != Value::Bool(true) {
                    continue;
                }
                let name = version["name"].as_str().unwrap();
                let schema = version["schema"]["openAPIV3Schema"].clone();
                schemas.insert((format!("{group}/{name}"), kind.clone()), schema);
            }
        }
        Crds { schemas }
    }

    /// Every problem of one resource: apiVersion/kind known, metadata well-formed, the rest
    /// against the CRD schema.
    pub fn validate(&self, doc: &Value) -> Vec<String> {
        let Some(obj) = doc.as_object() else {
            return vec!["(root): a resource must be a mapping".to_owned()];
        };
        let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(schema) = self.schemas.get(&(api.to_owned(), kind.to_owned())) else {
            return vec![format!("(root): no served CRD for apiVersion {api:?} kind {kind:?}")];
        };
        let mut errors = validate_metadata(obj.get("metadata"));
        let rest: serde_json::Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| !["apiVersion", "kind", "metadata"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        errors.extend(validate(Dialect::Kubernetes, schema, schema, &Value::Object(rest), ""));
        errors
    }
}

fn validate_metadata(meta: Option<&Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(meta) = meta.and_then(Value::as_object) else {
        return vec!["metadata: required (a mapping)".to_owned()];
    };
    let dns_subdomain =
        regex_lite::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap();
    let dns_label = regex_lite::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap();
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if n.len() <= 253 && dns_subdomain.is_match(n) => {}
        Some(n) => errors.push(format!("metadata.name: {n:?} is not a DNS-1123 subdomain")),
        None => errors.push("metadata.name: required".to_owned()),
    }
    if let Some(ns) = meta.get("namespace") {
        match ns.as_str() {
            Some(n) if n.len() <= 63 && dns_label.is_match(n) => {}
            _ => errors.push(format!("metadata.namespace: {ns} is not a DNS-1123 label")),
        }
    }
    for map in ["labels", "annotations"] {
        if let Some(m) = meta.get(map) {
            match m.as_object() {
                Some(m) if m.values().all(Value::is_string) => {}
                _ => errors.push(format!("metadata.{map}: must map strings to strings")),
            }
        }
    }
    for k in meta.keys() {
        if !["name", "namespace", "labels", "annotations"].contains(&k.as_str()) {
            errors.push(format!("metadata.{k}: not a field a manifest sets"));
        }
    }
    errors
}
