package cn.mcsd.gateway;

import cn.mcsd.gateway.json.JsonObject;

/**
 * The body the daemon POSTs to a task's {@code callback_url} when the task ends: the result
 * body plus {@code task_id}; for a decrypt task {@code resultAvailable} instead of the
 * plaintext, which the gateway then fetches once with {@link McsClient#getResult}.
 */
public record Callback(String taskId, TaskStatus status, TaskResult result, String error, Boolean resultAvailable) {
    /** The outcome part, comparable with what {@link McsClient#waitForResult} answers. */
    public TaskOutcome outcome() {
        return new TaskOutcome(status, result, error);
    }

    static Callback from(JsonObject o) {
        JsonObject r = o.optObject("result");
        return new Callback(o.string("task_id"), TaskStatus.of(o.string("status")),
                r == null ? null : TaskResult.from(r), o.optString("error"), o.optBoolean("result_available"));
    }
}
