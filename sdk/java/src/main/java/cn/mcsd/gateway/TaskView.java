package cn.mcsd.gateway;

import java.time.Instant;
import java.util.Map;

import cn.mcsd.gateway.json.JsonObject;

/**
 * {@code GET /v1/tasks/{id}}: the task as it stands. {@code data} is the view's data object
 * as parsed ({@code {challenge}} / {@code {message, format?}} for login and sign, none for
 * decrypt and encrypt; see docs/openapi.yaml {@code TaskViewData}), {@code keyId} is set once
 * claimed, {@code error} when it failed.
 */
public record TaskView(String taskId, TaskKind kind, TaskStatus status, String platform, TaskDisplay display,
        Instant expiresAt, Map<String, Object> data, String keyId, String error) {
    static TaskView from(JsonObject o) {
        JsonObject data = o.optObject("data");
        return new TaskView(o.string("task_id"), TaskKind.of(o.string("kind")), TaskStatus.of(o.string("status")),
                o.string("platform"), TaskDisplay.from(o.object("display")),
                Wire.time(o.string("expires_at"), "expires_at"), data == null ? null : data.raw(),
                o.optString("key_id"), o.optString("error"));
    }
}
