//! ECDSA verification for JWS ES256, ES384 and ES512 (RFC 7518 3.4), built for speed in
//! V8 Wasm.
//!
//! [`P256Key`], [`P384Key`] and [`P521Key`] are built once from a JWK's `x` and `y` (at
//! configure time) and verify JWS signatures (`R || S`, each the curve's field size: 32,
//! 48 or 66 bytes; not DER) per SEC1 4.1.4: `r` and `s` in `[1, n-1]`; `e` the hash
//! (SHA-256, SHA-384, SHA-512) as an integer, reduced mod `n` (no hash is longer than its
//! curve's order, so there is nothing to truncate); `w = s^-1`, `u1 = e*w`, `u2 = r*w`;
//! `R = u1*G + u2*Q`, not the point at infinity; accept when `x(R) mod n == r`. High `s`
//! is accepted, as the RustCrypto `p256`/`p384`/`p521` crates do (JWS has no low-s rule);
//! `tests/ecdsa_differential.rs` checks agreement with those crates case by case.
//!
//! Why not those crates: on 32-bit targets (wasm32) their field arithmetic multiplies
//! 64-bit limbs into 128-bit products, which Wasm has no instruction for, and their
//! constant-time scalar multiplication and inversions are built for secret scalars. A
//! verification only handles public data (key, message, signature), so this module is
//! variable time by design: branches and table indices depend on the signature.
//!
//! How it is fast:
//! - field and scalar arithmetic: Montgomery multiplication over 32-bit limbs with 64-bit
//!   products (one Wasm `i64.mul` each), the curve constants folded in per curve;
//! - `u1*G + u2*Q` is one interleaved (Straus) loop over wNAF digits, with each scalar split
//!   into [`Curve::PIECES`] pieces of `L` bits (`u = sum u_j * 2^(jL)`), so the loop runs
//!   only `L` doublings and adds the pieces' digits from tables of odd multiples of
//!   `2^(jL)*Q` and `2^(jL)*G` in affine coordinates (mixed Jacobian + affine additions);
//! - the per-key table (odd multiples of `Q`) is built with the key; the table for `G` is
//!   built once per curve and VM (`OnceLock`), with the first key of the curve;
//! - `s^-1 mod n` by a variable-time binary extended Euclid; `x(R) mod n == r` is checked
//!   as `X == r*Z^2` (or `(r+n)*Z^2`) in Jacobian coordinates, with no field inversion.
//!
//! Table sizes (affine point = 2 field elements of 4N bytes; N = 8, 12, 17 limbs), with
//! `PIECES = 6`, `WQ = 5`, `WG = 7` ([`table_bytes`] computes them): per key
//! `6 * 8` points, 3 KB (P-256), 4.5 KB (P-384), 6.4 KB (P-521); per curve and VM
//! `6 * 32` points, 12 KB, 18 KB, 25.5 KB, built only for the curves in use. Wider
//! settings were measured in V8 (`scripts/bench-crypto`) without a clear further gain.
//!
//! The jwt-compact `Algorithm` impls at the end ([`Es384`], [`Es512`]) are for signing
//! (tests, fixtures); jwt-compact ships ES256 only.

use sha2::Digest;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use crate::mp::{self, Limbs};

