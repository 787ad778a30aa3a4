package cn.mcsd.gateway;

/** A task's kind, as {@code GET /v1/tasks/{id}} names it. Gateways create all but {@link #CSR}. */
public enum TaskKind {
    LOGIN("login"),
    SIGN("sign"),
    DECRYPT("decrypt"),
    ENCRYPT("encrypt"),
    PDF_SEAL("pdf_seal"),
    /** Withdraw a seal (撤章). */
    PDF_UNSEAL("pdf_unseal"),
    /** Created by activation, never by a gateway. */
    CSR("csr");

    private final String wire;

    TaskKind(String wire) {
        this.wire = wire;
    }

    public String wire() {
        return wire;
    }

    /** @throws IllegalArgumentException for a kind this SDK does not know */
    public static TaskKind of(String wire) {
        for (TaskKind k : values()) {
            if (k.wire.equals(wire)) return k;
        }
        throw new IllegalArgumentException("unknown task kind \"" + wire + "\"");
    }
}
