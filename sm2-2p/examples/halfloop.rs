fn main() {
    let (_client, p1) = sm2_2p::client_keygen();
    let (share, _public) = sm2_2p::server_keygen(&p1);
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let e = [7u8; 32];
    sm2_2p::fast::warm_up();
    let what = std::env::args().nth(1).unwrap_or_default();
    let n = 20000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        if what == "rc" { use sm2::elliptic_curve::ops::LinearCombination; let q = sm2::ProjectivePoint::from(q1); let k2 = sm2_2p::random_nonzero_scalar(); let k3 = sm2_2p::random_nonzero_scalar(); let p = sm2::ProjectivePoint::lincomb(&[(q, k3), (sm2::ProjectivePoint::GENERATOR, k2)]); std::hint::black_box(p.to_affine()); } else if what == "dec" { std::hint::black_box(share.decrypt(&q1)); } else { std::hint::black_box(share.sign(&e, &q1)); }
    }
    let el = t.elapsed();
    println!("{} {:.1} us/op {:.0}/s", what, el.as_micros() as f64 / n as f64, n as f64 / el.as_secs_f64());
}