/// Arithmetic modulo an odd prime `P` of `N` limbs, in the Montgomery domain (`R = 2^(32N)`).
trait Field<const N: usize>: 'static {
    const P: Limbs<N>;
    const M0: u32 = mp::neg_inv(Self::P[0]);
    /// `R mod P`: one, in the Montgomery domain.
    const ONE: Limbs<N> = mp::pow2_mod(32 * N, &Self::P);
    /// `R^2 mod P`: converts into the Montgomery domain.
    const R2: Limbs<N> = mp::pow2_mod(64 * N, &Self::P);

    #[inline]
    fn mul(a: &Limbs<N>, b: &Limbs<N>) -> Limbs<N> {
        mp::mont_mul(a, b, &Self::P, Self::M0)
    }
    #[inline]
    fn sqr(a: &Limbs<N>) -> Limbs<N> {
        mp::mont_mul(a, a, &Self::P, Self::M0)
    }
    #[inline]
    fn add(a: &Limbs<N>, b: &Limbs<N>) -> Limbs<N> {
        mp::add_mod(a, b, &Self::P)
    }
    #[inline]
    fn sub(a: &Limbs<N>, b: &Limbs<N>) -> Limbs<N> {
        mp::sub_mod(a, b, &Self::P)
    }
    #[inline]
    fn neg(a: &Limbs<N>) -> Limbs<N> {
        mp::sub_mod(&[0; N], a, &Self::P)
    }
    fn to_mont(a: &Limbs<N>) -> Limbs<N> {
        Self::mul(a, &Self::R2)
    }
    /// `a^(P-2)`: the inverse of a nonzero `a` (Fermat; configure time only).
    fn invert(a: &Limbs<N>) -> Limbs<N> {
        let mut e = Self::P;
        e = mp::sub(&e, &{
            let mut two = [0u32; N];
            if let Some(w) = two.first_mut() {
                *w = 2;
            }
            two
        })
        .0;
        let mut r = Self::ONE;
        for limb in e.iter().rev() {
            for bit in (0..32).rev() {
                r = Self::sqr(&r);
                if (limb >> bit) & 1 == 1 {
                    r = Self::mul(&r, a);
                }
            }
        }
        r
    }
}

fn is_zero<const N: usize>(a: &Limbs<N>) -> bool {
    a.iter().all(|&w| w == 0)
}

/// Big-endian bytes to limbs; `None` when the value needs more than `N` limbs.
fn from_be<const N: usize>(bytes: &[u8]) -> Option<Limbs<N>> {
    let mut out = [0u32; N];
    for (i, &b) in bytes.iter().rev().enumerate() {
        if b != 0 {
            let w = out.get_mut(i / 4)?;
            *w |= u32::from(b) << ((i % 4) * 8);
        }
    }
    Some(out)
}

/// A point in affine coordinates, Montgomery domain.
#[derive(Clone, Copy)]
struct Affine<const N: usize> {
    x: Limbs<N>,
    y: Limbs<N>,
}

/// A point in Jacobian coordinates (`x = X/Z^2, y = Y/Z^3`), Montgomery domain; `Z = 0`
/// is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian<const N: usize> {
    x: Limbs<N>,
    y: Limbs<N>,
    z: Limbs<N>,
}

/// A NIST prime curve `y^2 = x^3 - 3x + b` of prime order `n`.
trait Curve<const N: usize>: Sized + 'static {
    /// The base field.
    type Fp: Field<N>;
    /// The scalar field (mod the group order `n`).
    type Fn: Field<N>;
    type Hash: Digest;
    /// Field element and scalar size in bytes (JWK coordinates, signature halves).
    const BYTES: usize;
    /// Bit length of `n`.
    const BITS: usize;
    const B: Limbs<N>;
    const GX: Limbs<N>;
    const GY: Limbs<N>;
    /// Scalars are split into this many pieces of `L` bits (`L` doublings per verify).
    const PIECES: usize;
    /// wNAF window for `Q` (per-key table of `PIECES * 2^(WQ-2)` points).
    const WQ: u32;
    /// wNAF window for `G` (per-curve table of `PIECES * 2^(WG-2)` points).
    const WG: u32;
    /// Piece length in bits: wNAF digits cover `BITS + 1` positions.
    const L: usize = (Self::BITS + 1).div_ceil(Self::PIECES);

    fn g_table() -> &'static [Affine<N>];
}

fn double<C: Curve<N>, const N: usize>(p: &Jacobian<N>) -> Jacobian<N> {
    type F<C, const N: usize> = <C as Curve<N>>::Fp;
    if is_zero(&p.z) {
        return *p;
    }
    // dbl-2001-b (a = -3): 3M + 5S.
    let delta = F::<C, N>::sqr(&p.z);
    let gamma = F::<C, N>::sqr(&p.y);
    let beta = F::<C, N>::mul(&p.x, &gamma);
    let t = F::<C, N>::mul(&F::<C, N>::sub(&p.x, &delta), &F::<C, N>::add(&p.x, &delta));
    let alpha = F::<C, N>::add(&F::<C, N>::add(&t, &t), &t);
    let beta2 = F::<C, N>::add(&beta, &beta);
    let beta4 = F::<C, N>::add(&beta2, &beta2);
    let beta8 = F::<C, N>::add(&beta4, &beta4);
    let x3 = F::<C, N>::sub(&F::<C, N>::sqr(&alpha), &beta8);
    let yz = F::<C, N>::add(&p.y, &p.z);
    let z3 = F::<C, N>::sub(&F::<C, N>::sub(&F::<C, N>::sqr(&yz), &gamma), &delta);
    let g2 = F::<C, N>::sqr(&gamma);
    let g2x2 = F::<C, N>::add(&g2, &g2);
    let g2x4 = F::<C, N>::add(&g2x2, &g2x2);
    let g2x8 = F::<C, N>::add(&g2x4, &g2x4);
    let y3 = F::<C, N>::sub(&F::<C, N>::mul(&alpha, &F::<C, N>::sub(&beta4, &x3)), &g2x8);
    Jacobian { x: x3, y: y3, z: z3 }
}

