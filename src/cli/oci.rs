//! `hopguard oci-image`: an OCI image layout (and a tarball of it) of the filter, in a Wasm image
//! format Istio's WasmPlugin loads, built offline and reproducibly.
//!
//! Istio (istio/istio `pkg/wasm/imagefetcher.go`) accepts three shapes: a Docker or OCI image
//! whose layer is a `tar+gzip` holding `plugin.wasm` (the "compat" variant), or an OCI image with
//! exactly two layers, one of them `application/vnd.module.wasm.content.layer.v1+wasm` (the "oci"
//! variant of the solo-io Wasm image spec; a single-layer image is refused with "number of layers
//! must be 2"). For an `oci://` url, Istio checks `spec.sha256` against the manifest digest.
//!
//! Reproducible: no timestamps anywhere (tar mtime 0, no `created`), fixed owners and modes,
//! sorted tar entries, gzip without a name or time, so the digests depend only on the wasm.

use super::args::{Parsed, Spec};
use super::{json_line, Format, Outcome, EXIT_FAIL, EXIT_OK};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const SPECS: &[Spec] = &[
    Spec::value("wasm"),
    Spec::value("out"),
    Spec::value("tag"),
    Spec::value("variant"),
    Spec::value("tarball"),
];

pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TITLE: &str = "org.opencontainers.image.title";

/// A content-addressed blob.
struct Blob {
    media_type: &'static str,
    bytes: Vec<u8>,
    hex: String,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        let hex = sha256_hex(&bytes);
        Blob { media_type, bytes, hex }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }
    fn descriptor(&self, title: Option<&str>) -> Value {
        let mut d = json!({"mediaType": self.media_type, "digest": self.digest(), "size": self.bytes.len()});
        if let (Some(t), Some(m)) = (title, d.as_object_mut()) {
            m.insert("annotations".into(), json!({ TITLE: t }));
        }
        d
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Oci,
    Compat,
}

