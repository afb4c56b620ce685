//! Every manifest under `istio/` is checked against Istio's real CRD schemas
//! (`../shared/istio/customresourcedefinitions.gen.yaml`, istio/api), and every plugin configuration
//! in them is accepted by hopguard's own parser and by the filter in a real Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

#[path = "schema_check/mod.rs"]
mod schema_check;

use hopguard::config::Config;
use schema_check::Crds;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;
use support::envoy::{bootstrap_yaml_with_clusters, cluster_yaml, hopguard_filter_yaml, log_excerpt, wasm_path};
use support::envoy::{repo_root, Envoy, Listener};

/// Istio's generated CRDs: next to the repository (`../shared/istio/`), or `$HOPGUARD_ISTIO_CRDS`.
fn crd_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HOPGUARD_ISTIO_CRDS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    repo_root().join("../shared/istio/customresourcedefinitions.gen.yaml")
}

fn crds() -> &'static Crds {
    static CRDS: OnceLock<Crds> = OnceLock::new();
    CRDS.get_or_init(|| {
        let path = crd_path();
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read Istio CRDs {}: {e} (set HOPGUARD_ISTIO_CRDS)", path.display()));
        let crds = Crds::load(&yaml);
        for kind in [
            "WasmPlugin",
            "EnvoyFilter",
            "RequestAuthentication",
            "AuthorizationPolicy",
        ] {
            assert!(
                crds.schemas.keys().any(|(_, k)| k == kind),
                "no {kind} CRD in {}",
                path.display()
            );
        }
        crds
    })
}

/// Every YAML document under istio/, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo_root().join("istio");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    assert!(out.len() >= 4, "expected the Istio manifests in {}", dir.display());
    out
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