/// `p + (x2, y2)`, the second point affine (not infinity): 8M + 3S.
fn add_affine<C: Curve<N>, const N: usize>(p: &Jacobian<N>, x2: &Limbs<N>, y2: &Limbs<N>) -> Jacobian<N> {
    type F<C, const N: usize> = <C as Curve<N>>::Fp;
    if is_zero(&p.z) {
        return Jacobian {
            x: *x2,
            y: *y2,
            z: F::<C, N>::ONE,
        };
    }
    let z1z1 = F::<C, N>::sqr(&p.z);
    let u2 = F::<C, N>::mul(x2, &z1z1);
    let s2 = F::<C, N>::mul(y2, &F::<C, N>::mul(&p.z, &z1z1));
    let h = F::<C, N>::sub(&u2, &p.x);
    let r = F::<C, N>::sub(&s2, &p.y);
    if is_zero(&h) {
        return if is_zero(&r) {
            double::<C, N>(p)
        } else {
            Jacobian {
                x: F::<C, N>::ONE,
                y: F::<C, N>::ONE,
                z: [0; N],
            }
        };
    }
    let z3 = F::<C, N>::mul(&p.z, &h);
    let hh = F::<C, N>::sqr(&h);
    let hhh = F::<C, N>::mul(&hh, &h);
    let v = F::<C, N>::mul(&p.x, &hh);
    let x3 = F::<C, N>::sub(&F::<C, N>::sub(&F::<C, N>::sqr(&r), &hhh), &F::<C, N>::add(&v, &v));
    let y3 = F::<C, N>::sub(
        &F::<C, N>::mul(&r, &F::<C, N>::sub(&v, &x3)),
        &F::<C, N>::mul(&p.y, &hhh),
    );
    Jacobian { x: x3, y: y3, z: z3 }
}

/// `p + q`, both Jacobian (configure time only).
fn add_jacobian<C: Curve<N>, const N: usize>(p: &Jacobian<N>, q: &Jacobian<N>) -> Jacobian<N> {
    type F<C, const N: usize> = <C as Curve<N>>::Fp;
    if is_zero(&p.z) {
        return *q;
    }
    if is_zero(&q.z) {
        return *p;
    }
    let z1z1 = F::<C, N>::sqr(&p.z);
    let z2z2 = F::<C, N>::sqr(&q.z);
    let u1 = F::<C, N>::mul(&p.x, &z2z2);
    let u2 = F::<C, N>::mul(&q.x, &z1z1);
    let s1 = F::<C, N>::mul(&p.y, &F::<C, N>::mul(&q.z, &z2z2));
    let s2 = F::<C, N>::mul(&q.y, &F::<C, N>::mul(&p.z, &z1z1));
    let h = F::<C, N>::sub(&u2, &u1);
    let r = F::<C, N>::sub(&s2, &s1);
    if is_zero(&h) {
        return if is_zero(&r) {
            double::<C, N>(p)
        } else {
            Jacobian {
                x: F::<C, N>::ONE,
                y: F::<C, N>::ONE,
                z: [0; N],
            }
        };
    }
    let hh = F::<C, N>::sqr(&h);
    let hhh = F::<C, N>::mul(&hh, &h);
    let v = F::<C, N>::mul(&u1, &hh);
    let x3 = F::<C, N>::sub(&F::<C, N>::sub(&F::<C, N>::sqr(&r), &hhh), &F::<C, N>::add(&v, &v));
    let y3 = F::<C, N>::sub(
        &F::<C, N>::mul(&r, &F::<C, N>::sub(&v, &x3)),
        &F::<C, N>::mul(&s1, &hhh),
    );
    let z3 = F::<C, N>::mul(&F::<C, N>::mul(&p.z, &q.z), &h);
    Jacobian { x: x3, y: y3, z: z3 }
}

