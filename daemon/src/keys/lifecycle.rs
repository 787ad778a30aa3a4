//! Suspension and resumption (挂失 / 冻结 / 解冻): a suspended key answers every use with
//! `key_inactive` until an operator resumes it. Where the key's CA adapter has the optional
//! `hold` / `release` operations, its certificate is held (CRL reason `certificateHold`)
//! while suspended. Each step asks the CA first and then writes the key, durably, before
//! the answer: a CA that refuses leaves the key as it was, and the caller may retry.
//!
//! Expiry notices: [`KeyService::check_expiry`] tells the holders of each key whose
//! certificate ends within `[keys] expiry_notice_days` (`certificate_expiring`), once per
//! certificate, and sets the `mcsd_certificates_expiring` gauge.

use super::{Actor, KeyError, KeyService, PinProof};
use crate::model::inbox::InboxEvent;
use crate::model::key::{KeyRecord, KeyStatus, Suspension};
use crate::model::task::CertificateRenewal;
use crate::plugins::PluginError;
use crate::plugins::ca::HoldRequest;

impl KeyService {
    /// Suspend an active key: by an operator, or by its owner phone with a PIN proof.
    pub async fn suspend(
        &self,
        key_id: &str,
        actor: &Actor<'_>,
        reason: &str,
        proof: Option<PinProof<'_>>,
    ) -> Result<KeyRecord, KeyError> {
        let key = self.key_for(key_id, actor)?;
        if key.status != KeyStatus::Active {
            return Err(KeyError::Conflict("only an active key can be suspended"));
        }
        let by = self.owner_proof(key_id, actor, proof).await?;
        let certificate_held = self.hold_certificate(&key, true).await?;
        let suspension = Suspension { reason: reason.to_owned(), by: by.to_owned(), at: self.now(), certificate_held };
        let rec = self
            .store
            .update_key(key_id, |k| {
                if k.status != KeyStatus::Active {
                    return Err(KeyError::Conflict("only an active key can be suspended"));
                }
                k.status = KeyStatus::Suspended;
                k.suspension = Some(suspension.clone());
                Ok(true)
            })??
            .ok_or(KeyError::NotFound("key"))?;
        self.store.flush().await?;
        tracing::info!(key_id, reason, by, certificate_held, "key suspended");
        self.tell_holders(&rec, InboxEvent::KeySuspended { key_id: key_id.to_owned() }).await;
        Ok(rec)
    }

