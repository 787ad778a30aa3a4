// docs/test-vectors.json reproduced through the generated Kotlin binding of mcs-phone-ffi
// (phone-ffi/bindings/kotlin, on JNA): every family the binding's API can express
// (pin_verifier, pin_proof, e, signature_finish, fixed_k3_finish, recovery, reshare, qr,
// qr_invalid), plus the PIN mask's round trip. The Kotlin twin of tests/python/vectors.py.
//
// Usage: java -cp … cn.mcsd.phone.test.Vectors VECTORS_JSON   (phone-ffi/run-tests.sh runs it)
package cn.mcsd.phone.test

import cn.mcsd.phone.BatchItem
import cn.mcsd.phone.JointKey
import cn.mcsd.phone.KeyShare
import cn.mcsd.phone.PhoneException
import cn.mcsd.phone.PinOp
import cn.mcsd.phone.PinVerifier
import cn.mcsd.phone.RecoveryKey
import cn.mcsd.phone.TransportKey
import cn.mcsd.phone.knownAnswerSignFinish
import cn.mcsd.phone.knownAnswerSignFinishFixedK3
import cn.mcsd.phone.parseTaskQr
import java.io.File
import kotlin.system.exitProcess

object Vectors {
    /** The typed `PinOp`s a vector's `op` and `fields` stand for (the proof must be the same). */
    private fun pinOps(op: String, f: List<String>): List<PinOp> = when (op) {
        "sign" -> listOf(if (f[0].startsWith("t_")) PinOp.TaskSign(f[0], f[1]) else PinOp.Sign(f[0], f[1]))
        "revoke" -> listOf(PinOp.Revoke(f[0]))
        "batch" -> listOf(PinOp.Batch((f.indices step 2).map { BatchItem(f[it], f[it + 1]) }))
        else -> emptyList()
    }

