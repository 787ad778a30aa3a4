//! Unit tests of the task state machine: every transition of the diagram in `tasks/mod.rs`,
//! and the refusals that keep it one-way, on a real sled store with the in-memory HSM, the
//! local CA in process and a fake clock (expiry and retention are reached by moving it).

use std::sync::Arc;
use std::time::Duration;

use sm2_2p::{AffinePoint, Signature, Transcript};

use super::{Claimed, CreatedTask, NewTask, NewTaskData, TaskError, TaskService};
use crate::audit::{Audit, RequestEntry};
use crate::config::AuditConfig;
use crate::daemon_keys::DaemonKeys;
use crate::keys::testing::{Keys, PLATFORM, Phone};
use crate::keys::{Actor, KeyError, SignMode};
use crate::model::key::KeyStatus;
use crate::model::task::{TaskDisplay, TaskKind, TaskRecord, TaskStatus};
use crate::plugins::ca::{CaAdapter, StatusRequest};
use crate::seals::SealService;

const PIN: &str = "123456";

struct Fixture {
    k: Keys,
    tasks: Arc<TaskService>,
}

/// A nonce the phone keeps, and its point.
struct Cosigned {
    k1: sm2_2p::Nonce,
    response: sm2_2p::SignResponse,
}

impl Fixture {
    fn new() -> Fixture {
        let k = Keys::new("");
        let daemon_keys = || DaemonKeys::new(k.store.clone(), k.hsm.clone(), k.clock());
        let audit = Arc::new(Audit::open(k.store.clone(), daemon_keys(), AuditConfig::default(), k.clock()).unwrap());
        let seals = Arc::new(SealService::new(
            k.store.clone(),
            k.keys.clone(),
            k.ca.clone(),
            daemon_keys(),
            k.cfg.seals.clone(),
            k.clock(),
        ));
        let tasks = Arc::new(TaskService::new(
            k.store.clone(),
            k.hsm.clone(),
            k.keys.clone(),
            k.ca.clone(),
            seals,
            audit,
            k.cfg.tasks.clone(),
            k.clock(),
        ));
        Fixture { k, tasks }
    }

    /// A phone whose key became active the way every key does: through its `csr` task.
    async fn phone(&self, device: &str) -> Phone {
        let phone = self.k.phone(device, PIN).await;
        let created = self.tasks.create_csr_task(&self.k.key(&phone.key_id)).await.unwrap();
        self.sign_through(&phone, &created).await.unwrap();
        phone
    }

    async fn login_task(&self, ttl_secs: u64) -> CreatedTask {
        let req = NewTask {
            ttl_secs: Some(ttl_secs),
            display: TaskDisplay { title: "Log in".into(), detail: None },
            data: NewTaskData::Login { challenge: b"challenge".to_vec() },
            callback_url: None,
            to_key_id: None,
        };
        self.tasks.create(PLATFORM, req).await.unwrap()
    }

    fn task(&self, id: &str) -> TaskRecord {
        self.k.store.task(id).unwrap().expect("task")
    }

    async fn claim(&self, phone: &Phone, t: &CreatedTask) -> Result<Claimed, TaskError> {
        self.tasks.claim(&t.task_id, &t.token, &phone.key_id, &phone.device).await
    }

    /// Co-sign with the nonce point `q1` (fresh if `None`).
    async fn cosign_with(
        &self,
        phone: &Phone,
        t: &CreatedTask,
        nonce: Option<(sm2_2p::Nonce, AffinePoint)>,
    ) -> Result<Cosigned, TaskError> {
        let (k1, q1) = nonce.unwrap_or_else(sm2_2p::ClientShare::sign_start);
        let q1_hex = sm2_2p::point_to_hex(&q1);
        let proof = phone.proof(&Transcript::TaskSign { task_id: t.task_id.clone(), q1: q1_hex.clone() });
        let out = self
            .tasks
            .cosign_sign(&t.task_id, &t.token, &phone.device, q1, &q1_hex, SignMode::Canonical, &proof)
            .await?;
        let crate::keys::SignOutput::Canonical(response) = out else { panic!("canonical asked") };
        Ok(Cosigned { k1, response })
    }

    async fn cosign(&self, phone: &Phone, t: &CreatedTask) -> Result<Cosigned, TaskError> {
        self.cosign_with(phone, t, None).await
    }

