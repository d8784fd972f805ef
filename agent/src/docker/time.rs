//! The engine's RFC 3339 timestamps (`2024-06-01T10:00:00.123456789Z`) as
//! unix milliseconds, without a date library for one format.

/// Unix milliseconds, or `None` for anything that is not an RFC 3339 time
/// after 1970 (Docker writes `0001-01-01T00:00:00Z` for "never").
pub fn unix_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match rest.as_bytes().first()? {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let ms = secs.checked_mul(1000)?.checked_add(millis)?;
    u64::try_from(ms).ok().filter(|&ms| ms > 0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("1970-01-01T00:00:01Z", Some(1_000)),
            ("2024-06-01T10:00:00Z", Some(1_717_236_000_000)),
            ("2024-06-01T10:00:00.123456789Z", Some(1_717_236_000_123)),
            ("2024-06-01T10:00:00.1Z", Some(1_717_236_000_100)),
            ("2024-06-01T12:00:00+02:00", Some(1_717_236_000_000)),
            ("2024-06-01T09:30:00.5-00:30", Some(1_717_236_000_500)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000)),
            ("0001-01-01T00:00:00Z", None),
            ("1970-01-01T00:00:00Z", None),
            ("", None),
            ("2024-06-01", None),
            ("2024-13-01T10:00:00Z", None),
            ("2024-06-01T10:00:00", None),
            ("2024-06-01T10:00:00.Z", None),
            ("2024-06-01T25:00:00Z", None),
            ("2024-06-01T10:00:00+2:00", None),
            ("2024-06-01T1a:00:00Z", None),
            ("2024-06-01T10:00:00.123é", None),
        ];
        for (s, want) in cases {
            assert_eq!(unix_ms(s), want, "{s:?}");
        }
    }
}
