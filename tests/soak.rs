//! A bounded soak against real Envoy 1.40 (two workers): sustained load from keep-alive client
//! threads on loopback while the test identity provider rotates keys, flaps (down, garbage,
//! slow, empty, oversized key sets), revokes tokens through the remote list, and the
//! configuration is pushed over LDS (good pushes and refused ones). Every request's verdict is
//! known in advance (or, inside a change's propagation window, one of two); the test counts
//! every response: wrong verdicts and 5xx must be 0, and Envoy's resident memory must stay
//! flat once the caches are full.
//!
//! `cargo test --test soak` runs it for 40 s (`HOPGUARD_SOAK_SECONDS` overrides);
//! `scripts/soak [SECONDS]` runs the long version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use support::envoy::{cluster_yaml, hopguard_filter_yaml, Envoy, EnvoyOptions, Listener};
use support::http;
use support::mint::{self, Signer};
use support::upstream::{Reply, Upstream};

const ISS: &str = "http://idp.soak";
/// One cycle of the controller's schedule, in ticks of one second: at 0 the IdP publishes the
/// next key and revokes one more token, at 3 clients sign with the new key (the revocation
/// counts as applied), at 4 and 6 the IdP starts failing in one of five ways, at 7 it recovers,
/// at 8 a configuration is pushed (every other time a refused one).
const CYCLE: u64 = 10;
const WORKERS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The identity provider
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Garbage,
    Slow,
    Empty,
    Huge,
}

/// The oversized key set comes first: parsing it sets the Wasm heap's high-water mark, so
/// resident memory is flat from the end of the first cycle on.
const FAILURES: [Mode; 5] = [Mode::Huge, Mode::Down, Mode::Garbage, Mode::Slow, Mode::Empty];

struct IdpState {
    mode: Mode,
    keys: Vec<Value>,
    revoked: Vec<String>,
    version: u64,
}

