package cn.mcsd.gateway;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsParameters;
import com.sun.net.httpserver.HttpsServer;

import cn.mcsd.gateway.json.Json;

/**
 * The client against a fake daemon (mutual TLS, canned answers) and the callback receiver
 * against fake daemons, all on a PKI made here: the error model, retries, request ids, the
 * receiver's certificate checks.
 */
public class TransportTest {
    final TestPki pki;
    final TestPki.Issued ca, server, gateway, stranger;

    public TransportTest() throws Exception {
        pki = new TestPki();
        ca = pki.ca("ca");
        server = pki.leaf("server", ca);
        gateway = pki.leaf("gateway", ca);
        stranger = pki.leaf("stranger", pki.ca("other-ca"));
    }

    record Answer(int status, Map<String, String> headers, String body) {}

    interface Route {
        Answer answer(HttpExchange ex, String body) throws IOException;
    }

    /** A daemon stand-in: mutual TLS (clients of {@code ca}), one canned route per path. */
    final class FakeDaemon implements AutoCloseable {
        final HttpsServer http;
        final Map<String, Route> routes = new ConcurrentHashMap<>();

        FakeDaemon() throws IOException {
            http = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
            TlsIdentity tls = TlsIdentity.fromPem(server.pem(), server.keyPem(), ca.pem());
            http.setHttpsConfigurator(new HttpsConfigurator(tls.sslContext()) {
                @Override
                public void configure(HttpsParameters p) {
                    SSLParameters s = getSSLContext().getDefaultSSLParameters();
                    s.setNeedClientAuth(true);
                    p.setSSLParameters(s);
                }
            });
            http.createContext("/", ex -> {
                try (ex) {
                    String body = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
                    Route r = routes.get(ex.getRequestMethod() + " " + ex.getRequestURI());
                    Answer a = r == null ? new Answer(404, Map.of(), "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}")
                            : r.answer(ex, body);
                    a.headers().forEach((k, v) -> ex.getResponseHeaders().set(k, v));
                    byte[] b = a.body().getBytes(StandardCharsets.UTF_8);
                    ex.sendResponseHeaders(a.status(), b.length == 0 ? -1 : b.length);
                    if (b.length > 0) {
                        try (OutputStream out = ex.getResponseBody()) {
                            out.write(b);
                        }
                    }
                }
            });
            http.setExecutor(Executors.newFixedThreadPool(2));
            http.start();
        }

        String url() {
            return "https://127.0.0.1:" + http.getAddress().getPort();
        }

        McsClient client() {
            return McsClient.builder(url()).pem(gateway.pem(), gateway.keyPem(), ca.pem()).build();
        }

        @Override
        public void close() {
            http.stop(0);
        }
    }

    static String error(String code, String message, String extra) {
        return "{\"error\":{\"code\":\"" + code + "\",\"message\":\"" + message + "\"" + extra + "}}";
    }

    static final String COMPLETED = "{\"status\":\"completed\",\"result\":{\"signature\":\"MEUC\",\"key_id\":\"k_1\","
            + "\"public_key\":\"04ab\"}}";

    @Test
    public void createTaskSendsItsBodyAndTheRequestId() throws Exception {
        try (FakeDaemon d = new FakeDaemon()) {
            List<String> seen = new CopyOnWriteArrayList<>();
            String qr = "mcs://task?v=1&id=t_1&token=" + ScanCodeTest.TOKEN + "&url=" + ScanCode.percentEncode(d.url());
            d.routes.put("POST /v1/tasks", (ex, body) -> {
                seen.add(body);
                seen.add(ex.getRequestHeaders().getFirst("x-request-id"));
                seen.add(ex.getRequestHeaders().getFirst("content-type"));
                return new Answer(201, Map.of("X-Request-Id", "gw-42"), "{\"task_id\":\"t_1\",\"token\":\""
                        + ScanCodeTest.TOKEN + "\",\"qr\":\"" + qr + "\",\"expires_at\":\"2030-01-01T00:00:00Z\"}");
            });
            CreatedTask t = d.client().withRequestId("gw-42").createTask(
                    NewTask.of("Log in", TaskData.login(new byte[] {9})).withCallbackUrl("https://127.0.0.1:1/cb"));
            Check.equal("t_1", t.taskId(), "task id");
            Check.equal(d.url(), t.scanCode().url(), "QR's daemon URL");
            Check.equal("{\"kind\":\"login\",\"display\":{\"title\":\"Log in\"},\"data\":{\"challenge\":\"CQ==\"},"
                    + "\"callback_url\":\"https://127.0.0.1:1/cb\"}", seen.get(0), "request body");
            Check.equal("gw-42", seen.get(1), "X-Request-Id sent");
            Check.equal("application/json", seen.get(2), "content type");
            Check.fails(IllegalArgumentException.class, "request id the daemon would replace",
                    () -> d.client().withRequestId("has space"));
            Check.fails(IllegalArgumentException.class, "request id too long",
                    () -> d.client().withRequestId("x".repeat(129)));
        }
    }

