//! Playing the phone app: activation, co-signing, co-decryption, PIN change.
//!
//! The phone keeps `d1` masked by a PIN-derived factor *without* an integrity tag
//! (PROTOCOL.md guidance): unlocking with a wrong PIN silently yields a wrong `d1` and a
//! wrong PIN proof, so a stolen phone cannot test guesses offline — every guess has to go
//! through the daemon's durable counter.

use elliptic_curve::ops::Reduce;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sm2::FieldBytes;
use sm2_2p::{AffinePoint, Ciphertext, ClientShare, Scalar, Signature, Transcript};
use zeroize::Zeroizing;

use crate::transport::{Connection, Error, Result};

const STATE_VERSION: u32 = 1;

/// What the phone stores. Nothing in it reveals `d1` or lets a PIN guess be checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhoneState {
    pub version: u32,
    pub server: String,
    pub key_id: String,
    /// Joint public key, SEC1 uncompressed hex.
    pub public_key: String,
    /// `d1 · m` where `m` is derived from the PIN verifier.
    pub d1_masked: String,
    /// Salt of the PIN verifier (hex, 16 bytes).
    pub pin_salt: String,
}

impl PhoneState {
    pub fn load(path: &std::path::Path) -> Result<PhoneState> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let state: PhoneState =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if state.version != STATE_VERSION {
            return Err(Error::Config(format!("{}: unknown state version {}", path.display(), state.version)));
        }
        Ok(state)
    }

    /// Write with mode 0600.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        f.write_all(text.as_bytes()).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}

/// How the server half signs (PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    Canonical,
    FixedK3,
}

/// A phone unlocked with a PIN: the verifier and the unmasked share, in zeroizing memory.
pub struct Phone {
    pub state: PhoneState,
    verifier: Zeroizing<[u8; 32]>,
    share: ClientShare,
    public: AffinePoint,
}

fn random_salt() -> Result<[u8; 16]> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Config(format!("OS RNG: {e}")))?;
    Ok(salt)
}

/// The masking factor for `d1`, derived from the PIN verifier.
fn mask(verifier: &[u8; 32]) -> Scalar {
    let h = sm2_2p::hmac_sm3(verifier, b"mcs-d1-mask-v1");
    let m = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(h));
    if bool::from(m.is_zero()) { Scalar::ONE } else { m }
}

fn unmask(d1_masked: &Scalar, verifier: &[u8; 32]) -> Scalar {
    *d1_masked * Option::<Scalar>::from(mask(verifier).invert()).unwrap_or(Scalar::ONE)
}

fn answer_scalar(v: &Value, field: &str) -> Result<Scalar> {
    let s = v.get(field).and_then(Value::as_str).ok_or_else(|| Error::Protocol(format!("answer lacks `{field}`")))?;
    sm2_2p::scalar_from_hex(s).map_err(|e| Error::Protocol(format!("answer `{field}`: {e}")))
}

fn answer_point(v: &Value, field: &str) -> Result<AffinePoint> {
    let s = v.get(field).and_then(Value::as_str).ok_or_else(|| Error::Protocol(format!("answer lacks `{field}`")))?;
    sm2_2p::point_from_hex(s).map_err(|e| Error::Protocol(format!("answer `{field}`: {e}")))
}

impl Phone {
    /// Activate an enrollment: make `d1`, send `P1` and the PIN verifier, keep the state.
    pub async fn activate(
        conn: &mut Connection,
        server: &str,
        enrollment_id: &str,
        code: &str,
        pin: &str,
    ) -> Result<Phone> {
        let (phone, csr) = Phone::prepare_activation(server, enrollment_id, code, pin)?.send(conn).await?;
        if let Some(code) = csr {
            phone.install_certificate(conn, &code).await?;
        }
        Ok(phone)
    }

