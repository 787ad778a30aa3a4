//! GB/T 35275 containers: RFC 5652 `SignedData` and `EnvelopedData` with the SM2, SM3 and
//! SM4 identifiers the standard uses (platforms exchange signatures and bid files so).
//!
//! The outer `ContentInfo` carries the RFC 5652 type (`id-signedData`, `id-envelopedData`),
//! so OpenSSL and every CMS reader parse it; inside, the content type is GB/T 35275's `data`
//! ([`GB_DATA`]), the digest SM3, the signature SM2-with-SM3, the key transport SM2
//! encryption ([`SM2_ENCRYPT`], the encrypted key a GM/T 0009 `SM2Cipher`) and the content
//! encryption SM4-CBC ([`SM4_CBC`], the IV as its OCTET STRING parameter, PKCS #7 padding).
//! [`GB_SIGNED_DATA`] and [`GB_ENVELOPED_DATA`] are the standard's own outer types; readers
//! here accept either.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::Attributes;

use crate::Error;
use crate::cms::{Algorithm, Encapsulated, Signer, invalid};

/// GB/T 35275 `data`.
pub const GB_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.1");
/// GB/T 35275 `signedData`.
pub const GB_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.2");
/// GB/T 35275 `envelopedData`.
pub const GB_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.3");
/// SM2 public-key encryption (GB/T 32918.4), the key transport algorithm.
pub const SM2_ENCRYPT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301.3");
/// SM4 in CBC mode.
pub const SM4_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.104.2");
/// RFC 5652 `id-envelopedData`.
pub const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");

/// The SM4 block size.
pub const BLOCK: usize = 16;

/// The signed attributes of a detached signature over `message`: contentType GB `data`,
/// signingTime, messageDigest = SM3(message).
pub fn signed_attributes(message: &[u8], signing_time: u64) -> Result<Attributes, Error> {
    crate::cms::signed_attributes_for(GB_DATA, &Algorithm::Sm2.digest(&[message]), signing_time, None)
}

/// The detached `SignedData` (`ContentInfo` DER): one SM2 signer with its certificate and
/// `chain`, the signed attributes it signed (`attrs`, see [`signed_attributes`]) and its DER
/// signature.
pub fn detached_signed_data(
    signer_cert: &[u8],
    chain: &[Vec<u8>],
    attrs: Attributes,
    signature_der: &[u8],
) -> Result<Vec<u8>, Error> {
    let signer = Signer {
        alg: Algorithm::Sm2,
        cert: signer_cert,
        more_certs: chain,
        signed: attrs,
        signature: signature_der,
        unsigned: None,
        carry_certs: true,
    };
    crate::cms::assemble(&Encapsulated { content_type: GB_DATA, content: None }, signer)
}

/// Is `parsed`'s messageDigest the SM3 digest of `message`?
pub fn digests(parsed: &crate::cms::Parsed, message: &[u8]) -> bool {
    parsed.message_digest == Algorithm::Sm2.digest(&[message])
}

/// A detached SM2 signature read back: the container parses, its content is detached and
/// of GB `data` (or `id-data`) type. The caller checks [`digests`], the signature over
/// [`crate::cms::Parsed::to_be_signed`] with the signer's key, and the certificate.
pub fn open_detached(container: &[u8]) -> Result<crate::cms::Parsed, Error> {
    let (parsed, encap) = crate::cms::open(&outer_as_rfc5652(container)?)?;
    if encap.econtent.is_some() {
        return Err(Error::Invalid("the signature is not detached".into()));
    }
    if encap.econtent_type != GB_DATA && encap.econtent_type != crate::cms::ID_DATA {
        return Err(Error::Unsupported(format!("content type {}", encap.econtent_type)));
    }
    if parsed.algorithm != Algorithm::Sm2 {
        return Err(Error::Unsupported("not an SM2 signature".into()));
    }
    Ok(parsed)
}

/// A container whose outer type may be GB/T 35275's, as the RFC 5652 one (the structures
/// are the same).
fn outer_as_rfc5652(container: &[u8]) -> Result<Vec<u8>, Error> {
    let (ci, _) = ContentInfo::from_der_partial(container).map_err(|e| Error::Invalid(format!("CMS: {e}")))?;
    let content_type = match ci.content_type {
        GB_SIGNED_DATA => crate::cms::ID_SIGNED_DATA,
        GB_ENVELOPED_DATA => ID_ENVELOPED_DATA,
        other => other,
    };
    ContentInfo { content_type, content: ci.content }.to_der().map_err(invalid)
}