    @Test
    public void apiErrorsCarryCodeStatusRetryAfterAndRequestId() throws Exception {
        try (FakeDaemon d = new FakeDaemon()) {
            d.routes.put("GET /v1/tasks/t_busy", (ex, b) -> new Answer(429,
                    Map.of("Retry-After", "7", "X-Request-Id", "rid-1", "Content-Type", "application/json"),
                    error("rate_limited", "too many open tasks", ",\"retry_after\":7")));
            McsApiException e = Check.fails(McsApiException.class, "429", () -> d.client().getTask("t_busy"));
            Check.equal(429, e.httpStatus(), "status");
            Check.equal("rate_limited", e.code(), "code");
            Check.equal(ErrorCode.RATE_LIMITED, e.errorCode().orElseThrow(), "enum");
            Check.equal("too many open tasks", e.apiMessage(), "message");
            Check.equal(Duration.ofSeconds(7), e.retryAfter().orElseThrow(), "Retry-After");
            Check.equal("rid-1", e.requestId(), "request id");
            Check.that(e.isRetryable(), "retryable");
            Check.mentions(e, "rid-1");

            d.routes.put("GET /v1/tasks/t_hsm", (ex, b) -> new Answer(503, Map.of(),
                    error("hsm_unavailable", "HSM down", ",\"retry_after\":3")));
            e = Check.fails(McsApiException.class, "503", () -> d.client().getTask("t_hsm"));
            Check.equal(Duration.ofSeconds(3), e.retryAfter().orElseThrow(), "retry_after from the body");

            d.routes.put("GET /v1/tasks/t_gone", (ex, b) -> new Answer(410, Map.of(),
                    error("task_expired", "the task expired", ",\"future\":{\"x\":1}")));
            e = Check.fails(McsApiException.class, "410", () -> d.client().getTask("t_gone"));
            Check.equal(ErrorCode.TASK_EXPIRED, e.errorCode().orElseThrow(), "task_expired");
            Check.that(!e.isRetryable(), "not retryable");
            Check.that(e.detail().containsKey("future"), "extra fields kept");

            d.routes.put("GET /v1/tasks/t_new", (ex, b) -> new Answer(409, Map.of(), error("brand_new_code", "later", "")));
            e = Check.fails(McsApiException.class, "unknown code", () -> d.client().getTask("t_new"));
            Check.equal("brand_new_code", e.code(), "an unknown code still reaches the caller");
            Check.that(e.errorCode().isEmpty(), "no enum for it");

            d.routes.put("GET /v1/tasks/t_proxy", (ex, b) -> new Answer(502, Map.of(), "<html>Bad Gateway</html>"));
            e = Check.fails(McsApiException.class, "proxy page", () -> d.client().getTask("t_proxy"));
            Check.equal("http_502", e.code(), "not an API code");
        }
    }

    @Test
    public void answersTheApiDoesNotDescribeAreProtocolErrors() throws Exception {
        try (FakeDaemon d = new FakeDaemon()) {
            d.routes.put("GET /v1/tasks/t_1", (ex, b) -> new Answer(200, Map.of("X-Request-Id", "rid-2"), "{\"task_id\":"));
            McsProtocolException e = Check.fails(McsProtocolException.class, "truncated JSON", () -> d.client().getTask("t_1"));
            Check.equal("rid-2", e.requestId(), "request id");
            d.routes.put("GET /v1/tasks/t_2", (ex, b) -> new Answer(200, Map.of(), "{\"task_id\":\"t_2\"}"));
            e = Check.fails(McsProtocolException.class, "missing fields", () -> d.client().getTask("t_2"));
            Check.mentions(e, "kind: missing");
            d.routes.put("POST /v1/tasks", (ex, b) -> new Answer(200, Map.of(), "{}"));
            e = Check.fails(McsProtocolException.class, "200 for a create",
                    () -> d.client().createTask(NewTask.of("t", TaskData.login(new byte[1]))));
            Check.mentions(e, "expected 201");
        }
    }

