//! systemd integration: `READY=1` once running, `STOPPING=1` on the way out,
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

/// Feed the watchdog at half its period while every beacon beat within that
/// half period. Returns at once when no watchdog is configured.
pub async fn watchdog(beacons: Vec<Beacon>, mut shutdown: Shutdown) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec) / 2;
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
