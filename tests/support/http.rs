//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`, for talking to Envoy listeners
//! and Envoy's admin endpoint on 127.0.0.1. One request per connection (`Connection: close`).
//! Handles `content-length`, chunked and read-until-close bodies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, read and write timeout for every request.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head or body this client accepts.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A response: status, headers in order with lowercased names, and the body as (lossy) UTF-8.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
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

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body:\n{}",
                self.status, self.body
            )
        })
    }
}

/// Sends one request to `127.0.0.1:port` and returns the response; panics on any I/O error.
/// `Host: 127.0.0.1:<port>` is sent unless `headers` has a `host`.
pub fn request(port: u16, method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Response {
    request_with_body(port, method, path_and_query, headers, b"")
}

/// Like [`request`], with a body (a `content-length` header is added unless given).
pub fn request_with_body(
    port: u16,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, path_and_query, headers, body)
        .unwrap_or_else(|e| panic!("HTTP {method} 127.0.0.1:{port}{path_and_query} failed: {e}"))
}

/// Like [`request_with_body`], returning I/O errors (for tests that expect a reset or refusal).
pub fn try_request(
    port: u16,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;

    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let sends_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if sends_length && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;

    read_response(BufReader::new(stream), method == "HEAD")
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one CRLF (or LF) terminated line, without the terminator; bounded by `MAX_HEAD`.
pub(crate) fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    if line.last() != Some(&b'\n') {
        return Err(bad("line too long or truncated"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    // Header values may carry obs-text (RFC 9110 5.5): keep them, lossily, rather than fail.
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads header lines up to the blank line; names lowercased. Bounded in count and size.
pub(crate) fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for _ in 0..1000 {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("malformed header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Err(bad("too many header lines"))
}

/// Reads a body framed by `content-length` or `transfer-encoding: chunked`; `None` framing means
/// no body unless `until_eof`.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    until_eof: bool,
) -> io::Result<Vec<u8>> {
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        return read_chunked(reader);
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| bad(format!("bad content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        reader.by_ref().take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
        if body.len() > MAX_BODY {
            return Err(bad("body too large"));
        }
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    for _ in 0..100_000 {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the blank line.
            read_headers(reader)?;
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
    Err(bad("too many chunks"))
}

fn read_response(mut reader: impl BufRead, head_request: bool) -> io::Result<Response> {
    // Skip interim 1xx responses (bounded).
    for _ in 0..10 {
        let status_line = read_line(&mut reader)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let headers = read_headers(&mut reader)?;
        if (100..200).contains(&status) {
            continue;
        }
        let no_body = head_request || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else {
            read_body(&mut reader, &headers, true)?
        };
        return Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Err(bad("too many interim responses"))
}
