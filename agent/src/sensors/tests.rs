//! The sensors against a Raspberry Pi 4 fixture tree and against an empty
//! root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use picket_protocol::{ActiveState, EventKind, Throttle, ThrottleSource};

use super::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi4")
}

/// A private, writable copy of the fixture.
fn fixture_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture(), dir.path());
    dir
}

fn stamp(sync: bool) -> Stamp {
    Stamp {
        ts: 1_763_700_000_000,
        mono: 350_735_470,
        boot: "6c1e4f0a-3b5d-4c2e-9f1a-7d8e2b4c6a10".into(),
        sync,
    }
}

fn sensors(root: &Path) -> Sensors {
    Sensors::new(SensorConfig::new(root))
}

#[test]
fn sensors_can_move_to_a_blocking_thread() {
    fn send<T: Send>() {}
    send::<Sensors>();
    send::<clock::SystemClock>();
}

#[test]
fn pi4_identity() {
    let root = fixture();
    assert_eq!(
        identity::model(&root).as_deref(),
        Some("Raspberry Pi 4 Model B Rev 1.4")
    );
    assert_eq!(
        identity::default_device_id(&root).unwrap().as_str(),
        "10000000a1b2c3d4"
    );
    assert_eq!(
        identity::boot_id(&root).as_deref(),
        Some("6c1e4f0a-3b5d-4c2e-9f1a-7d8e2b4c6a10")
    );
    assert_eq!(
        clock::SystemClock::new(&root).stamp().boot,
        stamp(false).boot
    );
}

#[test]
fn pi4_first_sample() {
    let (s, events) = sensors(&fixture()).sample(&stamp(true));
    assert!(events.is_empty(), "{events:?}");
    assert_eq!((s.seq, s.hist, s.agent.is_none()), (0, false, true));
    assert_eq!(
        (s.ts, s.mono, s.sync),
        (1_763_700_000_000, 350_735_470, true)
    );
    assert_eq!(s.boot, "6c1e4f0a-3b5d-4c2e-9f1a-7d8e2b4c6a10");
    assert_eq!(s.cpu, None, "a percentage needs two reads");
    assert_eq!(s.uptime, Some(350735));

    let load = s.load.unwrap();
    assert_eq!((load.m1, load.m5, load.m15), (0.52, 0.58, 0.59));

    let mem = s.mem.unwrap();
    assert_eq!(mem.total, 3884428 * 1024);
    assert_eq!(mem.avail, 3352000 * 1024);
    assert_eq!(mem.used, 532428 * 1024);
    assert!((mem.pct - 13.7067).abs() < 0.001, "{}", mem.pct);
    let swap = s.swap.unwrap();
    assert_eq!(
        (swap.total, swap.avail, swap.used),
        (102396 * 1024, 92156 * 1024, 10240 * 1024)
    );

    let thermal: Vec<_> = s
        .thermal
        .iter()
        .map(|t| (t.zone.as_str(), t.kind.as_str(), t.c))
        .collect();
    assert_eq!(thermal, [("thermal_zone0", "cpu-thermal", 48.312)]);

    let t = s.throttle.unwrap();
    assert_eq!((t.src, t.raw), (ThrottleSource::Firmware, Some(0x50005)));
    assert!(t.uv && t.throttled && t.uv_boot && t.throttled_boot);
    assert!(!t.capped && !t.capped_boot && !t.soft_temp && !t.soft_temp_boot);

    let names: Vec<_> = s.net.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["eth0", "wlan0"]);
    let eth = &s.net[0];
    assert_eq!(
        (eth.rx_bytes, eth.rx_packets, eth.rx_dropped),
        (987654321, 812345, 12)
    );
    assert_eq!((eth.tx_bytes, eth.tx_packets), (123456789, 456789));
    let wlan = &s.net[1];
    assert_eq!((wlan.rx_errors, wlan.tx_errors, wlan.tx_dropped), (1, 2, 4));

    let disks: Vec<_> = s
        .disks
        .iter()
        .map(|d| (d.mount.as_str(), d.fs.as_str()))
        .collect();
    assert_eq!(disks, [("/", "ext4"), ("/boot/firmware", "vfat")]);
    for d in &s.disks {
        assert!(
            d.total > 0 && d.used <= d.total && d.free <= d.total,
            "{d:?}"
        );
        assert!((0.0..=100.0).contains(&d.pct), "{d:?}");
    }
    assert!(s.services.is_empty());

    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("null"), "{json}");
}

#[test]
fn pi4_cpu_percent_from_two_snapshots() {
    let dir = fixture_copy();
    let mut sensors = sensors(dir.path());
    assert_eq!(sensors.sample(&stamp(true)).0.cpu, None);
    // +600 busy jiffies (user 400, system 150, softirq 50), +400 idle
    // (idle 380, iowait 20): 60 % busy.
    fs::write(
        dir.path().join("proc/stat"),
        "cpu  10400 200 3150 80380 520 0 350 0 0 0\ncpu0 1 2 3 4\n",
    )
    .unwrap();
    assert_eq!(sensors.sample(&stamp(true)).0.cpu, Some(60.0));
    // Unchanged counters: no time elapsed, no percentage rather than NaN.
    assert_eq!(sensors.sample(&stamp(true)).0.cpu, None);
}

#[test]
fn pi4_throttle_change_emits_one_event() {
    let dir = fixture_copy();
    let mut sensors = sensors(dir.path());
    let (first, events) = sensors.sample(&stamp(true));
    assert!(events.is_empty());
    fs::write(
        dir.path()
            .join("sys/devices/platform/soc/soc:firmware/get_throttled"),
        "0\n",
    )
    .unwrap();
    let (second, events) = sensors.sample(&stamp(true));
    assert_eq!(second.throttle, Some(Throttle::from_firmware(0)));
    assert_eq!(
        events,
        [EventKind::Throttle {
            old: first.throttle,
            new: Throttle::from_firmware(0)
        }]
    );
    assert!(sensors.sample(&stamp(true)).1.is_empty());
}

