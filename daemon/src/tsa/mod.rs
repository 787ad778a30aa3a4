//! The time-stamp authority (RFC 3161) inside mcsd: `POST /v1/timestamp`, and the
//! signature time-stamp of every PDF signature the daemon makes.
//!
//! The TSA key is either the daemon key `tsa` (SM2, HSM-wrapped like every daemon key),
//! certified once by the `[tsa] ca` adapter with profile `tsa` (critical `timeStamping`
//! extended key usage), or a P-256 key the HSM holds natively (`[tsa] algorithm = "p256"`),
//! certified by the operator's CA (`mcsd tsa csr` makes the request; `p256_certificate_file`
//! holds the answer). Tokens carry the configured policy, the accuracy, the request's nonce
//! and a serial number that is unique across the nodes of a store and increases on each
//! node: serials are reserved from the store in blocks, durably, before any is used, so a
//! crash skips numbers and never repeats one.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::{Decode, Encode};
use mcs_pdfseal::cms::Algorithm;
use mcs_pdfseal::tsp::{self, FailInfo};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{TsaAlgorithm, TsaConfig};
use crate::daemon_keys::DaemonKeys;
use crate::hsm::NativeP256;
use crate::model::key::{Subject, SubjectKind};
use crate::plugins::PluginError;
use crate::plugins::ca::{CaAdapter, IssueRequest};
use crate::store::{Storage, StoreError};

/// The daemon key that signs SM2 tokens.
const TSA_KEY: &str = "tsa";
/// Where the TSA keeps its records in the store's key-value space: a namespace no adapter
/// can have (adapter names are `[A-Za-z0-9._-]`).
const NAMESPACE: &str = "(mcsd)";
const SERIAL_KEY: &[u8] = b"tsa/next-serial";
const CERT_KEY: &[u8] = b"tsa/certificate";
/// Serials reserved per store write.
const SERIAL_BLOCK: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    #[error("no time-stamp authority is configured ([tsa])")]
    NotConfigured,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("TSA: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> TsaError {
    TsaError::Internal(e.to_string())
}

/// The TSA's certificate and the chain above it, DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsaCertificate {
    pub der: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
}

/// Bytes a token needs beyond the TSA's certificates.
const TOKEN_RESERVE: usize = 3072;

impl TsaCertificate {
    /// The room a signature time-stamp token carrying these certificates needs in a PDF
    /// signature's `/Contents`.
    pub fn token_room(&self) -> usize {
        TOKEN_RESERVE + self.der.len() + self.chain.iter().map(Vec::len).sum::<usize>()
    }
}

/// The SM2 TSA's certificate as stored (versioned).
#[derive(Serialize, Deserialize)]
struct StoredCertificate {
    v: u32,
    ca: String,
    certificate_b64: String,
    chain_b64: Vec<String>,
}

/// Serials this node may hand out: `next..end`.
struct SerialBlock {
    next: u64,
    end: u64,
}

pub struct TsaService {
    store: Arc<dyn Storage>,
    daemon_keys: DaemonKeys,
    native: Option<Arc<dyn NativeP256>>,
    plugins: Arc<dyn CaAdapter>,
    cfg: Option<TsaConfig>,
    clock: Arc<dyn Clock>,
    certificate: tokio::sync::OnceCell<TsaCertificate>,
    serials: tokio::sync::Mutex<SerialBlock>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, TsaError> + Send + 'static) -> Result<T, TsaError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| internal(format!("blocking task: {e}")))?
}

impl TsaService {
    pub fn new(
        store: Arc<dyn Storage>,
        daemon_keys: DaemonKeys,
        native: Option<Arc<dyn NativeP256>>,
        plugins: Arc<dyn CaAdapter>,
        cfg: Option<TsaConfig>,
        clock: Arc<dyn Clock>,
    ) -> TsaService {
        TsaService {
            store,
            daemon_keys,
            native,
            plugins,
            cfg,
            clock,
            certificate: tokio::sync::OnceCell::new(),
            serials: tokio::sync::Mutex::new(SerialBlock { next: 0, end: 0 }),
        }
    }

    /// Is a TSA configured?
    pub fn enabled(&self) -> bool {
        self.cfg.is_some()
    }

    fn cfg(&self) -> Result<&TsaConfig, TsaError> {
        self.cfg.as_ref().ok_or(TsaError::NotConfigured)
    }

    fn algorithm(&self) -> Result<Algorithm, TsaError> {
        Ok(match self.cfg()?.algorithm {
            TsaAlgorithm::Sm2 => Algorithm::Sm2,
            TsaAlgorithm::P256 => Algorithm::EcdsaP256,
        })
    }

    /// The TSA's certificate: for SM2, asked of the adapter the first time and kept in the
    /// store; for P-256, read from `p256_certificate_file` and checked against the HSM key.
    pub async fn certificate(&self) -> Result<TsaCertificate, TsaError> {
        self.certificate
            .get_or_try_init(|| async {
                let c = self.load_certificate().await?;
                let end = crate::metrics::certificate_end(&c.der).map(|(_, end)| ("tsa".to_owned(), end));
                crate::metrics::set_certificate_expiries("tsa", &end.into_iter().collect::<Vec<_>>());
                Ok(c)
            })
            .await
            .cloned()
    }

