"""docs/test-vectors.json reproduced through the generated Python binding of mcs-phone-ffi:
every family the binding's API can express (pin_verifier, pin_proof, e, signature_finish,
fixed_k3_finish, recovery, reshare, qr, qr_invalid), plus the PIN mask's round trip.

Usage: MCS_PHONE_FFI_PY=DIR python3 vectors.py VECTORS_JSON"""

import json
import sys

from common import Checks, ffi, p1_of, raises

PIN_OPS = {
    "sign": lambda f: [ffi.PinOp.TASK_SIGN(task_id=f[0], q1=f[1])] if f[0].startswith("t_")
    else [ffi.PinOp.SIGN(e=f[0], q1=f[1])],
    "revoke": lambda f: [ffi.PinOp.REVOKE(reason=f[0])],
    "batch": lambda f: [ffi.PinOp.BATCH(items=[ffi.BatchItem(task_id=f[i], q1=f[i + 1])
                                              for i in range(0, len(f), 2)])],
}


def main():
    doc = json.load(open(sys.argv[1], encoding="utf-8"))
    c = Checks("vectors")
    family = lambda name: doc[name] if doc.get(name) else sys.exit(f"{sys.argv[1]}: no family {name}")

    verifiers = {}

    def pin_verifier(v):
        def run():
            pv = ffi.PinVerifier.derive(v["pin"], v["salt"])
            assert pv.verifier() == v["verifier"], (pv.verifier(), v["verifier"])
            assert pv.salt() == v["salt"]
            verifiers[v["verifier"]] = v
        return run

    for i, v in enumerate(family("pin_verifier")):
        c.check(f"pin_verifier[{i}] pin {v['pin']}", pin_verifier(v))

    def pin_proof(v):
        def run():
            # The binding derives verifiers from PINs only (a verifier is never imported):
            # the proof vectors' verifier must be one of the verifier vectors'.
            src = verifiers.get(v["verifier"])
            assert src, "the proof's verifier is not one of the pin_verifier vectors"
            pv = ffi.PinVerifier.derive(src["pin"], src["salt"])
            assert pv.proof_for_fields(v["key_id"], v["op"], v["fields"]) == v["proof"]
            ops = PIN_OPS.get(v["op"], lambda f: [])(v["fields"])
            assert ops, f"no PinOp mapping for op {v['op']}"
            for op in ops:
                assert pv.proof(v["key_id"], op) == v["proof"], op
        return run

    for i, v in enumerate(family("pin_proof")):
        c.check(f"pin_proof[{i}] op {v['op']}", pin_proof(v))

    def e_vector(v):
        def run():
            assert v["id"] == "1234567812345678", "the binding computes Z with the default ID only"
            key = ffi.JointKey.from_hex(v["public_key"])
            assert key.hex() == v["public_key"]
            assert key.z() == v["z"]
            message = bytes.fromhex(v["message"])
            assert key.e_for_message(message) == v["e"]
            assert key.check_e(message, v["e"]) == v["e"]
            err = raises(ffi.PhoneError.DigestMismatch, lambda: key.check_e(message + b"!", v["e"]))
            assert err.claimed == v["e"] and err.expected != v["e"]
        return run

    for i, v in enumerate(family("e")):
        c.check(f"e[{i}]", e_vector(v))

    def signature_finish(v):
        def run():
            sig = ffi.known_answer_sign_finish(v["d1"], v["k1"], v["r"], v["s2"], v["s3"])
            assert (sig.r, sig.s) == (v["r"], v["s"]), (sig.s, v["s"])
            assert ffi.JointKey.from_hex(v["public_key"]).verify(v["e"], sig)
            other = ffi.JointKey.from_hex(v["public_key"]).e_for_message(b"another message")
            assert not ffi.JointKey.from_hex(v["public_key"]).verify(other, sig)
        return run

    for i, v in enumerate(family("signature_finish")):
        c.check(f"signature_finish[{i}]", signature_finish(v))

    def fixed_k3_finish(v):
        def run():
            sig = ffi.known_answer_sign_finish_fixed_k3(v["d1"], v["k1"], v["r"], v["s3"])
            assert (sig.r, sig.s) == (v["r"], v["s"]), (sig.s, v["s"])
            assert ffi.JointKey.from_hex(v["public_key"]).verify(v["e"], sig)
        return run

    for i, v in enumerate(family("fixed_k3_finish")):
        c.check(f"fixed_k3_finish[{i}]", fixed_k3_finish(v))

    def recovery(v):
        def run():
            key = ffi.RecoveryKey.from_hex(v["recovery_key"])
            assert key.hex() == v["recovery_key"]
            assert v["sealed"].startswith(v["nonce"])
            share = ffi.KeyShare.open_recovery(key, v["key_id"], v["sealed"])
            assert share.p1() == p1_of(v["d1"]), "the opened share is not the vector's d1"
            raises(ffi.PhoneError.DecryptFailed, lambda: ffi.KeyShare.open_recovery(key, "k_other", v["sealed"]))
            changed = v["sealed"][:40] + ("0" if v["sealed"][40] != "0" else "1") + v["sealed"][41:]
            raises(ffi.PhoneError.DecryptFailed, lambda: ffi.KeyShare.open_recovery(key, v["key_id"], changed))
            raises(ffi.PhoneError.InvalidInput, lambda: ffi.KeyShare.open_recovery(key, v["key_id"], v["sealed"].upper()))
            # Sealed again: a fresh nonce, the same share inside.
            resealed = share.seal_recovery(key, v["key_id"])
            assert len(resealed) == len(v["sealed"]) and resealed != v["sealed"]
            assert ffi.KeyShare.open_recovery(key, v["key_id"], resealed).p1() == p1_of(v["d1"])
        return run

    for i, v in enumerate(family("recovery")):
        c.check(f"recovery[{i}]", recovery(v))

    def reshare(v):
        def run():
            t = ffi.TransportKey.restore(v["t"])
            assert t.public_key() == v["transport_key"]
            assert t.export_secret() == v["t"]
            key = ffi.JointKey.from_hex(v["p"])
            share = t.open_share(v["wrapped_share"], v["p2"], key)
            assert share.p1() == p1_of(v["d1_reshared"])
            assert share.forms_key(v["p2"], key)
            # The owner's P1 with the same p2 is no pair of the key: refused.
            owner_p2 = p1_of(v["d2"])  # d2⁻¹·G, the owner's pair
            raises(ffi.PhoneError.ShareMismatch, lambda: t.open_share(v["wrapped_share"], owner_p2, key))
            raises(ffi.PhoneError.DecryptFailed,
                   lambda: ffi.TransportKey.generate().open_share(v["wrapped_share"], v["p2"], key))
        return run

    for i, v in enumerate(family("reshare")):
        c.check(f"reshare[{i}]", reshare(v))

    def qr(v):
        def run():
            code = ffi.parse_task_qr(v["qr"])
            assert (code.task_id, code.token, code.url) == (v["id"], v["token"], v["url"]), code
        return run

    for i, v in enumerate(family("qr")):
        c.check(f"qr[{i}]", qr(v))

    def qr_invalid(v):
        def run():
            err = raises(ffi.PhoneError.InvalidQr, lambda: ffi.parse_task_qr(v["qr"]))
            assert err.reason == v["why"], (err.reason, v["why"])
        return run

    for i, v in enumerate(family("qr_invalid")):
        c.check(f"qr_invalid[{i}] {v['why']}", qr_invalid(v))

    def mask():
        share = ffi.KeyShare.generate()
        pv = ffi.PinVerifier.setup("246810")
        masked = share.masked(pv)
        assert len(masked) == 64
        again = ffi.KeyShare.unmask(masked, ffi.PinVerifier.derive("246810", pv.salt()))
        assert again.p1() == share.p1()
        # A wrong PIN unmasks without error, to another share (no offline PIN test).
        wrong = ffi.KeyShare.unmask(masked, ffi.PinVerifier.derive("246811", pv.salt()))
        assert wrong.p1() != share.p1()
        raises(ffi.PhoneError.InvalidInput, lambda: ffi.KeyShare.unmask(masked.upper(), pv))
        raises(ffi.PhoneError.InvalidInput, lambda: ffi.PinVerifier.derive("", pv.salt()))
        raises(ffi.PhoneError.InvalidInput, lambda: ffi.PinVerifier.derive("1", pv.salt()[:-2]))

    c.check("the PIN mask round-trips under its PIN only", mask)
    c.finish()


if __name__ == "__main__":
    main()
