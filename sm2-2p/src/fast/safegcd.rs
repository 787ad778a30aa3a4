//! Constant-time inversion modulo the SM2 prime by Bernstein–Yang "safegcd" divsteps
//! (<https://gcd.cr.yp.to/safegcd-20190413.pdf>), in batches of 62 on the low bits, with
//! signed integers in five 62-bit limbs.
//!
//! The state is `(δ, f, g)` with `f = p`, `g = x`, `δ = 1`, and `(d, e)` with
//! `f ≡ d·x`, `g ≡ e·x (mod p)`. A divstep is: if `δ > 0` and `g` is odd,
//! `(δ, f, g) ← (1 − δ, g, (g − f)/2)`, else `(1 + δ, f, (g + (g mod 2)·f)/2)`. After
//! `⌊(49·256 + 80)/17⌋ = 742` divsteps (the paper's bound for 256-bit inputs; we run
//! 12 × 62 = 744) `g = 0` and `f = ±1`, so `x⁻¹ = ±d`. The count is fixed, every step is
//! masks and adds, and no branch or address depends on `x`.
//!
//! A batch computes, from the low 64 bits of `f` and `g` only, the matrix `T` with
//! `2⁶²·(f', g') = T·(f, g)` (entries at most `2⁶²` in absolute value), then applies it to
//! the full `f, g` (an exact shift) and to `d, e` modulo `p`: there the division by `2⁶²`
//! adds the multiple `m·p` that clears the low 62 bits — since `p ≡ −1 (mod 2⁶⁴)`,
//! `m = (u·d + v·e) mod 2⁶²` — and two masked corrections bring the result back into
//! `[0, p)`.

/// Low 62 bits.
const M62: i64 = (1 << 62) - 1;

/// Five 62-bit limbs, little-endian; limbs 0–3 in `[0, 2⁶²)`, the top one signed.
type S62 = [i64; 5];

const fn to_s62(a: &[u64; 4]) -> S62 {
    let m = M62 as u64;
    [
        (a[0] & m) as i64,
        (((a[0] >> 62) | (a[1] << 2)) & m) as i64,
        (((a[1] >> 60) | (a[2] << 4)) & m) as i64,
        (((a[2] >> 58) | (a[3] << 6)) & m) as i64,
        (a[3] >> 56) as i64,
    ]
}

/// For `0 ≤ a < 2²⁵⁶` with normalised limbs.
fn from_s62(a: &S62) -> [u64; 4] {
    let a = a.map(|v| v as u64);
    [a[0] | (a[1] << 62), (a[1] >> 2) | (a[2] << 60), (a[2] >> 4) | (a[3] << 58), (a[3] >> 6) | (a[4] << 56)]
}

const P62: S62 = to_s62(&super::field::P);

/// The transition matrix of 62 divsteps: `(u, v, q, r)` and the new `δ`.
#[inline(always)]
fn divsteps_62(mut delta: i64, f0: u64, g0: u64) -> (i64, [i64; 4]) {
    let (mut f, mut g) = (f0, g0);
    let (mut u, mut v, mut q, mut r) = (1i64, 0i64, 0i64, 1i64);
    for _ in 0..62 {
        // all ones when δ > 0 (|δ| stays below 2⁶²), and when g is odd
        let positive = (delta.wrapping_neg()) >> 63;
        let odd = ((g & 1) as i64).wrapping_neg();
        let swap = positive & odd;
        // When swapping: (δ, f, g) ← (−δ, g, −f), and the rows likewise.
        delta = (delta ^ swap).wrapping_sub(swap);
        let t = (f ^ g) & swap as u64;
        f ^= t;
        g ^= t;
        g = (g ^ swap as u64).wrapping_sub(swap as u64);
        let t = (u ^ q) & swap;
        u ^= t;
        q ^= t;
        q = (q ^ swap).wrapping_sub(swap);
        let t = (v ^ r) & swap;
        v ^= t;
        r ^= t;
        r = (r ^ swap).wrapping_sub(swap);
        // Then the common step: g ← (g + [g odd]·f)/2, δ ← 1 + δ; the f row doubles
        // instead of the g row halving (the matrix carries the factor 2⁶²).
        delta = delta.wrapping_add(1);
        g = g.wrapping_add(f & odd as u64) >> 1;
        q = q.wrapping_add(u & odd);
        r = r.wrapping_add(v & odd);
        u = u.wrapping_shl(1);
        v = v.wrapping_shl(1);
    }
    (delta, [u, v, q, r])
}

