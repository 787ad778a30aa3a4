package cn.mcsd.gateway;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.Base64;
import java.util.Date;

import org.bouncycastle.asn1.ASN1EncodableVector;
import org.bouncycastle.asn1.ASN1Encoding;
import org.bouncycastle.asn1.ASN1Integer;
import org.bouncycastle.asn1.DERBitString;
import org.bouncycastle.asn1.DERSequence;
import org.bouncycastle.asn1.gm.GMObjectIdentifiers;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x509.SubjectPublicKeyInfo;
import org.bouncycastle.asn1.x509.TBSCertificate;
import org.bouncycastle.asn1.x509.Time;
import org.bouncycastle.asn1.x509.V3TBSCertificateGenerator;
import org.bouncycastle.asn1.x9.X9ObjectIdentifiers;
import org.bouncycastle.crypto.params.ECPrivateKeyParameters;
import org.bouncycastle.crypto.params.ParametersWithID;
import org.bouncycastle.crypto.params.ParametersWithRandom;
import org.bouncycastle.crypto.signers.SM2Signer;
import org.bouncycastle.math.ec.ECPoint;

import cn.mcsd.gateway.crypto.Sm2;

/** Login and raw-sign results check out only for the data, key and certificate they are for. */
public class SignatureCheckTest {
    static final SecureRandom RNG = new SecureRandom();

    record Sm2Key(BigInteger d, ECPoint p) {
        static Sm2Key random() {
            BigInteger d = new BigInteger(256, RNG).mod(Sm2.N.subtract(BigInteger.ONE)).add(BigInteger.ONE);
            return new Sm2Key(d, Sm2.G.multiply(d).normalize());
        }

        byte[] sign(byte[] message) throws Exception {
            SM2Signer s = new SM2Signer();
            s.init(true, new ParametersWithID(
                    new ParametersWithRandom(new ECPrivateKeyParameters(d, Sm2.DOMAIN), RNG), Sm2.DEFAULT_ID));
            s.update(message, 0, message.length);
            return s.generateSignature();
        }

        /** A self-signed SM2 certificate for this key, valid for the next day. */
        byte[] certificate(String cn) throws Exception {
            long now = System.currentTimeMillis();
            AlgorithmIdentifier sm2WithSm3 = new AlgorithmIdentifier(GMObjectIdentifiers.sm2sign_with_sm3);
            V3TBSCertificateGenerator g = new V3TBSCertificateGenerator();
            g.setSerialNumber(new ASN1Integer(now));
            g.setIssuer(new X500Name("CN=" + cn));
            g.setSubject(new X500Name("CN=" + cn));
            g.setStartDate(new Time(new Date(now - 60_000)));
            g.setEndDate(new Time(new Date(now + 86_400_000)));
            g.setSubjectPublicKeyInfo(new SubjectPublicKeyInfo(
                    new AlgorithmIdentifier(X9ObjectIdentifiers.id_ecPublicKey, GMObjectIdentifiers.sm2p256v1),
                    Sm2.encode(p)));
            g.setSignature(sm2WithSm3);
            TBSCertificate tbs = g.generateTBSCertificate();
            ASN1EncodableVector v = new ASN1EncodableVector();
            v.add(tbs);
            v.add(sm2WithSm3);
            v.add(new DERBitString(sign(tbs.getEncoded(ASN1Encoding.DER))));
            return new DERSequence(v).getEncoded(ASN1Encoding.DER);
        }
    }

    static String b64(byte[] b) {
        return Base64.getEncoder().encodeToString(b);
    }

    static TaskResult.Login login(Sm2Key key, byte[] challenge, byte[] cert) throws Exception {
        return new TaskResult.Login(b64(key.sign(challenge)), "k_1", Sm2.pointHex(key.p()),
                new Subject("person", "张三", null, null, null), cert == null ? null : b64(cert), "CN=张三");
    }

    @Test
    public void aGoodLoginVerifies() throws Exception {
        Sm2Key key = Sm2Key.random();
        byte[] challenge = "challenge-123".getBytes(StandardCharsets.UTF_8);
        SignatureCheck.Verified v = SignatureCheck.login(login(key, challenge, key.certificate("张三")), challenge);
        Check.equal("k_1", v.keyId(), "key id");
        Check.equal("CN=张三", v.certificate().getSubject().toString(), "certificate subject");
    }

