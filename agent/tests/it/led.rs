//! The status LED, `status` and GPIO end to end: the agent against a real
//! broker, a collector-style client publishing the retained alert set, the
//! LED a sysfs fixture directory, GPIO a simulated chip.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use picket_agent::led::Pattern;
use picket_agent::testing::gpio::SimChip;
use picket_protocol::{
    Action, Alert, AlertSet, DeviceId, EventKind, Format, GpioWriteArgs, IdentifyArgs, ReplyState,
    Severity, VERSION, encode,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, command, config, rand_id};

const BIN: &str = env!("CARGO_BIN_EXE_picket-agent");

/// What a connected agent shows on this machine: solid when the kernel
/// clock is NTP-synchronised, else the 1 Hz "clock not synchronised" blink
/// (a test machine's clock often is not).
fn connected_pattern() -> Pattern {
    if picket_agent::sensors::clock::ntp_synced() {
        Pattern::AllWell
    } else {
        Pattern::Degraded
    }
}

/// A LED class directory as the kernel shows the Pi's ACT LED.
fn sysfs_fixture(dir: &Path) -> std::path::PathBuf {
    let led = dir.join("ACT");
    std::fs::create_dir_all(&led).unwrap();
    std::fs::write(
        led.join("trigger"),
        "none rc-feedback timer [mmc0] heartbeat\n",
    )
    .unwrap();
    std::fs::write(led.join("brightness"), "0\n").unwrap();
    std::fs::write(led.join("max_brightness"), "255\n").unwrap();
    led
}

/// Publish retained, as the collector does, and wait for the broker's ack.
async fn publish_retained(port: u16, topic: &str, payload: Vec<u8>) {
    let mut opts = MqttOptions::new(format!("test-collector-{}", rand_id()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("test publisher: {e}"),
            }
        }
    })
    .await
    .expect("the broker acknowledged the alert set");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

fn alert_set(device: &str, severity: Severity) -> Vec<u8> {
    let set = AlertSet {
        v: VERSION,
        device: DeviceId::new(device).unwrap(),
        ts: 1_717_171_717_000,
        alerts: vec![Alert {
            rule: "temperature".into(),
            severity,
            since: 1_717_171_000_000,
            value: Some(82.5),
            message: "CPU at 82.5 °C".into(),
        }],
    };
    encode(&set, Format::Cbor).unwrap()
}

async fn wait_pattern(agent: &Agent, want: Pattern, what: &str) {
    let mut rx = agent.observers.led.clone();
    let r = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|p| *p == want)).await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "{what}: wanted {want:?}, LED shows {:?} (link {:?})",
        *agent.observers.led.borrow(),
        agent.observers.uplink.borrow().link
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_led_follows_the_broker_and_the_collectors_alerts() {
    let mut broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let led_dir = sysfs_fixture(dir.path());
    let device = "pi-led";
    let alert_topic = format!("picket/v1/{device}/alert");
    let mut env = base_env(device, &broker.url(), &dir.path().join("q"), "200ms");
    env.retain(|(k, _)| *k != "PICKET_LED_BACKEND");
    env.push(("PICKET_LED_BACKEND", "sysfs".into()));
    env.push(("PICKET_LED_SYSFS_PATH", led_dir.display().to_string()));
    env.push(("PICKET_COMMANDS_ALLOWED", "led.identify".into()));

    // Broker down: buffering, "no broker".
    broker.stop().await;
    let agent = Agent::start(config(&env)).await;
    wait_pattern(&agent, Pattern::NoBroker, "broker down").await;
    let read = |name: &str| std::fs::read_to_string(led_dir.join(name)).unwrap();
    assert_eq!(read("trigger"), "none", "the kernel trigger is taken over");

    // Broker up: connected.
    broker.resume().await;
    wait_pattern(&agent, connected_pattern(), "broker up").await;

    // The collector raises a critical alert on the retained topic.
    publish_retained(
        broker.sub_port,
        &alert_topic,
        alert_set(device, Severity::Critical),
    )
    .await;
    wait_pattern(&agent, Pattern::CriticalAlert, "critical alert").await;
    let alerts = agent.observers.alerts.borrow().clone().expect("alert set");
    assert_eq!(alerts.alerts[0].rule, "temperature");

    // `led.identify` overrides it for the 3 s asked.
    let reply = command(
        broker.sub_port,
        device,
        Action::LedIdentify(IdentifyArgs { secs: Some(3) }),
    )
    .await;
    assert_eq!(reply.state, ReplyState::Succeeded, "{reply:?}");
    wait_pattern(&agent, Pattern::Identify, "identify").await;
    wait_pattern(&agent, Pattern::CriticalAlert, "identify over").await;

    // A warning is no reason to blink fast.
    publish_retained(
        broker.sub_port,
        &alert_topic,
        alert_set(device, Severity::Warning),
    )
    .await;
    wait_pattern(&agent, connected_pattern(), "warning only").await;

    // Critical again, then cleared (empty retained payload): connected.
    publish_retained(
        broker.sub_port,
        &alert_topic,
        alert_set(device, Severity::Critical),
    )
    .await;
    wait_pattern(&agent, Pattern::CriticalAlert, "critical again").await;
    publish_retained(broker.sub_port, &alert_topic, Vec::new()).await;
    wait_pattern(&agent, connected_pattern(), "alert cleared").await;

    // The brightness file was driven (255 lit / 0 dark), the trigger given
    // back when the agent stops.
    let b = read("brightness");
    assert!(b == "255" || b == "0", "{b:?}");
    agent.stop().await;
    assert_eq!(read("trigger"), "mmc0", "trigger restored at shutdown");

    // A retained critical alert published while the agent was away is
    // shown as soon as it is back.
    publish_retained(
        broker.sub_port,
        &alert_topic,
        alert_set(device, Severity::Critical),
    )
    .await;
    let agent = Agent::start(config(&env)).await;
    wait_pattern(
        &agent,
        Pattern::CriticalAlert,
        "retained alert on reconnect",
    )
    .await;
    agent.stop().await;
}

