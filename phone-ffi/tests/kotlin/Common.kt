// What the binding's Kotlin tests share: named checks with their own assertions (no JUnit,
// the tests are a `main` each), a small JSON reader and writer (the JDK has none), and an
// independent SM2 point multiplication (affine, textbook, BigInteger) to compare what the
// binding derives from a secret with the value the vector file states for it.
package cn.mcsd.phone.test

import java.math.BigInteger
import kotlin.system.exitProcess

/** A failed assertion of these tests (independent of `-ea`). */
class CheckFailed(message: String) : AssertionError(message)

/** Asserts `condition`; the message says what was expected. */
inline fun must(condition: Boolean, message: () -> String) {
    if (!condition) throw CheckFailed(message())
}

/** `a == b`, or a failure naming both. */
fun <T> mustEqual(actual: T, expected: T, what: String) {
    if (actual != expected) throw CheckFailed("$what: got $actual, expected $expected")
}

/** `block()` must throw the binding's error `E` (e.g. `PhoneException.InvalidInput`); it is returned. */
inline fun <reified E : Throwable> raises(block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw CheckFailed("expected ${E::class.simpleName}, got ${e::class.qualifiedName}: ${e.message}")
    }
    throw CheckFailed("expected ${E::class.simpleName}, nothing thrown")
}

/** Named checks; a failing one is reported and counted, the others still run. */
class Checks(private val suite: String) {
    private var passed = 0
    private var failed = 0

    fun check(name: String, block: () -> Unit): Boolean {
        return try {
            block()
            passed++
            println("ok   $suite: $name")
            true
        } catch (e: Throwable) {
            failed++
            println("FAIL $suite: $name")
            e.printStackTrace(System.out)
            false
        } finally {
            System.out.flush()
        }
    }

    /** Prints the tally; exits 1 when anything failed or nothing ran. */
    fun finish() {
        println("$suite: $passed passed, $failed failed")
        System.out.flush()
        if (failed != 0 || passed == 0) exitProcess(1)
    }
}

fun hexToBytes(hex: String): ByteArray {
    require(hex.length % 2 == 0) { "odd-length hex" }
    return ByteArray(hex.length / 2) { i -> hex.substring(2 * i, 2 * i + 2).toInt(16).toByte() }
}

// --- JSON: objects are Map<String, Any?>, arrays List<Any?>, numbers BigDecimal. ---------

