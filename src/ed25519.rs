//! Ed25519 verification for JWS `EdDSA` (RFC 8037 3.1, RFC 8032 5.1.7), built for speed in
//! V8 Wasm, with the verdicts of `ed25519-dalek`'s `VerifyingKey::verify`.
//!
//! What is checked, as `ed25519-dalek` 2 checks it (non-strict `verify`, the one
//! jwt-compact used before): the key is a point on the curve (decoded by the rules of
//! `ed25519_dalek::VerifyingKey::from_bytes`, so hopguard accepts the same keys); the
//! signature is 64 bytes `R || S`; `S < l`; `k = SHA-512(R || A || M) mod l`; accept when
//! the encoding of `[S]B - [k]A` equals the 32 bytes `R` (cofactorless, RFC 8032 5.1.7
//! allows it; a non-canonical `R` never equals a canonical encoding).
//! `tests/ed25519_differential.rs` checks agreement with `ed25519-dalek` case by case.
//!
//! Why not `ed25519-dalek`'s own verification: it runs one double-scalar multiplication
//! with 253 doublings per signature. A verification only handles public data, and a JWKS
//! key verifies many tokens, so this module, like [`crate::ecdsa`], precomputes per key:
//! - field arithmetic is fiat-crypto's formally verified `curve25519_32` (ten 25.5-bit limbs,
//!   64-bit products: one Wasm `i64.mul` each);
//! - `[S]B - [k]A` is one interleaved loop over wNAF digits, each scalar split into
//!   [`PIECES`] pieces of `L` bits, so it runs only `L` doublings (32, not 253), adding
//!   the pieces' digits from tables of odd multiples of `2^(jL)*A` (per key, built with
//!   the key) and `2^(jL)*B` (per VM, built with the first key) in affine "Niels" form
//!   `(y+x, y-x, 2dxy)`, with mixed extended + affine additions (HWCD 2008, `a = -1`);
//! - variable time by design: branches and table indices depend on the signature.
//!
//! Tables: per key `8 * 8` points of 120 bytes (7.5 KB); for `B`, per VM, `8 * 64` points
//! (60 KB). In V8 (`scripts/bench-crypto`) 8 pieces and a window of 8 for `B` verified in
//! 40 us against 45 us with 6 pieces and a window of 7; a window of 6 for `A` gained nothing
//! and doubled the key's table.

use crate::ecdsa::wnaf;
use crate::mp;
use fiat_crypto::curve25519_32 as fiat;
use sha2::{Digest, Sha512};
use std::sync::{Arc, OnceLock};

use fiat::{fiat_25519_loose_field_element as Loose, fiat_25519_tight_field_element as Tight};

/// Scalars are split into this many pieces of `L` = [`piece_len`]`(PIECES)` = 32 bits.
const PIECES: usize = 8;
/// wNAF window for the key `A` (per-key table of `PIECES * 2^(WA-2)` points).
const WA: u32 = 5;
/// wNAF window for the base point `B` (per-VM table of `PIECES * 2^(WB-2)` points).
const WB: u32 = 8;

// ---------------------------------------------------------------------------------------
// Field arithmetic mod p = 2^255 - 19: thin wrappers over fiat-crypto. `Tight` values are
// what multiplications produce and what additions take; `Loose` what additions produce
// and multiplications take.
// ---------------------------------------------------------------------------------------

fn mul(a: &Loose, b: &Loose) -> Tight {
    let mut out = Tight([0; 10]);
    fiat::fiat_25519_carry_mul(&mut out, a, b);
    out
}

fn sq(a: &Loose) -> Tight {
    let mut out = Tight([0; 10]);
    fiat::fiat_25519_carry_square(&mut out, a);
    out
}

fn add(a: &Tight, b: &Tight) -> Loose {
    let mut out = Loose([0; 10]);
    fiat::fiat_25519_add(&mut out, a, b);
    out
}

fn sub(a: &Tight, b: &Tight) -> Loose {
    let mut out = Loose([0; 10]);
    fiat::fiat_25519_sub(&mut out, a, b);
    out
}

fn carry(a: &Loose) -> Tight {
    let mut out = Tight([0; 10]);
    fiat::fiat_25519_carry(&mut out, a);
    out
}

