//! Averaging raw points into fixed time steps, for charts over long ranges.

use super::rows::HistoryPoint;
use crate::model::Millis;

/// Folds raw points, in ascending time order, into buckets of `step`
/// milliseconds aligned to `from`: the bucket of `ts` starts at
/// `from + (ts - from) / step * step`. Empty buckets produce nothing (a
/// gap in the data stays a gap in the chart).
#[derive(Debug)]
pub(super) struct Buckets {
    from: Millis,
    step: Millis,
    limit: usize,
    done: Vec<HistoryPoint>,
    open: Option<Acc>,
}

#[derive(Debug)]
struct Acc {
    start: Millis,
    sum: f64,
    min: f64,
    max: f64,
    count: u32,
}

impl Acc {
    fn close(&self) -> HistoryPoint {
        HistoryPoint {
            ts: self.start,
            value: self.sum / f64::from(self.count),
            min: self.min,
            max: self.max,
            count: self.count,
        }
    }
}

impl Buckets {
    /// `step` must be positive; at most `limit` buckets are produced.
    pub(super) fn new(from: Millis, step: Millis, limit: usize) -> Self {
        debug_assert!(step > 0);
        Buckets {
            from,
            step,
            limit,
            done: Vec::new(),
            open: None,
        }
    }

    /// Add a point; false once `limit` buckets are complete, so the caller
    /// can stop reading. Points before `from` are ignored.
    pub(super) fn push(&mut self, ts: Millis, value: f64) -> bool {
        if ts < self.from {
            return true;
        }
        let start = self.from + (ts - self.from) / self.step * self.step;
        match &mut self.open {
            Some(acc) if acc.start == start => {
                acc.sum += value;
                acc.min = acc.min.min(value);
                acc.max = acc.max.max(value);
                acc.count = acc.count.saturating_add(1);
            }
            open => {
                if let Some(acc) = open.take() {
                    self.done.push(acc.close());
                }
                if self.done.len() >= self.limit {
                    return false;
                }
                *open = Some(Acc {
                    start,
                    sum: value,
                    min: value,
                    max: value,
                    count: 1,
                });
            }
        }
        true
    }

    pub(super) fn finish(mut self) -> Vec<HistoryPoint> {
        if let Some(acc) = self.open.take()
            && self.done.len() < self.limit
        {
            self.done.push(acc.close());
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(ts: Millis, value: f64, min: f64, max: f64, count: u32) -> HistoryPoint {
        HistoryPoint {
            ts,
            value,
            min,
            max,
            count,
        }
    }

    #[test]
    fn buckets() {
        // (from, step, limit, points, expected)
        type Case = (Millis, Millis, usize, Vec<(Millis, f64)>, Vec<HistoryPoint>);
        let table: Vec<Case> = vec![
            (0, 10, 100, vec![], vec![]),
            (
                0,
                10,
                100,
                vec![(0, 1.0), (5, 3.0), (9, 2.0)],
                vec![hp(0, 2.0, 1.0, 3.0, 3)],
            ),
            // Aligned to `from`, not to multiples of the step.
            (
                103,
                10,
                100,
                vec![(103, 1.0), (112, 2.0), (113, 4.0), (130, 6.0)],
                vec![
                    hp(103, 1.5, 1.0, 2.0, 2),
                    hp(113, 4.0, 4.0, 4.0, 1),
                    hp(123, 6.0, 6.0, 6.0, 1),
                ],
            ),
            // A gap produces no bucket.
            (
                0,
                10,
                100,
                vec![(1, 1.0), (45, 5.0)],
                vec![hp(0, 1.0, 1.0, 1.0, 1), hp(40, 5.0, 5.0, 5.0, 1)],
            ),
            // The limit counts buckets, not points.
            (
                0,
                10,
                2,
                vec![(1, 1.0), (2, 3.0), (11, 5.0), (21, 7.0), (31, 9.0)],
                vec![hp(0, 2.0, 1.0, 3.0, 2), hp(10, 5.0, 5.0, 5.0, 1)],
            ),
            (0, 10, 0, vec![(1, 1.0)], vec![]),
            // Points before `from` are not counted.
            (
                100,
                10,
                10,
                vec![(99, 50.0), (100, 1.0)],
                vec![hp(100, 1.0, 1.0, 1.0, 1)],
            ),
            // Negative values: min and max are real extremes.
            (
                0,
                60_000,
                10,
                vec![(0, -4.0), (30_000, 2.0), (59_999, -1.0)],
                vec![hp(0, -1.0, -4.0, 2.0, 3)],
            ),
        ];
        for (from, step, limit, points, want) in table {
            let mut b = Buckets::new(from, step, limit);
            for (ts, v) in &points {
                if !b.push(*ts, *v) {
                    break;
                }
            }
            assert_eq!(b.finish(), want, "from {from} step {step} {points:?}");
        }
    }

    #[test]
    fn push_says_when_to_stop() {
        let mut b = Buckets::new(0, 10, 1);
        assert!(b.push(1, 1.0));
        assert!(b.push(2, 1.0));
        assert!(!b.push(11, 1.0));
    }
}
