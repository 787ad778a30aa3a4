//! Test-only: print a key's server share (`d2 ‖ d2⁻¹`, hex) by unwrapping its stored blob
//! through the HSM, so a test can search the database files for the real secret bytes.
//! With `--wrapped`, print the stored (HSM-wrapped) blob instead, without the HSM.
//! Run with the daemon stopped: `SOFTHSM2_CONF=… read-share [--wrapped] <config> <key id>`.

use mcsd::hsm::Hsm;
use mcsd::model::secret::SecretKind;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wrapped = args.first().is_some_and(|a| a == "--wrapped");
    if wrapped {
        args.remove(0);
    }
    let [config, key_id] = args.as_slice() else {
        eprintln!("usage: read-share [--wrapped] <config> <key id>");
        std::process::exit(2);
    };
    let cfg = mcsd::config::Config::load(config.as_ref()).expect("config");
    let store = mcsd::store::Store::open(&cfg.store.path).expect("store");
    let blob = store.secret(key_id, SecretKind::Share).expect("store read").expect("no share record");
    if wrapped {
        println!("{}", hex::encode(&blob));
        return;
    }
    let hsm = Hsm::connect(&cfg.hsm).expect("HSM");
    let share = hsm.unwrap(key_id, SecretKind::Share, &blob).expect("unwrap");
    println!("{}", hex::encode(share.as_slice()));
}
