//! Every way hopguard can refuse (or flag) a request, and the one table that maps each
//! reason to its HTTP status, RFC 6750 error code, RFC 9457 title, metric/log code and
//! human description.
//!
//! Adding a reason means adding a variant and a row in [`Reason::spec`]; nothing else
//! in the crate picks a status code or writes a reason string.

/// RFC 6750 section 3.1 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The request is malformed (e.g. more than one token).
    InvalidRequest,
    /// The token is expired, revoked, malformed or invalid for other reasons.
    InvalidToken,
    /// The token is valid but does not grant what the request needs.
    InsufficientScope,
    /// RFC 9449 7.1: the DPoP proof is missing or invalid.
    InvalidDpopProof,
}

impl BearerError {
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
            BearerError::InvalidDpopProof => "invalid_dpop_proof",
        }
    }
}

/// Why a request was refused. The first failure wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No token in any configured location.
    TokenMissing,
    /// More than one token in the request (RFC 6750 section 2: one method per request).
    TokenAmbiguous,
    /// The token exceeds `maxTokenBytes`.
    TokenTooLarge,
    /// Not a compact JWS: segments, base64url or JSON are broken.
    TokenMalformed,
    /// The JOSE header says `alg: none`.
    AlgorithmNone,
    /// The JOSE header names an algorithm hopguard does not implement.
    AlgorithmUnsupported,
    /// The provider has no key for the token's `alg` (or forbids it by `algorithms`).
    AlgorithmNotAllowed,
    /// The header carries `crit` extensions, which hopguard does not understand (RFC 7515 4.1.11).
    CritUnsupported,
    /// The header's `typ` marks a token that is not an access token (RFC 8725 3.11).
    TypeNotAccepted,
    /// No `iss` claim.
    IssuerMissing,
    /// No provider accepts this issuer from the location the token was found in.
    IssuerUnknown,
    /// No key of the provider matches the token's `kid` and `alg`.
    KeyNotFound,
    /// The signature does not verify.
    SignatureInvalid,
    /// A registered claim has the wrong type (RFC 7519 section 4.1).
    ClaimInvalid,
    /// `exp` is required but absent.
    ExpirationMissing,
    /// `exp` has passed (beyond the clock skew).
    TokenExpired,
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid,
    /// The token lives longer than `maxLifetimeSeconds`.
    LifetimeTooLong,
    /// The token's `aud` has none of the provider's audiences.
    AudienceMismatch,
    /// The token is on a revocation list (by `jti`, `sub` or fingerprint).
    TokenRevoked,
    /// The issuer's keys are not available: never fetched within the wait, or older
    /// than `maxStalenessSeconds`. Not the token's fault: 503, not 401.
    KeysUnavailable,
    /// The remote revocation list is stale and the config says to fail closed.
    RevocationUnavailable,
    /// A DENY policy rule matched.
    PolicyDenied,
    /// ALLOW policies exist and none matched.
    PolicyNoMatch,
    /// A rule needs the caller's mTLS identity and the connection has none.
    PeerUnauthenticated,
    /// The token does not name the calling workload.
    WorkloadMismatch,
    /// The token's `act` chain does not name the calling workload.
    DelegationMismatch,
    /// The token's `cnf` claim is malformed.
    CnfInvalid,
    /// A certificate-bound token is required and this one is not (RFC 8705).
    CertBindingMissing,
    /// The token is bound to another client certificate (RFC 8705 3).
    CertBindingMismatch,
    /// A DPoP-bound token without a DPoP proof (RFC 9449).
    DpopProofMissing,
    /// The DPoP proof fails a check (RFC 9449 4.3).
    DpopProofInvalid,
    /// The DPoP proof was already used.
    DpopReplayed,
    /// The token's `cnf.jkt` is not the proof's key.
    DpopKeyMismatch,
    /// DPoP was used but the token is not DPoP-bound.
    DpopBindingMissing,
    /// A DPoP-bound token presented with the Bearer scheme (RFC 9449 7.2).
    DpopTokenAsBearer,
    /// The per-worker DPoP replay cache is full of live proofs.
    DpopReplayCacheFull,
    /// The filter has no valid configuration: it refuses everything (fail closed).
    ConfigInvalid,
}

