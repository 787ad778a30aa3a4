//! GF(p) for the SM2 prime `p = 2²⁵⁶ − 2²²⁴ − 2⁹⁶ + 2⁶⁴ − 1`, Montgomery form, four
//! 64-bit limbs (little-endian), `u128` products.
//!
//! The prime's form makes Montgomery reduction cheap: `p ≡ −1 (mod 2⁶⁴)`, so
//! `−p⁻¹ mod 2⁶⁴ = 1` and each reduction step's multiplier is just the low limb.
//! Every operation is constant-time: no branch or index depends on a value; the final
//! conditional subtraction is a mask select.

/// `p`, little-endian limbs.
pub const P: [u64; 4] = [0xffff_ffff_ffff_ffff, 0xffff_ffff_0000_0000, 0xffff_ffff_ffff_ffff, 0xffff_fffe_ffff_ffff];
/// `2⁵¹² mod p` (to enter Montgomery form).
const R2: [u64; 4] = [0x0000_0002_0000_0003, 0x0000_0002_ffff_ffff, 0x0000_0001_0000_0001, 0x0000_0004_0000_0002];
/// `2⁷⁶⁸ mod p`: the Montgomery product of a plain inverse `(x·2²⁵⁶)⁻¹` with it is
/// `x⁻¹·2²⁵⁶`, the inverse in Montgomery form.
const R3: [u64; 4] = [0x0000_0012_0000_0016, 0x0000_000e_ffff_fff8, 0x0000_000a_0000_000c, 0x0000_001b_0000_0009];
/// `2²⁵⁶ mod p` = 1 in Montgomery form.
const R: [u64; 4] = [0x0000_0000_0000_0001, 0x0000_0000_ffff_ffff, 0x0000_0000_0000_0000, 0x0000_0001_0000_0000];

#[inline(always)]
fn adc(a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = a as u128 + b as u128 + carry as u128;
    (t as u64, (t >> 64) as u64)
}

#[inline(always)]
fn sbb(a: u64, b: u64, borrow: u64) -> (u64, u64) {
    let t = (a as u128).wrapping_sub(b as u128 + (borrow >> 63) as u128);
    (t as u64, (t >> 64) as u64)
}

#[inline(always)]
fn mac(a: u64, b: u64, c: u64, carry: u64) -> (u64, u64) {
    let t = a as u128 + (b as u128) * (c as u128) + carry as u128;
    (t as u64, (t >> 64) as u64)
}

/// An element of GF(p), in Montgomery form.
#[derive(Clone, Copy, Debug)]
pub struct Fe(pub(crate) [u64; 4]);

impl Fe {
    pub const ZERO: Fe = Fe([0; 4]);
    pub const ONE: Fe = Fe(R);

    /// `a + (p & mask)` and the carry out: `p` added or not, without a branch.
    #[inline(always)]
    fn add_p_masked(a: &[u64; 4], mask: u64) -> ([u64; 4], u64) {
        let (r0, c) = adc(a[0], P[0] & mask, 0);
        let (r1, c) = adc(a[1], P[1] & mask, c);
        let (r2, c) = adc(a[2], P[2] & mask, c);
        let (r3, c) = adc(a[3], P[3] & mask, c);
        ([r0, r1, r2, r3], c)
    }

    /// `a − p` if that does not borrow, else `a` (with `hi` the bit above `a`).
    #[inline(always)]
    fn sub_p_if_ge(a: [u64; 4], hi: u64) -> [u64; 4] {
        let (r0, b) = sbb(a[0], P[0], 0);
        let (r1, b) = sbb(a[1], P[1], b);
        let (r2, b) = sbb(a[2], P[2], b);
        let (r3, b) = sbb(a[3], P[3], b);
        let (_, b) = sbb(hi, 0, b);
        // b is all-ones if a < p (keep a), zero otherwise (take a − p).
        let keep = b;
        [
            (a[0] & keep) | (r0 & !keep),
            (a[1] & keep) | (r1 & !keep),
            (a[2] & keep) | (r2 & !keep),
            (a[3] & keep) | (r3 & !keep),
        ]
    }

    #[inline(always)]
    pub fn add(&self, o: &Fe) -> Fe {
        #[cfg(target_arch = "x86_64")]
        return Fe(super::adx::add(&self.0, &o.0));
        #[cfg(not(target_arch = "x86_64"))]
        self.add_portable(o)
    }

