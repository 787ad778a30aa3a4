package cn.mcsd.gateway.crypto;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HexFormat;

import org.bouncycastle.asn1.gm.GMNamedCurves;
import org.bouncycastle.asn1.x9.X9ECParameters;
import org.bouncycastle.crypto.digests.SM3Digest;
import org.bouncycastle.crypto.params.ECDomainParameters;
import org.bouncycastle.crypto.params.ECPublicKeyParameters;
import org.bouncycastle.crypto.params.ParametersWithID;
import org.bouncycastle.crypto.signers.SM2Signer;
import org.bouncycastle.crypto.signers.StandardDSAEncoding;
import org.bouncycastle.math.ec.ECPoint;

/**
 * SM2 on the GB/T 32918 curve ({@code sm2p256v1}) as PROTOCOL.md encodes it: points as
 * lowercase hex of SEC1 uncompressed {@code 04‖x‖y}, scalars and digests as 64 lowercase hex
 * characters; {@code Z}, {@code e}, the KDF, public-key encryption (C1‖C3‖C2) and signature
 * verification with the default ID {@code 1234567812345678}. Decoding checks what the
 * protocol says every party checks: a point on the curve, not the identity, the right
 * length; a scalar in {@code (0, n)}.
 */
public final class Sm2 {
    private static final X9ECParameters X9 = GMNamedCurves.getByName("sm2p256v1");
    /** The curve, {@code G} and {@code n}. */
    public static final ECDomainParameters DOMAIN =
            new ECDomainParameters(X9.getCurve(), X9.getG(), X9.getN(), X9.getH());
    public static final BigInteger N = X9.getN();
    public static final ECPoint G = X9.getG();
    /** The distinguishing ID every key of the daemon uses (ENTL = 0x0080). */
    public static final byte[] DEFAULT_ID = "1234567812345678".getBytes(StandardCharsets.US_ASCII);

    private static final HexFormat HEX = HexFormat.of();

    private Sm2() {}

