//! A fast SM2 group backend: Jacobian coordinates with `a = −3` formulas over the
//! Montgomery field of [`field`] (x86-64 assembly for the product, square, add and
//! subtract when the CPU has BMI2 and ADX, detected at run time; portable Rust otherwise),
//! a signed 6-bit Booth comb for `G` (43 rows × 32 affine points, built once), and
//! Booth-recoded signed 5-bit windows for variable points (a Jacobian table of `P…16P`).
//!
//! Constant time for secret scalars: every scalar is processed as a fixed number of
//! windows in a fixed order, table entries are read by scanning the whole row with masks,
//! and the identity cases (a zero digit, an empty accumulator) are handled by mask
//! selects — no branch or memory index depends on a secret.
//!
//! Why the incomplete Jacobian formulas are safe here: the group has prime order `n`
//! (cofactor 1) and scalars are reduced below `n`. Before each signed-window addition but
//! the last, the accumulator is `32·m·P` with `|32·m| < n/32 + 32`, and the addend `d·P`
//! with `|d| ≤ 16`: `32·m ≡ ±d (mod n)` only when `m = 0`, the identity, handled by
//! selects. Only the last addition can meet `±acc` (scalars within 32 of `n`), so it takes
//! the complete path. The comb is the same: before row `i` the partial sum is below
//! `64ⁱ/2` in absolute value and the addend is `±d·64ⁱ·G` with `1 ≤ d ≤ 32`, so they meet
//! only in the last row (`64⁴² = 2²⁵²`, scalars near `n`), which takes the complete path.
//! The one addition of two independent products (`k₃·Q₁ + k₂·G`) is complete too (it
//! also doubles when the two are equal).

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod adx;
pub(crate) mod field;
mod safegcd;

use std::sync::LazyLock;

use field::Fe;

use crate::{AffinePoint, Scalar};

#[inline(always)]
fn eq_mask(a: u64, b: u64) -> u64 {
    let x = a ^ b;
    std::hint::black_box(((x | x.wrapping_neg()) >> 63).wrapping_sub(1))
}

#[derive(Clone, Copy, Debug)]
struct Jac {
    x: Fe,
    y: Fe,
    z: Fe,
}

const INF: Jac = Jac { x: Fe::ONE, y: Fe::ONE, z: Fe::ZERO };

impl Jac {
    fn select(mask: u64, a: &Jac, b: &Jac) -> Jac {
        Jac { x: Fe::select(mask, &a.x, &b.x), y: Fe::select(mask, &a.y, &b.y), z: Fe::select(mask, &a.z, &b.z) }
    }

    fn from_affine(x: &Fe, y: &Fe) -> Jac {
        Jac { x: *x, y: *y, z: Fe::ONE }
    }

    fn is_inf(&self) -> u64 {
        self.z.is_zero()
    }

    /// dbl-2004-hmv (a = −3), 4M + 4S and few linear steps; the identity (Z = 0) stays
    /// the identity.
    fn double(&self) -> Jac {
        let zz = self.z.square();
        let t = self.x.sub(&zz).mul(&self.x.add(&zz));
        let m = t.double().add(&t);
        let y2 = self.y.double();
        let z3 = y2.mul(&self.z);
        let y2 = y2.square();
        let s = y2.mul(&self.x);
        let y4_8 = y2.square().half();
        let x3 = m.square().sub(&s.double());
        let y3 = s.sub(&x3).mul(&m).sub(&y4_8);
        Jac { x: x3, y: y3, z: z3 }
    }

