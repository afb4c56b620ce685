//! Claims copied into request headers (`outputClaimToHeaders`).
//!
//! Scalars are copied as text; arrays of scalars are joined with `,` (Envoy and Istio
//! drop array claims: envoy#30072, istio#58433). Objects, nulls and values that are
//! not safe in a header (control characters) are not copied.

use serde_json::{Map, Value};

/// Most bytes copied into one header.
pub const MAX_HEADER_VALUE_BYTES: usize = 8192;

/// The header value for the claim at `path` (nested names), if it has one.
pub fn header_value(claims: &Map<String, Value>, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut v = claims.get(first)?;
    for name in rest {
        v = v.as_object()?.get(name)?;
    }
    let text = match v {
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
            parts?.join(",")
        }
        other => scalar(other)?,
    };
    let safe = text.len() <= MAX_HEADER_VALUE_BYTES && !text.chars().any(|c| c.is_control() && c != '\t');
    safe.then_some(text)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn renders_scalars_arrays_and_nested() {
        let c = json!({"sub":"u1","n":3,"f":1.5,"b":true,"roles":["a","b",7],
                       "realm":{"roles":["x"]},"o":{"k":1},"z":null,"mixed":["a",{"x":1}],
                       "crlf":"a\r\nx-evil: 1","tab":"a\tb"});
        let c = c.as_object().unwrap();
        assert_eq!(header_value(c, &p("sub")).as_deref(), Some("u1"));
        assert_eq!(header_value(c, &p("n")).as_deref(), Some("3"));
        assert_eq!(header_value(c, &p("f")).as_deref(), Some("1.5"));
        assert_eq!(header_value(c, &p("b")).as_deref(), Some("true"));
        assert_eq!(header_value(c, &p("roles")).as_deref(), Some("a,b,7"));
        assert_eq!(header_value(c, &p("realm.roles")).as_deref(), Some("x"));
        assert_eq!(header_value(c, &p("o")), None);
        assert_eq!(header_value(c, &p("z")), None);
        assert_eq!(header_value(c, &p("mixed")), None);
        assert_eq!(header_value(c, &p("crlf")), None);
        assert_eq!(header_value(c, &p("tab")).as_deref(), Some("a\tb"));
        assert_eq!(header_value(c, &p("missing")), None);
        assert_eq!(header_value(c, &p("sub.x")), None);
        assert_eq!(header_value(c, &[]), None);
    }
}
