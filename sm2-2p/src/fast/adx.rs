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

/// `a·b·2⁻²⁵⁶ mod p` for `a, b < p`.
///
/// # Safety
/// The CPU must support BMI2 and ADX ([`available`]).
#[inline(always)]
pub unsafe fn mul(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let (r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: reads 32 bytes from `a` and `b` and the two constant tables; writes only
    // the declared registers; the caller guarantees the instructions exist.
    unsafe {
        std::arch::asm!(
                "xor {z:e}, {z:e}",
                "mov rdx, qword ptr [{b}]",
                "mulx {x1}, {x0}, qword ptr [{a}]",
                "mulx {x2}, {lo}, qword ptr [{a} + 8]",
                "add {x1}, {lo}",
                "mulx {x3}, {lo}, qword ptr [{a} + 16]",
                "adc {x2}, {lo}",
                "mulx {x4}, {lo}, qword ptr [{a} + 24]",
                "adc {x3}, {lo}",
                "adc {x4}, 0",
                "xor {x5:e}, {x5:e}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {x0}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {x1}, {lo}",
                "adox {x2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {x2}, {lo}",
                "adox {x3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {x3}, {lo}",
                "adox {x4}, {hi}",
                "adcx {x4}, {z}",
                "adox {x5}, {z}",
                "adcx {x5}, {z}",
                "xor {x0:e}, {x0:e}",
                "mov rdx, qword ptr [{b} + 8]",
                "mulx {hi}, {lo}, qword ptr [{a} + 0]",
                "adcx {x1}, {lo}",
                "adox {x2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 8]",
                "adcx {x2}, {lo}",
                "adox {x3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {x3}, {lo}",
                "adox {x4}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {x4}, {lo}",
                "adox {x5}, {hi}",
                "adcx {x5}, {z}",
                "adox {x0}, {z}",
                "adcx {x0}, {z}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {x1}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {x2}, {lo}",
                "adox {x3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {x3}, {lo}",
                "adox {x4}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {x4}, {lo}",
                "adox {x5}, {hi}",
                "adcx {x5}, {z}",
                "adox {x0}, {z}",
                "adcx {x0}, {z}",
                "xor {x1:e}, {x1:e}",
                "mov rdx, qword ptr [{b} + 16]",
                "mulx {hi}, {lo}, qword ptr [{a} + 0]",
                "adcx {x2}, {lo}",
                "adox {x3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 8]",
                "adcx {x3}, {lo}",
                "adox {x4}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {x4}, {lo}",
                "adox {x5}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {x5}, {lo}",
                "adox {x0}, {hi}",
                "adcx {x0}, {z}",
                "adox {x1}, {z}",
                "adcx {x1}, {z}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {x2}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {x3}, {lo}",
                "adox {x4}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {x4}, {lo}",
                "adox {x5}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {x5}, {lo}",
                "adox {x0}, {hi}",
                "adcx {x0}, {z}",
                "adox {x1}, {z}",
                "adcx {x1}, {z}",
                "xor {x2:e}, {x2:e}",
                "mov rdx, qword ptr [{b} + 24]",
                "mulx {hi}, {lo}, qword ptr [{a} + 0]",
                "adcx {x3}, {lo}",
                "adox {x4}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 8]",
                "adcx {x4}, {lo}",
                "adox {x5}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {x5}, {lo}",
                "adox {x0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {x0}, {lo}",
                "adox {x1}, {hi}",
                "adcx {x1}, {z}",
                "adox {x2}, {z}",
                "adcx {x2}, {z}",
                "xor {lo:e}, {lo:e}",
                "mov rdx, {x3}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 0]",
                "adcx {x4}, {lo}",
                "adox {x5}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {x5}, {lo}",
                "adox {x0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {x0}, {lo}",
                "adox {x1}, {hi}",
                "adcx {x1}, {z}",
                "adox {x2}, {z}",
                "adcx {x2}, {z}",
                "mov {lo}, {x4}",
                "mov {hi}, {x5}",
                "mov {z}, {x0}",
                "mov {x3}, {x1}",
                "sub {lo}, qword ptr [rip + {p}]",
                "sbb {hi}, qword ptr [rip + {p} + 8]",
                "sbb {z}, qword ptr [rip + {p} + 16]",
                "sbb {x3}, qword ptr [rip + {p} + 24]",
                "sbb {x2}, 0",
                "cmovnc {x4}, {lo}",
                "cmovnc {x5}, {hi}",
                "cmovnc {x0}, {z}",
                "cmovnc {x1}, {x3}",
            a = in(reg) a.as_ptr(),
            b = in(reg) b.as_ptr(),
            q = sym Q,
            p = sym P,
            x0 = out(reg) r2,
            x1 = out(reg) r3,
            x2 = out(reg) _,
            x3 = out(reg) _,
            x4 = out(reg) r0,
            x5 = out(reg) r1,
            lo = out(reg) _,
            hi = out(reg) _,
            z = out(reg) _,
            out("rdx") _,
            options(pure, readonly, nostack),
        );
    }
    [r0, r1, r2, r3]
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
    let (r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: reads 32 bytes from `a` and the two constant tables; writes only the
    // declared registers; the caller guarantees the instructions exist.
    unsafe {
        std::arch::asm!(
                "mov rdx, qword ptr [{a}]",
                "mulx {t2}, {t1}, qword ptr [{a} + 8]",
                "mulx {t3}, {lo}, qword ptr [{a} + 16]",
                "add {t2}, {lo}",
                "mulx {t4}, {lo}, qword ptr [{a} + 24]",
                "adc {t3}, {lo}",
                "adc {t4}, 0",
                "mov rdx, qword ptr [{a} + 8]",
                "xor {t5:e}, {t5:e}",
                "mulx {hi}, {lo}, qword ptr [{a} + 16]",
                "adcx {t3}, {lo}",
                "adox {t4}, {hi}",
                "mulx {hi}, {lo}, qword ptr [{a} + 24]",
                "adcx {t4}, {lo}",
                "adox {t5}, {hi}",
                "adc {t5}, 0",
                "mov rdx, qword ptr [{a} + 16]",
                "mulx {t6}, {lo}, qword ptr [{a} + 24]",
                "add {t5}, {lo}",
                "adc {t6}, 0",
                "xor {t7:e}, {t7:e}",
                "add {t1}, {t1}",
                "adc {t2}, {t2}",
                "adc {t3}, {t3}",
                "adc {t4}, {t4}",
                "adc {t5}, {t5}",
                "adc {t6}, {t6}",
                "adc {t7}, 0",
                "mov rdx, qword ptr [{a}]",
                "mulx {hi}, {t0}, rdx",
                "add {t1}, {hi}",
                "mov rdx, qword ptr [{a} + 8]",
                "mulx {hi}, {lo}, rdx",
                "adc {t2}, {lo}",
                "adc {t3}, {hi}",
                "mov rdx, qword ptr [{a} + 16]",
                "mulx {hi}, {lo}, rdx",
                "adc {t4}, {lo}",
                "adc {t5}, {hi}",
                "mov rdx, qword ptr [{a} + 24]",
                "mulx {hi}, {lo}, rdx",
                "adc {t6}, {lo}",
                "adc {t7}, {hi}",
                "mov rdx, {t0}",
                "xor {t0:e}, {t0:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {t1}, {lo}",
                "adox {t2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {t2}, {lo}",
                "adox {t3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {t3}, {lo}",
                "adox {t0}, {hi}",
                "adc {t0}, 0",
                "mov rdx, {t1}",
                "xor {t1:e}, {t1:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {t2}, {lo}",
                "adox {t3}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {t3}, {lo}",
                "adox {t0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {t0}, {lo}",
                "adox {t1}, {hi}",
                "adc {t1}, 0",
                "mov rdx, {t2}",
                "xor {t2:e}, {t2:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {t3}, {lo}",
                "adox {t0}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {t0}, {lo}",
                "adox {t1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {t1}, {lo}",
                "adox {t2}, {hi}",
                "adc {t2}, 0",
                "mov rdx, {t3}",
                "xor {t3:e}, {t3:e}",
                "mulx {hi}, {lo}, qword ptr [rip + {q}]",
                "adcx {t0}, {lo}",
                "adox {t1}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 8]",
                "adcx {t1}, {lo}",
                "adox {t2}, {hi}",
                "mulx {hi}, {lo}, qword ptr [rip + {q} + 16]",
                "adcx {t2}, {lo}",
                "adox {t3}, {hi}",
                "adc {t3}, 0",
                "xor {lo:e}, {lo:e}",
                "add {t0}, {t4}",
                "adc {t1}, {t5}",
                "adc {t2}, {t6}",
                "adc {t3}, {t7}",
                "adc {lo}, 0",
                "mov {t4}, {t0}",
                "mov {t5}, {t1}",
                "mov {t6}, {t2}",
                "mov {t7}, {t3}",
                "sub {t4}, qword ptr [rip + {p}]",
                "sbb {t5}, qword ptr [rip + {p} + 8]",
                "sbb {t6}, qword ptr [rip + {p} + 16]",
                "sbb {t7}, qword ptr [rip + {p} + 24]",
                "sbb {lo}, 0",
                "cmovnc {t0}, {t4}",
                "cmovnc {t1}, {t5}",
                "cmovnc {t2}, {t6}",
                "cmovnc {t3}, {t7}",
            a = in(reg) a.as_ptr(),
            q = sym Q,
            p = sym P,
            t0 = out(reg) r0,
            t1 = out(reg) r1,
            t2 = out(reg) r2,
            t3 = out(reg) r3,
            t4 = out(reg) _,
            t5 = out(reg) _,
            t6 = out(reg) _,
            t7 = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            out("rdx") _,
            options(pure, readonly, nostack),
        );
    }
    [r0, r1, r2, r3]
}