object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        reader.ws()
        val value = reader.value()
        reader.ws()
        if (reader.pos != text.length) throw IllegalArgumentException("JSON: trailing data at ${reader.pos}")
        return value
    }

    fun write(value: Any?): String = StringBuilder().also { emit(value, it) }.toString()

    private fun emit(value: Any?, out: StringBuilder) {
        when (value) {
            null -> out.append("null")
            is String -> quote(value, out)
            is Boolean, is Number -> out.append(value.toString())
            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(',')
                    quote(k as String, out)
                    out.append(':')
                    emit(v, out)
                }
                out.append('}')
            }
            is List<*> -> {
                out.append('[')
                value.forEachIndexed { i, v -> if (i > 0) out.append(','); emit(v, out) }
                out.append(']')
            }
            else -> throw IllegalArgumentException("JSON: cannot write ${value::class}")
        }
    }

    private fun quote(s: String, out: StringBuilder) {
        out.append('"')
        for (c in s) {
            when {
                c == '"' -> out.append("\\\"")
                c == '\\' -> out.append("\\\\")
                c < ' ' -> out.append(String.format("\\u%04x", c.code))
                else -> out.append(c)
            }
        }
        out.append('"')
    }

    private class Reader(val s: String) {
        var pos = 0

        fun fail(what: String): Nothing = throw IllegalArgumentException("JSON: $what at $pos")

        fun ws() {
            while (pos < s.length && s[pos] in " \t\r\n") pos++
        }

        fun literal(word: String, value: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("unexpected token")
            pos += word.length
            return value
        }

        fun value(): Any? {
            if (pos >= s.length) fail("unexpected end")
            return when (s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> num()
            }
        }

        fun obj(): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            pos++
            ws()
            if (s.getOrNull(pos) == '}') { pos++; return map }
            while (true) {
                ws()
                if (s.getOrNull(pos) != '"') fail("expected a key")
                val key = str()
                ws()
                if (s.getOrNull(pos) != ':') fail("expected ':'")
                pos++
                ws()
                map[key] = value()
                ws()
                when (s.getOrNull(pos)) {
                    ',' -> pos++
                    '}' -> { pos++; return map }
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        fun arr(): List<Any?> {
            val list = ArrayList<Any?>()
            pos++
            ws()
            if (s.getOrNull(pos) == ']') { pos++; return list }
            while (true) {
                ws()
                list.add(value())
                ws()
                when (s.getOrNull(pos)) {
                    ',' -> pos++
                    ']' -> { pos++; return list }
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        fun str(): String {
            val out = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return out.toString()
                    c == '\\' -> {
                        if (pos >= s.length) fail("unterminated escape")
                        when (val e = s[pos++]) {
                            '"' -> out.append('"')
                            '\\' -> out.append('\\')
                            '/' -> out.append('/')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000c')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("short \\u escape")
                                out.append(s.substring(pos, pos + 4).toInt(16).toChar())
                                pos += 4
                            }
                            else -> fail("bad escape \\$e")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> out.append(c)
                }
            }
        }

        fun num(): java.math.BigDecimal {
            val start = pos
            while (pos < s.length && s[pos] in "+-0123456789.eE") pos++
            if (start == pos) fail("unexpected character '${s[pos]}'")
            return java.math.BigDecimal(s.substring(start, pos))
        }
    }
}

/** Typed access to parsed JSON, failing with the path when a field is missing or of another type. */
@Suppress("UNCHECKED_CAST")
fun Any?.obj(field: String): Map<String, Any?> =
    (this as Map<String, Any?>)[field] as? Map<String, Any?> ?: throw CheckFailed("no object field $field in $this")

@Suppress("UNCHECKED_CAST")
fun Any?.str(field: String): String =
    (this as Map<String, Any?>)[field] as? String ?: throw CheckFailed("no string field $field in $this")

@Suppress("UNCHECKED_CAST")
fun Any?.list(field: String): List<Any?> =
    (this as Map<String, Any?>)[field] as? List<Any?> ?: throw CheckFailed("no array field $field in $this")

@Suppress("UNCHECKED_CAST")
fun Any?.has(field: String): Boolean = (this as Map<String, Any?>).containsKey(field)

// --- SM2 (GB/T 32918.5), for the independent point multiplication. ----------------------

object Sm2 {
    private val P = BigInteger("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
    private val A = P.subtract(BigInteger.valueOf(3))
    val N = BigInteger("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
    private val G = Pair(
        BigInteger("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7", 16),
        BigInteger("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0", 16),
    )

    private fun add(p: Pair<BigInteger, BigInteger>?, q: Pair<BigInteger, BigInteger>?): Pair<BigInteger, BigInteger>? {
        if (p == null) return q
        if (q == null) return p
        if (p.first == q.first && p.second.add(q.second).mod(P).signum() == 0) return null
        val lam = if (p == q) {
            BigInteger.valueOf(3).multiply(p.first).multiply(p.first).add(A)
                .multiply(p.second.shiftLeft(1).modInverse(P)).mod(P)
        } else {
            q.second.subtract(p.second).multiply(q.first.subtract(p.first).mod(P).modInverse(P)).mod(P)
        }
        val x = lam.multiply(lam).subtract(p.first).subtract(q.first).mod(P)
        return Pair(x, lam.multiply(p.first.subtract(x)).subtract(p.second).mod(P))
    }

    /** k·G, as SEC1 uncompressed lowercase hex. */
    fun mulG(k: BigInteger): String {
        var acc: Pair<BigInteger, BigInteger>? = null
        var addend: Pair<BigInteger, BigInteger>? = G
        var rest = k
        while (rest.signum() > 0) {
            if (rest.testBit(0)) acc = add(acc, addend)
            addend = add(addend, addend)
            rest = rest.shiftRight(1)
        }
        val point = acc ?: throw IllegalArgumentException("k·G is the point at infinity")
        return "04" + String.format("%064x", point.first) + String.format("%064x", point.second)
    }

    /** P1 = d1⁻¹·G for a d1 given in hex. */
    fun p1Of(d1Hex: String): String = mulG(BigInteger(d1Hex, 16).modInverse(N))
}
