//! The durable on-disk queue: a segment log of opaque records that survives
//! process crashes and power cuts and spares the SD card.
//!
//! Synchronous on purpose: its owner runs it on a blocking thread, because an
//! fsync on an SD card can take tens of milliseconds.
//!
//! # On disk
//! `dir/` holds segment files named `{base seq:020}.seg` (lexical order is
//! seq order), a `meta` file and, when recovery found damage, `quarantine/`.
//! A segment is a 20-byte header (magic, version, base seq) and CRC-framed
//! records with consecutive seqs (`segment.rs` has the byte layout). A new
//! segment starts when the next frame would push the current one past
//! `segment_bytes` (a larger record goes alone into a segment of its own), and
//! on every open, so a segment is only ever written by one process lifetime.
//! The log as a whole may skip seqs (acknowledged while in the hot spool).
//!
//! With `hot_dir` set (a tmpfs directory, see below) it holds the hot spool:
//! one file in the segment format, named after its base seq like a segment.
//!
//! # Durability
//! `append` hands the frames to the kernel at once (a killed process loses
//! nothing), and `sync` issues one `fdatasync` per segment with unsynced bytes,
//! at most `sync_interval` after the first unsynced append. A record the broker
//! acknowledged before that deadline never needs to reach the disk, so `sync`
//! skips the fdatasync when every record appended since the last one is acked.
//! The directory is fsynced before the first fdatasync that covers records in
//! a newly created segment, so synced records cannot vanish with their entry.
//!
//! With a hot spool, `append` writes to the spool on tmpfs instead, which
//! survives a crash of the process but not a power cut, and `sync` first
//! moves the spool's unacknowledged records to the log (same frames, a new
//! segment where acked records left a gap in the seqs), then fdatasyncs as
//! above and empties the spool. The promises are unchanged: a killed process
//! loses nothing (on open the spool is read back, and its records are moved
//! to the log and synced before anything else), and a power cut loses at
//! most the records appended within `sync_interval` and not yet
//! acknowledged. A crash between the move and the emptying leaves records in
//! both places: the log's copy wins (`Queue::spool_start`). The spool is
//! moved early when it would outgrow a segment, which bounds the RAM it takes.
//!
//! # Write amplification
//! The kernel charges a page to us when it goes from clean to dirty and
//! cancels the charge if the page is truncated or unlinked before writeback.
//! - Connected (acks arrive well within `sync_interval`): once every record is
//!   acked, the active segment is renamed after the next seq and cut to zero
//!   length (older segments, left from an outage, are unlinked). Its dirty
//!   pages die unwritten, the sync is skipped and nothing is persisted, so
//!   the disk sees (almost) no data writes. The empty file's name keeps the
//!   next seq on record: after a process crash the log alone tells where to
//!   continue. Renaming rather than creating a new file and unlinking the old
//!   one matters: the inode churn of create + unlink once a second is charged
//!   as writes too (see `recycle_active`).
//! - Broker down: each sync writes the pages touched since the last one,
//!   the partly filled last page again included: 1 + appended / 4 096 pages
//!   on average. With ~625-byte frames at one a second and the default 10 s
//!   interval that is ~2.5 pages (10 KiB) per 6 000 payload bytes, ~1.7x
//!   (5 s would give ~2.4x, 2 s ~4.4x). `write_amplification_within_targets`
//!   measures both cases from the kernel's per-thread I/O accounting.
//! - With a hot spool, connected: records acked before the sync deadline are
//!   never written to `dir` at all, and the log needs no marker segment (the
//!   spool's name carries the next seq), so the SD card sees neither data
//!   writes nor renames. Broker down: the same writes as without it, made at
//!   the sync instead of at the append.
//! - The meta file is rewritten only when the seq lease runs out (every
//!   [`LEASE_BLOCK`] records), when counters change, at open and close, and for
//!   the ack cursor only at a sync while acked records still sit in a
//!   partly acknowledged segment: never in either steady state above.
//!
//! # Sequence numbers
//! Seqs are never reused on this device, without an fsync per record. The meta
//! file holds a lease: no seq at or above it was ever handed out; crossing it
//! extends it by [`LEASE_BLOCK`] with an atomic meta rewrite. On open, if the
//! stored boot id is ours (a process crash: the page cache survived, so the
//! log's tail and segment names know every appended seq; with a hot spool,
//! only if its file survived too, as its tmpfs may have been emptied) or the
//! last shutdown
//! was a clean `close()`, the next seq is exact. Otherwise (power loss, or
//! a reboot after a crash) it continues at the lease, and
//! [`OpenReport::seq_skipped`] names the seqs that were never used.
//! Without a readable meta file the log is all we know; unsynced seqs lost in
//! a power cut may then come back.
//!
//! # Cap
//! The cap counts segment bytes and the hot spool's, and is enforced in whole
//! segments: before a write would exceed `max_bytes`, the oldest segments are
//! deleted and their unacked records counted as dropped. The spool, which
//! holds the newest records, and the segment being written are never
//! dropped, so with `max_bytes` under two segments the directory can exceed
//! the cap by up to one segment. Quarantined files do not count.
//!
//! Memory: 16 bytes per queued record (offset and timestamp), no payloads.
//!
//! # Layout
//! - `mod.rs`: [`Queue`]: ack, read, sync, stats, close.
//! - `write.rs`: append, segment roll-over, the cap.
//! - `hot.rs`: the hot spool: append to it, move it to the log, recover it.
//! - `recover.rs`: open: scan, truncate, quarantine, next seq.
//! - `segment.rs`: segment and frame format, the recovery scan.
//! - `meta.rs`: the meta file.
//! - `types.rs`: configuration, records, reports, errors.

