//! The crash test of issue 11 ("Keep them closed"): a bounded `kill -9` loop under mixed
//! load — wrong-PIN signing, scan tasks a gateway creates and a phone completes, operator
//! revocations, enrollments whose activation and certificate request the phone completes —
//! checking after every restart (over the API) and once more in the stopped store that
//!
//! - every acknowledged operation survived: PIN failures still counted (a `pin_locked`
//!   key locked), completed tasks `completed` with their result, claims still claimed,
//!   revoked keys `revoked`, activated keys present and `active` once their certificate
//!   request was acknowledged;
//! - no task is stuck: the phone finishes every interrupted task by repeating the step
//!   whose answer it lost (a claimed task is co-signed again with a fresh nonce, a lost
//!   activation is sent again), and the sweeper moves the abandoned ones to `expired`;
//! - every durable state change has its audit entry: counted PIN failures, claims,
//!   co-signatures, completions, activations, certificate installations and revocations —
//!   acknowledged or not — and `mcsd audit verify` passes.
//!
//! Violations are collected per check and reported together at the end, so one run
//! shows every crash window it hit. Set `MCS_CRASH_SEED` to repeat a run's timings.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::Method;
use mcs_client::gateway;
use mcs_client::phone::{Phone, PreparedActivation, ScanCode, SignMode, fetch_task};
use mcs_client::{Connection, Error};
use mcs_e2e::*;
use mcsd::model::task::TaskResult;
use serde_json::{Value, json};
use sm2_2p::Signature;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `kill -9`s; the daemon is started once more after the last.
const ROUNDS: usize = 10;
/// Load before each kill: a random time in this range.
const LOAD_MS: std::ops::Range<u64> = 300..1500;
/// `[keys] pin_max_attempts`: high enough that the busiest key locks within the run and
/// the quietest does not.
const PIN_LIMIT: u64 = 100;
/// Every task's TTL (gateway tasks and certificate requests): long enough for the retry
/// after a restart, short enough to wait for the sweeper at the end.
const TTL_SECS: u64 = 12;
const SWEEP_SECS: u64 = 1;
const PIN: &str = "123456";
const WRONG_PIN: &str = "999999";
/// Generous bounds, never assertions about speed.
const WAIT: Duration = Duration::from_secs(60);
/// The bound on each round's checks, so a hung request fails the test instead of CI.
const BOUND: Duration = Duration::from_secs(240);

// The checks, as they are reported.
const PIN_LOST: &str = "acknowledged PIN failure not counted";
const PIN_UNAUDITED: &str = "counted PIN failure without its audit entry";
const COMPLETION_LOST: &str = "acknowledged completion lost";
const CLAIM_LOST: &str = "acknowledged claim lost";
const TASK_UNAUDITED: &str = "task transition without its audit entry";
const ACTIVATION_LOST: &str = "acknowledged activation lost";
const ACTIVATION_UNAUDITED: &str = "activation without its audit entry";
const CERT_LOST: &str = "acknowledged certificate request lost";
const CERT_UNAUDITED: &str = "certificate installed without its audit entry";
const REVOCATION_LOST: &str = "acknowledged revocation lost";
const REVOCATION_UNAUDITED: &str = "revocation without its audit entry";
const STUCK: &str = "stuck task (the retry of its lost step was refused)";
const STUCK_ACTIVATION: &str = "stuck activation (the repeated request was refused)";
const NOT_SWEPT: &str = "unfinished task not expired by the sweeper";
const NOT_FINAL: &str = "task not final in the stopped store";
const VERIFY: &str = "mcsd audit verify";
const UNEXPECTED: &str = "unexpected answer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_mixed_load_loses_no_acknowledged_operation_leaves_no_task_stuck_and_audits_every_change() {
    let started = Instant::now();
    // A seed, not a reading of the time.
    #[allow(clippy::disallowed_methods)]
    let seed = std::env::var("MCS_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("MCS_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);

    let env = DevEnv::new();
    env.append_config(&format!(
        "\n[keys]\npin_max_attempts = {PIN_LIMIT}\n\n[tasks]\ndefault_ttl_secs = {TTL_SECS}\nmax_ttl_secs = {TTL_SECS}\nsweep_interval_secs = {SWEEP_SECS}\n"
    ));
    let daemon = Daemon::start(&env);
    // The keys the load uses: wrong-PIN targets on app2, one scanning phone per identity.
    let mut pin_keys = Vec::new();
    for _ in 0..3 {
        let (phone, _) = new_phone(&env, &daemon, "app2", PIN).await;
        pin_keys.push(Arc::new(Phone::unlock(phone.state.clone(), WRONG_PIN).unwrap()));
    }
    let mut scanners = Vec::new();
    for who in PHONES {
        scanners.push(Arc::new(new_phone(&env, &daemon, who, PIN).await.0));
    }
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for k in &pin_keys {
        ledger.lock().unwrap().pins.insert(k.key_id().to_owned(), PinCount::default());
    }
    let rig = Rig { env: &env, pin_keys, scanners };
    let mut audit = AuditIndex::default();
    let mut findings = Findings::default();

    for round in 0..=ROUNDS {
        let daemon = Daemon::start(&env);
        if round > 0 {
            let checked = tokio::time::timeout(
                BOUND,
                check_and_recover(&rig, &daemon, &ledger, &mut audit, &mut findings, round),
            )
            .await;
            assert!(checked.is_ok(), "the checks after kill {round} did not finish within {BOUND:?}");
        }
        if round == ROUNDS {
            let finished = tokio::time::timeout(BOUND, finish(&rig, daemon, &ledger, &mut findings)).await;
            assert!(finished.is_ok(), "the final checks did not finish within {BOUND:?}");
            break;
        }
        let down = Arc::new(AtomicBool::new(false));
        let workers = start_load(&rig, &daemon, &ledger, &down, &mut rng).await;
        tokio::time::sleep(Duration::from_millis(rng.range(LOAD_MS))).await;
        // SIGKILL with requests in flight; then the workers stop at their next request.
        daemon.kill9();
        down.store(true, Ordering::SeqCst);
        let joined = tokio::time::timeout(WAIT, join_all(workers)).await;
        assert!(joined.is_ok(), "round {round}: load workers did not stop within {WAIT:?} of the kill");
        let l = ledger.lock().unwrap();
        println!(
            "round {round}: killed at {:.1}s; acknowledged so far: {}",
            started.elapsed().as_secs_f64(),
            l.summary()
        );
    }
    println!("crash test took {:.1}s", started.elapsed().as_secs_f64());
    findings.assert_none();
}

