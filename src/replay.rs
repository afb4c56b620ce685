//! A bounded, time-expiring set of seen DPoP proofs (RFC 9449 section 11.1), keyed by a
//! hash of the proof's normalized `htu` and its `jti`.
//!
//! Bounded: at most `capacity` live entries; an entry lives until the last second its
//! proof could still pass the `iat` window, then it is dropped. `O(log n)` per request
//! (two B-trees, ordered by key and by expiry): no hashing, so no hash-flooding, and no
//! random seed is needed inside the Wasm VM.
//!
//! When the cache is full of live entries a new proof is refused ([`Seen::Full`])
//! rather than evicting a live entry: eviction would let whoever can fill the cache
//! replay any proof captured in the last window. Size it for the peak DPoP request rate
//! of one worker times twice the `iat` window.
//!
//! **Scope: one Envoy worker.** Each Envoy worker thread runs its own Wasm VM, so each
//! has its own cache; a proof replayed to another worker of the same Envoy (or to
//! another replica) is not caught here. Sharing through proxy-wasm shared data, or a
//! short `iat` window, narrows that.

use crate::b64;
use crate::dpop::ProofKeys;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// What a proof's first use looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before (now recorded).
    Fresh,
    /// Seen before, within its window.
    Replayed,
    /// Not seen, but the cache is full of live entries: refused (fail closed).
    Full,
}

/// The replay cache of one worker, with the keys of its recent proofs.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    by_key: BTreeMap<u128, u64>,
    by_expiry: BTreeSet<(u64, u128)>,
    keys: ProofKeys,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            by_key: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            keys: ProofKeys::default(),
        }
    }

    /// The verification keys of this worker's recent proofs (not proofs: no replay state).
    pub fn proof_keys(&mut self) -> &mut ProofKeys {
        &mut self.keys
    }

    /// The cache key of a proof: the first 128 bits of SHA-256 over the normalized
    /// `htu`, a separator and the `jti`.
    pub fn key(htu: &str, jti: &str) -> u128 {
        let mut h = Sha256::new();
        h.update((htu.len() as u64).to_be_bytes());
        h.update(htu.as_bytes());
        h.update(jti.as_bytes());
        let d = h.finalize();
        let mut k = [0u8; 16];
        for (dst, src) in k.iter_mut().zip(d.iter()) {
            *dst = *src;
        }
        u128::from_be_bytes(k)
    }

    /// Records `key` until `expires_at` (seconds), unless it is already live.
    pub fn check_and_insert(&mut self, key: u128, expires_at: u64, now: u64) -> Seen {
        self.purge(now);
        if let Some(exp) = self.by_key.get(&key) {
            if *exp > now {
                return Seen::Replayed;
            }
        }
        if self.by_key.len() >= self.capacity {
            return Seen::Full;
        }
        if let Some(old) = self.by_key.insert(key, expires_at) {
            self.by_expiry.remove(&(old, key));
        }
        self.by_expiry.insert((expires_at, key));
        Seen::Fresh
    }

    /// Drops every entry that expired at or before `now`.
    pub fn purge(&mut self, now: u64) {
        while let Some(&(exp, key)) = self.by_expiry.first() {
            if exp > now {
                break;
            }
            self.by_expiry.pop_first();
            self.by_key.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A short, secret-free label of a key for logs.
pub fn describe(key: u128) -> String {
    b64::encode(&key.to_be_bytes()).chars().take(11).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn fresh_replayed_expired() {
        let mut c = ReplayCache::new(4);
        let k = ReplayCache::key("https://a/x", "j1");
        assert_eq!(c.check_and_insert(k, 160, 100), Seen::Fresh);
        assert_eq!(c.check_and_insert(k, 160, 159), Seen::Replayed);
        assert_eq!(c.check_and_insert(k, 220, 160), Seen::Fresh, "expired at 160");
        assert_eq!(c.len(), 1);
        assert_ne!(k, ReplayCache::key("https://a/y", "j1"));
        assert_ne!(ReplayCache::key("ab", "c"), ReplayCache::key("a", "bc"));
    }

    #[test]
    fn bounded_and_fails_closed() {
        let mut c = ReplayCache::new(3);
        for i in 0..3u128 {
            assert_eq!(c.check_and_insert(i, 200 + i as u64, 100), Seen::Fresh);
        }
        assert_eq!(c.check_and_insert(9, 300, 100), Seen::Full);
        assert_eq!(c.check_and_insert(1, 300, 100), Seen::Replayed);
        // 0 expires at 200: room again.
        assert_eq!(c.check_and_insert(9, 300, 200), Seen::Fresh);
        assert_eq!(c.len(), 3);
        c.purge(1000);
        assert!(c.is_empty());
    }

    #[test]
    fn out_of_order_expiry_never_grows_past_capacity() {
        let mut c = ReplayCache::new(100);
        for i in 0..10_000u64 {
            let exp = 1000 + (i * 7919) % 120;
            let _ = c.check_and_insert(u128::from(i), exp, 1000 + i / 100);
            assert!(c.len() <= 100);
            assert_eq!(c.by_key.len(), c.by_expiry.len());
        }
    }
}
