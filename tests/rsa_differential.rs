//! hopguard's own RSA verification (`hopguard::rsa_key`) against the `rsa` crate's, which
//! it replaced: on valid signatures, on damaged ones, and on encodings that are almost right.
//! Every case asserts both the agreement and the expected answer.
//!
//! The reference is what hopguard used before: `RsaPublicKey::verify` with
//! `Pkcs1v15Sign::new::<H>()` for RS*, `Pss::new_with_salt::<H>(hash length)` for PS*.
//!
//! Two differences, both in PSS and both on purpose (hopguard follows RFC 8017 8.1.2):
//! - The `rsa` crate 0.9's PSS verification does not check that the signature's integer is
//!   below the modulus (its PKCS#1 v1.5 verification does): `s + n`, when it still fits the
//!   modulus length, verifies there. That makes PS* signatures malleable (a second valid
//!   signature for the same token, without the key). hopguard refuses it (RSAVP1 step 1,
//!   "signature representative out of range"); see `pss_s_plus_n_is_refused`.
//! - For a modulus whose bit length is 1 mod 8 (2049 bits, say), PSS's encoded message is
//!   one byte shorter than the modulus, and step 2c (I2OSP) makes a value that does not fit
//!   an invalid signature. The `rsa` crate drops that leading byte unread; hopguard refuses
//!   it (`pss_leading_byte_beyond_em_len`). Only the key's holder can make such a value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hopguard::rsa_key::{RsaKey, Scheme};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::sync::OnceLock;

const SCHEMES: [Scheme; 6] = [
    Scheme::Rs256,
    Scheme::Rs384,
    Scheme::Rs512,
    Scheme::Ps256,
    Scheme::Ps384,
    Scheme::Ps512,
];

fn name(s: Scheme) -> &'static str {
    match s {
        Scheme::Rs256 => "RS256",
        Scheme::Rs384 => "RS384",
        Scheme::Rs512 => "RS512",
        Scheme::Ps256 => "PS256",
        Scheme::Ps384 => "PS384",
        Scheme::Ps512 => "PS512",
    }
}

fn hash_len(s: Scheme) -> usize {
    match s {
        Scheme::Rs256 | Scheme::Ps256 => 32,
        Scheme::Rs384 | Scheme::Ps384 => 48,
        Scheme::Rs512 | Scheme::Ps512 => 64,
    }
}

fn digest(s: Scheme, m: &[u8]) -> Vec<u8> {
    match hash_len(s) {
        32 => Sha256::digest(m).to_vec(),
        48 => Sha384::digest(m).to_vec(),
        _ => Sha512::digest(m).to_vec(),
    }
}

/// The test keys: (bits, e). RSA key generation is slow, so few keys, made once.
const KEY_SPECS: [(usize, u64); 6] = [
    (2048, 65537),
    (3072, 65537),
    (4096, 65537),
    (2048, 3),
    (3072, 3),
    (2049, 65537),
];

fn keys() -> &'static Vec<RsaPrivateKey> {
    static KEYS: OnceLock<Vec<RsaPrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        KEY_SPECS
            .iter()
            .map(|&(bits, e)| {
                let mut rng = StdRng::seed_from_u64(bits as u64 * 1000 + e);
                let key = RsaPrivateKey::new_with_exp(&mut rng, bits, &BigUint::from(e)).unwrap();
                assert_eq!(key.n().bits(), bits);
                key
            })
            .collect()
    })
}

fn ours(key: &RsaPrivateKey) -> RsaKey {
    RsaKey::new(&key.n().to_bytes_be(), &key.e().to_bytes_be()).unwrap()
}

