package cn.mcsd.gateway.kat;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import org.bouncycastle.crypto.InvalidCipherTextException;
import org.bouncycastle.crypto.digests.SM3Digest;
import org.bouncycastle.crypto.engines.SM2Engine;
import org.bouncycastle.crypto.params.ECPrivateKeyParameters;
import org.bouncycastle.math.ec.ECPoint;

import cn.mcsd.gateway.ScanCode;
import cn.mcsd.gateway.crypto.Pin;
import cn.mcsd.gateway.crypto.Sm2;
import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonException;
import cn.mcsd.gateway.json.JsonObject;

/**
 * Reproduces every family of the daemon's known-answer vectors ({@code docs/test-vectors.json},
 * written by {@code cargo xtask vectors} from {@code sm2-2p/src/kat.rs}) with BouncyCastle
 * and {@link BigInteger} arithmetic on the SM2 curve, as an integrator's implementation would.
 *
 * <p>A family this class does not know, a vector with a field it does not expect or lacks,
 * and an empty family are failures, not skips: the file and this class move in step.
 *
 * <p>Run it on a file: {@code java -cp mcs-gateway.jar:bcprov.jar
 * cn.mcsd.gateway.kat.KnownAnswers docs/test-vectors.json}.
 */
public final class KnownAnswers {
    /** Top-level keys that are not families. */
    private static final Set<String> METADATA = Set.of("about");

    /** Every family and its fields, as the file names them. */
    public static final Map<String, List<String>> FAMILIES = families();

    private static Map<String, List<String>> families() {
        Map<String, List<String>> f = new LinkedHashMap<>();
        f.put("pin_verifier", List.of("pin", "salt", "verifier"));
        f.put("pin_proof", List.of("verifier", "key_id", "op", "fields", "proof"));
        f.put("e", List.of("public_key", "id", "message", "z", "e"));
        f.put("signature_finish", List.of("d1", "k1", "r", "s2", "s3", "s", "public_key", "e", "d2", "k2", "k3"));
        f.put("fixed_k3_finish", List.of("d1", "k1", "r", "s3", "s", "public_key", "e", "d2", "k2"));
        f.put("blind_decrypt", List.of("d1", "w", "c1", "t1", "t2", "public_key", "k", "shared"));
        f.put("reshare", List.of("d1", "d2", "u", "d1_reshared", "d2_reshared", "p", "p2", "t", "transport_key", "k",
                "wrapped_share"));
        f.put("recovery", List.of("recovery_key", "key_id", "d1", "nonce", "sealed"));
        f.put("qr", List.of("qr", "id", "token", "url"));
        f.put("qr_invalid", List.of("qr", "why"));
        return java.util.Collections.unmodifiableMap(f);
    }