/// SM4-CBC with PKCS #7 padding.
pub fn sm4_cbc_encrypt(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<sm4::Sm4>::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// The inverse of [`sm4_cbc_encrypt`]; `None` if the padding is not valid (a wrong key).
pub fn sm4_cbc_decrypt(key: &[u8; 16], iv: &[u8; 16], ciphertext: &[u8]) -> Option<Vec<u8>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK) {
        return None;
    }
    cbc::Decryptor::<sm4::Sm4>::new(key.into(), iv.into()).decrypt_padded_vec::<Pkcs7>(ciphertext).ok()
}

/// Does `key` decrypt the last block of a ciphertext to valid padding? `tail` is the IV and
/// the ciphertext's last block, or its last two blocks: enough to check a key without the
/// whole content (a wrong key passes with probability about 1/256).
pub fn key_opens_tail(key: &[u8; 16], tail: &[u8; 2 * BLOCK]) -> bool {
    let (prev, last) = tail.split_at(BLOCK);
    let prev: [u8; BLOCK] = prev.try_into().unwrap_or([0; BLOCK]);
    sm4_cbc_decrypt(key, &prev, last).is_some()
}

/// One recipient of an envelope: whom it names and its encrypted content-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// DER of the issuer's Name.
    pub issuer: Vec<u8>,
    /// The serial number's bytes, as in the certificate.
    pub serial: Vec<u8>,
    pub key_encryption: ObjectIdentifier,
    /// The encrypted key as it stands (for SM2, a DER `SM2Cipher`).
    pub encrypted_key: Vec<u8>,
}

impl Recipient {
    /// Does this recipient name `cert` (issuer and serial)?
    pub fn names(&self, cert: &[u8]) -> bool {
        Certificate::from_der(cert).is_ok_and(|c| {
            c.tbs_certificate().serial_number().as_bytes() == self.serial.as_slice()
                && c.tbs_certificate().issuer().to_der().is_ok_and(|i| i == self.issuer)
        })
    }
}

/// An envelope read back.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub recipients: Vec<Recipient>,
    pub content_type: ObjectIdentifier,
    pub iv: [u8; BLOCK],
    /// The encrypted content; `None` when the envelope carries none (the content travels
    /// apart: only the key is asked for).
    pub content: Option<Vec<u8>>,
}

impl Envelope {
    /// [`key_opens_tail`]'s `tail` of the content, if there is content.
    pub fn tail(&self) -> Option<[u8; 2 * BLOCK]> {
        let c = self.content.as_deref()?;
        if c.len() < BLOCK || !c.len().is_multiple_of(BLOCK) {
            return None;
        }
        let prev = if c.len() == BLOCK { &self.iv[..] } else { &c[c.len() - 2 * BLOCK..c.len() - BLOCK] };
        let mut out = [0u8; 2 * BLOCK];
        out[..BLOCK].copy_from_slice(prev);
        out[BLOCK..].copy_from_slice(&c[c.len() - BLOCK..]);
        Some(out)
    }
}

/// An `EnvelopedData` (`ContentInfo` DER) of `plaintext` for the holder of `recipient_cert`:
/// content SM4-CBC under `key` and `iv`, the key transported as `encrypted_key` (the SM2
/// encryption of `key` to the certificate's public key, DER `SM2Cipher`).
pub fn envelope(
    recipient_cert: &[u8],
    encrypted_key: &[u8],
    key: &[u8; 16],
    iv: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    envelope_from_parts(recipient_cert, encrypted_key, iv, Some(&sm4_cbc_encrypt(key, iv, plaintext)))
}

