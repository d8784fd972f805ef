//! Writes the seed corpus of every fuzz target from real encodings: the
//! simulator's telemetry and events, signed commands of every kind, queue
//! directories the queue itself wrote, journals and state files the agent
//! wrote, the collector's own journal values and bodies.
//!
//! `cargo run --release --example seeds -- <dir>` (default `seeds`) writes
//! `<dir>/<target>/<name>`; `bench/fuzz.sh` then merges them into the
//! corpus with `cargo fuzz cmin`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_agent::commands::journal::Journal;
use picket_agent::queue::{NewRecord, Queue, QueueConfig, RecordKind};
use picket_agent::update::state::{Installed, State as UpdateState};
use picket_collector::fleet::device::Persisted;
use picket_collector::fleet::presence::{Input, Presence as Seen};
use picket_collector::fleet::seq::SeqTracker;
use picket_collector::history::fuzzing::{encode as encode_body, put_varint};
use picket_collector::simulate::SimDevice;
use picket_collector::simulate::outbox::Encoder;
use picket_fuzz::command::{DEVICE, NOW, key};
use picket_fuzz::queue::{
    BOOT, SETTING_CLOSE, SETTING_HOT, TAG_DIR, TAG_FIX_CRC, TAG_HOT, TAG_OPS, pack_entry,
};
use picket_protocol::signing;
use picket_protocol::{
    Alert, AlertSet, Command, DeviceId, Format, OfflineReason, Presence, Reply, ReplyState,
    Severity, State, Topics, VERSION, encode,
};

struct Out {
    dir: PathBuf,
    written: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir).expect("seed directory");
        fs::write(dir.join(name), bytes).expect("seed file");
        self.written += 1;
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let mut out = Out {
        dir: PathBuf::from(dir),
        written: 0,
    };
    protocol(&mut out);
    commands(&mut out);
    queue(&mut out);
    journal(&mut out);
    update_state(&mut out);
    collector(&mut out);
    println!("{} seeds in {}", out.written, out.dir.display());
}

fn device() -> DeviceId {
    DeviceId::new(DEVICE).expect("valid id")
}

fn both<T: serde::Serialize>(out: &mut Out, target: &str, name: &str, msg: &T) {
    out.put(
        target,
        &format!("{name}.cbor"),
        &encode(msg, Format::Cbor).expect("cbor"),
    );
    out.put(
        target,
        &format!("{name}.json"),
        &encode(msg, Format::Json).expect("json"),
    );
}