const PHONES: [&str; 2] = ["app1", "app2"];

/// What the test knows that does not change between rounds.
struct Rig<'a> {
    env: &'a DevEnv,
    /// Phones unlocked with the wrong PIN: every proof they send is a counted failure.
    pin_keys: Vec<Arc<Phone>>,
    /// One scanning phone per identity in [`PHONES`].
    scanners: Vec<Arc<Phone>>,
}

// ---- what was acknowledged -----------------------------------------------------------

#[derive(Default, Clone)]
struct PinCount {
    /// Acknowledged `pin_incorrect` answers.
    incorrect: u64,
    /// The lowest `remaining_attempts` acknowledged.
    min_remaining: Option<u64>,
    /// A `pin_locked` answer was acknowledged.
    locked: bool,
}

/// What a phone knows of a signing task: its last acknowledged step.
#[derive(Clone, Debug)]
enum Step {
    Created,
    Claimed,
    /// The co-signature's answer arrived; the phone holds the finished signature.
    Cosigned(Signature),
    Completed(Signature),
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Created => "created",
            Step::Claimed => "claimed",
            Step::Cosigned(_) => "co-signed",
            Step::Completed(_) => "completed",
        }
    }
}

/// A gateway's `sign` task.
#[derive(Clone)]
struct ScanTask {
    code: ScanCode,
    message: Vec<u8>,
    /// Index into [`PHONES`] / `Rig::scanners`.
    phone: usize,
    step: Step,
    /// Left pending or claimed on purpose: the sweeper must expire it.
    abandoned: bool,
    expires_at: i64,
}

#[derive(Clone)]
enum Onboard {
    /// The enrollment was acknowledged, the activation not (yet).
    Enrolled,
    Activated {
        phone: Arc<Phone>,
        csr: ScanCode,
        step: Step,
    },
}

#[derive(Clone)]
struct Enrollment {
    /// Index into [`PHONES`].
    phone: usize,
    prepared: Arc<PreparedActivation>,
    state: Onboard,
}

#[derive(Default)]
struct Ledger {
    pins: BTreeMap<String, PinCount>,
    tasks: BTreeMap<String, ScanTask>,
    enrollments: Vec<Enrollment>,
    /// Active keys (certificate acknowledged) set aside for the revocation worker.
    revocable: VecDeque<String>,
    revoke_sent: BTreeSet<String>,
    revoked_ack: BTreeSet<String>,
    /// Answers no worker should get (not a dropped connection).
    unexpected: Vec<String>,
}

impl Ledger {
    fn summary(&self) -> String {
        format!(
            "{} pin_incorrect ({} of {} keys answered pin_locked), {} completions, {} activations ({} certificates), {} revocations",
            self.pins.values().map(|p| p.incorrect).sum::<u64>(),
            self.pins.values().filter(|p| p.locked).count(),
            self.pins.len(),
            self.tasks.values().filter(|t| matches!(t.step, Step::Completed(_))).count(),
            self.enrollments.iter().filter(|e| matches!(e.state, Onboard::Activated { .. })).count(),
            self.enrollments
                .iter()
                .filter(|e| matches!(e.state, Onboard::Activated { step: Step::Completed(_), .. }))
                .count(),
            self.revoked_ack.len(),
        )
    }
}

// ---- load ------------------------------------------------------------------------------

async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        if let Err(e) = h.await {
            panic!("a load worker panicked: {e}");
        }
    }
}

fn dropped(e: &Error) -> bool {
    matches!(e, Error::Connect(_))
}

