//! Istio `paths` / `notPaths` values: exact, prefix `abc*`, suffix `*abc`, presence
//! `*`, and path templates with `{*}` and `{**}`.
//!
//! Templates follow Istio's validation (`pkg/config/security` `CheckValidPathTemplate`)
//! and the matching of the Envoy `uri_template` matcher istiod hands them to
//! (`source/extensions/path/uri_template_lib`): the template `/a/{*}/b` is the regex
//! `/a/[pchar]+/b`, `{**}` is `[pchar/]*`, segments are joined by `/`, and a trailing
//! `/` in the template is a required trailing `/` in the path. `pchar` is Envoy's
//! literal set `a-zA-Z0-9-._~%!$&'()+,;:@` (no `=`, no `*`).
//!
//! So `/foo/{*}` matches `/foo/bar` but not `/foo/bar/baz` nor `/foo/`; `/foo/{**}`
//! matches `/foo/`, `/foo/bar` and `/foo/bar/baz` but not `/foo`; `/store/{**}/cart`
//! matches `/store//cart` and `/store/a/b/cart` but not `/store/cart` (Istio's own
//! integration test `TestAuthz_PathTemplating` asserts these).
//!
//! Matching is deterministic and linear: `{*}` cannot cross `/`, and only literals may
//! follow `{**}`, so no backtracking is ever needed.

use crate::matcher::{StrMatch, ValueError};

/// One `paths` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Str(StrMatch),
    Template(PathTemplate),
}

impl PathMatch {
    /// Parses a `paths` value; refuses what Istio refuses (`{`/`}` outside `{*}` and
    /// `{**}`, `{**}` before another operator, non-literal characters in a template),
    /// plus ambiguous `*` (see [`crate::matcher`]).
    pub fn parse(v: &str) -> Result<PathMatch, ValueError> {
        if v.contains("{*}") || v.contains("{**}") {
            return PathTemplate::parse(v).map(PathMatch::Template);
        }
        if v.contains('{') || v.contains('}') {
            return Err("'{' and '}' are only allowed in the path template operators {*} and {**}");
        }
        StrMatch::parse(v).map(PathMatch::Str)
    }

    /// `path` is the request path without query or fragment.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Str(m) => m.matches(path),
            PathMatch::Template(t) => t.matches(path),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    /// `{*}`: one or more pchars.
    One,
}

/// A compiled `{*}` / `{**}` path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// Segments before `{**}` (or all of them).
    head: Vec<Seg>,
    /// With `{**}`: the literal text after it (`""`, `/`, `/cart`, ...).
    tail: Option<String>,
}

/// Istio's template literal set (`validLiteral` in `pkg/config/security`).
fn is_template_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

/// Envoy's `kLiteral`: what `{*}` and `{**}` may consume.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@".contains(&b)
}

impl PathTemplate {
    pub fn parse(v: &str) -> Result<PathTemplate, ValueError> {
        let Some(rest) = v.strip_prefix('/') else {
            return Err("a path template must start with '/'");
        };
        let mut head = Vec::new();
        let mut tail: Option<String> = None;
        let mut segs = rest.split('/').peekable();
        while let Some(seg) = segs.next() {
            let last = segs.peek().is_none();
            if let Some(t) = tail.as_mut() {
                if seg == "{*}" || seg == "{**}" {
                    return Err("{**} must be the last operator of a path template");
                }
                check_literal(seg, last)?;
                t.push('/');
                t.push_str(seg);
                continue;
            }
            match seg {
                "{**}" => tail = Some(String::new()),
                "{*}" => head.push(Seg::One),
                lit => {
                    check_literal(lit, last)?;
                    head.push(Seg::Lit(lit.to_owned()));
                }
            }
        }
        Ok(PathTemplate { head, tail })
    }

    pub fn matches(&self, path: &str) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        let n = self.head.len();
        for (i, seg) in self.head.iter().enumerate() {
            match seg {
                Seg::Lit(l) => match rest.strip_prefix(l.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                },
                Seg::One => {
                    let len = rest.bytes().take_while(|b| is_pchar(*b)).count();
                    if len == 0 {
                        return false;
                    }
                    rest = rest.get(len..).unwrap_or("");
                }
            }
            // Segments are joined by '/': one after every head segment but the last,
            // and after the last too when `{**}` follows.
            if i + 1 < n || self.tail.is_some() {
                match rest.strip_prefix('/') {
                    Some(r) => rest = r,
                    None => return false,
                }
            }
        }
        match &self.tail {
            None => rest.is_empty(),
            Some(t) => match rest.strip_suffix(t.as_str()) {
                Some(glob) => glob.bytes().all(|b| b == b'/' || is_pchar(b)),
                None => false,
            },
        }
    }
}

/// A literal template segment: non-empty Istio literal characters; the last segment
/// may be empty (a trailing `/`).
fn check_literal(seg: &str, last: bool) -> Result<(), ValueError> {
    if seg.is_empty() {
        return if last {
            Ok(())
        } else {
            Err("empty path segment in a path template")
        };
    }
    if seg.contains('{') || seg.contains('}') {
        return Err("a path template segment with {*} or {**} must contain nothing else");
    }
    if !seg.bytes().all(is_template_literal) {
        return Err("a path template may only contain {*}, {**} and RFC 3986 pchar literals outside them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn m(t: &str, p: &str) -> bool {
        PathMatch::parse(t).unwrap().matches(p)
    }

    #[test]
    fn trailing_slash_after_head() {
        // `/foo/{*}/` = regex `/foo/[pchar]+/`.
        assert!(m("/foo/{*}/", "/foo/bar/"));
        assert!(!m("/foo/{*}/", "/foo/bar"));
        assert!(m("/{*}", "/x"));
        assert!(!m("/{*}", "/"));
        assert!(m("/{**}", "/"));
        assert!(m("/{**}", "/a/b/c"));
        assert!(!m("/{**}", ""));
        assert!(!m("/a/{*}", "/a/b=c"), "'=' is not in Envoy's literal set");
        assert!(!m("/a/{**}", "/a/b?c"));
    }
}
