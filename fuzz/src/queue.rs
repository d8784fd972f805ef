//! The agent's queue directory, built from fuzzer input, then opened, used
//! and reopened.
//!
//! Input: one byte of settings, then files and operations:
//!
//! ```text
//! settings: bit 0 hot spool, bit 1 close cleanly (else dropped as if the
//!           process died), bits 4..8 segment size in 4 KiB steps
//! entry:    tag u8 | name length u8 | name | content length u16 LE | content
//!   tag & 3:    0 a file in the queue directory, 1 in the hot spool,
//!               2 operations after the first open (content, a byte each:
//!               0x00..0x3f append a payload of that many bytes, 0x40..0x7f
//!               ack through next_seq - 1 - (b & 0x3f), 0x80.. sync)
//!   tag & 0x80: repair the CRCs (segment header and frames as their length
//!               fields lay them out; a file named `meta`: its last four
//!               bytes), so mutations reach past the checksums
//! ```
//!
//! The seed generator packs directories the queue itself wrote. The CRC
//! repair follows the format's description in `agent/src/queue/segment.rs`
//! and `meta.rs`, not the queue's encoder.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use picket_agent::queue::{NewRecord, Queue, QueueConfig, RecordKind};

pub const BOOT: &str = "boot-a";

pub const TAG_DIR: u8 = 0;
pub const TAG_HOT: u8 = 1;
pub const TAG_OPS: u8 = 2;
pub const TAG_FIX_CRC: u8 = 0x80;

pub const SETTING_HOT: u8 = 1;
pub const SETTING_CLOSE: u8 = 2;

const SEGMENT_HEADER: usize = 20;
const FRAME_HEADER: usize = 25;

/// One entry of the input format (the seed generator writes these).
pub fn pack_entry(out: &mut Vec<u8>, tag: u8, name: &str, content: &[u8]) {
    out.push(tag);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(content.len() as u16).to_le_bytes());
    out.extend_from_slice(content);
}

struct Input {
    settings: u8,
    dir: Vec<(String, Vec<u8>)>,
    hot: Vec<(String, Vec<u8>)>,
    ops: Vec<u8>,
}

fn parse(data: &[u8]) -> Option<Input> {
    let (&settings, mut rest) = data.split_first()?;
    let mut input = Input {
        settings,
        dir: Vec::new(),
        hot: Vec::new(),
        ops: Vec::new(),
    };
    while let Some((&tag, r)) = rest.split_first() {
        let (&name_len, r) = r.split_first()?;
        let (name, r) = r.split_at_checked(usize::from(name_len))?;
        let (len, r) = r.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len)).min(r.len());
        let (content, r) = r.split_at(len);
        rest = r;
        let name = String::from_utf8_lossy(name).into_owned();
        let mut content = content.to_vec();
        if tag & TAG_FIX_CRC != 0 {
            if name == "meta" {
                fix_meta_crc(&mut content);
            } else {
                fix_segment_crcs(&mut content);
            }
        }
        match tag & 3 {
            TAG_DIR => input.dir.push((name, content)),
            TAG_HOT => input.hot.push((name, content)),
            TAG_OPS => input.ops.extend_from_slice(&content),
            _ => {}
        }
    }
    Some(input)
}

