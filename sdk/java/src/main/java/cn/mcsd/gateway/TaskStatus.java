package cn.mcsd.gateway;

/** A task's status. {@link #isFinal()}: it will not change any more. */
public enum TaskStatus {
    PENDING("pending"),
    CLAIMED("claimed"),
    /** A delegate claimed it and the key's owner must approve; not final. */
    AWAITING_APPROVAL("awaiting_approval"),
    COMPLETED("completed"),
    REJECTED("rejected"),
    EXPIRED("expired"),
    FAILED("failed");

    private final String wire;

    TaskStatus(String wire) {
        this.wire = wire;
    }

    public String wire() {
        return wire;
    }

    public boolean isFinal() {
        return this == COMPLETED || this == REJECTED || this == EXPIRED || this == FAILED;
    }

    /** @throws IllegalArgumentException for a status this SDK does not know */
    public static TaskStatus of(String wire) {
        for (TaskStatus s : values()) {
            if (s.wire.equals(wire)) return s;
        }
        throw new IllegalArgumentException("unknown task status \"" + wire + "\"");
    }
}
