//! The write path: appending frames, rolling segments, enforcing the cap.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::segment::{self, Entry, HEADER_LEN};
use super::{
    LEASE_BLOCK, MAX_PAYLOAD, NewRecord, Queue, QueueError, Segment, at, open_rw, remove_if_exists,
};

impl Queue {
    /// Appends (write(2) immediately, to the log or the hot spool, so a
    /// SIGKILL loses nothing), fdatasync deferred to the sync deadline. Records must carry consecutive seqs
    /// starting at `next_seq()`, else nothing is written. Applies the byte
    /// cap with drop-oldest; returns how many records this call dropped.
    /// On an I/O error a prefix of the batch may be in: `next_seq()` says.
    pub fn append(&mut self, records: &[NewRecord]) -> Result<u64, QueueError> {
        for (i, r) in records.iter().enumerate() {
            let expected = self.next_seq.saturating_add(i as u64);
            if r.seq != expected {
                return Err(QueueError::SeqMismatch {
                    expected,
                    got: r.seq,
                });
            }
            if r.payload.len() > MAX_PAYLOAD {
                return Err(QueueError::RecordTooLarge {
                    len: r.payload.len(),
                    max: MAX_PAYLOAD,
                });
            }
        }
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(0);
        };
        if last >= self.lease {
            self.lease = last.saturating_add(1 + LEASE_BLOCK);
            self.store_meta(false)?;
        }
        if self.cfg.hot_dir.is_some() {
            return self.append_spool(records);
        }
        self.append_log(records)
    }

    /// Writes records to the segment log. Seqs must ascend past the log's
    /// last one; a gap (records acknowledged while in the hot spool) starts
    /// a new segment, as a segment's seqs are consecutive.
    pub(super) fn append_log(&mut self, records: &[NewRecord]) -> Result<u64, QueueError> {
        let mut dropped = 0;
        let mut buf = Vec::new();
        let mut pending = Vec::new();
        for r in records {
            let frame = segment::frame_len(r.payload.len()) as u64;
            if self.needs_new_segment(r.seq, buf.len() as u64 + frame, pending.len()) {
                self.flush(&mut buf, &mut pending)?;
                self.start_segment(r.seq)?;
            }
            let Some(active) = self.segments.last() else {
                continue; // start_segment always leaves a segment behind
            };
            let header = if active.len == 0 && buf.is_empty() {
                HEADER_LEN
            } else {
                0
            };
            dropped += self.enforce_cap(buf.len() as u64 + header + frame, 1)?;
            let Some(active) = self.segments.last() else {
                continue;
            };
            if header > 0 {
                segment::encode_header(active.base, &mut buf);
            }
            let offset = active.len + buf.len() as u64;
            pending.push(Entry {
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                ts_ms: r.ts_ms,
            });
            segment::encode_frame(r.seq, r.kind, r.ts_ms, &r.payload, &mut buf);
        }
        self.flush(&mut buf, &mut pending)?;
        Ok(dropped)
    }

    fn needs_new_segment(&self, seq: u64, bytes: u64, pending: usize) -> bool {
        match self.segments.last() {
            Some(s) if s.writable && s.file.is_some() => {
                let count = (s.entries.len() + pending) as u64;
                if count == 0 {
                    s.base != seq
                } else {
                    s.base.saturating_add(count) != seq
                        || s.len.max(HEADER_LEN) + bytes > self.cfg.segment_bytes
                }
            }
            _ => true,
        }
    }

    /// Writes the buffered frames to the active segment in one write(2).
    fn flush(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<Entry>) -> Result<(), QueueError> {
        if buf.is_empty() {
            return Ok(());
        }
        let dir = &self.cfg.dir;
        let Some(seg) = self.segments.last_mut() else {
            return Ok(());
        };
        let path = seg.path(dir);
        let Some(file) = seg.file.as_ref() else {
            return Ok(());
        };
        if let Err(e) = file.write_all_at(buf, seg.len) {
            // Leave no partial frame behind for the next append to build on.
            let _ = file.set_len(seg.len);
            return Err(at(&path)(e));
        }
        seg.len += buf.len() as u64;
        seg.entries.append(pending);
        // Records moved from the hot spool already had their seqs counted.
        let end = seg.base.saturating_add(seg.entries.len() as u64);
        self.next_seq = self.next_seq.max(end);
        buf.clear();
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Seals the current segment and creates `{base}.seg`, left empty: the
    /// header goes down with the first frame, in the same write.
    pub(super) fn start_segment(&mut self, base: u64) -> Result<(), QueueError> {
        if let Some(last) = self.segments.last_mut() {
            last.writable = false;
            if last.synced_len == last.len {
                last.file = None;
            }
            if last.entries.is_empty() {
                self.remove_segment(self.segments.len() - 1)?;
            }
        }
        let seg_path = self.cfg.dir.join(segment::segment_name(base));
        let file = open_rw(&seg_path, true).map_err(at(&seg_path))?;
        self.dir_dirty = true;
        self.segments.push(Segment::empty(base, file));
        Ok(())
    }

    pub(super) fn remove_segment(&mut self, i: usize) -> Result<(), QueueError> {
        let path = self.segments[i].path(&self.cfg.dir);
        remove_if_exists(&path)?;
        self.segments.remove(i);
        Ok(())
    }

    /// Drops the oldest segments until `incoming` more bytes fit under the
    /// cap, sparing the last `spare` (the one being written to). The hot
    /// spool's bytes count too: it is part of the queue.
    pub(super) fn enforce_cap(&mut self, incoming: u64, spare: usize) -> Result<u64, QueueError> {
        let mut dropped = 0;
        let mut total: u64 = self.segments.iter().map(|s| s.len).sum::<u64>()
            + self.spool.as_ref().map_or(0, |s| s.len);
        while total + incoming > self.cfg.max_bytes && self.segments.len() > spare {
            let oldest = &self.segments[0];
            let unacked = oldest.entries.len() - oldest.index_of(self.acked_next());
            total -= oldest.len;
            self.remove_segment(0)?;
            dropped += unacked as u64;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                max_bytes = self.cfg.max_bytes,
                "queue full, dropped the oldest records"
            );
            self.dropped_total += dropped;
            self.counters_dirty = true;
            self.pending_since.get_or_insert_with(Instant::now);
        }
        Ok(dropped)
    }
}