#[test]
fn pi4_hwmon_fallback_without_get_throttled() {
    let dir = fixture_copy();
    fs::remove_file(
        dir.path()
            .join("sys/devices/platform/soc/soc:firmware/get_throttled"),
    )
    .unwrap();
    let hwmon = dir.path().join("sys/class/hwmon/hwmon2");
    fs::create_dir_all(&hwmon).unwrap();
    fs::write(hwmon.join("name"), "rpi_volt\n").unwrap();
    fs::write(hwmon.join("in0_lcrit_alarm"), "1\n").unwrap();
    let t = sensors(dir.path()).sample(&stamp(true)).0.throttle.unwrap();
    assert_eq!(
        t,
        Throttle {
            src: ThrottleSource::Hwmon,
            raw: None,
            uv: true,
            capped: false,
            throttled: false,
            soft_temp: false,
            uv_boot: true,
            capped_boot: false,
            throttled_boot: false,
            soft_temp_boot: false,
        }
    );
}

/// A stand-in for `systemctl` that records its arguments and prints the
/// canned `show` output in `state`.
fn fake_systemctl(dir: &Path, state: &str) -> PathBuf {
    fs::write(dir.join("state"), state).unwrap();
    let script = dir.join("systemctl");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > '{d}/args'\ncat '{d}/state'\n",
            d = dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn pi4_services_through_systemctl() {
    let dir = tempfile::tempdir().unwrap();
    let running = "Id=kiosk.service\nLoadState=loaded\nActiveState=active\nSubState=running\n\n\
Id=docker.service\nLoadState=loaded\nActiveState=active\nSubState=running\n";
    let mut cfg = SensorConfig::new(fixture());
    cfg.systemctl = fake_systemctl(dir.path(), running);
    cfg.services = vec!["kiosk".into(), "docker.service".into()];
    let mut sensors = Sensors::new(cfg);

    let (s, events) = sensors.sample(&stamp(true));
    assert!(events.is_empty());
    let states: Vec<_> = s
        .services
        .iter()
        .map(|s| (s.unit.as_str(), s.active, s.sub.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("kiosk", ActiveState::Active, "running"),
            ("docker.service", ActiveState::Active, "running")
        ]
    );
    let args = fs::read_to_string(dir.path().join("args")).unwrap();
    assert_eq!(
        args.trim(),
        "show --property=Id,LoadState,ActiveState,SubState -- kiosk docker.service"
    );

    fs::write(
        dir.path().join("state"),
        running.replacen(
            "ActiveState=active\nSubState=running",
            "ActiveState=failed\nSubState=failed",
            1,
        ),
    )
    .unwrap();
    let (s, events) = sensors.sample(&stamp(true));
    assert_eq!(s.services[0].active, ActiveState::Failed);
    assert_eq!(
        events,
        [EventKind::Service {
            unit: "kiosk".into(),
            active: ActiveState::Failed,
            sub: "failed".into(),
            old_active: Some(ActiveState::Active),
            old_sub: Some("running".into()),
        }]
    );
}

#[test]
fn clock_synced_event_on_false_to_true_only() {
    let mut sensors = sensors(&fixture());
    assert!(sensors.sample(&stamp(false)).1.is_empty());
    assert!(sensors.sample(&stamp(false)).1.is_empty());
    assert_eq!(sensors.sample(&stamp(true)).1, [EventKind::ClockSynced]);
    assert!(sensors.sample(&stamp(true)).1.is_empty());

    let mut already = self::sensors(&fixture());
    assert!(
        already.sample(&stamp(true)).1.is_empty(),
        "synced at start is no change"
    );
}

#[test]
fn empty_root_has_every_group_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SensorConfig::new(dir.path());
    cfg.services = vec!["kiosk".into()];
    cfg.systemctl = dir.path().join("no-systemctl");
    let mut sensors = Sensors::new(cfg);
    for _ in 0..2 {
        let (s, events) = sensors.sample(&stamp(false));
        assert!(events.is_empty());
        assert_eq!(
            (s.cpu, s.load, s.mem, s.swap, s.uptime, s.throttle),
            (None, None, None, None, None, None)
        );
        assert!(s.disks.is_empty() && s.net.is_empty() && s.thermal.is_empty());
        assert_eq!(s.services[0].active, ActiveState::Unknown);
    }
    assert!(identity::model(dir.path()).is_none());
    assert!(identity::default_device_id(dir.path()).is_err());
}

#[test]
fn garbage_everywhere_does_not_panic() {
    let dir = fixture_copy();
    let junk = "\u{0}\u{1}garbage\n\n:::\n-1 NaN inf\n";
    for file in [
        "proc/stat",
        "proc/loadavg",
        "proc/meminfo",
        "proc/net/dev",
        "proc/uptime",
        "proc/mounts",
        "proc/cpuinfo",
        "sys/class/thermal/thermal_zone0/temp",
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "sys/firmware/devicetree/base/serial-number",
        "etc/machine-id",
    ] {
        fs::write(dir.path().join(file), junk).unwrap();
    }
    let mut sensors = sensors(dir.path());
    for _ in 0..2 {
        let (s, _) = sensors.sample(&stamp(true));
        assert_eq!(
            (s.cpu, s.load, s.mem, s.uptime, s.throttle),
            (None, None, None, None, None)
        );
        assert!(s.disks.is_empty() && s.net.is_empty() && s.thermal.is_empty());
        serde_json::to_string(&s).unwrap();
    }
    assert!(identity::default_device_id(dir.path()).is_err());
}
