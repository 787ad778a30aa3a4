//! Time: the one place that reads the system clock.
//!
//! Domain services take a [`Clock`] (an `Arc<dyn Clock>`), so tests move time with a
//! [`FakeClock`] instead of sleeping to reach an expiry or a retry. [`now`] and [`now_ms`]
//! read the system clock for code that has no service around it (start-up, offline
//! commands). `clippy.toml` disallows `SystemTime::now` everywhere else.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
    /// Unix time in seconds.
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// The system clock as a shared [`Clock`].
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    /// A clock standing at `unix_ms`.
    pub fn at_ms(unix_ms: i64) -> Arc<FakeClock> {
        Arc::new(FakeClock(AtomicI64::new(unix_ms)))
    }
    /// Move forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    /// Move forward by `s` seconds.
    pub fn advance(&self, s: i64) {
        self.advance_ms(s * 1000);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Unix time in seconds, from the system clock.
pub fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Unix time in milliseconds, from the system clock.
#[allow(clippy::disallowed_methods)] // the one reader of the system clock
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// RFC 3339 (UTC) for a Unix time in seconds; empty if out of range.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// RFC 3339 (UTC) with milliseconds for a Unix time in milliseconds (log lines).
pub fn rfc3339_ms(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_only_when_told() {
        let c = FakeClock::at_ms(1_700_000_000_500);
        assert_eq!(c.now(), 1_700_000_000);
        c.advance(30);
        assert_eq!(c.now_ms(), 1_700_000_030_500);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
    }
}