/// The table for the wNAF pieces of `p`: for each piece `j`, the odd multiples
/// `1, 3, .., 2^(w-1)-1` of `2^(jL) * p`, in affine coordinates. `None` if a multiple is
/// the point at infinity (never for a point of prime order `n`).
fn build_table<C: Curve<N>, const N: usize>(p: &Affine<N>, w: u32) -> Option<Vec<Affine<N>>> {
    type F<C, const N: usize> = <C as Curve<N>>::Fp;
    let per = 1usize << (w - 2);
    let mut jac = Vec::with_capacity(C::PIECES * per);
    let mut base = Jacobian {
        x: p.x,
        y: p.y,
        z: F::<C, N>::ONE,
    };
    for j in 0..C::PIECES {
        if j > 0 {
            for _ in 0..C::L {
                base = double::<C, N>(&base);
            }
        }
        let two = double::<C, N>(&base);
        let mut cur = base;
        jac.push(cur);
        for _ in 1..per {
            cur = add_jacobian::<C, N>(&cur, &two);
            jac.push(cur);
        }
    }
    if jac.iter().any(|q| is_zero(&q.z)) {
        return None;
    }
    // Batch inversion of the Z coordinates (Montgomery's trick): one field inversion.
    let mut prefix = Vec::with_capacity(jac.len());
    let mut acc = F::<C, N>::ONE;
    for q in &jac {
        acc = F::<C, N>::mul(&acc, &q.z);
        prefix.push(acc);
    }
    let mut inv = F::<C, N>::invert(&acc);
    let mut out = vec![Affine { x: [0; N], y: [0; N] }; jac.len()];
    for (i, q) in jac.iter().enumerate().rev() {
        let before = match i.checked_sub(1).and_then(|k| prefix.get(k)) {
            Some(b) => *b,
            None => F::<C, N>::ONE,
        };
        let zinv = F::<C, N>::mul(&inv, &before);
        inv = F::<C, N>::mul(&inv, &q.z);
        let zinv2 = F::<C, N>::sqr(&zinv);
        let zinv3 = F::<C, N>::mul(&zinv2, &zinv);
        let slot = out.get_mut(i)?;
        *slot = Affine {
            x: F::<C, N>::mul(&q.x, &zinv2),
            y: F::<C, N>::mul(&q.y, &zinv3),
        };
    }
    Some(out)
}

/// Room for the wNAF digits of the longest scalar (P-521: 522 positions).
pub(crate) const WNAF_MAX: usize = 528;

/// Width-`w` NAF digits of `s` over `len` bit positions (`s < 2^(len-1)`): odd digits
/// with `|d| < 2^(w-1)`, at least `w` positions apart, `sum d_i 2^i = s`.
pub(crate) fn wnaf<const N: usize>(s: &Limbs<N>, w: u32, len: usize) -> [i8; WNAF_MAX] {
    let bit_at = |i: usize| -> u32 { s.get(i / 32).map_or(0, |l| (l >> (i % 32)) & 1) };
    let bits_at = |i: usize, count: usize| -> u32 {
        let mut v = 0;
        for k in (0..count).rev() {
            v = (v << 1) | bit_at(i + k);
        }
        v
    };
    let mut out = [0i8; WNAF_MAX];
    let len = len.min(WNAF_MAX);
    let mut carry = 0u32;
    let mut bit = 0;
    while bit < len {
        if bit_at(bit) == carry {
            bit += 1;
            continue;
        }
        let now = (w as usize).min(len - bit);
        let mut word = bits_at(bit, now) + carry;
        carry = (word >> (w - 1)) & 1;
        word = word.wrapping_sub(carry << w);
        if let Some(d) = out.get_mut(bit) {
            *d = word as i32 as i8;
        }
        bit += now;
    }
    out
}

/// A verifying key with its precomputed table.
struct EcKey<C, const N: usize> {
    /// Odd multiples of `2^(jL) * Q` (see [`build_table`]).
    table: Arc<[Affine<N>]>,
    _curve: PhantomData<C>,
}

