//! Test harness shared by the integration tests (`tests/*.rs`) and the examples.
//!
//! Include it with `#[path = "support/mod.rs"] mod support;` from `tests/*.rs`, or with
//! `#[path = "../tests/support/mod.rs"] mod support;` from `examples/*.rs`.
//!
//! - [`envoy`]: start a real Envoy (the binary from `scripts/setup`), discover its ports, read its
//!   admin endpoints and logs, push listeners at runtime, run `--mode validate`, and build
//!   bootstrap YAML (listeners, clusters, the hopguard Wasm filter, the native `jwt_authn` oracle).
//! - [`upstream`]: an HTTP/1.1 echo server that records every request it receives.
//! - [`http`]: a minimal blocking HTTP/1.1 client.
//! - [`mint`]: test keys, JWKS and signed tokens for every algorithm.
//!
//! Only std and the crate's own dependencies. Every loop is bounded in count and time, every socket
//! has timeouts, and everything listens on 127.0.0.1 only.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod envoy;
pub mod http;
pub mod mint;
pub mod upstream;

use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms until it returns true or `timeout` passes; returns whether it
/// became true. The condition is always evaluated at least once.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
pub mod mesh;
pub mod pki;