async fn start_load(
    rig: &Rig<'_>,
    daemon: &Daemon,
    ledger: &Arc<Mutex<Ledger>>,
    down: &Arc<AtomicBool>,
    rng: &mut Rng,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut workers = Vec::new();
    // Wrong-PIN signing, weighted so the keys lock at different times (or never).
    for _ in 0..2 {
        let (keys, ledger, down, mut rng) = (rig.pin_keys.clone(), ledger.clone(), down.clone(), rng.fork());
        let mut conn = connect(rig.env, daemon, "app2").await;
        workers.push(tokio::spawn(async move {
            while !down.load(Ordering::SeqCst) {
                let k = &keys[[0, 0, 0, 0, 0, 0, 1, 1, 1, 2][rng.below(10) as usize]];
                let out = k.sign_message(&mut conn, b"a guess", SignMode::Canonical).await;
                let mut l = ledger.lock().unwrap();
                match out {
                    Err(Error::Api(e)) if e.code == "pin_incorrect" => {
                        let p = l.pins.get_mut(k.key_id()).unwrap();
                        p.incorrect += 1;
                        let left = e.extra["remaining_attempts"].as_u64().unwrap_or(u64::MAX);
                        p.min_remaining = Some(p.min_remaining.map_or(left, |m| m.min(left)));
                    }
                    Err(Error::Api(e)) if e.code == "pin_locked" => l.pins.get_mut(k.key_id()).unwrap().locked = true,
                    Err(e) if dropped(&e) => return,
                    other => l.unexpected.push(format!("wrong PIN on {}: {:?}", k.key_id(), other.map(|_| "signed"))),
                }
            }
        }));
    }
    // Scan tasks: a gateway creates, a phone claims, co-signs and completes; one in ten
    // is left pending or claimed for the sweeper.
    for (i, who) in PHONES.iter().enumerate() {
        let (phone, ledger, down, mut rng) = (rig.scanners[i].clone(), ledger.clone(), down.clone(), rng.fork());
        let mut gw = connect(rig.env, daemon, "gateway").await;
        let mut app = connect(rig.env, daemon, who).await;
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !down.load(Ordering::SeqCst) {
                n += 1;
                let message = format!("crash test {i}-{}-{n}", rng.next()).into_bytes();
                let created = match gateway::create_task(
                    &mut gw,
                    "sign",
                    "crash test",
                    json!({"message": B64.encode(&message)}),
                    Some(TTL_SECS),
                    None,
                )
                .await
                {
                    Ok(v) => v,
                    Err(e) if dropped(&e) => return,
                    Err(e) => {
                        ledger.lock().unwrap().unexpected.push(format!("create task: {e}"));
                        continue;
                    }
                };
                let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
                let abandon = match rng.below(20) {
                    0 => Some(Step::Created),
                    1 => Some(Step::Claimed),
                    _ => None,
                };
                let id = code.task_id.clone();
                ledger.lock().unwrap().tasks.insert(
                    id.clone(),
                    ScanTask {
                        code: code.clone(),
                        message: message.clone(),
                        phone: i,
                        step: Step::Created,
                        abandoned: abandon.is_some(),
                        expires_at: unix(created["expires_at"].as_str().unwrap()),
                    },
                );
                if matches!(abandon, Some(Step::Created)) {
                    continue;
                }
                let e = sm2_2p::e_for_message(phone.public_key(), &message);
                let until = if abandon.is_some() { Stop::AfterClaim } else { Stop::Completed };
                let out = drive(&phone, &mut app, &code, &e, Step::Created, until, |s| {
                    ledger.lock().unwrap().tasks.get_mut(&id).unwrap().step = s;
                })
                .await;
                match out {
                    Ok(_) => {}
                    Err(e) if dropped(&e) => return,
                    Err(e) => ledger.lock().unwrap().unexpected.push(format!("task {id}: {e}")),
                }
            }
        }));
    }
    // Revocations of keys whose certificate was acknowledged.
    {
        let (ledger, down) = (ledger.clone(), down.clone());
        let mut admin = connect(rig.env, daemon, "admin").await;
        workers.push(tokio::spawn(async move {
            while !down.load(Ordering::SeqCst) {
                let next = {
                    let mut l = ledger.lock().unwrap();
                    let k = l.revocable.pop_front();
                    if let Some(k) = &k {
                        l.revoke_sent.insert(k.clone());
                    }
                    k
                };
                let Some(key_id) = next else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let out = mcs_client::admin::revoke(&mut admin, &key_id, "key_compromise").await;
                let mut l = ledger.lock().unwrap();
                match out {
                    Ok(v) if v["status"] == "revoked" => {
                        l.revoked_ack.insert(key_id);
                    }
                    Err(e) if dropped(&e) => return,
                    other => l.unexpected.push(format!("revoke {key_id}: {other:?}")),
                }
            }
        }));
    }
    // Enrollment, activation, certificate request.
    for _ in 0..2 {
        let (ledger, down, mut rng) = (ledger.clone(), down.clone(), rng.fork());
        let mut admin = connect(rig.env, daemon, "admin").await;
        let mut apps = Vec::new();
        for who in PHONES {
            apps.push(connect(rig.env, daemon, who).await);
        }
        let server = format!("https://{}", daemon.api);
        workers.push(tokio::spawn(async move {
            while !down.load(Ordering::SeqCst) {
                let i = rng.below(2) as usize;
                let (id, code) = match mcs_client::admin::create_enrollment(&mut admin, &enrollment_request()).await {
                    Ok(v) => (
                        v["enrollment_id"].as_str().unwrap().to_owned(),
                        v["activation_code"].as_str().unwrap().to_owned(),
                    ),
                    Err(e) if dropped(&e) => return,
                    Err(e) => {
                        ledger.lock().unwrap().unexpected.push(format!("enrollment: {e}"));
                        continue;
                    }
                };
                let prepared = Arc::new(Phone::prepare_activation(&server, &id, &code, PIN).unwrap());
                let n = {
                    let mut l = ledger.lock().unwrap();
                    l.enrollments.push(Enrollment { phone: i, prepared: prepared.clone(), state: Onboard::Enrolled });
                    l.enrollments.len() - 1
                };
                match onboard(&ledger, n, &prepared, &mut apps[i], &mut rng).await {
                    Ok(()) => {}
                    Err(e) if dropped(&e) => return,
                    Err(e) => ledger.lock().unwrap().unexpected.push(format!("enrollment {id}: {e}")),
                }
            }
        }));
    }
    workers
}

