package cn.mcsd.gateway;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Where a {@code pdf_seal} task puts the seal: PDF points from the page's lower-left corner,
 * the seal's centre (API.md, docs/api-extensions.md).
 */
public sealed interface Placement {
    /** The placement as JSON (a string for {@link Deferred}). */
    Object toJson();

    /** On one page (1-based). */
    record Page(int page, double x, double y) implements Placement {
        public Object toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("page", page);
            m.put("x", x);
            m.put("y", y);
            return m;
        }
    }

    /** Over the {@code occurrence}-th (default 1) appearance of a keyword; {@code occurrence} may be {@code null}. */
    record Keyword(String keyword, Integer occurrence) implements Placement {
        public Object toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("keyword", keyword);
            if (occurrence != null) m.put("occurrence", occurrence);
            return m;
        }
    }

    /** At the same place on several pages. */
    record Pages(List<Integer> pages, double x, double y) implements Placement {
        public Pages {
            pages = List.copyOf(pages);
        }

        public Object toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("pages", pages);
            m.put("x", x);
            m.put("y", y);
            return m;
        }
    }

    /** Across the edge of every page (骑缝章); {@code y} may be {@code null}. */
    record CrossPage(boolean right, Double y) implements Placement {
        public Object toJson() {
            Map<String, Object> side = new LinkedHashMap<>();
            side.put("side", right ? "right" : "left");
            if (y != null) side.put("y", y);
            return Map.of("cross_page", side);
        }
    }

    /** Chosen on the PC after the phone's claim ({@link McsClient#taskSeals}, {@link McsClient#placeSeal}). */
    record Deferred() implements Placement {
        public Object toJson() {
            return "deferred";
        }
    }
}