fn relax(a: &Tight) -> Loose {
    let mut out = Loose([0; 10]);
    fiat::fiat_25519_relax(&mut out, a);
    out
}

fn neg(a: &Tight) -> Tight {
    let mut out = Loose([0; 10]);
    fiat::fiat_25519_opp(&mut out, a);
    carry(&out)
}

fn mul_t(a: &Tight, b: &Tight) -> Tight {
    mul(&relax(a), &relax(b))
}

fn sq_t(a: &Tight) -> Tight {
    sq(&relax(a))
}

/// `a^(2^k)`.
fn pow2k(a: &Tight, k: u32) -> Tight {
    let mut r = *a;
    for _ in 0..k {
        r = sq_t(&r);
    }
    r
}

/// The canonical little-endian encoding (fully reduced mod p).
fn to_bytes(a: &Tight) -> [u8; 32] {
    let mut out = [0u8; 32];
    fiat::fiat_25519_to_bytes(&mut out, a);
    out
}

/// The field element of 255 little-endian bits (bit 255 is ignored); values in `[p, 2^255)`
/// stand for their residue, as `ed25519-dalek` reads them.
fn from_bytes(b: &[u8; 32]) -> Tight {
    let mut masked = *b;
    if let Some(top) = masked.last_mut() {
        *top &= 0x7f;
    }
    let mut out = Tight([0; 10]);
    fiat::fiat_25519_from_bytes(&mut out, &masked);
    out
}

fn small(v: u32) -> Tight {
    let mut b = [0u8; 32];
    for (o, i) in b.iter_mut().zip(v.to_le_bytes()) {
        *o = i;
    }
    from_bytes(&b)
}

fn eq(a: &Tight, b: &Tight) -> bool {
    to_bytes(a) == to_bytes(b)
}

fn is_negative(a: &Tight) -> bool {
    to_bytes(a).first().is_some_and(|b| b & 1 == 1)
}

/// `(z^(2^250 - 1), z^11)`: the shared start of inversion and of the square root's power.
fn pow_2_250_minus_1(z: &Tight) -> (Tight, Tight) {
    let z2 = sq_t(z);
    let z9 = mul_t(&pow2k(&z2, 2), z);
    let z11 = mul_t(&z9, &z2);
    let z_5_0 = mul_t(&sq_t(&z11), &z9); // 2^5 - 1
    let z_10_0 = mul_t(&pow2k(&z_5_0, 5), &z_5_0);
    let z_20_0 = mul_t(&pow2k(&z_10_0, 10), &z_10_0);
    let z_40_0 = mul_t(&pow2k(&z_20_0, 20), &z_20_0);
    let z_50_0 = mul_t(&pow2k(&z_40_0, 10), &z_10_0);
    let z_100_0 = mul_t(&pow2k(&z_50_0, 50), &z_50_0);
    let z_200_0 = mul_t(&pow2k(&z_100_0, 100), &z_100_0);
    let z_250_0 = mul_t(&pow2k(&z_200_0, 50), &z_50_0);
    (z_250_0, z11)
}

/// `z^(p-2) = z^-1` (0 for 0).
fn invert(z: &Tight) -> Tight {
    let (z_250_0, z11) = pow_2_250_minus_1(z);
    mul_t(&pow2k(&z_250_0, 5), &z11)
}

/// `p = 2^255 - 19` as eight little-endian 32-bit limbs.
const P: [u32; 8] = mp::from_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed");

/// `z^-1` by binary extended Euclid on the canonical value: variable time, so for public
/// values only, and faster than [`invert`]'s 265 field operations. `invert`'s answer for 0.
fn invert_vartime(z: &Tight) -> Tight {
    match mp::inv_vartime(&limbs(&to_bytes(z)), &P) {
        Some(inv) => from_bytes(&le_bytes(&inv)),
        None => invert(z),
    }
}

/// `z^((p-5)/8) = z^(2^252 - 3)`.
fn pow_p58(z: &Tight) -> Tight {
    let (z_250_0, _) = pow_2_250_minus_1(z);
    mul_t(&pow2k(&z_250_0, 2), z)
}