    /// [`Fe::add`] in portable Rust.
    #[inline]
    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    pub fn add_portable(&self, o: &Fe) -> Fe {
        let (r0, c) = adc(self.0[0], o.0[0], 0);
        let (r1, c) = adc(self.0[1], o.0[1], c);
        let (r2, c) = adc(self.0[2], o.0[2], c);
        let (r3, c) = adc(self.0[3], o.0[3], c);
        Fe(Self::sub_p_if_ge([r0, r1, r2, r3], c))
    }

    #[inline(always)]
    pub fn sub(&self, o: &Fe) -> Fe {
        #[cfg(target_arch = "x86_64")]
        return Fe(super::adx::sub(&self.0, &o.0));
        #[cfg(not(target_arch = "x86_64"))]
        self.sub_portable(o)
    }

    /// [`Fe::sub`] in portable Rust.
    #[inline]
    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    pub fn sub_portable(&self, o: &Fe) -> Fe {
        let (r0, b) = sbb(self.0[0], o.0[0], 0);
        let (r1, b) = sbb(self.0[1], o.0[1], b);
        let (r2, b) = sbb(self.0[2], o.0[2], b);
        let (r3, b) = sbb(self.0[3], o.0[3], b);
        // On borrow add p back (mask).
        Fe(Self::add_p_masked(&[r0, r1, r2, r3], b).0)
    }

    /// `a / 2`: add `p` when `a` is odd (mask), then shift the 257-bit sum right.
    #[inline(always)]
    pub fn half(&self) -> Fe {
        let odd = (self.0[0] & 1).wrapping_neg();
        let ([t0, t1, t2, t3], c) = Self::add_p_masked(&self.0, odd);
        Fe([(t0 >> 1) | (t1 << 63), (t1 >> 1) | (t2 << 63), (t2 >> 1) | (t3 << 63), (t3 >> 1) | (c << 63)])
    }

    #[inline(always)]
    pub fn double(&self) -> Fe {
        self.add(self)
    }

    /// Montgomery product `a·b·2⁻²⁵⁶ mod p`: the assembly of [`super::adx`] when the CPU
    /// has BMI2 and ADX, else [`Fe::mul_portable`].
    #[inline(always)]
    pub fn mul(&self, o: &Fe) -> Fe {
        #[cfg(target_arch = "x86_64")]
        if super::adx::available() {
            // SAFETY: the CPU has BMI2 and ADX.
            #[allow(unsafe_code)]
            return Fe(unsafe { super::adx::mul(&self.0, &o.0) });
        }
        self.mul_portable(o)
    }

    /// [`Fe::mul`] in portable Rust: the 512-bit product, then four reduction steps that
    /// add `m·p` with `m` the lowest limb. With `p = 2²⁵⁶ − 2²²⁴ − 2⁹⁶ + 2⁶⁴ − 1`, `m·p` is
    /// shifts and additions of `m` — no multiplications in the reduction.
    #[inline]
    pub fn mul_portable(&self, o: &Fe) -> Fe {
        let (a, b) = (&self.0, &o.0);
        let mut t = [0u64; 9];
        for i in 0..4 {
            let mut carry = 0u64;
            for j in 0..4 {
                let (lo, hi) = mac(t[i + j], a[i], b[j], carry);
                t[i + j] = lo;
                carry = hi;
            }
            t[i + 4] = carry;
        }
        Self::reduce(t)
    }

    /// Montgomery reduction of a 512-bit value (limbs 0..8; limb 8 is zero on entry).
    /// Signed 128-bit accumulators per limb take the shifted copies of each `m`; a limb is
    /// normalised only when its low 64 bits become the next `m`, and the top once at the end.
    #[inline(always)]
    fn reduce(t: [u64; 9]) -> Fe {
        let mut acc = [0i128; 9];
        for (a, &v) in acc.iter_mut().zip(t.iter()) {
            *a = v as i128;
        }
        for i in 0..4 {
            let m = acc[i] as u64;
            acc[i + 1] += acc[i] >> 64;
            let (lo, hi) = ((m << 32) as i128, (m >> 32) as i128);
            let m = m as i128;
            acc[i + 1] += m - lo;
            acc[i + 2] -= hi;
            acc[i + 3] -= lo;
            acc[i + 4] += m - hi;
        }
        let mut out = [0u64; 5];
        let mut carry = 0i128;
        for (k, o) in out.iter_mut().enumerate() {
            let v = acc[4 + k] + carry;
            *o = v as u64;
            carry = v >> 64;
        }
        Fe(Self::sub_p_if_ge([out[0], out[1], out[2], out[3]], out[4]))
    }