    /// add-2007-bl without special cases; also returns (H == 0, r == 0) masks.
    fn add_raw(&self, o: &Jac) -> (Jac, u64, u64) {
        let z1z1 = self.z.square();
        let z2z2 = o.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = o.x.mul(&z1z1);
        let s1 = self.y.mul(&o.z).mul(&z2z2);
        let s2 = o.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let i = h.double().square();
        let j = h.mul(&i);
        let r = s2.sub(&s1).double();
        let v = u1.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&j).double());
        let z3 = self.z.add(&o.z).square().sub(&z1z1).sub(&z2z2).mul(&h);
        (Jac { x: x3, y: y3, z: z3 }, h.is_zero(), r.is_zero())
    }

    /// Addition with the identity on either side handled by selects.
    fn add_ct(&self, o: &Jac) -> Jac {
        let (sum, _, _) = self.add_raw(o);
        let sum = Jac::select(self.is_inf(), o, &sum);
        Jac::select(o.is_inf(), self, &sum)
    }

    /// Complete: also `P + P` (doubling) and `P + (−P)` (identity), by selects.
    fn add_complete(&self, o: &Jac) -> Jac {
        let (sum, h0, r0) = self.add_raw(o);
        let dbl = self.double();
        let both_live = !self.is_inf() & !o.is_inf();
        let sum = Jac::select(h0 & r0 & both_live, &dbl, &sum);
        let sum = Jac::select(h0 & !r0 & both_live, &INF, &sum);
        let sum = Jac::select(self.is_inf(), o, &sum);
        Jac::select(o.is_inf(), self, &sum)
    }

    /// madd-2007-bl: `self + (x, y)` for an affine point; no special cases.
    fn madd_raw(&self, x2: &Fe, y2: &Fe) -> Jac {
        let z1z1 = self.z.square();
        let u2 = x2.mul(&z1z1);
        let s2 = y2.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(&i);
        let r = s2.sub(&self.y).double();
        let v = self.x.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&j).double());
        let z3 = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jac { x: x3, y: y3, z: z3 }
    }

    fn to_affine(self) -> Option<(Fe, Fe)> {
        let (x, zi, zi2) = self.x_and_inverses()?;
        Some((x, self.y.mul(&zi2).mul(&zi)))
    }

    /// The affine `x` only (what a signature's `r` needs): one product less than
    /// [`Jac::to_affine`] and no `y`.
    fn affine_x(self) -> Option<Fe> {
        self.x_and_inverses().map(|(x, _, _)| x)
    }

    /// (`x/z²`, `z⁻¹`, `z⁻²`), unless this is the identity.
    fn x_and_inverses(&self) -> Option<(Fe, Fe, Fe)> {
        if self.z.is_zero() != 0 {
            return None;
        }
        let zi = self.z.invert();
        let zi2 = zi.square();
        Some((self.x.mul(&zi2), zi, zi2))
    }
}

fn to_fe_pair(p: &AffinePoint) -> Option<(Fe, Fe)> {
    let sec1 = crate::point_to_sec1(p);
    if sec1[0] != 4 {
        return None;
    }
    Some((Fe::from_bytes(sec1[1..33].try_into().ok()?)?, Fe::from_bytes(sec1[33..].try_into().ok()?)?))
}

fn from_fe_pair(x: &Fe, y: &Fe) -> AffinePoint {
    let mut sec1 = [0u8; 65];
    sec1[0] = 4;
    sec1[1..33].copy_from_slice(&x.to_bytes());
    sec1[33..].copy_from_slice(&y.to_bytes());
    // Our arithmetic only makes curve points; the decoder re-checks.
    crate::point_from_sec1(&sec1).expect("the fast backend produced a point on the curve")
}

/// Booth windows of the generator comb: 6 bits, so 43 rows.
const COMB_W: usize = 6;
const COMB_ROWS: usize = 43;
const COMB_COLS: usize = 1 << (COMB_W - 1);

