//! The collector's flat view of a sample: named numeric values.
//!
//! History, rules, the API and `/metrics` all speak of a metric by one
//! string: a name, and for per-instance metrics the instance after a colon
//! (`disk.pct:/data`, `temp:cpu-thermal`, `service:nginx.service`). The
//! names are the contract with users (rule selectors, `?metric=` in the
//! API), so they are listed once here, in [`METRICS`].

// foldhash: a lookup a point of every sample.
use foldhash::HashMap;
use std::fmt;
use std::sync::Arc;

use picket_protocol::{ActiveState, ContainerState, Engine, EventKind, Health, Sample};

/// Unix time in milliseconds.
pub type Millis = u64;

/// Every metric name a sample is flattened into, with its unit and meaning.
/// Names marked "per X" carry an instance: `name:instance`.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("cpu", "%", "CPU busy since the previous sample"),
    ("load.1", "", "load average, 1 minute"),
    ("load.5", "", "load average, 5 minutes"),
    ("load.15", "", "load average, 15 minutes"),
    ("mem.pct", "%", "memory in use"),
    ("mem.used", "bytes", "memory in use"),
    ("mem.avail", "bytes", "memory available"),
    ("swap.pct", "%", "swap in use"),
    ("uptime", "s", "time since boot"),
    ("disk.pct", "%", "per mount point: space in use"),
    ("disk.free", "bytes", "per mount point: space available"),
    (
        "net.rx_bytes",
        "bytes",
        "per interface: received since boot",
    ),
    ("net.tx_bytes", "bytes", "per interface: sent since boot"),
    (
        "net.errors",
        "",
        "per interface: receive and send errors since boot",
    ),
    ("temp", "°C", "hottest thermal zone"),
    ("temp", "°C", "per thermal zone type: temperature"),
    ("throttle.uv", "0/1", "under-voltage now"),
    ("throttle.throttled", "0/1", "throttled now"),
    ("throttle.capped", "0/1", "ARM frequency capped now"),
    ("throttle.soft_temp", "0/1", "soft temperature limit now"),
    (
        "service",
        "0/1",
        "per systemd unit: 1 when active (or reloading)",
    ),
    (
        "agent.queue_records",
        "",
        "records waiting in the agent's disk queue",
    ),
    (
        "agent.queue_bytes",
        "bytes",
        "bytes waiting in the agent's disk queue",
    ),
    (
        "agent.oldest_unsent",
        "s",
        "age of the oldest unsent record",
    ),
    (
        "agent.dropped",
        "",
        "records the agent's queue dropped since created",
    ),
    (
        "docker.up",
        "0/1",
        "1 while the agent can reach the Docker engine",
    ),
    ("container.up", "0/1", "per container: 1 when running"),
    (
        "container.exited",
        "0/1",
        "per container: 1 when it stopped without being asked (exit, crash, OOM kill), \
         0 when running or stopped on request",
    ),
    (
        "container.unhealthy",
        "0/1",
        "per container: 1 when its health check fails",
    ),
    (
        "container.restarts",
        "",
        "per container: restarts by the engine's restart policy",
    ),
    (
        "container.cpu",
        "%",
        "per container: CPU busy (100 = one CPU), with docker.stats_interval",
    ),
    (
        "container.mem",
        "bytes",
        "per container: memory in use, with docker.stats_interval",
    ),
];

/// A metric: `name` or `name:instance`. Shared, so the copies a sample's
/// points go through (live values, rules, history) cost no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metric(Arc<str>);

impl Metric {
    pub fn new(name: &str) -> Self {
        Metric(name.into())
    }

    pub fn with_instance(name: &str, instance: &str) -> Self {
        Metric(format!("{name}:{instance}").into())
    }

    /// Parse a metric as written by a user (API, rule); refuses empty
    /// parts and control characters.
    pub fn parse(s: &str) -> Result<Self, MetricError> {
        let (name, instance) = match s.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            return Err(MetricError::Name(s.to_string()));
        }
        if instance.is_some_and(|i| i.is_empty() || i.chars().any(char::is_control)) {
            return Err(MetricError::Instance(s.to_string()));
        }
        Ok(Metric(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(n, _)| n)
    }