fn protocol(out: &mut Out) {
    let topics = Topics::new("picket").expect("prefix");
    // Telemetry and event batches as the simulator's devices send them,
    // from a first tick (agent started, full inventory) to later ones.
    for (i, format) in [Format::Cbor, Format::Json].into_iter().enumerate() {
        let mut sim = SimDevice::new(device(), i, 7 + i as u64, None, NOW);
        let enc = Encoder::new(&topics, device(), format);
        for tick in 0..3u64 {
            let t = sim.tick(NOW + tick * 10_000);
            let batches = enc.encode(t.records, tick == 2).expect("encode");
            for (n, (_, bytes)) in batches.into_iter().enumerate() {
                out.put(
                    "protocol_decode",
                    &format!("sim-{format:?}-{tick}-{n}"),
                    &bytes,
                );
            }
        }
        let stop = sim.stopping(NOW + 40_000);
        let batch = enc
            .encode(
                vec![picket_collector::simulate::device::Record::Event(stop)],
                false,
            )
            .expect("encode");
        for (_, bytes) in batch {
            out.put("protocol_decode", &format!("sim-{format:?}-stop"), &bytes);
        }
    }
    let online = State {
        v: VERSION,
        device: device(),
        status: Presence::Online,
        session: "0123456789abcdef".into(),
        version: Some("1.4.0".into()),
        model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
        boot: Some("6f1c0d8e-2b7a-4c1e-9f3d-5a6b7c8d9e0f".into()),
        ts: Some(NOW),
        reason: None,
    };
    both(out, "protocol_decode", "state-online", &online);
    let will = State {
        status: Presence::Offline,
        reason: Some(OfflineReason::ConnectionLost),
        version: None,
        model: None,
        boot: None,
        ..online
    };
    both(out, "protocol_decode", "state-will", &will);
    let reply = Reply {
        v: VERSION,
        id: "c-1".into(),
        device: device(),
        state: ReplyState::Succeeded,
        reason: None,
        output: Some("pong".into()),
        chunk: Some(0),
        ts: NOW,
    };
    both(out, "protocol_decode", "reply", &reply);
    let alerts = AlertSet {
        v: VERSION,
        device: device(),
        ts: NOW,
        alerts: vec![
            Alert {
                rule: "temperature_critical".into(),
                severity: Severity::Critical,
                since: NOW - 60_000,
                value: Some(85.5),
                message: "CPU temperature 85.5 °C".into(),
            },
            Alert {
                rule: "offline".into(),
                severity: Severity::Warning,
                since: NOW,
                value: None,
                message: "offline".into(),
            },
        ],
    };
    both(out, "protocol_decode", "alerts", &alerts);
    for (i, cmd) in signed_commands().iter().enumerate().step_by(4) {
        both(out, "protocol_decode", &format!("cmd-{i}"), cmd);
    }
}

/// One signed command of every kind, addressed to the seeds' device.
fn signed_commands() -> Vec<Command> {
    let sha = "ab".repeat(32);
    let sig = "cd".repeat(64);
    let actions = [
        r#"{"name":"ping","args":{}}"#.to_string(),
        r#"{"name":"system.info","args":{}}"#.into(),
        r#"{"name":"system.reboot","args":{"delay":5}}"#.into(),
        r#"{"name":"service.restart","args":{"unit":"kiosk.service"}}"#.into(),
        r#"{"name":"service.logs","args":{"unit":"kiosk.service","lines":50}}"#.into(),
        format!(r#"{{"name":"file.deploy","args":{{"url":"https://example.com/a","sha256":"{sha}","dest":"/opt/app/a"}}}}"#),
        r#"{"name":"file.delete","args":{"path":"/opt/app/a"}}"#.into(),
        r#"{"name":"config.update","args":{"toml":"[mqtt]\nhost = \"broker\"\n"}}"#.into(),
        r#"{"name":"led.identify","args":{"secs":30}}"#.into(),
        r#"{"name":"gpio.write","args":{"name":"relay","level":1}}"#.into(),
        format!(r#"{{"name":"agent.update","args":{{"url":"https://example.com/agent","sha256":"{sha}","version":"1.5.0","signature":"{sig}"}}}}"#),
        r#"{"name":"docker.list","args":{}}"#.into(),
        r#"{"name":"docker.inspect","args":{"container":"web"}}"#.into(),
        r#"{"name":"docker.start","args":{"container":"web"}}"#.into(),
        r#"{"name":"docker.stop","args":{"container":"web","timeout":10}}"#.into(),
        r#"{"name":"docker.restart","args":{"container":"web"}}"#.into(),
        r#"{"name":"docker.logs","args":{"container":"web","tail":20,"since":5,"timestamps":true}}"#.into(),
        r#"{"name":"docker.stats","args":{"container":"web","stream":true,"duration":10}}"#.into(),
        r#"{"name":"docker.exec","args":{"container":"web","command":"reload"}}"#.into(),
    ];
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let head = format!(
                r#"{{"v":{VERSION},"id":"c-{i}","device":"{DEVICE}","issued":{},"expires":{},"#,
                NOW - 1_000,
                NOW + 600_000
            );
            let json = format!("{head}{}", &action[1..]);
            let mut cmd: Command = serde_json::from_str(&json).expect("a command");
            signing::sign(&mut cmd, &key());
            cmd
        })
        .collect()
}

