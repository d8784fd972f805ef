//! systemd integration: `READY=1` once running, `STOPPING=1` on the way out
//! (`RELOADING=1` when the process re-executes itself),
//! and watchdog pings only while every loop makes progress, so a wedged
//! agent is restarted by systemd instead of looking alive.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::liveness::Beacon;
use crate::shutdown::Shutdown;

pub fn ready() {
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready]) {
        debug!(error = %e, "sd_notify READY failed");
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// The process is about to execute itself (or the entry binary) again,
/// with the same pid: a reload for systemd, which the new program ends with
/// its `READY=1`. Not `STOPPING=1`: systemd would treat the process as
/// stopping and kill it after `TimeoutStopSec=`. `MONOTONIC_USEC` is what
/// systemd 253 and later require with `RELOADING=1`; older ones ignore it.
pub fn restarting() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(false, &states);
}

/// Feed the watchdog at half its period while every beacon beat within that
/// half period. Returns at once when no watchdog is configured.
pub async fn watchdog(beacons: Vec<Beacon>, mut shutdown: Shutdown) {
    let Some(timeout) = watchdog_timeout(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    ) else {
        return;
    };
    let period = timeout / 2;
    let mut ticker = tokio::time::interval(period);
    let mut stalled: Option<&'static str> = None;
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        match beacons.iter().find(|b| b.age() > period) {
            None => {
                stalled = None;
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            }
            Some(b) => {
                if stalled != Some(b.name) {
                    warn!(task = b.name, since = ?b.age(), "no progress: watchdog not fed");
                    stalled = Some(b.name);
                }
            }
        }
    }
}

/// The watchdog timeout systemd asked for, with libsystemd's rules: a
/// `WATCHDOG_PID` that is set must be ours (it may be absent).
fn watchdog_timeout(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid {
        Some(p) if p.trim().parse::<u32>().ok() != Some(me) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_timeout_follows_libsystemd() {
        let ms = |m| Some(Duration::from_millis(m));
        let table = [
            (None, None, None),
            (Some("30000000"), None, ms(30_000)),
            (Some("30000000"), Some("42"), ms(30_000)),
            (Some("30000000"), Some("43"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (Some("500000"), Some("x"), None),
        ];
        for (usec, pid, want) in table {
            assert_eq!(watchdog_timeout(usec, pid, 42), want, "{usec:?} {pid:?}");
        }
    }
}
