//! The collector's flat view of a sample: named numeric values.
//!
//! History, rules, the API and `/metrics` all speak of a metric by one
//! string: a name, and for per-instance metrics the instance after a colon
//! (`disk.pct:/data`, `temp:cpu-thermal`, `service:nginx.service`). The
//! names are the contract with users (rule selectors, `?metric=` in the
//! API), so they are listed once here, in [`METRICS`].

use std::fmt;

use picket_protocol::{ActiveState, Sample};

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
];

/// A metric: `name` or `name:instance`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metric(String);

impl Metric {
    pub fn new(name: &str) -> Self {
        Metric(name.to_string())
    }

    pub fn with_instance(name: &str, instance: &str) -> Self {
        Metric(format!("{name}:{instance}"))
    }

    /// Parse a metric as written by a user (API, rule); refuses empty
    /// parts and control characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, instance) = match s.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            return Err(format!(
                "{s:?} is not a metric name (e.g. temp, disk.pct:/)"
            ));
        }
        if instance.is_some_and(|i| i.is_empty() || i.chars().any(char::is_control)) {
            return Err(format!("{s:?} has an empty or invalid instance after ':'"));
        }
        Ok(Metric(s.to_string()))
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

/// Flatten a sample into points, in a stable order. Metric groups the
/// sample lacks produce no points (absent is not zero).
pub fn flatten(s: &Sample) -> Vec<Point> {
    let mut out = Vec::with_capacity(24);
    let mut push = |metric: Metric, value: f64| {
        if value.is_finite() {
            out.push(Point { metric, value });
        }
    };
    if let Some(cpu) = s.cpu {
        push(Metric::new("cpu"), f64::from(cpu));
    }
    if let Some(l) = &s.load {
        push(Metric::new("load.1"), f64::from(l.m1));
        push(Metric::new("load.5"), f64::from(l.m5));
        push(Metric::new("load.15"), f64::from(l.m15));
    }
    if let Some(m) = &s.mem {
        push(Metric::new("mem.pct"), f64::from(m.pct));
        push(Metric::new("mem.used"), m.used as f64);
        push(Metric::new("mem.avail"), m.avail as f64);
    }
    if let Some(m) = &s.swap
        && m.total > 0
    {
        push(Metric::new("swap.pct"), f64::from(m.pct));
    }
    if let Some(u) = s.uptime {
        push(Metric::new("uptime"), u as f64);
    }
    for d in &s.disks {
        push(
            Metric::with_instance("disk.pct", &d.mount),
            f64::from(d.pct),
        );
        push(Metric::with_instance("disk.free", &d.mount), d.free as f64);
    }
    for n in &s.net {
        push(
            Metric::with_instance("net.rx_bytes", &n.name),
            n.rx_bytes as f64,
        );
        push(
            Metric::with_instance("net.tx_bytes", &n.name),
            n.tx_bytes as f64,
        );
        push(
            Metric::with_instance("net.errors", &n.name),
            (n.rx_errors + n.tx_errors) as f64,
        );
    }
    if let Some(hottest) = s.thermal.iter().map(|t| t.c).reduce(f32::max) {
        push(Metric::new("temp"), f64::from(hottest));
    }
    for t in &s.thermal {
        push(Metric::with_instance("temp", &t.kind), f64::from(t.c));
    }
    if let Some(t) = &s.throttle {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        push(Metric::new("throttle.uv"), flag(t.uv));
        push(Metric::new("throttle.throttled"), flag(t.throttled));
        push(Metric::new("throttle.capped"), flag(t.capped));
        push(Metric::new("throttle.soft_temp"), flag(t.soft_temp));
    }
    for svc in &s.services {
        let up = matches!(svc.active, ActiveState::Active | ActiveState::Reloading);
        push(
            Metric::with_instance("service", &svc.unit),
            if up { 1.0 } else { 0.0 },
        );
    }
    if let Some(a) = &s.agent {
        push(Metric::new("agent.queue_records"), a.queue_records as f64);
        push(Metric::new("agent.queue_bytes"), a.queue_bytes as f64);
        if let Some(ms) = a.oldest_unsent_ms {
            push(Metric::new("agent.oldest_unsent"), ms as f64 / 1000.0);
        }
        push(Metric::new("agent.dropped"), a.dropped as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_protocol::{Disk, Memory, Service, Thermal, Throttle};

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
        let points = flatten(&sample());
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
        for p in flatten(&sample()) {
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
}
