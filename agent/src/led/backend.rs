//! Where the LED is: the sysfs LED class (the board's ACT LED), a GPIO line,
//! or nowhere. The LED is a hardware seam ([`LedBackend`]); the simulated
//! one is [`crate::testing::led::SimLed`].

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{LineRef, OutputSpec};
use crate::gpio::{GpioBackend, GpioError, OutputLine};

#[derive(Debug, thiserror::Error)]
pub enum LedError {
    #[error("LED {path}: cannot {what}: {source}")]
    Sysfs {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("LED {path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("LED: {0}")]
    Gpio(#[from] GpioError),
}

pub trait LedBackend: Send {
    fn set(&mut self, on: bool) -> Result<(), LedError>;
    /// Hand the LED back as it was found (the kernel's trigger, for sysfs).
    fn release(&mut self) -> Result<(), LedError>;
}

/// No LED configured.
#[derive(Debug, Default)]
pub struct NoLed;

impl LedBackend for NoLed {
    fn set(&mut self, _on: bool) -> Result<(), LedError> {
        Ok(())
    }
    fn release(&mut self) -> Result<(), LedError> {
        Ok(())
    }
}

/// A LED of the kernel's LED class, `/sys/class/leds/<name>`.
///
/// The kernel drives such a LED from a trigger (on a Pi, ACT blinks on SD
/// card activity: `mmc0`). We remember the active trigger, switch it to
/// `none` so our writes to `brightness` stick, and restore it when the
/// agent stops, so the board behaves as before.
#[derive(Debug)]
pub struct SysfsLed {
    path: PathBuf,
    original_trigger: String,
    original_brightness: String,
    max_brightness: String,
    released: bool,
}

/// The active trigger in the kernel's listing, which brackets it:
/// `none rc-feedback [mmc0] timer` → `mmc0`.
pub fn active_trigger(listing: &str) -> Option<&str> {
    listing
        .split_whitespace()
        .find_map(|t| t.strip_prefix('[').and_then(|t| t.strip_suffix(']')))
}

impl SysfsLed {
    pub fn open(path: &Path) -> Result<SysfsLed, LedError> {
        let read = |name: &str, what: &'static str| {
            std::fs::read_to_string(path.join(name)).map_err(|source| LedError::Sysfs {
                path: path.to_path_buf(),
                what,
                source,
            })
        };
        let listing = read("trigger", "read its trigger")?;
        let original_trigger = active_trigger(&listing)
            .ok_or_else(|| LedError::Format {
                path: path.to_path_buf(),
                reason: format!("no active trigger in {:?}", listing.trim()),
            })?
            .to_string();
        let original_brightness = read("brightness", "read its brightness")?
            .trim()
            .to_string();
        // A missing max_brightness is unusual; 1 is on for every LED.
        let max_brightness = read("max_brightness", "read its max_brightness")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "1".into());
        let mut led = SysfsLed {
            path: path.to_path_buf(),
            original_trigger,
            original_brightness,
            max_brightness,
            released: false,
        };
        led.write("trigger", "none", "set its trigger to none")?;
        Ok(led)
    }

    fn write(&mut self, name: &str, value: &str, what: &'static str) -> Result<(), LedError> {
        // No create: a wrong path must fail, not make files.
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.path.join(name))
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|source| LedError::Sysfs {
                path: self.path.clone(),
                what,
                source,
            })
    }
}

impl LedBackend for SysfsLed {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        let value = if on {
            self.max_brightness.clone()
        } else {
            "0".to_string()
        };
        self.write("brightness", &value, "write its brightness")
    }

    fn release(&mut self) -> Result<(), LedError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        if self.original_trigger == "none" {
            let b = self.original_brightness.clone();
            self.write("brightness", &b, "restore its brightness")
        } else {
            let t = self.original_trigger.clone();
            self.write("trigger", &t, "restore its trigger")
        }
    }
}

impl Drop for SysfsLed {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// A LED on a GPIO line (through a resistor), driven as an output.
pub struct GpioLed {
    line: Box<dyn OutputLine>,
}

impl GpioLed {
    pub fn open(
        backend: &dyn GpioBackend,
        line: LineRef,
        active_low: bool,
    ) -> Result<GpioLed, LedError> {
        let spec = OutputSpec {
            name: "led".into(),
            line,
            active_low,
            initial: false,
        };
        Ok(GpioLed {
            line: backend.output(&spec)?,
        })
    }
}

impl LedBackend for GpioLed {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        Ok(self.line.set(on)?)
    }

    fn release(&mut self) -> Result<(), LedError> {
        // Off, then the line is released when dropped.
        Ok(self.line.set(false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(trigger: &str, brightness: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trigger"), trigger).unwrap();
        std::fs::write(dir.path().join("brightness"), brightness).unwrap();
        std::fs::write(dir.path().join("max_brightness"), "255\n").unwrap();
        dir
    }

    fn read(dir: &tempfile::TempDir, name: &str) -> String {
        std::fs::read_to_string(dir.path().join(name)).unwrap()
    }

    #[test]
    fn the_active_trigger_is_the_bracketed_one() {
        assert_eq!(active_trigger("none timer [mmc0]\n"), Some("mmc0"));
        assert_eq!(active_trigger("[none] rc-feedback mmc0"), Some("none"));
        assert_eq!(active_trigger("none timer mmc0"), None);
        assert_eq!(active_trigger(""), None);
    }

    #[test]
    fn sysfs_saves_the_trigger_drives_brightness_and_restores() {
        let dir = fixture("none rc-feedback timer [mmc0] heartbeat\n", "0\n");
        let mut led = SysfsLed::open(dir.path()).unwrap();
        assert_eq!(read(&dir, "trigger"), "none");
        led.set(true).unwrap();
        assert_eq!(read(&dir, "brightness"), "255");
        led.set(false).unwrap();
        assert_eq!(read(&dir, "brightness"), "0");
        led.release().unwrap();
        assert_eq!(read(&dir, "trigger"), "mmc0");
        // Dropping after release writes nothing more.
        std::fs::write(dir.path().join("trigger"), "sentinel").unwrap();
        drop(led);
        assert_eq!(read(&dir, "trigger"), "sentinel");
    }

    #[test]
    fn sysfs_with_no_trigger_restores_the_brightness() {
        let dir = fixture("[none] timer mmc0", "1\n");
        let mut led = SysfsLed::open(dir.path()).unwrap();
        led.set(false).unwrap();
        drop(led);
        assert_eq!(read(&dir, "brightness"), "1");
        assert_eq!(read(&dir, "trigger"), "none");
    }

    #[test]
    fn sysfs_errors_name_the_led() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ACT");
        let err = SysfsLed::open(&missing).unwrap_err().to_string();
        assert!(err.contains("ACT") && err.contains("trigger"), "{err}");
        let bad = fixture("none timer mmc0", "0");
        let err = SysfsLed::open(bad.path()).unwrap_err().to_string();
        assert!(err.contains("no active trigger"), "{err}");
        // Not created when missing.
        assert!(!missing.exists());
    }
}
