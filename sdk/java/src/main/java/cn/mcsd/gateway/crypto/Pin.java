package cn.mcsd.gateway.crypto;

import java.nio.charset.StandardCharsets;
import java.util.List;

import org.bouncycastle.crypto.digests.SM3Digest;
import org.bouncycastle.crypto.generators.PKCS5S2ParametersGenerator;
import org.bouncycastle.crypto.macs.HMac;
import org.bouncycastle.crypto.params.KeyParameter;

/**
 * The phone's PIN math (PROTOCOL.md "PIN"): the verifier {@code V = PBKDF2-HMAC-SM3(PIN,
 * salt, 100 000, 32 bytes)} and the proof {@code HMAC-SM3(V, "mcs-pin-v1|key_id|op|f1|f2…")}.
 * A gateway never sees either; they are here for the known-answer vectors and for
 * integrators who write the phone side in Java.
 */
public final class Pin {
    public static final int ITERATIONS = 100_000;

    private Pin() {}

    /** {@code V} from the PIN (its UTF-8 bytes) and the 16-byte salt. */
    public static byte[] verifier(String pin, byte[] salt) {
        if (salt.length != 16) {
            throw new IllegalArgumentException("salt must be 16 bytes, got " + salt.length);
        }
        PKCS5S2ParametersGenerator gen = new PKCS5S2ParametersGenerator(new SM3Digest());
        gen.init(pin.getBytes(StandardCharsets.UTF_8), salt, ITERATIONS);
        return ((KeyParameter) gen.generateDerivedParameters(256)).getKey();
    }

    /** The transcript the proof covers: {@code mcs-pin-v1|key_id|op|fields joined by |}. */
    public static String transcript(String keyId, String op, List<String> fields) {
        StringBuilder b = new StringBuilder("mcs-pin-v1|").append(keyId).append('|').append(op);
        for (String f : fields) b.append('|').append(f);
        return b.toString();
    }

    /** {@code HMAC-SM3(V, transcript)}. */
    public static byte[] proof(byte[] verifier, String keyId, String op, List<String> fields) {
        HMac mac = new HMac(new SM3Digest());
        mac.init(new KeyParameter(verifier));
        byte[] msg = transcript(keyId, op, fields).getBytes(StandardCharsets.UTF_8);
        mac.update(msg, 0, msg.length);
        byte[] out = new byte[mac.getMacSize()];
        mac.doFinal(out, 0);
        return out;
    }
}
