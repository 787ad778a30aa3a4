package cn.mcsd.gateway.example;

import java.nio.file.Path;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.time.Duration;

import cn.mcsd.gateway.CallbackReceiver;
import cn.mcsd.gateway.CreatedTask;
import cn.mcsd.gateway.McsApiException;
import cn.mcsd.gateway.McsClient;
import cn.mcsd.gateway.NewTask;
import cn.mcsd.gateway.SignatureCheck;
import cn.mcsd.gateway.TaskData;
import cn.mcsd.gateway.TaskOutcome;
import cn.mcsd.gateway.TaskResult;
import cn.mcsd.gateway.TaskStatus;
import cn.mcsd.gateway.TlsIdentity;

/**
 * The README's quick start, compiled by run-tests.sh so it cannot drift: a scan login with
 * a callback receiver. {@code LoginExample https://127.0.0.1:PORT /tmp/mcs/pki}.
 */
public final class LoginExample {
    public static void main(String[] args) throws Exception {
        String server = args[0];
        Path pki = Path.of(args[1]);

        // One client for the whole gateway (thread-safe).
        McsClient mcs = McsClient.builder(server)
                .pem(pki.resolve("gateway.pem"), pki.resolve("gateway.key"), pki.resolve("ca.pem"))
                .build();

        // The receiver: TLS with the gateway's certificate, clients must chain to the CA of the
        // daemon's certificate, and (the dev CA signs phones too) must be the daemon's key.
        X509Certificate daemon = TlsIdentity.certificates(pki.resolve("server.pem")).get(0);
        TlsIdentity receiverTls = TlsIdentity.fromPem(pki.resolve("gateway.pem"), pki.resolve("gateway.key"),
                pki.resolve("ca.pem"));
        try (CallbackReceiver receiver = CallbackReceiver.builder(receiverTls,
                        (callback, peer) -> System.out.println("callback: " + callback.taskId() + " " + callback.status()))
                .peer(CallbackReceiver.sameKeyAs(daemon))
                .start()) {

            byte[] challenge = new byte[32];
            new SecureRandom().nextBytes(challenge);
            CreatedTask task;
            try {
                task = mcs.withRequestId("login-42").createTask(
                        NewTask.of("登录 交易平台", TaskData.login(challenge))
                                .withTtl(Duration.ofMinutes(2))
                                .withCallbackUrl(receiver.url("127.0.0.1", "/mcs/callback")));
            } catch (McsApiException e) {
                System.err.println(e.code() + " (HTTP " + e.httpStatus() + ", request " + e.requestId() + "): "
                        + e.apiMessage());
                return;
            }
            System.out.println("render this as a QR code: " + task.qr());

            TaskOutcome outcome = mcs.waitForResult(task.taskId(), Duration.ofMinutes(2));
            if (outcome.status() != TaskStatus.COMPLETED) {
                System.out.println("no login: " + outcome.status().wire() + " " + outcome.error());
                return;
            }
            TaskResult.Login login = outcome.result(TaskResult.Login.class);
            SignatureCheck.Verified who = SignatureCheck.login(login, challenge); // throws if it does not check out
            System.out.println("logged in: " + who.certificate().getSubject() + " (key " + who.keyId() + ")");
        }
    }
}
