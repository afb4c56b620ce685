//! Every shipped Envoy config (`envoy/*.yaml`) is accepted by the real Envoy in `--mode validate`,
//! and validation really checks: a malformed config and a plugin configuration the filter refuses
//! both fail it.
//!
//! `--mode validate` loads the wasm and runs the plugin's `on_vm_start` and `on_configure`, so the
//! shipped placeholder path `/etc/envoy/hopguard.wasm` is replaced by the freshly built filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use std::fs;
use std::path::PathBuf;

use support::envoy::{bootstrap_yaml, hopguard_filter_yaml, log_excerpt, repo_root, wasm_path, Envoy, Listener};

/// The wasm path the shipped configs use; users edit it, tests substitute the built filter.
const SHIPPED_WASM_PATH: &str = "/etc/envoy/hopguard.wasm";

fn shipped_configs() -> Vec<PathBuf> {
    let dir = repo_root().join("envoy");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no YAML in {}", dir.display());
    paths
}

/// The config text with the placeholder wasm path pointing at the built filter.
fn with_built_wasm(yaml: &str) -> String {
    yaml.replace(SHIPPED_WASM_PATH, &wasm_path().to_string_lossy())
}

#[test]
fn every_shipped_envoy_config_passes_validate_mode() {
    for path in shipped_configs() {
        let yaml = fs::read_to_string(&path).unwrap();
        if yaml.contains("envoy.filters.http.wasm") {
            assert!(
                yaml.contains(SHIPPED_WASM_PATH),
                "{} must load the filter from {SHIPPED_WASM_PATH}",
                path.display()
            );
        }

        let (ok, output) = Envoy::validate_yaml(&with_built_wasm(&yaml));

        assert!(
            ok,
            "{} failed envoy --mode validate:\n{}",
            path.display(),
            log_excerpt(&output, 40)
        );
        assert!(output.contains("OK"), "{output}");
    }
}

#[test]
fn a_malformed_config_fails_validate_mode() {
    let sidecar = fs::read_to_string(repo_root().join("envoy/sidecar.yaml")).unwrap();
    let broken = with_built_wasm(&sidecar).replacen("stat_prefix:", "stat_prefx:", 1);
    assert_ne!(broken, with_built_wasm(&sidecar), "the typo must land");

    let (ok, output) = Envoy::validate_yaml(&broken);

    assert!(!ok, "a misspelt field must fail validation:\n{output}");
    assert!(output.contains("stat_prefx"), "{output}");
}

#[test]
fn a_plugin_configuration_the_filter_refuses_fails_validate_mode() {
    let listener = Listener::new("ingress").filter(hopguard_filter_yaml(r#"{"providers": "not a list"}"#));

    let (ok, output) = Envoy::validate_yaml(&bootstrap_yaml(&[listener], 8081));

    assert!(!ok, "a refused plugin configuration must fail validation:\n{output}");
    assert!(
        output.contains("Unable to create Wasm plugin hopguard"),
        "{}",
        log_excerpt(&output, 40)
    );
}