/// The generator comb: row `i` holds `j·64ⁱ·G` for `j = 1..=32`, affine, as 8 limbs
/// (`x` then `y`) so that a masked scan of a row is straight vector code.
static COMB: LazyLock<Vec<[[u64; 8]; COMB_COLS]>> = LazyLock::new(|| {
    let g = to_fe_pair(&AffinePoint::GENERATOR).expect("generator");
    let mut base = Jac::from_affine(&g.0, &g.1);
    let mut rows = Vec::with_capacity(COMB_ROWS);
    for _ in 0..COMB_ROWS {
        let mut row = [[0u64; 8]; COMB_COLS];
        let mut acc = base;
        for (j, slot) in row.iter_mut().enumerate() {
            if j > 0 {
                acc = acc.add_complete(&base);
            }
            let (x, y) = acc.to_affine().expect("multiples of G below n are not the identity");
            slot[..4].copy_from_slice(&x.0);
            slot[4..].copy_from_slice(&y.0);
        }
        rows.push(row);
        for _ in 0..COMB_W {
            base = base.double();
        }
    }
    rows
});

/// `k·G`, constant time in `k`.
pub fn mul_base(k: &Scalar) -> Option<AffinePoint> {
    mul_base_jac(k).to_affine().map(|(x, y)| from_fe_pair(&x, &y))
}

fn mul_base_jac(k: &Scalar) -> Jac {
    let digits = booth::<COMB_W, COMB_ROWS>(k);
    let comb = &*COMB;
    let mut acc = INF;
    let mut acc_inf = u64::MAX;
    for (i, (row, &(mag, neg))) in comb.iter().zip(digits.iter()).enumerate() {
        let mut sel = [0u64; 8];
        for (j, entry) in row.iter().enumerate() {
            let m = eq_mask(mag, j as u64 + 1);
            for (s, e) in sel.iter_mut().zip(entry.iter()) {
                *s |= e & m;
            }
        }
        let ex = Fe([sel[0], sel[1], sel[2], sel[3]]);
        let ey = Fe([sel[4], sel[5], sel[6], sel[7]]);
        let ey = ey.neg_if(neg);
        let zero = eq_mask(mag, 0);
        let sum = if i + 1 == COMB_ROWS {
            // The last row can meet ±acc (scalars near n): the complete path.
            acc.add_complete(&Jac::from_affine(&ex, &ey))
        } else {
            acc.madd_raw(&ex, &ey)
        };
        let candidate = Jac::select(acc_inf, &Jac::from_affine(&ex, &ey), &sum);
        acc = Jac::select(zero, &acc, &candidate);
        acc_inf &= zero;
    }
    acc
}

/// Booth-recoded signed `W`-bit windows of `k`: (|digit|, all-ones if negative) for
/// window `i` = bits `W·i−1 ..= W·i+W−1`; `k = Σ ±|dᵢ|·2^(W·i)` with `|dᵢ| ≤ 2^(W−1)`.
/// `N` windows must reach bit 256 (`W·N − 1 ≥ 256`), so the top digit is not negative.
fn booth<const W: usize, const N: usize>(k: &Scalar) -> [(u64, u64); N] {
    use elliptic_curve::PrimeField;
    const { assert!(W * N > 256) };
    let be = k.to_repr();
    let bit = |j: i32| -> u64 {
        if !(0..256).contains(&j) {
            return 0;
        }
        ((be[31 - (j / 8) as usize] >> (j % 8)) & 1) as u64
    };
    let mut out = [(0u64, 0u64); N];
    for (i, slot) in out.iter_mut().enumerate() {
        let base = (W * i) as i32 - 1;
        let w: u64 = (0..=W as i32).map(|t| bit(base + t) << t).sum();
        let s = !((w >> W).wrapping_sub(1)); // all ones if the window's top bit is set
        let d = (1u64 << (W + 1)).wrapping_sub(w).wrapping_sub(1);
        let d = (d & s) | (w & !s);
        let mag = (d >> 1) + (d & 1);
        *slot = (mag, s);
    }
    out
}

