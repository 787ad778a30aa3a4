//! The QR string of a scan task (API.md "Scan tasks"): what `POST /v1/tasks` answers as
//! `qr`, what a platform renders, and what the phone app reads:
//! `mcs://task?v=1&id=<task id>&token=<token>&url=<daemon URL>`, each value
//! percent-encoded (RFC 3986 unreserved characters as they are, every other byte `%XX`).
//!
//! The reader is strict where a lax one would be a hole: the version must be `1`; `id`,
//! `token` and `url` must each be there exactly once and non-empty; the URL must be
//! `https://` with a host (the API is mutual TLS only); escapes must be two hex digits and
//! the result UTF-8. Parameters it does not know are skipped, so a later version 1 string
//! may carry more.

/// What a task's QR code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCode {
    pub task_id: String,
    pub token: String,
    /// The daemon's public URL (`[tasks] public_url`), where the phone takes the task.
    pub url: String,
}

/// Why a string is not a task's QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrError(pub &'static str);

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not an mcs task QR code: {}", self.0)
    }
}

impl std::error::Error for QrError {}

const PREFIX: &str = "mcs://task?";

impl ScanCode {
    /// Read a QR string.
    pub fn parse(qr: &str) -> Result<ScanCode, QrError> {
        let query = qr.strip_prefix(PREFIX).ok_or(QrError("it does not start with mcs://task?"))?;
        let (mut version, mut id, mut token, mut url) = (None, None, None, None);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').ok_or(QrError("a parameter without '='"))?;
            let slot = match k {
                "v" => &mut version,
                "id" => &mut id,
                "token" => &mut token,
                "url" => &mut url,
                _ => continue,
            };
            if slot.is_some() {
                return Err(QrError("a parameter given twice"));
            }
            *slot = Some(percent_decode(v).ok_or(QrError("a bad percent-escape"))?);
        }
        match version.as_deref() {
            None => return Err(QrError("no version")),
            Some("1") => {}
            Some(_) => return Err(QrError("version is not 1")),
        }
        let non_empty = |v: Option<String>, missing| v.filter(|s| !s.is_empty()).ok_or(QrError(missing));
        let task_id = non_empty(id, "no task id")?;
        let token = non_empty(token, "no token")?;
        let url = non_empty(url, "no daemon URL")?;
        let host = url.strip_prefix("https://").ok_or(QrError("the daemon URL is not https"))?;
        if host.is_empty() || host.starts_with(['/', ':', '?', '#']) {
            return Err(QrError("the daemon URL has no host"));
        }
        Ok(ScanCode { task_id, token, url })
    }

    /// The QR string, as the daemon writes it.
    pub fn to_qr(&self) -> String {
        format!(
            "{PREFIX}v=1&id={}&token={}&url={}",
            percent_encode(&self.task_id),
            percent_encode(&self.token),
            percent_encode(&self.url)
        )
    }
}

/// RFC 3986 percent-encoding: the unreserved characters as they are, every other byte `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inverse of [`percent_encode`] (any escaped byte accepted); `None` for an escape that
/// is not `%` and two hex digits, or bytes that are not UTF-8. `+` stays `+`.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            // Two hex digits exactly (`from_str_radix` alone would also take `+f`).
            let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Sample strings for the known-answer file (`docs/test-vectors.json`, families `qr` and
/// `qr_invalid`): the ones to read, and the ones to refuse with the reason this reader gives.
pub fn samples() -> (Vec<&'static str>, Vec<&'static str>) {
    let valid = vec![
        "mcs://task?v=1&id=t_3f9a0c1b2d4e5f6a7b8c9d0e&token=9b1de2f04a7c6e3d5b8a0f1e2d3c4b5a&url=https%3A%2F%2Fmcs.example.cn%3A8443",
        "mcs://task?v=1&id=t_1&token=ab12&url=https%3A%2F%2Fmcs.example.cn%3A8443%2F",
        // Order is free, and a parameter this version does not know is skipped.
        "mcs://task?url=https%3A%2F%2F10.0.0.7%3A9443&token=00ff&id=t_2&v=1&lang=zh-CN",
        // A host in Chinese, escaped as UTF-8.
        "mcs://task?v=1&id=t_3&token=cd34&url=https%3A%2F%2F%E6%8B%9B%E6%A0%87.example%3A443%2Fmcs",
    ];
    let invalid = vec![
        "https://mcs.example.cn/task?v=1&id=t_1&token=ab&url=https%3A%2F%2Fh",
        "mcs://task?v=2&id=t_1&token=ab&url=https%3A%2F%2Fh",
        "mcs://task?id=t_1&token=ab&url=https%3A%2F%2Fh",
        "mcs://task?v=1&id=t_1&url=https%3A%2F%2Fh",
        "mcs://task?v=1&id=&token=ab&url=https%3A%2F%2Fh",
        "mcs://task?v=1&id=t_1&id=t_2&token=ab&url=https%3A%2F%2Fh",
        "mcs://task?v=1&id=t_1&token=ab&url=http%3A%2F%2Fh",
        "mcs://task?v=1&id=t_1&token=ab&url=https%3A%2F%2F",
        "mcs://task?v=1&id=t_1&token=a%G1&url=https%3A%2F%2Fh",
        "mcs://task?v=1&id=t_1&token",
    ];
    (valid, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_code_reads_back() {
        let code = ScanCode { task_id: "t_1".into(), token: "ab12".into(), url: "https://mcs.example.cn:8443/".into() };
        let qr = code.to_qr();
        assert_eq!(qr, "mcs://task?v=1&id=t_1&token=ab12&url=https%3A%2F%2Fmcs.example.cn%3A8443%2F");
        assert_eq!(ScanCode::parse(&qr), Ok(code));
    }

    #[test]
    fn the_samples_read_and_refuse_as_documented() {
        let (valid, invalid) = samples();
        for qr in valid {
            let code = ScanCode::parse(qr).unwrap_or_else(|e| panic!("{qr}: {e}"));
            assert!(code.url.starts_with("https://"));
        }
        let mut reasons = std::collections::HashSet::new();
        for qr in &invalid {
            let why = ScanCode::parse(qr).expect_err(qr);
            reasons.insert(why.0);
        }
        assert_eq!(reasons.len(), invalid.len(), "each invalid sample shows another rule");
    }

    #[test]
    fn escapes_are_strict() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b+c"));
        for bad in ["%", "%2", "%+f", "%zz", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        assert_eq!(percent_encode("招标 a/b"), "%E6%8B%9B%E6%A0%87%20a%2Fb");
    }
}
