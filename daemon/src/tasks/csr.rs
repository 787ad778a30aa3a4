//! `csr` tasks: the certificate request an activation opens, which the phone co-signs as
//! proof of possession and whose completion installs the CA's certificate and makes the key
//! `active`.

#[allow(unused_imports)]
use super::*;

impl TaskService {
    /// After activation: the task in which the phone co-signs its certificate request.
    /// The daemon writes the CertificationRequestInfo (the joint key, a provisional
    /// subject — the CA sets the real one from the enrollment); the phone checks it is its
    /// own key before co-signing.
    pub async fn create_csr_task(&self, key: &KeyRecord) -> Result<CreatedTask, TaskError> {
        let public = sm2_2p::point_from_hex(&key.public_key)
            .map_err(|_| TaskError::Key(KeyError::Internal("stored public key invalid".into())))?;
        let info = certificate_request_info(&public, &key.subject.name)?;
        let id = format!("t_{}", random_hex(12)?);
        let token = random_hex(16)?;
        let display = TaskDisplay { title: "Install your certificate".into(), detail: Some(format!("CA: {}", key.ca)) };
        let data = TaskData::Csr { key_id: key.id.clone(), request_info: B64.encode(&info) };
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
        key_id: &str,
        device_id: &str,
    ) -> Result<Claimed, TaskError> {
        if own != key_id {
            return Err(TaskError::State("this certificate request belongs to another key".into()));
        }
        let key = self.keys.key_for(key_id, &crate::keys::Actor::Device(device_id))?;
        if key.status != KeyStatus::Pending {
            return Err(TaskError::Key(KeyError::Inactive(key.status)));
        }
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
        let TaskData::Csr { request_info, .. } = &task.data else { unreachable!("csr task") };
        let key = self.keys.key_for(key_id, &crate::keys::Actor::Device(device_id))?;
        if key.status != KeyStatus::Pending {
            return Err(TaskError::Key(KeyError::Inactive(key.status)));
        }
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
            validity_days: key.validity_days,
        };
        let issued = self.plugins.issue(&key.ca, &request).await.map_err(TaskError::Plugin)?;
        let cert = parse_issued(&issued, &public)
            .map_err(|e| TaskError::Plugin(PluginError::Failed { adapter: key.ca.clone(), reason: e.to_string() }))?;
        let mut t = self.next(task);
        t.status = TaskStatus::Completed;
        t.result = Some(TaskResult::Csr { certificate: cert.der_b64.clone(), key_id: key_id.to_owned() });
        self.commit_request(Transition { install_certificate: Some((key_id, &cert)), ..Transition::of(&t) }).await?;
        self.keys.certificate_installed(key_id).await;
        Ok(())
    }
}
