//! Test keys and tokens for every algorithm hopguard verifies. Keys are derived from
//! a seeded RNG (alg, kid), so a test run is reproducible.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hopguard::b64;
use hopguard::ecdsa::{Es384, Es512};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key};
use jwt_compact::{Algorithm, AlgorithmSignature};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const ALL_ALGS: [&str; 13] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

enum Secret {
    Hmac(Vec<u8>),
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
}

/// A signing key with its public JWK.
pub struct Signer {
    pub alg: &'static str,
    pub kid: String,
    secret: Secret,
}

fn rng_for(alg: &str, kid: &str) -> StdRng {
    let h = Sha256::digest(format!("{alg}/{kid}").as_bytes());
    StdRng::from_seed(h.into())
}

fn rsa_key(bits: usize, kid: &str) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rng_for("RSA", &format!("{kid}/{bits}")), bits).unwrap()
}

impl Signer {
    /// A fresh key for `alg` named `kid` (RSA keys are 2048 bits; HMAC keys the hash size).
    pub fn new(alg: &str, kid: &str) -> Signer {
        let alg: &'static str = ALL_ALGS
            .iter()
            .find(|a| **a == alg)
            .copied()
            .unwrap_or_else(|| panic!("alg {alg}"));
        let mut rng = rng_for(alg, kid);
        let secret = match alg {
            "HS256" | "HS384" | "HS512" => {
                let n = if alg == "HS256" {
                    32
                } else if alg == "HS384" {
                    48
                } else {
                    64
                };
                Secret::Hmac((0..n).map(|_| rand::Rng::gen::<u8>(&mut rng)).collect())
            }
            "ES256" => Secret::P256(p256::ecdsa::SigningKey::random(&mut rng)),
            "ES384" => Secret::P384(p384::ecdsa::SigningKey::random(&mut rng)),
            "ES512" => Secret::P521(p521::ecdsa::SigningKey::random(&mut rng)),
            "EdDSA" => Secret::Ed(ed25519_dalek::SigningKey::generate(&mut rng)),
            _ => Secret::Rsa(Box::new(rsa_key(2048, kid))),
        };
        Signer {
            alg,
            kid: kid.to_owned(),
            secret,
        }
    }

    /// An RSA signer with a modulus of `bits` (for key-size tests).
    pub fn rsa_bits(alg: &str, kid: &str, bits: usize) -> Signer {
        let alg: &'static str = ALL_ALGS.iter().find(|a| **a == alg).copied().unwrap();
        Signer {
            alg,
            kid: kid.to_owned(),
            secret: Secret::Rsa(Box::new(rsa_key(bits, kid))),
        }
    }

    /// An HMAC signer with a secret of exactly `len` bytes.
    pub fn hmac_len(alg: &str, kid: &str, len: usize) -> Signer {
        let alg: &'static str = ALL_ALGS.iter().find(|a| **a == alg).copied().unwrap();
        Signer {
            alg,
            kid: kid.to_owned(),
            secret: Secret::Hmac(vec![0x42; len]),
        }
    }

    /// The public JWK (the secret, for HMAC), with `kid` and `alg`.
    pub fn jwk(&self) -> Value {
        let mut v = match &self.secret {
            Secret::Hmac(k) => json!({"kty": "oct", "k": b64::encode(k)}),
            Secret::Rsa(k) => {
                json!({"kty": "RSA", "n": b64::encode(&k.n().to_bytes_be()), "e": b64::encode(&k.e().to_bytes_be())})
            }
            Secret::P256(k) => ec_jwk("P-256", k.verifying_key().to_encoded_point(false).as_bytes()),
            Secret::P384(k) => ec_jwk("P-384", k.verifying_key().to_encoded_point(false).as_bytes()),
            Secret::P521(k) => {
                let vk = p521::ecdsa::VerifyingKey::from(k);
                ec_jwk("P-521", vk.to_encoded_point(false).as_bytes())
            }
            Secret::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.verifying_key().as_bytes())}),
        };
        v["kid"] = json!(self.kid);
        v["alg"] = json!(self.alg);
        v
    }

    /// The JWK without `alg` (the family is then pinned by the key type).
    pub fn jwk_without_alg(&self) -> Value {
        let mut v = self.jwk();
        v.as_object_mut().unwrap().remove("alg");
        v
    }

    /// Raw signature bytes over `input` with this key, using `alg` (which may differ
    /// from the key's own, for confusion tests).
    pub fn sign_bytes(&self, input: &[u8]) -> Vec<u8> {
        let alg = self.alg;
        match &self.secret {
            Secret::Hmac(k) => match alg {
                "HS256" => Hs256.sign(&Hs256Key::new(k), input).as_bytes().to_vec(),
                "HS384" => Hs384.sign(&Hs384Key::new(k), input).as_bytes().to_vec(),
                _ => Hs512.sign(&Hs512Key::new(k), input).as_bytes().to_vec(),
            },
            Secret::Rsa(k) => rsa_sign(alg, k, input),
            Secret::P256(k) => Es256.sign(k, input).as_bytes().to_vec(),
            Secret::P384(k) => Es384.sign(k, input).as_bytes().to_vec(),
            Secret::P521(k) => Es512.sign(k, input).as_bytes().to_vec(),
            Secret::Ed(k) => Ed25519.sign(k, input).as_bytes().to_vec(),
        }
    }

    /// A token with exactly this header and these claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64::encode(header.to_string().as_bytes()),
            b64::encode(claims.to_string().as_bytes())
        );
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64::encode(&sig))
    }

    /// A token with the standard header `{alg, kid, typ: JWT}`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"}), claims)
    }
}

/// An RS*/PS* signature with the `rsa` crate (PSS: random salt of the hash length, RFC 7518 3.5).
fn rsa_sign(alg: &str, key: &rsa::RsaPrivateKey, input: &[u8]) -> Vec<u8> {
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    use sha2::{Sha384, Sha512};
    let key = key.clone();
    let mut rng = rand::thread_rng();
    match alg {
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(key).sign(input).to_vec(),
        "RS384" => rsa::pkcs1v15::SigningKey::<Sha384>::new(key).sign(input).to_vec(),
        "RS512" => rsa::pkcs1v15::SigningKey::<Sha512>::new(key).sign(input).to_vec(),
        "PS256" => rsa::pss::SigningKey::<Sha256>::new(key)
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        "PS384" => rsa::pss::SigningKey::<Sha384>::new(key)
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        "PS512" => rsa::pss::SigningKey::<Sha512>::new(key)
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        other => panic!("{other} is not an RSA algorithm"),
    }
}

fn ec_jwk(crv: &str, sec1: &[u8]) -> Value {
    let size = (sec1.len() - 1) / 2;
    json!({"kty": "EC", "crv": crv, "x": b64::encode(&sec1[1..1 + size]), "y": b64::encode(&sec1[1 + size..])})
}

/// A JWK Set of these signers' public keys.
pub fn jwks(signers: &[&Signer]) -> Value {
    json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()})
}

/// A token from raw segments (for malformed-token tests).
pub fn raw(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64::encode(header.as_bytes()),
        b64::encode(payload.as_bytes()),
        b64::encode(signature)
    )
}

/// Standard valid claims for `iss`/`aud`, valid for an hour from `now`.
pub fn claims(iss: &str, aud: &str, sub: &str, now: u64) -> Value {
    json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 3600, "jti": format!("jti-{sub}-{now}")})
}
