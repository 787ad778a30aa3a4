package cn.mcsd.gateway;

/**
 * No answer from the daemon: the connection failed, TLS was refused (a wrong CA or client
 * certificate shows here), or the request timed out. Whether the request took effect is
 * unknown; {@code GET}s are safe to repeat, and so is {@code POST /v1/tasks} in the sense
 * that a repeat creates a second task (the first expires unused).
 */
public class McsTransportException extends McsException {
    private static final long serialVersionUID = 1L;

    public McsTransportException(String message, Throwable cause) {
        super(message, cause);
    }
}
