package cn.mcsd.gateway;

/**
 * Every failure of an SDK call. Unchecked, so calls compose in lambdas; the three kinds are
 * {@link McsApiException} (the daemon answered with an API error), {@link
 * McsTransportException} (no answer: connection, TLS, timeout) and {@link
 * McsProtocolException} (an answer this SDK cannot read).
 */
public class McsException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public McsException(String message) {
        super(message);
    }

    public McsException(String message, Throwable cause) {
        super(message, cause);
    }
}
