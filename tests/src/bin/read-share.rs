//! Test-only: print a server secret (a key's share `d2 ‖ d2⁻¹`, hex, by default) by
//! unwrapping its stored blob through the HSM, so a test can search the database files for
//! the real secret bytes. With `--wrapped`, print the stored (HSM-wrapped) blob instead,
//! without the HSM. `--kind` names another secret by its label (`delegate-share`,
//! `delegate-pin-verifier`, `delegate-handover`, `pin-verifier`, …); for a delegation's,
//! the owner is the delegation id.
//! Run with the daemon stopped:
//! `SOFTHSM2_CONF=… read-share [--wrapped] [--kind LABEL] <config> <key or delegation id>`.

use mcsd::hsm::Hsm;
use mcsd::model::secret::SecretKind;

const USAGE: &str = "usage: read-share [--wrapped] [--kind LABEL] <config> <key or delegation id>";

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut wrapped = false;
    let mut kind = SecretKind::Share;
    while let Some(flag) = args.first().filter(|a| a.starts_with("--")).cloned() {
        args.remove(0);
        match flag.as_str() {
            "--wrapped" => wrapped = true,
            "--kind" if !args.is_empty() => {
                let label = args.remove(0);
                kind = SecretKind::from_label(label.as_bytes()).unwrap_or_else(|| {
                    eprintln!("unknown secret kind `{label}`");
                    std::process::exit(2);
                });
            }
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let [config, owner] = args.as_slice() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let cfg = mcsd::config::Config::load(config.as_ref()).expect("config");
    let store = mcsd::store::Store::open(&cfg.store.path).expect("store");
    let blob = store.secret(owner, kind).expect("store read").expect("no such secret record");
    if wrapped {
        println!("{}", hex::encode(&blob));
        return;
    }
    let hsm = Hsm::connect(&cfg.hsm).expect("HSM");
    let secret = hsm.unwrap(owner, kind, &blob).expect("unwrap");
    println!("{}", hex::encode(secret.as_slice()));
}
