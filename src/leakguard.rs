//! The leak guard: credentials that turn up where no provider reads them (a JWT in a
//! query parameter, a JWT-shaped value in some other header) are counted, and removed
//! before the request goes upstream when the configuration says `strip`.

use crate::config::{Config, LeakGuard, Location};
use crate::extractor::{self, Candidate, Spot};
use crate::request::{Mutation, Request};
use crate::telemetry::looks_like_jwt;

/// What the guard found: the leak kinds (one entry per leak) and the removals to apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leaks {
    pub kinds: Vec<&'static str>,
    pub mutations: Vec<Mutation>,
}

/// Scans `req` for credentials outside the configured token locations.
pub fn scan(cfg: &Config, req: &Request) -> Leaks {
    if cfg.telemetry.leak_guard == LeakGuard::Off {
        return Leaks::default();
    }
    let mut found: Vec<Candidate> = Vec::new();
    let mut kinds = Vec::new();
    let reads_header = |name: &str| {
        cfg.locations
            .iter()
            .any(|l| matches!(l, Location::Header { name: n, .. } if n == name))
            || cfg.output_headers().any(|h| h == name)
    };
    for (i, (name, value)) in req.headers.iter().enumerate() {
        // Every JWT-shaped value starts with `eyJ` (see `looks_like_jwt`): most headers
        // are ruled out by that search alone.
        if !value.contains("eyJ") || name.starts_with(':') || name == "cookie" || reads_header(name) {
            continue;
        }
        if value.split(',').any(looks_like_jwt) {
            kinds.push("header_jwt");
            found.push(Candidate {
                location: usize::MAX,
                spot: Spot::Header {
                    name: name.clone(),
                    nth: req.nth_of(i),
                },
                token: String::new(),
            });
        }
    }
    if let Some((_, query)) = req.path().split_once('?') {
        let query = query.split('#').next().unwrap_or(query);
        for (nth, piece) in query.split('&').enumerate() {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            // Compared and inspected as the upstream will read them: percent-decoded
            // (`access%5Ftoken`, a JWT with `%2E` for its dots).
            let k = extractor::percent_decoded(k);
            let v = extractor::percent_decoded(v);
            let configured = cfg.locations.iter().any(|l| matches!(l, Location::Param(n) if *n == k));
            if !configured && looks_like_jwt(&v) {
                kinds.push("query_token");
                found.push(Candidate {
                    location: usize::MAX,
                    spot: Spot::Param { nth },
                    token: String::new(),
                });
            }
        }
    }
    let mutations = if cfg.telemetry.leak_guard == LeakGuard::Strip && !found.is_empty() {
        let refs: Vec<&Candidate> = found.iter().collect();
        extractor::removal(req, &refs)
    } else {
        Vec::new()
    };
    Leaks { kinds, mutations }
}
