//! Shared helpers for the `policy_*` tests: a request builder and a one-call evaluator.
//! Included by the other `policy_*` files with `#[path]`; as a test target of its own it
//! only checks that the builder produces the headers the engine reads.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hopguard::binding::Presentation;
use hopguard::policy::{Connection, Policies, PolicyInput, PolicyOutcome, TokenInput};
use hopguard::replay::ReplayCache;
use hopguard::request::Request;
use serde_json::{Map, Value};

pub const NOW: u64 = 1_900_000_000;

/// Parses an `authorization` section, panicking with the error.
pub fn policies(v: Value) -> Policies {
    Policies::parse(&v, "$.authorization").unwrap_or_else(|e| panic!("{e}"))
}

/// The error of a section that must be refused.
pub fn refused(v: Value) -> (String, String) {
    match Policies::parse(&v, "$.authorization") {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => (e.path, e.message),
    }
}

/// One request as the engine sees it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub scheme: String,
    pub headers: Vec<(String, String)>,
    pub conn: Connection,
    pub claims: Option<Map<String, Value>>,
    pub token: String,
    pub presentation: Presentation,
    pub now: u64,
}

impl Call {
    pub fn new(method: &str, path: &str) -> Call {
        Call {
            method: method.to_owned(),
            path: path.to_owned(),
            authority: "httpbin.foo".to_owned(),
            scheme: "https".to_owned(),
            headers: Vec::new(),
            conn: Connection::default(),
            claims: None,
            token: "header.payload.signature".to_owned(),
            presentation: Presentation::Bearer,
            now: NOW,
        }
    }
    pub fn get(path: &str) -> Call {
        Call::new("GET", path)
    }
    pub fn post(path: &str) -> Call {
        Call::new("POST", path)
    }
    pub fn host(mut self, h: &str) -> Call {
        self.authority = h.to_owned();
        self
    }
    /// The peer's Istio principal (`td/ns/x/sa/y`); stored as the URI SAN.
    pub fn peer(mut self, principal: &str) -> Call {
        self.conn.peer_uri_san = Some(format!("spiffe://{principal}"));
        self
    }
    pub fn peer_cert(mut self, sha256_hex: &str) -> Call {
        self.conn.peer_cert_sha256 = Some(sha256_hex.to_owned());
        self
    }
    pub fn port(mut self, p: u16) -> Call {
        self.conn.destination_port = Some(p);
        self
    }
    pub fn source_ip(mut self, ip: &str) -> Call {
        self.conn.source_ip = Some(ip.parse().unwrap());
        self
    }
    pub fn destination_ip(mut self, ip: &str) -> Call {
        self.conn.destination_ip = Some(ip.parse().unwrap());
        self
    }
    pub fn sni(mut self, s: &str) -> Call {
        self.conn.sni = Some(s.to_owned());
        self
    }
    pub fn header(mut self, n: &str, v: &str) -> Call {
        self.headers.push((n.to_owned(), v.to_owned()));
        self
    }
    pub fn claims(mut self, v: Value) -> Call {
        self.claims = Some(v.as_object().unwrap().clone());
        self
    }
    pub fn token(mut self, raw: &str, presentation: Presentation) -> Call {
        self.token = raw.to_owned();
        self.presentation = presentation;
        self
    }
    pub fn at(mut self, now: u64) -> Call {
        self.now = now;
        self
    }

    pub fn request(&self) -> Request {
        let mut h = vec![
            (":method".to_owned(), self.method.clone()),
            (":path".to_owned(), self.path.clone()),
            (":authority".to_owned(), self.authority.clone()),
            (":scheme".to_owned(), self.scheme.clone()),
        ];
        h.extend(self.headers.iter().cloned());
        Request::new(h)
    }
}

/// Evaluates with the given replay cache.
pub fn run_with(p: &Policies, c: &Call, cache: &mut ReplayCache) -> PolicyOutcome {
    let req = c.request();
    let input = PolicyInput {
        request: &req,
        connection: &c.conn,
        token: c.claims.as_ref().map(|claims| TokenInput {
            raw: &c.token,
            claims,
            presentation: c.presentation,
        }),
        now: c.now,
    };
    p.evaluate(&input, cache)
}

/// Evaluates with a fresh replay cache.
pub fn run(p: &Policies, c: &Call) -> PolicyOutcome {
    let mut cache = ReplayCache::new(p.dpop.replay_cache_size);
    run_with(p, c, &mut cache)
}

/// Whether the request is allowed (enforced verdict).
pub fn allows(p: &Policies, c: &Call) -> bool {
    run(p, c).allowed()
}

#[test]
fn builder_sets_pseudo_headers() {
    let r = Call::get("/x?y").host("h").header("x-a", "1").request();
    assert_eq!(r.header(":method"), Some("GET"));
    assert_eq!(r.header(":path"), Some("/x?y"));
    assert_eq!(r.header(":authority"), Some("h"));
    assert_eq!(r.header("x-a"), Some("1"));
}