pub fn run(parsed: &Parsed, format: Format) -> Outcome {
    if let Some(p) = parsed.positionals.first() {
        return Outcome::usage(&format!("unexpected argument {p:?}"), Some("oci-image"));
    }
    let (Some(wasm_path), Some(out)) = (parsed.value("wasm"), parsed.value("out")) else {
        return Outcome::usage("--wasm and --out are required", Some("oci-image"));
    };
    let tag = parsed.value("tag").unwrap_or(env!("CARGO_PKG_VERSION"));
    if !valid_tag(tag) {
        return Outcome::usage(
            &format!("--tag {tag:?} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"),
            Some("oci-image"),
        );
    }
    let variant = match parsed.value("variant") {
        None | Some("oci") => Variant::Oci,
        Some("compat") => Variant::Compat,
        Some(v) => {
            return Outcome::usage(
                &format!("--variant must be oci or compat, not {v:?}"),
                Some("oci-image"),
            )
        }
    };
    let out_dir = PathBuf::from(out.trim_end_matches('/'));
    let tarball = match parsed.value("tarball") {
        Some(t) => PathBuf::from(t),
        None => {
            let mut s = out_dir.as_os_str().to_owned();
            s.push(".tar");
            PathBuf::from(s)
        }
    };
    let wasm = match std::fs::read(wasm_path) {
        Ok(b) => b,
        Err(e) => return Outcome::trouble(&format!("cannot read {wasm_path}: {e}")),
    };
    if !wasm.starts_with(b"\0asm\x01\0\0\0") {
        return Outcome {
            code: EXIT_FAIL,
            stdout: String::new(),
            stderr: format!("hopguard: {wasm_path} is not a WebAssembly module (no \\0asm version 1 header)\n"),
        };
    }
    let image = match variant {
        Variant::Oci => oci_variant(&wasm),
        Variant::Compat => compat_variant(&wasm),
    };
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest(),
            "size": image.manifest.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    let index_bytes = match serde_json::to_vec(&index) {
        Ok(b) => b,
        Err(e) => return Outcome::trouble(&format!("cannot write index.json: {e}")),
    };
    let layout_bytes = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    let mut blobs: Vec<&Blob> = image.blobs.iter().chain(std::iter::once(&image.manifest)).collect();
    blobs.sort_by(|a, b| a.hex.cmp(&b.hex));
    blobs.dedup_by(|a, b| a.hex == b.hex);

    if let Err(e) = write_layout(&out_dir, &blobs, &index_bytes, &layout_bytes) {
        return Outcome::trouble(&e);
    }
    let mut entries: Vec<(String, Option<&[u8]>)> = vec![("blobs/".into(), None), ("blobs/sha256/".into(), None)];
    for b in &blobs {
        entries.push((format!("blobs/sha256/{}", b.hex), Some(&b.bytes)));
    }
    entries.push(("index.json".into(), Some(&index_bytes)));
    entries.push(("oci-layout".into(), Some(&layout_bytes)));
    let tar = tar(&entries);
    if let Err(e) = std::fs::write(&tarball, &tar) {
        return Outcome::trouble(&format!("cannot write {}: {e}", tarball.display()));
    }

    let wasm_hex = sha256_hex(&wasm);
    let variant_name = match variant {
        Variant::Oci => "oci",
        Variant::Compat => "compat",
    };
    let stdout = match format {
        Format::Json => json_line(&json!({
            "layout": out_dir.display().to_string(),
            "tarball": tarball.display().to_string(),
            "tarballSha256": sha256_hex(&tar),
            "tag": tag,
            "variant": variant_name,
            "manifestDigest": image.manifest.digest(),
            "manifestSize": image.manifest.bytes.len(),
            "configDigest": image.config_digest,
            "wasmSha256": wasm_hex,
            "wasmSize": wasm.len(),
            "wasmPluginSha256": {
                "oci": image.manifest.hex,
                "http": wasm_hex,
            },
        })),
        Format::Text => format!(
            "wrote OCI image layout {} and {} (tag {tag}, variant {variant_name})\n\
             manifest digest: {}\n\
             wasm sha256:     {wasm_hex}\n\
             WasmPlugin spec.sha256: {} for url oci://REGISTRY/REPO:{tag} (the manifest digest);\n\
             {wasm_hex} for http(s):// and file:// urls and Envoy's vm_config code sha256\n",
            out_dir.display(),
            tarball.display(),
            image.manifest.digest(),
            image.manifest.hex,
        ),
    };
    Outcome {
        code: EXIT_OK,
        stdout,
        stderr: String::new(),
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (the OCI distribution spec's tag grammar).
fn valid_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok && t.len() <= 128 && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

struct Image {
    manifest: Blob,
    config_digest: String,
    /// Config and layers (the manifest is separate).
    blobs: Vec<Blob>,
}

/// The proxy-wasm ABI the module exports (`proxy_abi_version_0_2_1`), if it names one.
fn abi_version(wasm: &[u8]) -> Option<String> {
    let needle = b"proxy_abi_version_";
    let at = wasm.windows(needle.len()).position(|w| w == needle)?;
    let tail = wasm.get(at..)?;
    let name: Vec<u8> = tail
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .copied()
        .collect();
    String::from_utf8(name).ok()
}

/// Two layers: the runtime config (also the manifest config) and the module itself.
fn oci_variant(wasm: &[u8]) -> Image {
    let abi: Vec<String> = abi_version(wasm).into_iter().collect();
    let runtime = json!({
        "type": "envoy_proxy",
        "abiVersions": abi,
        "config": {"root_ids": ["hopguard"]},
    });
    let config = Blob::new(WASM_CONFIG, serde_json::to_vec(&runtime).unwrap_or_default());
    let layer = Blob::new(WASM_LAYER, wasm.to_vec());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(None),
        "layers": [config.descriptor(Some("runtime-config.json")), layer.descriptor(Some("plugin.wasm"))],
        "annotations": {"module.wasm.image/variant": "oci"},
    });
    Image {
        manifest: Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap_or_default()),
        config_digest: config.digest(),
        blobs: vec![config, layer],
    }
}