    /// Make `d1` and the activation request, without sending it: a phone whose answer was
    /// lost sends the same request again ([`PreparedActivation::send`]) and gets the same key.
    pub fn prepare_activation(server: &str, enrollment_id: &str, code: &str, pin: &str) -> Result<PreparedActivation> {
        let (share, p1) = sm2_2p::client_keygen();
        let salt = random_salt()?;
        let verifier = sm2_2p::pin_verifier(pin.as_bytes(), &salt);
        let body = json!({
            "activation_code": code,
            "p1": sm2_2p::point_to_hex(&p1),
            "pin": { "salt": hex::encode(salt), "verifier": hex::encode(verifier.as_slice()) },
        });
        Ok(PreparedActivation {
            server: server.to_owned(),
            enrollment_id: enrollment_id.to_owned(),
            share,
            salt,
            verifier,
            body: Zeroizing::new(body.to_string()),
        })
    }

    /// Co-sign this key's certificate request (proof of possession), after checking that
    /// the request names our own joint key and that `e` is its digest.
    pub async fn install_certificate(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        let view = fetch_task(conn, code).await?;
        if view["kind"] != "csr" {
            return Err(Error::Protocol("the activation task is not a certificate request".into()));
        }
        let info = b64_field(&view, &["data", "request_info"])?;
        let spki = sm2_2p::spki_der(&self.public);
        if !info.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(Error::Protocol("the certificate request is not for this phone's key".into()));
        }
        let claimed = self.claim(conn, code).await?;
        let e = sm2_2p::e_for_message(&self.public, &info);
        if claimed["e"].as_str() != Some(hex::encode(e).as_str()) {
            return Err(Error::Protocol("the server's digest is not the digest of the certificate request".into()));
        }
        self.cosign_and_complete(conn, code, &e).await?;
        conn.json(Method::GET, &format!("/v1/keys/{}", self.state.key_id), None).await
    }

    /// Unlock a stored state with a PIN. Cannot fail for a wrong PIN — by design.
    pub fn unlock(state: PhoneState, pin: &str) -> Result<Phone> {
        let salt: [u8; 16] = hex::decode(&state.pin_salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::Config("state: bad pin_salt".into()))?;
        let public = sm2_2p::point_from_hex(&state.public_key).map_err(|e| Error::Config(format!("state: {e}")))?;
        let masked = sm2_2p::scalar_from_hex(&state.d1_masked).map_err(|e| Error::Config(format!("state: {e}")))?;
        let verifier = sm2_2p::pin_verifier(pin.as_bytes(), &salt);
        let share = ClientShare::from_scalar(unmask(&masked, &verifier)).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Phone { state, verifier, share, public })
    }

    pub fn key_id(&self) -> &str {
        &self.state.key_id
    }

    /// The unmasked client share (tests check key consistency with it).
    pub fn share(&self) -> &ClientShare {
        &self.share
    }

    /// The PIN verifier this phone derived (tests search storage for it).
    pub fn verifier(&self) -> &[u8; 32] {
        &self.verifier
    }

    pub fn public_key(&self) -> &AffinePoint {
        &self.public
    }

    /// The PIN proof for a transcript (tests use it to build raw requests).
    pub fn proof(&self, t: &Transcript) -> String {
        sm2_2p::pin_proof(&self.verifier, &self.state.key_id, t)
    }

    /// Sign a message (`e` computed over the joint key with the default ID).
    pub async fn sign_message(&self, conn: &mut Connection, msg: &[u8], mode: SignMode) -> Result<Signature> {
        self.sign_hash(conn, &sm2_2p::e_for_message(&self.public, msg), mode).await
    }

    /// Sign a digest `e`. The result is verified before it is returned.
    pub async fn sign_hash(&self, conn: &mut Connection, e: &[u8; 32], mode: SignMode) -> Result<Signature> {
        let (k1, q1) = ClientShare::sign_start();
        let (e_hex, q1_hex) = (hex::encode(e), sm2_2p::point_to_hex(&q1));
        let mut body = json!({ "e": e_hex, "q1": q1_hex, "pin_proof": self.proof(&Transcript::Sign { e: e_hex.clone(), q1: q1_hex.clone() }) });
        if mode == SignMode::FixedK3 {
            body["mode"] = json!("fixed_k3");
        }
        let answer = conn.json(Method::POST, &format!("/v1/keys/{}/sign", self.state.key_id), Some(&body)).await?;
        let r = answer_scalar(&answer, "r")?;
        let s3 = answer_scalar(&answer, "s3")?;
        let sig = match mode {
            SignMode::Canonical => self.share.sign_finish(&k1, &r, &answer_scalar(&answer, "s2")?, &s3),
            SignMode::FixedK3 => self.share.sign_finish_fixed_k3(&k1, &r, &s3),
        }
        .map_err(|e| Error::Protocol(format!("finishing the signature: {e}")))?;
        if !sm2_2p::verify(&self.public, e, &sig) {
            return Err(Error::Protocol(
                "the joint signature does not verify (wrong PIN or wrong server answer)".into(),
            ));
        }
        Ok(sig)
    }

    /// Decrypt an SM2 ciphertext (C1‖C3‖C2 or DER) with the daemon, blinded.
    pub async fn decrypt(&self, conn: &mut Connection, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let ct = Ciphertext::parse(ciphertext).map_err(|e| Error::Config(format!("ciphertext: {e}")))?;
        let (w, t1) = self.share.decrypt_blind(&ct.c1);
        let t1_hex = sm2_2p::point_to_hex(&t1);
        let body = json!({ "t1": t1_hex, "pin_proof": self.proof(&Transcript::Decrypt { t1: t1_hex.clone() }) });
        let answer = conn.json(Method::POST, &format!("/v1/keys/{}/decrypt", self.state.key_id), Some(&body)).await?;
        let t2 = answer_point(&answer, "t2")?;
        self.share
            .decrypt_finish(&w, &t2, &ct)
            .map_err(|e| Error::Protocol(format!("decryption: {e} (wrong PIN or not encrypted to this key)")))
    }

    /// Change the PIN: proof with the old verifier; re-mask `d1` only after the server agreed.
    pub async fn change_pin(&mut self, conn: &mut Connection, new_pin: &str) -> Result<()> {
        let salt = random_salt()?;
        let verifier = sm2_2p::pin_verifier(new_pin.as_bytes(), &salt);
        let (salt_hex, verifier_hex) = (hex::encode(salt), hex::encode(verifier.as_slice()));
        let body = json!({
            "pin_proof": self.proof(&Transcript::Pin { salt: salt_hex.clone(), verifier: verifier_hex.clone() }),
            "new_pin": { "salt": salt_hex, "verifier": verifier_hex },
        });
        conn.json(Method::POST, &format!("/v1/keys/{}/pin", self.state.key_id), Some(&body)).await?;
        self.state.d1_masked = sm2_2p::scalar_to_hex(&(*self.share.scalar() * mask(&verifier)));
        self.state.pin_salt = salt_hex;
        self.verifier = verifier;
        Ok(())
    }

    /// Revoke this key from the phone (PIN proof over the reason).
    pub async fn revoke(&self, conn: &mut Connection, reason: &str) -> Result<Value> {
        let body = json!({ "reason": reason, "pin_proof": self.proof(&Transcript::Revoke { reason: reason.into() }) });
        conn.json(Method::POST, &format!("/v1/keys/{}/revoke", self.state.key_id), Some(&body)).await
    }
}

