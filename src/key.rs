//! A verification key: its material, and the algorithms it is pinned to.
//!
//! The key type decides how the material is read; the token's `alg` only has to be in
//! the key's pinned set. RSA, ECDSA and Ed25519 keys verify with hopguard's own code,
//! written for Wasm and precomputed per key at configure time ([`crate::rsa_key`],
//! [`crate::ecdsa`], [`crate::ed25519`]); HMAC through jwt-compact's `Algorithm` trait.

use crate::algorithm::{Alg, AlgSet};
use crate::ecdsa::{P256Key, P384Key, P521Key};
use crate::ed25519::Ed25519Key;
use crate::rsa_key::{RsaKey, Scheme};
use jwt_compact::alg::{Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key};
use jwt_compact::{Algorithm, AlgorithmSignature};

/// Key material, by key type and curve.
#[derive(Clone)]
pub enum Material {
    /// `oct` secret (RFC 7518 6.4).
    Hmac(Vec<u8>),
    /// `RSA` public key (RFC 7518 6.3), at least 2048 bits.
    Rsa(RsaKey),
    /// `EC` P-256 public key.
    P256(P256Key),
    /// `EC` P-384 public key.
    P384(P384Key),
    /// `EC` P-521 public key.
    P521(P521Key),
    /// `OKP` Ed25519 public key (RFC 8037).
    Ed25519(Ed25519Key),
}

impl std::fmt::Debug for Material {
    // Never prints secret material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Material::Hmac(_) => "Hmac(..)",
            Material::Rsa(_) => "Rsa(..)",
            Material::P256(_) => "P256(..)",
            Material::P384(_) => "P384(..)",
            Material::P521(_) => "P521(..)",
            Material::Ed25519(_) => "Ed25519(..)",
        })
    }
}

/// One usable verification key of a provider.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The algorithms this key may verify; never empty.
    pub algs: AlgSet,
    pub material: Material,
}

impl Key {
    /// Whether the key's precomputation is done: every key but an Ed25519 key parsed for
    /// one signature ([`crate::jwks::Lifetime::OneShot`]), which has no table.
    pub fn is_precomputed(&self) -> bool {
        match &self.material {
            Material::Ed25519(k) => k.has_table(),
            _ => true,
        }
    }

    /// Verifies `signature` over `signing_input` with `alg`. `false` when `alg` is not
    /// pinned to this key, when the material does not fit `alg`, or when the signature
    /// does not verify. Never panics.
    pub fn verify(&self, alg: Alg, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.algs.contains(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Hmac(k), Alg::HS256) => check(Hs256, &Hs256Key::new(k), signing_input, signature),
            (Material::Hmac(k), Alg::HS384) => check(Hs384, &Hs384Key::new(k), signing_input, signature),
            (Material::Hmac(k), Alg::HS512) => check(Hs512, &Hs512Key::new(k), signing_input, signature),
            (Material::Rsa(k), Alg::RS256) => k.verify(Scheme::Rs256, signing_input, signature),
            (Material::Rsa(k), Alg::RS384) => k.verify(Scheme::Rs384, signing_input, signature),
            (Material::Rsa(k), Alg::RS512) => k.verify(Scheme::Rs512, signing_input, signature),
            (Material::Rsa(k), Alg::PS256) => k.verify(Scheme::Ps256, signing_input, signature),
            (Material::Rsa(k), Alg::PS384) => k.verify(Scheme::Ps384, signing_input, signature),
            (Material::Rsa(k), Alg::PS512) => k.verify(Scheme::Ps512, signing_input, signature),
            (Material::P256(k), Alg::ES256) => k.verify(signing_input, signature),
            (Material::P384(k), Alg::ES384) => k.verify(signing_input, signature),
            (Material::P521(k), Alg::ES512) => k.verify(signing_input, signature),
            (Material::Ed25519(k), Alg::EdDSA) => k.verify(signing_input, signature),
            _ => false,
        }
    }
}

fn check<A: Algorithm>(alg: A, key: &A::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    if let Some(len) = A::Signature::LENGTH {
        if signature.len() != len.get() {
            return false;
        }
    }
    match A::Signature::try_from_slice(signature) {
        Ok(sig) => alg.verify_signature(&sig, key, message),
        Err(_) => false,
    }
}
