//! A test certificate authority, generated at test time with the `openssl` command-line tool (no
//! key is ever committed).
//!
//! [`Pki::new`] creates a CA (EC P-256, valid for 2 days) in its own temporary directory;
//! [`Pki::workload`] issues a workload certificate the way Istio does for a pod:
//! - URI SAN `spiffe://cluster.local/ns/<ns>/sa/<sa>` (the SPIFFE ID Envoy exposes as
//!   `connection.uri_san_peer_certificate`),
//! - DNS SAN `localhost` and IP SAN `127.0.0.1`, so the same certificate serves as a server
//!   certificate on loopback,
//! - extended key usage `serverAuth` and `clientAuth`.
//!
//! The SHA-256 of each certificate's DER is computed here in Rust (PEM decoded with base64), as
//! lowercase hex (Envoy's `connection.sha256_peer_certificate_digest`, and the `Hash=` of
//! `x-forwarded-client-cert`) and as base64url without padding (RFC 8705 `cnf["x5t#S256"]`).
//!
//! Every `openssl` run is bounded in time; the directory (keys included) is removed on Drop.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::envoy::TempDir;

/// How long one `openssl` invocation may take.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);
/// The SPIFFE trust domain of every workload certificate.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// `spiffe://cluster.local/ns/<ns>/sa/<sa>`, the identity Istio gives a pod.
pub fn spiffe_id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}")
}

/// A workload certificate and its key, as PEM files in the [`Pki`]'s directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub ns: String,
    pub sa: String,
    /// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
    pub spiffe_id: String,
    pub cert_pem_path: PathBuf,
    /// PKCS#8 `PRIVATE KEY` (EC P-256), unencrypted.
    pub key_pem_path: PathBuf,
    /// The certificate in DER.
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER (Envoy's `connection.sha256_peer_certificate_digest`,
    /// XFCC `Hash=`).
    pub der_sha256_hex: String,
    /// Base64url (no padding) SHA-256 of the DER: RFC 8705 `cnf["x5t#S256"]`.
    pub der_sha256_b64url: String,
}

impl Workload {
    /// The RFC 8705 confirmation claim binding a token to this certificate:
    /// `{"x5t#S256": "<base64url sha256>"}`.
    pub fn cnf(&self) -> serde_json::Value {
        serde_json::json!({ "x5t#S256": self.der_sha256_b64url })
    }

    /// The certificate PEM text.
    pub fn cert_pem(&self) -> String {
        fs::read_to_string(&self.cert_pem_path).unwrap_or_else(|e| panic!("read {}: {e}", self.cert_pem_path.display()))
    }
}

/// A certificate authority in a temporary directory. Workload certificates are cached by
/// `(ns, sa)`; [`Pki::fresh_workload`] issues another certificate for the same identity.
pub struct Pki {
    dir: TempDir,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cnf: PathBuf,
    issued: Mutex<HashMap<(String, String), Workload>>,
    serial: AtomicU64,
}

