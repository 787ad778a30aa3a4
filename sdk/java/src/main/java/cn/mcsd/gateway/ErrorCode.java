package cn.mcsd.gateway;

import java.util.Optional;

/** The error codes of API.md (and docs/api-extensions.md's {@code store_unavailable}), with their HTTP status. */
public enum ErrorCode {
    BAD_REQUEST("bad_request", 400),
    UNAUTHENTICATED("unauthenticated", 401),
    FORBIDDEN("forbidden", 403),
    DEVICE_MISMATCH("device_mismatch", 403),
    NOT_FOUND("not_found", 404),
    CONFLICT("conflict", 409),
    TASK_STATE("task_state", 409),
    PIN_INCORRECT("pin_incorrect", 403),
    PIN_LOCKED("pin_locked", 423),
    TOKEN_INVALID("token_invalid", 403),
    TASK_EXPIRED("task_expired", 410),
    CERT_MISMATCH("cert_mismatch", 409),
    PLATFORM_NOT_AUTHORIZED("platform_not_authorized", 403),
    NO_PERMISSION("no_permission", 403),
    KEY_INACTIVE("key_inactive", 409),
    PAYLOAD_TOO_LARGE("payload_too_large", 413),
    RATE_LIMITED("rate_limited", 429),
    PLUGIN_ERROR("plugin_error", 502),
    PLUGIN_TIMEOUT("plugin_timeout", 504),
    HSM_UNAVAILABLE("hsm_unavailable", 503),
    STORE_UNAVAILABLE("store_unavailable", 503),
    INTERNAL("internal", 500);

    private final String wire;
    private final int status;

    ErrorCode(String wire, int status) {
        this.wire = wire;
        this.status = status;
    }

    public String wire() {
        return wire;
    }

    /** The HTTP status API.md gives the code. */
    public int httpStatus() {
        return status;
    }

    boolean retryable() {
        return this == RATE_LIMITED || this == HSM_UNAVAILABLE || this == STORE_UNAVAILABLE;
    }

    public static Optional<ErrorCode> of(String wire) {
        for (ErrorCode c : values()) {
            if (c.wire.equals(wire)) return Optional.of(c);
        }
        return Optional.empty();
    }
}
