package cn.mcsd.gateway;

import java.io.IOException;
import java.math.BigInteger;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.Arrays;
import java.util.Date;

import org.bouncycastle.asn1.ASN1Encodable;
import org.bouncycastle.asn1.ASN1Integer;
import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.asn1.ASN1OctetString;
import org.bouncycastle.asn1.ASN1Primitive;
import org.bouncycastle.asn1.ASN1Sequence;
import org.bouncycastle.asn1.ASN1Set;
import org.bouncycastle.asn1.ASN1TaggedObject;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x509.Certificate;
import org.bouncycastle.asn1.x509.SubjectPublicKeyInfo;
import org.bouncycastle.math.ec.ECPoint;

import cn.mcsd.gateway.crypto.Sm2;

/**
 * Checks, with BouncyCastle's SM2 ({@code SM2Signer}, ID {@code 1234567812345678}), that a
 * task's signature is what the gateway asked for — independently of the daemon:
 * <ul>
 *   <li>{@link #login}: the result's DER signature verifies over the challenge the gateway
 *       created the task with ({@code e = SM3(Z‖challenge)}, Z over the result's public key);
 *   <li>{@link #sign}: the same over the message ({@code raw}), or for {@code cms} a detached
 *       GB/T 35275 SignedData whose messageDigest is SM3(message), whose content type is GB/T
 *       35275 data, and whose signer signed the signed attributes;
 * </ul>
 * and in each case that the result's certificate carries exactly the result's public key
 * and is within its validity period. Whether that certificate was issued by a CA the
 * platform trusts is the platform's policy: {@link Verified#certificate()} is there for it
 * (and {@code POST /v1/verify/signature} checks the chain on the daemon's side).
 */
public final class SignatureCheck {
    private static final ASN1ObjectIdentifier EC_PUBLIC_KEY = new ASN1ObjectIdentifier("1.2.840.10045.2.1");
    private static final ASN1ObjectIdentifier SM2_CURVE = new ASN1ObjectIdentifier("1.2.156.10197.1.301");
    private static final ASN1ObjectIdentifier SIGNED_DATA = new ASN1ObjectIdentifier("1.2.840.113549.1.7.2");
    private static final ASN1ObjectIdentifier GB_SIGNED_DATA = new ASN1ObjectIdentifier("1.2.156.10197.6.1.4.2.2");
    private static final ASN1ObjectIdentifier GB_DATA = new ASN1ObjectIdentifier("1.2.156.10197.6.1.4.2.1");
    private static final ASN1ObjectIdentifier ID_DATA = new ASN1ObjectIdentifier("1.2.840.113549.1.7.1");
    private static final ASN1ObjectIdentifier SM3 = new ASN1ObjectIdentifier("1.2.156.10197.1.401");
    private static final ASN1ObjectIdentifier SM2_WITH_SM3 = new ASN1ObjectIdentifier("1.2.156.10197.1.501");
    private static final ASN1ObjectIdentifier SM2_SIGN = new ASN1ObjectIdentifier("1.2.156.10197.1.301.1");
    private static final ASN1ObjectIdentifier CONTENT_TYPE = new ASN1ObjectIdentifier("1.2.840.113549.1.9.3");
    private static final ASN1ObjectIdentifier MESSAGE_DIGEST = new ASN1ObjectIdentifier("1.2.840.113549.1.9.4");

    private SignatureCheck() {}

    /** A signature that does not check out; the message says which check failed. */
    public static final class VerificationException extends McsException {
        private static final long serialVersionUID = 1L;

        VerificationException(String message) {
            super(message);
        }
    }

    /** What a checked signature proves: this key, with this certificate, signed the data. */
    public record Verified(String keyId, String publicKey, Certificate certificate, String subjectDn) {}

    /** Check a login result against the challenge the task was created with (now as the time). */
    public static Verified login(TaskResult.Login result, byte[] challenge) {
        return login(result, challenge, Instant.now());
    }

    public static Verified login(TaskResult.Login result, byte[] challenge, Instant at) {
        ECPoint key = publicKey(result.publicKey());
        Certificate cert = certificateFor(result.certificateBytes(), key, at);
        if (!Sm2.verify(key, challenge, result.signatureBytes())) {
            throw new VerificationException("the login signature does not verify over the challenge under key "
                    + result.keyId());
        }
        return new Verified(result.keyId(), result.publicKey(), cert, result.subjectDn());
    }

    /** Check a {@code sign} result of format {@code raw} against the message. */
    public static Verified sign(TaskResult.Sign result, byte[] message) {
        return sign(result, message, TaskData.SignFormat.RAW, Instant.now());
    }

