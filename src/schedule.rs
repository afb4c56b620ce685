//! When to fetch a remote document again: refresh on a period (`Cache-Control: max-age`
//! honoured within bounds), exponential backoff with jitter after failures, and the
//! per-source state every worker shares (through proxy-wasm shared data) so that one
//! Envoy process fetches once, not once per worker.
//!
//! All times are milliseconds since the epoch, passed in.

use serde_json::{Map, Value};

/// Bounds for a server's `max-age`.
pub const MIN_REFRESH_MS: u64 = 30_000;
pub const MAX_REFRESH_MS: u64 = 24 * 3600 * 1000;
/// Backoff after failures: 1 s doubling to 60 s, with jitter.
pub const BACKOFF_BASE_MS: u64 = 1_000;
pub const BACKOFF_MAX_MS: u64 = 60_000;

/// What every worker knows about one remote source, shared between them. `version`
/// changes whenever the document changes; workers re-read the document only then.
///
/// Shared as a JSON object (`encode`/`decode`), written and read field by field rather than
/// through serde's derive: a derived decoder links serde's typed-error formatting, 14 KB of
/// floating-point printing the filter has no other use for (issue 6, Wasm size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceState {
    pub version: u64,
    /// When the current document was fetched (0: never).
    pub fetched_at_ms: u64,
    /// When the last attempt, good or bad, finished.
    pub attempted_at_ms: u64,
    pub next_fetch_ms: u64,
    pub failures: u32,
    pub last_error: Option<String>,
    /// For discovery: the `jwks_uri` found.
    pub discovered_uri: Option<String>,
    pub etag: Option<String>,
    /// A worker saw a `kid` it does not know and asks for a refetch now.
    pub refetch_requested: bool,
    /// When the last unknown-`kid` refetch was granted (rate limit).
    pub last_refetch_ms: u64,
    /// The worker (random id) fetching now, and until when its lease runs.
    pub lease_owner: u64,
    pub lease_until_ms: u64,
    /// Fetches started, for tests and metrics.
    pub fetches: u64,
}

impl SourceState {
    /// Reads what `encode` wrote; `None` for anything else (another build's layout, a
    /// torn write), which the caller treats as a fresh source.
    pub fn decode(bytes: &[u8]) -> Option<SourceState> {
        let v = crate::json::parse_strict(bytes).ok()?;
        let o = v.as_object()?;
        let n = |k: &str| o.get(k).and_then(Value::as_u64);
        let s = |k: &str| match o.get(k) {
            Some(Value::String(x)) => Some(Some(x.clone())),
            Some(Value::Null) => Some(None),
            _ => None,
        };
        Some(SourceState {
            version: n("version")?,
            fetched_at_ms: n("fetched_at_ms")?,
            attempted_at_ms: n("attempted_at_ms")?,
            next_fetch_ms: n("next_fetch_ms")?,
            failures: u32::try_from(n("failures")?).ok()?,
            last_error: s("last_error")?,
            discovered_uri: s("discovered_uri")?,
            etag: s("etag")?,
            refetch_requested: o.get("refetch_requested")?.as_bool()?,
            last_refetch_ms: n("last_refetch_ms")?,
            lease_owner: n("lease_owner")?,
            lease_until_ms: n("lease_until_ms")?,
            fetches: n("fetches")?,
        })
    }

    /// The shared-data form: a JSON object with one member per field.
    pub fn encode(&self) -> Vec<u8> {
        let s = |x: &Option<String>| x.clone().map_or(Value::Null, Value::String);
        let mut o = Map::new();
        o.insert("version".into(), self.version.into());
        o.insert("fetched_at_ms".into(), self.fetched_at_ms.into());
        o.insert("attempted_at_ms".into(), self.attempted_at_ms.into());
        o.insert("next_fetch_ms".into(), self.next_fetch_ms.into());
        o.insert("failures".into(), self.failures.into());
        o.insert("last_error".into(), s(&self.last_error));
        o.insert("discovered_uri".into(), s(&self.discovered_uri));
        o.insert("etag".into(), s(&self.etag));
        o.insert("refetch_requested".into(), self.refetch_requested.into());
        o.insert("last_refetch_ms".into(), self.last_refetch_ms.into());
        o.insert("lease_owner".into(), self.lease_owner.into());
        o.insert("lease_until_ms".into(), self.lease_until_ms.into());
        o.insert("fetches".into(), self.fetches.into());
        serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
    }

