//! Differential test: hopguard's ECDSA verification (`hopguard::ecdsa`, windowed and
//! variable time, built for Wasm) must agree with the RustCrypto `p256`/`p384`/`p521`
//! crates' own `VerifyingKey::verify` on every input: valid signatures, bit flips, edge
//! values of `r` and `s`, high `s`, a wrong message, a wrong hash, a wrong key, and
//! signatures whose `x(R)` lies in `[n, p)` (the `x(R) mod n == r` branch).
//! Random keys and messages come from a fixed seed, so a failure reproduces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Big-endian `v + k` (wrapping in the fixed width).
fn be_add(v: &[u8], k: i64) -> Vec<u8> {
    let mut out = v.to_vec();
    let mut carry = k as i128;
    for b in out.iter_mut().rev() {
        let s = i128::from(*b) + carry;
        *b = s.rem_euclid(256) as u8;
        carry = s.div_euclid(256);
    }
    out
}

/// Big-endian `a - b`, for `a >= b`, same width.
fn be_sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    let mut borrow = 0i32;
    for i in (0..a.len()).rev() {
        let d = i32::from(a[i]) - i32::from(b[i]) - borrow;
        out[i] = d.rem_euclid(256) as u8;
        borrow = i32::from(d < 0);
    }
    assert_eq!(borrow, 0);
    out
}

