//! The request as the core sees it, and the changes the core asks the shell to make.

/// Request headers as the proxy delivers them: lowercase names, pseudo-headers
/// (`:path`, `:method`, `:authority`) included, repeated names as separate entries.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    /// Headers whose value was not UTF-8 (obs-text, RFC 9110 5.5) and was read as Latin-1,
    /// one char per byte: a rewrite of them goes back byte for byte ([`Request::wire_value`]).
    latin1: Vec<String>,
}

impl Request {
    pub fn new(headers: Vec<(String, String)>) -> Request {
        Request {
            headers,
            latin1: Vec::new(),
        }
    }

    /// The request from header bytes as the proxy hands them over. A value that is not UTF-8
    /// is read as Latin-1, so nothing is lost: JWTs and the core's syntax are ASCII, and the
    /// other bytes survive a rewrite (a cookie list minus the token cookie) unchanged.
    pub fn from_wire(headers: Vec<(String, Vec<u8>)>) -> Request {
        let mut latin1 = Vec::new();
        let headers = headers
            .into_iter()
            .map(|(name, value)| match String::from_utf8(value) {
                Ok(v) => (name, v),
                Err(e) => {
                    if !latin1.contains(&name) {
                        latin1.push(name.clone());
                    }
                    (name, e.into_bytes().iter().map(|b| char::from(*b)).collect())
                }
            })
            .collect();
        Request { headers, latin1 }
    }

    /// The bytes to send for `value` as the new value of header `name`: Latin-1 for a header
    /// that came in as Latin-1 (when every char fits in a byte), UTF-8 otherwise.
    pub fn wire_value(&self, name: &str, value: &str) -> Vec<u8> {
        let latin1 = || {
            value
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
        };
        match self.latin1.iter().any(|n| n == name).then(latin1).flatten() {
            Some(bytes) => bytes,
            None => value.as_bytes().to_vec(),
        }
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Which value of its name header `index` is: 0 for the first header of that name.
    pub fn nth_of(&self, index: usize) -> usize {
        match self.headers.get(index) {
            Some((name, _)) => self.headers.iter().take(index).filter(|(n, _)| n == name).count(),
            None => 0,
        }
    }

    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or("/")
    }

    /// The request as it is after `mutations`, applied in order as the shell does.
    pub fn applied(&self, mutations: &[Mutation]) -> Request {
        let mut headers = self.headers.clone();
        for m in mutations {
            match m {
                Mutation::Remove(name) => headers.retain(|(n, _)| n != name),
                Mutation::Add(name, value) => headers.push((name.clone(), value.clone())),
                Mutation::Set(name, value) => {
                    headers.retain(|(n, _)| n != name);
                    headers.push((name.clone(), value.clone()));
                }
            }
        }
        Request {
            headers,
            latin1: self.latin1.clone(),
        }
    }
}

/// One change to the request headers, applied in order by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Remove every value of the header.
    Remove(String),
    /// Append one value (keeps existing values).
    Add(String, String),
    /// Replace every value with this one.
    Set(String, String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn nth_of_counts_earlier_headers_of_the_same_name() {
        let req = Request::new(
            [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3")]
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let nth: Vec<usize> = (0..5).map(|i| req.nth_of(i)).collect();
        assert_eq!(nth, [0, 0, 1, 2, 0]);
    }

    #[test]
    fn non_utf8_values_are_read_as_latin1_and_written_back_byte_for_byte() {
        let raw = b"a=\xff\xfe; token=eyJ.x.y; b=caf\xe9".to_vec();
        let req = Request::from_wire(vec![
            ("cookie".into(), raw.clone()),
            ("x-name".into(), "Jos\u{e9}".as_bytes().to_vec()),
        ]);
        assert_eq!(req.header("x-name"), Some("Jos\u{e9}"), "UTF-8 stays UTF-8");
        let cookie = req.header("cookie").unwrap();
        assert_eq!(req.wire_value("cookie", cookie), raw, "round trip");
        let rewritten = cookie.replace(" token=eyJ.x.y;", "");
        assert_eq!(req.wire_value("cookie", &rewritten), b"a=\xff\xfe; b=caf\xe9".to_vec());
        // Other headers, and values that cannot be Latin-1, are UTF-8.
        assert_eq!(req.wire_value("x-name", "Jos\u{e9}"), "Jos\u{e9}".as_bytes().to_vec());
        assert_eq!(req.wire_value("cookie", "\u{2603}"), "\u{2603}".as_bytes().to_vec());
        assert_eq!(
            req.applied(&[]).wire_value("cookie", cookie),
            raw,
            "kept through applied()"
        );
    }
}