mod hot;
mod meta;
mod recover;
mod segment;
mod types;
mod write;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use segment::MAX_PAYLOAD;
use segment::{Entry, FRAME_HEADER_LEN};
use types::at;
pub use types::{
    NewRecord, OpenReport, Quarantined, QueueConfig, QueueError, QueueStats, Record, RecordKind,
};

/// Seqs reserved per meta rewrite: at one record a second the lease costs one
/// small write every ~2.8 hours, and a power cut skips at most this many seqs.
pub const LEASE_BLOCK: u64 = 10_000;

#[derive(Debug)]
struct Segment {
    base: u64,
    entries: Vec<Entry>,
    /// Bytes in the file (all of them valid frames after recovery).
    len: u64,
    synced_len: u64,
    /// Open while the segment takes appends or holds unsynced bytes.
    file: Option<File>,
    writable: bool,
}

impl Segment {
    /// A new segment that takes appends and holds nothing yet.
    fn empty(base: u64, file: File) -> Segment {
        Segment {
            base,
            entries: Vec::new(),
            len: 0,
            synced_len: 0,
            file: Some(file),
            writable: true,
        }
    }

    /// Turns this segment's file into the empty one named after `next`: its
    /// dirty pages are dropped unwritten, like an unlinked file's, without
    /// creating and deleting an inode (measured at 1 Hz on ext4, create +
    /// unlink left ~17 pages per 30 s charged to the process, rename +
    /// truncate ~1). Rename first: a crash in between leaves a file whose
    /// header seq is below its name, which recovery reads as emptied
    /// (`Verdict::Recycled`); the other order would leave an empty file under
    /// the old name, and the seqs since would be handed out again. Only for
    /// a segment whose records are all acknowledged or moved elsewhere.
    fn recycle(&mut self, dir: &Path, next: u64) -> Result<(), QueueError> {
        if self.base != next {
            let from = self.path(dir);
            let to = dir.join(segment::segment_name(next));
            std::fs::rename(&from, &to).map_err(at(&from))?;
            self.base = next;
        }
        if self.len > 0 {
            if let Some(f) = &self.file {
                f.set_len(0).map_err(at(&self.path(dir)))?;
            }
        }
        self.entries.clear();
        self.len = 0;
        self.synced_len = 0;
        Ok(())
    }

    fn last_seq(&self) -> Option<u64> {
        (self.entries.len() as u64)
            .checked_sub(1)
            .map(|n| self.base.saturating_add(n))
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(segment::segment_name(self.base))
    }

    /// Index of the first record with seq >= `seq`.
    fn index_of(&self, seq: u64) -> usize {
        usize::try_from(seq.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.entries.len())
    }

    fn end_of(&self, i: usize) -> u64 {
        self.entries
            .get(i + 1)
            .map_or(self.len, |e| u64::from(e.offset))
    }
}

fn open_rw(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
}

fn remove_if_exists(path: &Path) -> Result<(), QueueError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(path)(e)),
        _ => Ok(()),
    }
}

pub struct Queue {
    cfg: QueueConfig,
    boot_id: String,
    /// Sorted by base seq; only the last one can be writable.
    segments: Vec<Segment>,
    /// The hot spool (with `hot_dir` only): records newer than the log's,
    /// except those a move to the log left behind (see `spool_start`).
    spool: Option<Segment>,
    next_seq: u64,
    acked: Option<u64>,
    lease: u64,
    dropped_total: u64,
    quarantined_total: u64,
    /// When the oldest write not yet covered by `sync()` happened.
    pending_since: Option<Instant>,
    counters_dirty: bool,
    ack_dirty: bool,
    dir_dirty: bool,
    fdatasyncs: u64,
}

impl Queue {
    /// Never fails because of corrupt/torn/garbage content: only for real
    /// I/O errors (dir cannot be created, permission denied).
    pub fn open(cfg: QueueConfig, boot_id: &str) -> Result<(Queue, OpenReport), QueueError> {
        recover::open(cfg, boot_id)
    }

