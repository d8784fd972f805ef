//! Per-device sequence accounting: which records arrived, which are
//! duplicates, which are missing.
//!
//! Samples and events share one sequence space per device, numbered by the
//! agent from 1 and never reused. The tracker keeps the high-water mark and
//! the set of missing ranges below it, so a late record (a backlog
//! replayed out of order) fills its gap instead of being taken for a
//! duplicate, and a record seen twice is counted once. It is persisted by
//! the engine, so a collector restart neither re-counts nor forgets.

use serde::{Deserialize, Serialize};

use crate::varint;

/// What one sequence number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: store it.
    New,
    /// Already received: drop it.
    Duplicate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTracker {
    /// Highest sequence number received (0: none yet).
    pub last: u64,
    /// Records received, each counted once.
    pub received: u64,
    /// Deliveries of a record already received.
    pub duplicates: u64,
    /// Missing ranges below `last`, inclusive, ascending, disjoint.
    missing: Vec<(u64, u64)>,
}

/// A hole found in the sequence: `from..=to` did not arrive (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

/// How many missing ranges are remembered: a device that loses every
/// other record for a week must not grow the state without bound. Beyond
/// this the oldest ranges are forgotten: they no longer count as missing,
/// and a record from one of them arriving later counts as a duplicate.
const MAX_RANGES: usize = 1024;

impl SeqTracker {
    /// Account for `seq`. Returns whether it is new, and the gap it opened
    /// above the previous high-water mark, if any.
    pub fn observe(&mut self, seq: u64) -> (Seen, Option<Gap>) {
        if seq > self.last {
            let gap = (self.last > 0 || seq > 1).then(|| Gap {
                from: self.last + 1,
                to: seq - 1,
            });
            let gap = gap.filter(|g| g.from <= g.to);
            if let Some(g) = gap {
                self.missing.push((g.from, g.to));
                if self.missing.len() > MAX_RANGES {
                    self.missing.remove(0);
                }
            }
            self.last = seq;
            self.received += 1;
            return (Seen::New, gap);
        }
        // At or below the high-water mark: new only if it fills a hole.
        match self.missing.iter().position(|&(a, b)| a <= seq && seq <= b) {
            Some(i) => {
                let (a, b) = self.missing[i];
                match (seq == a, seq == b) {
                    (true, true) => {
                        self.missing.remove(i);
                    }
                    (true, false) => self.missing[i].0 = seq + 1,
                    (false, true) => self.missing[i].1 = seq - 1,
                    (false, false) => {
                        self.missing[i].1 = seq - 1;
                        self.missing.insert(i + 1, (seq + 1, b));
                    }
                }
                self.received += 1;
                (Seen::New, None)
            }
            None => {
                self.duplicates += 1;
                (Seen::Duplicate, None)
            }
        }
    }

    /// The agent declared `from..to` (half-open) never used (numbers it had
    /// reserved before a power cut): they are not missing. Returns how many
    /// numbers were counted missing and no longer are.
    pub fn skip(&mut self, from: u64, to: u64) -> u64 {
        if to <= from {
            return 0;
        }
        let before = self.missing();
        let (sa, sb) = (from, to - 1);
        let mut out = Vec::with_capacity(self.missing.len() + 1);
        for &(a, b) in &self.missing {
            if b < sa || a > sb {
                out.push((a, b));
                continue;
            }
            if a < sa {
                out.push((a, sa - 1));
            }
            if b > sb {
                out.push((sb + 1, b));
            }
        }
        self.missing = out;
        before - self.missing()
    }

