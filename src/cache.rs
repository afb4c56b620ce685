//! The verified-token cache: per worker, keyed by the token's SHA-256, bounded in
//! entries, first in first out. A hit skips parsing and the signature, never the rest:
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
}

#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    map: HashMap<[u8; 32], Entry>,
    order: VecDeque<[u8; 32]>,
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

    /// The entry for `hash` if it was verified with `key_set` and has not expired.
    pub fn get(&mut self, hash: &[u8; 32], key_set: impl Fn(usize) -> usize, now: u64) -> Option<Entry> {
        let hit = match self.map.get(hash) {
            Some(e) if e.key_set == key_set(e.provider) && e.exp.map_or(true, |exp| (now as f64) < exp) => {
                Some(e.clone())
            }
            Some(_) => {
                self.map.remove(hash);
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

    /// Remembers a verified token.
    pub fn insert(&mut self, hash: [u8; 32], entry: Entry) {
        if self.capacity == 0 {
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
        if self.map.insert(hash, entry).is_none() {
            self.order.push_back(hash);
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
        }
    }

    #[test]
    fn hits_misses_expiry_key_sets_and_bounds() {
        let mut c = TokenCache::new(2);
        c.insert([1; 32], entry(0, 7, Some(100.0)));
        assert!(c.get(&[1; 32], |_| 7, 50).is_some());
        assert!(c.get(&[1; 32], |_| 8, 50).is_none(), "another key set");
        c.insert([1; 32], entry(0, 7, Some(100.0)));
        assert!(c.get(&[1; 32], |_| 7, 100).is_none(), "expired");
        c.insert([2; 32], entry(0, 7, None));
        c.insert([3; 32], entry(0, 7, None));
        c.insert([4; 32], entry(0, 7, None));
        assert!(c.len() <= 2);
        assert!(c.get(&[4; 32], |_| 7, 0).is_some());
        assert!(c.get(&[2; 32], |_| 7, 0).is_none(), "evicted first in first out");
        for i in 0..10_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            c.insert(k, entry(0, 7, None));
        }
        assert!(c.len() <= 2 && c.order.len() <= 4);
        let mut off = TokenCache::new(0);
        off.insert([9; 32], entry(0, 0, None));
        assert!(off.is_empty());
    }
}
