//! Multi-precision arithmetic on fixed-size arrays of little-endian 32-bit limbs: the
//! integers under ECDSA's fields and scalars (`src/ecdsa.rs`) and Ed25519's scalars and
//! inversions (`src/ed25519.rs`). Every index below is a loop counter bounded by the array
//! length `N` (a compile-time constant), never data from the wire.
#![allow(clippy::indexing_slicing)]

/// Little-endian 32-bit limbs.
pub type Limbs<const N: usize> = [u32; N];

/// Parses a big-endian hex constant (compile time only: every caller is a `const`).
#[allow(clippy::panic)]
pub const fn from_hex<const N: usize>(s: &str) -> Limbs<N> {
    let b = s.as_bytes();
    let mut out = [0u32; N];
    let mut i = 0;
    while i < b.len() {
        let c = b[b.len() - 1 - i];
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex constant"),
        } as u32;
        if v != 0 {
            out[i / 8] |= v << ((i % 8) * 4);
        }
        i += 1;
    }
    out
}

/// `-m^-1 mod 2^32` for odd `m` (Newton iteration), the Montgomery constant.
pub const fn neg_inv(m: u32) -> u32 {
    let mut y = m; // correct to 3 bits for odd m
    let mut i = 0;
    while i < 5 {
        y = y.wrapping_mul(2u32.wrapping_sub(m.wrapping_mul(y)));
        i += 1;
    }
    y.wrapping_neg()
}

pub const fn geq<const N: usize>(a: &Limbs<N>, b: &Limbs<N>) -> bool {
    let mut i = N;
    while i > 0 {
        i -= 1;
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

/// `a - b` and the borrow out.
#[inline(always)]
pub const fn sub<const N: usize>(a: &Limbs<N>, b: &Limbs<N>) -> (Limbs<N>, bool) {
    let mut out = [0u32; N];
    let mut borrow = 0u64;
    let mut i = 0;
    while i < N {
        let d = (a[i] as u64).wrapping_sub(b[i] as u64).wrapping_sub(borrow);
        out[i] = d as u32;
        borrow = (d >> 63) & 1;
        i += 1;
    }
    (out, borrow != 0)
}

/// `a + b` and the carry out.
#[inline(always)]
pub const fn add<const N: usize>(a: &Limbs<N>, b: &Limbs<N>) -> (Limbs<N>, bool) {
    let mut out = [0u32; N];
    let mut carry = 0u64;
    let mut i = 0;
    while i < N {
        let s = a[i] as u64 + b[i] as u64 + carry;
        out[i] = s as u32;
        carry = s >> 32;
        i += 1;
    }
    (out, carry != 0)
}

/// `a + b mod m` for `a, b < m`.
#[inline(always)]
pub const fn add_mod<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Limbs<N>) -> Limbs<N> {
    let (s, carry) = add(a, b);
    let (d, borrow) = sub(&s, m);
    if carry || !borrow {
        d
    } else {
        s
    }
}

/// `a - b mod m` for `a, b < m`.
#[inline(always)]
pub const fn sub_mod<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Limbs<N>) -> Limbs<N> {
    let (d, borrow) = sub(a, b);
    if borrow {
        add(&d, m).0
    } else {
        d
    }
}

/// `2^k mod m` (compile time; `m` odd, above 2^(32N-32)).
pub const fn pow2_mod<const N: usize>(k: usize, m: &Limbs<N>) -> Limbs<N> {
    let mut x = [0u32; N];
    x[0] = 1;
    let mut i = 0;
    while i < k {
        x = add_mod(&x, &x, m);
        i += 1;
    }
    x
}

/// Montgomery product `a * b * 2^(-32N) mod m` for `a, b < m` (CIOS).
#[inline(always)]
pub fn mont_mul<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Limbs<N>, m0: u32) -> Limbs<N> {
    let mut t = [0u32; N];
    let mut t_hi = 0u32;
    for &bi in b.iter() {
        let bi = bi as u64;
        let mut c = 0u64;
        for j in 0..N {
            let x = t[j] as u64 + (a[j] as u64) * bi + c;
            t[j] = x as u32;
            c = x >> 32;
        }
        let x = t_hi as u64 + c;
        let t_top = (x >> 32) as u32;
        t_hi = x as u32;
        let q = t[0].wrapping_mul(m0) as u64;
        let x = t[0] as u64 + q * (m[0] as u64);
        let mut c = x >> 32;
        for j in 1..N {
            let x = t[j] as u64 + q * (m[j] as u64) + c;
            t[j - 1] = x as u32;
            c = x >> 32;
        }
        let x = t_hi as u64 + c;
        t[N - 1] = x as u32;
        t_hi = t_top + (x >> 32) as u32;
    }
    let (d, borrow) = sub(&t, m);
    if t_hi != 0 || !borrow {
        d
    } else {
        t
    }
}