impl<C, const N: usize> Clone for EcKey<C, N> {
    fn clone(&self) -> Self {
        EcKey {
            table: Arc::clone(&self.table),
            _curve: PhantomData,
        }
    }
}

impl<C: Curve<N>, const N: usize> EcKey<C, N> {
    /// From the big-endian affine coordinates (exactly `C::BYTES` each); `None` unless the
    /// point is on the curve.
    fn from_xy(x: &[u8], y: &[u8]) -> Option<Self> {
        type F<C, const N: usize> = <C as Curve<N>>::Fp;
        if x.len() != C::BYTES || y.len() != C::BYTES {
            return None;
        }
        let (x, y) = (from_be::<N>(x)?, from_be::<N>(y)?);
        if mp::geq(&x, &F::<C, N>::P) || mp::geq(&y, &F::<C, N>::P) {
            return None;
        }
        let (x, y) = (F::<C, N>::to_mont(&x), F::<C, N>::to_mont(&y));
        // y^2 = x^3 - 3x + b
        let x3 = F::<C, N>::mul(&F::<C, N>::sqr(&x), &x);
        let three_x = F::<C, N>::add(&F::<C, N>::add(&x, &x), &x);
        let rhs = F::<C, N>::add(&F::<C, N>::sub(&x3, &three_x), &F::<C, N>::to_mont(&C::B));
        if F::<C, N>::sqr(&y) != rhs {
            return None;
        }
        let table = build_table::<C, N>(&Affine { x, y }, C::WQ)?;
        // The curve's G table too, now (configure time or a key-set fetch) rather than in
        // the first request that verifies with this curve.
        C::g_table();
        Some(EcKey {
            table: table.into(),
            _curve: PhantomData,
        })
    }

    /// Verifies a JWS signature (`R || S`) over `msg`.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_inner(msg, sig).unwrap_or(false)
    }

    fn verify_inner(&self, msg: &[u8], sig: &[u8]) -> Option<bool> {
        type S<C, const N: usize> = <C as Curve<N>>::Fn;
        type F<C, const N: usize> = <C as Curve<N>>::Fp;
        if sig.len() != 2 * C::BYTES {
            return Some(false);
        }
        let (rb, sb) = sig.split_at(C::BYTES);
        let n = S::<C, N>::P;
        let (r, s) = (from_be::<N>(rb)?, from_be::<N>(sb)?);
        if is_zero(&r) || is_zero(&s) || mp::geq(&r, &n) || mp::geq(&s, &n) {
            return Some(false);
        }
        // e: the hash as an integer (never longer than n here), reduced mod n.
        let mut e = from_be::<N>(&C::Hash::digest(msg))?;
        if mp::geq(&e, &n) {
            e = mp::sub(&e, &n).0;
        }
        let w = mp::inv_vartime(&s, &n)?;
        // Montgomery products: mont(mont(a, w), R^2) = a * w.
        let u1 = S::<C, N>::mul(&S::<C, N>::mul(&e, &w), &S::<C, N>::R2);
        let u2 = S::<C, N>::mul(&S::<C, N>::mul(&r, &w), &S::<C, N>::R2);
        let len = C::PIECES * C::L;
        let d1 = wnaf(&u1, C::WG, len);
        let d2 = wnaf(&u2, C::WQ, len);
        let (gt, qt) = (C::g_table(), &*self.table);
        let (g_per, q_per) = (1usize << (C::WG - 2), 1usize << (C::WQ - 2));
        let mut acc = Jacobian {
            x: F::<C, N>::ONE,
            y: F::<C, N>::ONE,
            z: [0u32; N],
        };
        for pos in (0..C::L).rev() {
            acc = double::<C, N>(&acc);
            for j in 0..C::PIECES {
                let at = j * C::L + pos;
                for (digits, table, per) in [(&d1, gt, g_per), (&d2, qt, q_per)] {
                    let d = digits.get(at).copied().unwrap_or(0);
                    if d != 0 {
                        let idx = j * per + (d.unsigned_abs() as usize - 1) / 2;
                        let pt = table.get(idx)?;
                        acc = if d > 0 {
                            add_affine::<C, N>(&acc, &pt.x, &pt.y)
                        } else {
                            add_affine::<C, N>(&acc, &pt.x, &F::<C, N>::neg(&pt.y))
                        };
                    }
                }
            }
        }
        if is_zero(&acc.z) {
            return Some(false);
        }
        // x(R) = X / Z^2; x(R) mod n == r  <=>  X == r*Z^2 or (r + n < p and X == (r+n)*Z^2).
        let zz = F::<C, N>::sqr(&acc.z);
        if F::<C, N>::mul(&F::<C, N>::to_mont(&r), &zz) == acc.x {
            return Some(true);
        }
        let (rn, carry) = mp::add(&r, &n);
        if !carry && !mp::geq(&rn, &F::<C, N>::P) {
            return Some(F::<C, N>::mul(&F::<C, N>::to_mont(&rn), &zz) == acc.x);
        }
        Some(false)
    }
}

