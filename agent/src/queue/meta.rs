//! The meta file: seq lease, ack cursor, counters and the boot id of the
//! process that last owned the queue.
//!
//! ```text
//! magic "PKQM" | version u16 | flags u16 (1 = clean close, 2 = has ack)
//! lease u64 | next_floor u64 | acked u64 | dropped_total u64 | quarantined_total u64
//! boot id length u16 | boot id bytes | crc32 u32 (over everything before it)
//! ```
//! It is replaced atomically (temp file, fsync, rename, fsync of the
//! directory), so a power cut leaves either the old or the new version.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

const MAGIC: [u8; 4] = *b"PKQM";
const VERSION: u16 = 1;
const FLAG_CLEAN: u16 = 1;
const FLAG_ACKED: u16 = 2;
const MAX_BOOT_ID: usize = 256;
pub(super) const META_FILE: &str = "meta";
pub(super) const META_TMP: &str = "meta.tmp";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub boot_id: String,
    /// No seq at or above the lease has ever been handed out.
    pub lease: u64,
    /// The next seq is at least this; exact when `clean`.
    pub next_floor: u64,
    /// The last owner shut down with `close()`: nothing after `next_floor`
    /// was handed out, whatever happened to the machine since.
    pub clean: bool,
    pub acked: Option<u64>,
    pub dropped_total: u64,
    pub quarantined_total: u64,
}

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let boot = self.boot_id.as_bytes();
        let boot = &boot[..boot.len().min(MAX_BOOT_ID)];
        let mut flags = 0;
        if self.clean {
            flags |= FLAG_CLEAN;
        }
        if self.acked.is_some() {
            flags |= FLAG_ACKED;
        }
        let mut v = Vec::with_capacity(56 + boot.len());
        v.extend_from_slice(&MAGIC);
        v.extend_from_slice(&VERSION.to_le_bytes());
        v.extend_from_slice(&flags.to_le_bytes());
        for n in [
            self.lease,
            self.next_floor,
            self.acked.unwrap_or(0),
            self.dropped_total,
            self.quarantined_total,
        ] {
            v.extend_from_slice(&n.to_le_bytes());
        }
        v.extend_from_slice(&(boot.len() as u16).to_le_bytes());
        v.extend_from_slice(boot);
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    /// `None` for anything that is not a complete meta file we wrote.
    pub fn decode(buf: &[u8]) -> Option<Meta> {
        let (body, crc) = buf.split_at_checked(buf.len().checked_sub(4)?)?;
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut c = Cursor(body);
        if c.take(4)? != MAGIC || c.u16()? != VERSION {
            return None;
        }
        let flags = c.u16()?;
        let lease = c.u64()?;
        let next_floor = c.u64()?;
        let acked = c.u64()?;
        let dropped_total = c.u64()?;
        let quarantined_total = c.u64()?;
        let boot_len = usize::from(c.u16()?);
        let boot_id = String::from_utf8(c.take(boot_len)?.to_vec()).ok()?;
        if !c.0.is_empty() {
            return None;
        }
        Some(Meta {
            boot_id,
            lease,
            next_floor,
            clean: flags & FLAG_CLEAN != 0,
            acked: (flags & FLAG_ACKED != 0).then_some(acked),
            dropped_total,
            quarantined_total,
        })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

pub(super) enum Loaded {
    Missing,
    Garbled,
    Ok(Meta),
}

/// Reads the meta file. Only real I/O errors (not found excepted) fail.
pub(super) fn load(dir: &Path) -> io::Result<Loaded> {
    match fs::read(dir.join(META_FILE)) {
        Ok(buf) => Ok(Meta::decode(&buf).map_or(Loaded::Garbled, Loaded::Ok)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Loaded::Missing),
        // A directory or other non-file in its place is garbage, not an outage.
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => Ok(Loaded::Garbled),
        Err(e) => Err(e),
    }
}

pub(super) fn store(dir: &Path, meta: &Meta) -> io::Result<()> {
    let tmp = dir.join(META_TMP);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&meta.encode())?;
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, dir.join(META_FILE))?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            boot_id: "0d3c0f6e-1b9a-4c1e-9a57-3c1f1d2b7e10".into(),
            lease: 20_000,
            next_floor: 12_345,
            clean: true,
            acked: Some(12_000),
            dropped_total: 7,
            quarantined_total: 2,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Meta::decode(&m.encode()), Some(m.clone()));
        let none = Meta {
            acked: None,
            clean: false,
            ..m
        };
        assert_eq!(Meta::decode(&none.encode()), Some(none));
    }

    #[test]
    fn any_damage_is_rejected_without_panic() {
        let buf = sample().encode();
        for cut in 0..buf.len() {
            assert_eq!(Meta::decode(&buf[..cut]), None);
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert_eq!(Meta::decode(&b), None, "flip at {i}");
        }
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()).unwrap(), Loaded::Missing));
        store(dir.path(), &sample()).unwrap();
        assert!(matches!(load(dir.path()).unwrap(), Loaded::Ok(m) if m == sample()));
        assert!(!dir.path().join(META_TMP).exists());
        fs::write(dir.path().join(META_FILE), b"garbage").unwrap();
        assert!(matches!(load(dir.path()).unwrap(), Loaded::Garbled));
    }
}
