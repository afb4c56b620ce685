//! RSA public keys and signature verification: RS256/RS384/RS512 (RSASSA-PKCS1-v1_5,
//! RFC 7518 3.3) and PS256/PS384/PS512 (RSASSA-PSS with MGF1 of the same hash and a salt
//! as long as the hash, RFC 7518 3.5), following RFC 8017 8.1.2 and 8.2.2.
//!
//! Public-key only, and written for wasm32: a general bignum library (num-bigint-dig, under
//! the `rsa` crate) multiplies 64-bit limbs into 128-bit products, which wasm32 has no
//! instruction for, so every product is a call. Here limbs are 28 bits wide (27 for the
//! longest moduli), kept in `u64`s, so every product is one native 64-bit multiply and a
//! whole column of products adds up in a `u64` with no carry handling (see [`limb_bits`]).
//! The key is prepared once, at configure time: the modulus as limbs, `-n^-1 mod 2^w` and
//! `R^2 mod n` for Montgomery multiplication (`R = 2^(w * limbs)`). A verification is then
//! `s^e mod n` by left-to-right square-and-multiply in Montgomery form (for `e = 65537`: 16
//! squarings and one multiplication), and a comparison with the encoding the message must
//! have.
//!
//! **Variable time, on purpose.** Everything here is public: the key, the signature, the
//! message. Nothing secret flows through these loops, so they branch and stop early on
//! data; this code must never be used with a private key.
//!
//! Strict where RFC 8017 is: the signature is exactly as long as the modulus (RFC 7515
//! 5.2 and RFC 8017 8.1.2 step 1), its integer is below the modulus (RSAVP1), PKCS#1 v1.5
//! is checked by building the one valid encoding and comparing (8.2.2 step 3 and 4; no
//! parsing, so no trailing data and no DigestInfo without its NULL parameters), and PSS
//! by every check of EMSA-PSS-VERIFY (9.1.2), with the salt length fixed to the hash length.
//! Two of these the `rsa` crate 0.9's PSS verification skips (tests/rsa_differential.rs):
//! it accepts `s + n` when that still fits the modulus length (a second valid signature
//! for the same token, made without the key), and ignores a non-zero byte above the
//! encoded message when the modulus length is 1 mod 8 bits (I2OSP, 8.1.2 step 2c).
//!
//! Cost, 2048-bit key, `e = 65537`, in V8 (`scripts/bench-crypto`): about 90 us per
//! verification, against about 1050 us with the `rsa` crate (native OpenSSL: 14 us).

use crate::jwks::{RSA_MAX_BITS, RSA_MIN_BITS};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Largest accepted public exponent, `2^33 - 1`: the `rsa` crate's limit, kept so that key
/// sets it refused stay refused. (Verification cost grows with the exponent's length.)
pub const MAX_PUBLIC_EXPONENT: u64 = (1 << 33) - 1;

/// Why an RSA public key was refused. The texts of the exponent and modulus checks are
/// the `rsa` crate's, which hopguard used before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RsaKeyError {
    /// The modulus has fewer than [`RSA_MIN_BITS`] bits (the bit count is given).
    ModulusTooShort(usize),
    /// The modulus has more than [`RSA_MAX_BITS`] bits (the bit count is given).
    ModulusTooLong(usize),
    /// The modulus is even, or not above the exponent.
    InvalidModulus,
    /// The exponent is even.
    InvalidExponent,
    /// The exponent is below 2.
    ExponentTooSmall,
    /// The exponent is above [`MAX_PUBLIC_EXPONENT`].
    ExponentTooLarge,
}

impl std::fmt::Display for RsaKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RsaKeyError::ModulusTooShort(bits) => write!(f, "modulus of {bits} bits, below {RSA_MIN_BITS}"),
            RsaKeyError::ModulusTooLong(bits) => write!(f, "modulus of {bits} bits, above {RSA_MAX_BITS}"),
            RsaKeyError::InvalidModulus => f.write_str("invalid modulus"),
            RsaKeyError::InvalidExponent => f.write_str("invalid exponent"),
            RsaKeyError::ExponentTooSmall => f.write_str("public exponent too small"),
            RsaKeyError::ExponentTooLarge => f.write_str("public exponent too large"),
        }
    }
}

