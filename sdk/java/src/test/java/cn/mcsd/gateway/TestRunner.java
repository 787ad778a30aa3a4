package cn.mcsd.gateway;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * A plain test runner (no JUnit here): {@code TestRunner unit} runs the offline suites,
 * {@code TestRunner live} the suite against a running daemon. Each {@link Test} method runs
 * on a fresh instance of its class; the exit code is 1 if any failed, and a class with no
 * test fails too (a suite that silently checks nothing is a failure).
 */
public final class TestRunner {
    static final List<Class<?>> UNIT = List.of(JsonTest.class, ScanCodeTest.class, VectorsTest.class,
            ModelTest.class, SignatureCheckTest.class, TransportTest.class);
    static final List<Class<?>> LIVE = List.of(LiveTest.class);

    public static void main(String[] args) throws Exception {
        if (args.length != 1 || !(args[0].equals("unit") || args[0].equals("live"))) {
            System.err.println("usage: TestRunner unit|live");
            System.exit(2);
        }
        List<Class<?>> suites = args[0].equals("unit") ? UNIT : LIVE;
        int passed = 0;
        List<String> failed = new ArrayList<>();
        for (Class<?> c : suites) {
            List<Method> tests = new ArrayList<>(Arrays.stream(c.getDeclaredMethods())
                    .filter(m -> m.isAnnotationPresent(Test.class)).toList());
            tests.sort(Comparator.comparing(Method::getName));
            if (tests.isEmpty()) {
                failed.add(c.getSimpleName() + ": no tests");
                continue;
            }
            for (Method m : tests) {
                String name = c.getSimpleName() + "." + m.getName();
                if (!Modifier.isPublic(m.getModifiers()) || m.getParameterCount() != 0) {
                    failed.add(name + ": a test must be public with no parameters");
                    continue;
                }
                long start = System.nanoTime();
                try {
                    m.invoke(c.getDeclaredConstructor().newInstance());
                    passed++;
                    System.out.printf("ok    %s (%d ms)%n", name, (System.nanoTime() - start) / 1_000_000);
                } catch (InvocationTargetException e) {
                    Throwable t = e.getCause();
                    failed.add(name + ": " + t);
                    System.out.printf("FAIL  %s: %s%n", name, t);
                    t.printStackTrace(System.out);
                }
            }
        }
        System.out.printf("%n%s: %d passed, %d failed%n", args[0], passed, failed.size());
        for (String f : failed) System.out.println("  failed: " + f);
        System.exit(failed.isEmpty() ? 0 : 1);
    }
}
