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
    pub(super) fn finish(self, sig: &Signature) -> Result<Vec<u8>, TaskError> {
        let container = mcs_pdfseal::cms::signed_data(
            mcs_pdfseal::cms::Algorithm::Sm2,
            &self.certificate,
            &self.chain,
            self.attrs,
            &sig.to_der(),
        )
        .map_err(|e| TaskError::Key(KeyError::Internal(format!("signature container: {e}"))))?;
        self.prepared
            .embed(&container)
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
    pub(super) async fn seal_job(
        &self,
        task_id: &str,
        pdf_b64: &str,
        placement: &Value,
        seal: crate::seals::SealForSigning,
        key: &KeyRecord,
        signing_time: u64,
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
        let reserve = self.seals.reserve_for(&seal.der, certificate.len() + chain.iter().map(Vec::len).sum::<usize>());
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
            let prepared = pdf::prepare(&pdf_bytes, &placement, &look, &fields)
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
