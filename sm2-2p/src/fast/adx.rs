//! GF(p) arithmetic in x86-64 assembly: the Montgomery product and square with
//! `mulx`/`adcx`/`adox` (BMI2 + ADX — callers must have checked [`available`]), two
//! independent carry chains per row so the adds of low and high halves interleave; and
//! modular add and subtract with `adc`/`sbb`/`cmov` (baseline x86-64, always usable).
//!
//! Same algorithm as the portable [`super::field::Fe::mul`]: for each limb `bᵢ`, add
//! `a·bᵢ`, then reduce one limb with `m = t₀` (`−p⁻¹ ≡ 1 mod 2⁶⁴`). Because `p ≡ −1
//! (mod 2⁶⁴)`, `(t + m·p)/2⁶⁴ = t/2⁶⁴ + m·q` with `q = (p + 1)/2⁶⁴ = 2¹⁹² − 2¹⁶⁰ − 2³² + 1`,
//! so a reduction step is shifts, adds and subtracts of `m` — no multiplication: the
//! product's 16 `mulx` are the only ones (the square's 10), which leaves the multiplier
//! to the product rows while the reductions run on the other ALUs. The result is below
//! `2p` after the last step and one masked (cmov) subtraction brings it below `p`. No
//! branch, no secret-dependent address.
//!
//! The templates are put together from the macros below (one per repeated step, register
//! names as arguments), so each step is written once.

use std::sync::LazyLock;

static P: [u64; 4] = super::field::P;

static AVAILABLE: LazyLock<bool> =
    LazyLock::new(|| std::is_x86_feature_detected!("bmi2") && std::is_x86_feature_detected!("adx"));

/// Tests set it to run the point arithmetic on the portable product and square.
#[cfg(test)]
pub static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this CPU has `mulx`, `adcx` and `adox`.
#[inline(always)]
pub fn available() -> bool {
    #[cfg(test)]
    if FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    *AVAILABLE
}

/// The product's window after a row or reduction: pending CF into `w4`, pending OF and the
/// CF out of `w4` into `w5` (`s2` holds zero).
macro_rules! settle {
    ($w4:ident, $w5:ident) => {
        concat!(
            "adcx {",
            stringify!($w4),
            "}, {s2}\n",
            "adox {",
            stringify!($w5),
            "}, {s2}\n",
            "adcx {",
            stringify!($w5),
            "}, {s2}",
        )
    };
}

/// Product row `i ≥ 1`: `w0..w5 += a·b[i]` (`off = 8i`), `w5` starting from zero.
macro_rules! mul_row {
    ($off:literal, $w0:ident, $w1:ident, $w2:ident, $w3:ident, $w4:ident, $w5:ident) => {
        concat!(
            "xor {",
            stringify!($w5),
            ":e}, {",
            stringify!($w5),
            ":e}\n",
            "mov rdx, qword ptr [{b} + ",
            $off,
            "]\n",
            "mulx {hi}, {lo}, qword ptr [{a}]\n",
            "adcx {",
            stringify!($w0),
            "}, {lo}\n",
            "adox {",
            stringify!($w1),
            "}, {hi}\n",
            "mulx {hi}, {lo}, qword ptr [{a} + 8]\n",
            "adcx {",
            stringify!($w1),
            "}, {lo}\n",
            "adox {",
            stringify!($w2),
            "}, {hi}\n",
            "mulx {hi}, {lo}, qword ptr [{a} + 16]\n",
            "adcx {",
            stringify!($w2),
            "}, {lo}\n",
            "adox {",
            stringify!($w3),
            "}, {hi}\n",
            "mulx {hi}, {lo}, qword ptr [{a} + 24]\n",
            "adcx {",
            stringify!($w3),
            "}, {lo}\n",
            "adox {",
            stringify!($w4),
            "}, {hi}\n",
            settle!($w4, $w5),
        )
    };
}

/// `lo, hi = m·2³²` (low and high limbs) for the reduction step's `m` in `w`.
macro_rules! m_shifted {
    ($w:ident) => {
        concat!(
            "mov {lo}, {",
            stringify!($w),
            "}\n",
            "shl {lo}, 32\n",
            "mov {hi}, {",
            stringify!($w),
            "}\n",
            "shr {hi}, 32",
        )
    };
}