/// The `rsa` crate's answer, as jwt-compact asked it before.
fn reference(pk: &RsaPublicKey, s: Scheme, message: &[u8], sig: &[u8]) -> bool {
    let h = digest(s, message);
    match s {
        Scheme::Rs256 => pk.verify(Pkcs1v15Sign::new::<Sha256>(), &h, sig).is_ok(),
        Scheme::Rs384 => pk.verify(Pkcs1v15Sign::new::<Sha384>(), &h, sig).is_ok(),
        Scheme::Rs512 => pk.verify(Pkcs1v15Sign::new::<Sha512>(), &h, sig).is_ok(),
        Scheme::Ps256 => pk.verify(Pss::new_with_salt::<Sha256>(32), &h, sig).is_ok(),
        Scheme::Ps384 => pk.verify(Pss::new_with_salt::<Sha384>(48), &h, sig).is_ok(),
        Scheme::Ps512 => pk.verify(Pss::new_with_salt::<Sha512>(64), &h, sig).is_ok(),
    }
}

fn sign(key: &RsaPrivateKey, s: Scheme, message: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let h = digest(s, message);
    match s {
        Scheme::Rs256 => key.sign(Pkcs1v15Sign::new::<Sha256>(), &h),
        Scheme::Rs384 => key.sign(Pkcs1v15Sign::new::<Sha384>(), &h),
        Scheme::Rs512 => key.sign(Pkcs1v15Sign::new::<Sha512>(), &h),
        Scheme::Ps256 => key.sign_with_rng(rng, Pss::new::<Sha256>(), &h),
        Scheme::Ps384 => key.sign_with_rng(rng, Pss::new::<Sha384>(), &h),
        Scheme::Ps512 => key.sign_with_rng(rng, Pss::new::<Sha512>(), &h),
    }
    .unwrap()
}

/// A PSS signature with a salt of `salt_len` bytes (RFC 7518 3.5 wants the hash length).
fn sign_pss_salt(key: &RsaPrivateKey, s: Scheme, message: &[u8], salt_len: usize, rng: &mut StdRng) -> Vec<u8> {
    let h = digest(s, message);
    match s {
        Scheme::Ps256 => key.sign_with_rng(rng, Pss::new_with_salt::<Sha256>(salt_len), &h),
        Scheme::Ps384 => key.sign_with_rng(rng, Pss::new_with_salt::<Sha384>(salt_len), &h),
        Scheme::Ps512 => key.sign_with_rng(rng, Pss::new_with_salt::<Sha512>(salt_len), &h),
        _ => panic!("not PSS"),
    }
    .unwrap()
}

/// `x` as exactly `k` big-endian bytes.
fn be(x: &BigUint, k: usize) -> Vec<u8> {
    let b = x.to_bytes_be();
    assert!(b.len() <= k);
    let mut out = vec![0; k - b.len()];
    out.extend_from_slice(&b);
    out
}

/// The raw RSA private operation on an encoded message: a signature of exactly `em`.
fn raw_sign(key: &RsaPrivateKey, em: &[u8]) -> Vec<u8> {
    let m = BigUint::from_bytes_be(em);
    assert!(&m < key.n());
    be(&m.modpow(key.d(), key.n()), key.size())
}

/// Both verifiers; asserts that they agree and returns the common answer.
fn both(key: &RsaPrivateKey, s: Scheme, message: &[u8], sig: &[u8], what: &str) -> bool {
    let ours = ours(key).verify(s, message, sig);
    let theirs = reference(&key.to_public_key(), s, message, sig);
    assert_eq!(
        ours,
        theirs,
        "{what}: {} bits, e = {}, {}",
        key.n().bits(),
        key.e(),
        name(s)
    );
    ours
}

fn random_message(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(0..300);
    (0..len).map(|_| rng.gen()).collect()
}

