//! ES384 and ES512 (RFC 7518 section 3.4) for jwt-compact, which ships only ES256.
//!
//! Implemented through jwt-compact's `Algorithm` trait with the RustCrypto `p384` and
//! `p521` curves. Signatures are the JWS form: `R || S`, each the curve's field size
//! (48 bytes for P-384, 66 bytes for P-521), not DER.

use jwt_compact::{Algorithm, AlgorithmSignature};
use std::borrow::Cow;
use std::num::NonZeroUsize;

/// An ECDSA signature in JWS form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSignature<const N: usize>(Vec<u8>);

impl<const N: usize> AlgorithmSignature for RawSignature<N> {
    const LENGTH: Option<NonZeroUsize> = NonZeroUsize::new(N);

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        if slice.len() == N {
            Ok(RawSignature(slice.to_vec()))
        } else {
            Err(anyhow::Error::msg("ECDSA signature has the wrong length"))
        }
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

/// ES384: ECDSA on P-384 with SHA-384.
#[derive(Debug, Default, Clone, Copy)]
pub struct Es384;

impl Algorithm for Es384 {
    type SigningKey = p384::ecdsa::SigningKey;
    type VerifyingKey = p384::ecdsa::VerifyingKey;
    type Signature = RawSignature<96>;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("ES384")
    }

    fn sign(&self, key: &Self::SigningKey, message: &[u8]) -> Self::Signature {
        use p384::ecdsa::signature::Signer;
        let sig: p384::ecdsa::Signature = key.sign(message);
        RawSignature(sig.to_bytes().to_vec())
    }

    fn verify_signature(&self, sig: &Self::Signature, key: &Self::VerifyingKey, msg: &[u8]) -> bool {
        use p384::ecdsa::signature::Verifier;
        match p384::ecdsa::Signature::from_slice(&sig.0) {
            Ok(s) => key.verify(msg, &s).is_ok(),
            Err(_) => false,
        }
    }
}

/// ES512: ECDSA on P-521 with SHA-512.
#[derive(Debug, Default, Clone, Copy)]
pub struct Es512;

impl Algorithm for Es512 {
    type SigningKey = p521::ecdsa::SigningKey;
    type VerifyingKey = p521::ecdsa::VerifyingKey;
    type Signature = RawSignature<132>;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("ES512")
    }

    fn sign(&self, key: &Self::SigningKey, message: &[u8]) -> Self::Signature {
        use p521::ecdsa::signature::Signer;
        let sig: p521::ecdsa::Signature = key.sign(message);
        RawSignature(sig.to_bytes().to_vec())
    }

    fn verify_signature(&self, sig: &Self::Signature, key: &Self::VerifyingKey, msg: &[u8]) -> bool {
        use p521::ecdsa::signature::Verifier;
        match p521::ecdsa::Signature::from_slice(&sig.0) {
            Ok(s) => key.verify(msg, &s).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn es384_sign_verify_and_tamper() {
        let sk = p384::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let vk = *sk.verifying_key();
        let sig = Es384.sign(&sk, b"hello");
        assert_eq!(sig.as_bytes().len(), 96);
        assert!(Es384.verify_signature(&sig, &vk, b"hello"));
        assert!(!Es384.verify_signature(&sig, &vk, b"hellO"));
        let mut bad = sig.0.clone();
        bad[10] ^= 1;
        assert!(!Es384.verify_signature(&RawSignature(bad), &vk, b"hello"));
        assert!(RawSignature::<96>::try_from_slice(&[0u8; 95]).is_err());
        assert!(!Es384.verify_signature(&RawSignature(vec![0u8; 96]), &vk, b"hello"));
    }

    #[test]
    fn es512_sign_verify_and_tamper() {
        let sk = p521::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let vk = p521::ecdsa::VerifyingKey::from(&sk);
        let sig = Es512.sign(&sk, b"hello");
        assert_eq!(sig.as_bytes().len(), 132);
        assert!(Es512.verify_signature(&sig, &vk, b"hello"));
        assert!(!Es512.verify_signature(&sig, &vk, b"hell0"));
        assert!(!Es512.verify_signature(&RawSignature(vec![0xff; 132]), &vk, b"hello"));
    }
}
