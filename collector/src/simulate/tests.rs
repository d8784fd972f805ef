//! The simulated device against its promises: sequence numbers, realistic
//! ranges, scenarios reaching the collector's thresholds in time, and
//! determinism. Pure: the clock is a number the test advances.

use picket_protocol::{ActiveState, Event, EventKind, Sample};

use super::device::{Link, Record, SimDevice};
use super::scenario::{Scenario, Schedule};
use super::{SimConfig, device_id, phase};
use crate::model::{Millis, flatten};

const T0: Millis = 1_717_171_717_000;
const INTERVAL: u64 = 2_000;

fn device(index: usize, seed: u64, schedule: Option<&Schedule>, devices: usize) -> SimDevice {
    let plan = schedule.and_then(|s| s.plan(index, devices));
    let id = device_id("sim", index).expect("id");
    SimDevice::new(id, index, seed, plan, T0)
}

/// `ticks` ticks at 2 s; every tick's records and link.
fn run(d: &mut SimDevice, ticks: u64) -> Vec<(u64, Link, Vec<Record>)> {
    (0..ticks)
        .map(|t| {
            let tick = d.tick(T0 + t * INTERVAL);
            (t, tick.link, tick.records)
        })
        .collect()
}

fn samples(out: &[(u64, Link, Vec<Record>)]) -> Vec<(u64, &Sample)> {
    out.iter()
        .flat_map(|(t, _, rs)| {
            rs.iter().filter_map(move |r| match r {
                Record::Sample(s) => Some((*t, &**s)),
                Record::Event(_) => None,
            })
        })
        .collect()
}

fn events(out: &[(u64, Link, Vec<Record>)]) -> Vec<(u64, &Event)> {
    out.iter()
        .flat_map(|(t, _, rs)| {
            rs.iter().filter_map(move |r| match r {
                Record::Event(e) => Some((*t, e)),
                Record::Sample(_) => None,
            })
        })
        .collect()
}

/// The only device of a schedule playing just `kind`, from tick 2.
fn player(kind: Scenario, scale: f64) -> (SimDevice, Schedule) {
    let schedule = Schedule {
        kinds: vec![kind],
        every: 1,
        start_after: 2,
        rest: 1_000,
        scale,
    };
    (device(0, 7, Some(&schedule), 1), schedule)
}

fn value(s: &Sample, metric: &str) -> f64 {
    flatten(s, &mut crate::model::MetricNames::default())
        .into_iter()
        .find(|p| p.metric.as_str() == metric)
        .map(|p| p.value)
        .unwrap_or_else(|| panic!("no {metric} in sample {}", s.seq))
}

#[test]
fn seq_rises_strictly_across_samples_and_events() {
    let schedule = Schedule {
        every: 1,
        start_after: 0,
        scale: 0.3,
        rest: 3,
        ..Schedule::default()
    };
    for index in 0..6 {
        let mut d = device(index, 3, Some(&schedule), 6);
        let out = run(&mut d, 300);
        let seqs: Vec<u64> = out
            .iter()
            .flat_map(|(_, _, rs)| rs.iter().map(Record::seq))
            .chain([d.stopping(T0 + 300 * INTERVAL).seq])
            .collect();
        // The silent one (index 4) is quiet most of the time.
        assert!(seqs.len() > 30, "device {index}: {} records", seqs.len());
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "device {index}: {seqs:?}"
        );
        // Events and samples of one tick share its stamp.
        for (_, _, rs) in &out {
            let stamps: Vec<(u64, u64)> = rs
                .iter()
                .map(|r| match r {
                    Record::Sample(s) => (s.ts, s.mono),
                    Record::Event(e) => (e.ts, e.mono),
                })
                .collect();
            assert!(stamps.windows(2).all(|w| w[0] == w[1]));
        }
    }
}

#[test]
fn starts_like_an_agent_and_stays_in_realistic_ranges() {
    let mut d = device(0, 1, None, 1);
    let out = run(&mut d, 200);
    let first = &out[0].2;
    assert!(matches!(
        first.first(),
        Some(Record::Event(Event {
            kind: EventKind::AgentStarted { .. },
            ..
        }))
    ));
    let all = samples(&out);
    assert_eq!(all.len(), 200);
    assert_eq!(
        all[0].1.cpu, None,
        "no CPU figure before a previous reading"
    );
    assert!(
        events(&out).len() == 1,
        "a quiet device raises no other event"
    );
    let mut prev: Option<&Sample> = None;
    for (_, s) in all {
        assert!(s.sync && !s.hist);
        if let Some(cpu) = s.cpu {
            assert!((5.0..=60.0).contains(&cpu), "cpu {cpu}");
        }
        let temp = value(s, "temp:cpu-thermal");
        assert!((45.0..=65.0).contains(&temp), "temp {temp}");
        let mem = value(s, "mem.pct");
        assert!((30.0..=60.0).contains(&mem), "mem {mem}");
        let root = value(s, "disk.pct:/");
        assert!((10.0..=60.0).contains(&root), "disk {root}");
        assert!(value(s, "disk.pct:/boot/firmware") < 20.0);
        assert_eq!(value(s, "throttle.uv"), 0.0);
        for unit in ["picket-agent.service", "kiosk.service", "nginx.service"] {
            assert_eq!(value(s, &format!("service:{unit}")), 1.0, "{unit}");
        }
        assert!(value(s, "agent.queue_records") <= 2.0);
        assert_eq!(s.thermal[0].kind, "cpu-thermal");
        let mounts: Vec<&str> = s.disks.iter().map(|d| d.mount.as_str()).collect();
        assert_eq!(mounts, ["/", "/boot/firmware"]);
        let ifaces: Vec<&str> = s.net.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(ifaces, ["eth0", "wlan0"]);
        if let Some(p) = prev {
            assert!(s.mono - p.mono == INTERVAL && s.ts - p.ts == INTERVAL);
            for (a, b) in p.net.iter().zip(&s.net) {
                assert!(b.rx_bytes > a.rx_bytes && b.tx_bytes > a.tx_bytes);
            }
        }
        prev = Some(s);
    }
}

