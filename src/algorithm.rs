//! The JWS algorithms hopguard verifies (RFC 7518 section 3, RFC 8037), and sets of them.
//!
//! A token's `alg` is only ever used to *look up* a key that already pins the
//! algorithm; it never chooses how a key is interpreted.

/// A JWS signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// What a header's `alg` turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgName {
    Known(Alg),
    /// `none` (RFC 7518 3.6): never accepted.
    None,
    Unsupported,
}

impl Alg {
    pub const ALL: [Alg; 13] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The registered name (RFC 7518 table 3.1, RFC 8037 section 3.1). Case-sensitive.
    pub const fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Parses a registered name exactly (`"rs256"` is not `RS256`).
    pub fn parse(name: &str) -> AlgName {
        if name == "none" {
            return AlgName::None;
        }
        Alg::ALL
            .iter()
            .find(|a| a.name() == name)
            .map_or(AlgName::Unsupported, |a| AlgName::Known(*a))
    }

    /// Minimum HMAC key length in bytes (RFC 7518 3.2: at least the hash output size).
    pub const fn hmac_min_key_bytes(self) -> usize {
        match self {
            Alg::HS256 => 32,
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 0,
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of algorithms, e.g. what one key may be used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

impl AlgSet {
    pub const EMPTY: AlgSet = AlgSet(0);

    pub fn of(algs: &[Alg]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |acc, a| acc | a.bit()))
    }
    pub fn all() -> AlgSet {
        AlgSet::of(&Alg::ALL)
    }
    pub fn contains(self, alg: Alg) -> bool {
        self.0 & alg.bit() != 0
    }
    pub fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Alg> {
        Alg::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for a in Alg::ALL {
            assert_eq!(Alg::parse(a.name()), AlgName::Known(a));
            assert_eq!(Alg::parse(&a.name().to_lowercase()), AlgName::Unsupported);
        }
        assert_eq!(Alg::parse("none"), AlgName::None);
        assert_eq!(Alg::parse("None"), AlgName::Unsupported);
        assert_eq!(Alg::parse("ES256K"), AlgName::Unsupported);
        assert_eq!(Alg::parse(""), AlgName::Unsupported);
    }

    #[test]
    fn sets() {
        let s = AlgSet::of(&[Alg::RS256, Alg::PS512]);
        assert!(s.contains(Alg::RS256) && s.contains(Alg::PS512) && !s.contains(Alg::HS256));
        assert_eq!(s.iter().count(), 2);
        assert!(s.intersect(AlgSet::of(&[Alg::ES256])).is_empty());
        assert_eq!(AlgSet::all().iter().count(), 13);
    }
}