    @Test
    public void waitForResultWaitsOutRateLimitsAndLongPolls() throws Exception {
        try (FakeDaemon d = new FakeDaemon()) {
            AtomicInteger calls = new AtomicInteger();
            List<String> waits = new CopyOnWriteArrayList<>();
            d.routes.put("GET /v1/tasks/t_1/result?wait=30", (ex, b) -> {
                waits.add("30");
                return calls.incrementAndGet() == 1
                        ? new Answer(503, Map.of("Retry-After", "1"), error("store_unavailable", "failover", ""))
                        : new Answer(200, Map.of(), COMPLETED);
            });
            // The remaining time shrinks below 30 s after the first answer: accept any wait.
            for (int w = 0; w < 30; w++) {
                int secs = w;
                d.routes.put("GET /v1/tasks/t_1/result?wait=" + secs, (ex, b) -> {
                    waits.add(String.valueOf(secs));
                    calls.incrementAndGet();
                    return new Answer(200, Map.of(), COMPLETED);
                });
            }
            TaskOutcome o = d.client().waitForResult("t_1", Duration.ofSeconds(30));
            Check.equal(TaskStatus.COMPLETED, o.status(), "status");
            Check.equal("k_1", o.result(TaskResult.Sign.class).keyId(), "result");
            Check.equal(2, calls.get(), "one retry after the 503");
            Check.equal("30", waits.get(0), "the first poll asks for the whole time");
        }
    }

    @Test
    public void waitForResultDoesNotSpinOnAnEarlyAnswer() throws Exception {
        try (FakeDaemon d = new FakeDaemon()) {
            AtomicInteger calls = new AtomicInteger();
            for (int w = 0; w <= 3; w++) {
                d.routes.put("GET /v1/tasks/t_a/result?wait=" + w, (ex, b) -> {
                    calls.incrementAndGet();
                    return new Answer(200, Map.of(), "{\"status\":\"awaiting_approval\"}");
                });
            }
            Instant start = Instant.now();
            TaskOutcome o = d.client().waitForResult("t_a", Duration.ofSeconds(3));
            Duration took = Duration.between(start, Instant.now());
            Check.equal(TaskStatus.AWAITING_APPROVAL, o.status(), "not final when the time ran out");
            Check.that(!o.isFinal(), "not final");
            Check.that(took.compareTo(Duration.ofMillis(2900)) >= 0, "waited the whole time: " + took);
            Check.that(calls.get() <= 5, "about one poll a second, not a spin: " + calls.get());
        }
    }

    @Test
    public void aDaemonOfAnotherCaIsRefused() throws Exception {
        try (FakeDaemon d = new FakeDaemon()) {
            TestPki.Issued otherCa = pki.ca("not-the-daemons-ca");
            McsClient c = McsClient.builder(d.url()).pem(gateway.pem(), gateway.keyPem(), otherCa.pem()).build();
            Check.fails(McsTransportException.class, "untrusted server", () -> c.getTask("t_1"));
        }
        Check.fails(IllegalArgumentException.class, "http URL", () -> McsClient.builder("http://127.0.0.1:1"));
        Check.fails(IllegalStateException.class, "no TLS identity", () -> McsClient.builder("https://127.0.0.1:1").build());
        Exception e = Check.fails(IllegalArgumentException.class, "missing key file",
                () -> TlsIdentity.fromPem(gateway.pem(), pki.dir.resolve("absent.key"), ca.pem()));
        Check.mentions(e, "absent.key");
    }

    // The callback receiver.