#[test]
fn valid_signatures_verify_for_every_key_and_scheme() {
    let mut rng = StdRng::seed_from_u64(1);
    for key in keys() {
        let ours = ours(key);
        assert_eq!(ours.bits(), key.n().bits());
        assert_eq!(ours.modulus(), key.n().to_bytes_be());
        for s in SCHEMES {
            let messages = if key.n().bits() >= 4096 { 4 } else { 10 };
            for _ in 0..messages {
                let m = random_message(&mut rng);
                let sig = sign(key, s, &m, &mut rng);
                assert!(both(key, s, &m, &sig, "valid"), "valid signature refused");
                // Another message, another scheme: refused.
                let mut other = m.clone();
                other.push(0);
                assert!(!both(key, s, &other, &sig, "other message"));
                for t in SCHEMES.into_iter().filter(|t| *t != s) {
                    assert!(!both(key, t, &m, &sig, "other scheme"));
                }
            }
        }
    }
}

#[test]
fn every_sampled_bit_flip_is_refused() {
    let mut rng = StdRng::seed_from_u64(2);
    for key in keys() {
        let k = key.size();
        for s in SCHEMES {
            let m = random_message(&mut rng);
            let sig = sign(key, s, &m, &mut rng);
            // The first and last 12 bits, and 24 more at random.
            let mut positions: Vec<usize> = (0..12).chain(8 * k - 12..8 * k).collect();
            positions.extend((0..24).map(|_| rng.gen_range(0..8 * k)));
            for bit in positions {
                let mut bad = sig.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(!both(key, s, &m, &bad, &format!("signature bit {bit} flipped")));
            }
            // A bit of the message, too.
            if !m.is_empty() {
                let mut bad = m.clone();
                let bit = rng.gen_range(0..8 * m.len());
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(!both(key, s, &bad, &sig, "message bit flipped"));
            }
        }
    }
}

#[test]
fn signatures_not_below_the_modulus_or_of_the_wrong_length_are_refused() {
    let mut rng = StdRng::seed_from_u64(3);
    for key in keys() {
        let n = key.n();
        let k = key.size();
        let one = BigUint::from(1u8);
        for s in SCHEMES {
            let m = random_message(&mut rng);
            let sig = sign(key, s, &m, &mut rng);
            assert!(both(key, s, &m, &sig, "valid"));
            for (what, bad) in [
                ("s = n", be(n, k)),
                ("s = n + 1", (n + &one).to_bytes_be()),
                ("s = n - 1", be(&(n - &one), k)),
                ("s = 0", vec![0; k]),
                ("s = 1", be(&one, k)),
                ("all ones", vec![0xff; k]),
                ("empty", vec![]),
                ("one byte", vec![1]),
                ("last byte cut", sig[..k - 1].to_vec()),
                ("first byte cut", sig[1..].to_vec()),
                ("leading zero added", [&[0u8][..], &sig].concat()),
                ("trailing zero added", [&sig[..], &[0u8]].concat()),
                ("doubled", [&sig[..], &sig[..]].concat()),
            ] {
                assert!(!both(key, s, &m, &bad, what), "{what}");
            }
        }
    }
}

#[test]
fn a_signature_with_a_leading_zero_byte_keeps_its_full_length() {
    // RFC 7515 and RFC 8017 8.2.2 step 1: the signature is exactly k bytes, so a signature
    // whose integer is shorter keeps its leading zero; without it, it is refused.
    let key = &keys()[0];
    let mut found = 0;
    for i in 0u32..5000 {
        let m = i.to_be_bytes();
        let sig = sign(key, Scheme::Rs256, &m, &mut StdRng::seed_from_u64(0));
        if sig[0] != 0 {
            continue;
        }
        assert!(both(key, Scheme::Rs256, &m, &sig, "leading zero kept"));
        assert!(!both(key, Scheme::Rs256, &m, &sig[1..], "leading zero dropped"));
        found += 1;
        if found == 2 {
            return;
        }
    }
    panic!("no signature with a leading zero byte among 5000");
}