/// The per-curve `G` table, built on first use.
fn g_table_of<C: Curve<N>, const N: usize>(cell: &'static OnceLock<Vec<Affine<N>>>) -> &'static [Affine<N>] {
    cell.get_or_init(|| {
        type F<C, const N: usize> = <C as Curve<N>>::Fp;
        let g = Affine {
            x: F::<C, N>::to_mont(&C::GX),
            y: F::<C, N>::to_mont(&C::GY),
        };
        build_table::<C, N>(&g, C::WG).unwrap_or_default()
    })
}

/// Bytes of the per-key and per-curve tables for curve `crv` ("P-256", "P-384", "P-521").
pub fn table_bytes(crv: &str) -> Option<(usize, usize)> {
    fn sizes<C: Curve<N>, const N: usize>() -> (usize, usize) {
        let point = std::mem::size_of::<Affine<N>>();
        (
            C::PIECES * (1 << (C::WQ - 2)) * point,
            C::PIECES * (1 << (C::WG - 2)) * point,
        )
    }
    match crv {
        "P-256" => Some(sizes::<P256, 8>()),
        "P-384" => Some(sizes::<P384, 12>()),
        "P-521" => Some(sizes::<P521, 17>()),
        _ => None,
    }
}

macro_rules! field {
    ($name:ident, $n:literal, $hex:literal) => {
        struct $name;
        impl Field<$n> for $name {
            const P: Limbs<$n> = mp::from_hex($hex);
        }
    };
}

field!(
    P256Fp,
    8,
    "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
);
field!(
    P256Fn,
    8,
    "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
);
field!(
    P384Fp,
    12,
    "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff"
);
field!(
    P384Fn,
    12,
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"
);
/// P-521's base field: plain residues (`ONE = R2 = 1`), multiplied with the Mersenne
/// reduction of [`mp::mul_p521`], which beats the Montgomery product over 17 limbs.
struct P521Fp;
impl Field<17> for P521Fp {
    const P: Limbs<17> = mp::from_hex(
        "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    );
    const ONE: Limbs<17> = mp::from_hex("01");
    const R2: Limbs<17> = mp::from_hex("01");
    #[inline]
    fn mul(a: &Limbs<17>, b: &Limbs<17>) -> Limbs<17> {
        mp::mul_p521(a, b)
    }
    #[inline]
    fn sqr(a: &Limbs<17>) -> Limbs<17> {
        mp::mul_p521(a, a)
    }
}
field!(
    P521Fn,
    17,
    "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"
);

struct P256;
impl Curve<8> for P256 {
    type Fp = P256Fp;
    type Fn = P256Fn;
    type Hash = sha2::Sha256;
    const BYTES: usize = 32;
    const BITS: usize = 256;
    const B: Limbs<8> = mp::from_hex("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");
    const GX: Limbs<8> = mp::from_hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
    const GY: Limbs<8> = mp::from_hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    const PIECES: usize = 6;
    const WQ: u32 = 5;
    const WG: u32 = 7;
    fn g_table() -> &'static [Affine<8>] {
        static T: OnceLock<Vec<Affine<8>>> = OnceLock::new();
        g_table_of::<Self, 8>(&T)
    }
}

struct P384;
impl Curve<12> for P384 {
    type Fp = P384Fp;
    type Fn = P384Fn;
    type Hash = sha2::Sha384;
    const BYTES: usize = 48;
    const BITS: usize = 384;
    const B: Limbs<12> = mp::from_hex(
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
    );
    const GX: Limbs<12> = mp::from_hex(
        "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
    );
    const GY: Limbs<12> = mp::from_hex(
        "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
    );
    const PIECES: usize = 6;
    const WQ: u32 = 5;
    const WG: u32 = 7;
    fn g_table() -> &'static [Affine<12>] {
        static T: OnceLock<Vec<Affine<12>>> = OnceLock::new();
        g_table_of::<Self, 12>(&T)
    }
}

