//! PEM certificates and private keys read from files (the API listener, the callback client).

use std::fs;
use std::path::Path;

use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

pub(crate) fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|e| file_err(path, e))?;
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = fs::read(path).map_err(|e| file_err(path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        PemError::NoItemsFound => file_err(path, "no PEM private key found"),
        e => file_err(path, e),
    })
}

/// The certificate chain in `path` (PEM: the key's certificate first, then its issuers) as
/// DER, checked to certify the EC public key `point` (SEC1 uncompressed): what a key held
/// natively by the HSM is given by the operator's CA (the P-256 TSA, the P-256 signer).
pub fn load_chain_of(path: &Path, point: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), TlsError> {
    use der::Decode;
    let mut ders: Vec<Vec<u8>> = load_certs(path)?.into_iter().map(|c| c.to_vec()).collect();
    let der = ders.remove(0);
    let cert = x509_cert::Certificate::from_der(&der).map_err(|e| file_err(path, e))?;
    if cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes() != point {
        return Err(file_err(path, "its first certificate certifies another key than the HSM's"));
    }
    Ok((der, ders))
}
