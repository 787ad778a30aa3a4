//! `cargo xtask fuzz --seeds`: writes the checked-in seed corpora, `fuzz/seeds/<target>/`,
//! from the project's own builders — sample PDFs (one of them sealed), the demo seal
//! picture, a seal and a CMS container signed under a real SM2 certificate, valid request
//! bodies for every route. Rerun it when a format changes; the fuzzers grow their own
//! corpus from these in the ignored `fuzz/corpus/`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::Encode;
use mcs_pdfseal::{cms, image, pdf, seal};
use serde_json::{Value, json};

/// The seed certificate's key: fixed, so `fuzz/fuzz_targets/plugin_answers.rs` can expect the
/// `issue` answer to certify it and get past the key comparison.
const SEED_KEY: [u8; 32] = *b"mcsd fuzz seed key, not a secret";

/// Small, and every number in reach of a mutation.
const MINIMAL_CONFIG: &str = r#"[api]
listen = "127.0.0.1:0"
cert_file = "pki/server.pem"
key_file = "pki/server.key"
[[api.trust]]
ca_file = "pki/ca.pem"
roles = ["admin", "gateway", "app"]
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "mcsd"
pin_file = "hsm-pin"
[store]
path = "db"
[keys]
pin_max_attempts = 5
enrollment_ttl_hours = 72
[tasks]
default_ttl_secs = 300
max_ttl_secs = 3600
[[plugins]]
name = "local"
library = "/usr/lib/mcsd/libmcs_local_ca.so"
timeout_ms = 5000
max_concurrency = 4
config = { state_dir = "ca" }
"#;

