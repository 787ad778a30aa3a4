package cn.mcsd.gateway;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * What a task's QR code carries (docs/api-extensions.md "QR string"):
 * {@code mcs://task?v=1&id=<task id>&token=<token>&url=<daemon URL, percent-encoded>}.
 *
 * <p>{@link #parse} reads as the reference reader ({@code api-types/src/qr.rs}) does: the
 * exact prefix; version {@code 1}; each of {@code v}, {@code id}, {@code token}, {@code url}
 * exactly once and non-empty; escapes of {@code %} and two hex digits, decoding to UTF-8;
 * the URL {@code https://} with a host. Parameters it does not know are skipped (a later
 * version-1 string may carry more). It is stricter in three places, which no string the
 * daemon writes meets: characters outside visible ASCII must be escaped, and the daemon URL
 * may carry neither user info ({@code https://bank@evil}) nor a fragment.
 *
 * <p>A gateway renders the daemon's {@link CreatedTask#qr()} as it is; parsing is for
 * checking it, for tests, and for phones written in Java.
 */
public record ScanCode(String taskId, String token, String url) {
    static final String PREFIX = "mcs://task?";

    public ScanCode {
        check(taskId, token, url);
    }

    /** Thrown for a string that is not an mcs task QR code; the message says why. */
    public static final class InvalidQrException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        InvalidQrException(String why) {
            super("not an mcs task QR code: " + why);
        }
    }

    /** Parse a QR string; {@link InvalidQrException} says what is wrong. */
    public static ScanCode parse(String qr) {
        if (qr == null || !qr.startsWith(PREFIX)) {
            throw new InvalidQrException("it does not start with " + PREFIX);
        }
        String query = qr.substring(PREFIX.length());
        Map<String, String> params = new HashMap<>();
        for (String pair : query.split("&", -1)) {
            int eq = pair.indexOf('=');
            if (eq < 0) {
                throw new InvalidQrException("parameter \"" + pair + "\" has no '='");
            }
            String key = pair.substring(0, eq);
            if (!key.equals("v") && !key.equals("id") && !key.equals("token") && !key.equals("url")) {
                continue; // not of this version's: skipped
            }
            if (params.put(key, percentDecode(pair.substring(eq + 1), key)) != null) {
                throw new InvalidQrException("parameter \"" + key + "\" appears twice");
            }
        }
        String v = params.get("v");
        if (v == null) {
            throw new InvalidQrException("no version (v)");
        }
        if (!v.equals("1")) {
            throw new InvalidQrException("version " + v + " is not supported (only 1)");
        }
        for (String key : new String[] {"id", "token", "url"}) {
            if (!params.containsKey(key)) {
                throw new InvalidQrException("no " + key);
            }
        }
        try {
            return new ScanCode(params.get("id"), params.get("token"), params.get("url"));
        } catch (IllegalArgumentException e) {
            throw new InvalidQrException(e.getMessage());
        }
    }

    /** The QR string, as the daemon builds it (RFC 3986 unreserved characters kept). */
    public String toQr() {
        return PREFIX + "v=1&id=" + percentEncode(taskId) + "&token=" + percentEncode(token) + "&url="
                + percentEncode(url);
    }

    @Override
    public String toString() {
        // The token lets anyone holding it act as the phone: keep it out of logs.
        return "ScanCode[taskId=" + taskId + ", token=<redacted>, url=" + url + "]";
    }

    private static void check(String taskId, String token, String url) {
        if (taskId == null || taskId.isEmpty() || hasControl(taskId)) {
            throw new IllegalArgumentException("no task id");
        }
        if (token == null || token.isEmpty() || hasControl(token)) {
            throw new IllegalArgumentException("no token");
        }
        if (url == null || url.isEmpty()) {
            throw new IllegalArgumentException("no daemon URL");
        }
        if (!url.startsWith("https://")) {
            throw new IllegalArgumentException("the daemon URL is not https");
        }
        String rest = url.substring("https://".length());
        if (rest.isEmpty() || "/:?#".indexOf(rest.charAt(0)) >= 0) {
            throw new IllegalArgumentException("the daemon URL has no host");
        }
        int end = 0;
        while (end < rest.length() && "/?#".indexOf(rest.charAt(end)) < 0) end++;
        if (rest.substring(0, end).contains("@")) {
            throw new IllegalArgumentException("the daemon URL carries user info");
        }
        if (url.contains("#")) {
            throw new IllegalArgumentException("the daemon URL carries a fragment");
        }
        if (hasControl(url) || url.contains(" ")) {
            throw new IllegalArgumentException("the daemon URL has a space or control character");
        }
    }

    private static boolean hasControl(String s) {
        return s.chars().anyMatch(c -> c < 0x20 || c == 0x7f);
    }

    static String percentEncode(String s) {
        StringBuilder b = new StringBuilder();
        for (byte x : s.getBytes(StandardCharsets.UTF_8)) {
            int c = x & 0xff;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'
                    || c == '.' || c == '~') {
                b.append((char) c);
            } else {
                b.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
                        .append(Character.toUpperCase(Character.forDigit(c & 15, 16)));
            }
        }
        return b.toString();
    }

    private static String percentDecode(String s, String key) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '%') {
                int hi = i + 1 < s.length() ? hexDigit(s.charAt(i + 1)) : -1;
                int lo = i + 2 < s.length() ? hexDigit(s.charAt(i + 2)) : -1;
                if (hi < 0 || lo < 0) {
                    throw new InvalidQrException("parameter \"" + key + "\" has a malformed %-escape");
                }
                out.write(hi * 16 + lo);
                i += 2;
            } else if (c > 0x20 && c < 0x7f) {
                out.write(c);
            } else {
                throw new InvalidQrException("parameter \"" + key + "\" has a character that must be %-encoded");
            }
        }
        try {
            return StandardCharsets.UTF_8
                    .newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(out.toByteArray()))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new InvalidQrException("parameter \"" + key + "\" is not UTF-8 once decoded");
        }
    }

    private static int hexDigit(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
}