    /// The textbook CIOS Montgomery product, kept to cross-check [`Fe::mul`].
    #[cfg(test)]
    pub fn mul_cios(&self, o: &Fe) -> Fe {
        let (a, b) = (&self.0, &o.0);
        let mut t = [0u64; 6];
        for &bi in b.iter() {
            let (t0, c) = mac(t[0], a[0], bi, 0);
            let (t1, c) = mac(t[1], a[1], bi, c);
            let (t2, c) = mac(t[2], a[2], bi, c);
            let (t3, c) = mac(t[3], a[3], bi, c);
            let (t4, c) = adc(t[4], c, 0);
            let t5 = c;
            let m = t0;
            let (_, c) = mac(t0, m, P[0], 0);
            let (u0, c) = mac(t1, m, P[1], c);
            let (u1, c) = mac(t2, m, P[2], c);
            let (u2, c) = mac(t3, m, P[3], c);
            let (u3, c) = adc(t4, c, 0);
            t = [u0, u1, u2, u3, t5 + c, 0];
        }
        Fe(Self::sub_p_if_ge([t[0], t[1], t[2], t[3]], t[4]))
    }

    /// `a²`: six cross products doubled plus four squares (10 multiplications, not 16).
    #[inline(always)]
    pub fn square(&self) -> Fe {
        #[cfg(target_arch = "x86_64")]
        if super::adx::available() {
            // SAFETY: the CPU has BMI2 and ADX.
            #[allow(unsafe_code)]
            return Fe(unsafe { super::adx::square(&self.0) });
        }
        self.square_portable()
    }

    /// [`Fe::square`] in portable Rust.
    #[inline]
    pub fn square_portable(&self) -> Fe {
        let a = &self.0;
        let (t1, c) = mac(0, a[0], a[1], 0);
        let (t2, c) = mac(0, a[0], a[2], c);
        let (t3, c) = mac(0, a[0], a[3], c);
        let t4 = c;
        let (t3, c) = mac(t3, a[1], a[2], 0);
        let (t4, c) = mac(t4, a[1], a[3], c);
        let t5 = c;
        let (t5, c) = mac(t5, a[2], a[3], 0);
        let t6 = c;
        let t7 = t6 >> 63;
        let t6 = (t6 << 1) | (t5 >> 63);
        let t5 = (t5 << 1) | (t4 >> 63);
        let t4 = (t4 << 1) | (t3 >> 63);
        let t3 = (t3 << 1) | (t2 >> 63);
        let t2 = (t2 << 1) | (t1 >> 63);
        let t1 = t1 << 1;
        let (t0, hi) = mac(0, a[0], a[0], 0);
        let (t1, c) = adc(t1, hi, 0);
        let (lo, hi) = mac(0, a[1], a[1], 0);
        let (t2, c) = adc(t2, lo, c);
        let (t3, c) = adc(t3, hi, c);
        let (lo, hi) = mac(0, a[2], a[2], 0);
        let (t4, c) = adc(t4, lo, c);
        let (t5, c) = adc(t5, hi, c);
        let (lo, hi) = mac(0, a[3], a[3], 0);
        let (t6, c) = adc(t6, lo, c);
        let (t7, _) = adc(t7, hi, c);
        Self::reduce([t0, t1, t2, t3, t4, t5, t6, t7, 0])
    }

    /// The inverse (0 for 0): constant-time safegcd ([`super::safegcd`]) on the
    /// Montgomery representation, then one product by `2⁷⁶⁸` to return to Montgomery form.
    pub fn invert(&self) -> Fe {
        Fe(super::safegcd::invert(&self.0)).mul(&Fe(R3))
    }