    /// The certificate, if it was loaded already (for checks that cannot wait).
    pub fn cached_certificate(&self) -> Option<&TsaCertificate> {
        self.certificate.get()
    }

    async fn load_certificate(&self) -> Result<TsaCertificate, TsaError> {
        let cfg = self.cfg()?.clone();
        match cfg.algorithm {
            TsaAlgorithm::P256 => self.p256_certificate(&cfg).await,
            TsaAlgorithm::Sm2 => match self.stored_certificate()? {
                Some(c) => Ok(c),
                None => self.certify_sm2(&cfg).await,
            },
        }
    }

    async fn p256_certificate(&self, cfg: &TsaConfig) -> Result<TsaCertificate, TsaError> {
        let path = cfg.p256_certificate_file.clone().ok_or(TsaError::NotConfigured)?;
        let native = self.native.clone().ok_or_else(|| internal("no HSM for the P-256 TSA key"))?;
        let label = cfg.p256_label.clone();
        let point = blocking(move || native.p256_public_key(&label).map_err(internal)).await?;
        let (der, chain) = crate::pem::load_chain_of(&path, &point)
            .map_err(|e| internal(format!("{e} (the P-256 key `{}`)", cfg.p256_label)))?;
        Ok(TsaCertificate { der, chain })
    }

    fn stored_certificate(&self) -> Result<Option<TsaCertificate>, TsaError> {
        let Some(bytes) = self.store.kv_get(NAMESPACE, CERT_KEY)? else { return Ok(None) };
        let rec: StoredCertificate = serde_json::from_slice(&bytes).map_err(internal)?;
        if rec.v != 1 {
            return Err(internal(format!("stored TSA certificate of unknown version {}", rec.v)));
        }
        let der = B64.decode(&rec.certificate_b64).map_err(internal)?;
        let chain = rec.chain_b64.iter().map(|c| B64.decode(c)).collect::<Result<_, _>>().map_err(internal)?;
        Ok(Some(TsaCertificate { der, chain }))
    }

    /// Ask the adapter once for the SM2 key's certificate (profile `tsa`); another node
    /// asking at the same time loses the compare-and-swap and takes the stored one.
    async fn certify_sm2(&self, cfg: &TsaConfig) -> Result<TsaCertificate, TsaError> {
        let dk = self.daemon_keys.clone();
        let spki_der = blocking(move || dk.spki(TSA_KEY).map_err(internal)).await?;
        let dk = self.daemon_keys.clone();
        let csr = blocking(move || dk.csr(TSA_KEY, "mcsd Time-Stamping Authority").map_err(internal)).await?;
        let request = IssueRequest {
            csr,
            profile: "tsa".into(),
            subject: Subject {
                kind: SubjectKind::Operator,
                name: "mcsd Time-Stamping Authority".into(),
                org_name: Some("mcsd".into()),
                credit_code: None,
                id_number: None,
            },
            validity_days: 3650,
        };
        let issued = self.plugins.issue(&cfg.ca, &request).await?;
        let der = B64.decode(&issued.certificate).map_err(internal)?;
        let cert = x509_cert::Certificate::from_der(&der).map_err(internal)?;
        if cert.tbs_certificate().subject_public_key_info().to_der().map_err(internal)? != spki_der {
            return Err(internal("the CA certified another key for the TSA"));
        }
        if !has_time_stamping_eku(&cert) {
            return Err(internal(format!(
                "adapter `{}` issued the TSA a certificate without the critical timeStamping extended key usage",
                cfg.ca
            )));
        }
        let rec = StoredCertificate {
            v: 1,
            ca: cfg.ca.clone(),
            certificate_b64: issued.certificate,
            chain_b64: issued.chain,
        };
        let bytes = serde_json::to_vec(&rec).map_err(internal)?;
        if !self.store.kv_cas(NAMESPACE, CERT_KEY, None, &bytes)? {
            // Another node certified it first: use that one.
            return self.stored_certificate()?.ok_or_else(|| internal("TSA certificate vanished"));
        }
        self.store.flush().await?;
        tracing::info!(ca = %cfg.ca, "time-stamp authority certified");
        self.stored_certificate()?.ok_or_else(|| internal("TSA certificate vanished"))
    }

    /// The next serial number: from this node's reserved block, reserving a new block
    /// (durably) when it runs out.
    async fn next_serial(&self) -> Result<u64, TsaError> {
        let mut block = self.serials.lock().await;
        if block.next >= block.end {
            let (next, end) = self.reserve_block()?;
            self.store.flush().await?;
            *block = SerialBlock { next, end };
        }
        let serial = block.next;
        block.next += 1;
        Ok(serial)
    }