struct P521;
impl Curve<17> for P521 {
    type Fp = P521Fp;
    type Fn = P521Fn;
    type Hash = sha2::Sha512;
    const BYTES: usize = 66;
    const BITS: usize = 521;
    const B: Limbs<17> = mp::from_hex("0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00");
    const GX: Limbs<17> = mp::from_hex("00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66");
    const GY: Limbs<17> = mp::from_hex("011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650");
    const PIECES: usize = 6;
    const WQ: u32 = 5;
    const WG: u32 = 7;
    fn g_table() -> &'static [Affine<17>] {
        static T: OnceLock<Vec<Affine<17>>> = OnceLock::new();
        g_table_of::<Self, 17>(&T)
    }
}

macro_rules! public_key {
    ($(#[$doc:meta])* $name:ident, $curve:ident, $n:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(EcKey<$curve, $n>);

        impl $name {
            /// From the JWK's big-endian `x` and `y` (exactly the field size each); `None`
            /// unless `(x, y)` is a point on the curve. Builds the key's table.
            pub fn from_xy(x: &[u8], y: &[u8]) -> Option<Self> {
                EcKey::from_xy(x, y).map($name)
            }

            /// Whether `sig` (JWS form `R || S`) is a valid signature over `msg`. Never panics.
            pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
                self.0.verify(msg, sig)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

public_key!(
    /// A P-256 public key for ES256 (SHA-256).
    P256Key,
    P256,
    8
);
public_key!(
    /// A P-384 public key for ES384 (SHA-384).
    P384Key,
    P384,
    12
);
public_key!(
    /// A P-521 public key for ES512 (SHA-512).
    P521Key,
    P521,
    17
);

// ---------------------------------------------------------------------------------------
// jwt-compact glue: signing ES384/ES512 (tests and fixtures; verification is above).
// ---------------------------------------------------------------------------------------

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
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn xy(encoded: &[u8], size: usize) -> (Vec<u8>, Vec<u8>) {
        (encoded[1..1 + size].to_vec(), encoded[1 + size..].to_vec())
    }

    #[test]
    fn curve_constants_match_the_rustcrypto_crates() {
        use p256::elliptic_curve::bigint::Encoding as _;
        use p256::elliptic_curve::Curve as _;
        let g = p256::AffinePoint::GENERATOR.to_encoded_point(false);
        assert_eq!(from_be::<8>(&g.as_bytes()[1..33]), Some(P256::GX));
        assert_eq!(from_be::<8>(&g.as_bytes()[33..]), Some(P256::GY));
        assert_eq!(p256::NistP256::ORDER.to_be_bytes().to_vec(), be(&P256Fn::P, 32));
        let g = p384::AffinePoint::GENERATOR.to_encoded_point(false);
        assert_eq!(from_be::<12>(&g.as_bytes()[1..49]), Some(P384::GX));
        assert_eq!(from_be::<12>(&g.as_bytes()[49..]), Some(P384::GY));
        assert_eq!(p384::NistP384::ORDER.to_be_bytes().to_vec(), be(&P384Fn::P, 48));
        let g = p521::AffinePoint::GENERATOR.to_encoded_point(false);
        assert_eq!(from_be::<17>(&g.as_bytes()[1..67]), Some(P521::GX));
        assert_eq!(from_be::<17>(&g.as_bytes()[67..]), Some(P521::GY));
        assert_eq!(p521::NistP521::ORDER.to_be_bytes()[6..].to_vec(), be(&P521Fn::P, 66));
        // The generators are on the curves (checks P and B).
        assert!(P256Key::from_xy(&be(&P256::GX, 32), &be(&P256::GY, 32)).is_some());
        assert!(P384Key::from_xy(&be(&P384::GX, 48), &be(&P384::GY, 48)).is_some());
        assert!(P521Key::from_xy(&be(&P521::GX, 66), &be(&P521::GY, 66)).is_some());
        assert!(P256Key::from_xy(&be(&P256::GX, 32), &be(&P256::GX, 32)).is_none());
    }

    fn be<const N: usize>(l: &Limbs<N>, size: usize) -> Vec<u8> {
        let mut out: Vec<u8> = l.iter().rev().flat_map(|w| w.to_be_bytes()).collect();
        out.drain(..out.len() - size);
        out
    }

    #[test]
    fn table_sizes_are_the_documented_ones() {
        assert_eq!(table_bytes("P-256"), Some((3072, 12288)));
        assert_eq!(table_bytes("P-384"), Some((4608, 18432)));
        assert_eq!(table_bytes("P-521"), Some((6528, 26112)));
        assert_eq!(table_bytes("secp256k1"), None);
    }

    #[test]
    fn scalar_inverse_and_wnaf() {
        let n = P256Fn::P;
        for v in [1u32, 2, 3, 12345, 0xffff_ffff] {
            let mut a = [0u32; 8];
            a[0] = v;
            a[7] = v >> 3;
            let inv = mp::inv_vartime(&a, &n).unwrap();
            let prod = P256Fn::mul(&P256Fn::mul(&a, &inv), &P256Fn::R2);
            let mut one = [0u32; 8];
            one[0] = 1;
            assert_eq!(prod, one);
        }
        let s: Limbs<8> = mp::from_hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550");
        for w in [2, 5, 7, 8] {
            let d = wnaf(&s, w, 257);
            // Rebuild s from the digits (mod 2^256 with a signed accumulator per limb).
            let mut acc = [0i128; 9];
            for (i, &di) in d.iter().enumerate().take(257) {
                if di != 0 {
                    assert_eq!(di.unsigned_abs() % 2, 1);
                    assert!((di.unsigned_abs() as u32) < (1 << (w - 1)));
                    acc[i / 32] += i128::from(di) << (i % 32);
                }
            }
            let mut out = [0u32; 8];
            let mut carry = 0i128;
            for k in 0..9 {
                let v = acc[k] + carry;
                if k < 8 {
                    out[k] = (v & 0xffff_ffff) as u32;
                } else {
                    assert_eq!(v, 0);
                }
                carry = v >> 32;
            }
            assert_eq!(out, s);
        }
    }

    #[test]
    fn p256_verifies_like_the_crate() {
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let (x, y) = xy(sk.verifying_key().to_encoded_point(false).as_bytes(), 32);
        let key = P256Key::from_xy(&x, &y).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign(b"hello");
        let sig = sig.to_bytes();
        assert!(key.verify(b"hello", &sig));
        assert!(!key.verify(b"hellO", &sig));
        let mut bad = sig.to_vec();
        bad[10] ^= 1;
        assert!(!key.verify(b"hello", &bad));
        assert!(!key.verify(b"hello", &sig[..63]));
        assert!(!key.verify(b"hello", &[0u8; 64]));
    }

    #[test]
    fn es384_sign_verify_and_tamper() {
        let sk = p384::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let (x, y) = xy(sk.verifying_key().to_encoded_point(false).as_bytes(), 48);
        let key = P384Key::from_xy(&x, &y).unwrap();
        let sig = Es384.sign(&sk, b"hello");
        assert_eq!(sig.as_bytes().len(), 96);
        assert!(key.verify(b"hello", &sig.0));
        assert!(!key.verify(b"hellO", &sig.0));
        let mut bad = sig.0.clone();
        bad[10] ^= 1;
        assert!(!key.verify(b"hello", &bad));
        assert!(RawSignature::<96>::try_from_slice(&[0u8; 95]).is_err());
        assert!(!key.verify(b"hello", &[0u8; 96]));
    }

    #[test]
    fn es512_sign_verify_and_tamper() {
        let sk = p521::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let vk = p521::ecdsa::VerifyingKey::from(&sk);
        let (x, y) = xy(vk.to_encoded_point(false).as_bytes(), 66);
        let key = P521Key::from_xy(&x, &y).unwrap();
        let sig = Es512.sign(&sk, b"hello");
        assert_eq!(sig.as_bytes().len(), 132);
        assert!(key.verify(b"hello", &sig.0));
        assert!(!key.verify(b"hell0", &sig.0));
        assert!(!key.verify(b"hello", &[0xff; 132]));
    }
}
