package cn.mcsd.gateway;

import java.time.Duration;
import java.util.Map;
import java.util.Optional;

/**
 * The daemon refused the request with an API.md error: HTTP status plus body
 * {@code {"error": {"code", "message", ...}}}.
 *
 * <p>{@link #code()} is the API.md code ({@code bad_request}, {@code task_expired}, …) as a
 * string, so a code added later still reaches the caller; {@link ErrorCode#of} maps it to
 * the enum. An error answer whose body is not the API's error body (a proxy's 502 page)
 * gets code {@code http_<status>}, which no API.md code looks like.
 */
public class McsApiException extends McsException {
    private static final long serialVersionUID = 1L;

    private final int httpStatus;
    private final String code;
    private final String apiMessage;
    private final Duration retryAfter;
    private final String requestId;
    private final Long remainingAttempts;
    private final transient Map<String, Object> detail;

    public McsApiException(int httpStatus, String code, String apiMessage, Duration retryAfter, String requestId,
            Long remainingAttempts, Map<String, Object> detail) {
        super(describe(httpStatus, code, apiMessage, requestId));
        this.httpStatus = httpStatus;
        this.code = code;
        this.apiMessage = apiMessage;
        this.retryAfter = retryAfter;
        this.requestId = requestId;
        this.remainingAttempts = remainingAttempts;
        this.detail = detail == null ? Map.of() : detail;
    }

    private static String describe(int status, String code, String message, String requestId) {
        return code + ": " + message + " (HTTP " + status + (requestId == null ? "" : ", request id " + requestId) + ")";
    }

    public int httpStatus() {
        return httpStatus;
    }

    /** The API.md error code, e.g. {@code task_expired}. */
    public String code() {
        return code;
    }

    /** The code as an enum; empty for a code this SDK does not know. */
    public Optional<ErrorCode> errorCode() {
        return ErrorCode.of(code);
    }

    /** The daemon's human text (never internal detail). */
    public String apiMessage() {
        return apiMessage;
    }

    /** From the {@code Retry-After} header, else the body's {@code retry_after} ({@code rate_limited},
     * {@code hsm_unavailable}, {@code store_unavailable}). */
    public Optional<Duration> retryAfter() {
        return Optional.ofNullable(retryAfter);
    }

    /** The answer's {@code X-Request-Id}: quote it to the daemon's operator. */
    public String requestId() {
        return requestId;
    }

    /** With {@code pin_incorrect} and a wrong PIN-reset code. */
    public Optional<Long> remainingAttempts() {
        return Optional.ofNullable(remainingAttempts);
    }

    /** The whole {@code error} object as parsed, extra fields included. */
    public Map<String, Object> detail() {
        return detail;
    }

    /** Worth repeating after {@link #retryAfter()}: {@code rate_limited}, {@code hsm_unavailable},
     * {@code store_unavailable}. */
    public boolean isRetryable() {
        return errorCode().map(ErrorCode::retryable).orElse(false);
    }
}
