//! The systemd notify protocol (`sd_notify(3)`) through the `sd-notify` crate: one datagram
//! per state change to `$NOTIFY_SOCKET`. Without the variable every call is a no-op, so the
//! daemon runs the same outside systemd.

use std::time::Duration;

pub use sd_notify::NotifyState as State;

/// Send `states`. Returns whether they were sent (false outside systemd, or on an error,
/// which is logged: systemd then restarts or times the unit out, as it should).
pub fn notify(states: &[State<'_>]) -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return false;
    }
    match sd_notify::notify(false, states) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "sd_notify");
            false
        }
    }
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd wants beside it (Type=notify-reload).
pub fn reloading() -> Option<State<'static>> {
    State::monotonic_usec_now().ok()
}

/// How often to feed the watchdog: half of `$WATCHDOG_USEC`, if it is meant for us. As
/// `sd_watchdog_enabled(3)`: a `$WATCHDOG_PID` that names another process disables it, an
/// absent one does not (the crate's `watchdog_enabled` requires it).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // SAFETY (test): no other thread of this test binary reads NOTIFY_SOCKET concurrently.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(notify(&[State::Ready, State::Status("test")]));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test\n");
        let reload = [State::Reloading, reloading().unwrap()];
        assert!(notify(&reload));
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC=") && text.ends_with('\n'), "{text}");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!notify(&[State::Ready]));
    }
}
