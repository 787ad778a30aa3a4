//! Mutual TLS and caller identity.
//!
//! The API listener requires a client certificate chaining to one of the configured trust
//! anchors (rustls rejects everything else during the handshake). Which anchor it chains
//! to decides which roles the caller may have — and "chains to" means *verified against
//! that anchor alone*: [`Anchors::identify`] verifies the leaf again separately under each
//! `[[api.trust]]` entry, so certificates a client appends (another CA's certificate, an
//! admin's, one it made itself with a borrowed issuer name) change nothing. A leaf that
//! verifies under anchors trusted for different roles is refused. The certificate itself
//! then decides the role and identity (API.md "Callers"):
//! - an anchor trusted for one role gives that role;
//! - an anchor trusted for several roles needs the certificate to name its role with a SAN
//!   URI `urn:mcs:role:<admin|gateway|app>` (an extension of the contract, documented in
//!   `docs/api-extensions.md`);
//! - a gateway's platform id comes from a SAN URI `urn:mcs:platform:<id>`, or else from
//!   `api.gateway_platforms` keyed by the certificate subject;
//! - a phone's device id is the lowercase hex SHA-256 of its SubjectPublicKeyInfo (DER).

use std::collections::BTreeMap;
use std::sync::Arc;

use der::{Decode, Encode};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::api::Caller;
use crate::config::{ApiConfig, Role};
use crate::pem::{TlsError, file_err, load_certs, load_key};

/// One `[[api.trust]]` entry: a verifier holding only its CA certificates, and its roles.
struct Anchor {
    verifier: Arc<dyn ClientCertVerifier>,
    roles: Vec<Role>,
}

/// The configured trust anchors, each able to verify a chain on its own, with their roles.
pub struct Anchors {
    anchors: Vec<Anchor>,
    gateway_platforms: BTreeMap<String, String>,
    /// When the listener's certificate (`api`) and each anchor (`client_ca:<CN>`) end,
    /// for `mcsd_certificate_expiry_timestamp_seconds`.
    pub certificate_ends: Vec<(String, i64)>,
}

/// Build the API listener's TLS config (client auth mandatory) and the anchor table.
pub fn server_config(api: &ApiConfig) -> Result<(Arc<ServerConfig>, Arc<Anchors>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut all_roots = RootCertStore::empty();
    let mut subjects = Vec::new();
    let mut anchors = Vec::new();
    let mut ends = Vec::new();
    for entry in &api.trust {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(&entry.ca_file)? {
            let parsed = Certificate::from_der(&cert).map_err(|e| file_err(&entry.ca_file, e))?;
            let subject = parsed.tbs_certificate().subject().to_der().map_err(|e| file_err(&entry.ca_file, e))?;
            if subjects.contains(&subject) {
                return Err(file_err(&entry.ca_file, "two trust anchors have the same subject name"));
            }
            subjects.push(subject);
            ends.extend(crate::metrics::certificate_end(&cert).map(|(cn, end)| (format!("client_ca:{cn}"), end)));
            all_roots.add(cert.clone()).map_err(|e| file_err(&entry.ca_file, e))?;
            roots.add(cert).map_err(|e| file_err(&entry.ca_file, e))?;
        }
        anchors.push(Anchor { verifier: client_verifier(roots, &provider)?, roles: entry.roles.clone() });
    }
    let verifier = client_verifier(all_roots, &provider)?;
    let certs = load_certs(&api.cert_file)?;
    let key = load_key(&api.key_file)?;
    ends.extend(certs.first().and_then(|c| crate::metrics::certificate_end(c)).map(|(_, end)| ("api".to_owned(), end)));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Setup(format!("server certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((
        Arc::new(config),
        Arc::new(Anchors { anchors, gateway_platforms: api.gateway_platforms.clone(), certificate_ends: ends }),
    ))
}

