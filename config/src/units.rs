//! Human units used everywhere in the configuration: durations written as
//! `500ms`, `10s`, `5m`, `1h` and sizes as `512KiB`, `64MiB`, `1GiB`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration as written in the config (`10s`), kept with its spelling so a
/// printed config reads like the file it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// A size in bytes as written in the config (`64MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A duration or a size as written that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{0:?} has no unit: write e.g. 500ms, 10s, 5m or 1h")]
    NoUnit(String),
    #[error("{0:?} is not a duration: write e.g. 500ms, 10s, 5m or 1h")]
    NotADuration(String),
    #[error("{text:?} has unknown unit {unit:?}: use ms, s, m, h or d")]
    DurationUnit { text: String, unit: String },
    #[error("{0:?} is not a size: write e.g. 512KiB, 64MiB or 1GiB")]
    NotASize(String),
    #[error("{text:?} has unknown unit {unit:?}: use B, KiB, MiB, GiB (or kB, MB, GB)")]
    SizeUnit { text: String, unit: String },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| UnitError::NoUnit(s.to_string()))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotADuration(s.to_string()))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(UnitError::DurationUnit {
                text: s.to_string(),
                unit: other.to_string(),
            });
        }
    }
    .ok_or_else(|| UnitError::TooLarge(s.to_string()))?;
    Ok(Duration::from_millis(ms))
}

pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotASize(s.to_string()))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(UnitError::SizeUnit {
                text: s.to_string(),
                unit: other.to_string(),
            });
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(s.to_string()))
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => write!(f, "0s"),
            _ if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            _ if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            _ if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match b {
            0 => write!(f, "0B"),
            _ if b % (1 << 30) == 0 => write!(f, "{}GiB", b >> 30),
            _ if b % (1 << 20) == 0 => write!(f, "{}MiB", b >> 20),
            _ if b % (1 << 10) == 0 => write!(f, "{}KiB", b >> 10),
            _ => write!(f, "{b}B"),
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_size(&s)
            .map(ByteSize)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("500ms", Ok(500)),
            ("10s", Ok(10_000)),
            ("5m", Ok(300_000)),
            ("1h", Ok(3_600_000)),
            (" 2s ", Ok(2_000)),
            ("10", Err(())),
            ("s", Err(())),
            ("10x", Err(())),
            ("-1s", Err(())),
            ("99999999999999999999s", Err(())),
        ];
        for (input, want) in table {
            let got = parse_duration(input)
                .map(|d| d.as_millis() as u64)
                .map_err(|_| ());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn sizes() {
        let table = [
            ("64MiB", Ok(64 << 20)),
            ("512KiB", Ok(512 << 10)),
            ("1GiB", Ok(1 << 30)),
            ("100", Ok(100)),
            ("2GB", Ok(2_000_000_000)),
            ("1TiB", Err(())),
            ("MiB", Err(())),
            ("99999999999GiB", Err(())),
        ];
        for (input, want) in table {
            assert_eq!(parse_size(input).map_err(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["500ms", "10s", "5m", "1h"] {
            let d = HumanDuration(parse_duration(s).unwrap());
            assert_eq!(d.to_string(), s);
        }
        for s in ["64MiB", "512KiB", "1GiB", "100B"] {
            assert_eq!(ByteSize(parse_size(s).unwrap()).to_string(), s);
        }
    }
}