/// An activation request made once (`d1`, `P1`, the PIN verifier), to be sent until an
/// answer arrives: the daemon answers a repeat of the same request with the same key.
pub struct PreparedActivation {
    server: String,
    enrollment_id: String,
    share: ClientShare,
    salt: [u8; 16],
    verifier: Zeroizing<[u8; 32]>,
    /// The JSON body; it carries the activation code.
    body: Zeroizing<String>,
}

impl PreparedActivation {
    pub fn enrollment_id(&self) -> &str {
        &self.enrollment_id
    }

    /// Send the activation; returns the phone and its certificate request task, which
    /// [`Phone::install_certificate`] co-signs.
    pub async fn send(&self, conn: &mut Connection) -> Result<(Phone, Option<ScanCode>)> {
        let body: Value = serde_json::from_str(&self.body).map_err(|e| Error::Config(e.to_string()))?;
        let answer =
            conn.json(Method::POST, &format!("/v1/enrollments/{}/activate", self.enrollment_id), Some(&body)).await?;
        let public = answer_point(&answer, "public_key")?;
        let key_id = answer
            .get("key_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol("answer lacks `key_id`".into()))?
            .to_owned();
        let state = PhoneState {
            version: STATE_VERSION,
            server: self.server.clone(),
            key_id,
            public_key: sm2_2p::point_to_hex(&public),
            d1_masked: sm2_2p::scalar_to_hex(&(*self.share.scalar() * mask(&self.verifier))),
            pin_salt: hex::encode(self.salt),
        };
        let phone = Phone { state, verifier: self.verifier.clone(), share: self.share.clone(), public };
        let csr = match answer.get("csr_task") {
            Some(task) => {
                let field = |k: &str| {
                    task[k].as_str().map(str::to_owned).ok_or_else(|| Error::Protocol(format!("csr_task lacks `{k}`")))
                };
                Some(ScanCode { task_id: field("task_id")?, token: field("token")?, url: self.server.clone() })
            }
            None => None,
        };
        Ok((phone, csr))
    }
}

/// What a QR code carries: `mcs://task?v=1&id=<task id>&token=<token>&url=<daemon URL>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCode {
    pub task_id: String,
    pub token: String,
    pub url: String,
}

