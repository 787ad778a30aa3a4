package cn.mcsd.gateway;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import org.bouncycastle.math.ec.ECPoint;

import cn.mcsd.gateway.crypto.Sm2;
import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonObject;
import cn.mcsd.gateway.kat.KnownAnswers;

/** docs/test-vectors.json (or $MCS_VECTORS) reproduces family by family, and tampering is caught. */
public class VectorsTest {
    /** The families the file had when this SDK was written; more may come, none may go. */
    static final Set<String> AT_LEAST = Set.of("pin_verifier", "pin_proof", "e", "signature_finish",
            "fixed_k3_finish", "blind_decrypt");

    static Path file() {
        String p = System.getenv("MCS_VECTORS");
        return Path.of(p == null || p.isEmpty() ? "docs/test-vectors.json" : p);
    }

    static Map<String, Object> load() throws Exception {
        return new LinkedHashMap<>(Json.parseObject(Files.readAllBytes(file())).raw());
    }

    static JsonObject obj(Map<String, Object> m) {
        return Json.parseObject(Json.writeBytes(m));
    }

    @Test
    public void everyFamilyOfTheFileReproduces() throws Exception {
        Map<String, Integer> checked = KnownAnswers.check(file());
        Set<String> inFile = new TreeSet<>(load().keySet());
        inFile.remove("about");
        Check.equal(inFile, new TreeSet<>(checked.keySet()), "families checked");
        Check.that(checked.keySet().containsAll(AT_LEAST), "the file lost a family: " + checked.keySet());
        for (var e : checked.entrySet()) {
            Check.that(e.getValue() > 0, e.getKey() + " has vectors");
        }
        System.out.println("      vectors checked: " + checked);
    }

    @Test
    public void anUnknownFamilyFails() throws Exception {
        Map<String, Object> f = load();
        f.put("brand_new", List.of(Map.of("x", "00")));
        Exception e = Check.fails(KnownAnswers.Mismatch.class, "unknown family", () -> KnownAnswers.check(obj(f)));
        Check.mentions(e, "unknown family \"brand_new\"");
    }

    @Test
    public void anEmptyFamilyOrAnOddFieldFails() throws Exception {
        Map<String, Object> f = load();
        f.put("e", List.of());
        Check.fails(KnownAnswers.Mismatch.class, "empty family", () -> KnownAnswers.check(obj(f)));

        Map<String, Object> g = load();
        @SuppressWarnings("unchecked")
        Map<String, Object> v = new LinkedHashMap<>((Map<String, Object>) ((List<?>) g.get("e")).get(0));
        v.put("extra", "00");
        g.put("e", List.of(v));
        Exception e = Check.fails(KnownAnswers.Mismatch.class, "extra field", () -> KnownAnswers.check(obj(g)));
        Check.mentions(e, "e[0]: fields");
    }

    /** Change one answer field of the first vector of {@code family}; the check must notice. */
    static void tamper(Map<String, Object> f, String family, String field) {
        List<Object> list = new ArrayList<>((List<?>) f.get(family));
        @SuppressWarnings("unchecked")
        Map<String, Object> v = new LinkedHashMap<>((Map<String, Object>) list.get(0));
        String s = (String) v.get(field);
        char last = s.charAt(s.length() - 1);
        v.put(field, s.substring(0, s.length() - 1) + (last == '0' ? '1' : '0'));
        list.set(0, v);
        f.put(family, list);
        Exception e = Check.fails(KnownAnswers.Mismatch.class, family + "." + field + " tampered",
                () -> KnownAnswers.check(obj(f)));
        Check.mentions(e, family + "[0]");
    }

    @Test
    public void aChangedAnswerFails() throws Exception {
        String[][] answers = {
            {"pin_verifier", "verifier"}, {"pin_proof", "proof"}, {"e", "z"}, {"e", "e"}, {"signature_finish", "s"},
            {"signature_finish", "r"}, {"fixed_k3_finish", "s"}, {"blind_decrypt", "t1"},
        };
        for (String[] a : answers) {
            tamper(load(), a[0], a[1]);
        }
    }

    // The families announced but perhaps not yet in the file, written here from their
    // definitions so that the checks are exercised before the file has them.

    static BigInteger k(String seed) {
        return new BigInteger(1, Sm2.sm3(("java sdk " + seed).getBytes(StandardCharsets.UTF_8))).mod(Sm2.N.subtract(BigInteger.ONE))
                .add(BigInteger.ONE);
    }