    /** Check a {@code sign} result of the given format against the message. */
    public static Verified sign(TaskResult.Sign result, byte[] message, TaskData.SignFormat format, Instant at) {
        ECPoint key = publicKey(result.publicKey());
        Certificate cert = certificateFor(result.certificateBytes(), key, at);
        if (format == TaskData.SignFormat.CMS) {
            cms(result.signatureBytes(), message, key, result.certificateBytes());
        } else if (!Sm2.verify(key, message, result.signatureBytes())) {
            throw new VerificationException("the signature does not verify over the message under key " + result.keyId());
        }
        return new Verified(result.keyId(), result.publicKey(), cert, result.subjectDn());
    }

    private static ECPoint publicKey(String hex) {
        try {
            return Sm2.point(hex);
        } catch (IllegalArgumentException e) {
            throw new VerificationException("the result's public_key: " + e.getMessage());
        }
    }

    /** The certificate, parsed: an SM2 key equal to {@code key}, valid at {@code at}. */
    static Certificate certificateFor(byte[] der, ECPoint key, Instant at) {
        if (der == null) {
            throw new VerificationException("the result carries no certificate (the key has none yet)");
        }
        Certificate cert;
        try {
            cert = Certificate.getInstance(ASN1Primitive.fromByteArray(der));
        } catch (IOException | IllegalArgumentException e) {
            throw new VerificationException("the certificate is not DER X.509: " + e.getMessage());
        }
        SubjectPublicKeyInfo spki = cert.getSubjectPublicKeyInfo();
        AlgorithmIdentifier alg = spki.getAlgorithm();
        boolean sm2 = (EC_PUBLIC_KEY.equals(alg.getAlgorithm()) || SM2_CURVE.equals(alg.getAlgorithm()))
                && SM2_CURVE.equals(alg.getParameters());
        if (!sm2) {
            throw new VerificationException("the certificate's key is not an SM2 key (" + alg.getAlgorithm() + ", "
                    + alg.getParameters() + ")");
        }
        if (!Arrays.equals(spki.getPublicKeyData().getOctets(), Sm2.encode(key))) {
            throw new VerificationException("the certificate (" + cert.getSubject() + ") is for another key than the result's public_key");
        }
        Date when = Date.from(at);
        if (when.before(cert.getStartDate().getDate()) || when.after(cert.getEndDate().getDate())) {
            throw new VerificationException("the certificate is valid from " + cert.getStartDate().getDate().toInstant()
                    + " to " + cert.getEndDate().getDate().toInstant() + ", not at " + at);
        }
        return cert;
    }