/// `a * b mod 2^521 - 1` for `a, b < 2^521 - 1` (no Montgomery form: the Mersenne prime
/// reduces by a shift and an add).
#[inline(always)]
pub fn mul_p521(a: &Limbs<17>, b: &Limbs<17>) -> Limbs<17> {
    let mut t = [0u32; 34];
    for i in 0..17 {
        let bi = b[i] as u64;
        let mut c = 0u64;
        for j in 0..17 {
            let x = t[i + j] as u64 + (a[j] as u64) * bi + c;
            t[i + j] = x as u32;
            c = x >> 32;
        }
        t[i + 17] = c as u32;
    }
    // t = hi * 2^521 + lo, and 2^521 = 1 (mod p): t = lo + hi (mod p).
    let mut r = [0u32; 17];
    let mut c = 0u64;
    for k in 0..17 {
        let hi = (t[16 + k] >> 9) | (t[17 + k] << 23);
        let lo = if k == 16 { t[16] & 0x1ff } else { t[k] };
        let x = lo as u64 + hi as u64 + c;
        r[k] = x as u32;
        c = x >> 32;
    }
    // r < 2^522: fold bit 521 once more.
    let top = r[16] >> 9;
    r[16] &= 0x1ff;
    let mut c = top as u64;
    for w in r.iter_mut() {
        let x = *w as u64 + c;
        *w = x as u32;
        c = x >> 32;
    }
    const P: Limbs<17> = {
        let mut p = [0xffff_ffffu32; 17];
        p[16] = 0x1ff;
        p
    };
    let (d, borrow) = sub(&r, &P);
    if borrow {
        r
    } else {
        d
    }
}

/// Right shift by one, with `top` shifted into the highest bit.
#[inline(always)]
pub fn shr1<const N: usize>(a: &mut Limbs<N>, top: bool) {
    for i in 0..N {
        let hi = if i + 1 < N { a[i + 1] } else { top as u32 };
        a[i] = (a[i] >> 1) | (hi << 31);
    }
}

/// `a^-1 mod m` for odd `m` and `a` in `[1, m-1]` coprime to `m`: binary extended
/// Euclid, variable time (public inputs only). `None` when `a` is not invertible.
pub fn inv_vartime<const N: usize>(a: &Limbs<N>, m: &Limbs<N>) -> Option<Limbs<N>> {
    let mut one = [0u32; N];
    one[0] = 1;
    let is_one = |x: &Limbs<N>| *x == one;
    let is_zero = |x: &Limbs<N>| x.iter().all(|&w| w == 0);
    if is_zero(a) {
        return None;
    }
    // Invariants: a*x1 = u, a*x2 = v (mod m).
    let (mut u, mut v) = (*a, *m);
    let (mut x1, mut x2) = (one, [0u32; N]);
    while !is_one(&u) && !is_one(&v) {
        if is_zero(&u) || is_zero(&v) {
            return None;
        }
        while u[0] & 1 == 0 {
            shr1(&mut u, false);
            halve_mod(&mut x1, m);
        }
        while v[0] & 1 == 0 {
            shr1(&mut v, false);
            halve_mod(&mut x2, m);
        }
        if geq(&u, &v) {
            u = sub(&u, &v).0;
            x1 = sub_mod(&x1, &x2, m);
        } else {
            v = sub(&v, &u).0;
            x2 = sub_mod(&x2, &x1, m);
        }
    }
    Some(if is_one(&u) { x1 } else { x2 })
}

/// `x / 2 mod m` for odd `m`, `x < m`.
#[inline(always)]
fn halve_mod<const N: usize>(x: &mut Limbs<N>, m: &Limbs<N>) {
    if x[0] & 1 == 0 {
        shr1(x, false);
    } else {
        let (s, carry) = add(x, m);
        *x = s;
        shr1(x, carry);
    }
}