#[test]
fn models_are_a_mix_led_by_the_pi_4() {
    let models: Vec<&str> = (0..200).map(|i| device(i, 5, None, 200).model()).collect();
    let pi4 = models
        .iter()
        .filter(|m| m.starts_with("Raspberry Pi 4"))
        .count();
    let pi3 = models
        .iter()
        .filter(|m| m.starts_with("Raspberry Pi 3"))
        .count();
    let pi5 = models
        .iter()
        .filter(|m| m.starts_with("Raspberry Pi 5"))
        .count();
    assert_eq!(pi3 + pi4 + pi5, 200);
    assert!(pi4 > 100 && pi3 > 5 && pi5 > 5, "{pi3} {pi4} {pi5}");
}

#[test]
fn overheat_crosses_80_holds_and_cools_below_70() {
    for scale in [1.0, 0.5] {
        let (mut d, s) = player(Scenario::Overheat, scale);
        let len = u64::from(s.len(Scenario::Overheat));
        let out = run(&mut d, 2 + len + 5);
        let temps: Vec<(u64, f64)> = samples(&out)
            .iter()
            .map(|(t, s)| (*t, value(s, "temp")))
            .collect();
        let hot: Vec<u64> = temps
            .iter()
            .filter(|(_, c)| *c > 80.0)
            .map(|(t, _)| *t)
            .collect();
        assert!(hot.len() as u64 >= len / 3, "scale {scale}: hot {hot:?}");
        let (first_hot, last_hot) = (hot[0], hot[hot.len() - 1]);
        assert!(first_hot < 2 + len / 2, "scale {scale}: too late");
        let cooled = temps
            .iter()
            .find(|(t, c)| *t > last_hot && *c < 70.0)
            .expect("cools below 70");
        assert!(
            cooled.0 < 2 + len,
            "scale {scale}: cools within the scenario"
        );
        // The firmware throttles while hot: a Throttle event on the way up
        // and one on the way down.
        let throttle: Vec<(u64, bool)> = events(&out)
            .iter()
            .filter_map(|(t, e)| match &e.kind {
                EventKind::Throttle { new, .. } => Some((*t, new.throttled)),
                _ => None,
            })
            .collect();
        assert_eq!(
            throttle,
            [(first_hot, true), (last_hot + 1, false)],
            "scale {scale}"
        );
    }
}

#[test]
fn disk_fill_passes_90_then_95_with_under_2_gb_free_then_clears() {
    for scale in [1.0, 0.3] {
        let (mut d, s) = player(Scenario::DiskFill, scale);
        let len = u64::from(s.len(Scenario::DiskFill));
        let out = run(&mut d, 2 + len + 3);
        let all = samples(&out);
        let at = |pct: f64| {
            all.iter()
                .find(|(_, s)| value(s, "disk.pct:/") > pct)
                .map(|(t, _)| *t)
        };
        let (p90, p95) = (at(90.0).expect("past 90"), at(95.0).expect("past 95"));
        assert!(p90 <= p95 && p95 < 2 + len, "scale {scale}: {p90} {p95}");
        let full = all.iter().find(|(t, _)| *t == p95).expect("sample").1;
        assert!(value(full, "disk.free:/") < 2e9);
        let after = all.last().expect("sample").1;
        assert!(value(after, "disk.pct:/") < 60.0, "cleaned up");
    }
}