    /** A vector that does not reproduce, or a file this class cannot check. */
    public static final class Mismatch extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Mismatch(String message) {
            super(message);
        }
    }

    private KnownAnswers() {}

    /** Check every family of the file; answers how many vectors each family had. */
    public static Map<String, Integer> check(Path file) throws IOException {
        return check(Json.parseObject(Files.readAllBytes(file)));
    }

    /** Check every family of a parsed file. */
    public static Map<String, Integer> check(JsonObject file) {
        Map<String, Integer> checked = new LinkedHashMap<>();
        for (String family : new TreeSet<>(file.keys())) {
            if (METADATA.contains(family)) continue;
            if (!FAMILIES.containsKey(family)) {
                throw new Mismatch("unknown family \"" + family + "\" in the vectors: teach KnownAnswers to check it");
            }
            List<Object> list = file.list(family);
            if (list.isEmpty()) {
                throw new Mismatch(family + ": the family has no vectors");
            }
            for (int i = 0; i < list.size(); i++) {
                JsonObject v = JsonObject.element(list, i, family);
                String where = family + "[" + i + "]";
                Set<String> expected = new TreeSet<>(FAMILIES.get(family));
                if (!new TreeSet<>(v.keys()).equals(expected)) {
                    throw new Mismatch(where + ": fields " + new TreeSet<>(v.keys()) + ", expected " + expected);
                }
                try {
                    checkOne(family, v, where);
                } catch (JsonException | IllegalArgumentException e) {
                    // A malformed value (not hex, off the curve, a QR the parser refuses).
                    throw new Mismatch(where + ": " + e.getMessage());
                }
            }
            checked.put(family, list.size());
        }
        return checked;
    }

    private static void checkOne(String family, JsonObject v, String where) {
        switch (family) {
            case "pin_verifier" -> pinVerifier(v, where);
            case "pin_proof" -> pinProof(v, where);
            case "e" -> e(v, where);
            case "signature_finish" -> signatureFinish(v, where);
            case "fixed_k3_finish" -> fixedK3Finish(v, where);
            case "blind_decrypt" -> blindDecrypt(v, where);
            case "reshare" -> reshare(v, where);
            case "recovery" -> recovery(v, where);
            case "qr" -> qr(v, where);
            case "qr_invalid" -> qrInvalid(v, where);
            default -> throw new Mismatch(where + ": no check for family " + family);
        }
    }

    private static void same(String where, String field, String expected, String computed) {
        if (!expected.equals(computed)) {
            throw new Mismatch(where + "." + field + ": the file says " + expected + ", computed " + computed);
        }
    }

    private static void require(String where, boolean ok, String what) {
        if (!ok) throw new Mismatch(where + ": " + what);
    }

    private static byte[] hex(JsonObject v, String field) {
        return Sm2.fromHex(v.string(field), field);
    }

    private static void pinVerifier(JsonObject v, String where) {
        byte[] verifier = Pin.verifier(v.string("pin"), hex(v, "salt"));
        same(where, "verifier", v.string("verifier"), Sm2.toHex(verifier));
    }

    private static void pinProof(JsonObject v, String where) {
        List<String> fields = new ArrayList<>();
        List<Object> raw = v.list("fields");
        for (int i = 0; i < raw.size(); i++) {
            if (!(raw.get(i) instanceof String s)) {
                throw new Mismatch(where + ".fields[" + i + "]: not a string");
            }
            fields.add(s);
        }
        byte[] proof = Pin.proof(hex(v, "verifier"), v.string("key_id"), v.string("op"), fields);
        same(where, "proof", v.string("proof"), Sm2.toHex(proof));
    }

    private static void e(JsonObject v, String where) {
        ECPoint p = Sm2.point(v.string("public_key"));
        byte[] z = Sm2.z(v.string("id").getBytes(StandardCharsets.UTF_8), p);
        same(where, "z", v.string("z"), Sm2.toHex(z));
        same(where, "e", v.string("e"), Sm2.toHex(Sm2.e(z, hex(v, "message"))));
    }

    private static void signatureFinish(JsonObject v, String where) {
        BigInteger d1 = Sm2.scalar(v.string("d1"));
        BigInteger k1 = Sm2.scalar(v.string("k1"));
        BigInteger r = Sm2.scalar(v.string("r"));
        BigInteger s2 = Sm2.scalar(v.string("s2"));
        BigInteger s3 = Sm2.scalar(v.string("s3"));
        // The server's half: (x1, y1) = k3·Q1 + k2·G with Q1 = k1·G, r = e + x1,
        // s2 = d2·k3, s3 = d2·(r + k2).
        BigInteger d2 = Sm2.scalar(v.string("d2"));
        BigInteger k2 = Sm2.scalar(v.string("k2"));
        BigInteger k3 = Sm2.scalar(v.string("k3"));
        ECPoint q1 = Sm2.G.multiply(k1);
        serverR(v, where, q1.multiply(k3).add(Sm2.G.multiply(k2)), r);
        same(where, "s2", v.string("s2"), Sm2.scalarHex(d2.multiply(k3).mod(Sm2.N)));
        same(where, "s3", v.string("s3"), Sm2.scalarHex(d2.multiply(r.add(k2)).mod(Sm2.N)));
        // s = d1·k1·s2 + d1·s3 − r mod n
        BigInteger s = d1.multiply(k1).multiply(s2).add(d1.multiply(s3)).subtract(r).mod(Sm2.N);
        same(where, "s", v.string("s"), Sm2.scalarHex(s));
        verifies(v, where, r, s);
    }

    /** {@code r = (e + x1) mod n} for the server's point {@code (x1, y1)}. */
    private static void serverR(JsonObject v, String where, ECPoint x1y1, BigInteger r) {
        BigInteger x1 = x1y1.normalize().getAffineXCoord().toBigInteger();
        BigInteger e = new BigInteger(1, hex(v, "e"));
        same(where, "r", Sm2.scalarHex(r), Sm2.scalarHex(e.add(x1).mod(Sm2.N)));
    }

    private static void fixedK3Finish(JsonObject v, String where) {
        BigInteger d1 = Sm2.scalar(v.string("d1"));
        BigInteger k1 = Sm2.scalar(v.string("k1"));
        BigInteger r = Sm2.scalar(v.string("r"));
        BigInteger s3 = Sm2.scalar(v.string("s3"));
        // The server's half with k3 = d2⁻¹: (x1, y1) = d2⁻¹·Q1 + k2·G, s3 = d2·(r + k2).
        BigInteger d2 = Sm2.scalar(v.string("d2"));
        BigInteger k2 = Sm2.scalar(v.string("k2"));
        serverR(v, where, Sm2.G.multiply(k1).multiply(d2.modInverse(Sm2.N)).add(Sm2.G.multiply(k2)), r);
        same(where, "s3", v.string("s3"), Sm2.scalarHex(d2.multiply(r.add(k2)).mod(Sm2.N)));
        // s = d1·(s3 + k1) − r mod n
        BigInteger s = d1.multiply(s3.add(k1)).subtract(r).mod(Sm2.N);
        same(where, "s", v.string("s"), Sm2.scalarHex(s));
        verifies(v, where, r, s);
    }

    /** The finished signature is an ordinary SM2 signature on {@code e} under the joint key. */
    private static void verifies(JsonObject v, String where, BigInteger r, BigInteger s) {
        ECPoint p = Sm2.point(v.string("public_key"));
        byte[] e = hex(v, "e");
        require(where, e.length == 32, "e is not 32 bytes");
        require(where, Sm2.verifyDigest(p, e, r, s), "(r, s) does not verify on e under public_key");
    }

    private static void blindDecrypt(JsonObject v, String where) {
        BigInteger d1 = Sm2.scalar(v.string("d1"));
        BigInteger w = Sm2.scalar(v.string("w"));
        ECPoint c1 = Sm2.point(v.string("c1"));
        // T1 = w·d1⁻¹·C1
        ECPoint t1 = c1.multiply(w.multiply(d1.modInverse(Sm2.N)).mod(Sm2.N));
        same(where, "t1", v.string("t1"), Sm2.pointHex(t1));
        // C1 = k·G, and the point both sides reach: (x2, y2) = k·P = w⁻¹·T2 − C1.
        BigInteger k = Sm2.scalar(v.string("k"));
        same(where, "c1", v.string("c1"), Sm2.pointHex(Sm2.G.multiply(k)));
        ECPoint shared = Sm2.point(v.string("public_key")).multiply(k);
        same(where, "shared", v.string("shared"), Sm2.pointHex(shared));
        ECPoint unblinded = Sm2.point(v.string("t2")).multiply(w.modInverse(Sm2.N)).subtract(c1);
        same(where, "shared (from t2)", v.string("shared"), Sm2.pointHex(unblinded));
    }

    private static void reshare(JsonObject v, String where) {
        BigInteger n = Sm2.N;
        BigInteger d1 = Sm2.scalar(v.string("d1"));
        BigInteger d2 = Sm2.scalar(v.string("d2"));
        BigInteger u = Sm2.scalar(v.string("u"));
        // d1' = d1·u, d2' = d2·u⁻¹
        BigInteger d1r = d1.multiply(u).mod(n);
        BigInteger d2r = d2.multiply(u.modInverse(n)).mod(n);
        same(where, "d1_reshared", v.string("d1_reshared"), Sm2.scalarHex(d1r));
        same(where, "d2_reshared", v.string("d2_reshared"), Sm2.scalarHex(d2r));
        // P = (d1·d2)⁻¹·G − G
        ECPoint p = Sm2.G.multiply(d1.multiply(d2).mod(n).modInverse(n)).subtract(Sm2.G);
        same(where, "p", v.string("p"), Sm2.pointHex(p));
        // p2 = d2'⁻¹·G, and the delegate's check d1'⁻¹·p2 − G = P
        ECPoint p2 = Sm2.G.multiply(d2r.modInverse(n));
        same(where, "p2", v.string("p2"), Sm2.pointHex(p2));
        ECPoint fromFile = Sm2.point(v.string("p2")).multiply(d1r.modInverse(n)).subtract(Sm2.G);
        same(where, "p (from p2 and d1_reshared)", v.string("p"), Sm2.pointHex(fromFile));
        // T = t·G, and wrapped_share = SM2 encryption (C1‖C3‖C2) of d1' under T with k.
        BigInteger t = Sm2.scalar(v.string("t"));
        ECPoint transport = Sm2.G.multiply(t);
        same(where, "transport_key", v.string("transport_key"), Sm2.pointHex(transport));
        byte[] share = Sm2.bytes32(d1r);
        byte[] wrapped = Sm2.encryptWith(Sm2.point(v.string("transport_key")), Sm2.scalar(v.string("k")), share);
        same(where, "wrapped_share", v.string("wrapped_share"), Sm2.toHex(wrapped));
        // t decrypts it: with this SDK's code and with BouncyCastle's SM2Engine.
        byte[] file = hex(v, "wrapped_share");
        require(where, Arrays.equals(Sm2.decrypt(t, file), share), "t does not decrypt wrapped_share to d1'");
        SM2Engine engine = new SM2Engine(new SM3Digest(), SM2Engine.Mode.C1C3C2);
        engine.init(false, new ECPrivateKeyParameters(t, Sm2.DOMAIN));
        try {
            require(where, Arrays.equals(engine.processBlock(file, 0, file.length), share),
                    "BouncyCastle's SM2Engine decrypts wrapped_share to something else");
        } catch (InvalidCipherTextException e) {
            throw new Mismatch(where + ": BouncyCastle's SM2Engine refuses wrapped_share: " + e.getMessage());
        }
    }

    private static void recovery(JsonObject v, String where) {
        byte[] key = hex(v, "recovery_key");
        byte[] nonce = hex(v, "nonce");
        BigInteger d1 = Sm2.scalar(v.string("d1"));
        require(where, key.length == 32, "recovery_key is not 32 bytes");
        require(where, nonce.length == 12, "nonce is not 12 bytes");
        byte[] aad = ("mcs-d1-recovery-v1|" + v.string("key_id")).getBytes(StandardCharsets.UTF_8);
        try {
            Cipher enc = Cipher.getInstance("AES/GCM/NoPadding");
            enc.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, nonce));
            enc.updateAAD(aad);
            byte[] sealed = enc.doFinal(Sm2.bytes32(d1));
            byte[] all = new byte[12 + sealed.length];
            System.arraycopy(nonce, 0, all, 0, 12);
            System.arraycopy(sealed, 0, all, 12, sealed.length);
            same(where, "sealed", v.string("sealed"), Sm2.toHex(all));
            // And it opens back to d1 from the file's bytes.
            byte[] file = hex(v, "sealed");
            Cipher dec = Cipher.getInstance("AES/GCM/NoPadding");
            dec.init(Cipher.DECRYPT_MODE, new SecretKeySpec(key, "AES"),
                    new GCMParameterSpec(128, Arrays.copyOfRange(file, 0, 12)));
            dec.updateAAD(aad);
            byte[] opened = dec.doFinal(file, 12, file.length - 12);
            same(where, "d1 (opened from sealed)", v.string("d1"), Sm2.toHex(opened));
        } catch (GeneralSecurityException e) {
            throw new Mismatch(where + ": AES-256-GCM: " + e);
        }
    }

    private static void qr(JsonObject v, String where) {
        ScanCode code = ScanCode.parse(v.string("qr"));
        same(where, "id", v.string("id"), code.taskId());
        same(where, "token", v.string("token"), code.token());
        same(where, "url", v.string("url"), code.url());
        // Built back from its parts, it reads as the same code (the file's string may order
        // its parameters otherwise, or carry some this version skips).
        ScanCode built = new ScanCode(v.string("id"), v.string("token"), v.string("url"));
        require(where, ScanCode.parse(built.toQr()).equals(code), "built from id, token, url, it reads otherwise");
    }

    private static void qrInvalid(JsonObject v, String where) {
        try {
            ScanCode code = ScanCode.parse(v.string("qr"));
            throw new Mismatch(where + ": accepted \"" + v.string("qr") + "\" (" + v.string("why") + ") as " + code);
        } catch (ScanCode.InvalidQrException expected) {
            // refused, as it must be
        }
    }

    /** {@code KnownAnswers FILE}: checks the file, prints each family's count, exits 1 on a mismatch. */
    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: KnownAnswers docs/test-vectors.json");
            System.exit(2);
        }
        try {
            check(Path.of(args[0])).forEach((family, count) -> System.out.println(family + ": " + count + " ok"));
        } catch (Mismatch | JsonException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(1);
        }
    }
}