fn client_verifier(
    roots: RootCertStore,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// Why a verified certificate still does not give a caller identity.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

impl Anchors {
    /// Decide the caller from the chain the client presented. The roles come from the
    /// anchors under which the leaf verifies on its own — never from a certificate's
    /// position in what the client sent.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Result<Caller, IdentityError> {
        let (leaf_der, intermediates) =
            chain.split_first().ok_or_else(|| IdentityError("no client certificate".into()))?;
        let leaf = Certificate::from_der(leaf_der).map_err(|e| IdentityError(format!("client certificate: {e}")))?;
        let now = UnixTime::now();
        let mut verified =
            self.anchors.iter().filter(|a| a.verifier.verify_client_cert(leaf_der, intermediates, now).is_ok());
        let roles = match verified.next() {
            None => return Err(IdentityError("certificate does not chain to a configured anchor".into())),
            Some(first) if verified.all(|a| a.roles == first.roles) => first.roles.as_slice(),
            Some(_) => return Err(IdentityError("certificate chains to anchors trusted for different roles".into())),
        };

        let uris = san_uris(&leaf);
        let role = if let [only] = roles {
            *only
        } else {
            let named: Vec<Role> = uris
                .iter()
                .filter_map(|u| u.strip_prefix("urn:mcs:role:"))
                .filter_map(|r| match r {
                    "admin" => Some(Role::Admin),
                    "gateway" => Some(Role::Gateway),
                    "app" => Some(Role::App),
                    _ => None,
                })
                .collect();
            match named.as_slice() {
                [r] if roles.contains(r) => *r,
                [_] => return Err(IdentityError("certificate names a role its anchor is not trusted for".into())),
                [] => return Err(IdentityError("certificate names no role (SAN URI urn:mcs:role:<role>)".into())),
                _ => return Err(IdentityError("certificate names several roles".into())),
            }
        };
        let subject = leaf.tbs_certificate().subject().to_string();
        Ok(match role {
            Role::Admin => Caller::Admin { subject },
            Role::App => {
                let spki = leaf
                    .tbs_certificate()
                    .subject_public_key_info()
                    .to_der()
                    .map_err(|e| IdentityError(e.to_string()))?;
                Caller::App { device_id: hex::encode(Sha256::digest(&spki)) }
            }
            Role::Gateway => {
                let platform = uris
                    .iter()
                    .find_map(|u| u.strip_prefix("urn:mcs:platform:"))
                    .map(str::to_owned)
                    .or_else(|| self.gateway_platforms.get(&subject).cloned())
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| IdentityError(format!("gateway `{subject}` has no platform id")))?;
                Caller::Gateway { platform, subject }
            }
        })
    }
}

