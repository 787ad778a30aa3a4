//! A test adapter whose behaviour is chosen by its config: `{"behaviour": "ok" | "panic" |
//! "hang" | "garbage"}`. `describe` always answers (so it loads); every other operation
//! misbehaves as told. With `ok`, `crl` answers a "CRL" that is really the daemon's
//! signature over the bytes `test-crl` by the daemon-held key `test-adapter`, so tests can
//! check the host's signing callback independently.

use mcs_plugin_abi::{Adapter, CallError, HostHandle, export_adapter};

struct TestAdapter {
    host: HostHandle,
    behaviour: String,
}

fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    // The config is tiny and flat; a dependency-free lookup keeps this adapter minimal.
    let start = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Adapter for TestAdapter {
    fn new(host: HostHandle, config: &[u8]) -> Result<Self, String> {
        let config = std::str::from_utf8(config).map_err(|_| "config is not UTF-8".to_owned())?;
        let behaviour = field(config, "behaviour").unwrap_or("ok").to_owned();
        if !["ok", "panic", "hang", "garbage"].contains(&behaviour.as_str()) {
            return Err(format!("unknown behaviour `{behaviour}`"));
        }
        Ok(TestAdapter { host, behaviour })
    }

    fn call(&self, op: &str, _request: &[u8]) -> Result<Vec<u8>, CallError> {
        if op == "describe" {
            let d = format!(
                r#"{{"name":"test-{}","version":"0.1.0","algorithms":["SM2"],"profiles":["person"]}}"#,
                self.behaviour
            );
            return Ok(d.into_bytes());
        }
        match self.behaviour.as_str() {
            "panic" => panic!("test adapter told to panic"),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            "garbage" => Ok(vec![0xff, 0x00, b'{', 0x13]),
            _ => match op {
                "crl" => {
                    let sig = self.host.sign("test-adapter", b"test-crl").map_err(CallError::Failed)?;
                    let spki = self.host.public_key("test-adapter").map_err(CallError::Failed)?;
                    self.host.log(3, "test adapter signed its CRL");
                    Ok(format!(r#"{{"crl":"{}","signer":"{}"}}"#, b64(&sig), b64(&spki)).into_bytes())
                }
                "status" => Ok(br#"{"status":"unknown"}"#.to_vec()),
                _ => Err(CallError::Unsupported),
            },
        }
    }
}

export_adapter!(TestAdapter);