    @JvmStatic
    fun main(args: Array<String>) {
        if (args.size != 1) {
            System.err.println("usage: Vectors VECTORS_JSON")
            exitProcess(2)
        }
        val doc = Json.parse(File(args[0]).readText(Charsets.UTF_8))
        val c = Checks("kotlin vectors")
        fun family(name: String): List<Any?> {
            val list = doc.list(name)
            if (list.isEmpty()) {
                System.err.println("${args[0]}: no family $name")
                exitProcess(1)
            }
            return list
        }

        val verifiers = HashMap<String, Any?>()
        family("pin_verifier").forEachIndexed { i, v ->
            c.check("pin_verifier[$i] pin ${v.str("pin")}") {
                PinVerifier.derive(v.str("pin"), v.str("salt")).use { pv ->
                    mustEqual(pv.verifier(), v.str("verifier"), "verifier")
                    mustEqual(pv.salt(), v.str("salt"), "salt")
                }
                verifiers[v.str("verifier")] = v
            }
        }

        family("pin_proof").forEachIndexed { i, v ->
            c.check("pin_proof[$i] op ${v.str("op")}") {
                // The binding derives verifiers from PINs only (a verifier is never imported):
                // the proof vectors' verifier must be one of the verifier vectors'.
                val src = verifiers[v.str("verifier")] ?: throw CheckFailed("the proof's verifier is not one of the pin_verifier vectors")
                val fields = v.list("fields").map { it as String }
                PinVerifier.derive(src.str("pin"), src.str("salt")).use { pv ->
                    mustEqual(pv.proofForFields(v.str("key_id"), v.str("op"), fields), v.str("proof"), "proof_for_fields")
                    val ops = pinOps(v.str("op"), fields)
                    must(ops.isNotEmpty()) { "no PinOp mapping for op ${v.str("op")}" }
                    for (op in ops) mustEqual(pv.proof(v.str("key_id"), op), v.str("proof"), "proof($op)")
                }
            }
        }

        family("e").forEachIndexed { i, v ->
            c.check("e[$i]") {
                mustEqual(v.str("id"), "1234567812345678", "the binding computes Z with the default ID only")
                JointKey.fromHex(v.str("public_key")).use { key ->
                    mustEqual(key.hex(), v.str("public_key"), "hex")
                    mustEqual(key.z(), v.str("z"), "z")
                    val message = hexToBytes(v.str("message"))
                    mustEqual(key.eForMessage(message), v.str("e"), "e")
                    mustEqual(key.checkE(message, v.str("e")), v.str("e"), "check_e")
                    val err = raises<PhoneException.DigestMismatch> { key.checkE(message + "!".toByteArray(), v.str("e")) }
                    mustEqual(err.claimed, v.str("e"), "claimed")
                    must(err.expected != v.str("e")) { "a changed message has the same digest" }
                }
            }
        }

        family("signature_finish").forEachIndexed { i, v ->
            c.check("signature_finish[$i]") {
                val sig = knownAnswerSignFinish(v.str("d1"), v.str("k1"), v.str("r"), v.str("s2"), v.str("s3"))
                mustEqual(sig.r, v.str("r"), "r")
                mustEqual(sig.s, v.str("s"), "s")
                JointKey.fromHex(v.str("public_key")).use { key ->
                    must(key.verify(v.str("e"), sig)) { "the signature does not verify" }
                    val other = key.eForMessage("another message".toByteArray())
                    must(!key.verify(other, sig)) { "the signature verifies another digest" }
                }
            }
        }

        family("fixed_k3_finish").forEachIndexed { i, v ->
            c.check("fixed_k3_finish[$i]") {
                val sig = knownAnswerSignFinishFixedK3(v.str("d1"), v.str("k1"), v.str("r"), v.str("s3"))
                mustEqual(sig.r, v.str("r"), "r")
                mustEqual(sig.s, v.str("s"), "s")
                JointKey.fromHex(v.str("public_key")).use { key ->
                    must(key.verify(v.str("e"), sig)) { "the signature does not verify" }
                }
            }
        }

        family("recovery").forEachIndexed { i, v ->
            c.check("recovery[$i]") {
                val keyId = v.str("key_id")
                val sealed = v.str("sealed")
                val d1P1 = Sm2.p1Of(v.str("d1"))
                RecoveryKey.fromHex(v.str("recovery_key")).use { rk ->
                    mustEqual(rk.hex(), v.str("recovery_key"), "hex")
                    must(sealed.startsWith(v.str("nonce"))) { "the sealed copy does not start with its nonce" }
                    val share = KeyShare.openRecovery(rk, keyId, sealed)
                    mustEqual(share.p1(), d1P1, "the opened share's P1 (the vector's d1)")
                    raises<PhoneException.DecryptFailed> { KeyShare.openRecovery(rk, "k_other", sealed) }
                    val changed = sealed.substring(0, 40) + (if (sealed[40] != '0') "0" else "1") + sealed.substring(41)
                    raises<PhoneException.DecryptFailed> { KeyShare.openRecovery(rk, keyId, changed) }
                    raises<PhoneException.InvalidInput> { KeyShare.openRecovery(rk, keyId, sealed.uppercase()) }
                    // Sealed again: a fresh nonce, the same share inside.
                    val resealed = share.sealRecovery(rk, keyId)
                    mustEqual(resealed.length, sealed.length, "resealed length")
                    must(resealed != sealed) { "sealing again reused the nonce" }
                    mustEqual(KeyShare.openRecovery(rk, keyId, resealed).p1(), d1P1, "the resealed share's P1")
                    share.close()
                }
            }
        }

        family("reshare").forEachIndexed { i, v ->
            c.check("reshare[$i]") {
                TransportKey.restore(v.str("t")).use { t ->
                    mustEqual(t.publicKey(), v.str("transport_key"), "transport_key")
                    mustEqual(t.exportSecret(), v.str("t"), "export_secret")
                    val key = JointKey.fromHex(v.str("p"))
                    val share = t.openShare(v.str("wrapped_share"), v.str("p2"), key)
                    mustEqual(share.p1(), Sm2.p1Of(v.str("d1_reshared")), "the opened share's P1 (d1_reshared)")
                    must(share.formsKey(v.str("p2"), key)) { "the opened share does not form the key with p2" }
                    // The owner's pair's P2 (d2⁻¹·G) with the new share is no pair of the key: refused.
                    val ownerP2 = Sm2.p1Of(v.str("d2"))
                    raises<PhoneException.ShareMismatch> { t.openShare(v.str("wrapped_share"), ownerP2, key) }
                    TransportKey.generate().use { other ->
                        raises<PhoneException.DecryptFailed> { other.openShare(v.str("wrapped_share"), v.str("p2"), key) }
                    }
                }
            }
        }

        family("qr").forEachIndexed { i, v ->
            c.check("qr[$i]") {
                val code = parseTaskQr(v.str("qr"))
                mustEqual(code.taskId, v.str("id"), "task_id")
                mustEqual(code.token, v.str("token"), "token")
                mustEqual(code.url, v.str("url"), "url")
            }
        }

        family("qr_invalid").forEachIndexed { i, v ->
            c.check("qr_invalid[$i] ${v.str("why")}") {
                val err = raises<PhoneException.InvalidQr> { parseTaskQr(v.str("qr")) }
                mustEqual(err.reason, v.str("why"), "reason")
            }
        }

        c.check("the PIN mask round-trips under its PIN only") {
            val share = KeyShare.generate()
            val pv = PinVerifier.setup("246810")
            val masked = share.masked(pv)
            mustEqual(masked.length, 64, "masked length")
            val again = KeyShare.unmask(masked, PinVerifier.derive("246810", pv.salt()))
            mustEqual(again.p1(), share.p1(), "unmasked P1")
            // A wrong PIN unmasks without error, to another share (no offline PIN test).
            val wrong = KeyShare.unmask(masked, PinVerifier.derive("246811", pv.salt()))
            must(wrong.p1() != share.p1()) { "a wrong PIN unmasked the same share" }
            raises<PhoneException.InvalidInput> { KeyShare.unmask(masked.uppercase(), pv) }
            raises<PhoneException.InvalidInput> { PinVerifier.derive("", pv.salt()) }
            raises<PhoneException.InvalidInput> { PinVerifier.derive("1", pv.salt().dropLast(2)) }
            listOf(share, pv, again, wrong).forEach { it.close() }
        }
        c.finish()
    }
}
