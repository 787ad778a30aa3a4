package cn.mcsd.gateway;

import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.Base64;

/** Encodings of the wire (PROTOCOL.md "Wire encodings"), checked strictly. */
final class Wire {
    private Wire() {}

    static String b64(byte[] b) {
        return Base64.getEncoder().encodeToString(b);
    }

    /** Standard alphabet, padded: anything else is refused. */
    static byte[] unb64(String s, String what) {
        if (s.length() % 4 != 0) {
            throw new IllegalArgumentException(what + ": base64 without padding");
        }
        try {
            return Base64.getDecoder().decode(s);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(what + ": not standard base64");
        }
    }

    static Instant time(String s, String what) {
        try {
            return Instant.parse(s);
        } catch (DateTimeParseException e) {
            throw new IllegalArgumentException(what + ": not an RFC 3339 time: " + s);
        }
    }
}
