package cn.mcsd.gateway;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.List;

import cn.mcsd.gateway.json.Json;
import cn.mcsd.gateway.json.JsonObject;

/** The models read and write the bodies of docs/openapi.yaml. */
public class ModelTest {
    static JsonObject json(String s) {
        return Json.parseObject(s.replace('\'', '"').getBytes(StandardCharsets.UTF_8));
    }

    @Test
    public void newTaskBodies() {
        NewTask login = NewTask.of("登录 Trading", TaskData.login(new byte[] {1, 2, 3}))
                .withTtl(Duration.ofSeconds(120)).withCallbackUrl("https://127.0.0.1:9/cb");
        Check.equal("{\"kind\":\"login\",\"ttl_secs\":120,\"display\":{\"title\":\"登录 Trading\"},"
                + "\"data\":{\"challenge\":\"AQID\"},\"callback_url\":\"https://127.0.0.1:9/cb\"}",
                Json.write(login.toJson()), "login");
        NewTask cms = NewTask.of(new TaskDisplay("Sign", "the bid"), TaskData.sign("hi".getBytes(), TaskData.SignFormat.CMS));
        Check.equal("{\"kind\":\"sign\",\"display\":{\"title\":\"Sign\",\"detail\":\"the bid\"},"
                + "\"data\":{\"message\":\"aGk=\",\"format\":\"cms\"}}", Json.write(cms.toJson()), "sign cms");
        NewTask raw = NewTask.of("Sign", TaskData.sign("hi".getBytes()));
        Check.equal("{\"kind\":\"sign\",\"display\":{\"title\":\"Sign\"},\"data\":{\"message\":\"aGk=\",\"format\":\"raw\"}}",
                Json.write(raw.toJson()), "sign raw");
        NewTask seal = NewTask.of("Seal", TaskData.pdfSeal(new byte[] {'%'}, null, new Placement.Keyword("盖章处", null)));
        Check.equal("{\"kind\":\"pdf_seal\",\"display\":{\"title\":\"Seal\"},\"data\":{\"pdf\":\"JQ==\","
                + "\"placement\":{\"keyword\":\"盖章处\"}}}", Json.write(seal.toJson()), "pdf_seal");
        Check.equal("{\"cross_page\":{\"side\":\"left\",\"y\":300.5}}",
                Json.write(new Placement.CrossPage(false, 300.5).toJson()), "cross page");
        Check.equal("{\"pages\":[1,2],\"x\":100,\"y\":200}", Json.write(new Placement.Pages(List.of(1, 2), 100, 200).toJson()),
                "pages");
        Check.equal("\"deferred\"", Json.write(new Placement.Deferred().toJson()), "deferred");
        Check.equal("{\"ciphertext\":\"AA==\",\"recipient_cert_serial\":\"0a\"}",
                Json.write(TaskData.decrypt(new byte[1]).withRecipientCertSerial("0a").toJson()), "decrypt");
    }

    @Test
    public void newTaskRefusesWhatTheDaemonWould() {
        Check.fails(IllegalArgumentException.class, "empty title", () -> NewTask.of("", TaskData.login(new byte[1])));
        Check.fails(IllegalArgumentException.class, "title too long",
                () -> NewTask.of("x".repeat(257), TaskData.login(new byte[1])));
        Check.fails(IllegalArgumentException.class, "challenge too long", () -> TaskData.login(new byte[4097]));
        Check.fails(IllegalArgumentException.class, "http callback",
                () -> NewTask.of("t", TaskData.login(new byte[1])).withCallbackUrl("http://h/cb"));
        Check.fails(IllegalArgumentException.class, "zero ttl",
                () -> NewTask.of("t", TaskData.login(new byte[1])).withTtl(Duration.ZERO));
        Check.fails(IllegalArgumentException.class, "decrypt with both",
                () -> new TaskData.Decrypt("AA==", "AA==", null, null));
    }