/// `a, b, c, d (, e) −= lo, hi, lo, hi` — the negative half of `m·q` — with the borrow
/// taken from `e` when there is one.
macro_rules! sub_m_shifted {
    ($a:ident, $b:ident, $c:ident, $d:ident $(, $e:ident)?) => {
        concat!(
            "sub {",
            stringify!($a),
            "}, {lo}\n",
            "sbb {",
            stringify!($b),
            "}, {hi}\n",
            "sbb {",
            stringify!($c),
            "}, {lo}\n",
            "sbb {",
            stringify!($d),
            "}, {hi}",
            $("\nsbb {", stringify!($e), "}, 0",)?
        )
    };
}

/// `w1, w2, w3 += m` at limb 0 with `m` in `w0`, the carry pending in CF.
macro_rules! add_m_low {
    ($w0:ident, $w1:ident, $w2:ident, $w3:ident) => {
        concat!(
            "add {",
            stringify!($w1),
            "}, {",
            stringify!($w0),
            "}\n",
            "adc {",
            stringify!($w2),
            "}, 0\n",
            "adc {",
            stringify!($w3),
            "}, 0",
        )
    };
}

/// The product's reduction step, by shifts and adds (no multiplication): `m = w0`;
/// `w1..w5 += m·q` with `m·q = m·2¹⁹² + m − m·2³²·(2¹²⁸ + 1)`: add `m` at limbs 0 and 3
/// of the window, subtract `lo, hi, lo, hi` (`m·2³²` and `m·2¹⁶⁰`). The window's true
/// value stays non-negative, so the borrow chain ends in `w5`.
macro_rules! mul_reduce {
    ($w0:ident, $w1:ident, $w2:ident, $w3:ident, $w4:ident, $w5:ident) => {
        concat!(
            m_shifted!($w0),
            "\n",
            add_m_low!($w0, $w1, $w2, $w3),
            "\n",
            "adc {",
            stringify!($w4),
            "}, {",
            stringify!($w0),
            "}\n",
            "adc {",
            stringify!($w5),
            "}, 0\n",
            sub_m_shifted!($w1, $w2, $w3, $w4, $w5),
        )
    };
}

/// The square's reduction step on a four-limb window: `m = w0`, which becomes the new top
/// limb — that is the `m·2¹⁹²` of `m·q` already in place; then `m` at limb 0 and the
/// shifted copies subtracted. The value after the step is below `2²⁵⁶`, so the top limb
/// needs no carry out (intermediate wraps cancel).
macro_rules! square_reduce {
    ($w0:ident, $w1:ident, $w2:ident, $w3:ident) => {
        concat!(
            m_shifted!($w0),
            "\n",
            add_m_low!($w0, $w1, $w2, $w3),
            "\n",
            "adc {",
            stringify!($w0),
            "}, 0\n",
            sub_m_shifted!($w1, $w2, $w3, $w0),
        )
    };
}

/// `x − p` if that does not borrow (counting the bit `top` above `x`), else `x`: copy into
/// `t`, subtract, select with `cmovnc`.
macro_rules! select_below_p {
    ($x0:ident, $x1:ident, $x2:ident, $x3:ident, $t0:ident, $t1:ident, $t2:ident, $t3:ident, $top:ident) => {
        concat!(
            "mov {",
            stringify!($t0),
            "}, {",
            stringify!($x0),
            "}\n",
            "mov {",
            stringify!($t1),
            "}, {",
            stringify!($x1),
            "}\n",
            "mov {",
            stringify!($t2),
            "}, {",
            stringify!($x2),
            "}\n",
            "mov {",
            stringify!($t3),
            "}, {",
            stringify!($x3),
            "}\n",
            "sub {",
            stringify!($t0),
            "}, qword ptr [rip + {p}]\n",
            "sbb {",
            stringify!($t1),
            "}, qword ptr [rip + {p} + 8]\n",
            "sbb {",
            stringify!($t2),
            "}, qword ptr [rip + {p} + 16]\n",
            "sbb {",
            stringify!($t3),
            "}, qword ptr [rip + {p} + 24]\n",
            "sbb {",
            stringify!($top),
            "}, 0\n",
            "cmovnc {",
            stringify!($x0),
            "}, {",
            stringify!($t0),
            "}\n",
            "cmovnc {",
            stringify!($x1),
            "}, {",
            stringify!($t1),
            "}\n",
            "cmovnc {",
            stringify!($x2),
            "}, {",
            stringify!($t2),
            "}\n",
            "cmovnc {",
            stringify!($x3),
            "}, {",
            stringify!($t3),
            "}",
        )
    };
}