/// Activate enrollment `n` and complete its certificate request, recording every step.
async fn onboard(
    ledger: &Mutex<Ledger>,
    n: usize,
    prepared: &PreparedActivation,
    app: &mut Connection,
    rng: &mut Rng,
) -> Result<(), Error> {
    let (phone, csr) = prepared.send(app).await?;
    let phone = Arc::new(phone);
    let csr = csr.ok_or_else(|| Error::Protocol("activation answered without a csr_task".into()))?;
    ledger.lock().unwrap().enrollments[n].state =
        Onboard::Activated { phone: phone.clone(), csr: csr.clone(), step: Step::Created };
    certificate_request(ledger, n, &phone, app, &csr, Step::Created, rng).await
}

/// Drive enrollment `n`'s certificate request from `from`; an acknowledged certificate
/// puts the key, every other time, in the revocation queue.
async fn certificate_request(
    ledger: &Mutex<Ledger>,
    n: usize,
    phone: &Phone,
    app: &mut Connection,
    csr: &ScanCode,
    from: Step,
    rng: &mut Rng,
) -> Result<(), Error> {
    let view = fetch_task(app, csr).await?;
    let info = B64
        .decode(view["data"]["request_info"].as_str().unwrap_or_default())
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let spki = sm2_2p::spki_der(phone.public_key());
    if !info.windows(spki.len()).any(|w| w == spki.as_slice()) {
        return Err(Error::Protocol("the certificate request is not for this key".into()));
    }
    let e = sm2_2p::e_for_message(phone.public_key(), &info);
    let revoke = rng.below(2) == 0;
    drive(phone, app, csr, &e, from, Stop::Completed, |s| {
        let mut l = ledger.lock().unwrap();
        let done = matches!(s, Step::Completed(_));
        if let Onboard::Activated { step, .. } = &mut l.enrollments[n].state {
            *step = s;
        }
        if done && revoke {
            l.revocable.push_back(phone.key_id().to_owned());
        }
    })
    .await
}

#[derive(PartialEq)]
enum Stop {
    AfterClaim,
    Completed,
}

/// Take a signing task from the phone's last acknowledged step `from` towards `until`,
/// calling `ack` after every acknowledged step.
async fn drive(
    phone: &Phone,
    conn: &mut Connection,
    code: &ScanCode,
    e: &[u8; 32],
    from: Step,
    until: Stop,
    mut ack: impl FnMut(Step),
) -> Result<(), Error> {
    let mut step = from;
    loop {
        step = match step {
            Step::Created => {
                let claimed = phone.claim(conn, code).await?;
                if claimed["e"].as_str() != Some(hex::encode(e).as_str()) {
                    return Err(Error::Protocol(format!("claim answered {claimed}, not the digest of the shown data")));
                }
                Step::Claimed
            }
            Step::Claimed if until == Stop::AfterClaim => return Ok(()),
            Step::Claimed => Step::Cosigned(phone.cosign(conn, code, e).await?),
            Step::Cosigned(sig) => {
                phone.complete_signature(conn, code, &sig).await?;
                Step::Completed(sig)
            }
            Step::Completed(_) => return Ok(()),
        };
        ack(step.clone());
    }
}

fn enrollment_request() -> mcs_client::admin::EnrollmentRequest {
    mcs_client::admin::EnrollmentRequest {
        subject: mcs_client::admin::Subject {
            kind: mcs_client::admin::SubjectKind::Person,
            name: "Crash Test".into(),
            org_name: None,
            credit_code: None,
            id_number: None,
        },
        ca: "local".into(),
        profile: None,
        platforms: vec!["P-DEV-1".into()],
        validity_days: 365,
    }
}

// ---- the audit chain, indexed ----------------------------------------------------------

const CLAIM: &str = "POST /v1/tasks/{id}/claim";
const COSIGN: &str = "POST /v1/tasks/{id}/cosign";
const COMPLETE: &str = "POST /v1/tasks/{id}/complete";
const REVOKE: &str = "POST /v1/keys/{id}/revoke";
const ACTIVATE: &str = "POST /v1/enrollments/{id}/activate";

#[derive(Default)]
struct AuditIndex {
    /// (event, task id) of every task request that succeeded.
    task_ok: BTreeSet<(String, String)>,
    /// Keys with a successful revocation entry.
    revoked: BTreeSet<String>,
    /// Enrollments with a successful activation entry.
    activated: BTreeSet<String>,
    /// Key id → entries with outcome (`pin_incorrect`, `pin_locked`).
    pin: BTreeMap<String, (u64, u64)>,
    /// The next sequence number to read.
    next: u64,
}

impl AuditIndex {
    fn add(&mut self, event: &str, key_id: Option<&str>, task_id: Option<&str>, outcome: &str, detail: &Value) {
        if let Some(k) = key_id {
            let p = self.pin.entry(k.to_owned()).or_default();
            match outcome {
                "pin_incorrect" => p.0 += 1,
                "pin_locked" => p.1 += 1,
                _ => {}
            }
        }
        if outcome != "ok" {
            return;
        }
        match event {
            CLAIM | COSIGN | COMPLETE => {
                if let Some(t) = task_id {
                    self.task_ok.insert((event.to_owned(), t.to_owned()));
                }
            }
            REVOKE => {
                if let Some(k) = key_id {
                    self.revoked.insert(k.to_owned());
                }
            }
            ACTIVATE => {
                if let Some(id) = detail["enrollment_id"].as_str() {
                    self.activated.insert(id.to_owned());
                }
            }
            _ => {}
        }
    }

    fn has(&self, event: &str, task_id: &str) -> bool {
        self.task_ok.contains(&(event.to_owned(), task_id.to_owned()))
    }

    fn pin_entries(&self, key_id: &str) -> (u64, u64) {
        self.pin.get(key_id).copied().unwrap_or_default()
    }

