//! The server half in a tight loop, for `perf record` and quick A/B runs:
//! `cargo run --release -p sm2-2p --example halfloop [sign|decrypt|rustcrypto]`.
//! (`cargo xtask bench` is the measurement of record; this is for looking inside.)

use sm2::elliptic_curve::ops::LinearCombination;

fn main() {
    let (_client, p1) = sm2_2p::client_keygen();
    let (share, _public) = sm2_2p::server_keygen(&p1);
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let e = [7u8; 32];
    sm2_2p::fast::warm_up();
    let what = std::env::args().nth(1).unwrap_or_else(|| "sign".into());
    let q = sm2::ProjectivePoint::from(q1);
    // Batches of 500: the fastest batch is what the code costs, the median what this
    // (shared, noisy) machine gave it.
    let (batches, n) = (40, 500);
    let mut per_op = Vec::with_capacity(batches);
    for _ in 0..batches {
        let start = std::time::Instant::now();
        for _ in 0..n {
            match what.as_str() {
                "decrypt" => drop(std::hint::black_box(share.decrypt(&q1))),
                "rustcrypto" => {
                    let (k2, k3) = (sm2_2p::random_nonzero_scalar(), sm2_2p::random_nonzero_scalar());
                    let p = sm2::ProjectivePoint::lincomb(&[(q, k3), (sm2::ProjectivePoint::GENERATOR, k2)]);
                    std::hint::black_box(p.to_affine());
                }
                _ => drop(std::hint::black_box(share.sign(&e, &q1))),
            }
        }
        per_op.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    per_op.sort_by(f64::total_cmp);
    println!(
        "{what}: fastest batch {:.1} µs/op ({:.0} ops/s), median {:.1} µs/op",
        per_op[0],
        1e6 / per_op[0],
        per_op[batches / 2]
    );
}
