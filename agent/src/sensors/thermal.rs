//! Every thermal zone under `/sys/class/thermal`.

use std::fs;
use std::path::Path;

use picket_protocol::Thermal;

use super::{read_path, under};

/// Zones in numeric order; a zone whose temperature cannot be read (some
/// drivers return an error while the sensor is powered down) is left out.
pub fn read(root: &Path) -> Vec<Thermal> {
    let dir = under(root, "/sys/class/thermal");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut zones: Vec<(u64, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let index = name.strip_prefix("thermal_zone")?.parse().ok()?;
            Some((index, name))
        })
        .collect();
    zones.sort();
    zones
        .into_iter()
        .filter_map(|(_, zone)| {
            let path = dir.join(&zone);
            let c = parse_millidegrees(&read_path(&path.join("temp"))?)?;
            let kind = read_path(&path.join("type"))
                .map(|t| t.trim().to_string())
                .unwrap_or_default();
            Some(Thermal { zone, kind, c })
        })
        .collect()
}

/// `48312` → 48.312 °C. Values beyond any physical sensor are garbage.
pub fn parse_millidegrees(text: &str) -> Option<f32> {
    let milli: i64 = text.trim().parse().ok()?;
    let c = milli as f64 / 1000.0;
    (-273.15..=1000.0).contains(&c).then_some(c as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_millidegrees() {
        assert_eq!(parse_millidegrees("48312\n"), Some(48.312));
        assert_eq!(parse_millidegrees("-5000"), Some(-5.0));
        for bad in ["", "hot", "48.3", "99999999999", "-300000", "\u{0}"] {
            assert_eq!(parse_millidegrees(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn zones_in_numeric_order_skipping_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("sys/class/thermal");
        for (zone, kind, temp) in [
            ("thermal_zone10", Some("gpu"), Some("40000")),
            ("thermal_zone2", None, Some("41000")),
            ("thermal_zone1", Some("cpu"), Some("bad")),
            ("thermal_zone0", Some("soc"), None),
            ("cooling_device0", Some("fan"), Some("1")),
        ] {
            let z = base.join(zone);
            fs::create_dir_all(&z).unwrap();
            if let Some(kind) = kind {
                fs::write(z.join("type"), format!("{kind}\n")).unwrap();
            }
            if let Some(temp) = temp {
                fs::write(z.join("temp"), temp).unwrap();
            }
        }
        let t = read(dir.path());
        let got: Vec<(&str, &str, f32)> = t
            .iter()
            .map(|t| (t.zone.as_str(), t.kind.as_str(), t.c))
            .collect();
        assert_eq!(
            got,
            [("thermal_zone2", "", 41.0), ("thermal_zone10", "gpu", 40.0)]
        );
        assert!(read(&dir.path().join("none")).is_empty());
    }
}