/// One row of the reason table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Stable snake_case code used in logs, metrics and problem bodies.
    pub code: &'static str,
    /// HTTP status of the refusal.
    pub status: u16,
    /// RFC 6750 error code for `WWW-Authenticate`; `None` when the request carried no
    /// credentials (RFC 6750 section 3.1 says not to include an error code then).
    pub bearer_error: Option<BearerError>,
    /// RFC 9457 `title`: short, stable, human readable.
    pub title: &'static str,
    /// RFC 9457 `detail` and RFC 6750 `error_description` (no quotes or backslashes).
    pub description: &'static str,
}

impl Reason {
    /// Every reason, in table order (for metrics definitions, docs and tests).
    pub const ALL: [Reason; 38] = [
        Reason::TokenMissing,
        Reason::TokenAmbiguous,
        Reason::TokenTooLarge,
        Reason::TokenMalformed,
        Reason::AlgorithmNone,
        Reason::AlgorithmUnsupported,
        Reason::AlgorithmNotAllowed,
        Reason::CritUnsupported,
        Reason::TypeNotAccepted,
        Reason::IssuerMissing,
        Reason::IssuerUnknown,
        Reason::KeyNotFound,
        Reason::SignatureInvalid,
        Reason::ClaimInvalid,
        Reason::ExpirationMissing,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::LifetimeTooLong,
        Reason::AudienceMismatch,
        Reason::TokenRevoked,
        Reason::KeysUnavailable,
        Reason::RevocationUnavailable,
        Reason::PolicyDenied,
        Reason::PolicyNoMatch,
        Reason::PeerUnauthenticated,
        Reason::WorkloadMismatch,
        Reason::DelegationMismatch,
        Reason::CnfInvalid,
        Reason::CertBindingMissing,
        Reason::CertBindingMismatch,
        Reason::DpopProofMissing,
        Reason::DpopProofInvalid,
        Reason::DpopReplayed,
        Reason::DpopKeyMismatch,
        Reason::DpopBindingMissing,
        Reason::DpopTokenAsBearer,
        Reason::DpopReplayCacheFull,
        Reason::ConfigInvalid,
    ];

