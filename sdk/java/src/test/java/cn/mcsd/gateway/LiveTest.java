package cn.mcsd.gateway;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonObject;

/**
 * Against a running daemon ({@code MCS_SERVER}, its {@code mcsd dev-init} directory {@code
 * MCS_DEV_DIR}, the {@code mcs} CLI in {@code MCS_BIN}): this SDK is the gateway ({@code
 * pki/gateway.pem}, platform P-DEV-1) with its own callback receiver; the phone is {@code mcs
 * --as app1}, enrolled by {@code mcs --as admin}.
 */
public class LiveTest {
    static final String PIN = "123456";
    static final SecureRandom RNG = new SecureRandom();

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException("live tests need " + name + " (see sdk/java/run-tests.sh)");
        }
        return v;
    }

    static final String SERVER = env("MCS_SERVER");
    static final Path DEV = Path.of(env("MCS_DEV_DIR"));
    static final Path PKI = DEV.resolve("pki");
    static final Path MCS = Path.of(env("MCS_BIN")).resolve("mcs");

    /** The phone every test uses: enrolled and activated once. */
    static final class Phone {
        final Path state;
        final String keyId;
        final String publicKey;

        Phone(Path state, String keyId, String publicKey) {
            this.state = state;
            this.keyId = keyId;
            this.publicKey = publicKey;
        }
    }

    private static Phone phone;

    static synchronized Phone phone() throws Exception {
        if (phone != null) return phone;
        JsonObject enrollment = Json.parseObject(mcs("admin", "admin", "enroll", "--kind", "person", "--name",
                "Java SDK 测试", "--ca", "local", "--platform", "P-DEV-1", "--validity-days", "30")
                .getBytes(StandardCharsets.UTF_8));
        Path state = Files.createTempFile("mcs-java-sdk-phone", ".json");
        Files.delete(state);
        state.toFile().deleteOnExit();
        String out = mcs("app1", "app", "activate", "--state", state.toString(), "--enrollment",
                enrollment.string("enrollment_id"), "--code", enrollment.string("activation_code"), "--pin", PIN);
        Matcher m = Pattern.compile("activated key (\\S+) \\(public key ([0-9a-f]+)\\)").matcher(out);
        Check.that(m.find(), "activation output: " + out);
        phone = new Phone(state, m.group(1), m.group(2));
        return phone;
    }

    /** Run {@code mcs --as WHO ARGS…}; its stdout, or a failure with its stderr. */
    static String mcs(String who, String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(MCS.toString(), "--server", SERVER, "--pki", PKI.toString(), "--as", who));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        Path err = Files.createTempFile("mcs-java-sdk", ".err");
        pb.redirectError(err.toFile());
        Process p = pb.start();
        byte[] stdout = p.getInputStream().readAllBytes();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("mcs " + String.join(" ", args) + ": still running after 120 s");
        }
        String stderr = Files.readString(err);
        Files.delete(err);
        if (p.exitValue() != 0) {
            throw new AssertionError("mcs --as " + who + " " + String.join(" ", args) + " exited " + p.exitValue()
                    + ": " + stderr);
        }
        return new String(stdout, StandardCharsets.UTF_8);
    }

    static McsClient gateway() {
        return McsClient.builder(SERVER)
                .pem(PKI.resolve("gateway.pem"), PKI.resolve("gateway.key"), PKI.resolve("ca.pem"))
                .build();
    }

    /** This gateway's callback receiver: its certificate, clients chaining to pki/ca.pem, and only the daemon's key. */
    static final class Receiver implements AutoCloseable {
        final LinkedBlockingQueue<Callback> got = new LinkedBlockingQueue<>();
        final CallbackReceiver server;

        Receiver() throws IOException {
            X509Certificate daemon = TlsIdentity.certificates(PKI.resolve("server.pem")).get(0);
            server = CallbackReceiver.builder(
                            TlsIdentity.fromPem(PKI.resolve("gateway.pem"), PKI.resolve("gateway.key"), PKI.resolve("ca.pem")),
                            (cb, peer) -> got.add(cb))
                    .peer(CallbackReceiver.sameKeyAs(daemon))
                    .start();
        }

        String url() {
            return server.url("127.0.0.1", "/mcs/callback");
        }

        Callback await(String taskId) throws InterruptedException {
            Instant deadline = Instant.now().plusSeconds(60);
            while (Instant.now().isBefore(deadline)) {
                Callback c = got.poll(1, TimeUnit.SECONDS);
                if (c != null && c.taskId().equals(taskId)) return c;
            }
            throw new AssertionError("no callback for " + taskId + " within 60 s");
        }

        @Override
        public void close() {
            server.close();
        }
    }

    static byte[] random(int n) {
        byte[] b = new byte[n];
        RNG.nextBytes(b);
        return b;
    }

    /** Wait for the result in the background while the phone scans, as a gateway would. */
    static TaskOutcome scanWhileWaiting(McsClient gw, CreatedTask task) throws Exception {
        CompletableFuture<TaskOutcome> waiting = CompletableFuture.supplyAsync(() -> gw.waitForResult(task.taskId(),
                Duration.ofSeconds(90)));
        String out = mcs("app1", "app", "scan", task.qr(), "--state", phone().state.toString(), "--pin", PIN);
        Check.that(out.contains("completed"), "scan output: " + out);
        return waiting.get(100, TimeUnit.SECONDS);
    }

    @Test
    public void loginByQrWithCallback() throws Exception {
        Phone ph = phone();
        McsClient gw = gateway().withRequestId("java-sdk-login-" + System.nanoTime());
        byte[] challenge = random(32);
        try (Receiver rx = new Receiver()) {
            CreatedTask task = gw.createTask(NewTask.of(new TaskDisplay("登录 Java SDK", "live test"), TaskData.login(challenge))
                    .withTtl(Duration.ofMinutes(5)).withCallbackUrl(rx.url()));
            ScanCode code = task.scanCode();
            Check.equal(task.taskId(), code.taskId(), "QR names the task");
            Check.equal(URI.create(SERVER).getPort(), URI.create(code.url()).getPort(), "QR names this daemon");
            Check.that(task.expiresAt().isAfter(Instant.now().plusSeconds(200)), "ttl honoured: " + task.expiresAt());

            TaskView before = gw.getTask(task.taskId());
            Check.equal(TaskKind.LOGIN, before.kind(), "kind");
            Check.equal(TaskStatus.PENDING, before.status(), "pending before the scan");
            Check.equal("P-DEV-1", before.platform(), "platform of gateway.pem");
            Check.equal(Base64.getEncoder().encodeToString(challenge), before.data().get("challenge"), "challenge shown");

            TaskOutcome outcome = scanWhileWaiting(gw, task);
            Check.equal(TaskStatus.COMPLETED, outcome.status(), "completed");
            TaskResult.Login login = outcome.result(TaskResult.Login.class);
            Check.equal(ph.keyId, login.keyId(), "the phone's key");
            Check.equal(ph.publicKey, login.publicKey(), "the phone's joint public key");
            Check.equal("Java SDK 测试", login.subject().name(), "subject as enrolled");

            SignatureCheck.Verified v = SignatureCheck.login(login, challenge);
            Check.equal(ph.keyId, v.keyId(), "verified key");
            Check.that(v.certificate().getSubject().toString().contains("Java SDK"),
                    "certificate subject: " + v.certificate().getSubject());
            Check.fails(SignatureCheck.VerificationException.class, "another challenge",
                    () -> SignatureCheck.login(login, random(32)));

            Callback cb = rx.await(task.taskId());
            Check.equal(outcome, cb.outcome(), "the callback carries the same outcome");
            Check.equal(TaskStatus.COMPLETED, gw.getTask(task.taskId()).status(), "completed afterwards");
            Check.equal(ph.keyId, gw.getTask(task.taskId()).keyId(), "claimed by the phone's key");
        }
    }

    @Test
    public void signRawAndCms() throws Exception {
        Phone ph = phone();
        McsClient gw = gateway();
        try (Receiver rx = new Receiver()) {
            byte[] message = ("投标文件 " + Instant.now()).getBytes(StandardCharsets.UTF_8);
            CreatedTask raw = gw.createTask(NewTask.of("签署 raw", TaskData.sign(message)).withCallbackUrl(rx.url()));
            TaskOutcome o = scanWhileWaiting(gw, raw);
            TaskResult.Sign sig = o.result(TaskResult.Sign.class);
            Check.equal(ph.keyId, SignatureCheck.sign(sig, message).keyId(), "raw signature verifies");
            Check.fails(SignatureCheck.VerificationException.class, "another message",
                    () -> SignatureCheck.sign(sig, "other".getBytes()));
            Check.equal(o, rx.await(raw.taskId()).outcome(), "raw: callback = result");

            CreatedTask cms = gw.createTask(NewTask.of("签署 CMS", TaskData.sign(message, TaskData.SignFormat.CMS))
                    .withCallbackUrl(rx.url()));
            TaskOutcome oc = scanWhileWaiting(gw, cms);
            TaskResult.Sign container = oc.result(TaskResult.Sign.class);
            Check.equal(ph.keyId, SignatureCheck.sign(container, message, TaskData.SignFormat.CMS, Instant.now()).keyId(),
                    "CMS SignedData verifies");
            Check.fails(SignatureCheck.VerificationException.class, "CMS over another message",
                    () -> SignatureCheck.sign(container, "other".getBytes(), TaskData.SignFormat.CMS, Instant.now()));
            Check.fails(SignatureCheck.VerificationException.class, "CMS is no raw signature",
                    () -> SignatureCheck.sign(container, message));
            Check.equal(oc, rx.await(cms.taskId()).outcome(), "cms: callback = result");
        }
    }

    @Test
    public void aRejectedTaskEndsWithItsReason() throws Exception {
        phone();
        McsClient gw = gateway();
        try (Receiver rx = new Receiver()) {
            CreatedTask task = gw.createTask(NewTask.of("拒绝", TaskData.login(random(16))).withCallbackUrl(rx.url()));
            mcs("app1", "app", "reject", task.qr(), "--reason", "not me");
            TaskOutcome o = gw.waitForResult(task.taskId(), Duration.ofSeconds(30));
            Check.equal(TaskStatus.REJECTED, o.status(), "rejected");
            Check.that(o.result() == null, "no result");
            Check.that(o.error() != null && o.error().contains("not me"), "the reason: " + o.error());
            Check.fails(McsException.class, "no typed result", () -> o.result(TaskResult.Login.class));
            Callback cb = rx.await(task.taskId());
            Check.equal(o, cb.outcome(), "callback = result");
        }
    }

    @Test
    public void waitingRunsOutWithoutAScan() throws Exception {
        McsClient gw = gateway();
        CreatedTask task = gw.createTask(NewTask.of("nobody scans", TaskData.login(random(8))));
        Instant start = Instant.now();
        TaskOutcome o = gw.waitForResult(task.taskId(), Duration.ofSeconds(2));
        Check.equal(TaskStatus.PENDING, o.status(), "still pending");
        Check.that(!o.isFinal(), "not final");
        Check.that(Duration.between(start, Instant.now()).compareTo(Duration.ofMillis(1900)) >= 0, "waited");
    }

    @Test
    public void refusalsCarryTheApiError() throws Exception {
        McsClient gw = gateway().withRequestId("java-sdk-errors-1");
        McsApiException e = Check.fails(McsApiException.class, "unknown task",
                () -> gw.getTask("t_000000000000000000000000"));
        Check.equal(404, e.httpStatus(), "status");
        Check.equal(ErrorCode.NOT_FOUND, e.errorCode().orElseThrow(), "code");
        Check.equal("java-sdk-errors-1", e.requestId(), "the daemon kept our request id");

        e = Check.fails(McsApiException.class, "callback host the daemon refuses",
                () -> gw.createTask(NewTask.of("t", TaskData.login(random(8))).withCallbackUrl("https://127.1/cb")));
        Check.equal(400, e.httpStatus(), "status");
        Check.equal("bad_request", e.code(), "code");
        Check.that(!e.apiMessage().isEmpty(), "says why: " + e.apiMessage());

        McsClient nobody = gateway();
        e = Check.fails(McsApiException.class, "no id sent", () -> nobody.getTask("t_000000000000000000000000"));
        Check.that(e.requestId() != null && !e.requestId().isEmpty(), "the daemon made one: " + e.requestId());
    }

    @Test
    public void onlyTheDaemonReachesTheReceiver() throws Exception {
        try (Receiver rx = new Receiver()) {
            // A phone posting a fake callback. In the single-CA dev layout its certificate
            // chains to pki/ca.pem (the peer check refuses it: 403); in the production layout
            // it does not (the handshake fails).
            java.net.http.HttpClient asPhone = TransportTest.client(
                    TlsIdentity.fromPem(PKI.resolve("app1.pem"), PKI.resolve("app1.key"), PKI.resolve("ca.pem")).sslContext());
            try {
                int status = TransportTest.post(asPhone, rx.url(), TransportTest.CALLBACK).statusCode();
                Check.equal(403, status, "a phone posting a fake callback");
            } catch (IOException refusedByTls) {
                // refused before HTTP
            }
            Check.that(rx.got.isEmpty(), "nothing reached the listener");
        }
    }
}