/// Curve constants, computed once per VM.
struct Consts {
    d: Tight,
    d2: Tight,
    sqrt_m1: Tight,
}

fn consts() -> &'static Consts {
    static C: OnceLock<Consts> = OnceLock::new();
    C.get_or_init(|| {
        // d = -121665 / 121666.
        let d = mul_t(&neg(&small(121_665)), &invert(&small(121_666)));
        // sqrt(-1) = 2^((p-1)/4).
        let two = small(2);
        let sqrt_m1 = {
            // (p-1)/4 = 2^253 - 5: 2^((2^252-3)*2 + 1) = 2^(2^253 - 5).
            let t = pow_p58(&two);
            mul_t(&sq_t(&t), &two)
        };
        Consts {
            d,
            d2: carry(&add(&d, &d)),
            sqrt_m1,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Points of the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2.
// ---------------------------------------------------------------------------------------

/// Extended coordinates: `x = X/Z`, `y = Y/Z`, `T = XY/Z`.
#[derive(Clone, Copy)]
struct Ext {
    x: Tight,
    y: Tight,
    z: Tight,
    t: Tight,
}

/// An affine point in "Niels" form, ready for mixed addition.
#[derive(Clone, Copy)]
struct Niels {
    y_plus_x: Tight,
    y_minus_x: Tight,
    xy2d: Tight,
}

impl Ext {
    fn identity() -> Ext {
        Ext {
            x: small(0),
            y: small(1),
            z: small(1),
            t: small(0),
        }
    }

    /// The point from a "completed" point `((e : g), (h : f))`: `x = e/g`, `y = h/f`.
    fn from_completed(e: &Loose, h: &Loose, g: &Loose, f: &Loose) -> Ext {
        Ext {
            x: mul(e, f),
            y: mul(h, g),
            z: mul(g, f),
            t: mul(e, h),
        }
    }

    /// `2P` (HWCD 2008 doubling, `a = -1`).
    fn double(&self) -> Ext {
        let xx = sq_t(&self.x);
        let yy = sq_t(&self.y);
        let zz = sq_t(&self.z);
        let zz2 = carry(&add(&zz, &zz));
        let xy_sq = sq(&add(&self.x, &self.y));
        let yy_plus_xx = carry(&add(&yy, &xx));
        let yy_minus_xx = carry(&sub(&yy, &xx));
        let e = sub(&xy_sq, &yy_plus_xx);
        let f = sub(&zz2, &yy_minus_xx);
        Ext::from_completed(&e, &relax(&yy_plus_xx), &relax(&yy_minus_xx), &f)
    }

    /// `P + Q` (`negate`: `P - Q`), `Q` affine.
    fn add_niels(&self, q: &Niels, negate: bool) -> Ext {
        let (qp, qm) = if negate {
            (&q.y_minus_x, &q.y_plus_x)
        } else {
            (&q.y_plus_x, &q.y_minus_x)
        };
        let pp = mul(&add(&self.y, &self.x), &relax(qp));
        let mm = mul(&sub(&self.y, &self.x), &relax(qm));
        let txy2d = mul_t(&self.t, &q.xy2d);
        let z2 = carry(&add(&self.z, &self.z));
        let e = sub(&pp, &mm);
        let h = add(&pp, &mm);
        let (g, f) = if negate {
            (sub(&z2, &txy2d), add(&z2, &txy2d))
        } else {
            (add(&z2, &txy2d), sub(&z2, &txy2d))
        };
        Ext::from_completed(&e, &h, &g, &f)
    }

    /// `P + Q`, both extended (table building only).
    fn add_ext(&self, q: &Ext) -> Ext {
        let c = consts();
        let pp = mul(&add(&self.y, &self.x), &add(&q.y, &q.x));
        let mm = mul(&sub(&self.y, &self.x), &sub(&q.y, &q.x));
        let tt2d = mul_t(&mul_t(&self.t, &q.t), &c.d2);
        let zz = mul_t(&self.z, &q.z);
        let zz2 = carry(&add(&zz, &zz));
        let e = sub(&pp, &mm);
        let h = add(&pp, &mm);
        let g = add(&zz2, &tt2d);
        let f = sub(&zz2, &tt2d);
        Ext::from_completed(&e, &h, &g, &f)
    }

    /// The 32-byte encoding: `y` with the sign of `x` in bit 255 (RFC 8032 5.1.2). Points
    /// here are public (keys, signatures, tables), so `1/z` is taken in variable time.
    fn compress(&self) -> [u8; 32] {
        let zinv = invert_vartime(&self.z);
        let x = mul_t(&self.x, &zinv);
        let mut out = to_bytes(&mul_t(&self.y, &zinv));
        if let Some(top) = out.last_mut() {
            *top |= u8::from(is_negative(&x)) << 7;
        }
        out
    }
}

/// Decodes a point (RFC 8032 5.1.3, with `ed25519-dalek`'s leniency: `y` is read mod p,
/// and `x = 0` with the sign bit set decodes to `x = 0`). `None` when `y` is on no point.
fn decompress(bytes: &[u8; 32]) -> Option<Ext> {
    let c = consts();
    let y = from_bytes(bytes);
    let one = small(1);
    let yy = sq_t(&y);
    let u = carry(&sub(&yy, &one));
    let v = carry(&add(&mul_t(&c.d, &yy), &one));
    // x = u v^3 (u v^7)^((p-5)/8)
    let v3 = mul_t(&sq_t(&v), &v);
    let v7 = mul_t(&sq_t(&v3), &v);
    let mut x = mul_t(&mul_t(&u, &v3), &pow_p58(&mul_t(&u, &v7)));
    let vxx = mul_t(&v, &sq_t(&x));
    if eq(&vxx, &u) {
    } else if eq(&vxx, &neg(&u)) {
        x = mul_t(&x, &c.sqrt_m1);
    } else {
        return None;
    }
    let sign = bytes.last().is_some_and(|b| b >> 7 == 1);
    if is_negative(&x) != sign {
        x = neg(&x);
    }
    Some(Ext {
        x,
        y,
        z: one,
        t: mul_t(&x, &y),
    })
}

/// Positions per piece when a scalar is split into `pieces` pieces (wNAF digits of a
/// scalar below `2^253` cover 254 positions).
const fn piece_len(pieces: usize) -> usize {
    254_usize.div_ceil(pieces)
}

/// For each of `pieces` pieces `j`, the odd multiples `1, 3, .., 2^(w-1)-1` of
/// `2^(jL) * p` (`L` = [`piece_len`]), affine.
fn build_table(p: &Ext, w: u32, pieces: usize) -> Vec<Niels> {
    let per = 1usize << (w - 2);
    let mut ext = Vec::with_capacity(pieces * per);
    let mut base = *p;
    for j in 0..pieces {
        if j > 0 {
            for _ in 0..piece_len(pieces) {
                base = base.double();
            }
        }
        let two = base.double();
        let mut cur = base;
        ext.push(cur);
        for _ in 1..per {
            cur = cur.add_ext(&two);
            ext.push(cur);
        }
    }
    // Batch inversion of the Z coordinates (Montgomery's trick): one field inversion. Z is
    // never 0 on this curve (its addition law is complete).
    let mut prefix = Vec::with_capacity(ext.len());
    let mut acc = small(1);
    for q in &ext {
        acc = mul_t(&acc, &q.z);
        prefix.push(acc);
    }
    let mut inv = invert(&acc);
    let d2 = consts().d2;
    let mut out = vec![
        Niels {
            y_plus_x: small(0),
            y_minus_x: small(0),
            xy2d: small(0),
        };
        ext.len()
    ];
    for (i, q) in ext.iter().enumerate().rev() {
        let before = match i.checked_sub(1).and_then(|k| prefix.get(k)) {
            Some(b) => *b,
            None => small(1),
        };
        let zinv = mul_t(&inv, &before);
        inv = mul_t(&inv, &q.z);
        let (x, y) = (mul_t(&q.x, &zinv), mul_t(&q.y, &zinv));
        if let Some(slot) = out.get_mut(i) {
            *slot = Niels {
                y_plus_x: carry(&add(&y, &x)),
                y_minus_x: carry(&sub(&y, &x)),
                xy2d: mul_t(&mul_t(&x, &y), &d2),
            };
        }
    }
    out
}

/// The base point's table, built on first use per VM.
fn b_table() -> &'static [Niels] {
    static T: OnceLock<Vec<Niels>> = OnceLock::new();
    T.get_or_init(|| {
        // B: y = 4/5, x positive (RFC 8032 5.1).
        let mut enc = [0x66u8; 32];
        enc[0] = 0x58;
        match decompress(&enc) {
            Some(b) => build_table(&b, WB, PIECES),
            None => Vec::new(),
        }
    })
}

/// 32 little-endian bytes as eight little-endian 32-bit limbs.
fn limbs(b: &[u8; 32]) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (limb, chunk) in out.iter_mut().zip(b.chunks_exact(4)) {
        let mut w = [0u8; 4];
        w.copy_from_slice(chunk);
        *limb = u32::from_le_bytes(w);
    }
    out
}

/// Eight little-endian 32-bit limbs as 32 little-endian bytes: the inverse of [`limbs`].
fn le_bytes(l: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(4).zip(l) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
    out
}

/// An Ed25519 public key: with its precomputed table, or (for a key that verifies one
/// signature, a DPoP proof's) with the odd multiples of `A` alone.
#[derive(Clone)]
pub struct Ed25519Key {
    /// The encoding as given (hashed into `k` as is).
    bytes: [u8; 32],
    form: Form,
}

#[derive(Clone)]
enum Form {
    /// Odd multiples of `2^(jL) * A` for [`PIECES`] pieces (see [`build_table`]).
    Table(Arc<[Niels]>),
    /// Odd multiples of `A` only (one piece): building the full table costs about three
    /// of its verifications, this one a tenth of one; a verification then runs 254
    /// doublings instead of 32.
    Plain(Arc<[Niels]>),
}

/// The group order `l = 2^252 + 27742317777372353535851937790883648493`.
const ORDER: [u32; 8] = mp::from_hex("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed");
/// `-l^-1 mod 2^32`.
const ORDER_M0: u32 = mp::neg_inv(ORDER[0]);
/// `2^512 mod l`.
const ORDER_R2: [u32; 8] = mp::pow2_mod(512, &ORDER);

/// `s < l`: a canonical scalar (RFC 8032 5.1.7 step 1).
fn is_canonical(s: &[u32; 8]) -> bool {
    !mp::geq(s, &ORDER)
}

/// A 64-byte little-endian integer (a SHA-512 digest) mod `l`: `hi * 2^256 + lo`, with two
/// Montgomery products for `hi * 2^256` and two for `lo` (`R = 2^256`; the products take
/// a first factor below `R`, not only below `l`).
fn reduce_wide(wide: &[u8; 64]) -> [u32; 8] {
    let (lo, hi) = wide.split_at(32);
    let (Ok(lo), Ok(hi)) = (<&[u8; 32]>::try_from(lo), <&[u8; 32]>::try_from(hi)) else {
        return [0; 8];
    };
    let hi = mp::mont_mul(&limbs(hi), &ORDER_R2, &ORDER, ORDER_M0);
    let lo = mp::mont_mul(&limbs(lo), &ORDER_R2, &ORDER, ORDER_M0);
    let one = [1, 0, 0, 0, 0, 0, 0, 0];
    let lo = mp::mont_mul(&lo, &one, &ORDER, ORDER_M0);
    mp::add_mod(&hi, &lo, &ORDER)
}

impl Ed25519Key {
    /// From a JWK's `x` (RFC 8037 2); `None` unless it decodes to a point, by
    /// `ed25519-dalek`'s rules. Builds the key's table.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Ed25519Key> {
        let a = decompress(bytes)?;
        // The base point's table too, now (configure time or a key-set fetch) rather than in
        // the first request that verifies.
        b_table();
        Some(Ed25519Key {
            bytes: *bytes,
            form: Form::Table(build_table(&a, WA, PIECES).into()),
        })
    }

    /// The same key for one verification: no table.
    pub fn one_shot(bytes: &[u8; 32]) -> Option<Ed25519Key> {
        Some(Ed25519Key {
            bytes: *bytes,
            form: Form::Plain(build_table(&decompress(bytes)?, WA, 1).into()),
        })
    }

    /// Whether the key has its table (built by [`Ed25519Key::from_bytes`]).
    pub fn has_table(&self) -> bool {
        matches!(self.form, Form::Table(_))
    }

    /// The key's encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The encoding of `[S]B - [k]A`, `k = SHA-512(R || A || M) mod l`, that a signature
    /// `R || S` must have as its `R`; `None` when `S >= l`. For tests: it exposes the
    /// arithmetic to comparison on any input, not only on signatures.
    #[doc(hidden)]
    pub fn commitment(&self, r: &[u8; 32], s: &[u8; 32], msg: &[u8]) -> Option<[u8; 32]> {
        let (table, pieces) = self.table();
        commitment_with(table, pieces, &self.bytes, r, s, msg)
    }

    /// `A`'s table and its number of pieces.
    fn table(&self) -> (&[Niels], usize) {
        match &self.form {
            Form::Table(table) => (table, PIECES),
            Form::Plain(table) => (table, 1),
        }
    }

    /// Verifies a JWS `EdDSA` signature (64 bytes `R || S`) over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (table, pieces) = self.table();
        verify_with(table, pieces, &self.bytes, msg, sig).unwrap_or(false)
    }
}

