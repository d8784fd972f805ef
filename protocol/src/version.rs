//! Agent version strings: their form and their order.
//!
//! A version is what a build says it is (`0.2.0`, `1.4.0-rc.1`,
//! `0.3.1+pi`): 1 to 64 characters of `[0-9A-Za-z.+-]` starting with a
//! digit, so it is also a safe file name. The order is semver's where the
//! string is semver, and degrades gracefully where it is not:
//!
//! - build metadata (after `+`) is ignored;
//! - the core (before the first `-`) is compared part by part (`.`),
//!   numerically when both parts are numbers, missing parts counting as 0
//!   (`1.2` = `1.2.0`), a number before a word;
//! - a pre-release (after the first `-`) comes before its release
//!   (`1.0.0-rc.1` < `1.0.0`), identifiers compared like core parts, a
//!   shorter list first when one is a prefix of the other.

use std::cmp::Ordering;

/// The longest version string.
pub const MAX_VERSION_LEN: usize = 64;

/// Whether `v` is a version string (see the module documentation).
pub fn is_valid(v: &str) -> bool {
    (1..=MAX_VERSION_LEN).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
}

/// The order of two version strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split(a);
    let (b_core, b_pre) = split(b);
    let by_core = parts(a_core, b_core, true);
    if by_core != Ordering::Equal {
        return by_core;
    }
    match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => parts(x, y, false),
    }
}

/// Core and pre-release, build metadata dropped.
fn split(v: &str) -> (&str, Option<&str>) {
    let v = v.split_once('+').map_or(v, |(core, _)| core);
    match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    }
}

/// Dot-separated parts in order; `pad`: a missing part counts as 0 (core),
/// else the shorter list comes first (pre-release).
fn parts(a: &str, b: &str, pad: bool) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        let (x, y) = match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (Some(x), None) if pad => (x, "0"),
            (None, Some(y)) if pad => ("0", y),
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(x), Some(y)) => (x, y),
        };
        let o = part(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
}

fn part(x: &str, y: &str) -> Ordering {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (num(x), num(y)) {
        (true, true) => {
            // Any length of digits: compare without parsing (no overflow).
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for ok in ["0.1.0", "1", "1.4.0-rc.1", "0.3.1+pi.2", "2024.11.3-b"] {
            assert!(is_valid(ok), "{ok}");
        }
        let long = "1".repeat(65);
        for bad in [
            "",
            "v1.0",
            "-1",
            "1.0/..",
            "1 0",
            "1.0\n",
            "é1",
            long.as_str(),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn order() {
        use Ordering::*;
        let table = [
            ("0.1.0", "0.2.0", Less),
            ("0.10.0", "0.9.0", Greater),
            ("1.2", "1.2.0", Equal),
            ("1.2.0+a", "1.2.0+b", Equal),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0-rc.2", "1.0.0-rc.10", Less),
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-beta", "1.0.0-alpha.9", Greater),
            ("1.0.0-1", "1.0.0-a", Less),
            ("2.0", "10.0", Less),
            ("1.0.x", "1.0.1", Greater),
            ("007.1", "7.1", Equal),
            (
                "99999999999999999999999.0",
                "99999999999999999999998.9",
                Greater,
            ),
        ];
        for (a, b, want) in table {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