fn mul_var_jac(k: &Scalar, p: &(Fe, Fe)) -> Jac {
    // P, 2P, …, 16P (Jacobian: an inversion to make them affine costs more than it saves).
    let base = Jac::from_affine(&p.0, &p.1);
    let mut table = [base; 16];
    for j in 1..16 {
        // (j+1)·P: a doubling for the even multiples (cheaper than an addition).
        table[j] = if j % 2 == 1 { table[j / 2].double() } else { table[j - 1].add_ct(&base) };
    }
    let digits = booth::<5, 52>(k);
    let mut acc = INF;
    for i in (0..digits.len()).rev() {
        if i + 1 != digits.len() {
            acc = acc.double().double().double().double().double();
        }
        let (mag, neg) = digits[i];
        let mut e = table[0];
        for (j, entry) in table.iter().enumerate().skip(1) {
            e = Jac::select(eq_mask(mag, j as u64 + 1), entry, &e);
        }
        e.y = e.y.neg_if(neg);
        let e = Jac::select(eq_mask(mag, 0), &INF, &e);
        acc = if i == 0 {
            // The last addition can meet ±acc (scalars within 32 of n): the complete path.
            acc.add_complete(&e)
        } else {
            acc.add_ct(&e)
        };
    }
    acc
}

/// `k·P`, constant time in `k`.
pub fn mul(k: &Scalar, p: &AffinePoint) -> Option<AffinePoint> {
    let pp = to_fe_pair(p)?;
    mul_var_jac(k, &pp).to_affine().map(|(x, y)| from_fe_pair(&x, &y))
}

/// `a·P + b·G` in Jacobian coordinates (`None` if `P` cannot be decoded).
fn lincomb_jac(a: &Scalar, p: &AffinePoint, b: &Scalar) -> Option<Jac> {
    let pp = to_fe_pair(p)?;
    Some(mul_var_jac(a, &pp).add_complete(&mul_base_jac(b)))
}

/// `a·P + b·G`, constant time in `a` and `b`.
pub fn lincomb(a: &Scalar, p: &AffinePoint, b: &Scalar) -> Option<AffinePoint> {
    lincomb_jac(a, p, b)?.to_affine().map(|(x, y)| from_fe_pair(&x, &y))
}

/// The x-coordinate of `a·P + b·G` as 32 big-endian bytes (what `r` needs), if not the identity.
pub fn lincomb_x(a: &Scalar, p: &AffinePoint, b: &Scalar) -> Option<[u8; 32]> {
    lincomb_jac(a, p, b)?.affine_x().map(|x| x.to_bytes())
}

/// The x-coordinate of `k·G` (big-endian), if not the identity.
pub fn mul_base_x(k: &Scalar) -> Option<[u8; 32]> {
    mul_base_jac(k).affine_x().map(|x| x.to_bytes())
}

