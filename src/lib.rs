//! hopguard: a token-security filter for service meshes.
//!
//! The crate is a pure core that decides, plus a thin proxy-wasm shell (`shell`, built
//! only for wasm32) that reads what the core asks for and applies its answer. The core
//! never imports `proxy_wasm` and runs under host `cargo test`.
//!
//! Request path: [`request`] -> [`extractor`] -> [`verifier`] ([`token`], [`key`],
//! [`jwks`], [`algorithm`], [`ecdsa`], [`ed25519`]) -> [`decision`] -> [`response`] / [`claims`],
//! with every refusal named by one [`reason::Reason`] and reported by [`telemetry`].
//! Configuration: [`config`], parsed once with JSON paths in its errors.

pub mod algorithm;
pub mod b64;
pub mod binding;
pub mod cache;
pub mod claims;
pub mod config;
pub mod decision;
pub mod dpop;
pub mod ecdsa;
pub mod ed25519;
pub mod extractor;
pub mod json;
pub mod jwks;
pub mod key;
pub mod leakguard;
pub mod matcher;
pub(crate) mod mp;
pub mod path_template;
pub mod policy;
pub mod reason;
pub mod remote;
pub mod replay;
pub mod request;
pub mod response;
pub mod revocation;
pub mod rsa_key;
pub mod schedule;
pub mod snapshot;
pub mod telemetry;
pub mod token;
pub mod verifier;

#[cfg(target_arch = "wasm32")]
mod shell;
