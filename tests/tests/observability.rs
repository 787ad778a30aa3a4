//! What an operator reads (issue 18): one access-log line per request with the peer, the
//! route template, the status, the duration and the request id; the caller's
//! `X-Request-Id` kept (or a UUIDv7 made), answered and written into the audit entry with
//! the peer; journald priority prefixes when stderr is the journal; JSON log lines whose
//! nested values are JSON; `HEAD` answered like `GET`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hyper::Method;
use mcs_e2e::*;
use serde_json::{Value, json};

/// A UUID of version 7 in its canonical text form.
fn is_uuid_v7(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && groups[2].starts_with('7')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_reach_the_answer_the_access_log_and_the_audit_entry() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut gw = connect(&env, &daemon, "gateway").await;
    let mut admin = connect(&env, &daemon, "admin").await;

    // The gateway passes on its own id: answered, logged and audited as it is.
    let theirs = "gw-7f3a:trace/42";
    gw.set_request_id(Some(theirs.into()));
    let created =
        mcs_client::gateway::create_task(&mut gw, "login", "log in", json!({"challenge": "AAEC"}), None, None)
            .await
            .unwrap();
    let task = created["task_id"].as_str().unwrap().to_owned();
    let read = gw.call(Method::GET, &format!("/v1/tasks/{task}"), None).await.unwrap();
    assert_eq!((read.status, read.request_id.as_deref()), (200, Some(theirs)));

    // None sent, or one unfit for a log line: the daemon makes a UUIDv7 per request.
    gw.set_request_id(None);
    let a = gw.call(Method::GET, &format!("/v1/tasks/{task}"), None).await.unwrap().request_id.unwrap();
    let b = gw.call(Method::GET, &format!("/v1/tasks/{task}"), None).await.unwrap().request_id.unwrap();
    assert!(is_uuid_v7(&a) && is_uuid_v7(&b) && a != b, "{a} {b}");
    for unfit in ["has spaces in it", &"x".repeat(129), "quote\"d"] {
        gw.set_request_id(Some(unfit.to_owned()));
        let got = gw.call(Method::GET, &format!("/v1/tasks/{task}"), None).await.unwrap().request_id.unwrap();
        assert!(is_uuid_v7(&got), "{unfit:?} was answered with {got:?}");
    }
    // A refused request carries its id in the error too (quoted to the operator).
    gw.set_request_id(Some("gw-refused-1".into()));
    let err = gw.json(Method::GET, "/v1/tasks/t_nosuchtask", None).await.unwrap_err();
    match &err {
        mcs_client::transport::Error::Api(e) => assert_eq!(e.request_id.as_deref(), Some("gw-refused-1"), "{e}"),
        other => panic!("{other}"),
    }

    // HEAD is answered like GET, without a body.
    let head = admin.call(Method::HEAD, "/v1/keys", None).await.unwrap();
    assert_eq!((head.status, &head.body), (200, &Value::Null));

    // The audit entry of the creation holds the request id and the peer's address.
    let log = admin.json(Method::GET, "/v1/audit?limit=10000", None).await.unwrap();
    let entry = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "POST /v1/tasks" && e["task_id"] == json!(task))
        .unwrap_or_else(|| panic!("no entry for the creation: {log}"))
        .clone();
    assert_eq!(entry["request_id"], theirs, "{entry}");
    assert_eq!(entry["peer"], "127.0.0.1", "{entry}");
    // Daemon events name no request.
    let started = log["entries"].as_array().unwrap().iter().find(|e| e["event"] == "daemon started").unwrap();
    assert!(started.get("request_id").is_none() && started.get("peer").is_none(), "{started}");

    let (_, log) = daemon.stop();
    let access: Vec<&str> = log.lines().filter(|l| l.contains("mcsd::access")).collect();
    let create = access
        .iter()
        .find(|l| l.contains("POST /v1/tasks ") || l.ends_with("POST /v1/tasks"))
        .unwrap_or_else(|| panic!("no access-log line for the creation:\n{log}"));
    for part in [
        format!("id={theirs}"),
        "peer=127.0.0.1:".into(),
        "route=/v1/tasks".into(),
        "status=201".into(),
        "duration_ms=".into(),
        "role=\"gateway\"".into(),
    ] {
        assert!(create.contains(&part), "{part} missing from the access-log line: {create}");
    }
    let refused = access.iter().find(|l| l.contains("id=gw-refused-1")).expect("the refused request is logged");
    assert!(refused.contains("status=404") && refused.contains("route=/v1/tasks/{id}"), "{refused}");
}

/// Start `mcsd run` with stderr going to a file, as systemd connects it to the journal
/// (`$JOURNAL_STREAM` = the file's device and inode); stop it; the log.
fn run_with_journal_stream(env: &DevEnv) -> String {
    use std::os::unix::fs::MetadataExt;
    let path = env.path().join("stderr.log");
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut child = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .args(["run", "--config"])
        .arg(env.config())
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let started = stdout.lines().map_while(Result::ok).any(|l| l.starts_with("listening on "));
    assert!(started, "mcsd did not start: {}", std::fs::read_to_string(&path).unwrap_or_default());
    // A moment for the start-up lines, then a clean stop (which logs too).
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn lines_for_the_journal_carry_their_priority_and_json_lines_embed_nested_values() {
    let env = DevEnv::new();
    // An adapter that cannot load: an error line, and the node runs degraded.
    env.append_config(
        "\n[[plugins]]\nname = \"gone\"\nlibrary = \"/nonexistent/libgone.so\"\n\n[log]\nformat = \"json\"\n",
    );
    let log = run_with_journal_stream(&env);
    assert!(!log.is_empty());
    let mut seen_error = false;
    for line in log.lines() {
        let (prefix, json) = line.split_at(3);
        let parsed: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
        let level = parsed["level"].as_str().unwrap();
        let want = match level {
            "ERROR" => "<3>",
            "WARN" => "<4>",
            "INFO" => "<6>",
            _ => "<7>",
        };
        assert_eq!(prefix, want, "{line}");
        if level == "ERROR" && json.contains("libgone.so") {
            seen_error = true;
        }
    }
    assert!(seen_error, "the failed adapter is logged as an error:\n{log}");
    // The start-up line listing the adapters that failed carries them as a JSON array.
    let degraded = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l[3..]).unwrap())
        .find(|v| v["fields"]["failed"].is_array())
        .unwrap_or_else(|| panic!("no line with the failed adapters as an array:\n{log}"));
    assert_eq!(degraded["fields"]["failed"], json!(["gone"]), "{degraded}");
    assert_eq!(degraded["level"], "WARN");
    // The loaded adapter's self-description is an object, not a string holding one.
    let loaded = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l[3..]).unwrap())
        .find(|v| v["fields"]["message"] == "CA adapter loaded")
        .unwrap_or_else(|| panic!("no adapter-loaded line:\n{log}"));
    assert!(loaded["fields"]["description"]["name"].is_string(), "{loaded}");
}
