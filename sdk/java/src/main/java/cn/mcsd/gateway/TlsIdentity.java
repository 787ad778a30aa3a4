package cn.mcsd.gateway;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * A mutual-TLS identity from PEM files: a certificate chain (leaf first), its PKCS#8
 * private key ({@code -----BEGIN PRIVATE KEY-----}, as rcgen and {@code openssl pkey} write
 * it; EC P-256/P-384, RSA or Ed25519) and the CA certificates trusted for the peer. Used by
 * {@link McsClient} (the gateway's client identity, the daemon's CA) and by {@link
 * CallbackReceiver} (the receiver's server identity, the CA of the daemon's client
 * certificate). Immutable and thread-safe.
 */
public final class TlsIdentity {
    private static final Pattern PEM_KEY =
            Pattern.compile("-----BEGIN ([A-Z ]+)-----([A-Za-z0-9+/=\\s]+)-----END \\1-----");

    private final List<X509Certificate> chain;
    private final PrivateKey key;
    private final List<X509Certificate> trusted;

    private TlsIdentity(List<X509Certificate> chain, PrivateKey key, List<X509Certificate> trusted) {
        this.chain = List.copyOf(chain);
        this.key = key;
        this.trusted = List.copyOf(trusted);
    }

    /** Read the three PEM files; every failure names the file and what is wrong with it. */
    public static TlsIdentity fromPem(Path certificateChain, Path privateKey, Path trustedCa) {
        List<X509Certificate> chain = certificates(certificateChain);
        PrivateKey key = privateKey(privateKey);
        List<X509Certificate> trusted = certificates(trustedCa);
        return new TlsIdentity(chain, key, trusted);
    }

    public List<X509Certificate> chain() {
        return chain;
    }

    public List<X509Certificate> trusted() {
        return trusted;
    }

    /** Every certificate of a PEM (or DER) file. */
    public static List<X509Certificate> certificates(Path file) {
        byte[] bytes = read(file);
        try {
            CertificateFactory cf = CertificateFactory.getInstance("X.509");
            List<X509Certificate> out = new ArrayList<>();
            for (var c : cf.generateCertificates(new ByteArrayInputStream(bytes))) {
                out.add((X509Certificate) c);
            }
            if (out.isEmpty()) {
                throw new IllegalArgumentException(file + ": no certificate in the file");
            }
            return out;
        } catch (CertificateException e) {
            throw new IllegalArgumentException(file + ": not a PEM certificate file: " + e.getMessage(), e);
        }
    }

    private static PrivateKey privateKey(Path file) {
        String text = new String(read(file), StandardCharsets.US_ASCII);
        Matcher m = PEM_KEY.matcher(text);
        if (!m.find()) {
            throw new IllegalArgumentException(file + ": no PEM block");
        }
        if (!m.group(1).equals("PRIVATE KEY")) {
            throw new IllegalArgumentException(file + ": a \"" + m.group(1)
                    + "\" block; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt) for -----BEGIN PRIVATE KEY-----");
        }
        byte[] der = Base64.getMimeDecoder().decode(m.group(2));
        GeneralSecurityException last = null;
        for (String alg : new String[] {"EC", "RSA", "Ed25519"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
            } catch (GeneralSecurityException e) {
                last = e;
            }
        }
        throw new IllegalArgumentException(file + ": not an EC, RSA or Ed25519 PKCS#8 key: " + last.getMessage());
    }

    private static byte[] read(Path file) {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new IllegalArgumentException("reading " + file + ": " + e, e);
        }
    }

    /** An {@link SSLContext} presenting the chain and trusting only the CA certificates given. */
    public SSLContext sslContext() {
        try {
            char[] nothing = new char[0];
            KeyStore keys = KeyStore.getInstance("PKCS12");
            keys.load(null, null);
            keys.setKeyEntry("identity", key, nothing, chain.toArray(new X509Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, nothing);

            KeyStore roots = KeyStore.getInstance("PKCS12");
            roots.load(null, null);
            for (int i = 0; i < trusted.size(); i++) {
                roots.setCertificateEntry("ca" + i, trusted.get(i));
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(roots);

            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), new SecureRandom());
            return ctx;
        } catch (GeneralSecurityException | IOException e) {
            throw new IllegalArgumentException("building the TLS context: " + e.getMessage(), e);
        }
    }
}