fn fix_segment_crcs(b: &mut [u8]) {
    if b.len() < SEGMENT_HEADER {
        return;
    }
    let crc = crc32(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    let mut pos = SEGMENT_HEADER;
    while pos + FRAME_HEADER <= b.len() {
        let len = u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]) as usize;
        let Some(end) = (pos + FRAME_HEADER)
            .checked_add(len)
            .filter(|&e| e <= b.len())
        else {
            return;
        };
        let crc = crc32(&[&b[pos..pos + 4], &b[pos + 8..end]].concat());
        b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

fn fix_meta_crc(b: &mut [u8]) {
    if let Some(body) = b.len().checked_sub(4) {
        let crc = crc32(&b[..body]);
        b[body..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// CRC-32 (IEEE), bitwise: slow, but independent of the crate the queue
/// uses.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Writes `files` into `dir`, skipping names no file can have (empty, a
/// `/` or NUL, `.`, over 255 bytes) and the queue's own `quarantine` directory: a file in
/// its place is not content.
fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    fs::create_dir_all(dir).expect("scratch directory");
    for (name, content) in files.iter().take(8) {
        let refused = name.is_empty()
            || name.len() > 255
            || name.contains(['/', '\0'])
            || name == "."
            || name == ".."
            || name == "quarantine";
        let path = dir.join(name);
        if refused || path.exists() {
            continue;
        }
        fs::write(path, content).expect("write a scratch file");
    }
}

/// The unacknowledged records, by seq: (kind, payload).
type Model = BTreeMap<u64, (RecordKind, Vec<u8>)>;

fn read_all(q: &mut Queue) -> Model {
    let records = q.read(0, usize::MAX, usize::MAX).expect("read");
    let mut out = Model::new();
    let mut previous = None;
    for r in records {
        assert!(previous.is_none_or(|p| r.seq > p), "seqs ascend");
        assert!(
            r.seq < q.next_seq(),
            "seq {} not below next {}",
            r.seq,
            q.next_seq()
        );
        previous = Some(r.seq);
        out.insert(r.seq, (r.kind, r.payload));
    }
    out
}

pub fn run(data: &[u8]) {
    let Some(input) = parse(data) else {
        return;
    };
    let scratch = super::scratch();
    let dir = scratch.path().join("queue");
    let hot = scratch.path().join("hot");
    write_files(&dir, &input.dir);
    let with_hot = input.settings & SETTING_HOT != 0;
    if with_hot {
        write_files(&hot, &input.hot);
    }
    let cfg = QueueConfig {
        dir: dir.clone(),
        segment_bytes: 4096 * (1 + u64::from(input.settings >> 4)),
        max_bytes: QueueConfig::DEFAULT_MAX_BYTES,
        sync_interval: Duration::from_secs(10),
        hot_dir: with_hot.then(|| hot.clone()),
    };

    // Content never makes open fail (its documented promise).
    let (mut q, report) = match Queue::open(cfg.clone(), BOOT) {
        Ok(opened) => opened,
        Err(e) => panic!("open failed on content: {e}"),
    };
    for qd in &report.quarantined {
        let moved = dir.join("quarantine").join(&qd.segment);
        assert!(moved.exists(), "{} not in quarantine", qd.segment);
    }
    let mut model = read_all(&mut q);
    // Every record ever readable, acknowledged ones included: after a
    // crash, acks since the last sync may be forgotten (delivery is at
    // least once), so those records may come back, unchanged.
    let mut seen = model.clone();
    let _ = q.stats();

    for &op in input.ops.iter().take(32) {
        match op {
            0x00..=0x3f => {
                let seq = q.next_seq();
                if seq == u64::MAX {
                    continue;
                }
                let kind = if op & 1 == 0 {
                    RecordKind::Sample
                } else {
                    RecordKind::Event
                };
                let payload = vec![op; usize::from(op) * 37];
                let record = NewRecord {
                    seq,
                    kind,
                    ts_ms: 1,
                    payload: payload.clone(),
                };
                let dropped = q.append(&[record]).expect("append");
                assert_eq!(dropped, 0, "nothing dropped under the cap");
                model.insert(seq, (kind, payload.clone()));
                seen.insert(seq, (kind, payload));
            }
            0x40..=0x7f => {
                let back = u64::from(op & 0x3f);
                let Some(through) = q.next_seq().checked_sub(1 + back) else {
                    continue;
                };
                q.ack(through).expect("ack");
                model.retain(|&seq, _| seq > through);
            }
            _ => q.sync().expect("sync"),
        }
    }
    assert_eq!(
        read_all(&mut q),
        model,
        "records after the appends and acks"
    );
    let next = q.next_seq();
    let closed = input.settings & SETTING_CLOSE != 0;
    if closed {
        q.close().expect("close");
    } else {
        drop(q);
    }

    // A second open finds nothing left to repair, and the same records
    // (after a crash, maybe some acknowledged ones again).
    let (mut q, report) = Queue::open(cfg, BOOT).expect("reopen");
    assert_eq!(report.truncated_bytes, 0, "reopen truncated: {report:?}");
    assert!(
        report.quarantined.is_empty(),
        "reopen quarantined: {report:?}"
    );
    assert_eq!(q.next_seq(), next, "next seq after reopen");
    let back = read_all(&mut q);
    if closed {
        assert_eq!(back, model, "records after close and reopen");
    } else {
        for (seq, record) in &model {
            assert_eq!(back.get(seq), Some(record), "record {seq} after a crash");
        }
        for (seq, record) in &back {
            assert_eq!(seen.get(seq), Some(record), "record {seq} from nowhere");
        }
    }
}