/// `(u·a + v·b + m·p) / 2⁶²` limb by limb, with `m` a non-negative multiple (0 for f, g).
#[inline(always)]
fn combine(a: &S62, b: &S62, u: i64, v: i64, m: i64, first: i128) -> S62 {
    let mut out = [0i64; 5];
    let mut c = first >> 62;
    for i in 1..5 {
        c += u as i128 * a[i] as i128 + v as i128 * b[i] as i128 + m as i128 * P62[i] as i128;
        out[i - 1] = (c as i64) & M62;
        c >>= 62;
    }
    out[4] = c as i64;
    out
}

/// `a + (p & mask)`, limbs renormalised.
#[inline(always)]
fn add_p_masked(a: &S62, mask: i64) -> S62 {
    let mut out = [0i64; 5];
    let mut c = 0i64;
    for i in 0..5 {
        c += a[i] + (P62[i] & mask);
        out[i] = if i < 4 { c & M62 } else { c };
        c >>= 62;
    }
    out
}

/// From `(−p, 2p)` into `[0, p)`: add `p` if negative, then subtract it if that stays
/// non-negative — masks only.
#[inline(always)]
fn normalise(a: &S62) -> S62 {
    let a = add_p_masked(a, a[4] >> 63);
    let mut t = [0i64; 5];
    let mut c = 0i64;
    for i in 0..5 {
        c += a[i] - P62[i];
        t[i] = if i < 4 { c & M62 } else { c };
        c >>= 62;
    }
    // all ones if a − p < 0
    select(t[4] >> 63, &a, &t)
}

/// `(a, b) ← T·(a, b) / 2⁶²`: exact for `(f, g)`; for `(d, e)` (`modular`) modulo `p`,
/// both in `[0, p)` before and after. `modular` is which pair, not a secret.
#[inline(always)]
fn transform(a: &mut S62, b: &mut S62, t: &[i64; 4], modular: bool) {
    let row = |x: i64, y: i64| -> S62 {
        let c = x as i128 * a[0] as i128 + y as i128 * b[0] as i128;
        // p ≡ −1 (mod 2⁶²): adding m·p with m ≡ c clears the low 62 bits.
        let m = if modular { (c as i64) & M62 } else { 0 };
        let out = combine(a, b, x, y, m, c + m as i128 * P62[0] as i128);
        if modular { normalise(&out) } else { out }
    };
    let [u, v, q, r] = *t;
    let (na, nb) = (row(u, v), row(q, r));
    *a = na;
    *b = nb;
}

/// `a` where `mask` is all ones, else `b`.
#[inline(always)]
fn select(mask: i64, a: &S62, b: &S62) -> S62 {
    std::array::from_fn(|i| (a[i] & mask) | (b[i] & !mask))
}

/// `x⁻¹ mod p` for `0 ≤ x < p` as plain integers (0 for 0).
pub fn invert(x: &[u64; 4]) -> [u64; 4] {
    let mut f = P62;
    let mut g = to_s62(x);
    let mut d: S62 = [0; 5];
    let mut e: S62 = [1, 0, 0, 0, 0];
    let mut delta = 1i64;
    for _ in 0..12 {
        let (nd, t) = divsteps_62(delta, f[0] as u64, g[0] as u64);
        delta = nd;
        transform(&mut f, &mut g, &t, false);
        transform(&mut d, &mut e, &t, true);
    }
    // f = ±1 now (f = p, d = 0 for x = 0): x⁻¹ = ±d.
    let neg = f[4] >> 63;
    let mut minus_d = [0i64; 5];
    let mut c = 0i64;
    for i in 0..5 {
        c += P62[i] - d[i];
        minus_d[i] = if i < 4 { c & M62 } else { c };
        c >>= 62;
    }
    // p − 0 = p for d = 0, but then f = p is positive and d is kept.
    from_s62(&select(neg, &minus_d, &d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limbs_round_trip() {
        let p = super::super::field::P;
        assert_eq!(from_s62(&to_s62(&p)), p);
        let x = [0x0123_4567_89ab_cdef, u64::MAX, 1 << 63, 0x8000_0000_0000_0001];
        assert_eq!(from_s62(&to_s62(&x)), x);
    }
}