    /// Read the entries the daemon appended since the last call (`GET /v1/audit` as admin).
    async fn refresh(&mut self, admin: &mut Connection) {
        loop {
            let page = admin
                .json(Method::GET, &format!("/v1/audit?since={}&limit=10000", self.next), None)
                .await
                .expect("GET /v1/audit");
            let entries = page["entries"].as_array().expect("entries");
            for e in entries {
                self.add(
                    e["event"].as_str().unwrap_or(""),
                    e["key_id"].as_str(),
                    e["task_id"].as_str(),
                    e["outcome"].as_str().unwrap_or(""),
                    &e["detail"],
                );
                self.next = e["seq"].as_u64().expect("seq") + 1;
            }
            if entries.len() < 10000 {
                return;
            }
        }
    }
}

// ---- checks ----------------------------------------------------------------------------

/// Violations per check. The per-round checks are cumulative, so a violation seen after
/// one kill is seen after every later one too: it is reported once per record (the task,
/// key or enrollment id it names) and phase (the rounds, the stopped store), first and
/// last sighting.
#[derive(Default)]
struct Findings(BTreeMap<&'static str, BTreeMap<(String, String), Sighting>>);

struct Sighting {
    first: String,
    last: String,
    times: usize,
}

impl Findings {
    /// `what` is `"<where>: <what>"` and names the record first.
    fn fail(&mut self, check: &'static str, what: String) {
        let place = what.split_once(": ").map_or("", |(p, _)| p);
        let phase = if place.starts_with("after kill") { "rounds" } else { place }.to_owned();
        let record = what
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| {
                w.split_once('_')
                    .is_some_and(|(a, b)| !a.is_empty() && b.len() >= 8 && b.bytes().all(|c| c.is_ascii_hexdigit()))
            })
            .unwrap_or(&what)
            .to_owned();
        let seen = self.0.entry(check).or_default().entry((phase, record)).or_insert_with(|| Sighting {
            first: what.clone(),
            last: String::new(),
            times: 0,
        });
        seen.times += 1;
        seen.last = what;
    }

    fn check(&mut self, ok: bool, check: &'static str, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(check, what());
        }
    }

    fn assert_none(&self) {
        if self.0.is_empty() {
            println!("every check held");
            return;
        }
        let mut report = String::new();
        for (check, items) in &self.0 {
            report.push_str(&format!("\n{check}: {} case(s)", items.len()));
            for s in items.values().take(40) {
                report.push_str(&format!("\n    {}", s.first));
                if s.times > 1 {
                    report.push_str(&format!("\n        (seen {} times; last {})", s.times, s.last));
                }
            }
            if items.len() > 40 {
                report.push_str(&format!("\n    … and {} more", items.len() - 40));
            }
        }
        panic!("the crash test found violations:{report}");
    }
}

/// A key's PIN counter against what was acknowledged and what the chain holds (per
/// round over the API, and offline).
fn check_pin(
    f: &mut Findings,
    at: &str,
    key_id: &str,
    acked: &PinCount,
    failures: u64,
    locked: bool,
    audit: &AuditIndex,
) {
    let remaining = PIN_LIMIT.saturating_sub(failures);
    f.check(!acked.locked || locked, PIN_LOST, || format!("{at}: {key_id} answered pin_locked but is not locked"));
    f.check(failures >= acked.incorrect, PIN_LOST, || {
        format!("{at}: {key_id}: {} pin_incorrect acknowledged, {failures} failures counted", acked.incorrect)
    });
    f.check(acked.min_remaining.is_none_or(|m| remaining <= m), PIN_LOST, || {
        format!("{at}: {key_id}: remaining_attempts {remaining}, but {} was acknowledged", acked.min_remaining.unwrap())
    });
    // Every counted failure answers pin_incorrect except the one that locks (pin_locked).
    let (incorrect, locked_entries) = audit.pin_entries(key_id);
    let want = failures - u64::from(locked && failures > 0);
    f.check(incorrect >= want && (!locked || locked_entries >= 1), PIN_UNAUDITED, || {
        format!("{at}: {key_id}: {failures} failures counted (locked: {locked}), audit has {incorrect} pin_incorrect and {locked_entries} pin_locked")
    });
}

/// A task's durable state: was it claimed, co-signed, completed — and did each of those
/// requests leave its entry? Offline, the `record` also shows a claim or a co-signature
/// reservation that did not lead to completion.
fn check_task_audit(
    f: &mut Findings,
    at: &str,
    task_id: &str,
    status: &str,
    record: Option<&mcsd::model::task::TaskRecord>,
    audit: &AuditIndex,
) {
    let cosigned = record.map(|t| t.cosigned);
    let mut need = Vec::new();
    if status == "claimed" || status == "completed" || record.is_some_and(|t| t.key_id.is_some()) {
        need.push(CLAIM);
    }
    if status == "completed" || cosigned == Some(true) {
        need.push(COSIGN);
    }
    if status == "completed" {
        need.push(COMPLETE);
    }
    for event in need {
        f.check(audit.has(event, task_id), TASK_UNAUDITED, || {
            format!(
                "{at}: {task_id} is {status}{} but has no `{event}` ok entry",
                if cosigned == Some(true) { " (co-signed)" } else { "" }
            )
        });
    }
}