/// An `asm!` block of the Montgomery product family: the template leaves the result in
/// `r0..r3`; `lo`, `hi`, `rdx` and the caller's `s*` registers are scratch; `q` and `p` are
/// the constant tables.
macro_rules! montgomery_asm {
    ([$($line:expr),+ $(,)?], $($operands:tt)*) => {{
        let (r0, r1, r2, r3): (u64, u64, u64, u64);
        std::arch::asm!(
            $($line),+,
            $($operands)*
            p = sym P,
            r0 = out(reg) r0,
            r1 = out(reg) r1,
            r2 = out(reg) r2,
            r3 = out(reg) r3,
            lo = out(reg) _,
            hi = out(reg) _,
            out("rdx") _,
            options(pure, readonly, nostack),
        );
        [r0, r1, r2, r3]
    }};
}

/// `a·b·2⁻²⁵⁶ mod p` for `a, b < p`.
///
/// # Safety
/// The CPU must support BMI2 and ADX ([`available`]).
#[inline(always)]
pub unsafe fn mul(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    // SAFETY: reads 32 bytes from `a` and `b` and the two constant tables; writes only
    // the declared registers; the caller guarantees the instructions exist.
    unsafe {
        montgomery_asm!(
            [
                "xor {s2:e}, {s2:e}",
                "mov rdx, qword ptr [{b}]",
                "mulx {r3}, {r2}, qword ptr [{a}]",
                "mulx {s0}, {lo}, qword ptr [{a} + 8]",
                "add {r3}, {lo}",
                "mulx {s1}, {lo}, qword ptr [{a} + 16]",
                "adc {s0}, {lo}",
                "mulx {r0}, {lo}, qword ptr [{a} + 24]",
                "adc {s1}, {lo}",
                "adc {r0}, 0",
                "xor {r1:e}, {r1:e}",
                // The six-limb window rotates by one limb per step.
                mul_reduce!(r2, r3, s0, s1, r0, r1),
                mul_row!(8, r3, s0, s1, r0, r1, r2),
                mul_reduce!(r3, s0, s1, r0, r1, r2),
                mul_row!(16, s0, s1, r0, r1, r2, r3),
                mul_reduce!(s0, s1, r0, r1, r2, r3),
                mul_row!(24, s1, r0, r1, r2, r3, s0),
                mul_reduce!(s1, r0, r1, r2, r3, s0),
                select_below_p!(r0, r1, r2, r3, lo, hi, s2, s1, s0),
            ],
            a = in(reg) a.as_ptr(),
            b = in(reg) b.as_ptr(),
            s0 = out(reg) _,
            s1 = out(reg) _,
            s2 = out(reg) _,
        )
    }
}

/// A modular step on `a` (in `t0..t3`) with the 32 bytes at `b`: the template computes the
/// raw result in `t`, a candidate in `u` and selects with `cmov`; `c` is a spare register.
macro_rules! modular_step {
    ($a:expr, $b:expr, $($line:expr),+ $(,)?) => {{
        let [mut t0, mut t1, mut t2, mut t3] = *$a;
        // SAFETY: reads 32 bytes at `b` and the constant `P`; baseline instructions only.
        unsafe {
            std::arch::asm!(
                $($line),+,
                b = in(reg) $b.as_ptr(),
                p = sym P,
                t0 = inout(reg) t0,
                t1 = inout(reg) t1,
                t2 = inout(reg) t2,
                t3 = inout(reg) t3,
                u0 = out(reg) _,
                u1 = out(reg) _,
                u2 = out(reg) _,
                u3 = out(reg) _,
                c = out(reg) _,
                options(pure, readonly, nostack),
            );
        }
        [t0, t1, t2, t3]
    }};
}

/// `a + b mod p` for `a, b < p` (baseline x86-64: `adc`, `sbb`, `cmov`).
#[inline(always)]
pub fn add(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    modular_step!(
        a,
        b,
        "xor {c:e}, {c:e}",
        "add {t0}, qword ptr [{b}]",
        "adc {t1}, qword ptr [{b} + 8]",
        "adc {t2}, qword ptr [{b} + 16]",
        "adc {t3}, qword ptr [{b} + 24]",
        "adc {c}, 0",
        select_below_p!(t0, t1, t2, t3, u0, u1, u2, u3, c),
    )
}