fn commands(out: &mut Out) {
    for (i, cmd) in signed_commands().iter().enumerate() {
        both(
            out,
            "command_envelope",
            &format!("{}-{i}", cmd.action.name()),
            cmd,
        );
    }
    let mut unsigned = signed_commands().swap_remove(0);
    unsigned.sig = None;
    both(out, "command_envelope", "unsigned", &unsigned);
}

/// Packs a queue directory (and its hot spool) into the input format of
/// `queue_recover`.
fn pack(settings: u8, dir: &Path, hot: Option<&Path>, ops: &[u8]) -> Vec<u8> {
    let mut input = vec![settings];
    for (tag, d) in [(TAG_DIR, Some(dir)), (TAG_HOT, hot)] {
        let Some(d) = d else { continue };
        let Ok(entries) = fs::read_dir(d) else {
            continue;
        };
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().into_string().expect("utf-8 name"))
            .collect();
        names.sort();
        for name in names {
            let content = fs::read(d.join(&name)).expect("read");
            let content = &content[..content.len().min(u16::MAX as usize)];
            pack_entry(&mut input, tag | TAG_FIX_CRC, &name, content);
        }
    }
    if !ops.is_empty() {
        pack_entry(&mut input, TAG_OPS, "", ops);
    }
    input
}

fn queue(out: &mut Out) {
    // Scenarios: (hot spool, records, acked through, synced, closed).
    let scenarios: [(bool, u64, Option<u64>, bool, bool); 6] = [
        (false, 5, None, true, true),
        (false, 40, Some(19), true, false),
        (false, 3, Some(2), true, true),
        (false, 8, None, false, false),
        (true, 6, Some(1), false, false),
        (true, 30, None, true, true),
    ];
    for (i, &(hot, n, acked, synced, closed)) in scenarios.iter().enumerate() {
        let scratch = picket_fuzz::scratch();
        let dir = scratch.path().join("queue");
        let hot_dir = scratch.path().join("hot");
        let cfg = QueueConfig {
            dir: dir.clone(),
            segment_bytes: 4096,
            max_bytes: QueueConfig::DEFAULT_MAX_BYTES,
            sync_interval: Duration::from_secs(10),
            hot_dir: hot.then(|| hot_dir.clone()),
        };
        let (mut q, _) = Queue::open(cfg, BOOT).expect("open");
        for seq in 0..n {
            let kind = if seq % 5 == 0 {
                RecordKind::Event
            } else {
                RecordKind::Sample
            };
            let record = NewRecord {
                seq,
                kind,
                ts_ms: NOW + seq * 1_000,
                payload: vec![seq as u8; 200 + (seq as usize % 7) * 30],
            };
            q.append(&[record]).expect("append");
        }
        if let Some(a) = acked {
            q.ack(a).expect("ack");
        }
        if synced {
            q.sync().expect("sync");
        }
        if closed {
            q.close().expect("close");
        } else {
            drop(q);
        }
        let settings = (u8::from(hot) * SETTING_HOT) | (u8::from(closed) * SETTING_CLOSE);
        let packed = pack(
            settings,
            &dir,
            hot.then_some(hot_dir.as_path()),
            &[3, 0x41, 7, 0x80],
        );
        out.put("queue_recover", &format!("queue-{i}"), &packed);
    }
}

