//! The verified-token cache: per worker, keyed by the token itself (a hit is the exact
//! same bytes, found through std's keyed SipHash), bounded in entries and in bytes per
//! entry, first in first out. An entry keeps the token's SHA-256, so a hit costs no
//! hashing beyond the lookup. A hit skips parsing and the signature, never the rest:
//! the time claims and audience are checked again at every request, the revocation
//! lists and policies run after it, an entry is only used for the provider and key set
//! it was verified with (a key rotation empties it in effect), and it is dropped once
//! the token expires.

use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Default capacity per worker.
pub const DEFAULT_ENTRIES: usize = 10_000;
/// Tokens longer than this are not cached (bounds memory per entry).
pub const MAX_CACHED_TOKEN_BYTES: usize = 4096;

/// What a verification established about a token.
#[derive(Debug, Clone)]
pub struct Entry {
    pub provider: usize,
    pub key: usize,
    /// Identity of the key set the signature was checked against (0 for inline keys).
    pub key_set: usize,
    pub kid: Option<String>,
    pub claims: Rc<Map<String, Value>>,
    /// `exp` in seconds, to drop the entry when the token dies.
    pub exp: Option<f64>,
    /// The token's SHA-256 (fingerprint and revocation key).
    pub digest: [u8; 32],
}

#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    map: HashMap<Rc<str>, Entry>,
    order: VecDeque<Rc<str>>,
    pub hits: u64,
    pub misses: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            map: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
            hits: 0,
            misses: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry for `token` if it was verified with `key_set` and has not expired.
    pub fn get(&mut self, token: &str, key_set: impl Fn(usize) -> usize, now: u64) -> Option<Entry> {
        let hit = match self.map.get(token) {
            Some(e) if e.key_set == key_set(e.provider) && e.exp.map_or(true, |exp| (now as f64) < exp) => {
                Some(e.clone())
            }
            Some(_) => {
                self.map.remove(token);
                None
            }
            None => None,
        };
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    /// Remembers a verified token (not one longer than [`MAX_CACHED_TOKEN_BYTES`]).
    pub fn insert(&mut self, token: &str, entry: Entry) {
        if self.capacity == 0 || token.len() > MAX_CACHED_TOKEN_BYTES {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        let key: Rc<str> = Rc::from(token);
        if self.map.insert(Rc::clone(&key), entry).is_none() {
            self.order.push_back(key);
        }
        // Keys of entries removed on lookup stay in `order` until they reach the front;
        // bound that slack too.
        while self.order.len() > self.capacity.saturating_mul(2) {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn entry(provider: usize, key_set: usize, exp: Option<f64>) -> Entry {
        Entry {
            provider,
            key: 0,
            key_set,
            kid: None,
            claims: Rc::new(Map::new()),
            exp,
            digest: [0; 32],
        }
    }

    #[test]
    fn hits_misses_expiry_key_sets_and_bounds() {
        let mut c = TokenCache::new(2);
        c.insert("a.b.c", entry(0, 7, Some(100.0)));
        assert!(c.get("a.b.c", |_| 7, 50).is_some());
        assert!(c.get("a.b.d", |_| 7, 50).is_none(), "only the exact token");
        assert!(c.get("a.b.c", |_| 8, 50).is_none(), "another key set");
        c.insert("a.b.c", entry(0, 7, Some(100.0)));
        assert!(c.get("a.b.c", |_| 7, 100).is_none(), "expired");
        c.insert("t2", entry(0, 7, None));
        c.insert("t3", entry(0, 7, None));
        c.insert("t4", entry(0, 7, None));
        assert!(c.len() <= 2);
        assert!(c.get("t4", |_| 7, 0).is_some());
        assert!(c.get("t2", |_| 7, 0).is_none(), "evicted first in first out");
        for i in 0..10_000u32 {
            c.insert(&format!("token-{i}"), entry(0, 7, None));
        }
        assert!(c.len() <= 2 && c.order.len() <= 4);
        let long = "x".repeat(MAX_CACHED_TOKEN_BYTES + 1);
        c.insert(&long, entry(0, 7, None));
        assert!(c.get(&long, |_| 7, 0).is_none(), "too long to cache");
        let mut off = TokenCache::new(0);
        off.insert("t9", entry(0, 0, None));
        assert!(off.is_empty());
    }
}
