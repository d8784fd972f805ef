//! One simulated Raspberry Pi: what its agent would sample, tick by tick.
//!
//! Pure and deterministic: the same seed, index and clock readings give the
//! same samples and events, byte for byte. The clock is an input (unix
//! milliseconds per tick), so tests drive it without sleeping.

use picket_protocol::DeviceId;
use picket_protocol::{
    ActiveState, AgentHealth, Disk, Event, EventKind, Load, Memory, NetIf, Sample, Service,
    Thermal, Throttle,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scenario::{Phase, Plan, Scenario};
use crate::model::Millis;

/// What a Pi says it is in `/proc/device-tree/model`, and its usable RAM.
const MODELS: [(&str, u64); 3] = [
    ("Raspberry Pi 4 Model B Rev 1.4", 3_978_436_608),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", 948_215_808),
    ("Raspberry Pi 5 Model B Rev 1.0", 4_148_183_040),
];

/// A "32 GB" SD card's root partition, and the 5 % ext4 keeps for root.
const ROOT_TOTAL: u64 = 31_037_849_600;
const ROOT_RESERVED: u64 = ROOT_TOTAL / 20;
const BOOT_TOTAL: u64 = 535_805_952;
const SWAP_TOTAL: u64 = 104_853_504;

/// Watched units; `kiosk.service` is the one [`Scenario::ServiceDown`] fails.
const SERVICES: [&str; 3] = ["picket-agent.service", "kiosk.service", "nginx.service"];
const KIOSK: usize = 1;

/// Firmware `get_throttled` bits.
const UV_NOW: u32 = 1 << 0;
const THROTTLED_NOW: u32 = 1 << 2;
/// A "now" bit shifted by this is its "since boot" twin.
const SINCE_BOOT: u32 = 16;

/// Peak temperature of [`Scenario::Overheat`] and where its cooling ends.
const OVERHEAT_PEAK: f32 = 84.0;
const OVERHEAT_COOLED: f32 = 62.0;
/// The firmware starts throttling a Pi 4 here.
const THROTTLE_AT: f32 = 80.0;
/// Share of the space available to users that [`Scenario::DiskFill`] reaches.
const DISK_FILL_PEAK: f64 = 0.965;

/// Rough CBOR size of one queued record, for the agent health figures.
const RECORD_BYTES: u64 = 640;

/// A record as the agent would queue it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Boxed: a sample is three times the size of an event.
    Sample(Box<Sample>),
    Event(Event),
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Sample(s) => s.seq,
            Record::Event(e) => e.seq,
        }
    }
}

/// What the device's network does this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected (or trying to be) and publishing.
    Up,
    /// Connected but the agent is hung: nothing to publish.
    Silent,
    /// Cut off without a goodbye; records wait for the link to return.
    Down,
}

/// One tick's result: records in ascending seq (events, then the sample).
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub records: Vec<Record>,
    pub link: Link,
}

/// The agent's queue as the connection layer sees it, reported in the
/// sample's agent health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub records: u64,
    pub oldest_ms: Option<u64>,
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Counters {
    name: &'static str,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
    rx_dropped: u64,
    /// Bytes per second this interface moves, each way.
    rx_rate: u64,
    tx_rate: u64,
}

impl Counters {
    fn advance(&mut self, rng: &mut StdRng, dt_ms: u64) {
        let rx = self.rx_rate * dt_ms / 1000 * rng.random_range(50..150) / 100;
        let tx = self.tx_rate * dt_ms / 1000 * rng.random_range(50..150) / 100;
        self.rx_bytes += rx;
        self.tx_bytes += tx;
        self.rx_packets += rx / 600 + 1;
        self.tx_packets += tx / 400 + 1;
        if rng.random_bool(0.01) {
            self.rx_dropped += 1;
        }
    }

