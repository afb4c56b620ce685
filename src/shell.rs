//! The proxy-wasm shell: reads what the core needs from Envoy, applies the core's
//! answer, and runs the remote fetches the core's configuration asks for. No token or
//! policy decision is made here.
//!
//! Remote sources (JWKS, OIDC discovery, revocation lists) are fetched once per Envoy
//! process, not once per worker: every worker's root context ticks, reads the
//! source's [`SourceState`] from proxy-wasm shared data, and only the worker that wins
//! the lease (a compare-and-swap on that state) dispatches the HTTP call. The document
//! goes to shared data with a new version; every worker re-reads and re-parses it only
//! when the version changes.
//!
//! Requests that must wait (first keys, an unknown `kid`, a fail-closed revocation
//! list not yet fetched) are paused and decided again, without waiting twice, when the
//! version changes or their wait runs out.
//!
//! SDK trait helpers `unwrap` host errors and the String header getters panic on
//! non-UTF-8 bytes, so this file calls `hostcalls` directly and handles every error.
//! No `RefCell` borrow is held across a host call that may re-enter the module.

use crate::config::{Config, FilterState, KeySource, RecordLevel};
use crate::decision::{self, Decision, Verdict};
use crate::jwks::JwkSet;
use crate::remote::{self, Fetched, Target, MAX_BODY_BYTES};
use crate::request::{Mutation, Request};
use crate::revocation::RevocationList;
use crate::schedule::{self, SourceState};
use crate::snapshot::{LiveKeys, LiveList, Snapshot};
use crate::telemetry::{Metric, MetricKind, DECISIONS};
use crate::verifier::Wait;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

const TICK: Duration = Duration::from_millis(100);
/// The tick of a configuration without remote sources.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Attempts at a compare-and-swap update of shared state before giving up this tick.
const CAS_ATTEMPTS: usize = 8;

