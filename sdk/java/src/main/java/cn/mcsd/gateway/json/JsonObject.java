package cn.mcsd.gateway.json;

import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Typed, path-aware reads from a parsed JSON object: a missing or mistyped field fails
 * with its path ({@code result.signature: expected a string, got a number}), so a daemon
 * answer the SDK cannot use says exactly why. Fields not asked for are ignored.
 */
public final class JsonObject {
    private final Map<String, Object> fields;
    private final String path;

    public JsonObject(Map<String, Object> fields, String path) {
        this.fields = fields;
        this.path = path;
    }

    /** The object as parsed. */
    public Map<String, Object> raw() {
        return fields;
    }

    public Set<String> keys() {
        return fields.keySet();
    }

    /** Present and not {@code null}. */
    public boolean has(String name) {
        return fields.get(name) != null;
    }

    private String at(String name) {
        return path.isEmpty() ? name : path + "." + name;
    }

    private JsonException wrong(String name, String expected, Object got) {
        return new JsonException(at(name) + ": expected " + expected + ", got " + Json.typeName(got));
    }

    public String string(String name) {
        Object v = fields.get(name);
        if (v instanceof String s) return s;
        if (v == null) throw new JsonException(at(name) + ": missing");
        throw wrong(name, "a string", v);
    }

    /** {@code null} when absent or JSON {@code null}. */
    public String optString(String name) {
        Object v = fields.get(name);
        if (v == null || v instanceof String) return (String) v;
        throw wrong(name, "a string", v);
    }

    public long integer(String name) {
        Long v = optInteger(name);
        if (v == null) throw new JsonException(at(name) + ": missing");
        return v;
    }

    public Long optInteger(String name) {
        Object v = fields.get(name);
        if (v == null) return null;
        if (v instanceof Long l) return l;
        throw wrong(name, "an integer that fits 64 bits", v);
    }

    public Boolean optBoolean(String name) {
        Object v = fields.get(name);
        if (v == null || v instanceof Boolean) return (Boolean) v;
        throw wrong(name, "a boolean", v);
    }

    public JsonObject object(String name) {
        JsonObject o = optObject(name);
        if (o == null) throw new JsonException(at(name) + ": missing");
        return o;
    }

    public JsonObject optObject(String name) {
        Object v = fields.get(name);
        if (v == null) return null;
        if (v instanceof Map) return new JsonObject(Json.asMap(v), at(name));
        throw wrong(name, "an object", v);
    }

    public List<Object> list(String name) {
        Object v = fields.get(name);
        if (v instanceof List<?> l) {
            @SuppressWarnings("unchecked")
            List<Object> out = (List<Object>) l;
            return out;
        }
        if (v == null) throw new JsonException(at(name) + ": missing");
        throw wrong(name, "an array", v);
    }

    /** Element {@code i} of array {@code name}, which must be an object. */
    public static JsonObject element(List<Object> list, int i, String path) {
        Object v = list.get(i);
        if (v instanceof Map) return new JsonObject(Json.asMap(v), path + "[" + i + "]");
        throw new JsonException(path + "[" + i + "]: expected an object, got " + Json.typeName(v));
    }

    public String path() {
        return path;
    }

    @Override
    public String toString() {
        return Json.write(fields);
    }
}
