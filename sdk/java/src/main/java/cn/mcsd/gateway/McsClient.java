package cn.mcsd.gateway;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

import javax.net.ssl.SSLParameters;

import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonException;
import cn.mcsd.gateway.json.JsonObject;

/**
 * The gateway's client of the daemon's mutual-TLS JSON API: create a scan task, read it,
 * wait for its outcome (API.md "Scan tasks").
 *
 * <p>Every call answers a typed model or throws: {@link McsApiException} when the daemon
 * refused (its API.md {@code code}, message, HTTP status, {@code Retry-After}, {@code
 * X-Request-Id}), {@link McsTransportException} when there was no answer, {@link
 * McsProtocolException} when the answer is not what the API documents.
 *
 * <p>Thread-safe: one instance (one {@link HttpClient}, one connection pool) serves the
 * whole gateway. {@link #withRequestId} answers a view sharing it that sends {@code
 * X-Request-Id} on every call, for the request the gateway is serving.
 */
public final class McsClient {
    /** The daemon's own cap on one long-poll ({@code [tasks] max_wait_secs}, default 60). */
    public static final Duration MAX_POLL = Duration.ofSeconds(60);
    /** What the daemon accepts as a request id (docs/api-extensions.md "Request ids"). */
    private static final Pattern REQUEST_ID = Pattern.compile("[A-Za-z0-9._:/-]{1,128}");
    /** A pause between polls when the daemon answers a not-final status at once ({@code awaiting_approval}). */
    private static final Duration EARLY_ANSWER_PAUSE = Duration.ofSeconds(1);

    private final HttpClient http;
    private final URI base;
    private final Duration requestTimeout;
    private final String requestId;

    private McsClient(HttpClient http, URI base, Duration requestTimeout, String requestId) {
        this.http = http;
        this.base = base;
        this.requestTimeout = requestTimeout;
        this.requestId = requestId;
    }

    /** {@code baseUrl}: the daemon's {@code https://host:port} (a path prefix is kept). */
    public static Builder builder(String baseUrl) {
        return new Builder(baseUrl);
    }

    /** Configuration of a {@link McsClient}. */
    public static final class Builder {
        private final URI base;
        private TlsIdentity tls;
        private Duration connectTimeout = Duration.ofSeconds(10);
        private Duration requestTimeout = Duration.ofSeconds(30);
        private HttpClient.Version version = HttpClient.Version.HTTP_2;

        private Builder(String baseUrl) {
            URI u = URI.create(baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl);
            if (!"https".equals(u.getScheme()) || u.getHost() == null) {
                throw new IllegalArgumentException("the daemon URL must be https://host[:port], got " + baseUrl);
            }
            this.base = u;
        }

        /** The gateway's certificate chain and PKCS#8 key, and the CA that signed the daemon's certificate. */
        public Builder pem(Path certificateChain, Path privateKey, Path daemonCa) {
            this.tls = TlsIdentity.fromPem(certificateChain, privateKey, daemonCa);
            return this;
        }

        public Builder tls(TlsIdentity tls) {
            this.tls = tls;
            return this;
        }

        public Builder connectTimeout(Duration d) {
            this.connectTimeout = d;
            return this;
        }

        /** Per request (a long-poll gets its wait on top). Default 30 s. */
        public Builder requestTimeout(Duration d) {
            this.requestTimeout = d;
            return this;
        }

        /** HTTP/2 (the default; falls back to HTTP/1.1) or HTTP/1.1 only. */
        public Builder httpVersion(HttpClient.Version v) {
            this.version = v;
            return this;
        }

        public McsClient build() {
            if (tls == null) {
                throw new IllegalStateException("the daemon requires mutual TLS: call pem(...) or tls(...)");
            }
            SSLParameters params = new SSLParameters();
            params.setProtocols(new String[] {"TLSv1.3", "TLSv1.2"});
            HttpClient http = HttpClient.newBuilder()
                    .sslContext(tls.sslContext())
                    .sslParameters(params)
                    .connectTimeout(connectTimeout)
                    .followRedirects(HttpClient.Redirect.NEVER)
                    .version(version)
                    .build();
            return new McsClient(http, base, requestTimeout, null);
        }
    }