fn san_uris(cert: &Certificate) -> Vec<String> {
    match cert.tbs_certificate().get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .iter()
            .filter_map(|n| match n {
                GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    }

    fn ca(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let p = ca_params(cn);
        let der = p.self_signed(&key).unwrap().der().clone();
        Ca { der, issuer: Issuer::new(p, key) }
    }

    fn leaf(ca: &Ca, cn: &str, uris: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
        p.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn anchors(entries: Vec<(&Ca, Vec<Role>)>, map: &[(&str, &str)]) -> Anchors {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let anchors = entries
            .into_iter()
            .map(|(c, roles)| {
                let mut roots = RootCertStore::empty();
                roots.add(c.der.clone()).unwrap();
                Anchor { verifier: client_verifier(roots, &provider).unwrap(), roles }
            })
            .collect();
        Anchors {
            anchors,
            gateway_platforms: map.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            certificate_ends: Vec::new(),
        }
    }

    /// Defect 1 of issue 11: a phone appended the operators' CA certificate, an admin's
    /// certificate, or one it made with its own key under the operators' CA name, and was
    /// served as admin. The role must come from the anchor that verified the leaf.
    #[test]
    fn role_confusion_by_an_appended_certificate() {
        let (ops, phones) = (ca("operators"), ca("phones"));
        let a = anchors(vec![(&ops, vec![Role::Admin]), (&phones, vec![Role::App])], &[]);
        let phone = leaf(&phones, "phone", &["urn:mcs:role:admin"]);
        let admin = leaf(&ops, "op", &[]);
        // A certificate the phone made itself: self-issued under the operators' CA name.
        let own_key = KeyPair::generate().unwrap();
        let forged = ca_params("operators").self_signed(&own_key).unwrap().der().clone();
        let forged_child = {
            let issuer = Issuer::new(ca_params("operators"), own_key);
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, "phone");
            p.signed_by(&key, &issuer).unwrap().der().clone()
        };
        for extra in [
            vec![ops.der.clone()],
            vec![admin.clone()],
            vec![forged.clone()],
            vec![admin.clone(), ops.der.clone()],
            vec![forged_child.clone(), forged.clone()],
        ] {
            let mut chain = vec![phone.clone()];
            chain.extend(extra);
            assert!(
                matches!(a.identify(&chain).unwrap(), Caller::App { .. }),
                "an appended certificate changed the role"
            );
        }
        // The forged chain on its own verifies under no anchor.
        assert!(a.identify(&[forged_child, forged]).is_err());
        assert!(matches!(a.identify(&[admin]).unwrap(), Caller::Admin { .. }));
    }

    #[test]
    fn a_leaf_verifying_under_anchors_of_different_roles_is_refused() {
        let shared = ca("shared");
        let a = anchors(vec![(&shared, vec![Role::Admin]), (&shared, vec![Role::App])], &[]);
        let e = a.identify(&[leaf(&shared, "x", &[])]).unwrap_err();
        assert!(e.0.contains("different roles"), "{e}");
    }

    #[test]
    fn single_role_anchor_gives_its_role_and_device_id_is_spki_hash() {
        let phones = ca("phones");
        let a = anchors(vec![(&phones, vec![Role::App])], &[]);
        let cert = leaf(&phones, "phone", &[]);
        let caller = a.identify(std::slice::from_ref(&cert)).unwrap();
        let parsed = Certificate::from_der(&cert).unwrap();
        let spki = parsed.tbs_certificate().subject_public_key_info().to_der().unwrap();
        assert_eq!(caller, Caller::App { device_id: hex::encode(Sha256::digest(&spki)) });
    }

    #[test]
    fn multi_role_anchor_needs_a_role_uri_it_allows() {
        let dev = ca("dev");
        let a = anchors(vec![(&dev, vec![Role::Admin, Role::App])], &[]);
        assert_eq!(a.identify(&[leaf(&dev, "op", &["urn:mcs:role:admin"])]).unwrap().role(), Role::Admin);
        let e = a.identify(&[leaf(&dev, "x", &[])]).unwrap_err();
        assert!(e.0.contains("names no role"), "{e}");
        let e = a.identify(&[leaf(&dev, "x", &["urn:mcs:role:gateway"])]).unwrap_err();
        assert!(e.0.contains("not trusted for"), "{e}");
        let e = a.identify(&[leaf(&dev, "x", &["urn:mcs:role:admin", "urn:mcs:role:app"])]).unwrap_err();
        assert!(e.0.contains("several roles"), "{e}");
    }

    #[test]
    fn gateway_platform_from_uri_or_subject_map() {
        let gw = ca("gateways");
        let a = anchors(vec![(&gw, vec![Role::Gateway])], &[("CN=mapped-gw", "P-MAP")]);
        let c = a.identify(&[leaf(&gw, "gw1", &["urn:mcs:platform:P-1"])]).unwrap();
        assert!(matches!(c, Caller::Gateway { ref platform, .. } if platform == "P-1"));
        let c = a.identify(&[leaf(&gw, "mapped-gw", &[])]).unwrap();
        assert!(matches!(c, Caller::Gateway { ref platform, .. } if platform == "P-MAP"), "{c:?}");
        assert!(a.identify(&[leaf(&gw, "unmapped", &[])]).is_err());
    }

    #[test]
    fn certificate_of_an_unconfigured_issuer_is_refused() {
        let (known, other) = (ca("known"), ca("other"));
        let a = anchors(vec![(&known, vec![Role::App])], &[]);
        assert!(a.identify(&[leaf(&other, "x", &[])]).is_err());
    }
}