impl ScanCode {
    pub fn parse(qr: &str) -> Result<ScanCode> {
        let bad = || Error::Config(format!("not an mcs task QR code: {qr}"));
        let query = qr.strip_prefix("mcs://task?").ok_or_else(bad)?;
        let (mut id, mut token, mut url, mut version) = (None, None, None, None);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').ok_or_else(bad)?;
            let v = percent_decode(v).ok_or_else(bad)?;
            match k {
                "v" => version = Some(v),
                "id" => id = Some(v),
                "token" => token = Some(v),
                "url" => url = Some(v),
                _ => {}
            }
        }
        if version.as_deref() != Some("1") {
            return Err(bad());
        }
        Ok(ScanCode { task_id: id.ok_or_else(bad)?, token: token.ok_or_else(bad)?, url: url.ok_or_else(bad)? })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            // Two hex digits exactly (`from_str_radix` alone would also take `+f`).
            let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a task asks for, readable before the phone is unlocked.
pub async fn fetch_task(conn: &mut Connection, code: &ScanCode) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/tasks/{}?token={}", code.task_id, code.token), None).await
}

fn b64_field(v: &Value, path: &[&str]) -> Result<Vec<u8>> {
    use base64::Engine;
    let s = path
        .iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Protocol(format!("answer lacks `{}`", path.join("."))))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| Error::Protocol(format!("`{}`: {e}", path.join("."))))
}

impl Phone {
    /// `GET /v1/tasks/{id}?token=` — what the gateway asks for (shown before the PIN).
    pub async fn view_task(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        fetch_task(conn, code).await
    }

    /// Bind this phone's key to the task.
    pub async fn claim(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        let body = json!({ "token": code.token, "key_id": self.state.key_id });
        conn.json(Method::POST, &format!("/v1/tasks/{}/claim", code.task_id), Some(&body)).await
    }

    /// Refuse a task.
    pub async fn reject(&self, conn: &mut Connection, code: &ScanCode, reason: &str) -> Result<Value> {
        let body = json!({ "token": code.token, "reason": reason });
        conn.json(Method::POST, &format!("/v1/tasks/{}/reject", code.task_id), Some(&body)).await
    }

    /// Check that the server's `e` is the digest of what the task shows, over our key.
    fn check_e(&self, view: &Value, claimed: &Value) -> Result<[u8; 32]> {
        let data = match view["kind"].as_str() {
            Some("login") => b64_field(view, &["data", "challenge"])?,
            Some("sign") => b64_field(view, &["data", "message"])?,
            // The signed attributes of the PDF signature: a document digest, the time, the seal.
            Some("pdf_seal") => b64_field(claimed, &["to_be_signed"])?,
            other => return Err(Error::Protocol(format!("not a signing task: {other:?}"))),
        };
        let e = sm2_2p::e_for_message(&self.public, &data);
        if claimed["e"].as_str() != Some(hex::encode(e).as_str()) {
            return Err(Error::Protocol("the server's digest is not the digest of the shown data".into()));
        }
        Ok(e)
    }

