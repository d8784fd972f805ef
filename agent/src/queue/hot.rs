//! The hot spool: with `hot_dir` set, appends go to a segment-format file on
//! tmpfs, and only the records still unacknowledged at the sync deadline are
//! moved to the segment log on the SD card (see the module docs).
//!
//! The spool file is named like a segment, after its base seq, and is never
//! deleted while the queue is open: when emptied it is renamed after the next
//! seq and cut to zero, so its name always tells a restarted process where
//! the seqs continue, and its absence after a crash tells recovery that the
//! tmpfs was lost with whatever it held (see `recover::next_seq`).

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::segment::{self, Entry, HEADER_LEN};
use super::{NewRecord, Queue, QueueError, Segment, at, open_rw, read_segment, remove_if_exists};

impl Queue {
    /// Appends to the spool in one write(2). A spool that would outgrow a
    /// segment (or the cap) is moved to the log first, which bounds the RAM
    /// it takes and lets the cap apply to it like to any segment.
    pub(super) fn append_spool(&mut self, records: &[NewRecord]) -> Result<u64, QueueError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(0);
        };
        let frames: u64 = records
            .iter()
            .map(|r| segment::frame_len(r.payload.len()) as u64)
            .sum();
        let incoming = HEADER_LEN + frames;
        let limit = self.cfg.segment_bytes.min(self.cfg.max_bytes);
        let mut dropped = 0;
        if self
            .spool
            .as_ref()
            .is_some_and(|s| s.len + incoming > limit)
        {
            dropped += self.move_spool()?;
        }
        // The spool is never dropped: the log holds the oldest records.
        dropped += self.enforce_cap(incoming, 0)?;
        self.place_spool(first.seq)?;
        let Some((spool, hot)) = self.spool.as_mut().zip(self.cfg.hot_dir.as_ref()) else {
            return Ok(dropped);
        };
        let mut buf = Vec::new();
        if spool.len == 0 {
            segment::encode_header(spool.base, &mut buf);
        }
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let offset = spool.len + buf.len() as u64;
            pending.push(Entry {
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                ts_ms: r.ts_ms,
            });
            segment::encode_frame(r.seq, r.kind, r.ts_ms, &r.payload, &mut buf);
        }
        let Some(file) = spool.file.as_ref() else {
            return Ok(dropped);
        };
        if let Err(e) = file.write_all_at(&buf, spool.len) {
            let _ = file.set_len(spool.len);
            return Err(at(&spool.path(hot))(e));
        }
        spool.len += buf.len() as u64;
        spool.entries.append(&mut pending);
        self.next_seq = last.seq.saturating_add(1);
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(dropped)
    }

    /// Moves the spool's unacknowledged records to the log (write(2) only:
    /// the caller's sync makes them durable) and empties the spool.
    /// Returns how many records the cap dropped on the way.
    pub(super) fn move_spool(&mut self) -> Result<u64, QueueError> {
        if self.spool.as_ref().is_none_or(|s| s.entries.is_empty()) {
            return Ok(0);
        }
        let dropped = self.move_spool_records()?;
        self.reset_spool()?;
        Ok(dropped)
    }

    /// The log half of `move_spool`: the spool is left as it is, so a crash
    /// before it is emptied leaves the records in both places, which
    /// `spool_start` resolves in favour of the log.
    pub(super) fn move_spool_records(&mut self) -> Result<u64, QueueError> {
        let (Some(spool), Some(hot)) = (self.spool.as_ref(), self.cfg.hot_dir.as_ref()) else {
            return Ok(0);
        };
        let start = self.acked_next().max(self.spool_start());
        let mut out = Vec::new();
        read_segment(
            spool,
            hot,
            start,
            (usize::MAX, usize::MAX),
            &mut out,
            &mut 0,
        )?;
        let records: Vec<NewRecord> = out
            .into_iter()
            .map(|r| NewRecord {
                seq: r.seq,
                kind: r.kind,
                ts_ms: r.ts_ms,
                payload: r.payload,
            })
            .collect();
        // Out of the way while the log grows: its bytes are on their way
        // into the log and must not be counted twice against the cap.
        let spool = self.spool.take();
        let result = self.append_log(&records);
        self.spool = spool;
        result
    }

    /// Empties the spool and names it after the next seq (creating it if
    /// there is none); see `Segment::recycle` for the crash-safe order.
    pub(super) fn reset_spool(&mut self) -> Result<(), QueueError> {
        let next = self.next_seq;
        match (self.spool.as_mut(), self.cfg.hot_dir.as_ref()) {
            (Some(spool), Some(hot)) => spool.recycle(hot, next),
            _ => self.place_spool(next),
        }
    }

    /// Makes sure a spool file exists and, unless it holds records, is named
    /// after `base`, the seq its first record will carry.
    fn place_spool(&mut self, base: u64) -> Result<(), QueueError> {
        let Some(hot) = self.cfg.hot_dir.as_ref() else {
            return Ok(());
        };
        match self.spool.as_mut() {
            Some(s) if s.base == base || !s.entries.is_empty() => {}
            Some(s) => s.recycle(hot, base)?,
            None => {
                let path = hot.join(segment::segment_name(base));
                let file = open_rw(&path, true).map_err(at(&path))?;
                self.spool = Some(Segment::empty(base, file));
            }
        }
        Ok(())
    }

    /// Recovery's last step with `hot_dir`: moves the unacknowledged records
    /// of the spool files found on open to the log, makes them durable, and
    /// leaves one empty spool named after the next seq.
    pub(super) fn adopt_spools(&mut self, spools: Vec<Segment>) -> Result<(), QueueError> {
        let Some(hot) = self.cfg.hot_dir.clone() else {
            return Ok(());
        };
        let count = spools.len();
        for (i, spool) in spools.into_iter().enumerate() {
            let path = spool.path(&hot);
            self.spool = Some(spool);
            self.move_spool_records()?;
            if i + 1 < count {
                self.spool = None;
                remove_if_exists(&path)?;
            }
        }
        if self.unsynced_unacked() {
            self.sync_data()?;
        }
        self.reset_spool()
    }
}
