// One activation and one signature through the generated Kotlin binding of mcs-phone-ffi,
// against a running dev daemon: the operator and the gateway are the `mcs` CLI, the phone is
// the binding plus the JDK's java.net.http.HttpClient with the phone's client certificate
// (mutual TLS, the dev CA as the only root), doing what client/src/phone.rs does
// (activation with PIN and recovery key, the certificate request's co-signature, the state
// an app stores, unlock, scan, claim, the check of the daemon's `e`, co-sign with a PIN
// proof, complete). OpenSSL verifies the signature at the end. The Kotlin twin of
// tests/python/live.py.
//
// Environment: MCS_SERVER (https URL), MCS_DEV_DIR (`mcsd dev-init` directory), MCS_BIN
// (directory with `mcs`), MCS_WORK (scratch dir). phone-ffi/run-tests.sh sets them up.
package cn.mcsd.phone.test

import cn.mcsd.phone.JointKey
import cn.mcsd.phone.KeyShare
import cn.mcsd.phone.PhoneException
import cn.mcsd.phone.PinOp
import cn.mcsd.phone.PinVerifier
import cn.mcsd.phone.RecoveryKey
import cn.mcsd.phone.ScanCode
import cn.mcsd.phone.SignSession
import cn.mcsd.phone.Signature
import cn.mcsd.phone.parseTaskQr
import java.io.File
import java.net.URI
import java.net.URLEncoder
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.security.KeyFactory
import java.security.KeyStore
import java.security.cert.CertificateFactory
import java.security.cert.X509Certificate
import java.security.spec.PKCS8EncodedKeySpec
import java.time.Duration
import java.util.Base64
import java.util.concurrent.TimeUnit
import javax.net.ssl.KeyManagerFactory
import javax.net.ssl.SSLContext
import javax.net.ssl.TrustManagerFactory

private fun env(name: String): String =
    System.getenv(name)?.takeIf { it.isNotEmpty() } ?: throw IllegalStateException("$name is not set (phone-ffi/run-tests.sh sets it)")

private val SERVER = env("MCS_SERVER").trimEnd('/')
private val PKI = File(env("MCS_DEV_DIR"), "pki")
private val MCS = File(env("MCS_BIN"), "mcs")
private val WORK: File = System.getenv("MCS_WORK")?.let(::File) ?: Files.createTempDirectory("phone-ffi-live-kt").toFile()
private const val PLATFORM = "P-DEV-1" // the dev gateway's platform (its certificate's urn:mcs:platform:)
private const val PIN = "135790"

/** A refusal of the daemon: HTTP status, its `error.code` and the whole answer. */
class DaemonError(val status: Int, val body: Any?) : Exception("$status: ${Json.write(body)}") {
    val code: String? = (body as? Map<*, *>)?.let { it["error"] as? Map<*, *> }?.get("code") as? String
}

/**
 * The phone's TLS identity from the PEM files `mcsd dev-init` writes (rcgen: a P-256 PKCS#8
 * key, its certificate, the dev CA): written here with the JDK's KeyFactory and KeyStore.
 */
private fun phoneTls(): SSLContext {
    val certs = CertificateFactory.getInstance("X.509")
    fun certsOf(file: String) = File(PKI, file).inputStream().use { certs.generateCertificates(it).map { c -> c as X509Certificate } }
    val keyPem = File(PKI, "app1.key").readText()
    must(keyPem.contains("-----BEGIN PRIVATE KEY-----")) { "pki/app1.key is not a PKCS#8 PEM key" }
    val keyDer = Base64.getMimeDecoder().decode(
        keyPem.substringAfter("-----BEGIN PRIVATE KEY-----").substringBefore("-----END PRIVATE KEY-----"),
    )
    val key = KeyFactory.getInstance("EC").generatePrivate(PKCS8EncodedKeySpec(keyDer))
    val password = CharArray(0)
    val identity = KeyStore.getInstance("PKCS12").apply {
        load(null, null)
        setKeyEntry("app1", key, password, certsOf("app1.pem").toTypedArray())
    }
    val roots = KeyStore.getInstance("PKCS12").apply {
        load(null, null)
        certsOf("ca.pem").forEachIndexed { i, c -> setCertificateEntry("ca$i", c) }
    }
    val kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm()).apply { init(identity, password) }
    val tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm()).apply { init(roots) }
    return SSLContext.getInstance("TLS").apply { init(kmf.keyManagers, tmf.trustManagers, null) }
}