    /// Co-sign a claimed signing task and complete it; returns the signature.
    pub async fn cosign_and_complete(&self, conn: &mut Connection, code: &ScanCode, e: &[u8; 32]) -> Result<Signature> {
        let sig = self.cosign(conn, code, e).await?;
        self.complete_signature(conn, code, &sig).await?;
        Ok(sig)
    }

    /// Co-sign a claimed signing task (fresh nonce) and finish the signature over `e`,
    /// without completing the task: a phone keeps it so a lost `complete` can be repeated.
    pub async fn cosign(&self, conn: &mut Connection, code: &ScanCode, e: &[u8; 32]) -> Result<Signature> {
        let (k1, q1) = ClientShare::sign_start();
        let q1_hex = sm2_2p::point_to_hex(&q1);
        let body =
            json!({ "token": code.token, "q1": q1_hex, "pin_proof": self.proof(&Transcript::TaskSign { task_id: code.task_id.clone(), q1: q1_hex.clone() }) });
        let answer = conn.json(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), Some(&body)).await?;
        self.finish_canonical(&k1, &answer, e)
    }

    fn finish_canonical(&self, k1: &sm2_2p::Nonce, answer: &Value, e: &[u8; 32]) -> Result<Signature> {
        let sig = self
            .share
            .sign_finish(k1, &answer_scalar(answer, "r")?, &answer_scalar(answer, "s2")?, &answer_scalar(answer, "s3")?)
            .map_err(|e| Error::Protocol(format!("finishing the signature: {e}")))?;
        if !sm2_2p::verify(&self.public, e, &sig) {
            return Err(Error::Protocol(
                "the joint signature does not verify (wrong PIN or wrong server answer)".into(),
            ));
        }
        Ok(sig)
    }

    pub async fn complete_signature(&self, conn: &mut Connection, code: &ScanCode, sig: &Signature) -> Result<Value> {
        let body = json!({
            "token": code.token,
            "signature": { "r": sm2_2p::scalar_to_hex(&sig.r), "s": sm2_2p::scalar_to_hex(&sig.s) },
        });
        conn.json(Method::POST, &format!("/v1/tasks/{}/complete", code.task_id), Some(&body)).await
    }

    /// Scan a QR code and do what it asks: login/sign (checked digest), decrypt, encrypt.
    pub async fn scan(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        let view = self.view_task(conn, code).await?;
        let claimed = self.claim(conn, code).await?;
        match view["kind"].as_str() {
            Some("login" | "sign" | "pdf_seal") => {
                let e = self.check_e(&view, &claimed)?;
                self.cosign_and_complete(conn, code, &e).await?;
            }
            Some("decrypt") => {
                let ct = Ciphertext::parse(&b64_field(&claimed, &["ciphertext"])?)
                    .map_err(|e| Error::Protocol(format!("task ciphertext: {e}")))?;
                let (w, t1) = self.share.decrypt_blind(&ct.c1);
                let t1_hex = sm2_2p::point_to_hex(&t1);
                let body = json!({ "token": code.token, "t1": t1_hex, "pin_proof": self.proof(&Transcript::TaskDecrypt { task_id: code.task_id.clone(), t1: t1_hex.clone() }) });
                let answer =
                    conn.json(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), Some(&body)).await?;
                let plaintext = self
                    .share
                    .decrypt_finish(&w, &answer_point(&answer, "t2")?, &ct)
                    .map_err(|e| Error::Protocol(format!("decryption: {e}")))?;
                use base64::Engine;
                let body = json!({ "token": code.token, "plaintext": base64::engine::general_purpose::STANDARD.encode(plaintext.as_slice()) });
                conn.json(Method::POST, &format!("/v1/tasks/{}/complete", code.task_id), Some(&body)).await?;
            }
            Some("encrypt") => {}
            other => return Err(Error::Protocol(format!("unknown task kind {other:?}"))),
        }
        Ok(view)
    }

    /// Claim several signing tasks and co-sign them with one PIN proof, then complete each.
    pub async fn batch_sign(&self, conn: &mut Connection, codes: &[ScanCode]) -> Result<Vec<Result<Signature>>> {
        let mut prepared = Vec::new();
        for code in codes {
            let view = self.view_task(conn, code).await?;
            let claimed = self.claim(conn, code).await?;
            let e = self.check_e(&view, &claimed)?;
            let (k1, q1) = ClientShare::sign_start();
            prepared.push((code, e, k1, sm2_2p::point_to_hex(&q1)));
        }
        let transcript =
            Transcript::Batch { items: prepared.iter().map(|(c, _, _, q1)| (c.task_id.clone(), q1.clone())).collect() };
        let body = json!({
            "items": prepared.iter().map(|(c, _, _, q1)| json!({ "task_id": c.task_id, "token": c.token, "q1": q1 })).collect::<Vec<_>>(),
            "key_id": self.state.key_id,
            "pin_proof": self.proof(&transcript),
        });
        let answer = conn.json(Method::POST, "/v1/tasks/batch/cosign", Some(&body)).await?;
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for ((code, e, k1, _), item) in prepared.iter().zip(items) {
            if let Some(err) = item.get("error") {
                out.push(Err(Error::Protocol(format!("{}: {err}", code.task_id))));
                continue;
            }
            let sig = match self.finish_canonical(k1, &item, e) {
                Ok(sig) => sig,
                Err(err) => {
                    out.push(Err(err));
                    continue;
                }
            };
            out.push(self.complete_signature(conn, code, &sig).await.map(|_| sig));
        }
        Ok(out)
    }
}

