//! A verification key: its material, and the algorithms it is pinned to.
//!
//! The key type decides how the material is read; the token's `alg` only has to be in
//! the key's pinned set. Every verification goes through jwt-compact's `Algorithm`
//! trait (plus hopguard's ES384/ES512 implementations of it).

use crate::algorithm::{Alg, AlgSet};
use crate::ecdsa::{Es384, Es512};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa};
use jwt_compact::{Algorithm, AlgorithmSignature};

/// Key material, by key type and curve.
#[derive(Clone)]
pub enum Material {
    /// `oct` secret (RFC 7518 6.4).
    Hmac(Vec<u8>),
    /// `RSA` public key (RFC 7518 6.3), at least 2048 bits.
    Rsa(rsa::RsaPublicKey),
    /// `EC` P-256 public key.
    P256(p256::ecdsa::VerifyingKey),
    /// `EC` P-384 public key.
    P384(p384::ecdsa::VerifyingKey),
    /// `EC` P-521 public key.
    P521(p521::ecdsa::VerifyingKey),
    /// `OKP` Ed25519 public key (RFC 8037).
    Ed25519(ed25519_dalek::VerifyingKey),
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
            (Material::Rsa(k), Alg::RS256) => check(Rsa::rs256(), k, signing_input, signature),
            (Material::Rsa(k), Alg::RS384) => check(Rsa::rs384(), k, signing_input, signature),
            (Material::Rsa(k), Alg::RS512) => check(Rsa::rs512(), k, signing_input, signature),
            (Material::Rsa(k), Alg::PS256) => check(Rsa::ps256(), k, signing_input, signature),
            (Material::Rsa(k), Alg::PS384) => check(Rsa::ps384(), k, signing_input, signature),
            (Material::Rsa(k), Alg::PS512) => check(Rsa::ps512(), k, signing_input, signature),
            (Material::P256(k), Alg::ES256) => check(Es256, k, signing_input, signature),
            (Material::P384(k), Alg::ES384) => check(Es384, k, signing_input, signature),
            (Material::P521(k), Alg::ES512) => check(Es512, k, signing_input, signature),
            (Material::Ed25519(k), Alg::EdDSA) => check(Ed25519, k, signing_input, signature),
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