    /** A detached GB/T 35275 / RFC 5652 SignedData over {@code message}, by {@code key}. */
    private static void cms(byte[] der, byte[] message, ECPoint key, byte[] resultCertificate) {
        try {
            ASN1Sequence contentInfo = ASN1Sequence.getInstance(ASN1Primitive.fromByteArray(der));
            ASN1ObjectIdentifier outer = ASN1ObjectIdentifier.getInstance(contentInfo.getObjectAt(0));
            if (!SIGNED_DATA.equals(outer) && !GB_SIGNED_DATA.equals(outer)) {
                throw new VerificationException("CMS: content type " + outer + " is not SignedData");
            }
            ASN1Sequence signedData = ASN1Sequence.getInstance(explicit0(contentInfo.getObjectAt(1)));
            ASN1Sequence encap = ASN1Sequence.getInstance(signedData.getObjectAt(2));
            ASN1ObjectIdentifier eType = ASN1ObjectIdentifier.getInstance(encap.getObjectAt(0));
            if (!GB_DATA.equals(eType) && !ID_DATA.equals(eType)) {
                throw new VerificationException("CMS: encapsulated content type " + eType + " is not data");
            }
            if (encap.size() > 1) {
                throw new VerificationException("CMS: the signature is not detached");
            }
            ASN1Set certificates = null;
            ASN1Set signerInfos = null;
            for (int i = 3; i < signedData.size(); i++) {
                ASN1Encodable el = signedData.getObjectAt(i);
                if (el instanceof ASN1TaggedObject t && t.getTagNo() == 0) {
                    certificates = ASN1Set.getInstance(t, false);
                } else if (el instanceof ASN1Set s) {
                    signerInfos = s;
                }
            }
            if (signerInfos == null || signerInfos.size() != 1) {
                throw new VerificationException("CMS: expected exactly one SignerInfo");
            }
            ASN1Sequence si = ASN1Sequence.getInstance(signerInfos.getObjectAt(0));
            ASN1Sequence sid = ASN1Sequence.getInstance(si.getObjectAt(1)); // IssuerAndSerialNumber
            AlgorithmIdentifier digestAlg = AlgorithmIdentifier.getInstance(si.getObjectAt(2));
            if (!SM3.equals(digestAlg.getAlgorithm())) {
                throw new VerificationException("CMS: digest algorithm " + digestAlg.getAlgorithm() + " is not SM3");
            }
            if (!(si.getObjectAt(3) instanceof ASN1TaggedObject attrsTagged) || attrsTagged.getTagNo() != 0) {
                throw new VerificationException("CMS: the SignerInfo has no signed attributes");
            }
            ASN1Set attrs = ASN1Set.getInstance(attrsTagged, false);
            AlgorithmIdentifier sigAlg = AlgorithmIdentifier.getInstance(si.getObjectAt(4));
            if (!SM2_WITH_SM3.equals(sigAlg.getAlgorithm()) && !SM2_SIGN.equals(sigAlg.getAlgorithm())) {
                throw new VerificationException("CMS: signature algorithm " + sigAlg.getAlgorithm() + " is not SM2-with-SM3");
            }
            byte[] signature = ASN1OctetString.getInstance(si.getObjectAt(5)).getOctets();

            byte[] digest = null;
            ASN1ObjectIdentifier contentType = null;
            for (ASN1Encodable a : attrs) {
                ASN1Sequence attr = ASN1Sequence.getInstance(a);
                ASN1ObjectIdentifier type = ASN1ObjectIdentifier.getInstance(attr.getObjectAt(0));
                ASN1Set values = ASN1Set.getInstance(attr.getObjectAt(1));
                if (MESSAGE_DIGEST.equals(type)) {
                    if (digest != null || values.size() != 1) throw new VerificationException("CMS: messageDigest twice");
                    digest = ASN1OctetString.getInstance(values.getObjectAt(0)).getOctets();
                } else if (CONTENT_TYPE.equals(type)) {
                    if (contentType != null || values.size() != 1) throw new VerificationException("CMS: contentType twice");
                    contentType = ASN1ObjectIdentifier.getInstance(values.getObjectAt(0));
                }
            }
            if (digest == null || !MessageDigest.isEqual(digest, Sm2.sm3(message))) {
                throw new VerificationException("CMS: messageDigest is not SM3 of the message");
            }
            if (!eType.equals(contentType)) {
                throw new VerificationException("CMS: the contentType attribute is not " + eType);
            }
            // The signature covers the DER of the attributes as a SET (tag 0x31), RFC 5652 §5.4.
            byte[] toBeSigned = attrsTagged.getEncoded();
            toBeSigned[0] = 0x31;

            Certificate signer = signerCertificate(certificates, sid);
            if (!Arrays.equals(signer.getSubjectPublicKeyInfo().getPublicKeyData().getOctets(), Sm2.encode(key))) {
                throw new VerificationException("CMS: the signer certificate is for another key than the result's public_key");
            }
            if (resultCertificate != null && !Arrays.equals(signer.getEncoded(), resultCertificate)) {
                throw new VerificationException("CMS: the signer certificate differs from the result's certificate");
            }
            if (!Sm2.verify(key, toBeSigned, signature)) {
                throw new VerificationException("CMS: the signature does not verify over the signed attributes");
            }
        } catch (IOException | IllegalArgumentException | IllegalStateException | ClassCastException
                | ArrayIndexOutOfBoundsException e) {
            throw new VerificationException("CMS: not a SignedData this SDK can read: " + e.getMessage());
        }
    }

    private static ASN1Primitive explicit0(ASN1Encodable e) {
        ASN1TaggedObject t = ASN1TaggedObject.getInstance(e);
        if (t.getTagNo() != 0) throw new IllegalArgumentException("expected [0]");
        return t.getExplicitBaseObject().toASN1Primitive();
    }

    private static Certificate signerCertificate(ASN1Set certificates, ASN1Sequence sid) {
        if (certificates == null) {
            throw new VerificationException("CMS: the SignedData carries no certificates");
        }
        ASN1Encodable issuer = sid.getObjectAt(0);
        BigInteger serial = ASN1Integer.getInstance(sid.getObjectAt(1)).getValue();
        for (ASN1Encodable c : certificates) {
            Certificate cert = Certificate.getInstance(c);
            if (cert.getSerialNumber().getValue().equals(serial)
                    && cert.getIssuer().equals(org.bouncycastle.asn1.x500.X500Name.getInstance(issuer))) {
                return cert;
            }
        }
        throw new VerificationException("CMS: no certificate matches the SignerInfo's issuer and serial");
    }
}
