//! A three-hop service mesh on loopback, with mTLS between the hops, for real-Envoy tests of
//! token-bound policies:
//!
//! ```text
//! client --HTTP--> edge Envoy --mTLS(edge cert)--> A sidecar Envoy [inbound] --> app A (Forwarder)
//!                                                                                   |
//!     B sidecar Envoy [inbound] <--mTLS(A cert)-- A sidecar Envoy [outbound] <--HTTP--+
//!          |
//!          +--> app B (Forwarder without next hop: echo)
//! ```
//!
//! - One Envoy process per hop (concurrency 1); a sidecar's inbound and outbound listeners live in
//!   the same process, as in Istio.
//! - Every inbound sidecar listener terminates mTLS (`require_client_certificate: true`, client
//!   certificates validated against the test CA of [`super::pki`]), runs the hop's HTTP filters,
//!   and sets `x-forwarded-client-cert` (`SANITIZE_SET`, `uri: true`; `Hash=` is always there) for
//!   the app, so tests can see which SPIFFE ID and certificate digest Envoy saw.
//! - The edge listener is plain HTTP; the edge calls A with its own workload certificate, so A sees
//!   the edge's SPIFFE ID.
//! - App A forwards method, path, `authorization`, `dpop` (and `content-type` and body) to B
//!   through A's outbound listener, and puts B's reply in its own under `"next"`.
//! - "Direct" listeners in the edge Envoy process (plain HTTP in, mTLS out to A's or B's inbound
//!   listener with a chosen caller's certificate, or none) simulate a workload calling a service
//!   directly: a token replayed at B by an attacker, a forged certificate, no certificate.
//!
//! - Listeners come through file-based LDS, so [`Mesh::set_filters`] swaps one hop's filters
//!   (e.g. a new hopguard policy per scenario) in place, in about a second, without restarting the
//!   mesh. Hop-to-hop clusters open one connection per request, so the very next request meets
//!   the new filters (a listener updated in place keeps serving existing connections with its old
//!   filters until they drain).
//! - Each hop's main listener writes a JSON access log ([`Mesh::access_log`]) with the peer's URI
//!   SAN and certificate SHA-256 as Envoy's connection info reports them (the accessors behind the
//!   Wasm properties `connection.uri_san_peer_certificate` and
//!   `connection.sha256_peer_certificate_digest`), plus any fields a test adds.
//! - Hosts: the client sends `Host: shop.example.test` to the edge and A receives it unchanged; A's
//!   app calls B with `Host: orders.shop.svc.cluster.local` ([`Hop::host`]). TLS 1.2 to 1.3
//!   between hops (1.3 negotiated).
//!
//! Everything listens on 127.0.0.1 port 0; Drop stops every Envoy and app and removes the
//! temporary directories (kept when a test panics).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::envoy::{
    bootstrap_yaml_with_clusters, cluster_yaml, listener_yaml, route_config_yaml, router_filter_yaml, yaml_str, Envoy,
    EnvoyOptions, Listener, TempDir,
};
use super::http::{self, Response};
use super::pki::{Pki, Workload};
use super::upstream::{Received, Reply, Upstream};
use super::wait_until;

// ---------------------------------------------------------------------------------------------
// YAML builders
// ---------------------------------------------------------------------------------------------

/// Indents every line but the first by `spaces`.
fn indent_rest(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(line);
    }
    out
}

/// `items` as a YAML block sequence, each item's lines indented `spaces`.
fn yaml_list(items: &[String], spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for item in items {
        let _ = writeln!(out, "{pad}- {}", indent_rest(item, spaces + 2));
    }
    out
}

fn filename(path: &Path) -> String {
    yaml_str(&path.to_string_lossy())
}

/// `tls_certificates` entry for `workload` (a mapping).
fn tls_certificate_yaml(workload: &Workload) -> String {
    format!(
        "certificate_chain: {{filename: {}}}\nprivate_key: {{filename: {}}}",
        filename(&workload.cert_pem_path),
        filename(&workload.key_pem_path)
    )
}

/// The `transport_socket` (mapping) of an inbound sidecar listener: TLS with `own`'s certificate,
/// a client certificate required and validated against the CA at `ca`.
pub fn downstream_mtls_yaml(own: &Workload, ca: &Path) -> String {
    format!(
        r#"name: envoy.transport_sockets.tls
typed_config:
  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
  require_client_certificate: true
  common_tls_context:
    tls_certificates:
    - {cert}
    validation_context:
      trusted_ca: {{filename: {ca}}}"#,
        cert = indent_rest(&tls_certificate_yaml(own), 6),
        ca = filename(ca),
    )
}