    /// The seq the next appended record must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// fdatasync calls issued since open: lets tests and health reports see
    /// that syncs of already acknowledged data are skipped.
    pub fn fdatasync_count(&self) -> u64 {
        self.fdatasyncs
    }

    fn acked_next(&self) -> u64 {
        self.acked.map_or(0, |a| a.saturating_add(1))
    }

    /// The broker acknowledged every seq <= `through_seq`.
    pub fn ack(&mut self, through_seq: u64) -> Result<(), QueueError> {
        if through_seq >= self.next_seq {
            return Err(QueueError::AckBeyondNext {
                through: through_seq,
                next: self.next_seq,
            });
        }
        if self.acked.is_some_and(|a| a >= through_seq) {
            return Ok(());
        }
        self.acked = Some(through_seq);
        self.ack_dirty = true;
        let all_acked = through_seq + 1 == self.next_seq;
        let hot = self.cfg.hot_dir.is_some();
        if all_acked && hot {
            // The spool file carries the next seq in its name; the log needs
            // no marker on the SD card, which spares it a rename per ack.
            self.reset_spool()?;
        } else if all_acked {
            let marker_in_place = self
                .segments
                .last()
                .is_some_and(|s| s.writable && s.entries.is_empty() && s.base == self.next_seq);
            if !marker_in_place && !self.recycle_active()? {
                // Unlinking the log must not lose the next seq: the empty
                // successor carries it in its name.
                self.start_segment(self.next_seq)?;
            }
        }
        let keep = usize::from(!hot);
        while self.segments.len() > keep
            && self.segments[0].last_seq().is_none_or(|l| l <= through_seq)
        {
            self.remove_segment(0)?;
        }
        if all_acked {
            self.ack_dirty = false;
            if !self.counters_dirty {
                self.pending_since = None;
            }
        }
        Ok(())
    }

    /// Every record is acknowledged: the active segment becomes the empty
    /// segment named after the next seq (see `Segment::recycle`). Returns
    /// false when there is no writable segment to recycle.
    fn recycle_active(&mut self) -> Result<bool, QueueError> {
        let next = self.next_seq;
        let dir = &self.cfg.dir;
        let Some(seg) = self
            .segments
            .last_mut()
            .filter(|s| s.writable && s.file.is_some())
        else {
            return Ok(false);
        };
        seg.recycle(dir, next)?;
        self.dir_dirty = true;
        Ok(true)
    }

    /// Up to `max_records` records (and `max_bytes` of payload, but at least
    /// one record) with seq >= `from_seq` that are neither acked nor dropped,
    /// in seq order, skipping gaps.
    pub fn read(
        &mut self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, QueueError> {
        let start = from_seq.max(self.acked_next());
        let spool_start = start.max(self.spool_start());
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let log = self.segments.iter().map(|s| (s, &self.cfg.dir, start));
        let hot = (self.spool.iter())
            .zip(self.cfg.hot_dir.iter())
            .map(|(s, d)| (s, d, spool_start));
        for (seg, dir, start) in log.chain(hot) {
            let limits = (max_records, max_bytes);
            if !read_segment(seg, dir, start, limits, &mut out, &mut bytes)? {
                break;
            }
        }
        Ok(out)
    }

    /// The first seq the spool holds that the log does not: a move to the
    /// log that failed half-way, or a crash before the spool was reset,
    /// leaves a prefix of the spool's records in both.
    fn spool_start(&self) -> u64 {
        let log_end = (self.segments.iter().rev())
            .find_map(Segment::last_seq)
            .map_or(0, |l| l.saturating_add(1));
        self.spool.as_ref().map_or(log_end, |s| s.base.max(log_end))
    }

    /// When the caller must call `sync()` next (`None`: nothing pending).
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.pending_since.map(|t| t + self.cfg.sync_interval)
    }

    fn unsynced_unacked(&self) -> bool {
        let acked_next = self.acked_next();
        self.segments
            .iter()
            .any(|s| s.len > s.synced_len && s.last_seq().is_some_and(|l| l >= acked_next))
    }

    /// One fdatasync per segment with unsynced bytes, skipped when every
    /// record appended since the last sync is already acknowledged.
    pub fn sync(&mut self) -> Result<(), QueueError> {
        self.move_spool()?;
        if self.unsynced_unacked() {
            self.sync_data()?;
        }
        let acked_on_disk = self
            .segments
            .first()
            .is_some_and(|s| !s.entries.is_empty() && s.base < self.acked_next());
        if self.counters_dirty || (self.ack_dirty && acked_on_disk) {
            self.store_meta(false)?;
        }
        self.pending_since = None;
        Ok(())
    }