    /**
     * The same client sending {@code X-Request-Id: id} on every call, so one id finds a scan
     * in the gateway's logs, the daemon's and its audit chain.
     *
     * @throws IllegalArgumentException if the daemon would not keep the id (1 to 128 of
     *     {@code A–Z a–z 0–9 - _ . : /}; it would silently make its own)
     */
    public McsClient withRequestId(String id) {
        if (id != null && !REQUEST_ID.matcher(id).matches()) {
            throw new IllegalArgumentException("request id must be 1 to 128 of A-Z a-z 0-9 - _ . : /, got \"" + id + "\"");
        }
        return new McsClient(http, base, requestTimeout, id);
    }

    /** {@code POST /v1/tasks}: 201 with the task id, token, QR string and expiry. */
    public CreatedTask createTask(NewTask task) {
        return call("POST", "/v1/tasks", task.toJson(), requestTimeout, 201, CreatedTask::from);
    }

    /** {@code GET /v1/tasks/{id}}. */
    public TaskView getTask(String taskId) {
        return call("GET", "/v1/tasks/" + segment(taskId), null, requestTimeout, 200, TaskView::from);
    }

    /**
     * {@code GET /v1/tasks/{id}/result?wait=}: one long-poll, answered when the task leaves
     * {@code pending}/{@code claimed} or after {@code wait} (whole seconds, capped by the
     * daemon at {@code [tasks] max_wait_secs}).
     */
    public TaskOutcome getResult(String taskId, Duration wait) {
        long secs = Math.max(0, (wait.toMillis() + 999) / 1000);
        return call("GET", "/v1/tasks/" + segment(taskId) + "/result?wait=" + secs, null,
                requestTimeout.plusSeconds(secs), 200, TaskOutcome::from);
    }

    /**
     * Long-poll until the task is final ({@code completed}, {@code rejected}, {@code
     * expired}, {@code failed}) or {@code timeout} passes; answers the last outcome, which
     * is not final only when the time ran out ({@link TaskOutcome#isFinal()}).
     *
     * <p>{@code rate_limited}, {@code hsm_unavailable} and {@code store_unavailable} are
     * waited out (their {@code Retry-After}) within the time; other refusals and transport
     * failures are thrown. While a task is {@code awaiting_approval} the daemon answers at
     * once, so this polls every second.
     */
    public TaskOutcome waitForResult(String taskId, Duration timeout) {
        Instant deadline = Instant.now().plus(timeout);
        while (true) {
            Duration left = Duration.between(Instant.now(), deadline);
            Duration wait = left.isNegative() ? Duration.ZERO : (left.compareTo(MAX_POLL) > 0 ? MAX_POLL : left);
            Instant asked = Instant.now();
            TaskOutcome outcome;
            try {
                outcome = getResult(taskId, wait);
            } catch (McsApiException e) {
                Duration pause = e.retryAfter().orElse(Duration.ofSeconds(1));
                if (!e.isRetryable() || Instant.now().plus(pause).isAfter(deadline)) {
                    throw e;
                }
                sleep(pause);
                continue;
            }
            if (outcome.isFinal() || !Instant.now().isBefore(deadline)) {
                return outcome;
            }
            // Answered early without a final status: do not spin.
            if (Duration.between(asked, Instant.now()).compareTo(wait.minusMillis(500)) < 0) {
                Duration pause = Duration.between(Instant.now(), deadline);
                sleep(pause.compareTo(EARLY_ANSWER_PAUSE) < 0 ? pause : EARLY_ANSWER_PAUSE);
            }
        }
    }

    /** A seal the claiming key may use, for a deferred {@code pdf_seal} (image base64). */
    public record TaskSeal(String sealId, String name, String kind, String imageType, String imageData,
            double widthMm, double heightMm) {}

    /** {@code GET /v1/tasks/{id}/seals}: after the phone's claim of a {@code placement: deferred} task. */
    public List<TaskSeal> taskSeals(String taskId) {
        return call("GET", "/v1/tasks/" + segment(taskId) + "/seals", null, requestTimeout, 200, o -> {
            List<TaskSeal> out = new ArrayList<>();
            List<Object> items = o.list("items");
            for (int i = 0; i < items.size(); i++) {
                JsonObject s = JsonObject.element(items, i, "items");
                JsonObject img = s.object("image");
                out.add(new TaskSeal(s.string("seal_id"), s.string("name"), s.string("kind"), img.string("type"),
                        img.string("data"), number(img, "width_mm"), number(img, "height_mm")));
            }
            return out;
        });
    }