    /// Whether a fetch is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        self.fetched_at_ms == 0 && self.attempted_at_ms == 0 || now >= self.next_fetch_ms || self.refetch_requested
    }

    /// Whether another worker holds the fetch lease.
    pub fn leased(&self, now: u64, me: u64) -> bool {
        self.lease_owner != 0 && self.lease_owner != me && now < self.lease_until_ms
    }

    /// Takes the lease for a fetch that may last `timeout_ms`.
    pub fn take_lease(&mut self, me: u64, now: u64, timeout_ms: u64) {
        self.lease_owner = me;
        self.lease_until_ms = now + timeout_ms + 1_000;
        self.refetch_requested = false;
        self.fetches += 1;
    }

    /// Records a good fetch; `changed` bumps the version.
    pub fn succeeded(&mut self, now: u64, refresh_ms: u64, changed: bool) {
        if changed {
            self.version += 1;
        }
        self.fetched_at_ms = now;
        self.attempted_at_ms = now;
        self.next_fetch_ms = now + refresh_ms;
        self.failures = 0;
        self.last_error = None;
        self.lease_owner = 0;
    }

    /// Records a failed fetch and schedules the retry.
    pub fn failed(&mut self, now: u64, error: String, jitter: u64, refresh_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        self.attempted_at_ms = now;
        self.next_fetch_ms = now + backoff_ms(self.failures, jitter).min(refresh_ms.max(BACKOFF_BASE_MS));
        self.last_error = Some(error);
        self.lease_owner = 0;
    }

    /// Asks for an unknown-`kid` refetch, at most once per `interval_ms`. Returns whether
    /// it was granted (a fetch will follow) or rate-limited.
    pub fn request_refetch(&mut self, now: u64, interval_ms: u64) -> bool {
        if self.refetch_requested {
            return true;
        }
        if self.last_refetch_ms != 0 && now < self.last_refetch_ms + interval_ms {
            return false;
        }
        self.refetch_requested = true;
        self.last_refetch_ms = now;
        true
    }

    /// Age of the current document, if there is one.
    pub fn age_ms(&self, now: u64) -> Option<u64> {
        (self.fetched_at_ms != 0).then(|| now.saturating_sub(self.fetched_at_ms))
    }
}

/// The refresh period: the server's `max-age` within bounds, else the configured one.
pub fn refresh_ms(configured_ms: u64, max_age_s: Option<u64>) -> u64 {
    match max_age_s {
        Some(s) => s.saturating_mul(1000).clamp(MIN_REFRESH_MS, MAX_REFRESH_MS),
        None => configured_ms,
    }
}

/// Backoff after `failures` consecutive failures: exponential from 1 s to 60 s, then
/// "equal jitter" (half fixed, half random from `jitter`), so workers and proxies that
/// failed together do not retry together.
pub fn backoff_ms(failures: u32, jitter: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(16);
    let cap = BACKOFF_BASE_MS.saturating_mul(1 << exp).min(BACKOFF_MAX_MS);
    let half = cap / 2;
    half + jitter % (half + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn backoff_grows_is_bounded_and_jittered() {
        assert!((500..=1000).contains(&backoff_ms(1, 0)) && (500..=1000).contains(&backoff_ms(1, u64::MAX)));
        assert!((1000..=2000).contains(&backoff_ms(2, 12345)));
        assert!((30_000..=60_000).contains(&backoff_ms(30, 999_999)));
        assert_ne!(backoff_ms(5, 1), backoff_ms(5, 7));
    }

    #[test]
    fn refresh_honours_max_age_within_bounds() {
        assert_eq!(refresh_ms(600_000, None), 600_000);
        assert_eq!(refresh_ms(600_000, Some(120)), 120_000);
        assert_eq!(refresh_ms(600_000, Some(1)), MIN_REFRESH_MS);
        assert_eq!(refresh_ms(600_000, Some(u64::MAX)), MAX_REFRESH_MS);
    }

    #[test]
    fn lease_and_lifecycle() {
        let mut s = SourceState::default();
        assert!(s.due(1_000));
        s.take_lease(7, 1_000, 5_000);
        assert!(s.leased(2_000, 8) && !s.leased(2_000, 7) && !s.leased(7_001, 8));
        s.succeeded(2_000, 600_000, true);
        assert_eq!((s.version, s.lease_owner, s.fetches), (1, 0, 1));
        assert!(!s.due(3_000) && s.due(602_000));
        s.failed(602_000, "down".into(), 0, 600_000);
        assert_eq!(s.failures, 1);
        assert_eq!(s.fetched_at_ms, 2_000, "the last good document stays");
        assert!(s.next_fetch_ms > 602_000 && s.next_fetch_ms <= 603_000);
        assert_eq!(SourceState::decode(&s.encode()), Some(s.clone()));
        assert_eq!(SourceState::decode(b"garbage"), None);
        s.last_error = Some("quote \" and \u{e9}".into());
        s.etag = Some("W/\"1\"".into());
        s.lease_owner = u64::MAX;
        assert_eq!(SourceState::decode(&s.encode()), Some(s.clone()));
        let full = String::from_utf8(s.encode()).unwrap();
        let missing = full.replace("\"fetches\":", "\"fetched\":");
        assert_eq!(
            SourceState::decode(missing.as_bytes()),
            None,
            "a field missing: {missing}"
        );
        let wide = full.replace("\"failures\":1", "\"failures\":4294967296");
        assert_ne!(wide, full);
        assert_eq!(SourceState::decode(wide.as_bytes()), None, "failures beyond u32");
    }

    #[test]
    fn unknown_kid_refetches_are_rate_limited() {
        let mut s = SourceState::default();
        assert!(s.request_refetch(10_000, 30_000));
        assert!(
            s.request_refetch(10_001, 30_000),
            "already pending: granted, no second fetch"
        );
        s.take_lease(1, 10_002, 1_000);
        s.succeeded(10_100, 600_000, false);
        assert!(!s.request_refetch(20_000, 30_000), "inside the window");
        assert!(s.request_refetch(40_000, 30_000));
    }
}
