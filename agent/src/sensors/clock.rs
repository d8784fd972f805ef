//! The clock seam: wall time, time since boot, boot id and NTP sync state.
//!
//! A Raspberry Pi has no RTC, so its wall clock is wrong until NTP syncs.
//! Every record carries `mono` (CLOCK_BOOTTIME, which keeps counting through
//! suspend) and the boot id, so a collector can correct earlier records of the
//! same boot once a synced one arrives.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use picket_protocol::{Event, EventKind};

use super::identity;

/// When a sample or event was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Unix milliseconds.
    pub ts: u64,
    /// CLOCK_BOOTTIME milliseconds.
    pub mono: u64,
    /// Kernel boot id; empty when the kernel does not expose one.
    pub boot: String,
    /// The kernel clock was NTP-synchronised.
    pub sync: bool,
}

impl Stamp {
    /// `kind` as an event taken at this stamp; the store sets its `seq`.
    pub fn event(&self, kind: EventKind) -> Event {
        Event {
            seq: 0,
            ts: self.ts,
            mono: self.mono,
            boot: self.boot.clone(),
            sync: self.sync,
            hist: false,
            kind,
        }
    }
}

pub trait Clock: Send {
    fn stamp(&mut self) -> Stamp;
}

/// The kernel's clocks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    boot: String,
}

impl SystemClock {
    /// Reads the boot id once: it cannot change while this process lives.
    pub fn new(host_root: &Path) -> SystemClock {
        SystemClock {
            boot: identity::boot_id(host_root).unwrap_or_default(),
        }
    }
}

impl Clock for SystemClock {
    fn stamp(&mut self) -> Stamp {
        Stamp {
            ts: wall_ms(),
            mono: boottime_ms().unwrap_or(0),
            boot: self.boot.clone(),
            sync: ntp_synced(),
        }
    }
}

/// A clock the caller sets by hand, for tests of code that stamps records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualClock {
    pub now: Stamp,
}

impl ManualClock {
    pub fn new(now: Stamp) -> ManualClock {
        ManualClock { now }
    }

    /// Moves both wall and boot time forward.
    pub fn advance(&mut self, ms: u64) {
        self.now.ts = self.now.ts.saturating_add(ms);
        self.now.mono = self.now.mono.saturating_add(ms);
    }
}

impl Clock for ManualClock {
    fn stamp(&mut self) -> Stamp {
        self.now.clone()
    }
}

fn wall_ms() -> u64 {
    // A clock set before 1970 is as wrong as an unsynced one; 0 says so.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The wall clock in Unix milliseconds, for what carries no [`Stamp`]
/// (replies, the link's changes, the birth message, the journal).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn boottime_ms() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1000).saturating_add(nanos / 1_000_000))
}

/// What `timedatectl` calls "System clock synchronized": the kernel's NTP
/// discipline reports the clock as synchronised. Reading needs no privilege
/// (`modes` is 0, so nothing is changed).
pub fn ntp_synced() -> bool {
    // SAFETY: an all-zero timex is a valid "read only" request.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex for the duration of the call.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    synced_from(rc, tx.status)
}

fn synced_from(rc: libc::c_int, status: libc::c_int) -> bool {
    rc >= 0 && rc != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_requires_clear_unsync_bit_and_no_time_error() {
        assert!(synced_from(libc::TIME_OK, 0));
        assert!(!synced_from(libc::TIME_OK, libc::STA_UNSYNC));
        assert!(!synced_from(libc::TIME_ERROR, 0));
        assert!(!synced_from(-1, 0));
    }

    #[test]
    fn system_clock_reads_kernel_clocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut clock = SystemClock::new(dir.path());
        let a = clock.stamp();
        let b = clock.stamp();
        assert_eq!(a.boot, "");
        assert!(a.ts > 1_600_000_000_000);
        assert!(a.mono > 0 && b.mono >= a.mono);
    }

    #[test]
    fn manual_clock_advances_both_times() {
        let mut clock = ManualClock::new(Stamp {
            ts: 1000,
            mono: 10,
            boot: "b".into(),
            sync: false,
        });
        clock.advance(5);
        let s = clock.stamp();
        assert_eq!((s.ts, s.mono), (1005, 15));
    }
}