    /// How many sequence numbers below the high-water mark are missing.
    pub fn missing(&self) -> u64 {
        self.missing.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn missing_ranges(&self) -> &[(u64, u64)] {
        &self.missing
    }

    /// Compact encoding for the engine's per-commit journal: varints of
    /// `last`, `received`, `duplicates`, the number of ranges, then each
    /// range as its start and length - 1.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for n in [
            self.last,
            self.received,
            self.duplicates,
            self.missing.len() as u64,
        ] {
            varint::put(out, n);
        }
        for &(a, b) in &self.missing {
            varint::put(out, a);
            varint::put(out, b - a);
        }
    }

    /// The tracker [`SeqTracker::encode`] wrote; `None` for anything else
    /// (truncated, trailing bytes, ranges out of order or over the bound).
    pub fn decode(bytes: &[u8]) -> Option<SeqTracker> {
        let mut at = 0;
        let mut next = || varint::read(bytes, &mut at).ok();
        let (last, received, duplicates, n) = (next()?, next()?, next()?, next()?);
        if n > MAX_RANGES as u64 {
            return None;
        }
        let mut missing = Vec::with_capacity(n as usize);
        let mut floor = 1;
        for _ in 0..n {
            let a = next()?;
            let b = a.checked_add(next()?)?;
            if a < floor || b >= last {
                return None;
            }
            missing.push((a, b));
            floor = b.checked_add(2)?;
        }
        (at == bytes.len()).then_some(SeqTracker {
            last,
            received,
            duplicates,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `seqs` in order; check the outcome of each and the final counts.
    #[test]
    fn table() {
        use Seen::*;
        struct Case {
            name: &'static str,
            seqs: &'static [u64],
            seen: &'static [Seen],
            // (received, duplicates, missing, ranges)
            want: (u64, u64, u64, &'static [(u64, u64)]),
        }
        let cases = [
            Case {
                name: "in order",
                seqs: &[1, 2, 3],
                seen: &[New, New, New],
                want: (3, 0, 0, &[]),
            },
            Case {
                name: "same batch twice",
                seqs: &[1, 2, 3, 1, 2, 3],
                seen: &[New, New, New, Duplicate, Duplicate, Duplicate],
                want: (3, 3, 0, &[]),
            },
            Case {
                name: "gap",
                seqs: &[1, 2, 6, 7],
                seen: &[New, New, New, New],
                want: (4, 0, 3, &[(3, 5)]),
            },
            Case {
                name: "first record is not 1",
                seqs: &[4, 5],
                seen: &[New, New],
                want: (2, 0, 3, &[(1, 3)]),
            },
            Case {
                name: "late record fills the middle of a gap",
                seqs: &[1, 6, 3, 3],
                seen: &[New, New, New, Duplicate],
                want: (3, 1, 3, &[(2, 2), (4, 5)]),
            },
            Case {
                name: "late records fill a gap from both ends",
                seqs: &[1, 5, 2, 4, 3],
                seen: &[New, New, New, New, New],
                want: (5, 0, 0, &[]),
            },
            Case {
                name: "old record below a filled range is a duplicate",
                seqs: &[1, 2, 3, 2],
                seen: &[New, New, New, Duplicate],
                want: (3, 1, 0, &[]),
            },
        ];
        for c in cases {
            let mut t = SeqTracker::default();
            let seen: Vec<Seen> = c.seqs.iter().map(|&s| t.observe(s).0).collect();
            assert_eq!(seen, c.seen, "{}", c.name);
            let (received, duplicates, missing, ranges) = c.want;
            assert_eq!(
                (t.received, t.duplicates, t.missing(), t.missing_ranges()),
                (received, duplicates, missing, ranges),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn reports_the_gap_it_opens() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(1), (Seen::New, None));
        assert_eq!(t.observe(2), (Seen::New, None));
        assert_eq!(t.observe(10), (Seen::New, Some(Gap { from: 3, to: 9 })));
        assert_eq!(t.observe(11), (Seen::New, None));
    }

    #[test]
    fn skipped_ranges_are_not_missing() {
        // (seqs observed, skip range, missing ranges left, numbers unmissed)
        type Row<'a> = (&'a [u64], (u64, u64), &'a [(u64, u64)], u64);
        let table: [Row; 4] = [
            // power cut: 3..8 reserved and never used, next record is 8
            (&[1, 2, 8], (3, 8), &[], 5),
            // skip covers part of the gap
            (&[1, 10], (5, 8), &[(2, 4), (8, 9)], 3),
            // skip across two ranges
            (&[1, 4, 9], (3, 7), &[(2, 2), (7, 8)], 3),
            // empty skip
            (&[1, 4], (3, 3), &[(2, 3)], 0),
        ];
        for (seqs, (a, b), want, unmissed) in table {
            let mut t = SeqTracker::default();
            for &s in seqs {
                t.observe(s);
            }
            assert_eq!(t.skip(a, b), unmissed, "{seqs:?} skip {a}..{b}");
            assert_eq!(t.missing_ranges(), want, "{seqs:?} skip {a}..{b}");
        }
    }

    #[test]
    fn survives_a_serde_round_trip() {
        let mut t = SeqTracker::default();
        for s in [1, 2, 5, 9, 3] {
            t.observe(s);
        }
        let json = serde_json::to_string(&t).unwrap();
        let mut back: SeqTracker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.observe(3).0, Seen::Duplicate);
        assert_eq!(back.observe(4).0, Seen::New);
    }

    #[test]
    fn compact_encoding_round_trips_and_refuses_garbage() {
        let mut trackers = vec![SeqTracker::default()];
        for seqs in [&[1u64, 2, 5, 9, 3][..], &[u64::MAX - 1], &[300, 1, 70_000]] {
            let mut t = SeqTracker::default();
            for &s in seqs {
                t.observe(s);
            }
            t.observe(5);
            trackers.push(t);
        }
        for t in trackers {
            let mut bytes = Vec::new();
            t.encode(&mut bytes);
            assert_eq!(
                SeqTracker::decode(&bytes).as_ref(),
                Some(&t),
                "{bytes:02x?}"
            );
            // Any strict prefix and any extra byte are refused.
            for cut in 0..bytes.len() {
                assert_eq!(SeqTracker::decode(&bytes[..cut]), None, "cut at {cut}");
            }
            bytes.push(0);
            assert_eq!(SeqTracker::decode(&bytes), None);
        }
        // Ranges out of order, overlapping, touching or above `last`.
        for bad in [
            &[10u8, 5, 0, 2, 5, 0, 2, 0][..],
            &[10, 5, 0, 2, 2, 2, 3, 0],
            &[10, 5, 0, 2, 2, 1, 4, 0],
            &[10, 5, 0, 1, 9, 1],
            &[10, 5, 0, 1, 0, 0],
        ] {
            assert_eq!(SeqTracker::decode(bad), None, "{bad:?}");
        }
        // A varint longer than 64 bits.
        assert_eq!(SeqTracker::decode(&[0xff; 11]), None);
    }

    #[test]
    fn bounded_ranges() {
        let mut t = SeqTracker::default();
        for i in 0..(MAX_RANGES as u64 + 10) {
            t.observe(i * 2 + 1);
        }
        assert_eq!(t.missing_ranges().len(), MAX_RANGES);
    }
}
