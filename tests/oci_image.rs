//! `hopguard oci-image` (what `scripts/oci-image` runs): an OCI image layout and tarball in a Wasm
//! image format Istio loads (istio/istio pkg/wasm/imagefetcher.go), reproducible, with consistent
//! digests and sizes, and the module's bytes unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::envoy::{wasm_path, TempDir};

const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A private copy of the built filter, so a concurrent rebuild cannot change it mid-test.
fn wasm_copy(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    let bytes = std::fs::read(wasm_path()).unwrap();
    let p = dir.path().join("hopguard.wasm");
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

fn build(wasm: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "oci-image".to_owned(),
        "--wasm".to_owned(),
        wasm.to_string_lossy().into_owned(),
        "--out".to_owned(),
        out.to_string_lossy().into_owned(),
        "-o".to_owned(),
        "json".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = Command::new(env!("CARGO_BIN_EXE_hopguard"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Checks the OCI layout at `dir`; returns (manifest, blobs by hex digest).
fn check_layout(dir: &Path, tag: &str) -> (Value, BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        read_json(&dir.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let mut blobs = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(hex(&bytes), name, "a blob is named by its SHA-256");
        blobs.insert(name, bytes);
    }
    let index = read_json(&dir.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let m = &manifests[0];
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], tag);
    let blob = |d: &Value| -> &Vec<u8> {
        let digest = d["digest"].as_str().unwrap();
        let h = digest.strip_prefix("sha256:").unwrap();
        let b = blobs
            .get(h)
            .unwrap_or_else(|| panic!("{digest} is not in blobs/sha256"));
        assert_eq!(d["size"].as_u64().unwrap(), b.len() as u64, "size of {digest}");
        b
    };
    let manifest: Value = serde_json::from_slice(blob(m)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    blob(&manifest["config"]);
    let mut referenced = vec![m["digest"].clone(), manifest["config"]["digest"].clone()];
    for l in manifest["layers"].as_array().unwrap() {
        blob(l);
        referenced.push(l["digest"].clone());
    }
    for h in blobs.keys() {
        assert!(
            referenced.contains(&Value::String(format!("sha256:{h}"))),
            "unreferenced blob {h}"
        );
    }
    (manifest, blobs)
}

#[test]
fn the_oci_variant_is_the_two_layer_image_istio_loads() {
    let dir = TempDir::new("oci");
    let (wasm, bytes) = wasm_copy(&dir);
    let out = dir.path().join("image");
    let printed = build(&wasm, &out, &["--tag", "v-test"]);
    let (manifest, blobs) = check_layout(&out, "v-test");

    // Istio's extractOCIArtifactImage: exactly two layers, one of them the module, raw.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "Istio refuses other layer counts: {manifest}");
    let wasm_layer = layers
        .iter()
        .find(|l| l["mediaType"] == WASM_LAYER)
        .expect("the wasm layer");
    let h = wasm_layer["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
    assert!(blobs[h] == bytes, "the layer is the built module, byte for byte");
    assert_eq!(
        wasm_layer["annotations"]["org.opencontainers.image.title"],
        "plugin.wasm"
    );
    let config_layer = layers
        .iter()
        .find(|l| l["mediaType"] == WASM_CONFIG)
        .expect("the runtime config layer");
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
    assert_eq!(manifest["config"]["digest"], config_layer["digest"]);
    let runtime: Value = serde_json::from_slice(
        &blobs[manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()],
    )
    .unwrap();
    assert_eq!(runtime["type"], "envoy_proxy");
    assert_eq!(runtime["config"]["root_ids"], serde_json::json!(["hopguard"]));
    assert_eq!(runtime["abiVersions"], serde_json::json!(["proxy_abi_version_0_2_1"]));

    // What it prints: the manifest digest (WasmPlugin sha256 for oci://) and the module's SHA-256.
    let index = read_json(&out.join("index.json"));
    assert_eq!(printed["manifestDigest"], index["manifests"][0]["digest"]);
    assert_eq!(
        printed["wasmPluginSha256"]["oci"].as_str().unwrap(),
        &printed["manifestDigest"].as_str().unwrap()[7..]
    );
    assert_eq!(printed["wasmSha256"], hex(&bytes));
    assert_eq!(printed["wasmPluginSha256"]["http"], hex(&bytes));
    assert_eq!(printed["wasmSize"], bytes.len());
}

/// Entries of a ustar archive: (name, typeflag, mode, uid, mtime, data).
fn untar(tar: &[u8]) -> Vec<(String, u8, String, String, String, Vec<u8>)> {
    let field = |h: &[u8], at: usize, len: usize| {
        String::from_utf8_lossy(&h[at..at + len])
            .trim_end_matches(['\0', ' '])
            .to_owned()
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let stored: u32 = u32::from_str_radix(&field(h, 148, 8), 8).unwrap();
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) })
            .sum();
        assert_eq!(stored, sum, "header checksum");
        assert_eq!(&h[257..263], b"ustar\0");
        let size = usize::from_str_radix(&field(h, 124, 12), 8).unwrap();
        let data = tar[at + 512..at + 512 + size].to_vec();
        out.push((
            field(h, 0, 100),
            h[156],
            field(h, 100, 8),
            field(h, 108, 8),
            field(h, 136, 12),
            data,
        ));
        at += 512 + size.div_ceil(512) * 512;
    }
    assert!(
        tar[at..].iter().all(|b| *b == 0) && tar.len() - at >= 1024,
        "two zero blocks end the archive"
    );
    out
}

#[test]
fn the_tarball_holds_the_layout_with_fixed_metadata_in_sorted_order() {
    let dir = TempDir::new("oci-tar");
    let (wasm, _) = wasm_copy(&dir);
    let out = dir.path().join("image");
    let printed = build(&wasm, &out, &[]);
    assert_eq!(printed["tag"], env!("CARGO_PKG_VERSION"));
    let tar_path = dir.path().join("image.tar");
    assert_eq!(printed["tarball"], tar_path.to_string_lossy().as_ref());
    let tar = std::fs::read(&tar_path).unwrap();
    assert_eq!(printed["tarballSha256"], hex(&tar));
    let entries = untar(&tar);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(&names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(&names[names.len() - 2..], ["index.json", "oci-layout"]);
    for (name, kind, mode, uid, mtime, data) in &entries {
        assert_eq!((uid.as_str(), mtime.as_str()), ("0000000", "00000000000"), "{name}");
        if name.ends_with('/') {
            assert_eq!((*kind, mode.as_str()), (b'5', "0000755"), "{name}");
        } else {
            assert_eq!((*kind, mode.as_str()), (b'0', "0000644"), "{name}");
            assert_eq!(
                *data,
                std::fs::read(out.join(name)).unwrap(),
                "{name} in the tarball is the file in the layout"
            );
        }
    }
    // An independent reader agrees, where one is installed.
    if let Ok(o) = Command::new("tar").arg("-tf").arg(&tar_path).output() {
        if o.status.success() {
            let listed: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect();
            assert_eq!(listed, names);
        }
    }
}

#[test]
fn two_builds_give_the_same_digests_and_bytes() {
    let dir = TempDir::new("oci-repro");
    let (wasm, _) = wasm_copy(&dir);
    let a = build(&wasm, &dir.path().join("a"), &[]);
    let b = build(&wasm, &dir.path().join("b"), &[]);
    assert_eq!(a["manifestDigest"], b["manifestDigest"]);
    assert_eq!(a["tarballSha256"], b["tarballSha256"]);
    assert_eq!(
        std::fs::read(dir.path().join("a.tar")).unwrap(),
        std::fs::read(dir.path().join("b.tar")).unwrap()
    );
    // Rebuilding over an existing layout replaces it with the same content.
    let again = build(&wasm, &dir.path().join("a"), &[]);
    assert_eq!(again["tarballSha256"], a["tarballSha256"]);
    let x = build(&wasm, &dir.path().join("c1"), &["--variant", "compat"]);
    let y = build(&wasm, &dir.path().join("c2"), &["--variant", "compat"]);
    assert_eq!(x["manifestDigest"], y["manifestDigest"]);
    assert_eq!(x["tarballSha256"], y["tarballSha256"]);
    assert_ne!(x["manifestDigest"], a["manifestDigest"]);
    assert_eq!(x["wasmSha256"], a["wasmSha256"]);
}

/// Inflates a gzip member made of stored deflate blocks (what `hopguard oci-image` writes).
fn gunzip_stored(gz: &[u8]) -> Vec<u8> {
    assert_eq!(&gz[..4], [0x1f, 0x8b, 8, 0], "gzip, deflate, no flags");
    assert_eq!(&gz[4..8], [0, 0, 0, 0], "mtime 0");
    let mut at = 10;
    let mut out = Vec::new();
    loop {
        let header = gz[at];
        let len = u16::from_le_bytes([gz[at + 1], gz[at + 2]]) as usize;
        let nlen = u16::from_le_bytes([gz[at + 3], gz[at + 4]]);
        assert_eq!(header & 0b110, 0, "stored block");
        assert_eq!(!nlen as usize, len);
        out.extend_from_slice(&gz[at + 5..at + 5 + len]);
        at += 5 + len;
        if header & 1 == 1 {
            break;
        }
    }
    let isize = u32::from_le_bytes(gz[at + 4..at + 8].try_into().unwrap());
    assert_eq!(isize as usize, out.len());
    out
}

#[test]
fn the_compat_variant_is_one_gzip_tar_layer_holding_plugin_wasm() {
    let dir = TempDir::new("oci-compat");
    let (wasm, bytes) = wasm_copy(&dir);
    let out = dir.path().join("image");
    build(&wasm, &out, &["--variant", "compat", "--tag", "compat"]);
    let (manifest, blobs) = check_layout(&out, "compat");
    assert_eq!(manifest["annotations"]["module.wasm.image/variant"], "compat");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let gz = &blobs[layers[0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap()];
    let tar = gunzip_stored(gz);
    // An independent gzip agrees (and checks the CRC), where one is installed.
    let layer_path = out.join("blobs/sha256").join(hex(gz));
    if let Ok(o) = Command::new("gzip").arg("-dc").arg(&layer_path).output() {
        if o.status.success() {
            assert!(o.stdout == tar, "gzip -dc reads the same tar");
        }
    }
    let entries = untar(&tar);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "plugin.wasm");
    assert!(entries[0].5 == bytes);
    let config: Value = serde_json::from_slice(
        &blobs[manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()],
    )
    .unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{}", hex(&tar)));
}

#[test]
fn it_refuses_what_is_not_wasm_and_never_clobbers_other_files() {
    let dir = TempDir::new("oci-refuse");
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hopguard"))
        .args(["oci-image", "--wasm"])
        .arg(&not_wasm)
        .arg("--out")
        .arg(dir.path().join("img"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a WebAssembly module"));
    assert!(!dir.path().join("img").exists());

    let (wasm, _) = wasm_copy(&dir);
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hopguard"))
        .args(["oci-image", "--wasm"])
        .arg(&wasm)
        .arg("--out")
        .arg(&busy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to write into"));
    assert_eq!(std::fs::read_to_string(busy.join("notes.txt")).unwrap(), "mine");
    assert!(!busy.join("blobs").exists());
}
