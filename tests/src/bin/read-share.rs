//! Test-only: print a key's server share (`d2 ‖ d2⁻¹`, hex) by unwrapping its stored blob
//! through the HSM, so a test can search the database files for the real secret bytes.
//! Run with the daemon stopped: `SOFTHSM2_CONF=… read-share <config> <key id>`.

use mcsd::hsm::{Hsm, SecretKind};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, key_id] = args.as_slice() else {
        eprintln!("usage: read-share <config> <key id>");
        std::process::exit(2);
    };
    let cfg = mcsd::config::Config::load(config.as_ref()).expect("config");
    let store = mcsd::store::Store::open(&cfg.store.path).expect("store");
    let blob = store.secret(key_id, SecretKind::Share).expect("store read").expect("no share record");
    let hsm = Hsm::connect(&cfg.hsm).expect("HSM");
    let share = hsm.unwrap(key_id, SecretKind::Share, &blob).expect("unwrap");
    println!("{}", hex::encode(share.as_slice()));
}
