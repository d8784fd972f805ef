//! Segment file format: encoding, decoding and the recovery scan.
//!
//! ```text
//! header (20 B): magic "PKQS" | version u16 | reserved u16 | base seq u64 | crc32 u32
//! frame:         len u32 | crc32 u32 | seq u64 | ts_ms u64 | kind u8 | payload (len bytes)
//! ```
//! All integers are little-endian. A frame's CRC covers `len` and everything
//! after the CRC field, so a torn or bit-flipped frame is caught whichever
//! part of it was hit. The first frame of a segment carries the header's base
//! seq and each further frame the previous seq + 1: a segment is written by
//! one process lifetime only, which keeps the in-memory index free of seqs.

use std::fs::File;
use std::io::{self, BufReader, Read};

use super::{Record, RecordKind};

const MAGIC: [u8; 4] = *b"PKQS";
const VERSION: u16 = 1;
pub(super) const HEADER_LEN: u64 = 20;
pub(super) const FRAME_HEADER_LEN: usize = 25;
/// Larger payloads are refused on append, and a frame claiming more is
/// corruption: this bounds what a garbled length field can make us allocate.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Where one record sits in its segment. The seq is implied by the position
/// in the index; `ts_ms` is kept so `stats()` needs no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub offset: u32,
    pub ts_ms: u64,
}

/// Zero-padded so that lexical order of file names is seq order.
pub(super) fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn encode_header(base: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The base seq, or `None` when the header is not one we wrote.
fn decode_header(buf: &[u8; HEADER_LEN as usize]) -> Option<u64> {
    let crc = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    if buf[0..4] != MAGIC || crc32fast::hash(&buf[..16]) != crc {
        return None;
    }
    if u16::from_le_bytes(buf[4..6].try_into().ok()?) != VERSION {
        return None;
    }
    Some(u64::from_le_bytes(buf[8..16].try_into().ok()?))
}

pub(super) fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

pub(super) fn encode_frame(
    seq: u64,
    kind: RecordKind,
    ts_ms: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut rest = [0u8; FRAME_HEADER_LEN - 8];
    rest[0..8].copy_from_slice(&seq.to_le_bytes());
    rest[8..16].copy_from_slice(&ts_ms.to_le_bytes());
    rest[16] = kind as u8;
    let crc = frame_crc(&len, &rest, payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&rest);
    out.extend_from_slice(payload);
}

fn frame_crc(len: &[u8], rest: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(rest);
    h.update(payload);
    h.finalize()
}

struct FrameHeader {
    len: usize,
    crc: u32,
    seq: u64,
    ts_ms: u64,
    kind: u8,
}

fn parse_frame_header(buf: &[u8]) -> Option<FrameHeader> {
    Some(FrameHeader {
        len: u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize,
        crc: u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?),
        seq: u64::from_le_bytes(buf.get(8..16)?.try_into().ok()?),
        ts_ms: u64::from_le_bytes(buf.get(16..24)?.try_into().ok()?),
        kind: *buf.get(24)?,
    })
}

/// Decodes one whole frame read back from a segment whose index says it
/// spans exactly `buf`. `None` if the bytes changed on disk since the scan.
pub(super) fn decode_frame(buf: &[u8]) -> Option<Record> {
    let h = parse_frame_header(buf)?;
    let payload = buf.get(FRAME_HEADER_LEN..)?;
    if payload.len() != h.len || frame_crc(&buf[0..4], &buf[8..FRAME_HEADER_LEN], payload) != h.crc
    {
        return None;
    }
    Some(Record {
        seq: h.seq,
        kind: RecordKind::from_u8(h.kind)?,
        ts_ms: h.ts_ms,
        payload: payload.to_vec(),
    })
}

/// What the recovery scan concluded about a segment file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every byte belongs to a valid frame.
    Clean,
    /// The file ends in an incomplete or damaged last frame, or in zeros:
    /// what an interrupted append leaves. Cut it at `valid_len`.
    TornTail,
    /// Damage with valid-looking data after it: not an interrupted append,
    /// so the file is set aside rather than silently shortened.
    Corrupt(&'static str),
    /// A fully acknowledged segment renamed to the next seq but not yet
    /// emptied (see `Queue::ack`): every record in it was acknowledged, so
    /// it is emptied and kept as the empty segment its name describes.
    Recycled,
}