    static Map<String, Object> reshareVector() {
        BigInteger n = Sm2.N;
        BigInteger d1 = k("d1"), d2 = k("d2"), u = k("u"), t = k("t"), kk = k("k");
        BigInteger d1r = d1.multiply(u).mod(n), d2r = d2.multiply(u.modInverse(n)).mod(n);
        ECPoint transport = Sm2.G.multiply(t);
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("d1", Sm2.scalarHex(d1));
        v.put("d2", Sm2.scalarHex(d2));
        v.put("u", Sm2.scalarHex(u));
        v.put("d1_reshared", Sm2.scalarHex(d1r));
        v.put("d2_reshared", Sm2.scalarHex(d2r));
        v.put("p", Sm2.pointHex(Sm2.G.multiply(d1.multiply(d2).mod(n).modInverse(n)).subtract(Sm2.G)));
        v.put("p2", Sm2.pointHex(Sm2.G.multiply(d2r.modInverse(n))));
        v.put("t", Sm2.scalarHex(t));
        v.put("transport_key", Sm2.pointHex(transport));
        v.put("k", Sm2.scalarHex(kk));
        v.put("wrapped_share", Sm2.toHex(Sm2.encryptWith(transport, kk, Sm2.bytes32(d1r))));
        return v;
    }

    static Map<String, Object> recoveryVector() throws Exception {
        byte[] key = Sm2.sm3("recovery key".getBytes(StandardCharsets.UTF_8));
        byte[] nonce = java.util.Arrays.copyOf(Sm2.sm3("nonce".getBytes(StandardCharsets.UTF_8)), 12);
        BigInteger d1 = k("recovery d1");
        String keyId = "k_4b1d0e5c9a7f3e2d1c0b9a88";
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, nonce));
        c.updateAAD(("mcs-d1-recovery-v1|" + keyId).getBytes(StandardCharsets.UTF_8));
        byte[] sealed = c.doFinal(Sm2.bytes32(d1));
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("recovery_key", Sm2.toHex(key));
        v.put("key_id", keyId);
        v.put("d1", Sm2.scalarHex(d1));
        v.put("nonce", Sm2.toHex(nonce));
        v.put("sealed", Sm2.toHex(nonce) + Sm2.toHex(sealed));
        return v;
    }

    static Map<String, Object> withAnnounced() throws Exception {
        Map<String, Object> f = load();
        f.putIfAbsent("reshare", List.of(reshareVector()));
        f.putIfAbsent("recovery", List.of(recoveryVector()));
        f.putIfAbsent("qr", List.of(Map.of("qr", "mcs://task?v=1&id=t_1&token=" + ScanCodeTest.TOKEN
                + "&url=https%3A%2F%2F127.0.0.1%3A8443", "id", "t_1", "token", ScanCodeTest.TOKEN, "url",
                "https://127.0.0.1:8443")));
        f.putIfAbsent("qr_invalid", List.of(Map.of("qr", "mcs://task?v=2&id=t_1&token=" + ScanCodeTest.TOKEN
                + "&url=https%3A%2F%2Fh", "why", "version 2")));
        return f;
    }

    @Test
    public void theAnnouncedFamiliesAreChecked() throws Exception {
        Map<String, Integer> checked = KnownAnswers.check(obj(withAnnounced()));
        Check.that(checked.keySet().containsAll(Set.of("reshare", "recovery", "qr", "qr_invalid")),
                "announced families checked: " + checked.keySet());
        for (String[] a : new String[][] {
                {"reshare", "d1_reshared"}, {"reshare", "d2_reshared"}, {"reshare", "p"}, {"reshare", "p2"},
                {"reshare", "transport_key"}, {"reshare", "wrapped_share"}, {"recovery", "sealed"}, {"qr", "token"},
                {"qr", "url"}}) {
            tamper(withAnnounced(), a[0], a[1]);
        }
        Map<String, Object> f = withAnnounced();
        f.put("qr_invalid", List.of(Map.of("qr", ((Map<?, ?>) ((List<?>) f.get("qr")).get(0)).get("qr"), "why", "valid")));
        Exception e = Check.fails(KnownAnswers.Mismatch.class, "a valid qr in qr_invalid", () -> KnownAnswers.check(obj(f)));
        Check.mentions(e, "accepted");
    }
}