    /// The reason table.
    pub const fn spec(self) -> Spec {
        use BearerError::*;
        const fn row(
            code: &'static str,
            status: u16,
            bearer_error: Option<BearerError>,
            title: &'static str,
            description: &'static str,
        ) -> Spec {
            Spec {
                code,
                status,
                bearer_error,
                title,
                description,
            }
        }
        match self {
            Reason::TokenMissing => row(
                "token_missing",
                401,
                None,
                "Token missing",
                "The request carries no bearer token in any accepted location.",
            ),
            Reason::TokenAmbiguous => row(
                "token_ambiguous",
                400,
                Some(InvalidRequest),
                "More than one token",
                "The request carries more than one token; send exactly one.",
            ),
            Reason::TokenTooLarge => row(
                "token_too_large",
                401,
                Some(InvalidToken),
                "Token too large",
                "The token exceeds the maximum accepted size.",
            ),
            Reason::TokenMalformed => row(
                "token_malformed",
                401,
                Some(InvalidToken),
                "Token malformed",
                "The token is not a well-formed compact JWS.",
            ),
            Reason::AlgorithmNone => row(
                "alg_none",
                401,
                Some(InvalidToken),
                "Unsigned token",
                "Unsigned tokens (alg none) are never accepted.",
            ),
            Reason::AlgorithmUnsupported => row(
                "alg_unsupported",
                401,
                Some(InvalidToken),
                "Algorithm unsupported",
                "The token's signature algorithm is not supported.",
            ),
            Reason::AlgorithmNotAllowed => row(
                "alg_not_allowed",
                401,
                Some(InvalidToken),
                "Algorithm not allowed",
                "The issuer's keys do not allow the token's signature algorithm.",
            ),
            Reason::CritUnsupported => row(
                "crit_unsupported",
                401,
                Some(InvalidToken),
                "Critical header not understood",
                "The token header lists critical extensions that are not understood.",
            ),
            Reason::TypeNotAccepted => row(
                "typ_not_accepted",
                401,
                Some(InvalidToken),
                "Token type not accepted",
                "The token header typ marks a token that is not an access token.",
            ),
            Reason::IssuerMissing => row(
                "issuer_missing",
                401,
                Some(InvalidToken),
                "Issuer missing",
                "The token has no iss claim.",
            ),
            Reason::IssuerUnknown => row(
                "issuer_unknown",
                401,
                Some(InvalidToken),
                "Issuer not accepted",
                "No configured provider accepts the token's issuer from this location.",
            ),
            Reason::KeyNotFound => row(
                "key_not_found",
                401,
                Some(InvalidToken),
                "Signing key not found",
                "No key of the issuer matches the token's kid and alg.",
            ),
            Reason::SignatureInvalid => row(
                "signature_invalid",
                401,
                Some(InvalidToken),
                "Signature invalid",
                "The token signature does not verify.",
            ),
            Reason::ClaimInvalid => row(
                "claim_invalid",
                401,
                Some(InvalidToken),
                "Claim invalid",
                "A registered claim of the token has an invalid type or value.",
            ),
            Reason::ExpirationMissing => row(
                "exp_missing",
                401,
                Some(InvalidToken),
                "Expiration missing",
                "The token has no exp claim and the issuer requires one.",
            ),
            Reason::TokenExpired => row(
                "token_expired",
                401,
                Some(InvalidToken),
                "Token expired",
                "The token has expired.",
            ),
            Reason::TokenNotYetValid => row(
                "token_not_yet_valid",
                401,
                Some(InvalidToken),
                "Token not yet valid",
                "The token nbf time is in the future.",
            ),
            Reason::LifetimeTooLong => row(
                "lifetime_too_long",
                401,
                Some(InvalidToken),
                "Token lifetime too long",
                "The token lifetime exceeds the maximum the issuer allows.",
            ),
            Reason::AudienceMismatch => row(
                "audience_mismatch",
                403,
                Some(InvalidToken),
                "Audience not allowed",
                "The token audience does not include this service.",
            ),
            Reason::TokenRevoked => row(
                "token_revoked",
                401,
                Some(InvalidToken),
                "Token revoked",
                "The token has been revoked.",
            ),
            Reason::KeysUnavailable => row(
                "keys_unavailable",
                503,
                None,
                "Signing keys unavailable",
                "The issuer's signing keys could not be obtained; retry later.",
            ),
            Reason::RevocationUnavailable => row(
                "revocation_unavailable",
                503,
                None,
                "Revocation list unavailable",
                "The revocation list could not be refreshed and the filter fails closed.",
            ),
            Reason::PolicyDenied => row(
                "policy_denied",
                403,
                Some(InsufficientScope),
                "Denied by policy",
                "A policy rule denies this request.",
            ),
            Reason::PolicyNoMatch => row(
                "policy_no_match",
                403,
                Some(InsufficientScope),
                "Not allowed by policy",
                "No policy rule allows this request.",
            ),
            Reason::PeerUnauthenticated => row(
                "peer_unauthenticated",
                403,
                None,
                "Caller not authenticated",
                "This request needs the calling workload's mTLS identity.",
            ),
            Reason::WorkloadMismatch => row(
                "workload_mismatch",
                403,
                Some(InsufficientScope),
                "Token not for this caller",
                "The token was not issued to the calling workload.",
            ),
            Reason::DelegationMismatch => row(
                "delegation_mismatch",
                403,
                Some(InsufficientScope),
                "Delegation does not match",
                "The token's delegation chain does not name the calling workload.",
            ),
            Reason::CnfInvalid => row(
                "cnf_invalid",
                401,
                Some(InvalidToken),
                "Confirmation claim invalid",
                "The token's cnf claim is malformed.",
            ),
            Reason::CertBindingMissing => row(
                "cert_binding_missing",
                401,
                Some(InvalidToken),
                "Certificate-bound token required",
                "This service requires a certificate-bound token.",
            ),
            Reason::CertBindingMismatch => row(
                "cert_binding_mismatch",
                401,
                Some(InvalidToken),
                "Token bound to another certificate",
                "The token is bound to another client certificate.",
            ),
            Reason::DpopProofMissing => row(
                "dpop_proof_missing",
                401,
                Some(InvalidDpopProof),
                "DPoP proof missing",
                "This token requires a DPoP proof.",
            ),
            Reason::DpopProofInvalid => row(
                "dpop_proof_invalid",
                401,
                Some(InvalidDpopProof),
                "DPoP proof invalid",
                "The DPoP proof is invalid for this request.",
            ),
            Reason::DpopReplayed => row(
                "dpop_replayed",
                401,
                Some(InvalidDpopProof),
                "DPoP proof replayed",
                "The DPoP proof was already used.",
            ),
            Reason::DpopKeyMismatch => row(
                "dpop_key_mismatch",
                401,
                Some(InvalidToken),
                "DPoP key mismatch",
                "The token is bound to another DPoP key.",
            ),
            Reason::DpopBindingMissing => row(
                "dpop_binding_missing",
                401,
                Some(InvalidToken),
                "Token not DPoP-bound",
                "The token is not bound to a DPoP key.",
            ),
            Reason::DpopTokenAsBearer => row(
                "dpop_token_as_bearer",
                401,
                Some(InvalidToken),
                "DPoP token sent as bearer",
                "A DPoP-bound token must be sent with the DPoP scheme and a proof.",
            ),
            Reason::DpopReplayCacheFull => row(
                "dpop_replay_cache_full",
                503,
                None,
                "DPoP replay cache full",
                "Too many DPoP proofs in flight; retry later.",
            ),
            Reason::ConfigInvalid => row(
                "config_invalid",
                503,
                None,
                "Filter not configured",
                "The token filter has no valid configuration and refuses all requests.",
            ),
        }
    }

