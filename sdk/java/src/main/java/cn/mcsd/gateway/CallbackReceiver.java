package cn.mcsd.gateway;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Predicate;
import java.util.logging.Level;
import java.util.logging.Logger;

import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLPeerUnverifiedException;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsExchange;
import com.sun.net.httpserver.HttpsParameters;
import com.sun.net.httpserver.HttpsServer;

import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonException;

/**
 * A small HTTPS endpoint for task callbacks (docs/api-extensions.md: the daemon POSTs the
 * result body plus {@code task_id} to {@code callback_url} over mutual TLS, presenting its
 * API certificate as the client certificate, and treats any 2xx as delivered).
 *
 * <p>TLS <b>requires</b> a client certificate chaining to the CA certificates of the
 * receiver's {@link TlsIdentity} (give it the CA that issued the daemon's certificate, e.g.
 * {@code pki/ca.pem}); a connection without one fails its handshake and never reaches the
 * listener. Where that CA also issues other parties' certificates (the dev PKI's single CA
 * signs the phones' too), narrow it with {@link Builder#peer}: e.g. {@link
 * #sameKeyAs(X509Certificate)} pins the daemon's certificate key. A peer that is refused
 * gets {@code 403}.
 *
 * <p>The body is parsed into a {@link Callback} and handed to the listener; the daemon gets
 * {@code 204} once the listener returns, {@code 400} for a body that does not parse (the
 * daemon retries with backoff, so a listener that throws gets {@code 500} and will see the
 * callback again: make it idempotent by {@code task_id}). Only {@code POST} to the
 * configured path is served.
 */
public final class CallbackReceiver implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(CallbackReceiver.class.getName());

    /** Receives each callback; called on the receiver's worker threads, possibly concurrently. */
    @FunctionalInterface
    public interface Listener {
        void onCallback(Callback callback, X509Certificate peer) throws Exception;
    }

    private final HttpsServer server;
    private final ExecutorService workers;

    private CallbackReceiver(HttpsServer server, ExecutorService workers) {
        this.server = server;
        this.workers = workers;
    }

    public static Builder builder(TlsIdentity tls, Listener listener) {
        return new Builder(tls, listener);
    }

    /** Configuration of a {@link CallbackReceiver}. */
    public static final class Builder {
        private final TlsIdentity tls;
        private final Listener listener;
        private InetSocketAddress address = new InetSocketAddress("127.0.0.1", 0);
        private String path = "/mcs/callback";
        private int maxBodyBytes = 64 << 20;
        private int threads = 4;
        private Predicate<X509Certificate> peer = c -> true;

        private Builder(TlsIdentity tls, Listener listener) {
            this.tls = tls;
            this.listener = listener;
        }

        /** Where to listen; default 127.0.0.1 on a free port ({@link #port()} tells which). */
        public Builder address(InetSocketAddress a) {
            this.address = a;
            return this;
        }

        /** The path callbacks are POSTed to; default {@code /mcs/callback}. */
        public Builder path(String p) {
            if (!p.startsWith("/")) throw new IllegalArgumentException("path must start with /");
            this.path = p;
            return this;
        }

        /** Larger bodies are refused with 413; default 64 MiB (a sealed PDF travels in base64). */
        public Builder maxBodyBytes(int n) {
            this.maxBodyBytes = n;
            return this;
        }

        public Builder threads(int n) {
            this.threads = n;
            return this;
        }

        /** An extra check of the (already chain-verified) client certificate. */
        public Builder peer(Predicate<X509Certificate> check) {
            this.peer = check;
            return this;
        }

        public CallbackReceiver start() throws IOException {
            HttpsServer server = HttpsServer.create(address, 0);
            server.setHttpsConfigurator(new HttpsConfigurator(tls.sslContext()) {
                @Override
                public void configure(HttpsParameters params) {
                    SSLParameters p = getSSLContext().getDefaultSSLParameters();
                    p.setNeedClientAuth(true);
                    p.setProtocols(new String[] {"TLSv1.3", "TLSv1.2"});
                    params.setSSLParameters(p);
                }
            });
            String route = path;
            int limit = maxBodyBytes;
            Predicate<X509Certificate> check = peer;
            Listener l = listener;
            server.createContext("/", exchange -> handle(exchange, route, limit, check, l));
            ExecutorService workers = Executors.newFixedThreadPool(threads, r -> {
                Thread t = new Thread(r, "mcs-callback");
                t.setDaemon(true);
                return t;
            });
            server.setExecutor(workers);
            server.start();
            return new CallbackReceiver(server, workers);
        }
    }

    /** A peer check: the client certificate has the same public key as {@code expected}. */
    public static Predicate<X509Certificate> sameKeyAs(X509Certificate expected) {
        byte[] key = expected.getPublicKey().getEncoded();
        return c -> Arrays.equals(c.getPublicKey().getEncoded(), key);
    }

    /** The port listened on. */
    public int port() {
        return server.getAddress().getPort();
    }

    /** {@code https://127.0.0.1:<port><path>}-style URL for {@link NewTask#withCallbackUrl} (host as given). */
    public String url(String host, String path) {
        return "https://" + host + ":" + port() + path;
    }

    @Override
    public void close() {
        server.stop(0);
        workers.shutdownNow();
    }

    private static void handle(HttpExchange exchange, String path, int limit, Predicate<X509Certificate> check,
            Listener listener) throws IOException {
        try (exchange) {
            if (!exchange.getRequestURI().getPath().equals(path)) {
                answer(exchange, 404, "not found");
                return;
            }
            if (!exchange.getRequestMethod().equals("POST")) {
                exchange.getResponseHeaders().set("Allow", "POST");
                answer(exchange, 405, "POST only");
                return;
            }
            X509Certificate peer = peer(exchange);
            if (peer == null || !check.test(peer)) {
                LOG.warning("callback refused: client certificate "
                        + (peer == null ? "missing" : peer.getSubjectX500Principal() + " not accepted"));
                answer(exchange, 403, "client certificate not accepted");
                return;
            }
            byte[] body;
            try (InputStream in = exchange.getRequestBody()) {
                body = in.readNBytes(limit + 1);
            }
            if (body.length > limit) {
                answer(exchange, 413, "body too large");
                return;
            }
            Callback callback;
            try {
                callback = Callback.from(Json.parseObject(body));
            } catch (JsonException | IllegalArgumentException e) {
                LOG.warning("callback body refused: " + e.getMessage());
                answer(exchange, 400, "not a task callback: " + e.getMessage());
                return;
            }
            try {
                listener.onCallback(callback, peer);
            } catch (Exception e) {
                LOG.log(Level.WARNING, "callback listener failed for task " + callback.taskId(), e);
                answer(exchange, 500, "listener failed");
                return;
            }
            exchange.sendResponseHeaders(204, -1);
        }
    }

    private static X509Certificate peer(HttpExchange exchange) {
        if (!(exchange instanceof HttpsExchange https)) return null;
        try {
            Certificate[] chain = https.getSSLSession().getPeerCertificates();
            return chain.length > 0 && chain[0] instanceof X509Certificate x ? x : null;
        } catch (SSLPeerUnverifiedException e) {
            return null;
        }
    }

    private static void answer(HttpExchange exchange, int status, String text) throws IOException {
        byte[] b = text.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        exchange.sendResponseHeaders(status, b.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(b);
        }
    }
}