#[test]
fn power_loss_raises_under_voltage_and_clears_it() {
    let (mut d, s) = player(Scenario::PowerLoss, 1.0);
    let len = u64::from(s.len(Scenario::PowerLoss));
    let out = run(&mut d, 2 + len + 3);
    let uv: Vec<(u64, bool, bool)> = events(&out)
        .iter()
        .filter_map(|(t, e)| match &e.kind {
            EventKind::Throttle { old, new } => {
                assert_eq!(old.map(|o| o.uv), Some(!new.uv));
                Some((*t, new.uv, new.uv_boot))
            }
            _ => None,
        })
        .collect();
    assert_eq!(uv, [(2, true, true), (2 + len, false, true)]);
    let all = samples(&out);
    let during = all.iter().find(|(t, _)| *t == 3).expect("sample").1;
    assert_eq!(value(during, "throttle.uv"), 1.0);
    assert_eq!(value(during, "throttle.throttled"), 1.0);
    assert_eq!(during.throttle.and_then(|t| t.raw), Some(0x50005));
    let after = all.last().expect("sample").1;
    assert_eq!(value(after, "throttle.uv"), 0.0);
    assert_eq!(after.throttle.and_then(|t| t.raw), Some(0x50000));
}

#[test]
fn service_down_fails_kiosk_and_restarts_it() {
    let (mut d, s) = player(Scenario::ServiceDown, 1.0);
    let len = u64::from(s.len(Scenario::ServiceDown));
    let out = run(&mut d, 2 + len + 2);
    let changes: Vec<(u64, ActiveState, Option<ActiveState>)> = events(&out)
        .iter()
        .filter_map(|(t, e)| match &e.kind {
            EventKind::Service {
                unit,
                active,
                old_active,
                ..
            } => {
                assert_eq!(unit, "kiosk.service");
                Some((*t, *active, *old_active))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (2, ActiveState::Failed, Some(ActiveState::Active)),
            (1 + len, ActiveState::Activating, Some(ActiveState::Failed)),
            (2 + len, ActiveState::Active, Some(ActiveState::Activating)),
        ]
    );
    let down = samples(&out)
        .into_iter()
        .find(|(t, _)| *t == 3)
        .expect("sample")
        .1;
    assert_eq!(value(down, "service:kiosk.service"), 0.0);
    assert_eq!(value(down, "service:nginx.service"), 1.0);
}

#[test]
fn silent_publishes_nothing_and_drop_cuts_the_link() {
    for (kind, link, records) in [
        (Scenario::Silent, Link::Silent, false),
        (Scenario::Drop, Link::Down, true),
    ] {
        let (mut d, s) = player(kind, 0.5);
        let len = u64::from(s.len(kind));
        let out = run(&mut d, 2 + len + 2);
        for (t, l, rs) in &out {
            let inside = (2..2 + len).contains(t);
            assert_eq!(*l, if inside { link } else { Link::Up }, "{kind} tick {t}");
            // A hung agent samples nothing; a cut-off one keeps sampling.
            assert_eq!(!rs.is_empty(), !inside || records, "{kind} tick {t}");
        }
    }
}

#[test]
fn silent_first_still_announces_the_start() {
    let schedule = Schedule {
        kinds: vec![Scenario::Silent],
        every: 1,
        start_after: 0,
        rest: 10,
        scale: 0.02,
    };
    let mut d = device(0, 1, Some(&schedule), 1);
    let out = run(&mut d, 8);
    let first = out
        .iter()
        .find(|(_, _, rs)| !rs.is_empty())
        .expect("records");
    assert!(matches!(
        first.2.first(),
        Some(Record::Event(Event {
            kind: EventKind::AgentStarted { .. },
            ..
        }))
    ));
}

#[test]
fn same_seed_same_fleet_other_seed_other_fleet() {
    let schedule = Schedule::default();
    let a: Vec<_> = (0..16)
        .map(|i| run(&mut device(i, 42, Some(&schedule), 16), 150))
        .collect();
    let b: Vec<_> = (0..16)
        .map(|i| run(&mut device(i, 42, Some(&schedule), 16), 150))
        .collect();
    assert_eq!(a, b);
    let c = run(&mut device(0, 43, Some(&schedule), 16), 150);
    assert_ne!(a[0], c);
    // Devices of one fleet differ from each other too.
    assert_ne!(a[0][10].2, a[1][10].2);
}

#[test]
fn phases_spread_devices_over_the_interval() {
    let interval = std::time::Duration::from_secs(10);
    let offsets: Vec<u128> = (0..4).map(|i| phase(i, 4, interval).as_millis()).collect();
    assert_eq!(offsets, [0, 2_500, 5_000, 7_500]);
}

#[test]
fn config_validation_names_the_problem() {
    let broker = picket_config::broker::resolve(&picket_config::RawBroker::default(), "sim")
        .expect("default broker");
    let ok = SimConfig::new(broker, 25, std::time::Duration::from_secs(2));
    assert!(ok.validate().is_ok());
    let bad = [
        SimConfig {
            devices: 0,
            ..ok.clone()
        },
        SimConfig {
            interval: std::time::Duration::ZERO,
            ..ok.clone()
        },
        SimConfig {
            id_prefix: "a/b".into(),
            ..ok.clone()
        },
        SimConfig {
            schedule: Schedule {
                every: 0,
                ..Schedule::default()
            },
            ..ok.clone()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
    // A schedule is only checked when scenarios are on.
    let off = SimConfig {
        scenarios: false,
        schedule: Schedule {
            kinds: vec![],
            ..Schedule::default()
        },
        ..ok
    };
    assert!(off.validate().is_ok());
}