fn status_cmd(socket: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PICKET_DEVICE_ID", "pi-status")
        .env("PICKET_STATUS_SOCKET", socket)
        .arg("status");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_running_agent_and_says_when_there_is_none() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/agent.sock");
    let mut env = base_env("pi-status", &broker.url(), &dir.path().join("q"), "100ms");
    env.retain(|(k, _)| *k != "PICKET_STATUS_SOCKET");
    env.push(("PICKET_STATUS_SOCKET", socket.display().to_string()));
    let agent = Agent::start(config(&env)).await;
    wait_pattern(&agent, connected_pattern(), "connected").await;
    publish_retained(
        broker.sub_port,
        "picket/v1/pi-status/alert",
        alert_set("pi-status", Severity::Critical),
    )
    .await;
    wait_pattern(&agent, Pattern::CriticalAlert, "critical").await;

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let out = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || status_cmd(&socket).arg("--json").output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["device"], "pi-status");
    assert_eq!(v["connected"], true);
    assert_eq!(v["link"], "connected");
    assert_eq!(v["broker"], broker.url());
    assert_eq!(v["led"], "critical_alert");
    assert_eq!(v["led_meaning"], Pattern::CriticalAlert.meaning());
    assert_eq!(v["alerts"][0]["rule"], "temperature");
    assert_eq!(
        v["clock_synced"],
        picket_agent::sensors::clock::ntp_synced()
    );
    assert!(v["queue_records"].is_u64() && v["dropped"] == 0, "{v}");
    assert!(
        v["since_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000)
    );

    let out = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || status_cmd(&socket).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for want in [
        "running",
        "connected for",
        "critical temperature: CPU at 82.5 °C",
        Pattern::CriticalAlert.looks(),
        Pattern::CriticalAlert.meaning(),
        "what to do:",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }

    agent.stop().await;
    assert!(!socket.exists(), "socket removed at stop");
    let out = status_cmd(&socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("NOT running") && text.contains(Pattern::Off.meaning()),
        "{text}"
    );
    let out = status_cmd(&socket).arg("--json").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpio_edges_reach_the_broker_at_once_and_levels_ride_in_samples() {
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "gpio").await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        "[[gpio.input]]\nname = \"door\"\nline = \"GPIO17\"\nbias = \"pull-up\"\nactive_low = true\n\
         [[gpio.input]]\nname = \"busy\"\nline = \"GPIO22\"\n\
         [[gpio.output]]\nname = \"relay\"\nline = \"gpiochip0:3\"\n",
    )
    .unwrap();
    // Samples every 10 minutes: an edge that arrives must not have waited
    // for one.
    let mut env = base_env("pi-gpio", &broker.url(), &dir.path().join("q"), "10m");
    env.push(("PICKET_COMMANDS_ALLOWED", "gpio.write".into()));
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let (cfg, _) = picket_agent::config::load(Some(&conf), vars).unwrap();
    let chip = SimChip::new("gpiochip0", &["GPIO0", "GPIO17", "GPIO22", "GPIO27"]);
    chip.claim_elsewhere("GPIO22", "other-daemon");
    let hardware = picket_agent::Hardware {
        gpio: Arc::new(chip.clone()),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (obs_tx, obs_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(picket_agent::run_with(
        cfg,
        hardware,
        async move {
            let _ = stop_rx.await;
        },
        move |o| {
            let _ = obs_tx.send(o);
        },
    ));
    let observers = tokio::time::timeout(Duration::from_secs(20), obs_rx)
        .await
        .unwrap()
        .unwrap();
    // The first sample (taken at start) carries the level of the line we
    // got; the busy one is left out.
    sub.wait_for(Duration::from_secs(30), "the first sample", |r| {
        !r.samples.is_empty()
    })
    .await;
    let first = sub.snapshot().samples[0].gpio.clone();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!((first[0].name.as_str(), first[0].level), ("door", false));

    chip.drive("GPIO17", false, 1_000); // opened: active (active low)
    sub.wait_for(Duration::from_secs(30), "the gpio event", |r| {
        r.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Gpio { name, level: true, .. } if name == "door"))
    })
    .await;

    // `gpio.write` sets a configured output, and nothing else.
    let write = |name: &str, level| {
        Action::GpioWrite(GpioWriteArgs {
            name: name.into(),
            level,
        })
    };
    let reply = command(broker.sub_port, "pi-gpio", write("relay", 1)).await;
    assert_eq!(reply.state, ReplyState::Succeeded, "{reply:?}");
    assert_eq!(chip.physical("GPIO27"), Some(true));
    let reply = command(broker.sub_port, "pi-gpio", write("door", 1)).await;
    assert_eq!(reply.state, ReplyState::Rejected, "{reply:?}");
    assert!(
        reply.reason.as_deref().unwrap_or("").contains("door"),
        "{reply:?}"
    );
    assert!(observers.gpio_outputs.write("door", true).is_err());

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