async fn check_and_recover(
    rig: &Rig<'_>,
    daemon: &Daemon,
    ledger: &Mutex<Ledger>,
    audit: &mut AuditIndex,
    f: &mut Findings,
    round: usize,
) {
    let at = format!("after kill {round}");
    let env = rig.env;
    let mut admin = connect(env, daemon, "admin").await;
    let mut gw = connect(env, daemon, "gateway").await;
    let mut apps = Vec::new();
    for who in PHONES {
        apps.push(connect(env, daemon, who).await);
    }
    audit.refresh(&mut admin).await;
    for u in std::mem::take(&mut ledger.lock().unwrap().unexpected) {
        f.fail(UNEXPECTED, format!("before kill {round}: {u}"));
    }

    // PIN failures.
    let pins = ledger.lock().unwrap().pins.clone();
    for (key_id, acked) in &pins {
        let key = mcs_client::admin::get_key(&mut admin, key_id).await.expect("GET key");
        let remaining = key["pin"]["remaining_attempts"].as_u64().expect("remaining_attempts");
        let locked = key["pin"]["locked"].as_bool().expect("locked");
        check_pin(f, &at, key_id, acked, PIN_LIMIT - remaining, locked, audit);
    }

    // Gateway tasks: acknowledged completions survived; every durable transition is in the
    // chain; the interrupted ones are retried.
    let tasks = ledger.lock().unwrap().tasks.clone();
    let mut retry = Vec::new();
    for (id, ScanTask { code, message, phone, step, abandoned, expires_at }) in tasks {
        let view = gateway::task(&mut gw, &id).await.unwrap_or_else(|e| panic!("GET task {id}: {e}"));
        let status = view["status"].as_str().unwrap().to_owned();
        check_task_audit(f, &at, &id, &status, None, audit);
        match (&step, status.as_str()) {
            (_, "completed") => {
                let out = gateway::result(&mut gw, &id, 0).await.expect("task result");
                let sig = out["result"]["signature"]
                    .as_str()
                    .and_then(|s| B64.decode(s).ok())
                    .and_then(|d| Signature::from_der(&d).ok());
                let public = rig.scanners[phone].public_key();
                f.check(
                    sig.is_some_and(|s| sm2_2p::verify(public, &sm2_2p::e_for_message(public, &message), &s)),
                    COMPLETION_LOST,
                    || format!("{at}: {id} is completed but its result is not a valid signature: {out}"),
                );
                if let Step::Completed(mine) = &step {
                    f.check(sig == Some(*mine), COMPLETION_LOST, || {
                        format!("{at}: {id}: the result is not the acknowledged signature")
                    });
                }
            }
            (Step::Completed(_), other) => {
                f.fail(COMPLETION_LOST, format!("{at}: {id}: completion acknowledged, task is {other}"))
            }
            (Step::Claimed | Step::Cosigned(_), "pending") => {
                f.fail(CLAIM_LOST, format!("{at}: {id}: claim acknowledged, task is pending"))
            }
            (_, "pending" | "claimed") if !abandoned => {
                retry.push((id, code, message, phone, step, status, expires_at))
            }
            (_, "pending" | "claimed") => {}
            (_, "expired") if abandoned || now() >= expires_at => {}
            (_, other) => f.fail(UNEXPECTED, format!("{at}: {id} ({} acknowledged) is {other}: {view}", step.name())),
        }
    }

    // Activations and certificate requests.
    let enrollments = ledger.lock().unwrap().enrollments.clone();
    let (sent, revoked_ack) = {
        let l = ledger.lock().unwrap();
        (l.revoke_sent.clone(), l.revoked_ack.clone())
    };
    let mut reactivate = Vec::new();
    let mut csr_retry = Vec::new();
    for (n, Enrollment { phone: who, prepared, state }) in enrollments.into_iter().enumerate() {
        let Onboard::Activated { phone, csr, step } = state else {
            reactivate.push((n, who, prepared));
            continue;
        };
        let key_id = phone.key_id().to_owned();
        let eid = prepared.enrollment_id();
        f.check(audit.activated.contains(eid), ACTIVATION_UNAUDITED, || {
            format!("{at}: enrollment {eid} (key {key_id}) has no `{ACTIVATE}` ok entry")
        });
        let key = match mcs_client::admin::get_key(&mut admin, &key_id).await {
            Ok(k) => k,
            Err(e) => {
                f.fail(ACTIVATION_LOST, format!("{at}: key {key_id} of acknowledged activation {eid}: {e}"));
                continue;
            }
        };
        let status = key["status"].as_str().unwrap_or("").to_owned();
        let task = fetch_task(&mut apps[who], &csr).await;
        let task_status = match &task {
            Ok(v) => v["status"].as_str().unwrap_or("").to_owned(),
            Err(e) if e.code() == Some("task_expired") => "expired".to_owned(),
            Err(e) => panic!("GET csr task {}: {e}", csr.task_id),
        };
        check_task_audit(f, &at, &csr.task_id, &task_status, None, audit);
        if status != "pending" {
            // The certificate was installed: that request is a durable change of its own.
            f.check(audit.has(COMPLETE, &csr.task_id), CERT_UNAUDITED, || {
                format!("{at}: key {key_id} is {status} (certificate installed) but its request {} has no `{COMPLETE}` ok entry (task is {task_status})", csr.task_id)
            });
        }
        if matches!(step, Step::Completed(_)) {
            let want: &[&str] = if revoked_ack.contains(&key_id) {
                &["revoked"]
            } else if sent.contains(&key_id) {
                &["active", "revoked"]
            } else {
                &["active"]
            };
            f.check(want.contains(&status.as_str()) && task_status == "completed", CERT_LOST, || {
                format!("{at}: key {key_id}: certificate request acknowledged; key is {status}, request {} is {task_status}", csr.task_id)
            });
        } else if task_status != "completed" && !(task_status == "expired" && status != "pending") {
            csr_retry.push((n, who, prepared.clone(), phone, csr, step, task_status));
        }
        if revoked_ack.contains(&key_id) {
            f.check(status == "revoked", REVOCATION_LOST, || {
                format!("{at}: revocation of {key_id} acknowledged, key is {status}")
            });
        }
        if status == "revoked" {
            f.check(audit.revoked.contains(&key_id), REVOCATION_UNAUDITED, || {
                format!("{at}: {key_id} is revoked but has no `{REVOKE}` ok entry")
            });
        }
    }

    // No task is stuck: the phone repeats the step whose answer it lost.
    for (id, code, message, phone, step, status, expires_at) in retry {
        let scanner = rig.scanners[phone].clone();
        let e = sm2_2p::e_for_message(scanner.public_key(), &message);
        let from = match (&step, status.as_str()) {
            (_, "pending") => Step::Created,
            (Step::Cosigned(sig), _) => Step::Cosigned(*sig),
            _ => Step::Claimed,
        };
        let out = drive(&scanner, &mut apps[phone], &code, &e, from.clone(), Stop::Completed, |s| {
            ledger.lock().unwrap().tasks.get_mut(&id).unwrap().step = s;
        })
        .await;
        match out {
            Ok(()) => {}
            Err(err) if err.code() == Some("task_expired") && now() >= expires_at => {}
            Err(err) => f.fail(
                STUCK,
                format!(
                    "{at}: sign task {id} was {status} (phone had: {}); retrying from {}: {err}",
                    step.name(),
                    from.name()
                ),
            ),
        }
    }
    for (n, who, prepared, phone, csr, step, status) in csr_retry {
        let from = match (&step, status.as_str()) {
            (_, "pending") => Step::Created,
            (Step::Cosigned(sig), _) => Step::Cosigned(*sig),
            _ => Step::Claimed,
        };
        let mut out = Err(Error::Protocol("the request expired".into()));
        if status != "expired" {
            out = certificate_request(ledger, n, &phone, &mut apps[who], &csr, from.clone(), &mut Rng::new(n as u64))
                .await;
        }
        // Past its TTL the request is gone; a phone whose key is still pending repeats its
        // activation and gets a new one.
        if out.as_ref().is_err_and(|e| status == "expired" || e.code() == Some("task_expired")) {
            reactivate.push((n, who, prepared));
            continue;
        }
        if let Err(err) = out {
            let key = mcs_client::admin::get_key(&mut admin, phone.key_id())
                .await
                .map(|k| k["status"].clone())
                .unwrap_or_default();
            f.fail(STUCK, format!("{at}: certificate request {} of key {} (key {key}) was {status} (phone had: {}); retrying from {}: {err}", csr.task_id, phone.key_id(), step.name(), from.name()));
        }
    }
    for (n, who, prepared) in reactivate {
        let before = match &ledger.lock().unwrap().enrollments[n].state {
            Onboard::Activated { phone, .. } => Some(phone.key_id().to_owned()),
            Onboard::Enrolled => None,
        };
        let out = async {
            let (phone, csr) = prepared.send(&mut apps[who]).await?;
            if before.as_ref().is_some_and(|k| k != phone.key_id()) {
                return Err(Error::Protocol(format!(
                    "the repeated activation answered key {}, not {}",
                    phone.key_id(),
                    before.as_ref().unwrap()
                )));
            }
            let phone = Arc::new(phone);
            let csr = csr.ok_or_else(|| Error::Protocol("no csr_task".into()))?;
            ledger.lock().unwrap().enrollments[n].state =
                Onboard::Activated { phone: phone.clone(), csr: csr.clone(), step: Step::Created };
            certificate_request(ledger, n, &phone, &mut apps[who], &csr, Step::Created, &mut Rng::new(n as u64)).await
        }
        .await;
        if let Err(err) = out {
            f.fail(
                STUCK_ACTIVATION,
                format!(
                    "{at}: enrollment {}: repeating the activation and its certificate request: {err}",
                    prepared.enrollment_id()
                ),
            );
        }
    }
}

