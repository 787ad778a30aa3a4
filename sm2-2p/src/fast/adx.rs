//! The Montgomery product in x86-64 assembly with `mulx`/`adcx`/`adox` (BMI2 + ADX): two
//! independent carry chains per row, so the adds of low and high halves interleave.
//!
//! Same algorithm as the portable [`super::field::Fe::mul`]: for each limb `bᵢ`, add
//! `a·bᵢ`, then reduce one limb with `m = t₀` (`−p⁻¹ ≡ 1 mod 2⁶⁴`). Because `p ≡ −1
//! (mod 2⁶⁴)`, `(t + m·p)/2⁶⁴ = t/2⁶⁴ + m·q` with `q = (p + 1)/2⁶⁴` — three limbs, so a
//! reduction step is three multiplications instead of four. The result is below `2p`
//! after the last step and one masked (cmov) subtraction brings it below `p`. No branch,
//! no secret-dependent address. Callers must have checked [`available`].

use std::sync::LazyLock;

/// `(p + 1) / 2⁶⁴`, little-endian.
static Q: [u64; 3] = [0xffff_ffff_0000_0001, 0xffff_ffff_ffff_ffff, 0xffff_fffe_ffff_ffff];
static P: [u64; 4] = super::field::P;

static AVAILABLE: LazyLock<bool> = LazyLock::new(|| std::is_x86_feature_detected!("bmi2") && std::is_x86_feature_detected!("adx"));

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

/// An `asm!` block of the Montgomery product family: the template leaves the result in
/// `r0..r3`; `lo`, `hi`, `rdx` and the caller's `s*` registers are scratch; `q` and `p` are
/// the constant tables.
macro_rules! montgomery_asm {
    ([$($line:literal),+ $(,)?], $($operands:tt)*) => {{
        let (r0, r1, r2, r3): (u64, u64, u64, u64);
        std::arch::asm!(
            $($line),+,
            $($operands)*
            q = sym Q,
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
                "xor {lo:e}, {lo:e}",
                "mov rdx, {r2}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {r3}, {lo}",
                "adox {s0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {s0}, {lo}",
                "adox {s1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {s1}, {lo}",
                "adox {r0}, {hi}",
                "adcx {r0}, {s2}",
                "adox {r1}, {s2}",
                "adcx {r1}, {s2}",
                "xor {r2:e}, {r2:e}",
                "mov rdx, qword ptr [{b} + 8]",
                "mulx {hi}, {lo}, qword ptr [{a} + 0]",
                "adcx {r3}, {lo}",
                "adox {s0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 8]",
                "adcx {s0}, {lo}",
                "adox {s1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {s1}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "adcx {r1}, {s2}",
                "adox {r2}, {s2}",
                "adcx {r2}, {s2}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {r3}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {s0}, {lo}",
                "adox {s1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {s1}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "adcx {r1}, {s2}",
                "adox {r2}, {s2}",
                "adcx {r2}, {s2}",
                "xor {r3:e}, {r3:e}",
                "mov rdx, qword ptr [{b} + 16]",
                "mulx {hi}, {lo}, qword ptr [{a} + 0]",
                "adcx {s0}, {lo}",
                "adox {s1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 8]",
                "adcx {s1}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "adcx {r2}, {s2}",
                "adox {r3}, {s2}",
                "adcx {r3}, {s2}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {s0}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {s1}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "adcx {r2}, {s2}",
                "adox {r3}, {s2}",
                "adcx {r3}, {s2}",
                "xor {s0:e}, {s0:e}",
                "mov rdx, qword ptr [{b} + 24]",
                "mulx {hi}, {lo}, qword ptr [{a} + 0]",
                "adcx {s1}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 8]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {r2}, {lo}",
                "adox {r3}, {hi}",
                "adcx {r3}, {s2}",
                "adox {s0}, {s2}",
                "adcx {s0}, {s2}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {s1}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r2}, {lo}",
                "adox {r3}, {hi}",
                "adcx {r3}, {s2}",
                "adox {s0}, {s2}",
                "adcx {s0}, {s2}",
                "mov {lo}, {r0}",
                "mov {hi}, {r1}",
                "mov {s2}, {r2}",
                "mov {s1}, {r3}",
                "sub {lo}, qword ptr [rip + {p}]",
                "sbb {hi}, qword ptr [rip + {p} + 8]",
                "sbb {s2}, qword ptr [rip + {p} + 16]",
                "sbb {s1}, qword ptr [rip + {p} + 24]",
                "sbb {s0}, 0",
                "cmovnc {r0}, {lo}",
                "cmovnc {r1}, {hi}",
                "cmovnc {r2}, {s2}",
                "cmovnc {r3}, {s1}",
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
    ($a:expr, $b:expr, $($line:literal),+ $(,)?) => {{
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
        "mov {u0}, {t0}",
        "mov {u1}, {t1}",
        "mov {u2}, {t2}",
        "mov {u3}, {t3}",
        "sub {u0}, qword ptr [rip + {p}]",
        "sbb {u1}, qword ptr [rip + {p} + 8]",
        "sbb {u2}, qword ptr [rip + {p} + 16]",
        "sbb {u3}, qword ptr [rip + {p} + 24]",
        "sbb {c}, 0",
        "cmovnc {t0}, {u0}",
        "cmovnc {t1}, {u1}",
        "cmovnc {t2}, {u2}",
        "cmovnc {t3}, {u3}",
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
                "mov rdx, {r0}",
                "xor {r0:e}, {r0:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {r2}, {lo}",
                "adox {r3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r3}, {lo}",
                "adox {r0}, {hi}",
                "adc {r0}, 0",
                "mov rdx, {r1}",
                "xor {r1:e}, {r1:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {r2}, {lo}",
                "adox {r3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {r3}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "adc {r1}, 0",
                "mov rdx, {r2}",
                "xor {r2:e}, {r2:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {r3}, {lo}",
                "adox {r0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "adc {r2}, 0",
                "mov rdx, {r3}",
                "xor {r3:e}, {r3:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {r0}, {lo}",
                "adox {r1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {r1}, {lo}",
                "adox {r2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {r2}, {lo}",
                "adox {r3}, {hi}",
                "adc {r3}, 0",
                "xor {lo:e}, {lo:e}",
                "add {r0}, {s0}",
                "adc {r1}, {s1}",
                "adc {r2}, {s2}",
                "adc {r3}, {s3}",
                "adc {lo}, 0",
                "mov {s0}, {r0}",
                "mov {s1}, {r1}",
                "mov {s2}, {r2}",
                "mov {s3}, {r3}",
                "sub {s0}, qword ptr [rip + {p}]",
                "sbb {s1}, qword ptr [rip + {p} + 8]",
                "sbb {s2}, qword ptr [rip + {p} + 16]",
                "sbb {s3}, qword ptr [rip + {p} + 24]",
                "sbb {lo}, 0",
                "cmovnc {r0}, {s0}",
                "cmovnc {r1}, {s1}",
                "cmovnc {r2}, {s2}",
                "cmovnc {r3}, {s3}",
            ],
            a = in(reg) a.as_ptr(),
            s0 = out(reg) _,
            s1 = out(reg) _,
            s2 = out(reg) _,
            s3 = out(reg) _,
        )
    }
}
