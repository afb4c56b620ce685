//! An HTTP/1.1 server on 127.0.0.1 standing in for the application behind Envoy.
//!
//! By default it echoes: every request gets `200`, `content-type: application/json` and the body
//! `{"method":..,"path":..,"headers":[[name,value],...],"body":".."}` describing exactly what it
//! received. Every request is also logged ([`Upstream::requests`]) so tests can assert what
//! reached the application (for example that no token did). [`Upstream::start_with`] takes a
//! custom responder (a JWKS endpoint, a slow or failing IdP, ...).
//!
//! One thread per connection, keep-alive supported; connections, requests per connection, header
//! and body sizes are bounded; sockets have timeouts; Drop stops everything.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http::{read_body, read_headers, read_line};

/// Idle keep-alive connections are closed after this. Longer than the cluster `idle_timeout`
/// written by [`super::envoy::cluster_yaml`] so Envoy, not us, closes idle pooled connections
/// (avoids the reuse-while-closing race that turns into a spurious 503).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;
const MAX_REQUESTS_PER_CONNECTION: usize = 100_000;

/// One request as the upstream received it. Header names are lowercased, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `needle` appears anywhere in the request: path and query, any header name or value,
    /// or the body. Use it to assert a credential never reached the application.
    pub fn mentions(&self, needle: &str) -> bool {
        self.path.contains(needle)
            || self.body.contains(needle)
            || self
                .headers
                .iter()
                .any(|(n, v)| n.contains(needle) || v.contains(needle))
    }

    /// The echo body the default responder sends for this request.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method,
            "path": self.path,
            "headers": self.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "body": self.body,
        })
    }
}

/// What a responder answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sleep this long before answering (to simulate a slow service or IdP).
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".to_string(), content_type.to_string())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// The default responder: 200 with the JSON description of the request.
pub fn echo(received: &Received) -> Reply {
    Reply::json(200, &received.to_json())
}

type Responder = dyn Fn(&Received) -> Reply + Send + Sync + 'static;

struct Shared {
    stop: AtomicBool,
    active: AtomicUsize,
    log: Mutex<Vec<Received>>,
    /// Clones of open connections, so Drop can shut them down and unblock their threads.
    streams: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    responder: Box<Responder>,
}

pub struct Upstream {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts the echo server on 127.0.0.1 on a free port.
    pub fn start() -> Upstream {
        Upstream::start_with(echo)
    }

    /// Starts a server answering every request with `responder` (every request is still logged).
    pub fn start_with(responder: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream on 127.0.0.1:0");
        let port = listener.local_addr().expect("upstream local addr").port();
        listener
            .set_nonblocking(true)
            .expect("set upstream listener non-blocking");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            responder: Box::new(responder),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("upstream-{port}"))
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn upstream acceptor")
        };
        Upstream {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Whether any received request mentions `needle` (see [`Received::mentions`]).
    pub fn saw(&self, needle: &str) -> bool {
        self.shared.log.lock().unwrap().iter().any(|r| r.mentions(needle))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(streams) = self.shared.streams.lock() {
            for stream in streams.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    shared.streams.lock().unwrap().insert(id, clone);
                }
                shared.active.fetch_add(1, Ordering::SeqCst);
                let worker = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name("upstream-conn".to_string())
                    .spawn(move || {
                        let _ = serve(stream, &worker);
                        worker.streams.lock().unwrap().remove(&id);
                        worker.active.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    shared.streams.lock().unwrap().remove(&id);
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            // WouldBlock (nothing to accept) or a transient error: poll again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let request_line = match read_line(&mut reader) {
            Ok(line) => line,
            Err(_) => break, // closed, idle timeout or garbage: drop the connection
        };
        let mut parts = request_line.split(' ');
        let (method, path, version) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(p), Some(v)) => (m.to_string(), p.to_string(), v.to_string()),
            _ => break,
        };
        let headers = read_headers(&mut reader)?;
        let body = read_body(&mut reader, &headers, false)?;
        let received = Received {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let close = version == "HTTP/1.0"
            || received
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        shared.log.lock().unwrap().push(received.clone());

        let reply = (shared.responder)(&received);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let bodyless = received.method == "HEAD" || matches!(reply.status, 100..=199 | 204 | 304);
        if !matches!(reply.status, 100..=199 | 204 | 304) {
            head.push_str(&format!("content-length: {}\r\n", reply.body.len()));
        }
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        if !bodyless {
            writer.write_all(&reply.body)?;
        }
        writer.flush()?;
        if close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