    /// `a^(p−2)` by a fixed addition chain: what [`Fe::invert`] is checked against.
    #[cfg(test)]
    pub fn invert_fermat(&self) -> Fe {
        // p − 2 = 2²⁵⁶ − 2²²⁴ − 2⁹⁶ + 2⁶⁴ − 3, bits (high to low):
        // 31 ones, 0, 128 ones, 32 zeros, 62 ones, 0, 1  — built from runs of ones.
        let sqn = |x: Fe, n: usize| (0..n).fold(x, |x, _| x.square());
        let x1 = *self;
        let x2 = x1.square().mul(&x1);
        let x4 = sqn(x2, 2).mul(&x2);
        let x8 = sqn(x4, 4).mul(&x4);
        let x16 = sqn(x8, 8).mul(&x8);
        let x30 = sqn(x16, 14).mul(&sqn(x8, 6).mul(&sqn(x4, 2).mul(&x2)));
        let x31 = x30.square().mul(&x1);
        let x32 = x31.square().mul(&x1);
        let x62 = sqn(x32, 30).mul(&x30);
        let x64 = sqn(x32, 32).mul(&x32);
        let x128 = sqn(x64, 64).mul(&x64);
        // 31 ones, then a zero, then 128 ones.
        let mut r = sqn(x31, 1 + 128).mul(&x128);
        // 32 zeros, then 62 ones.
        r = sqn(r, 32 + 62).mul(&x62);
        // then "01".
        sqn(r, 2).mul(&x1)
    }

    pub fn is_zero(&self) -> u64 {
        let z = self.0[0] | self.0[1] | self.0[2] | self.0[3];
        // all-ones if zero
        ((z | z.wrapping_neg()) >> 63).wrapping_sub(1)
    }

    /// `−a` if `mask` is all-ones, else `a` — no branch.
    #[inline(always)]
    pub fn neg_if(&self, mask: u64) -> Fe {
        Fe::select(mask, &Fe::ZERO.sub(self), self)
    }

    /// `a` if `mask` is all-ones, else `b` — no branch.
    #[inline(always)]
    pub fn select(mask: u64, a: &Fe, b: &Fe) -> Fe {
        Fe([
            (a.0[0] & mask) | (b.0[0] & !mask),
            (a.0[1] & mask) | (b.0[1] & !mask),
            (a.0[2] & mask) | (b.0[2] & !mask),
            (a.0[3] & mask) | (b.0[3] & !mask),
        ])
    }

    /// From 32 big-endian bytes; `None` unless the value is below `p`.
    pub fn from_bytes(b: &[u8; 32]) -> Option<Fe> {
        let mut l = [0u64; 4];
        for (i, chunk) in b.chunks_exact(8).enumerate() {
            l[3 - i] = u64::from_be_bytes(chunk.try_into().ok()?);
        }
        let (_, bo) = sbb(l[0], P[0], 0);
        let (_, bo) = sbb(l[1], P[1], bo);
        let (_, bo) = sbb(l[2], P[2], bo);
        let (_, bo) = sbb(l[3], P[3], bo);
        if bo == 0 {
            return None;
        }
        Some(Fe(l).mul(&Fe(R2)))
    }

