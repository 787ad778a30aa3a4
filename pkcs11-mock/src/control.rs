//! The fault plan: what the control file says, and the decision for each call.
//!
//! The control file is `key = value` lines, re-read whenever its (mtime, size, inode)
//! changes; rewriting it resets the counters. Keys:
//! - `fault = none | device_error | session_handle_invalid | token_not_present |
//!   user_not_logged_in | object_handle_invalid | general_error`
//! - `count = N` — fault the next N eligible calls (with `ratio`: until N faults happened)
//! - `ratio = 0.0..1.0` — fault that share of eligible calls
//! - `latency_ms = M` — sleep M ms before every forwarded call
//! - `functions = C_Encrypt,C_Decrypt` — only these are eligible (default: all but
//!   C_GetFunctionList, C_Initialize, C_Finalize, C_GetInfo)

use std::path::{Path, PathBuf};
use std::time::Duration;

use cryptoki_sys::*;

/// The parsed control file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub fault: Option<CK_RV>,
    pub count: Option<u64>,
    pub ratio: Option<f64>,
    pub latency: Duration,
    pub functions: Option<Vec<String>>,
}

const NEVER_ELIGIBLE: [&str; 4] = ["C_GetFunctionList", "C_Initialize", "C_Finalize", "C_GetInfo"];

impl Plan {
    pub fn parse(text: &str) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
            let (key, value) = (key.trim(), value.trim());
            let bad = |what: &str| format!("line {}: bad {what} `{value}`", n + 1);
            match key {
                "fault" => {
                    plan.fault = match value {
                        "none" => None,
                        "device_error" => Some(CKR_DEVICE_ERROR),
                        "session_handle_invalid" => Some(CKR_SESSION_HANDLE_INVALID),
                        "token_not_present" => Some(CKR_TOKEN_NOT_PRESENT),
                        "user_not_logged_in" => Some(CKR_USER_NOT_LOGGED_IN),
                        "object_handle_invalid" => Some(CKR_OBJECT_HANDLE_INVALID),
                        "general_error" => Some(CKR_GENERAL_ERROR),
                        _ => return Err(bad("fault")),
                    }
                }
                "count" => plan.count = Some(value.parse().map_err(|_| bad("count"))?),
                "ratio" => {
                    let r: f64 = value.parse().map_err(|_| bad("ratio"))?;
                    if !(0.0..=1.0).contains(&r) {
                        return Err(bad("ratio"));
                    }
                    plan.ratio = Some(r);
                }
                "latency_ms" => plan.latency = Duration::from_millis(value.parse().map_err(|_| bad("latency_ms"))?),
                "functions" => {
                    plan.functions =
                        Some(value.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect())
                }
                _ => return Err(format!("line {}: unknown key `{key}`", n + 1)),
            }
        }
        Ok(plan)
    }

    fn eligible(&self, function: &str) -> bool {
        match &self.functions {
            Some(list) => list.iter().any(|f| f == function),
            None => !NEVER_ELIGIBLE.contains(&function),
        }
    }
}

type Stamp = (std::time::SystemTime, u64, u64);

/// The live state: the plan, when it was read, and how many faults it has injected.
pub struct Injector {
    path: Option<PathBuf>,
    stamp: Option<Stamp>,
    plan: Plan,
    injected: u64,
    rng: u64,
}

/// What to do with one call.
pub struct Decision {
    pub latency: Duration,
    pub fault: Option<CK_RV>,
    /// Faults injected so far under this plan, when this call was one of them.
    pub injected: Option<u64>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

impl Injector {
    pub fn new(path: Option<PathBuf>) -> Injector {
        // A seed for the fault plan's RNG, not a reading of the time.
        #[allow(clippy::disallowed_methods)]
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Injector { path, stamp: None, plan: Plan::default(), injected: 0, rng: seed | 1 }
    }

    fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        let now = stamp(path);
        if now == self.stamp {
            return;
        }
        self.stamp = now;
        self.injected = 0;
        self.plan = match now.and_then(|_| std::fs::read_to_string(path).ok()) {
            None => Plan::default(),
            Some(text) => Plan::parse(&text).unwrap_or_else(|e| {
                eprintln!("pkcs11-mock: {}: {e}; injecting nothing", path.display());
                Plan::default()
            }),
        };
    }

    fn next_unit(&mut self) -> f64 {
        // xorshift64: statistical spread is all a fault ratio needs.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn decide(&mut self, function: &str) -> Decision {
        self.refresh();
        let latency = self.plan.latency;
        let Some(code) = self.plan.fault else { return Decision { latency, fault: None, injected: None } };
        if !self.plan.eligible(function) || self.plan.count.is_some_and(|n| self.injected >= n) {
            return Decision { latency, fault: None, injected: None };
        }
        let hit = match self.plan.ratio {
            Some(r) => self.next_unit() < r,
            None => self.plan.count.is_some(),
        };
        if !hit {
            return Decision { latency, fault: None, injected: None };
        }
        self.injected += 1;
        Decision { latency, fault: Some(code), injected: Some(self.injected) }
    }

    pub fn status_path(&self) -> Option<PathBuf> {
        self.path.as_ref().map(|p| {
            let mut s = p.as_os_str().to_owned();
            s.push(".status");
            PathBuf::from(s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_rejects_unknown_ones() {
        let p = Plan::parse("# c\nfault = device_error\ncount = 3\nlatency_ms = 5\nfunctions = C_Encrypt, C_Decrypt\n")
            .unwrap();
        assert_eq!(p.fault, Some(CKR_DEVICE_ERROR));
        assert_eq!(p.count, Some(3));
        assert_eq!(p.latency, Duration::from_millis(5));
        assert_eq!(p.functions, Some(vec!["C_Encrypt".to_owned(), "C_Decrypt".to_owned()]));
        assert!(Plan::parse("fault = melted").is_err());
        assert!(Plan::parse("ratio = 2").is_err());
        assert!(Plan::parse("colour = red").is_err());
    }

    #[test]
    fn count_faults_exactly_n_eligible_calls_then_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        std::fs::write(&path, "fault = device_error\ncount = 2\n").unwrap();
        let mut inj = Injector::new(Some(path.clone()));
        assert_eq!(inj.decide("C_Initialize").fault, None, "C_Initialize is never eligible by default");
        let faults: Vec<_> = (0..5).map(|_| inj.decide("C_Encrypt").fault).collect();
        assert_eq!(faults, vec![Some(CKR_DEVICE_ERROR), Some(CKR_DEVICE_ERROR), None, None, None]);
        // Rewriting the file resets the plan.
        std::fs::write(&path, "fault = token_not_present\ncount = 1\nfunctions = C_Decrypt\n").unwrap();
        assert_eq!(inj.decide("C_Encrypt").fault, None);
        assert_eq!(inj.decide("C_Decrypt").fault, Some(CKR_TOKEN_NOT_PRESENT));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(inj.decide("C_Decrypt").fault, None, "no control file, no faults");
    }

    #[test]
    fn ratio_faults_about_that_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        std::fs::write(&path, "fault = device_error\nratio = 0.25\n").unwrap();
        let mut inj = Injector::new(Some(path));
        let hits = (0..4000).filter(|_| inj.decide("C_Sign").fault.is_some()).count();
        assert!((800..1200).contains(&hits), "{hits} of 4000");
    }
}
