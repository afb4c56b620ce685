//! Differential test: hopguard's Ed25519 verification (`hopguard::ed25519`, per-key tables,
//! variable time, built for Wasm) must agree with `ed25519-dalek` 2's
//! `VerifyingKey::verify` (cofactorless, `S < l`) on every input, with and without the
//! key's table (the one-shot form, for DPoP proofs), and accept the same keys: valid
//! signatures, bit flips in `R`, `S` and the message, `S + l`, wrong keys, truncated
//! signatures, keys of small and mixed order (where cofactorless verification passes only
//! for some `k`, so both must pass and fail together), non-canonical key encodings, and
//! random 32-byte strings as keys. Random keys and messages come from a fixed seed, so a
//! failure reproduces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hopguard::ed25519::Ed25519Key;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha512};

/// ed25519-dalek's verdict (the oracle), `None` when it refuses the key.
fn dalek(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let vk = VerifyingKey::from_bytes(key).ok()?;
    let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
        return Some(false);
    };
    Some(vk.verify(msg, &sig).is_ok())
}

/// hopguard's verdict with the key's table; the one-shot form (no table, a DPoP proof's
/// key) must agree with it.
fn mine(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let with_table = Ed25519Key::from_bytes(key).map(|k| k.verify(msg, sig));
    let one_shot = Ed25519Key::one_shot(key).map(|k| k.verify(msg, sig));
    assert_eq!(with_table, one_shot, "table and one-shot forms disagree");
    with_table
}

#[track_caller]
fn agree(key: &[u8; 32], msg: &[u8], sig: &[u8], what: &str) -> Option<bool> {
    let (want, got) = (dalek(key, msg, sig), mine(key, msg, sig));
    assert_eq!(got, want, "{what}: key {key:02x?} sig {sig:02x?}");
    got
}

/// `l`, the group order, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn add_le(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out
}

#[test]
fn agrees_with_ed25519_dalek_on_signatures_and_their_corruptions() {
    let mut rng = StdRng::seed_from_u64(0x25519);
    let mut accepted = 0;
    for round in 0..60 {
        let sk = SigningKey::generate(&mut rng);
        let key = sk.verifying_key().to_bytes();
        let len = rng.gen_range(0..400);
        let msg: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let sig = sk.sign(&msg).to_bytes();
        if agree(&key, &msg, &sig, "valid") == Some(true) {
            accepted += 1;
        }
        // One flipped bit in R, in S, in the message.
        for _ in 0..4 {
            let mut bad = sig;
            let bit = rng.gen_range(0..512);
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(agree(&key, &msg, &bad, "flipped signature bit"), Some(false));
        }
        if !msg.is_empty() {
            let mut m = msg.clone();
            let i = rng.gen_range(0..m.len());
            m[i] ^= 1 << rng.gen_range(0..8);
            assert_eq!(agree(&key, &m, &sig, "flipped message bit"), Some(false));
        }
        // S + l: the same residue, refused as non-canonical.
        let mut high = sig;
        high[32..].copy_from_slice(&add_le(&sig[32..], &L));
        if high[63] & 0xe0 == 0 {
            assert_eq!(agree(&key, &msg, &high, "S + l"), Some(false));
        }
        // Another key; a truncated and an extended signature.
        let other = SigningKey::generate(&mut rng).verifying_key().to_bytes();
        assert_eq!(agree(&other, &msg, &sig, "wrong key"), Some(false));
        assert_eq!(agree(&key, &msg, &sig[..63], "63 bytes"), Some(false));
        let mut long = sig.to_vec();
        long.push(0);
        assert_eq!(mine(&key, &msg, &long), Some(false), "65 bytes");
        // The same key verifies again (the table is reused).
        if round % 10 == 0 {
            let k = Ed25519Key::from_bytes(&key).unwrap();
            assert!(k.verify(&msg, &sig) && k.verify(&msg, &sig));
        }
    }
    assert_eq!(accepted, 60);
}