    fn sync_data(&mut self) -> Result<(), QueueError> {
        if self.dir_dirty {
            meta::sync_dir(&self.cfg.dir).map_err(at(&self.cfg.dir))?;
            self.dir_dirty = false;
        }
        let acked_next = self.acked_next();
        for seg in &mut self.segments {
            // A segment whose records are all acked is about to go: its
            // bytes need not reach the disk.
            if seg.len == seg.synced_len || seg.last_seq().is_none_or(|l| l < acked_next) {
                continue;
            }
            let path = seg.path(&self.cfg.dir);
            match &seg.file {
                Some(f) => f.sync_data(),
                None => OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.sync_data()),
            }
            .map_err(at(&path))?;
            self.fdatasyncs += 1;
            seg.synced_len = seg.len;
            if !seg.writable {
                seg.file = None;
            }
        }
        Ok(())
    }

    /// Cheap: no I/O.
    pub fn stats(&self) -> QueueStats {
        let acked_next = self.acked_next();
        let mut stats = QueueStats {
            dropped_total: self.dropped_total,
            quarantined_total: self.quarantined_total,
            next_seq: self.next_seq,
            acked_through: self.acked,
            ..QueueStats::default()
        };
        let spool_start = acked_next.max(self.spool_start());
        let log = self.segments.iter().map(|s| (s, acked_next));
        for (seg, start) in log.chain(self.spool.iter().map(|s| (s, spool_start))) {
            let first = seg.index_of(start);
            let Some(e) = seg.entries.get(first) else {
                continue;
            };
            stats.oldest_ts_ms.get_or_insert(e.ts_ms);
            stats.records += (seg.entries.len() - first) as u64;
            stats.bytes += seg.len - u64::from(e.offset);
        }
        stats
    }

    /// Clean shutdown: persists everything, so the next start continues the
    /// seqs exactly. Dropping a `Queue` without it is treated like a crash.
    pub fn close(mut self) -> Result<(), QueueError> {
        self.move_spool()?;
        if self.unsynced_unacked() {
            self.sync_data()?;
        }
        self.store_meta(true)
    }

    fn store_meta(&mut self, clean: bool) -> Result<(), QueueError> {
        let m = meta::Meta {
            boot_id: self.boot_id.clone(),
            lease: self.lease,
            next_floor: self.next_seq,
            clean,
            acked: self.acked,
            dropped_total: self.dropped_total,
            quarantined_total: self.quarantined_total,
        };
        meta::store(&self.cfg.dir, &m).map_err(at(&self.cfg.dir))?;
        self.counters_dirty = false;
        self.ack_dirty = false;
        Ok(())
    }

    /// Segment files with the length fdatasync has made durable, for tests
    /// that simulate a power cut.
    #[cfg(test)]
    fn synced_lengths(&self) -> Vec<(PathBuf, u64)> {
        self.segments
            .iter()
            .map(|s| (s.path(&self.cfg.dir), s.synced_len))
            .collect()
    }
}

/// Appends to `out` the records of `seg` from seq `start` on, within the
/// limits `(max_records, max_bytes)` shared with the segments read before.
/// Returns whether a later segment may contribute more.
fn read_segment(
    seg: &Segment,
    dir: &Path,
    start: u64,
    (max_records, max_bytes): (usize, usize),
    out: &mut Vec<Record>,
    bytes: &mut usize,
) -> Result<bool, QueueError> {
    if out.len() >= max_records {
        return Ok(false);
    }
    if seg.last_seq().is_none_or(|l| l < start) {
        return Ok(true);
    }
    let first = seg.index_of(start);
    let mut end = first;
    while end < seg.entries.len() && out.len() + (end - first) < max_records {
        let frame = (seg.end_of(end) - u64::from(seg.entries[end].offset)) as usize;
        let payload = frame.saturating_sub(FRAME_HEADER_LEN);
        if (!out.is_empty() || end > first) && *bytes + payload > max_bytes {
            break;
        }
        *bytes += payload;
        end += 1;
    }
    if end == first {
        return Ok(false);
    }
    let from = u64::from(seg.entries[first].offset);
    let mut buf = vec![0u8; (seg.end_of(end - 1) - from) as usize];
    let path = seg.path(dir);
    match &seg.file {
        Some(f) => f.read_exact_at(&mut buf, from),
        None => File::open(&path).and_then(|f| f.read_exact_at(&mut buf, from)),
    }
    .map_err(at(&path))?;
    for i in first..end {
        let a = (u64::from(seg.entries[i].offset) - from) as usize;
        let b = (seg.end_of(i) - from) as usize;
        match buf.get(a..b).and_then(segment::decode_frame) {
            Some(r) if r.seq == seg.base + i as u64 => out.push(r),
            _ => {
                tracing::warn!(path = %path.display(), seq = seg.base + i as u64, "queued record damaged on disk, skipped")
            }
        }
    }
    Ok(end == seg.entries.len())
}
