package cn.mcsd.gateway;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.util.Base64;
import java.util.Date;
import java.util.concurrent.atomic.AtomicLong;

import org.bouncycastle.asn1.ASN1EncodableVector;
import org.bouncycastle.asn1.ASN1Encoding;
import org.bouncycastle.asn1.ASN1Integer;
import org.bouncycastle.asn1.DERBitString;
import org.bouncycastle.asn1.DERSequence;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.Certificate;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.ExtensionsGenerator;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.asn1.x509.SubjectPublicKeyInfo;
import org.bouncycastle.asn1.x509.TBSCertificate;
import org.bouncycastle.asn1.x509.Time;
import org.bouncycastle.asn1.x509.V3TBSCertificateGenerator;
import org.bouncycastle.asn1.x9.X9ObjectIdentifiers;

/**
 * A throw-away P-256 PKI made by code for the offline tests (bcprov's ASN.1 only, no
 * bcpkix): CAs and leaves valid for 127.0.0.1/localhost, written as PEM files the SDK reads.
 */
final class TestPki {
    private static final AtomicLong SERIAL = new AtomicLong(System.currentTimeMillis());
    private static final AlgorithmIdentifier ECDSA_SHA256 = new AlgorithmIdentifier(X9ObjectIdentifiers.ecdsa_with_SHA256);

    final Path dir;

    TestPki() throws IOException {
        dir = Files.createTempDirectory("mcs-java-sdk-pki");
        dir.toFile().deleteOnExit();
    }

    /** A certificate and its key, written as {@code name.pem} / {@code name.key}. */
    record Issued(String name, Certificate cert, PrivateKey key, Path pem, Path keyPem) {}

    static KeyPair p256() {
        try {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(new ECGenParameterSpec("secp256r1"));
            return g.generateKeyPair();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    Issued ca(String name) throws Exception {
        KeyPair kp = p256();
        return write(name, sign(name, name, kp, kp.getPrivate(), true), kp.getPrivate());
    }

    Issued leaf(String name, Issued issuer) throws Exception {
        KeyPair kp = p256();
        return write(name, sign(name, issuer.name(), kp, issuer.key(), false), kp.getPrivate());
    }

    private static Certificate sign(String cn, String issuerCn, KeyPair kp, PrivateKey issuerKey, boolean ca)
            throws Exception {
        long now = System.currentTimeMillis();
        V3TBSCertificateGenerator g = new V3TBSCertificateGenerator();
        g.setSerialNumber(new ASN1Integer(SERIAL.incrementAndGet()));
        g.setIssuer(new X500Name("CN=" + issuerCn));
        g.setSubject(new X500Name("CN=" + cn));
        g.setStartDate(new Time(new Date(now - 3_600_000)));
        g.setEndDate(new Time(new Date(now + 86_400_000)));
        g.setSubjectPublicKeyInfo(SubjectPublicKeyInfo.getInstance(kp.getPublic().getEncoded()));
        g.setSignature(ECDSA_SHA256);
        ExtensionsGenerator ext = new ExtensionsGenerator();
        ext.addExtension(Extension.basicConstraints, true, new BasicConstraints(ca));
        if (ca) {
            ext.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
        } else {
            ext.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature));
            ext.addExtension(Extension.extendedKeyUsage, false,
                    new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}));
            ext.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName[] {
                new GeneralName(GeneralName.iPAddress, "127.0.0.1"), new GeneralName(GeneralName.dNSName, "localhost")}));
        }
        g.setExtensions(ext.generate());
        TBSCertificate tbs = g.generateTBSCertificate();
        Signature s = Signature.getInstance("SHA256withECDSA");
        s.initSign(issuerKey);
        s.update(tbs.getEncoded(ASN1Encoding.DER));
        ASN1EncodableVector v = new ASN1EncodableVector();
        v.add(tbs);
        v.add(ECDSA_SHA256);
        v.add(new DERBitString(s.sign()));
        return Certificate.getInstance(new DERSequence(v));
    }

    private Issued write(String name, Certificate cert, PrivateKey key) throws IOException {
        Path pem = dir.resolve(name + ".pem");
        Path keyPem = dir.resolve(name + ".key");
        Files.writeString(pem, pem("CERTIFICATE", cert.getEncoded(ASN1Encoding.DER)));
        Files.writeString(keyPem, pem("PRIVATE KEY", key.getEncoded()));
        pem.toFile().deleteOnExit();
        keyPem.toFile().deleteOnExit();
        return new Issued(name, cert, key, pem, keyPem);
    }

    static String pem(String type, byte[] der) {
        String b64 = Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der);
        return "-----BEGIN " + type + "-----\n" + b64 + "\n-----END " + type + "-----\n";
    }

    /** {@code a} followed by {@code b}: a chain file. */
    Path concat(String name, Path a, Path b) throws IOException {
        Path out = dir.resolve(name);
        Files.writeString(out, Files.readString(a) + Files.readString(b));
        out.toFile().deleteOnExit();
        return out;
    }

    static BigInteger serial(Certificate c) {
        return c.getSerialNumber().getValue();
    }
}
