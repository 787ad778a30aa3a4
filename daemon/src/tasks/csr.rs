//! `csr` tasks: the certificate request an activation opens, which the phone co-signs as
//! proof of possession and whose completion installs the CA's certificate and makes the key
//! `active`; and the same for a same-key renewal (延期, `successor` reason `extend`), whose
//! completion replaces the active key's certificate, retires the old one at the CA and
//! re-makes the seals that carry it.

#[allow(unused_imports)]
use super::*;
use crate::model::task::CertificateRenewal;
use crate::store::CertificateSwap;

impl TaskService {
    /// After activation: the task in which the phone co-signs its certificate request.
    /// The daemon writes the CertificationRequestInfo (the joint key, a provisional
    /// subject — the CA sets the real one from the enrollment); the phone checks it is its
    /// own key before co-signing.
    pub async fn create_csr_task(&self, key: &KeyRecord) -> Result<CreatedTask, TaskError> {
        self.create_csr_task_for(key, None).await
    }

    /// A renewal of an active key's certificate (延期): the task its owner's phone co-signs
    /// (told through its inbox as a `task` item).
    pub async fn create_renewal_task(
        &self,
        key: &KeyRecord,
        renewal: CertificateRenewal,
    ) -> Result<CreatedTask, TaskError> {
        let created = self.create_csr_task_for(key, Some(renewal)).await?;
        let event = InboxEvent::Task {
            task_id: created.task_id.clone(),
            token: created.token.clone(),
            kind: TaskKind::Csr,
            display: renewal_display(key),
            platform: String::new(),
        };
        if let Err(e) = self.keys.inbox().post(&key.device_id, event).await {
            // The operator has the task in the answer too; the phone can be given its QR.
            tracing::error!(key_id = %key.id, error = %e, "renewal task not posted to the phone's inbox");
        }
        Ok(created)
    }

    async fn create_csr_task_for(
        &self,
        key: &KeyRecord,
        renews: Option<CertificateRenewal>,
    ) -> Result<CreatedTask, TaskError> {
        let public = sm2_2p::point_from_hex(&key.public_key)
            .map_err(|_| TaskError::Key(KeyError::Internal("stored public key invalid".into())))?;
        let info = certificate_request_info(&public, &key.subject.name)?;
        let id = format!("t_{}", random_hex(12)?);
        let token = random_hex(16)?;
        let display = match renews {
            Some(_) => renewal_display(key),
            None => TaskDisplay { title: "Install your certificate".into(), detail: Some(format!("CA: {}", key.ca)) },
        };
        let data = TaskData::Csr { key_id: key.id.clone(), request_info: B64.encode(&info), renews };
        // The enrollment's activation already proved the phone; give it the longest TTL.
        let task = new_task(
            &id,
            TaskKind::Csr,
            String::new(),
            &token,
            display,
            data,
            None,
            self.now(),
            self.cfg.max_ttl.as_secs(),
        );
        // Internal: no gateway's quota applies, and activation writes its own entry.
        self.store.insert_task(&task, &[], None, None)?;
        self.store.flush().await?;
        Ok(CreatedTask {
            qr: qr_string(&self.cfg.public_url, &id, &token),
            task_id: id,
            token,
            expires_at: task.expires_at,
        })
    }

    pub(super) async fn claim_csr(
        &self,
        task: &TaskRecord,
        own: &str,
        info_b64: &str,
        renews: Option<&CertificateRenewal>,
        key_id: &str,
        device_id: &str,
    ) -> Result<Claimed, TaskError> {
        if own != key_id {
            return Err(TaskError::State("this certificate request belongs to another key".into()));
        }
        let key = self.keys.key_for(key_id, &crate::keys::Actor::Device(device_id))?;
        check_csr_key(&key, renews)?;
        let public = sm2_2p::point_from_hex(&key.public_key)
            .map_err(|_| TaskError::Key(KeyError::Internal("stored public key invalid".into())))?;
        let info = B64.decode(info_b64).map_err(|_| TaskError::Invalid("stored request info".into()))?;
        let e = hex::encode(sm2_2p::e_for_message(&public, &info));
        let mut t = self.next(task);
        t.status = TaskStatus::Claimed;
        t.key_id = Some(key.id.clone());
        t.device_id = Some(device_id.to_owned());
        t.e = Some(e.clone());
        self.commit_request(Transition::of(&t)).await?;
        Ok(Claimed::Digest(e))
    }

