"""What the binding's Python tests share: loading the generated module, counting checks,
and a small independent SM2 point multiplication (affine, textbook) to compare what the
binding derives from a secret with the value the vector file states for it."""

import os
import sys
import traceback

BINDING_DIR = os.environ.get("MCS_PHONE_FFI_PY")
if not BINDING_DIR:
    sys.exit("MCS_PHONE_FFI_PY must name the directory of the generated mcs_phone_ffi.py "
             "(phone-ffi/run-tests.sh sets it)")
sys.path.insert(0, BINDING_DIR)

import mcs_phone_ffi as ffi  # noqa: E402  (the generated binding, from BINDING_DIR)


class Checks:
    """Named checks; a failing one is reported and counted, the others still run."""

    def __init__(self, suite):
        self.suite = suite
        self.passed = 0
        self.failed = 0

    def check(self, name, fn):
        try:
            fn()
        except Exception:  # a failed assertion or a binding error: report it, go on
            self.failed += 1
            print(f"FAIL {self.suite}: {name}", flush=True)
            traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {self.suite}: {name}", flush=True)

    def finish(self):
        print(f"{self.suite}: {self.passed} passed, {self.failed} failed", flush=True)
        if self.failed or not self.passed:
            sys.exit(1)


def raises(kind, fn):
    """`fn()` must raise the binding's error `kind` (e.g. ffi.PhoneError.InvalidInput)."""
    try:
        fn()
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}, nothing raised")


# SM2 curve (GB/T 32918.5), for the independent point multiplication below.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G = (0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
     0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0)


def _add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % P == 0:
        return None
    if p == q:
        lam = (3 * p[0] * p[0] + A) * pow(2 * p[1], -1, P) % P
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, P) % P
    x = (lam * lam - p[0] - q[0]) % P
    return x, (lam * (p[0] - x) - p[1]) % P


def mul_g(k):
    """k·G, as SEC1 uncompressed lowercase hex."""
    acc, add = None, G
    while k:
        if k & 1:
            acc = _add(acc, add)
        add = _add(add, add)
        k >>= 1
    return "04" + format(acc[0], "064x") + format(acc[1], "064x")


def p1_of(d1_hex):
    """P1 = d1⁻¹·G for a d1 given in hex."""
    return mul_g(pow(int(d1_hex, 16), -1, N))