proxy_wasm::main! {{
    // hopguard's own logger (see `host`). Envoy refuses host calls other than logging while
    // the VM starts, so its level for Wasm is adopted from `on_configure` on.
    if log::set_logger(&host::LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    std::panic::set_hook(Box::new(|info| {
        host::log(5, &format!("hopguard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { worker: Rc::new(RefCell::new(Worker::new())) })
    });
}}

/// The proxy-wasm host calls of the request path whose SDK wrappers panic on an unexpected
/// host status (logging, header changes, the local reply, resuming), called through the raw
/// ABI so that no host status can panic the VM; and the logger built on them. Statuses are
/// plain integers here (0 is OK): an unknown one is an error, never undefined behaviour.
mod host {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        fn proxy_get_log_level(return_level: *mut u32) -> u32;
        fn proxy_add_header_map_value(map: u32, key: *const u8, key_size: usize, value: *const u8, size: usize) -> u32;
        fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        fn proxy_continue_stream(stream: u32) -> u32;
        #[allow(clippy::too_many_arguments)]
        fn proxy_send_local_response(
            status_code: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }

    /// proxy-wasm's map and stream ids: request headers, the request stream.
    const REQUEST_HEADERS: u32 = 0;
    const HTTP_REQUEST: u32 = 0;

    /// A host status: `Err` carries the host's code.
    fn status(code: u32) -> Result<(), u32> {
        if code == 0 {
            Ok(())
        } else {
            Err(code)
        }
    }

    // SAFETY (every call below): each pointer and length pair describes a live Rust slice or
    // str that outlives the call, and the host only reads through them.

    pub(super) fn add_request_header(name: &str, value: &[u8]) -> Result<(), u32> {
        status(unsafe {
            proxy_add_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len())
        })
    }

    pub(super) fn set_request_header(name: &str, value: &[u8]) -> Result<(), u32> {
        status(unsafe {
            proxy_replace_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len())
        })
    }

    pub(super) fn remove_request_header(name: &str) -> Result<(), u32> {
        status(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
    }

    pub(super) fn resume_request() -> Result<(), u32> {
        status(unsafe { proxy_continue_stream(HTTP_REQUEST) })
    }

    /// Sends Envoy's local reply with these headers and body (no gRPC status).
    pub(super) fn send_response(code: u16, headers: &[(String, String)], body: &[u8]) -> Result<(), u32> {
        let map = serialize_map(headers);
        status(unsafe {
            proxy_send_local_response(
                u32::from(code),
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            )
        })
    }

    /// proxy-wasm's header map encoding: the count, then each name's and value's length (u32
    /// little-endian), then each name and value followed by a NUL.
    fn serialize_map(headers: &[(String, String)]) -> Vec<u8> {
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let mut out = Vec::with_capacity(4 + headers.iter().map(|(n, v)| n.len() + v.len() + 10).sum::<usize>());
        out.extend_from_slice(&len(headers.len()));
        for (n, v) in headers {
            out.extend_from_slice(&len(n.len()));
            out.extend_from_slice(&len(v.len()));
        }
        for (n, v) in headers {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    /// proxy-wasm's log levels: trace 0, debug 1, info 2, warn 3, error 4, critical 5.
    const ERROR: u32 = 4;

    pub(super) fn log(level: u32, message: &str) {
        // SAFETY: the pointer and length describe `message`, which outlives the call; the host
        // only reads them. The status is deliberately ignored: a lost log line is not an error.
        let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
    }

    /// Envoy's current log level for Wasm, as a `log` filter; `None` if the host declines.
    fn log_level() -> Option<log::LevelFilter> {
        let mut level = 0u32;
        // SAFETY: the host writes one u32 through a pointer to a live local.
        let status = unsafe { proxy_get_log_level(&mut level) };
        if status != 0 {
            return None;
        }
        Some(match level {
            0 => log::LevelFilter::Trace,
            1 => log::LevelFilter::Debug,
            2 => log::LevelFilter::Info,
            3 => log::LevelFilter::Warn,
            ERROR => log::LevelFilter::Error,
            _ => log::LevelFilter::Off,
        })
    }

    /// Makes records below Envoy's level free: `log_enabled!` is false for them, so a decision
    /// record nobody will see is never formatted. Called at start, at configure and on ticks
    /// (Envoy's level can change at run time through its admin `/logging` endpoint). Not during
    /// VM start: Envoy refuses the call there.
    pub(super) fn adopt_log_level() {
        log::set_max_level(log_level().unwrap_or(log::LevelFilter::Trace));
    }

    pub(super) struct Logger;
    pub(super) static LOGGER: Logger = Logger;

    impl log::Log for Logger {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() <= log::max_level()
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                let level = match record.level() {
                    log::Level::Trace => 0,
                    log::Level::Debug => 1,
                    log::Level::Info => 2,
                    log::Level::Warn => 3,
                    log::Level::Error => ERROR,
                };
                log(level, &record.args().to_string());
            }
        }
        fn flush(&self) {}
    }
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::getrandom(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => now_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

/// A remote source of this configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Keys(usize),
    Revocation,
}

struct Waiter {
    context_id: u32,
    wait: Wait,
    since_ms: u64,
    deadline_ms: u64,
    version_at_start: u64,
    /// What this request already waited for: it waits at most once per kind.
    waited: Vec<Wait>,
}

/// The metrics of one configuration, defined at configure time, and the record settings.
/// Those every request touches are resolved to their ids once (`requests`, `providers`,
/// `cache`, `verify`): no hashing of metric names per request.
struct Meters {
    ids: HashMap<Metric, u32>,
    /// `requests_total` by [`crate::telemetry::DECISIONS`] index.
    requests: [Option<u32>; 4],
    /// `provider_requests_total` by provider index, then decision index.
    providers: Vec<[Option<u32>; 4]>,
    /// `token_cache_total`: hit, miss.
    cache: [Option<u32>; 2],
    verify: Option<u32>,
    telemetry: crate::config::Telemetry,
    /// xorshift state for record sampling.
    sample: std::cell::Cell<u64>,
}

impl Meters {
    fn define(cfg: &Config, seed: u64) -> Meters {
        let mut ids = HashMap::new();
        for m in crate::telemetry::metrics_of(cfg) {
            let kind = match m.kind() {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Histogram => MetricType::Histogram,
            };
            if let Ok(id) = hostcalls::define_metric(kind, &m.name()) {
                ids.insert(m, id);
            }
        }
        let by_decision = |m: &dyn Fn(&'static str) -> Metric| DECISIONS.map(|d| ids.get(&m(d)).copied());
        Meters {
            requests: by_decision(&Metric::Requests),
            providers: cfg
                .providers
                .iter()
                .map(|p| by_decision(&|d| Metric::ProviderRequests(p.name.clone(), d)))
                .collect(),
            cache: ["hit", "miss"].map(|r| ids.get(&Metric::TokenCache(r)).copied()),
            verify: ids.get(&Metric::VerifyDuration).copied(),
            ids,
            telemetry: cfg.telemetry.clone(),
            sample: std::cell::Cell::new(seed | 1),
        }
    }

    fn count(&self, m: &Metric) {
        Meters::count_id(self.ids.get(m).copied());
    }

    fn record(&self, m: &Metric, value: u64) {
        if let Some(id) = self.ids.get(m) {
            let _ = hostcalls::record_metric(*id, value);
        }
    }

    fn count_id(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn sampled(&self) -> bool {
        let rate = self.telemetry.sample_rate;
        if rate >= 1.0 {
            return true;
        }
        let mut x = self.sample.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.sample.set(x);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
    }

    /// Counts a decision, logs its record, and exports it to filter state.
    fn report(&self, d: &Decision) {
        let decision = d.record.decision;
        // `wait` is no decision yet: it is counted when the request is decided.
        if let Some(i) = DECISIONS.iter().position(|x| *x == decision) {
            Meters::count_id(self.requests.get(i).copied().flatten());
            if let Some(ids) = d.provider.and_then(|p| self.providers.get(p)) {
                Meters::count_id(ids.get(i).copied().flatten());
            }
        }
        if let (Some(r), true) = (d.reason, decision != "allow" && decision != "wait") {
            self.count(&Metric::Denials(r.code()));
        }
        for k in &d.record.leaks {
            self.count(&Metric::Leaks(k));
        }
        match d.record.cache_hit {
            Some(true) => Meters::count_id(self.cache[0]),
            Some(false) => Meters::count_id(self.cache[1]),
            None => {}
        }
        if let (Some(us), Some(id)) = (d.record.verify_us, self.verify) {
            let _ = hostcalls::record_metric(id, us);
        }
        let level = if decision == "allow" {
            if !self.sampled() {
                RecordLevel::Off
            } else {
                self.telemetry.allow_log
            }
        } else {
            self.telemetry.deny_log
        };
        // Serialize the record at most once, and only when something will read it.
        let logged = match level {
            RecordLevel::Off => None,
            RecordLevel::Debug => Some(log::Level::Debug),
            RecordLevel::Info => Some(log::Level::Info),
            RecordLevel::Warn => Some(log::Level::Warn),
        }
        .filter(|l| log::log_enabled!(*l));
        let want_record = self.telemetry.filter_state == FilterState::Record;
        let json = (logged.is_some() || want_record).then(|| d.record.to_json().to_string());
        if let (Some(l), Some(j)) = (logged, &json) {
            log::log!(l, "hopguard: decision {j}");
        }
        if self.telemetry.filter_state == FilterState::Off {
            return;
        }
        // For Envoy access logs: %FILTER_STATE(wasm.hopguard_decision:PLAIN)% and friends.
        let text = |v: Option<&str>| v.unwrap_or("-").as_bytes().to_vec();
        let _ = hostcalls::set_property(vec!["hopguard_decision"], Some(decision.as_bytes()));
        let _ = hostcalls::set_property(vec!["hopguard_reason"], Some(&text(d.record.reason)));
        let _ = hostcalls::set_property(
            vec!["hopguard_fingerprint"],
            Some(&text(d.record.fingerprint.as_deref())),
        );
        let _ = hostcalls::set_property(vec!["hopguard_provider"], Some(&text(d.record.provider.as_deref())));
        if let (true, Some(j)) = (want_record, &json) {
            let _ = hostcalls::set_property(vec!["hopguard_record"], Some(j.as_bytes()));
        }
    }
}

/// One worker's (one Wasm VM's) state, shared by its root and HTTP contexts.
struct Worker {
    /// DPoP proof `jti`s seen by this worker (RFC 9449 replay detection).
    replay: Rc<RefCell<crate::replay::ReplayCache>>,
    /// Verified tokens (per worker).
    cache: Rc<RefCell<crate::cache::TokenCache>>,
    me: u64,
    config: Option<Rc<Config>>,
    meters: Option<Rc<Meters>>,
    snapshot: Snapshot,
    /// Document version last loaded, per source.
    loaded: HashMap<Source, u64>,
    waiting: Vec<Waiter>,
    /// HTTP call token -> source (and whether it is the discovery step).
    inflight: HashMap<u32, (Source, bool)>,
}

impl Worker {
    fn new() -> Worker {
        Worker {
            replay: Rc::new(RefCell::new(crate::replay::ReplayCache::new(1))),
            cache: Rc::new(RefCell::new(crate::cache::TokenCache::new(0))),
            me: random_u64() | 1,
            config: None,
            meters: None,
            snapshot: Snapshot {
                keys: Vec::new(),
                revocation: LiveList::None,
            },
            loaded: HashMap::new(),
            waiting: Vec::new(),
            inflight: HashMap::new(),
        }
    }
}

fn sources(cfg: &Config) -> Vec<Source> {
    let mut out: Vec<Source> = cfg
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.remote.is_some())
        .map(|(i, _)| Source::Keys(i))
        .collect();
    if cfg.revocation.remote.is_some() {
        out.push(Source::Revocation);
    }
    out
}

/// Shared-data keys, and timing, of a source.
struct SourceInfo {
    id: String,
    timeout_ms: u64,
    refresh_ms: u64,
    max_stale_ms: u64,
}

fn info(cfg: &Config, src: Source) -> Option<SourceInfo> {
    match src {
        Source::Keys(i) => cfg.providers.get(i)?.remote.as_ref().map(|r| SourceInfo {
            id: r.id.clone(),
            timeout_ms: r.timeout_ms,
            refresh_ms: r.cache_ms,
            max_stale_ms: r.max_stale_ms,
        }),
        Source::Revocation => cfg.revocation.remote.as_ref().map(|r| SourceInfo {
            id: r.id.clone(),
            timeout_ms: r.timeout_ms,
            refresh_ms: r.poll_ms,
            max_stale_ms: r.max_stale_ms,
        }),
    }
}

fn state_key(id: &str) -> String {
    format!("hopguard.source.{id}.state")
}

fn doc_key(id: &str) -> String {
    format!("hopguard.source.{id}.doc")
}

fn read_state(id: &str) -> (SourceState, Option<u32>) {
    match hostcalls::get_shared_data(&state_key(id)) {
        Ok((Some(bytes), cas)) => (SourceState::decode(&bytes).unwrap_or_default(), cas),
        _ => (SourceState::default(), None),
    }
}

/// Applies `edit` to the shared state with compare-and-swap; returns the state written,
/// or `None` if `edit` declined or every attempt lost the race.
fn update_state(id: &str, mut edit: impl FnMut(&mut SourceState) -> bool) -> Option<SourceState> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut state, cas) = read_state(id);
        if !edit(&mut state) {
            return None;
        }
        // A missing key has no CAS; writing with cas 0 creates it only if still absent.
        let cas = Some(cas.unwrap_or(0));
        match hostcalls::set_shared_data(&state_key(id), Some(&state.encode()), cas) {
            Ok(()) => return Some(state),
            Err(_) => continue,
        }
    }
    None
}

struct Root {
    worker: Rc<RefCell<Worker>>,
}

/// A fetch's result: the new document (none for 304), its `max-age` and `ETag`; or why
/// it is unusable.
type FetchOutcome = Result<(Option<Vec<u8>>, Option<u64>, Option<String>), String>;

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let (cfg, source) = {
            let Ok(mut w) = self.worker.try_borrow_mut() else {
                return;
            };
            let Some(cfg) = w.config.clone() else { return };
            let Some(source) = w.inflight.remove(&token) else {
                return;
            };
            (cfg, source)
        };
        let headers: Vec<(String, String)> = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let status = headers
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
            .unwrap_or(0);
        let body = if body_size > MAX_BODY_BYTES {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
        };
        let body = body.unwrap_or_default();
        let oversized = body_size > MAX_BODY_BYTES;
        self.finish_fetch(&cfg, source, status, &headers, &body, oversized);
        self.pump(&cfg);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        host::adopt_log_level();
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Ok(mut w) = self.worker.try_borrow_mut() else {
            return false;
        };
        match Config::parse(&bytes) {
            Ok(cfg) => {
                for note in &cfg.notes {
                    log::warn!("hopguard: {note}");
                }
                log::info!(
                    "hopguard: configured {} provider(s), requirement {:?}",
                    cfg.providers.len(),
                    cfg.requirement
                );
                let remote = !sources(&cfg).is_empty();
                w.meters = Some(Rc::new(Meters::define(&cfg, w.me)));
                w.replay = Rc::new(RefCell::new(crate::replay::ReplayCache::new(
                    cfg.authorization.dpop.replay_cache_size,
                )));
                w.cache = Rc::new(RefCell::new(crate::cache::TokenCache::new(cfg.token_cache_size)));
                w.snapshot = Snapshot::new(&cfg);
                w.loaded.clear();
                w.config = Some(Rc::new(cfg));
                drop(w);
                // Without remote sources the tick only follows Envoy's log level.
                let _ = hostcalls::set_tick_period(if remote { TICK } else { IDLE_TICK });
                true
            }
            Err(e) => {
                log::error!("hopguard: configuration refused: {e}");
                w.config = None;
                false
            }
        }
    }

    fn on_tick(&mut self) {
        host::adopt_log_level();
        let cfg = match self.worker.try_borrow() {
            Ok(w) => w.config.clone(),
            Err(_) => None,
        };
        if let Some(cfg) = cfg {
            self.pump(&cfg);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            worker: Rc::clone(&self.worker),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    /// One round: refresh the snapshot from shared data, start due fetches, and decide
    /// the waiting requests that can be decided now.
    fn pump(&self, cfg: &Config) {
        let now = now_ms();
        let meters = self.worker.try_borrow().ok().and_then(|w| w.meters.clone());
        for src in sources(cfg) {
            let Some(si) = info(cfg, src) else { continue };
            load(&self.worker, cfg, src, &si, now);
            self.maybe_fetch(cfg, src, &si, now);
            if let (Source::Keys(i), Some(m)) = (src, &meters) {
                if let (Some(p), Some(age)) = (cfg.providers.get(i), read_state(&si.id).0.age_ms(now)) {
                    m.record(&Metric::KeySetAge(p.name.clone()), age / 1000);
                }
            }
        }
        self.release_waiters(cfg, now);
    }

    /// Starts a fetch if one is due and this worker wins the lease.
    fn maybe_fetch(&self, cfg: &Config, src: Source, si: &SourceInfo, now: u64) {
        let me = match self.worker.try_borrow() {
            Ok(w) if !w.inflight.values().any(|(s, _)| *s == src) => w.me,
            _ => return,
        };
        let won = update_state(&si.id, |s| {
            if !s.due(now) || s.leased(now, me) {
                return false;
            }
            s.take_lease(me, now, si.timeout_ms);
            true
        });
        let Some(state) = won else { return };
        let (target, discovery) = match fetch_target(cfg, src, &state) {
            Some(t) => t,
            None => return,
        };
        self.dispatch(cfg, src, si, &target, discovery, state.etag.as_deref(), now);
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        cfg: &Config,
        src: Source,
        si: &SourceInfo,
        target: &Target,
        discovery: bool,
        etag: Option<&str>,
        now: u64,
    ) {
        let etag = if src == Source::Revocation { etag } else { None };
        let headers = target.headers(etag);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        match hostcalls::dispatch_http_call(
            &target.cluster,
            refs,
            None,
            Vec::new(),
            Duration::from_millis(si.timeout_ms),
        ) {
            Ok(token) => {
                if let Ok(mut w) = self.worker.try_borrow_mut() {
                    w.inflight.insert(token, (src, discovery));
                }
            }
            Err(e) => {
                let msg = format!("cannot call cluster {:?}: {e:?}", target.cluster);
                log::warn!("hopguard: {} fetch failed: {msg}", describe(cfg, src));
                self.count_fetch(cfg, src, "failure");
                let jitter = random_u64();
                update_state(&si.id, |s| {
                    s.failed(now, msg.clone(), jitter, si.refresh_ms);
                    true
                });
            }
        }
    }

    fn finish_fetch(
        &self,
        cfg: &Config,
        (src, discovery): (Source, bool),
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        oversized: bool,
    ) {
        let Some(si) = info(cfg, src) else { return };
        let now = now_ms();
        let outcome: FetchOutcome = if oversized {
            Err(format!("response larger than {MAX_BODY_BYTES} bytes"))
        } else if discovery {
            let issuer = match src {
                Source::Keys(i) => cfg.providers.get(i).map_or("", |p| p.issuer.as_str()),
                Source::Revocation => "",
            };
            match remote::discovery_response(status, body, issuer) {
                Ok(uri) => {
                    // Discovery done: remember the jwks_uri, then fetch it under the same lease.
                    let state = update_state(&si.id, |s| {
                        s.discovered_uri = Some(uri.clone());
                        true
                    });
                    if let (Some(state), Some(cluster)) = (state, cluster_of(cfg, src)) {
                        match Target::new(cluster, &uri) {
                            Ok(t) => {
                                self.dispatch(cfg, src, &si, &t, false, state.etag.as_deref(), now);
                                return;
                            }
                            Err(e) => Err(format!("discovered jwks_uri: {e}")),
                        }
                    } else {
                        Err("could not record the discovered jwks_uri".to_owned())
                    }
                }
                Err(e) => Err(format!("OIDC discovery: {e}")),
            }
        } else {
            match src {
                Source::Keys(_) => remote::jwks_response(status, headers, body).map(|f| match f {
                    Fetched::Fresh { max_age, .. } => (Some(body.to_vec()), max_age, None),
                    Fetched::NotModified => (None, None, None),
                }),
                Source::Revocation => remote::revocation_response(status, headers, body).map(|f| match f {
                    Fetched::Fresh { max_age, etag, .. } => (Some(body.to_vec()), max_age, etag),
                    Fetched::NotModified => (None, None, None),
                }),
            }
        };
        match outcome {
            Ok((doc, max_age, etag)) => {
                let changed = match &doc {
                    Some(d) => {
                        let old = hostcalls::get_shared_data(&doc_key(&si.id)).ok().and_then(|(d, _)| d);
                        let changed = old.as_deref() != Some(d.as_slice());
                        if changed {
                            let _ = hostcalls::set_shared_data(&doc_key(&si.id), Some(d), None);
                        }
                        changed
                    }
                    None => false,
                };
                let refresh = schedule::refresh_ms(si.refresh_ms, max_age);
                update_state(&si.id, |s| {
                    s.succeeded(now, refresh, changed);
                    if etag.is_some() {
                        s.etag = etag.clone();
                    }
                    true
                });
                log::debug!("hopguard: {} fetched (changed: {changed})", describe(cfg, src));
                self.count_fetch(cfg, src, "success");
            }
            Err(e) => {
                log::warn!("hopguard: {} fetch failed: {e}", describe(cfg, src));
                self.count_fetch(cfg, src, "failure");
                let jitter = random_u64();
                let rediscover = matches!(src, Source::Keys(_)) && status == 404;
                update_state(&si.id, |s| {
                    s.failed(now, e.clone(), jitter, si.refresh_ms);
                    if rediscover {
                        s.discovered_uri = None;
                    }
                    true
                });
            }
        }
    }

    fn count_fetch(&self, cfg: &Config, src: Source, result: &'static str) {
        let Some(m) = self.worker.try_borrow().ok().and_then(|w| w.meters.clone()) else {
            return;
        };
        match src {
            Source::Keys(i) => {
                if let Some(p) = cfg.providers.get(i) {
                    m.count(&Metric::JwksFetches(p.name.clone(), result));
                }
            }
            Source::Revocation => m.count(&Metric::RevocationFetches(result)),
        }
    }

    /// Decides again every waiting request whose keys (or list) arrived, whose refetch
    /// finished, or whose wait ran out.
    fn release_waiters(&self, cfg: &Config, now: u64) {
        let ready: Vec<Waiter> = {
            let Ok(mut w) = self.worker.try_borrow_mut() else {
                return;
            };
            if w.waiting.is_empty() {
                return;
            }
            let waiting = std::mem::take(&mut w.waiting);
            let (ready, still): (Vec<Waiter>, Vec<Waiter>) = waiting
                .into_iter()
                .partition(|x| x.deadline_ms <= now || settled(cfg, x));
            w.waiting = still;
            ready
        };
        for waiter in ready {
            if hostcalls::set_effective_context(waiter.context_id).is_err() {
                continue; // the request is gone
            }
            let req = read_request();
            // The keys may have arrived while the revocation list has not (or the other
            // way round): wait once more, for something not waited for yet, within the
            // same deadline.
            if now < waiter.deadline_ms {
                let again = decide_timed(&self.worker, &req, now, true);
                // A complete decision is final: deciding twice would, for one, record a DPoP
                // proof's jti in the replay cache and then refuse it as a replay.
                if !matches!(again.verdict, Verdict::Wait(_)) {
                    finish(&self.worker, &req, again, true);
                    continue;
                }
                if let Verdict::Wait(next) = again.verdict {
                    if next != waiter.wait && !waiter.waited.contains(&next) {
                        let version_at_start = wait_source(cfg, next)
                            .and_then(|src| info(cfg, src))
                            .map_or(0, |si| read_state(&si.id).0.version);
                        let mut waited = waiter.waited.clone();
                        waited.push(waiter.wait);
                        if let Ok(mut w) = self.worker.try_borrow_mut() {
                            w.waiting.push(Waiter {
                                context_id: waiter.context_id,
                                wait: next,
                                since_ms: now,
                                deadline_ms: waiter.deadline_ms,
                                version_at_start,
                                waited,
                            });
                            continue;
                        }
                    }
                }
            }
            let decision = decide_timed(&self.worker, &req, now, false);
            finish(&self.worker, &req, decision, true);
        }
    }
}

/// Loads a new document version from shared data into this worker's snapshot, and
/// refreshes its staleness.
fn load(worker: &RefCell<Worker>, cfg: &Config, src: Source, si: &SourceInfo, now: u64) {
    let (state, _) = read_state(&si.id);
    let stale = state.age_ms(now).is_some_and(|age| age > si.max_stale_ms);
    let Ok(mut w) = worker.try_borrow_mut() else {
        return;
    };
    let have = w.loaded.get(&src).copied().unwrap_or(0);
    if state.version != have && state.version != 0 {
        let doc = hostcalls::get_shared_data(&doc_key(&si.id)).ok().and_then(|(d, _)| d);
        if let Some(doc) = doc {
            match src {
                Source::Keys(i) => {
                    if let Some(set) = parse_jwks(&doc) {
                        if let Some(slot) = w.snapshot.keys.get_mut(i) {
                            *slot = LiveKeys::Ready {
                                keys: Arc::new(set.keys),
                                stale,
                            };
                        }
                        w.loaded.insert(src, state.version);
                    }
                }
                Source::Revocation => {
                    if let Some(list) = parse_revocation(&doc) {
                        w.snapshot.revocation = LiveList::Ready {
                            list: Arc::new(list),
                            stale,
                        };
                        w.loaded.insert(src, state.version);
                    }
                }
            }
        }
    }
    match src {
        Source::Keys(i) => {
            if let Some(LiveKeys::Ready { stale: s, .. }) = w.snapshot.keys.get_mut(i) {
                if *s != stale {
                    *s = stale;
                    if stale {
                        log::error!(
                            "hopguard: keys of provider {} are older than maxStalenessSeconds: refusing its tokens",
                            cfg.providers.get(i).map_or("?", |p| p.name.as_str())
                        );
                    }
                }
            }
        }
        Source::Revocation => {
            if let LiveList::Ready { stale: s, .. } = &mut w.snapshot.revocation {
                *s = stale;
            }
        }
    }
}

fn wait_source(cfg: &Config, w: Wait) -> Option<Source> {
    match w {
        Wait::FirstKeys { provider } | Wait::UnknownKid { provider } => cfg
            .providers
            .get(provider)
            .filter(|p| p.remote.is_some())
            .map(|_| Source::Keys(provider)),
        Wait::RevocationList => cfg.revocation.remote.as_ref().map(|_| Source::Revocation),
    }
}

/// Whether what a waiter waits for has happened.
fn settled(cfg: &Config, w: &Waiter) -> bool {
    let src = match w.wait {
        Wait::FirstKeys { provider } | Wait::UnknownKid { provider } => Source::Keys(provider),
        Wait::RevocationList => Source::Revocation,
    };
    let Some(si) = info(cfg, src) else { return true };
    let (state, _) = read_state(&si.id);
    match w.wait {
        Wait::FirstKeys { .. } | Wait::RevocationList => state.version != 0,
        Wait::UnknownKid { .. } => {
            state.version != w.version_at_start || (state.attempted_at_ms >= w.since_ms && !state.refetch_requested)
        }
    }
}

fn fetch_target(cfg: &Config, src: Source, state: &SourceState) -> Option<(Target, bool)> {
    match src {
        Source::Keys(i) => {
            let remote = cfg.providers.get(i)?.remote.as_ref()?;
            match &remote.source {
                KeySource::Jwks(t) => Some((t.clone(), false)),
                KeySource::Discovery(doc) => match &state.discovered_uri {
                    Some(uri) => Target::new(&doc.cluster, uri).ok().map(|t| (t, false)),
                    None => Some((doc.clone(), true)),
                },
            }
        }
        Source::Revocation => cfg.revocation.remote.as_ref().map(|r| (r.target.clone(), false)),
    }
}

fn cluster_of(cfg: &Config, src: Source) -> Option<&str> {
    match src {
        Source::Keys(i) => match &cfg.providers.get(i)?.remote.as_ref()?.source {
            KeySource::Jwks(t) | KeySource::Discovery(t) => Some(t.cluster.as_str()),
        },
        Source::Revocation => cfg.revocation.remote.as_ref().map(|r| r.target.cluster.as_str()),
    }
}

fn describe(cfg: &Config, src: Source) -> String {
    match src {
        Source::Keys(i) => format!(
            "JWKS of provider {}",
            cfg.providers.get(i).map_or("?", |p| p.name.as_str())
        ),
        Source::Revocation => "revocation list".to_owned(),
    }
}

fn parse_jwks(doc: &[u8]) -> Option<JwkSet> {
    let v = crate::json::parse_strict(doc).ok()?;
    JwkSet::parse(&v, "$").ok().filter(|s| !s.keys.is_empty())
}

fn parse_revocation(doc: &[u8]) -> Option<RevocationList> {
    let v = crate::json::parse_strict(doc).ok()?;
    RevocationList::from_value(&v, "$").ok()
}

/// The connection facts policies need, read from Envoy properties (only when the core
/// asks: a policy exists, or the token carries `cnf` or came with the DPoP scheme).
fn read_connection() -> crate::policy::Connection {
    let text = |path: Vec<&str>| {
        hostcalls::get_property(path)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
    };
    let port = hostcalls::get_property(vec!["destination", "port"])
        .ok()
        .flatten()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .and_then(|b| u16::try_from(u64::from_le_bytes(b)).ok());
    crate::policy::Connection {
        peer_uri_san: text(vec!["connection", "uri_san_peer_certificate"]),
        peer_cert_sha256: text(vec!["connection", "sha256_peer_certificate_digest"]),
        source_ip: text(vec!["source", "address"]).and_then(|a| crate::matcher::address_ip(&a)),
        destination_ip: text(vec!["destination", "address"]).and_then(|a| crate::matcher::address_ip(&a)),
        destination_port: port,
        sni: text(vec!["connection", "requested_server_name"]),
    }
}

/// The request headers, as bytes: values may carry obs-text that is not UTF-8 (see
/// [`Request::from_wire`]).
fn read_request() -> Request {
    Request::from_wire(hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default())
}

/// Applies a decision about `req` to the current HTTP context. `resume`: the request was
/// paused. A host error on a header change or the reply is logged; nothing panics.
fn apply(req: &Request, d: Decision, resume: bool, report: Option<&Meters>) -> Action {
    match report {
        Some(meters) => meters.report(&d),
        None => log::info!("hopguard: decision {}", d.record.to_json()),
    }
    for m in &d.mutations {
        let (name, result) = match m {
            Mutation::Remove(name) => (name, host::remove_request_header(name)),
            Mutation::Add(name, value) => (name, host::add_request_header(name, &req.wire_value(name, value))),
            Mutation::Set(name, value) => (name, host::set_request_header(name, &req.wire_value(name, value))),
        };
        if let Err(code) = result {
            log::warn!("hopguard: changing request header {name} failed (host status {code})");
        }
    }
    match d.verdict {
        Verdict::Allow => {
            if resume {
                if let Err(code) = host::resume_request() {
                    log::warn!("hopguard: resuming the request failed (host status {code})");
                }
            }
            Action::Continue
        }
        Verdict::Deny(denial) => {
            if let Err(code) = host::send_response(denial.status, &denial.headers, denial.body.as_bytes()) {
                log::warn!(
                    "hopguard: sending the {} reply failed (host status {code})",
                    denial.status
                );
            }
            Action::Pause
        }
        // Only a first decision may wait; `on_http_request_headers` handles it.
        Verdict::Wait(_) => Action::Pause,
    }
}

struct Http {
    context_id: u32,
    worker: Rc<RefCell<Worker>>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let req = read_request();
        let now = now_ms();
        let decision = decide_timed(&self.worker, &req, now, true);
        if let Verdict::Wait(wait) = decision.verdict {
            return self.wait(wait, &req, now);
        }
        finish(&self.worker, &req, decision, false)
    }
}

/// Decides `req` with this worker's configuration and snapshot, timing the decision.
fn decide_timed(worker: &RefCell<Worker>, req: &Request, now: u64, may_wait: bool) -> Decision {
    let started = Instant::now();
    let mut d = match worker.try_borrow() {
        Ok(w) => match &w.config {
            Some(cfg) => {
                let env = decision::Env {
                    snapshot: &w.snapshot,
                    connection: &read_connection,
                    replay: &w.replay,
                    cache: &w.cache,
                };
                decision::decide_live(cfg, &env, req, now / 1000, may_wait)
            }
            None => decision::unconfigured(req),
        },
        Err(_) => decision::unconfigured(req),
    };
    if d.record.fingerprint.is_some() {
        d.record.verify_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    d
}

/// Reports and applies a decision (no worker borrow is held while Envoy runs).
fn finish(worker: &RefCell<Worker>, req: &Request, d: Decision, resume: bool) -> Action {
    let meters = worker.try_borrow().ok().and_then(|w| w.meters.clone());
    apply(req, d, resume, meters.as_deref())
}

impl Http {
    /// Pauses the request until its keys arrive (or decides at once if an unknown-kid
    /// refetch is rate-limited).
    fn wait(&self, wait: Wait, req: &Request, now: u64) -> Action {
        let Some(cfg) = self.worker.try_borrow().ok().and_then(|w| w.config.clone()) else {
            return finish(&self.worker, req, decision::unconfigured(req), false);
        };
        let (src, wait_ms) = match wait {
            Wait::FirstKeys { provider } | Wait::UnknownKid { provider } => (
                Source::Keys(provider),
                cfg.providers
                    .get(provider)
                    .and_then(|p| p.remote.as_ref())
                    .map_or(0, |r| r.wait_ms),
            ),
            Wait::RevocationList => (
                Source::Revocation,
                cfg.revocation.remote.as_ref().map_or(0, |r| r.wait_ms),
            ),
        };
        let Some(si) = info(&cfg, src) else {
            return self.decide_now(req, now);
        };
        // Another worker may have fetched already (this worker's tick has not loaded it
        // yet): load the latest version and decide again before waiting.
        load(&self.worker, &cfg, src, &si, now);
        let again = decide_timed(&self.worker, req, now, true);
        let wait = match again.verdict {
            Verdict::Wait(w) => w,
            _ => return finish(&self.worker, req, again, false),
        };
        if let Wait::UnknownKid { provider } = wait {
            let interval = cfg
                .providers
                .get(provider)
                .and_then(|p| p.remote.as_ref())
                .map_or(u64::MAX, |r| r.refetch_interval_ms);
            let granted = update_state(&si.id, |s| s.request_refetch(now, interval)).is_some()
                || read_state(&si.id).0.refetch_requested;
            if !granted {
                return self.decide_now(req, now);
            }
        }
        if wait_ms == 0 {
            return self.decide_now(req, now);
        }
        let version_at_start = read_state(&si.id).0.version;
        if let Ok(mut w) = self.worker.try_borrow_mut() {
            w.waiting.push(Waiter {
                context_id: self.context_id,
                wait,
                since_ms: now,
                deadline_ms: now + wait_ms,
                version_at_start,
                waited: Vec::new(),
            });
            Action::Pause
        } else {
            self.decide_now(req, now)
        }
    }

    fn decide_now(&self, req: &Request, now: u64) -> Action {
        let d = decide_timed(&self.worker, req, now, false);
        finish(&self.worker, req, d, false)
    }
}
