//! Fuzz target: what the daemon reads from a CA adapter's answer — the status and bytes
//! (`plugins::decode_answer`, for every status), then an `issue` answer's certificate and
//! chain (`keys::certificates::parse_issued`, after `plugins::ca::answer` reads it as an
//! `IssueAnswer`), checked against the key of the seed certificate so that
//! seeds get past the key comparison.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcs_plugin_abi as abi;

/// `SEED_KEY` of `examples/make_seeds.rs`.
const SEED_KEY: [u8; 32] = *b"mcsd fuzz seed key, not a secret";

fn seed_public_key() -> &'static sm2_2p::AffinePoint {
    static KEY: OnceLock<sm2_2p::AffinePoint> = OnceLock::new();
    KEY.get_or_init(|| sm2_2p::DaemonKey::from_bytes(&SEED_KEY).expect("the seed key is a scalar").public())
}

fuzz_target!(|data: &[u8]| {
    for status in [abi::STATUS_ERROR, abi::STATUS_UNSUPPORTED, 7] {
        assert!(mcsd::plugins::decode_answer("fuzz", "issue", status, data).is_err());
    }
    let Ok(answer) = mcsd::plugins::decode_answer("fuzz", "issue", abi::STATUS_OK, data) else { return };
    let Ok(answer) = mcsd::plugins::ca::answer::<mcsd::plugins::ca::IssueAnswer>("fuzz", "issue", answer) else {
        return;
    };
    let _ = mcsd::keys::certificates::parse_issued(&answer, seed_public_key());
});
