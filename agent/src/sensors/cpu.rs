//! CPU busy share from the aggregate `cpu` line of `/proc/stat`.
//!
//! The counters are cumulative since boot, so a percentage needs two reads:
//! the first sample has none.

use std::path::Path;

use super::{pct, read_text};

/// Cumulative jiffies of the aggregate `cpu` line, split into busy and idle
/// fields. `guest` and `guest_nice` are left out: the kernel already counts
/// them in `user` and `nice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user, nice, system, irq, softirq, steal.
    busy: [u64; 6],
    /// idle, iowait.
    idle: [u64; 2],
}

impl CpuTimes {
    fn total(&self) -> u128 {
        self.busy
            .iter()
            .chain(&self.idle)
            .map(|&v| u128::from(v))
            .sum()
    }
}

pub fn read(root: &Path) -> Option<CpuTimes> {
    parse(&read_text(root, "/proc/stat")?)
}

/// The `cpu ` line of `/proc/stat`. Kernels before 2.6 print only four
/// fields; missing ones count as zero.
pub fn parse(text: &str) -> Option<CpuTimes> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let mut fields = [0u64; 8];
    let mut count = 0;
    for (slot, word) in fields.iter_mut().zip(line.split_whitespace().skip(1)) {
        *slot = word.parse().ok()?;
        count += 1;
    }
    if count < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    Some(CpuTimes {
        busy: [user, nice, system, irq, softirq, steal],
        idle: [idle, iowait],
    })
}

/// Turns successive [`CpuTimes`] into busy percentages.
#[derive(Debug, Default)]
pub struct CpuMeter {
    prev: Option<CpuTimes>,
}

impl CpuMeter {
    /// Busy percentage since the previous call; None on the first call and
    /// after the counters went backwards (a reset), which starts over.
    pub fn update(&mut self, now: CpuTimes) -> Option<f32> {
        let prev = self.prev.replace(now)?;
        if now.total() < prev.total() {
            return None;
        }
        // Per field and saturating: `iowait` is known to step backwards on
        // tickless kernels while the other counters keep going.
        let delta = |a: &[u64], b: &[u64]| -> u128 {
            a.iter()
                .zip(b)
                .map(|(&n, &p)| u128::from(n.saturating_sub(p)))
                .sum()
        };
        let busy = delta(&now.busy, &prev.busy);
        let idle = delta(&now.idle, &prev.idle);
        let total = busy + idle;
        if total == 0 {
            return None;
        }
        Some(pct(busy as f64, total as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n\
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n\
intr 199292 0 0\nctxt 1990473\nbtime 1062191376\n";

    #[test]
    fn parses_aggregate_line_only() {
        let t = parse(STAT).unwrap();
        assert_eq!(t.busy, [10132153, 290696, 3084719, 0, 25195, 0]);
        assert_eq!(t.idle, [46828483, 16683]);
    }

    #[test]
    fn old_kernels_with_four_fields() {
        let t = parse("cpu 1 2 3 4\n").unwrap();
        assert_eq!(t.total(), 10);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse("cpu 1 2 x 4\n"), None);
        assert_eq!(parse("cpu 1 2\n"), None);
        assert_eq!(parse("cpu -1 2 3 4\n"), None);
        assert_eq!(parse("\u{0}\u{1}cpu"), None);
    }

    #[test]
    fn percentage_from_delta() {
        let mut m = CpuMeter::default();
        assert_eq!(m.update(parse("cpu 100 0 100 800 0 0 0 0").unwrap()), None);
        // +150 busy, +50 idle -> 75 %.
        let p = m.update(parse("cpu 200 0 150 850 0 0 0 0").unwrap());
        assert_eq!(p, Some(75.0));
    }

    #[test]
    fn no_elapsed_time_is_none() {
        let mut m = CpuMeter::default();
        let t = parse("cpu 1 1 1 1").unwrap();
        m.update(t);
        assert_eq!(m.update(t), None);
    }

    #[test]
    fn reset_starts_over_without_nan_or_negative() {
        let mut m = CpuMeter::default();
        m.update(parse("cpu 1000 0 1000 8000 0").unwrap());
        assert_eq!(m.update(parse("cpu 10 0 10 80 0").unwrap()), None);
        assert_eq!(m.update(parse("cpu 20 0 10 90 0").unwrap()), Some(50.0));
    }

    #[test]
    fn backwards_iowait_stays_in_range() {
        let mut m = CpuMeter::default();
        m.update(parse("cpu 100 0 0 100 50").unwrap());
        let p = m.update(parse("cpu 150 0 0 150 40").unwrap()).unwrap();
        assert!((0.0..=100.0).contains(&p));
        assert_eq!(p, 50.0);
    }

    #[test]
    fn extreme_counters_do_not_overflow() {
        let mut m = CpuMeter::default();
        m.update(
            parse(&format!(
                "cpu {0} {0} {0} {0} {0} {0} {0} {0}",
                u64::MAX - 1
            ))
            .unwrap(),
        );
        let p = m.update(parse(&format!("cpu {0} {0} {0} {0} {0} {0} {0} {0}", u64::MAX)).unwrap());
        assert_eq!(p, Some(75.0));
    }
}