impl std::error::Error for RsaKeyError {}

/// The six JWS RSA signature schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The DER of `DigestInfo` up to the digest itself (RFC 8017 9.2, note 1): the
    /// algorithm identifier with its NULL parameters, then the OCTET STRING header.
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
                0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
                0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
                0x04, 0x40,
            ],
        }
    }
}

impl Scheme {
    fn parts(self) -> (Hash, bool) {
        match self {
            Scheme::Rs256 => (Hash::Sha256, false),
            Scheme::Rs384 => (Hash::Sha384, false),
            Scheme::Rs512 => (Hash::Sha512, false),
            Scheme::Ps256 => (Hash::Sha256, true),
            Scheme::Ps384 => (Hash::Sha384, true),
            Scheme::Ps512 => (Hash::Sha512, true),
        }
    }
}

/// An RSA public key, prepared for verification.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKey {
    /// The modulus, little-endian limbs of `w` bits each (in `u64`s), the top one non-zero.
    n: Vec<u64>,
    /// Limb width: 28 bits, or 27 for moduli too long for 28 (see [`limb_bits`]).
    w: u32,
    /// `-n^-1 mod 2^w`.
    n0_inv: u64,
    /// `R^2 mod n`, `R = 2^(w * n.len())`: multiplying by it enters Montgomery form.
    r2: Vec<u64>,
    e: u64,
    /// The modulus length in bits.
    bits: usize,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits, e = {})", self.bits, self.e)
    }
}

/// The limb width for a modulus of `bits` bits: the widest of 28 and 27 whose column sums
/// fit a `u64` (see [`RsaKey::mont`]), or `None`.
///
/// Why narrow limbs: Montgomery multiplication by columns (product scanning) adds up to
/// `2 * limbs` products of two limbs per column, plus the carry. With 28-bit limbs each
/// product is below `2^56`, so a column fits a `u64` without any carry handling as long
/// as `(2 * limbs + 1) * 2^56 < 2^64`, that is up to 127 limbs (3556 bits); 27-bit limbs
/// reach 511 limbs (13797 bits). The inner loop is then two loads, a multiply and an add
/// per product, which V8 compiles well, where 32-bit limbs need a carry per product. (With
/// 28-bit limbs a 2048-bit modulus takes 74 limbs instead of 64, and is still about 1.35
/// times as fast as with 32-bit limbs and carries, measured.)
fn limb_bits(bits: usize) -> Option<u32> {
    [28u32, 27].into_iter().find(|&w| {
        let limbs = bits.div_ceil(w as usize) as u128;
        (2 * limbs + 1) << (2 * w) < 1u128 << 64
    })
}

impl RsaKey {
    /// The key with modulus `n` and public exponent `e`, both big-endian unsigned integers
    /// (leading zero bytes are allowed). The checks, in this order (the `rsa` crate's, so
    /// the same key sets are refused with the same reasons): modulus length within
    /// [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`]; `e` fits 64 bits; `n` odd and above `e`; `e`
    /// odd; `2 <= e <= 2^33 - 1`.
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, RsaKeyError> {
        let n = trim_be(n);
        let bits = match n.first() {
            Some(top) => 8 * n.len() - top.leading_zeros() as usize,
            None => 0,
        };
        if bits < RSA_MIN_BITS {
            return Err(RsaKeyError::ModulusTooShort(bits));
        }
        if bits > RSA_MAX_BITS {
            return Err(RsaKeyError::ModulusTooLong(bits));
        }
        let e = trim_be(e);
        if e.len() > 8 {
            return Err(RsaKeyError::ExponentTooLarge);
        }
        let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        // n has at least 2048 bits here, so it is above any 64-bit e.
        if !n.last().is_some_and(|b| b & 1 == 1) {
            return Err(RsaKeyError::InvalidModulus);
        }
        if e & 1 == 0 {
            return Err(RsaKeyError::InvalidExponent);
        }
        if e < 2 {
            return Err(RsaKeyError::ExponentTooSmall);
        }
        if e > MAX_PUBLIC_EXPONENT {
            return Err(RsaKeyError::ExponentTooLarge);
        }
        let w = limb_bits(bits).ok_or(RsaKeyError::ModulusTooLong(bits))?;
        let limbs = bits.div_ceil(w as usize);
        let n = limbs_from_be(n, w, limbs).ok_or(RsaKeyError::InvalidModulus)?;
        let n0_inv = neg_inv(n.first().copied().unwrap_or(1), w);
        let mut key = RsaKey {
            n,
            w,
            n0_inv,
            r2: Vec::new(),
            e,
            bits,
        };
        key.r2 = key.r_squared();
        Ok(key)
    }