    fn reserve_block(&self) -> Result<(u64, u64), TsaError> {
        for _ in 0..64 {
            let current = self.store.kv_get(NAMESPACE, SERIAL_KEY)?;
            let next = match &current {
                None => 1,
                Some(b) => u64::from_be_bytes(
                    b.as_slice().try_into().map_err(|_| internal("stored TSA serial is not 8 bytes"))?,
                ),
            };
            let end = next.checked_add(SERIAL_BLOCK).ok_or_else(|| internal("TSA serials exhausted"))?;
            if self.store.kv_cas(NAMESPACE, SERIAL_KEY, current.as_deref(), &end.to_be_bytes())? {
                return Ok((next, end));
            }
        }
        Err(internal("could not reserve TSA serials (contention)"))
    }

    /// `POST /v1/timestamp`: a DER `TimeStampResp` for a DER `TimeStampReq` — granted, or a
    /// rejection with its failure (a malformed request, an unknown hash, another policy).
    /// `Err` only when the TSA itself cannot work (not configured, store or HSM down).
    pub async fn respond(&self, request_der: &[u8]) -> Result<Vec<u8>, TsaError> {
        let cfg = self.cfg()?;
        let req = match tsp::parse_request(request_der) {
            Ok(r) => r,
            Err(mcs_pdfseal::Error::Rejected { fail_info, reason }) => {
                return Ok(tsp::response_rejected(fail_info, &reason));
            }
            Err(e) => return Ok(tsp::response_rejected(FailInfo::BadDataFormat, &e.to_string())),
        };
        if req.policy.is_some_and(|p| p != cfg.policy) {
            return Ok(tsp::response_rejected(FailInfo::UnacceptedPolicy, "this TSA issues under one policy"));
        }
        let token = self.token(req.imprint_alg, req.imprint, req.nonce, req.cert_req).await?;
        Ok(tsp::response_granted(&token))
    }

    /// `container` (a one-signer CMS `SignedData`) with a signature time-stamp from this
    /// TSA: a token over the `imprint_alg` digest of its signature value, as the unsigned
    /// attribute `id-aa-signatureTimeStampToken`, certificates included.
    pub async fn stamp_container(
        &self,
        container: &[u8],
        imprint_alg: der::asn1::ObjectIdentifier,
    ) -> Result<Vec<u8>, TsaError> {
        let value = mcs_pdfseal::cms::signature_value(container).map_err(internal)?;
        let imprint = tsp::imprint_digest(imprint_alg, &value)
            .ok_or_else(|| internal(format!("no digest {imprint_alg} for an imprint")))?;
        let token = self.token(imprint_alg, imprint, None, true).await?;
        mcs_pdfseal::cms::with_signature_time_stamp(container, &token).map_err(internal)
    }

    /// A time-stamp token over `imprint` (the digest of the data, by `imprint_alg`),
    /// carrying the TSA's certificate and chain when `with_certs`.
    pub async fn token(
        &self,
        imprint_alg: der::asn1::ObjectIdentifier,
        imprint: Vec<u8>,
        nonce: Option<Vec<u8>>,
        with_certs: bool,
    ) -> Result<Vec<u8>, TsaError> {
        let cfg = self.cfg()?.clone();
        let alg = self.algorithm()?;
        let cert = self.certificate().await?;
        let serial = self.next_serial().await?;
        let tsa_name =
            x509_cert::Certificate::from_der(&cert.der).map_err(internal)?.tbs_certificate().subject().clone();
        let spec = tsp::TstInfoSpec {
            policy: cfg.policy,
            imprint_alg,
            imprint,
            serial: u128::from(serial),
            gen_time_unix_ms: self.clock.now_ms(),
            accuracy_ms: Some(cfg.accuracy_ms),
            nonce,
            tsa_name: Some(tsa_name),
        };
        let tst = tsp::tst_info(&spec).map_err(internal)?;
        let attrs = tsp::token_signed_attributes(alg, &tst, &cert.der).map_err(internal)?;
        let to_be_signed = mcs_pdfseal::cms::to_be_signed(&attrs).map_err(internal)?;
        let signature = match cfg.algorithm {
            TsaAlgorithm::Sm2 => {
                let dk = self.daemon_keys.clone();
                blocking(move || dk.sign(TSA_KEY, &to_be_signed).map_err(internal)).await?
            }
            TsaAlgorithm::P256 => {
                let native = self.native.clone().ok_or_else(|| internal("no HSM for the P-256 TSA key"))?;
                let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&to_be_signed).into();
                let label = cfg.p256_label.clone();
                blocking(move || native.p256_sign_der(&label, &digest).map_err(internal)).await?
            }
        };
        crate::metrics::METRICS.timestamps.inc();
        tsp::token(alg, &cert.der, &cert.chain, &tst, attrs, &signature, with_certs).map_err(internal)
    }
}

/// Does the certificate carry the extended key usage `timeStamping`, critical, and only it
/// (RFC 3161 §2.3)?
pub fn has_time_stamping_eku(cert: &x509_cert::Certificate) -> bool {
    const EKU: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.37");
    const TIME_STAMPING: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
    cert.tbs_certificate().extensions().into_iter().flatten().any(|e| {
        e.extn_id == EKU
            && e.critical
            && x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .is_ok_and(|eku| eku.0 == [TIME_STAMPING])
    })
}