/// `k = SHA-512(R || A || M) mod l`.
fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Signs with a key `A = [a]B + T` (`T` of small order): `R = [r]B`, `S = r + k a`. The
/// cofactorless check passes exactly when `[k]T` is the identity.
fn torsion_signature(a: &Scalar, t: &EdwardsPoint, msg: &[u8], rng: &mut StdRng) -> ([u8; 32], [u8; 64], bool) {
    let key = (ED25519_BASEPOINT_POINT * a + t).compress().to_bytes();
    let r = Scalar::from_bytes_mod_order(rng.gen());
    let big_r = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
    let k = challenge(&big_r, &key, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    (key, sig, (t * k).compress() == EdwardsPoint::default().compress())
}

#[test]
fn agrees_on_keys_of_small_and_mixed_order() {
    let mut rng = StdRng::seed_from_u64(8);
    let (mut passed, mut refused) = (0, 0);
    for (i, t) in EIGHT_TORSION.iter().enumerate() {
        for n in 0..24 {
            let msg = format!("torsion {i} {n}");
            // Mixed order (a != 0) and small order (a = 0: A = T).
            let a = if n % 3 == 0 {
                Scalar::ZERO
            } else {
                Scalar::from_bytes_mod_order(rng.gen())
            };
            let (key, sig, expected) = torsion_signature(&a, t, msg.as_bytes(), &mut rng);
            let got = agree(&key, msg.as_bytes(), &sig, "torsion");
            assert_eq!(got, Some(expected), "torsion {i}: the math says {expected}");
            if expected {
                passed += 1;
            } else {
                refused += 1;
            }
        }
    }
    // Both outcomes were exercised.
    assert!(passed > 20 && refused > 20, "passed {passed}, refused {refused}");
}

#[test]
fn accepts_the_same_keys_as_ed25519_dalek() {
    let mut rng = StdRng::seed_from_u64(32);
    let mut valid = 0;
    for _ in 0..300 {
        let key: [u8; 32] = rng.gen();
        let ok = VerifyingKey::from_bytes(&key).is_ok();
        assert_eq!(Ed25519Key::from_bytes(&key).is_some(), ok, "{key:02x?}");
        valid += usize::from(ok);
    }
    assert!(valid > 100, "{valid} of 300 random strings were keys");
    // Non-canonical y (y + p for y < 19) with both sign bits, the identity, and the
    // small-order points.
    let p_plus = |y: u8, sign: bool| {
        let mut b = [0xffu8; 32];
        b[0] = 0xed_u8.wrapping_add(y);
        b[31] = if sign { 0xff } else { 0x7f };
        b
    };
    for y in 0..19 {
        for sign in [false, true] {
            let key = p_plus(y, sign);
            let ok = VerifyingKey::from_bytes(&key).is_ok();
            assert_eq!(Ed25519Key::from_bytes(&key).is_some(), ok, "y = p + {y}, sign {sign}");
            if ok {
                // A signature that dalek's arithmetic accepts or refuses, the same way.
                let msg = b"non-canonical key";
                let sig = [7u8; 64];
                agree(&key, msg, &sig, "non-canonical key");
            }
        }
    }
    for t in EIGHT_TORSION.iter() {
        let key = t.compress().to_bytes();
        assert!(Ed25519Key::from_bytes(&key).is_some());
    }
}

/// The arithmetic itself, on any input rather than only on signatures (where a wrong point
/// and a right refusal look alike): `[S]B - [k]A` as hopguard computes it, against
/// curve25519-dalek's double-scalar multiplication, in both forms (the key's full table and
/// the one-shot odd multiples), for random keys (of prime, small and
/// mixed order), random `S < l` (and its extremes) and random `R` and messages.
#[test]
fn the_commitment_is_curve25519_dalek_s_for_any_input() {
    let mut rng = StdRng::seed_from_u64(0xc0ffee);
    let mut keys: Vec<[u8; 32]> = (0..12)
        .map(|_| SigningKey::generate(&mut rng).verifying_key().to_bytes())
        .collect();
    for t in EIGHT_TORSION.iter().take(4) {
        keys.push(t.compress().to_bytes());
        let a = Scalar::from_bytes_mod_order(rng.gen());
        keys.push((ED25519_BASEPOINT_POINT * a + t).compress().to_bytes());
    }
    let l_minus_1 = Scalar::ZERO - Scalar::ONE;
    for (n, key) in keys.iter().enumerate() {
        let a = curve25519_dalek::edwards::CompressedEdwardsY(*key)
            .decompress()
            .unwrap();
        let mine = Ed25519Key::from_bytes(key).unwrap();
        let one_shot = Ed25519Key::one_shot(key).unwrap();
        for i in 0..100 {
            let s = match i {
                0 => Scalar::ZERO,
                1 => Scalar::ONE,
                2 => l_minus_1,
                _ => Scalar::from_bytes_mod_order(rng.gen()),
            };
            let r: [u8; 32] = rng.gen();
            let msg: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
            let k = challenge(&r, key, &msg);
            let want = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s)
                .compress()
                .to_bytes();
            assert_eq!(mine.commitment(&r, s.as_bytes(), &msg), Some(want), "key {n}, case {i}");
            assert_eq!(
                one_shot.commitment(&r, s.as_bytes(), &msg),
                Some(want),
                "one-shot key {n}, case {i}"
            );
        }
        // S >= l is no signature.
        assert_eq!(mine.commitment(&[0; 32], &L, b""), None);
        assert_eq!(one_shot.commitment(&[0; 32], &L, b""), None);
    }
}

#[test]
fn rfc8032_test_vector_1() {
    // RFC 8032 7.1, TEST 1 (empty message).
    let key: [u8; 32] = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    let sig: [u8; 64] = hex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    let k = Ed25519Key::from_bytes(&key).unwrap();
    assert!(k.verify(b"", &sig));
    assert!(!k.verify(b"x", &sig));
}

fn hex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}