    @Test
    public void resultsAreRecognisedByTheirFields() {
        String login = "{'signature':'MEUC','key_id':'k_1','public_key':'04ab','subject':{'kind':'person','name':'张三'},"
                + "'certificate':'MIIB','subject_dn':'CN=张三','future_field':1}";
        TaskResult r = TaskResult.from(json(login));
        Check.equal(new TaskResult.Login("MEUC", "k_1", "04ab", new Subject("person", "张三", null, null, null), "MIIB",
                "CN=张三"), r, "login");
        Check.equal(new TaskResult.Sign("MEUC", "k_1", "04ab", null, null),
                TaskResult.from(json("{'signature':'MEUC','key_id':'k_1','public_key':'04ab'}")), "sign");
        Check.equal(new TaskResult.PdfSeal("JQ==", "s_1", "k_1", null),
                TaskResult.from(json("{'pdf':'JQ==','seal_id':'s_1','key_id':'k_1','certificate':null}")), "pdf_seal");
        Check.equal(new TaskResult.PdfUnseal("JQ==", "Sig1", "k_1"),
                TaskResult.from(json("{'pdf':'JQ==','field':'Sig1','key_id':'k_1'}")), "pdf_unseal");
        Check.equal(new TaskResult.Decrypt("aGk="), TaskResult.from(json("{'plaintext':'aGk='}")), "decrypt");
        Check.equal(new TaskResult.ContentKey("00112233445566778899aabbccddeeff"),
                TaskResult.from(json("{'content_key':'00112233445566778899aabbccddeeff'}")), "content key");
        Check.equal(new TaskResult.Encrypt(null, "MAA=", "MIIB", "k_1", "04ab"),
                TaskResult.from(json("{'envelope':'MAA=','certificate':'MIIB','key_id':'k_1','public_key':'04ab'}")),
                "encrypt");
        Check.equal(new TaskResult.Csr("MIIB", "k_1"), TaskResult.from(json("{'certificate':'MIIB','key_id':'k_1'}")), "csr");
        Exception e = Check.fails(IllegalArgumentException.class, "unknown shape", () -> TaskResult.from(json("{'x':1}")));
        Check.mentions(e, "no known task result");
        Check.fails(IllegalArgumentException.class, "bad base64",
                () -> TaskResult.from(json("{'signature':'MEU','key_id':'k_1','public_key':'04ab'}")));
        Check.that(!new TaskResult.Decrypt("c2VjcmV0").toString().contains("c2VjcmV0"), "plaintext redacted");
    }

    @Test
    public void outcomeAndCallback() {
        TaskOutcome done = TaskOutcome.from(json("{'status':'completed','result':{'signature':'MEUC','key_id':'k',"
                + "'public_key':'04'}}"));
        Check.that(done.isFinal(), "completed is final");
        Check.equal("MEUC", done.result(TaskResult.Sign.class).signature(), "typed result");
        Exception e = Check.fails(McsException.class, "wrong kind", () -> done.result(TaskResult.Login.class));
        Check.mentions(e, "not Login");
        TaskOutcome rejected = TaskOutcome.from(json("{'status':'rejected','error':'not me'}"));
        e = Check.fails(McsException.class, "rejected", () -> rejected.result(TaskResult.Login.class));
        Check.mentions(e, "rejected (not me)");
        Check.that(!TaskOutcome.from(json("{'status':'awaiting_approval'}")).isFinal(), "awaiting approval is not final");
        Check.fails(IllegalArgumentException.class, "unknown status", () -> TaskOutcome.from(json("{'status':'lost'}")));

        Callback cb = Callback.from(json("{'task_id':'t_1','status':'completed','result_available':true}"));
        Check.equal(new Callback("t_1", TaskStatus.COMPLETED, null, null, true), cb, "decrypt callback");
        Check.equal(new TaskOutcome(TaskStatus.COMPLETED, null, null), cb.outcome(), "its outcome");
    }

    @Test
    public void createdTaskMustNameItself() {
        String qr = "mcs://task?v=1&id=t_1&token=" + ScanCodeTest.TOKEN + "&url=https%3A%2F%2Fh";
        CreatedTask t = CreatedTask.from(json("{'task_id':'t_1','token':'" + ScanCodeTest.TOKEN + "','qr':'" + qr
                + "','expires_at':'2026-01-02T03:04:05Z'}"));
        Check.equal(Instant.parse("2026-01-02T03:04:05Z"), t.expiresAt(), "expiry");
        Check.that(!t.toString().contains(ScanCodeTest.TOKEN), "token redacted");
        Check.fails(IllegalArgumentException.class, "qr of another task", () -> CreatedTask.from(json("{'task_id':'t_2',"
                + "'token':'" + ScanCodeTest.TOKEN + "','qr':'" + qr + "','expires_at':'2026-01-02T03:04:05Z'}")));
        Check.fails(IllegalArgumentException.class, "bad time", () -> CreatedTask.from(json("{'task_id':'t_1','token':'"
                + ScanCodeTest.TOKEN + "','qr':'" + qr + "','expires_at':'tomorrow'}")));
    }

    @Test
    public void taskView() {
        TaskView v = TaskView.from(json("{'task_id':'t_1','kind':'login','status':'claimed','platform':'P-DEV-1',"
                + "'display':{'title':'Log in'},'expires_at':'2026-01-02T03:04:05.123Z','data':{'challenge':'AQID'},"
                + "'key_id':'k_1'}"));
        Check.equal(TaskKind.LOGIN, v.kind(), "kind");
        Check.equal(TaskStatus.CLAIMED, v.status(), "status");
        Check.equal("AQID", v.data().get("challenge"), "data");
        Check.equal("k_1", v.keyId(), "key id");
    }
}