/// SubjectPublicKeyInfo PEM (id-ecPublicKey with the SM2 curve), as OpenSSL 3 reads it.
pub fn public_key_pem(p: &AffinePoint) -> String {
    pem("PUBLIC KEY", &sm2_2p::spki_der(p))
}

/// PEM armour for DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The key's certificate and then its chain, as PEM (from `GET /v1/keys/{id}`).
pub fn certificate_pem(key: &Value) -> Result<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaf = key["certificate"].as_str().ok_or_else(|| Error::Protocol("the key has no certificate yet".into()))?;
    let mut out = String::new();
    for c in std::iter::once(leaf).chain(key["chain"].as_array().into_iter().flatten().filter_map(Value::as_str)) {
        out.push_str(&pem("CERTIFICATE", &b64.decode(c).map_err(|e| Error::Protocol(format!("certificate: {e}")))?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_parse_and_garbage_is_refused() {
        let code = ScanCode::parse("mcs://task?v=1&id=t_1&token=ab&url=https%3A%2F%2Fh%3A1").unwrap();
        assert_eq!(code, ScanCode { task_id: "t_1".into(), token: "ab".into(), url: "https://h:1".into() });
        assert!(ScanCode::parse("https://evil/").is_err());
        assert!(ScanCode::parse("mcs://task?v=2&id=t&token=a&url=u").is_err());
        assert!(ScanCode::parse("mcs://task?v=1&id=t&url=u").is_err());
    }

    #[test]
    fn masking_round_trips_and_a_wrong_pin_gives_another_valid_scalar() {
        let (share, _) = sm2_2p::client_keygen();
        let salt = [9u8; 16];
        let right = sm2_2p::pin_verifier(b"123456", &salt);
        let wrong = sm2_2p::pin_verifier(b"654321", &salt);
        let masked = *share.scalar() * mask(&right);
        assert_eq!(unmask(&masked, &right), *share.scalar());
        let guess = unmask(&masked, &wrong);
        assert_ne!(guess, *share.scalar());
        assert!(!bool::from(guess.is_zero()), "a wrong PIN must still give a plausible share");
    }
}
