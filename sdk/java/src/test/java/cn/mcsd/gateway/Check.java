package cn.mcsd.gateway;

import java.util.Arrays;
import java.util.Objects;

/** The assertions the tests use; each failure says what was expected and what came. */
final class Check {
    private Check() {}

    @FunctionalInterface
    interface Body {
        void run() throws Exception;
    }

    static void that(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void equal(Object expected, Object actual, String what) {
        boolean same = expected instanceof byte[] e && actual instanceof byte[] a ? Arrays.equals(e, a)
                : Objects.equals(expected, actual);
        if (!same) {
            throw new AssertionError(what + ": expected <" + show(expected) + ">, got <" + show(actual) + ">");
        }
    }

    private static String show(Object o) {
        return o instanceof byte[] b ? java.util.HexFormat.of().formatHex(b) : String.valueOf(o);
    }

    /** {@code body} throws a {@code kind}; answers it for further checks. */
    static <T extends Throwable> T fails(Class<T> kind, String what, Body body) {
        try {
            body.run();
        } catch (Throwable t) {
            if (kind.isInstance(t)) return kind.cast(t);
            AssertionError e = new AssertionError(what + ": expected " + kind.getSimpleName() + ", got " + t);
            e.initCause(t);
            throw e;
        }
        throw new AssertionError(what + ": expected " + kind.getSimpleName() + ", nothing was thrown");
    }

    /** The message contains {@code part}. */
    static void mentions(Throwable t, String part) {
        if (t.getMessage() == null || !t.getMessage().contains(part)) {
            throw new AssertionError("message \"" + t.getMessage() + "\" does not mention \"" + part + "\"");
        }
    }
}