/// `[S]B - [k]A == R`, with `A`'s table `at` of `pieces` pieces.
fn verify_with(at: &[Niels], pieces: usize, key: &[u8; 32], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let sig: &[u8; 64] = sig.try_into().ok()?;
    let (r, s) = sig.split_at(32);
    let r: [u8; 32] = r.try_into().ok()?;
    let s: [u8; 32] = s.try_into().ok()?;
    Some(commitment_with(at, pieces, key, &r, &s, msg)? == r)
}

/// The encoding of `[S]B - [k]A` with `k = SHA-512(R || A || M) mod l`; `None` when
/// `S >= l` (RFC 8032 5.1.7 step 1: no signature). `at` holds `pieces` pieces, [`PIECES`]
/// or 1; the base point's table has [`PIECES`], and its first piece serves a one-piece loop.
fn commitment_with(
    at: &[Niels],
    pieces: usize,
    key: &[u8; 32],
    r: &[u8; 32],
    s: &[u8; 32],
    msg: &[u8],
) -> Option<[u8; 32]> {
    let s = limbs(s);
    if !is_canonical(&s) {
        return None;
    }
    let mut h = Sha512::new();
    h.update(r);
    h.update(key);
    h.update(msg);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    let k = reduce_wide(&wide);
    let piece = piece_len(pieces);
    let len = pieces * piece;
    let ds = wnaf(&s, WB, len);
    let dk = wnaf(&k, WA, len);
    let bt = b_table();
    let (b_per, a_per) = (1usize << (WB - 2), 1usize << (WA - 2));
    let mut acc = Ext::identity();
    for pos in (0..piece).rev() {
        acc = acc.double();
        for j in 0..pieces {
            let i = j * piece + pos;
            // [S]B - [k]A: the key's digits subtract.
            for (digits, table, per, minus) in [(&ds, bt, b_per, false), (&dk, at, a_per, true)] {
                let d = digits.get(i).copied().unwrap_or(0);
                if d != 0 {
                    let pt = table.get(j * per + (d.unsigned_abs() as usize - 1) / 2)?;
                    acc = acc.add_niels(pt, (d < 0) != minus);
                }
            }
        }
    }
    Some(acc.compress())
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Key(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_COMPRESSED;
    use curve25519_dalek::Scalar;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_variable_time_inverse_is_fermats() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        let mut values: Vec<[u8; 32]> = vec![[0; 32], le_bytes(&P), le_bytes(&[1, 0, 0, 0, 0, 0, 0, 0])];
        let mut p_minus_1 = le_bytes(&P);
        p_minus_1[0] -= 1;
        values.push(p_minus_1);
        // Values in [p, 2^255) stand for their residue.
        let mut p_plus_3 = le_bytes(&P);
        p_plus_3[0] += 3;
        values.push(p_plus_3);
        for _ in 0..2_000 {
            let mut b = [0u8; 32];
            rng.fill(&mut b[..]);
            values.push(b);
        }
        for b in values {
            let z = from_bytes(&b);
            let inv = invert_vartime(&z);
            assert_eq!(to_bytes(&inv), to_bytes(&invert(&z)), "{}", hex(&b));
            if !eq(&z, &small(0)) {
                assert!(eq(&mul_t(&z, &inv), &small(1)), "{}", hex(&b));
            }
        }
    }

    #[test]
    fn scalars_reduce_and_check_as_curve25519_dalek_does() {
        let order = le_bytes(&ORDER);
        // l is the group order: it reduces to zero.
        assert_eq!(Scalar::from_bytes_mod_order(order), Scalar::ZERO);
        let mut rng = rand::rngs::StdRng::seed_from_u64(25519);
        let mut wides: Vec<[u8; 64]> = vec![[0; 64], [0xff; 64]];
        // l, l - 1, l + 1, 2l and l * 2^256 + l, as 64 bytes.
        let mut at = |lo: [u8; 32], hi: [u8; 32]| {
            let mut w = [0u8; 64];
            w[..32].copy_from_slice(&lo);
            w[32..].copy_from_slice(&hi);
            wides.push(w);
        };
        let mut minus = order;
        minus[0] -= 1;
        let mut plus = order;
        plus[0] += 1;
        let mut twice = order;
        let mut carry = 0u16;
        for b in twice.iter_mut() {
            let v = u16::from(*b) * 2 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        for v in [order, minus, plus, twice, [0xff; 32]] {
            at(v, [0; 32]);
            at(v, v);
            at([0; 32], v);
        }
        for _ in 0..2000 {
            let mut w = [0u8; 64];
            rng.fill(&mut w[..]);
            wides.push(w);
        }
        for w in &wides {
            assert_eq!(
                le_bytes(&reduce_wide(w)),
                Scalar::from_bytes_mod_order_wide(w).to_bytes(),
                "{w:02x?}"
            );
        }
        let mut scalars = vec![order, minus, plus, twice, [0xff; 32], [0; 32]];
        for _ in 0..2000 {
            let mut s = [0u8; 32];
            rng.fill(&mut s[..]);
            // Mostly near l: the top byte of l is 0x10.
            s[31] &= 0x1f;
            scalars.push(s);
        }
        for s in &scalars {
            let dalek = Option::<Scalar>::from(Scalar::from_canonical_bytes(*s)).is_some();
            assert_eq!(is_canonical(&limbs(s)), dalek, "{s:02x?}");
        }
    }

    #[test]
    fn constants_are_the_curves() {
        let c = consts();
        // d * 121666 == -121665, sqrt(-1)^2 == -1
        assert!(eq(&mul_t(&c.d, &small(121_666)), &neg(&small(121_665))));
        assert!(eq(&sq_t(&c.sqrt_m1), &neg(&small(1))));
        assert_eq!(
            hex(&to_bytes(&c.d)),
            "a3785913ca4deb75abd841414d0a700098e879777940c78c73fe6f2bee6c0352"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn the_base_point_round_trips_and_its_table_is_its_multiples() {
        let b = decompress(ED25519_BASEPOINT_COMPRESSED.as_bytes()).unwrap();
        assert_eq!(b.compress(), *ED25519_BASEPOINT_COMPRESSED.as_bytes());
        // 3B from the table equals 3B computed by dalek.
        let t = b_table();
        let three = Ext::identity().add_niels(&t[1], false);
        let dalek = (Scalar::from(3u8) * curve25519_dalek::constants::ED25519_BASEPOINT_POINT).compress();
        assert_eq!(three.compress(), *dalek.as_bytes());
        // 2^L * B is the first point of piece 1.
        let l = piece_len(PIECES);
        let mut two_l = [0u8; 32];
        two_l[l / 8] = 1 << (l % 8);
        let dalek =
            (Scalar::from_bytes_mod_order(two_l) * curve25519_dalek::constants::ED25519_BASEPOINT_POINT).compress();
        let mine = Ext::identity().add_niels(&t[1usize << (WB - 2)], false);
        assert_eq!(mine.compress(), *dalek.as_bytes());
        // The inverse is one.
        let x = small(7);
        assert!(eq(&mul_t(&x, &invert(&x)), &small(1)));
    }
}
