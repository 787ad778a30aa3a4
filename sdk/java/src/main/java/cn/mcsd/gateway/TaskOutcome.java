package cn.mcsd.gateway;

import cn.mcsd.gateway.json.JsonObject;

/**
 * {@code GET /v1/tasks/{id}/result}: the status, the result once {@code completed}, and why
 * it did not complete ({@code error}; also {@code result already delivered} for a decrypt
 * plaintext fetched before).
 */
public record TaskOutcome(TaskStatus status, TaskResult result, String error) {
    public boolean isFinal() {
        return status.isFinal();
    }

    /**
     * The result as the kind the caller created, e.g. {@code outcome.result(TaskResult.Login.class)}.
     *
     * @throws McsException if the task did not complete, or completed with another kind of result
     */
    public <T extends TaskResult> T result(Class<T> kind) {
        if (status != TaskStatus.COMPLETED) {
            throw new McsException("the task is " + status.wire() + (error == null ? "" : " (" + error + ")")
                    + ", not completed");
        }
        if (!kind.isInstance(result)) {
            throw new McsException("the task's result is " + (result == null ? "absent" : result.getClass().getSimpleName())
                    + ", not " + kind.getSimpleName());
        }
        return kind.cast(result);
    }

    static TaskOutcome from(JsonObject o) {
        JsonObject r = o.optObject("result");
        return new TaskOutcome(TaskStatus.of(o.string("status")), r == null ? null : TaskResult.from(r),
                o.optString("error"));
    }
}
