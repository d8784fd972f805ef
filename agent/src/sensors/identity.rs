//! Who this box is: hardware model, a default device id, the boot id.

use std::path::Path;

use picket_protocol::{DeviceId, DeviceIdError};

use super::{read_text, under};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no usable device id found ({tried}); set one in the configuration")]
    NoDeviceId { tried: String },
}

/// The board's model string, e.g. `Raspberry Pi 4 Model B Rev 1.4`.
pub fn model(root: &Path) -> Option<String> {
    read_text(root, "/proc/device-tree/model")
        .map(|s| clean(&s).to_string())
        .filter(|s| !s.is_empty())
}

/// Where a default device id may come from, most specific first: the SoC
/// serial survives re-flashing the SD card, the machine id does not.
const SOURCES: [&str; 3] = [
    "/sys/firmware/devicetree/base/serial-number",
    "/proc/cpuinfo",
    "/etc/machine-id",
];

/// Default device id when none is configured: the device-tree serial number,
/// else `Serial` in `/proc/cpuinfo`, else `/etc/machine-id`.
pub fn default_device_id(root: &Path) -> Result<DeviceId, IdentityError> {
    let mut tried = Vec::new();
    for source in SOURCES {
        let path = under(root, source);
        let reason = match read_text(root, source) {
            None => "absent".to_string(),
            Some(text) => {
                let candidate = if source == "/proc/cpuinfo" {
                    cpuinfo_serial(&text).unwrap_or_default()
                } else {
                    clean(&text).to_string()
                };
                match candidate_id(&candidate) {
                    Ok(id) => return Ok(id),
                    Err(reason) => reason.to_string(),
                }
            }
        };
        tried.push(format!("{}: {reason}", path.display()));
    }
    Err(IdentityError::NoDeviceId {
        tried: tried.join("; "),
    })
}

/// The kernel boot id, a UUID that changes at every boot.
pub fn boot_id(root: &Path) -> Option<String> {
    read_text(root, "/proc/sys/kernel/random/boot_id")
        .map(|s| clean(&s).to_string())
        .filter(|s| !s.is_empty())
}

/// Device-tree strings end in NUL; files end in a newline.
fn clean(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

fn cpuinfo_serial(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "Serial").then(|| clean(value).to_string())
    })
}

/// Why a source's text is not used as the device id.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("empty")]
    Empty,
    #[error("all zeros")]
    Zeros,
    #[error(transparent)]
    Invalid(#[from] DeviceIdError),
}

fn candidate_id(s: &str) -> Result<DeviceId, Unusable> {
    if s.is_empty() {
        return Err(Unusable::Empty);
    }
    // Boards without a programmed serial report all zeros; a whole fleet
    // would then share one id.
    if s.chars().all(|c| c == '0') {
        return Err(Unusable::Zeros);
    }
    // The same serial is printed in either case depending on the source;
    // topics are case-sensitive, so pick one.
    Ok(DeviceId::new(s.to_ascii_lowercase())?)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn write(root: &Path, path: &str, content: &[u8]) {
        let p = under(root, path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn model_strips_trailing_nul() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "/proc/device-tree/model",
            b"Raspberry Pi 5 Model B Rev 1.0\0",
        );
        assert_eq!(
            model(dir.path()).as_deref(),
            Some("Raspberry Pi 5 Model B Rev 1.0")
        );
        write(dir.path(), "/proc/device-tree/model", b"\0");
        assert_eq!(model(dir.path()), None);
    }

    #[test]
    fn device_id_falls_back_to_cpuinfo_then_machine_id() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/etc/machine-id",
            b"0123456789abcdef0123456789abcdef\n",
        );
        assert_eq!(
            default_device_id(root).unwrap().as_str(),
            "0123456789abcdef0123456789abcdef"
        );
        write(
            root,
            "/proc/cpuinfo",
            b"processor\t: 0\nSerial\t\t: 0000000000000000\n",
        );
        assert_eq!(
            default_device_id(root).unwrap().as_str(),
            "0123456789abcdef0123456789abcdef",
            "an all-zero serial is skipped"
        );
        write(
            root,
            "/proc/cpuinfo",
            b"Hardware\t: BCM2835\nSerial\t\t: 10000000DEADBEEF\n",
        );
        assert_eq!(
            default_device_id(root).unwrap().as_str(),
            "10000000deadbeef"
        );
        write(
            root,
            "/sys/firmware/devicetree/base/serial-number",
            b"bad serial!\0",
        );
        assert_eq!(
            default_device_id(root).unwrap().as_str(),
            "10000000deadbeef"
        );
    }

    #[test]
    fn no_device_id_names_every_source() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "/etc/machine-id", b"\n");
        let err = default_device_id(dir.path()).unwrap_err().to_string();
        assert!(err.contains("serial-number: absent"), "{err}");
        assert!(err.contains("cpuinfo: absent"), "{err}");
        assert!(err.contains("machine-id: empty"), "{err}");
    }

    #[test]
    fn boot_id_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(boot_id(dir.path()), None);
        write(dir.path(), "/proc/sys/kernel/random/boot_id", b"5f1c-aa\n");
        assert_eq!(boot_id(dir.path()).as_deref(), Some("5f1c-aa"));
    }
}
