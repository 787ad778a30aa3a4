"""One activation and one signature through the generated Python binding of mcs-phone-ffi,
against a running dev daemon: the operator and the gateway are the `mcs` CLI, the phone is
the binding plus Python's own HTTPS client with the phone's client certificate, doing what
client/src/phone.rs does (activation with PIN and recovery key, the certificate request's
co-signature, the state an app stores, unlock, scan, claim, the check of the daemon's `e`,
co-sign with a PIN proof, complete). OpenSSL verifies the signature at the end.

Environment: MCS_SERVER (https URL), MCS_DEV_DIR (`mcsd dev-init` directory), MCS_BIN
(directory with `mcs`), MCS_PHONE_FFI_PY (the generated binding); MCS_WORK (scratch dir)."""

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.parse

from common import Checks, ffi, raises

SERVER = os.environ["MCS_SERVER"].rstrip("/")
PKI = os.path.join(os.environ["MCS_DEV_DIR"], "pki")
MCS = os.path.join(os.environ["MCS_BIN"], "mcs")
WORK = os.environ.get("MCS_WORK") or tempfile.mkdtemp(prefix="phone-ffi-live-")
PLATFORM = "P-DEV-1"  # the dev gateway's platform (its certificate's urn:mcs:platform:)
PIN = "135790"


class DaemonError(Exception):
    def __init__(self, status, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
        self.body = body


class Phone:
    """HTTPS to the daemon as the phone app1 (mutual TLS, the dev CA as the only root)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        assert u.scheme == "https" and u.hostname, url
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.pem"))
        self.ctx.load_cert_chain(os.path.join(PKI, "app1.pem"), os.path.join(PKI, "app1.key"))

    def call(self, method, path, body=None, expect=(200,)):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"content-type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        answer = json.loads(raw) if raw else None
        if resp.status not in expect:
            raise DaemonError(resp.status, answer)
        return answer


def mcs(role, *args):
    """The `mcs` CLI as `role` (admin, gateway); its JSON answer."""
    cmd = [MCS, "--server", SERVER, "--pki", PKI, "--as", role, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {run.returncode}: {run.stderr.strip()}")
    return json.loads(run.stdout)


def openssl_verify(pem, message, der):
    """OpenSSL 3's own SM2 verification, with the SM2 ID given (its default is empty)."""
    paths = {name: os.path.join(WORK, name) for name in ("key.pem", "msg", "sig.der")}
    for name, content in (("key.pem", pem.encode()), ("msg", message), ("sig.der", der)):
        with open(paths[name], "wb") as f:
            f.write(content)
    run = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["key.pem"], "-rawin",
                          "-in", paths["msg"], "-sigfile", paths["sig.der"], "-digest", "sm3",
                          "-pkeyopt", "distid:1234567812345678"], capture_output=True, text=True)
    return run.returncode == 0 and "Signature Verified Successfully" in run.stdout


def co_sign_task(phone, code, key_id, key, share, verifier, e):
    """Co-sign a claimed signing task and complete it (client/src/phone.rs `cosign_and_complete`)."""
    session = share.sign_start()
    proof = verifier.proof(key_id, ffi.PinOp.TASK_SIGN(task_id=code.task_id, q1=session.q1()))
    shares = phone.call("POST", f"/v1/tasks/{code.task_id}/cosign",
                        {"token": code.token, "q1": session.q1(), "pin_proof": proof})
    sig = session.finish(key, e, shares["r"], shares["s2"], shares["s3"])
    phone.call("POST", f"/v1/tasks/{code.task_id}/complete",
               {"token": code.token, "signature": {"r": sig.r, "s": sig.s}})
    return session, shares, sig


