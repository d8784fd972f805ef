//! placeholder until the queue lands
#![allow(dead_code, unused_variables)]
use std::path::PathBuf;
use std::time::{Duration, Instant};
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub sync_interval: Duration,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Sample = 1,
    Event = 2,
}
pub struct NewRecord {
    pub seq: u64,
    pub kind: RecordKind,
    pub ts_ms: u64,
    pub payload: Vec<u8>,
}
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub kind: RecordKind,
    pub ts_ms: u64,
    pub payload: Vec<u8>,
}
pub struct OpenReport {
    pub truncated_bytes: u64,
    pub quarantined: Vec<Quarantined>,
    pub seq_skipped: Option<(u64, u64)>,
}
pub struct Quarantined {
    pub segment: String,
    pub bytes: u64,
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub records: u64,
    pub bytes: u64,
    pub oldest_ts_ms: Option<u64>,
    pub dropped_total: u64,
    pub quarantined_total: u64,
    pub next_seq: u64,
    pub acked_through: Option<u64>,
}
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("io {0}")]
    Io(#[from] std::io::Error),
}
pub struct Queue;
impl Queue {
    pub fn open(cfg: QueueConfig, boot_id: &str) -> Result<(Queue, OpenReport), QueueError> {
        todo!()
    }
    pub fn next_seq(&self) -> u64 {
        todo!()
    }
    pub fn append(&mut self, records: &[NewRecord]) -> Result<u64, QueueError> {
        todo!()
    }
    pub fn ack(&mut self, through_seq: u64) -> Result<(), QueueError> {
        todo!()
    }
    pub fn read(
        &mut self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, QueueError> {
        todo!()
    }
    pub fn sync_deadline(&self) -> Option<Instant> {
        todo!()
    }
    pub fn sync(&mut self) -> Result<(), QueueError> {
        todo!()
    }
    pub fn stats(&self) -> QueueStats {
        todo!()
    }
    pub fn close(self) -> Result<(), QueueError> {
        todo!()
    }
}
