//! The performance benchmark behind `scripts/bench` (issue 6): real Envoy 1.40 on one pinned core,
//! side by side in one run, interleaving configurations round-robin:
//!
//! - Envoy with no filter;
//! - Envoy's native `jwt_authn`, cache off (a distinct token per request) and cache on (the same
//!   token every request), for RS256, ES256 and EdDSA;
//! - hopguard for the same algorithms, with the same token every request and with a distinct token
//!   per request;
//! - a no-op Rust proxy-wasm filter (examples/noop_filter.rs): the floor of any Wasm filter;
//! - the same filter reading `authorization` and removing it: the floor of any Wasm filter that
//!   consumes a bearer token (the "Floors" section sets it against native `jwt_authn`'s cache);
//! - hopguard with no token (`requirement: allowMissing`): hopguard's floor;
//! - hopguard's full pipeline: verification, an `authorization` policy, an inline revocation
//!   list, a claim header, stripping and telemetry.
//!
//! Every Envoy runs `--concurrency 1` pinned to `--envoy-core` (default 0); this process, the
//! load generator (`wrk`, one thread) and the upstream (another Envoy answering with a fixed
//! `direct_response`) run on `--load-core` (default 1). Per configuration it reports throughput
//! (wrk, closed loop), Envoy CPU per request (utime+stime of the Envoy process from
//! `/proc/<pid>/stat` over the measured window, divided by the requests Envoy completed), the
//! CPU added over no filter, p50/p99 latency at a fixed rate (an open-loop client in this process,
//! corrected for coordinated omission, see [`probe`]), Envoy's VmRSS after the last run, and the
//! token-cache hit rate (hopguard's `token_cache_total`, jwt_authn's `jwt_cache_hit`). Then the
//! resident memory added by 10,000 cached tokens, the wasm size, and the ratios the issue's targets
//! ask for. The markdown goes to `target/bench-results.md` (or `--out`) and to stdout.
//!
//! Run it through `scripts/bench` (which installs wrk and builds the filter); `--help` lists the
//! options. Everything listens on 127.0.0.1; every loop is bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::envoy::{
    bootstrap_yaml, bootstrap_yaml_with_clusters, hopguard_filter_yaml, jwt_authn_filter_yaml, Envoy, EnvoyOptions,
    JwtProvider, JwtRequires, Listener,
};
use support::mint::{self, Signer};
use support::upstream::{Reply, Upstream};

const ISS: &str = "https://idp.bench.local";
const AUD: &str = "bench";
const PATH: &str = "/orders/1";
const LISTENER: &str = "bench";
const ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
/// Lifetime of minted tokens; cached token files are re-minted when less than a day is left.
const TOKEN_LIFETIME_S: u64 = 7 * 86_400;
/// Size of the native filter's JWT cache when on (the same bound as hopguard's default).
const NATIVE_CACHE_SIZE: u32 = 10_000;
/// Tokens in the resident-memory measurement.
const MEMORY_TOKENS: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    rounds: usize,
    seconds: f64,
    warmup: f64,
    latency_seconds: f64,
    rate: f64,
    connections: usize,
    probe_connections: usize,
    distinct: usize,
    envoy_core: usize,
    load_core: usize,
    wrk: String,
    out: PathBuf,
    only: Vec<String>,
    memory: bool,
    echo_upstream: bool,
    direct_response: bool,
}

const USAGE: &str = "usage: bench [--quick] [--rounds N] [--seconds S] [--warmup S] [--latency-seconds S]
             [--rate R] [--connections C] [--probe-connections C] [--distinct N]
             [--envoy-core N] [--load-core N] [--wrk PATH] [--out FILE] [--only a,b,...]
             [--no-memory] [--echo-upstream] [--direct-response] [--list]
  --quick              1 round of 2 s per configuration (about two minutes in all)
  --rounds N           round-robin rounds; medians are reported (default 3)
  --seconds S          throughput window per configuration and round (default 5)
  --warmup S           unmeasured load per configuration before round 1 (default 1.5)
  --latency-seconds S  fixed-rate latency probe per configuration and round (default 2)
  --rate R             the probe's fixed rate, requests/s (default 500)
  --connections C      wrk connections (default 32)
  --distinct N         distinct tokens minted per algorithm (default 50000; cached in target/bench)
  --only a,b           run only these configurations (see --list)
  --no-memory          skip the 10,000-token resident memory measurement
  --echo-upstream      forward to the tests' echo server (threads in this process) instead of an
                       Envoy answering with a direct_response
  --direct-response    the measured Envoys answer themselves (no upstream leg): less work on the
                       load core, a cheaper baseline, the same filter cost";

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = support::envoy::repo_root();
    let mut o = Options {
        quick: false,
        rounds: 3,
        seconds: 5.0,
        warmup: 1.5,
        latency_seconds: 2.0,
        rate: 500.0,
        connections: 32,
        probe_connections: 4,
        distinct: 50_000,
        envoy_core: 0,
        load_core: 1,
        wrk: "wrk".to_string(),
        out: root.join("target/bench-results.md"),
        only: Vec::new(),
        memory: true,
        echo_upstream: false,
        direct_response: false,
    };
    if args.iter().any(|a| a == "--quick") {
        o.quick = true;
        o.rounds = 1;
        o.seconds = 2.0;
        o.warmup = 0.5;
        o.latency_seconds = 1.0;
    }
    let mut it = args.iter().take(64);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| die(&format!("{a} needs a value\n{USAGE}")))
        };
        let num = |v: String| -> f64 {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .unwrap_or_else(|| die(&format!("{a}: not a number: {v}")))
        };
        match a.as_str() {
            "--quick" => {}
            "--rounds" => o.rounds = (num(value()) as usize).clamp(1, 20),
            "--seconds" => o.seconds = num(value()).clamp(0.5, 120.0),
            "--warmup" => o.warmup = num(value()).min(60.0),
            "--latency-seconds" => o.latency_seconds = num(value()).min(60.0),
            "--rate" => o.rate = num(value()).clamp(10.0, 100_000.0),
            "--connections" => o.connections = (num(value()) as usize).clamp(1, 1024),
            "--probe-connections" => o.probe_connections = (num(value()) as usize).clamp(1, 64),
            "--distinct" => o.distinct = (num(value()) as usize).clamp(100, 1_000_000),
            "--envoy-core" => o.envoy_core = num(value()) as usize,
            "--load-core" => o.load_core = num(value()) as usize,
            "--wrk" => o.wrk = value(),
            "--out" => o.out = PathBuf::from(value()),
            "--only" => o.only = value().split(',').map(str::to_owned).collect(),
            "--no-memory" => o.memory = false,
            "--echo-upstream" => o.echo_upstream = true,
            "--direct-response" => o.direct_response = true,
            "--list" => {
                for c in configurations() {
                    println!("{:<26} {}", c.label, c.title);
                }
                std::process::exit(0);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other}\n{USAGE}")),
        }
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    support::envoy::kill_live();
    std::process::exit(2);
}

fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

// ---------------------------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    None,
    Native {
        cache: bool,
    },
    /// examples/noop_filter.rs: the floor of any Rust proxy-wasm filter.
    Noop,
    /// examples/noop_filter.rs in `token-floor` mode: reads `authorization` and removes it, the
    /// least any Wasm filter consuming a bearer token does.
    TokenFloor,
    /// examples/noop_filter.rs in `host-calls` mode: hopguard's host calls of a cache hit,
    /// deciding nothing.
    HostCalls,
    Hopguard,
    /// hopguard with `requirement: allowMissing`, for requests without a token.
    HopguardAllowMissing,
    HopguardFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tokens {
    /// The same token on every request (cache hits).
    Repeated,
    /// A different token on every request (cache misses).
    Distinct,
    /// No token at all.
    Absent,
}

