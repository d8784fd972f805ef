//! Telemetry: a batch of samples from one device, ascending by `seq`.

use serde::{Deserialize, Serialize};

use crate::docker::{Container, Engine};
use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/telemetry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub v: u16,
    pub device: DeviceId,
    /// Ascending by `seq`; not necessarily contiguous, because events share
    /// the device's sequence space.
    pub samples: Vec<Sample>,
}

impl Telemetry {
    /// A batch of `device`'s samples at this [`VERSION`](crate::VERSION).
    pub fn new(device: DeviceId, samples: Vec<Sample>) -> Self {
        Telemetry {
            v: crate::VERSION,
            device,
            samples,
        }
    }
}

/// One periodic reading of a device. Metric groups the device does not have
/// (no thermal zone, no throttle word...) are absent, not zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Per-device sequence number shared with events; never reused.
    pub seq: u64,
    /// Wall-clock time, unix milliseconds. Unreliable while `sync` is false.
    pub ts: u64,
    /// Milliseconds since boot (CLOCK_BOOTTIME); with `boot`, lets a
    /// collector correct `ts` of samples taken before the clock was synced.
    pub mono: u64,
    /// Kernel boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot: String,
    /// The kernel clock was NTP-synchronised when the sample was taken.
    pub sync: bool,
    /// Sent from the backlog rather than live: history, not current state.
    #[serde(default)]
    pub hist: bool,
    /// CPU busy percentage since the previous sample (absent on the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<Memory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Memory>,
    /// Seconds since boot as the kernel reports in `/proc/uptime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetIf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thermal: Vec<Thermal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// The configured GPIO inputs' levels when the sample was taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpio: Vec<GpioLevel>,
    /// The Docker engine's availability, when the agent watches Docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Engine>,
    /// The watched containers (those in the agent's Docker scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentHealth>,
}

/// One configured GPIO input's logical level (after `active_low`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpioLevel {
    /// The name given in the agent's configuration, e.g. `door`.
    pub name: String,
    /// Active (`true`) or inactive.
    pub level: bool,
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub m1: f32,
    pub m5: f32,
    pub m15: f32,
}

/// Memory or swap, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub total: u64,
    pub used: u64,
    /// Available to new allocations without swapping (`MemAvailable`); for
    /// swap, the free swap.
    pub avail: u64,
    pub pct: f32,
}

/// A mounted real filesystem. `pct` is computed like `df`: used / (used + free).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub mount: String,
    pub fs: String,
    pub total: u64,
    pub used: u64,
    /// Bytes available to unprivileged users.
    pub free: u64,
    pub pct: f32,
}

/// Cumulative counters of one network interface since boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetIf {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// One `thermal_zone*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thermal {
    /// Directory name, e.g. `thermal_zone0`.
    pub zone: String,
    /// The zone's `type`, e.g. `cpu-thermal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Degrees Celsius.
    pub c: f32,
}

/// Where a [`Throttle`] reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleSource {
    /// The firmware's `get_throttled` word: every flag is meaningful.
    Firmware,
    /// The `rpi_volt` hwmon alarm (newer kernels): only under-voltage is
    /// known; `uv_boot` is latched by the agent since it started.
    Hwmon,
}

/// The Raspberry Pi's throttling and power flags, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    pub src: ThrottleSource,
    /// The raw firmware word (e.g. `0x50005`), when read from the firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<u32>,
    /// Under-voltage now (bit 0).
    pub uv: bool,
    /// ARM frequency capped now (bit 1).
    pub capped: bool,
    /// Throttled now (bit 2).
    pub throttled: bool,
    /// Soft temperature limit active now (bit 3).
    pub soft_temp: bool,
    /// Under-voltage has occurred since boot (bit 16).
    pub uv_boot: bool,
    /// Frequency capping has occurred since boot (bit 17).
    pub capped_boot: bool,
    /// Throttling has occurred since boot (bit 18).
    pub throttled_boot: bool,
    /// Soft temperature limit has occurred since boot (bit 19).
    pub soft_temp_boot: bool,
}

