//! Ingest counters, shared with `/metrics` (atomics: the engine writes,
//! the API reads, nobody waits).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a message was refused. Each has its own counter and label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a picket v1 device topic we know (e.g. `picket/v1/x/bogus`).
    UnknownTopic,
    /// Larger than `broker.max_payload`.
    Oversized,
    /// A `v` newer than this collector understands, or none.
    WrongVersion,
    /// Not decodable as the topic's message type (or empty).
    Malformed,
    /// The payload names another device than its topic.
    DeviceMismatch,
    /// Decoded, but a value is out of range (an integer the store cannot
    /// hold, a float that is not finite, a time past the year 9999, text
    /// or a list over its bound).
    Invalid,
    /// A row the database refused although the message passed every check
    /// (its batch was stored without it).
    StoreRefused,
}

impl Refused {
    pub const ALL: [Refused; 7] = [
        Refused::UnknownTopic,
        Refused::Oversized,
        Refused::WrongVersion,
        Refused::Malformed,
        Refused::DeviceMismatch,
        Refused::Invalid,
        Refused::StoreRefused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refused::UnknownTopic => "unknown_topic",
            Refused::Oversized => "oversized",
            Refused::WrongVersion => "wrong_version",
            Refused::Malformed => "malformed",
            Refused::DeviceMismatch => "device_mismatch",
            Refused::Invalid => "invalid",
            Refused::StoreRefused => "store_refused",
        }
    }
}

#[derive(Debug, Default)]
pub struct IngestCounters {
    pub messages: AtomicU64,
    pub state_messages: AtomicU64,
    pub telemetry_messages: AtomicU64,
    pub event_messages: AtomicU64,
    pub reply_messages: AtomicU64,
    /// Records (samples + events) stored, each once.
    pub samples: AtomicU64,
    pub events: AtomicU64,
    /// Records delivered again and dropped.
    pub duplicates: AtomicU64,
    /// Sequence numbers found missing when a gap opened.
    pub gap_records: AtomicU64,
    pub stale_wills: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
    pub commits: AtomicU64,
    pub commit_errors: AtomicU64,
    /// When the last commit returned, unix milliseconds (0: none yet).
    pub last_commit_ms: AtomicU64,
    /// Milliseconds between a live sample's timestamp and its arrival,
    /// last seen (clock-synchronised samples only).
    pub lag_ms: AtomicU64,
    /// Why the store cannot write (disk full, I/O error, read-only file
    /// system), while it cannot: nothing is acknowledged meanwhile, and
    /// `/healthz` says so.
    store_failure: Mutex<Option<String>>,
}

impl IngestCounters {
    pub fn refuse(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, why: Refused) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    pub fn set_store_failure(&self, why: Option<String>) {
        *self.store_failure.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    pub fn store_failure(&self) -> Option<String> {
        self.store_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