fn journal(out: &mut Out) {
    let scratch = picket_fuzz::scratch();
    let mut j = Journal::open(scratch.path(), 16, 0).expect("journal");
    for i in 0..6u64 {
        j.record(&format!("c-{i}"), 100 + i, 500 + i * 200, 0)
            .expect("record");
    }
    drop(j);
    let file = fs::read(scratch.path().join("journal")).expect("read");
    // Settings byte: capacity 16, time 0; then capacity 4 at 700 ms, which
    // expires some and compacts.
    out.put(
        "command_journal",
        "appended",
        &[&[0x0f][..], &file].concat(),
    );
    out.put(
        "command_journal",
        "expiring",
        &[&[0x73][..], &file].concat(),
    );
    let _ = Journal::open(scratch.path(), 16, 700).expect("compact");
    let file = fs::read(scratch.path().join("journal")).expect("read");
    out.put(
        "command_journal",
        "compacted",
        &[&[0x0f][..], &file].concat(),
    );
    out.put(
        "command_journal",
        "torn",
        &[&[0x0f][..], &file, b"9 900 c-tor"].concat(),
    );
}

fn update_state(out: &mut Out) {
    let write = |out: &mut Out, name: &str, s: &UpdateState| {
        out.put(
            "update_state",
            name,
            &serde_json::to_vec_pretty(s).expect("json"),
        );
    };
    let mut s = UpdateState::default();
    write(out, "empty", &s);
    assert!(matches!(
        s.launch("1.0.0", "boot-1"),
        picket_agent::update::state::Launch::Here
    ));
    s.install(
        "u-1",
        Installed::named("1.1.0"),
        "1.0.0",
        Some(Installed::named("1.0.0")),
    );
    write(out, "installed", &s);
    let _ = s.launch("1.0.0", "boot-1");
    write(out, "trial-started", &s);
    s.record_stop("boot-1", "exited with status 1".into());
    write(out, "trial-stopped", &s);
    let mut committed = s.clone();
    committed.commit("1.1.0");
    write(out, "committed", &committed);
    let _ = s.launch("1.0.0", "boot-1");
    write(out, "rolled-back", &s);
}

fn collector(out: &mut Out) {
    let mut trackers = Vec::new();
    for seqs in [&[0u64, 1, 2][..], &[0, 5, 3, 9, 20, 21, 15], &[7]] {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.observe(s);
        }
        trackers.push(t);
    }
    let mut body = Vec::new();
    for (i, t) in trackers.iter().enumerate() {
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        out.put("seq_tracker", &format!("tracker-{i}"), &bytes);
        put_varint(&mut body, i as u64 + 1);
        put_varint(&mut body, bytes.len() as u64);
        body.extend_from_slice(&bytes);
        let p = Persisted {
            seq: t.clone(),
            ..Persisted::default()
        };
        out.put(
            "fleet_state",
            &format!("state-{i}"),
            serde_json::to_string(&p).expect("json").as_bytes(),
        );
    }
    out.put("history_journal", "three-devices", &body);
    out.put("history_journal", "empty", &[]);
    // A state row of an online device with learnt clock offsets, written
    // by serde as the engine stores it.
    let mut presence = Seen::default();
    presence.apply(
        Input::Birth {
            session: "0123456789abcdef",
        },
        NOW,
    );
    presence.apply(Input::Message, NOW + 5_000);
    let busy = Persisted {
        seq: trackers[1].clone(),
        presence,
        offsets: vec![("boot-1".into(), -5_000)],
        unsynced_boots: vec!["boot-2".into()],
        boot: Some("boot-1".into()),
        model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
        version: Some("1.4.0".into()),
        ..Persisted::default()
    };
    out.put(
        "fleet_state",
        "busy",
        serde_json::to_string(&busy).expect("json").as_bytes(),
    );
    let points: [&[(u64, f64)]; 3] = [
        &[(1, 0.0), (2, 12.5), (3, 1e300), (7, -3.0), (9, f64::NAN)],
        &[(1, 41.2), (2, 3_978_436_608.0), (40, 0.25)],
        &[(5, -0.0), (6, f64::INFINITY), (1000, 123_456_789_012.0)],
    ];
    for (i, p) in points.iter().enumerate() {
        let mut b = Vec::new();
        encode_body(p, &mut b).expect("body");
        out.put("history_body", &format!("body-{i}"), &b);
    }
}
