package cn.mcsd.gateway;

import java.time.Instant;

import cn.mcsd.gateway.json.JsonObject;

/**
 * A created task: render {@link #qr()} as a QR code for the phone. The token is shown once
 * and lets its holder act on the task, so {@link #toString()} leaves it out.
 */
public record CreatedTask(String taskId, String token, String qr, Instant expiresAt) {
    static CreatedTask from(JsonObject o) {
        CreatedTask t = new CreatedTask(o.string("task_id"), o.string("token"), o.string("qr"),
                Wire.time(o.string("expires_at"), "expires_at"));
        // The QR must name this very task: a gateway renders it as given.
        ScanCode code = ScanCode.parse(t.qr);
        if (!code.taskId().equals(t.taskId) || !code.token().equals(t.token)) {
            throw new IllegalArgumentException("qr names task " + code.taskId() + ", not " + t.taskId);
        }
        return t;
    }

    /** The QR string parsed. */
    public ScanCode scanCode() {
        return ScanCode.parse(qr);
    }

    @Override
    public String toString() {
        return "CreatedTask[taskId=" + taskId + ", token=<redacted>, expiresAt=" + expiresAt + "]";
    }
}