    fn sample(&self) -> NetIf {
        NetIf {
            name: self.name.into(),
            rx_bytes: self.rx_bytes,
            tx_bytes: self.tx_bytes,
            rx_packets: self.rx_packets,
            tx_packets: self.tx_packets,
            rx_errors: 0,
            tx_errors: 0,
            rx_dropped: self.rx_dropped,
            tx_dropped: 0,
        }
    }
}

/// A simulated device and its agent.
#[derive(Debug, Clone)]
pub struct SimDevice {
    id: DeviceId,
    model: &'static str,
    mem_total: u64,
    boot: String,
    config: String,
    rng: StdRng,
    plan: Option<Plan>,
    /// The next sequence number; samples and events share it.
    seq: u64,
    ticks: u64,
    /// The agent has announced itself (its first non-silent tick).
    started: bool,
    created: Millis,
    /// Milliseconds since boot at `created`.
    mono_at_created: u64,
    last_mono: u64,
    last_now: Option<Millis>,
    cpu: f32,
    mem_pct: f32,
    temp: f32,
    load: Load,
    root_used: u64,
    boot_used: u64,
    swap_used: u64,
    net: [Counters; 2],
    throttle: Option<u32>,
    sticky: u32,
    services: [(ActiveState, &'static str); 3],
    backlog: Backlog,
}

impl SimDevice {
    /// Device `index` of a fleet seeded with `seed`, created at unix time
    /// `now`. `plan` is what [`super::scenario::Schedule::plan`] gave it.
    pub fn new(id: DeviceId, index: usize, seed: u64, plan: Option<Plan>, now: Millis) -> Self {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Mostly Pi 4s, with some older and newer boards.
        let (model, mem_total) = match rng.random_range(0..20) {
            0..=2 => MODELS[1],
            3..=5 => MODELS[2],
            _ => MODELS[0],
        };
        // The boot id mixes in the start time: a new run of the simulator is
        // a reboot, and a collector must not pair new monotonic times with
        // an old boot.
        let boot = uuid(rng.random::<u128>() ^ u128::from(now));
        let uptime_s: u64 = rng.random_range(60..14 * 86_400);
        let cpu = rng.random_range(8.0..30.0);
        let rx_rate = rng.random_range(2_000..40_000);
        let tx_rate = rng.random_range(500..8_000);
        let eth = Counters {
            name: "eth0",
            rx_bytes: rx_rate * uptime_s,
            tx_bytes: tx_rate * uptime_s,
            rx_packets: rx_rate * uptime_s / 600,
            tx_packets: tx_rate * uptime_s / 400,
            rx_dropped: uptime_s / 3_600,
            rx_rate,
            tx_rate,
        };
        let wlan = Counters {
            name: "wlan0",
            rx_bytes: 120 * uptime_s,
            tx_bytes: 20 * uptime_s,
            rx_packets: uptime_s / 2,
            tx_packets: uptime_s / 10,
            rx_dropped: 0,
            rx_rate: 120,
            tx_rate: 20,
        };
        let root_used = (ROOT_TOTAL as f64 * rng.random_range(0.18..0.45)) as u64;
        let boot_used = rng.random_range(60_000_000..75_000_000);
        let mem_pct = rng.random_range(32.0..50.0);
        let load1 = cpu * 4.0 / 100.0;
        SimDevice {
            id,
            model,
            mem_total,
            boot,
            config: format!("{:016x}", picket_config::fnv1a(b"picket-sim fleet")),
            rng,
            plan,
            // Starting from the wall clock keeps sequence numbers rising
            // across runs of the simulator, as a real agent's persisted
            // counter does, as long as a run sends fewer than one record
            // per millisecond.
            seq: now,
            ticks: 0,
            started: false,
            created: now,
            mono_at_created: uptime_s * 1000,
            last_mono: 0,
            last_now: None,
            cpu,
            mem_pct,
            temp: normal_temp(cpu),
            load: Load {
                m1: load1,
                m5: load1,
                m15: load1,
            },
            root_used,
            boot_used,
            swap_used: 0,
            net: [eth, wlan],
            throttle: None,
            sticky: 0,
            services: [(ActiveState::Active, "running"); 3],
            backlog: Backlog::default(),
        }
    }

    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    pub fn model(&self) -> &'static str {
        self.model
    }

    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// The scenario running at the next tick, if any.
    pub fn phase(&self) -> Option<Phase> {
        self.plan.as_ref().and_then(|p| p.at(self.ticks))
    }

    /// What the connection layer holds unsent, for the next samples.
    pub fn set_backlog(&mut self, backlog: Backlog) {
        self.backlog = backlog;
    }

    /// Take one sample at unix time `now`.
    pub fn tick(&mut self, now: Millis) -> Tick {
        let phase = self.phase();
        self.ticks += 1;
        let link = match phase.map(|p| p.kind) {
            Some(Scenario::Silent) => Link::Silent,
            Some(Scenario::Drop) => Link::Down,
            _ => Link::Up,
        };
        let (ts, mono) = self.clock(now);
        let dt_ms = self.last_now.map_or(0, |prev| now.saturating_sub(prev));
        self.last_now = Some(now);
        // A hung agent samples nothing; its clock still runs.
        if link == Link::Silent {
            return Tick {
                records: Vec::new(),
                link,
            };
        }

        let first = !self.started;
        self.started = true;
        self.walk(dt_ms);
        self.apply(phase);

        let mut kinds = Vec::new();
        if first {
            // Numbers below the wall-clock start were never used by this
            // run: say so, as an agent does after a power cut, so that a
            // collector meeting this device does not count them missing.
            let start = self.seq;
            kinds.push(EventKind::AgentStarted {
                version: env!("CARGO_PKG_VERSION").into(),
                seq_skipped: (start > 0).then_some((0, start)),
            });
        }
        let raw = self.throttle_word(phase);
        // The first reading raises no event: the sample carries it.
        if let Some(old) = self.throttle
            && old != raw
        {
            kinds.push(EventKind::Throttle {
                old: Some(Throttle::from_firmware(old)),
                new: Throttle::from_firmware(raw),
            });
        }
        self.throttle = Some(raw);
        let kiosk = kiosk_state(phase);
        let (old_active, old_sub) = self.services[KIOSK];
        if (old_active, old_sub) != kiosk {
            kinds.push(EventKind::Service {
                unit: SERVICES[KIOSK].into(),
                active: kiosk.0,
                sub: kiosk.1.into(),
                old_active: Some(old_active),
                old_sub: Some(old_sub.into()),
            });
            self.services[KIOSK] = kiosk;
        }

        let mut records: Vec<Record> = kinds
            .into_iter()
            .map(|kind| Record::Event(self.event(ts, mono, kind)))
            .collect();
        let sample = self.sample(ts, mono, phase, raw, first);
        records.push(Record::Sample(Box::new(sample)));
        Tick { records, link }
    }

    /// The event an agent queues when it stops cleanly.
    pub fn stopping(&mut self, now: Millis) -> Event {
        let (ts, mono) = self.clock(now);
        self.event(ts, mono, EventKind::AgentStopping)
    }

    /// An event of this boot with the next sequence number.
    fn event(&mut self, ts: u64, mono: u64, kind: EventKind) -> Event {
        Event {
            seq: self.next_seq(),
            ts,
            mono,
            boot: self.boot.clone(),
            sync: true,
            hist: false,
            kind,
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// Wall time as given; monotonic time since boot that never goes back,
    /// even when the wall clock does.
    fn clock(&mut self, now: Millis) -> (u64, u64) {
        let mono = self.mono_at_created + now.saturating_sub(self.created);
        self.last_mono = self.last_mono.max(mono);
        (now, self.last_mono)
    }

    /// The random walks every device goes through, scenario or not.
    fn walk(&mut self, dt_ms: u64) {
        let rng = &mut self.rng;
        self.cpu = reflect(self.cpu + rng.random_range(-4.0..4.0), 5.0, 60.0);
        self.mem_pct = reflect(self.mem_pct + rng.random_range(-1.5..1.5), 30.0, 60.0);
        let target = normal_temp(self.cpu);
        self.temp = (self.temp + (target - self.temp) * 0.3 + rng.random_range(-0.3..0.3))
            .clamp(45.0, 65.0);
        let dt = dt_ms as f32 / 1000.0;
        let busy = self.cpu * 4.0 / 100.0;
        for (avg, window) in [
            (&mut self.load.m1, 60.0),
            (&mut self.load.m5, 300.0),
            (&mut self.load.m15, 900.0),
        ] {
            *avg += (busy - *avg) * (1.0 - (-dt / window).exp());
        }
        // Logs grow a little, and logrotate gives some back.
        self.root_used += dt_ms * 3;
        if rng.random_bool(0.05) {
            self.root_used = self.root_used.saturating_sub(dt_ms * 20);
        }
        self.swap_used = (self.swap_used + rng.random_range(0..4_096)).min(SWAP_TOTAL / 4);
        for n in &mut self.net {
            n.advance(rng, dt_ms);
        }
    }

    /// Scenario effects on the temperature, which carries over into the
    /// following ticks (a hot Pi cools gradually).
    fn apply(&mut self, phase: Option<Phase>) {
        let Some(phase) = phase.filter(|p| p.kind == Scenario::Overheat) else {
            return;
        };
        let heat = (phase.len / 4).max(1);
        let cool = (phase.len / 3).max(1);
        let hold = phase.len.saturating_sub(heat + cool);
        self.temp = if phase.at < heat {
            lerp(
                self.temp,
                OVERHEAT_PEAK,
                (phase.at + 1) as f32 / heat as f32,
            )
        } else if phase.at < heat + hold {
            OVERHEAT_PEAK - self.rng.random_range(0.0..2.5)
        } else {
            let k = phase.at - heat - hold + 1;
            lerp(OVERHEAT_PEAK, OVERHEAT_COOLED, k as f32 / cool as f32)
        };
    }

    /// The firmware word: bits for what is happening now, and their
    /// since-boot twins, which stay set until the (simulated) reboot.
    fn throttle_word(&mut self, phase: Option<Phase>) -> u32 {
        let mut now = 0;
        if self.temp >= THROTTLE_AT {
            now |= THROTTLED_NOW;
        }
        if phase.is_some_and(|p| p.kind == Scenario::PowerLoss) {
            now |= UV_NOW | THROTTLED_NOW;
        }
        self.sticky |= now << SINCE_BOOT;
        self.sticky | now
    }

    /// Space used on `/`: the slow walk, or the scenario's fill. The fill is
    /// not kept: when the scenario ends a clean-up gives the space back.
    fn root_used(&self, phase: Option<Phase>) -> u64 {
        match phase {
            Some(p) if p.kind == Scenario::DiskFill => {
                let fill = (p.len / 2).max(1);
                let peak = ((ROOT_TOTAL - ROOT_RESERVED) as f64 * DISK_FILL_PEAK) as u64;
                let frac = f64::from((p.at + 1).min(fill)) / f64::from(fill);
                let extra = peak.saturating_sub(self.root_used) as f64 * frac;
                self.root_used + extra as u64
            }
            _ => self.root_used,
        }
    }

    fn sample(
        &mut self,
        ts: u64,
        mono: u64,
        phase: Option<Phase>,
        raw: u32,
        first: bool,
    ) -> Sample {
        let mem_used = (self.mem_total as f64 * f64::from(self.mem_pct) / 100.0) as u64;
        let root_used = self.root_used(phase);
        let queued = if self.backlog.records > 0 {
            self.backlog
        } else {
            // A connected agent's queue holds the record being sent, now
            // and then one or two more.
            let records = self.rng.random_range(0..3);
            Backlog {
                records,
                oldest_ms: (records > 0).then(|| self.rng.random_range(5..400)),
                dropped: self.backlog.dropped,
            }
        };
        Sample {
            seq: self.next_seq(),
            ts,
            mono,
            boot: self.boot.clone(),
            sync: true,
            hist: false,
            // Like the agent: no CPU figure before there is a previous
            // reading to compare with.
            cpu: (!first).then_some(round2(self.cpu)),
            load: Some(Load {
                m1: round2(self.load.m1),
                m5: round2(self.load.m5),
                m15: round2(self.load.m15),
            }),
            mem: Some(memory(self.mem_total, mem_used, self.mem_total - mem_used)),
            swap: Some(memory(
                SWAP_TOTAL,
                self.swap_used,
                SWAP_TOTAL - self.swap_used,
            )),
            uptime: Some(mono / 1000),
            disks: vec![
                disk("/", "ext4", ROOT_TOTAL, root_used, ROOT_RESERVED),
                disk("/boot/firmware", "vfat", BOOT_TOTAL, self.boot_used, 0),
            ],
            net: self.net.iter().map(Counters::sample).collect(),
            thermal: vec![Thermal {
                zone: "thermal_zone0".into(),
                kind: "cpu-thermal".into(),
                c: round2(self.temp),
            }],
            throttle: Some(Throttle::from_firmware(raw)),
            services: SERVICES
                .iter()
                .zip(&self.services)
                .map(|(unit, (active, sub))| Service {
                    unit: (*unit).into(),
                    active: *active,
                    sub: (*sub).into(),
                })
                .collect(),
            gpio: Vec::new(),
            docker: None,
            containers: Vec::new(),
            agent: Some(AgentHealth {
                version: env!("CARGO_PKG_VERSION").into(),
                config: self.config.clone(),
                queue_records: queued.records,
                queue_bytes: queued.records * RECORD_BYTES,
                oldest_unsent_ms: queued.oldest_ms,
                dropped: queued.dropped,
                quarantined: 0,
            }),
        }
    }
}

/// `kiosk.service` under [`Scenario::ServiceDown`]: failed, then restarting
/// on the last tick, then running again.
fn kiosk_state(phase: Option<Phase>) -> (ActiveState, &'static str) {
    match phase {
        Some(p) if p.kind == Scenario::ServiceDown => {
            if p.at + 1 == p.len && p.len > 1 {
                (ActiveState::Activating, "start")
            } else {
                (ActiveState::Failed, "failed")
            }
        }
        _ => (ActiveState::Active, "running"),
    }
}

/// The temperature a busy Pi settles at: 45 °C idle to 65 °C at 60 % CPU.
fn normal_temp(cpu: f32) -> f32 {
    45.0 + (cpu - 5.0).clamp(0.0, 55.0) / 55.0 * 20.0
}

/// Keep a random walk inside its band by bouncing off the edges.
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        (2.0 * lo - x).min(hi)
    } else if x > hi {
        (2.0 * hi - x).max(lo)
    } else {
        x
    }
}

fn lerp(from: f32, to: f32, t: f32) -> f32 {
    from + (to - from) * t.clamp(0.0, 1.0)
}

/// Sensors report a couple of decimals; so does the simulation, which keeps
/// JSON payloads the size of real ones.
fn round2(x: f32) -> f32 {
    (x * 100.0).round() / 100.0
}

fn memory(total: u64, used: u64, avail: u64) -> Memory {
    Memory {
        total,
        used,
        avail,
        pct: pct(used, total),
    }
}

/// Like `df`: `free` is what users may still write (the reserve excluded)
/// and the percentage is used / (used + free).
fn disk(mount: &str, fs: &str, total: u64, used: u64, reserved: u64) -> Disk {
    let used = used.min(total - reserved);
    let free = total - reserved - used;
    Disk {
        mount: mount.into(),
        fs: fs.into(),
        total,
        used,
        free,
        pct: pct(used, used + free),
    }
}

fn pct(part: u64, whole: u64) -> f32 {
    if whole == 0 {
        0.0
    } else {
        round2((part as f64 * 100.0 / whole as f64) as f32)
    }
}

/// A random id spelled like `/proc/sys/kernel/random/boot_id`.
fn uuid(bits: u128) -> String {
    let h = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
