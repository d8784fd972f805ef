//! Per-device sequence accounting: which records arrived, which are
//! duplicates, which are missing.
//!
//! Samples and events share one sequence space per device, numbered by the
//! agent from 0 and never reused. The tracker keeps the high-water mark and
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
#[serde(try_from = "Unchecked")]
pub struct SeqTracker {
    /// Highest sequence number received; meaningful once `received > 0`
    /// (0 is a sequence number like any other: a fresh agent's first).
    pub last: u64,
    /// Records received, each counted once.
    pub received: u64,
    /// Deliveries of a record already received.
    pub duplicates: u64,
    /// Missing ranges below `last`, inclusive, ascending, disjoint.
    missing: Vec<(u64, u64)>,
}

/// The serde form of a [`SeqTracker`], checked on the way in: a device's
/// state row comes back from the database, and `observe` and `missing`
/// rely on the ranges' order (a reversed one overflowed `missing`).
#[derive(Deserialize)]
struct Unchecked {
    last: u64,
    received: u64,
    duplicates: u64,
    missing: Vec<(u64, u64)>,
}

impl TryFrom<Unchecked> for SeqTracker {
    type Error = &'static str;

    fn try_from(u: Unchecked) -> Result<Self, Self::Error> {
        let t = SeqTracker {
            last: u.last,
            received: u.received,
            duplicates: u.duplicates,
            missing: u.missing,
        };
        t.check().map(|()| t)
    }
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
    /// above the previous high-water mark, if any. Numbers below a
    /// device's first record are missing like any other: the agent counts
    /// from 0, so they were taken and have not arrived (yet).
    pub fn observe(&mut self, seq: u64) -> (Seen, Option<Gap>) {
        let above = match self.received {
            0 => Some(0),
            _ if seq > self.last => Some(self.last + 1),
            _ => None,
        };
        if let Some(from) = above {
            let gap = (from < seq).then(|| Gap { from, to: seq - 1 });
            if let Some(g) = gap {
                self.missing.push((g.from, g.to));
                if self.missing.len() > MAX_RANGES {
                    self.missing.remove(0);
                }
            }
            self.last = seq;
            // Saturating, here and below: the counts come back from the
            // database, where a damaged journal value may hold u64::MAX.
            self.received = self.received.saturating_add(1);
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
                self.received = self.received.saturating_add(1);
                (Seen::New, None)
            }
            None => {
                self.duplicates = self.duplicates.saturating_add(1);
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
        for _ in 0..n {
            let a = next()?;
            missing.push((a, a.checked_add(next()?)?));
        }
        let t = SeqTracker {
            last,
            received,
            duplicates,
            missing,
        };
        (at == bytes.len() && t.check().is_ok()).then_some(t)
    }

    /// What `observe` keeps true: nothing missing before a record arrived;
    /// at most [`MAX_RANGES`] ranges, ascending, disjoint, not adjacent and
    /// below `last`.
    fn check(&self) -> Result<(), &'static str> {
        if self.received == 0 && (self.last != 0 || !self.missing.is_empty()) {
            return Err("nothing received, yet a high-water mark or missing ranges");
        }
        if self.missing.len() > MAX_RANGES {
            return Err("more missing ranges than are kept");
        }
        let mut floor = 0u64;
        for &(a, b) in &self.missing {
            if a < floor || b < a || b >= self.last {
                return Err("missing ranges out of order or not below the last seq");
            }
            // Saturating: a range may end at u64::MAX - 1, below a last
            // of u64::MAX, and nothing can follow it.
            floor = b.saturating_add(2);
        }
        Ok(())
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
                name: "in order from a fresh agent's 0",
                seqs: &[0, 1, 2],
                seen: &[New, New, New],
                want: (3, 0, 0, &[]),
            },
            Case {
                name: "the first record alone",
                seqs: &[0],
                seen: &[New],
                want: (1, 0, 0, &[]),
            },
            Case {
                name: "the first record twice",
                seqs: &[0, 0],
                seen: &[New, Duplicate],
                want: (1, 1, 0, &[]),
            },
            Case {
                name: "same batch twice",
                seqs: &[0, 1, 2, 0, 1, 2],
                seen: &[New, New, New, Duplicate, Duplicate, Duplicate],
                want: (3, 3, 0, &[]),
            },
            Case {
                name: "gap",
                seqs: &[0, 1, 5, 6],
                seen: &[New, New, New, New],
                want: (4, 0, 3, &[(2, 4)]),
            },
            Case {
                name: "first record is not 0",
                seqs: &[4, 5],
                seen: &[New, New],
                want: (2, 0, 4, &[(0, 3)]),
            },
            Case {
                name: "0 arrives after a later record",
                seqs: &[3, 0, 0],
                seen: &[New, New, Duplicate],
                want: (2, 1, 2, &[(1, 2)]),
            },
            Case {
                name: "late record fills the middle of a gap",
                seqs: &[0, 5, 2, 2],
                seen: &[New, New, New, Duplicate],
                want: (3, 1, 3, &[(1, 1), (3, 4)]),
            },
            Case {
                name: "late records fill a gap from both ends",
                seqs: &[0, 4, 1, 3, 2],
                seen: &[New, New, New, New, New],
                want: (5, 0, 0, &[]),
            },
            Case {
                name: "old record below a filled range is a duplicate",
                seqs: &[0, 1, 2, 1],
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
        assert_eq!(t.observe(0), (Seen::New, None));
        assert_eq!(t.observe(1), (Seen::New, None));
        assert_eq!(t.observe(10), (Seen::New, Some(Gap { from: 2, to: 9 })));
        assert_eq!(t.observe(11), (Seen::New, None));
        let mut late = SeqTracker::default();
        assert_eq!(late.observe(3), (Seen::New, Some(Gap { from: 0, to: 2 })));
    }

