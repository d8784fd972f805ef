//! Opening the queue: scan every segment, cut torn tails, set corrupt
//! segments aside, and work out the next seq. Content never makes this fail;
//! only I/O the queue cannot do without (creating the directory, opening a
//! file, writing the meta file) does.

use std::fs::{self, OpenOptions};
use std::path::Path;

use super::meta::{self, Loaded, Meta};
use super::segment::{self, Verdict};
use super::{
    LEASE_BLOCK, OpenReport, Quarantined, Queue, QueueConfig, QueueError, Segment, at, open_rw,
};

const QUARANTINE_DIR: &str = "quarantine";
const MIN_SEGMENT_BYTES: u64 = 4 << 10;
const MAX_SEGMENT_BYTES: u64 = 1 << 30;

pub(super) fn open(mut cfg: QueueConfig, boot_id: &str) -> Result<(Queue, OpenReport), QueueError> {
    cfg.segment_bytes = cfg
        .segment_bytes
        .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
    let dir = cfg.dir.clone();
    fs::create_dir_all(&dir).map_err(at(&dir))?;
    let stored = load_meta(&dir)?;
    let mut report = OpenReport::default();
    let mut quarantined_total = stored.as_ref().map_or(0, |m| m.quarantined_total);
    let acked = stored.as_ref().and_then(|m| m.acked);

    let segments = scan_segments(&dir, &mut report, &mut quarantined_total)?;
    let spools = match cfg.hot_dir.clone() {
        Some(hot) => scan_spools(&hot, &dir, &mut report, &mut quarantined_total)?,
        None => Vec::new(),
    };
    // With a hot spool, a crash on the same boot is only exact if the tmpfs
    // survived it: the spool file is always there while the queue is open.
    let hot_intact = cfg.hot_dir.is_none() || !spools.is_empty();
    let (next_seq, skipped) = next_seq(
        stored.as_ref(),
        segments.iter().chain(&spools),
        acked,
        boot_id,
        hot_intact,
    );
    report.seq_skipped = skipped;
    if let Some((from, to)) = skipped {
        tracing::warn!(
            from,
            to,
            "queue continues after seqs that may have been lost in a power cut"
        );
    }
    let lease = stored
        .as_ref()
        .map_or(0, |m| m.lease)
        .max(next_seq.saturating_add(LEASE_BLOCK));
    let mut q = Queue {
        cfg,
        boot_id: boot_id.to_owned(),
        segments,
        spool: None,
        next_seq,
        acked,
        lease,
        dropped_total: stored.as_ref().map_or(0, |m| m.dropped_total),
        quarantined_total,
        pending_since: None,
        counters_dirty: false,
        ack_dirty: false,
        dir_dirty: false,
        fdatasyncs: 0,
    };
    // Persist the new lease, our boot id and "not closed cleanly" before any
    // append, and the next seq before the empty segments carrying it go.
    q.store_meta(false)?;
    remove_acked(&mut q)?;
    q.adopt_spools(spools)?;
    Ok((q, report))
}

/// The meta file, if there is a readable one.
fn load_meta(dir: &Path) -> Result<Option<Meta>, QueueError> {
    Ok(match meta::load(dir).map_err(at(dir))? {
        Loaded::Ok(m) => Some(m),
        Loaded::Missing => None,
        Loaded::Garbled => {
            tracing::warn!(dir = %dir.display(), "queue meta file unreadable, starting from the log alone");
            None
        }
    })
}

/// The segments in `dir`, in seq order, each recovered; the ones that
/// cannot be are set aside in `dir/quarantine/` and counted.
fn scan_segments(
    dir: &Path,
    report: &mut OpenReport,
    quarantined_total: &mut u64,
) -> Result<Vec<Segment>, QueueError> {
    let mut segments: Vec<Segment> = Vec::new();
    for (base, name) in list_segments(dir)? {
        let prev_last = segments.iter().rev().find_map(Segment::last_seq);
        match recover_segment(dir, base, &name, prev_last, report)? {
            Some(segment) => segments.push(segment),
            None => *quarantined_total += 1,
        }
    }
    Ok(segments)
}