    fn finish(phone: &Phone, c: &Cosigned) -> Signature {
        phone.share.sign_finish(&c.k1, &c.response.r, &c.response.s2, &c.response.s3).unwrap()
    }

    async fn complete(&self, phone: &Phone, t: &CreatedTask, sig: Signature) -> Result<(), TaskError> {
        self.tasks.complete_sign(&t.task_id, &t.token, &phone.device, sig).await
    }

    /// Claim, co-sign and complete.
    async fn sign_through(&self, phone: &Phone, t: &CreatedTask) -> Result<(), TaskError> {
        self.claim(phone, t).await?;
        let c = self.cosign(phone, t).await?;
        self.complete(phone, t, Self::finish(phone, &c)).await
    }
}

fn is_state<T>(r: Result<T, TaskError>, needle: &str) -> bool {
    matches!(&r, Err(TaskError::State(m)) if m.contains(needle))
}

#[tokio::test]
async fn a_csr_task_installs_the_cas_certificate_and_activates_the_key() {
    let f = Fixture::new();
    let phone = f.k.phone("dev-a", PIN).await;
    assert_eq!(f.k.key(&phone.key_id).status, KeyStatus::Pending);
    let created = f.tasks.create_csr_task(&f.k.key(&phone.key_id)).await.unwrap();
    assert_eq!(f.task(&created.task_id).kind, TaskKind::Csr);
    f.sign_through(&phone, &created).await.unwrap();

    let key = f.k.key(&phone.key_id);
    assert_eq!(key.status, KeyStatus::Active);
    let cert = key.certificate.expect("certificate installed");
    assert_eq!(cert.chain_b64.len(), 1, "the local CA's root comes with it");
    assert_eq!(f.task(&created.task_id).status, TaskStatus::Completed);
    assert_eq!(f.k.ca.ops(), ["issue"]);
    let status = f.k.ca.status(crate::keys::testing::CA, &StatusRequest { serial: cert.serial }).await.unwrap();
    assert_eq!(status.status, "good");
}

#[tokio::test]
async fn a_task_goes_pending_claimed_cosigned_completed_and_a_second_completion_is_refused() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    assert_eq!(f.task(&t.task_id).status, TaskStatus::Pending);

    let Claimed::Digest(e) = f.claim(&phone, &t).await.unwrap() else { panic!("a login task claims to a digest") };
    let claimed = f.task(&t.task_id);
    assert_eq!(
        (claimed.status, claimed.e.as_deref(), claimed.device_id.as_deref()),
        (TaskStatus::Claimed, Some(e.as_str()), Some("dev-a"))
    );
    assert!(is_state(f.claim(&phone, &t).await, "task is claimed"), "a claimed task is claimed once");

    let c = f.cosign(&phone, &t).await.unwrap();
    let cosigned = f.task(&t.task_id);
    assert!(cosigned.cosigned && cosigned.cosign_nonces.len() == 1);
    assert_eq!(cosigned.rev, claimed.rev + 1);

    let sig = Fixture::finish(&phone, &c);
    f.complete(&phone, &t, sig).await.unwrap();
    let done = f.task(&t.task_id);
    assert_eq!(done.status, TaskStatus::Completed);
    let result = serde_json::to_value(done.result.expect("result")).unwrap();
    assert_eq!(result["key_id"], phone.key_id.as_str());
    assert!(result["certificate"].is_string() && result["subject"]["name"].is_string());

    assert!(is_state(f.complete(&phone, &t, sig).await, "task is completed"));
    assert!(is_state(f.cosign(&phone, &t).await, "task is completed"));
    assert_eq!(f.task(&t.task_id).rev, done.rev, "refusals write nothing");
}

#[tokio::test]
async fn completing_before_the_cosignature_or_with_a_bad_signature_is_refused() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    f.claim(&phone, &t).await.unwrap();
    let forged = Signature::from_der(&sm2_2p::DaemonKey::generate().sign(b"x").to_der()).unwrap();
    assert!(is_state(f.complete(&phone, &t, forged).await, "not co-signed yet"));
    f.cosign(&phone, &t).await.unwrap();
    let rev = f.task(&t.task_id).rev;
    assert!(matches!(f.complete(&phone, &t, forged).await, Err(TaskError::Invalid(_))));
    let task = f.task(&t.task_id);
    assert_eq!((task.status, task.rev), (TaskStatus::Claimed, rev), "still claimed: the phone may complete again");
}