/// `a − b mod p` for `a, b < p`.
#[inline(always)]
pub fn sub(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    modular_step!(
        a,
        b,
        "sub {t0}, qword ptr [{b}]",
        "sbb {t1}, qword ptr [{b} + 8]",
        "sbb {t2}, qword ptr [{b} + 16]",
        "sbb {t3}, qword ptr [{b} + 24]",
        "sbb {c}, {c}",
        "mov {u0}, {t0}",
        "mov {u1}, {t1}",
        "mov {u2}, {t2}",
        "mov {u3}, {t3}",
        "add {u0}, qword ptr [rip + {p}]",
        "adc {u1}, qword ptr [rip + {p} + 8]",
        "adc {u2}, qword ptr [rip + {p} + 16]",
        "adc {u3}, qword ptr [rip + {p} + 24]",
        "test {c}, {c}",
        "cmovnz {t0}, {u0}",
        "cmovnz {t1}, {u1}",
        "cmovnz {t2}, {u2}",
        "cmovnz {t3}, {u3}",
    )
}

/// `a²·2⁻²⁵⁶ mod p` for `a < p`: the six cross products once, doubled, plus the four
/// squares (10 multiplications), then the low half is Montgomery-reduced on its own
/// (`L·2⁻²⁵⁶ ≤ p`) and the high half added (`< p`): one masked subtraction ends it.
///
/// # Safety
/// The CPU must support BMI2 and ADX ([`available`]).
#[inline(always)]
pub unsafe fn square(a: &[u64; 4]) -> [u64; 4] {
    // SAFETY: reads 32 bytes from `a` and the two constant tables; writes only the
    // declared registers; the caller guarantees the instructions exist.
    unsafe {
        montgomery_asm!(
            [
                "mov rdx, qword ptr [{a}]",
                "mulx {r2}, {r1}, qword ptr [{a} + 8]",
                "mulx {r3}, {lo}, qword ptr [{a} + 16]",
                "add {r2}, {lo}",
                "mulx {s0}, {lo}, qword ptr [{a} + 24]",
                "adc {r3}, {lo}",
                "adc {s0}, 0",
                "mov rdx, qword ptr [{a} + 8]",
                "xor {s1:e}, {s1:e}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {r3}, {lo}",
                "adox {s0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {s0}, {lo}",
                "adox {s1}, {hi}",
                "adc {s1}, 0",
                "mov rdx, qword ptr [{a} + 16]",
                "mulx {s2}, {lo}, qword ptr [{a} + 24]",
                "add {s1}, {lo}",
                "adc {s2}, 0",
                "xor {s3:e}, {s3:e}",
                "add {r1}, {r1}",
                "adc {r2}, {r2}",
                "adc {r3}, {r3}",
                "adc {s0}, {s0}",
                "adc {s1}, {s1}",
                "adc {s2}, {s2}",
                "adc {s3}, 0",
                "mov rdx, qword ptr [{a}]",
                "mulx {hi}, {r0}, rdx",
                "add {r1}, {hi}",
                "mov rdx, qword ptr [{a} + 8]",
                "mulx {hi}, {lo}, rdx",
                "adc {r2}, {lo}",
                "adc {r3}, {hi}",
                "mov rdx, qword ptr [{a} + 16]",
                "mulx {hi}, {lo}, rdx",
                "adc {s0}, {lo}",
                "adc {s1}, {hi}",
                "mov rdx, qword ptr [{a} + 24]",
                "mulx {hi}, {lo}, rdx",
                "adc {s2}, {lo}",
                "adc {s3}, {hi}",
                square_reduce!(r0, r1, r2, r3),
                square_reduce!(r1, r2, r3, r0),
                square_reduce!(r2, r3, r0, r1),
                square_reduce!(r3, r0, r1, r2),
                "xor {lo:e}, {lo:e}",
                "add {r0}, {s0}",
                "adc {r1}, {s1}",
                "adc {r2}, {s2}",
                "adc {r3}, {s3}",
                "adc {lo}, 0",
                select_below_p!(r0, r1, r2, r3, s0, s1, s2, s3, lo),
            ],
            a = in(reg) a.as_ptr(),
            s0 = out(reg) _,
            s1 = out(reg) _,
            s2 = out(reg) _,
            s3 = out(reg) _,
        )
    }
}