def main():
    c = Checks("live")
    phone = Phone(SERVER)
    st = {}

    def activation():
        enrollment = mcs("admin", "admin", "enroll", "--kind", "person", "--name", "张三 (phone-ffi)",
                         "--ca", "local", "--platform", PLATFORM, "--validity-days", "30")
        share = ffi.KeyShare.generate()
        verifier = ffi.PinVerifier.setup(PIN)
        recovery = ffi.RecoveryKey.generate()
        answer = phone.call("POST", f"/v1/enrollments/{enrollment['enrollment_id']}/activate", {
            "activation_code": enrollment["activation_code"],
            "p1": share.p1(),
            "pin": {"salt": verifier.salt(), "verifier": verifier.verifier()},
            "recovery_key": recovery.hex(),
        }, expect=(201,))
        key = ffi.JointKey.from_hex(answer["public_key"])
        key_id = answer["key_id"]
        if "p2" in answer:
            assert share.forms_key(answer["p2"], key), "p2 and d1 do not form the answered key"
        # What the app stores (and nothing else): no PIN, no verifier, no unmasked d1,
        # no recovery key.
        st["state"] = {
            "key_id": key_id,
            "public_key": key.hex(),
            "d1_masked": share.masked(verifier),
            "pin_salt": verifier.salt(),
            "d1_recovery": share.seal_recovery(recovery, key_id),
        }
        stored = json.dumps(st["state"])
        for secret in (PIN, verifier.verifier(), recovery.hex()):
            assert secret not in stored
        assert ffi.KeyShare.unmask(st["state"]["d1_masked"], verifier).p1() == share.p1()

        # The certificate request: check that it carries our key and that `e` is its
        # digest, then co-sign it (proof of possession); the CA then issues.
        csr = answer["csr_task"]
        code = ffi.ScanCode(task_id=csr["task_id"], token=csr["token"], url=SERVER)
        view = phone.call("GET", f"/v1/tasks/{code.task_id}?token={code.token}")
        assert view["kind"] == "csr", view
        request_info = base64.b64decode(view["data"]["request_info"], validate=True)
        assert key.is_in_request(request_info), "the certificate request is not for this key"
        claimed = phone.call("POST", f"/v1/tasks/{code.task_id}/claim", {"token": code.token, "key_id": key_id})
        e = key.check_e(request_info, claimed["e"])
        co_sign_task(phone, code, key_id, key, share, verifier, e)
        view = phone.call("GET", f"/v1/keys/{key_id}")
        assert view["status"] == "active", view["status"]
        assert view["public_key"] == key.hex()
        st["certificate"] = base64.b64decode(view["certificate"], validate=True)

    c.check("activation: p1, PIN verifier, recovery key; the CSR co-signed; the key active", activation)

    def signature():
        state = st["state"]
        message = f"投标文件：第三标段 (phone-ffi live test {time.time_ns()})".encode()
        data_file = os.path.join(WORK, "message")
        with open(data_file, "wb") as f:
            f.write(message)
        task = mcs("gateway", "gateway", "create-task", "--kind", "sign", "--title", "Sign the bid",
                   "--data-file", data_file)

        # The phone scans the QR code and takes the task at the URL it names.
        code = ffi.parse_task_qr(task["qr"])
        assert (code.task_id, code.token) == (task["task_id"], task["token"])
        assert code.url.rstrip("/") == SERVER, (code.url, SERVER)
        at = Phone(code.url)
        view = at.call("GET", f"/v1/tasks/{code.task_id}?token={code.token}")
        assert view["kind"] == "sign" and view["status"] == "pending", view
        shown = base64.b64decode(view["data"]["message"], validate=True)
        assert shown == message, "the task shows another message than the gateway's"

        # Unlock from the stored state with the PIN the user types.
        key = ffi.JointKey.from_hex(state["public_key"])
        verifier = ffi.PinVerifier.derive(PIN, state["pin_salt"])
        share = ffi.KeyShare.unmask(state["d1_masked"], verifier)
        claimed = at.call("POST", f"/v1/tasks/{code.task_id}/claim", {"token": code.token, "key_id": state["key_id"]})
        e = key.check_e(shown, claimed["e"])
        raises(ffi.PhoneError.DigestMismatch, lambda: key.check_e(shown + b" ", claimed["e"]))

        # A wrong PIN unmasks to another share without error; the daemon's counter refuses it.
        wrong_verifier = ffi.PinVerifier.derive("000000", state["pin_salt"])
        wrong_share = ffi.KeyShare.unmask(state["d1_masked"], wrong_verifier)
        wrong = wrong_share.sign_start()
        try:
            at.call("POST", f"/v1/tasks/{code.task_id}/cosign", {
                "token": code.token, "q1": wrong.q1(),
                "pin_proof": wrong_verifier.proof(state["key_id"], ffi.PinOp.TASK_SIGN(task_id=code.task_id,
                                                                                       q1=wrong.q1())),
            })
            raise AssertionError("a wrong PIN's proof was accepted")
        except DaemonError as err:
            assert (err.status, err.code) == (403, "pin_incorrect"), err
            assert err.body["error"]["remaining_attempts"] >= 1, err.body

        session, shares, sig = co_sign_task(at, code, state["key_id"], key, share, verifier, e)
        # The nonce went with the first finish: a second one is refused.
        raises(ffi.PhoneError.SessionUsed, lambda: session.finish(key, e, shares["r"], shares["s2"], shares["s3"]))
        assert key.verify(e, sig)

        result = mcs("gateway", "gateway", "wait", code.task_id, "--wait", "30")
        assert result["status"] == "completed", result
        assert base64.b64decode(result["result"]["signature"]) == bytes(sig.der), "the gateway got another signature"

        # OpenSSL: the signature over the message under the joint key, and under the key of
        # the certificate the CA issued; a changed message does not verify.
        assert openssl_verify(key.public_key_pem(), message, bytes(sig.der)), "OpenSSL refused the signature"
        assert not openssl_verify(key.public_key_pem(), message + b"x", bytes(sig.der)), "OpenSSL accepted anything"
        cert_der = os.path.join(WORK, "cert.der")
        with open(cert_der, "wb") as f:
            f.write(st["certificate"])
        cert_key = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", cert_der, "-noout", "-pubkey"],
                                  capture_output=True, text=True, check=True).stdout
        assert openssl_verify(cert_key, message, bytes(sig.der)), "OpenSSL refused it under the certificate's key"
        assert "".join(cert_key.split()[3:-3]) == "".join(key.public_key_pem().split()[3:-3])

    if "state" in st:
        c.check("signature: QR, task, claim, e checked, wrong PIN refused, co-sign, complete, OpenSSL", signature)
    c.finish()


if __name__ == "__main__":
    main()