    /// Operator: resume a key suspended by [`KeyService::suspend`] (not one a `reissue`
    /// suspended: its successor replaces it).
    pub async fn resume(&self, key_id: &str) -> Result<KeyRecord, KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        let Some(suspension) = key.suspension.clone().filter(|_| key.status == KeyStatus::Suspended) else {
            return Err(KeyError::Conflict(if key.status == KeyStatus::Suspended {
                "the key was suspended by a reissue; its successor replaces it"
            } else {
                "only a suspended key can be resumed"
            }));
        };
        if suspension.certificate_held {
            self.hold_certificate(&key, false).await?;
        }
        let rec = self
            .store
            .update_key(key_id, |k| {
                if k.status != KeyStatus::Suspended || k.suspension.is_none() {
                    return Err(KeyError::Conflict("only a suspended key can be resumed"));
                }
                k.status = KeyStatus::Active;
                k.suspension = None;
                Ok(true)
            })??
            .ok_or(KeyError::NotFound("key"))?;
        self.store.flush().await?;
        tracing::info!(key_id, "key resumed");
        self.tell_holders(&rec, InboxEvent::KeyResumed { key_id: key_id.to_owned() }).await;
        Ok(rec)
    }

    /// Operator: what a same-key renewal (延期, `successor` reason `extend`) of `key_id`
    /// renews — the key must be active with a certificate. The new certificate is valid
    /// for `validity_days`, or as long as the key's first one was.
    pub fn renewal_of(
        &self,
        key_id: &str,
        validity_days: Option<u32>,
    ) -> Result<(KeyRecord, CertificateRenewal), KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if key.status != KeyStatus::Active {
            return Err(KeyError::Inactive(key.status));
        }
        let cert = key.certificate.as_ref().ok_or(KeyError::Conflict("the key has no certificate to renew"))?;
        let renewal = CertificateRenewal {
            serial: cert.serial.clone(),
            validity_days: validity_days.unwrap_or(key.validity_days),
        };
        Ok((key, renewal))
    }

    /// A renewal replaced `old` (the key's previous certificate): retire it at the CA
    /// (reason `superseded`; signatures time-stamped before stay valid) and tell the
    /// holders. Best effort: the new certificate is in place already; a CA that fails is
    /// logged and the operator may revoke the old certificate by its serial.
    pub async fn certificate_renewed(&self, key: &KeyRecord, old: &crate::model::key::CertificateInfo) {
        let request = crate::plugins::ca::RevokeRequest { serial: old.serial.clone(), reason: "superseded".into() };
        if let Err(e) = self.plugins.revoke(&key.ca, &request).await {
            tracing::error!(key_id = %key.id, serial = %old.serial, error = %e, "renewed: the old certificate is not revoked at the CA");
        }
        tracing::info!(key_id = %key.id, old = %old.serial, "certificate renewed for the same key");
        self.tell_holders(key, InboxEvent::CertificateIssued { key_id: key.id.clone() }).await;
    }

    /// Hold (`on`) or release the key's certificate at its CA. `false`: nothing to hold (no
    /// certificate yet) or the adapter has no certificate hold.
    async fn hold_certificate(&self, key: &KeyRecord, on: bool) -> Result<bool, KeyError> {
        let Some(cert) = &key.certificate else { return Ok(false) };
        let request = HoldRequest { serial: cert.serial.clone() };
        let done =
            if on { self.plugins.hold(&key.ca, &request).await } else { self.plugins.release(&key.ca, &request).await };
        match done {
            Ok(()) => Ok(true),
            Err(PluginError::Unsupported { .. }) => {
                tracing::info!(key_id = %key.id, ca = %key.ca, "the CA adapter has no certificate hold");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Post `certificate_expiring` to the holders of every active or suspended key whose
    /// certificate ends within the notice window and was not told of yet (the record keeps
    /// the serial it told of: a renewed certificate is told of again). Posted first, then
    /// marked: a crash in between repeats one notice rather than lose it. Returns how many
    /// were posted.
    pub async fn check_expiry(&self) -> Result<usize, KeyError> {
        let now = self.now();
        let horizon = now + self.cfg.expiry_notice.as_secs() as i64;
        // From the store's index of certificate ends: a window, not every key.
        let store = self.store.clone();
        let (keys, roots) = tokio::task::spawn_blocking(move || {
            let ending = store.keys_ending(now, horizon)?;
            Ok::<_, crate::store::StoreError>((ending, store.ca_roots()?))
        })
        .await
        .map_err(|e| KeyError::Internal(format!("expiry check: {e}")))??;
        let keys: Vec<KeyRecord> =
            keys.into_iter().filter(|k| matches!(k.status, KeyStatus::Active | KeyStatus::Suspended)).collect();
        crate::metrics::METRICS.certificates_expiring.set(keys.len() as i64);
        let root_ends: Vec<(String, i64)> = roots
            .iter()
            .filter_map(|b64| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok())
            .filter_map(|der| crate::metrics::certificate_end(&der))
            .map(|(cn, end)| (format!("ca:{cn}"), end))
            .collect();
        crate::metrics::set_certificate_expiries("ca", &root_ends);
        let mut told = 0;
        for key in keys {
            let Some(cert) = &key.certificate else { continue };
            if key.expiry_notified.as_deref() == Some(cert.serial.as_str()) {
                continue;
            }
            let event = InboxEvent::CertificateExpiring { key_id: key.id.clone(), not_after: cert.not_after };
            self.tell_holders(&key, event).await;
            let serial = cert.serial.clone();
            self.store.edit_key(&key.id, &mut |k| {
                let same = k.certificate.as_ref().is_some_and(|c| c.serial == serial);
                if same {
                    k.expiry_notified = Some(serial.clone());
                }
                same
            })?;
            told += 1;
        }
        if told > 0 {
            self.store.flush().await?;
            tracing::info!(told, "certificate expiry notices posted");
        }
        Ok(told)
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::testing::Keys;
    use crate::keys::{Actor, KeyError};
    use crate::model::key::KeyStatus;

    #[tokio::test]
    async fn an_operators_suspension_then_a_reissue_is_not_resumed() {
        let k = Keys::new("");
        let phone = k.active_phone("dev-a", "123456").await;
        let id = phone.key_id.clone();
        let key = k.keys.suspend(&id, &Actor::Admin, "frozen", None).await.unwrap();
        assert_eq!(key.suspension.as_ref().map(|s| s.by.as_str()), Some("admin"));
        // The phone is lost after all: a reissue. Its suspension is now the reissue's.
        k.keys.create_successor(&id, "reissue", None, None).await.unwrap();
        let key = k.key(&id);
        assert!(key.status == KeyStatus::Suspended && key.suspension.is_none(), "{key:?}");
        let err = k.keys.resume(&id).await.unwrap_err();
        assert!(matches!(err, KeyError::Conflict(m) if m.contains("reissue")), "{err:?}");
        assert_eq!(k.key(&id).status, KeyStatus::Suspended);
    }

    #[tokio::test]
    async fn suspend_and_resume_only_from_the_right_state() {
        let k = Keys::new("");
        let phone = k.active_phone("dev-a", "123456").await;
        let id = phone.key_id.clone();
        assert!(matches!(k.keys.resume(&id).await, Err(KeyError::Conflict(_))), "an active key");
        k.keys.suspend(&id, &Actor::Admin, "frozen", None).await.unwrap();
        assert!(matches!(k.keys.suspend(&id, &Actor::Admin, "again", None).await, Err(KeyError::Conflict(_))));
        assert!(matches!(
            k.keys.suspend(&id, &Actor::Device("dev-b"), "lost", None).await,
            Err(KeyError::DeviceMismatch)
        ));
        let key = k.keys.resume(&id).await.unwrap();
        assert!(key.status == KeyStatus::Active && key.suspension.is_none());
        assert!(matches!(k.keys.resume("k_none").await, Err(KeyError::NotFound(_))));
    }
}