#[tokio::test]
async fn a_pending_task_is_rejected_and_then_refuses_everything() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    f.tasks.reject(&t.task_id, &t.token, &phone.device, "not me").await.unwrap();
    let task = f.task(&t.task_id);
    assert_eq!((task.status, task.error.as_deref()), (TaskStatus::Rejected, Some("rejected: not me")));
    assert!(is_state(f.claim(&phone, &t).await, "task is rejected"));
    assert!(is_state(f.tasks.reject(&t.task_id, &t.token, &phone.device, "again").await, "task is rejected"));
}

#[tokio::test]
async fn a_claimed_task_is_rejected_only_by_the_device_that_claimed_it() {
    let f = Fixture::new();
    let (a, b) = (f.phone("dev-a").await, f.phone("dev-b").await);
    let t = f.login_task(60).await;
    f.claim(&a, &t).await.unwrap();
    let err = f.tasks.reject(&t.task_id, &t.token, &b.device, "not mine").await.unwrap_err();
    assert!(matches!(err, TaskError::Key(KeyError::DeviceMismatch)), "{err:?}");
    assert_eq!(f.task(&t.task_id).status, TaskStatus::Claimed);
    f.tasks.reject(&t.task_id, &t.token, &a.device, "changed my mind").await.unwrap();
    assert_eq!(f.task(&t.task_id).status, TaskStatus::Rejected);
}

#[tokio::test]
async fn a_second_device_can_neither_claim_nor_cosign_a_claimed_task() {
    let f = Fixture::new();
    let (a, b) = (f.phone("dev-a").await, f.phone("dev-b").await);
    let t = f.login_task(60).await;
    f.claim(&a, &t).await.unwrap();
    let rev = f.task(&t.task_id).rev;
    assert!(is_state(f.claim(&b, &t).await, "task is claimed"));
    let err = f.cosign(&b, &t).await.err().expect("refused");
    assert!(matches!(err, TaskError::Key(KeyError::DeviceMismatch)), "{err:?}");
    let task = f.task(&t.task_id);
    assert_eq!((task.device_id.as_deref(), task.rev, task.cosigned), (Some("dev-a"), rev, false));
}

#[tokio::test]
async fn a_nonce_point_is_answered_once_per_task() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    f.claim(&phone, &t).await.unwrap();
    let (k1, q1) = sm2_2p::ClientShare::sign_start();
    let first = f.cosign_with(&phone, &t, Some((k1, q1))).await.unwrap();
    // The answer was lost; the phone must not get a second half for the same nonce.
    let (k1_again, _) = sm2_2p::ClientShare::sign_start();
    assert!(is_state(f.cosign_with(&phone, &t, Some((k1_again, q1))).await, "already answered"));
    // A fresh nonce is answered, and either half completes the task.
    f.cosign(&phone, &t).await.unwrap();
    assert_eq!(f.task(&t.task_id).cosign_nonces.len(), 2);
    f.complete(&phone, &t, Fixture::finish(&phone, &first)).await.unwrap();
}

#[tokio::test]
async fn a_wrong_pin_at_cosign_changes_no_task_state() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    f.claim(&phone, &t).await.unwrap();
    let before = f.task(&t.task_id);
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let q1_hex = sm2_2p::point_to_hex(&q1);
    let proof = phone.wrong_proof(&Transcript::TaskSign { task_id: t.task_id.clone(), q1: q1_hex.clone() });
    let err = f
        .tasks
        .cosign_sign(&t.task_id, &t.token, &phone.device, q1, &q1_hex, SignMode::Canonical, &proof)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, TaskError::Key(KeyError::PinIncorrect { .. })), "{err:?}");
    assert_eq!(f.task(&t.task_id), before);
    assert_eq!(f.k.key(&phone.key_id).pin.failures, 1);
}

