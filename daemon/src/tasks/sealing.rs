//! `pdf_seal` tasks: the sealing job fixed at claim (the seal, the signing time, the prepared
//! revision and its signed attributes) and rebuilt identically at completion.

#[allow(unused_imports)]
use super::*;

/// One sealing of one PDF: the prepared revision and what the signer signs.
pub(super) struct SealJob {
    pub(super) seal_id: String,
    prepared: mcs_pdfseal::pdf::Prepared,
    attrs: x509_cert::attr::Attributes,
    pub(super) to_be_signed: Vec<u8>,
    certificate: Vec<u8>,
    chain: Vec<Vec<u8>>,
}

impl SealJob {
    /// The CMS container of the signature (no time-stamp yet).
    pub(super) fn container(&self, sig: &Signature) -> Result<Vec<u8>, TaskError> {
        mcs_pdfseal::cms::signed_data(
            mcs_pdfseal::cms::Algorithm::Sm2,
            &self.certificate,
            &self.chain,
            self.attrs.clone(),
            &sig.to_der(),
        )
        .map_err(|e| TaskError::Key(KeyError::Internal(format!("signature container: {e}"))))
    }

    /// The sealed PDF: the revision with `container` in its placeholder.
    pub(super) fn embed(self, container: &[u8]) -> Result<Vec<u8>, TaskError> {
        self.prepared
            .embed(container)
            .map_err(|e| TaskError::Key(KeyError::Internal(format!("embedding the signature: {e}"))))
    }
}

/// Check that a PDF and placement can be sealed, with a stand-in picture.
pub(super) fn dry_run(pdf: &[u8], placement: &mcs_pdfseal::pdf::Placement) -> Result<(), TaskError> {
    use mcs_pdfseal::pdf;
    let image = mcs_pdfseal::image::PdfImage {
        width: 1,
        height: 1,
        color_space: "DeviceGray",
        filter: "FlateDecode",
        data: mcs_pdfseal::image::deflate(&[0]),
        smask: None,
    };
    let look = pdf::Appearance { image: &image, width_pt: 40.0, height_pt: 40.0 };
    let fields =
        pdf::SignatureFields { field_name: "probe", signer_name: "", reason: "", signing_time: 0, reserve: 16 };
    pdf::prepare(pdf, placement, &look, &fields)
        .map(|_| ())
        .map_err(|e| TaskError::Invalid(format!("cannot seal this PDF: {e}")))
}

impl TaskService {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn seal_job(
        &self,
        task_id: &str,
        pdf_b64: &str,
        placement: &Value,
        seal: crate::seals::SealForSigning,
        key: &KeyRecord,
        signing_time: u64,
        crls_b64: &[String],
    ) -> Result<SealJob, TaskError> {
        use mcs_pdfseal::{cms, pdf};
        let internal = |e: String| TaskError::Key(KeyError::Internal(e));
        let cert = key.certificate.as_ref().ok_or(TaskError::Key(KeyError::Conflict("the key has no certificate")))?;
        let certificate = B64.decode(&cert.der_b64).map_err(|e| internal(e.to_string()))?;
        let chain = cert
            .chain_b64
            .iter()
            .map(|c| B64.decode(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(e.to_string()))?;
        // The Document Security Store: the signer's chain, the TSA's, the CRLs of the time.
        let mut dss_certs = vec![certificate.clone()];
        dss_certs.extend(chain.iter().cloned());
        let mut token_room = 0;
        if let Some(tsa) = self.seals.tsa() {
            let t = tsa.certificate().await.map_err(|e| internal(format!("time-stamp authority: {e}")))?;
            token_room = t.token_room();
            dss_certs.push(t.der);
            dss_certs.extend(t.chain);
        }
        let crls = crls_b64.iter().map(|c| B64.decode(c)).collect::<Result<Vec<_>, _>>();
        let crls = crls.map_err(|e| internal(e.to_string()))?;
        let reserve = self.seals.reserve_for(&seal.der, certificate.len() + chain.iter().map(Vec::len).sum::<usize>())
            + token_room;
        let pdf_bytes = B64.decode(pdf_b64).map_err(|_| TaskError::Invalid("stored task data".into()))?;
        let placement = crate::seals::parse_placement(placement).map_err(TaskError::Invalid)?;
        let (field, signer, reason) = (
            format!("mcsd-{task_id}"),
            key.subject.name.clone(),
            format!("{} seal: {}", seal.record.kind, seal.record.name),
        );
        let seal_id = seal.record.id.clone();
        blocking(move || {
            let look = pdf::Appearance {
                image: &seal.picture,
                width_pt: pdf::mm_to_pt(seal.record.width_mm as f64),
                height_pt: pdf::mm_to_pt(seal.record.height_mm as f64),
            };
            let fields = pdf::SignatureFields {
                field_name: &field,
                signer_name: &signer,
                reason: &reason,
                signing_time,
                reserve,
            };
            let dss = pdf::Dss { certs: &dss_certs, crls: &crls };
            let prepared = pdf::prepare_with_dss(&pdf_bytes, &placement, &look, &fields, Some(&dss))
                .map_err(|e| TaskError::Invalid(format!("cannot seal this PDF: {e}")))?;
            let digest = cms::Algorithm::Sm2.digest(&prepared.signed_ranges());
            let attrs = cms::signed_attributes(cms::Algorithm::Sm2, &digest, signing_time, Some(&seal.der))
                .map_err(|e| internal(e.to_string()))?;
            let to_be_signed = cms::to_be_signed(&attrs).map_err(|e| internal(e.to_string()))?;
            Ok(SealJob { seal_id, prepared, attrs, to_be_signed, certificate, chain })
        })
        .await
    }
}

impl TaskService {
    /// The CRLs of the key's CA now, for the Document Security Store (base64 DER); none if
    /// the adapter cannot say (the document then carries the chain only).
    pub(super) async fn crls_for_dss(&self, key: &KeyRecord) -> Vec<String> {
        match crate::plugins::ca::CaAdapter::crl(&*self.plugins, &key.ca).await {
            Ok(answer) => vec![answer.crl],
            Err(e) => {
                tracing::warn!(ca = %key.ca, error = %e, "no CRL for the sealed document's DSS");
                Vec::new()
            }
        }
    }

    /// The container with a signature time-stamp from the TSA (SM3 of the signature value),
    /// when one is configured.
    pub(super) async fn time_stamped(&self, container: Vec<u8>) -> Result<Vec<u8>, TaskError> {
        let Some(tsa) = self.seals.tsa() else { return Ok(container) };
        tsa.stamp_container(&container, mcs_pdfseal::SM3)
            .await
            .map_err(|e| TaskError::Key(KeyError::Internal(format!("time-stamp: {e}"))))
    }
}