/// Scan one segment: cut a torn tail, empty a recycled file, or set the
/// file aside (`None`) when it is unreadable, corrupt, or overlaps the one
/// before it (which ends at `prev_last`).
fn recover_segment(
    dir: &Path,
    base: u64,
    name: &str,
    prev_last: Option<u64>,
    report: &mut OpenReport,
) -> Result<Option<Segment>, QueueError> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(at(&path))?;
    let scan = match segment::scan(&file, base) {
        Ok(s) => s,
        // An unreadable sector must not keep the agent down: set the
        // file aside like any other damage.
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "queue segment unreadable");
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            quarantine(dir, dir, name, bytes, report)?;
            return Ok(None);
        }
    };
    let reason = match scan.verdict {
        Verdict::Corrupt(reason) => Some(reason),
        _ if !scan.entries.is_empty() && prev_last.is_some_and(|p| base <= p) => {
            Some("seqs overlap the previous segment")
        }
        _ => None,
    };
    if let Some(reason) = reason {
        tracing::warn!(path = %path.display(), reason, "queue segment corrupt, moved to quarantine");
        quarantine(dir, dir, name, scan.file_len, report)?;
        return Ok(None);
    }
    if scan.verdict == Verdict::Recycled {
        file.set_len(0).map_err(at(&path))?;
    }
    if scan.verdict == Verdict::TornTail {
        file.set_len(scan.valid_len).map_err(at(&path))?;
        let cut = scan.file_len - scan.valid_len;
        tracing::warn!(path = %path.display(), bytes = cut, "queue segment had a torn tail, truncated");
        report.truncated_bytes += cut;
    }
    Ok(Some(Segment {
        base,
        entries: scan.entries,
        len: scan.valid_len,
        synced_len: scan.valid_len,
        file: None,
        writable: false,
    }))
}