    @Test
    public void anotherChallengeDoesNot() throws Exception {
        Sm2Key key = Sm2Key.random();
        TaskResult.Login r = login(key, "mine".getBytes(), key.certificate("a"));
        Exception e = Check.fails(SignatureCheck.VerificationException.class, "other challenge",
                () -> SignatureCheck.login(r, "yours".getBytes()));
        Check.mentions(e, "does not verify over the challenge");
    }

    @Test
    public void theCertificateMustCarryTheKey() throws Exception {
        Sm2Key key = Sm2Key.random();
        Sm2Key other = Sm2Key.random();
        byte[] challenge = {1, 2, 3};
        Exception e = Check.fails(SignatureCheck.VerificationException.class, "other key's certificate",
                () -> SignatureCheck.login(login(key, challenge, other.certificate("b")), challenge));
        Check.mentions(e, "another key");
        e = Check.fails(SignatureCheck.VerificationException.class, "no certificate",
                () -> SignatureCheck.login(login(key, challenge, null), challenge));
        Check.mentions(e, "no certificate");
        // A P-256 certificate is not an SM2 one.
        TestPki pki = new TestPki();
        byte[] p256 = pki.ca("p256").cert().getEncoded(ASN1Encoding.DER);
        e = Check.fails(SignatureCheck.VerificationException.class, "P-256 certificate",
                () -> SignatureCheck.login(login(key, challenge, p256), challenge));
        Check.mentions(e, "not an SM2 key");
    }

    @Test
    public void theCertificateMustBeValidThen() throws Exception {
        Sm2Key key = Sm2Key.random();
        byte[] challenge = {1};
        TaskResult.Login r = login(key, challenge, key.certificate("c"));
        Exception e = Check.fails(SignatureCheck.VerificationException.class, "expired",
                () -> SignatureCheck.login(r, challenge, Instant.now().plusSeconds(3 * 86_400)));
        Check.mentions(e, "valid from");
    }

    @Test
    public void aSignatureIsForItsKeyOnly() throws Exception {
        Sm2Key key = Sm2Key.random();
        Sm2Key other = Sm2Key.random();
        byte[] message = "投标文件".getBytes(StandardCharsets.UTF_8);
        TaskResult.Sign good = new TaskResult.Sign(b64(key.sign(message)), "k_1", Sm2.pointHex(key.p()),
                b64(key.certificate("d")), null);
        SignatureCheck.sign(good, message);
        TaskResult.Sign forged = new TaskResult.Sign(b64(other.sign(message)), "k_1", Sm2.pointHex(key.p()),
                b64(key.certificate("d")), null);
        Check.fails(SignatureCheck.VerificationException.class, "another key's signature",
                () -> SignatureCheck.sign(forged, message));
        // A raw signature is no CMS container.
        Exception e = Check.fails(SignatureCheck.VerificationException.class, "raw as cms",
                () -> SignatureCheck.sign(good, message, TaskData.SignFormat.CMS, Instant.now()));
        Check.mentions(e, "CMS");
        // A non-canonical DER encoding (a needless leading zero on r) is refused.
        byte[] der = key.sign(message);
        byte[] padded = reencodeWithLeadingZero(der);
        TaskResult.Sign loose = new TaskResult.Sign(b64(padded), "k_1", Sm2.pointHex(key.p()), b64(key.certificate("d")), null);
        Check.fails(SignatureCheck.VerificationException.class, "non-canonical DER",
                () -> SignatureCheck.sign(loose, message));
    }

    /** The same (r, s) with r's INTEGER given one more (forbidden) leading zero byte. */
    static byte[] reencodeWithLeadingZero(byte[] der) {
        int rLen = der[3];
        byte[] r = java.util.Arrays.copyOfRange(der, 4, 4 + rLen);
        byte[] rest = java.util.Arrays.copyOfRange(der, 4 + rLen, der.length);
        byte[] out = new byte[der.length + 1];
        out[0] = 0x30;
        out[1] = (byte) (der[1] + 1);
        out[2] = 0x02;
        out[3] = (byte) (rLen + 1);
        out[4] = 0;
        System.arraycopy(r, 0, out, 5, rLen);
        System.arraycopy(rest, 0, out, 5 + rLen, rest.length);
        return out;
    }
}