#[test]
fn pss_salt_must_be_the_hash_length() {
    // RFC 7518 3.5. The `rsa` crate, told the salt length, refuses other lengths too: its
    // check of the zero padding and the 0x01 separator sits where that length puts it.
    let mut rng = StdRng::seed_from_u64(4);
    for key in keys() {
        let pk = key.to_public_key();
        for s in [Scheme::Ps256, Scheme::Ps384, Scheme::Ps512] {
            let h_len = hash_len(s);
            for salt_len in [0, 20, h_len - 1, h_len + 1, 64, 2 * h_len] {
                if salt_len == h_len {
                    continue;
                }
                let m = random_message(&mut rng);
                let sig = sign_pss_salt(key, s, &m, salt_len, &mut rng);
                // Well formed with its own salt length ...
                let h = digest(s, &m);
                let own = match s {
                    Scheme::Ps256 => pk.verify(Pss::new_with_salt::<Sha256>(salt_len), &h, &sig),
                    Scheme::Ps384 => pk.verify(Pss::new_with_salt::<Sha384>(salt_len), &h, &sig),
                    _ => pk.verify(Pss::new_with_salt::<Sha512>(salt_len), &h, &sig),
                };
                assert!(own.is_ok(), "salt {salt_len} signature is well formed");
                // ... and refused for JWS.
                assert!(!both(key, s, &m, &sig, &format!("salt of {salt_len} bytes")));
            }
        }
    }
}

/// `00 01 FF.. 00 || t`, `k` bytes.
fn pkcs1_em(k: usize, t: &[u8]) -> Vec<u8> {
    let mut em = vec![0x00, 0x01];
    em.resize(k - t.len() - 1, 0xff);
    em.push(0x00);
    em.extend_from_slice(t);
    assert_eq!(em.len(), k);
    em
}

const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];
/// The same DigestInfo without the NULL parameters (lengths adjusted).
const SHA256_PREFIX_NO_NULL: [u8; 17] = [
    0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x04, 0x20,
];

#[test]
fn pkcs1v15_is_encode_and_compare() {
    let mut rng = StdRng::seed_from_u64(5);
    for key in keys() {
        let pk = key.to_public_key();
        let k = key.size();
        let m = random_message(&mut rng);
        let h = Sha256::digest(&m).to_vec();
        let t = [&SHA256_PREFIX[..], &h].concat();
        // The harness: the right encoding, signed raw, verifies.
        let good = raw_sign(key, &pkcs1_em(k, &t));
        assert_eq!(good, sign(key, Scheme::Rs256, &m, &mut rng));
        assert!(both(key, Scheme::Rs256, &m, &good, "raw-signed valid encoding"));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "DigestInfo without NULL parameters",
                pkcs1_em(k, &[&SHA256_PREFIX_NO_NULL[..], &h].concat()),
            ),
            (
                "trailing garbage after the hash",
                pkcs1_em(k, &[&t[..], &[0xde, 0xad, 0xbe, 0xef]].concat()),
            ),
            (
                "trailing zero byte after the hash",
                pkcs1_em(k, &[&t[..], &[0]].concat()),
            ),
            ("bare hash, no DigestInfo", pkcs1_em(k, &h)),
            ("SHA-384 DigestInfo around a SHA-256 hash", {
                let mut p = SHA256_PREFIX.to_vec();
                p[14] = 0x02;
                pkcs1_em(k, &[&p[..], &h].concat())
            }),
            ("block type 2", {
                let mut em = pkcs1_em(k, &t);
                em[1] = 0x02;
                em
            }),
            ("a padding byte not FF", {
                let mut em = pkcs1_em(k, &t);
                em[20] = 0xfe;
                em
            }),
            ("separator not zero", {
                let mut em = pkcs1_em(k, &t);
                em[k - t.len() - 1] = 0x01;
                em
            }),
        ];
        for (what, em) in cases {
            let sig = raw_sign(key, &em);
            assert!(!both(key, Scheme::Rs256, &m, &sig, what), "{what}");
        }
        // A hand-made unprefixed check proves the raw signing: the DigestInfo without NULL
        // verifies as "unprefixed" data in the `rsa` crate.
        let no_null = [&SHA256_PREFIX_NO_NULL[..], &h].concat();
        let sig = raw_sign(key, &pkcs1_em(k, &no_null));
        assert!(pk.verify(Pkcs1v15Sign::new_unprefixed(), &no_null, &sig).is_ok());
    }
}