/// [`envelope`] from parts made elsewhere: the encrypted key (DER `SM2Cipher`), the IV and
/// the SM4-CBC content (`None`: an envelope carrying only its key, the content apart).
pub fn envelope_from_parts(
    recipient_cert: &[u8],
    encrypted_key: &[u8],
    iv: &[u8; 16],
    encrypted_content: Option<&[u8]>,
) -> Result<Vec<u8>, Error> {
    let cert = Certificate::from_der(recipient_cert).map_err(|e| Error::Invalid(format!("certificate: {e}")))?;
    let ktri = KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate().issuer().clone(),
            serial_number: cert.tbs_certificate().serial_number().clone(),
        }),
        key_enc_alg: AlgorithmIdentifierOwned { oid: SM2_ENCRYPT, parameters: None },
        enc_key: OctetString::new(encrypted_key.to_vec()).map_err(invalid)?,
    };
    let mut recipients = SetOfVec::new();
    recipients.insert(RecipientInfo::Ktri(ktri)).map_err(invalid)?;
    let iv_param = Any::encode_from(&OctetString::new(iv.to_vec()).map_err(invalid)?).map_err(invalid)?;
    let ed = EnvelopedData {
        version: CmsVersion::V0,
        originator_info: None,
        recip_infos: RecipientInfos(recipients),
        encrypted_content: EncryptedContentInfo {
            content_type: GB_DATA,
            content_enc_alg: AlgorithmIdentifierOwned { oid: SM4_CBC, parameters: Some(iv_param) },
            encrypted_content: encrypted_content.map(|c| OctetString::new(c.to_vec())).transpose().map_err(invalid)?,
        },
        unprotected_attrs: None,
    };
    let ci = ContentInfo { content_type: ID_ENVELOPED_DATA, content: Any::encode_from(&ed).map_err(invalid)? };
    ci.to_der().map_err(invalid)
}

/// Read an envelope: its key-transport recipients and its SM4-CBC content.
pub fn open_envelope(der: &[u8]) -> Result<Envelope, Error> {
    let ci = ContentInfo::from_der(&outer_as_rfc5652(der)?).map_err(|e| Error::Invalid(format!("CMS: {e}")))?;
    if ci.content_type != ID_ENVELOPED_DATA {
        return Err(Error::Invalid("not an EnvelopedData".into()));
    }
    let ed: EnvelopedData = ci.content.decode_as().map_err(|e| Error::Invalid(format!("EnvelopedData: {e}")))?;
    let mut recipients = Vec::new();
    for ri in ed.recip_infos.0.iter() {
        let RecipientInfo::Ktri(k) = ri else { continue };
        let RecipientIdentifier::IssuerAndSerialNumber(isn) = &k.rid else { continue };
        recipients.push(Recipient {
            issuer: isn.issuer.to_der().map_err(invalid)?,
            serial: isn.serial_number.as_bytes().to_vec(),
            key_encryption: k.key_enc_alg.oid,
            encrypted_key: k.enc_key.as_bytes().to_vec(),
        });
    }
    if recipients.is_empty() {
        return Err(Error::Unsupported("no key-transport recipient identified by issuer and serial".into()));
    }
    let eci = &ed.encrypted_content;
    if eci.content_enc_alg.oid != SM4_CBC {
        return Err(Error::Unsupported(format!("content encryption {}", eci.content_enc_alg.oid)));
    }
    let iv = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<OctetString>().ok())
        .and_then(|o| <[u8; BLOCK]>::try_from(o.as_bytes()).ok())
        .ok_or_else(|| Error::Invalid("SM4-CBC without a 16-byte IV".into()))?;
    let content = eci.encrypted_content.as_ref().map(|c| c.as_bytes().to_vec());
    if content.as_ref().is_some_and(|c| c.is_empty() || !c.len().is_multiple_of(BLOCK)) {
        return Err(Error::Invalid("the encrypted content is not whole SM4 blocks".into()));
    }
    Ok(Envelope { recipients, content_type: eci.content_type, iv, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm4_cbc_round_trips_and_the_tail_tells_a_wrong_key() {
        let (key, iv) = ([7u8; 16], [9u8; 16]);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = sm4_cbc_encrypt(&key, &iv, &plain);
            assert_eq!(ct.len(), (len / 16 + 1) * 16);
            assert_eq!(sm4_cbc_decrypt(&key, &iv, &ct).as_deref(), Some(plain.as_slice()));
            let env = Envelope { recipients: vec![], content_type: GB_DATA, iv, content: Some(ct) };
            assert!(key_opens_tail(&key, &env.tail().unwrap()), "{len}");
        }
        // GB/T 32907 example: SM4 of 0123456789abcdeffedcba9876543210 under itself.
        let k: [u8; 16] =
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
        let ct = sm4_cbc_encrypt(&k, &[0u8; 16], &k);
        assert_eq!(hex_of(&ct[..16]), "681edf34d206965e86b3e94f536e4246");
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
