package cn.mcsd.gateway;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonException;
import cn.mcsd.gateway.json.JsonObject;

public class JsonTest {
    @Test
    public void parsesEveryKindOfValue() {
        Object v = Json.parse(" {\"a\": [1, -2, 3.5, 1e3, true, false, null, \"x\"], \"b\": {}, \"c\": []}\n");
        Map<?, ?> m = (Map<?, ?>) v;
        List<?> a = (List<?>) m.get("a");
        Check.equal(1L, a.get(0), "integer");
        Check.equal(-2L, a.get(1), "negative integer");
        Check.equal(new BigDecimal("3.5"), a.get(2), "fraction");
        Check.equal(new BigDecimal("1e3"), a.get(3), "exponent");
        Check.equal(Boolean.TRUE, a.get(4), "true");
        Check.equal(Boolean.FALSE, a.get(5), "false");
        Check.that(a.get(6) == null, "null");
        Check.equal("x", a.get(7), "string");
        Check.equal(Map.of(), m.get("b"), "empty object");
        Check.equal(List.of(), m.get("c"), "empty array");
        Check.equal(List.of("a", "b", "c"), List.copyOf(m.keySet()), "key order kept");
    }

    @Test
    public void bigIntegersStayExact() {
        Check.equal(Long.MAX_VALUE, Json.parse("9223372036854775807"), "largest long");
        Check.equal(new BigInteger("9223372036854775808"), Json.parse("9223372036854775808"), "past long");
        Check.equal(Long.MIN_VALUE, Json.parse("-9223372036854775808"), "smallest long");
    }

    @Test
    public void decodesEscapes() {
        Check.equal("\"\\/\b\f\n\r\t\u00e9\ud83d\ude00", Json.parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\""),
                "escapes and a surrogate pair");
        Check.equal("投标", Json.parse("\"投标\""), "raw UTF-8 text");
        Check.equal("投标", Json.parse("\"投标\"".getBytes(StandardCharsets.UTF_8)), "from UTF-8 bytes");
    }

    @Test
    public void refusesWhatIsNotStrictJson() {
        String[] bad = {
            "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{'a':1}", "[1 2]", "01", "-", "-01", "1.",
            ".5", "1e", "1e+", "+1", "NaN", "Infinity", "tru", "nul", "\"abc", "\"a\u0001\"", "\"\\x\"", "\"\\u12\"",
            "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "{} {}", "[] x", "/* c */ 1", "1 // c",
            "{\"a\":1,\"a\":2}", "\uFEFF{}", "[\"\ud800\"]",
        };
        for (String s : bad) {
            Check.fails(JsonException.class, "refuses " + s, () -> Json.parse(s));
        }
    }

    @Test
    public void refusesInvalidUtf8() {
        Check.fails(JsonException.class, "lone continuation byte", () -> Json.parse(new byte[] {'"', (byte) 0x80, '"'}));
        Check.fails(JsonException.class, "overlong encoding",
                () -> Json.parse(new byte[] {'"', (byte) 0xc0, (byte) 0xaf, '"'}));
        Check.fails(JsonException.class, "encoded surrogate",
                () -> Json.parse(new byte[] {'"', (byte) 0xed, (byte) 0xa0, (byte) 0x80, '"'}));
    }

    @Test
    public void refusesDeepNesting() {
        String deep = "[".repeat(Json.MAX_DEPTH + 2) + "]".repeat(Json.MAX_DEPTH + 2);
        JsonException e = Check.fails(JsonException.class, "too deep", () -> Json.parse(deep));
        Check.mentions(e, "deeper");
        String ok = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
        Json.parse(ok);
    }

    @Test
    public void duplicateKeyIsNamedWithItsOffset() {
        JsonException e = Check.fails(JsonException.class, "duplicate", () -> Json.parse("{\"k\":1, \"k\":2}"));
        Check.mentions(e, "duplicate key \"k\" at offset 8");
    }

    @Test
    public void writesAndReadsBack() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("text", "line\n\"quoted\" \\ tab\t \u0001 é 😀");
        m.put("n", 42);
        m.put("big", new BigInteger("123456789012345678901234567890"));
        m.put("d", 1.5);
        m.put("whole", 100.0);
        m.put("list", List.of(true, false));
        m.put("nothing", null);
        String text = Json.write(m);
        Check.equal("{\"text\":\"line\\n\\\"quoted\\\" \\\\ tab\\t \\u0001 é 😀\",\"n\":42,"
                + "\"big\":123456789012345678901234567890,\"d\":1.5,\"whole\":100,\"list\":[true,false],\"nothing\":null}",
                text, "written text");
        Map<?, ?> back = (Map<?, ?>) Json.parse(text);
        Check.equal(m.get("text"), back.get("text"), "string round trip");
        Check.equal(42L, back.get("n"), "number round trip");
        Check.equal(m.get("big"), back.get("big"), "big integer round trip");
    }

    @Test
    public void writerRefusesWhatJsonCannotSay() {
        Check.fails(JsonException.class, "NaN", () -> Json.write(Double.NaN));
        Check.fails(JsonException.class, "infinity", () -> Json.write(List.of(Double.POSITIVE_INFINITY)));
        Check.fails(JsonException.class, "lone surrogate", () -> Json.write("a\ud800b"));
        Check.fails(JsonException.class, "non-string key", () -> Json.write(Map.of(1, 2)));
        Check.fails(JsonException.class, "unknown type", () -> Json.write(new Object()));
    }

    @Test
    public void typedReadsNameThePath() {
        JsonObject o = Json.parseObject("{\"result\":{\"signature\":5,\"n\":1.5}}".getBytes(StandardCharsets.UTF_8));
        JsonException e = Check.fails(JsonException.class, "mistyped", () -> o.object("result").string("signature"));
        Check.equal("result.signature: expected a string, got a number", e.getMessage(), "message");
        e = Check.fails(JsonException.class, "missing", () -> o.object("result").string("key_id"));
        Check.equal("result.key_id: missing", e.getMessage(), "message");
        e = Check.fails(JsonException.class, "not an integer", () -> o.object("result").integer("n"));
        Check.mentions(e, "result.n: expected an integer");
        Check.that(o.object("result").optString("absent") == null, "absent optional is null");
        Check.fails(JsonException.class, "array is not an object",
                () -> Json.parseObject("[]".getBytes(StandardCharsets.UTF_8)));
    }
}