#[test]
fn pss_every_check_of_rfc8017_9_1_2() {
    // Valid PSS encodings made by hand, then broken one check at a time and signed raw.
    let mut rng = StdRng::seed_from_u64(6);
    for key in keys() {
        let k = key.size();
        let mod_bits = key.n().bits();
        let em_bits = mod_bits - 1;
        let em_len = em_bits.div_ceil(8);
        let s = Scheme::Ps256;
        let m = random_message(&mut rng);
        let m_hash = Sha256::digest(&m);
        let salt: [u8; 32] = rng.gen();
        let encode = |salt: &[u8], sep: u8, ps_fill: u8, trailer: u8, top_bits: bool| -> Vec<u8> {
            let h = Sha256::new()
                .chain_update([0u8; 8])
                .chain_update(m_hash)
                .chain_update(salt)
                .finalize();
            let db_len = em_len - 32 - 1;
            let mut db = vec![ps_fill; db_len - salt.len() - 1];
            db.push(sep);
            db.extend_from_slice(salt);
            // MGF1-SHA256(h)
            let mut mask = Vec::new();
            let mut c = 0u32;
            while mask.len() < db_len {
                mask.extend_from_slice(&Sha256::new().chain_update(h).chain_update(c.to_be_bytes()).finalize());
                c += 1;
            }
            let mut em: Vec<u8> = db.iter().zip(&mask).map(|(d, x)| d ^ x).collect();
            let unused = 8 * em_len - em_bits;
            em[0] &= 0xff >> unused;
            if top_bits && unused > 0 {
                em[0] |= 0x80;
            }
            em.extend_from_slice(&h);
            em.push(trailer);
            // Left-padded to k bytes.
            let mut full = vec![0; k - em_len];
            full.extend_from_slice(&em);
            full
        };
        let good = raw_sign(key, &encode(&salt, 0x01, 0x00, 0xbc, false));
        assert!(both(key, s, &m, &good, "hand-made PSS encoding"));
        for (what, em) in [
            ("trailer not 0xbc", encode(&salt, 0x01, 0x00, 0xbd, false)),
            ("separator not 0x01", encode(&salt, 0x02, 0x00, 0xbc, false)),
            ("PS not zero", encode(&salt, 0x01, 0x01, 0xbc, false)),
            ("salt of 31 bytes", encode(&salt[1..], 0x01, 0x00, 0xbc, false)),
        ] {
            assert!(!both(key, s, &m, &raw_sign(key, &em), what), "{what}");
        }
        if 8 * em_len > em_bits {
            // The unused top bit of EM set: refused (step 6). The value must stay below n:
            // another salt until it does.
            let em = (0..64)
                .map(|_| encode(&rng.gen::<[u8; 32]>(), 0x01, 0x00, 0xbc, true))
                .find(|em| &BigUint::from_bytes_be(em) < key.n())
                .unwrap();
            assert!(!both(key, s, &m, &raw_sign(key, &em), "leftmost bits set"));
        }
    }
}

