//! The journal of command ids this device accepted, so a command runs at
//! most once: a redelivery (QoS 1 may deliver twice), a replay by someone
//! on the broker, or the same envelope after a crash is refused as
//! duplicate.
//!
//! One text file, `{state_dir}/journal`, a line per command:
//! `{issued} {expires} {id}`. A line is appended and fdatasynced *before*
//! the command is acknowledged as accepted, so after SIGKILL or a power cut
//! an accepted command is still known. A torn last line (a crash mid-write)
//! is ignored on open: its command was never reported accepted.
//!
//! Bounded: an id is only needed until its command expires (it is refused
//! as expired after that), so expired lines are dropped when the file is
//! rewritten (atomically: temp file, fsync, rename). Should the journal
//! hold `max` unexpired ids, new commands are refused as busy rather than
//! forgetting one that could then run twice.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("command journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the command journal holds {0} unexpired ids: try again when older commands expire")]
    Full(usize),
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// id → expires.
    ids: HashMap<String, u64>,
    /// Lines in the file (live or not), to know when to rewrite it.
    lines: usize,
    /// The latest `issued` of an accepted command (see `admit::Context`).
    floor: u64,
    max: usize,
}

impl Journal {
    /// Open (creating `dir` and the file as needed), dropping ids that
    /// expired before `now`.
    pub fn open(dir: &Path, max: usize, now: u64) -> Result<Journal, JournalError> {
        let path = dir.join("journal");
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let keep = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |end| end + 1);
        let text = String::from_utf8_lossy(&bytes[..keep]);
        let mut ids = HashMap::new();
        let mut floor = 0;
        // Only complete lines count: a torn tail was never acknowledged.
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(issued), Some(expires), Some(id)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(issued), Ok(expires)) = (issued.parse::<u64>(), expires.parse::<u64>()) else {
                continue;
            };
            floor = floor.max(issued);
            ids.insert(id.to_string(), expires);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        if keep < bytes.len() {
            // Cut the torn tail, or the next line would be glued to it.
            file.set_len(keep as u64)
                .and_then(|()| file.sync_data())
                .map_err(io)?;
        }
        let mut journal = Journal {
            path,
            file,
            lines: ids.len(),
            ids,
            floor,
            max,
        };
        journal.compact(now)?;
        Ok(journal)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Record an accepted command; on disk when this returns.
    pub fn record(
        &mut self,
        id: &str,
        issued: u64,
        expires: u64,
        now: u64,
    ) -> Result<(), JournalError> {
        if self.ids.len() >= self.max {
            self.compact(now)?;
            if self.ids.len() >= self.max {
                return Err(JournalError::Full(self.ids.len()));
            }
        }
        let line = format!("{issued} {expires} {id}\n");
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.ids.insert(id.to_string(), expires);
        self.floor = self.floor.max(issued);
        self.lines += 1;
        if self.lines > 2 * self.max {
            self.compact(now)?;
        }
        Ok(())
    }

    /// Rewrite the file with the unexpired ids and the floor.
    fn compact(&mut self, now: u64) -> Result<(), JournalError> {
        let before = self.ids.len();
        self.ids.retain(|_, expires| *expires > now);
        if self.ids.len() == before && self.lines == before {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::new();
        // The floor survives compaction as a line of an id that cannot be
        // a command id (ids are one topic level, never empty).
        text.push_str(&format!("{} 0 -\n", self.floor));
        for (id, expires) in &self.ids {
            text.push_str(&format!("{} {expires} {id}\n", self.floor));
        }
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.lines = self.ids.len() + 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 100, 0).unwrap();
        j.record("a", 10, 1_000, 0).unwrap();
        j.record("b", 20, 2_000, 0).unwrap();
        drop(j);
        let j = Journal::open(dir.path(), 100, 500).unwrap();
        assert!(j.contains("a") && j.contains("b") && !j.contains("c"));
        assert_eq!(j.floor(), 20);
    }

    #[test]
    fn expired_ids_are_dropped_and_the_floor_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 100, 0).unwrap();
        j.record("a", 10, 1_000, 0).unwrap();
        j.record("b", 900, 5_000, 0).unwrap();
        drop(j);
        let j = Journal::open(dir.path(), 100, 1_000).unwrap();
        assert!(!j.contains("a") && j.contains("b"));
        assert_eq!(j.floor(), 900);
        drop(j);
        let j = Journal::open(dir.path(), 100, 6_000).unwrap();
        assert!(j.is_empty());
        assert_eq!(j.floor(), 900, "the floor outlives every id");
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 100, 0).unwrap();
        j.record("a", 10, 1_000, 0).unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal"))
            .unwrap();
        f.write_all(b"20 2000 b").unwrap();
        let mut j = Journal::open(dir.path(), 100, 0).unwrap();
        assert!(j.contains("a") && !j.contains("b"));
        j.record("c", 30, 3_000, 0).unwrap();
        drop(j);
        let j = Journal::open(dir.path(), 100, 0).unwrap();
        assert!(j.contains("a") && j.contains("c") && !j.contains("b"));
    }

    #[test]
    fn bounded_and_refuses_rather_than_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 16, 0).unwrap();
        for i in 0..16 {
            j.record(&format!("x{i}"), 1, 1_000, 0).unwrap();
        }
        assert!(matches!(
            j.record("y", 1, 1_000, 0),
            Err(JournalError::Full(16))
        ));
        // Once they expired there is room again, and the file shrank.
        j.record("y", 1, 5_000, 2_000).unwrap();
        assert_eq!(j.len(), 1);
        for i in 0..40 {
            j.record(&format!("z{i}"), 1, 1_000 + i, 1_000 + i).unwrap();
        }
        let lines = fs::read_to_string(dir.path().join("journal"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * 16 + 1, "{lines} lines");
    }
}