struct Idp {
    server: Upstream,
    state: Arc<Mutex<IdpState>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    fn start(keys: Vec<Value>) -> Idp {
        let state = Arc::new(Mutex::new(IdpState {
            mode: Mode::Up,
            keys,
            revoked: Vec::new(),
            version: 1,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let huge: Vec<Value> = (0..3000)
            .map(|i| json!({"kty": "oct", "kid": format!("h{i}"), "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
            .collect();
        let huge = json!({ "keys": huge }).to_string();
        let (s2, f2) = (state.clone(), fetches.clone());
        let server = Upstream::start_with(move |req| {
            f2.fetch_add(1, Ordering::Relaxed);
            let st = s2.lock().unwrap();
            let body = match req.path.as_str() {
                "/jwks" => json!({"keys": st.keys}).to_string(),
                "/revocation" => {
                    let etag = format!("\"r{}\"", st.version);
                    if st.mode == Mode::Up && req.header("if-none-match") == Some(etag.as_str()) {
                        return Reply::new(304, "application/json", "").header("etag", &etag);
                    }
                    let body = json!({"jtis": st.revoked}).to_string();
                    if st.mode == Mode::Up {
                        return Reply::new(200, "application/json", body).header("etag", &etag);
                    }
                    body
                }
                _ => return Reply::new(404, "text/plain", "not found"),
            };
            match st.mode {
                Mode::Up => Reply::new(200, "application/json", body),
                Mode::Down => Reply::new(503, "text/plain", "down"),
                Mode::Garbage => Reply::new(200, "application/json", "{\"keys\": [garb"),
                Mode::Slow => Reply::new(200, "application/json", body).delay(Duration::from_millis(1500)),
                Mode::Empty => Reply::new(200, "application/json", "{\"keys\":[],\"jtis\":{}}"),
                Mode::Huge if req.path == "/jwks" => Reply::new(200, "application/json", huge.clone()),
                Mode::Huge => Reply::new(200, "application/json", "[]"),
            }
        });
        Idp { server, state, fetches }
    }

    fn set(&self, f: impl FnOnce(&mut IdpState)) {
        f(&mut self.state.lock().unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// What every request should get
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rev {
    Valid,
    /// Revoked at the IdP, maybe not yet polled.
    Changing,
    Revoked,
}

/// The truth the controller publishes and the load generators read.
#[derive(Clone)]
struct Truth {
    /// Index of the rotating key tokens are signed with now.
    active: usize,
    revocable: Vec<Rev>,
    /// Configuration generation: generation g revokes subject `push-g`.
    generation: u64,
    /// A good push is propagating (old and new listeners may both answer).
    pushing: bool,
}

fn allowed() -> (u16, String) {
    (200, "allowed".into())
}

fn refused(status: u16, reason: &str) -> (u16, String) {
    (status, reason.into())
}

/// The answers a request may get, given the truth at a moment.
type Expect<'a> = Box<dyn Fn(&Truth) -> Vec<(u16, String)> + 'a>;

/// The load: what to send and what may come back.
struct Load {
    stable: Vec<String>,
    rotating: Vec<Signer>,
    revocable: Vec<String>,
    bad: Vec<(String, (u16, String))>,
    unknown_kid: Signer,
    stable_key: Signer,
    seq: AtomicU64,
}

fn claims(sub: &str, jti: &str) -> Value {
    let mut c = mint::claims(ISS, "orders", sub, mint::now());
    c["jti"] = json!(jti);
    c["exp"] = json!(mint::now() + 3 * 3600);
    c
}

impl Load {
    fn new(rotations: usize) -> Load {
        let stable_key = Signer::new("ES256", "stable");
        let rotating: Vec<Signer> = (0..=rotations + 1)
            .map(|i| Signer::new("ES256", &format!("rot-{i}")))
            .collect();
        let stable: Vec<String> = (0..16)
            .map(|i| stable_key.token(&claims("alice", &format!("s{i}"))))
            .collect();
        let revocable: Vec<String> = (0..=rotations)
            .map(|i| stable_key.token(&claims("bob", &format!("rev-{i}"))))
            .collect();
        let mut expired = claims("carol", "x1");
        expired["exp"] = json!(mint::now() - 3600);
        expired["iat"] = json!(mint::now() - 7200);
        let mut other_aud = claims("carol", "x2");
        other_aud["aud"] = json!("billing");
        let forged = {
            let t = stable_key.token(&claims("carol", "x3"));
            let (head, _) = t.rsplit_once('.').unwrap();
            format!("{head}.{}", hopguard::b64::encode(&[7; 64]))
        };
        let bad = vec![
            (stable_key.token(&expired), refused(401, "token_expired")),
            (stable_key.token(&other_aud), refused(403, "audience_mismatch")),
            (forged, refused(401, "signature_invalid")),
            (String::new(), refused(401, "token_missing")),
            ("not.a.jwt".into(), refused(401, "token_malformed")),
        ];
        Load {
            stable,
            rotating,
            revocable,
            bad,
            unknown_kid: Signer::new("ES256", "never-published"),
            stable_key,
            seq: AtomicU64::new(0),
        }
    }

    /// The next request: class, token (empty: none) and the acceptable answers for `truth`.
    fn next(&self, truth: &Truth) -> (&'static str, String, Expect<'_>) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        match n % 10 {
            0..=2 => (
                "stable",
                self.stable[(n as usize / 10) % self.stable.len()].clone(),
                Box::new(|_| vec![allowed()]),
            ),
            3 | 4 => {
                let key = &self.rotating[truth.active];
                (
                    "rotating",
                    key.token(&claims("dave", &format!("r{n}"))),
                    Box::new(|_| vec![allowed()]),
                )
            }
            5 => {
                let i = (n as usize / 10) % truth.revocable.len();
                let expect = move |t: &Truth| match t.revocable[i] {
                    Rev::Valid => vec![allowed()],
                    Rev::Changing => vec![allowed(), refused(401, "token_revoked")],
                    Rev::Revoked => vec![refused(401, "token_revoked")],
                };
                ("revocable", self.revocable[i].clone(), Box::new(expect))
            }
            6 => {
                // Generation g revokes push-g; the subject of the generation before passes.
                let g = truth.generation + (n / 10) % 2;
                let token = self.stable_key.token(&claims(&format!("push-{g}"), &format!("p{n}")));
                let expect = move |t: &Truth| {
                    if t.pushing && (g == t.generation || g + 1 == t.generation) {
                        vec![allowed(), refused(401, "token_revoked")]
                    } else if g == t.generation {
                        vec![refused(401, "token_revoked")]
                    } else {
                        vec![allowed()]
                    }
                };
                ("pushed", token, Box::new(expect))
            }
            7 | 8 => {
                let (t, e) = &self.bad[(n as usize / 10) % self.bad.len()];
                let e = e.clone();
                ("bad", t.clone(), Box::new(move |_| vec![e.clone()]))
            }
            _ => {
                let token = self.unknown_kid.token(&claims("mallory", &format!("u{n}")));
                ("unknown_kid", token, Box::new(|_| vec![refused(401, "key_not_found")]))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A keep-alive client
// ---------------------------------------------------------------------------------------------

struct Client {
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
    reconnects: usize,
}

impl Client {
    fn connect(port: u16) -> io::Result<(TcpStream, BufReader<TcpStream>)> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        let r = BufReader::new(s.try_clone()?);
        Ok((s, r))
    }

    /// GET `/orders` with `token`; retries once on a fresh connection when the server closed
    /// the kept-alive one before answering (an idempotent request).
    fn get(&mut self, port: u16, token: &str) -> io::Result<(u16, String)> {
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(Client::connect(port)?);
                if attempt > 0 {
                    self.reconnects += 1;
                }
            }
            match self.once(port, token) {
                Ok(r) => return Ok(r),
                Err(e) if attempt == 0 => {
                    self.conn = None;
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("unreachable"))
    }

    fn once(&mut self, port: u16, token: &str) -> io::Result<(u16, String)> {
        let (w, r) = self.conn.as_mut().unwrap();
        let auth = if token.is_empty() {
            String::new()
        } else {
            format!("authorization: Bearer {token}\r\n")
        };
        w.write_all(format!("GET /orders HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}\r\n").as_bytes())?;
        let line = http::read_line(r)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let headers = http::read_headers(r)?;
        let body = http::read_body(r, &headers, false)?;
        if headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        let reason = if status == 200 {
            "allowed".to_owned()
        } else {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into())
        };
        Ok((status, reason))
    }
}

// ---------------------------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    requests: u64,
    checked: u64,
    wrong: u64,
    server_errors: u64,
    io_errors: u64,
    reconnects: u64,
    by_class: BTreeMap<String, u64>,
    by_outcome: BTreeMap<String, u64>,
    examples: Vec<String>,
}

fn config(generation: u64) -> String {
    json!({
        "providers": [{"issuer": ISS, "audiences": ["orders"], "jwksUri": format!("{ISS}/jwks"), "cluster": "idp",
                       "cacheDurationSeconds": 1, "fetchTimeoutMs": 500, "keyWaitMs": 2000,
                       "unknownKidRefetchSeconds": 1}],
        "revocation": {"subjects": [format!("push-{generation}")],
                       "uri": format!("{ISS}/revocation"), "cluster": "idp", "pollIntervalSeconds": 1,
                       "fetchTimeoutMs": 500, "onFailure": "keepLastGood"},
        "tokenCacheSize": 512,
        "telemetry": {"allowLog": "off", "denyLog": "off"}
    })
    .to_string()
}

fn listener(cfg: &str) -> Listener {
    Listener::new("hg").filter(hopguard_filter_yaml(cfg))
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn soak(seconds: u64) {
    let cycles = seconds.div_ceil(CYCLE).max(2);
    let load = Arc::new(Load::new(cycles as usize));
    let published = |active: usize| -> Vec<Value> {
        let mut keys = vec![load.stable_key.jwk(), load.rotating[active].jwk()];
        if let Some(next) = load.rotating.get(active + 1) {
            keys.push(next.jwk());
        }
        keys
    };
    let idp = Idp::start(published(0));
    let echo = Upstream::start();
    let clusters = vec![
        cluster_yaml("upstream", echo.port()),
        cluster_yaml("idp", idp.server.port()),
    ];
    let mut envoy = Envoy::start_dynamic_with(&clusters, &[listener(&config(0))], &EnvoyOptions::new(2));
    let pid = envoy.pid();
    let port = Arc::new(AtomicU16::new(envoy.port("hg")));
    let truth = Arc::new(RwLock::new(Truth {
        active: 0,
        revocable: vec![Rev::Valid; load.revocable.len()],
        generation: 0,
        pushing: false,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (load, truth, stop, tally, port) =
                (load.clone(), truth.clone(), stop.clone(), tally.clone(), port.clone());
            std::thread::spawn(move || {
                let mut client = Client {
                    conn: None,
                    reconnects: 0,
                };
                let mut local = Tally::default();
                // Bounded: at most this many requests per worker.
                for _ in 0..10_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let before = truth.read().unwrap().clone();
                    let (class, token, expect) = load.next(&before);
                    let got = client.get(port.load(Ordering::Relaxed), &token);
                    let after = truth.read().unwrap().clone();
                    local.requests += 1;
                    *local.by_class.entry(class.into()).or_default() += 1;
                    let got = match got {
                        Ok(g) => g,
                        Err(e) => {
                            local.io_errors += 1;
                            if local.examples.len() < 10 {
                                local.examples.push(format!("{class}: I/O error {e}"));
                            }
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    };
                    *local.by_outcome.entry(format!("{} {}", got.0, got.1)).or_default() += 1;
                    if got.0 >= 500 {
                        local.server_errors += 1;
                    }
                    let mut ok_set = expect(&before);
                    ok_set.extend(expect(&after));
                    local.checked += 1;
                    if !ok_set.contains(&got) {
                        local.wrong += 1;
                        if local.examples.len() < 10 {
                            local
                                .examples
                                .push(format!("{class}: got {got:?}, expected one of {ok_set:?}"));
                        }
                    }
                }
                local.reconnects = client.reconnects as u64;
                let mut t = tally.lock().unwrap();
                t.requests += local.requests;
                t.checked += local.checked;
                t.wrong += local.wrong;
                t.server_errors += local.server_errors;
                t.io_errors += local.io_errors;
                t.reconnects += local.reconnects;
                for (k, v) in local.by_class {
                    *t.by_class.entry(k).or_default() += v;
                }
                for (k, v) in local.by_outcome {
                    *t.by_outcome.entry(k).or_default() += v;
                }
                t.examples.extend(local.examples);
            })
        })
        .collect();

    // The controller: one step per second, a ten-second cycle (see the module comment).
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut events: Vec<String> = Vec::new();
    let mut pushes = (0u32, 0u32);
    let mut pushing_until: Option<Instant> = None;
    // Caches full, every document size seen once (the oversized set at t=4 s).
    let warm_ticks = CYCLE;
    for tick in 0..cycles * CYCLE {
        let cycle = (tick / CYCLE) as usize;
        let step = tick % CYCLE;
        if started.elapsed() >= Duration::from_secs(seconds) && step == 0 {
            break;
        }
        let t0 = Instant::now();
        match step {
            0 => {
                // Publish the next key (keeping the active one), revoke the next token.
                idp.set(|s| {
                    s.keys = published(cycle);
                    s.revoked = (0..=cycle).map(|i| format!("rev-{i}")).collect();
                    s.version += 1;
                });
                truth.write().unwrap().revocable[cycle] = Rev::Changing;
            }
            3 => {
                let mut t = truth.write().unwrap();
                t.active = cycle + 1;
                t.revocable[cycle] = Rev::Revoked;
                events.push(format!("t={tick}s key rot-{} active, rev-{cycle} revoked", cycle + 1));
            }
            4 | 6 => {
                // Two failure windows of two seconds per cycle: every mode within three cycles.
                let mode = FAILURES[(2 * cycle + usize::from(step == 6)) % FAILURES.len()];
                idp.set(|s| s.mode = mode);
                events.push(format!("t={tick}s IdP {mode:?}"));
            }
            7 => idp.set(|s| s.mode = Mode::Up),
            8 => {
                if cycle % 2 == 1 {
                    // A refused update: Envoy keeps the running listener.
                    let bad = json!({"providers": [{"issuer": ISS, "jwks": {"keys": []}}]}).to_string();
                    let refused = envoy.push_listeners(&[listener(&bad)]).is_err();
                    assert!(refused, "a configuration without keys was accepted");
                    pushes.1 += 1;
                    events.push(format!("t={tick}s push refused"));
                } else {
                    let next = truth.read().unwrap().generation + 1;
                    truth.write().unwrap().pushing = true;
                    envoy.push_listeners(&[listener(&config(next))]).unwrap();
                    port.store(envoy.port("hg"), Ordering::Relaxed);
                    truth.write().unwrap().generation = next;
                    pushing_until = Some(Instant::now() + Duration::from_millis(2500));
                    pushes.0 += 1;
                    events.push(format!("t={tick}s push generation {next}"));
                }
            }
            _ => {}
        }
        if pushing_until.is_some_and(|u| Instant::now() >= u) {
            truth.write().unwrap().pushing = false;
            pushing_until = None;
        }
        rss.push((tick, rss_kib(pid)));
        echo.clear();
        let spent = t0.elapsed();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(spent));
    }
    // Let a pending push settle before the last requests.
    if pushing_until.is_some() {
        std::thread::sleep(Duration::from_millis(2500));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rotations = truth.read().unwrap().active;
    let t = tally.lock().unwrap();
    let warm = rss.iter().find(|(tick, _)| *tick >= warm_ticks).map_or(0, |(_, r)| *r);
    let end = rss.last().map_or(0, |(_, r)| *r);
    let mid_tick = rss.last().map_or(0, |(tick, _)| *tick) / 2;
    let mid = rss.iter().find(|(tick, _)| *tick >= mid_tick).map_or(0, |(_, r)| *r);
    let first = rss.first().map_or(0, |(_, r)| *r);
    let peak = rss.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let logs = envoy.logs();
    let panics = logs.lines().filter(|l| l.contains("panic")).count();

    println!("\n== soak: {elapsed:.0} s, {WORKERS} keep-alive clients, Envoy --concurrency 2");
    println!("requests        {}", t.requests);
    println!("rate            {:.0} req/s", t.requests as f64 / elapsed);
    println!("verdicts checked {}", t.checked);
    println!("wrong verdicts  {}", t.wrong);
    println!("5xx             {}", t.server_errors);
    println!(
        "I/O errors      {} (reconnects after a server close: {})",
        t.io_errors, t.reconnects
    );
    println!("by class        {:?}", t.by_class);
    println!("by outcome      {:?}", t.by_outcome);
    println!(
        "changes         {rotations} key rotations, {} IdP failure windows, {rotations} revocations, \
         {} pushes applied + {} refused",
        2 * rotations,
        pushes.0,
        pushes.1
    );
    println!("IdP requests    {}", idp.fetches.load(Ordering::Relaxed));
    println!(
        "Envoy RSS       start {} MiB, after warm-up (t={warm_ticks}s) {} MiB, mid-run (t={mid_tick}s) {} MiB, \
         end {} MiB, peak {} MiB",
        first / 1024,
        warm / 1024,
        mid / 1024,
        end / 1024,
        peak / 1024
    );
    let series: Vec<String> = rss
        .iter()
        .filter(|(tick, _)| tick % CYCLE == 9)
        .map(|(tick, r)| format!("{tick}s:{}", r / 1024))
        .collect();
    println!("RSS every cycle {} (MiB)", series.join(" "));
    println!("events          {events:?}");
    for e in &t.examples {
        println!("  example: {e}");
    }
    assert_eq!(panics, 0, "panic in Envoy's log");
    assert!(t.requests > 0);
    assert_eq!(t.wrong, 0, "wrong verdicts: {:?}", t.examples);
    assert_eq!(t.server_errors, 0, "5xx answers: {:?}", t.by_outcome);
    assert_eq!(t.io_errors, 0, "I/O errors: {:?}", t.examples);
    // Flat once the caches are full: over the second half of the run, at most 6 MiB (or 5 %)
    // more, and never more than 16 MiB above the level after the first cycle.
    assert!(
        end <= mid + (mid / 20).max(6 * 1024),
        "Envoy RSS grew from {mid} KiB at mid-run to {end} KiB at the end"
    );
    assert!(
        end <= warm + 16 * 1024,
        "Envoy RSS grew from {warm} KiB after warm-up to {end} KiB at the end"
    );
}

#[test]
fn soak_under_rotation_flapping_revocation_and_config_pushes() {
    let seconds = std::env::var("HOPGUARD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40u64)
        .clamp(20, 3600);
    soak(seconds);
}