/// One `tar+gzip` layer holding `plugin.wasm`, with a standard image config.
fn compat_variant(wasm: &[u8]) -> Image {
    let tar = tar(&[("plugin.wasm".to_owned(), Some(wasm))]);
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let layer = Blob::new(OCI_LAYER_GZIP, gzip_stored(&tar));
    let image_config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&image_config).unwrap_or_default());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(None),
        "layers": [layer.descriptor(None)],
        "annotations": {"module.wasm.image/variant": "compat"},
    });
    Image {
        manifest: Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap_or_default()),
        config_digest: config.digest(),
        blobs: vec![config, layer],
    }
}

/// Writes the layout into `dir`, replacing an earlier layout there; refuses to touch a
/// directory that holds anything else.
fn write_layout(dir: &Path, blobs: &[&Blob], index: &[u8], layout: &[u8]) -> Result<(), String> {
    let shown = dir.display();
    if dir.exists() {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let ours = ["oci-layout", "index.json", "blobs"];
        if let Some(other) = names.iter().find(|n| !ours.contains(&n.as_str())) {
            return Err(format!(
                "refusing to write into {shown}: it holds {other:?}, which is not part of an OCI layout"
            ));
        }
        if !names.is_empty() && !names.iter().any(|n| n == "oci-layout") {
            return Err(format!(
                "refusing to write into {shown}: not empty and not an OCI layout"
            ));
        }
        let blobs_dir = dir.join("blobs");
        if blobs_dir.exists() {
            std::fs::remove_dir_all(&blobs_dir).map_err(|e| format!("cannot clear {}: {e}", blobs_dir.display()))?;
        }
    }
    let sha_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&sha_dir).map_err(|e| format!("cannot create {}: {e}", sha_dir.display()))?;
    for b in blobs {
        let p = sha_dir.join(&b.hex);
        std::fs::write(&p, &b.bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    for (name, bytes) in [("index.json", index), ("oci-layout", layout)] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

/// A POSIX ustar archive of `entries` (in the given order): directories (`None`, names ending
/// in `/`) mode 0755, files mode 0644, owner 0:0, mtime 0.
pub fn tar(entries: &[(String, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        let size = data.map_or(0, <[u8]>::len);
        put(&mut h, 0, name.as_bytes(), 100);
        put(&mut h, 100, if data.is_some() { b"0000644\0" } else { b"0000755\0" }, 8);
        put(&mut h, 108, b"0000000\0", 8);
        put(&mut h, 116, b"0000000\0", 8);
        put(&mut h, 124, format!("{size:011o}\0").as_bytes(), 12);
        put(&mut h, 136, b"00000000000\0", 12);
        put(&mut h, 148, b"        ", 8);
        put(&mut h, 156, if data.is_some() { b"0" } else { b"5" }, 1);
        put(&mut h, 257, b"ustar\0", 6);
        put(&mut h, 263, b"00", 2);
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes(), 8);
        out.extend_from_slice(&h);
        if let Some(d) = data {
            out.extend_from_slice(d);
            out.resize(out.len() + (512 - d.len() % 512) % 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Copies at most `width` bytes of `bytes` into `h` at `at`.
fn put(h: &mut [u8; 512], at: usize, bytes: &[u8], width: usize) {
    let n = bytes.len().min(width);
    if let (Some(dst), Some(src)) = (h.get_mut(at..at + n), bytes.get(..n)) {
        dst.copy_from_slice(src);
    }
}

/// A gzip member (RFC 1952) holding `data` in stored (uncompressed) deflate blocks: valid for
/// every gzip reader, deterministic, no compression library. No name, mtime 0, OS unknown.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected), as gzip uses.
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *slot = c;
    }
    let mut crc = 0xffff_ffffu32;
    for b in data {
        let idx = usize::from((crc as u8) ^ b);
        crc = table.get(idx).copied().unwrap_or(0) ^ (crc >> 8);
    }
    !crc
}