/** HTTPS to the daemon at `url` as the phone app1 (mutual TLS, the dev CA as the only root). */
class Phone(url: String, tls: SSLContext) {
    private val base: URI = URI(url.trimEnd('/'))
    private val http: HttpClient = HttpClient.newBuilder()
        .sslContext(tls)
        .version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10))
        .build()

    init {
        must(base.scheme == "https" && !base.host.isNullOrEmpty()) { "not an https URL with a host: $url" }
    }

    fun call(method: String, path: String, body: Map<String, Any?>? = null, expect: Set<Int> = setOf(200)): Any? {
        val request = HttpRequest.newBuilder(URI(base.toString() + path)).timeout(Duration.ofSeconds(30))
        if (body == null) {
            request.method(method, HttpRequest.BodyPublishers.noBody())
        } else {
            request.header("content-type", "application/json")
                .method(method, HttpRequest.BodyPublishers.ofString(Json.write(body), Charsets.UTF_8))
        }
        val response = http.send(request.build(), HttpResponse.BodyHandlers.ofString(Charsets.UTF_8))
        val answer = response.body().takeIf { it.isNotEmpty() }?.let(Json::parse)
        if (response.statusCode() !in expect) throw DaemonError(response.statusCode(), answer)
        return answer
    }
}

private fun q(s: String): String = URLEncoder.encode(s, Charsets.UTF_8)

/** The `mcs` CLI as `role` (admin, gateway); its JSON answer. */
private fun mcs(role: String, vararg args: String): Any? {
    val cmd = listOf(MCS.path, "--server", SERVER, "--pki", PKI.path, "--as", role, *args)
    val err = File.createTempFile("mcs-", ".stderr", WORK)
    val process = ProcessBuilder(cmd).redirectError(err).start()
    process.outputStream.close()
    val out = process.inputStream.bufferedReader(Charsets.UTF_8).readText()
    if (!process.waitFor(120, TimeUnit.SECONDS)) {
        process.destroyForcibly()
        throw CheckFailed("${cmd.joinToString(" ")}: timed out")
    }
    if (process.exitValue() != 0) {
        throw CheckFailed("${cmd.joinToString(" ")}: exit ${process.exitValue()}: ${err.readText().trim()}")
    }
    return Json.parse(out)
}

/** OpenSSL 3's own SM2 verification, with the SM2 ID given (its default is empty). */
private fun opensslVerify(pem: String, message: ByteArray, der: ByteArray): Boolean {
    val keyFile = File(WORK, "key.pem").apply { writeText(pem) }
    val msgFile = File(WORK, "msg").apply { writeBytes(message) }
    val sigFile = File(WORK, "sig.der").apply { writeBytes(der) }
    val process = ProcessBuilder(
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", keyFile.path, "-rawin",
        "-in", msgFile.path, "-sigfile", sigFile.path, "-digest", "sm3",
        "-pkeyopt", "distid:1234567812345678",
    ).redirectErrorStream(true).start()
    val out = process.inputStream.bufferedReader().readText()
    return process.waitFor() == 0 && out.contains("Signature Verified Successfully")
}

/** The SubjectPublicKeyInfo DER inside a PEM public key. */
private fun pemBody(pem: String): String =
    pem.lines().filter { it.isNotBlank() && !it.startsWith("-----") }.joinToString("")

/** Co-sign a claimed signing task and complete it (client/src/phone.rs `cosign_and_complete`). */
private fun coSignTask(
    phone: Phone, code: ScanCode, keyId: String, key: JointKey, share: KeyShare, verifier: PinVerifier, e: String,
): Triple<SignSession, Any?, Signature> {
    val session = share.signStart()
    val proof = verifier.proof(keyId, PinOp.TaskSign(code.taskId, session.q1()))
    val shares = phone.call(
        "POST", "/v1/tasks/${code.taskId}/cosign",
        mapOf("token" to code.token, "q1" to session.q1(), "pin_proof" to proof),
    )
    val sig = session.finish(key, e, shares.str("r"), shares.str("s2"), shares.str("s3"))
    phone.call(
        "POST", "/v1/tasks/${code.taskId}/complete",
        mapOf("token" to code.token, "signature" to mapOf("r" to sig.r, "s" to sig.s)),
    )
    return Triple(session, shares, sig)
}

