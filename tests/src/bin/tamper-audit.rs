//! Test-only: change the audit chain behind the daemon's back (daemon stopped), to prove
//! `mcsd audit verify` notices. `tamper-audit <config> flip|delete|swap|put <seq> [<seq2>|<hex>]`;
//! `delete` prints the removed record (hex) so `put` can restore it.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = mcsd::config::Config::load(args[0].as_ref()).expect("config");
    let store = mcsd::store::Store::open(&cfg.store.path).expect("store");
    let seq: u64 = args[2].parse().expect("seq");
    let raw = |s: u64| store.audit_raw(s).expect("read").expect("no such entry");
    match args[1].as_str() {
        "flip" => {
            let mut r = raw(seq);
            // Flip a letter of the outcome text (stays valid JSON, changes the content).
            let at = r.windows(10).position(|w| w == b"\"outcome\":").expect("outcome field") + 11;
            r[at] ^= 0x20;
            store.put_audit_raw(seq, Some(&r)).expect("write");
        }
        "delete" => {
            println!("{}", hex::encode(raw(seq)));
            store.put_audit_raw(seq, None).expect("write");
        }
        "swap" => {
            let other: u64 = args[3].parse().expect("seq2");
            let (a, b) = (raw(seq), raw(other));
            store.put_audit_raw(seq, Some(&b)).expect("write");
            store.put_audit_raw(other, Some(&a)).expect("write");
        }
        "put" => store.put_audit_raw(seq, Some(&hex::decode(&args[3]).expect("hex"))).expect("write"),
        other => panic!("unknown action {other}"),
    }
}