#[tokio::test]
async fn a_task_expires_when_the_clock_passes_its_ttl() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let (pending, claimed) = (f.login_task(60).await, f.login_task(60).await);
    f.claim(&phone, &claimed).await.unwrap();
    f.k.clock.advance(59);
    assert!(f.tasks.for_phone(&pending.task_id, &pending.token).await.is_ok(), "not yet");
    f.k.clock.advance(1);
    assert!(matches!(f.claim(&phone, &pending).await, Err(TaskError::Expired)));
    assert!(matches!(f.cosign(&phone, &claimed).await, Err(TaskError::Expired)));
    for t in [&pending, &claimed] {
        let task = f.task(&t.task_id);
        assert_eq!((task.status, task.error.as_deref()), (TaskStatus::Expired, Some("task expired")));
    }
    // The gateway sees the expiry too, without waiting.
    let outcome = f.tasks.result(PLATFORM, &pending.task_id, Duration::ZERO).await.unwrap();
    assert_eq!(outcome.status, TaskStatus::Expired);
}

#[tokio::test]
async fn the_sweeper_expires_overdue_tasks_and_purges_finished_ones_after_retention() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let (done, overdue, open) = (f.login_task(60).await, f.login_task(60).await, f.login_task(3600).await);
    f.sign_through(&phone, &done).await.unwrap();
    f.k.clock.advance(61);
    // The csr task (completed at start) and `done` are final; `overdue` is past its TTL.
    assert_eq!(f.tasks.sweep().await.unwrap(), (1, 0));
    assert_eq!(f.task(&overdue.task_id).status, TaskStatus::Expired);
    assert_eq!(f.task(&open.task_id).status, TaskStatus::Pending);

    let retention = f.k.cfg.tasks.retention.as_secs() as i64;
    f.k.clock.advance(retention);
    // `open` expires now; the three finished ones are past retention and go.
    assert_eq!(f.tasks.sweep().await.unwrap(), (1, 3));
    for t in [&done, &overdue] {
        assert!(f.k.store.task(&t.task_id).unwrap().is_none(), "{} purged", t.task_id);
    }
    assert_eq!(f.task(&open.task_id).status, TaskStatus::Expired, "kept for its own retention");
}

#[tokio::test]
async fn a_wrong_token_or_another_platform_finds_nothing() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    let err = f.tasks.claim(&t.task_id, "00", &phone.key_id, &phone.device).await.err().expect("refused");
    assert!(matches!(err, TaskError::TokenInvalid), "{err:?}");
    assert!(matches!(f.tasks.for_gateway("another", &t.task_id), Err(TaskError::NotFound)));
    assert_eq!(f.task(&t.task_id).status, TaskStatus::Pending);
}

#[tokio::test]
async fn a_transition_made_for_a_request_carries_the_requests_audit_entry() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let t = f.login_task(60).await;
    let entry = RequestEntry::new(
        "POST /v1/tasks/{id}/claim".into(),
        format!("device:{}", phone.device),
        None,
        crate::audit::RequestOrigin { request_id: "test-request".into(), peer: Some("192.0.2.7".into()) },
    );
    entry.scope(f.claim(&phone, &t)).await.unwrap();
    assert!(entry.written(), "the claim wrote the request's entry itself");
    let entries: Vec<crate::audit::Entry> = f.k.store.audit_entries(0).map(|e| e.unwrap().1).collect();
    let last = entries.last().expect("an entry");
    assert_eq!((last.event.as_str(), last.task_id.as_deref()), ("POST /v1/tasks/{id}/claim", Some(t.task_id.as_str())));
    assert_eq!(last.detail["status"], "claimed");
}

#[tokio::test]
async fn revoking_a_certified_key_asks_the_ca_first() {
    let f = Fixture::new();
    let phone = f.phone("dev-a").await;
    let serial = f.k.key(&phone.key_id).certificate.unwrap().serial;
    f.k.keys.revoke(&phone.key_id, &Actor::Admin, "keyCompromise", None).await.unwrap();
    assert_eq!(f.k.ca.ops(), ["issue", "revoke"]);
    let status = f.k.ca.status(crate::keys::testing::CA, &StatusRequest { serial }).await.unwrap();
    assert_eq!(status.status, "revoked");
    assert_eq!(f.k.key(&phone.key_id).status, KeyStatus::Revoked);
    // And a revoked key claims nothing.
    let t = f.login_task(60).await;
    let err = f.claim(&phone, &t).await.err().expect("refused");
    assert!(matches!(err, TaskError::Key(KeyError::Inactive(KeyStatus::Revoked))), "{err:?}");
}