/// After the last restart: wait for the sweeper, stop cleanly, verify the chain, and check
/// everything again in the stopped store — including changes no one acknowledged.
async fn finish(rig: &Rig<'_>, daemon: Daemon, ledger: &Mutex<Ledger>, f: &mut Findings) {
    let env = rig.env;
    // Every task was created before now, so by now + TTL + a few sweeps the sweeper has
    // expired whatever is unfinished.
    tokio::time::sleep(Duration::from_secs(TTL_SECS + 3 * SWEEP_SECS)).await;
    let mut gw = connect(env, &daemon, "gateway").await;
    let unfinished: Vec<(String, bool)> = ledger
        .lock()
        .unwrap()
        .tasks
        .iter()
        .filter(|(_, t)| !matches!(t.step, Step::Completed(_)))
        .map(|(id, t)| (id.clone(), t.abandoned))
        .collect();
    let deadline = Instant::now() + WAIT;
    for (id, abandoned) in unfinished {
        let status = loop {
            let status = gateway::task(&mut gw, &id).await.expect("GET task")["status"].as_str().unwrap().to_owned();
            if !["pending", "claimed"].contains(&status.as_str()) || Instant::now() >= deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        f.check(!abandoned || status == "expired", NOT_SWEPT, || {
            format!("after its TTL: abandoned task {id} is {status}")
        });
        f.check(status != "pending" && status != "claimed", NOT_SWEPT, || {
            format!("after its TTL: task {id} is still {status}")
        });
    }
    drop(gw);
    let (status, log) = daemon.stop();
    assert!(status.success(), "clean stop: {status:?}\n{log}");

    let out = std::process::Command::new(bin("mcsd"))
        .args(["audit", "verify", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{}", text.trim());
    f.check(out.status.success() && text.contains("audit chain intact"), VERIFY, || {
        format!("stopped store: {}", text.trim())
    });

    // Offline: the stopped store, every record in it.
    let store: Box<dyn mcsd::store::Storage> =
        Box::new(mcsd::store::Store::open(&env.db()).expect("open the stopped store"));
    let mut offline = AuditIndex::default();
    for item in store.audit_entries(0) {
        let (seq, e) = item.expect("audit entry");
        offline.add(&e.event, e.key_id.as_deref(), e.task_id.as_deref(), &e.outcome, &e.detail);
        offline.next = seq + 1;
    }
    let at = "stopped store";
    let tasks: BTreeMap<String, mcsd::model::task::TaskRecord> =
        store.tasks().expect("tasks").into_iter().map(|t| (t.id.clone(), t)).collect();
    for t in tasks.values() {
        let status = mcsd::tasks::status_str(t.status);
        f.check(t.status.is_final(), NOT_FINAL, || {
            format!("{at}: {} ({}) is {status}, expired at {}", t.id, mcsd::tasks::kind_str(t.kind), t.expires_at)
        });
        check_task_audit(f, at, &t.id, status, Some(t), &offline);
    }
    let keys = store.keys_matching(|_| true).expect("keys");
    let l = ledger.lock().unwrap();
    for k in &keys {
        use mcsd::model::key::KeyStatus;
        f.check(offline.activated.contains(&k.enrollment_id), ACTIVATION_UNAUDITED, || {
            format!("{at}: key {} (enrollment {}) has no `{ACTIVATE}` ok entry", k.id, k.enrollment_id)
        });
        if k.status == KeyStatus::Revoked {
            f.check(offline.revoked.contains(&k.id), REVOCATION_UNAUDITED, || {
                format!("{at}: {} is revoked but has no `{REVOKE}` ok entry", k.id)
            });
        }
        if k.certificate.is_some() {
            let csr: Vec<&mcsd::model::task::TaskRecord> = tasks
                .values()
                .filter(|t| matches!(&t.data, mcsd::model::task::TaskData::Csr { key_id, .. } if key_id == &k.id))
                .collect();
            f.check(csr.iter().any(|t| offline.has(COMPLETE, &t.id)), CERT_UNAUDITED, || {
                let states: Vec<String> =
                    csr.iter().map(|t| format!("{} {}", t.id, mcsd::tasks::status_str(t.status))).collect();
                format!(
                    "{at}: key {} has a certificate but none of its requests ({}) has a `{COMPLETE}` ok entry",
                    k.id,
                    states.join(", ")
                )
            });
        }
        if k.pin.failures > 0 || k.pin.locked || l.pins.contains_key(&k.id) {
            check_pin(
                f,
                at,
                &k.id,
                &l.pins.get(&k.id).cloned().unwrap_or_default(),
                u64::from(k.pin.failures),
                k.pin.locked,
                &offline,
            );
        }
    }
    let by_id: BTreeMap<&str, &mcsd::model::key::KeyRecord> = keys.iter().map(|k| (k.id.as_str(), k)).collect();
    for (id, t) in &l.tasks {
        if let Step::Completed(sig) = &t.step {
            let rec = tasks.get(id);
            let stored = rec
                .and_then(|r| r.result.as_ref())
                .and_then(|r| match r {
                    TaskResult::Login { signature, .. } | TaskResult::Sign { signature, .. } => {
                        Some(signature.as_str())
                    }
                    _ => None,
                })
                .and_then(|s| B64.decode(s).ok());
            f.check(
                rec.is_some_and(|r| r.status == mcsd::model::task::TaskStatus::Completed)
                    && stored == Some(sig.to_der()),
                COMPLETION_LOST,
                || format!("{at}: {id}: completion acknowledged; record: {:?}", rec.map(|r| (r.status, &r.result))),
            );
        }
    }
    for e in &l.enrollments {
        if let Onboard::Activated { phone, step, .. } = &e.state {
            let k = by_id.get(phone.key_id());
            f.check(k.is_some(), ACTIVATION_LOST, || {
                format!(
                    "{at}: key {} of acknowledged activation {} is missing",
                    phone.key_id(),
                    e.prepared.enrollment_id()
                )
            });
            if let (Some(k), Step::Completed(_)) = (k, step) {
                f.check(k.certificate.is_some() && k.status != mcsd::model::key::KeyStatus::Pending, CERT_LOST, || {
                    format!("{at}: {}: certificate acknowledged; key is {:?}", k.id, k.status)
                });
            }
        }
    }
    for key_id in &l.revoked_ack {
        let status = by_id.get(key_id.as_str()).map(|k| k.status);
        f.check(status == Some(mcsd::model::key::KeyStatus::Revoked), REVOCATION_LOST, || {
            format!("{at}: revocation of {key_id} acknowledged; key is {status:?}")
        });
    }
    println!(
        "stopped store: {} tasks, {} keys, {} audit entries; acknowledged: {}",
        tasks.len(),
        keys.len(),
        offline.next,
        l.summary()
    );
}

// ---- small helpers -----------------------------------------------------------------------

fn now() -> i64 {
    mcsd::clock::now()
}

fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time")
        .unix_timestamp()
}

/// xorshift64*: timings that vary from run to run but can be repeated with the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, r: std::ops::Range<u64>) -> u64 {
        r.start + self.below(r.end - r.start)
    }

    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}