macro_rules! differential {
    ($test:ident, $c:ident, $curve:ty, $key:ty, $size:literal, $uint:ty, $hash:ty, $wrong_hash:ty, $seed:literal) => {
        #[test]
        fn $test() {
            use hopguard::ecdsa::*;
            use sha2::Digest;
            use $c::ecdsa::signature::hazmat::PrehashSigner;
            use $c::ecdsa::signature::{Signer, Verifier};
            use $c::ecdsa::{Signature, SigningKey, VerifyingKey};
            use $c::elliptic_curve::bigint::Encoding;
            use $c::elliptic_curve::ops::Reduce;
            use $c::elliptic_curve::sec1::FromEncodedPoint;
            use $c::elliptic_curve::Curve as _;

            let mut rng = StdRng::seed_from_u64($seed);
            let order = <$curve>::ORDER.to_be_bytes();
            let n: Vec<u8> = order[order.len() - $size..].to_vec();

            let ours = |vk: &VerifyingKey| -> $key {
                let p = vk.to_encoded_point(false);
                <$key>::from_xy(p.x().unwrap(), p.y().unwrap()).expect("a crate key is on the curve")
            };
            let theirs = |vk: &VerifyingKey, msg: &[u8], sig: &[u8]| -> bool {
                Signature::from_slice(sig).map_or(false, |s| vk.verify(msg, &s).is_ok())
            };
            let mut checked = 0usize;
            let mut accepted = 0usize;
            let mut agree = |what: &str, vk: &VerifyingKey, key: &$key, msg: &[u8], sig: &[u8]| -> bool {
                let want = theirs(vk, msg, sig);
                let got = key.verify(msg, sig);
                assert_eq!(
                    got,
                    want,
                    "{}: {what}: sig {:02x?} msg {:02x?}",
                    stringify!($c),
                    sig,
                    msg
                );
                checked += 1;
                accepted += usize::from(got);
                got
            };

            let sks: Vec<SigningKey> = (0..4).map(|_| SigningKey::random(&mut rng)).collect();
            for (ki, sk) in sks.iter().enumerate() {
                let vk = VerifyingKey::from(sk);
                let key = ours(&vk);
                let other_vk = VerifyingKey::from(&sks[(ki + 1) % sks.len()]);
                let other = ours(&other_vk);
                for _ in 0..4 {
                    let len = rng.gen_range(0..200);
                    let msg: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    let sig: Signature = sk.sign(&msg);
                    let sig = sig.to_bytes().to_vec();
                    assert!(
                        agree("valid", &vk, &key, &msg, &sig),
                        "a valid signature must verify"
                    );

                    // High s: (r, n - s) verifies too (no low-s rule), in both.
                    let high = [&sig[..$size], &be_sub(&n, &sig[$size..])[..]].concat();
                    assert!(agree("high s", &vk, &key, &msg, &high));

                    // Bit flips: the first and last bit and a sample of others.
                    let bits = sig.len() * 8;
                    let mut positions = vec![0, 7, bits / 2, bits - 1];
                    positions.extend((0..16).map(|_| rng.gen_range(0..bits)));
                    for pos in positions {
                        let mut bad = sig.clone();
                        bad[pos / 8] ^= 0x80 >> (pos % 8);
                        assert!(!agree("bit flip", &vk, &key, &msg, &bad));
                    }

                    // Edge values of r and s: 0, 1, n - 1, n, n + 1, 2^(8*size) - 1.
                    let zero = vec![0u8; $size];
                    let edges = [
                        zero.clone(),
                        be_add(&zero, 1),
                        be_add(&n, -1),
                        n.clone(),
                        be_add(&n, 1),
                        vec![0xff; $size],
                    ];
                    for e in &edges {
                        let with_r = [&e[..], &sig[$size..]].concat();
                        let with_s = [&sig[..$size], &e[..]].concat();
                        assert!(!agree("edge r", &vk, &key, &msg, &with_r));
                        assert!(!agree("edge s", &vk, &key, &msg, &with_s));
                    }
                    for e in &edges {
                        for f in &edges {
                            agree("edge r and s", &vk, &key, &msg, &[&e[..], &f[..]].concat());
                        }
                    }

                    // Wrong message, wrong hash, wrong key, wrong length.
                    let mut other_msg = msg.clone();
                    other_msg.push(b'x');
                    assert!(!agree("wrong message", &vk, &key, &other_msg, &sig));
                    let wrong: Signature = sk.sign_prehash(&<$wrong_hash>::digest(&msg)).unwrap();
                    assert!(!agree("wrong hash", &vk, &key, &msg, &wrong.to_bytes()));
                    assert!(!agree("wrong key", &other_vk, &other, &msg, &sig));
                    assert!(!key.verify(&msg, &sig[1..]));
                    assert!(!key.verify(&msg, &[&sig[..], &[0u8][..]].concat()));
                }
            }

            // x(R) in [n, p): pick R with x = n + t, then s = 1 and the key
            // Q = r^-1 * (R - e*G), so that e*G + r*Q = R and r = x(R) mod n = t.
            let mut crafted = 0;
            for t in 1u8..=40 {
                let x = be_add(&n, i64::from(t));
                let mut compressed = vec![0x02];
                compressed.extend_from_slice(&x);
                let Ok(ep) = $c::EncodedPoint::from_bytes(&compressed) else {
                    continue;
                };
                let r_point = Option::<$c::AffinePoint>::from($c::AffinePoint::from_encoded_point(&ep));
                let Some(r_point) = r_point else { continue };
                let msg = format!("crafted {t}").into_bytes();
                let digest = <$hash>::digest(&msg);
                let mut wide = vec![0u8; <$uint>::BYTES - digest.len()];
                wide.extend_from_slice(&digest);
                let e = <$c::Scalar as Reduce<$uint>>::reduce(<$uint>::from_be_slice(&wide));
                let r = $c::Scalar::from(u64::from(t));
                let q = ($c::ProjectivePoint::from(r_point) - $c::ProjectivePoint::GENERATOR * e) * r.invert().unwrap();
                let vk = VerifyingKey::from_affine(q.to_affine()).unwrap();
                let key = ours(&vk);
                let sig = Signature::from_scalars(r, $c::Scalar::ONE)
                    .unwrap()
                    .to_bytes()
                    .to_vec();
                assert!(
                    agree("x(R) >= n", &vk, &key, &msg, &sig),
                    "the r + n branch must accept"
                );
                // (r, n - s) gives -R, the same x: it verifies too.
                let neg_sig = Signature::from_scalars(r, -$c::Scalar::ONE)
                    .unwrap()
                    .to_bytes()
                    .to_vec();
                assert!(agree("x(R) >= n, s negated", &vk, &key, &msg, &neg_sig));
                // A different r (x(R) - n + 1) does not.
                let off = Signature::from_scalars(r + $c::Scalar::ONE, $c::Scalar::ONE)
                    .unwrap()
                    .to_bytes()
                    .to_vec();
                assert!(!agree("x(R) >= n, r + 1", &vk, &key, &msg, &off));
                crafted += 1;
                if crafted == 3 {
                    break;
                }
            }
            assert_eq!(crafted, 3, "found points with x(R) in [n, p)");
            assert!(
                checked > 1000 && accepted > 30,
                "{checked} checked, {accepted} accepted"
            );
        }
    };
}

differential!(
    p256_agrees,
    p256,
    p256::NistP256,
    P256Key,
    32,
    p256::U256,
    sha2::Sha256,
    sha2::Sha384,
    256
);
differential!(
    p384_agrees,
    p384,
    p384::NistP384,
    P384Key,
    48,
    p384::U384,
    sha2::Sha384,
    sha2::Sha512,
    384
);
differential!(
    p521_agrees,
    p521,
    p521::NistP521,
    P521Key,
    66,
    p521::U576,
    sha2::Sha512,
    sha2::Sha384,
    521
);

#[test]
fn off_curve_and_malformed_keys_are_refused() {
    use hopguard::ecdsa::{P256Key, P384Key, P521Key};
    assert!(P256Key::from_xy(&[0u8; 32], &[0u8; 32]).is_none());
    assert!(P256Key::from_xy(&[1u8; 31], &[1u8; 32]).is_none());
    assert!(P256Key::from_xy(&[0xffu8; 32], &[0xffu8; 32]).is_none());
    assert!(P384Key::from_xy(&[0u8; 48], &[0u8; 48]).is_none());
    assert!(P521Key::from_xy(&[0u8; 66], &[0u8; 66]).is_none());
    assert!(P521Key::from_xy(&[0xffu8; 66], &[0xffu8; 66]).is_none());
}