    pub fn instance(&self) -> Option<&str> {
        self.0.split_once(':').map(|(_, i)| i)
    }
}

/// A metric as written that [`Metric::parse`] refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{0:?} is not a metric name (e.g. temp, disk.pct:/)")]
    Name(String),
    #[error("{0:?} has an empty or invalid instance after ':'")]
    Instance(String),
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: Metric,
    pub value: f64,
}

/// The metrics a fleet's samples name, made once each: a fleet names the
/// same few hundred over and over (the same mounts, interfaces and units).
/// Bounded: past [`MetricNames::MAX`] distinct instances (a device inventing
/// names), further ones are made afresh each time instead of remembered.
#[derive(Debug, Default)]
pub struct MetricNames {
    plain: HashMap<&'static str, Metric>,
    instances: HashMap<&'static str, HashMap<Box<str>, Metric>>,
    remembered: usize,
}

impl MetricNames {
    pub const MAX: usize = 100_000;

    fn plain(&mut self, name: &'static str) -> Metric {
        self.plain
            .entry(name)
            .or_insert_with(|| Metric::new(name))
            .clone()
    }

    fn instance(&mut self, name: &'static str, instance: &str) -> Metric {
        let known = self.instances.entry(name).or_default();
        if let Some(m) = known.get(instance) {
            return m.clone();
        }
        let m = Metric::with_instance(name, instance);
        if self.remembered < Self::MAX {
            self.remembered += 1;
            known.insert(instance.into(), m.clone());
        }
        m
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// A container's state as samples and events both report it.
struct ContainerView<'a> {
    name: &'a str,
    state: ContainerState,
    health: Option<Health>,
    restarts: u64,
    unexpected: Option<bool>,
}

impl ContainerView<'_> {
    fn points(&self) -> Vec<(Metric, f64)> {
        let m = |name: &str| Metric::with_instance(name, self.name);
        let mut out = vec![(
            m("container.up"),
            flag(self.state == ContainerState::Running),
        )];
        // Down without a verdict (the agent did not see it stop): no point,
        // so an alert raised when it was seen to crash stays as it was.
        let exited = match (self.state.is_down(), self.unexpected) {
            (true, Some(u)) => Some(flag(u)),
            (true, None) => None,
            (false, _) => Some(0.0),
        };
        if let Some(v) = exited {
            out.push((m("container.exited"), v));
        }
        out.push((
            m("container.unhealthy"),
            flag(self.health == Some(Health::Unhealthy)),
        ));
        out.push((m("container.restarts"), self.restarts as f64));
        out
    }
}

/// What a live event says about current values, so rules hear of a
/// container's change at once rather than with the next sample: the
/// points, and the container whose points no longer exist (removed, or out
/// of the agent's scope: its failure is over, so `exited` and `unhealthy`
/// read 0 once).
pub fn event_points(kind: &EventKind) -> (Vec<Point>, Option<&str>) {
    let points = |v: Vec<(Metric, f64)>| {
        v.into_iter()
            .map(|(metric, value)| Point { metric, value })
            .collect()
    };
    match kind {
        EventKind::Container {
            name,
            state,
            health,
            restarts,
            unexpected,
            ..
        } => {
            let view = ContainerView {
                name,
                state: *state,
                health: *health,
                restarts: *restarts,
                unexpected: *unexpected,
            };
            (points(view.points()), None)
        }
        EventKind::ContainerGone { name } => (
            points(vec![
                (Metric::with_instance("container.exited", name), 0.0),
                (Metric::with_instance("container.unhealthy", name), 0.0),
            ]),
            Some(name),
        ),
        EventKind::Docker { engine } => (
            points(vec![(
                Metric::new("docker.up"),
                flag(*engine == Engine::Available),
            )]),
            None,
        ),
        _ => (Vec::new(), None),
    }
}

