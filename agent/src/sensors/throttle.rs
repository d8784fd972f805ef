//! The Raspberry Pi's throttling and power flags.
//!
//! The firmware's `get_throttled` word carries every flag. Kernels that drop
//! that file still expose under-voltage through the `rpi_volt` hwmon alarm,
//! which has no "since boot" bit: we latch one ourselves.

use std::fs;
use std::path::Path;

use picket_protocol::{EventKind, Throttle, ThrottleSource};

use super::{read_path, read_text, under};

const FIRMWARE: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";

/// Keeps the previous reading (to report changes) and the hwmon latch.
#[derive(Debug, Default)]
pub struct ThrottleReader {
    prev: Option<Throttle>,
    read_once: bool,
    uv_latched: bool,
}

impl ThrottleReader {
    /// The current flags, and an event when they differ from the previous
    /// reading. The first reading raises none: the sample already carries
    /// it. A transiently unreadable source does not count as a change.
    pub fn read(&mut self, root: &Path) -> (Option<Throttle>, Option<EventKind>) {
        // A present firmware word is authoritative even when unparsable:
        // the hwmon alarm knows less, and mixing sources would fake changes.
        let now = match read_text(root, FIRMWARE) {
            Some(text) => parse_firmware(&text),
            None => self.hwmon(root),
        };
        let mut event = None;
        if let Some(new) = now {
            if self.read_once && self.prev != Some(new) {
                event = Some(EventKind::Throttle {
                    old: self.prev,
                    new,
                });
            }
            self.prev = Some(new);
        }
        self.read_once = true;
        (now, event)
    }

    fn hwmon(&mut self, root: &Path) -> Option<Throttle> {
        let uv = rpi_volt_alarm(root)?;
        self.uv_latched |= uv;
        Some(Throttle {
            src: ThrottleSource::Hwmon,
            raw: None,
            uv,
            capped: false,
            throttled: false,
            soft_temp: false,
            uv_boot: self.uv_latched,
            capped_boot: false,
            throttled_boot: false,
            soft_temp_boot: false,
        })
    }
}

/// The kernel prints the word as bare hex (`50005`); accept `0x` too.
pub fn parse_firmware(text: &str) -> Option<Throttle> {
    let t = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if hex.is_empty() || hex.starts_with('+') {
        return None;
    }
    u32::from_str_radix(hex, 16)
        .ok()
        .map(Throttle::from_firmware)
}

/// `in0_lcrit_alarm` of the hwmon device named `rpi_volt`; its `hwmonN`
/// number depends on probe order, so search by name.
fn rpi_volt_alarm(root: &Path) -> Option<bool> {
    let dir = under(root, "/sys/class/hwmon");
    let device = fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).find(|e| {
        e.file_name().to_string_lossy().starts_with("hwmon")
            && read_path(&e.path().join("name")).is_some_and(|n| n.trim() == "rpi_volt")
    })?;
    match read_path(&device.path().join("in0_lcrit_alarm"))?.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_word_with_or_without_prefix() {
        for text in ["50005\n", "0x50005", "0X50005\0"] {
            let t = parse_firmware(text).unwrap();
            assert_eq!(t.raw, Some(0x50005), "{text:?}");
            assert!(t.uv && t.throttled && t.uv_boot && t.throttled_boot && !t.capped);
        }
        assert_eq!(parse_firmware("0").unwrap().raw, Some(0));
    }

    #[test]
    fn garbage_is_none() {
        for bad in ["", "0x", "zz", "+5", "-5", "100000000", "5 0", "\u{0}"] {
            assert_eq!(parse_firmware(bad), None, "{bad:?}");
        }
    }

    fn set_word(root: &Path, word: &str) {
        let p = under(root, FIRMWARE);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, word).unwrap();
    }

    #[test]
    fn change_raises_one_event_with_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ThrottleReader::default();
        set_word(dir.path(), "0\n");
        assert!(r.read(dir.path()).1.is_none());
        assert!(r.read(dir.path()).1.is_none());
        set_word(dir.path(), "50000\n");
        let (now, event) = r.read(dir.path());
        assert_eq!(
            event,
            Some(EventKind::Throttle {
                old: Some(Throttle::from_firmware(0)),
                new: Throttle::from_firmware(0x50000)
            })
        );
        assert_eq!(now, Some(Throttle::from_firmware(0x50000)));
        set_word(dir.path(), "garbage");
        assert_eq!(r.read(dir.path()), (None, None));
        set_word(dir.path(), "50000");
        assert_eq!(
            r.read(dir.path()).1,
            None,
            "an unreadable word is no change"
        );
    }

    #[test]
    fn hwmon_latches_under_voltage() {
        let dir = tempfile::tempdir().unwrap();
        let hw = dir.path().join("sys/class/hwmon");
        for (n, name) in [("hwmon0", "cpu_thermal"), ("hwmon1", "rpi_volt")] {
            fs::create_dir_all(hw.join(n)).unwrap();
            fs::write(hw.join(n).join("name"), format!("{name}\n")).unwrap();
            fs::write(hw.join(n).join("in0_lcrit_alarm"), "0\n").unwrap();
        }
        let mut r = ThrottleReader::default();
        let t = r.read(dir.path()).0.unwrap();
        assert_eq!(
            (t.src, t.uv, t.uv_boot, t.raw),
            (ThrottleSource::Hwmon, false, false, None)
        );
        fs::write(hw.join("hwmon1/in0_lcrit_alarm"), "1\n").unwrap();
        let (t, event) = r.read(dir.path());
        assert!(t.unwrap().uv && t.unwrap().uv_boot && event.is_some());
        fs::write(hw.join("hwmon1/in0_lcrit_alarm"), "0\n").unwrap();
        let t = r.read(dir.path()).0.unwrap();
        assert!(!t.uv && t.uv_boot, "since-boot stays latched");
        fs::write(hw.join("hwmon1/in0_lcrit_alarm"), "2\n").unwrap();
        assert_eq!(r.read(dir.path()).0, None);
    }
}
