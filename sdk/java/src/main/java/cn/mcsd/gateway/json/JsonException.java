package cn.mcsd.gateway.json;

/** A JSON text that is not strict RFC 8259 JSON, or a value of the wrong shape. */
public class JsonException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public JsonException(String message) {
        super(message);
    }
}