#[derive(Debug)]
pub(super) struct Scan {
    pub entries: Vec<Entry>,
    pub valid_len: u64,
    pub file_len: u64,
    pub verdict: Verdict,
}

/// Reads a segment front to back. Never panics on content; I/O errors while
/// reading are returned (the caller sets such a file aside).
pub(super) fn scan(file: &File, base: u64) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut s = Scan {
        entries: Vec::new(),
        valid_len: 0,
        file_len,
        verdict: Verdict::Clean,
    };
    if file_len == 0 {
        return Ok(s);
    }
    if file_len < HEADER_LEN {
        // The header and first frame go down in one write: a short file is a
        // torn first append.
        s.verdict = Verdict::TornTail;
        return Ok(s);
    }
    if let Some(verdict) = read_header(&mut r, base)? {
        s.verdict = verdict;
        return Ok(s);
    }
    s.valid_len = HEADER_LEN;
    if let Some(verdict) = read_frames(&mut r, base, &mut s)? {
        s.verdict = verdict;
    }
    Ok(s)
}

/// Checks the segment header against the file name's `base`: `None` when
/// the frames after it are to be read, else the verdict on the file.
fn read_header(r: &mut impl Read, base: u64) -> io::Result<Option<Verdict>> {
    let mut hdr = [0u8; HEADER_LEN as usize];
    r.read_exact(&mut hdr)?;
    Ok(match decode_header(&hdr) {
        Some(b) if b == base => None,
        Some(b) if b < base => Some(Verdict::Recycled),
        Some(_) => Some(Verdict::Corrupt(
            "header base seq differs from the file name",
        )),
        None => Some(if hdr.iter().all(|&b| b == 0) && rest_is_zero(r)? {
            Verdict::TornTail
        } else {
            Verdict::Corrupt("bad segment header")
        }),
    })
}

/// Reads the frames after the header into `s.entries`, moving
/// `s.valid_len` past each good one; returns why it stopped before the end
/// of the file, if it did.
fn read_frames(r: &mut impl Read, base: u64, s: &mut Scan) -> io::Result<Option<Verdict>> {
    let file_len = s.file_len;
    let mut pos = HEADER_LEN;
    let mut expected_seq = base;
    let mut fh = [0u8; FRAME_HEADER_LEN];
    let mut payload = Vec::new();
    while pos < file_len {
        let remaining = file_len - pos;
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(Some(Verdict::TornTail));
        }
        r.read_exact(&mut fh)?;
        let Some(h) = parse_frame_header(&fh) else {
            return Ok(Some(Verdict::Corrupt("unreadable frame header")));
        };
        if h.len as u64 > remaining - FRAME_HEADER_LEN as u64 {
            return Ok(Some(Verdict::TornTail));
        }
        if h.len > MAX_PAYLOAD {
            return Ok(Some(Verdict::Corrupt("frame length over the limit")));
        }
        payload.resize(h.len, 0);
        r.read_exact(&mut payload)?;
        let end = pos + (FRAME_HEADER_LEN + h.len) as u64;
        if frame_crc(&fh[0..4], &fh[8..], &payload) != h.crc {
            return Ok(Some(if end == file_len || rest_is_zero(r)? {
                Verdict::TornTail
            } else {
                Verdict::Corrupt("bad CRC followed by more data")
            }));
        }
        if RecordKind::from_u8(h.kind).is_none() {
            return Ok(Some(Verdict::Corrupt("unknown record kind")));
        }
        if h.seq != expected_seq {
            return Ok(Some(Verdict::Corrupt("seq out of order")));
        }
        let Ok(offset) = u32::try_from(pos) else {
            return Ok(Some(Verdict::Corrupt("segment larger than 4 GiB")));
        };
        s.entries.push(Entry {
            offset,
            ts_ms: h.ts_ms,
        });
        pos = end;
        s.valid_len = pos;
        let Some(next) = expected_seq.checked_add(1) else {
            return Ok(Some(Verdict::Corrupt("seq space exhausted")));
        };
        expected_seq = next;
    }
    Ok(None)
}

