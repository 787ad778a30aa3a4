package cn.mcsd.gateway;

/**
 * The daemon answered, but not as API.md and docs/openapi.yaml describe: a body that is not
 * JSON, a field missing or of the wrong type, a value out of its range. The message names
 * the field; the request id finds the answer in the daemon's log.
 */
public class McsProtocolException extends McsException {
    private static final long serialVersionUID = 1L;
    private final String requestId;

    public McsProtocolException(String message, String requestId) {
        super(requestId == null ? message : message + " (request id " + requestId + ")");
        this.requestId = requestId;
    }

    /** The answer's {@code X-Request-Id}, if it had one. */
    public String requestId() {
        return requestId;
    }
}
