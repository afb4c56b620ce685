//! The refusal a reason turns into: status, RFC 6750 `WWW-Authenticate`, and an
//! RFC 9457 `application/problem+json` body. Built only from the reason table and the
//! configured realm: never from the token, the request or its query string.

use crate::reason::Reason;

/// A local reply for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The problem `type` URI for a reason.
pub fn problem_type(reason: Reason) -> String {
    format!("urn:hopguard:reason:{}", reason.code())
}

/// What a policy adds to a refusal.
#[derive(Debug, Clone, Default)]
pub struct Extra<'a> {
    /// The rule that decided (`policy/rule`), named in the problem body.
    pub rule: Option<String>,
    /// The `algs` parameter of a DPoP challenge (RFC 9449 7.1).
    pub dpop_algs: Option<&'a str>,
    /// A rule's own status and body.
    pub custom: Option<&'a crate::policy::Custom>,
}

/// Renders the refusal for `reason`.
pub fn deny(reason: Reason, realm: &str) -> Denial {
    deny_with(reason, realm, &Extra::default())
}

/// Renders the refusal for `reason`, with a policy's rule, DPoP algorithms or custom
/// status and body.
pub fn deny_with(reason: Reason, realm: &str, extra: &Extra<'_>) -> Denial {
    let spec = reason.spec();
    let mut headers = Vec::with_capacity(3);
    if let Some(challenge) = challenge_with(reason, realm, extra.dpop_algs) {
        headers.push(("www-authenticate".to_owned(), challenge));
    }
    let status = extra.custom.and_then(|c| c.status).unwrap_or(spec.status);
    let (body, content_type) = match extra.custom.and_then(|c| c.body.clone().map(|b| (b, c.content_type))) {
        Some((b, ct)) => (b, ct.unwrap_or("text/plain").to_owned()),
        None => {
            let mut v = serde_json::json!({
                "type": problem_type(reason),
                "title": spec.title,
                "status": status,
                "detail": spec.description,
                "reason": spec.code,
            });
            if let (Some(rule), Some(obj)) = (&extra.rule, v.as_object_mut()) {
                obj.insert("rule".to_owned(), serde_json::Value::String(rule.clone()));
            }
            (v.to_string(), "application/problem+json".to_owned())
        }
    };
    headers.push(("content-type".to_owned(), content_type));
    headers.push(("cache-control".to_owned(), "no-store".to_owned()));
    Denial { status, headers, body }
}

/// The `WWW-Authenticate` value (RFC 6750 3): a 401 always carries one; other
/// statuses only when they are bearer errors.
pub fn challenge(reason: Reason, realm: &str) -> Option<String> {
    challenge_with(reason, realm, None)
}

fn challenge_with(reason: Reason, realm: &str, dpop_algs: Option<&str>) -> Option<String> {
    let spec = reason.spec();
    let scheme = if reason.is_dpop() { "DPoP" } else { "Bearer" };
    let algs = match (reason.is_dpop(), dpop_algs) {
        (true, Some(a)) => format!(", algs=\"{a}\""),
        _ => String::new(),
    };
    match spec.bearer_error {
        None if spec.status == 401 => Some(format!("{scheme} realm=\"{realm}\"{algs}")),
        None => None,
        Some(e) => Some(format!(
            "{scheme} realm=\"{realm}\", error=\"{}\", error_description=\"{}\"{algs}",
            e.as_str(),
            spec.description
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn every_reason_renders_a_problem_body() {
        for r in Reason::ALL {
            let d = deny(r, "mesh");
            let v: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            assert_eq!(v["status"], d.status);
            assert_eq!(v["reason"], r.code());
            assert_eq!(v["type"], format!("urn:hopguard:reason:{}", r.code()));
            assert!(d
                .headers
                .contains(&("content-type".into(), "application/problem+json".into())));
            let www = d.headers.iter().find(|(n, _)| n == "www-authenticate");
            assert_eq!(
                www.is_some(),
                d.status == 401 || r.spec().bearer_error.is_some(),
                "{r:?}"
            );
        }
    }

    #[test]
    fn challenges() {
        assert_eq!(challenge(Reason::TokenMissing, "r").unwrap(), "Bearer realm=\"r\"");
        assert_eq!(
            challenge(Reason::TokenExpired, "r").unwrap(),
            "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"The token has expired.\""
        );
        assert!(challenge(Reason::TokenAmbiguous, "r")
            .unwrap()
            .contains("error=\"invalid_request\""));
        assert_eq!(challenge(Reason::ConfigInvalid, "r"), None);
    }
}