/// Build the comb now rather than on the first signature.
pub fn warm_up() {
    LazyLock::force(&COMB);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectivePoint;
    use crate::encoding::random_nonzero_scalar;
    use elliptic_curve::ops::Reduce;

    fn rustcrypto_mul(k: &Scalar, p: &AffinePoint) -> AffinePoint {
        (ProjectivePoint::from(*p) * k).to_affine()
    }

    fn edge_scalars() -> Vec<Scalar> {
        let mut v: Vec<Scalar> =
            [1u64, 2, 3, 15, 16, 17, 31, 32, 33, 255, 256, 0xffff_ffff].iter().map(|&x| Scalar::from(x)).collect();
        let minus = |x: u64| -Scalar::from(x);
        v.extend((1..=40).map(minus));
        let mut high = [0u8; 32];
        high[0] = 0x80;
        v.push(<Scalar as Reduce<sm2::FieldBytes>>::reduce(&sm2::FieldBytes::from(high)));
        v
    }

    /// Points with a small x-coordinate (x = 1, 2, … where x³ − 3x + b is a square).
    fn small_x_points() -> Vec<AffinePoint> {
        let mut out = Vec::new();
        for x in 1u8..40 {
            let mut enc = [0u8; 33];
            enc[0] = 2;
            enc[32] = x;
            use elliptic_curve::sec1::FromSec1Point;
            if let Ok(point) = sm2::Sec1Point::from_bytes(enc)
                && let Some(p) = Option::<AffinePoint>::from(AffinePoint::from_sec1_point(&point))
            {
                out.push(p);
            }
        }
        assert!(out.len() >= 5);
        out
    }

    #[test]
    fn booth_digits_sum_back_to_the_scalar() {
        let mut scalars = edge_scalars();
        for _ in 0..50 {
            scalars.push(random_nonzero_scalar());
        }
        for k in scalars {
            resum(&booth::<5, 52>(&k), 5, &k);
            resum(&booth::<COMB_W, COMB_ROWS>(&k), COMB_W, &k);
        }
    }

    fn resum(digits: &[(u64, u64)], w: usize, k: &Scalar) {
        let mut sum = Scalar::ZERO;
        let mut weight = Scalar::ONE;
        for &(mag, neg) in digits {
            assert!(mag <= 1 << (w - 1));
            let d = Scalar::from(mag) * weight;
            sum += if neg != 0 { -d } else { d };
            weight *= Scalar::from(1u64 << w);
        }
        assert_eq!(&sum, k, "{w}-bit Booth digits");
        assert_eq!(digits.last().unwrap().1, 0, "the top digit is not negative");
    }

    /// The portable product and square (what CPUs without BMI2/ADX run) give the same
    /// points as RustCrypto.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn portable_field_path_matches_rustcrypto() {
        use std::sync::atomic::Ordering;
        adx::FORCE_PORTABLE.store(true, Ordering::Relaxed);
        let g = AffinePoint::GENERATOR;
        let p = small_x_points()[0];
        let mut scalars = edge_scalars();
        scalars.push(random_nonzero_scalar());
        for k in &scalars {
            assert_eq!(mul_base(k), Some(rustcrypto_mul(k, &g)), "k·G");
            assert_eq!(mul(k, &p), Some(rustcrypto_mul(k, &p)), "k·P");
        }
        adx::FORCE_PORTABLE.store(false, Ordering::Relaxed);
    }

    #[test]
    fn field_inverse_and_bytes_round_trip() {
        let mut b = [0u8; 32];
        b[31] = 7;
        let seven = Fe::from_bytes(&b).unwrap();
        assert_eq!(seven.mul(&seven.invert()).to_bytes(), Fe::ONE.to_bytes());
        assert_eq!(seven.to_bytes(), b);
        assert!(Fe::from_bytes(&[0xff; 32]).is_none(), "values ≥ p are refused");
        assert_eq!(seven.sub(&seven).is_zero(), u64::MAX);
        assert_eq!(Fe::ZERO.sub(&seven).add(&seven).to_bytes(), [0u8; 32]);
    }

    #[test]
    fn base_and_variable_multiplication_match_rustcrypto() {
        let g = AffinePoint::GENERATOR;
        let mut points = small_x_points();
        points.push(g);
        let mut scalars = edge_scalars();
        for _ in 0..24 {
            scalars.push(random_nonzero_scalar());
        }
        for k in &scalars {
            assert_eq!(mul_base(k), Some(rustcrypto_mul(k, &g)), "k·G");
            for p in &points {
                assert_eq!(mul(k, p), Some(rustcrypto_mul(k, p)), "k·P");
            }
            let b = random_nonzero_scalar();
            let expect = (ProjectivePoint::from(points[0]) * k + ProjectivePoint::GENERATOR * b).to_affine();
            assert_eq!(lincomb(k, &points[0], &b), Some(expect), "a·P + b·G");
        }
        // The identity and the complete path: a·G + (−a)·G, and a·G + a·G.
        let a = scalars[20];
        assert_eq!(lincomb(&a, &g, &-a), None);
        assert_eq!(lincomb(&a, &g, &a), Some(rustcrypto_mul(&(a + a), &g)));
        assert_eq!(mul_base(&Scalar::ZERO), None);
        assert_eq!(mul(&Scalar::ZERO, &g), None);
    }
}