/// Flatten a sample into points, in a stable order. Metric groups the
/// sample lacks produce no points (absent is not zero).
pub fn flatten(s: &Sample, names: &mut MetricNames) -> Vec<Point> {
    let mut out = Points(Vec::with_capacity(24));
    out.system(s, names);
    out.storage_and_net(s, names);
    out.hardware(s, names);
    out.services(s, names);
    out.containers(s);
    out.agent(s, names);
    out.0
}

/// The points of a sample as [`flatten`] gathers them, group by group.
struct Points(Vec<Point>);

impl Points {
    /// Only finite values: a NaN or an infinity is not a reading.
    fn push(&mut self, metric: Metric, value: f64) {
        if value.is_finite() {
            self.0.push(Point { metric, value });
        }
    }

    fn system(&mut self, s: &Sample, names: &mut MetricNames) {
        if let Some(cpu) = s.cpu {
            self.push(names.plain("cpu"), f64::from(cpu));
        }
        if let Some(l) = &s.load {
            self.push(names.plain("load.1"), f64::from(l.m1));
            self.push(names.plain("load.5"), f64::from(l.m5));
            self.push(names.plain("load.15"), f64::from(l.m15));
        }
        if let Some(m) = &s.mem {
            self.push(names.plain("mem.pct"), f64::from(m.pct));
            self.push(names.plain("mem.used"), m.used as f64);
            self.push(names.plain("mem.avail"), m.avail as f64);
        }
        if let Some(m) = &s.swap
            && m.total > 0
        {
            self.push(names.plain("swap.pct"), f64::from(m.pct));
        }
        if let Some(u) = s.uptime {
            self.push(names.plain("uptime"), u as f64);
        }
    }

    fn storage_and_net(&mut self, s: &Sample, names: &mut MetricNames) {
        for d in &s.disks {
            self.push(names.instance("disk.pct", &d.mount), f64::from(d.pct));
            self.push(names.instance("disk.free", &d.mount), d.free as f64);
        }
        for n in &s.net {
            self.push(names.instance("net.rx_bytes", &n.name), n.rx_bytes as f64);
            self.push(names.instance("net.tx_bytes", &n.name), n.tx_bytes as f64);
            self.push(
                names.instance("net.errors", &n.name),
                (n.rx_errors + n.tx_errors) as f64,
            );
        }
    }

    /// Temperatures (the hottest zone, then each) and the Pi's throttling
    /// flags.
    fn hardware(&mut self, s: &Sample, names: &mut MetricNames) {
        if let Some(hottest) = s.thermal.iter().map(|t| t.c).reduce(f32::max) {
            self.push(names.plain("temp"), f64::from(hottest));
        }
        for t in &s.thermal {
            self.push(names.instance("temp", &t.kind), f64::from(t.c));
        }
        if let Some(t) = &s.throttle {
            self.push(names.plain("throttle.uv"), flag(t.uv));
            self.push(names.plain("throttle.throttled"), flag(t.throttled));
            self.push(names.plain("throttle.capped"), flag(t.capped));
            self.push(names.plain("throttle.soft_temp"), flag(t.soft_temp));
        }
    }

    /// systemd units, then whether the Docker engine is up.
    fn services(&mut self, s: &Sample, names: &mut MetricNames) {
        for svc in &s.services {
            let up = matches!(svc.active, ActiveState::Active | ActiveState::Reloading);
            self.push(
                names.instance("service", &svc.unit),
                if up { 1.0 } else { 0.0 },
            );
        }
        if let Some(engine) = s.docker {
            self.push(Metric::new("docker.up"), flag(engine == Engine::Available));
        }
    }

    fn containers(&mut self, s: &Sample) {
        for c in &s.containers {
            let state = ContainerView {
                name: &c.name,
                state: c.state,
                health: c.health,
                restarts: c.restarts,
                unexpected: c.unexpected,
            };
            for (metric, value) in state.points() {
                self.push(metric, value);
            }
            if let Some(cpu) = c.cpu {
                self.push(
                    Metric::with_instance("container.cpu", &c.name),
                    f64::from(cpu),
                );
            }
            if let Some(mem) = c.mem {
                self.push(Metric::with_instance("container.mem", &c.name), mem as f64);
            }
        }
    }

