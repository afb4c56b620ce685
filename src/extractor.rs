//! Finds the token in a request, and owns taking it out again.
//!
//! Locations: headers (optional prefix, ASCII case-insensitive, RFC 9110 11.1),
//! query parameters and cookies. More than one token in a request is ambiguous
//! (RFC 6750 section 2: a client MUST NOT use more than one method). Removal is
//! data: a list of [`Mutation`]s for the shell, covering headers, the query string
//! and cookies (Envoy's native filter leaves cookies in place).

use crate::config::Location;
use crate::request::{Mutation, Request};

/// Where exactly in this request a token was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    /// The `nth` value of header `name`.
    Header { name: String, nth: usize },
    /// The `nth` `&`-separated piece of the query string.
    Param { nth: usize },
    /// The `piece`th `;`-separated pair of the `nth` `cookie` header.
    Cookie { nth: usize, piece: usize },
}

/// A token found in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Index into `Config::locations`.
    pub location: usize,
    pub spot: Spot,
    pub token: String,
}

/// Every token in the request, in header, parameter, cookie order.
pub fn extract(locations: &[Location], req: &Request) -> Vec<Candidate> {
    let mut out = Vec::new();
    // Headers: each element yields at most one token, for the longest matching prefix.
    for (i, (name, value)) in req.headers.iter().enumerate() {
        if !locations
            .iter()
            .any(|l| matches!(l, Location::Header { name: n, .. } if n == name))
        {
            continue;
        }
        // Envoy folds repeated header lines into one comma-joined value, and a JWS never
        // contains a comma: each element is a possible token of its own.
        for element in value.split(',') {
            let element = element.trim_start_matches([' ', '\t']);
            let best = locations
                .iter()
                .enumerate()
                .filter_map(|(i, l)| match l {
                    Location::Header { name: n, prefix } if n == name => {
                        strip_prefix_ci(element, prefix).map(|rest| (i, prefix.len(), rest))
                    }
                    _ => None,
                })
                .max_by_key(|(_, len, _)| *len);
            if let Some((location, _, rest)) = best {
                out.push(Candidate {
                    location,
                    spot: Spot::Header {
                        name: name.clone(),
                        nth: req.nth_of(i),
                    },
                    token: rest.trim_matches(|c| c == ' ' || c == '\t').to_owned(),
                });
            }
        }
    }
    // Query parameters.
    if let Some(query) = query_of(req.path()) {
        for (nth, piece) in query.split('&').enumerate() {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            let key = percent_decode(k);
            if let Some(location) = locations
                .iter()
                .position(|l| matches!(l, Location::Param(n) if Some(n.as_str()) == key.as_deref()))
            {
                out.push(Candidate {
                    location,
                    spot: Spot::Param { nth },
                    token: percent_decode(v).unwrap_or_else(|| v.to_owned()),
                });
            }
        }
    }
    // Cookies (RFC 6265 4.2.1: `name=value` pairs separated by `; `).
    for (nth, header) in req.header_values("cookie").enumerate() {
        for (piece, pair) in header.split(';').enumerate() {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if let Some(location) = locations
                .iter()
                .position(|l| matches!(l, Location::Cookie(n) if n == k))
            {
                let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
                out.push(Candidate {
                    location,
                    spot: Spot::Cookie { nth, piece },
                    token: v.to_owned(),
                });
            }
        }
    }
    out
}

