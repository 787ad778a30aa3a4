//! A load generator: many phones' worth of operations over mTLS with keep-alive.
//!
//! Each worker holds one connection and runs one kind of operation in a loop, recording
//! each one's latency: co-signatures (`/v1/keys/{id}/sign`, a fresh PIN proof and nonce
//! each time, the joint signature checked), co-decryptions (`/v1/keys/{id}/decrypt`, a
//! fresh blinding each time, the plaintext checked), or the cheapest authenticated read
//! (`GET /v1/keys/{id}`: TLS, HTTP, routing, the caller's role, one store read, JSON — the
//! ceiling of the HTTP path). Used by `mcs app load` and the benchmark suite.
//!
//! Closed loop (no rate): each connection sends its next request as soon as the last one is
//! answered, so the figure is the peak. Open loop (a target rate): requests are due at fixed
//! intervals of `1/rate`, dealt round-robin to the connections; each latency is measured
//! from the request's *due* time, not from when it could be sent, so a server that falls
//! behind shows the queueing in its latencies instead of slowing the load down (no
//! coordinated omission).

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
    /// Open loop only: requests due in the window but never sent, because the run stopped
    /// draining the backlog at twice its duration (0 when the server kept up).
    pub missed: u64,
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
    run_load(endpoint, phones, concurrency, duration, LoadOp::Cosign, None).await
}

/// The open-loop schedule: how long after the start the `n`-th request of connection `i`
/// (of `connections`) is due. Request `k = i + n·connections` overall is due at `k / rate`
/// seconds: evenly spaced, dealt round-robin to the connections.
pub fn due_after(rate: f64, connections: usize, i: usize, n: u64) -> Duration {
    Duration::from_secs_f64((i as u64 + n * connections as u64) as f64 / rate)
}

/// Run `op` for `duration` with `concurrency` connections. Without `rate` (closed loop)
/// each connection runs operations back to back. With `rate` (ops/s, open loop) the
/// operations are due on the schedule of [`due_after`] and each latency counts from its due
/// time; every operation due within `duration` is sent, a connection that is behind sending
/// its next one at once, until the backlog is drained or twice `duration` has passed (the
/// rest count as [`LoadResult::missed`]). Each operation takes the next phone (key)
/// round-robin across all workers, so a long list spreads the load over that many keys.
pub async fn run_load(
    endpoint: &Endpoint,
    phones: &[Arc<Phone>],
    concurrency: usize,
    duration: Duration,
    op: LoadOp,
    rate: Option<f64>,
) -> Result<LoadResult> {
    if let Some(r) = rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(crate::transport::Error::Config(format!("load rate must be a positive number of ops/s, not {r}")));
    }
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
    let give_up = deadline + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let phones: Vec<Arc<Phone>> = phones.to_vec();
        let ciphertexts = ciphertexts.clone();
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first, mut missed) = (Vec::new(), 0u64, None, 0u64);
            let mut n = 0u64;
            loop {
                // When this operation counts from: now (closed loop), or its due time.
                let t = match rate {
                    None if Instant::now() >= deadline => break,
                    None => Instant::now(),
                    Some(r) => {
                        let due = start + due_after(r, concurrency, i, n);
                        if due >= deadline {
                            break;
                        }
                        if Instant::now() >= give_up {
                            while start + due_after(r, concurrency, i, n) < deadline {
                                missed += 1;
                                n += 1;
                            }
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                let mut e = [0u8; 32];
                e[..8].copy_from_slice(&(i as u64).to_be_bytes());
                e[8..16].copy_from_slice(&n.to_be_bytes());
                let which = (i + n as usize * concurrency) % phones.len();
                let phone = &phones[which];
                n += 1;
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
            (lat, errors, first, missed)
        }));
    }
    let mut out = LoadResult::default();
    for w in workers {
        let (lat, errors, first, missed) =
            w.await.map_err(|e| crate::transport::Error::Protocol(format!("load worker: {e}")))?;
        out.latencies_us.extend(lat);
        out.errors += errors;
        out.missed += missed;
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    out.elapsed = start.elapsed();
    out.ops = out.latencies_us.len() as u64;
    out.latencies_us.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_loop_schedule_is_evenly_spaced_and_dealt_round_robin() {
        let (rate, connections, window) = (1000.0, 3, Duration::from_secs(1));
        let mut all = Vec::new();
        for i in 0..connections {
            let mine: Vec<Duration> =
                (0..).map(|n| due_after(rate, connections, i, n)).take_while(|d| *d < window).collect();
            // Each connection's requests are `connections / rate` apart.
            for w in mine.windows(2) {
                assert!(((w[1] - w[0]).as_secs_f64() - connections as f64 / rate).abs() < 1e-9);
            }
            all.extend(mine);
        }
        // Together: one request every 1/rate, exactly rate × window of them.
        all.sort();
        assert_eq!(all.len(), 1000);
        for (k, d) in all.iter().enumerate() {
            assert!((d.as_secs_f64() - k as f64 / rate).abs() < 1e-9, "request {k} due at {d:?}");
        }
    }
}
