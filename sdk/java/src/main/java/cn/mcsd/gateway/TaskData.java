package cn.mcsd.gateway;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A new task's {@code data}, one record per kind a gateway creates (docs/openapi.yaml
 * {@code TaskData}). Byte strings are held as the base64 the wire carries; build them from
 * bytes with the static factories.
 */
public sealed interface TaskData {
    TaskKind kind();

    Map<String, Object> toJson();

    /** {@code login}: the key signs {@code challenge} (at most 4096 bytes) as an SM2 message. */
    static Login login(byte[] challenge) {
        return new Login(Wire.b64(challenge));
    }

    /** {@code sign}, format {@code raw}: the result is a DER SM2 signature over {@code message}. */
    static Sign sign(byte[] message) {
        return new Sign(Wire.b64(message), SignFormat.RAW);
    }

    /** {@code sign} in the given format ({@code cms}: a GB/T 35275 detached SignedData). */
    static Sign sign(byte[] message, SignFormat format) {
        return new Sign(Wire.b64(message), format);
    }

    /** {@code decrypt} of an SM2 ciphertext (C1‖C3‖C2 or DER). */
    static Decrypt decrypt(byte[] ciphertext) {
        return new Decrypt(Wire.b64(ciphertext), null, null, null);
    }

    /** {@code decrypt} of a GB/T 35275 EnvelopedData (DER), with or without its content. */
    static Decrypt decryptEnvelope(byte[] envelope) {
        return new Decrypt(null, Wire.b64(envelope), null, null);
    }

    /** {@code encrypt} (at most 65536 bytes) to the claiming key. */
    static Encrypt encrypt(byte[] plaintext, EncryptFormat format) {
        return new Encrypt(Wire.b64(plaintext), format);
    }

    /** {@code pdf_seal}: seal {@code pdf} at {@code placement}; {@code sealId} may be {@code null}. */
    static PdfSeal pdfSeal(byte[] pdf, String sealId, Placement placement) {
        return new PdfSeal(Wire.b64(pdf), sealId, placement);
    }

    /** {@code pdf_unseal} (撤章): withdraw the last seal of {@code pdf}. */
    static PdfUnseal pdfUnseal(byte[] pdf) {
        return new PdfUnseal(Wire.b64(pdf));
    }

    enum SignFormat {
        RAW("raw"),
        CMS("cms");

        final String wire;

        SignFormat(String wire) {
            this.wire = wire;
        }
    }

    enum EncryptFormat {
        SM2("sm2"),
        ENVELOPE("envelope");

        final String wire;

        EncryptFormat(String wire) {
            this.wire = wire;
        }
    }

    record Login(String challenge) implements TaskData {
        public Login {
            if (Wire.unb64(challenge, "challenge").length > 4096) {
                throw new IllegalArgumentException("a login challenge is at most 4096 bytes");
            }
        }

        public TaskKind kind() {
            return TaskKind.LOGIN;
        }

        public byte[] challengeBytes() {
            return Wire.unb64(challenge, "challenge");
        }

        public Map<String, Object> toJson() {
            return Map.of("challenge", challenge);
        }
    }

    /** {@code format} {@code null} means the daemon's default, {@code raw}. */
    record Sign(String message, SignFormat format) implements TaskData {
        public Sign {
            Wire.unb64(message, "message");
        }

        public TaskKind kind() {
            return TaskKind.SIGN;
        }

        public byte[] messageBytes() {
            return Wire.unb64(message, "message");
        }

        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("message", message);
            if (format != null) m.put("format", format.wire);
            return m;
        }
    }

    /** Exactly one of {@code ciphertext} or {@code envelope}; the recipient checks only with a ciphertext. */
    record Decrypt(String ciphertext, String envelope, String recipientCertSerial, String recipientPublicKey)
            implements TaskData {
        public Decrypt {
            if ((ciphertext == null) == (envelope == null)) {
                throw new IllegalArgumentException("decrypt takes exactly one of ciphertext or envelope");
            }
            if (envelope != null && (recipientCertSerial != null || recipientPublicKey != null)) {
                throw new IllegalArgumentException("an envelope names its recipients itself");
            }
        }

        /** Only a key with this certificate serial (hex) may claim it. */
        public Decrypt withRecipientCertSerial(String serialHex) {
            return new Decrypt(ciphertext, envelope, serialHex, recipientPublicKey);
        }

        /** Only this joint key (hex point) may claim it. */
        public Decrypt withRecipientPublicKey(String pointHex) {
            return new Decrypt(ciphertext, envelope, recipientCertSerial, pointHex);
        }

        public TaskKind kind() {
            return TaskKind.DECRYPT;
        }

        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            if (ciphertext != null) m.put("ciphertext", ciphertext);
            if (envelope != null) m.put("envelope", envelope);
            if (recipientCertSerial != null) m.put("recipient_cert_serial", recipientCertSerial);
            if (recipientPublicKey != null) m.put("recipient_public_key", recipientPublicKey);
            return m;
        }
    }

    record Encrypt(String plaintext, EncryptFormat format) implements TaskData {
        public TaskKind kind() {
            return TaskKind.ENCRYPT;
        }

        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("plaintext", plaintext);
            if (format != null) m.put("format", format.wire);
            return m;
        }
    }

    record PdfSeal(String pdf, String sealId, Placement placement) implements TaskData {
        public PdfSeal {
            if (placement == null) throw new IllegalArgumentException("pdf_seal needs a placement");
        }

        public TaskKind kind() {
            return TaskKind.PDF_SEAL;
        }

        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("pdf", pdf);
            if (sealId != null) m.put("seal_id", sealId);
            m.put("placement", placement.toJson());
            return m;
        }
    }

    record PdfUnseal(String pdf) implements TaskData {
        public TaskKind kind() {
            return TaskKind.PDF_UNSEAL;
        }

        public Map<String, Object> toJson() {
            return Map.of("pdf", pdf);
        }
    }
}