    /// The agent's own queue.
    fn agent(&mut self, s: &Sample, names: &mut MetricNames) {
        if let Some(a) = &s.agent {
            self.push(names.plain("agent.queue_records"), a.queue_records as f64);
            self.push(names.plain("agent.queue_bytes"), a.queue_bytes as f64);
            if let Some(ms) = a.oldest_unsent_ms {
                self.push(names.plain("agent.oldest_unsent"), ms as f64 / 1000.0);
            }
            self.push(names.plain("agent.dropped"), a.dropped as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_protocol::{Container, Disk, Memory, Service, Thermal, Throttle};

    fn sample() -> Sample {
        Sample {
            seq: 1,
            ts: 1_700_000_000_000,
            mono: 5_000,
            boot: "b".into(),
            sync: true,
            hist: false,
            cpu: Some(12.5),
            load: None,
            mem: Some(Memory {
                total: 100,
                used: 40,
                avail: 60,
                pct: 40.0,
            }),
            swap: Some(Memory {
                total: 0,
                used: 0,
                avail: 0,
                pct: 0.0,
            }),
            uptime: None,
            disks: vec![Disk {
                mount: "/".into(),
                fs: "ext4".into(),
                total: 1000,
                used: 930,
                free: 70,
                pct: 93.0,
            }],
            net: vec![],
            thermal: vec![
                Thermal {
                    zone: "thermal_zone0".into(),
                    kind: "cpu-thermal".into(),
                    c: 61.5,
                },
                Thermal {
                    zone: "thermal_zone1".into(),
                    kind: "gpu-thermal".into(),
                    c: 70.0,
                },
            ],
            throttle: Some(Throttle::from_firmware(0x50005)),
            services: vec![Service {
                unit: "nginx.service".into(),
                active: ActiveState::Failed,
                sub: "failed".into(),
            }],
            gpio: Vec::new(),
            docker: None,
            containers: Vec::new(),
            agent: None,
        }
    }

    #[test]
    fn flattens_every_group_present_and_nothing_absent() {
        let points = flatten(&sample(), &mut MetricNames::default());
        let got: Vec<(&str, f64)> = points
            .iter()
            .map(|p| (p.metric.as_str(), p.value))
            .collect();
        assert_eq!(
            got,
            [
                ("cpu", 12.5),
                ("mem.pct", 40.0),
                ("mem.used", 40.0),
                ("mem.avail", 60.0),
                ("disk.pct:/", 93.0),
                ("disk.free:/", 70.0),
                ("temp", 70.0),
                ("temp:cpu-thermal", 61.5),
                ("temp:gpu-thermal", 70.0),
                ("throttle.uv", 1.0),
                ("throttle.throttled", 1.0),
                ("throttle.capped", 0.0),
                ("throttle.soft_temp", 0.0),
                ("service:nginx.service", 0.0),
            ]
        );
    }

    #[test]
    fn every_flattened_name_is_documented() {
        for p in flatten(&sample(), &mut MetricNames::default()) {
            assert!(
                METRICS.iter().any(|(n, _, _)| *n == p.metric.name()),
                "{} missing from METRICS",
                p.metric
            );
        }
    }

    #[test]
    fn parses_metric_selectors() {
        let ok = [
            "temp",
            "disk.pct:/data",
            "service:nginx.service",
            "temp:cpu-thermal",
        ];
        for s in ok {
            let m = Metric::parse(s).unwrap();
            assert_eq!(m.as_str(), s);
        }
        assert_eq!(Metric::parse("disk.pct:/data").unwrap().name(), "disk.pct");
        assert_eq!(
            Metric::parse("disk.pct:/data").unwrap().instance(),
            Some("/data")
        );
        for bad in ["", ":x", "temp:", "te mp", "temp:\n"] {
            assert!(Metric::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn container(name: &str, state: ContainerState, unexpected: Option<bool>) -> Container {
        Container {
            name: name.into(),
            id: "0123456789ab".into(),
            image: "nginx".into(),
            state,
            health: None,
            restarts: 2,
            started: None,
            exit_code: None,
            unexpected,
            cpu: None,
            mem: None,
            mem_limit: None,
        }
    }

    #[test]
    fn flattens_containers() {
        let mut web = container("web", ContainerState::Running, None);
        web.health = Some(Health::Unhealthy);
        web.cpu = Some(12.5);
        web.mem = Some(1000);
        let s = Sample {
            docker: Some(Engine::Available),
            containers: vec![
                web,
                container("crashed", ContainerState::Exited, Some(true)),
                container("stopped", ContainerState::Exited, Some(false)),
                container("unknown", ContainerState::Exited, None),
            ],
            ..sample()
        };
        let points = flatten(&s, &mut MetricNames::default());
        let got: Vec<(&str, f64)> = points
            .iter()
            .filter(|p| p.metric.name().starts_with("container") || p.metric.name() == "docker.up")
            .map(|p| (p.metric.as_str(), p.value))
            .collect();
        assert_eq!(
            got,
            [
                ("docker.up", 1.0),
                ("container.up:web", 1.0),
                ("container.exited:web", 0.0),
                ("container.unhealthy:web", 1.0),
                ("container.restarts:web", 2.0),
                ("container.cpu:web", 12.5),
                ("container.mem:web", 1000.0),
                ("container.up:crashed", 0.0),
                ("container.exited:crashed", 1.0),
                ("container.unhealthy:crashed", 0.0),
                ("container.restarts:crashed", 2.0),
                ("container.up:stopped", 0.0),
                ("container.exited:stopped", 0.0),
                ("container.unhealthy:stopped", 0.0),
                ("container.restarts:stopped", 2.0),
                ("container.up:unknown", 0.0),
                ("container.unhealthy:unknown", 0.0),
                ("container.restarts:unknown", 2.0),
            ]
        );
        for p in &points {
            assert!(
                METRICS.iter().any(|(n, _, _)| *n == p.metric.name()),
                "{} missing from METRICS",
                p.metric
            );
        }
        let down = Sample {
            docker: Some(Engine::Unavailable),
            ..sample()
        };
        assert!(
            flatten(&down, &mut MetricNames::default())
                .iter()
                .any(|p| p.metric.as_str() == "docker.up" && p.value == 0.0)
        );
    }

    #[test]
    fn events_as_points() {
        let values = |k: &EventKind| -> (Vec<(String, f64)>, Option<String>) {
            let (points, gone) = event_points(k);
            (
                points
                    .into_iter()
                    .map(|p| (p.metric.to_string(), p.value))
                    .collect(),
                gone.map(str::to_string),
            )
        };
        let crashed = EventKind::Container {
            name: "web".into(),
            state: ContainerState::Exited,
            health: Some(Health::Healthy),
            restarts: 1,
            exit_code: Some(137),
            unexpected: Some(true),
            old_state: Some(ContainerState::Running),
            old_health: None,
        };
        assert_eq!(
            values(&crashed).0,
            [
                ("container.up:web".to_string(), 0.0),
                ("container.exited:web".to_string(), 1.0),
                ("container.unhealthy:web".to_string(), 0.0),
                ("container.restarts:web".to_string(), 1.0),
            ]
        );
        assert_eq!(
            values(&EventKind::ContainerGone { name: "web".into() }),
            (
                vec![
                    ("container.exited:web".to_string(), 0.0),
                    ("container.unhealthy:web".to_string(), 0.0)
                ],
                Some("web".to_string())
            )
        );
        assert_eq!(
            values(&EventKind::Docker {
                engine: Engine::Unavailable
            })
            .0,
            [("docker.up".to_string(), 0.0)]
        );
        assert_eq!(values(&EventKind::ClockSynced), (vec![], None));
    }
}