    /// `R^2 mod n`, `R = 2^(w * limbs)`: `2R mod n` (2 in Montgomery form) by doubling
    /// `2^(bits - 1)` at most `w + 1` times, then raised to the power `w * limbs` in
    /// Montgomery form, which gives `2^(w * limbs)` in Montgomery form: `R * R mod n`. About
    /// as costly as one verification.
    fn r_squared(&self) -> Vec<u64> {
        let (len, w) = (self.n.len(), self.w);
        let mut x = vec![0u64; len];
        let top = self.bits - 1;
        if let Some(l) = x.get_mut(top / w as usize) {
            *l = 1 << (top % w as usize);
        }
        for _ in top..w as usize * len + 1 {
            double_mod(&mut x, &self.n, w);
        }
        self.pow_mont(&x, (w as usize * len) as u64)
    }

    /// The modulus length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The modulus length in bytes: the length of every signature.
    pub fn modulus_len(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// The public exponent.
    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// The modulus, big-endian, without leading zero bytes.
    pub fn modulus(&self) -> Vec<u8> {
        limbs_to_be(&self.n, self.w, self.modulus_len()).unwrap_or_default()
    }

    /// Whether `signature` is a valid `scheme` signature of `message` under this key.
    /// Never panics.
    pub fn verify(&self, scheme: Scheme, message: &[u8], signature: &[u8]) -> bool {
        let (hash, pss) = scheme.parts();
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let m_hash = hash.digest(&[message]);
        if pss {
            pss_verify(hash, &m_hash, &em, self.bits - 1)
        } else {
            pkcs1v15_encode(hash, &m_hash, em.len()).is_some_and(|expected| expected == em)
        }
    }

    /// RSAVP1 with the length checks of RFC 8017 8.1.2/8.2.2 step 1: `signature^e mod n` as
    /// `modulus_len()` big-endian bytes, or `None` when the signature is not exactly that
    /// long or its integer is not below `n`.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        let k = self.modulus_len();
        if signature.len() != k {
            return None;
        }
        let s = limbs_from_be(signature, self.w, self.n.len())?;
        if !less_than(&s, &self.n) {
            return None;
        }
        limbs_to_be(&self.pow_e(&s), self.w, k)
    }

    /// `s^e mod n` for `s < n`, in Montgomery form.
    fn pow_e(&self, s: &[u64]) -> Vec<u64> {
        let len = self.n.len();
        let mut scratch = vec![0u64; len];
        // s in Montgomery form: s * R^2 * R^-1 = s * R.
        let mut s_m = vec![0u64; len];
        self.mont(s, Operand::Limbs(&self.r2), &mut scratch, &mut s_m);
        let acc = self.pow_mont(&s_m, self.e);
        // Out of Montgomery form: acc * 1 * R^-1.
        let mut out = vec![0u64; len];
        self.mont(&acc, Operand::One, &mut scratch, &mut out);
        out
    }

