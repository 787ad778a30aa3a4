package cn.mcsd.gateway;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The body of {@code POST /v1/tasks}: what the phone shows, the kind's data, and optionally
 * a lifetime, a callback URL (checked by the daemon at creation, docs/api-extensions.md) and
 * a key to send the task to through its phones' inboxes. Immutable; the {@code with…}
 * methods answer a copy.
 */
public record NewTask(TaskDisplay display, TaskData data, Duration ttl, String callbackUrl, String toKeyId) {
    public NewTask {
        if (display == null || data == null) {
            throw new IllegalArgumentException("a task needs a display and data");
        }
        if (ttl != null && (ttl.isNegative() || ttl.isZero())) {
            throw new IllegalArgumentException("ttl must be positive");
        }
        if (callbackUrl != null && (!callbackUrl.startsWith("https://") || callbackUrl.length() > 2048)) {
            throw new IllegalArgumentException("callback_url must be an https:// URL of at most 2048 bytes");
        }
    }

    public static NewTask of(String title, TaskData data) {
        return new NewTask(TaskDisplay.of(title), data, null, null, null);
    }

    public static NewTask of(TaskDisplay display, TaskData data) {
        return new NewTask(display, data, null, null, null);
    }

    /** Seconds until the task expires (whole seconds; the daemon's default and maximum apply). */
    public NewTask withTtl(Duration ttl) {
        return new NewTask(display, data, ttl, callbackUrl, toKeyId);
    }

    /** The daemon POSTs the task's outcome here over mutual TLS (see {@link CallbackReceiver}). */
    public NewTask withCallbackUrl(String url) {
        return new NewTask(display, data, ttl, url, toKeyId);
    }

    /** Send the task to this key's phones (owner and allowed delegates); only that key may claim it. */
    public NewTask withToKeyId(String keyId) {
        return new NewTask(display, data, ttl, callbackUrl, keyId);
    }

    Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("kind", data.kind().wire());
        if (ttl != null) m.put("ttl_secs", Math.max(1, ttl.toSeconds()));
        m.put("display", display.toJson());
        m.put("data", data.toJson());
        if (callbackUrl != null) m.put("callback_url", callbackUrl);
        if (toKeyId != null) m.put("to_key_id", toKeyId);
        return m;
    }
}