impl Throttle {
    /// Decode the firmware's `get_throttled` word.
    pub fn from_firmware(raw: u32) -> Self {
        let bit = |n: u32| raw & (1 << n) != 0;
        Throttle {
            src: ThrottleSource::Firmware,
            raw: Some(raw),
            uv: bit(0),
            capped: bit(1),
            throttled: bit(2),
            soft_temp: bit(3),
            uv_boot: bit(16),
            capped_boot: bit(17),
            throttled_boot: bit(18),
            soft_temp_boot: bit(19),
        }
    }
}

/// systemd's `ActiveState` of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    /// systemd does not know the unit, or could not be asked.
    Unknown,
}

impl ActiveState {
    /// Parse systemd's spelling; anything unrecognised is `Unknown`.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "active" => Self::Active,
            "reloading" => Self::Reloading,
            "inactive" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            "maintenance" => Self::Maintenance,
            "refreshing" => Self::Refreshing,
            _ => Self::Unknown,
        }
    }
}

/// State of one watched systemd unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub unit: String,
    pub active: ActiveState,
    /// systemd's `SubState` (`running`, `dead`, `exited`...): unit-type
    /// specific, so kept as systemd spells it.
    pub sub: String,
}

/// The agent's own health, so a collector sees a struggling agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub version: String,
    /// 64-bit FNV-1a of the resolved configuration, 16 hex digits: tells a
    /// fleet operator which boxes run which configuration.
    pub config: String,
    /// Records in the disk queue not yet acknowledged by the broker.
    pub queue_records: u64,
    pub queue_bytes: u64,
    /// Age in milliseconds of the oldest unacknowledged record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unsent_ms: Option<u64>,
    /// Records dropped (oldest first) because the queue hit its size cap,
    /// since the queue was created.
    pub dropped: u64,
    /// Segments found corrupt and set aside, since the queue was created.
    pub quarantined: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;

    /// What a Pi with nothing optional to report sends.
    fn bare_sample() -> Sample {
        Sample {
            seq: 1,
            ts: 946_684_800_000,
            mono: 4_200,
            boot: "4c1b0f2e-8d3a-4d47-9a53-2b8f1f0c6e11".into(),
            sync: false,
            hist: true,
            cpu: None,
            load: None,
            mem: None,
            swap: None,
            uptime: None,
            disks: vec![],
            net: vec![],
            thermal: vec![],
            throttle: None,
            services: vec![],
            gpio: vec![],
            docker: None,
            containers: vec![],
            agent: None,
        }
    }

    fn batch() -> Telemetry {
        Telemetry {
            v: VERSION,
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            samples: vec![bare_sample(), full_sample()],
        }
    }

    #[test]
    fn round_trips() {
        round_trip(&batch());
        round_trip(&Telemetry {
            samples: vec![],
            ..batch()
        });
    }

    #[test]
    fn json_field_names() {
        let v = to_value(&batch());
        assert_eq!(keys(&v), ["device", "samples", "v"]);
        assert_eq!(
            keys(&v["samples"][0]),
            ["boot", "hist", "mono", "seq", "sync", "ts"]
        );
        let s = &v["samples"][1];
        assert_eq!(
            keys(s),
            [
                "agent",
                "boot",
                "containers",
                "cpu",
                "disks",
                "docker",
                "gpio",
                "hist",
                "load",
                "mem",
                "mono",
                "net",
                "seq",
                "services",
                "swap",
                "sync",
                "thermal",
                "throttle",
                "ts",
                "uptime"
            ]
        );
        assert_eq!(s["docker"], "available");
        assert_eq!(s["containers"][0]["state"], "exited");
        assert_eq!(keys(&s["load"]), ["m1", "m15", "m5"]);
        assert_eq!(keys(&s["gpio"][0]), ["level", "name"]);
        assert_eq!(keys(&s["mem"]), ["avail", "pct", "total", "used"]);
        assert_eq!(
            keys(&s["disks"][0]),
            ["free", "fs", "mount", "pct", "total", "used"]
        );
        assert_eq!(
            keys(&s["net"][0]),
            [
                "name",
                "rx_bytes",
                "rx_dropped",
                "rx_errors",
                "rx_packets",
                "tx_bytes",
                "tx_dropped",
                "tx_errors",
                "tx_packets"
            ]
        );
        assert_eq!(keys(&s["thermal"][0]), ["c", "type", "zone"]);
        assert_eq!(s["thermal"][0]["type"], "cpu-thermal");
        assert_eq!(
            keys(&s["throttle"]),
            [
                "capped",
                "capped_boot",
                "raw",
                "soft_temp",
                "soft_temp_boot",
                "src",
                "throttled",
                "throttled_boot",
                "uv",
                "uv_boot"
            ]
        );
        assert_eq!(s["throttle"]["src"], "firmware");
        assert_eq!(s["throttle"]["raw"], 0x50005);
        assert_eq!(keys(&s["services"][0]), ["active", "sub", "unit"]);
        assert_eq!(s["services"][0]["active"], "active");
        assert_eq!(
            keys(&s["agent"]),
            [
                "config",
                "dropped",
                "oldest_unsent_ms",
                "quarantined",
                "queue_bytes",
                "queue_records",
                "version"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = to_value(&batch());
        add_unknown(&mut v);
        add_unknown(&mut v["samples"][1]);
        add_unknown(&mut v["samples"][1]["thermal"][0]);
        add_unknown(&mut v["samples"][1]["throttle"]);
        assert_eq!(decode_value::<Telemetry>(&v).unwrap(), batch());
    }

    #[test]
    fn hist_defaults_to_false() {
        let mut v = to_value(&batch());
        v["samples"][1].as_object_mut().unwrap().remove("hist");
        let decoded = decode_value::<Telemetry>(&v).unwrap();
        assert!(!decoded.samples[1].hist);
        assert_eq!(decoded, batch());
    }

    #[test]
    fn missing_required_field_is_an_error() {
        for field in ["v", "device", "samples"] {
            assert_required(&batch(), field);
        }
        for field in ["seq", "ts", "mono", "boot", "sync"] {
            let mut v = to_value(&batch());
            v["samples"][0].as_object_mut().unwrap().remove(field);
            assert!(decode_value::<Telemetry>(&v).is_err(), "{field}");
        }
        let mut v = to_value(&batch());
        v["samples"][1]["thermal"][0]
            .as_object_mut()
            .unwrap()
            .remove("c");
        assert!(decode_value::<Telemetry>(&v).is_err());
    }

    #[test]
    fn throttle_from_firmware_word() {
        let t = Throttle::from_firmware(0x50005);
        assert!(t.uv && !t.capped && t.throttled && !t.soft_temp);
        assert!(t.uv_boot && !t.capped_boot && t.throttled_boot && !t.soft_temp_boot);
        assert_eq!(t.raw, Some(0x50005));
        let all = Throttle::from_firmware(0xF000F);
        assert!(all.uv && all.capped && all.throttled && all.soft_temp);
        assert!(all.uv_boot && all.capped_boot && all.throttled_boot && all.soft_temp_boot);
        let none = Throttle::from_firmware(0);
        assert!(!(none.uv || none.capped || none.throttled || none.soft_temp));
    }

    #[test]
    fn active_state_parse() {
        for (s, want) in [
            ("active", ActiveState::Active),
            ("reloading", ActiveState::Reloading),
            ("inactive", ActiveState::Inactive),
            ("failed", ActiveState::Failed),
            ("activating", ActiveState::Activating),
            ("deactivating", ActiveState::Deactivating),
            ("maintenance", ActiveState::Maintenance),
            ("refreshing", ActiveState::Refreshing),
            ("active\n", ActiveState::Active),
            ("bogus", ActiveState::Unknown),
            ("", ActiveState::Unknown),
        ] {
            assert_eq!(ActiveState::parse(s), want, "{s:?}");
            if want != ActiveState::Unknown {
                assert_eq!(serde_json::to_value(want).unwrap(), s.trim());
            }
        }
    }
}
