//! A load generator: many phones' worth of operations over mTLS with keep-alive.
//!
//! Each worker holds one connection and runs one kind of operation in a loop, recording
//! each one's latency: co-signatures (`/v1/keys/{id}/sign`, a fresh PIN proof and nonce
//! each time, the joint signature checked), co-decryptions (`/v1/keys/{id}/decrypt`, a
//! fresh blinding each time, the plaintext checked), or the cheapest authenticated read
//! (`GET /v1/keys/{id}`: TLS, HTTP, routing, the caller's role, one store read, JSON — the
//! ceiling of the HTTP path). Used by `mcs app load` and the benchmark suite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::phone::{Phone, SignMode};
use crate::transport::{Connection, Endpoint, Result};

#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub ops: u64,
    pub errors: u64,
    /// The first error, if any (what went wrong, for the report).
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Per-operation latency, microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl LoadResult {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q`-quantile latency in milliseconds (`q` in 0..=1).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// What each operation of a load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadOp {
    /// `POST /v1/keys/{id}/sign`: a co-signature, checked.
    Cosign,
    /// `POST /v1/keys/{id}/decrypt`: a blinded co-decryption, the plaintext checked.
    Decrypt,
    /// `GET /v1/keys/{id}`: the cheapest authenticated read.
    ReadKey,
}

/// What the decrypt load's ciphertexts carry (checked on every answer).
const PLAINTEXT: &[u8] = b"a bid file's content key, 32 B..";

/// Co-sign for `duration` with `concurrency` connections: [`run_load`] with
/// [`LoadOp::Cosign`].
pub async fn cosign_load(
    endpoint: &Endpoint,
    phones: &[Arc<Phone>],
    concurrency: usize,
    duration: Duration,
) -> Result<LoadResult> {
    run_load(endpoint, phones, concurrency, duration, LoadOp::Cosign).await
}

/// Run `op` for `duration` with `concurrency` connections, each running operations back
/// to back. Each operation takes the next phone (key) round-robin across all workers, so a
/// long list spreads the load over that many keys.
pub async fn run_load(
    endpoint: &Endpoint,
    phones: &[Arc<Phone>],
    concurrency: usize,
    duration: Duration,
    op: LoadOp,
) -> Result<LoadResult> {
    // One ciphertext per key, made before the clock starts.
    let ciphertexts: Arc<Vec<Vec<u8>>> = Arc::new(match op {
        LoadOp::Decrypt => phones.iter().map(|p| sm2_2p::encrypt(p.public_key(), PLAINTEXT).to_c1c3c2()).collect(),
        _ => Vec::new(),
    });
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Connection::connect(endpoint).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let phones: Vec<Arc<Phone>> = phones.to_vec();
        let ciphertexts = ciphertexts.clone();
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first) = (Vec::new(), 0u64, None);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut e = [0u8; 32];
                e[..8].copy_from_slice(&(i as u64).to_be_bytes());
                e[8..16].copy_from_slice(&n.to_be_bytes());
                let which = (i + n as usize * concurrency) % phones.len();
                let phone = &phones[which];
                n += 1;
                let t = Instant::now();
                let done =
                    match op {
                        LoadOp::Cosign => phone.sign_hash(&mut conn, &e, SignMode::Canonical).await.map(drop),
                        LoadOp::Decrypt => phone.decrypt(&mut conn, &ciphertexts[which]).await.and_then(|plain| {
                            match plain.as_slice() == PLAINTEXT {
                                true => Ok(()),
                                false => Err(crate::transport::Error::Protocol("decrypt load: wrong plaintext".into())),
                            }
                        }),
                        LoadOp::ReadKey => {
                            conn.json(hyper::Method::GET, &format!("/v1/keys/{}", phone.key_id()), None).await.map(drop)
                        }
                    };
                match done {
                    Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first)
        }));
    }
    let mut out = LoadResult::default();
    for w in workers {
        let (lat, errors, first) =
            w.await.map_err(|e| crate::transport::Error::Protocol(format!("load worker: {e}")))?;
        out.latencies_us.extend(lat);
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    out.elapsed = start.elapsed();
    out.ops = out.latencies_us.len() as u64;
    out.latencies_us.sort_unstable();
    Ok(out)
}