    /// `base^exp` for `base` in Montgomery form, in Montgomery form; `exp >= 1`. Left to
    /// right over `exp` below its top bit (for 65537: 16 squarings, 1 multiplication).
    fn pow_mont(&self, base: &[u64], exp: u64) -> Vec<u64> {
        let len = self.n.len();
        let mut scratch = vec![0u64; len];
        let mut acc = base.to_vec();
        let mut tmp = vec![0u64; len];
        let top = 63 - exp.leading_zeros().min(63);
        for i in (0..top).rev() {
            self.mont(&acc, Operand::Square, &mut scratch, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if (exp >> i) & 1 == 1 {
                self.mont(&acc, Operand::Limbs(base), &mut scratch, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        acc
    }

    /// Montgomery multiplication by columns (product scanning, with the reduction folded
    /// into the same columns): `out = a * b * R^-1 mod n`. `a`, `b` below `n`; `m` is
    /// scratch; all slices as long as `n`.
    ///
    /// Column `i` adds `a[j] * b[i - j]` and `m[j] * n[i - j]` over its `j`; in the low
    /// columns `m[i]` is then chosen so that the column is 0 mod `2^w`, and the high columns
    /// are the result. No column sum overflows a `u64`: see [`limb_bits`].
    fn mont(&self, a: &[u64], b: Operand<'_>, m: &mut [u64], out: &mut [u64]) {
        let (n, w) = (&self.n[..], self.w);
        let mask = (1u64 << w) - 1;
        let len = n.len();
        let n0 = n.first().copied().unwrap_or(0);
        let mut acc = 0u64;
        for i in 0..2 * len - 1 {
            // The j of column i: lo..=hi.
            let lo = i.saturating_sub(len - 1);
            let hi = i - lo;
            let Some(a_col) = a.get(lo..=hi) else {
                return;
            };
            acc += match b {
                Operand::Limbs(b) => match b.get(lo..=hi) {
                    Some(b_col) => dot_rev(a_col, b_col),
                    None => return,
                },
                Operand::Square => {
                    // a[j] * a[i - j] for j < i - j: the first `pairs` against the last.
                    let pairs = a_col.len() / 2;
                    let (Some(x), Some(y)) = (a_col.get(..pairs), a_col.get(a_col.len() - pairs..)) else {
                        return;
                    };
                    let diag = if i % 2 == 0 {
                        a.get(i / 2).map_or(0, |x| x * x)
                    } else {
                        0
                    };
                    2 * dot_rev(x, y) + diag
                }
                Operand::One => {
                    if i < len {
                        a.get(i).copied().unwrap_or(0)
                    } else {
                        0
                    }
                }
            };
            if i < len {
                // m[0..i] against n[1..=i]; then m[i] against n[0].
                let (Some(m_col), Some(n_col)) = (m.get(..i), n.get(1..=i)) else {
                    return;
                };
                acc += dot_rev(m_col, n_col);
                let mi = acc.wrapping_mul(self.n0_inv) & mask;
                acc += mi * n0;
                if let Some(slot) = m.get_mut(i) {
                    *slot = mi;
                }
            } else {
                let (Some(m_col), Some(n_col)) = (m.get(lo..), n.get(lo..)) else {
                    return;
                };
                acc += dot_rev(m_col, n_col);
                if let Some(slot) = out.get_mut(i - len) {
                    *slot = acc & mask;
                }
            }
            acc >>= w;
        }
        // The top limb, and what is above it: the result is below 2n.
        if let Some(slot) = out.last_mut() {
            *slot = acc & mask;
        }
        if acc >> w != 0 || !less_than(out, n) {
            sub_in_place(out, n, w);
        }
    }
}

/// The second factor of a Montgomery multiplication.
#[derive(Clone, Copy)]
enum Operand<'a> {
    Limbs(&'a [u64]),
    /// The first factor again: squaring, each cross product once, doubled.
    Square,
    /// 1: leaving Montgomery form.
    One,
}

/// `sum(x[j] * y[len - 1 - j])`: one column of a product.
#[inline(always)]
fn dot_rev(x: &[u64], y: &[u64]) -> u64 {
    x.iter().zip(y.iter().rev()).map(|(a, b)| a * b).sum()
}

/// Without leading zero bytes.
fn trim_be(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

/// Big-endian bytes to exactly `len` little-endian limbs of `w` bits, or `None` when the
/// value does not fit.
fn limbs_from_be(bytes: &[u8], w: u32, len: usize) -> Option<Vec<u64>> {
    let mask = (1u64 << w) - 1;
    let mut limbs = Vec::with_capacity(len + 1);
    let (mut acc, mut have) = (0u64, 0u32);
    for &b in bytes.iter().rev() {
        acc |= u64::from(b) << have;
        have += 8;
        if have >= w {
            limbs.push(acc & mask);
            acc >>= w;
            have -= w;
        }
    }
    if have > 0 {
        limbs.push(acc);
    }
    if limbs.len() > len {
        if limbs.get(len..).is_some_and(|extra| extra.iter().any(|&l| l != 0)) {
            return None;
        }
        limbs.truncate(len);
    }
    limbs.resize(len, 0);
    Some(limbs)
}

/// Little-endian limbs of `w` bits to exactly `k` big-endian bytes, or `None` when the value
/// does not fit.
fn limbs_to_be(limbs: &[u64], w: u32, k: usize) -> Option<Vec<u8>> {
    let mut le = Vec::with_capacity(k + 8);
    let (mut acc, mut have) = (0u64, 0u32);
    for &l in limbs {
        acc |= l << have;
        have += w;
        while have >= 8 {
            le.push(acc as u8);
            acc >>= 8;
            have -= 8;
        }
    }
    if have > 0 {
        le.push(acc as u8);
    }
    if le.len() > k {
        if le.get(k..).is_some_and(|extra| extra.iter().any(|&b| b != 0)) {
            return None;
        }
        le.truncate(k);
    }
    le.resize(k, 0);
    le.reverse();
    Some(le)
}

/// `a < b` for equally long limb slices.
fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` (mod `2^(w * len)`), equally long slices of `w`-bit limbs.
fn sub_in_place(a: &mut [u64], b: &[u64], w: u32) {
    let mask = (1u64 << w) - 1;
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = x.wrapping_sub(*y).wrapping_sub(borrow);
        *x = d & mask;
        borrow = d >> 63;
    }
}

/// `-n0^-1 mod 2^w` for odd `n0`, by Newton's iteration (each step doubles the correct bits).
fn neg_inv(n0: u64, w: u32) -> u64 {
    // n0 * n0 = 1 mod 8 for odd n0: three bits to start; five steps give 96 >= 64.
    let mut x = n0;
    for _ in 0..5 {
        x = x.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(x)));
    }
    x.wrapping_neg() & ((1u64 << w) - 1)
}

/// `x = 2 * x mod n` for `x < n`, limbs of `w` bits.
fn double_mod(x: &mut [u64], n: &[u64], w: u32) {
    let mask = (1u64 << w) - 1;
    let mut carry = 0u64;
    for l in x.iter_mut() {
        let next = *l >> (w - 1);
        *l = ((*l << 1) | carry) & mask;
        carry = next;
    }
    if carry != 0 || !less_than(x, n) {
        sub_in_place(x, n, w);
    }
}

/// EMSA-PKCS1-v1_5 (RFC 8017 9.2) of the digest `m_hash` into `em_len` bytes:
/// `00 01 FF..FF 00 DigestInfo`, with at least eight `FF`. `None` when it does not fit.
fn pkcs1v15_encode(hash: Hash, m_hash: &[u8], em_len: usize) -> Option<Vec<u8>> {
    let prefix = hash.digest_info_prefix();
    let t_len = prefix.len() + m_hash.len();
    let ps_len = em_len.checked_sub(t_len + 3)?;
    if ps_len < 8 {
        return None;
    }
    let mut em = Vec::with_capacity(em_len);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(2 + ps_len, 0xff);
    em.push(0x00);
    em.extend_from_slice(prefix);
    em.extend_from_slice(m_hash);
    Some(em)
}

/// EMSA-PSS-VERIFY (RFC 8017 9.1.2) with MGF1 over `hash` and a salt of the hash length
/// (RFC 7518 3.5). `em` is the whole `k`-byte result of RSAVP1; `em_bits = modBits - 1`.
fn pss_verify(hash: Hash, m_hash: &[u8], em: &[u8], em_bits: usize) -> bool {
    let h_len = hash.len();
    let s_len = h_len;
    let em_len = em_bits.div_ceil(8);
    // 8.1.2 step 2c: EM = I2OSP(m, emLen); m must fit (when modBits - 1 is a multiple of 8,
    // the leading byte of the k-byte value is dropped and must be zero).
    let Some(lead) = em.len().checked_sub(em_len) else {
        return false;
    };
    let (Some(high), Some(em)) = (em.get(..lead), em.get(lead..)) else {
        return false;
    };
    if high.iter().any(|&b| b != 0) {
        return false;
    }
    // Step 3.
    if em_len < h_len + s_len + 2 {
        return false;
    }
    // Step 4: the trailer.
    let Some((&0xbc, rest)) = em.split_last() else {
        return false;
    };
    // Step 5.
    let db_len = em_len - h_len - 1;
    let (Some(masked_db), Some(h)) = (rest.get(..db_len), rest.get(db_len..)) else {
        return false;
    };
    // Step 6: the leftmost 8 * emLen - emBits bits of maskedDB are zero.
    let unused = 8 * em_len - em_bits;
    let top_mask = 0xffu8 >> unused;
    match masked_db.first() {
        Some(&b) if b & !top_mask == 0 => {}
        _ => return false,
    }
    // Steps 7 and 8: DB = maskedDB xor MGF1(H, emLen - hLen - 1).
    let mut db = masked_db.to_vec();
    let mut counter = 0u32;
    for chunk in db.chunks_mut(h_len) {
        let mask = hash.digest(&[h, &counter.to_be_bytes()]);
        for (d, m) in chunk.iter_mut().zip(&mask) {
            *d ^= m;
        }
        counter = counter.wrapping_add(1);
    }
    // Step 9.
    if let Some(b) = db.first_mut() {
        *b &= top_mask;
    }
    // Step 10: PS zeros, then 0x01.
    let ps_len = em_len - h_len - s_len - 2;
    let (Some(ps), Some(&0x01), Some(salt)) = (db.get(..ps_len), db.get(ps_len), db.get(ps_len + 1..)) else {
        return false;
    };
    if ps.iter().any(|&b| b != 0) {
        return false;
    }
    // Steps 11 to 14: H' = Hash(00*8 || mHash || salt) must equal H.
    hash.digest(&[&[0u8; 8], m_hash, salt]) == h
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// RFC 7515 A.2's 2048-bit RSA modulus.
    fn rfc7515_n() -> Vec<u8> {
        crate::b64::decode(
            "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
        )
        .unwrap()
    }

    fn small(v: u128, key: &RsaKey) -> Vec<u64> {
        limbs_from_be(&v.to_be_bytes(), key.w, key.n.len()).unwrap()
    }

    #[test]
    fn limb_width_fits_the_column_sums() {
        assert_eq!(limb_bits(2048), Some(28));
        assert_eq!(limb_bits(3072), Some(28));
        assert_eq!(limb_bits(127 * 28), Some(28));
        assert_eq!(limb_bits(127 * 28 + 1), Some(27));
        assert_eq!(limb_bits(4096), Some(27));
        assert_eq!(limb_bits(8192), Some(27));
        assert_eq!(limb_bits(511 * 27 + 1), None);
    }

    #[test]
    fn neg_inv_is_the_negated_inverse() {
        for w in [27, 28] {
            let mask = (1u64 << w) - 1;
            for n0 in [1u64, 3, mask, 0x0234_5677 & mask, 0x0800_0001] {
                assert_eq!(n0.wrapping_mul(neg_inv(n0, w)) & mask, mask, "n0 = {n0:#x}, w = {w}");
            }
        }
    }

    #[test]
    fn limbs_round_trip() {
        let n = rfc7515_n();
        for w in [27, 28] {
            let len = 2048usize.div_ceil(w as usize);
            let limbs = limbs_from_be(&n, w, len).unwrap();
            assert!(limbs.iter().all(|&l| l < 1 << w));
            assert_eq!(limbs_to_be(&limbs, w, 256).unwrap(), n);
            assert!(limbs_to_be(&limbs, w, 255).is_none(), "does not fit 255 bytes");
            assert_eq!(limbs_to_be(&limbs, w, 258).unwrap()[..2], [0, 0]);
            assert!(limbs_from_be(&n, w, len - 1).is_none(), "does not fit one limb less");
        }
        assert_eq!(
            limbs_from_be(&[0, 0, 1, 2, 3, 4, 5], 28, 3).unwrap(),
            vec![0x203_0405, 0x010, 0]
        );
        assert_eq!(limbs_from_be(&[0, 0, 0], 28, 2).unwrap(), vec![0, 0]);
        assert_eq!(limbs_from_be(&[], 28, 1).unwrap(), vec![0]);
    }

    #[test]
    fn montgomery_arithmetic_agrees_with_doubling() {
        // A 2048-bit key (28-bit limbs) and an 8192-bit one (27-bit limbs).
        let mut big = vec![0xff; 1024];
        big[1000] = 0x17;
        for (n, e) in [(rfc7515_n(), [1u8, 0, 1]), (big, [1, 0, 1])] {
            let key = RsaKey::new(&n, &e).unwrap();
            let (len, w) = (key.n.len(), key.w);
            let one = small(1, &key);
            let mut m = vec![0; len];
            // R mod n two ways: mont(R^2, 1) and by doubling.
            let mut r = vec![0; len];
            key.mont(&key.r2, Operand::Limbs(&one), &mut m, &mut r);
            let mut x = one.clone();
            for _ in 0..w as usize * len {
                double_mod(&mut x, &key.n, w);
            }
            assert_eq!(r, x);
            // R^2 mod n by doubling all the way, as the definition says.
            for _ in 0..w as usize * len {
                double_mod(&mut x, &key.n, w);
            }
            assert_eq!(key.r2, x);
            let mut back = vec![0; len];
            key.mont(&r, Operand::Limbs(&one), &mut m, &mut back);
            assert_eq!(back, one);
            key.mont(&r, Operand::One, &mut m, &mut back);
            assert_eq!(back, one);
            // Squaring equals multiplication by itself, for a few values below n.
            let mut n_minus_1 = key.n.clone();
            n_minus_1[0] -= 1;
            for a in [
                r.clone(),
                key.r2.clone(),
                n_minus_1.clone(),
                one.clone(),
                small(u128::MAX, &key),
            ] {
                let (mut sq, mut mul) = (vec![0; len], vec![0; len]);
                key.mont(&a, Operand::Square, &mut m, &mut sq);
                key.mont(&a, Operand::Limbs(&a), &mut m, &mut mul);
                assert_eq!(sq, mul);
                assert!(less_than(&sq, &key.n));
                key.mont(&a, Operand::One, &mut m, &mut sq);
                key.mont(&a, Operand::Limbs(&one), &mut m, &mut mul);
                assert_eq!(sq, mul);
            }
            // 2^65537 mod n by Montgomery exponentiation, and by doubling.
            let by_pow = key.pow_e(&small(2, &key));
            let mut y = one.clone();
            for _ in 0..65537 {
                double_mod(&mut y, &key.n, w);
            }
            assert_eq!(by_pow, y);
            // (n - 1)^e = n - 1 for odd e; 1^e = 1; 0^e = 0.
            assert_eq!(key.pow_e(&n_minus_1), n_minus_1);
            assert_eq!(key.pow_e(&one), one);
            assert_eq!(key.pow_e(&vec![0; len]), vec![0; len]);
        }
    }

    #[test]
    fn small_exponent_cube() {
        // e = 3: s^3 mod n for a small s is s^3 itself.
        let key = RsaKey::new(&rfc7515_n(), &[3]).unwrap();
        let s: u128 = 0x2a_dead_beef; // s^3 < 2^128
        assert_eq!(key.pow_e(&small(s, &key)), small(s * s * s, &key));
        // e = 5 (binary 101: a squaring, a squaring and a multiplication).
        let key = RsaKey::new(&rfc7515_n(), &[5]).unwrap();
        let s: u128 = 0x1ab_cdef; // s^5 < 2^128
        assert_eq!(key.pow_e(&small(s, &key)), small(s * s * s * s * s, &key));
    }

    #[test]
    fn key_checks_in_the_rsa_crate_order() {
        let n = rfc7515_n();
        assert_eq!(
            RsaKey::new(&n[1..], &[1, 0, 1]),
            Err(RsaKeyError::ModulusTooShort(2040))
        );
        assert_eq!(
            RsaKey::new(&[0xc5; 128], &[1, 0, 1]),
            Err(RsaKeyError::ModulusTooShort(1024))
        );
        assert_eq!(
            RsaKey::new(&[0xff; 1025], &[1, 0, 1]),
            Err(RsaKeyError::ModulusTooLong(8200))
        );
        assert_eq!(RsaKey::new(&[], &[1, 0, 1]), Err(RsaKeyError::ModulusTooShort(0)));
        assert!(RsaKey::new(&[0xff; 1024], &[1, 0, 1]).is_ok(), "8192 bits is the limit");
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert_eq!(RsaKey::new(&even, &[1, 0, 1]), Err(RsaKeyError::InvalidModulus));
        assert_eq!(RsaKey::new(&n, &[1, 0, 0]), Err(RsaKeyError::InvalidExponent));
        assert_eq!(RsaKey::new(&n, &[]), Err(RsaKeyError::InvalidExponent));
        assert_eq!(RsaKey::new(&n, &[1]), Err(RsaKeyError::ExponentTooSmall));
        assert_eq!(RsaKey::new(&n, &[2, 0, 0, 0, 1]), Err(RsaKeyError::ExponentTooLarge));
        assert!(
            RsaKey::new(&n, &[1, 0xff, 0xff, 0xff, 0xff]).is_ok(),
            "2^33 - 1 is the limit"
        );
        assert_eq!(RsaKey::new(&n, &[1; 9]), Err(RsaKeyError::ExponentTooLarge));
        assert_eq!(
            RsaKey::new(&even, &[1; 9]),
            Err(RsaKeyError::ExponentTooLarge),
            "e's size first"
        );
        assert_eq!(
            RsaKey::new(&even, &[2]),
            Err(RsaKeyError::InvalidModulus),
            "then n's parity"
        );
        // Leading zeros do not count.
        let mut padded = vec![0, 0];
        padded.extend_from_slice(&n);
        let key = RsaKey::new(&padded, &[0, 0, 1, 0, 1]).unwrap();
        assert_eq!((key.bits(), key.modulus_len(), key.exponent()), (2048, 256, 65537));
        assert_eq!(key.modulus(), n);
    }

    #[test]
    fn pkcs1v15_encoding_is_rfc8017s() {
        let em = pkcs1v15_encode(Hash::Sha256, &[0xaa; 32], 256).unwrap();
        assert_eq!(em.len(), 256);
        assert_eq!(&em[..2], &[0, 1]);
        assert!(em[2..256 - 52].iter().all(|&b| b == 0xff));
        assert_eq!(em[256 - 52], 0);
        assert_eq!(&em[256 - 51..256 - 32], Hash::Sha256.digest_info_prefix());
        assert_eq!(&em[256 - 32..], &[0xaa; 32]);
        // Eight FF at least.
        assert!(pkcs1v15_encode(Hash::Sha512, &[0; 64], 19 + 64 + 3 + 7).is_none());
        assert!(pkcs1v15_encode(Hash::Sha512, &[0; 64], 19 + 64 + 3 + 8).is_some());
    }

    #[test]
    fn wrong_lengths_and_large_values_are_refused_before_any_work() {
        let key = RsaKey::new(&rfc7515_n(), &[1, 0, 1]).unwrap();
        assert!(key.public_op(&[]).is_none());
        assert!(key.public_op(&[0; 255]).is_none());
        assert!(key.public_op(&[0; 257]).is_none());
        assert!(key.public_op(&rfc7515_n()).is_none(), "s = n");
        assert!(key.public_op(&[0xff; 256]).is_none());
        assert_eq!(key.public_op(&[0; 256]).unwrap(), vec![0; 256]);
        for scheme in [
            Scheme::Rs256,
            Scheme::Rs384,
            Scheme::Rs512,
            Scheme::Ps256,
            Scheme::Ps384,
            Scheme::Ps512,
        ] {
            assert!(!key.verify(scheme, b"m", &[0; 256]));
            assert!(!key.verify(scheme, b"m", &[]));
        }
    }
}