/// The hopguard configuration JSON each manifest hands the filter.
fn plugin_configs(doc: &Value) -> Vec<String> {
    match kind(doc) {
        // Istio turns the pluginConfig Struct into JSON for the filter.
        "WasmPlugin" => vec![doc["spec"]["pluginConfig"].to_string()],
        "EnvoyFilter" => doc["spec"]["configPatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect(),
        // ServiceEntry, DestinationRule, ...: the Istio objects a plugin relies on.
        _ => Vec::new(),
    }
}

#[test]
fn every_manifest_matches_its_istio_crd_schema() {
    let mut kinds = Vec::new();
    for (file, doc) in manifests() {
        let errors = crds().validate(&doc);
        assert!(
            errors.is_empty(),
            "{file}: {} fails the CRD schema:\n{}",
            kind(&doc),
            errors.join("\n")
        );
        kinds.push(kind(&doc).to_owned());
    }
    assert!(kinds.iter().filter(|k| *k == "WasmPlugin").count() >= 3, "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "EnvoyFilter"), "{kinds:?}");
}

#[test]
fn every_plugin_config_is_accepted_by_hopguards_parser() {
    for (file, doc) in manifests() {
        for config in plugin_configs(&doc) {
            if let Err(e) = Config::parse(config.as_bytes()) {
                panic!("{file}: the filter would log: configuration refused: {e}");
            }
        }
        if kind(&doc) == "WasmPlugin" {
            // The same through the value API the CLI uses for YAML.
            Config::from_value(&doc["spec"]["pluginConfig"]).unwrap();
        }
    }
}

/// What the CRD cannot say (CEL rules, and this repository's own rules for shipped manifests).
#[test]
fn manifests_follow_the_rules_the_schema_leaves_to_cel_and_to_us() {
    for (file, doc) in manifests() {
        let spec = &doc["spec"];
        let targets = ["selector", "targetRef", "targetRefs"]
            .iter()
            .filter(|k| spec.get(**k).is_some())
            .count();
        assert!(targets <= 1, "{file}: only one of targetRefs or selector can be set");
        if kind(&doc) != "WasmPlugin" {
            continue;
        }
        let url = spec["url"].as_str().unwrap();
        let scheme = url.split_once("://").map_or("oci", |(s, _)| s);
        assert!(
            ["oci", "http", "https", "file"].contains(&scheme),
            "{file}: url scheme {scheme}"
        );
        assert_eq!(spec["phase"], "AUTHN", "{file}: hopguard authenticates: phase AUTHN");
        assert_eq!(
            spec["failStrategy"], "FAIL_CLOSE",
            "{file}: a filter that did not load must refuse"
        );
        assert!(spec["priority"].is_i64(), "{file}: set a priority");
        assert!(spec["sha256"].is_string(), "{file}: pin the module with sha256");
        assert!(spec["imagePullPolicy"].is_string(), "{file}: set imagePullPolicy");
        let namespace = doc["metadata"]["namespace"].as_str().unwrap();
        if spec.get("selector").is_none() {
            assert_eq!(
                namespace, "istio-system",
                "{file}: a plugin without selector is mesh-wide only in the root namespace"
            );
        }
    }
    let all = manifests();
    let has = |pred: &dyn Fn(&Value) -> bool| all.iter().any(|(_, d)| kind(d) == "WasmPlugin" && pred(d));
    assert!(
        has(&|d| d["spec"]["selector"]["matchLabels"]["app"].is_string()),
        "a workload plugin"
    );
    assert!(
        has(&|d| d["metadata"]["namespace"] == "istio-system" && d["spec"].get("selector").is_none()),
        "a mesh-wide plugin"
    );
    assert!(
        has(&|d| d["spec"]["selector"]["matchLabels"]["istio"] == "ingressgateway"),
        "a gateway plugin"
    );
}

fn workload_plugin() -> Value {
    manifests()
        .into_iter()
        .find(|(f, _)| f == "wasmplugin-workload.yaml")
        .map(|(_, d)| d)
        .unwrap()
}

fn envoy_filter() -> Value {
    manifests()
        .into_iter()
        .find(|(_, d)| kind(d) == "EnvoyFilter")
        .map(|(_, d)| d)
        .unwrap()
}

fn refused(doc: &Value, needle: &str) {
    let errors = crds().validate(doc);
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "expected an error mentioning {needle:?}, got {errors:#?}"
    );
}

#[test]
fn the_validator_refuses_typos_wrong_enums_types_and_patterns() {
    let good = workload_plugin();
    assert!(crds().validate(&good).is_empty());

    let mut typo = good.clone();
    let phase = typo["spec"].as_object_mut().unwrap().remove("phase").unwrap();
    typo["spec"]["phse"] = phase;
    refused(&typo, "spec.phse: unknown field");

    let mut bad_enum = good.clone();
    bad_enum["spec"]["failStrategy"] = json!("FAIL_CLOSED");
    refused(&bad_enum, "spec.failStrategy: \"FAIL_CLOSED\" is not one of");

    let mut bad_mode = good.clone();
    bad_mode["spec"]["match"][0]["mode"] = json!("INBOUND");
    refused(&bad_mode, "spec.match[0].mode");

    let mut bad_type = good.clone();
    bad_type["spec"]["priority"] = json!("high");
    refused(&bad_type, "spec.priority: must be integer");

    let mut bad_int32 = good.clone();
    bad_int32["spec"]["priority"] = json!(1u64 << 40);
    refused(&bad_int32, "spec.priority");

    let mut bad_sha = good.clone();
    bad_sha["spec"]["sha256"] = json!("sha256:abc");
    refused(&bad_sha, "spec.sha256");

    let mut no_url = good.clone();
    no_url["spec"].as_object_mut().unwrap().remove("url");
    refused(&no_url, "spec.url: required");

    let mut bad_label = good.clone();
    bad_label["spec"]["selector"]["matchLabels"]["app"] = json!(7);
    refused(&bad_label, "spec.selector.matchLabels.app");

    let mut bad_meta = good.clone();
    bad_meta["metadata"]["name"] = json!("Hop_Guard");
    refused(&bad_meta, "metadata.name");

    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("extensions.istio.io/v1");
    refused(&wrong_version, "no served CRD");

    // pluginConfig is free-form for Kubernetes (x-kubernetes-preserve-unknown-fields): a typo in
    // it passes the CRD and is caught by hopguard's parser instead.
    let mut config_typo = good.clone();
    config_typo["spec"]["pluginConfig"]["requirment"] = json!("required");
    assert!(crds().validate(&config_typo).is_empty());
    let e = Config::from_value(&config_typo["spec"]["pluginConfig"]).unwrap_err();
    assert_eq!(e.path, "$.requirment");
}

#[test]
fn the_validator_refuses_bad_envoy_filters() {
    let good = envoy_filter();
    assert!(crds().validate(&good).is_empty());

    let mut bad_apply = good.clone();
    bad_apply["spec"]["configPatches"][0]["applyTo"] = json!("HTTP_FILTERS");
    refused(&bad_apply, "spec.configPatches[0].applyTo");

    let mut bad_op = good.clone();
    bad_op["spec"]["configPatches"][0]["patch"]["operation"] = json!("INSERT_BEFOR");
    refused(&bad_op, "spec.configPatches[0].patch.operation");

    // match is a oneOf: listener, routeConfiguration, cluster or waypoint, not two of them.
    let mut two = good.clone();
    two["spec"]["configPatches"][0]["match"]["cluster"] = json!({"name": "x"});
    refused(&two, "exactly one of oneOf");

    let mut bad_port = good.clone();
    bad_port["spec"]["configPatches"][0]["match"]["listener"]["portNumber"] = json!(-1);
    refused(&bad_port, "below the minimum");
}

/// Each plugin configuration loads in the real filter (`envoy --mode validate` runs the plugin's
/// `on_configure`), and the EnvoyFilter's patch is an Envoy filter Envoy accepts, both as shipped
/// (remote code through the Istio cluster) and with the built module in its place.
#[test]
fn plugin_configs_and_the_envoy_filter_patch_load_in_real_envoy() {
    let mut listeners = Vec::new();
    let mut patches = Vec::new();
    for (i, (_, doc)) in manifests().into_iter().enumerate() {
        for (j, config) in plugin_configs(&doc).into_iter().enumerate() {
            listeners.push(Listener::new(&format!("m{i}_{j}")).filter(hopguard_filter_yaml(&config)));
        }
        if kind(&doc) == "EnvoyFilter" {
            for p in doc["spec"]["configPatches"].as_array().unwrap() {
                patches.push(p["patch"]["value"].clone());
            }
        }
    }
    let mut clusters = vec![cluster_yaml("upstream", 9)];
    for (k, patch) in patches.iter().enumerate() {
        let remote = &patch["typed_config"]["config"]["vm_config"]["code"]["remote"];
        let cluster = remote["http_uri"]["cluster"].as_str().unwrap();
        assert!(cluster.starts_with("outbound|"), "an Istio cluster name: {cluster}");
        clusters.push(cluster_yaml(cluster, 9));
        // As shipped: one line of JSON is a YAML flow mapping.
        listeners.push(Listener::new(&format!("patch{k}")).filter(patch.to_string()));
        // With the built module: the plugin configuration is loaded too.
        let mut local = patch.clone();
        local["typed_config"]["config"]["vm_config"]["code"] =
            json!({"local": {"filename": wasm_path().to_string_lossy()}});
        listeners.push(Listener::new(&format!("patch{k}_local")).filter(local.to_string()));
    }
    let (ok, output) = Envoy::validate_yaml(&bootstrap_yaml_with_clusters(&listeners, &clusters));
    assert!(ok, "envoy --mode validate refused:\n{}", log_excerpt(&output, 60));
}