    static HttpClient client(SSLContext ctx) {
        return HttpClient.newBuilder().sslContext(ctx).version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5)).build();
    }

    SSLContext trustOnly() throws Exception {
        KeyStore roots = KeyStore.getInstance("PKCS12");
        roots.load(null, null);
        roots.setCertificateEntry("ca", TlsIdentity.certificates(ca.pem()).get(0));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(roots);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    static HttpResponse<String> post(HttpClient c, String url, String body) throws Exception {
        return c.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
                .POST(HttpRequest.BodyPublishers.ofString(body)).header("content-type", "application/json").build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static final String CALLBACK = "{\"task_id\":\"t_1\",\"status\":\"completed\",\"result\":{\"signature\":\"MEUC\","
            + "\"key_id\":\"k_1\",\"public_key\":\"04ab\"}}";

    @Test
    public void theReceiverTakesCallbacksFromTheDaemonOnly() throws Exception {
        List<Callback> got = new CopyOnWriteArrayList<>();
        X509Certificate daemonCert = TlsIdentity.certificates(server.pem()).get(0);
        TlsIdentity receiverTls = TlsIdentity.fromPem(gateway.pem(), gateway.keyPem(), ca.pem());
        try (CallbackReceiver r = CallbackReceiver.builder(receiverTls, (cb, peer) -> {
                    if (cb.taskId().equals("t_fail")) throw new IllegalStateException("listener down");
                    got.add(cb);
                }).peer(CallbackReceiver.sameKeyAs(daemonCert)).start()) {
            String url = r.url("127.0.0.1", "/mcs/callback");
            HttpClient asDaemon = client(TlsIdentity.fromPem(server.pem(), server.keyPem(), ca.pem()).sslContext());

            HttpResponse<String> ok = post(asDaemon, url, CALLBACK);
            Check.equal(204, ok.statusCode(), "delivered");
            Check.equal(1, got.size(), "listener called once");
            Check.equal(new Callback("t_1", TaskStatus.COMPLETED, new TaskResult.Sign("MEUC", "k_1", "04ab", null, null),
                    null, null), got.get(0), "parsed callback");

            Check.equal(400, post(asDaemon, url, "{\"task_id\":\"t_1\"}").statusCode(), "not a callback");
            Check.equal(400, post(asDaemon, url, "{\"task_id\":\"t_1\",").statusCode(), "not JSON");
            Check.equal(404, post(asDaemon, r.url("127.0.0.1", "/other"), CALLBACK).statusCode(), "other path");
            HttpResponse<String> get = asDaemon.send(HttpRequest.newBuilder(URI.create(url)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            Check.equal(405, get.statusCode(), "GET");
            Check.equal(500, post(asDaemon, url, CALLBACK.replace("t_1", "t_fail")).statusCode(),
                    "a failing listener makes the daemon retry");
            Check.equal(1, got.size(), "none of those reached the listener");

            // Chains to the CA but is not the daemon: refused by the peer check.
            HttpClient asGateway = client(receiverTls.sslContext());
            Check.equal(403, post(asGateway, url, CALLBACK).statusCode(), "another certificate of the CA");
            // No client certificate, or one of another CA: the handshake fails.
            Check.fails(IOException.class, "no client certificate", () -> post(client(trustOnly()), url, CALLBACK));
            HttpClient asStranger = client(TlsIdentity.fromPem(stranger.pem(), stranger.keyPem(), ca.pem()).sslContext());
            Check.fails(IOException.class, "a client of another CA", () -> post(asStranger, url, CALLBACK));
            Check.equal(1, got.size(), "still only the daemon's callback");
        }
    }

    @Test
    public void theReceiverLimitsTheBody() throws Exception {
        TlsIdentity receiverTls = TlsIdentity.fromPem(gateway.pem(), gateway.keyPem(), ca.pem());
        try (CallbackReceiver r = CallbackReceiver.builder(receiverTls, (cb, peer) -> {}).maxBodyBytes(64).start()) {
            HttpClient asDaemon = client(TlsIdentity.fromPem(server.pem(), server.keyPem(), ca.pem()).sslContext());
            String big = "{\"task_id\":\"t_1\",\"status\":\"rejected\",\"error\":\"" + "x".repeat(100) + "\"}";
            Check.equal(413, post(asDaemon, r.url("127.0.0.1", "/mcs/callback"), big).statusCode(), "too large");
            Check.equal(204, post(asDaemon, r.url("127.0.0.1", "/mcs/callback"),
                    "{\"task_id\":\"t_1\",\"status\":\"rejected\"}").statusCode(), "small enough");
            Json.parse("{}");
        }
    }
}
