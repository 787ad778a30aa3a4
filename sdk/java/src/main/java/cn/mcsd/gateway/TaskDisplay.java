package cn.mcsd.gateway;

import java.util.LinkedHashMap;
import java.util.Map;

import cn.mcsd.gateway.json.JsonObject;

/** What the phone shows: a title (1 to 256 characters) and an optional detail (at most 2048). */
public record TaskDisplay(String title, String detail) {
    public TaskDisplay {
        if (title == null || title.isEmpty() || title.codePointCount(0, title.length()) > 256) {
            throw new IllegalArgumentException("display title must be 1 to 256 characters");
        }
        if (detail != null && detail.codePointCount(0, detail.length()) > 2048) {
            throw new IllegalArgumentException("display detail must be at most 2048 characters");
        }
    }

    public static TaskDisplay of(String title) {
        return new TaskDisplay(title, null);
    }

    Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("title", title);
        if (detail != null) m.put("detail", detail);
        return m;
    }

    static TaskDisplay from(JsonObject o) {
        return new TaskDisplay(o.string("title"), o.optString("detail"));
    }
}