#[derive(Debug, Clone)]
struct Configuration {
    label: String,
    title: String,
    filter: Filter,
    alg: &'static str,
    tokens: Tokens,
}

fn configurations() -> Vec<Configuration> {
    let mut out = vec![Configuration {
        label: "none".into(),
        title: "no filter".into(),
        filter: Filter::None,
        alg: "ES256",
        tokens: Tokens::Repeated,
    }];
    for alg in ALGS {
        out.push(Configuration {
            label: format!("native-{alg}-off"),
            title: format!("native jwt_authn, {alg}, cache off, distinct tokens"),
            filter: Filter::Native { cache: false },
            alg,
            tokens: Tokens::Distinct,
        });
        out.push(Configuration {
            label: format!("native-{alg}-cached"),
            title: format!("native jwt_authn, {alg}, cache on, repeated token"),
            filter: Filter::Native { cache: true },
            alg,
            tokens: Tokens::Repeated,
        });
    }
    for alg in ALGS {
        out.push(Configuration {
            label: format!("hopguard-{alg}-repeated"),
            title: format!("hopguard, {alg}, repeated token"),
            filter: Filter::Hopguard,
            alg,
            tokens: Tokens::Repeated,
        });
        out.push(Configuration {
            label: format!("hopguard-{alg}-distinct"),
            title: format!("hopguard, {alg}, distinct tokens"),
            filter: Filter::Hopguard,
            alg,
            tokens: Tokens::Distinct,
        });
    }
    out.push(Configuration {
        label: "noop-wasm".into(),
        title: "no-op Rust proxy-wasm filter (examples/noop_filter.rs): any Wasm filter's floor".into(),
        filter: Filter::Noop,
        alg: "ES256",
        tokens: Tokens::Absent,
    });
    out.push(Configuration {
        label: "wasm-token-floor".into(),
        title: "Rust proxy-wasm filter that only reads `authorization` and removes it: any Wasm token filter's floor"
            .into(),
        filter: Filter::TokenFloor,
        alg: "ES256",
        tokens: Tokens::Repeated,
    });
    out.push(Configuration {
        label: "wasm-host-calls".into(),
        title: "Rust proxy-wasm filter making hopguard's host calls of a cache hit, deciding nothing".into(),
        filter: Filter::HostCalls,
        alg: "ES256",
        tokens: Tokens::Repeated,
    });
    out.push(Configuration {
        label: "hopguard-no-token".into(),
        title: "hopguard, no token (allowMissing): hopguard's floor".into(),
        filter: Filter::HopguardAllowMissing,
        alg: "ES256",
        tokens: Tokens::Absent,
    });
    out.push(Configuration {
        label: "hopguard-full-ES256".into(),
        title: "hopguard full pipeline, ES256, repeated token".into(),
        filter: Filter::HopguardFull,
        alg: "ES256",
        tokens: Tokens::Repeated,
    });
    out
}