/// The `transport_socket` (mapping) of a cluster calling a sidecar over mTLS: `client`'s
/// certificate (none: TLS without a client certificate), the server validated against the CA at
/// `ca` and required to present URI SAN `server_spiffe_id`.
pub fn upstream_mtls_yaml(client: Option<&Workload>, ca: &Path, server_spiffe_id: &str) -> String {
    let certs = match client {
        Some(workload) => format!(
            "\n    tls_certificates:\n    - {}",
            indent_rest(&tls_certificate_yaml(workload), 6)
        ),
        None => String::new(),
    };
    format!(
        r#"name: envoy.transport_sockets.tls
typed_config:
  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
  sni: localhost
  common_tls_context:
    tls_params: {{tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3}}{certs}
    validation_context:
      trusted_ca: {{filename: {ca}}}
      match_typed_subject_alt_names:
      - san_type: URI
        matcher: {{exact: {san}}}"#,
        ca = filename(ca),
        san = yaml_str(server_spiffe_id),
    )
}

/// A static HTTP/1.1 cluster `name` to 127.0.0.1:`port` over mTLS (see [`upstream_mtls_yaml`]).
/// Every request opens a new connection (`max_requests_per_connection: 1`): a listener updated
/// in place serves old connections with its old filters until they drain, so pooled hop-to-hop
/// connections would make a test see the previous config; and each request gets its own
/// handshake with the caller's certificate.
pub fn mtls_cluster_yaml(
    name: &str,
    port: u16,
    client: Option<&Workload>,
    ca: &Path,
    server_spiffe_id: &str,
) -> String {
    format!(
        r#"name: {name}
type: STATIC
connect_timeout: 2s
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {{idle_timeout: 30s, max_requests_per_connection: 1}}
    explicit_http_config: {{http_protocol_options: {{}}}}
load_assignment:
  cluster_name: {name}
  endpoints:
  - lb_endpoints:
    - endpoint:
        address:
          socket_address: {{address: 127.0.0.1, port_value: {port}}}
transport_socket:
  {socket}"#,
        name = yaml_str(name),
        socket = indent_rest(&upstream_mtls_yaml(client, ca, server_spiffe_id), 2),
    )
}

/// A JSON file access log: `path`, one object per request with `fields` (name, Envoy format
/// string).
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub path: PathBuf,
    pub fields: Vec<(String, String)>,
}