    #[test]
    fn skipped_ranges_are_not_missing() {
        // (seqs observed, skip range, missing ranges left, numbers unmissed)
        type Row<'a> = (&'a [u64], (u64, u64), &'a [(u64, u64)], u64);
        let table: [Row; 4] = [
            // power cut: 3..8 reserved and never used, next record is 8
            (&[0, 1, 2, 8], (3, 8), &[], 5),
            // skip covers part of the gap
            (&[0, 1, 10], (5, 8), &[(2, 4), (8, 9)], 3),
            // skip across two ranges
            (&[0, 1, 4, 9], (3, 7), &[(2, 2), (7, 8)], 3),
            // empty skip
            (&[0, 1, 4], (3, 3), &[(2, 3)], 0),
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
        for s in [0, 1, 2, 5, 9, 3] {
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
        for seqs in [
            &[0u64, 1, 2, 5, 9, 3][..],
            &[u64::MAX - 1],
            &[300, 0, 70_000],
        ] {
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
            // Nothing received, yet a high-water mark or a missing range.
            &[10, 0, 0, 0],
            &[0, 0, 0, 1, 0, 0],
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
            t.observe(i * 2);
        }
        assert_eq!(t.missing_ranges().len(), MAX_RANGES);
    }

    /// The tracker against the simplest model of the same promise: the
    /// set of numbers received, and the numbers declared never used. Any
    /// order, duplicates, restarts (the compact encoding round trip the
    /// engine journals), declared skips; below `MAX_RANGES` ranges the
    /// tracker forgets nothing, so it must agree exactly.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        #[derive(Debug, Clone)]
        enum Op {
            Observe(u64),
            Restart,
            Skip(u64, u64),
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            // Seqs from a small range (duplicates and late records are
            // frequent) shifted by a large base (no wrap at u64::MAX: the
            // store refuses seqs above i64::MAX before they get here).
            let base = prop_oneof![Just(0u64), 0..1_000_000u64, Just(i64::MAX as u64 - 200)];
            let op = prop_oneof![
                8 => (0..120u64).prop_map(Op::Observe),
                1 => Just(Op::Restart),
                1 => (0..120u64, 0..10u64).prop_map(|(a, n)| Op::Skip(a, a + n)),
            ];
            (base, proptest::collection::vec(op, 0..300)).prop_map(|(base, ops)| {
                ops.into_iter()
                    .map(|op| match op {
                        Op::Observe(s) => Op::Observe(base + s),
                        Op::Skip(a, b) => Op::Skip(base + a, base + b),
                        Op::Restart => Op::Restart,
                    })
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn agrees_with_the_set_of_received_numbers(ops in ops()) {
                let mut t = SeqTracker::default();
                let mut got = BTreeSet::new();
                // Declared never used: only numbers below the high-water
                // mark (the agent declares them in a record above them),
                // and never arriving afterwards.
                let mut skipped = BTreeSet::new();
                let mut duplicates = 0u64;
                for op in ops {
                    match op {
                        Op::Observe(s) if skipped.contains(&s) => {}
                        Op::Observe(s) => {
                            let want = if got.insert(s) {
                                Seen::New
                            } else {
                                duplicates += 1;
                                Seen::Duplicate
                            };
                            prop_assert_eq!(t.observe(s).0, want, "seq {}", s);
                        }
                        Op::Restart => {
                            let mut bytes = Vec::new();
                            t.encode(&mut bytes);
                            t = SeqTracker::decode(&bytes).expect("own encoding");
                        }
                        Op::Skip(a, b) => {
                            let Some(&last) = got.last() else { continue };
                            let b = b.min(last);
                            t.skip(a, b);
                            skipped.extend((a..b).filter(|n| !got.contains(n)));
                        }
                    }
                }
                prop_assert_eq!(t.received, got.len() as u64);
                prop_assert_eq!(t.duplicates, duplicates);
                // Every number from 0 to the highest received that neither
                // arrived nor was declared unused.
                let missing = got
                    .last()
                    .map_or(0, |&last| last + 1 - got.len() as u64 - skipped.len() as u64);
                prop_assert_eq!(t.missing(), missing);
            }
        }
    }

    /// Found by the `seq_tracker` fuzz target: a journal value whose
    /// counts are at their limit decodes, and an arrival must not overflow
    /// them.
    #[test]
    fn counts_at_their_limit_saturate() {
        let bytes = [
            0x44, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0xef, 0xfb, 0x00,
            0x00,
        ];
        let mut t = SeqTracker::decode(&bytes).expect("decodes");
        assert_eq!((t.last, t.received), (0x44, u64::MAX));
        assert_eq!(t.observe(0x45), (Seen::New, None));
        assert_eq!(t.received, u64::MAX);
        t.duplicates = u64::MAX;
        assert_eq!(t.observe(0x45), (Seen::Duplicate, None));
        assert_eq!(t.duplicates, u64::MAX);
    }

    /// A state row's tracker is checked like a journal value, so a
    /// reversed range cannot overflow `missing`.
    #[test]
    fn stored_state_is_checked() {
        let ok = r#"{"last":9,"received":5,"duplicates":0,"missing":[[2,3],[5,7]]}"#;
        assert!(serde_json::from_str::<SeqTracker>(ok).is_ok());
        for bad in [
            r#"{"last":9,"received":5,"duplicates":0,"missing":[[4,2]]}"#,
            r#"{"last":9,"received":5,"duplicates":0,"missing":[[5,7],[2,3]]}"#,
            r#"{"last":9,"received":5,"duplicates":0,"missing":[[2,3],[4,5]]}"#,
            r#"{"last":9,"received":5,"duplicates":0,"missing":[[2,9]]}"#,
            r#"{"last":9,"received":0,"duplicates":0,"missing":[]}"#,
        ] {
            assert!(serde_json::from_str::<SeqTracker>(bad).is_err(), "{bad}");
        }
    }

    /// A hole right below `u64::MAX` encodes and decodes like any other.
    #[test]
    fn a_hole_below_the_last_seq_round_trips() {
        let mut t = SeqTracker::default();
        t.observe(u64::MAX - 3);
        t.observe(u64::MAX);
        assert_eq!(
            t.missing_ranges(),
            &[(0, u64::MAX - 4), (u64::MAX - 2, u64::MAX - 1)]
        );
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        assert_eq!(SeqTracker::decode(&bytes), Some(t));
    }
}
