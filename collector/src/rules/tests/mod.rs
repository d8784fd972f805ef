//! Evaluation tables: `(now, observation) → transitions, next deadline,
//! active alerts`, time given explicitly.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::model::Metric;

mod config;

/// Any fixed wall time: tables count seconds from here.
pub(super) const T0: Millis = 1_700_000_000_000;

pub(super) fn at(secs: f64) -> Millis {
    T0 + (secs * 1000.0) as Millis
}

#[derive(Deserialize)]
pub(super) struct File {
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
}

/// The built-in rules with the `[[rules]]` of `toml` laid over them.
pub(super) fn rules(toml: &str) -> RuleSet {
    let file: File = toml::from_str(toml).expect("test TOML parses");
    build(&file.rules).expect("test rules are valid")
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Obs {
    /// A sample with these points.
    S(&'static [(&'static str, f64)]),
    /// Offline, last heard of at this many seconds.
    Off(f64),
    On,
    Tick,
}

/// One row: at `secs`, `obs` gives `want` transitions (`"key kind"`), then
/// the next deadline is `due` (seconds) and `active` the active alerts.
pub(super) struct Row {
    secs: f64,
    obs: Obs,
    want: &'static [&'static str],
    due: Option<f64>,
    active: &'static [&'static str],
}

pub(super) fn row(
    secs: f64,
    obs: Obs,
    want: &'static [&'static str],
    due: Option<f64>,
    active: &'static [&'static str],
) -> Row {
    Row {
        secs,
        obs,
        want,
        due,
        active,
    }
}

pub(super) struct Device {
    pub(super) id: DeviceId,
    labels: BTreeMap<String, String>,
}