fn rest_is_zero(r: &mut impl Read) -> io::Result<bool> {
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let file = f.reopen().unwrap();
        (f, file)
    }

    fn segment(base: u64, n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        encode_header(base, &mut v);
        for seq in base..base + n {
            encode_frame(seq, RecordKind::Sample, seq * 10, &[seq as u8; 7], &mut v);
        }
        v
    }

    #[test]
    fn names_sort_by_seq_and_parse_back() {
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("12.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000001x.seg"), None);
    }

    #[test]
    fn frame_round_trip_and_bit_flip() {
        let mut v = Vec::new();
        encode_frame(5, RecordKind::Event, 77, b"hello", &mut v);
        let r = decode_frame(&v).unwrap();
        assert_eq!(
            (r.seq, r.kind, r.ts_ms, r.payload.as_slice()),
            (5, RecordKind::Event, 77, &b"hello"[..])
        );
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 0x10;
            assert!(decode_frame(&w).is_none(), "flip at {i} undetected");
        }
    }

    #[test]
    fn clean_segment_scans_whole() {
        let bytes = segment(3, 4);
        let (_t, f) = file_with(&bytes);
        let s = scan(&f, 3).unwrap();
        assert_eq!(s.verdict, Verdict::Clean);
        assert_eq!(s.entries.len(), 4);
        assert_eq!(s.valid_len, bytes.len() as u64);
    }

    #[test]
    fn every_truncation_point_is_a_torn_tail() {
        let bytes = segment(1, 3);
        for cut in 0..bytes.len() {
            let (_t, f) = file_with(&bytes[..cut]);
            let s = scan(&f, 1).unwrap();
            assert!(
                matches!(s.verdict, Verdict::TornTail | Verdict::Clean),
                "cut {cut}: {:?}",
                s.verdict
            );
            assert!(s.valid_len <= cut as u64);
        }
    }

    #[test]
    fn trailing_zeros_and_bad_last_crc_are_torn() {
        let mut bytes = segment(1, 2);
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 300]);
        let (_t, f) = file_with(&bytes);
        let s = scan(&f, 1).unwrap();
        assert_eq!(
            (s.verdict, s.valid_len, s.entries.len()),
            (Verdict::TornTail, good, 2)
        );

        let mut bytes = segment(1, 3);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let (_t, f) = file_with(&bytes);
        let s = scan(&f, 1).unwrap();
        assert_eq!((s.verdict, s.entries.len()), (Verdict::TornTail, 2));
    }

    #[test]
    fn damage_in_the_middle_is_corrupt() {
        let mut bytes = segment(1, 3);
        bytes[HEADER_LEN as usize + FRAME_HEADER_LEN + 2] ^= 1;
        let (_t, f) = file_with(&bytes);
        assert!(matches!(scan(&f, 1).unwrap().verdict, Verdict::Corrupt(_)));

        let (_t, f) = file_with(&segment(1, 3));
        assert!(
            matches!(scan(&f, 0).unwrap().verdict, Verdict::Corrupt(_)),
            "header seq above the name"
        );
        // Below the name: a recycled segment caught between rename and
        // truncation, not damage.
        let (_t, f) = file_with(&segment(1, 3));
        assert_eq!(scan(&f, 4).unwrap().verdict, Verdict::Recycled);

        let mut bytes = segment(1, 1);
        encode_frame(1, RecordKind::Sample, 0, b"x", &mut bytes);
        let (_t, f) = file_with(&bytes);
        assert!(
            matches!(scan(&f, 1).unwrap().verdict, Verdict::Corrupt(_)),
            "seq repeated"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u64;
        for len in [1usize, 19, 20, 21, 64, 4096] {
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            let (_t, f) = file_with(&bytes);
            let _ = scan(&f, 0).unwrap();
            // A valid header followed by garbage.
            let mut v = Vec::new();
            encode_header(0, &mut v);
            v.append(&mut bytes);
            let (_t, f) = file_with(&v);
            let _ = scan(&f, 0).unwrap();
        }
    }
}
