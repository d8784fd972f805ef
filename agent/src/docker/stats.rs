//! CPU and memory figures from the engine's stats counters, computed as
//! `docker stats` computes them.

/// Cumulative CPU counters of one container at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuCounters {
    /// The container's CPU time, nanoseconds.
    pub total: u64,
    /// The host's CPU time, nanoseconds (all CPUs), when the engine gives it.
    pub system: Option<u64>,
    /// CPUs online (`online_cpus`, else the length of `percpu_usage`).
    pub cpus: u32,
}

/// Busy share between two readings, in % of one CPU, scaled by the number
/// of CPUs (a container using two of four CPUs fully is at 200 %), as
/// `docker stats` shows. `None` when the counters cannot give one: no
/// system time, no time passed, or counters that went backwards (the
/// container restarted in between).
pub fn cpu_percent(prev: CpuCounters, cur: CpuCounters) -> Option<f32> {
    let system = cur.system?.checked_sub(prev.system?)?;
    let busy = cur.total.checked_sub(prev.total)?;
    if system == 0 {
        return None;
    }
    let cpus = f64::from(cur.cpus.max(1));
    let pct = busy as f64 / system as f64 * cpus * 100.0;
    pct.is_finite()
        .then_some(pct.clamp(0.0, cpus * 100.0) as f32)
}

/// Memory in use without the page cache the kernel can drop, like
/// `docker stats`: usage minus `total_inactive_file` (cgroup v1) or
/// `inactive_file` (cgroup v2), when that is smaller than usage.
pub fn mem_used(usage: u64, stat: impl Fn(&str) -> Option<u64>) -> u64 {
    let inactive = stat("total_inactive_file").or_else(|| stat("inactive_file"));
    match inactive {
        Some(i) if i < usage => usage - i,
        _ => usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(total: u64, system: Option<u64>, cpus: u32) -> CpuCounters {
        CpuCounters {
            total,
            system,
            cpus,
        }
    }

    #[test]
    fn cpu_table() {
        let s = 1_000_000_000u64;
        let cases = [
            // Half of the system's time on a 1-CPU host: 50 %.
            (c(0, Some(0), 1), c(s / 2, Some(s), 1), Some(50.0)),
            // A quarter of a 4-CPU host's time: one CPU busy, 100 %.
            (c(0, Some(0), 4), c(s, Some(4 * s), 4), Some(100.0)),
            (c(10, Some(10), 2), c(10, Some(10 + s), 2), Some(0.0)),
            (c(0, Some(0), 0), c(s / 4, Some(s), 0), Some(25.0)),
            // No time passed, no system counter, counters reset.
            (c(0, Some(s), 1), c(s, Some(s), 1), None),
            (c(0, None, 1), c(s, Some(s), 1), None),
            (c(0, Some(0), 1), c(s, None, 1), None),
            (c(s, Some(0), 1), c(0, Some(s), 1), None),
            (c(0, Some(s), 1), c(s, Some(0), 1), None),
            // Never above what the CPUs can give.
            (c(0, Some(0), 2), c(5 * s, Some(s), 2), Some(200.0)),
        ];
        for (prev, cur, want) in cases {
            assert_eq!(cpu_percent(prev, cur), want, "{prev:?} -> {cur:?}");
        }
    }

    #[test]
    fn memory_without_cache() {
        let v1 = |k: &str| (k == "total_inactive_file").then_some(300);
        let v2 = |k: &str| (k == "inactive_file").then_some(300);
        let none = |_: &str| None;
        assert_eq!(mem_used(1000, v1), 700);
        assert_eq!(mem_used(1000, v2), 700);
        assert_eq!(mem_used(1000, none), 1000);
        assert_eq!(mem_used(200, v1), 200);
    }
}
