//! Memory and swap from `/proc/meminfo`.

use std::collections::HashMap;
use std::path::Path;

use picket_protocol::Memory;

use super::{pct, read_text};

/// RAM, and swap when the host has any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemInfo {
    pub mem: Memory,
    pub swap: Option<Memory>,
}

pub fn read(root: &Path) -> Option<MemInfo> {
    parse(&read_text(root, "/proc/meminfo")?)
}

/// Needs `MemTotal`; everything else is optional.
pub fn parse(text: &str) -> Option<MemInfo> {
    let fields: HashMap<&str, u64> = text.lines().filter_map(field).collect();
    let get = |k: &str| fields.get(k).copied();

    let total = get("MemTotal").filter(|&t| t > 0)?;
    // MemAvailable appeared in Linux 3.14; before it, this is what `free`
    // estimated.
    let avail = get("MemAvailable").unwrap_or_else(|| {
        get("MemFree")
            .unwrap_or(0)
            .saturating_add(get("Buffers").unwrap_or(0))
            .saturating_add(get("Cached").unwrap_or(0))
    });
    let mem = usage(total, avail);

    let swap = match (get("SwapTotal"), get("SwapFree")) {
        (Some(total), free) if total > 0 => Some(usage(total, free.unwrap_or(0))),
        _ => None,
    };
    Some(MemInfo { mem, swap })
}

fn usage(total: u64, avail: u64) -> Memory {
    let avail = avail.min(total);
    let used = total - avail;
    Memory {
        total,
        used,
        avail,
        pct: pct(used as f64, total as f64),
    }
}

/// `MemTotal:        3884428 kB` → (`MemTotal`, bytes). Lines without the
/// `kB` unit (HugePages counts) are not byte quantities and are skipped.
fn field(line: &str) -> Option<(&str, u64)> {
    let (key, rest) = line.split_once(':')?;
    let mut words = rest.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some((key.trim(), value.saturating_mul(1024)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PI4: &str = "MemTotal:        3884428 kB\nMemFree:         2519100 kB\n\
MemAvailable:    3352000 kB\nBuffers:           48424 kB\nCached:           848856 kB\n\
SwapCached:            0 kB\nSwapTotal:        102396 kB\nSwapFree:          92156 kB\n\
HugePages_Total:       0\nHugepagesize:       2048 kB\n";

    #[test]
    fn parses_memory_and_swap() {
        let m = parse(PI4).unwrap();
        assert_eq!(m.mem.total, 3884428 * 1024);
        assert_eq!(m.mem.avail, 3352000 * 1024);
        assert_eq!(m.mem.used, (3884428 - 3352000) * 1024);
        assert!((m.mem.pct - 13.706).abs() < 0.01, "{}", m.mem.pct);
        let s = m.swap.unwrap();
        assert_eq!(
            (s.total, s.avail, s.used),
            (102396 * 1024, 92156 * 1024, 10240 * 1024)
        );
        assert!((s.pct - 10.0).abs() < 0.01);
    }

    #[test]
    fn old_kernels_estimate_available() {
        let m =
            parse("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n").unwrap();
        assert_eq!(m.mem.avail, 400 * 1024);
        assert_eq!(m.mem.pct, 60.0);
    }

    #[test]
    fn no_swap_is_absent() {
        let m = parse("MemTotal: 1000 kB\nMemAvailable: 10 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
            .unwrap();
        assert_eq!(m.swap, None);
    }

    #[test]
    fn inconsistent_values_stay_in_range() {
        let m =
            parse("MemTotal: 100 kB\nMemAvailable: 500 kB\nSwapTotal: 10 kB\nSwapFree: 99 kB\n")
                .unwrap();
        assert_eq!((m.mem.used, m.mem.pct), (0, 0.0));
        assert_eq!(m.swap.unwrap().used, 0);
        let m = parse(&format!("MemTotal: {} kB\n", u64::MAX)).unwrap();
        assert_eq!(m.mem.total, u64::MAX);
        assert_eq!(m.mem.pct, 100.0);
    }

    #[test]
    fn garbage_is_none() {
        for bad in [
            "",
            "MemTotal: 0 kB",
            "MemTotal: lots kB",
            "MemTotal 5 kB",
            "MemTotal: 5",
            "\u{0}\u{0}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
