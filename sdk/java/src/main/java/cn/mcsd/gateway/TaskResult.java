package cn.mcsd.gateway;

import cn.mcsd.gateway.json.JsonObject;

/**
 * A completed task's result, one record per kind (docs/openapi.yaml {@code TaskResult}).
 * Byte strings are kept as the base64 the wire carries, so results compare by value; the
 * {@code …Bytes()} methods decode them.
 *
 * <p>The wire does not name the kind: like the daemon's own untagged decoding, {@link
 * #from} recognises each result by its fields. {@link TaskOutcome#result(Class)} checks the
 * kind the caller expects.
 */
public sealed interface TaskResult {
    /** {@code login}: an SM2 signature over the challenge, by {@code publicKey}; see {@link SignatureCheck#login}. */
    record Login(String signature, String keyId, String publicKey, Subject subject, String certificate,
            String subjectDn) implements TaskResult {
        public byte[] signatureBytes() {
            return Wire.unb64(signature, "signature");
        }

        /** DER X.509, or {@code null} before the key has a certificate. */
        public byte[] certificateBytes() {
            return certificate == null ? null : Wire.unb64(certificate, "certificate");
        }
    }

    /** {@code sign}: a DER SM2 signature ({@code raw}) or a DER CMS SignedData ({@code cms}) over the message. */
    record Sign(String signature, String keyId, String publicKey, String certificate, String subjectDn)
            implements TaskResult {
        public byte[] signatureBytes() {
            return Wire.unb64(signature, "signature");
        }

        public byte[] certificateBytes() {
            return certificate == null ? null : Wire.unb64(certificate, "certificate");
        }
    }

    /** {@code pdf_seal}: the sealed PDF. */
    record PdfSeal(String pdf, String sealId, String keyId, String certificate) implements TaskResult {
        public byte[] pdfBytes() {
            return Wire.unb64(pdf, "pdf");
        }
    }

    /** {@code pdf_unseal}: the PDF as it was before its last revision, and the withdrawn seal's field. */
    record PdfUnseal(String pdf, String field, String keyId) implements TaskResult {
        public byte[] pdfBytes() {
            return Wire.unb64(pdf, "pdf");
        }
    }

    /** {@code decrypt}: the plaintext, handed out by the first {@code result} call only. */
    record Decrypt(String plaintext) implements TaskResult {
        public byte[] plaintextBytes() {
            return Wire.unb64(plaintext, "plaintext");
        }

        @Override
        public String toString() {
            return "Decrypt[plaintext=<redacted>]";
        }
    }

    /** {@code decrypt} of an envelope whose content the daemon did not keep: the SM4 key (hex), once. */
    record ContentKey(String contentKey) implements TaskResult {
        @Override
        public String toString() {
            return "ContentKey[contentKey=<redacted>]";
        }
    }

    /** {@code encrypt}: {@code ciphertext} (DER SM2, format {@code sm2}) or {@code envelope} (DER EnvelopedData). */
    record Encrypt(String ciphertext, String envelope, String certificate, String keyId, String publicKey)
            implements TaskResult {}

    /** {@code csr} (activation's): the certificate the CA issued. */
    record Csr(String certificate, String keyId) implements TaskResult {}

    /** Recognise a result by its fields, in the daemon's order; checks each base64 field. */
    static TaskResult from(JsonObject o) {
        TaskResult r;
        if (o.has("pdf") && o.has("seal_id") && o.has("key_id")) {
            r = new PdfSeal(o.string("pdf"), o.string("seal_id"), o.string("key_id"), o.optString("certificate"));
        } else if (o.has("pdf") && o.has("field") && o.has("key_id")) {
            r = new PdfUnseal(o.string("pdf"), o.string("field"), o.string("key_id"));
        } else if (o.has("plaintext")) {
            r = new Decrypt(o.string("plaintext"));
        } else if (o.has("content_key")) {
            r = new ContentKey(o.string("content_key"));
        } else if (o.has("signature") && o.has("key_id") && o.has("public_key") && o.has("subject")) {
            r = new Login(o.string("signature"), o.string("key_id"), o.string("public_key"),
                    Subject.from(o.object("subject")), o.optString("certificate"), o.optString("subject_dn"));
        } else if (o.has("signature") && o.has("key_id") && o.has("public_key")) {
            r = new Sign(o.string("signature"), o.string("key_id"), o.string("public_key"), o.optString("certificate"),
                    o.optString("subject_dn"));
        } else if (o.has("key_id") && o.has("public_key")) {
            r = new Encrypt(o.optString("ciphertext"), o.optString("envelope"), o.optString("certificate"),
                    o.string("key_id"), o.string("public_key"));
        } else if (o.has("certificate") && o.has("key_id")) {
            r = new Csr(o.string("certificate"), o.string("key_id"));
        } else {
            throw new IllegalArgumentException(
                    (o.path().isEmpty() ? "result" : o.path()) + ": fields " + o.keys() + " are no known task result");
        }
        checkEncodings(r);
        return r;
    }

    private static void checkEncodings(TaskResult r) {
        if (r instanceof Login l) {
            l.signatureBytes();
            l.certificateBytes();
        } else if (r instanceof Sign s) {
            s.signatureBytes();
            s.certificateBytes();
        } else if (r instanceof PdfSeal p) {
            p.pdfBytes();
        } else if (r instanceof PdfUnseal p) {
            p.pdfBytes();
        } else if (r instanceof Decrypt d) {
            d.plaintextBytes();
        }
    }
}