#[test]
fn pss_leading_byte_beyond_em_len() {
    // The documented difference: a 2049-bit modulus, emLen = k - 1. A value with a non-zero
    // byte above emLen (and a valid PSS encoding below it) is refused by hopguard (RFC 8017
    // 8.1.2 step 2c) and accepted by the `rsa` crate 0.9, which ignores that byte.
    let key = keys().iter().find(|k| k.n().bits() == 2049).unwrap();
    let k = key.size();
    let mut rng = StdRng::seed_from_u64(7);
    // A message whose EM, with 0x01 put above it, is still below n.
    let (m, forged) = (0..200)
        .find_map(|_| {
            let m = random_message(&mut rng);
            let sig = sign(key, Scheme::Ps256, &m, &mut rng);
            assert!(both(key, Scheme::Ps256, &m, &sig, "valid"));
            let mut em = be(&BigUint::from_bytes_be(&sig).modpow(key.e(), key.n()), k);
            assert_eq!(em[0], 0, "emLen = k - 1");
            em[0] = 0x01;
            (&BigUint::from_bytes_be(&em) < key.n()).then_some((m, em))
        })
        .unwrap();
    let bad = raw_sign(key, &forged);
    assert!(!ours(key).verify(Scheme::Ps256, &m, &bad), "hopguard refuses");
    assert!(
        reference(&key.to_public_key(), Scheme::Ps256, &m, &bad),
        "the rsa crate accepts (if this fails, the rsa crate changed: update the module doc)"
    );
}

#[test]
fn pss_s_plus_n_is_refused() {
    // The other documented difference: s + n (when it fits k bytes) for a valid s.
    let mut rng = StdRng::seed_from_u64(9);
    let mut seen = 0;
    for key in keys() {
        let (n, k) = (key.n(), key.size());
        for s in SCHEMES {
            let m = random_message(&mut rng);
            let sig = sign(key, s, &m, &mut rng);
            let bumped = (BigUint::from_bytes_be(&sig) + n).to_bytes_be();
            if bumped.len() != k {
                continue;
            }
            seen += 1;
            assert!(!ours(key).verify(s, &m, &bumped), "hopguard refuses s + n");
            let theirs = reference(&key.to_public_key(), s, &m, &bumped);
            match s {
                Scheme::Rs256 | Scheme::Rs384 | Scheme::Rs512 => assert!(!theirs, "rsa crate, PKCS#1 v1.5"),
                _ => assert!(
                    theirs,
                    "the rsa crate's PSS accepts s + n (if not, it changed: update the doc)"
                ),
            }
        }
    }
    assert!(seen > 6, "s + n fit the modulus length {seen} times");
}

#[test]
fn small_exponent_by_hand() {
    // e = 3: the raw signature of a valid encoding verifies, and s^3 mod n, computed here
    // with plain BigUint products, is that encoding.
    let key = keys().iter().find(|k| k.e() == &BigUint::from(3u8)).unwrap();
    let k = key.size();
    let m = b"hand-made";
    let t = [&SHA256_PREFIX[..], &Sha256::digest(m)].concat();
    let em = pkcs1_em(k, &t);
    let sig = raw_sign(key, &em);
    let s = BigUint::from_bytes_be(&sig);
    assert_eq!(be(&(&s * &s * &s % key.n()), k), em);
    assert!(both(key, Scheme::Rs256, m, &sig, "e = 3"));
}

#[test]
fn configured_through_a_jwks_and_verified_through_key() {
    // The path the filter takes: a JWK parsed by hopguard::jwks, Key::verify.
    let key = &keys()[0];
    let jwk = serde_json::json!({"keys": [{
        "kty": "RSA", "kid": "k",
        "n": hopguard::b64::encode(&key.n().to_bytes_be()),
        "e": hopguard::b64::encode(&key.e().to_bytes_be()),
    }]});
    let set = hopguard::jwks::JwkSet::parse(&jwk, "$").unwrap();
    assert!(set.errors.is_empty());
    let keys = set.keys;
    let mut rng = StdRng::seed_from_u64(8);
    for s in SCHEMES {
        let hopguard::algorithm::AlgName::Known(alg) = hopguard::algorithm::Alg::parse(name(s)) else {
            panic!("{}", name(s));
        };
        let sig = sign(key, s, b"input", &mut rng);
        assert!(keys[0].verify(alg, b"input", &sig));
        assert!(!keys[0].verify(alg, b"inpvt", &sig));
    }
}