    /** Lowercase hex (the protocol refuses uppercase digits). */
    public static byte[] fromHex(String hex, String what) {
        if (hex.length() % 2 != 0 || !hex.chars().allMatch(c -> (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            throw new IllegalArgumentException(what + ": not lowercase hex");
        }
        return HEX.parseHex(hex);
    }

    public static String toHex(byte[] b) {
        return HEX.formatHex(b);
    }

    /** A point from 130 lowercase hex characters, checked. */
    public static ECPoint point(String hex) {
        byte[] b = fromHex(hex, "point");
        return point(b);
    }

    /** A point from its 65-byte SEC1 uncompressed encoding, checked. */
    public static ECPoint point(byte[] b) {
        if (b.length != 65 || b[0] != 0x04) {
            throw new IllegalArgumentException("point: not a 65-byte uncompressed SEC1 point");
        }
        ECPoint p;
        try {
            // decodePoint checks the coordinates lie on the curve.
            p = DOMAIN.getCurve().decodePoint(b);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("point: not on the SM2 curve");
        }
        if (p.isInfinity() || !p.isValid()) {
            throw new IllegalArgumentException("point: not a valid SM2 point");
        }
        return p.normalize();
    }

    /** {@code 04‖x‖y} of a point other than the identity. */
    public static byte[] encode(ECPoint p) {
        if (p.isInfinity()) {
            throw new IllegalArgumentException("the identity has no encoding");
        }
        return p.normalize().getEncoded(false);
    }

    public static String pointHex(ECPoint p) {
        return toHex(encode(p));
    }

    /** A scalar from 64 lowercase hex characters, checked {@code 0 < v < n}. */
    public static BigInteger scalar(String hex) {
        if (hex.length() != 64) {
            throw new IllegalArgumentException("scalar: not 64 hex characters");
        }
        BigInteger v = new BigInteger(1, fromHex(hex, "scalar"));
        if (v.signum() <= 0 || v.compareTo(N) >= 0) {
            throw new IllegalArgumentException("scalar: not in (0, n)");
        }
        return v;
    }

    /** 32 bytes big-endian. */
    public static byte[] bytes32(BigInteger v) {
        byte[] raw = v.toByteArray();
        if (raw.length == 32) return raw;
        byte[] out = new byte[32];
        if (raw.length > 32) {
            if (raw.length != 33 || raw[0] != 0) throw new IllegalArgumentException("value exceeds 32 bytes");
            System.arraycopy(raw, 1, out, 0, 32);
        } else {
            System.arraycopy(raw, 0, out, 32 - raw.length, raw.length);
        }
        return out;
    }

    public static String scalarHex(BigInteger v) {
        return toHex(bytes32(v.mod(N)));
    }

    public static byte[] sm3(byte[]... parts) {
        SM3Digest d = new SM3Digest();
        for (byte[] p : parts) d.update(p, 0, p.length);
        byte[] out = new byte[32];
        d.doFinal(out, 0);
        return out;
    }

    /** {@code Z = SM3(ENTL‖ID‖a‖b‖xG‖yG‖xP‖yP)}. */
    public static byte[] z(byte[] id, ECPoint publicKey) {
        if (id.length > 8191) {
            throw new IllegalArgumentException("SM2 ID longer than 8191 bytes");
        }
        int bits = id.length * 8;
        ECPoint p = publicKey.normalize();
        ECPoint g = G.normalize();
        return sm3(
                new byte[] {(byte) (bits >> 8), (byte) bits},
                id,
                DOMAIN.getCurve().getA().getEncoded(),
                DOMAIN.getCurve().getB().getEncoded(),
                g.getAffineXCoord().getEncoded(),
                g.getAffineYCoord().getEncoded(),
                p.getAffineXCoord().getEncoded(),
                p.getAffineYCoord().getEncoded());
    }

    /** {@code e = SM3(Z‖M)}. */
    public static byte[] e(byte[] z, byte[] message) {
        return sm3(z, message);
    }

    /** GB/T 32918.4 KDF with SM3: {@code SM3(z‖ct)} for ct = 1, 2, … (32-bit big-endian). */
    public static byte[] kdf(byte[] z, int length) {
        byte[] out = new byte[length];
        int done = 0;
        for (int ct = 1; done < length; ct++) {
            byte[] block = sm3(z, new byte[] {(byte) (ct >>> 24), (byte) (ct >>> 16), (byte) (ct >>> 8), (byte) ct});
            int n = Math.min(32, length - done);
            System.arraycopy(block, 0, out, done, n);
            done += n;
        }
        return out;
    }

    /**
     * SM2 public-key encryption with a given ephemeral scalar {@code k} (known-answer tests
     * only; real encryption draws {@code k} at random): {@code C1 = k·G},
     * {@code (x2, y2) = k·T}, {@code C2 = M ⊕ KDF(x2‖y2, |M|)}, {@code C3 = SM3(x2‖M‖y2)},
     * answered as {@code C1‖C3‖C2}.
     */
    public static byte[] encryptWith(ECPoint to, BigInteger k, byte[] message) {
        ECPoint c1 = G.multiply(k).normalize();
        ECPoint s = to.multiply(k).normalize();
        byte[] x2 = s.getAffineXCoord().getEncoded();
        byte[] y2 = s.getAffineYCoord().getEncoded();
        byte[] t = kdf(concat(x2, y2), message.length);
        if (message.length > 0 && allZero(t)) {
            throw new IllegalArgumentException("KDF gave all zeros: choose another k");
        }
        byte[] c2 = xor(message, t);
        byte[] c3 = sm3(x2, message, y2);
        return concat(encode(c1), c3, c2);
    }

    /** Decrypt C1‖C3‖C2 with the private scalar {@code d}; refuses a wrong C3. */
    public static byte[] decrypt(BigInteger d, byte[] c1c3c2) {
        if (c1c3c2.length < 65 + 32) {
            throw new IllegalArgumentException("ciphertext shorter than C1‖C3");
        }
        ECPoint c1 = point(Arrays.copyOfRange(c1c3c2, 0, 65));
        byte[] c3 = Arrays.copyOfRange(c1c3c2, 65, 97);
        byte[] c2 = Arrays.copyOfRange(c1c3c2, 97, c1c3c2.length);
        ECPoint s = c1.multiply(d).normalize();
        byte[] x2 = s.getAffineXCoord().getEncoded();
        byte[] y2 = s.getAffineYCoord().getEncoded();
        byte[] m = xor(c2, kdf(concat(x2, y2), c2.length));
        if (!java.security.MessageDigest.isEqual(sm3(x2, m, y2), c3)) {
            throw new IllegalArgumentException("ciphertext does not decrypt: C3 differs");
        }
        return m;
    }

    /**
     * Verify a DER {@code SEQUENCE{r, s}} SM2 signature over {@code message} (the signer
     * computes {@code e = SM3(Z‖message)}) with BouncyCastle's {@link SM2Signer} and the ID.
     * Non-canonical DER is refused.
     */
    public static boolean verify(ECPoint publicKey, byte[] id, byte[] message, byte[] derSignature) {
        SM2Signer signer = new SM2Signer(StandardDSAEncoding.INSTANCE, new SM3Digest());
        signer.init(false, new ParametersWithID(new ECPublicKeyParameters(publicKey, DOMAIN), id));
        signer.update(message, 0, message.length);
        try {
            return signer.verifySignature(derSignature);
        } catch (RuntimeException e) {
            return false;
        }
    }

    /** {@link #verify} with the default ID. */
    public static boolean verify(ECPoint publicKey, byte[] message, byte[] derSignature) {
        return verify(publicKey, DEFAULT_ID, message, derSignature);
    }

    /** DER {@code SEQUENCE{r, s}}. */
    public static byte[] derSignature(BigInteger r, BigInteger s) {
        try {
            return StandardDSAEncoding.INSTANCE.encode(N, r, s);
        } catch (java.io.IOException e) {
            throw new IllegalStateException("DER encoding: " + e.getMessage(), e);
        }
    }

    /** Verify {@code (r, s)} against a digest {@code e} directly (GB/T 32918.2 §7):
     * {@code t = r + s}, {@code (x1, y1) = s·G + t·P}, valid when {@code r = e + x1 mod n}. */
    public static boolean verifyDigest(ECPoint publicKey, byte[] e, BigInteger r, BigInteger s) {
        if (r.signum() <= 0 || r.compareTo(N) >= 0 || s.signum() <= 0 || s.compareTo(N) >= 0) {
            return false;
        }
        BigInteger t = r.add(s).mod(N);
        if (t.signum() == 0) return false;
        ECPoint x = G.multiply(s).add(publicKey.multiply(t)).normalize();
        if (x.isInfinity()) return false;
        BigInteger x1 = x.getAffineXCoord().toBigInteger();
        return new BigInteger(1, e).add(x1).mod(N).equals(r);
    }

    static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) n += p.length;
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    static byte[] xor(byte[] a, byte[] b) {
        byte[] out = new byte[a.length];
        for (int i = 0; i < a.length; i++) out[i] = (byte) (a[i] ^ b[i]);
        return out;
    }

    private static boolean allZero(byte[] b) {
        for (byte x : b) if (x != 0) return false;
        return true;
    }
}