/** What an app stores after activation (and nothing else). */
private data class Stored(val keyId: String, val publicKey: String, val d1Masked: String, val pinSalt: String, val d1Recovery: String)

object Live {
    @JvmStatic
    fun main(args: Array<String>) {
        val c = Checks("kotlin live")
        val tls = phoneTls()
        val phone = Phone(SERVER, tls)
        var state: Stored? = null
        var certificate: ByteArray? = null

        c.check("activation: p1, PIN verifier, recovery key; the CSR co-signed; the key active") {
            val enrollment = mcs(
                "admin", "admin", "enroll", "--kind", "person", "--name", "张三 (phone-ffi kotlin)",
                "--ca", "local", "--platform", PLATFORM, "--validity-days", "30",
            )
            val share = KeyShare.generate()
            val verifier = PinVerifier.setup(PIN)
            val recovery = RecoveryKey.generate()
            val answer = phone.call(
                "POST", "/v1/enrollments/${enrollment.str("enrollment_id")}/activate",
                mapOf(
                    "activation_code" to enrollment.str("activation_code"),
                    "p1" to share.p1(),
                    "pin" to mapOf("salt" to verifier.salt(), "verifier" to verifier.verifier()),
                    "recovery_key" to recovery.hex(),
                ),
                expect = setOf(201),
            )
            val key = JointKey.fromHex(answer.str("public_key"))
            val keyId = answer.str("key_id")
            if (answer.has("p2")) must(share.formsKey(answer.str("p2"), key)) { "p2 and d1 do not form the answered key" }
            // What the app stores: no PIN, no verifier, no unmasked d1, no recovery key.
            val stored = Stored(keyId, key.hex(), share.masked(verifier), verifier.salt(), share.sealRecovery(recovery, keyId))
            val text = stored.toString()
            for (secret in listOf(PIN, verifier.verifier(), recovery.hex())) must(!text.contains(secret)) { "the stored state holds a secret" }
            mustEqual(KeyShare.unmask(stored.d1Masked, verifier).use { it.p1() }, share.p1(), "the stored share unmasked")
            recovery.close()

            // The certificate request: check that it carries our key and that `e` is its
            // digest, then co-sign it (proof of possession); the CA then issues.
            val csr = answer.obj("csr_task")
            val code = ScanCode(csr.str("task_id"), csr.str("token"), SERVER)
            var view = phone.call("GET", "/v1/tasks/${code.taskId}?token=${q(code.token)}")
            mustEqual(view.str("kind"), "csr", "the activation's task kind")
            val requestInfo = Base64.getDecoder().decode(view.obj("data").str("request_info"))
            must(key.isInRequest(requestInfo)) { "the certificate request is not for this key" }
            val claimed = phone.call("POST", "/v1/tasks/${code.taskId}/claim", mapOf("token" to code.token, "key_id" to keyId))
            val e = key.checkE(requestInfo, claimed.str("e"))
            coSignTask(phone, code, keyId, key, share, verifier, e).first.close()
            view = phone.call("GET", "/v1/keys/$keyId")
            mustEqual(view.str("status"), "active", "the key's status")
            mustEqual(view.str("public_key"), key.hex(), "the key's public key")
            certificate = Base64.getDecoder().decode(view.str("certificate"))
            listOf(share, verifier, key).forEach { it.close() }
            state = stored
        }

        val st = state
        if (st != null) c.check("signature: QR, task, claim, e checked, wrong PIN refused, co-sign, complete, OpenSSL") {
            val message = "投标文件：第三标段 (phone-ffi kotlin live test ${System.nanoTime()})".toByteArray(Charsets.UTF_8)
            val dataFile = File(WORK, "message").apply { writeBytes(message) }
            val task = mcs("gateway", "gateway", "create-task", "--kind", "sign", "--title", "Sign the bid", "--data-file", dataFile.path)

            // The phone scans the QR code and takes the task at the URL it names.
            val code = parseTaskQr(task.str("qr"))
            mustEqual(code.taskId, task.str("task_id"), "the QR's task id")
            mustEqual(code.token, task.str("token"), "the QR's token")
            mustEqual(code.url.trimEnd('/'), SERVER, "the QR's daemon URL")
            val at = Phone(code.url, tls)
            val view = at.call("GET", "/v1/tasks/${code.taskId}?token=${q(code.token)}")
            mustEqual(view.str("kind"), "sign", "the task's kind")
            mustEqual(view.str("status"), "pending", "the task's status")
            val shown = Base64.getDecoder().decode(view.obj("data").str("message"))
            must(shown.contentEquals(message)) { "the task shows another message than the gateway's" }

            // Unlock from the stored state with the PIN the user types.
            val key = JointKey.fromHex(st.publicKey)
            val verifier = PinVerifier.derive(PIN, st.pinSalt)
            val share = KeyShare.unmask(st.d1Masked, verifier)
            val claimed = at.call("POST", "/v1/tasks/${code.taskId}/claim", mapOf("token" to code.token, "key_id" to st.keyId))
            val e = key.checkE(shown, claimed.str("e"))
            raises<PhoneException.DigestMismatch> { key.checkE(shown + " ".toByteArray(), claimed.str("e")) }

            // A wrong PIN unmasks to another share without error; the daemon's counter refuses it.
            PinVerifier.derive("000000", st.pinSalt).use { wrongVerifier ->
                KeyShare.unmask(st.d1Masked, wrongVerifier).use { wrongShare ->
                    wrongShare.signStart().use { wrong ->
                        val err = raises<DaemonError> {
                            at.call(
                                "POST", "/v1/tasks/${code.taskId}/cosign",
                                mapOf(
                                    "token" to code.token, "q1" to wrong.q1(),
                                    "pin_proof" to wrongVerifier.proof(st.keyId, PinOp.TaskSign(code.taskId, wrong.q1())),
                                ),
                            )
                        }
                        mustEqual(err.status to err.code, 403 to "pin_incorrect", "the wrong PIN's answer")
                        val remaining = (err.body.obj("error")["remaining_attempts"] as? java.math.BigDecimal)?.toInt()
                        must(remaining != null && remaining >= 1) { "remaining_attempts: ${Json.write(err.body)}" }
                    }
                }
            }

            val (session, shares, sig) = coSignTask(at, code, st.keyId, key, share, verifier, e)
            // The nonce went with the first finish: a second one is refused.
            raises<PhoneException.SessionUsed> { session.finish(key, e, shares.str("r"), shares.str("s2"), shares.str("s3")) }
            must(key.verify(e, sig)) { "the binding does not verify its own signature" }

            val result = mcs("gateway", "gateway", "wait", code.taskId, "--wait", "30")
            mustEqual(result.str("status"), "completed", "the gateway's task status")
            must(Base64.getDecoder().decode(result.obj("result").str("signature")).contentEquals(sig.der)) { "the gateway got another signature" }

            // OpenSSL: the signature over the message under the joint key, and under the key of
            // the certificate the CA issued; a changed message does not verify.
            must(opensslVerify(key.publicKeyPem(), message, sig.der)) { "OpenSSL refused the signature" }
            must(!opensslVerify(key.publicKeyPem(), message + "x".toByteArray(), sig.der)) { "OpenSSL accepted a changed message" }
            val certFile = File(WORK, "cert.der").apply { writeBytes(certificate!!) }
            val x509 = ProcessBuilder("openssl", "x509", "-inform", "DER", "-in", certFile.path, "-noout", "-pubkey").start()
            val certKey = x509.inputStream.bufferedReader().readText()
            mustEqual(x509.waitFor(), 0, "openssl x509 exit")
            must(opensslVerify(certKey, message, sig.der)) { "OpenSSL refused it under the certificate's key" }
            mustEqual(pemBody(certKey), pemBody(key.publicKeyPem()), "the certificate's public key")
            listOf(session, share, verifier, key).forEach { it.close() }
        }
        c.finish()
    }
}
