//! Test-only: change the audit chain behind the daemon's back (daemon stopped), to prove
//! `mcsd audit verify` and the daemon's start-up check notice. `tamper-audit <config> <action>`:
//! - `flip|delete <seq>`, `swap <seq> <seq2>`, `put <seq> <hex>`: one entry (`delete` prints
//!   the removed record, hex, so `put` can restore it);
//! - `checkpoints`: print the checkpoints' sequence numbers;
//! - `drop-checkpoint <seq>`, `drop-checkpoints`: remove one, or all;
//! - `rechain <from>`: rewrite every entry from `<from>` on (outcome changed) and re-link
//!   the chain, as someone hiding what happened would;
//! - `rekey`: replace the store's audit public key with a new key's and re-sign every
//!   checkpoint with it (the HSM-wrapped private key cannot be replaced).

use mcsd::audit::Entry;
use mcsd::store::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = mcsd::config::Config::load(args[0].as_ref()).expect("config");
    let store = mcsd::store::Store::open(&cfg.store.path).expect("store");
    let seq = |i: usize| -> u64 { args[i].parse().expect("seq") };
    let raw = |s: u64| store.audit_raw(s).expect("read").expect("no such entry");
    match args[1].as_str() {
        "flip" => {
            let mut r = raw(seq(2));
            // Flip a letter of the outcome text (stays valid JSON, changes the content).
            let at = r.windows(10).position(|w| w == b"\"outcome\":").expect("outcome field") + 11;
            r[at] ^= 0x20;
            store.put_audit_raw(seq(2), Some(&r)).expect("write");
        }
        "delete" => {
            println!("{}", hex::encode(raw(seq(2))));
            store.put_audit_raw(seq(2), None).expect("write");
        }
        "swap" => {
            let (a, b) = (raw(seq(2)), raw(seq(3)));
            store.put_audit_raw(seq(2), Some(&b)).expect("write");
            store.put_audit_raw(seq(3), Some(&a)).expect("write");
        }
        "put" => store.put_audit_raw(seq(2), Some(&hex::decode(&args[3]).expect("hex"))).expect("write"),
        "checkpoints" => {
            let seqs: Vec<String> = store.audit_checkpoint_seqs().expect("read").iter().map(u64::to_string).collect();
            println!("{}", seqs.join(" "));
        }
        "drop-checkpoint" => store.put_audit_checkpoint_raw(seq(2), None).expect("write"),
        "drop-checkpoints" => {
            for s in store.audit_checkpoint_seqs().expect("read") {
                store.put_audit_checkpoint_raw(s, None).expect("write");
            }
        }
        "rechain" => {
            let from = seq(2);
            let mut prev = match from {
                0 => hex::encode([0u8; 32]),
                f => store.audit_entry(f - 1).expect("read").expect("entry before").hash,
            };
            let entries: Vec<Entry> = store.audit_entries(from).map(|e| e.expect("read").1).collect();
            for mut e in entries {
                e.outcome = format!("{}-rewritten", e.outcome);
                e.prev = prev.clone();
                e.hash = mcsd::audit::entry_hash(&e);
                prev = e.hash.clone();
                store.put_audit_raw(e.seq, None).expect("write");
                assert!(store.append_audit(e.seq, &e).expect("write"));
            }
            store.flush_blocking().expect("flush");
        }
        "rekey" => {
            let forger = sm2_2p::DaemonKey::generate();
            let (mut rec, _) = store.daemon_key(mcsd::audit::AUDIT_KEY).expect("read").expect("audit key");
            rec.public_key = sm2_2p::point_to_hex(&forger.public());
            store.put_daemon_key_record(&rec).expect("write");
            for mut cp in store.audit_checkpoints().expect("read") {
                cp.signature = hex::encode(forger.sign(&mcsd::audit::checkpoint_message(cp.seq, &cp.hash)).to_der());
                store.put_audit_checkpoint(cp.seq, &cp).expect("write");
            }
            store.flush_blocking().expect("flush");
        }
        other => panic!("unknown action {other}"),
    }
}