    /// Whether the challenge uses the `DPoP` scheme (RFC 9449 7.1) instead of `Bearer`.
    pub const fn is_dpop(self) -> bool {
        matches!(
            self,
            Reason::DpopProofMissing
                | Reason::DpopProofInvalid
                | Reason::DpopReplayed
                | Reason::DpopKeyMismatch
                | Reason::DpopBindingMissing
                | Reason::DpopTokenAsBearer
        )
    }

    /// Stable snake_case code.
    pub const fn code(self) -> &'static str {
        self.spec().code
    }
}

impl From<crate::policy::PolicyReason> for Reason {
    fn from(r: crate::policy::PolicyReason) -> Reason {
        use crate::policy::PolicyReason as P;
        match r {
            P::PolicyDenied => Reason::PolicyDenied,
            P::PolicyNoMatch => Reason::PolicyNoMatch,
            P::PeerUnauthenticated => Reason::PeerUnauthenticated,
            P::WorkloadMismatch => Reason::WorkloadMismatch,
            P::DelegationMismatch => Reason::DelegationMismatch,
            P::CnfInvalid => Reason::CnfInvalid,
            P::CertBindingMissing => Reason::CertBindingMissing,
            P::CertBindingMismatch => Reason::CertBindingMismatch,
            P::DpopProofMissing => Reason::DpopProofMissing,
            P::DpopProofInvalid => Reason::DpopProofInvalid,
            P::DpopReplayed => Reason::DpopReplayed,
            P::DpopKeyMismatch => Reason::DpopKeyMismatch,
            P::DpopBindingMissing => Reason::DpopBindingMissing,
            P::DpopTokenAsBearer => Reason::DpopTokenAsBearer,
            P::DpopReplayCacheFull => Reason::DpopReplayCacheFull,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for r in Reason::ALL {
            let c = r.code();
            assert!(seen.insert(c), "duplicate code {c}");
            assert!(c
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
        }
        assert_eq!(seen.len(), Reason::ALL.len());
    }

    #[test]
    fn policy_reasons_map_one_to_one_with_the_same_codes() {
        for p in crate::policy::PolicyReason::ALL {
            let r = Reason::from(p);
            assert_eq!(r.code(), p.code());
            assert_eq!(r.is_dpop(), p.is_dpop(), "{p:?}");
        }
    }

    #[test]
    fn descriptions_are_rfc6750_safe() {
        // error-description: %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
        for r in Reason::ALL {
            let d = r.spec().description;
            assert!(
                d.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
        }
    }

    #[test]
    fn statuses_follow_rfc6750() {
        for r in Reason::ALL {
            let s = r.spec();
            match s.bearer_error {
                Some(BearerError::InvalidRequest) => assert_eq!(s.status, 400),
                Some(BearerError::InvalidDpopProof) => assert!(s.status == 401 && r.is_dpop()),
                Some(BearerError::InsufficientScope) => assert_eq!(s.status, 403),
                Some(BearerError::InvalidToken) => {
                    assert!(s.status == 401 || r == Reason::AudienceMismatch)
                }
                None => assert!(r == Reason::TokenMissing || r == Reason::PeerUnauthenticated || s.status == 503),
            }
        }
        assert_eq!(Reason::AudienceMismatch.spec().status, 403);
        assert_eq!(Reason::TokenMissing.spec().status, 401);
    }
}