/// The fields every mesh hop logs; `peer_uri_san` and `peer_sha256` come from the same
/// `Ssl::ConnectionInfo` accessors as the Wasm properties `connection.uri_san_peer_certificate`
/// and `connection.sha256_peer_certificate_digest`.
pub fn default_access_log_fields() -> Vec<(String, String)> {
    [
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(:PATH)%"),
        ("authority", "%REQ(:AUTHORITY)%"),
        ("scheme", "%REQ(:SCHEME)%"),
        ("x_forwarded_proto", "%REQ(X-FORWARDED-PROTO)%"),
        ("status", "%RESPONSE_CODE%"),
        ("details", "%RESPONSE_CODE_DETAILS%"),
        ("flags", "%RESPONSE_FLAGS%"),
        ("peer_uri_san", "%DOWNSTREAM_PEER_URI_SAN%"),
        ("peer_sha256", "%DOWNSTREAM_PEER_FINGERPRINT_256%"),
        ("tls_version", "%DOWNSTREAM_TLS_VERSION%"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An HTTP listener on 127.0.0.1 port 0: optional downstream `transport_socket`, the HTTP
/// filters (router appended), every request routed to `cluster`.
#[derive(Debug, Clone)]
pub struct HcmListener {
    pub name: String,
    /// A `transport_socket` mapping (see [`downstream_mtls_yaml`]); None is plain HTTP.
    pub transport_socket: Option<String>,
    /// `forward_client_cert_details: SANITIZE_SET` with the peer's URI (and always its `Hash`).
    pub xfcc: bool,
    pub http_filters: Vec<String>,
    pub cluster: String,
    pub access_log: Option<AccessLog>,
}

impl HcmListener {
    pub fn new(name: &str, cluster: &str) -> HcmListener {
        HcmListener {
            name: name.to_string(),
            transport_socket: None,
            xfcc: false,
            http_filters: Vec::new(),
            cluster: cluster.to_string(),
            access_log: None,
        }
    }

    pub fn to_yaml(&self) -> String {
        hcm_listener_yaml(self)
    }
}

/// A listener resource (mapping) for [`HcmListener`].
pub fn hcm_listener_yaml(listener: &HcmListener) -> String {
    let mut filters = listener.http_filters.clone();
    filters.push(router_filter_yaml());
    let transport = match &listener.transport_socket {
        Some(socket) => format!("\n  transport_socket:\n    {}", indent_rest(socket, 4)),
        None => String::new(),
    };
    let mut hcm_extra = String::new();
    if listener.xfcc {
        hcm_extra.push_str(
            "\n      forward_client_cert_details: SANITIZE_SET\n      set_current_client_cert_details: {uri: true}",
        );
    }
    if let Some(log) = &listener.access_log {
        let _ = write!(
            hcm_extra,
            "\n      access_log:\n      - name: envoy.access_loggers.file\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n          path: {}\n          log_format:\n            json_format:",
            filename(&log.path)
        );
        for (k, v) in &log.fields {
            let _ = write!(hcm_extra, "\n              {}: {}", yaml_str(k), yaml_str(v));
        }
    }
    format!(
        r#"name: {name}
stat_prefix: {name}
address:
  socket_address: {{address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      codec_type: AUTO{hcm_extra}
      route_config:
        {route_config}
      http_filters:
{filters}{transport}"#,
        name = yaml_str(&listener.name),
        route_config = indent_rest(&route_config_yaml(&listener.cluster), 8),
        filters = yaml_list(&filters, 6).trim_end(),
    )
}

/// (a) An inbound sidecar listener: mTLS terminated with `own`'s certificate (client certificate
/// required, validated against `ca`), XFCC set for the app, `http_filters`, then `app_cluster`.
pub fn inbound_listener_yaml(
    name: &str,
    own: &Workload,
    ca: &Path,
    http_filters: &[String],
    app_cluster: &str,
    access_log: Option<&AccessLog>,
) -> String {
    hcm_listener_yaml(&HcmListener {
        name: name.to_string(),
        transport_socket: Some(downstream_mtls_yaml(own, ca)),
        xfcc: true,
        http_filters: http_filters.to_vec(),
        cluster: app_cluster.to_string(),
        access_log: access_log.cloned(),
    })
}

/// (b) An outbound sidecar listener: plain HTTP from the local app, `http_filters`, then
/// `mtls_cluster` (see [`mtls_cluster_yaml`], which carries the app's client certificate).
pub fn outbound_listener_yaml(name: &str, http_filters: &[String], mtls_cluster: &str) -> String {
    let mut listener = HcmListener::new(name, mtls_cluster);
    listener.http_filters = http_filters.to_vec();
    hcm_listener_yaml(&listener)
}

/// A plain-HTTP edge listener: `http_filters`, then `cluster`.
pub fn edge_listener_yaml(
    name: &str,
    http_filters: &[String],
    cluster: &str,
    access_log: Option<&AccessLog>,
) -> String {
    let mut listener = HcmListener::new(name, cluster);
    listener.http_filters = http_filters.to_vec();
    listener.access_log = access_log.cloned();
    hcm_listener_yaml(&listener)
}

/// A bootstrap (the harness's node, admin and stats tags) with static `listeners` and `clusters`
/// (resource mappings).
pub fn mesh_bootstrap_yaml(listeners: &[String], clusters: &[String]) -> String {
    let base = bootstrap_yaml_with_clusters(&[], clusters);
    let marker = "  listeners: []\n";
    assert!(
        base.contains(marker),
        "bootstrap_yaml_with_clusters changed shape:\n{base}"
    );
    let listeners = if listeners.is_empty() {
        marker.to_string()
    } else {
        format!("  listeners:\n{}", yaml_list(listeners, 2))
    };
    base.replacen(marker, &listeners, 1)
}

// ---------------------------------------------------------------------------------------------
// The forwarding test service
// ---------------------------------------------------------------------------------------------

/// Chooses the headers a [`Forwarder`] sends to its next hop, from the request it received.
pub type ForwardHeaders = dyn Fn(&Received) -> Vec<(String, String)> + Send + Sync + 'static;

/// The default forwarding: every `authorization` and `dpop` value, and `content-type`.
pub fn forward_token_headers(received: &Received) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["authorization", "dpop", "content-type"] {
        for value in received.header_all(name) {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// A test app: echoes what it received (like [`super::upstream::echo`]) and, with a next hop,
/// first sends the request's method, path, body and [`forward_token_headers`] (or a custom set)
/// to `127.0.0.1:<next>` (the local outbound sidecar listener). Its reply then has the next hop's
/// status, and the echo JSON gains `next_status`, `next_headers` (`[[name, value], ...]`) and
/// `next` (the next hop's body as JSON, or as a string when it is not JSON). When the next hop
/// cannot be reached: 502 and `next: {"error": ...}`.
pub struct Forwarder {
    upstream: Upstream,
    /// 0: no next hop.
    next: Arc<AtomicU16>,
}

impl Forwarder {
    pub fn start(next: Option<u16>) -> Forwarder {
        Forwarder::start_with(next, forward_token_headers)
    }

    /// Like [`Forwarder::start`], sending the headers `headers(received)` to the next hop (a
    /// `host` among them replaces the default `127.0.0.1:<next>`).
    pub fn start_with(
        next: Option<u16>,
        headers: impl Fn(&Received) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Forwarder {
        let next = Arc::new(AtomicU16::new(next.unwrap_or(0)));
        let next_port = Arc::clone(&next);
        let upstream = Upstream::start_with(move |received: &Received| {
            let mut body = received.to_json();
            let port = next_port.load(Ordering::SeqCst);
            if port == 0 {
                return Reply::json(200, &body);
            }
            let forwarded = headers(received);
            let refs: Vec<(&str, &str)> = forwarded.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            match http::try_request(port, &received.method, &received.path, &refs, received.body.as_bytes()) {
                Ok(response) => {
                    body["next_status"] = json!(response.status);
                    body["next_headers"] = json!(response.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>());
                    body["next"] = serde_json::from_str(&response.body).unwrap_or(Value::String(response.body));
                    Reply::json(response.status, &body)
                }
                Err(e) => {
                    body["next_status"] = json!(502);
                    body["next"] = json!({ "error": e.to_string() });
                    Reply::json(502, &body)
                }
            }
        });
        Forwarder { upstream, next }
    }

    /// Sets (or changes) the next hop's port, e.g. once the local outbound listener is bound.
    pub fn set_next(&self, port: Option<u16>) {
        self.next.store(port.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn next(&self) -> Option<u16> {
        Some(self.next.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    pub fn port(&self) -> u16 {
        self.upstream.port()
    }

    /// Every request the app received (see [`Upstream::requests`]).
    pub fn requests(&self) -> Vec<Received> {
        self.upstream.requests()
    }

    pub fn count(&self) -> usize {
        self.upstream.count()
    }

    pub fn clear(&self) {
        self.upstream.clear();
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

// ---------------------------------------------------------------------------------------------
// The mesh
// ---------------------------------------------------------------------------------------------

/// A hop of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hop {
    Edge,
    A,
    B,
}

impl Hop {
    pub const ALL: [Hop; 3] = [Hop::Edge, Hop::A, Hop::B];

    /// `"edge"`, `"a"`, `"b"`: also the caller names of the hops' workloads in [`Mesh::direct`].
    pub fn name(self) -> &'static str {
        match self {
            Hop::Edge => "edge",
            Hop::A => "a",
            Hop::B => "b",
        }
    }

    /// The hop's workload identity `(namespace, service account)`.
    pub fn identity(self) -> (&'static str, &'static str) {
        match self {
            Hop::Edge => ("istio-system", "ingress"),
            Hop::A => ("shop", "frontend"),
            Hop::B => ("shop", "orders"),
        }
    }

    /// The `Host` requests to this hop carry: the public name for the edge (A receives it
    /// unchanged through the edge), the service name for B (set by A's forwarder and by
    /// [`Mesh::direct`]). [`Mesh::direct`] to A uses A's service name.
    pub fn host(self) -> &'static str {
        match self {
            Hop::Edge => "shop.example.test",
            Hop::A => "frontend.shop.svc.cluster.local",
            Hop::B => "orders.shop.svc.cluster.local",
        }
    }
}

/// Caller name for [`Mesh::direct`]: an extra workload `spiffe://cluster.local/ns/sandbox/sa/attacker`
/// from the mesh CA.
pub const ATTACKER: &str = "attacker";
/// Caller name for [`Mesh::direct`]: A's SPIFFE ID in a certificate from another (untrusted) CA.
pub const FORGED_A: &str = "forged-a";
/// Caller name for [`Mesh::direct`]: TLS without a client certificate.
pub const NO_CERT: &str = "no-cert";

/// One hop's configuration.
#[derive(Debug, Clone, Default)]
pub struct HopConfig {
    /// HTTP filter fragments (e.g. [`super::envoy::hopguard_filter_yaml`]) on the hop's main
    /// listener: the plain listener of the edge, the mTLS inbound listener of A and B. The router
    /// is appended.
    pub filters: Vec<String>,
    /// A only: HTTP filters on A's outbound listener (app A -> B).
    pub outbound_filters: Vec<String>,
    /// Access log fields added to [`default_access_log_fields`] on the main listener.
    pub access_log_fields: Vec<(String, String)>,
}

impl HopConfig {
    pub fn filters(filters: Vec<String>) -> HopConfig {
        HopConfig {
            filters,
            ..HopConfig::default()
        }
    }
}

/// Everything [`Mesh::start_with`] needs.
pub struct MeshConfig {
    pub edge: HopConfig,
    pub a: HopConfig,
    pub b: HopConfig,
    /// Extra callers for [`Mesh::direct`]: `(name, ns, sa)`, issued by the mesh CA. [`ATTACKER`]
    /// is always there.
    pub callers: Vec<(String, String, String)>,
    /// The headers app A forwards to B (default [`forward_token_headers`]; `host` is set to
    /// `Hop::B.host()` unless returned).
    pub a_forward: Option<Arc<ForwardHeaders>>,
    /// Options of every Envoy (default concurrency 1); the mesh adds a 100 ms access log flush.
    pub options: EnvoyOptions,
}

impl MeshConfig {
    pub fn new(edge: Vec<String>, a: Vec<String>, b: Vec<String>) -> MeshConfig {
        MeshConfig {
            edge: HopConfig::filters(edge),
            a: HopConfig::filters(a),
            b: HopConfig::filters(b),
            callers: Vec::new(),
            a_forward: None,
            options: EnvoyOptions::new(1),
        }
    }

    pub fn hop_mut(&mut self, hop: Hop) -> &mut HopConfig {
        match hop {
            Hop::Edge => &mut self.edge,
            Hop::A => &mut self.a,
            Hop::B => &mut self.b,
        }
    }
}

/// The running mesh. Drop stops the Envoys, then the apps, then removes certificates and logs.
pub struct Mesh {
    // Declaration order is drop order: Envoys first.
    edge: Envoy,
    a: Envoy,
    b: Envoy,
    app_a: Forwarder,
    app_b: Forwarder,
    /// Each hop's listeners, the main one (edge / inbound) first; A's outbound second.
    listeners: BTreeMap<Hop, Vec<HcmListener>>,
    workloads: BTreeMap<String, Workload>,
    access_logs: BTreeMap<Hop, PathBuf>,
    started_in: Duration,
    hop_started_in: BTreeMap<Hop, Duration>,
    _logs: TempDir,
    _rogue: Pki,
    pki: Pki,
}

/// A plain listener kept next to a hop's listeners. Needed twice over: the harness waits for a
/// bound listener before calling Envoy ready (so the Envoy starts with it), and it must never be
/// removed in the update that adds the real listeners: Envoy 1.40 hands a removed listener's
/// socket to every listener of the same update with the same configured address, and all ours
/// are `127.0.0.1:0`, so they would all share the placeholder's port. It routes to the first
/// listener's cluster so its route validates.
fn placeholder(listeners: &[HcmListener]) -> Listener {
    let first_cluster = listeners.first().map_or("app", |l| l.cluster.as_str());
    Listener::new("placeholder").cluster(first_cluster)
}

/// The LDS resources of a hop: its listeners and the [`placeholder`].
fn hop_listener_yamls(listeners: &[HcmListener]) -> Vec<String> {
    let mut yamls: Vec<String> = listeners.iter().map(hcm_listener_yaml).collect();
    yamls.push(listener_yaml(&placeholder(listeners)));
    yamls
}

/// Starts one hop's Envoy: static `clusters`, `listeners` through file-based LDS (so
/// [`Mesh::set_filters`] can replace them in place). Panics with the logs when refused.
fn start_hop(hop: Hop, clusters: &[String], listeners: &[HcmListener], options: &EnvoyOptions) -> Envoy {
    let mut envoy = Envoy::start_dynamic_with(clusters, &[placeholder(listeners)], options);
    if let Err(logs) = envoy.push_listener_yamls(&hop_listener_yamls(listeners)) {
        panic!("{hop:?}: Envoy refused the listeners:\n{logs}");
    }
    let ports: BTreeSet<u16> = envoy.ports().values().copied().collect();
    assert_eq!(
        ports.len(),
        listeners.len() + 1,
        "{hop:?}: listeners share ports: {:?}",
        envoy.ports()
    );
    envoy
}

impl Mesh {
    /// Starts the mesh with these HTTP filters on the edge, A's inbound and B's inbound
    /// listeners (empty: no filter but the router).
    pub fn start(edge: Vec<String>, a: Vec<String>, b: Vec<String>) -> Mesh {
        Mesh::start_with(MeshConfig::new(edge, a, b))
    }

    pub fn start_with(config: MeshConfig) -> Mesh {
        let started = Instant::now();
        let pki = Pki::new();
        let rogue = Pki::new();
        let ca = pki.ca_path().to_path_buf();
        let logs = TempDir::new("mesh-logs");
        let options = config.options.clone().arg("--file-flush-interval-msec").arg("100");

        let mut workloads = BTreeMap::new();
        for hop in Hop::ALL {
            let (ns, sa) = hop.identity();
            workloads.insert(hop.name().to_string(), pki.workload(ns, sa));
        }
        workloads.insert(ATTACKER.to_string(), pki.workload("sandbox", "attacker"));
        let (a_ns, a_sa) = Hop::A.identity();
        workloads.insert(FORGED_A.to_string(), rogue.workload(a_ns, a_sa));
        for (name, ns, sa) in &config.callers {
            assert!(
                name != NO_CERT && !Hop::ALL.iter().any(|h| h.name() == name),
                "caller name {name:?} is reserved"
            );
            workloads.insert(name.clone(), pki.workload(ns, sa));
        }
        let workload = |name: &str| workloads.get(name).expect("workload").clone();

        let mut access_logs = BTreeMap::new();
        let mut main_listener = |hop: Hop, hop_config: &HopConfig| {
            let path = logs.path().join(format!("{}.access.log", hop.name()));
            access_logs.insert(hop, path.clone());
            let mut fields = default_access_log_fields();
            fields.extend(hop_config.access_log_fields.iter().cloned());
            let mut listener = match hop {
                Hop::Edge => HcmListener::new("edge", "a_inbound"),
                Hop::A | Hop::B => {
                    let mut inbound = HcmListener::new("inbound", "app");
                    inbound.transport_socket = Some(downstream_mtls_yaml(&workload(hop.name()), &ca));
                    inbound.xfcc = true;
                    inbound
                }
            };
            listener.http_filters = hop_config.filters.clone();
            listener.access_log = Some(AccessLog { path, fields });
            listener
        };
        let edge_main = main_listener(Hop::Edge, &config.edge);
        let a_main = main_listener(Hop::A, &config.a);
        let b_main = main_listener(Hop::B, &config.b);
        let mut listeners = BTreeMap::new();
        let mut hop_started_in = BTreeMap::new();
        let mut timed = |hop: Hop, start: &dyn Fn() -> Envoy| {
            let t = Instant::now();
            let envoy = start();
            hop_started_in.insert(hop, t.elapsed());
            envoy
        };

        // B: inbound -> app B (echo).
        let app_b = Forwarder::start(None);
        listeners.insert(Hop::B, vec![b_main]);
        let b_clusters = [cluster_yaml("app", app_b.port())];
        let b = timed(Hop::B, &|| {
            start_hop(Hop::B, &b_clusters, &listeners[&Hop::B], &options)
        });

        // A: inbound -> app A; app A -> outbound -> B's inbound with A's certificate.
        let a_forward = config.a_forward.clone();
        let app_a = Forwarder::start_with(None, move |received| {
            let mut headers = match &a_forward {
                Some(f) => f(received),
                None => forward_token_headers(received),
            };
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
                headers.push(("host".to_string(), Hop::B.host().to_string()));
            }
            headers
        });
        let mut outbound = HcmListener::new("outbound", "next");
        outbound.http_filters = config.a.outbound_filters.clone();
        listeners.insert(Hop::A, vec![a_main, outbound]);
        let a_clusters = [
            cluster_yaml("app", app_a.port()),
            mtls_cluster_yaml(
                "next",
                b.port("inbound"),
                Some(&workload("a")),
                &ca,
                &workload("b").spiffe_id,
            ),
        ];
        let a = timed(Hop::A, &|| {
            start_hop(Hop::A, &a_clusters, &listeners[&Hop::A], &options)
        });
        app_a.set_next(Some(a.port("outbound")));

        // Edge: plain listener -> A's inbound with the edge's certificate; direct listeners.
        let mut edge_listeners = vec![edge_main];
        let mut edge_clusters = vec![mtls_cluster_yaml(
            "a_inbound",
            a.port("inbound"),
            Some(&workload("edge")),
            &ca,
            &workload("a").spiffe_id,
        )];
        let mut callers: Vec<&str> = workloads.keys().map(String::as_str).collect();
        callers.push(NO_CERT);
        for (target, port) in [(Hop::A, a.port("inbound")), (Hop::B, b.port("inbound"))] {
            for caller in &callers {
                let name = direct_listener_name(target, caller);
                let client = (*caller != NO_CERT).then(|| workload(caller));
                let server_id = &workload(target.name()).spiffe_id;
                edge_listeners.push(HcmListener::new(&name, &name));
                edge_clusters.push(mtls_cluster_yaml(&name, port, client.as_ref(), &ca, server_id));
            }
        }
        listeners.insert(Hop::Edge, edge_listeners);
        let edge = timed(Hop::Edge, &|| {
            start_hop(Hop::Edge, &edge_clusters, &listeners[&Hop::Edge], &options)
        });

        Mesh {
            edge,
            a,
            b,
            app_a,
            app_b,
            listeners,
            workloads,
            access_logs,
            started_in: started.elapsed(),
            hop_started_in,
            _logs: logs,
            _rogue: rogue,
            pki,
        }
    }

    /// Replaces the HTTP filters of `hop`'s main listener (edge listener, or A's / B's inbound)
    /// in place, without restarting Envoy: same port, new connections get the new filters (hop
    /// to hop connections are not pooled, so the next request through the mesh does). `Err`
    /// (the rejection log lines) when Envoy refuses the update; the old filters then stay.
    pub fn set_filters(&mut self, hop: Hop, filters: Vec<String>) -> Result<(), String> {
        self.update_listener(hop, 0, filters)
    }

    /// Replaces the HTTP filters of A's outbound listener (app A -> B) in place.
    pub fn set_outbound_filters(&mut self, filters: Vec<String>) -> Result<(), String> {
        self.update_listener(Hop::A, 1, filters)
    }

    fn update_listener(&mut self, hop: Hop, index: usize, filters: Vec<String>) -> Result<(), String> {
        let mut listeners = self.listeners.get(&hop).expect("hop listeners").clone();
        let listener = listeners.get_mut(index).expect("listener index");
        listener.http_filters = filters;
        let name = listener.name.clone();
        let yamls = hop_listener_yamls(&listeners);
        let envoy = match hop {
            Hop::Edge => &mut self.edge,
            Hop::A => &mut self.a,
            Hop::B => &mut self.b,
        };
        let port = envoy.port(&name);
        envoy.push_listener_yamls(&yamls)?;
        let new_port = envoy.port(&name);
        assert_eq!(
            new_port, port,
            "{hop:?} listener {name} moved from port {port} to {new_port}: not updated in place"
        );
        self.listeners.insert(hop, listeners);
        Ok(())
    }

    /// Time to issue the certificates and start all three Envoys and both apps.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Time to start the hop's Envoy with its listeners applied (Wasm filters loaded), which
    /// [`Envoy::started_in`] does not include (the listeners come through LDS after start).
    pub fn hop_started_in(&self, hop: Hop) -> Duration {
        self.hop_started_in.get(&hop).copied().unwrap_or_default()
    }

    /// The edge's plain-HTTP listener.
    pub fn edge_port(&self) -> u16 {
        self.edge.port("edge")
    }

    /// A request from the outside through the edge; `Host: shop.example.test` unless `headers`
    /// has a `host`.
    pub fn edge_request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.edge_request_with_body(method, path, headers, b"")
    }

    pub fn edge_request_with_body(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let headers = with_host(headers, Hop::Edge.host());
        http::request_with_body(self.edge_port(), method, path, &headers, body)
    }

    /// The plain-HTTP port through which `caller` (a hop name `"edge"`/`"a"`/`"b"`, [`ATTACKER`],
    /// [`FORGED_A`], [`NO_CERT`] or a [`MeshConfig::callers`] name) calls `target`'s (A or B)
    /// inbound listener directly over mTLS with its own certificate.
    pub fn direct_port(&self, target: Hop, caller: &str) -> u16 {
        assert!(target != Hop::Edge, "the edge is plain HTTP: use edge_port()");
        self.edge.port(&direct_listener_name(target, caller))
    }

    /// A request from workload `caller` straight to `target`'s inbound listener (see
    /// [`Mesh::direct_port`]); `Host` is `target.host()` unless `headers` has one.
    pub fn direct(&self, target: Hop, caller: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.try_direct(target, caller, method, path, headers, b"")
            .unwrap_or_else(|e| panic!("direct {method} {path} from {caller} to {target:?} failed: {e}"))
    }

    pub fn try_direct(
        &self,
        target: Hop,
        caller: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let headers = with_host(headers, target.host());
        http::try_request(self.direct_port(target, caller), method, path, &headers, body)
    }

    /// The workload of a hop.
    pub fn workload(&self, hop: Hop) -> &Workload {
        self.caller(hop.name())
    }

    /// The workload of a caller name (see [`Mesh::direct_port`]).
    pub fn caller(&self, name: &str) -> &Workload {
        self.workloads
            .get(name)
            .unwrap_or_else(|| panic!("no caller {name:?}; callers: {:?}", self.workloads.keys()))
    }

    /// The hop's Envoy (stats, logs, admin).
    pub fn envoy(&self, hop: Hop) -> &Envoy {
        match hop {
            Hop::Edge => &self.edge,
            Hop::A => &self.a,
            Hop::B => &self.b,
        }
    }

    /// The app behind A (a forwarder to B) or B (an echo); panics for the edge.
    pub fn app(&self, hop: Hop) -> &Forwarder {
        match hop {
            Hop::Edge => panic!("the edge has no app"),
            Hop::A => &self.app_a,
            Hop::B => &self.app_b,
        }
    }

    /// The mesh's certificate authority (to issue more workloads, e.g. for `cnf` claims).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The main listener's access log entries so far (flushed every 100 ms).
    pub fn access_log(&self, hop: Hop) -> Vec<Value> {
        let path = self.access_logs.get(&hop).expect("access log path");
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line {l:?}: {e}")))
            .collect()
    }

    /// Waits (bounded) until the hop's access log has at least `count` entries; returns them.
    pub fn wait_access_log(&self, hop: Hop, count: usize, timeout: Duration) -> Vec<Value> {
        let mut entries = Vec::new();
        wait_until(timeout, || {
            entries = self.access_log(hop);
            entries.len() >= count
        });
        entries
    }
}

fn direct_listener_name(target: Hop, caller: &str) -> String {
    format!("direct_{}_{caller}", target.name())
}

fn with_host<'a>(headers: &[(&'a str, &'a str)], host: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut out = headers.to_vec();
    if !out.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.push(("host", host));
    }
    out
}

/// The `x-forwarded-client-cert` elements of a header value, each as `key -> value` (keys as
/// Envoy writes them: `By`, `Hash`, `URI`, ...), quotes removed. Elements are separated by `,`
/// and pairs by `;` outside quotes.
pub fn parse_xfcc(value: &str) -> Vec<BTreeMap<String, String>> {
    let mut elements = Vec::new();
    let mut current = BTreeMap::new();
    let mut pair = String::new();
    let mut quoted = false;
    let finish_pair = |pair: &mut String, current: &mut BTreeMap<String, String>| {
        if let Some((k, v)) = pair.split_once('=') {
            current.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
        pair.clear();
    };
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                pair.push(c);
            }
            ';' if !quoted => finish_pair(&mut pair, &mut current),
            ',' if !quoted => {
                finish_pair(&mut pair, &mut current);
                elements.push(std::mem::take(&mut current));
            }
            _ => pair.push(c),
        }
    }
    finish_pair(&mut pair, &mut current);
    if !current.is_empty() {
        elements.push(current);
    }
    elements
}