    /// To 32 big-endian bytes (out of Montgomery form).
    #[allow(clippy::wrong_self_convention)]
    pub fn to_bytes(&self) -> [u8; 32] {
        let l = self.mul(&Fe([1, 0, 0, 0])).0;
        let mut out = [0u8; 32];
        for i in 0..4 {
            out[i * 8..i * 8 + 8].copy_from_slice(&l[3 - i].to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_fe() -> Fe {
        loop {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).unwrap();
            if let Some(f) = Fe::from_bytes(&b) {
                return f;
            }
        }
    }

    #[test]
    fn special_form_reduction_matches_cios() {
        let p_minus_1 = {
            let mut b = [0xffu8; 32];
            b[3] = 0xfe;
            b[20..24].copy_from_slice(&[0, 0, 0, 0]);
            b[31] = 0xfe;
            Fe::from_bytes(&b).unwrap()
        };
        let mut cases = vec![Fe::ZERO, Fe::ONE, p_minus_1];
        for _ in 0..2000 {
            cases.push(random_fe());
        }
        for w in cases.windows(2) {
            assert_eq!(w[0].mul(&w[1]).to_bytes(), w[0].mul_cios(&w[1]).to_bytes());
            assert_eq!(w[0].square().to_bytes(), w[0].mul_cios(&w[0]).to_bytes());
        }
        assert_eq!(p_minus_1.mul(&p_minus_1).to_bytes(), Fe::ONE.to_bytes(), "(−1)² = 1");
    }

    /// The safegcd inverse equals Fermat's `a^(p−2)` on edge and random values, and
    /// `a·a⁻¹ = 1`.
    #[test]
    fn safegcd_inverse_matches_fermat() {
        let mut cases = vec![Fe::ZERO, Fe::ONE, Fe::ZERO.sub(&Fe::ONE), Fe([1, 0, 0, 0]), Fe([2, 0, 0, 0])];
        cases.push(Fe([P[0] - 1, P[1], P[2], P[3]]));
        cases.push(Fe([0, 0, 0, P[3]]));
        cases.push(Fe([u64::MAX, u64::MAX, u64::MAX, 0]));
        cases.push(Fe([0, 0, 0, 1 << 63]));
        for i in 0..64 {
            cases.push(Fe([1u64 << i, 0, 0, 0]));
            cases.push(Fe([0, 0, 1u64 << i, 0]));
        }
        for _ in 0..3000 {
            cases.push(random_fe());
        }
        for a in &cases {
            assert_eq!(a.invert().0, a.invert_fermat().0, "inverse of {a:?}");
            if a.is_zero() == 0 {
                assert_eq!(a.mul(&a.invert()).0, Fe::ONE.0, "a·a⁻¹ for {a:?}");
            }
        }
        assert_eq!(Fe::ZERO.invert().0, [0; 4]);
    }

    /// The assembly (x86-64) and portable paths agree, on edge values (0, 1, −1, values
    /// with all-ones or all-zero limbs, raw limbs near `p`) and random ones.
    #[test]
    fn assembly_and_portable_paths_agree() {
        let mut cases = vec![Fe::ZERO, Fe::ONE, Fe::ZERO.sub(&Fe::ONE), Fe([1, 0, 0, 0])];
        cases.push(Fe([P[0] - 1, P[1], P[2], P[3]]));
        cases.push(Fe([P[0], P[1] - 1, P[2], P[3]]));
        cases.push(Fe([0, 0, 0, P[3]]));
        cases.push(Fe([u64::MAX, u64::MAX, u64::MAX, 0]));
        cases.push(Fe([0, u64::MAX, 0, P[3] - 1]));
        for _ in 0..3000 {
            cases.push(random_fe());
        }
        for a in &cases[..9] {
            for b in &cases {
                check_pair(a, b);
            }
        }
        for w in cases.windows(2) {
            check_pair(&w[0], &w[1]);
        }
    }

    fn check_pair(a: &Fe, b: &Fe) {
        assert_eq!(a.mul(b).0, a.mul_portable(b).0, "mul {a:?} {b:?}");
        assert_eq!(a.mul(b).0, a.mul_cios(b).0, "mul vs CIOS {a:?} {b:?}");
        assert_eq!(a.square().0, a.square_portable().0, "square {a:?}");
        assert_eq!(a.add(b).0, a.add_portable(b).0, "add {a:?} {b:?}");
        assert_eq!(a.sub(b).0, a.sub_portable(b).0, "sub {a:?} {b:?}");
        assert_eq!(a.half().double().0, a.0, "half {a:?}");
        for r in [a.mul(b), a.square(), a.add(b), a.sub(b), a.half()] {
            let (_, borrow) = (0..4).fold((0u64, 0u64), |(_, bo), i| sbb(r.0[i], P[i], bo));
            assert_ne!(borrow, 0, "result below p");
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p sm2-2p -- --ignored --nocapture field_speed`
    #[test]
    #[ignore]
    fn field_speed() {
        let mut x = Fe::ONE.double().add(&Fe::ONE);
        let y = x;
        let n = 2_000_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            x = x.mul(&y);
        }
        println!("mul: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            x = x.mul_cios(&y);
        }
        println!("mul_cios: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            x = x.square();
        }
        println!("square: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            x = x.add(&y);
        }
        println!("add: {:.1} ns {:?}", t.elapsed().as_nanos() as f64 / n as f64, x.0[0]);
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            x = x.invert();
        }
        println!("invert (safegcd): {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            x = x.invert_fermat();
        }
        println!("invert (Fermat): {:.0} ns {:?}", t.elapsed().as_nanos() as f64 / n as f64, x.0[0]);
    }
}
