//! Seconds since boot from `/proc/uptime`.

use std::path::Path;

use super::read_text;

pub fn read(root: &Path) -> Option<u64> {
    parse(&read_text(root, "/proc/uptime")?)
}

/// `350735.47 234388.90`: the first field, whole seconds.
pub fn parse(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    // `as` saturates at u64::MAX; the range check rules out NaN and negatives.
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_output() {
        assert_eq!(parse("350735.47 234388.90\n"), Some(350735));
        assert_eq!(parse("12"), Some(12));
    }

    #[test]
    fn garbage_is_none() {
        for bad in ["", "abc 1", "-5.0 1", "NaN 1", "inf"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