/// Remove the segments the broker acknowledged entirely, and the empty
/// ones (the meta file now carries the next seq they held).
fn remove_acked(q: &mut Queue) -> Result<(), QueueError> {
    let acked = q.acked;
    let mut i = 0;
    while i < q.segments.len() {
        if q.segments[i]
            .last_seq()
            .is_none_or(|l| acked.is_some_and(|a| l <= a))
        {
            q.remove_segment(i)?;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Regular files named like segments, in seq order; anything else in the
/// directory is left alone.
fn list_segments(dir: &Path) -> Result<Vec<(u64, String)>, QueueError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(at(dir))? {
        let entry = entry.map_err(at(dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name == meta::META_TMP {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        let Some(base) = segment::parse_segment_name(&name) else {
            continue;
        };
        if entry.file_type().map_err(at(dir))?.is_file() {
            out.push((base, name));
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn quarantine(
    from_dir: &Path,
    dir: &Path,
    name: &str,
    bytes: u64,
    report: &mut OpenReport,
) -> Result<(), QueueError> {
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir).map_err(at(&qdir))?;
    let mut target = qdir.join(name);
    let mut n = 1;
    while target.try_exists().map_err(at(&target))? {
        target = qdir.join(format!("{name}.{n}"));
        n += 1;
    }
    let from = from_dir.join(name);
    // The hot spool lives on another filesystem, where rename cannot go.
    fs::rename(&from, &target)
        .or_else(|_| fs::copy(&from, &target).and_then(|_| fs::remove_file(&from)))
        .map_err(at(&from))?;
    report.quarantined.push(Quarantined {
        segment: name.to_owned(),
        bytes,
    });
    Ok(())
}

/// The hot spool files in `hot`, scanned like segments: torn tails cut,
/// corrupt ones set aside in `dir/quarantine/`.
fn scan_spools(
    hot: &Path,
    dir: &Path,
    report: &mut OpenReport,
    quarantined_total: &mut u64,
) -> Result<Vec<Segment>, QueueError> {
    fs::create_dir_all(hot).map_err(at(hot))?;
    let mut spools = Vec::new();
    for (base, name) in list_segments(hot)? {
        let path = hot.join(&name);
        let file = open_rw(&path, false).map_err(at(&path))?;
        let scan = match segment::scan(&file, base) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "hot spool unreadable");
                let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
                quarantine(hot, dir, &name, bytes, report)?;
                *quarantined_total += 1;
                continue;
            }
        };
        if let Verdict::Corrupt(reason) = scan.verdict {
            tracing::warn!(path = %path.display(), reason, "hot spool corrupt, moved to quarantine");
            quarantine(hot, dir, &name, scan.file_len, report)?;
            *quarantined_total += 1;
            continue;
        }
        let mut spool = Segment {
            base,
            entries: scan.entries,
            len: scan.valid_len,
            synced_len: 0,
            file: Some(file),
            writable: true,
        };
        match scan.verdict {
            Verdict::Recycled => {
                spool.entries.clear();
                spool.len = 0;
            }
            Verdict::TornTail => {
                let cut = scan.file_len - scan.valid_len;
                tracing::warn!(path = %path.display(), bytes = cut, "hot spool had a torn tail, truncated");
                report.truncated_bytes += cut;
            }
            _ => {}
        }
        if let Some(f) = &spool.file {
            if spool.len < scan.file_len {
                f.set_len(spool.len).map_err(at(&path))?;
            }
        }
        spools.push(spool);
    }
    Ok(spools)
}

/// The next seq, and the range skipped when it has to come from the lease.
/// `hot_intact`: no hot spool is configured, or its file survived.
fn next_seq<'a>(
    stored: Option<&Meta>,
    segments: impl IntoIterator<Item = &'a Segment>,
    acked: Option<u64>,
    boot_id: &str,
    hot_intact: bool,
) -> (u64, Option<(u64, u64)>) {
    // Every seq the log shows as handed out: the last record, or for an
    // empty segment its name, which is the seq its first record would get.
    let from_log = segments
        .into_iter()
        .map(|s| s.last_seq().map_or(s.base, |l| l.saturating_add(1)))
        .max()
        .unwrap_or(0);
    let from_ack = acked.map_or(0, |a| a.saturating_add(1));
    let Some(m) = stored else {
        return (from_log.max(from_ack), None);
    };
    let known = from_log.max(from_ack).max(m.next_floor);
    let same_boot = !boot_id.is_empty() && m.boot_id == boot_id && hot_intact;
    if same_boot || m.clean || m.lease <= known {
        (known, None)
    } else {
        (m.lease, Some((known, m.lease)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(boot: &str, lease: u64, floor: u64, clean: bool) -> Meta {
        Meta {
            boot_id: boot.into(),
            lease,
            next_floor: floor,
            clean,
            ..Meta::default()
        }
    }

    fn seg(base: u64, n: usize) -> Segment {
        let entries = vec![
            segment::Entry {
                offset: 0,
                ts_ms: 0
            };
            n
        ];
        Segment {
            base,
            entries,
            len: 0,
            synced_len: 0,
            file: None,
            writable: false,
        }
    }

    #[test]
    fn next_seq_table() {
        let log = [seg(10, 5), seg(15, 3)]; // seqs 10..18
        type Case = (
            Option<Meta>,
            Option<u64>,
            &'static str,
            (u64, Option<(u64, u64)>),
        );
        let cases: [Case; 7] = [
            (None, None, "b", (18, None)),
            (None, Some(30), "b", (31, None)),
            (Some(meta("b", 100, 0, false)), None, "b", (18, None)),
            (
                Some(meta("a", 100, 0, false)),
                None,
                "b",
                (100, Some((18, 100))),
            ),
            (Some(meta("a", 100, 20, true)), None, "b", (20, None)),
            (
                Some(meta("", 100, 0, false)),
                None,
                "",
                (100, Some((18, 100))),
            ),
            (Some(meta("a", 10, 0, false)), None, "b", (18, None)),
        ];
        for (stored, acked, boot, want) in cases {
            assert_eq!(
                next_seq(stored.as_ref(), &log, acked, boot, true),
                want,
                "{stored:?} {acked:?} {boot}"
            );
        }
        let marker = [seg(10, 5), seg(42, 0)];
        assert_eq!(next_seq(None, &marker, None, "b", true), (42, None));
    }
}
