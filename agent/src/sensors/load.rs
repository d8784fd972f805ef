//! Load averages from `/proc/loadavg`.

use std::path::Path;

use picket_protocol::Load;

use super::read_text;

pub fn read(root: &Path) -> Option<Load> {
    parse(&read_text(root, "/proc/loadavg")?)
}

/// `0.52 0.58 0.59 1/389 12345`: the first three fields.
pub fn parse(text: &str) -> Option<Load> {
    let mut words = text.split_whitespace();
    let mut next = || -> Option<f32> {
        let v: f32 = words.next()?.parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    Some(Load {
        m1: next()?,
        m5: next()?,
        m15: next()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_output() {
        let l = parse("0.52 0.58 0.59 1/389 12345\n").unwrap();
        assert_eq!((l.m1, l.m5, l.m15), (0.52, 0.58, 0.59));
    }

    #[test]
    fn garbage_is_none() {
        for bad in [
            "",
            "0.5 0.6",
            "a b c",
            "NaN 1 1",
            "inf 1 1",
            "-1 0 0",
            "1 2 \u{0}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