/// Write every target's seeds under `out` (files of the same names are replaced).
pub fn write_all(out: &Path) {
    let key = sm2_2p::DaemonKey::from_bytes(&SEED_KEY).expect("the seed key is a scalar");
    let ca = mcs_local_ca::LocalCa::open(
        Box::new(mcs_local_ca::MemoryKey(sm2_2p::DaemonKey::from_bytes(&SEED_KEY).expect("scalar"))),
        Box::new(mcs_local_ca::MemoryKv::default()),
        json!({ "ca_name": "Fuzz Seed CA" }).to_string().as_bytes(),
    )
    .expect("seed CA");
    let cert = ca.root_der().to_vec();

    let g = sm2_2p::point_to_hex(&key.public());
    let scalar = sm2_2p::scalar_to_hex(&key.sign(b"scalar").r);
    let digest = "ab".repeat(32);

    // sm2 encodings
    let w = |target: &str, name: &str, bytes: &[u8]| write(out, target, name, bytes);
    w("sm2_hex", "point", g.as_bytes());
    w("sm2_hex", "point-upper", g.to_ascii_uppercase().as_bytes());
    w("sm2_hex", "scalar", scalar.as_bytes());
    w("sm2_hex", "n-minus-1", b"fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54122");
    w("sm2_hex", "sec1", &sm2_2p::point_to_sec1(&key.public()));
    let signature = key.sign(b"a message").to_der();
    let ciphertext = sm2_2p::encrypt(&key.public(), b"bid price 998,000 CNY");
    w("sm2_der", "signature", &signature);
    w("sm2_der", "ciphertext-der", &ciphertext.to_der());
    w("sm2_der", "ciphertext-c1c3c2", &ciphertext.to_c1c3c2());

    // seal, CMS, PDF
    let png = image::demo_seal_png(24);
    let spec = seal::SealSpec {
        vendor_id: "mcsd",
        es_id: "ES-FUZZ-1",
        seal_type: 2,
        name: "Zhang San",
        signer_certificates: std::slice::from_ref(&cert),
        created: 1_795_392_000,
        valid_from: 1_795_392_000,
        valid_to: 1_826_928_000,
        picture_type: "PNG",
        picture: &png,
        width_mm: 40,
        height_mm: 40,
    };
    let info = seal::seal_info(&spec).expect("seal info");
    let seal_sig = key.sign(&info.to_der().expect("DER")).to_der();
    let seal_der = seal::assemble(info, &cert, &seal_sig).expect("seal");
    w("seal", "personal", &seal_der);

    let original = pdf::sample_document(2, false);
    let picture = image::from_picture("PNG", &png).expect("png");
    let look = pdf::Appearance { image: &picture, width_pt: 60.0, height_pt: 60.0 };
    let fields = pdf::SignatureFields {
        field_name: "Seal1",
        signer_name: "Zhang San",
        reason: "bid",
        signing_time: 1_795_392_000,
        reserve: 4096,
    };
    let placement = pdf::Placement::Keyword { keyword: "Bidder seal here".into(), occurrence: 1 };
    let prepared = pdf::prepare(&original, &placement, &look, &fields).expect("prepare");
    let document_digest = cms::Algorithm::Sm2.digest(&prepared.signed_ranges());
    let attrs = cms::signed_attributes(cms::Algorithm::Sm2, &document_digest, 1_795_392_000, Some(&seal_der))
        .expect("attributes");
    let cms_sig = key.sign(&cms::to_be_signed(&attrs).expect("tbs")).to_der();
    let container = cms::signed_data(cms::Algorithm::Sm2, &cert, &[], attrs, &cms_sig).expect("SignedData");
    let sealed = prepared.embed(&container).expect("embed");
    w("cms", "signed-data", &container);
    let mut padded = container.clone();
    padded.resize(container.len() + 64, 0);
    w("cms", "signed-data-padded", &padded);
    w("pdf", "sample-table", &original);
    w("pdf", "sample-xref-stream", &pdf::sample_document(1, true));
    w("pdf", "sealed", &sealed);

    // pictures
    w("image", "demo-seal", &image::demo_seal_png(8));
    w(
        "image",
        "grey-alpha",
        &image::encode_png_rgba(2, 2, &[255, 0, 0, 128, 0, 255, 0, 255, 0, 0, 255, 0, 9, 9, 9, 9]),
    );
    w("image", "jpeg-header", &jpeg_header(64, 48));

    // config
    let example =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mcsd.toml")).expect("config/mcsd.toml");
    w("config", "mcsd.toml", &example);
    w("config", "minimal.toml", MINIMAL_CONFIG.as_bytes());
    // What crashed the target once (hours × 3600 overflowed): kept as a regression seed.
    w(
        "config",
        "ttl-overflow.toml",
        MINIMAL_CONFIG.replace("enrollment_ttl_hours = 72", "enrollment_ttl_hours = 9000000000000000").as_bytes(),
    );

    // the adapter answers the daemon reads
    let b64cert = B64.encode(&cert);
    w("plugin_answers", "issue", json!({ "certificate": b64cert, "chain": [b64cert] }).to_string().as_bytes());
    w(
        "plugin_answers",
        "describe",
        json!({ "name": "local-ca", "version": "0.1.0", "algorithms": ["SM2-with-SM3"], "profiles": ["person"] })
            .to_string()
            .as_bytes(),
    );
    w("plugin_answers", "crl", json!({ "crl": "MAA=" }).to_string().as_bytes());

    // QR codes
    w("scan_code", "task", b"mcs://task?v=1&id=t_1&token=ab12&url=https%3A%2F%2Fmcs.example.cn%3A8443%2F");

    // request bodies: `route\nbody`
    let pin = json!({ "salt": "00".repeat(16), "verifier": "11".repeat(32) });
    let subject =
        json!({ "kind": "org", "name": "Zhang San", "org_name": "ACME", "credit_code": "91350100M000100Y43" });
    let bodies: Vec<(&str, Value)> = vec![
        (
            "enrollments",
            json!({ "subject": subject, "ca": "local", "profile": "person", "platforms": ["P-DEV-1"], "validity_days": 365 }),
        ),
        ("activate", json!({ "activation_code": "ABCD-EFGH", "p1": g, "pin": pin })),
        ("sign", json!({ "e": digest, "q1": g, "pin_proof": digest, "mode": "fixed_k3" })),
        ("decrypt", json!({ "t1": g, "pin_proof": digest })),
        ("pin", json!({ "pin_proof": digest, "new_pin": pin })),
        ("unlock", json!({})),
        ("revoke", json!({ "reason": "key_compromise", "pin_proof": digest })),
        (
            "successor",
            json!({ "reason": "change", "subject": { "kind": "person", "name": "Li Si", "id_number": "110101199003070000" }, "validity_days": 30 }),
        ),
        ("platforms", json!({ "platform": "P-DEV-1", "mode": "until", "until": "2099-01-01T00:00:00Z" })),
        (
            "seals",
            json!({
                "kind": "personal", "name": "Zhang San", "owner": { "key_id": "k_1" },
                "image": { "type": "PNG", "data": B64.encode(image::demo_seal_png(8)), "width_mm": 40, "height_mm": 40 },
                "signer_key_ids": ["k_1"], "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2027-01-01T00:00:00Z",
            }),
        ),
        ("seal_revoke", json!({})),
        (
            "grants",
            json!({ "key_id": "k_2", "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-02-01T00:00:00+08:00" }),
        ),
        ("verify_seal", json!({ "seal": B64.encode(&seal_der) })),
        ("verify_pdf", json!({ "pdf": B64.encode(&original[..64]) })),
        (
            "tasks",
            json!({ "kind": "login", "ttl_secs": 300, "display": { "title": "Log in", "detail": "hall" }, "data": { "challenge": "bm9uY2U=" }, "callback_url": "https://gw.example.cn:8443/cb" }),
        ),
        (
            "tasks",
            json!({ "kind": "decrypt", "display": { "title": "Open bid" }, "data": { "ciphertext": B64.encode(ciphertext.to_der()), "recipient_public_key": g } }),
        ),
        (
            "tasks",
            json!({ "kind": "pdf_seal", "display": { "title": "Seal" }, "data": { "pdf": B64.encode(b"%PDF-1.7\n"), "placement": { "pages": [1, 2], "x": 100.5, "y": 200 } } }),
        ),
        (
            "tasks",
            json!({ "kind": "encrypt", "display": { "title": "Seal a price" }, "data": { "plaintext": "OTk4MDAw" } }),
        ),
        (
            "batch_cosign",
            json!({ "items": [{ "task_id": "t_1", "token": "ab", "q1": g }], "key_id": "k_1", "pin_proof": digest }),
        ),
        ("claim", json!({ "token": "ab12", "key_id": "k_1" })),
        ("cosign", json!({ "token": "ab12", "t1": g, "pin_proof": digest })),
        ("complete", json!({ "token": "ab12", "signature": { "r": scalar, "s": scalar } })),
        ("reject", json!({ "token": "ab12", "reason": "not my bid" })),
    ];
    for (i, (route, body)) in bodies.iter().enumerate() {
        w("api_bodies", &format!("{i:02}-{route}"), format!("{route}\n{body}").as_bytes());
    }
    w("api_bodies", "query", b"query\nsubject=Zhang%20San&status=active");
}

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).expect("seed directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

/// SOI, one baseline frame header (8-bit, 3 components) and EOI: the part of a JPEG that
/// `image::from_picture` reads.
fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    j.extend_from_slice(&height.to_be_bytes());
    j.extend_from_slice(&width.to_be_bytes());
    j.push(3);
    for id in 1..=3u8 {
        j.extend_from_slice(&[id, 0x11, 0x00]);
    }
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}