/// hopguard's configuration: one provider with this key; `full` adds a policy, a claim header,
/// an inline revocation list and telemetry settings.
fn hopguard_config(signer: &Signer, filter: Filter) -> Value {
    let mut provider = json!({
        "name": "bench",
        "issuer": ISS,
        "audiences": [AUD],
        "jwks": mint::jwks(&[signer]),
        "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
    });
    match filter {
        Filter::HopguardFull => {}
        Filter::HopguardAllowMissing => return json!({"providers": [provider], "requirement": "allowMissing"}),
        _ => return json!({ "providers": [provider] }),
    }
    provider["outputClaimToHeaders"] = json!([{"header": "x-jwt-sub", "claim": "sub"}]);
    json!({
        "providers": [provider],
        "authorization": {"policies": [
            {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
            {"name": "orders", "action": "ALLOW", "rules": [{
                "name": "read",
                "from": [{"source": {"requestPrincipals": [format!("{ISS}/*")]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/*"]}}],
                "when": [{"key": "request.auth.claims[scope]", "values": ["orders:read"]}]
            }]}
        ]},
        "revocation": {"jtis": ["revoked-1", "revoked-2"], "subjects": ["svc-revoked"]},
        "telemetry": {"allowLog": "debug", "denyLog": "info", "sampleRate": 1.0, "leakGuard": "strip"},
    })
}

fn native_filter(signer: &Signer, cache: bool) -> String {
    let mut provider = JwtProvider::new("bench", ISS, &mint::jwks(&[signer]).to_string());
    provider.audiences = vec![AUD.to_string()];
    let yaml = jwt_authn_filter_yaml(&[provider], &JwtRequires::Any(vec!["bench".into()]));
    if !cache {
        return yaml;
    }
    // JwtProvider.jwt_cache_config (envoy.extensions.filters.http.jwt_authn.v3); the cache is
    // off when the field is absent.
    let anchor = "\n      local_jwks:";
    assert!(yaml.contains(anchor), "unexpected jwt_authn YAML:\n{yaml}");
    yaml.replacen(
        anchor,
        &format!("\n      jwt_cache_config: {{jwt_cache_size: {NATIVE_CACHE_SIZE}}}{anchor}"),
        1,
    )
}

/// A route config answering every request with 200 "ok" from Envoy itself.
const DIRECT_ROUTE: &str = r#"name: direct
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    direct_response: {status: 200, body: {inline_string: "ok"}}"#;

/// The measured listener; with `direct`, Envoy answers itself instead of proxying upstream.
fn listener_for(c: &Configuration, signer: &Signer, direct: bool) -> Listener {
    let mut l = Listener::new(LISTENER);
    if direct {
        l = l.route_config(DIRECT_ROUTE.to_string());
    }
    match c.filter {
        Filter::None => l,
        Filter::Noop => l.filter(support::envoy::wasm_filter_yaml(&noop_wasm_path(), "noop", "{}")),
        Filter::TokenFloor => l.filter(support::envoy::wasm_filter_yaml(
            &noop_wasm_path(),
            "noop",
            "token-floor",
        )),
        Filter::HostCalls => l.filter(support::envoy::wasm_filter_yaml(
            &noop_wasm_path(),
            "noop",
            "host-calls",
        )),
        Filter::Native { cache } => l.filter(native_filter(signer, cache)),
        Filter::Hopguard | Filter::HopguardAllowMissing | Filter::HopguardFull => {
            l.filter(hopguard_filter_yaml(&hopguard_config(signer, c.filter).to_string()))
        }
    }
}

/// The no-op filter: `$HOPGUARD_NOOP_WASM`, else next to hopguard's wasm (scripts/bench builds it).
fn noop_wasm_path() -> PathBuf {
    match std::env::var_os("HOPGUARD_NOOP_WASM").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => support::envoy::repo_root().join("target/wasm32-wasip1/release/examples/noop_filter.wasm"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

struct AlgTokens {
    signer: Signer,
    repeated: String,
    distinct: Arc<Vec<String>>,
    file: PathBuf,
}

fn claims(sub: &str, jti: &str, now: u64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "scope": "orders:read orders:write",
           "iat": now, "exp": now + TOKEN_LIFETIME_S, "jti": jti})
}

/// `count` distinct tokens of `signer`, from `dir` when a file minted with the same key, issuer
/// and audience has enough tokens valid for at least another day; minted (on every core) and
/// stored otherwise.
fn distinct_tokens(dir: &Path, signer: &Signer, count: usize) -> (Arc<Vec<String>>, PathBuf) {
    let file = dir.join(format!("tokens-{}.txt", signer.alg));
    let meta_file = dir.join(format!("tokens-{}.json", signer.alg));
    let now = mint::now();
    let meta: Option<Value> = fs::read(&meta_file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let reusable = meta.as_ref().is_some_and(|m| {
        m["jwk"] == signer.jwk()
            && m["iss"] == ISS
            && m["aud"] == AUD
            && m["count"].as_u64().unwrap_or(0) >= count as u64
            && m["exp"].as_u64().unwrap_or(0) > now + 86_400
    });
    if reusable {
        if let Ok(text) = fs::read_to_string(&file) {
            let tokens: Vec<String> = text.lines().take(count).map(str::to_owned).collect();
            if tokens.len() == count {
                log(&format!("{count} {} tokens from {}", signer.alg, file.display()));
                // The file may hold more tokens than asked for: wrk reads the file, so trim it.
                if meta.as_ref().and_then(|m| m["count"].as_u64()) != Some(count as u64) {
                    write_tokens(&file, &meta_file, signer, &tokens, now_exp(meta.as_ref()));
                }
                return (Arc::new(tokens), file);
            }
        }
    }
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let next = AtomicUsize::new(0);
    let chunk = 256;
    let mut parts: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    for _ in 0..=count / chunk {
                        let start = next.fetch_add(chunk, Ordering::SeqCst);
                        if start >= count {
                            break;
                        }
                        let end = (start + chunk).min(count);
                        let tokens = (start..end)
                            .map(|i| {
                                signer.token(&claims(&format!("user-{i}"), &format!("{}-{now}-{i}", signer.alg), now))
                            })
                            .collect();
                        mine.push((start, tokens));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    parts.sort_by_key(|(start, _)| *start);
    let tokens: Vec<String> = parts.into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(tokens.len(), count);
    write_tokens(&file, &meta_file, signer, &tokens, now + TOKEN_LIFETIME_S);
    log(&format!(
        "minted {count} {} tokens in {:.1} s ({} threads) into {}",
        signer.alg,
        started.elapsed().as_secs_f64(),
        threads,
        file.display()
    ));
    (Arc::new(tokens), file)
}

fn now_exp(meta: Option<&Value>) -> u64 {
    meta.and_then(|m| m["exp"].as_u64()).unwrap_or(0)
}

fn write_tokens(file: &Path, meta_file: &Path, signer: &Signer, tokens: &[String], exp: u64) {
    let mut text = tokens.join("\n");
    text.push('\n');
    fs::write(file, text).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    let meta = json!({"jwk": signer.jwk(), "iss": ISS, "aud": AUD, "count": tokens.len(), "exp": exp});
    fs::write(meta_file, meta.to_string()).unwrap_or_else(|e| panic!("write {}: {e}", meta_file.display()));
}

/// Where the next distinct token of one configuration comes from (each Envoy has its own cache,
/// so each configuration walks the token list on its own).
struct Cursor {
    next: usize,
    sent: usize,
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (busy, total) ticks of one core from /proc/stat.
fn core_ticks(core: usize) -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let name = format!("cpu{core}");
    let Some(line) = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
    else {
        return (0, 0);
    };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let idle = get(3) + get(4);
    let total: u64 = (0..8).map(get).sum();
    (total - idle, total)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn pin(pid: u32, core: usize) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        die(&format!("taskset could not pin pid {pid} to core {core}"));
    }
}

/// A wrapper that starts Envoy pinned to `core` (exec keeps the pid, so /proc/<pid> is Envoy's).
fn pinned_envoy_wrapper(dir: &Path, envoy: &Path, core: usize) -> PathBuf {
    let path = dir.join(format!("envoy-core{core}.sh"));
    let quoted = envoy.to_string_lossy().replace('\'', r"'\''");
    fs::write(&path, format!("#!/bin/sh\nexec taskset -c {core} '{quoted}' \"$@\"\n")).unwrap();
    let status = Command::new("chmod").arg("+x").arg(&path).status();
    assert!(status.is_ok_and(|s| s.success()), "chmod {}", path.display());
    path
}

// ---------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client and the fixed-rate latency probe
// ---------------------------------------------------------------------------------------------

struct Conn {
    port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(port: u16) -> Conn {
        Conn {
            port,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// `GET PATH` with `Authorization: Bearer token` (if any); the status, or None on an I/O error
    /// (the connection is then dropped and reopened by the next call).
    fn get(&mut self, token: Option<&str>) -> Option<u16> {
        let r = self.try_get(token);
        if r.is_none() {
            self.stream = None;
        }
        r
    }

    fn try_get(&mut self, token: Option<&str>) -> Option<u16> {
        if self.stream.is_none() {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
            s.set_nodelay(true).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut()?;
        let request = match token {
            Some(t) => format!("GET {PATH} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {t}\r\n\r\n"),
            None => format!("GET {PATH} HTTP/1.1\r\nhost: bench\r\n\r\n"),
        };
        stream.write_all(request.as_bytes()).ok()?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                return None;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())?;
        let close = head
            .lines()
            .any(|l| l.starts_with("connection:") && l.contains("close"));
        let mut have = self.buf.len() - head_end;
        for _ in 0..100_000 {
            if have >= length {
                break;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            have += n;
        }
        if close {
            self.stream = None;
        }
        Some(status)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The tokens a client sends: one token, or the next ones of a list.
#[derive(Clone)]
enum TokenSource {
    None,
    One(Arc<String>),
    List {
        tokens: Arc<Vec<String>>,
        next: Arc<AtomicUsize>,
    },
}

impl TokenSource {
    fn next(&self) -> Option<String> {
        Some(match self {
            TokenSource::None => return None,
            TokenSource::One(t) => t.as_ref().clone(),
            TokenSource::List { tokens, next } => {
                let i = next.fetch_add(1, Ordering::SeqCst);
                tokens[i % tokens.len()].clone()
            }
        })
    }
}

struct ProbeResult {
    /// Latency of every request, microseconds.
    micros: Vec<u32>,
    errors: usize,
}

/// Fixed-rate, open-loop latency: `conns` keep-alive connections, each sending on its own
/// schedule (rate / conns, staggered). Latency runs from the scheduled send time when the
/// previous response on that connection came back late (so a stall counts against every request
/// it delayed, as wrk2 does), and from the actual send time otherwise (so the probe's own sleep
/// overshoot does not count against Envoy).
fn probe(port: u16, rate: f64, seconds: f64, conns: usize, tokens: &TokenSource) -> ProbeResult {
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let per_conn = ((seconds * rate) / conns as f64).ceil().max(1.0) as usize;
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + Duration::from_secs_f64(seconds + 10.0);
    let results: Vec<(Vec<u32>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|k| {
                let tokens = tokens.clone();
                s.spawn(move || {
                    let mut conn = Conn::new(port);
                    let mut micros = Vec::with_capacity(per_conn);
                    let mut errors = 0;
                    let offset = interval.mul_f64(k as f64 / conns as f64);
                    for i in 0..per_conn {
                        let token = tokens.next();
                        let intended = start + offset + interval * u32::try_from(i).unwrap_or(u32::MAX);
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        let t0 = if now < intended {
                            std::thread::sleep(intended - now);
                            Instant::now()
                        } else {
                            intended
                        };
                        match conn.get(token.as_deref()) {
                            Some(200) => {
                                micros.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                            }
                            _ => errors += 1,
                        }
                    }
                    (micros, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = ProbeResult {
        micros: Vec::new(),
        errors: 0,
    };
    for (m, e) in results {
        out.micros.extend(m);
        out.errors += e;
    }
    out
}

/// Sends one request per token over `conns` connections as fast as they answer; the number of
/// non-200 answers (or I/O errors).
fn send_all(port: u16, tokens: &[String], conns: usize) -> usize {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                s.spawn(|| {
                    let mut conn = Conn::new(port);
                    let mut errors = 0;
                    for _ in 0..tokens.len() {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(token) = tokens.get(i) else { break };
                        if conn.get(Some(token)) != Some(200) {
                            errors += 1;
                        }
                    }
                    errors
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(f64::from(sorted[rank.clamp(1, sorted.len()) - 1]))
}

// ---------------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------------

const LUA: &str = r#"-- hopguard scripts/bench: a different token on every request, read from a file of
-- tokens (one per line). args: <file> <first index, 0-based>
local tokens = {}
local n = 0
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      tokens[n] = "Bearer " .. line
    end
  end
  i = (tonumber(args[2]) or 0) % n
end
request = function()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format(nil, nil, {["Authorization"] = tokens[i]})
end
"#;

struct WrkResult {
    rps: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    /// CPU time of the wrk process itself, in ticks.
    wrk_ticks: u64,
}

enum Load<'a> {
    Nothing,
    Header(&'a str),
    Script {
        lua: &'a Path,
        tokens: &'a Path,
        first: usize,
    },
}

fn run_wrk(o: &Options, port: u16, seconds: f64, load: &Load<'_>) -> WrkResult {
    let mut cmd = Command::new(&o.wrk);
    cmd.arg("-t1")
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{}s", seconds.ceil().max(1.0) as u64))
        .arg("--timeout")
        .arg("10s");
    // wrk's -d takes whole seconds: fractions are rounded up (the measured window is wrk's own).
    match load {
        Load::Nothing => {
            cmd.arg(format!("http://127.0.0.1:{port}{PATH}"));
        }
        Load::Header(token) => {
            cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
            cmd.arg(format!("http://127.0.0.1:{port}{PATH}"));
        }
        Load::Script { lua, tokens, first } => {
            cmd.arg("-s").arg(lua).arg(format!("http://127.0.0.1:{port}{PATH}"));
            cmd.arg("--").arg(tokens).arg(first.to_string());
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot run {}: {e} (scripts/bench installs wrk)", o.wrk)));
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 60.0);
    let mut wrk_ticks = 0;
    let mut status = None;
    for _ in 0..1_000_000 {
        // The last reading before exit is the process's CPU time (a reaped process has no /proc).
        let t = cpu_ticks(pid);
        if t > 0 {
            wrk_ticks = t;
        }
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            die("wrk did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    if !status.is_some_and(|s| s.success()) {
        die(&format!("wrk failed ({status:?}):\n{stdout}\n{stderr}"));
    }
    let num_after = |key: &str| -> Option<f64> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.trim_end_matches(',').parse().ok())
    };
    let requests = stdout
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let socket_errors = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    WrkResult {
        rps: num_after("Requests/sec:").unwrap_or(0.0),
        requests,
        non_2xx: num_after("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64,
        socket_errors,
        wrk_ticks,
    }
}

fn wrk_version(wrk: &str) -> String {
    Command::new(wrk)
        .arg("-v")
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// One configuration under test
// ---------------------------------------------------------------------------------------------

struct Sut {
    config: Configuration,
    /// None once the rounds are over (the results stay).
    envoy: Option<Envoy>,
    port: u16,
    cursor: Cursor,
    runs: Vec<Run>,
    latencies: Vec<u32>,
    latency_errors: usize,
    /// Connections Envoy opened to the upstream and accepted from clients, over the whole run.
    connections: (u64, u64),
}

#[derive(Debug, Clone, Default)]
struct Run {
    round: usize,
    rps: f64,
    non_2xx: u64,
    cpu_us_per_req: f64,
    /// Envoy CPU / wall time of the window (1.0 = the whole core).
    busy: f64,
    /// Core usage by everything but this Envoy on the Envoy core.
    other_on_envoy_core: f64,
    load_core_busy: f64,
    wrk_cpu_us_per_req: f64,
    rss_kib: u64,
    cache_hits: Option<u64>,
    cache_misses: Option<u64>,
}

fn stat_or_zero(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).unwrap_or(0)
}

/// The (hits, misses) counters of the filter's token cache, when it exports them: hopguard's
/// `token_cache_total`, or jwt_authn's `jwt_cache_hit` / `jwt_cache_miss`.
fn cache_counters(envoy: &Envoy, filter: Filter) -> (Option<u64>, Option<u64>) {
    match filter {
        Filter::None | Filter::Noop | Filter::TokenFloor | Filter::HostCalls => (None, None),
        Filter::Native { .. } => (
            envoy.stat(&format!("http.{LISTENER}.jwt_authn.jwt_cache_hit")),
            envoy.stat(&format!("http.{LISTENER}.jwt_authn.jwt_cache_miss")),
        ),
        Filter::Hopguard | Filter::HopguardAllowMissing | Filter::HopguardFull => (
            envoy.stat("wasmcustom.hopguard.token_cache_total.result.hit"),
            envoy.stat("wasmcustom.hopguard.token_cache_total.result.miss"),
        ),
    }
}

/// What Envoy forwards to: another Envoy answering itself (default), or the test echo server.
enum UpstreamKind {
    Envoy(Envoy),
    Echo(Upstream),
}

impl UpstreamKind {
    fn port(&self) -> u16 {
        match self {
            UpstreamKind::Envoy(e) => e.port("upstream"),
            UpstreamKind::Echo(u) => u.port(),
        }
    }

    /// The echo server records every request; forget them so memory stays flat.
    fn forget(&self) {
        if let UpstreamKind::Echo(u) = self {
            u.clear();
        }
    }
}

struct Ctx {
    o: Options,
    ticks_per_s: f64,
    lua: PathBuf,
    algs: BTreeMap<&'static str, AlgTokens>,
}

impl Ctx {
    fn tokens_of(&self, alg: &str) -> &AlgTokens {
        &self.algs[alg]
    }
}

fn measure(ctx: &Ctx, sut: &mut Sut, round: usize, seconds: f64, record: bool) {
    let envoy = sut.envoy.as_ref().expect("a running Envoy");
    let pid = envoy.pid();
    let completed_name = format!("http.{LISTENER}.downstream_rq_completed");
    let ok_name = format!("http.{LISTENER}.downstream_rq_2xx");
    let completed0 = stat_or_zero(envoy, &completed_name);
    let ok0 = stat_or_zero(envoy, &ok_name);
    let (hits0, misses0) = cache_counters(envoy, sut.config.filter);
    let alg = ctx.tokens_of(sut.config.alg);
    let first = sut.cursor.next;
    let load = match sut.config.tokens {
        Tokens::Absent => Load::Nothing,
        Tokens::Repeated => Load::Header(&alg.repeated),
        Tokens::Distinct => Load::Script {
            lua: &ctx.lua,
            tokens: &alg.file,
            first,
        },
    };
    let core0_0 = core_ticks(ctx.o.envoy_core);
    let core1_0 = core_ticks(ctx.o.load_core);
    let cpu0 = cpu_ticks(pid);
    let started = Instant::now();
    let w = run_wrk(&ctx.o, sut.port, seconds, &load);
    let wall = started.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid);
    let core0_1 = core_ticks(ctx.o.envoy_core);
    let core1_1 = core_ticks(ctx.o.load_core);
    let completed = stat_or_zero(envoy, &completed_name).saturating_sub(completed0);
    let ok = stat_or_zero(envoy, &ok_name).saturating_sub(ok0);
    let (hits1, misses1) = cache_counters(envoy, sut.config.filter);
    let rss = rss_kib(pid);
    if sut.config.tokens == Tokens::Distinct {
        // Requests in flight when wrk stopped took tokens too.
        let used = usize::try_from(completed).unwrap_or(0) + ctx.o.connections;
        sut.cursor.next = (first + used) % alg.distinct.len().max(1);
        sut.cursor.sent += used;
    }
    let envoy_cpu_s = (cpu1 - cpu0) as f64 / ctx.ticks_per_s;
    let share = |(b0, t0): (u64, u64), (b1, t1): (u64, u64)| {
        if t1 > t0 {
            (b1 - b0) as f64 / (t1 - t0) as f64
        } else {
            0.0
        }
    };
    let core0_busy = share(core0_0, core0_1);
    let busy = envoy_cpu_s / wall;
    let run = Run {
        round,
        rps: w.rps,
        non_2xx: completed.saturating_sub(ok).max(w.non_2xx) + w.socket_errors,
        cpu_us_per_req: if completed > 0 {
            envoy_cpu_s * 1e6 / completed as f64
        } else {
            f64::NAN
        },
        busy,
        other_on_envoy_core: (core0_busy - busy).max(0.0),
        load_core_busy: share(core1_0, core1_1),
        wrk_cpu_us_per_req: if w.requests > 0 {
            w.wrk_ticks as f64 / ctx.ticks_per_s * 1e6 / w.requests as f64
        } else {
            f64::NAN
        },
        rss_kib: rss,
        cache_hits: hits1.map(|h| h - hits0.unwrap_or(0)),
        cache_misses: misses1.map(|m| m - misses0.unwrap_or(0)),
    };
    if record {
        log(&format!(
            "round {round} {:<26} {:>9.0} req/s  {:>7.1} us/req  envoy core {:>3.0}%  other on core {:>3.0}%  rss {:>6.1} MiB{}",
            sut.config.label,
            run.rps,
            run.cpu_us_per_req,
            run.busy * 100.0,
            run.other_on_envoy_core * 100.0,
            run.rss_kib as f64 / 1024.0,
            if run.non_2xx > 0 {
                format!("  {} NOT 2xx", run.non_2xx)
            } else {
                String::new()
            }
        ));
        sut.runs.push(run);
    }
}

fn latency(ctx: &Ctx, sut: &mut Sut) {
    if ctx.o.latency_seconds <= 0.0 {
        return;
    }
    let alg = ctx.tokens_of(sut.config.alg);
    let source = match sut.config.tokens {
        Tokens::Absent => TokenSource::None,
        Tokens::Repeated => TokenSource::One(Arc::new(alg.repeated.clone())),
        Tokens::Distinct => TokenSource::List {
            tokens: Arc::clone(&alg.distinct),
            next: Arc::new(AtomicUsize::new(sut.cursor.next)),
        },
    };
    let r = probe(
        sut.port,
        ctx.o.rate,
        ctx.o.latency_seconds,
        ctx.o.probe_connections,
        &source,
    );
    if let TokenSource::List { next, .. } = &source {
        let used = next.load(Ordering::SeqCst) - sut.cursor.next;
        sut.cursor.next = next.load(Ordering::SeqCst) % alg.distinct.len().max(1);
        sut.cursor.sent += used;
    }
    sut.latencies.extend(r.micros);
    sut.latency_errors += r.errors;
}

// ---------------------------------------------------------------------------------------------
// Resident memory of 10,000 cached tokens
// ---------------------------------------------------------------------------------------------

struct MemoryResult {
    label: &'static str,
    rss_before_kib: u64,
    rss_distinct_kib: u64,
    rss_second_pass_kib: u64,
    control_delta_kib: i64,
    errors: usize,
    first_pass: (Option<u64>, Option<u64>),
    second_pass: (Option<u64>, Option<u64>),
}

fn memory_case(ctx: &Ctx, upstream_port: u16, label: &'static str, filter: Filter) -> MemoryResult {
    let alg = ctx.tokens_of("ES256");
    let config = Configuration {
        label: label.into(),
        title: label.into(),
        filter,
        alg: "ES256",
        tokens: Tokens::Distinct,
    };
    let start = |c: &Configuration| {
        Envoy::start_with(
            &bootstrap_yaml(&[listener_for(c, &alg.signer, ctx.o.direct_response)], upstream_port),
            &envoy_options(),
        )
    };
    let conns = 4;
    let warm: Vec<String> = vec![alg.repeated.clone(); 2_000];
    // The last MEMORY_TOKENS of the list: the rounds walked it from the start.
    let n = alg.distinct.len();
    let tokens: Vec<String> = alg.distinct[n.saturating_sub(MEMORY_TOKENS)..].to_vec();
    let repeated: Vec<String> = vec![alg.repeated.clone(); tokens.len()];
    let settle = || std::thread::sleep(Duration::from_millis(300));

    // Control: the same number of requests with one repeated token.
    let control = start(&config);
    let port = control.port(LISTENER);
    let mut errors = send_all(port, &warm, conns);
    settle();
    let c0 = rss_kib(control.pid());
    errors += send_all(port, &repeated, conns);
    settle();
    let control_delta = rss_kib(control.pid()) as i64 - c0 as i64;
    drop(control);

    let envoy = start(&config);
    let port = envoy.port(LISTENER);
    errors += send_all(port, &warm, conns);
    settle();
    let before = rss_kib(envoy.pid());
    let c0 = cache_counters(&envoy, filter);
    errors += send_all(port, &tokens, conns);
    settle();
    let distinct = rss_kib(envoy.pid());
    let c1 = cache_counters(&envoy, filter);
    errors += send_all(port, &tokens, conns);
    settle();
    let second = rss_kib(envoy.pid());
    let c2 = cache_counters(&envoy, filter);
    let diff = |a: Option<u64>, b: Option<u64>| Some(b? - a.unwrap_or(0));
    MemoryResult {
        label,
        rss_before_kib: before,
        rss_distinct_kib: distinct,
        rss_second_pass_kib: second,
        control_delta_kib: control_delta,
        errors,
        first_pass: (diff(c0.0, c1.0), diff(c0.1, c1.1)),
        second_pass: (diff(c1.0, c2.0), diff(c1.1, c2.1)),
    }
}

fn envoy_options() -> EnvoyOptions {
    EnvoyOptions::new(1).ready_timeout(Duration::from_secs(90))
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn fmt_us(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1} µs")
    } else {
        "n/a".into()
    }
}

fn fmt_int(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "n/a".into()
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

struct Summary {
    rps: f64,
    cpu: f64,
    added: f64,
    busy: f64,
}

fn summarize(suts: &[Sut]) -> BTreeMap<String, Summary> {
    let none = suts.iter().find(|s| s.config.filter == Filter::None);
    suts.iter()
        .map(|s| {
            let cpu = median(s.runs.iter().map(|r| r.cpu_us_per_req).collect());
            // Added CPU per round against the no-filter run of the same round, then the median.
            let added = match none {
                Some(n) => median(
                    s.runs
                        .iter()
                        .filter_map(|r| {
                            let base = n.runs.iter().find(|b| b.round == r.round)?;
                            Some(r.cpu_us_per_req - base.cpu_us_per_req)
                        })
                        .collect(),
                ),
                None => f64::NAN,
            };
            (
                s.config.label.clone(),
                Summary {
                    rps: median(s.runs.iter().map(|r| r.rps).collect()),
                    cpu,
                    added,
                    busy: median(s.runs.iter().map(|r| r.busy).collect()),
                },
            )
        })
        .collect()
}

/// What a Wasm filter pays before it decides anything, set against native `jwt_authn`'s cached
/// path and the no-filter throughput: the bounds under the repeated-token and full-pipeline
/// targets.
fn floors(md: &mut String, s: &BTreeMap<String, Summary>) {
    let Some(none) = s.get("none") else {
        return;
    };
    // The most native's cached path added for any algorithm: the floor is judged against the
    // easiest of the three repeated-token targets.
    let Some((native_label, native)) = ALGS
        .iter()
        .filter_map(|alg| {
            let label = format!("native-{alg}-cached");
            s.get(&label).map(|x| (label, x))
        })
        .filter(|(_, x)| x.added.is_finite())
        .max_by(|a, b| a.1.added.total_cmp(&b.1.added))
    else {
        return;
    };
    let rows = [
        ("noop-wasm", "no-op Wasm filter"),
        ("wasm-token-floor", "Wasm token floor: read `authorization`, remove it"),
        ("wasm-host-calls", "hopguard's host calls of a hit, deciding nothing"),
        ("hopguard-ES256-repeated", "hopguard, ES256, repeated token"),
        ("hopguard-full-ES256", "hopguard full pipeline, ES256, repeated token"),
    ];
    let _ = writeln!(md, "\n## Floors\n");
    let _ = writeln!(
        md,
        "What a proxy-wasm filter costs Envoy before it decides anything, against native `jwt_authn` with \
         its cache on (the most it added for any algorithm: {native_label}, {:+.1} µs) and the no-filter \
         throughput ({} req/s).\n",
        native.added,
        fmt_int(none.rps)
    );
    let _ = writeln!(
        md,
        "| filter | added CPU / req | / native cached added CPU | throughput / no filter |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|");
    for (label, title) in rows {
        if let Some(x) = s.get(label) {
            let ratio = if native.added > 0.0 {
                fmt_ratio(x.added / native.added)
            } else {
                "n/a".into()
            };
            let _ = writeln!(
                md,
                "| {title} | {:+.1} µs | {ratio} | {} |",
                x.added,
                fmt_ratio(x.rps / none.rps)
            );
        }
    }
    if let Some(floor) = s.get("wasm-token-floor") {
        let over_native = floor.added > native.added;
        let ratio = floor.rps / none.rps;
        let _ = writeln!(
            md,
            "\n- Repeated tokens: the token floor adds {:+.1} µs, {} native's cached path ({:+.1} µs){}",
            floor.added,
            if over_native { "more than" } else { "no more than" },
            native.added,
            if over_native {
                ": in this run no proxy-wasm filter that reads and strips a bearer token could meet the \
                 target, whatever it computes."
            } else {
                "."
            }
        );
        let _ = writeln!(
            md,
            "- Full pipeline: the token floor serves {} of the no-filter throughput{}",
            fmt_ratio(ratio),
            if ratio < 0.85 {
                ", below 0.85x before any work of its own: out of reach of any Wasm token filter in this run."
            } else {
                ", which leaves the rest of the 0.85x target for the filter's own work."
            }
        );
    }
}

struct Meta {
    wasm: PathBuf,
    wasm_bytes: u64,
    wasm_sha: String,
    envoy_version: String,
    wrk_version: String,
    started: String,
    elapsed: Duration,
    load_before: String,
    load_after: String,
}

fn report(ctx: &Ctx, suts: &[Sut], memory: &[MemoryResult], meta: &Meta) -> String {
    let o = &ctx.o;
    let s = summarize(suts);
    let mut md = String::new();
    let _ = writeln!(md, "# hopguard benchmark\n");
    let _ = writeln!(
        md,
        "{} ({}), {} round{} of {} s per configuration, interleaved; medians over rounds. \
         Envoy 1.40 `--concurrency 1` pinned to core {}, {}; wrk (1 thread, {} connections), {}the \
         latency probe on core {}. Run took {:.0} s; load average {} before, {} after.\n",
        meta.started,
        if o.quick { "--quick" } else { "default mode" },
        o.rounds,
        if o.rounds == 1 { "" } else { "s" },
        o.seconds.ceil(),
        o.envoy_core,
        if o.direct_response {
            "answering every request itself (`--direct-response`: no upstream leg)"
        } else {
            "proxying to an upstream"
        },
        o.connections,
        match (o.direct_response, o.echo_upstream) {
            (true, _) => "",
            (false, true) => "the upstream (the tests' echo server) and ",
            (false, false) => "the upstream (an Envoy answering with a `direct_response`) and ",
        },
        o.load_core,
        meta.elapsed.as_secs_f64(),
        meta.load_before,
        meta.load_after,
    );
    // Say so when the figures are not clean.
    let other = median(
        suts.iter()
            .flat_map(|x| x.runs.iter().map(|r| r.other_on_envoy_core))
            .collect(),
    );
    if other > 0.05 {
        let _ = writeln!(
            md,
            "**Noisy machine**: other processes used {:.0}% of the Envoy core during the measured windows \
             (median); CPU per request and latency are inflated by it, throughput more so.\n",
            other * 100.0
        );
    }
    if let Some(none) = s.get("none").filter(|n| n.busy < 0.9) {
        let _ = writeln!(
            md,
            "**Generator-bound baseline**: with no filter Envoy's core was {:.0}% busy, so its throughput is \
             the load core's limit, not Envoy's; throughput ratios against it are optimistic.\n",
            none.busy * 100.0
        );
    }
    let _ = writeln!(
        md,
        "| configuration | req/s | Envoy CPU / req | added vs no filter | Envoy core busy | p50 @ {r}/s | p99 @ {r}/s | RSS after | cache hits |",
        r = fmt_int(o.rate)
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for sut in suts {
        let x = &s[&sut.config.label];
        let mut lat = sut.latencies.clone();
        lat.sort_unstable();
        let p = |q: f64| percentile(&lat, q).map_or("n/a".into(), |v| format!("{:.2} ms", v / 1000.0));
        let hits: Option<u64> = sut.runs.iter().map(|r| r.cache_hits).sum();
        let misses: Option<u64> = sut.runs.iter().map(|r| r.cache_misses).sum();
        let hit_rate = match (hits, misses) {
            (Some(h), Some(m)) if h + m > 0 => format!("{:.1}%", h as f64 * 100.0 / (h + m) as f64),
            _ if sut.config.tokens == Tokens::Absent => "no token".into(),
            _ if matches!(
                sut.config.filter,
                Filter::None | Filter::Noop | Filter::TokenFloor | Filter::HostCalls
            ) =>
            {
                "".into()
            }
            _ if sut.config.filter == Filter::Native { cache: false } => "off".into(),
            _ => "not exported".into(),
        };
        let bad: u64 = sut.runs.iter().map(|r| r.non_2xx).sum::<u64>() + sut.latency_errors as u64;
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {:.0}% | {} | {} | {} | {} |",
            sut.config.title,
            if bad > 0 {
                format!(" (**{bad} failed requests**)")
            } else {
                String::new()
            },
            fmt_int(x.rps),
            fmt_us(x.cpu),
            if sut.config.filter == Filter::None {
                "-".into()
            } else {
                format!("{:+.1} µs", x.added)
            },
            x.busy * 100.0,
            p(50.0),
            p(99.0),
            sut.runs.last().map_or("n/a".into(), |r| mib(r.rss_kib as f64)),
            hit_rate,
        );
    }

    // Targets.
    let get = |label: &str, f: fn(&Summary) -> f64| s.get(label).map_or(f64::NAN, f);
    let added = |label: &str| get(label, |x| x.added);
    // (what, measured, target, met); ratios of added CPU are shown with both figures, and judged
    // on them (a ratio to a near-zero or negative figure means nothing).
    let mut rows: Vec<(String, String, String, Option<bool>)> = Vec::new();
    let cpu_ratio = |num: f64, den: f64, limit: f64| -> (String, Option<bool>) {
        let figures = format!("{num:+.1} µs / {den:+.1} µs");
        if !num.is_finite() || !den.is_finite() {
            return ("n/a".into(), None);
        }
        let ratio = if den > 0.0 { fmt_ratio(num / den) } else { "n/a".into() };
        (format!("{ratio} ({figures})"), Some(num <= limit * den))
    };
    for alg in ALGS {
        let (m, met) = cpu_ratio(
            added(&format!("hopguard-{alg}-repeated")),
            added(&format!("native-{alg}-cached")),
            1.0,
        );
        rows.push((
            format!("repeated tokens, {alg}: hopguard added CPU / native (cache on) added CPU"),
            m,
            "≤ 1.00x".into(),
            met,
        ));
    }
    let (full, none) = (get("hopguard-full-ES256", |x| x.rps), get("none", |x| x.rps));
    let v = full / none;
    rows.push((
        "full pipeline (ES256, repeated token): throughput / no-filter throughput".into(),
        format!("{} ({} / {} req/s)", fmt_ratio(v), fmt_int(full), fmt_int(none)),
        "≥ 0.85x".into(),
        v.is_finite().then_some(v >= 0.85),
    ));
    for alg in ["RS256", "ES256"] {
        let (m, met) = cpu_ratio(
            added(&format!("hopguard-{alg}-distinct")),
            added(&format!("native-{alg}-off")),
            4.0,
        );
        rows.push((
            format!("distinct tokens, {alg}: hopguard added CPU / native (cache off) added CPU"),
            m,
            "≤ 4.00x".into(),
            met,
        ));
    }
    let (m, met) = cpu_ratio(added("hopguard-EdDSA-distinct"), added("native-ES256-off"), 1.0);
    rows.push((
        "distinct tokens: hopguard EdDSA added CPU / native ES256 (cache off) added CPU".into(),
        m,
        "≤ 1.00x".into(),
        met,
    ));
    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| target | measured | target | met |");
    let _ = writeln!(md, "|---|--:|--:|:-:|");
    for (what, measured, target, met) in rows {
        let _ = writeln!(
            md,
            "| {what} | {measured} | {target} | {} |",
            match met {
                None => "n/a",
                Some(true) => "yes",
                Some(false) => "**no**",
            }
        );
    }
    // The issue's "600 KB", read strictly: 600,000 bytes (600 KiB would be 614,400).
    let kb = meta.wasm_bytes as f64 / 1000.0;
    let _ = writeln!(
        md,
        "| wasm binary size | {kb:.0} KB ({} bytes) | ≤ 600 KB (600,000 bytes) | {} |",
        fmt_int(meta.wasm_bytes as f64),
        if meta.wasm_bytes <= 600_000 { "yes" } else { "**no**" }
    );
    if let Some(m) = memory.iter().find(|m| m.label == "hopguard") {
        let added = m.rss_distinct_kib as f64 - m.rss_before_kib as f64 - m.control_delta_kib as f64;
        let _ = writeln!(
            md,
            "| resident memory added by {} cached tokens (ES256, one worker) | {} | ≤ 16 MiB | {} |",
            fmt_int(MEMORY_TOKENS as f64),
            mib(added),
            if added <= 16.0 * 1024.0 { "yes" } else { "**no**" }
        );
    }

    floors(&mut md, &s);

    if !memory.is_empty() {
        let _ = writeln!(
            md,
            "\n## Resident memory of {} distinct tokens\n",
            fmt_int(MEMORY_TOKENS as f64)
        );
        let _ = writeln!(
            md,
            "A fresh Envoy (ES256, one worker) gets 2,000 requests with one token, then {n} requests with {n} \
             distinct tokens, then the same {n} tokens again. The control is another fresh Envoy sending {n} \
             requests with one repeated token after the same warm-up; \"added\" subtracts its growth.\n",
            n = fmt_int(MEMORY_TOKENS as f64)
        );
        let _ = writeln!(
            md,
            "| filter | RSS after warm-up | after {n} distinct | added (minus control) | control growth | second pass | cache hit/miss, 1st pass | 2nd pass |",
            n = fmt_int(MEMORY_TOKENS as f64)
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|");
        for m in memory {
            let added = m.rss_distinct_kib as f64 - m.rss_before_kib as f64 - m.control_delta_kib as f64;
            let hm = |(h, mi): (Option<u64>, Option<u64>)| match (h, mi) {
                (Some(h), Some(mi)) => format!("{} / {}", fmt_int(h as f64), fmt_int(mi as f64)),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                md,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} |",
                m.label,
                if m.errors > 0 {
                    format!(" (**{} failed requests**)", m.errors)
                } else {
                    String::new()
                },
                mib(m.rss_before_kib as f64),
                mib(m.rss_distinct_kib as f64),
                mib(added),
                mib(m.control_delta_kib as f64),
                mib(m.rss_second_pass_kib as f64),
                hm(m.first_pass),
                hm(m.second_pass),
            );
        }
    }

    let _ = writeln!(md, "\n## Conditions\n");
    let _ = writeln!(
        md,
        "- wasm: `{}`, {} bytes, sha256 {}",
        meta.wasm.display(),
        fmt_int(meta.wasm_bytes as f64),
        meta.wasm_sha
    );
    let _ = writeln!(md, "- Envoy: {}", meta.envoy_version);
    let _ = writeln!(md, "- load generator: {} (`-t1 -c{}`)", meta.wrk_version, o.connections);
    let _ = writeln!(
        md,
        "- Envoy CPU per request: utime+stime of the Envoy process (`/proc/<pid>/stat`, {} ticks/s) over the \
         wrk window, divided by the requests Envoy completed (`http.{LISTENER}.downstream_rq_completed`). \
         \"Added\" is the per-round difference with the no-filter run of the same round, then the median.",
        ctx.ticks_per_s
    );
    let _ = writeln!(
        md,
        "- Latency: a separate open-loop probe at a fixed {} req/s over {} keep-alive connections for {} s per \
         round (not wrk, which cannot hold a fixed rate): latency counts from the scheduled send time when the \
         previous response was late (no coordinated omission), from the actual send otherwise.",
        fmt_int(o.rate),
        o.probe_connections,
        o.latency_seconds
    );
    let _ = writeln!(
        md,
        "- Tokens: {} distinct tokens per algorithm, minted once and cached in `target/bench/`; each \
         configuration walks the list from where it stopped (RSA 2048, P-256, Ed25519 keys; one key per \
         provider). Native cache on: `jwt_cache_config: {{jwt_cache_size: {NATIVE_CACHE_SIZE}}}`.",
        fmt_int(o.distinct as f64)
    );
    for sut in suts.iter().filter(|s| s.config.tokens == Tokens::Distinct) {
        if sut.cursor.sent > ctx.tokens_of(sut.config.alg).distinct.len() {
            let _ = writeln!(
                md,
                "  - {}: {} token requests, so the list of {} was walked {:.1} times{}",
                sut.config.title,
                fmt_int(sut.cursor.sent as f64),
                fmt_int(ctx.tokens_of(sut.config.alg).distinct.len() as f64),
                sut.cursor.sent as f64 / ctx.tokens_of(sut.config.alg).distinct.len() as f64,
                if sut.config.filter == Filter::Hopguard {
                    " (still misses while the cache holds fewer entries than the list: see the hit rate)"
                } else {
                    " (no cache: every request verifies)"
                }
            );
        }
    }
    let _ = writeln!(md, "- Noise per configuration (medians over rounds):\n");
    let _ = writeln!(
        md,
        "  | configuration | other load on Envoy core | load core busy | wrk CPU / req | connections upstream / downstream |"
    );
    let _ = writeln!(md, "  |---|--:|--:|--:|--:|");
    for sut in suts {
        let _ = writeln!(
            md,
            "  | {} | {:.0}% | {:.0}% | {} | {} / {} |",
            sut.config.label,
            median(sut.runs.iter().map(|r| r.other_on_envoy_core).collect()) * 100.0,
            median(sut.runs.iter().map(|r| r.load_core_busy).collect()) * 100.0,
            fmt_us(median(sut.runs.iter().map(|r| r.wrk_cpu_us_per_req).collect())),
            fmt_int(sut.connections.0 as f64),
            fmt_int(sut.connections.1 as f64),
        );
    }
    let _ = writeln!(
        md,
        "\n  When the Envoy core is not near 100% busy while the load core is, the generator side (wrk + \
         upstream) limits throughput; CPU per request is unaffected by that."
    );
    md
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(path).unwrap_or_default();
    Sha256::digest(&bytes).iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn envoy_version(envoy: &Path) -> String {
    Command::new(envoy)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches(|c: char| c != ':')
                .trim_start_matches(':')
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    // Built in release (panic=abort): no Drop runs on a panic, so the Envoys started so far would
    // outlive the run and skew the next one.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        support::envoy::kill_live();
    }));
    let o = parse_options();
    let started = Instant::now();
    let root = support::envoy::repo_root();
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir).unwrap_or_else(|e| die(&format!("create {}: {e}", dir.display())));
    let envoy = support::envoy::envoy_bin();
    let wasm = support::envoy::wasm_path();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if o.envoy_core == o.load_core || o.envoy_core >= cores.max(2) || o.load_core >= cores.max(2) {
        log(&format!(
            "warning: {cores} cores; Envoy core {} and load core {} should be two different cores",
            o.envoy_core, o.load_core
        ));
    }
    let configs: Vec<Configuration> = configurations()
        .into_iter()
        .filter(|c| o.only.is_empty() || o.only.contains(&c.label) || c.filter == Filter::None)
        .collect();
    if configs.len() == 1 && !o.only.is_empty() && !o.only.iter().any(|l| l == "none") {
        die(&format!("--only matched no configuration (see --list): {:?}", o.only));
    }

    // 1. Tokens (on every core, before pinning).
    let now = mint::now();
    let mut algs = BTreeMap::new();
    for alg in ALGS {
        let signer = Signer::new(alg, &format!("bench-{alg}"));
        let repeated = signer.token(&claims("user-repeated", &format!("{alg}-{now}-repeated"), now));
        let (distinct, file) = distinct_tokens(&dir, &signer, o.distinct);
        algs.insert(
            alg,
            AlgTokens {
                signer,
                repeated,
                distinct,
                file,
            },
        );
    }
    let lua = dir.join("distinct.lua");
    fs::write(&lua, LUA).unwrap();

    // 2. Pinning: this process (and so wrk and the probe) on the load core, Envoy on its core.
    pin(std::process::id(), o.load_core);
    let wrapper_envoy = pinned_envoy_wrapper(&dir, &envoy, o.envoy_core);
    let wrapper_upstream = pinned_envoy_wrapper(&dir, &envoy, o.load_core);
    let ctx = Ctx {
        ticks_per_s: clock_ticks(),
        lua,
        algs,
        o,
    };

    // 3. The upstream: an Envoy answering 200 "ok" itself, on the load core.
    std::env::set_var("HOPGUARD_ENVOY", &wrapper_upstream);
    let upstream = if ctx.o.echo_upstream {
        UpstreamKind::Echo(Upstream::start_with(|_| Reply::new(200, "text/plain", "ok")))
    } else {
        UpstreamKind::Envoy(Envoy::start_with(
            &bootstrap_yaml_with_clusters(&[Listener::new("upstream").route_config(DIRECT_ROUTE.to_string())], &[]),
            &EnvoyOptions::new(1).log_level("warn"),
        ))
    };
    let upstream_port = upstream.port();
    std::env::set_var("HOPGUARD_ENVOY", &wrapper_envoy);

    // 4. One Envoy per configuration, all started up front and kept for the whole run.
    let mut suts: Vec<Sut> = Vec::new();
    for c in &configs {
        let alg = ctx.tokens_of(c.alg);
        let t = Instant::now();
        let e = Envoy::start_with(
            &bootstrap_yaml(&[listener_for(c, &alg.signer, ctx.o.direct_response)], upstream_port),
            &envoy_options(),
        );
        let port = e.port(LISTENER);
        let token = match c.tokens {
            Tokens::Absent => None,
            Tokens::Repeated => Some(alg.repeated.clone()),
            Tokens::Distinct => Some(alg.distinct[0].clone()),
        };
        let mut conn = Conn::new(port);
        let status = conn.get(token.as_deref());
        if status != Some(200) {
            let logs = e.logs();
            die(&format!(
                "{}: a valid token got {status:?}, not 200; Envoy log:\n{}",
                c.label,
                support::envoy::log_excerpt(&logs, 40)
            ));
        }
        log(&format!(
            "started {:<26} pid {} port {port} in {:.1} s",
            c.label,
            e.pid(),
            t.elapsed().as_secs_f64()
        ));
        suts.push(Sut {
            config: c.clone(),
            envoy: Some(e),
            port,
            cursor: Cursor { next: 1, sent: 1 },
            runs: Vec::new(),
            latencies: Vec::new(),
            latency_errors: 0,
            connections: (0, 0),
        });
    }
    let load_before = loadavg();
    let started_at = utc_now();

    // 5. Warm-up, then rounds, the order rotated every round.
    if ctx.o.warmup > 0.0 {
        for sut in &mut suts {
            measure(&ctx, sut, 0, ctx.o.warmup, false);
        }
    }
    let n = suts.len();
    for round in 1..=ctx.o.rounds {
        for k in 0..n {
            let i = (k + (round - 1) * 5) % n;
            let sut = &mut suts[i];
            measure(&ctx, sut, round, ctx.o.seconds, true);
            latency(&ctx, sut);
            upstream.forget();
        }
    }

    // 6. Memory of 10,000 cached tokens, in fresh Envoys with nothing else running.
    for sut in &mut suts {
        if let Some(e) = &sut.envoy {
            sut.connections = (
                stat_or_zero(e, "cluster.upstream.upstream_cx_total"),
                stat_or_zero(e, &format!("http.{LISTENER}.downstream_cx_total")),
            );
        }
        sut.envoy = None;
    }
    let mut memory = Vec::new();
    if ctx.o.memory {
        log("memory: 10,000 distinct tokens (hopguard, then native jwt_authn with its cache on)");
        memory.push(memory_case(&ctx, upstream_port, "hopguard", Filter::Hopguard));
        memory.push(memory_case(
            &ctx,
            upstream_port,
            "native jwt_authn, cache on",
            Filter::Native { cache: true },
        ));
    }
    drop(upstream);

    let wasm_bytes = fs::metadata(&wasm).map_or(0, |m| m.len());
    let meta = Meta {
        wasm_sha: sha256_hex(&wasm),
        wasm: wasm.clone(),
        wasm_bytes,
        envoy_version: envoy_version(&envoy),
        wrk_version: wrk_version(&ctx.o.wrk),
        started: started_at,
        elapsed: started.elapsed(),
        load_before,
        load_after: loadavg(),
    };
    let md = report(&ctx, &suts, &memory, &meta);
    if let Some(parent) = ctx.o.out.parent() {
        let _ = fs::create_dir_all(parent);
    }
    fs::write(&ctx.o.out, &md).unwrap_or_else(|e| die(&format!("write {}: {e}", ctx.o.out.display())));
    println!("{md}");
    log(&format!("written to {}", ctx.o.out.display()));
}