    /** {@code POST /v1/tasks/{id}/placement}: the seal chosen on the PC and where it goes. */
    public TaskView placeSeal(String taskId, String sealId, Placement placement) {
        if (placement instanceof Placement.Deferred) {
            throw new IllegalArgumentException("a placement cannot be deferred again");
        }
        return call("POST", "/v1/tasks/" + segment(taskId) + "/placement",
                Map.of("seal_id", sealId, "placement", placement.toJson()), requestTimeout, 200, TaskView::from);
    }

    private static double number(JsonObject o, String name) {
        Object v = o.raw().get(name);
        if (v instanceof Number n) return n.doubleValue();
        throw new JsonException(o.path() + "." + name + ": expected a number");
    }

    private static String segment(String id) {
        if (id == null || id.isEmpty()) throw new IllegalArgumentException("empty task id");
        return URLEncoder.encode(id, StandardCharsets.UTF_8).replace("+", "%20");
    }

    private interface Decoder<T> {
        T decode(JsonObject body);
    }

    private <T> T call(String method, String path, Object body, Duration timeout, int expected, Decoder<T> decoder) {
        HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(timeout)
                .header("accept", "application/json");
        if (requestId != null) rb.header("x-request-id", requestId);
        if (body != null) {
            rb.header("content-type", "application/json").method(method,
                    HttpRequest.BodyPublishers.ofByteArray(Json.writeBytes(body)));
        } else {
            rb.method(method, HttpRequest.BodyPublishers.noBody());
        }
        HttpResponse<byte[]> resp;
        try {
            resp = http.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
        } catch (IOException e) {
            throw new McsTransportException(method + " " + base + path + ": " + describe(e), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new McsTransportException(method + " " + path + ": interrupted", e);
        }
        String rid = resp.headers().firstValue("x-request-id").orElse(null);
        if (resp.statusCode() / 100 != 2) {
            throw apiError(resp, rid);
        }
        if (resp.statusCode() != expected) {
            throw new McsProtocolException(method + " " + path + ": HTTP " + resp.statusCode() + ", expected " + expected, rid);
        }
        try {
            return decoder.decode(Json.parseObject(resp.body()));
        } catch (JsonException | IllegalArgumentException e) {
            throw new McsProtocolException(method + " " + path + ": " + e.getMessage(), rid);
        }
    }

    static McsApiException apiError(HttpResponse<byte[]> resp, String rid) {
        int status = resp.statusCode();
        Duration retryAfter = resp.headers().firstValue("retry-after").flatMap(McsClient::seconds).orElse(null);
        try {
            JsonObject err = Json.parseObject(resp.body()).object("error");
            if (retryAfter == null && err.optInteger("retry_after") != null) {
                retryAfter = Duration.ofSeconds(err.optInteger("retry_after"));
            }
            return new McsApiException(status, err.string("code"), err.string("message"), retryAfter, rid,
                    err.optInteger("remaining_attempts"), err.raw());
        } catch (JsonException e) {
            return new McsApiException(status, "http_" + status,
                    "the answer is not the API's error body (" + e.getMessage() + ")", retryAfter, rid, null, null);
        }
    }

    /** An exception and its causes, e.g. {@code ConnectException: Connection refused} (some have no message). */
    private static String describe(Throwable e) {
        StringBuilder b = new StringBuilder();
        for (Throwable t = e; t != null && b.length() < 500; t = t.getCause()) {
            if (b.length() > 0) b.append(": ");
            b.append(t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage());
            if (t.getCause() != null && t.getMessage() != null && t.getMessage().equals(t.getCause().toString())) break;
        }
        return b.toString();
    }

    private static Optional<Duration> seconds(String header) {
        try {
            long s = Long.parseLong(header.trim());
            return s >= 0 ? Optional.of(Duration.ofSeconds(s)) : Optional.empty();
        } catch (NumberFormatException e) {
            return Optional.empty(); // an HTTP date: the body's retry_after says it in seconds
        }
    }

    private static void sleep(Duration d) {
        if (d.isNegative() || d.isZero()) return;
        try {
            Thread.sleep(d.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new McsTransportException("interrupted while waiting", e);
        }
    }
}
