package cn.mcsd.gateway;

public class ScanCodeTest {
    static final String TOKEN = "0123456789abcdef0123456789abcdef";

    @Test
    public void parsesTheDaemonsString() {
        String qr = "mcs://task?v=1&id=t_0123456789abcdef01234567&token=" + TOKEN
                + "&url=https%3A%2F%2F127.0.0.1%3A8443";
        ScanCode c = ScanCode.parse(qr);
        Check.equal("t_0123456789abcdef01234567", c.taskId(), "task id");
        Check.equal(TOKEN, c.token(), "token");
        Check.equal("https://127.0.0.1:8443", c.url(), "url decoded");
        Check.equal(qr, c.toQr(), "built back the same");
    }

    @Test
    public void encodesAsTheDaemonDoes() {
        // daemon/src/tasks/mod.rs percent_encode: unreserved kept, the rest %XX uppercase.
        ScanCode c = new ScanCode("t_x-1", TOKEN, "https://[::1]:8443/mcs-api/~v1?a=b&c");
        Check.equal("mcs://task?v=1&id=t_x-1&token=" + TOKEN
                + "&url=https%3A%2F%2F%5B%3A%3A1%5D%3A8443%2Fmcs-api%2F~v1%3Fa%3Db%26c", c.toQr(), "encoded");
        Check.equal(c, ScanCode.parse(c.toQr()), "round trip");
    }

    @Test
    public void acceptsAnyOrderAndLowercaseEscapes() {
        ScanCode c = ScanCode.parse("mcs://task?url=https%3a%2f%2fmcs.example.cn&token=" + TOKEN + "&id=t_1&v=1");
        Check.equal("https://mcs.example.cn", c.url(), "url");
        Check.equal("t_1", c.taskId(), "id");
    }

    @Test
    public void refusesMalformedStrings() {
        String ok = "&token=" + TOKEN + "&url=https%3A%2F%2Fh";
        String[] bad = {
            "", "mcs://task", "mcs://task?", "https://task?v=1&id=t" + ok, "MCS://task?v=1&id=t" + ok,
            "mcs://tasks?v=1&id=t" + ok, "mcs://task?v=2&id=t" + ok, "mcs://task?v=&id=t" + ok,
            "mcs://task?id=t" + ok, "mcs://task?v=1" + ok, "mcs://task?v=1&id=t&url=https%3A%2F%2Fh",
            "mcs://task?v=1&id=t&token=" + TOKEN, "mcs://task?v=1&v=1&id=t" + ok, "mcs://task?v=1&id=t&id=u" + ok,
            "mcs://task?v=1&id=t&token=&url=https%3A%2F%2Fh", "mcs://task?v=1&id=t&token=" + TOKEN + "&url=",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2F%3A443",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2F%2Fpath",
            "mcs://task?v=1&id=t&token=a%0Ab&url=https%3A%2F%2Fh",
 "mcs://task?v=1&id" + ok, "mcs://task?v=1&id=t" + ok + "&",
"mcs://task?v=1&id=&token=" + TOKEN + "&url=https%3A%2F%2Fh",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=http%3A%2F%2Fh",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2F",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fu%40h",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh%23frag",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh%2",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh%G0",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh%FF",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh x",
            "mcs://task?v=1&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh%2Bf%+f",
        };
        for (String s : bad) {
            Check.fails(ScanCode.InvalidQrException.class, "refuses " + s, () -> ScanCode.parse(s));
        }
    }

    @Test
    public void skipsParametersOfLaterVersions() {
        ScanCode c = ScanCode.parse("mcs://task?v=1&lang=zh-CN&id=t_9&token=ab12&url=https%3A%2F%2F%E6%8B%9B%E6%A0%87.example&x=");
        Check.equal(new ScanCode("t_9", "ab12", "https://招标.example"), c, "read, lang and x skipped");
        Check.equal("mcs://task?v=1&id=t_9&token=ab12&url=https%3A%2F%2F%E6%8B%9B%E6%A0%87.example", c.toQr(),
                "written without them, UTF-8 escaped");
    }

    @Test
    public void saysWhy() {
        Exception e = Check.fails(ScanCode.InvalidQrException.class, "v=2",
                () -> ScanCode.parse("mcs://task?v=2&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh"));
        Check.mentions(e, "version 2 is not supported");
        e = Check.fails(ScanCode.InvalidQrException.class, "twice",
                () -> ScanCode.parse("mcs://task?v=1&id=t&id=t&token=" + TOKEN + "&url=https%3A%2F%2Fh"));
        Check.mentions(e, "\"id\" appears twice");
    }

    @Test
    public void tokenStaysOutOfToString() {
        ScanCode c = new ScanCode("t_1", TOKEN, "https://h");
        Check.that(!c.toString().contains(TOKEN), "token redacted: " + c);
    }
}