/// The mutations that take every candidate in `remove` out of the request.
pub fn removal(req: &Request, remove: &[&Candidate]) -> Vec<Mutation> {
    let mut out = Vec::new();
    // Headers, by name: drop the chosen values, keep the rest.
    let mut names: Vec<&str> = Vec::new();
    for c in remove {
        if let Spot::Header { name, .. } = &c.spot {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    for name in names {
        out.push(Mutation::Remove(name.to_owned()));
        for (nth, v) in req.header_values(name).enumerate() {
            let dropped = remove
                .iter()
                .any(|c| matches!(&c.spot, Spot::Header { name: n, nth: k } if n == name && *k == nth));
            if !dropped {
                out.push(Mutation::Add(name.to_owned(), v.to_owned()));
            }
        }
    }
    // Query string.
    let params: Vec<usize> = remove
        .iter()
        .filter_map(|c| match c.spot {
            Spot::Param { nth } => Some(nth),
            _ => None,
        })
        .collect();
    if !params.is_empty() {
        let path = req.path();
        if let Some(query) = query_of(path) {
            let base = path.split('?').next().unwrap_or("/");
            let kept: Vec<&str> = query
                .split('&')
                .enumerate()
                .filter(|(i, _)| !params.contains(i))
                .map(|(_, p)| p)
                .collect();
            let new_path = if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            out.push(Mutation::Set(":path".into(), new_path));
        }
    }
    // Cookies.
    let cookies: Vec<(usize, usize)> = remove
        .iter()
        .filter_map(|c| match c.spot {
            Spot::Cookie { nth, piece } => Some((nth, piece)),
            _ => None,
        })
        .collect();
    if !cookies.is_empty() {
        out.push(Mutation::Remove("cookie".into()));
        for (nth, header) in req.header_values("cookie").enumerate() {
            let kept: Vec<&str> = header
                .split(';')
                .enumerate()
                .filter(|(piece, _)| !cookies.contains(&(nth, *piece)))
                .map(|(_, p)| p.trim())
                .filter(|p| !p.is_empty())
                .collect();
            if !kept.is_empty() {
                out.push(Mutation::Add("cookie".into(), kept.join("; ")));
            }
        }
    }
    out
}

/// `value` without `prefix` (ASCII case-insensitive), or `None`.
fn strip_prefix_ci<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

fn query_of(path: &str) -> Option<&str> {
    let q = path.split_once('?')?.1;
    Some(q.split('#').next().unwrap_or(q))
}

/// [`percent_decode`], or `s` itself when it has nothing to decode or a broken escape.
pub(crate) fn percent_decoded(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(s);
    }
    percent_decode(s).map_or(std::borrow::Cow::Borrowed(s), std::borrow::Cow::Owned)
}

/// Percent-decodes a query component (`+` is a space, as in forms); `None` if the
/// result is not UTF-8 or an escape is broken (`%` not followed by two hex digits).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                let h = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn locs() -> Vec<Location> {
        vec![
            Location::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            Location::Param("access_token".into()),
            Location::Cookie("session".into()),
            Location::Header {
                name: "x-token".into(),
                prefix: String::new(),
            },
        ]
    }

    fn req(h: &[(&str, &str)]) -> Request {
        Request::new(h.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
    }

    #[test]
    fn header_scheme_is_case_insensitive_and_spaces_trimmed() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc  "] {
            let c = extract(&locs(), &req(&[(":path", "/"), ("authorization", v)]));
            assert_eq!(c.len(), 1, "{v}");
            assert_eq!(c[0].token, "abc");
            assert_eq!(c[0].location, 0);
        }
        assert!(extract(&locs(), &req(&[("authorization", "Basic abc")])).is_empty());
        assert!(extract(&locs(), &req(&[("authorization", "Bearerabc")])).is_empty());
        assert!(extract(&locs(), &req(&[("authorization", "Béarer abc")])).is_empty());
    }

    #[test]
    fn finds_every_place_and_counts_duplicates() {
        let r = req(&[
            (":path", "/a?x=1&access_token=p%2Eq&y=2"),
            ("authorization", "Bearer h"),
            ("cookie", "a=1; session=\"c\"; b=2"),
            ("x-token", "t"),
        ]);
        let c = extract(&locs(), &r);
        let toks: Vec<&str> = c.iter().map(|c| c.token.as_str()).collect();
        assert_eq!(toks, ["h", "t", "p.q", "c"]);
        let two_headers = req(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(extract(&locs(), &two_headers).len(), 2);
        let folded = req(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(extract(&locs(), &folded).len(), 2, "Envoy's folded duplicate headers");
        let mixed = req(&[("authorization", "Bearer a, Basic b")]);
        assert_eq!(extract(&locs(), &mixed).len(), 1);
        let two_params = req(&[(":path", "/?access_token=a&access_token=a")]);
        assert_eq!(extract(&locs(), &two_params).len(), 2);
    }

    #[test]
    fn removal_takes_out_exactly_the_token() {
        let r = req(&[
            (":path", "/a?x=1&access_token=tok&y=2"),
            ("cookie", "a=1; session=tok"),
            ("cookie", "b=2"),
            ("x-token", "keep"),
            ("x-token", "tok"),
        ]);
        let c = extract(&locs(), &r);
        let picked: Vec<&Candidate> = c.iter().filter(|c| c.token == "tok").collect();
        assert_eq!(picked.len(), 3);
        let m = removal(&r, &picked);
        assert!(m.contains(&Mutation::Set(":path".into(), "/a?x=1&y=2".into())));
        assert!(m.contains(&Mutation::Remove("cookie".into())));
        assert!(m.contains(&Mutation::Add("cookie".into(), "a=1".into())));
        assert!(m.contains(&Mutation::Add("cookie".into(), "b=2".into())));
        assert!(m.contains(&Mutation::Add("x-token".into(), "keep".into())));
        assert!(!m
            .iter()
            .any(|x| matches!(x, Mutation::Add(_, v) | Mutation::Set(_, v) if v.contains("tok"))));
    }

    #[test]
    fn removing_the_only_param_drops_the_question_mark() {
        let r = req(&[(":path", "/p?access_token=t")]);
        let c = extract(&locs(), &r);
        assert_eq!(removal(&r, &[&c[0]]), vec![Mutation::Set(":path".into(), "/p".into())]);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for p in [
            "/?%",
            "/?%zz=1",
            "/?access_token=%ff",
            "/?&&&=",
            "/?access_token",
            "?",
            "/#?x",
        ] {
            let r = req(&[(":path", p), ("cookie", ";;=;session"), ("authorization", "B")]);
            let c = extract(&locs(), &r);
            let refs: Vec<&Candidate> = c.iter().collect();
            let _ = removal(&r, &refs);
        }
    }
}