impl Pki {
    /// A new CA (`CN=hopguard test CA <n>`); panics with openssl's output if it cannot be made.
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let cnf = dir.path().join("openssl.cnf");
        // A self-contained config, so the system openssl.cnf (default extensions, policies)
        // plays no part.
        fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n",
        )
        .expect("write openssl.cnf");
        let ca_cert = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca.key");
        let nonce = nonce();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-sha256",
                "-days",
                "2",
                "-config",
                &path_str(&cnf),
                "-extensions",
                "v3_ca",
                "-subj",
                &format!("/O=hopguard-test/CN=hopguard test CA {nonce:x}"),
                "-keyout",
                &path_str(&ca_key),
                "-out",
                &path_str(&ca_cert),
            ],
        );
        Pki {
            dir,
            ca_cert,
            ca_key,
            cnf,
            issued: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(nonce & 0xffff_ffff),
        }
    }

    /// The CA certificate (PEM), for `trusted_ca`.
    pub fn ca_path(&self) -> &Path {
        &self.ca_cert
    }

    /// The directory holding the CA and every issued certificate.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The workload certificate for `spiffe://cluster.local/ns/<ns>/sa/<sa>`, issued on first use
    /// and cached (the same certificate, same digest, on every call).
    pub fn workload(&self, ns: &str, sa: &str) -> Workload {
        let key = (ns.to_string(), sa.to_string());
        if let Some(existing) = self.issued.lock().unwrap().get(&key) {
            return existing.clone();
        }
        let issued = self.fresh_workload(ns, sa);
        self.issued.lock().unwrap().entry(key).or_insert(issued).clone()
    }

    /// A new certificate (new key, new serial, so a new digest) for the same identity; not
    /// cached. Useful to show a certificate-bound token is bound to a certificate, not an ID.
    pub fn fresh_workload(&self, ns: &str, sa: &str) -> Workload {
        for (what, value) in [("ns", ns), ("sa", sa)] {
            assert!(
                !value.is_empty()
                    && value.len() <= 63
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
                "{what} {value:?} is not a DNS-label-like name"
            );
        }
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let base = format!("{ns}_{sa}_{serial}");
        let key_path = self.dir.path().join(format!("{base}.key"));
        let csr_path = self.dir.path().join(format!("{base}.csr"));
        let cert_path = self.dir.path().join(format!("{base}.pem"));
        let ext_path = self.dir.path().join(format!("{base}.ext"));
        let id = spiffe_id(ns, sa);
        fs::write(
            &ext_path,
            format!(
                "[v3_workload]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage = serverAuth,clientAuth\n\
                 subjectAltName = URI:{id},DNS:localhost,IP:127.0.0.1\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
            ),
        )
        .expect("write workload extensions");
        openssl(
            self.dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-config",
                &path_str(&self.cnf),
                "-subj",
                &format!("/O=hopguard-test/OU={ns}/CN={sa}"),
                "-keyout",
                &path_str(&key_path),
                "-out",
                &path_str(&csr_path),
            ],
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &path_str(&csr_path),
                "-CA",
                &path_str(&self.ca_cert),
                "-CAkey",
                &path_str(&self.ca_key),
                "-set_serial",
                &serial.to_string(),
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &path_str(&ext_path),
                "-extensions",
                "v3_workload",
                "-out",
                &path_str(&cert_path),
            ],
        );
        let pem = fs::read_to_string(&cert_path).unwrap_or_else(|e| panic!("read {}: {e}", cert_path.display()));
        let der = pem_to_der(&pem);
        let digest = Sha256::digest(&der);
        Workload {
            ns: ns.to_string(),
            sa: sa.to_string(),
            spiffe_id: id,
            cert_pem_path: cert_path,
            key_pem_path: key_path,
            der_sha256_hex: digest.iter().map(|b| format!("{b:02x}")).collect(),
            der_sha256_b64url: URL_SAFE_NO_PAD.encode(digest),
            der,
        }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// The DER of the first `CERTIFICATE` block of `pem`; panics if there is none.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            inside = true;
        } else if line == "-----END CERTIFICATE-----" {
            if inside {
                return STANDARD
                    .decode(body.as_bytes())
                    .unwrap_or_else(|e| panic!("bad base64 in certificate PEM: {e}"));
            }
        } else if inside {
            body.push_str(line);
        }
    }
    panic!("no CERTIFICATE block in PEM:\n{pem}")
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// Runs `openssl args...` in `dir` with stdout and stderr to a log file there; returns that output.
/// Panics with it on failure or after [`OPENSSL_TIMEOUT`].
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let log_path = dir.join(format!("openssl-{}.log", RUN.fetch_add(1, Ordering::SeqCst)));
    let log = fs::File::create(&log_path).expect("create openssl log");
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("clone openssl log")))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("run openssl (needed for the test PKI; is it installed?): {e}"));
    // Polled every 2 ms (an openssl run takes a few ms; the harness's 20 ms poll would dominate).
    let deadline = Instant::now() + OPENSSL_TIMEOUT;
    let mut status = None;
    for _ in 0..100_000 {
        status = child.try_wait().ok().flatten();
        if status.is_some() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    let _ = fs::remove_file(&log_path);
    match status {
        Some(s) if s.success() => output,
        Some(s) => panic!("openssl {} failed ({s}):\n{output}", args.join(" ")),
        None => panic!(
            "openssl {} timed out after {OPENSSL_TIMEOUT:?}:\n{output}",
            args.join(" ")
        ),
    }
}