pub(super) fn device(id: &str, labels: &[(&str, &str)]) -> Device {
    Device {
        id: DeviceId::new(id).expect("valid id"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

impl Device {
    pub(super) fn ctx(&self) -> DeviceCtx<'_> {
        DeviceCtx {
            id: &self.id,
            labels: &self.labels,
        }
    }
}

pub(super) fn key(rule: &str, instance: &Option<String>) -> String {
    match instance {
        Some(i) => format!("{rule}:{i}"),
        None => rule.to_string(),
    }
}

pub(super) fn show(t: &Transition) -> String {
    let k = key(&t.rule, &t.instance);
    let s = message::severity_name(t.severity);
    match t.kind {
        TransitionKind::Fired => format!("{k} fired {s}"),
        TransitionKind::Escalated { from } | TransitionKind::DeEscalated { from } => {
            format!("{k} {}->{s}", message::severity_name(from))
        }
        TransitionKind::Resolved => format!("{k} resolved {s}"),
    }
}

pub(super) fn points(list: &[(&str, f64)]) -> Vec<Point> {
    list.iter()
        .map(|(m, value)| Point {
            metric: Metric::parse(m).expect("valid metric"),
            value: *value,
        })
        .collect()
}

/// Evaluate one row; returns the transitions as shown.
pub(super) fn eval(
    set: &RuleSet,
    dev: &Device,
    state: &mut DeviceRules,
    r: &Row,
) -> Vec<Transition> {
    let now = at(r.secs);
    let pts;
    let obs = match r.obs {
        Obs::S(list) => {
            pts = points(list);
            Observation::Sample { points: &pts }
        }
        Obs::Off(since) => Observation::Presence {
            online: false,
            since: at(since),
        },
        Obs::On => Observation::Presence {
            online: true,
            since: now,
        },
        Obs::Tick => Observation::Tick,
    };
    let got = set.evaluate(&dev.ctx(), state, &obs, now);
    assert!(got.iter().all(|t| t.at == now), "transitions stamped now");
    got
}

/// Run a table, checking every row; returns all transitions.
pub(super) fn run(
    set: &RuleSet,
    dev: &Device,
    state: &mut DeviceRules,
    table: &[Row],
) -> Vec<Transition> {
    let mut all = Vec::new();
    for r in table {
        let got = eval(set, dev, state, r);
        let shown: Vec<String> = got.iter().map(show).collect();
        assert_eq!(
            shown, r.want,
            "transitions at {}s after {:?}",
            r.secs, r.obs
        );
        assert_eq!(
            state.next_deadline(),
            r.due.map(at),
            "deadline at {}s after {:?}",
            r.secs,
            r.obs
        );
        let active: Vec<String> = state
            .active()
            .iter()
            .map(|a| {
                format!(
                    "{} {}",
                    key(&a.rule, &a.instance),
                    message::severity_name(a.severity)
                )
            })
            .collect();
        assert_eq!(active, r.active, "active at {}s after {:?}", r.secs, r.obs);
        all.extend(got);
    }
    all
}

pub(super) fn pi() -> Device {
    device("pi-01", &[])
}

/// Built-in temperature: > 75 warning, > 80 critical, hysteresis 2, for 1m.
#[rustfmt::skip]
fn temperature_table() -> Vec<Row> {
    use Obs::*;
    vec![
        row(0.0, S(&[("temp", 76.0)]), &[], Some(60.0), &[]),
        row(30.0, S(&[("temp", 77.0)]), &[], Some(60.0), &[]),
        row(59.999, Tick, &[], Some(60.0), &[]),
        row(60.0, Tick, &["temperature fired warning"], None, &["temperature warning"]),
        // Critical waits its own minute, and a dip under 80 restarts it.
        row(70.0, S(&[("temp", 81.0)]), &[], Some(130.0), &["temperature warning"]),
        row(100.0, S(&[("temp", 79.0)]), &[], None, &["temperature warning"]),
        row(110.0, S(&[("temp", 82.0)]), &[], Some(170.0), &["temperature warning"]),
        row(169.0, S(&[("temp", 83.0)]), &[], Some(170.0), &["temperature warning"]),
        row(170.0, S(&[("temp", 83.0)]), &["temperature warning->critical"], None, &["temperature critical"]),
        // Hysteresis 2: critical holds down to 78 exclusive, warning to 73.
        row(180.0, S(&[("temp", 79.0)]), &[], None, &["temperature critical"]),
        row(190.0, S(&[("temp", 78.0)]), &["temperature critical->warning"], None, &["temperature warning"]),
        row(200.0, S(&[("temp", 74.0)]), &[], None, &["temperature warning"]),
        row(210.0, S(&[("temp", 73.0)]), &["temperature resolved warning"], None, &[]),
        // Straight to critical: one Fired at critical, not two alerts.
        row(300.0, S(&[("temp", 85.0)]), &[], Some(360.0), &[]),
        row(360.0, Tick, &["temperature fired critical"], None, &["temperature critical"]),
        row(370.0, S(&[("temp", 60.0)]), &["temperature resolved critical"], None, &[]),
    ]
}

#[test]
fn temperature_for_escalation_and_hysteresis() {
    let got = run(
        &rules(""),
        &pi(),
        &mut DeviceRules::default(),
        &temperature_table(),
    );
    let messages: Vec<(&str, f64)> = got.iter().map(|t| (t.message.as_str(), t.value)).collect();
    assert_eq!(
        messages,
        [
            ("temperature 77.0 °C", 77.0),
            ("temperature 83.0 °C", 83.0),
            ("temperature 78.0 °C", 78.0),
            ("temperature 73.0 °C", 73.0),
            ("temperature 85.0 °C", 85.0),
            ("temperature 60.0 °C", 60.0),
        ]
    );
}

#[test]
fn pending_for_is_cancelled_silently_and_fires_on_a_late_sample() {
    use Obs::*;
    #[rustfmt::skip]
    let table = [
        row(0.0, S(&[("temp", 76.0)]), &[], Some(60.0), &[]),
        row(30.0, S(&[("temp", 75.0)]), &[], None, &[]),
        row(60.0, Tick, &[], None, &[]),
        row(61.0, S(&[("temp", 76.0)]), &[], Some(121.0), &[]),
        // No Tick at 121: the next sample fires it, stamped when it came.
        row(150.0, S(&[("temp", 76.5)]), &["temperature fired warning"], None, &["temperature warning"]),
    ];
    let mut state = DeviceRules::default();
    let got = run(&rules(""), &pi(), &mut state, &table);
    assert_eq!(got[0].at, at(150.0));
    assert_eq!(state.active()[0].since, at(150.0));
}

#[test]
fn instances_are_separate_alerts_and_an_absent_one_stays() {
    use Obs::*;
    #[rustfmt::skip]
    let table = [
        row(0.0,
            S(&[("disk.pct:/", 93.0), ("disk.pct:/data", 96.0), ("disk.free:/", 1.5e9)]),
            &["disk_usage:/ fired warning", "disk_usage:/data fired critical", "disk_free:/ fired warning"],
            None,
            &["disk_usage:/data critical", "disk_free:/ warning", "disk_usage:/ warning"]),
        // /data unmounted: its alerts stay as they were.
        row(10.0, S(&[("disk.pct:/", 89.5)]), &[], None,
            &["disk_usage:/data critical", "disk_free:/ warning", "disk_usage:/ warning"]),
        row(20.0, S(&[("disk.pct:/", 89.0)]), &["disk_usage:/ resolved warning"], None,
            &["disk_usage:/data critical", "disk_free:/ warning"]),
        row(30.0,
            S(&[("disk.pct:/data", 40.0), ("disk.free:/", 2.5e9)]),
            &["disk_usage:/data resolved critical", "disk_free:/ resolved warning"],
            None,
            &[]),
    ];
    let mut state = DeviceRules::default();
    let got = run(&rules(""), &pi(), &mut state, &table);
    assert_eq!(got[2].message, "disk /: only 1.5 GB free");
    assert_eq!(got[1].message, "disk /data 96.0% full");
    assert_eq!(state, DeviceRules::default(), "nothing left to remember");
}

#[test]
fn offline_counts_from_last_heard_of() {
    use Obs::*;
    let table = [
        // Declared offline at 100 after silence since 0: fires at 300.
        row(100.0, Off(0.0), &[], Some(300.0), &[]),
        row(299.0, Tick, &[], Some(300.0), &[]),
        row(
            300.0,
            Tick,
            &["offline fired critical"],
            None,
            &["offline critical"],
        ),
        row(305.0, Off(0.0), &[], None, &["offline critical"]),
        row(400.0, On, &["offline resolved critical"], None, &[]),
        // Back before 5 minutes: cancelled, nothing said.
        row(500.0, Off(480.0), &[], Some(780.0), &[]),
        row(600.0, On, &[], None, &[]),
        // Silent for longer than `for` already when declared: fires at once.
        row(
            2000.0,
            Off(1000.0),
            &["offline fired critical"],
            None,
            &["offline critical"],
        ),
    ];
    let mut state = DeviceRules::default();
    let got = run(&rules(""), &pi(), &mut state, &table);
    assert_eq!(got[0].message, "pi-01 is offline");
    assert_eq!(state.active()[0].since, at(2000.0));
}

/// Under-voltage fires, the device goes away, comes back, clears.
#[rustfmt::skip]
fn suppression_table() -> Vec<Row> {
    use Obs::*;
    vec![
        row(0.0, S(&[("throttle.uv", 1.0), ("temp", 85.0)]), &["under_voltage fired critical"],
            Some(60.0), &["under_voltage critical"]),
        // Offline: held back, pending temperature forgotten.
        row(10.0, Off(5.0), &[], Some(305.0), &[]),
        row(20.0, S(&[("throttle.uv", 0.0)]), &[], Some(305.0), &[]),
        row(60.0, Tick, &[], Some(305.0), &[]),
        row(305.0, Tick, &["offline fired critical"], None, &["offline critical"]),
        // Back: under-voltage reappears without a second Fired.
        row(400.0, On, &["offline resolved critical"], None, &["under_voltage critical"]),
        row(410.0, S(&[("throttle.uv", 0.0), ("temp", 85.0)]), &["under_voltage resolved critical"],
            Some(470.0), &[]),
        row(470.0, Tick, &["temperature fired critical"], None, &["temperature critical"]),
    ]
}

#[test]
fn alerts_are_held_back_while_offline() {
    run(
        &rules(""),
        &pi(),
        &mut DeviceRules::default(),
        &suppression_table(),
    );
}

#[test]
fn levels_below_with_hysteresis_above() {
    use Obs::*;
    let set = rules(
        r#"
        [[rules]]
        name = "low_memory"
        metric = "mem.avail"
        op = "<"
        warning = "500MB"
        critical = "100MB"
        hysteresis = "50MB"
        "#,
    );
    #[rustfmt::skip]
    let table = [
        row(0.0, S(&[("mem.avail", 4e8)]), &["low_memory fired warning"], None, &["low_memory warning"]),
        row(1.0, S(&[("mem.avail", 9e7)]), &["low_memory warning->critical"], None, &["low_memory critical"]),
        row(2.0, S(&[("mem.avail", 1.4e8)]), &[], None, &["low_memory critical"]),
        row(3.0, S(&[("mem.avail", 1.5e8)]), &["low_memory critical->warning"], None, &["low_memory warning"]),
        row(4.0, S(&[("mem.avail", 5.5e8)]), &["low_memory resolved warning"], None, &[]),
    ];
    let got = run(&set, &pi(), &mut DeviceRules::default(), &table);
    assert_eq!(
        got[0].message,
        "low_memory: mem.avail is 400.0 MB (< 500.0 MB)"
    );
}

#[test]
fn equality_levels_are_independent() {
    use Obs::*;
    let set = rules(
        r#"
        [[rules]]
        name = "dropped"
        metric = "agent.dropped"
        op = "!="
        info = 0
        "#,
    );
    #[rustfmt::skip]
    let table = [
        row(0.0, S(&[("agent.dropped", 0.0)]), &[], None, &[]),
        row(1.0, S(&[("agent.dropped", 3.0)]), &["dropped fired info"], None, &["dropped info"]),
        row(2.0, S(&[("agent.dropped", 0.0)]), &["dropped resolved info"], None, &[]),
    ];
    run(&set, &pi(), &mut DeviceRules::default(), &table);
}

#[test]
fn state_round_trips_through_json_mid_scenario() {
    for table in [temperature_table(), suppression_table()] {
        let set = rules("");
        let dev = pi();
        let mut straight = DeviceRules::default();
        let want: Vec<Transition> = table
            .iter()
            .flat_map(|r| eval(&set, &dev, &mut straight, r))
            .collect();
        for cut in 1..table.len() {
            let mut state = DeviceRules::default();
            let mut got = Vec::new();
            for r in &table[..cut] {
                got.extend(eval(&set, &dev, &mut state, r));
            }
            let json = serde_json::to_string(&state).expect("serialises");
            let mut restored: DeviceRules = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(restored, state, "cut {cut}: {json}");
            for r in &table[cut..] {
                got.extend(eval(&set, &dev, &mut restored, r));
            }
            assert_eq!(got, want, "cut after row {cut}");
        }
    }
}

/// Built-in container rules: an unexpected exit and a failing health check
/// are critical at once; a clean stop, a restart or removal clear them.
#[rustfmt::skip]
#[test]
fn container_exits_and_health() {
    use Obs::*;
    let set = rules("");
    let mut state = DeviceRules::default();
    run(&set, &pi(), &mut state, &[
        row(0.0, S(&[("container.exited:web", 0.0), ("container.unhealthy:web", 0.0)]), &[], None, &[]),
        row(1.0, S(&[("container.exited:web", 1.0)]), &["container_exited:web fired critical"], None,
            &["container_exited:web critical"]),
        // Not reported (no verdict): the alert stays.
        row(2.0, S(&[("container.up:web", 0.0)]), &[], None, &["container_exited:web critical"]),
        row(3.0, S(&[("container.exited:web", 0.0)]), &["container_exited:web resolved critical"], None, &[]),
        row(4.0, S(&[("container.unhealthy:db", 1.0)]), &["container_unhealthy:db fired critical"], None,
            &["container_unhealthy:db critical"]),
        row(5.0, S(&[("container.unhealthy:db", 0.0)]), &["container_unhealthy:db resolved critical"], None, &[]),
    ]);
}

/// Built-in `container_restarts`: more than 3 restarts within an hour.
#[rustfmt::skip]
#[test]
fn restarts_within_a_window() {
    use Obs::*;
    let set = rules("");
    let mut state = DeviceRules::default();
    run(&set, &pi(), &mut state, &[
        // Restarts before the collector saw the container do not count.
        row(0.0, S(&[("container.restarts:web", 10.0)]), &[], None, &[]),
        row(60.0, S(&[("container.restarts:web", 12.0)]), &[], None, &[]),
        row(120.0, S(&[("container.restarts:web", 13.0)]), &[], None, &[]),
        row(180.0, S(&[("container.restarts:web", 14.0)]), &["container_restarts:web fired warning"], None,
            &["container_restarts:web warning"]),
        // A reset (docker rm and run again) adds nothing.
        row(240.0, S(&[("container.restarts:web", 0.0)]), &[], None, &["container_restarts:web warning"]),
        // Until an hour after the rise at 60 s, four restarts are inside...
        row(3650.0, S(&[("container.restarts:web", 0.0)]), &[], None, &["container_restarts:web warning"]),
        // ...then two: no longer more than three.
        row(3660.0, S(&[("container.restarts:web", 0.0)]), &["container_restarts:web resolved warning"], None, &[]),
    ]);
    assert!(!state.is_empty(), "the counter's baseline is remembered");
    let back: DeviceRules = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(back, state);
}

#[test]
fn increase_table() {
    let h = 3_600_000;
    let mut hist = Vec::new();
    let seq = [
        (0, 5.0, 0.0),
        (1_000, 5.0, 0.0),
        (2_000, 7.0, 2.0),
        (3_000, 6.0, 2.0),
        (4_000, 9.0, 5.0),
        (2_000 + h, 9.0, 3.0),
        (4_000 + h, 9.0, 0.0),
    ];
    for (t, v, want) in seq {
        assert_eq!(eval::increase(&mut hist, v, t, h), want, "at {t}");
    }
    assert_eq!(hist.len(), 1, "only the baseline is left: {hist:?}");
}