    /// Finish a certificate request: assemble the CSR with the joint signature, ask the
    /// enrollment's CA adapter for the certificate, install it and finish the task in one
    /// transaction (with the request's audit entry). If the CA fails, the task stays
    /// co-signed and the phone may complete again.
    pub(super) async fn complete_csr(
        &self,
        task: &TaskRecord,
        key_id: &str,
        device_id: &str,
        sig: Signature,
    ) -> Result<(), TaskError> {
        let TaskData::Csr { request_info, renews, .. } = &task.data else { unreachable!("csr task") };
        let key = self.keys.key_for(key_id, &crate::keys::Actor::Device(device_id))?;
        check_csr_key(&key, renews.as_ref())?;
        let public = Self::check_signature(task, &key, &sig)?;
        let info = B64.decode(request_info).map_err(|_| TaskError::Invalid("stored request info".into()))?;
        let csr = certificate_request(&info, &sig)?;
        let enrollment =
            self.store.enrollment(&key.enrollment_id)?.ok_or(TaskError::Key(KeyError::NotFound("enrollment")))?;
        let request = IssueRequest {
            csr,
            profile: enrollment.profile.clone().unwrap_or_else(|| match key.subject.kind {
                SubjectKind::Person => "person".into(),
                SubjectKind::Org => "org".into(),
                SubjectKind::Operator => "operator".into(),
            }),
            subject: key.subject.clone(),
            validity_days: renews.as_ref().map_or(key.validity_days, |r| r.validity_days),
        };
        let issued = self.plugins.issue(&key.ca, &request).await.map_err(TaskError::Plugin)?;
        let cert = parse_issued(&issued, &public)
            .map_err(|e| TaskError::Plugin(PluginError::Failed { adapter: key.ca.clone(), reason: e.to_string() }))?;
        let mut t = self.next(task);
        t.status = TaskStatus::Completed;
        t.result = Some(TaskResult::Csr { certificate: cert.der_b64.clone(), key_id: key_id.to_owned() });
        let Some(renewal) = renews else {
            self.commit_request(Transition { install_certificate: Some((key_id, &cert)), ..Transition::of(&t) })
                .await?;
            self.keys.certificate_installed(key_id).await;
            return Ok(());
        };
        let swap = CertificateSwap { key_id, serial: &renewal.serial, certificate: &cert, at: self.now() };
        self.commit_request(Transition { renew_certificate: Some(swap), ..Transition::of(&t) }).await?;
        // The new certificate is in place (durably); what follows is best effort, logged.
        if let Some(old) = &key.certificate {
            self.keys.certificate_renewed(&key, old).await;
        }
        match self.seals.remake_for_key(key_id).await {
            Ok(n) => tracing::info!(key_id, seals = n, "seals re-made for the renewed certificate"),
            Err(e) => tracing::error!(key_id, error = %e, "seals not re-made for the renewed certificate"),
        }
        Ok(())
    }
}

/// What the phone shows for a renewal.
fn renewal_display(key: &KeyRecord) -> TaskDisplay {
    TaskDisplay {
        title: "Renew your certificate (延期)".into(),
        detail: Some(format!("CA: {}; the same key, a new certificate", key.ca)),
    }
}

/// A first certificate needs a pending key; a renewal an active one that still has the
/// certificate it renews.
fn check_csr_key(key: &KeyRecord, renews: Option<&CertificateRenewal>) -> Result<(), TaskError> {
    match renews {
        None if key.status != KeyStatus::Pending => Err(TaskError::Key(KeyError::Inactive(key.status))),
        None => Ok(()),
        Some(_) if key.status != KeyStatus::Active => Err(TaskError::Key(KeyError::Inactive(key.status))),
        Some(r) if key.certificate.as_ref().is_none_or(|c| c.serial != r.serial) => {
            Err(TaskError::Key(KeyError::Conflict("the key's certificate was renewed meanwhile")))
        }
        Some(_) => Ok(()),
    }
}
