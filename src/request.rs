//! The request as the core sees it, and the changes the core asks the shell to make.

/// Request headers as the proxy delivers them: lowercase names, pseudo-headers
/// (`:path`, `:method`, `:authority`) included, repeated names as separate entries.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn new(headers: Vec<(String, String)>) -> Request {
        Request { headers }
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
        Request { headers }
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
